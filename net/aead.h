// Authenticated encryption of messages with sequence numbers as nonces, on OpenSSL's EVP:
// the replication link seals every frame after its handshake with it (docs/security.md), and
// any other protocol of Tandem that keeps a stream or counts its messages can (the second
// heartbeat path, the witness).
//
// A key seals one direction of one stream only (derive a fresh key per connection and per
// direction: net/hkdf.h). The n-th message of the stream is sealed with
//   nonce = 4 zero bytes | n as u64 big-endian        (96 bits)
// and the receiver opens message n with nonce n only, so a forged, altered, replayed,
// reordered, dropped-then-continued or injected message fails its tag: the receiver refuses
// it and must treat the stream as broken. The nonce is implicit: a sealed message is
// ciphertext | 16-byte tag, 16 bytes longer than its plaintext.
//
// The link uses AES-256-GCM: on our hosts (AES-NI, VAES) it seals a small frame in about half
// the time ChaCha20-Poly1305 takes and matches it on pages and 1 MiB chunks (bench/net,
// docs/security.md "Cipher"). ChaCha20-Poly1305 is there for hosts without AES instructions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace tandem::net {

inline constexpr size_t kAeadKeyBytes = 32;
inline constexpr size_t kAeadTagBytes = 16;
inline constexpr size_t kAeadNonceBytes = 12;

enum class AeadCipher { kAes256Gcm, kChaCha20Poly1305 };
std::string_view cipher_name(AeadCipher cipher);  // "chacha20-poly1305", "aes-256-gcm"

// One key, both operations, explicit sequence numbers. Not thread-safe (one user at a time).
class Aead {
 public:
  // Throws std::invalid_argument when `key` is not kAeadKeyBytes, std::runtime_error when
  // OpenSSL cannot set the cipher up.
  Aead(AeadCipher cipher, std::string_view key);
  ~Aead();
  Aead(Aead&&) noexcept;
  Aead& operator=(Aead&&) noexcept;

  // Encrypts `buffer` in place under nonce `sequence` and appends the tag. `aad` is
  // authenticated, not encrypted (may be empty). Throws std::runtime_error if OpenSSL fails.
  void seal(uint64_t sequence, std::string_view aad, std::string& buffer);
  // Decrypts `sealed` (ciphertext | tag) into `plaintext` (resized). False, with `plaintext`
  // cleared, when `sealed` is shorter than a tag or its tag does not verify under `sequence`
  // and `aad`: never use a byte of a message that failed.
  bool open(uint64_t sequence, std::string_view aad, std::string_view sealed, std::string& plaintext);

  AeadCipher cipher() const { return cipher_; }

 private:
  struct Contexts;
  AeadCipher cipher_;
  std::unique_ptr<Contexts> ctx_;
};

// The sending end of a sealed stream: message n gets sequence number n, from 0.
class AeadSealer {
 public:
  AeadSealer(AeadCipher cipher, std::string_view key) : aead_(cipher, key) {}
  // Seals `buffer` in place as the next message. Throws std::runtime_error after 2^64 - 1
  // messages (never reached: a fresh key per connection) or if OpenSSL fails.
  void seal(std::string& buffer, std::string_view aad = {});
  uint64_t next_sequence() const { return next_; }

 private:
  Aead aead_;
  uint64_t next_ = 0;
};

// The receiving end: accepts message n only as the n-th. After one failure it refuses
// everything (the stream is broken; the caller closes it).
class AeadOpener {
 public:
  AeadOpener(AeadCipher cipher, std::string_view key) : aead_(cipher, key) {}
  bool open(std::string_view sealed, std::string& plaintext, std::string_view aad = {});
  uint64_t next_sequence() const { return next_; }  // the sequence number expected next
  bool failed() const { return failed_; }

 private:
  Aead aead_;
  uint64_t next_ = 0;
  bool failed_ = false;
};

}  // namespace tandem::net
