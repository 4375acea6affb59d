#include "edge/api.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "edge/audit_follow.h"
#include "edge/backend_calls.h"
#include "edge/codec.h"
#include "edge/http_reply.h"
#include "edge/protocol.h"
#include "edge/router.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/time_util.h"
#include "k8s/names.h"
#include "runtime/log.h"
#include "runtime/trace_metadata.h"
#include "wire/enum_label.h"
#include "wire/status.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;
using http::Request;
using http::Response;
using http::RouteResult;

namespace {

// A refused credential: 403 when it was the auth proxy's headers (PERMISSION_DENIED), 401
// otherwise.
RouteResult AuthRefusal(const Request& request, const absl::Status& status) {
  const bool denied = status.code() == absl::StatusCode::kPermissionDenied;
  return Answer(JsonError(request, denied ? bhttp::status::forbidden : bhttp::status::unauthorized,
                          denied ? "PERMISSION_DENIED" : "UNAUTHENTICATED",
                          std::string(status.message())));
}

// RFC 3339 in UTC with `Z`, the form of every time edge sends the page.
std::string Rfc3339Utc(absl::Time t) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", t, absl::UTCTimeZone());
}

// Names the refused Origin and the fix: a page served under an unlisted origin (a new host
// name, a port) is a deployment mistake the operator has to see spelled out.
std::string OriginRefusal(const std::string& origin) {
  return absl::StrCat("Origin ", origin.empty() ? "(empty)" : origin.substr(0, 200),
                      " is not allowed: edge's --allowed_origins must list it");
}

// "kind: unknown value "x"; use one of a, b, c (or the full enum names, e.g. EVENT_KIND_A)".
std::string EnumFilterError(const char* parameter, const google::protobuf::EnumDescriptor& type,
                            const std::string& text) {
  std::vector<std::string> names;
  std::string example;
  for (int i = 0; i < type.value_count(); ++i) {
    if (type.value(i)->number() != 0) {
      names.push_back(wire::EnumLabelOfName(type, type.value(i)->name()));
      example = example.empty() ? type.value(i)->name() : example;
    }
  }
  return absl::StrCat(parameter, ": unknown value \"", text.substr(0, 64), "\"; use one of ",
                      absl::StrJoin(names, ", "), " (or the full enum names, e.g. ", example, ")");
}

// A unary call's completion as an HTTP reply, on whichever gRPC thread finishes it.
template <class Req, class Resp>
struct UnaryCall {
  grpc::ClientContext context;
  Req request;
  Resp response;
};

// Answers a route with one unary backend call, deferred: `start(call, done)` issues the call
// and the response (or the call's error, as a JSON error with the matching HTTP status) goes
// back to the browser once it completes. `api` names the endpoint in metrics.
template <class Req, class Resp>
RouteResult DeferredUnary(
    EdgeContext* context, const Request& request, const char* api,
    std::shared_ptr<UnaryCall<Req, Resp>> call,
    std::function<void(UnaryCall<Req, Resp>*, std::function<void(grpc::Status)>)> start,
    std::function<std::string(const Resp&)> render = nullptr) {
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + context->options.backend_timeout));
  Request req_copy = RequestLine(request);
  RouteResult result;
  result.deferred = [context, api, call, req_copy, start,
                     render](std::function<void(Response)> reply) {
    RegisterBackendCall(&call->context);
    start(call.get(), [context, api, call, req_copy, reply, render](grpc::Status status) mutable {
      context->metrics->ApiRequest(api, static_cast<int>(HttpStatusFor(status.error_code())));
      if (!status.ok()) {
        reply(JsonError(req_copy, HttpStatusFor(status.error_code()),
                        wire::StatusCodeName(status.error_code()), status.error_message()));
      } else {
        Response res = http::MakeResponse(
            req_copy, bhttp::status::ok, "application/json",
            (render ? render(call->response) : ProtoJson(call->response)) + "\n");
        SecurityHeaders(res);
        reply(std::move(res));
      }
      // The reply (it holds the HTTP connection) goes before the call leaves the registry
      // (edge/backend_calls.h); the call itself is freed later, by gRPC, holding nothing else.
      reply = nullptr;
      UnregisterBackendCall(&call->context);
    });
  };
  return result;
}

