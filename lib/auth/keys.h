// Verification and signing keys for JWTs: HMAC secrets, RSA and EC P-256 keys from PEM files,
// and JSON Web Key Sets (RFC 7517) as an OIDC provider publishes them.
//
// Every key is pinned to one algorithm when it is loaded; a token naming another algorithm is
// refused, which is what defeats key confusion (an RSA public key used as an HMAC secret).
#pragma once

#include <openssl/evp.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podgate::auth {

enum class Algorithm { kHS256, kRS256, kES256 };

// "HS256", "RS256", "ES256".
const char* AlgorithmName(Algorithm alg);
// Parses one of the three names; anything else (including "none") is InvalidArgument.
absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name);

// One key, pinned to one algorithm.
struct Key {
  // The key id tokens name in their `kid` header; may be empty for a single-key set.
  std::string kid;
  Algorithm alg = Algorithm::kHS256;
  // The HMAC secret (HS256 only).
  std::string secret;
  // The public (verification) or private (signing) key (RS256, ES256).
  std::shared_ptr<EVP_PKEY> pkey;
};

// The minimum HMAC secret length, in bytes (RFC 7518 §3.2: at least the hash size).
inline constexpr size_t kMinHmacSecretBytes = 32;
// The minimum RSA modulus, in bits.
inline constexpr int kMinRsaBits = 2048;

// Loads verification keys. Errors name the file and say what is wrong.
class KeySet {
 public:
  KeySet() = default;

  // A PEM public key or certificate (RS256 or ES256), or a PEM private key (its public half
  // is used). The algorithm must fit the key type.
  static absl::StatusOr<KeySet> FromPemFile(const std::string& path, Algorithm alg,
                                            const std::string& kid);
  // A file whose bytes (trailing newline stripped) are the HS256 secret.
  static absl::StatusOr<KeySet> FromHmacSecretFile(const std::string& path,
                                                   const std::string& kid);
  // A JWKS document: {"keys":[...]} with RSA, EC P-256 and oct keys; keys with `use` other
  // than "sig" are skipped, keys without `alg` get the only algorithm their type allows.
  static absl::StatusOr<KeySet> FromJwks(absl::string_view json, const std::string& origin);
  static absl::StatusOr<KeySet> FromJwksFile(const std::string& path);

  // Adds every key of `other` (for several --jwt_key flags). Duplicate kids are an error.
  absl::Status Merge(KeySet other);
  absl::Status Add(Key key);

  const std::vector<Key>& keys() const { return keys_; }
  bool empty() const { return keys_.empty(); }

 private:
  std::vector<Key> keys_;
};

// Loads a signing key (for tokens minted by podgate's tools and tests): a PEM private key
// (RS256/ES256) or an HMAC secret file (HS256).
absl::StatusOr<Key> LoadSigningKey(const std::string& path, Algorithm alg,
                                   const std::string& kid);

// Reads a whole file; errors name the file and the reason.
absl::StatusOr<std::string> ReadFile(const std::string& path);

}  // namespace podgate::auth
