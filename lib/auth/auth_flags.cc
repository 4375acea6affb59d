#include "auth/auth_flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"

ABSL_FLAG(std::string, jwt_issuer, "",
          "Required JWT `iss` claim. Empty is refused unless --jwt_allow_any_issuer. Default: "
          "none.");
ABSL_FLAG(bool, jwt_allow_any_issuer, false,
          "Accept tokens from any issuer (only for local demos). Default false.");
ABSL_FLAG(std::string, jwt_audience, "podgate",
          "Accepted JWT `aud` values, comma separated. Default \"podgate\".");
ABSL_FLAG(std::string, jwt_jwks_file, "",
          "JWKS file with the token signing keys (RSA, EC P-256, oct). Default: none.");
ABSL_FLAG(std::string, jwt_key_file, "",
          "PEM public key (RS256/ES256) or HMAC secret file (HS256, at least 32 bytes). "
          "Default: none.");
ABSL_FLAG(std::string, jwt_algorithm, "RS256",
          "Algorithm of --jwt_key_file: HS256, RS256 or ES256. Default RS256.");
ABSL_FLAG(std::string, jwt_key_id, "", "kid of --jwt_key_file. Default: none.");
ABSL_FLAG(absl::Duration, jwt_leeway, absl::Seconds(30),
          "Allowed clock skew for exp, nbf and iat (0s to 5m). Default 30s.");
ABSL_FLAG(std::string, jwt_user_claim, "sub", "Claim that names the user. Default \"sub\".");
ABSL_FLAG(std::string, jwt_groups_claim, "groups",
          "Claim that lists the user's groups. Default \"groups\".");

namespace podgate::auth {

absl::StatusOr<Verifier> VerifierFromFlags() {
  KeySet keys;
  const std::string jwks = absl::GetFlag(FLAGS_jwt_jwks_file);
  const std::string key_file = absl::GetFlag(FLAGS_jwt_key_file);
  if (jwks.empty() && key_file.empty()) {
    return absl::InvalidArgumentError(
        "--jwt_jwks_file or --jwt_key_file is required: users must be authenticated");
  }
  if (!jwks.empty()) {
    absl::StatusOr<KeySet> set = KeySet::FromJwksFile(jwks);
    if (!set.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--jwt_jwks_file: ", set.status().message()));
    }
    keys = *std::move(set);
  }
  if (!key_file.empty()) {
    absl::StatusOr<Algorithm> alg = ParseAlgorithm(absl::GetFlag(FLAGS_jwt_algorithm));
    if (!alg.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--jwt_algorithm: ", alg.status().message()));
    }
    absl::StatusOr<KeySet> set =
        *alg == Algorithm::kHS256
            ? KeySet::FromHmacSecretFile(key_file, absl::GetFlag(FLAGS_jwt_key_id))
            : KeySet::FromPemFile(key_file, *alg, absl::GetFlag(FLAGS_jwt_key_id));
    if (!set.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--jwt_key_file: ", set.status().message()));
    }
    if (absl::Status s = keys.Merge(*std::move(set)); !s.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--jwt_key_file: ", s.message()));
    }
  }
  VerifierOptions options;
  options.issuer = absl::GetFlag(FLAGS_jwt_issuer);
  if (options.issuer.empty() && !absl::GetFlag(FLAGS_jwt_allow_any_issuer)) {
    return absl::InvalidArgumentError(
        "--jwt_issuer is required (or --jwt_allow_any_issuer for a local demo)");
  }
  for (absl::string_view aud :
       absl::StrSplit(absl::GetFlag(FLAGS_jwt_audience), ',', absl::SkipWhitespace())) {
    options.audiences.emplace_back(aud);
  }
  options.leeway = absl::GetFlag(FLAGS_jwt_leeway);
  options.user_claim = absl::GetFlag(FLAGS_jwt_user_claim);
  options.groups_claim = absl::GetFlag(FLAGS_jwt_groups_claim);
  absl::StatusOr<Verifier> verifier = Verifier::Create(std::move(keys), options);
  if (!verifier.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--jwt_*: ", verifier.status().message()));
  }
  return verifier;
}

}  // namespace podgate::auth
