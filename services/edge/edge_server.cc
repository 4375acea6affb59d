#include "edge/edge_server.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "crypto/sha256.h"
#include "edge/browser_session.h"
#include "edge/protocol.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/time_util.h"
#include "k8s/names.h"
#include "nlohmann/json.hpp"
#include "runtime/log.h"
#include "runtime/timer.h"
#include "wire/enum_label.h"
#include "wire/status.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;
using http::Request;
using http::Response;
using http::RouteResult;

const std::vector<std::pair<std::string, std::string>>& SecurityHeaderList() {
  static const auto* const kHeaders = new std::vector<std::pair<std::string, std::string>>{
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      // Scripts only from edge's own files. Styles may also be inline: xterm.js's renderer
      // writes its colours and cell sizes into <style> elements; the page never inserts markup.
      {"Content-Security-Policy",
       "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
       "connect-src 'self'; object-src 'none'; form-action 'self'; frame-ancestors 'none'; "
       "base-uri 'none'"}};
  return *kHeaders;
}

namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

std::string Header(const Request& request, bhttp::field field) {
  auto it = request.find(field);
  return it == request.end() ? "" : std::string(it->value());
}

void SecurityHeaders(Response& res) {
  for (const auto& [name, value] : SecurityHeaderList()) {
    if (res.find(name) == res.end()) {
      res.set(name, value);
    }
  }
}

Response Json(const Request& request, bhttp::status status, const nlohmann::json& body) {
  // Messages may quote what the client sent (an Origin, a query value): bytes that are not
  // UTF-8 become U+FFFD instead of failing the answer.
  Response res = http::MakeResponse(
      request, status, "application/json",
      body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  SecurityHeaders(res);
  return res;
}

Response JsonError(const Request& request, bhttp::status status, const std::string& code,
                   const std::string& message) {
  return Json(request, status, {{"error", {{"code", code}, {"message", message}}}});
}

RouteResult Answer(Response res) {
  RouteResult r;
  r.response = std::move(res);
  return r;
}

// A handshake while edge shuts down: a session opened now would only be closed again.
RouteResult RefuseForShutdown(EdgeContext* context, const Request& request) {
  context->metrics->Rejection("shutdown");
  return Answer(JsonError(request, bhttp::status::service_unavailable, "UNAVAILABLE",
                          "edge is shutting down; reconnect to continue"));
}

bhttp::status HttpStatusFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return bhttp::status::ok;
    case grpc::StatusCode::INVALID_ARGUMENT:
      return bhttp::status::bad_request;
    case grpc::StatusCode::UNAUTHENTICATED:
      return bhttp::status::unauthorized;
    case grpc::StatusCode::PERMISSION_DENIED:
      return bhttp::status::forbidden;
    case grpc::StatusCode::NOT_FOUND:
      return bhttp::status::not_found;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return bhttp::status::too_many_requests;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return bhttp::status::gateway_timeout;
    case grpc::StatusCode::UNAVAILABLE:
      return bhttp::status::service_unavailable;
    default:
      return bhttp::status::bad_gateway;
  }
}

std::string ProtoJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  if (!google::protobuf::util::MessageToJsonString(message, &out, options).ok()) {
    return "{}";
  }
  return out;
}

