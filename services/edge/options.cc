#include "edge/options.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "auth/oidc.h"
#include "crypto/sha256.h"
#include "edge/http_reply.h"
#include "edge/protocol.h"
#include "http/url.h"

namespace podgate::edge {

namespace {

// An HTTP field name (RFC 7230 token), or empty.
bool IsHeaderName(const std::string& name) {
  for (char c : name) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) &&
        std::string_view("!#$%&'*+-.^_`|~").find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

}  // namespace

bool IsLoopbackHost(const std::string& host) {
  return host == "127.0.0.1" || host == "::1" || host == "localhost" ||
         absl::StartsWith(host, "127.");
}

namespace {

absl::StatusOr<std::string> ReadSmallFile(const std::string& path, const char* flag) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": cannot read ", path));
  }
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (data.size() > 64 * 1024) {
    return absl::InvalidArgumentError(absl::StrCat("--", flag, ": ", path, " is over 64 KiB"));
  }
  return data;
}

// --oidc_*: nullopt when --oidc_issuer is not set (and then no other --oidc_ flag may be).
absl::StatusOr<std::optional<SsoOptions>> SsoFromFlags(const EdgeFlags& f) {
  if (f.oidc_issuer.empty()) {
    for (auto [value, name] : {std::pair{&f.oidc_client_id, "oidc_client_id"},
                               std::pair{&f.oidc_client_secret_file, "oidc_client_secret_file"},
                               std::pair{&f.oidc_redirect_url, "oidc_redirect_url"},
                               std::pair{&f.oidc_cookie_key_file, "oidc_cookie_key_file"}}) {
      if (!value->empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat("--", name,
                         " is set but --oidc_issuer is not: single sign-on needs "
                         "the provider's issuer URL"));
      }
    }
    return std::optional<SsoOptions>();
  }
  SsoOptions o;
  if (absl::StatusOr<http::HttpUrl> discovery = auth::oidc::DiscoveryUrl(f.oidc_issuer);
      !discovery.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--oidc_issuer: ", discovery.status().message()));
  }
  o.issuer = f.oidc_issuer;
  if (f.oidc_client_id.empty()) {
    return absl::InvalidArgumentError("--oidc_issuer needs --oidc_client_id");
  }
  o.client.client_id = f.oidc_client_id;
  if (!f.oidc_client_secret_file.empty()) {
    absl::StatusOr<std::string> secret =
        ReadSmallFile(f.oidc_client_secret_file, "oidc_client_secret_file");
    if (!secret.ok()) {
      return secret.status();
    }
    o.client.client_secret = std::string(absl::StripAsciiWhitespace(*secret));
    if (o.client.client_secret.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("--oidc_client_secret_file: ", f.oidc_client_secret_file, " is empty"));
    }
  }
  o.client.auth_method = f.oidc_client_auth_method;
  if (!o.client.auth_method.empty() && o.client.auth_method != "client_secret_basic" &&
      o.client.auth_method != "client_secret_post" && o.client.auth_method != "none") {
    return absl::InvalidArgumentError(
        "--oidc_client_auth_method must be client_secret_basic, client_secret_post or none");
  }
  if ((o.client.auth_method == "none") != o.client.client_secret.empty() &&
      !o.client.auth_method.empty()) {
    return absl::InvalidArgumentError(
        o.client.client_secret.empty()
            ? absl::StrCat("--oidc_client_auth_method ", o.client.auth_method,
                           " needs --oidc_client_secret_file")
            : "--oidc_client_auth_method=none goes without --oidc_client_secret_file");
  }
  std::vector<std::string> scopes = absl::StrSplit(f.oidc_scopes, ' ', absl::SkipEmpty());
  if (std::find(scopes.begin(), scopes.end(), "openid") == scopes.end()) {
    return absl::InvalidArgumentError("--oidc_scopes must include openid");
  }
  o.client.scopes = absl::StrJoin(scopes, " ");
  absl::StatusOr<http::HttpUrl> redirect = http::ParseHttpUrl(f.oidc_redirect_url);
  if (f.oidc_redirect_url.empty() || !redirect.ok() || redirect->target != "/auth/callback") {
    return absl::InvalidArgumentError(
        "--oidc_redirect_url must be edge's public callback URL, https://<host>/auth/callback "
        "(registered at the provider)");
  }
  if (!redirect->tls && !redirect->IsLoopback()) {
    return absl::InvalidArgumentError(
        "--oidc_redirect_url must be https (http only to a loopback address)");
  }
  http::HttpUrl origin = *redirect;
  origin.target.clear();
  origin.target.push_back('/');
  const std::string redirect_origin(absl::StripSuffix(origin.ToString(), "/"));
  if (!OriginAllowed(redirect_origin, f.allowed_origins)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--allowed_origins must list the origin of --oidc_redirect_url (",
                     redirect_origin, "): the page that signs in is served from there"));
  }
  o.client.redirect_uri = f.oidc_redirect_url;
  if (f.oidc_cookie_key_file.empty()) {
    return absl::InvalidArgumentError(
        "--oidc_issuer needs --oidc_cookie_key_file (32 or more random bytes that seal the "
        "sign-in and session cookies)");
  }
  absl::StatusOr<std::string> key = ReadSmallFile(f.oidc_cookie_key_file, "oidc_cookie_key_file");
  if (!key.ok()) {
    return key.status();
  }
  if (absl::StripAsciiWhitespace(*key).size() < 32) {
    return absl::InvalidArgumentError(
        absl::StrCat("--oidc_cookie_key_file: ", f.oidc_cookie_key_file,
                     " holds fewer than 32 bytes (e.g. openssl rand -hex 32 > file)"));
  }
  // Whatever the file's form (raw bytes, hex, base64), the key is its digest, domain-separated.
  o.cookie_key = crypto::Sha256(
      absl::StrCat("podgate edge sso cookie key v1\n", absl::StripAsciiWhitespace(*key)));
  o.provider_name = f.oidc_provider_name;
  if (o.provider_name.empty() || o.provider_name.size() > 64) {
    return absl::InvalidArgumentError("--oidc_provider_name must be 1 to 64 characters");
  }
  o.ca_file = f.oidc_ca_file;
  if (f.oidc_timeout < absl::Seconds(1) || f.oidc_timeout > absl::Minutes(1)) {
    return absl::InvalidArgumentError("--oidc_timeout must be 1s to 1m");
  }
  o.timeout = f.oidc_timeout;
  if (f.oidc_max_pending < 1 || f.oidc_max_pending > 10000) {
    return absl::InvalidArgumentError("--oidc_max_pending must be 1 to 10000");
  }
  o.max_pending = static_cast<size_t>(f.oidc_max_pending);
  if (f.oidc_session_lifetime < absl::Minutes(1) ||
      f.oidc_session_lifetime > absl::Hours(24 * 30)) {
    return absl::InvalidArgumentError("--oidc_session_lifetime must be 1m to 720h");
  }
  o.session_lifetime = f.oidc_session_lifetime;
  return std::optional<SsoOptions>(std::move(o));
}

}  // namespace

