#include "auth/keys.h"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "auth/base64url.h"
#include "crypto/openssl_ptr.h"
#include "nlohmann/json.hpp"

namespace podgate::auth {
namespace {

// JWKS and key files are small; anything bigger is a mistake.
constexpr size_t kMaxKeyFileBytes = 1 << 20;

// Checks that `key` fits `alg`: RSA of at least kMinRsaBits for RS256, EC P-256 for ES256.
absl::Status CheckKeyFitsAlgorithm(EVP_PKEY* key, Algorithm alg, const std::string& where) {
  const int type = EVP_PKEY_get_base_id(key);
  switch (alg) {
    case Algorithm::kRS256:
      if (type != EVP_PKEY_RSA) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": RS256 needs an RSA key"));
      }
      if (EVP_PKEY_get_bits(key) < kMinRsaBits) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": RSA key has ",
                                                       EVP_PKEY_get_bits(key),
                                                       " bits; at least ", kMinRsaBits,
                                                       " are required"));
      }
      return absl::OkStatus();
    case Algorithm::kES256: {
      if (type != EVP_PKEY_EC) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ES256 needs an EC key"));
      }
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof(group),
                                         &len) != 1 ||
          std::string(group) != "prime256v1") {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": ES256 needs a P-256 key, not ", group));
      }
      return absl::OkStatus();
    }
    case Algorithm::kHS256:
      return absl::InvalidArgumentError(
          absl::StrCat(where, ": HS256 takes a secret file, not a PEM key"));
  }
  return absl::InvalidArgumentError("unknown algorithm");
}

std::optional<std::string> JsonString(const nlohmann::json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) {
    return std::nullopt;
  }
  return it->get<std::string>();
}

absl::StatusOr<std::string> B64Member(const nlohmann::json& jwk, const char* name,
                                      const std::string& where) {
  std::optional<std::string> text = JsonString(jwk, name);
  if (!text.has_value()) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": member \"", name, "\" is missing"));
  }
  std::optional<std::string> bytes = Base64UrlDecode(*text);
  if (!bytes.has_value() || bytes->empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(where, ": member \"", name, "\" is not base64url"));
  }
  return *bytes;
}

absl::StatusOr<std::shared_ptr<EVP_PKEY>> FromParams(const char* type, OSSL_PARAM_BLD* bld,
                                                     const std::string& where) {
  crypto::OsslParamPtr params(OSSL_PARAM_BLD_to_param(bld));
  crypto::EvpPkeyCtxPtr ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* key = nullptr;
  if (params == nullptr || ctx == nullptr || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, params.get()) != 1) {
    ERR_clear_error();
    return absl::InvalidArgumentError(absl::StrCat(where, ": not a valid ", type, " key"));
  }
  return crypto::SharePkey(key);
}

absl::StatusOr<Key> RsaFromJwk(const nlohmann::json& jwk, const std::string& where) {
  absl::StatusOr<std::string> n = B64Member(jwk, "n", where);
  absl::StatusOr<std::string> e = B64Member(jwk, "e", where);
  if (!n.ok()) {
    return n.status();
  }
  if (!e.ok()) {
    return e.status();
  }
  crypto::BignumPtr bn_n(BN_bin2bn(reinterpret_cast<const unsigned char*>(n->data()),
                                   static_cast<int>(n->size()), nullptr));
  crypto::BignumPtr bn_e(BN_bin2bn(reinterpret_cast<const unsigned char*>(e->data()),
                                   static_cast<int>(e->size()), nullptr));
  crypto::OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get());
  OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get());
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> pkey = FromParams("RSA", bld.get(), where);
  if (!pkey.ok()) {
    return pkey.status();
  }
  Key key;
  key.alg = Algorithm::kRS256;
  key.pkey = *pkey;
  return key;
}