const char* ContentType(const std::string& path) {
  static const std::pair<const char*, const char*> kTypes[] = {
      {".html", "text/html; charset=utf-8"},
      {".js", "text/javascript; charset=utf-8"},
      {".mjs", "text/javascript; charset=utf-8"},
      {".css", "text/css; charset=utf-8"},
      {".json", "application/json"},
      {".map", "application/json"},
      {".svg", "image/svg+xml"},
      {".png", "image/png"},
      {".ico", "image/x-icon"},
      {".woff2", "font/woff2"},
      {".txt", "text/plain; charset=utf-8"},
  };
  for (const auto& [ext, type] : kTypes) {
    if (absl::EndsWith(path, ext)) {
      return type;
    }
  }
  return "application/octet-stream";
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

std::string First(const std::multimap<std::string, std::string>& q, const std::string& key) {
  auto it = q.find(key);
  return it == q.end() ? "" : it->second;
}

// Answers a route with one unary backend call, deferred: `start(call, done)` issues the call
// and the response (or the call's error, as a JSON error with the matching HTTP status) goes
// back to the browser once it completes. `api` names the endpoint in metrics.
template <class Req, class Resp>
RouteResult DeferredUnary(
    EdgeContext* context, const Request& request, const char* api,
    std::shared_ptr<UnaryCall<Req, Resp>> call,
    std::function<void(UnaryCall<Req, Resp>*, std::function<void(grpc::Status)>)> start) {
  call->context.set_deadline(absl::ToChronoTime(absl::Now() + context->options.backend_timeout));
  Request req_copy(request.method(), request.target(), request.version());
  req_copy.keep_alive(request.keep_alive());
  RouteResult result;
  result.deferred = [context, api, call, req_copy, start](std::function<void(Response)> reply) {
    start(call.get(), [context, api, call, req_copy, reply](grpc::Status status) {
      context->metrics->ApiRequest(api, static_cast<int>(HttpStatusFor(status.error_code())));
      if (!status.ok()) {
        reply(JsonError(req_copy, HttpStatusFor(status.error_code()),
                        wire::StatusCodeName(status.error_code()), status.error_message()));
        return;
      }
      Response res = http::MakeResponse(req_copy, bhttp::status::ok, "application/json",
                                        ProtoJson(call->response) + "\n");
      SecurityHeaders(res);
      reply(std::move(res));
    });
  };
  return result;
}

}  // namespace

absl::StatusOr<std::multimap<std::string, std::string>> ParseQuery(std::string_view query) {
  std::multimap<std::string, std::string> out;
  auto decode = [](absl::string_view in) -> std::optional<std::string> {
    std::string s;
    for (size_t i = 0; i < in.size(); ++i) {
      if (in[i] == '+') {
        s += ' ';
      } else if (in[i] == '%') {
        int v = 0;
        if (i + 2 >= in.size()) {
          return std::nullopt;
        }
        for (int k = 1; k <= 2; ++k) {
          char c = in[i + static_cast<size_t>(k)];
          int d = absl::ascii_isdigit(static_cast<unsigned char>(c)) ? c - '0'
                  : (c >= 'a' && c <= 'f')                           ? c - 'a' + 10
                  : (c >= 'A' && c <= 'F')                           ? c - 'A' + 10
                                                                     : -1;
          if (d < 0) {
            return std::nullopt;
          }
          v = v * 16 + d;
        }
        s += static_cast<char>(v);
        i += 2;
      } else {
        s += in[i];
      }
    }
    return s;
  };
  for (absl::string_view part : absl::StrSplit(AV(query), '&', absl::SkipEmpty())) {
    size_t eq = part.find('=');
    absl::string_view k = part.substr(0, eq);
    absl::string_view v = eq == absl::string_view::npos ? "" : part.substr(eq + 1);
    std::optional<std::string> dk = decode(k);
    std::optional<std::string> dv = decode(v);
    if (!dk.has_value() || !dv.has_value()) {
      return absl::InvalidArgumentError("bad percent-encoding in the query");
    }
    out.emplace(*std::move(dk), *std::move(dv));
  }
  return out;
}

