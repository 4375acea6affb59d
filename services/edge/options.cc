#include "edge/options.h"

#include <string_view>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "edge/http_reply.h"

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
  edge.auditor_groups = absl::StrSplit(f.auditor_groups, ',', absl::SkipWhitespace());
  edge.auth_timeout = f.auth_timeout;
  edge.idle_timeout = f.ws_idle_timeout;
  edge.backend_timeout = f.backend_timeout;
  edge.secure_cookie = config.tls || f.behind_tls_proxy;
  edge.web_root = f.web_root;

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