absl::StatusOr<Key> EcFromJwk(const nlohmann::json& jwk, const std::string& where) {
  if (JsonString(jwk, "crv") != "P-256") {
    return absl::InvalidArgumentError(absl::StrCat(where, ": only EC curve P-256 is supported"));
  }
  absl::StatusOr<std::string> x = B64Member(jwk, "x", where);
  absl::StatusOr<std::string> y = B64Member(jwk, "y", where);
  if (!x.ok()) {
    return x.status();
  }
  if (!y.ok()) {
    return y.status();
  }
  if (x->size() != 32 || y->size() != 32) {
    return absl::InvalidArgumentError(absl::StrCat(where, ": P-256 coordinates are 32 bytes"));
  }
  const std::string point = absl::StrCat("\x04", *x, *y);
  crypto::OsslParamBldPtr bld(OSSL_PARAM_BLD_new());
  OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
  OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                   point.size());
  absl::StatusOr<std::shared_ptr<EVP_PKEY>> pkey = FromParams("EC", bld.get(), where);
  if (!pkey.ok()) {
    return pkey.status();
  }
  Key key;
  key.alg = Algorithm::kES256;
  key.pkey = *pkey;
  return key;
}

}  // namespace

const char* AlgorithmName(Algorithm alg) {
  switch (alg) {
    case Algorithm::kHS256:
      return "HS256";
    case Algorithm::kRS256:
      return "RS256";
    case Algorithm::kES256:
      return "ES256";
  }
  return "?";
}

absl::StatusOr<Algorithm> ParseAlgorithm(absl::string_view name) {
  if (name == "HS256") {
    return Algorithm::kHS256;
  }
  if (name == "RS256") {
    return Algorithm::kRS256;
  }
  if (name == "ES256") {
    return Algorithm::kES256;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("algorithm \"", name, "\" is not supported (HS256, RS256, ES256)"));
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read '", path, "': ", std::strerror(errno)));
  }
  std::string data;
  char buf[8192];
  while (in.read(buf, sizeof(buf)) || in.gcount() > 0) {
    data.append(buf, static_cast<size_t>(in.gcount()));
    if (data.size() > kMaxKeyFileBytes) {
      return absl::InvalidArgumentError(absl::StrCat("'", path, "' is larger than 1 MiB"));
    }
  }
  return data;
}

absl::StatusOr<KeySet> KeySet::FromPemFile(const std::string& path, Algorithm alg,
                                           const std::string& kid) {
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) {
    return pem.status();
  }
  auto bio = [&] {
    return crypto::BioPtr(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  };
  EVP_PKEY* raw = PEM_read_bio_PUBKEY(bio().get(), nullptr, nullptr, nullptr);
  if (raw == nullptr) {
    crypto::X509Ptr cert(PEM_read_bio_X509(bio().get(), nullptr, nullptr, nullptr));
    if (cert != nullptr) {
      raw = X509_get_pubkey(cert.get());
    }
  }
  if (raw == nullptr) {
    raw = PEM_read_bio_PrivateKey(bio().get(), nullptr, nullptr, nullptr);
  }
  ERR_clear_error();
  if (raw == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("'", path, "' holds no PEM public key, certificate or private key"));
  }
  Key key;
  key.kid = kid;
  key.alg = alg;
  key.pkey = crypto::SharePkey(raw);
  if (absl::Status s = CheckKeyFitsAlgorithm(raw, alg, absl::StrCat("'", path, "'")); !s.ok()) {
    return s;
  }
  KeySet set;
  set.keys_.push_back(std::move(key));
  return set;
}

absl::StatusOr<KeySet> KeySet::FromHmacSecretFile(const std::string& path,
                                                  const std::string& kid) {
  absl::StatusOr<std::string> secret = ReadFile(path);
  if (!secret.ok()) {
    return secret.status();
  }
  while (!secret->empty() && (secret->back() == '\n' || secret->back() == '\r')) {
    secret->pop_back();
  }
  if (secret->size() < kMinHmacSecretBytes) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "': an HS256 secret needs at least ",
                                                   kMinHmacSecretBytes, " bytes, it has ",
                                                   secret->size()));
  }
  Key key;
  key.kid = kid;
  key.alg = Algorithm::kHS256;
  key.secret = *std::move(secret);
  KeySet set;
  set.keys_.push_back(std::move(key));
  return set;
}

