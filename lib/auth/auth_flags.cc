#include "auth/auth_flags.h"

#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "auth/jwks_url.h"

ABSL_FLAG(std::string, jwt_issuer, "",
          "Required JWT `iss` claim. Empty is refused unless --jwt_allow_any_issuer. Default: "
          "none.");
ABSL_FLAG(bool, jwt_allow_any_issuer, false,
          "Accept tokens from any issuer (only for local demos). Default false.");
ABSL_FLAG(std::string, jwt_audience, "podgate",
          "Accepted JWT `aud` values, comma separated. Default \"podgate\".");
ABSL_FLAG(std::string, jwt_jwks_file, "",
          "JWKS file with the token signing keys (RSA, EC P-256, oct). Default: none.");
ABSL_FLAG(std::string, jwt_jwks_url, "",
          "URL of the identity provider's JWKS (its jwks_uri): https://, or http:// to a "
          "loopback address. Fetched at start and refreshed in the background (cache headers, "
          "unknown kid), so key rotation needs no restart. Not combinable with --jwt_jwks_file "
          "or --jwt_key_file. Default: none.");
ABSL_FLAG(std::string, jwt_jwks_ca_file, "",
          "PEM CA bundle to verify --jwt_jwks_url's server with. Default: the system's roots.");
ABSL_FLAG(absl::Duration, jwt_jwks_refresh_min, absl::Seconds(30),
          "Shortest time between two fetches of --jwt_jwks_url (also the limit on fetches "
          "triggered by unknown key ids; 1s to 1h). Default 30s.");
ABSL_FLAG(absl::Duration, jwt_jwks_refresh_max, absl::Hours(1),
          "Longest time a fetched JWKS is used before it is fetched again, whatever its cache "
          "headers say (at least --jwt_jwks_refresh_min, at most 24h). Default 1h.");
ABSL_FLAG(absl::Duration, jwt_jwks_max_stale, absl::Hours(2),
          "How long the last good JWKS stays in use while the provider cannot be reached; after "
          "that every token is refused (at least --jwt_jwks_refresh_max, at most 7 days). "
          "Default 2h.");
ABSL_FLAG(absl::Duration, jwt_jwks_timeout, absl::Seconds(10),
          "Deadline of one JWKS fetch (connect, TLS, request, response; 1s to 1m). Default 10s.");
ABSL_FLAG(std::string, jwt_key_file, "",
          "PEM public key (RS256/ES256) or HMAC secret file (HS256, at least 32 bytes). "
          "Default: none.");
ABSL_FLAG(std::string, jwt_algorithm, "RS256",
          "Algorithm of --jwt_key_file: HS256, RS256 or ES256. Default RS256.");
ABSL_FLAG(std::string, jwt_key_id, "", "kid of --jwt_key_file. Default: none.");
ABSL_FLAG(absl::Duration, jwt_leeway, absl::Seconds(30),
          "Allowed clock skew for exp, nbf and iat (0s to 5m). Default 30s.");
ABSL_FLAG(std::string, jwt_user_claim, "sub",
          "Claim that names the user; a dot-separated path reaches a nested claim (a top-level "
          "claim of that exact name wins). Default \"sub\".");
ABSL_FLAG(std::string, jwt_groups_claim, "groups",
          "Claim that lists the user's groups (an array of strings or one string); a "
          "dot-separated path reaches a nested claim, e.g. realm_access.roles. Default "
          "\"groups\".");
ABSL_FLAG(std::string, jwt_user_prefix, "",
          "Prepended to the user name from the token, e.g. \"oidc:\". Default: none.");
ABSL_FLAG(std::string, jwt_groups_prefix, "",
          "Prepended to every group name from the token, e.g. \"oidc:\". Default: none.");
ABSL_FLAG(std::string, jwt_required_claims, "",
          "Claims every token must carry, name=value, comma separated (e.g. "
          "email_verified=true,hd=example.com); a name may be a dot-separated path. Default: "
          "none.");
ABSL_FLAG(int32_t, jwt_max_groups, 256,
          "Tokens listing more groups are refused (1 to 4096). Default 256.");

