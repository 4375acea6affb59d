// The OpenID Connect relying party's protocol steps, shared by edge (the authorization code flow
// with PKCE for the page) and podgate-run (the device authorization grant, RFC 8628):
//
// - discovery (OpenID Connect Discovery 1.0): the document's `issuer` must equal the configured
//   issuer exactly, every endpoint must be https (http only when the issuer itself is a
//   loopback http URL: tests and the demo), S256 must be offered when methods are listed;
// - the authorization request: `state` and `nonce` (32 random bytes each), PKCE S256 (RFC 7636);
// - the callback: `state` compared in constant time, an `error` from the provider reported, the
//   `iss` parameter (RFC 9207) checked when present and required when the provider says it
//   sends it (mix-up defence);
// - the token endpoint: `client_secret_basic`, `client_secret_post` or a public client (PKCE
//   only); error answers reported as the provider gave them, never with a token or secret;
// - the ID token: the shared Verifier (signature with the provider's jwks_uri keys, pinned
//   algorithms, `iss`, `aud` holding the client id, `exp`/`iat`/`nbf`), then `nonce`, and
//   `azp` when the token has several audiences.
//
// The functions here build and parse; callers move the bytes (edge asynchronously, the command
// line with the blocking client), so each step is testable without a network.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "auth/jwt.h"
#include "http/url.h"

namespace podgate::auth::oidc {

// What discovery says about a provider, checked.
struct ProviderMetadata {
  std::string issuer;
  http::HttpUrl authorization_endpoint;
  http::HttpUrl token_endpoint;
  http::HttpUrl jwks_uri;
  std::optional<http::HttpUrl> end_session_endpoint;           // RP-initiated logout
  std::optional<http::HttpUrl> device_authorization_endpoint;  // RFC 8628
  std::optional<http::HttpUrl> revocation_endpoint;            // RFC 7009
  std::vector<std::string> token_endpoint_auth_methods;        // default client_secret_basic
  // RFC 9207: the provider adds `iss` to every authorization response.
  bool iss_parameter_supported = false;
};

// "<issuer>/.well-known/openid-configuration" (one trailing slash of the issuer dropped). The
// issuer must be https, or http to a loopback address; no query, no fragment.
absl::StatusOr<http::HttpUrl> DiscoveryUrl(absl::string_view issuer);

// Parses and checks a discovery document for `issuer`. Errors name the field.
absl::StatusOr<ProviderMetadata> ParseDiscovery(absl::string_view body, absl::string_view issuer);

struct ClientConfig {
  std::string client_id;
  // Empty: a public client (PKCE only, `client_id` in the body).
  std::string client_secret;
  // "client_secret_basic" (default for a confidential client), "client_secret_post" or "none".
  std::string auth_method;
  std::string redirect_uri;
  // Space-separated; must include "openid".
  std::string scopes = "openid profile email groups offline_access";
};

// Checks a client configuration against the provider: an id, a redirect URI (https, or http to
// loopback), "openid" in the scopes, an auth method the provider supports and that fits the
// secret. Fills an empty auth_method. Errors name the setting.
absl::Status CheckClient(ClientConfig& client, const ProviderMetadata& provider,
                         bool needs_redirect = true);

// `bytes` random bytes (OpenSSL's CSPRNG), base64url: state, nonce, PKCE verifiers.
std::string RandomUrlToken(size_t bytes = 32);
// The S256 code challenge of a PKCE verifier: base64url(SHA-256(verifier)).
std::string PkceChallenge(absl::string_view verifier);

// The URL the browser is sent to.
std::string AuthorizationRequestUrl(const ProviderMetadata& provider, const ClientConfig& client,
                                    absl::string_view state, absl::string_view nonce,
                                    absl::string_view code_challenge);

// The callback's query checked against what the login started with; returns the code. Errors:
// PERMISSION_DENIED for a provider `error` (its code and description in the message),
// INVALID_ARGUMENT for a missing/wrong state or iss, or a missing code.
absl::StatusOr<std::string> CheckCallback(
    const std::vector<std::pair<std::string, std::string>>& query, absl::string_view state,
    const ProviderMetadata& provider);

// One POST to the token or device endpoint: its target, form body and headers.
struct TokenRequest {
  http::HttpUrl url;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

TokenRequest CodeExchange(const ProviderMetadata& provider, const ClientConfig& client,
                          absl::string_view code, absl::string_view code_verifier);
TokenRequest RefreshRequest(const ProviderMetadata& provider, const ClientConfig& client,
                            absl::string_view refresh_token);
// Device flow (RFC 8628); the provider must have a device_authorization_endpoint.
absl::StatusOr<TokenRequest> DeviceAuthorizationRequest(const ProviderMetadata& provider,
                                                        const ClientConfig& client);
TokenRequest DeviceTokenRequest(const ProviderMetadata& provider, const ClientConfig& client,
                                absl::string_view device_code);

struct TokenResponse {
  std::string id_token;
  std::string access_token;
  std::string refresh_token;  // empty when none was issued
  absl::Duration expires_in = absl::ZeroDuration();
};

// The token endpoint's answer. 200 with a JSON object holding `id_token` (when `need_id_token`)
// and `access_token`; otherwise an error: for a provider error (400/401 with {"error": ...}),
// FAILED_PRECONDITION with "the provider refused: <error>: <description>" and the OAuth error
// code as the status payload kOAuthErrorPayload (`invalid_grant`, `authorization_pending`,
// `slow_down`, `expired_token`, `access_denied`, ...); UNAVAILABLE for anything else.
absl::StatusOr<TokenResponse> ParseTokenResponse(int status, absl::string_view body,
                                                 bool need_id_token = true);

inline constexpr char kOAuthErrorPayload[] = "podgate.io/oauth-error";
// The OAuth error code of a ParseTokenResponse error ("" when none).
std::string OAuthError(const absl::Status& status);

struct DeviceAuthorization {
  std::string device_code;
  std::string user_code;
  std::string verification_uri;
  std::string verification_uri_complete;  // may be empty
  absl::Duration expires_in;
  absl::Duration interval = absl::Seconds(5);
};
absl::StatusOr<DeviceAuthorization> ParseDeviceAuthorization(int status, absl::string_view body);

// The ID token checked as the relying party must: `verifier` carries the provider's keys, its
// issuer and the client id as audience; then `nonce` (when given, compared in constant time)
// and `azp` (required to be the client id when `aud` has more than one value).
absl::StatusOr<VerifiedToken> VerifyIdToken(const Verifier& verifier, absl::string_view id_token,
                                            absl::string_view nonce, absl::string_view client_id);

// RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): the provider's
// end_session_endpoint with `id_token_hint`, `client_id` and `post_logout_redirect_uri`;
// nullopt when the provider has none.
std::optional<std::string> LogoutUrl(const ProviderMetadata& provider, const ClientConfig& client,
                                     absl::string_view id_token_hint,
                                     absl::string_view post_logout_redirect_uri);

// Constant-time comparison of two secrets of any length.
bool SecretsEqual(absl::string_view a, absl::string_view b);

}  // namespace podgate::auth::oidc