absl::StatusOr<EdgeConfig> EdgeConfigFromFlags(const EdgeFlags& f) {
  EdgeConfig config;
  http::ServerOptions& http = config.http;

  // --http_address
  const size_t colon = f.http_address.rfind(':');
  int port = 0;
  if (colon == std::string::npos || !absl::SimpleAtoi(f.http_address.substr(colon + 1), &port) ||
      port < 0 || port > 65535) {
    return absl::InvalidArgumentError("--http_address must be host:port");
  }
  std::string host = f.http_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  http.address = host;
  http.port = static_cast<uint16_t>(port);
  http.response_headers = SecurityHeaderList();
  http.cert_file = f.tls_cert_http;
  http.key_file = f.tls_key_http;
  if (http.cert_file.empty() != http.key_file.empty()) {
    return absl::InvalidArgumentError("--tls_cert_http and --tls_key_http go together");
  }
  config.tls = !http.cert_file.empty();
  if (!config.tls && !IsLoopbackHost(host) && !f.behind_tls_proxy) {
    return absl::InvalidArgumentError(
        "--http_address is not a loopback address: set --tls_cert_http/--tls_key_http, or "
        "--behind_tls_proxy when a TLS ingress terminates browser connections");
  }
  if (f.max_message_bytes < 1024 || f.max_message_bytes > (16 << 20)) {
    return absl::InvalidArgumentError("--max_message_bytes must be 1024 to 16777216");
  }
  if (f.write_buffer_bytes < 4096 || f.write_buffer_bytes > (64 << 20)) {
    return absl::InvalidArgumentError("--write_buffer_bytes must be 4096 to 67108864");
  }
  http.websocket_message_limit_bytes = static_cast<size_t>(f.max_message_bytes);
  http.write_high_watermark_bytes = static_cast<size_t>(f.write_buffer_bytes);
  http.write_hard_limit_bytes = static_cast<size_t>(f.write_buffer_bytes) * 4 + (1 << 20);
  http.websocket_keepalive = f.ws_keepalive;
  if (f.max_unauthenticated_connections < 1 || f.max_connections_per_source < 0 ||
      f.max_unauthenticated_per_source < 0 || f.auth_audit_queue < 1) {
    return absl::InvalidArgumentError(
        "--max_unauthenticated_connections and --auth_audit_queue must be >= 1, "
        "--max_connections_per_source and --max_unauthenticated_per_source >= 0");
  }
  http.max_connections_per_source = static_cast<size_t>(f.max_connections_per_source);
  http.max_unauthenticated_per_source = static_cast<size_t>(f.max_unauthenticated_per_source);
  http.idle_timeout = f.http_idle_timeout;
  http.unauthenticated_idle_timeout = f.http_unauthenticated_idle_timeout;
  for (auto [d, name] :
       {std::pair{f.ws_idle_timeout, "ws_idle_timeout"},
        std::pair{f.http_idle_timeout, "http_idle_timeout"},
        std::pair{f.http_unauthenticated_idle_timeout, "http_unauthenticated_idle_timeout"},
        std::pair{f.ws_keepalive, "ws_keepalive"}, std::pair{f.auth_timeout, "auth_timeout"},
        std::pair{f.backend_timeout, "backend_timeout"}}) {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive"));
    }
  }
  LimitOptions& limits = config.limits;
  limits.messages_per_second = f.messages_per_second;
  limits.message_burst = f.message_burst;
  limits.user_messages_per_second = f.user_messages_per_second;
  limits.user_message_burst = f.user_message_burst;
  limits.max_connections = f.max_connections;
  limits.max_connections_per_user = f.max_connections_per_user;
  limits.max_unauthenticated_connections = f.max_unauthenticated_connections;
  limits.max_audit_follows = f.max_audit_follows;
  limits.max_audit_follows_per_user = f.max_audit_follows_per_user;
  if (limits.max_audit_follows < 0 || limits.max_audit_follows_per_user < 0) {
    return absl::InvalidArgumentError(
        "--max_audit_follows and --max_audit_follows_per_user must be >= 0 (0: no live audit)");
  }
  if (!(limits.messages_per_second > 0) || !(limits.message_burst >= 1) ||
      !(limits.user_messages_per_second > 0) || !(limits.user_message_burst >= 1)) {
    return absl::InvalidArgumentError("message rates must be positive and bursts at least 1");
  }
  if (limits.max_connections < 1 || limits.max_connections_per_user < 1 || f.http_threads < 1 ||
      f.http_threads > 64) {
    return absl::InvalidArgumentError(
        "--max_connections and --max_connections_per_user must be >= 1, "
        "--http_threads 1 to 64");
  }
  // Room for every WebSocket of both pools, plus plain HTTP requests.
  http.max_connections = static_cast<size_t>(f.max_connections) +
                         static_cast<size_t>(f.max_unauthenticated_connections) + 256;
  config.http_threads = f.http_threads;
  config.auth_audit_queue = static_cast<size_t>(f.auth_audit_queue);

  EdgeOptions& edge = config.edge;
  edge.allowed_origins = f.allowed_origins;
  edge.allow_missing_origin = f.allow_missing_origin;
  config.exec_lanes = f.exec_lanes;
  edge.auditor_groups = absl::StrSplit(f.auditor_groups, ',', absl::SkipWhitespace());
  edge.auth_timeout = f.auth_timeout;
  edge.idle_timeout = f.ws_idle_timeout;
  edge.backend_timeout = f.backend_timeout;
  edge.secure_cookie = config.tls || f.behind_tls_proxy;
  edge.web_root = f.web_root;
  absl::StatusOr<std::optional<SsoOptions>> sso = SsoFromFlags(f);
  if (!sso.ok()) {
    return sso.status();
  }
  config.sso = *std::move(sso);

  // Proxies in front.
  http.client_ca_file = f.tls_client_ca_http;
  if (!http.client_ca_file.empty() && !config.tls) {
    return absl::InvalidArgumentError("--tls_client_ca_http needs --tls_cert_http (TLS)");
  }
  ProxyOptions& proxies = config.proxies;
  absl::StatusOr<std::vector<Cidr>> trusted = ParseCidrList(f.trusted_proxies, "trusted_proxies");
  if (!trusted.ok()) {
    return trusted.status();
  }
  proxies.trusted_proxies = *std::move(trusted);
  proxies.max_websockets_per_client = static_cast<size_t>(f.max_connections_per_source);
  const std::string header = absl::AsciiStrToLower(f.forwarded_header);
  if (header == "x-forwarded-for") {
    proxies.forwarded_header = ForwardedHeader::kXForwardedFor;
  } else if (header == "forwarded") {
    proxies.forwarded_header = ForwardedHeader::kForwarded;
  } else {
    return absl::InvalidArgumentError("--forwarded_header is x-forwarded-for or forwarded");
  }
  for (auto [value, name] : {std::pair{&f.auth_proxy_user_header, "auth_proxy_user_header"},
                             std::pair{&f.auth_proxy_groups_header, "auth_proxy_groups_header"}}) {
    if (!IsHeaderName(*value)) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " is not an HTTP header name"));
    }
  }
  proxies.user_header = f.auth_proxy_user_header;
  proxies.groups_header = f.auth_proxy_groups_header;
  absl::StatusOr<std::vector<Cidr>> proxy_cidrs =
      ParseCidrList(f.auth_proxy_cidrs, "auth_proxy_cidrs");
  if (!proxy_cidrs.ok()) {
    return proxy_cidrs.status();
  }
  proxies.auth_proxy_cidrs = *std::move(proxy_cidrs);
  for (absl::string_view name : absl::StrSplit(f.auth_proxy_client_names, ',')) {
    name = absl::StripAsciiWhitespace(name);
    if (!name.empty()) {
      proxies.auth_proxy_client_names.emplace_back(name);
    }
  }
  const bool by_address = !proxies.auth_proxy_cidrs.empty();
  const bool by_certificate = !proxies.auth_proxy_client_names.empty();
  if (proxies.user_header.empty()) {
    if (!proxies.groups_header.empty() || by_address || by_certificate) {
      return absl::InvalidArgumentError(
          "--auth_proxy_groups_header, --auth_proxy_cidrs and --auth_proxy_client_names need "
          "--auth_proxy_user_header (auth-proxy mode)");
    }
  } else if (!by_address && !by_certificate) {
    return absl::InvalidArgumentError(
        "--auth_proxy_user_header needs --auth_proxy_cidrs and/or --auth_proxy_client_names: "
        "the proxy's addresses or the names on its client certificate");
  }
  if (by_certificate && http.client_ca_file.empty()) {
    return absl::InvalidArgumentError(
        "--auth_proxy_client_names needs --tls_client_ca_http (the CA that signs the proxy's "
        "client certificate)");
  }
  return config;
}

}  // namespace podgate::edge
