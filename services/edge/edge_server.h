// edge's HTTP front: the route table of the browser-facing server. Each route's handler lives
// in its own part; this only wires them:
//
//   GET  /healthz, /readyz                     health.h: liveness; readiness = exec and policy
//                                              reachable and edge not shutting down
//   GET  /api/v1/targets, /api/v1/allowed, /api/v1/audit, GET|POST /api/v1/session,
//   POST /api/v1/login, /api/v1/logout         api.h: the page's HTTP API
//   GET  /api/v1/auth-config, /auth/login, /auth/callback, POST /auth/refresh, /auth/logout
//                                              sso.h: single sign-on (the /auth/ routes only
//                                              with --oidc_issuer)
//   WS   /ws/v1/{namespace}/{pod}, /ws/seed/{namespace}/{pod}
//                                              handshake.h: into a BrowserSession
//   GET  anything else                         static_files.h: the page's files
//
// What answers which method and path (and the 404/405/426 between them) is router.h.
// docs/protocol.md is the reference.
#pragma once

#include "edge/api.h"
#include "edge/edge_context.h"
#include "edge/handshake.h"
#include "edge/health.h"
#include "edge/router.h"
#include "edge/static_files.h"
#include "http/server.h"

namespace podgate::edge {

class EdgeRouter {
 public:
  // `context` outlives the router.
  EdgeRouter(EdgeContext* context, StaticFiles files);
  EdgeRouter(const EdgeRouter&) = delete;
  EdgeRouter& operator=(const EdgeRouter&) = delete;

  http::RouteResult Route(const http::Request& request, const http::RequestContext& peer,
                          bool is_upgrade) const {
    return routes_.Route(request, peer, is_upgrade);
  }

 private:
  const HealthEndpoints health_;
  const HttpApi api_;
  const WebSocketHandshake handshake_;
  const StaticFiles files_;
  RouteTable routes_;
};

}  // namespace podgate::edge
