#include "edge/router.h"

#include <utility>

#include "edge/http_reply.h"

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

void RouteTable::Add(std::string path, Methods methods, RouteHandler handler) {
  exact_.insert_or_assign(std::move(path), Entry{methods, std::move(handler)});
}

http::RouteResult RouteTable::Route(const http::Request& request, const http::RequestContext& peer,
                                    bool is_upgrade) const {
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
