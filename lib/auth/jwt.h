// JWT (RFC 7519) verification for end-user credentials, shared by edge and exec, following
// RFC 8725 (JWT Best Current Practices):
//
// - algorithms pinned per key (HS256, RS256, ES256); `none` and every other name refused;
//   a token whose `alg` differs from its key's pinned algorithm is refused (no key confusion);
// - keys chosen by `kid` from a configured set; `jku`, `x5u`, `jwk` headers are never
//   followed; a `crit` header is refused;
// - `exp` required; `nbf` and `iat` checked; clock skew bounded (at most 5 minutes);
// - `iss` and `aud` checked when configured (and configuring them is the norm);
// - `typ`, when present, must be "JWT" or "at+jwt";
// - strict compact serialization: three base64url parts, no padding, size-capped.
//
// A refused token yields UNAUTHENTICATED with a machine-readable reason (AuthFailureReason)
// for metrics and audit, and a message that never contains the token.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/key_source.h"
#include "auth/keys.h"
#include "nlohmann/json.hpp"
#include "podgate/common/v1/common.pb.h"

namespace podgate::auth {

// The largest token accepted, in bytes.
inline constexpr size_t kMaxTokenBytes = 16 * 1024;
// The largest clock skew a verifier may be configured with.
inline constexpr absl::Duration kMaxLeeway = absl::Minutes(5);

struct VerifierOptions {
  // Required `iss` value; empty accepts any issuer (not recommended).
  std::string issuer;
  // Accepted `aud` values; the token's aud must contain one. Empty accepts any audience.
  std::vector<std::string> audiences;
  // Allowed clock skew for exp/nbf/iat, 0 to kMaxLeeway.
  absl::Duration leeway = absl::Seconds(30);
  // The claim that names the user (a string). A name that is not a top-level claim is read as
  // a dot-separated path into nested objects: "ext.login".
  std::string user_claim = "sub";
  // The claim that lists the user's groups: an array of strings, one string, or absent. Also a
  // path: "realm_access.roles" (Keycloak). An exact top-level name wins over a path, so
  // namespaced claims with dots ("https://example.com/groups") keep working.
  std::string groups_claim = "groups";
  // Prepended to the user name and to every group name ("oidc:"), so that a provider's names
  // cannot collide with names the policy gives other meanings.
  std::string user_prefix;
  std::string groups_prefix;
  // Claims every token must carry, as (path, value): a string claim equal to the value, an
  // array of strings containing it, or a boolean matching "true"/"false"
  // ("email_verified=true"). A token missing one is refused with reason "missing_claim".
  std::vector<std::pair<std::string, std::string>> required_claims;
  // A token listing more groups than this, or a group name longer than kMaxGroupBytes, is
  // refused ("malformed"): every group travels with every policy question and audit record.
  size_t max_groups = 256;
};

// The longest group name accepted, in bytes (prefix included).
inline constexpr size_t kMaxGroupBytes = 256;

// The claim at `path` in `claims`: the top-level claim of that exact name if there is one,
// otherwise the dot-separated path through nested objects. nullptr when absent.
const nlohmann::json* FindClaim(const nlohmann::json& claims, absl::string_view path);

// Parses "name=value,name=value" (--jwt_required_claims). Names are claim paths as above;
// a value may be empty only when written as "name=". Errors name the bad entry.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseRequiredClaims(
    absl::string_view text);

// A token that passed every check.
struct VerifiedToken {
  podgate::common::v1::Principal principal;
  absl::Time expires;
  // Claims as decoded, for callers needing more (e.g. a session id claim).
  nlohmann::json claims;
};

using Clock = std::function<absl::Time()>;

class Verifier {
 public:
  // Fails when the options are unsafe or inconsistent (no keys, leeway out of range).
  static absl::StatusOr<Verifier> Create(KeySet keys, VerifierOptions options,
                                         Clock clock = &absl::Now);
  // Keys from a source that may change while the process runs (a JWKS URL): each Verify reads
  // the source's current set; a token naming an unknown kid tells the source, which may refresh.
  static absl::StatusOr<Verifier> Create(std::shared_ptr<KeySource> keys, VerifierOptions options,
                                         Clock clock = &absl::Now);

  // Verifies a compact JWS (without a "Bearer " prefix).
  absl::StatusOr<VerifiedToken> Verify(absl::string_view token) const;

  const VerifierOptions& options() const { return options_; }

  // A token's unknown kid has started a fetch of the key set that has not finished yet
  // (KeySource::FetchPending): verify again once this is false.
  bool KeysBeingFetched() const { return keys_->FetchPending(); }

 private:
  Verifier(std::shared_ptr<KeySource> keys, VerifierOptions options, Clock clock)
      : keys_(std::move(keys)), options_(std::move(options)), clock_(std::move(clock)) {}

  std::shared_ptr<KeySource> keys_;
  VerifierOptions options_;
  Clock clock_;
};

// The reason code attached to a refusal: "malformed", "unsupported_algorithm",
// "unknown_key", "bad_signature", "expired", "not_yet_valid", "bad_issuer", "bad_audience",
// "missing_claim", "bad_type", "too_large", "keys_unavailable". Empty for other statuses.
std::string AuthFailureReason(const absl::Status& status);

// Signs `claims` with `key` (HS256/RS256/ES256; RS/ES need a private key). For tokens minted
// by podgate's token tool, the demo and tests.
absl::StatusOr<std::string> Sign(const nlohmann::json& claims, const Key& key);

// Strips a leading "Bearer " (case-insensitive scheme, one or more spaces); returns the rest,
// or nullopt when the text is not a bearer credential.
std::optional<std::string> BearerToken(absl::string_view header_value);

}  // namespace podgate::auth
