// The end-user authentication flags shared by edge and exec, and the verifier they build.
//
//   --jwt_issuer        required `iss` (empty accepts any issuer; refused unless
//                       --jwt_allow_any_issuer)
//   --jwt_audience      accepted `aud` values, comma separated (default "podgate")
//   --jwt_jwks_url      the identity provider's JWKS URL, refreshed in the background
//                       (--jwt_jwks_ca_file, --jwt_jwks_refresh_min/_max, --jwt_jwks_max_stale,
//                       --jwt_jwks_timeout; see auth/jwks_url.h)
//   --jwt_jwks_file     a JWKS document (e.g. an OIDC provider's keys, mounted from a Secret)
//   --jwt_key_file      a PEM public key (RS256/ES256) or an HMAC secret file (HS256)
//   --jwt_algorithm     the algorithm of --jwt_key_file: HS256, RS256 or ES256
//   --jwt_key_id        the kid of --jwt_key_file (optional)
//   --jwt_leeway        clock skew allowed for exp/nbf/iat (default 30s, at most 5m)
//   --jwt_user_claim    the claim naming the user (default "sub")
//   --jwt_groups_claim  the claim listing groups (default "groups"); both claims may be
//                       dot-separated paths (realm_access.roles)
//   --jwt_user_prefix, --jwt_groups_prefix   prepended to the names from the token
//   --jwt_required_claims  name=value pairs every token must carry (email_verified=true)
//   --jwt_max_groups    tokens listing more groups are refused (default 256)
#pragma once

#include <memory>

#include "absl/status/statusor.h"
#include "auth/jwt.h"
#include "prometheus/registry.h"

namespace podgate::auth {

// Builds the verifier from the flags; errors name the flag. A JWKS URL source registers its
// metrics on `registry` when given.
absl::StatusOr<Verifier> VerifierFromFlags(
    std::shared_ptr<prometheus::Registry> registry = nullptr);

}  // namespace podgate::auth
