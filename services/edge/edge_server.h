// edge's HTTP front: routes every request of the browser-facing server.
//
//   GET  /healthz, /readyz                     liveness; readiness = exec and policy reachable
//                                              and edge not shutting down
//   GET  /api/v1/targets[?namespace=]          exec ListTargets with the caller's token
//   GET  /api/v1/allowed?namespace=&pod=[&container=]   policy ListAllowed for the caller
//   GET  /api/v1/audit?...                     audit Query (auditor groups only)
//   GET|POST /api/v1/session                   who the credential names (the page's start-up)
//   POST /api/v1/login, /api/v1/logout         set / clear the HttpOnly token cookie
//   WS   /ws/v1/{namespace}/{pod}?container=&mode=      the v1 protocol
//   WS   /ws/seed/{namespace}/{pod}?container=          the design note's protocol
//   GET  anything else                         static files from the web root
//
// Every WebSocket handshake passes the Origin allowlist and the connection caps before a
// BrowserSession takes it; none is accepted once edge is shutting down. docs/protocol.md is the
// reference.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "edge/edge_context.h"
#include "http/server.h"

namespace podgate::edge {

// The page's files, loaded once at start (bounded), served from memory.
class StaticFiles {
 public:
  // Loads every regular file under `root` (at most `max_bytes` in total).
  static absl::StatusOr<StaticFiles> Load(const std::string& root, size_t max_bytes = 32 << 20);
  StaticFiles() = default;

  struct File {
    std::string content_type;
    std::string cache_control;
    std::string etag;
    std::string body;
  };
  // `path` is the request path ("/" means /index.html); null when absent.
  const File* Find(const std::string& path) const;

 private:
  std::map<std::string, File> files_;
};

// The headers every answer of edge's HTTP server carries unless it sets them itself (a static
// file sets its own Cache-Control): the page's Content-Security-Policy, nosniff, DENY framing,
// no referrer, Cache-Control no-store. Given to the HTTP server as its response_headers, so the
// server's own 400/413/431 and refusals carry them too.
const std::vector<std::pair<std::string, std::string>>& SecurityHeaderList();

// Splits a query string into decoded key/value pairs; errors on bad percent-encoding.
absl::StatusOr<std::multimap<std::string, std::string>> ParseQuery(std::string_view query);

class EdgeRouter {
 public:
  EdgeRouter(EdgeContext* context, StaticFiles files)
      : context_(context), files_(std::move(files)) {}

  http::RouteResult Route(const http::Request& request, const http::RequestContext& peer,
                          bool is_upgrade);

 private:
  http::RouteResult RouteWebSocket(const http::Request& request, const http::RequestContext& peer,
                                   std::string_view path, std::string_view query);
  http::RouteResult Targets(const http::Request& request, const http::RequestContext& peer,
                            std::string_view query);
  http::RouteResult Allowed(const http::Request& request, const http::RequestContext& peer,
                            std::string_view query);
  http::RouteResult Audit(const http::Request& request, const http::RequestContext& peer,
                          std::string_view query);
  http::RouteResult Login(const http::Request& request, const http::RequestContext& peer,
                          bool login);
  http::RouteResult Session(const http::Request& request, const http::RequestContext& peer);
  http::RouteResult Ready(const http::Request& request);
  http::RouteResult Static(const http::Request& request, std::string_view path);
  // The caller's token from Authorization or the cookie; empty when none.
  std::string TokenOf(const http::Request& request) const;
  // Verifies the caller's credential (Authorization Bearer, else the cookie) with the shared
  // verifier. A refusal is counted (auth failure by reason, and a 401 for `route`), audited,
  // and comes back as UNAUTHENTICATED with the verifier's reason as the message.
  absl::StatusOr<auth::VerifiedToken> Authenticate(const http::Request& request,
                                                   const http::RequestContext& peer,
                                                   const char* route) const;
  // Whether the verified caller is in one of --auditor_groups.
  bool IsAuditor(const auth::VerifiedToken& verified) const;

  EdgeContext* const context_;
  const StaticFiles files_;
};

}  // namespace podgate::edge
