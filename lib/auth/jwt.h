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
  // The claim that names the user.
  std::string user_claim = "sub";
  // The claim that lists the user's groups (an array of strings, or absent).
  std::string groups_claim = "groups";
};

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
