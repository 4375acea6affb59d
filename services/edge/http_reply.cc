#include "edge/http_reply.h"

#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "google/protobuf/util/json_util.h"

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
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(query.data(), query.size()), '&', absl::SkipEmpty())) {
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
