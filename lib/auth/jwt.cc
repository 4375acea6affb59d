#include "auth/jwt.h"

#include <openssl/crypto.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/base64url.h"
#include "crypto/openssl_ptr.h"

namespace podgate::auth {
namespace {

constexpr char kReasonPayload[] = "type.podgate.io/auth.failure_reason";

absl::Status Refuse(const std::string& reason, const std::string& message) {
  absl::Status status = absl::UnauthenticatedError(message);
  status.SetPayload(kReasonPayload, absl::Cord(reason));
  return status;
}

std::string HmacSha256(const std::string& secret, absl::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<char*>(out), len);
}

// JOSE ES256 signatures are R||S, 32 bytes each; OpenSSL wants DER.
std::optional<std::string> RawEcdsaToDer(absl::string_view raw) {
  if (raw.size() != 64) {
    return std::nullopt;
  }
  crypto::EcdsaSigPtr sig(ECDSA_SIG_new());
  BIGNUM* r = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()), 32, nullptr);
  BIGNUM* s = BN_bin2bn(reinterpret_cast<const unsigned char*>(raw.data()) + 32, 32, nullptr);
  ECDSA_SIG_set0(sig.get(), r, s);
  unsigned char* der = nullptr;
  const int len = i2d_ECDSA_SIG(sig.get(), &der);
  if (len <= 0) {
    return std::nullopt;
  }
  std::string out(reinterpret_cast<char*>(der), static_cast<size_t>(len));
  OPENSSL_free(der);
  return out;
}

std::optional<std::string> DerEcdsaToRaw(const std::string& der) {
  const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
  crypto::EcdsaSigPtr sig(d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der.size())));
  if (sig == nullptr) {
    return std::nullopt;
  }
  const BIGNUM* r = nullptr;
  const BIGNUM* s = nullptr;
  ECDSA_SIG_get0(sig.get(), &r, &s);
  std::string out(64, '\0');
  if (BN_bn2binpad(r, reinterpret_cast<unsigned char*>(out.data()), 32) != 32 ||
      BN_bn2binpad(s, reinterpret_cast<unsigned char*>(out.data()) + 32, 32) != 32) {
    return std::nullopt;
  }
  return out;
}

bool VerifyDigestSignature(EVP_PKEY* key, absl::string_view data, absl::string_view sig) {
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  const bool ok =
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
      EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                       reinterpret_cast<const unsigned char*>(data.data()), data.size()) == 1;
  ERR_clear_error();
  return ok;
}

bool VerifySignature(const Key& key, absl::string_view signing_input, absl::string_view sig) {
  switch (key.alg) {
    case Algorithm::kHS256: {
      const std::string expected = HmacSha256(key.secret, signing_input);
      return sig.size() == expected.size() &&
             CRYPTO_memcmp(sig.data(), expected.data(), expected.size()) == 0;
    }
    case Algorithm::kRS256:
      return VerifyDigestSignature(key.pkey.get(), signing_input, sig);
    case Algorithm::kES256: {
      std::optional<std::string> der = RawEcdsaToDer(sig);
      return der.has_value() && VerifyDigestSignature(key.pkey.get(), signing_input, *der);
    }
  }
  return false;
}

// Reads a NumericDate claim; absent → nullopt; present but not a finite number → error.
absl::StatusOr<std::optional<absl::Time>> NumericDate(const nlohmann::json& claims,
                                                      const char* name) {
  auto it = claims.find(name);
  if (it == claims.end()) {
    return std::optional<absl::Time>();
  }
  if (!it->is_number() || !std::isfinite(it->get<double>())) {
    return Refuse("malformed", absl::StrCat("claim '", name, "' is not a NumericDate"));
  }
  // Checked before the conversion: a double beyond int64 does not convert (1e20 became the
  // most negative int64, a time long past, so an nbf of 1e20 passed; 1e300 was undefined
  // behaviour, found by tests/fuzz/jwt_fuzzer.cc). No real token predates 1970 or outlives the
  // year 9999.
  const double seconds = it->get<double>();
  constexpr double kLatest = 253402300799.0;  // 9999-12-31T23:59:59Z
  if (seconds < 0 || seconds > kLatest) {
    return Refuse("malformed",
                  absl::StrCat("claim '", name, "' is not a NumericDate between 1970 and 9999"));
  }
  return std::optional<absl::Time>(absl::FromUnixSeconds(static_cast<int64_t>(seconds)));
}

