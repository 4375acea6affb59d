#include "edge/handshake.h"

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "edge/browser_session.h"
#include "edge/http_reply.h"
#include "edge/protocol.h"
#include "edge/router.h"
#include "k8s/names.h"
#include "runtime/log.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;
using http::Request;
using http::Response;
using http::RouteResult;

namespace {

// A handshake while edge shuts down: a session opened now would only be closed again.
RouteResult RefuseForShutdown(EdgeContext* context, const Request& request) {
  context->metrics->Rejection("shutdown");
  return Answer(JsonError(request, bhttp::status::service_unavailable, "UNAVAILABLE",
                          "edge is shutting down; reconnect to continue"));
}

// Identity headers from a peer that is not the auth proxy: refused, logged and audited, never
// taken as the user.
RouteResult RefuseUntrustedProxy(EdgeContext* context, const Request& request,
                                 const http::RequestContext& peer, const SessionParams& params,
                                 const absl::Status& status) {
  AuthFailed(context,
             {kUntrustedProxyReason, std::string(status.message()), peer.remote_address,
              params.path, params.target},
             params.trace.trace_id);
  log::Warn("identity headers from a peer that is not the auth proxy refused",
            {{"trace_id", params.trace.trace_id},
             {"source", peer.remote_address},
             {"peer", TcpPeer(peer)},
             {"path", params.path}});
  return Answer(JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                          std::string(status.message())));
}

}  // namespace

