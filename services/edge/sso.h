// Single sign-on in edge: the OpenID Connect authorization code flow with PKCE (lib/auth/oidc.h
// does the protocol steps; this moves the bytes and keeps the browser's state in cookies).
//
//   GET  /api/v1/auth-config   whether SSO is on and the provider's name (no credential needed)
//   GET  /auth/login           new state, nonce and PKCE verifier, sealed into the short-lived
//                              podgate_login cookie; 302 to the provider's authorization endpoint
//   GET  /auth/callback        the provider's answer: state (constant time, once), iss, the code
//                              exchanged at the token endpoint, the ID token verified (the shared
//                              verifier: issuer, audience = client id, keys from jwks_uri; then
//                              nonce); sets podgate_token (the ID token, what exec verifies) and
//                              the sealed podgate_refresh cookie; 302 to "/"
//   POST /auth/refresh         same origin only: a new ID token with the refresh cookie
//   POST /auth/logout          same origin only: clears the cookies; 303 to the provider's
//                              end_session_endpoint (id_token_hint, post_logout_redirect_uri)
//
// Cookies are sealed with AES-256-GCM (crypto/aead.h) under a key from --oidc_cookie_key_file,
// the cookie's name as associated data. Token-endpoint calls run on a small worker pool, bounded
// (--oidc_max_pending, past it 503) and timed out (--oidc_timeout); replies are deferred
// (RouteResult::deferred), edge's I/O threads never wait. Discovery runs in the background and is
// retried until it succeeds; /auth/login answers 503 until then. Every refused sign-in is an
// HTML page naming what went wrong (never a token, code or secret), counted in
// podgate_edge_oidc_logins_total{result} and audited as an authentication failure.
// docs/auth.md is the reference, with the threat model.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "auth/oidc.h"
#include "edge/edge_context.h"
#include "edge/router.h"

namespace podgate::edge {

struct SsoOptions {
  std::string issuer;
  // Client id, secret (empty: a public client), redirect URI and scopes.
  auth::oidc::ClientConfig client;
  // kAeadKeyBytes derived from --oidc_cookie_key_file.
  std::string cookie_key;
  std::string provider_name = "SSO";
  // PEM CA bundle to verify the provider with; empty: the system's roots.
  std::string ca_file;
  // Deadline of one call to the provider (discovery, token endpoint).
  absl::Duration timeout = absl::Seconds(10);
  // Token-endpoint calls running or queued; past it a sign-in or refresh is answered 503.
  size_t max_pending = 64;
  // Workers making those calls.
  int threads = 2;
  // How long a signed-in browser may refresh before it must sign in again.
  absl::Duration session_lifetime = absl::Hours(12);
  // How long a started sign-in may take (the podgate_login cookie's lifetime).
  absl::Duration login_lifetime = absl::Minutes(10);
  // First retry of a failed discovery; doubles up to 30 s.
  absl::Duration discovery_retry = absl::Milliseconds(500);
};

inline constexpr char kLoginCookie[] = "podgate_login";
inline constexpr char kRefreshCookie[] = "podgate_refresh";
// The associated data of renewal tickets.
inline constexpr char kRenewTicket[] = "podgate_renew";

class Sso {
 public:
  // Checks the options against the shared verifier (its issuer must be the provider's and its
  // audiences must hold the client id: edge and exec verify the ID token edge sets as the
  // session cookie with it), then starts discovery and the workers. `context` outlives this.
  static absl::StatusOr<std::unique_ptr<Sso>> Start(SsoOptions options, EdgeContext* context);
  ~Sso();
  Sso(const Sso&) = delete;
  Sso& operator=(const Sso&) = delete;

  http::RouteResult Login(const RouteRequest& r);
  http::RouteResult Callback(const RouteRequest& r);
  http::RouteResult Refresh(const RouteRequest& r);
  http::RouteResult Logout(const RouteRequest& r);

  const std::string& provider_name() const;

  // A renewal ticket: `id_token` sealed for a minute, for the page to hand its open WebSocket
  // (`{"type":"renew","ticket":..}`) without ever holding the token. POST /auth/refresh
  // answers with one.
  std::string RenewTicket(const std::string& id_token) const;
  // The ID token in a ticket; nullopt when it is not one edge sealed or it is over a minute old.
  std::optional<std::string> OpenRenewTicket(const std::string& ticket) const;

  struct Impl;

 private:
  explicit Sso(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// GET /api/v1/auth-config: {"sso": bool, "provider_name", "login_url", "refresh_url",
// "logout_url"}; `sso` may be null.
http::RouteResult AuthConfig(const http::Request& request, const Sso* sso);

}  // namespace podgate::edge
