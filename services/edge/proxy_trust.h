// What edge believes of the proxies in front of it (docs/auth.md, "Behind a proxy"):
//
// - Trusted proxies (--trusted_proxies): from a TCP peer inside one of these CIDRs, the
//   X-Forwarded-For or Forwarded header (--forwarded_header) names the client (forwarded.h,
//   ResolveClient); that address is the request's source everywhere (audit, logs). From any
//   other peer the header is ignored.
// - Auth-proxy mode (--auth_proxy_user_header): an oauth2-proxy-style proxy, recognised by its
//   address (--auth_proxy_cidrs) and/or its verified client certificate
//   (--auth_proxy_client_names), forwards the user's bearer token (X-Forwarded-Access-Token or
//   Authorization) with the user (and groups) it signed in. edge verifies the token as always
//   (exec does again): the headers only have to agree with it. The same headers from any other
//   peer are refused, logged and audited, never taken as the user.
//
// Counted in podgate_edge_forwarded_address_total{result} and
// podgate_edge_auth_proxy_total{result}. Thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "auth/jwt.h"
#include "edge/forwarded.h"
#include "http/server.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/registry.h"

namespace podgate::edge {

// The header an auth proxy forwards the user's access token in (oauth2-proxy
// --pass-access-token).
inline constexpr char kForwardedAccessTokenHeader[] = "X-Forwarded-Access-Token";

struct ProxyOptions {
  std::vector<Cidr> trusted_proxies;
  ForwardedHeader forwarded_header = ForwardedHeader::kXForwardedFor;
  // Auth-proxy mode is on when user_header is set.
  std::string user_header;
  std::string groups_header;  // optional
  std::vector<Cidr> auth_proxy_cidrs;
  // Exact names matched against a verified client certificate's subject CN and DNS SANs.
  std::vector<std::string> auth_proxy_client_names;
  // A malformed forwarding header is logged once, then once per this many.
  uint64_t log_malformed_every = 100;
  // WebSockets per forwarded client address (--max_connections_per_source): behind a trusted
  // proxy the server's per-source count at accept sees only the proxy. 0: no limit.
  size_t max_websockets_per_client = 0;
};

// What one request says about an auth proxy in front of it.
struct AuthProxyRequest {
  // The TCP peer is an auth proxy and sent the user header: the headers below must agree with
  // the verified token.
  bool from_proxy = false;
  std::string user;
  std::optional<std::vector<std::string>> groups;  // when the groups header was sent
  // From an auth proxy: X-Forwarded-Access-Token, else the Authorization Bearer token (empty
  // otherwise).
  std::string token;
};

class ProxyTrust {
 public:
  // `registry` may be null (no metrics).
  ProxyTrust(ProxyOptions options, prometheus::Registry* registry);

  const ProxyOptions& options() const { return options_; }
  bool auth_proxy_mode() const { return !options_.user_header.empty(); }

  // `peer` with remote_address replaced by the client's address (when a trusted proxy named
  // one) and the TCP peer kept in proxy_address. Counts the outcome; logs a malformed header
  // once per log_malformed_every.
  http::RequestContext ClientContext(const http::Request& request,
                                     const http::RequestContext& peer) const;

  // The auth-proxy headers of `request`. In auth-proxy mode, a request carrying any of them (the
  // user or groups header, X-Forwarded-Access-Token) from a peer that is not an auth proxy is
  // PERMISSION_DENIED (counted as "untrusted"; the caller logs and audits it as
  // "untrusted_proxy"). Outside auth-proxy mode, nothing is read.
  absl::StatusOr<AuthProxyRequest> Inspect(const http::Request& request,
                                           const http::RequestContext& peer) const;

  // The verified identity against an auth proxy's headers: PERMISSION_DENIED when the user
  // differs, or a group the header names is not among the token's (counted as "mismatch";
  // the caller audits it as "proxy_mismatch"). Counts "accepted" otherwise.
  absl::Status CheckIdentity(const AuthProxyRequest& proxy,
                             const auth::VerifiedToken& verified) const;

  // An auth-proxy request whose proxy forwarded no token: counted as "missing_token".
  void CountMissingToken() const;

  // Whether `peer` (its TCP peer) is an auth proxy by address or client certificate.
  bool IsAuthProxy(const http::RequestContext& peer) const;

  // Whether `address` (an IP address without port) is inside --trusted_proxies: the HTTP
  // server's per_source_exempt, so a proxy is not capped as one source.
  bool IsTrustedProxy(const std::string& address) const;

  // A place for one WebSocket of the forwarded client `client` (a ClientContext's
  // remote_address), given back when the handle is dropped; null over
  // max_websockets_per_client.
  std::shared_ptr<void> AcquireClientSlot(const std::string& client) const;

 private:
  void Count(prometheus::Counter* counter) const {
    if (counter != nullptr) {
      counter->Increment();
    }
  }

  const ProxyOptions options_;
  prometheus::Counter* forwarded_trusted_ = nullptr;
  prometheus::Counter* forwarded_untrusted_ = nullptr;
  prometheus::Counter* forwarded_malformed_ = nullptr;
  prometheus::Counter* proxy_accepted_ = nullptr;
  prometheus::Counter* proxy_untrusted_ = nullptr;
  prometheus::Counter* proxy_mismatch_ = nullptr;
  prometheus::Counter* proxy_missing_token_ = nullptr;
  mutable std::atomic<uint64_t> malformed_{0};
  mutable absl::Mutex mu_;
  mutable std::map<std::string, size_t> clients_ ABSL_GUARDED_BY(mu_);
};

// The reasons the callers audit (EVENT_KIND_AUTH_FAILURE) and count in
// podgate_edge_auth_failures_total.
inline constexpr char kUntrustedProxyReason[] = "untrusted_proxy";
inline constexpr char kProxyMismatchReason[] = "proxy_mismatch";

// The TCP peer of a request: proxy_address when ClientContext replaced remote_address.
inline const std::string& TcpPeer(const http::RequestContext& peer) {
  return peer.proxy_address.empty() ? peer.remote_address : peer.proxy_address;
}

}  // namespace podgate::edge
