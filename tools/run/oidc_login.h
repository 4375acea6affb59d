// podgate-run's sign-in with the company's OpenID provider: the OAuth 2.0 Device Authorization
// Grant (RFC 8628) for `podgate-run login`, and the refresh of a cached ID token for later runs.
// The protocol steps are lib/auth/oidc.h's; this moves the bytes with the blocking HTTP client
// and keeps the user informed on stderr.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "run/token_cache.h"

namespace podgate::run {

struct ProviderOptions {
  std::string issuer;
  std::string client_id;
  std::string scopes = "openid profile email groups offline_access";
  // PEM CA bundle to verify an https provider with; empty: the system's roots.
  std::string ca_file;
  // Deadline of each HTTP request to the provider.
  absl::Duration timeout = absl::Seconds(10);
};

// Where the user is told what to do (podgate-run: stderr).
using Say = std::function<void(const std::string&)>;

// The device flow: discovery, the device authorization request, the user told where to go and
// which code to type, then the token endpoint polled every `interval` (5 s when the provider
// names none; 5 s more after each `slow_down`) until the user approves, denies
// (`access_denied`) or the code expires (`expired_token`, or its `expires_in` passed). The ID
// token is verified (signature with the keys from the provider's jwks_uri, issuer, audience =
// client id, exp/iat/nbf) before it is returned. Errors say what failed; none holds a token or
// the device code.
absl::StatusOr<CachedToken> DeviceLogin(const ProviderOptions& options, const Say& say);

// A new ID token for `cached` from its issuer's token endpoint with its refresh token, verified
// as above; the refresh token is kept when the provider issues no new one. The issuer and client
// id come from the cache; `options` gives the CA and the timeout. Errors name the step that
// failed (discovery, the token endpoint, the ID token).
absl::StatusOr<CachedToken> RefreshToken(const CachedToken& cached, const ProviderOptions& options);

// Revokes `cached`'s refresh token at its issuer's revocation endpoint (RFC 7009), so the
// provider's grant ends with the local sign-in. FailedPrecondition when there is no refresh
// token or the provider has no revocation endpoint; errors name the step that failed.
absl::Status RevokeRefreshToken(const CachedToken& cached, const ProviderOptions& options);

// Text from the provider as it may be shown on a terminal: control characters (escape
// sequences) and non-ASCII bytes become '?'.
std::string TerminalSafe(absl::string_view text);

// True when `token` expires within `margin` of `now` (or has expired).
bool NeedsRefresh(const CachedToken& token, absl::Time now,
                  absl::Duration margin = absl::Seconds(60));

}  // namespace podgate::run
