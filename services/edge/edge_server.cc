#include "edge/edge_server.h"

#include <utility>

#include "edge/http_reply.h"
#include "edge/sso.h"

namespace podgate::edge {

using Methods = RouteTable::Methods;

EdgeRouter::EdgeRouter(EdgeContext* context, StaticFiles files)
    : health_(context), api_(context), handshake_(context), files_(std::move(files)) {
  routes_.Add("/healthz", Methods::kGet,
              [this](const RouteRequest& r) { return health_.Healthz(r.request); });
  routes_.Add("/readyz", Methods::kGet,
              [this](const RouteRequest& r) { return health_.Ready(r.request); });
  routes_.Add("/api/v1/targets", Methods::kGet,
              [this](const RouteRequest& r) { return api_.Targets(r.request, r.peer, r.query); });
  routes_.Add("/api/v1/sessions", Methods::kGet,
              [this](const RouteRequest& r) { return api_.Sessions(r.request, r.peer); });
  routes_.Add("/api/v1/allowed", Methods::kGet,
              [this](const RouteRequest& r) { return api_.Allowed(r.request, r.peer, r.query); });
  routes_.Add("/api/v1/audit", Methods::kGet,
              [this](const RouteRequest& r) { return api_.Audit(r.request, r.peer, r.query); });
  routes_.Add("/api/v1/session", Methods::kAny,
              [this](const RouteRequest& r) { return api_.Session(r.request, r.peer); });
  routes_.Add("/api/v1/login", Methods::kPost, [this](const RouteRequest& r) {
    return api_.Login(r.request, r.peer, /*login=*/true);
  });
  routes_.Add("/api/v1/logout", Methods::kPost, [this](const RouteRequest& r) {
    return api_.Login(r.request, r.peer, /*login=*/false);
  });
  routes_.Add("/api/v1/auth-config", Methods::kGet,
              [context](const RouteRequest& r) { return AuthConfig(r.request, context->sso); });
  if (Sso* sso = context->sso; sso != nullptr) {
    routes_.Add("/auth/login", Methods::kGet,
                [sso](const RouteRequest& r) { return sso->Login(r); });
    routes_.Add("/auth/callback", Methods::kGet,
                [sso](const RouteRequest& r) { return sso->Callback(r); });
    routes_.Add("/auth/refresh", Methods::kPost,
                [sso](const RouteRequest& r) { return sso->Refresh(r); });
    routes_.Add("/auth/logout", Methods::kPost,
                [sso](const RouteRequest& r) { return sso->Logout(r); });
  }
  routes_.SetWebSocket([this](const RouteRequest& r) {
    return handshake_.Accept(r.request, r.peer, r.path, r.query);
  });
  routes_.SetStatic(
      [this](const RouteRequest& r) { return Answer(files_.Serve(r.request, r.path)); });
}

}  // namespace podgate::edge