absl::StatusOr<KeySet> KeySet::FromJwks(absl::string_view json, const std::string& origin) {
  nlohmann::json doc = nlohmann::json::parse(json.begin(), json.end(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("keys") ||
      !doc["keys"].is_array()) {
    return absl::InvalidArgumentError(
        absl::StrCat(origin, ": not a JWKS document (want {\"keys\":[...]})"));
  }
  KeySet set;
  int index = 0;
  for (const nlohmann::json& jwk : doc["keys"]) {
    const std::string where = absl::StrCat(origin, ": keys[", index++, "]");
    if (!jwk.is_object()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": not an object"));
    }
    if (auto use = JsonString(jwk, "use"); use.has_value() && *use != "sig") {
      continue;  // An encryption key: not for verifying signatures.
    }
    const std::optional<std::string> kty = JsonString(jwk, "kty");
    absl::StatusOr<Key> key = absl::InvalidArgumentError(
        absl::StrCat(where, ": kty \"", kty.value_or(""), "\" is not supported (RSA, EC, oct)"));
    if (kty == "RSA") {
      key = RsaFromJwk(jwk, where);
    } else if (kty == "EC") {
      key = EcFromJwk(jwk, where);
    } else if (kty == "oct") {
      absl::StatusOr<std::string> k = B64Member(jwk, "k", where);
      if (!k.ok()) {
        return k.status();
      }
      if (k->size() < kMinHmacSecretBytes) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": oct key shorter than ",
                                                       kMinHmacSecretBytes, " bytes"));
      }
      Key oct;
      oct.alg = Algorithm::kHS256;
      oct.secret = *k;
      key = std::move(oct);
    }
    if (!key.ok()) {
      return key.status();
    }
    if (auto alg = JsonString(jwk, "alg"); alg.has_value()) {
      absl::StatusOr<Algorithm> parsed = ParseAlgorithm(*alg);
      if (!parsed.ok() || *parsed != key->alg) {
        return absl::InvalidArgumentError(
            absl::StrCat(where, ": alg \"", *alg, "\" does not fit kty \"", *kty, "\""));
      }
    }
    if (key->pkey != nullptr) {
      if (absl::Status s = CheckKeyFitsAlgorithm(key->pkey.get(), key->alg, where); !s.ok()) {
        return s;
      }
    }
    key->kid = JsonString(jwk, "kid").value_or("");
    if (absl::Status s = set.Add(*std::move(key)); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": ", s.message()));
    }
  }
  if (set.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(origin, ": no signing key"));
  }
  return set;
}

absl::StatusOr<KeySet> KeySet::FromJwksFile(const std::string& path) {
  absl::StatusOr<std::string> json = ReadFile(path);
  if (!json.ok()) {
    return json.status();
  }
  return FromJwks(*json, absl::StrCat("'", path, "'"));
}

absl::Status KeySet::Add(Key key) {
  for (const Key& existing : keys_) {
    if (existing.kid == key.kid) {
      return absl::InvalidArgumentError(
          key.kid.empty() ? "several keys without a kid: give each a kid"
                          : absl::StrCat("kid \"", key.kid, "\" appears twice"));
    }
  }
  keys_.push_back(std::move(key));
  return absl::OkStatus();
}

absl::Status KeySet::Merge(KeySet other) {
  for (Key& key : other.keys_) {
    if (absl::Status s = Add(std::move(key)); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<Key> LoadSigningKey(const std::string& path, Algorithm alg,
                                   const std::string& kid) {
  if (alg == Algorithm::kHS256) {
    absl::StatusOr<KeySet> set = KeySet::FromHmacSecretFile(path, kid);
    if (!set.ok()) {
      return set.status();
    }
    return set->keys().front();
  }
  absl::StatusOr<std::string> pem = ReadFile(path);
  if (!pem.ok()) {
    return pem.status();
  }
  crypto::BioPtr bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  EVP_PKEY* raw = PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr);
  ERR_clear_error();
  if (raw == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("'", path, "' holds no PEM private key"));
  }
  Key key;
  key.kid = kid;
  key.alg = alg;
  key.pkey = crypto::SharePkey(raw);
  if (absl::Status s = CheckKeyFitsAlgorithm(raw, alg, absl::StrCat("'", path, "'")); !s.ok()) {
    return s;
  }
  return key;
}

}  // namespace podgate::auth