// Reads an audit Query stream into one HTTP answer (JSON array or JSON lines).
class AuditQueryReader : public grpc::ClientReadReactor<podgate::audit::v1::QueryResponse> {
 public:
  AuditQueryReader(EdgeContext* context, podgate::audit::v1::QueryRequest request, Request req,
                   bool json_lines, size_t max_records, std::function<void(Response)> reply,
                   const runtime::TraceContext& trace = {})
      : context_(context),
        request_(std::move(request)),
        req_(std::move(req)),
        json_lines_(json_lines),
        max_records_(max_records),
        reply_(std::move(reply)) {
    // Before the call is created: a deadline set afterwards is ignored.
    grpc_context_.set_deadline(absl::ToChronoTime(absl::Now() + context_->options.backend_timeout));
    runtime::AddTraceMetadata(&grpc_context_, trace);
    RegisterBackendCall(&grpc_context_);
    context_->audit->async()->Query(&grpc_context_, &request_, this);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;
    }
    if (response_.has_record()) {
      if (records_.size() < max_records_) {
        records_.push_back(ProtoJson(response_.record()));
      }
    } else if (response_.has_page_end()) {
      next_page_token_ = response_.page_end().next_page_token();
    }
    response_.Clear();
    StartRead(&response_);
  }

  void OnDone(const grpc::Status& status) override {
    context_->metrics->ApiRequest("audit", static_cast<int>(HttpStatusFor(status.error_code())));
    if (!status.ok()) {
      reply_(JsonError(req_, HttpStatusFor(status.error_code()),
                       wire::StatusCodeName(status.error_code()), status.error_message()));
    } else if (json_lines_) {
      std::string body;
      for (const std::string& r : records_) {
        absl::StrAppend(&body, r, "\n");
      }
      Response res = http::MakeResponse(req_, bhttp::status::ok, "application/x-ndjson", body);
      if (!next_page_token_.empty()) {
        res.set("X-Next-Page-Token", next_page_token_);
      }
      SecurityHeaders(res);
      reply_(std::move(res));
    } else {
      std::string body =
          absl::StrCat("{\"records\":[", absl::StrJoin(records_, ","),
                       "],\"next_page_token\":", nlohmann::json(next_page_token_).dump(), "}\n");
      Response res = http::MakeResponse(req_, bhttp::status::ok, "application/json", body);
      SecurityHeaders(res);
      reply_(std::move(res));
    }
    // The reply (it holds the HTTP connection) goes before the call leaves the registry.
    reply_ = nullptr;
    UnregisterBackendCall(&grpc_context_);
    delete this;
  }

 private:
  EdgeContext* context_;
  grpc::ClientContext grpc_context_;
  podgate::audit::v1::QueryRequest request_;
  podgate::audit::v1::QueryResponse response_;
  Request req_;
  bool json_lines_;
  size_t max_records_;
  std::function<void(Response)> reply_;
  std::vector<std::string> records_;
  std::string next_page_token_;
};

}  // namespace

std::string HttpApi::TokenOf(const Request& request) const {
  std::string authorization = Header(request, bhttp::field::authorization);
  if (!authorization.empty()) {
    std::optional<std::string> token = auth::BearerToken(authorization);
    return token.value_or("");
  }
  std::optional<std::string> cookie =
      FindCookie(Header(request, bhttp::field::cookie), kTokenCookie);
  return cookie.value_or("");
}

