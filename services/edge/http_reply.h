// The pieces every part of edge's HTTP front answers with: JSON bodies and JSON errors, the
// security headers, a request's headers and query. Shared by the router, the HTTP API, the
// health endpoints, the WebSocket handshake and the static files.
#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/grpcpp.h"
#include "http/server.h"
#include "nlohmann/json.hpp"

namespace google::protobuf {
class Message;
}  // namespace google::protobuf

namespace podgate::edge {

// The headers every answer of edge's HTTP server carries unless it sets them itself (a static
// file sets its own Cache-Control): the page's Content-Security-Policy, nosniff, DENY framing,
// no referrer, Cache-Control no-store. Given to the HTTP server as its response_headers, so the
// server's own 400/413/431 and refusals carry them too.
const std::vector<std::pair<std::string, std::string>>& SecurityHeaderList();

// Adds each of SecurityHeaderList the response does not set itself.
void SecurityHeaders(http::Response& res);

// Splits a query string into decoded key/value pairs; errors on bad percent-encoding.
absl::StatusOr<std::multimap<std::string, std::string>> ParseQuery(std::string_view query);

// The first value of `key`; empty when absent.
std::string First(const std::multimap<std::string, std::string>& query, const std::string& key);

// A request header's value; empty when absent.
std::string Header(const http::Request& request, boost::beast::http::field field);

// A JSON answer with the security headers. Bytes in `body` that are not UTF-8 (a message may
// quote what the client sent) become U+FFFD instead of failing the answer.
http::Response Json(const http::Request& request, boost::beast::http::status status,
                    const nlohmann::json& body);

// {"error": {"code": code, "message": message}} with `status`.
http::Response JsonError(const http::Request& request, boost::beast::http::status status,
                         const std::string& code, const std::string& message);

// A route's immediate answer.
http::RouteResult Answer(http::Response res);

// A copy of the request line and keep-alive, for an answer given after the request is gone.
http::Request RequestLine(const http::Request& request);

// The HTTP status a backend call's gRPC status maps to.
boost::beast::http::status HttpStatusFor(grpc::StatusCode code);

// A message as JSON with the proto field names; "{}" if it cannot be printed.
std::string ProtoJson(const google::protobuf::Message& message);

}  // namespace podgate::edge