absl::StatusOr<StaticFiles> StaticFiles::Load(const std::string& root, size_t max_bytes) {
  StaticFiles files;
  if (root.empty()) {
    return files;
  }
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) {
    return absl::InvalidArgumentError(absl::StrCat("--web_root: ", root, " is not a directory"));
  }
  size_t total = 0;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (!it->is_regular_file()) {
      continue;
    }
    std::ifstream in(it->path(), std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    File f;
    f.body = ss.str();
    total += f.body.size();
    if (total > max_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("--web_root: more than ", max_bytes, " bytes of files"));
    }
    std::string rel = "/" + std::filesystem::relative(it->path(), root).generic_string();
    f.content_type = ContentType(rel);
    // The page itself must be revalidated so new releases load; fingerprinted assets under
    // /assets/ never change under their name.
    f.cache_control =
        absl::StartsWith(rel, "/assets/") ? "public, max-age=31536000, immutable" : "no-cache";
    f.etag = absl::StrCat("\"", crypto::Sha256Hex(f.body).substr(0, 32), "\"");
    files.files_.emplace(rel, std::move(f));
  }
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("--web_root: ", ec.message()));
  }
  return files;
}

const StaticFiles::File* StaticFiles::Find(const std::string& path) const {
  auto it = files_.find(path == "/" ? "/index.html" : path);
  return it == files_.end() ? nullptr : &it->second;
}

std::string EdgeRouter::TokenOf(const Request& request) const {
  std::string authorization = Header(request, bhttp::field::authorization);
  if (!authorization.empty()) {
    std::optional<std::string> token = auth::BearerToken(authorization);
    return token.value_or("");
  }
  std::optional<std::string> cookie =
      FindCookie(Header(request, bhttp::field::cookie), kTokenCookie);
  return cookie.value_or("");
}

RouteResult EdgeRouter::Route(const Request& request, const http::RequestContext& peer,
                              bool is_upgrade) {
  std::string_view target(request.target().data(), request.target().size());
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  if (absl::StartsWith(AV(path), "/ws/")) {
    if (!is_upgrade) {
      return Answer(JsonError(request, bhttp::status::upgrade_required, "FAILED_PRECONDITION",
                              "this path takes a WebSocket upgrade"));
    }
    return RouteWebSocket(request, peer, path, query);
  }
  if (is_upgrade) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND", "no such WebSocket"));
  }
  const bool get = request.method() == bhttp::verb::get || request.method() == bhttp::verb::head;
  if (path == "/healthz" && get) {
    return Answer(http::MakeResponse(request, bhttp::status::ok, "text/plain", "ok\n"));
  }
  if (path == "/readyz" && get) {
    return Ready(request);
  }
  if (path == "/api/v1/targets" && get) {
    return Targets(request, peer, query);
  }
  if (path == "/api/v1/allowed" && get) {
    return Allowed(request, peer, query);
  }
  if (path == "/api/v1/audit" && get) {
    return Audit(request, peer, query);
  }
  if (path == "/api/v1/session") {
    return Session(request, peer);
  }
  if ((path == "/api/v1/login" || path == "/api/v1/logout") &&
      request.method() == bhttp::verb::post) {
    return Login(request, peer, path == "/api/v1/login");
  }
  if (absl::StartsWith(AV(path), "/api/")) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND", "no such API"));
  }
  if (!get) {
    return Answer(JsonError(request, bhttp::status::method_not_allowed, "INVALID_ARGUMENT",
                            "method not allowed"));
  }
  return Static(request, path);
}

