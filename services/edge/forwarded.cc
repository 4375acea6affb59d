#include "edge/forwarded.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <map>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace podgate::edge {

namespace {

// Debian's abseil has its own string_view.
absl::string_view A(std::string_view s) { return absl::string_view(s.data(), s.size()); }

constexpr uint8_t kMappedPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool IsTchar(char c) {
  // RFC 7230 token characters.
  return absl::ascii_isalnum(static_cast<unsigned char>(c)) ||
         std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsOws(char c) { return c == ' ' || c == '\t'; }

std::string_view TrimOws(std::string_view s) {
  while (!s.empty() && IsOws(s.front())) {
    s.remove_prefix(1);
  }
  while (!s.empty() && IsOws(s.back())) {
    s.remove_suffix(1);
  }
  return s;
}

// RFC 7239 obfuscated identifiers: "_" 1*( ALPHA / DIGIT / "." / "_" / "-" ).
bool IsObfuscated(std::string_view s) {
  if (s.size() < 2 || s.front() != '_') {
    return false;
  }
  for (char c : s.substr(1)) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '.' && c != '_' && c != '-') {
      return false;
    }
  }
  return true;
}

bool IsPort(std::string_view s) {
  if (s.empty() || s.size() > 5) {
    return false;
  }
  for (char c : s) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  int port = 0;
  return absl::SimpleAtoi(A(s), &port) && port <= 65535;
}

// "[v6]" or "[v6]:port" (port digits, or obfuscated when `obfuscated_port`); nullopt otherwise.
std::optional<IpAddress> BracketedV6(std::string_view s, bool obfuscated_port) {
  if (s.empty() || s.front() != '[') {
    return std::nullopt;
  }
  const size_t close = s.find(']');
  if (close == std::string_view::npos) {
    return std::nullopt;
  }
  std::string_view rest = s.substr(close + 1);
  if (!rest.empty()) {
    if (rest.front() != ':') {
      return std::nullopt;
    }
    rest.remove_prefix(1);
    if (!IsPort(rest) && !(obfuscated_port && IsObfuscated(rest))) {
      return std::nullopt;
    }
  }
  std::optional<IpAddress> ip = ParseIp(s.substr(1, close - 1));
  if (!ip.has_value() || !ip->v6) {
    // "[192.0.2.1]" is not how either header writes an IPv4 address.
    bool mapped = ip.has_value() && s.substr(1, close - 1).find(':') != std::string_view::npos;
    if (!mapped) {
      return std::nullopt;
    }
  }
  return ip;
}

// "a.b.c.d" or "a.b.c.d:port"; nullopt otherwise.
std::optional<IpAddress> V4WithPort(std::string_view s, bool obfuscated_port) {
  const size_t colon = s.find(':');
  if (colon != std::string_view::npos) {
    std::string_view port = s.substr(colon + 1);
    if (!IsPort(port) && !(obfuscated_port && IsObfuscated(port))) {
      return std::nullopt;
    }
    s = s.substr(0, colon);
  }
  std::optional<IpAddress> ip = ParseIp(s);
  if (!ip.has_value() || ip->v6 || s.find(':') != std::string_view::npos) {
    return std::nullopt;
  }
  return ip;
}

}  // namespace

std::string IpAddress::ToString() const {
  char text[INET6_ADDRSTRLEN] = {0};
  inet_ntop(v6 ? AF_INET6 : AF_INET, bytes.data(), text, sizeof(text));
  return text;
}

std::optional<IpAddress> ParseIp(std::string_view text) {
  if (text.empty() || text.size() >= INET6_ADDRSTRLEN) {
    return std::nullopt;
  }
  for (char c : text) {
    // inet_pton reads a C string: a NUL (or anything else) must not cut the text short.
    if (!absl::ascii_isxdigit(static_cast<unsigned char>(c)) && c != ':' && c != '.') {
      return std::nullopt;
    }
  }
  const std::string s(text);
  IpAddress ip;
  if (s.find(':') == std::string::npos) {
    if (inet_pton(AF_INET, s.c_str(), ip.bytes.data()) != 1) {
      return std::nullopt;
    }
    return ip;
  }
  if (inet_pton(AF_INET6, s.c_str(), ip.bytes.data()) != 1) {
    return std::nullopt;
  }
  if (std::memcmp(ip.bytes.data(), kMappedPrefix, sizeof(kMappedPrefix)) == 0) {
    IpAddress v4;
    std::memcpy(v4.bytes.data(), ip.bytes.data() + 12, 4);
    return v4;
  }
  ip.v6 = true;
  return ip;
}

std::optional<IpAddress> ParseRemoteAddress(std::string_view remote_address) {
  const size_t colon = remote_address.rfind(':');
  if (colon == std::string_view::npos || !IsPort(remote_address.substr(colon + 1))) {
    return std::nullopt;
  }
  std::string_view host = remote_address.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  return ParseIp(host);
}

