#include "net/hkdf.h"

#include <openssl/core_names.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <memory>
#include <stdexcept>

namespace tandem::net {

namespace {
constexpr std::string_view kPurposeSalt = "tandem-purpose-key-v1";

struct KdfDeleter {
  void operator()(EVP_KDF* kdf) const { EVP_KDF_free(kdf); }
  void operator()(EVP_KDF_CTX* ctx) const { EVP_KDF_CTX_free(ctx); }
};
}  // namespace

std::string hkdf_sha256(std::string_view ikm, std::string_view salt, std::string_view info, size_t length) {
  if (ikm.empty()) throw std::invalid_argument("HKDF: empty input key");
  if (length == 0 || length > 255 * 32) throw std::invalid_argument("HKDF: output length out of range");
  std::unique_ptr<EVP_KDF, KdfDeleter> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr));
  if (!kdf) throw std::runtime_error("HKDF: OpenSSL has no HKDF");
  std::unique_ptr<EVP_KDF_CTX, KdfDeleter> ctx(EVP_KDF_CTX_new(kdf.get()));
  if (!ctx) throw std::runtime_error("HKDF: out of memory");
  char digest[] = "SHA256";
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, const_cast<char*>(ikm.data()), ikm.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, const_cast<char*>(salt.data()), salt.size()),
      OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, const_cast<char*>(info.data()), info.size()),
      OSSL_PARAM_construct_end(),
  };
  std::string out(length, '\0');
  if (EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), out.size(), params) != 1) {
    throw std::runtime_error("HKDF-SHA256 failed (OpenSSL EVP_KDF_derive)");
  }
  return out;
}

std::string_view purpose_label(KeyPurpose purpose) {
  switch (purpose) {
    case KeyPurpose::kLink: return "link";
    case KeyPurpose::kHeartbeat: return "heartbeat";
    case KeyPurpose::kWitness: return "witness";
  }
  return "unknown";
}

std::string derive_purpose_key(std::string_view psk, KeyPurpose purpose, std::string_view vm_id) {
  if (psk.empty()) throw std::invalid_argument("cannot derive a key from an empty PSK");
  std::string info(purpose_label(purpose));
  info.push_back('\0');  // labels contain no NUL: "link" | vm "x" never equals "linkx" | ...
  info += vm_id;
  return hkdf_sha256(psk, kPurposeSalt, info, kDerivedKeyBytes);
}

}  // namespace tandem::net