RouteResult EdgeRouter::RouteWebSocket(const Request& request, const http::RequestContext& peer,
                                       std::string_view path, std::string_view query) {
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
    log::Info("websocket origin refused",
              {{"origin", origin.substr(0, 200)}, {"source", peer.remote_address}});
    return Answer(
        JsonError(request, bhttp::status::forbidden, "PERMISSION_DENIED",
                  origin.empty() ? "an Origin header is required" : "this Origin is not allowed"));
  }
  std::vector<std::string> parts = absl::StrSplit(AV(path.substr(4)), '/');
  SessionParams params;
  if (parts.size() != 3 || (parts[0] != "v1" && parts[0] != "seed")) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND",
                            "use /ws/v1/{namespace}/{pod} or /ws/seed/{namespace}/{pod}"));
  }
  params.protocol = parts[0] == "v1" ? Protocol::kV1 : Protocol::kSeed;
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  if (!q.ok()) {
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            std::string(q.status().message())));
  }
  std::string container = First(*q, "container");
  if (absl::Status s = k8s::ValidateTarget(parts[1], parts[2], container); !s.ok()) {
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            std::string(s.message())));
  }
  params.target.set_namespace_(parts[1]);
  params.target.set_pod(parts[2]);
  params.target.set_container(container);
  std::string mode = First(*q, "mode");
  if (mode == "shell" && params.protocol == Protocol::kV1) {
    params.mode = podgate::common::v1::SESSION_MODE_SHELL;
  } else if (!mode.empty() && mode != "command") {
    return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                            "mode is command or shell (shell only on v1)"));
  }
  params.source_address = peer.remote_address;
  params.path = std::string(path);
  params.client = Header(request, bhttp::field::user_agent).substr(0, 256);

  RouteResult result;
  if (params.protocol == Protocol::kV1) {
    absl::StatusOr<OfferedProtocols> offered =
        ParseOfferedProtocols(Header(request, bhttp::field::sec_websocket_protocol));
    if (!offered.ok()) {
      AuthFailed(context_, {"malformed", std::string(offered.status().message()),
                            peer.remote_address, std::string(path), params.target});
      return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                              std::string(offered.status().message())));
    }
    if (!offered->v1) {
      return Answer(JsonError(request, bhttp::status::bad_request, "INVALID_ARGUMENT",
                              absl::StrCat("offer the sub-protocol ", kV1Subprotocol)));
    }
    std::string token = offered->token.value_or("");
    if (token.empty()) {
      token = FindCookie(Header(request, bhttp::field::cookie), kTokenCookie).value_or("");
    }
    if (!token.empty()) {
      absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
      if (!verified.ok()) {
        std::string reason = auth::AuthFailureReason(verified.status());
        AuthFailed(context_, {reason, std::string(verified.status().message()), peer.remote_address,
                              std::string(path), params.target});
        log::Info("websocket authentication refused",
                  {{"reason", reason}, {"source", peer.remote_address}});
        return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                                std::string(verified.status().message())));
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

namespace {

// How long /readyz waits for an idle or connecting backend channel to settle. Short of the
// 1 s a Kubernetes probe waits by default.
constexpr absl::Duration kReadyWait = absl::Milliseconds(800);

// One /readyz probe: the backend channels' states, asked to connect; answers once every
// channel is READY or has failed (TRANSIENT_FAILURE, SHUTDOWN), or when the wait runs out.
// IDLE (never used, or unused for a while) and CONNECTING are not failures: a healthy backend
// answers 200 on the first probe.
class ReadyProbe : public std::enable_shared_from_this<ReadyProbe> {
 public:
  // Holds the channels themselves: a probe may outlive the router by its wait.
  ReadyProbe(const EdgeContext& context, Request request, absl::Time deadline)
      : channels_{{{"exec", context.exec_channel},
                   {"policy", context.policy_channel},
                   {"audit", context.audit_channel}}},
        request_(std::move(request)),
        deadline_(deadline) {}

  // The answer if every channel has settled (or `final`), else nullopt.
  std::optional<Response> Check(bool final) {
    nlohmann::json body = nlohmann::json::object();
    bool ready = true;
    bool settled = true;
    for (const auto& [name, channel] : channels_) {
      if (channel == nullptr) {
        continue;
      }
      const grpc_connectivity_state state = channel->GetState(/*try_to_connect=*/true);
      const bool up = state == GRPC_CHANNEL_READY;
      settled = settled &&
                (up || state == GRPC_CHANNEL_TRANSIENT_FAILURE || state == GRPC_CHANNEL_SHUTDOWN);
      body[name] = up ? "ready" : "not ready";
      // audit is optional for the page (only the audit view needs it).
      if (!up && std::string(name) != "audit") {
        ready = false;
      }
    }
    if (!settled && !final) {
      return std::nullopt;
    }
    return Json(request_, ready ? bhttp::status::ok : bhttp::status::service_unavailable, body);
  }

