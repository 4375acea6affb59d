// Absolute http:// and https:// URLs as podgate's own clients use them (an OIDC provider's
// JWKS, discovery and token endpoints), parsed strictly: what is not plainly a URL of that
// form is refused with a message naming the problem, never guessed at.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace podgate::http {

struct HttpUrl {
  bool tls = false;  // https
  // The host as written, lowercased, IPv6 without brackets ("::1").
  std::string host;
  uint16_t port = 0;  // explicit or the scheme's default (80, 443)
  // The request target: path (at least "/") and the query, if any ("/jwks?x=1").
  std::string target;

  // "https://host:port/target" with the port shown only when not the default; IPv6 bracketed.
  std::string ToString() const;
  // The host is 127.0.0.0/8, ::1 or "localhost".
  bool IsLoopback() const;
};

// Accepts `http` or `https` (any case), then "://", a host (a DNS name of letters, digits, '-'
// and '.', an IPv4 address, or a bracketed IPv6 address), an optional port 1..65535, and an
// optional path and query made of printable ASCII without spaces. Refuses user information
// ("user@"), fragments, empty hosts, control characters and anything over 2048 bytes.
absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view text);

// Percent-decodes a query or form component ('+' is a space, as in form encoding). Bad escapes
// are an error.
absl::StatusOr<std::string> UrlDecode(std::string_view text);
// Percent-encodes everything but RFC 3986's unreserved characters (so also valid in forms).
std::string UrlEncode(std::string_view text);

// Splits a raw query string (or an application/x-www-form-urlencoded body) into decoded
// (name, value) pairs in order.
absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(std::string_view query);
// The inverse: "a=1&b=x%20y".
std::string EncodeQuery(const std::vector<std::pair<std::string, std::string>>& params);

}  // namespace podgate::http
