#include "support/http_client.h"

#include "absl/strings/str_cat.h"
#include "http/client.h"

namespace podgate::testing {

absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& target) {
  http::ClientOptions options;
  options.host = "127.0.0.1";
  options.port = static_cast<uint16_t>(port);
  absl::StatusOr<http::ClientResponse> res = http::Fetch(options, "GET", target);
  if (!res.ok()) {
    return absl::UnavailableError(
        absl::StrCat("GET ", target, " on port ", port, ": ", res.status().message()));
  }
  HttpResponse out;
  out.status = res->status;
  out.content_type = res->content_type;
  out.body = std::move(res->body);
  return out;
}

}  // namespace podgate::testing