RouteResult HttpApi::Targets(const Request& request, const http::RequestContext& peer,
                             std::string_view query) const {
  // exec verifies the token it is given; only an absent one is refused here (and counted).
  // In auth-proxy mode the proxy's headers are checked against the token here first.
  std::string token = TokenOf(request);
  bool verified_here = false;
  if (token.empty() || (context_->proxies != nullptr && context_->proxies->auth_proxy_mode())) {
    absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "targets", &token);
    if (!verified.ok()) {
      return AuthRefusal(request, verified.status());
    }
    verified_here = true;
  }
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  std::string ns = q.ok() ? First(*q, "namespace") : "";
  std::string cluster = q.ok() ? First(*q, "cluster") : "";
  absl::Status valid = q.ok() ? absl::OkStatus() : q.status();
  if (valid.ok() && !ns.empty()) {
    valid = k8s::ValidateNamespaceName(ns);
  }
  if (valid.ok()) {
    valid = k8s::ValidateTargetCluster(cluster);
  }
  if (!valid.ok()) {
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            std::string(valid.message())));
  }
  using Call =
      UnaryCall<podgate::exec::v1::ListTargetsRequest, podgate::exec::v1::ListTargetsResponse>;
  auto call = std::make_shared<Call>();
  call->request.mutable_credential()->set_bearer_token(token);
  call->request.set_namespace_(ns);
  call->request.set_cluster(cluster);
  runtime::AddTraceMetadata(&call->context, TraceOf(peer));
  EdgeContext* context = context_;
  RouteResult result =
      DeferredUnary<podgate::exec::v1::ListTargetsRequest, podgate::exec::v1::ListTargetsResponse>(
          context, request, "targets", call,
          [context](Call* c, std::function<void(grpc::Status)> done) {
            context->exec->async()->ListTargets(&c->context, &c->request, &c->response,
                                                std::move(done));
          });
  // exec decides (and audits) the call; locally the token only picks the keep-alive.
  result.authenticated = verified_here || context_->verifier->Verify(token).ok();
  return result;
}

RouteResult HttpApi::Sessions(const Request& request, const http::RequestContext& peer) const {
  // Verified here as well as by exec: the answer names other users' sessions.
  std::string token;
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "sessions", &token);
  if (!verified.ok()) {
    return AuthRefusal(request, verified.status());
  }
  using Call =
      UnaryCall<podgate::exec::v1::ListSessionsRequest, podgate::exec::v1::ListSessionsResponse>;
  auto call = std::make_shared<Call>();
  call->request.mutable_credential()->set_bearer_token(token);
  runtime::AddTraceMetadata(&call->context, TraceOf(peer));
  EdgeContext* context = context_;
  RouteResult result = DeferredUnary<podgate::exec::v1::ListSessionsRequest,
                                     podgate::exec::v1::ListSessionsResponse>(
      context, request, "sessions", call,
      [context](Call* c, std::function<void(grpc::Status)> done) {
        context->exec->async()->ListSessions(&c->context, &c->request, &c->response,
                                             std::move(done));
      },
      [](const podgate::exec::v1::ListSessionsResponse& r) { return SessionsJson(r); });
  result.authenticated = true;
  return result;
}

RouteResult HttpApi::Allowed(const Request& request, const http::RequestContext& peer,
                             std::string_view query) const {
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "allowed");
  if (!verified.ok()) {
    return AuthRefusal(request, verified.status());
  }
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  absl::Status valid =
      q.ok() ? k8s::ValidateTarget(First(*q, "namespace"), First(*q, "pod"), First(*q, "container"))
             : q.status();
  if (valid.ok()) {
    valid = k8s::ValidateTargetCluster(First(*q, "cluster"));
  }
  if (!valid.ok()) {
    context_->metrics->ApiRequest("allowed", 400);
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            std::string(valid.message())));
  }
  using Call =
      UnaryCall<podgate::policy::v1::ListAllowedRequest, podgate::policy::v1::ListAllowedResponse>;
  auto call = std::make_shared<Call>();
  *call->request.mutable_principal() = verified->principal;
  call->request.mutable_target()->set_namespace_(First(*q, "namespace"));
  call->request.mutable_target()->set_pod(First(*q, "pod"));
  call->request.mutable_target()->set_container(First(*q, "container"));
  call->request.mutable_target()->set_cluster(First(*q, "cluster"));
  // edge never sees pods, so their labels are unknown: rules selecting pods by label count as
  // matching (the list is what the user may run there; exec decides each command with them).
  call->request.set_ignore_pod_labels(true);
  runtime::AddTraceMetadata(&call->context, TraceOf(peer));
  EdgeContext* context = context_;
  RouteResult result = DeferredUnary<podgate::policy::v1::ListAllowedRequest,
                                     podgate::policy::v1::ListAllowedResponse>(
      context, request, "allowed", call,
      [context](Call* c, std::function<void(grpc::Status)> done) {
        context->policy->async()->ListAllowed(&c->context, &c->request, &c->response,
                                              std::move(done));
      });
  result.authenticated = true;
  return result;
}

