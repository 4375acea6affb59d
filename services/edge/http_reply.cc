#include "edge/http_reply.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"
#include "http/url.h"

namespace podgate::edge {

namespace bhttp = boost::beast::http;

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

void SecurityHeaders(http::Response& res) {
  for (const auto& [name, value] : SecurityHeaderList()) {
    if (res.find(name) == res.end()) {
      res.set(name, value);
    }
  }
}

absl::StatusOr<std::multimap<std::string, std::string>> ParseQuery(std::string_view query) {
  // The one query codec (http/url.h); edge looks parameters up by name.
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> params = http::ParseQuery(query);
  if (!params.ok()) {
    return absl::InvalidArgumentError("bad percent-encoding in the query");
  }
  std::multimap<std::string, std::string> out;
  for (auto& [name, value] : *params) {
    out.emplace(std::move(name), std::move(value));
  }
  return out;
}

std::string First(const std::multimap<std::string, std::string>& query, const std::string& key) {
  auto it = query.find(key);
  return it == query.end() ? "" : it->second;
}

std::string Header(const http::Request& request, bhttp::field field) {
  auto it = request.find(field);
  return it == request.end() ? "" : std::string(it->value());
}

http::Response Json(const http::Request& request, bhttp::status status,
                    const nlohmann::json& body) {
  http::Response res = http::MakeResponse(
      request, status, "application/json",
      body.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n");
  SecurityHeaders(res);
  return res;
}

http::Response JsonError(const http::Request& request, bhttp::status status,
                         const std::string& code, const std::string& message) {
  return Json(request, status, {{"error", {{"code", code}, {"message", message}}}});
}

http::RouteResult Answer(http::Response res) {
  http::RouteResult r;
  r.response = std::move(res);
  return r;
}

http::Request RequestLine(const http::Request& request) {
  http::Request copy(request.method(), request.target(), request.version());
  copy.keep_alive(request.keep_alive());
  return copy;
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

}  // namespace podgate::edge
