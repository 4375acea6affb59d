// Dispatch of edge's HTTP requests, and nothing else: which handler answers which method and
// path. The handlers (HTTP API, health, WebSocket handshake, static files) decide the answer.
//
// The order, for a request with `path` (the target before '?'):
//   1. under /ws/: a WebSocket upgrade goes to the WebSocket handler; a plain request is 426
//   2. any other upgrade: 404 "no such WebSocket"
//   3. an exact route for the path whose methods include the request's
//   4. under /api/: 404 "no such API" (also a known API path with a method it does not take)
//   5. anything but GET or HEAD: 405
//   6. GET or HEAD: the static handler (404 for a file it does not have)
// No path is normalised: "/api/v1/../healthz" is not "/healthz" (it reaches the API's 404).
//
// Every request gets a trace context first (docs/architecture.md, "Trace context"): the
// client's `traceparent` continued with a span of edge's own, or a new trace when it sends none
// or a malformed one. Handlers find it in RequestContext::traceparent; every answer (a 101
// included) carries it back as `traceresponse`.
#pragma once

#include <functional>
#include <map>
#include <string>
#include <string_view>

#include "http/server.h"
#include "runtime/trace.h"

namespace podgate::edge {

// What a handler is given: the request, its peer, and the target split at the first '?'.
struct RouteRequest {
  const http::Request& request;
  const http::RequestContext& peer;
  std::string_view path;
  std::string_view query;
};

using RouteHandler = std::function<http::RouteResult(const RouteRequest&)>;

// The trace RouteTable::Route put in `peer`; a new trace when it holds none (a handler called
// without the route table).
runtime::TraceContext TraceOf(const http::RequestContext& peer);

class RouteTable {
 public:
  enum class Methods {
    kGet,   // GET and HEAD
    kPost,  // POST
    kAny,   // every method (the handler answers the ones it does not take)
  };

  // An exact path. One handler per path.
  void Add(std::string path, Methods methods, RouteHandler handler);
  // Upgrades under /ws/.
  void SetWebSocket(RouteHandler handler) { websocket_ = std::move(handler); }
  // GET and HEAD of any path no route names (outside /ws/ and /api/).
  void SetStatic(RouteHandler handler) { static_ = std::move(handler); }

  http::RouteResult Route(const http::Request& request, const http::RequestContext& peer,
                          bool is_upgrade) const;

 private:
  // Route's dispatch, once the trace is in `peer`.
  http::RouteResult Dispatch(const http::Request& request, const http::RequestContext& peer,
                             bool is_upgrade) const;

  struct Entry {
    Methods methods;
    RouteHandler handler;
  };
  std::map<std::string, Entry, std::less<>> exact_;
  RouteHandler websocket_;
  RouteHandler static_;
};

}  // namespace podgate::edge