  // Polls until Check answers, on the shared timer thread (GetState does not block).
  void Wait(std::function<void(Response)> reply) {
    const bool final = absl::Now() >= deadline_;
    if (std::optional<Response> answer = Check(final)) {
      reply(*std::move(answer));
      return;
    }
    runtime::TimerQueue::Default().After(
        absl::Milliseconds(10), [self = shared_from_this(), reply = std::move(reply)]() mutable {
          self->Wait(std::move(reply));
        });
  }

 private:
  const std::array<std::pair<const char*, std::shared_ptr<grpc::Channel>>, 3> channels_;
  const Request request_;
  const absl::Time deadline_;
};

}  // namespace

RouteResult EdgeRouter::Ready(const Request& request) {
  if (context_->sessions->draining()) {
    // Load balancers stop sending browsers here while the open sessions wind down.
    return Answer(Json(request, bhttp::status::service_unavailable, {{"edge", "shutting down"}}));
  }
  Request req_copy(request.method(), request.target(), request.version());
  req_copy.keep_alive(request.keep_alive());
  auto probe = std::make_shared<ReadyProbe>(
      *context_, std::move(req_copy),
      absl::Now() + std::min(kReadyWait, context_->options.backend_timeout));
  if (std::optional<Response> answer = probe->Check(/*final=*/false)) {
    return Answer(*std::move(answer));
  }
  RouteResult result;
  result.deferred = [probe](std::function<void(Response)> reply) { probe->Wait(std::move(reply)); };
  return result;
}

RouteResult EdgeRouter::Targets(const Request& request, const http::RequestContext& peer,
                                std::string_view query) {
  // exec verifies the token it is given; only an absent one is refused here (and counted).
  std::string token = TokenOf(request);
  if (token.empty()) {
    return Answer(
        JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                  std::string(Authenticate(request, peer, "targets").status().message())));
  }
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  std::string ns = q.ok() ? First(*q, "namespace") : "";
  absl::Status valid = q.ok() ? absl::OkStatus() : q.status();
  if (valid.ok() && !ns.empty()) {
    valid = k8s::ValidateNamespaceName(ns);
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
  EdgeContext* context = context_;
  RouteResult result =
      DeferredUnary<podgate::exec::v1::ListTargetsRequest, podgate::exec::v1::ListTargetsResponse>(
          context, request, "targets", call,
          [context](Call* c, std::function<void(grpc::Status)> done) {
            context->exec->async()->ListTargets(&c->context, &c->request, &c->response,
                                                std::move(done));
          });
  // exec decides (and audits) the call; locally the token only picks the keep-alive.
  result.authenticated = context_->verifier->Verify(token).ok();
  return result;
}

RouteResult EdgeRouter::Allowed(const Request& request, const http::RequestContext& peer,
                                std::string_view query) {
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "allowed");
  if (!verified.ok()) {
    return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                            std::string(verified.status().message())));
  }
  absl::StatusOr<std::multimap<std::string, std::string>> q = ParseQuery(query);
  const absl::Status valid =
      q.ok() ? k8s::ValidateTarget(First(*q, "namespace"), First(*q, "pod"), First(*q, "container"))
             : q.status();
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

