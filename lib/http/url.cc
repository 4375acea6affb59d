#include "http/url.h"

#include <arpa/inet.h>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace podgate::http {
namespace {

constexpr size_t kMaxUrlBytes = 2048;

absl::Status Bad(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat("URL \"", text, "\": ", why));
}

bool IsDnsName(absl::string_view host) {
  if (host.empty() || host.size() > 253) {
    return false;
  }
  size_t label = 0;
  for (size_t i = 0; i < host.size(); ++i) {
    const char c = host[i];
    if (c == '.') {
      if (label == 0 || host[i - 1] == '-') {
        return false;
      }
      label = 0;
      continue;
    }
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-') {
      return false;
    }
    if (c == '-' && label == 0) {
      return false;
    }
    if (++label > 63) {
      return false;
    }
  }
  return host.back() != '-';
}

}  // namespace

absl::StatusOr<HttpUrl> ParseHttpUrl(absl::string_view text) {
  if (text.size() > kMaxUrlBytes) {
    return Bad(text.substr(0, 64), absl::StrCat("longer than ", kMaxUrlBytes, " bytes"));
  }
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Bad(text, "contains a space, a control character or a non-ASCII byte");
    }
  }
  HttpUrl url;
  const size_t sep = text.find("://");
  if (sep == absl::string_view::npos) {
    return Bad(text, "not an absolute URL (expected http:// or https://)");
  }
  const std::string scheme = absl::AsciiStrToLower(text.substr(0, sep));
  if (scheme == "https") {
    url.tls = true;
    url.port = 443;
  } else if (scheme == "http") {
    url.port = 80;
  } else {
    return Bad(text, absl::StrCat("scheme \"", scheme, "\" is not http or https"));
  }
  absl::string_view rest = text.substr(sep + 3);
  if (rest.find('#') != absl::string_view::npos) {
    return Bad(text, "has a fragment (#)");
  }
  const size_t path_at = rest.find_first_of("/?");
  absl::string_view authority = rest.substr(0, path_at);
  absl::string_view target = path_at == absl::string_view::npos ? "" : rest.substr(path_at);
  if (authority.find('@') != absl::string_view::npos) {
    return Bad(text, "has user information (user@); credentials go in flags, not URLs");
  }
  absl::string_view host = authority;
  absl::string_view port;
  if (!authority.empty() && authority.front() == '[') {
    const size_t close = authority.find(']');
    if (close == absl::string_view::npos) {
      return Bad(text, "an IPv6 address without its closing ]");
    }
    host = authority.substr(1, close - 1);
    absl::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') {
        return Bad(text, "unexpected characters after the IPv6 address");
      }
      port = after.substr(1);
      if (port.empty()) {
        return Bad(text, "an empty port");
      }
    }
    in6_addr v6{};
    if (inet_pton(AF_INET6, std::string(host).c_str(), &v6) != 1) {
      return Bad(text, "not a valid IPv6 address between [ ]");
    }
  } else {
    const size_t colon = authority.rfind(':');
    if (colon != absl::string_view::npos) {
      host = authority.substr(0, colon);
      port = authority.substr(colon + 1);
      if (port.empty()) {
        return Bad(text, "an empty port");
      }
    }
    if (host.empty()) {
      return Bad(text, "no host");
    }
    if (!IsDnsName(host)) {
      return Bad(text, absl::StrCat("host \"", host, "\" is not a DNS name or IPv4 address"));
    }
  }
  if (!port.empty()) {
    uint32_t n = 0;
    if (port.size() > 5 || !absl::SimpleAtoi(port, &n) || n == 0 || n > 65535 ||
        !absl::ascii_isdigit(static_cast<unsigned char>(port.front()))) {
      return Bad(text, absl::StrCat("port \"", port, "\" is not 1..65535"));
    }
    url.port = static_cast<uint16_t>(n);
  }
  url.host = absl::AsciiStrToLower(host);
  url.target =
      target.empty() || target.front() == '?' ? absl::StrCat("/", target) : std::string(target);
  return url;
}

std::string HttpUrl::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  std::string out = absl::StrCat(tls ? "https://" : "http://", v6 ? "[" : "", host, v6 ? "]" : "");
  if (port != (tls ? 443 : 80)) {
    absl::StrAppend(&out, ":", port);
  }
  absl::StrAppend(&out, target);
  return out;
}

bool HttpUrl::IsLoopback() const {
  if (host == "localhost" || host == "::1") {
    return true;
  }
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  return false;
}

namespace {

int HexValue(char c) {
  if (c >= '0' && c <= '9') {
    return c - '0';
  }
  if (c >= 'a' && c <= 'f') {
    return c - 'a' + 10;
  }
  if (c >= 'A' && c <= 'F') {
    return c - 'A' + 10;
  }
  return -1;
}

}  // namespace

absl::StatusOr<std::string> UrlDecode(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '+') {
      out.push_back(' ');
    } else if (c == '%') {
      if (i + 2 >= text.size()) {
        return absl::InvalidArgumentError("truncated percent escape in query");
      }
      int hi = HexValue(text[i + 1]);
      int lo = HexValue(text[i + 2]);
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError("invalid percent escape in query");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  return out;
}

std::string UrlEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') || u == '-' ||
        u == '_' || u == '.' || u == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[u >> 4]);
      out.push_back(kHex[u & 15]);
    }
  }
  return out;
}

absl::StatusOr<std::vector<std::pair<std::string, std::string>>> ParseQuery(
    std::string_view query) {
  std::vector<std::pair<std::string, std::string>> out;
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view part = query.substr(0, amp);
    if (!part.empty()) {
      size_t eq = part.find('=');
      absl::StatusOr<std::string> name = UrlDecode(part.substr(0, eq));
      if (!name.ok()) {
        return name.status();
      }
      absl::StatusOr<std::string> value =
          UrlDecode(eq == std::string_view::npos ? std::string_view() : part.substr(eq + 1));
      if (!value.ok()) {
        return value.status();
      }
      out.emplace_back(*std::move(name), *std::move(value));
    }
    if (amp == std::string_view::npos) {
      break;
    }
    query.remove_prefix(amp + 1);
  }
  return out;
}

std::string EncodeQuery(const std::vector<std::pair<std::string, std::string>>& params) {
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) {
      out.push_back('&');
    }
    out += UrlEncode(name);
    out.push_back('=');
    out += UrlEncode(value);
  }
  return out;
}

}  // namespace podgate::http