bool Cidr::Contains(const IpAddress& address) const {
  if (address.v6 != base.v6) {
    return false;
  }
  int bits = prefix;
  for (size_t i = 0; bits > 0; ++i, bits -= 8) {
    const uint8_t mask = bits >= 8 ? 0xff : static_cast<uint8_t>(0xff << (8 - bits));
    if ((address.bytes[i] & mask) != (base.bytes[i] & mask)) {
      return false;
    }
  }
  return true;
}

absl::StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view list, std::string_view flag) {
  std::vector<Cidr> cidrs;
  size_t start = 0;
  while (start <= list.size()) {
    size_t comma = list.find(',', start);
    if (comma == std::string_view::npos) {
      comma = list.size();
    }
    absl::string_view stripped = absl::StripAsciiWhitespace(A(list.substr(start, comma - start)));
    std::string_view entry(stripped.data(), stripped.size());
    start = comma + 1;
    if (entry.empty()) {
      continue;
    }
    auto bad = [&](std::string_view why) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", A(flag), ": \"", A(entry.substr(0, 64)), "\" ", A(why)));
    };
    const size_t slash = entry.find('/');
    std::optional<IpAddress> ip = ParseIp(entry.substr(0, slash));
    if (!ip.has_value()) {
      return bad("is not an IPv4 or IPv6 address or CIDR");
    }
    Cidr cidr;
    cidr.base = *ip;
    const int max = ip->v6 ? 128 : 32;
    cidr.prefix = max;
    if (slash != std::string_view::npos) {
      std::string_view bits = entry.substr(slash + 1);
      if (bits.empty() || bits.size() > 3 ||
          !std::all_of(bits.begin(), bits.end(),
                       [](char c) { return absl::ascii_isdigit(static_cast<unsigned char>(c)); }) ||
          !absl::SimpleAtoi(A(bits), &cidr.prefix) || cidr.prefix > max) {
        return bad(absl::StrCat("has a prefix length that is not 0 to ", max));
      }
    }
    // Strict: no bits beyond the prefix ("10.0.0.1/8" is a typo of a host or a network).
    Cidr host{*ip, max};
    Cidr network = cidr;
    for (int bit = cidr.prefix; bit < max; ++bit) {
      network.base.bytes[static_cast<size_t>(bit / 8)] &=
          static_cast<uint8_t>(~(0x80 >> (bit % 8)));
    }
    if (!(network.base == host.base)) {
      return bad("has address bits set beyond its prefix length");
    }
    cidrs.push_back(cidr);
  }
  return cidrs;
}

bool InAny(const std::vector<Cidr>& cidrs, const IpAddress& address) {
  for (const Cidr& c : cidrs) {
    if (c.Contains(address)) {
      return true;
    }
  }
  return false;
}

std::string ForwardedHop::ToString() const {
  return address.has_value() ? address->ToString() : identifier;
}

absl::StatusOr<std::vector<ForwardedHop>> ParseXForwardedFor(std::string_view value) {
  std::vector<ForwardedHop> hops;
  size_t start = 0;
  while (start <= value.size()) {
    size_t comma = value.find(',', start);
    if (comma == std::string_view::npos) {
      comma = value.size();
    }
    std::string_view entry = TrimOws(value.substr(start, comma - start));
    start = comma + 1;
    if (hops.size() == kMaxForwardedHops) {
      return absl::InvalidArgumentError(
          absl::StrCat("X-Forwarded-For has more than ", kMaxForwardedHops, " hops"));
    }
    ForwardedHop hop;
    if (entry == "unknown") {
      hop.identifier = "unknown";
    } else if (!entry.empty() && entry.front() == '[') {
      hop.address = BracketedV6(entry, false);
    } else if (entry.find(':') != entry.rfind(':')) {
      hop.address = ParseIp(entry);  // IPv6 without brackets (and so without a port)
    } else {
      hop.address = V4WithPort(entry, false);
    }
    if (!hop.address.has_value() && hop.identifier.empty()) {
      return absl::InvalidArgumentError(
          entry.empty() ? std::string("X-Forwarded-For has an empty entry")
                        : absl::StrCat("X-Forwarded-For entry is not an address: \"",
                                       absl::CHexEscape(A(entry.substr(0, 64))), "\""));
    }
    hops.push_back(std::move(hop));
  }
  return hops;
}