namespace {

// Reads an audit Query stream into one HTTP answer (JSON array or JSON lines).
class AuditQueryReader : public grpc::ClientReadReactor<podgate::audit::v1::QueryResponse> {
 public:
  AuditQueryReader(EdgeContext* context, podgate::audit::v1::QueryRequest request, Request req,
                   bool json_lines, size_t max_records, std::function<void(Response)> reply)
      : context_(context),
        request_(std::move(request)),
        req_(std::move(req)),
        json_lines_(json_lines),
        max_records_(max_records),
        reply_(std::move(reply)) {
    // Before the call is created: a deadline set afterwards is ignored.
    grpc_context_.set_deadline(absl::ToChronoTime(absl::Now() + context_->options.backend_timeout));
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

RouteResult EdgeRouter::Audit(const Request& request, const http::RequestContext& peer,
                              std::string_view query) {
  absl::StatusOr<auth::VerifiedToken> verified = Authenticate(request, peer, "audit");
  if (!verified.ok()) {
    return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                            std::string(verified.status().message())));
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
  int page_size = 100;
  for (const auto& [k, v] : *q) {
    if (k == "user") {
      query_request.add_users(v);
    } else if (k == "group") {
      query_request.add_groups(v);
    } else if (k == "namespace") {
      query_request.add_namespaces(v);
    } else if (k == "pod") {
      query_request.add_pods(v);
    } else if (k == "container") {
      query_request.add_containers(v);
    } else if (k == "session_id") {
      query_request.add_session_ids(v);
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
  RouteResult result;
  result.authenticated = true;
  Request req_copy(request.method(), request.target(), request.version());
  req_copy.keep_alive(request.keep_alive());
  EdgeContext* context = context_;
  result.deferred = [context, query_request, req_copy, json_lines,
                     page_size](std::function<void(Response)> reply) {
    new AuditQueryReader(context, query_request, req_copy, json_lines,
                         static_cast<size_t>(page_size), std::move(reply));
  };
  return result;
}

RouteResult EdgeRouter::Login(const Request& request, const http::RequestContext& peer,
                              bool login) {
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
  std::string token = auth::BearerToken(Header(request, bhttp::field::authorization)).value_or("");
  absl::StatusOr<auth::VerifiedToken> verified = context_->verifier->Verify(token);
  if (!verified.ok()) {
    AuthFailed(context_, {token.empty() ? "missing" : auth::AuthFailureReason(verified.status()),
                          std::string(verified.status().message()),
                          peer.remote_address,
                          "/api/v1/login",
                          {}});
    return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                            std::string(verified.status().message())));
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

RouteResult EdgeRouter::Session(const Request& request, const http::RequestContext& peer) {
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
    return Answer(JsonError(request, bhttp::status::unauthorized, "UNAUTHENTICATED",
                            std::string(verified.status().message())));
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

absl::StatusOr<auth::VerifiedToken> EdgeRouter::Authenticate(const Request& request,
                                                             const http::RequestContext& peer,
                                                             const char* route) const {
  std::string token = TokenOf(request);
  absl::StatusOr<auth::VerifiedToken> verified;
  std::string reason;
  if (!token.empty()) {
    verified = context_->verifier->Verify(token);
    reason = verified.ok() ? "" : auth::AuthFailureReason(verified.status());
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

bool EdgeRouter::IsAuditor(const auth::VerifiedToken& verified) const {
  for (const std::string& g : verified.principal.groups()) {
    for (const std::string& a : context_->options.auditor_groups) {
      if (g == a) {
        return true;
      }
    }
  }
  return false;
}

RouteResult EdgeRouter::Static(const Request& request, std::string_view path) {
  const StaticFiles::File* file = files_.Find(std::string(path));
  if (file == nullptr) {
    return Answer(
        http::MakeResponse(request, bhttp::status::not_found, "text/plain", "not found\n"));
  }
  if (Header(request, bhttp::field::if_none_match) == file->etag) {
    Response res = http::MakeResponse(request, bhttp::status::not_modified, file->content_type, "");
    res.set(bhttp::field::etag, file->etag);
    res.set(bhttp::field::cache_control, file->cache_control);
    SecurityHeaders(res);
    return Answer(std::move(res));
  }
  Response res = http::MakeResponse(request, bhttp::status::ok, file->content_type,
                                    request.method() == bhttp::verb::head ? "" : file->body);
  res.set(bhttp::field::etag, file->etag);
  res.set(bhttp::field::cache_control, file->cache_control);
  SecurityHeaders(res);
  return Answer(std::move(res));
}

}  // namespace podgate::edge
