#include "net/aead.h"

#include <openssl/evp.h>

#include <algorithm>
#include <array>
#include <limits>
#include <stdexcept>

namespace tandem::net {

namespace {

using Nonce = std::array<unsigned char, kAeadNonceBytes>;

Nonce nonce_for(uint64_t sequence) {
  Nonce nonce{};
  for (int i = 0; i < 8; ++i) nonce[4 + i] = static_cast<unsigned char>(sequence >> (8 * (7 - i)));
  return nonce;
}

const EVP_CIPHER* evp_cipher(AeadCipher cipher) {
  return cipher == AeadCipher::kAes256Gcm ? EVP_aes_256_gcm() : EVP_chacha20_poly1305();
}

[[noreturn]] void fail(const char* what) { throw std::runtime_error(std::string("AEAD: ") + what + " failed (OpenSSL)"); }

// EVP_*Update take an int length: feed larger buffers in pieces.
constexpr size_t kMaxUpdate = 1u << 30;

}  // namespace

std::string_view cipher_name(AeadCipher cipher) {
  return cipher == AeadCipher::kAes256Gcm ? "aes-256-gcm" : "chacha20-poly1305";
}

struct Aead::Contexts {
  EVP_CIPHER_CTX* encrypt = EVP_CIPHER_CTX_new();
  EVP_CIPHER_CTX* decrypt = EVP_CIPHER_CTX_new();
  ~Contexts() {
    EVP_CIPHER_CTX_free(encrypt);
    EVP_CIPHER_CTX_free(decrypt);
  }
};

Aead::Aead(AeadCipher cipher, std::string_view key) : cipher_(cipher), ctx_(std::make_unique<Contexts>()) {
  if (key.size() != kAeadKeyBytes) {
    throw std::invalid_argument("AEAD key of " + std::to_string(key.size()) + " bytes (expected " +
                                std::to_string(kAeadKeyBytes) + ")");
  }
  if (!ctx_->encrypt || !ctx_->decrypt) fail("context allocation");
  const auto* k = reinterpret_cast<const unsigned char*>(key.data());
  const EVP_CIPHER* evp = evp_cipher(cipher);
  if (EVP_EncryptInit_ex(ctx_->encrypt, evp, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_->encrypt, EVP_CTRL_AEAD_SET_IVLEN, kAeadNonceBytes, nullptr) != 1 ||
      EVP_EncryptInit_ex(ctx_->encrypt, nullptr, nullptr, k, nullptr) != 1) {
    fail("encryption key setup");
  }
  if (EVP_DecryptInit_ex(ctx_->decrypt, evp, nullptr, nullptr, nullptr) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_->decrypt, EVP_CTRL_AEAD_SET_IVLEN, kAeadNonceBytes, nullptr) != 1 ||
      EVP_DecryptInit_ex(ctx_->decrypt, nullptr, nullptr, k, nullptr) != 1) {
    fail("decryption key setup");
  }
}

Aead::~Aead() = default;
Aead::Aead(Aead&&) noexcept = default;
Aead& Aead::operator=(Aead&&) noexcept = default;

void Aead::seal(uint64_t sequence, std::string_view aad, std::string& buffer) {
  EVP_CIPHER_CTX* ctx = ctx_->encrypt;
  const Nonce nonce = nonce_for(sequence);
  int n = 0;
  if (EVP_EncryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data()) != 1) fail("nonce setup");
  if (!aad.empty() && EVP_EncryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1) {
    fail("AAD");
  }
  auto* data = reinterpret_cast<unsigned char*>(buffer.data());
  for (size_t done = 0; done < buffer.size();) {
    const size_t piece = std::min(buffer.size() - done, kMaxUpdate);
    if (EVP_EncryptUpdate(ctx, data + done, &n, data + done, static_cast<int>(piece)) != 1) fail("encryption");
    done += piece;  // stream ciphers (GCM, ChaCha20): n == piece
  }
  if (EVP_EncryptFinal_ex(ctx, data + buffer.size(), &n) != 1) fail("encryption final");
  unsigned char tag[kAeadTagBytes];
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, kAeadTagBytes, tag) != 1) fail("tag");
  buffer.append(reinterpret_cast<const char*>(tag), kAeadTagBytes);
}

bool Aead::open(uint64_t sequence, std::string_view aad, std::string_view sealed, std::string& plaintext) {
  plaintext.clear();
  if (sealed.size() < kAeadTagBytes) return false;
  EVP_CIPHER_CTX* ctx = ctx_->decrypt;
  const Nonce nonce = nonce_for(sequence);
  const size_t length = sealed.size() - kAeadTagBytes;
  int n = 0;
  if (EVP_DecryptInit_ex(ctx, nullptr, nullptr, nullptr, nonce.data()) != 1) fail("nonce setup");
  if (!aad.empty() && EVP_DecryptUpdate(ctx, nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                                        static_cast<int>(aad.size())) != 1) {
    fail("AAD");
  }
  plaintext.resize(length);
  auto* out = reinterpret_cast<unsigned char*>(plaintext.data());
  const auto* in = reinterpret_cast<const unsigned char*>(sealed.data());
  for (size_t done = 0; done < length;) {
    const size_t piece = std::min(length - done, kMaxUpdate);
    if (EVP_DecryptUpdate(ctx, out + done, &n, in + done, static_cast<int>(piece)) != 1) fail("decryption");
    done += piece;
  }
  unsigned char tag[kAeadTagBytes];
  std::copy(in + length, in + sealed.size(), tag);
  if (EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, kAeadTagBytes, tag) != 1) fail("tag");
  if (EVP_DecryptFinal_ex(ctx, out + length, &n) != 1) {
    plaintext.clear();
    return false;
  }
  return true;
}

void AeadSealer::seal(std::string& buffer, std::string_view aad) {
  if (next_ == std::numeric_limits<uint64_t>::max()) throw std::runtime_error("AEAD: sequence numbers exhausted");
  aead_.seal(next_, aad, buffer);
  ++next_;
}

bool AeadOpener::open(std::string_view sealed, std::string& plaintext, std::string_view aad) {
  if (failed_ || next_ == std::numeric_limits<uint64_t>::max() || !aead_.open(next_, aad, sealed, plaintext)) {
    failed_ = true;
    plaintext.clear();
    return false;
  }
  ++next_;
  return true;
}

}  // namespace tandem::net
