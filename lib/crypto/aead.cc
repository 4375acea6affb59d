#include "crypto/aead.h"

#include <openssl/evp.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <memory>

namespace podgate::crypto {

namespace {

constexpr size_t kIvBytes = 12;
constexpr size_t kTagBytes = 16;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

const unsigned char* Bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

}  // namespace

std::string AeadSeal(std::string_view key, std::string_view plaintext,
                     std::string_view associated_data) {
  if (key.size() != kAeadKeyBytes) {
    std::abort();  // a programming error: keys are checked where they are loaded
  }
  std::string out(kIvBytes + plaintext.size() + kTagBytes, '\0');
  auto* iv = reinterpret_cast<unsigned char*>(out.data());
  if (RAND_bytes(iv, kIvBytes) != 1) {
    std::abort();  // no randomness, no safe IV
  }
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  auto* body = iv + kIvBytes;
  if (ctx == nullptr ||
      EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key), iv) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, Bytes(associated_data),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), body, &len, Bytes(plaintext),
                        static_cast<int>(plaintext.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), body + len, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, body + plaintext.size()) !=
          1) {
    std::abort();
  }
  return out;
}

std::optional<std::string> AeadOpen(std::string_view key, std::string_view sealed,
                                    std::string_view associated_data) {
  if (key.size() != kAeadKeyBytes || sealed.size() < kIvBytes + kTagBytes) {
    return std::nullopt;
  }
  const size_t n = sealed.size() - kIvBytes - kTagBytes;
  std::string out(n, '\0');
  std::string tag(sealed.substr(kIvBytes + n));
  CipherCtx ctx(EVP_CIPHER_CTX_new(), &EVP_CIPHER_CTX_free);
  int len = 0;
  auto* plain = reinterpret_cast<unsigned char*>(out.data());
  if (ctx == nullptr ||
      EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, Bytes(key), Bytes(sealed)) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, Bytes(associated_data),
                        static_cast<int>(associated_data.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), plain, &len, Bytes(sealed.substr(kIvBytes)),
                        static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) != 1 ||
      EVP_DecryptFinal_ex(ctx.get(), plain + len, &len) != 1) {
    return std::nullopt;
  }
  return out;
}

}  // namespace podgate::crypto