RouteResult HttpApi::Audit(const Request& request, const http::RequestContext& peer,
                           std::string_view query) const {
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "audit");
  if (!verified.ok()) {
    return AuthRefusal(request, verified.status());
  }
  if (!IsAuditor(*verified)) {
    context_->metrics->ApiRequest("audit", 403);
    RouteResult refused = Answer(JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                                           "the audit trail is for auditors"));
    refused.authenticated = true;
    return refused;
  }
  auto bad_request = [this, &request](const std::string& message) {
    context_->metrics->ApiRequest("audit", 400);
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT", message));
  };
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  if (!q.ok()) {
    return bad_request(std::string(q.status().message()));
  }
  podgate::audit::v1::QueryRequest query_request;
  bool json_lines = false;
  bool follow = false;
  int page_size = 100;
  for (const auto& [k, v] : *q) {
    if (k == "user") {
      query_request.add_users(v);
    } else if (k == "user_prefix") {
      query_request.add_user_prefixes(v);
    } else if (k == "group") {
      query_request.add_groups(v);
    } else if (k == "namespace") {
      query_request.add_namespaces(v);
    } else if (k == "cluster") {
      // `cluster=` (empty) asks for records from before clusters existed, which carry "".
      if (absl::Status s = k8s::ValidateTargetCluster(v); !s.ok()) {
        return bad_request(std::string(s.message()));
      }
      query_request.add_clusters(v);
    } else if (k == "pod") {
      query_request.add_pods(v);
    } else if (k == "container") {
      query_request.add_containers(v);
    } else if (k == "session_id") {
      query_request.add_session_ids(v);
    } else if (k == "trace_id") {
      // `trace_id=` (empty) asks for records of events that carry none.
      if (!v.empty() && !runtime::IsTraceId(v)) {
        return bad_request("trace_id must be 32 lowercase hex digits (not all zeros)");
      }
      query_request.add_trace_ids(v);
    } else if (k == "rule") {
      query_request.add_rules(v);
    } else if (k == "kind") {
      const auto& type = *podgate::common::v1::EventKind_descriptor();
      std::optional<int> kind = wire::EnumFromLabel(type, v);
      if (!kind.has_value()) {
        return bad_request(EnumFilterError("kind", type, v));
      }
      query_request.add_kinds(static_cast<podgate::common::v1::EventKind>(*kind));
    } else if (k == "verdict") {
      const auto& type = *podgate::common::v1::Verdict_descriptor();
      std::optional<int> verdict = wire::EnumFromLabel(type, v);
      if (!verdict.has_value()) {
        return bad_request(EnumFilterError("verdict", type, v));
      }
      query_request.add_verdicts(static_cast<podgate::common::v1::Verdict>(*verdict));
    } else if (k == "argv_contains") {
      query_request.set_argv_contains(v);
    } else if (k == "page_token") {
      query_request.set_page_token(v);
    } else if (k == "newest_first") {
      query_request.set_newest_first(v == "true" || v == "1");
    } else if (k == "start_time" || k == "end_time") {
      google::protobuf::Timestamp t;
      if (!google::protobuf::util::TimeUtil::FromString(v, &t)) {
        return bad_request(absl::StrCat(k, " must be RFC 3339"));
      }
      *(k == "start_time" ? query_request.mutable_start_time() : query_request.mutable_end_time()) =
          t;
    } else if (k == "page_size") {
      if (!absl::SimpleAtoi(v, &page_size) || page_size < 1 || page_size > 1000) {
        return bad_request("page_size must be 1 to 1000");
      }
    } else if (k == "follow") {
      if (v != "1" && v != "true" && v != "0" && v != "false") {
        return bad_request("follow is 1 or 0");
      }
      follow = v == "1" || v == "true";
    } else if (k == "format") {
      if (v != "json" && v != "jsonl") {
        return bad_request("format is json or jsonl");
      }
      json_lines = v == "jsonl";
    } else {
      return bad_request(absl::StrCat("unknown parameter ", k.substr(0, 40)));
    }
  }
  query_request.set_page_size(page_size);
  if (follow) {
    return AuditFollow(request, *verified, std::move(query_request), json_lines);
  }
  RouteResult result;
  result.authenticated = true;
  Request req_copy = RequestLine(request);
  EdgeContext* context = context_;
  result.deferred = [context, query_request, req_copy, json_lines, page_size,
                     trace = TraceOf(peer)](std::function<void(Response)> reply) {
    new AuditQueryReader(context, query_request, req_copy, json_lines,
                         static_cast<size_t>(page_size), std::move(reply), trace);
  };
  return result;
}

