// GET on a local port for tests of podgate's HTTP endpoints, through the one HTTP layer.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace podgate::testing {

struct HttpResponse {
  int status = 0;
  std::string content_type;
  std::string body;
};

// GET http://127.0.0.1:<port><target>.
absl::StatusOr<HttpResponse> HttpGet(int port, const std::string& target);

}  // namespace podgate::testing
