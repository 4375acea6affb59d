#include "edge/router.h"

#include <utility>

#include "edge/http_reply.h"
#include "runtime/trace.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;

namespace {

bool StartsWith(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

bool Takes(RouteTable::Methods methods, bhttp::verb verb) {
  switch (methods) {
    case RouteTable::Methods::kGet:
      return verb == bhttp::verb::get || verb == bhttp::verb::head;
    case RouteTable::Methods::kPost:
      return verb == bhttp::verb::post;
    case RouteTable::Methods::kAny:
      return true;
  }
  return false;
}

}  // namespace

runtime::TraceContext TraceOf(const http::RequestContext& peer) {
  absl::StatusOr<runtime::TraceContext> trace = runtime::ParseTraceparent(peer.traceparent);
  return trace.ok() ? *std::move(trace) : runtime::NewTrace();
}

void RouteTable::Add(std::string path, Methods methods, RouteHandler handler) {
  exact_.insert_or_assign(std::move(path), Entry{methods, std::move(handler)});
}

http::RouteResult RouteTable::Route(const http::Request& request, const http::RequestContext& peer,
                                    bool is_upgrade) const {
  // The request's trace: the client's traceparent continued, or a new trace (a correlation id
  // only, so any client may send one; a malformed one is replaced, not refused). Handlers read
  // it from the peer context; the client reads edge's span back from traceresponse.
  const auto header = request.find(runtime::kTraceparentHeader);
  const runtime::TraceContext trace = runtime::ContinueOrStart(
      header == request.end() ? std::string_view()
                              : std::string_view(header->value().data(), header->value().size()));
  http::RequestContext traced = peer;
  traced.traceparent = trace.Header();
  http::RouteResult result = Dispatch(request, traced, is_upgrade);
  const std::string traceresponse = traced.traceparent;
  if (result.response.has_value()) {
    result.response->set(runtime::kTraceresponseHeader, traceresponse);
  } else if (result.websocket != nullptr) {
    result.upgrade_headers.emplace_back(runtime::kTraceresponseHeader, traceresponse);
  } else if (result.deferred) {
    result.deferred = [deferred = std::move(result.deferred),
                       traceresponse](std::function<void(http::Response)> reply) {
      deferred([reply = std::move(reply), traceresponse](http::Response response) {
        response.set(runtime::kTraceresponseHeader, traceresponse);
        reply(std::move(response));
      });
    };
  }
  return result;
}

http::RouteResult RouteTable::Dispatch(const http::Request& request,
                                       const http::RequestContext& peer, bool is_upgrade) const {
  std::string_view target(request.target().data(), request.target().size());
  const size_t q = target.find('?');
  const RouteRequest route{request, peer, target.substr(0, q),
                           q == std::string_view::npos ? "" : target.substr(q + 1)};
  if (StartsWith(route.path, "/ws/")) {
    if (!is_upgrade) {
      return Answer(JsonError(request, bhttp::status::upgrade_required, "FAILED_PRECONDITION",
                              "this path takes a WebSocket upgrade"));
    }
    if (websocket_) {
      return websocket_(route);
    }
  }
  if (is_upgrade) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND", "no such WebSocket"));
  }
  if (auto it = exact_.find(route.path);
      it != exact_.end() && Takes(it->second.methods, request.method())) {
    return it->second.handler(route);
  }
  if (StartsWith(route.path, "/api/")) {
    return Answer(JsonError(request, bhttp::status::not_found, "NOT_FOUND", "no such API"));
  }
  if (!Takes(Methods::kGet, request.method())) {
    return Answer(JsonError(request, bhttp::status::method_not_allowed, "INVALID_ARGUMENT",
                            "method not allowed"));
  }
  if (static_) {
    return static_(route);
  }
  return Answer(http::MakeResponse(request, bhttp::status::not_found, "text/plain", "not found\n"));
}

}  // namespace podgate::edge