RouteResult HttpApi::AuditFollow(const Request& request, const auth::VerifiedToken& verified,
                                 podgate::audit::v1::QueryRequest query_request,
                                 bool json_lines) const {
  auto refuse = [this, &request](bhttp::status status, const std::string& code,
                                 const std::string& message) {
    context_->metrics->ApiRequest("audit", static_cast<int>(status));
    RouteResult refused = Answer(JsonError(request, status, code, message));
    refused.authenticated = true;
    return refused;
  };
  // A stream asked for on a connection still open while edge stops would outlive the drain,
  // which has already ended the open ones.
  if (context_->sessions->draining()) {
    RouteResult refused = refuse(bhttp::status::service_unavailable, "UNAVAILABLE",
                                 "edge is shutting down; follow the audit trail through another");
    refused.response->set(bhttp::field::retry_after, "1");
    return refused;
  }
  // The combinations audit would refuse, answered before a stream starts.
  if (absl::Status s = ValidateFollowQuery(query_request); !s.ok()) {
    return refuse(bhttp::status::bad_request, "INVALID_ARGUMENT", std::string(s.message()));
  }
  const std::string& user = verified.principal.user();
  if (absl::Status s = context_->limits->AcquireAuditFollow(user); !s.ok()) {
    context_->metrics->Rejection("audit_follow_limit");
    RouteResult refused =
        refuse(bhttp::status::too_many_requests, "RESOURCE_EXHAUSTED", std::string(s.message()));
    refused.response->set(bhttp::field::retry_after, "5");
    return refused;
  }
  query_request.set_follow(true);
  RouteResult result;
  result.authenticated = true;
  result.response = http::MakeResponse(
      request, bhttp::status::ok, json_lines ? "application/x-ndjson" : "text/event-stream", "");
  // Proxies must pass events through as they come.
  result.response->set("X-Accel-Buffering", "no");
  SecurityHeaders(*result.response);
  result.stream = NewAuditFollowStream(context_, std::move(query_request), user, json_lines);
  return result;
}

absl::Status ValidateFollowQuery(const podgate::audit::v1::QueryRequest& request) {
  if (!request.page_token().empty()) {
    return absl::InvalidArgumentError("page_token cannot be combined with follow");
  }
  if (request.newest_first()) {
    return absl::InvalidArgumentError(
        "newest_first cannot be combined with follow (records come oldest first)");
  }
  if (request.has_end_time()) {
    return absl::InvalidArgumentError("end_time cannot be combined with follow");
  }
  return absl::OkStatus();
}