// Whether a required claim's value matches: an equal string, an array of strings holding it,
// or a boolean written "true"/"false".
bool ClaimHolds(const nlohmann::json* claim, const std::string& want) {
  if (claim == nullptr) {
    return false;
  }
  if (claim->is_string()) {
    return claim->get<std::string>() == want;
  }
  if (claim->is_boolean()) {
    return want == (claim->get<bool>() ? "true" : "false");
  }
  if (claim->is_array()) {
    for (const auto& v : *claim) {
      if (v.is_string() && v.get<std::string>() == want) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace

absl::StatusOr<Verifier> Verifier::Create(KeySet keys, VerifierOptions options, Clock clock) {
  if (keys.empty()) {
    return absl::InvalidArgumentError("no verification key configured");
  }
  return Create(std::make_shared<StaticKeySource>(std::move(keys)), std::move(options),
                std::move(clock));
}

absl::StatusOr<Verifier> Verifier::Create(std::shared_ptr<KeySource> keys, VerifierOptions options,
                                          Clock clock) {
  if (keys == nullptr) {
    return absl::InvalidArgumentError("no verification key source configured");
  }
  if (options.leeway < absl::ZeroDuration() || options.leeway > kMaxLeeway) {
    return absl::InvalidArgumentError(absl::StrCat(
        "clock skew leeway ", absl::FormatDuration(options.leeway), " is out of range (0s to 5m)"));
  }
  if (options.user_claim.empty()) {
    return absl::InvalidArgumentError("the user claim name is empty");
  }
  if (options.groups_claim.empty()) {
    return absl::InvalidArgumentError("the groups claim name is empty");
  }
  if (options.max_groups == 0) {
    return absl::InvalidArgumentError("the group limit is 0");
  }
  if (options.groups_prefix.size() >= kMaxGroupBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the groups prefix is longer than ", kMaxGroupBytes - 1, " bytes"));
  }
  for (const auto& [name, value] : options.required_claims) {
    if (name.empty()) {
      return absl::InvalidArgumentError("a required claim has an empty name");
    }
  }
  return Verifier(std::move(keys), std::move(options), std::move(clock));
}

absl::StatusOr<VerifiedToken> Verifier::Verify(absl::string_view token) const {
  if (token.size() > kMaxTokenBytes) {
    return Refuse("too_large", absl::StrCat("token is larger than ", kMaxTokenBytes, " bytes"));
  }
  std::vector<absl::string_view> parts = absl::StrSplit(token, '.');
  if (parts.size() != 3 || parts[0].empty() || parts[1].empty()) {
    return Refuse("malformed", "token is not a compact JWS (header.payload.signature)");
  }
  std::optional<std::string> header_json = Base64UrlDecode(parts[0]);
  std::optional<std::string> payload_json = Base64UrlDecode(parts[1]);
  std::optional<std::string> signature = Base64UrlDecode(parts[2]);
  if (!header_json || !payload_json || !signature) {
    return Refuse("malformed", "token part is not base64url");
  }
  const nlohmann::json header = nlohmann::json::parse(*header_json, nullptr, false);
  if (header.is_discarded() || !header.is_object()) {
    return Refuse("malformed", "token header is not a JSON object");
  }
  auto alg_it = header.find("alg");
  if (alg_it == header.end() || !alg_it->is_string()) {
    return Refuse("malformed", "token header has no alg");
  }
  absl::StatusOr<Algorithm> alg = ParseAlgorithm(alg_it->get<std::string>());
  if (!alg.ok()) {
    return Refuse("unsupported_algorithm", std::string(alg.status().message()));
  }
  if (header.contains("crit")) {
    return Refuse("malformed", "token header has crit extensions, none are supported");
  }
  if (auto typ = header.find("typ"); typ != header.end()) {
    const std::string t = typ->is_string() ? absl::AsciiStrToLower(typ->get<std::string>()) : "";
    if (t != "jwt" && t != "at+jwt") {
      return Refuse("bad_type", "token typ is not JWT");
    }
  }
  // Choose the key by kid; without a kid only a single-key set is unambiguous. One snapshot of
  // the set serves the whole verification.
  const std::shared_ptr<const KeySet> keys = keys_->Current();
  if (keys == nullptr || keys->empty()) {
    return Refuse("keys_unavailable", keys_->Unavailable());
  }
  const Key* key = nullptr;
  auto kid_it = header.find("kid");
  if (kid_it != header.end()) {
    if (!kid_it->is_string()) {
      return Refuse("malformed", "token kid is not a string");
    }
    const std::string kid = kid_it->get<std::string>();
    for (const Key& k : keys->keys()) {
      if (k.kid == kid) {
        key = &k;
        break;
      }
    }
    if (key == nullptr) {
      return Refuse("unknown_key", absl::StrCat("token names a key id that is not configured",
                                                keys_->UnknownKey(kid)));
    }
  } else if (keys->keys().size() == 1) {
    key = &keys->keys().front();
  } else {
    return Refuse("unknown_key", "token has no kid and several keys are configured");
  }
  if (key->alg != *alg) {
    return Refuse("unsupported_algorithm",
                  absl::StrCat("token alg ", AlgorithmName(*alg), " does not match the key's ",
                               AlgorithmName(key->alg)));
  }
  const absl::string_view signing_input = token.substr(0, parts[0].size() + 1 + parts[1].size());
  if (!VerifySignature(*key, signing_input, *signature)) {
    return Refuse("bad_signature", "token signature does not verify");
  }

  // Only now, with the signature good, look at the claims.
  nlohmann::json claims = nlohmann::json::parse(*payload_json, nullptr, false);
  if (claims.is_discarded() || !claims.is_object()) {
    return Refuse("malformed", "token payload is not a JSON object");
  }
  const absl::Time now = clock_();
  absl::StatusOr<std::optional<absl::Time>> exp = NumericDate(claims, "exp");
  absl::StatusOr<std::optional<absl::Time>> nbf = NumericDate(claims, "nbf");
  absl::StatusOr<std::optional<absl::Time>> iat = NumericDate(claims, "iat");
  for (const auto* s : {&exp, &nbf, &iat}) {
    if (!s->ok()) {
      return s->status();
    }
  }
  if (!exp->has_value()) {
    return Refuse("missing_claim", "token has no exp claim");
  }
  if (now >= **exp + options_.leeway) {
    return Refuse("expired", absl::StrCat("token expired at ", absl::FormatTime(**exp)));
  }
  if (nbf->has_value() && now + options_.leeway < **nbf) {
    return Refuse("not_yet_valid", absl::StrCat("token is not valid before ",
                                                absl::FormatTime(**nbf)));
  }
  if (iat->has_value() && now + options_.leeway < **iat) {
    return Refuse("not_yet_valid", "token was issued in the future");
  }
  if (!options_.issuer.empty()) {
    auto iss = claims.find("iss");
    if (iss == claims.end() || !iss->is_string() || iss->get<std::string>() != options_.issuer) {
      return Refuse("bad_issuer", "token issuer is not the configured issuer");
    }
  }
  if (!options_.audiences.empty()) {
    std::vector<std::string> auds;
    auto aud = claims.find("aud");
    if (aud != claims.end() && aud->is_string()) {
      auds.push_back(aud->get<std::string>());
    } else if (aud != claims.end() && aud->is_array()) {
      for (const auto& a : *aud) {
        if (a.is_string()) {
          auds.push_back(a.get<std::string>());
        }
      }
    }
    bool match = false;
    for (const std::string& a : auds) {
      for (const std::string& want : options_.audiences) {
        match = match || a == want;
      }
    }
    if (!match) {
      return Refuse("bad_audience", "token audience does not include this service");
    }
  }
  for (const auto& [name, value] : options_.required_claims) {
    if (!ClaimHolds(FindClaim(claims, name), value)) {
      return Refuse("missing_claim",
                    absl::StrCat("token lacks the required claim '", name, "=", value, "'"));
    }
  }
  const nlohmann::json* user = FindClaim(claims, options_.user_claim);
  if (user == nullptr || !user->is_string() || user->get<std::string>().empty()) {
    return Refuse("missing_claim",
                  absl::StrCat("token has no string claim '", options_.user_claim, "'"));
  }
  VerifiedToken out;
  out.principal.set_user(absl::StrCat(options_.user_prefix, user->get<std::string>()));
  if (const nlohmann::json* sub = FindClaim(claims, "sub"); sub != nullptr && sub->is_string()) {
    out.principal.set_subject(sub->get<std::string>());
  }
  if (const nlohmann::json* groups = FindClaim(claims, options_.groups_claim);
      groups != nullptr && !groups->is_null()) {
    std::vector<const nlohmann::json*> names;
    if (groups->is_string()) {
      names.push_back(groups);
    } else if (groups->is_array()) {
      for (const auto& g : *groups) {
        names.push_back(&g);
      }
    } else {
      return Refuse("malformed", absl::StrCat("claim '", options_.groups_claim,
                                              "' is not a string or an array of strings"));
    }
    if (names.size() > options_.max_groups) {
      return Refuse("malformed",
                    absl::StrCat("claim '", options_.groups_claim, "' lists ", names.size(),
                                 " groups, more than the limit of ", options_.max_groups));
    }
    for (const nlohmann::json* g : names) {
      if (!g->is_string() || g->get<std::string>().empty()) {
        return Refuse("malformed", absl::StrCat("claim '", options_.groups_claim,
                                                "' holds a group that is not a non-empty string"));
      }
      std::string group = absl::StrCat(options_.groups_prefix, g->get<std::string>());
      if (group.size() > kMaxGroupBytes) {
        return Refuse("malformed",
                      absl::StrCat("claim '", options_.groups_claim,
                                   "' holds a group name longer than ", kMaxGroupBytes, " bytes"));
      }
      out.principal.add_groups(std::move(group));
    }
  }
  if (auto iss = claims.find("iss"); iss != claims.end() && iss->is_string()) {
    out.principal.set_issuer(iss->get<std::string>());
  }
  out.expires = **exp;
  out.claims = std::move(claims);
  return out;
}

const nlohmann::json* FindClaim(const nlohmann::json& claims, absl::string_view path) {
  if (!claims.is_object() || path.empty()) {
    return nullptr;
  }
  if (auto it = claims.find(std::string(path)); it != claims.end()) {
    return &*it;
  }
  if (!absl::StrContains(path, '.')) {
    return nullptr;
  }
  const nlohmann::json* at = &claims;
  for (absl::string_view part : absl::StrSplit(path, '.')) {
    if (!at->is_object() || part.empty()) {
      return nullptr;
    }
    auto it = at->find(std::string(part));
    if (it == at->end()) {
      return nullptr;
    }
    at = &*it;
  }
  return at;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseRequiredClaims(
    absl::string_view text) {
  std::vector<std::pair<std::string, std::string>> out;
  for (absl::string_view entry : absl::StrSplit(text, ',', absl::SkipWhitespace())) {
    entry = absl::StripAsciiWhitespace(entry);
    const size_t eq = entry.find('=');
    if (eq == absl::string_view::npos || eq == 0) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", entry, "' is not name=value (e.g. email_verified=true)"));
    }
    out.emplace_back(std::string(absl::StripAsciiWhitespace(entry.substr(0, eq))),
                     std::string(absl::StripAsciiWhitespace(entry.substr(eq + 1))));
  }
  return out;
}

std::string AuthFailureReason(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kReasonPayload);
  return payload.has_value() ? std::string(*payload) : "";
}

absl::StatusOr<std::string> Sign(const nlohmann::json& claims, const Key& key) {
  nlohmann::json header = {{"alg", AlgorithmName(key.alg)}, {"typ", "JWT"}};
  if (!key.kid.empty()) {
    header["kid"] = key.kid;
  }
  const std::string input =
      absl::StrCat(Base64UrlEncode(header.dump()), ".", Base64UrlEncode(claims.dump()));
  std::string sig;
  if (key.alg == Algorithm::kHS256) {
    sig = HmacSha256(key.secret, input);
  } else {
    crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
    size_t len = 0;
    if (EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key.pkey.get()) != 1 ||
        EVP_DigestSign(ctx.get(), nullptr, &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
      ERR_clear_error();
      return absl::InvalidArgumentError("the key cannot sign (is it a private key?)");
    }
    std::string der(len, '\0');
    if (EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                       reinterpret_cast<const unsigned char*>(input.data()), input.size()) != 1) {
      ERR_clear_error();
      return absl::InternalError("signing failed");
    }
    der.resize(len);
    if (key.alg == Algorithm::kES256) {
      std::optional<std::string> raw = DerEcdsaToRaw(der);
      if (!raw.has_value()) {
        return absl::InternalError("ECDSA signature conversion failed");
      }
      sig = *raw;
    } else {
      sig = der;
    }
  }
  return absl::StrCat(input, ".", Base64UrlEncode(sig));
}

std::optional<std::string> BearerToken(absl::string_view header_value) {
  header_value = absl::StripLeadingAsciiWhitespace(header_value);
  if (header_value.size() < 7 || !absl::EqualsIgnoreCase(header_value.substr(0, 6), "bearer") ||
      header_value[6] != ' ') {
    return std::nullopt;
  }
  absl::string_view rest = absl::StripAsciiWhitespace(header_value.substr(7));
  if (rest.empty()) {
    return std::nullopt;
  }
  return std::string(rest);
}

}  // namespace podgate::auth