namespace podgate::auth {

namespace {

absl::Status InRange(const char* flag, absl::Duration value, absl::Duration low,
                     absl::Duration high) {
  if (value < low || value > high) {
    return absl::InvalidArgumentError(absl::StrCat(flag, " ", absl::FormatDuration(value),
                                                   " is out of range (", absl::FormatDuration(low),
                                                   " to ", absl::FormatDuration(high), ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<KeySource>> JwksUrlFromFlags(
    std::shared_ptr<prometheus::Registry> registry) {
  JwksUrlOptions o;
  o.url = absl::GetFlag(FLAGS_jwt_jwks_url);
  o.ca_file = absl::GetFlag(FLAGS_jwt_jwks_ca_file);
  o.min_refresh = absl::GetFlag(FLAGS_jwt_jwks_refresh_min);
  o.max_refresh = absl::GetFlag(FLAGS_jwt_jwks_refresh_max);
  o.max_stale = absl::GetFlag(FLAGS_jwt_jwks_max_stale);
  o.timeout = absl::GetFlag(FLAGS_jwt_jwks_timeout);
  o.initial_wait = o.timeout;
  for (absl::Status s : {
           InRange("--jwt_jwks_refresh_min", o.min_refresh, absl::Seconds(1), absl::Hours(1)),
           InRange("--jwt_jwks_refresh_max", o.max_refresh, o.min_refresh, absl::Hours(24)),
           InRange("--jwt_jwks_max_stale", o.max_stale, o.max_refresh, absl::Hours(24 * 7)),
           InRange("--jwt_jwks_timeout", o.timeout, absl::Seconds(1), absl::Minutes(1)),
       }) {
    if (!s.ok()) {
      return s;
    }
  }
  if (!o.ca_file.empty()) {
    if (absl::StatusOr<std::string> ca = ReadFile(o.ca_file); !ca.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--jwt_jwks_ca_file: ", ca.status().message()));
    }
  }
  absl::StatusOr<std::shared_ptr<JwksUrlSource>> source =
      JwksUrlSource::Start(std::move(o), std::move(registry));
  if (!source.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--jwt_jwks_url: ", source.status().message()));
  }
  return std::shared_ptr<KeySource>(*std::move(source));
}

}  // namespace

absl::StatusOr<Verifier> VerifierFromFlags(std::shared_ptr<prometheus::Registry> registry) {
  KeySet keys;
  const std::string jwks = absl::GetFlag(FLAGS_jwt_jwks_file);
  const std::string key_file = absl::GetFlag(FLAGS_jwt_key_file);
  const std::string jwks_url = absl::GetFlag(FLAGS_jwt_jwks_url);
  if (jwks.empty() && key_file.empty() && jwks_url.empty()) {
    return absl::InvalidArgumentError(
        "--jwt_jwks_url, --jwt_jwks_file or --jwt_key_file is required: users must be "
        "authenticated");
  }
  if (!jwks_url.empty() && (!jwks.empty() || !key_file.empty())) {
    return absl::InvalidArgumentError(
        "--jwt_jwks_url cannot be combined with --jwt_jwks_file or --jwt_key_file: one source "
        "of keys");
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
  options.user_prefix = absl::GetFlag(FLAGS_jwt_user_prefix);
  options.groups_prefix = absl::GetFlag(FLAGS_jwt_groups_prefix);
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> required =
      ParseRequiredClaims(absl::GetFlag(FLAGS_jwt_required_claims));
  if (!required.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jwt_required_claims: ", required.status().message()));
  }
  options.required_claims = *std::move(required);
  const int32_t max_groups = absl::GetFlag(FLAGS_jwt_max_groups);
  if (max_groups < 1 || max_groups > 4096) {
    return absl::InvalidArgumentError(
        absl::StrCat("--jwt_max_groups ", max_groups, " is out of range (1 to 4096)"));
  }
  options.max_groups = static_cast<size_t>(max_groups);
  absl::StatusOr<Verifier> verifier = absl::InvalidArgumentError("no keys");
  if (!jwks_url.empty()) {
    absl::StatusOr<std::shared_ptr<KeySource>> source = JwksUrlFromFlags(std::move(registry));
    if (!source.ok()) {
      return source.status();
    }
    verifier = Verifier::Create(*std::move(source), options);
  } else {
    verifier = Verifier::Create(std::move(keys), options);
  }
  if (!verifier.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--jwt_*: ", verifier.status().message()));
  }
  return verifier;
}

}  // namespace podgate::auth