RouteResult HttpApi::Login(const Request& request, const http::RequestContext& peer,
                           bool login) const {
  // A cookie rides along with cross-site requests: only allowed origins may set or clear it.
  std::string origin = Header(request, bhttp::field::origin);
  if (!OriginAllowed(origin, context_->options.allowed_origins)) {
    context_->metrics->Rejection("origin");
    return Answer(
        JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                  origin.empty() ? "an Origin header is required" : OriginRefusal(origin)));
  }
  const std::string secure = context_->options.secure_cookie ? "; Secure" : "";
  if (!login) {
    Response res = Json(request, bhttp::status::ok, {{"ok", true}});
    res.set(bhttp::field::set_cookie, absl::StrCat(kTokenCookie, "=; Path=/; Max-Age=0; HttpOnly",
                                                   secure, "; SameSite=Strict"));
    return Answer(std::move(res));
  }
  // Identity headers only from the auth proxy, and then agreeing with the token.
  AuthProxyRequest auth_proxy;
  if (context_->proxies != nullptr) {
    absl::StatusOr<AuthProxyRequest> inspected = context_->proxies->Inspect(request, peer);
    if (!inspected.ok()) {
      AuthFailed(context_, {kUntrustedProxyReason,
                            std::string(inspected.status().message()),
                            peer.remote_address,
                            "/api/v1/login",
                            {}});
      log::Warn(
          "identity headers from a peer that is not the auth proxy refused",
          {{"source", peer.remote_address}, {"peer", TcpPeer(peer)}, {"path", "/api/v1/login"}});
      return AuthRefusal(request, inspected.status());
    }
    auth_proxy = *std::move(inspected);
  }
  std::string token = auth::BearerToken(Header(request, bhttp::field::authorization)).value_or("");
  absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
  if (!verified.ok()) {
    AuthFailed(context_, {token.empty() ? "missing" : auth::AuthFailureReason(verified.status()),
                          std::string(verified.status().message()),
                          peer.remote_address,
                          "/api/v1/login",
                          {}});
    return AuthRefusal(request, verified.status());
  }
  if (context_->proxies != nullptr) {
    if (absl::Status consistent = context_->proxies->CheckIdentity(auth_proxy, *verified);
        !consistent.ok()) {
      AuthFailed(context_, {kProxyMismatchReason,
                            std::string(consistent.message()),
                            peer.remote_address,
                            "/api/v1/login",
                            {}});
      return AuthRefusal(request, consistent);
    }
  }
  int64_t max_age = std::max<int64_t>(0, absl::ToInt64Seconds(verified->expires - absl::Now()));
  Response res = Json(request, bhttp::status::ok,
                      {{"user", verified->principal.user()},
                       {"groups", verified->principal.groups()},
                       {"expires", Rfc3339Utc(verified->expires)}});
  res.set(bhttp::field::set_cookie,
          absl::StrCat(kTokenCookie, "=", token, "; Path=/; Max-Age=", max_age, "; HttpOnly",
                       secure, "; SameSite=Strict"));
  RouteResult result = Answer(std::move(res));
  result.authenticated = true;
  return result;
}

RouteResult HttpApi::Session(const Request& request, const http::RequestContext& peer) const {
  constexpr char kRoute[] = "session";
  const bhttp::verb method = request.method();
  if (method != bhttp::verb::get && method != bhttp::verb::head && method != bhttp::verb::post) {
    context_->metrics->ApiRequest(kRoute, 405);
    Response res = JsonError(request, bhttp::status::method_not_allowed, "INVALID_ARGUMENT",
                             "/api/v1/session takes GET or POST");
    res.set(bhttp::field::allow, "GET, HEAD, POST");
    return Answer(std::move(res));
  }
  // Any Origin, not only on POST: the page posts here at start-up (browsers send Origin on
  // POST) to learn, before opening a WebSocket, that it is served under an origin the
  // handshakes would refuse. Requests without Origin (CLI clients, same-origin GETs) pass.
  if (auto it = request.find(bhttp::field::origin); it != request.end()) {
    const std::string origin(it->value());
    if (!OriginAllowed(origin, context_->options.allowed_origins)) {
      context_->metrics->Rejection("origin");
      context_->metrics->ApiRequest(kRoute, 403);
      return Answer(
          JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED", OriginRefusal(origin)));
    }
  }
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, kRoute);
  if (!verified.ok()) {
    return AuthRefusal(request, verified.status());
  }
  context_->metrics->ApiRequest(kRoute, 200);
  RouteResult result = Answer(Json(request, bhttp::status::ok,
                                   {{"user", verified->principal.user()},
                                    {"groups", verified->principal.groups()},
                                    {"issuer", verified->principal.issuer()},
                                    {"expires", Rfc3339Utc(verified->expires)},
                                    {"auditor", IsAuditor(*verified)}}));
  result.authenticated = true;
  return result;
}

