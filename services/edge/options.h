// edge's own flags, validated: the raw values (EdgeFlags, one field per flag with the flag's
// default) become everything the replica is wired from (EdgeConfig), or one clear error naming
// the flag. main only reads the flags into EdgeFlags and wires what comes back; the flags
// themselves and their help are in main.cc, docs/protocol.md lists them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "edge/edge_context.h"
#include "edge/limits.h"
#include "edge/sso.h"
#include "edge/proxy_trust.h"
#include "http/server.h"

namespace podgate::edge {

struct EdgeFlags {
  std::string http_address = "[::]:8080";
  std::string tls_cert_http;
  std::string tls_key_http;
  bool behind_tls_proxy = false;
  int http_threads = 2;
  std::string allowed_origins;
  bool allow_missing_origin = false;
  std::string web_root;
  std::string auditor_groups = "podgate-auditors";
  int64_t max_message_bytes = 64 * 1024;
  double messages_per_second = 50;
  double message_burst = 200;
  double user_messages_per_second = 100;
  double user_message_burst = 400;
  int max_connections = 10000;
  int max_connections_per_user = 20;
  int max_audit_follows = 64;
  int max_audit_follows_per_user = 4;
  absl::Duration ws_idle_timeout = absl::Minutes(15);
  absl::Duration ws_keepalive = absl::Seconds(30);
  absl::Duration auth_timeout = absl::Seconds(5);
  int max_unauthenticated_connections = 1000;
  int max_connections_per_source = 256;
  int max_unauthenticated_per_source = 32;
  absl::Duration http_idle_timeout = absl::Seconds(60);
  absl::Duration http_unauthenticated_idle_timeout = absl::Seconds(5);
  int auth_audit_queue = 1000;
  absl::Duration backend_timeout = absl::Seconds(5);
  int64_t write_buffer_bytes = 256 * 1024;
  bool exec_lanes = true;
  // Single sign-on (sso.h, docs/auth.md): all off unless oidc_issuer is set.
  std::string oidc_issuer;
  std::string oidc_client_id;
  std::string oidc_client_secret_file;
  std::string oidc_client_auth_method;
  std::string oidc_scopes = "openid profile email offline_access";
  std::string oidc_redirect_url;
  std::string oidc_cookie_key_file;
  std::string oidc_provider_name = "SSO";
  std::string oidc_ca_file;
  absl::Duration oidc_timeout = absl::Seconds(10);
  int oidc_max_pending = 64;
  absl::Duration oidc_session_lifetime = absl::Hours(12);
  // Proxies in front (docs/auth.md, "Behind a proxy").
  std::string tls_client_ca_http;
  std::string trusted_proxies;
  std::string forwarded_header = "x-forwarded-for";
  std::string auth_proxy_user_header;
  std::string auth_proxy_groups_header;
  std::string auth_proxy_cidrs;
  std::string auth_proxy_client_names;
};

struct EdgeConfig {
  // The browser-facing server: address, TLS files, sizes, timeouts, per-source caps and the
  // security headers. The callbacks (on_refusal, on_accept_backoff) are main's to set.
  http::ServerOptions http;
  // Plain HTTP (no --tls_cert_http): only on loopback or --behind_tls_proxy.
  bool tls = false;
  int http_threads = 2;
  LimitOptions limits;
  // What every session and handler reads through EdgeContext::options.
  EdgeOptions edge;
  size_t auth_audit_queue = 1000;
  // Browser sessions go to exec as lanes of one Sessions stream (exec_lanes.h), else a Session
  // call each.
  bool exec_lanes = true;
  // Single sign-on, when --oidc_issuer is set (secret and cookie key read from their files).
  std::optional<SsoOptions> sso;
  // Trusted proxies and auth-proxy mode (ProxyTrust).
  ProxyOptions proxies;
};

// Checks every flag; the first bad one is the error, with the text the CLI prints.
absl::StatusOr<EdgeConfig> EdgeConfigFromFlags(const EdgeFlags& flags);

// Whether `host` (an --http_address host, brackets removed) is a loopback address.
bool IsLoopbackHost(const std::string& host);

}  // namespace podgate::edge