absl::StatusOr<std::vector<ForwardedHop>> ParseForwarded(std::string_view value) {
  auto error = [](std::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("Forwarded: ", A(why)));
  };
  std::vector<ForwardedHop> hops;
  std::map<std::string, std::string> element;
  size_t i = 0;
  const size_t n = value.size();
  auto skip_ows = [&] {
    while (i < n && IsOws(value[i])) {
      ++i;
    }
  };
  auto end_element = [&]() -> absl::Status {
    if (element.empty()) {
      return absl::OkStatus();  // empty list elements are allowed (RFC 7230 section 7)
    }
    if (hops.size() == kMaxForwardedHops) {
      return error(absl::StrCat("more than ", kMaxForwardedHops, " hops"));
    }
    ForwardedHop hop;
    auto it = element.find("for");
    if (it == element.end()) {
      hop.identifier = "unknown";
    } else {
      std::string_view node = it->second;
      std::string_view name = node;
      if (!node.empty() && node.front() == '[') {
        hop.address = BracketedV6(node, true);
      } else if (node == "unknown" || IsObfuscated(node)) {
        hop.identifier = std::string(node);
      } else {
        const size_t colon = node.find(':');
        name = node.substr(0, colon);
        if (colon != std::string_view::npos) {
          std::string_view port = node.substr(colon + 1);
          if (!IsPort(port) && !IsObfuscated(port)) {
            return error("for= has a port that is neither digits nor obfuscated");
          }
        }
        if (name == "unknown" || IsObfuscated(name)) {
          hop.identifier = std::string(name);
        } else {
          hop.address = ParseIp(name);
          if (hop.address.has_value() && hop.address->v6) {
            hop.address.reset();  // IPv6 goes in brackets
          }
        }
      }
      if (!hop.address.has_value() && hop.identifier.empty()) {
        return error(
            absl::StrCat("for= is not a node: \"", absl::CHexEscape(A(node.substr(0, 64))), "\""));
      }
    }
    hops.push_back(std::move(hop));
    element.clear();
    return absl::OkStatus();
  };
  skip_ows();
  while (i < n) {
    if (value[i] == ',') {
      if (absl::Status s = end_element(); !s.ok()) {
        return s;
      }
      ++i;
      skip_ows();
      continue;
    }
    if (value[i] == ';') {
      ++i;
      skip_ows();
      continue;
    }
    // token "=" value
    const size_t name_start = i;
    while (i < n && IsTchar(value[i])) {
      ++i;
    }
    if (i == name_start) {
      return error(absl::StrCat("unexpected character at offset ", i));
    }
    std::string name = absl::AsciiStrToLower(A(value.substr(name_start, i - name_start)));
    if (i >= n || value[i] != '=') {
      return error(absl::StrCat("parameter \"", name.substr(0, 32), "\" has no value"));
    }
    ++i;
    std::string param;
    if (i < n && value[i] == '"') {
      ++i;
      bool closed = false;
      while (i < n) {
        char c = value[i++];
        if (c == '"') {
          closed = true;
          break;
        }
        if (c == '\\') {
          if (i >= n) {
            break;
          }
          c = value[i++];
        }
        // qdtext and quoted-pair: HTAB, SP, VCHAR, obs-text; no other control characters.
        if ((static_cast<unsigned char>(c) < 0x20 && c != '\t') || c == 0x7f) {
          return error("control character in a quoted string");
        }
        param.push_back(c);
      }
      if (!closed) {
        return error("unterminated quoted string");
      }
    } else {
      const size_t value_start = i;
      while (i < n && IsTchar(value[i])) {
        ++i;
      }
      if (i == value_start) {
        return error(absl::StrCat("parameter \"", name.substr(0, 32), "\" has an empty value"));
      }
      param = std::string(value.substr(value_start, i - value_start));
    }
    if (!element.emplace(name, std::move(param)).second) {
      return error(
          absl::StrCat("parameter \"", name.substr(0, 32), "\" given twice in one element"));
    }
    skip_ows();
    if (i < n && value[i] != ',' && value[i] != ';') {
      return error(absl::StrCat("unexpected character at offset ", i));
    }
  }
  if (absl::Status s = end_element(); !s.ok()) {
    return s;
  }
  if (hops.empty()) {
    return error("no element");
  }
  return hops;
}

ClientAddress ResolveClient(const std::vector<Cidr>& trusted, ForwardedHeader which,
                            std::string_view remote_address,
                            const std::optional<std::string>& header) {
  ClientAddress result;
  result.address = std::string(remote_address);
  if (!header.has_value() || trusted.empty()) {
    return result;
  }
  std::optional<IpAddress> peer = ParseRemoteAddress(remote_address);
  if (!peer.has_value() || !InAny(trusted, *peer)) {
    result.outcome = ClientAddress::Outcome::kUntrustedIgnored;
    return result;
  }
  absl::StatusOr<std::vector<ForwardedHop>> hops =
      which == ForwardedHeader::kForwarded ? ParseForwarded(*header) : ParseXForwardedFor(*header);
  if (!hops.ok() || hops->empty()) {
    result.outcome = ClientAddress::Outcome::kMalformed;
    result.error = hops.ok() ? "the header names no hop" : std::string(hops.status().message());
    return result;
  }
  size_t client = 0;  // every hop trusted: the leftmost
  for (size_t i = hops->size(); i-- > 0;) {
    const ForwardedHop& hop = (*hops)[i];
    if (!hop.address.has_value() || !InAny(trusted, *hop.address)) {
      client = i;
      break;
    }
  }
  result.outcome = ClientAddress::Outcome::kTrusted;
  result.address = (*hops)[client].ToString();
  return result;
}

}  // namespace podgate::edge