absl::StatusOr<auth::VerifiedToken> HttpApi::Authenticate(const Request& request,
                                                          const http::RequestContext& peer,
                                                          const char* route,
                                                          std::string* token_out) const {
  // Identity headers only from the auth proxy (docs/auth.md, "Auth-proxy mode"); the token it
  // forwarded comes first.
  AuthProxyRequest auth_proxy;
  if (context_->proxies != nullptr) {
    absl::StatusOr<AuthProxyRequest> inspected = context_->proxies->Inspect(request, peer);
    if (!inspected.ok()) {
      std::string_view target(request.target().data(), request.target().size());
      AuthFailed(context_, {kUntrustedProxyReason,
                            std::string(inspected.status().message()),
                            peer.remote_address,
                            std::string(target.substr(0, target.find('?'))),
                            {}});
      log::Warn("identity headers from a peer that is not the auth proxy refused",
                {{"source", peer.remote_address},
                 {"peer", TcpPeer(peer)},
                 {"path", std::string(target.substr(0, std::min<size_t>(target.find('?'), 256)))}});
      context_->metrics->ApiRequest(route, 403);
      return inspected.status();
    }
    auth_proxy = *std::move(inspected);
  }
  std::string token = auth_proxy.token.empty() ? TokenOf(request) : auth_proxy.token;
  if (token_out != nullptr) {
    *token_out = token;
  }
  absl::StatusOr<auth::VerifiedToken> verified;
  std::string reason;
  if (!token.empty()) {
    verified = context_->verifier->Verify(token);
    reason = verified.ok() ? "" : auth::AuthFailureReason(verified.status());
    if (verified.ok() && context_->proxies != nullptr) {
      if (absl::Status consistent = context_->proxies->CheckIdentity(auth_proxy, *verified);
          !consistent.ok()) {
        std::string_view target(request.target().data(), request.target().size());
        AuthFailed(context_, {kProxyMismatchReason,
                              std::string(consistent.message()),
                              peer.remote_address,
                              std::string(target.substr(0, target.find('?'))),
                              {}});
        log::Warn("request refused: the auth proxy's headers disagree with the token",
                  {{"source", peer.remote_address},
                   {"proxy", TcpPeer(peer)},
                   {"header_user", auth_proxy.user.substr(0, 128)},
                   {"token_user", verified->principal.user()}});
        context_->metrics->ApiRequest(route, 403);
        return consistent;
      }
    }
  } else if (auth_proxy.from_proxy) {
    context_->proxies->CountMissingToken();
    reason = "missing";
    verified = absl::UnauthenticatedError(
        "the auth proxy forwarded no token: it must pass the user's token "
        "(X-Forwarded-Access-Token or Authorization: Bearer)");
  } else if (request.find(bhttp::field::authorization) != request.end()) {
    reason = "malformed";
    verified = absl::UnauthenticatedError("the Authorization header is not a Bearer token");
  } else {
    reason = "missing";
    verified = absl::UnauthenticatedError(
        "a credential is required: an Authorization: Bearer header or the podgate_token cookie "
        "(POST /api/v1/login sets it)");
  }
  if (!verified.ok()) {
    std::string_view target(request.target().data(), request.target().size());
    AuthFailed(context_, {reason,
                          std::string(verified.status().message()),
                          peer.remote_address,
                          std::string(target.substr(0, target.find('?'))),
                          {}});
    context_->metrics->ApiRequest(route, 401);
  }
  return verified;
}

bool HttpApi::IsAuditor(const auth::VerifiedToken& verified) const {
  for (const std::string& g : verified.principal.groups()) {
    for (const std::string& a : context_->options.auditor_groups) {
      if (g == a) {
        return true;
      }
    }
  }
  return false;
}

}  // namespace podgate::edge