RouteResult WebSocketHandshake::Accept(const Request& request, const http::RequestContext& peer,
                                       std::string_view path, std::string_view query) const {
  const EdgeOptions& o = context_->options;
  // The acceptor is closed during a drain, but a keep-alive connection opened before it may
  // still ask for an upgrade. (Checked first to spare the credential check; the reservation
  // below is what makes it exact.)
  if (context_->sessions->draining()) {
    return RefuseForShutdown(context_, request);
  }
  std::string origin = Header(request, bhttp::field::origin);
  if (origin.empty() ? !o.allow_missing_origin : !OriginAllowed(origin, o.allowed_origins)) {
    context_->metrics->Rejection("origin");
    log::Info("websocket origin refused", {{"trace_id", TraceOf(peer).trace_id},
                                           {"origin", origin.substr(0, 200)},
                                           {"source", peer.remote_address}});
    return Answer(
        JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                  origin.empty() ? "an Origin header is required" : "this Origin is not allowed"));
  }
  std::vector<std::string> parts =
      absl::StrSplit(absl::string_view(path.data() + 4, path.size() - 4), '/');
  SessionParams params;
  params.trace = TraceOf(peer);
  const bool join = parts.size() == 2 && parts[0] == "join";
  if (!join && (parts.size() != 3 || (parts[0] != "v1" && parts[0] != "seed"))) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND",
                            "use /ws/v1/{namespace}/{pod}, /ws/seed/{namespace}/{pod} or "
                            "/ws/join/{session_id}"));
  }
  params.protocol = parts[0] == "seed" ? Protocol::kSeed : Protocol::kV1;
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  if (!q.ok()) {
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            std::string(q.status().message())));
  }
  if (join) {
    // Another user's session: the v1 protocol, read-only (docs/protocol.md, "Joining a
    // session"). The session id is exec's; anything else is refused here.
    absl::Status valid = ValidateSessionId(parts[1]);
    const std::string moderator = First(*q, "moderator");
    if (valid.ok() && !moderator.empty() && moderator != "1" && moderator != "0") {
      valid = absl::InvalidArgumentError("moderator is 1 or 0");
    }
    for (const auto& [key, value] : *q) {
      if (valid.ok() && key != "moderator") {
        valid = absl::InvalidArgumentError(
            absl::StrCat("a join takes only ?moderator=1; '", key.substr(0, 32),
                         "' belongs to the session, which its owner chose"));
      }
    }
    if (!valid.ok()) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              std::string(valid.message())));
    }
    params.join.emplace();
    params.join->set_session_id(parts[1]);
    params.join->set_moderator(moderator == "1");
  }
  if (!join) {
    std::string container = First(*q, "container");
    // An empty cluster is exec's default cluster.
    std::string cluster = First(*q, "cluster");
    absl::Status valid = k8s::ValidateTarget(parts[1], parts[2], container);
    if (valid.ok()) {
      valid = k8s::ValidateTargetCluster(cluster);
    }
    if (!valid.ok()) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              std::string(valid.message())));
    }
    params.target.set_namespace_(parts[1]);
    params.target.set_pod(parts[2]);
    params.target.set_container(container);
    params.target.set_cluster(cluster);
    std::string mode = First(*q, "mode");
    if (mode == "shell" && params.protocol == Protocol::kV1) {
      params.mode = podgate::common::v1::SESSION_MODE_SHELL;
    } else if (!mode.empty() && mode != "command") {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              "mode is command or shell (shell only on v1)"));
    }
  }
  params.source_address = peer.remote_address;
  params.path = std::string(path);
  params.client = Header(request, bhttp::field::user_agent).substr(0, 256);
  // Behind a trusted proxy, the per-source cap counts the forwarded client's WebSockets (the
  // server's count at accept sees only the proxy).
  if (context_->proxies != nullptr && !peer.proxy_address.empty()) {
    params.client_slot = context_->proxies->AcquireClientSlot(peer.remote_address);
    if (params.client_slot == nullptr) {
      context_->metrics->Rejection("per_source");
      Response res = JsonError(request, bhttp::status::too_many_requests, "RESOURCE_EXHAUSTED",
                               "too many connections from this address");
      res.set(bhttp::field::retry_after, "5");
      return Answer(std::move(res));
    }
  }
  // Identity headers only from the auth proxy (docs/auth.md, "Auth-proxy mode").
  AuthProxyRequest auth_proxy;
  if (context_->proxies != nullptr) {
    absl::StatusOr<AuthProxyRequest> inspected = context_->proxies->Inspect(request, peer);
    if (!inspected.ok()) {
      return RefuseUntrustedProxy(context_, request, peer, params, inspected.status());
    }
    auth_proxy = *std::move(inspected);
    if (auth_proxy.from_proxy) {
      params.auth_proxy = auth_proxy;
    }
  }

  RouteResult result;
  if (params.protocol == Protocol::kV1) {
    absl::StatusOr<OfferedProtocols> offered =
        ParseOfferedProtocols(Header(request, bhttp::field::sec_websocket_protocol));
    if (!offered.ok()) {
      AuthFailed(context_,
                 {"malformed", std::string(offered.status().message()), peer.remote_address,
                  std::string(path), params.target},
                 params.trace.trace_id);
      return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                              std::string(offered.status().message())));
    }
    if (!offered->v1) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              absl::StrCat("offer the sub-protocol ", kV1Subprotocol)));
    }
    if (!offered->resume_error.ok()) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              std::string(offered->resume_error.message())));
    }
    if (offered->resume.has_value() && params.join.has_value()) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              "a join cannot be resumed: join again"));
    }
    if (offered->resume.has_value()) {
      params.resume.emplace();
      params.resume->set_session_id(offered->resume->session_id);
      params.resume->set_token(offered->resume->token);
      params.resume->set_last_seq(offered->resume->last_seq);
      params.resume->set_output_offset(offered->resume->output_offset);
    }
    // The token an auth proxy forwarded comes first.
    std::string token = auth_proxy.token;
    if (token.empty()) {
      token = offered->token.value_or("");
    }
    if (token.empty()) {
      token = FindCookie(Header(request, bhttp::field::cookie), kTokenCookie).value_or("");
    }
    if (token.empty() && auth_proxy.from_proxy) {
      context_->proxies->CountMissingToken();
      const std::string message =
          "the auth proxy forwarded no token: it must pass the user's token "
          "(X-Forwarded-Access-Token or Authorization: Bearer)";
      AuthFailed(context_,
                 {"missing", message, peer.remote_address, std::string(path), params.target},
                 params.trace.trace_id);
      log::Warn("websocket from the auth proxy without a token refused",
                {{"trace_id", params.trace.trace_id},
                 {"source", peer.remote_address},
                 {"proxy", TcpPeer(peer)}});
      return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED", message));
    }
    if (!token.empty()) {
      absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
      if (!verified.ok()) {
        std::string reason = auth::AuthFailureReason(verified.status());
        AuthFailed(context_,
                   {reason, std::string(verified.status().message()), peer.remote_address,
                    std::string(path), params.target},
                   params.trace.trace_id);
        log::Info("websocket authentication refused", {{"trace_id", params.trace.trace_id},
                                                       {"reason", reason},
                                                       {"source", peer.remote_address}});
        return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                                std::string(verified.status().message())));
      }
      if (context_->proxies != nullptr) {
        if (absl::Status consistent = context_->proxies->CheckIdentity(auth_proxy, *verified);
            !consistent.ok()) {
          AuthFailed(context_,
                     {kProxyMismatchReason, std::string(consistent.message()), peer.remote_address,
                      std::string(path), params.target},
                     params.trace.trace_id);
          log::Warn("websocket refused: the auth proxy's headers disagree with the token",
                    {{"trace_id", params.trace.trace_id},
                     {"source", peer.remote_address},
                     {"proxy", TcpPeer(peer)},
                     {"header_user", auth_proxy.user.substr(0, 128)},
                     {"token_user", verified->principal.user()}});
          return Answer(JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                                  std::string(consistent.message())));
        }
      }
      if (!context_->limits->AcquireUser(verified->principal.user())) {
        context_->metrics->Rejection("limit");
        return Answer(JsonError(request, bhttp::status::too_many_requests, "RESOURCE_EXHAUSTED",
                                "too many connections for this user"));
      }
      params.verified = *std::move(verified);
      params.token = std::move(token);
    }
    result.subprotocol = kV1Subprotocol;  // never the bearer entry
  }
  // An authenticated handshake takes a place in the replica's pool; one that authenticates
  // with its first message waits in a smaller pool of its own (and moves over once it has), so
  // a flood of anonymous WebSockets never takes a place from a signed-in user.
  const bool authenticated = params.verified.has_value();
  if (authenticated ? !context_->limits->AcquireConnection()
                    : !context_->limits->AcquireUnauthenticated()) {
    if (authenticated) {
      context_->limits->ReleaseUser(params.verified->principal.user());
    }
    context_->metrics->Rejection(authenticated ? "limit" : "unauthenticated_limit");
    Response res = JsonError(
        request, bhttp::status::service_unavailable, "RESOURCE_EXHAUSTED",
        authenticated ? "too many connections" : "too many connections waiting to authenticate");
    res.set(bhttp::field::retry_after, "5");
    return Answer(std::move(res));
  }
  if (!context_->sessions->Reserve()) {
    if (authenticated) {
      context_->limits->ReleaseConnection();
      context_->limits->ReleaseUser(params.verified->principal.user());
    } else {
      context_->limits->ReleaseUnauthenticated();
    }
    return RefuseForShutdown(context_, request);
  }
  result.authenticated = authenticated;
  result.websocket = std::make_shared<BrowserSession>(context_, std::move(params));
  return result;
}

}  // namespace podgate::edge
