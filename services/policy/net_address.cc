#include "policy/net_address.h"

#include <algorithm>
#include <cstddef>
#include <cstdio>
#include <string>
#include <utility>

namespace podgate::policy::net {
namespace {

// The longest URL ParseUrl reads: the same limit as one argv element, so nothing an argv can
// carry is cut short, and nothing longer is worth the work.
constexpr size_t kMaxUrlBytes = 4096;
// RFC 1035: 253 bytes of text for a name without its trailing dot, 63 per label.
constexpr size_t kMaxNameBytes = 253;
constexpr size_t kMaxLabelBytes = 63;

bool IsDigit(char c) { return c >= '0' && c <= '9'; }
bool IsAlpha(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }
bool IsAlnum(char c) { return IsDigit(c) || IsAlpha(c); }
bool IsHexDigit(char c) { return IsDigit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'); }
char ToLower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }
int HexValue(char c) {
  if (IsDigit(c)) {
    return c - '0';
  }
  return ToLower(c) - 'a' + 10;
}
// Printable ASCII but the space: what a URL or a host may hold.
bool IsVisibleAscii(unsigned char c) { return c > 0x20 && c < 0x7F; }

std::string Lower(std::string_view text) {
  std::string out(text);
  std::transform(out.begin(), out.end(), out.begin(), ToLower);
  return out;
}

bool AllOf(std::string_view text, bool (*pred)(char)) {
  return !text.empty() && std::all_of(text.begin(), text.end(), pred);
}

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    const size_t at = text.find(sep, start);
    if (at == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, at - start));
    start = at + 1;
  }
}

// Quotes user text for a refusal; the text is printable ASCII by then, but may be long.
std::string Quote(std::string_view text) {
  constexpr size_t kMax = 80;
  if (text.size() > kMax) {
    return "'" + std::string(text.substr(0, kMax)) + "...'";
  }
  return "'" + std::string(text) + "'";
}

// ---------------------------------------------------------------------------------------------
// Addresses.

IpAddress V4(uint32_t value) {
  IpAddress ip;
  ip.bytes[0] = static_cast<uint8_t>(value >> 24);
  ip.bytes[1] = static_cast<uint8_t>(value >> 16);
  ip.bytes[2] = static_cast<uint8_t>(value >> 8);
  ip.bytes[3] = static_cast<uint8_t>(value);
  return ip;
}

IpAddress V4FromBytes(const uint8_t* b) {
  IpAddress ip;
  std::copy(b, b + 4, ip.bytes.begin());
  return ip;
}

uint32_t V4Value(const IpAddress& ip) {
  return (uint32_t{ip.bytes[0]} << 24) | (uint32_t{ip.bytes[1]} << 16) |
         (uint32_t{ip.bytes[2]} << 8) | uint32_t{ip.bytes[3]};
}

// One part of an inet_aton address, read as strtoul(base 0) reads it: "0x"/"0X" and at least one
// hex digit, else a leading 0 and octal digits, else decimal digits; the whole part must be
// consumed. Values above 32 bits are refused, as glibc and curl refuse them (however many
// leading zeros pad them).
std::optional<uint64_t> ParseIpv4Part(std::string_view part) {
  if (part.empty() || !IsDigit(part[0])) {
    return std::nullopt;  // no sign, no space, no empty part
  }
  int base = 10;
  if (part.size() >= 2 && part[0] == '0' && (part[1] == 'x' || part[1] == 'X')) {
    base = 16;
    part.remove_prefix(2);
    if (part.empty()) {
      return std::nullopt;  // "0x" alone: strtoul reads the 0 and stops at the x
    }
  } else if (part[0] == '0') {
    base = 8;
  }
  uint64_t value = 0;
  for (char c : part) {
    int digit;
    if (base == 16 && IsHexDigit(c)) {
      digit = HexValue(c);
    } else if (base == 8 && c >= '0' && c <= '7') {
      digit = c - '0';
    } else if (base == 10 && IsDigit(c)) {
      digit = c - '0';
    } else {
      return std::nullopt;  // "08", "1a", "0x1g": trailing junk makes it a name
    }
    value = value * static_cast<uint64_t>(base) + static_cast<uint64_t>(digit);
    if (value > 0xFFFFFFFFu) {
      return std::nullopt;
    }
  }
  return value;
}

// A dotted quad as inet_pton reads it: four decimal octets, no leading zeros.
std::optional<IpAddress> ParseStrictDottedQuad(std::string_view text) {
  const std::vector<std::string_view> parts = Split(text, '.');
  if (parts.size() != 4) {
    return std::nullopt;
  }
  uint32_t value = 0;
  for (std::string_view part : parts) {
    if (!AllOf(part, IsDigit) || part.size() > 3 || (part.size() > 1 && part[0] == '0')) {
      return std::nullopt;
    }
    int octet = 0;
    for (char c : part) {
      octet = octet * 10 + (c - '0');
    }
    if (octet > 255) {
      return std::nullopt;
    }
    value = (value << 8) | static_cast<uint32_t>(octet);
  }
  return V4(value);
}

// Parses the ':'-separated groups of one side of "::" into 16-bit groups; the last group may be
// a dotted quad when `last_may_be_v4`.
bool ParseIpv6Groups(std::string_view section, bool last_may_be_v4, std::vector<uint8_t>* out) {
  if (section.empty()) {
    return true;
  }
  const std::vector<std::string_view> groups = Split(section, ':');
  for (size_t i = 0; i < groups.size(); ++i) {
    const std::string_view group = groups[i];
    if (group.find('.') != std::string_view::npos) {
      if (!last_may_be_v4 || i + 1 != groups.size()) {
        return false;
      }
      std::optional<IpAddress> v4 = ParseStrictDottedQuad(group);
      if (!v4) {
        return false;
      }
      out->insert(out->end(), v4->bytes.begin(), v4->bytes.begin() + 4);
      continue;
    }
    if (!AllOf(group, IsHexDigit) || group.size() > 4) {
      return false;
    }
    unsigned value = 0;
    for (char c : group) {
      value = value * 16 + static_cast<unsigned>(HexValue(c));
    }
    out->push_back(static_cast<uint8_t>(value >> 8));
    out->push_back(static_cast<uint8_t>(value & 0xFF));
  }
  return true;
}

bool BytesZero(const IpAddress& ip, size_t from, size_t to) {
  return std::all_of(ip.bytes.begin() + static_cast<ptrdiff_t>(from),
                     ip.bytes.begin() + static_cast<ptrdiff_t>(to),
                     [](uint8_t b) { return b == 0; });
}

bool InCidr(const IpAddress& ip, const IpAddress& net, int prefix_len) {
  if (ip.v6 != net.v6) {
    return false;
  }
  const int full = prefix_len / 8;
  for (int i = 0; i < full; ++i) {
    if (ip.bytes[static_cast<size_t>(i)] != net.bytes[static_cast<size_t>(i)]) {
      return false;
    }
  }
  const int rest = prefix_len % 8;
  if (rest == 0) {
    return true;
  }
  const uint8_t mask = static_cast<uint8_t>(0xFF << (8 - rest));
  return (ip.bytes[static_cast<size_t>(full)] & mask) ==
         (net.bytes[static_cast<size_t>(full)] & mask);
}

std::optional<std::string> SensitiveV4(const IpAddress& ip) {
  const uint32_t v = V4Value(ip);
  const uint8_t first = ip.bytes[0];
  if (first == 0) {
    return "is in 0.0.0.0/8, the unspecified addresses (0.0.0.0 reaches the local host)";
  }
  if (first == 127) {
    return "is a loopback address (127.0.0.0/8)";
  }
  if (v == 0xA9FEA9FEu) {
    return "is the cloud metadata address 169.254.169.254";
  }
  if (first == 169 && ip.bytes[1] == 254) {
    return "is a link-local address (169.254.0.0/16), where cloud providers serve instance "
           "metadata";
  }
  if (v == 0x646464C8u) {
    return "is Alibaba Cloud's metadata address 100.100.100.200";
  }
  if (v == 0xC00000C0u) {
    return "is Oracle Cloud's metadata address 192.0.0.192";
  }
  if (v == 0xFFFFFFFFu) {
    return "is the broadcast address 255.255.255.255";
  }
  if (first >= 224 && first < 240) {
    return "is a multicast address (224.0.0.0/4)";
  }
  if (first >= 240) {
    return "is a reserved address (240.0.0.0/4)";
  }
  return std::nullopt;
}

// Judges the IPv4 address an IPv6 form carries, and says which form it was.
std::optional<std::string> SensitiveEmbedded(const IpAddress& v4, std::string_view form) {
  std::optional<std::string> why = SensitiveV4(v4);
  if (!why) {
    return std::nullopt;
  }
  return "carries the IPv4 address " + v4.ToString() + " (" + std::string(form) + "), which " +
         *why;
}

// ---------------------------------------------------------------------------------------------
// Names.

// Canonicalises an RFC 1123 host name: one trailing dot dropped, lower-cased, labels of
// [a-z0-9-] not starting or ending with '-', 1-63 bytes, 253 in all.
std::optional<std::string> CanonicalName(std::string_view text) {
  if (text.size() > 1 && text.back() == '.') {
    text.remove_suffix(1);
  }
  if (text.empty() || text.size() > kMaxNameBytes) {
    return std::nullopt;
  }
  for (std::string_view label : Split(text, '.')) {
    if (label.empty() || label.size() > kMaxLabelBytes || label.front() == '-' ||
        label.back() == '-') {
      return std::nullopt;
    }
    for (char c : label) {
      if (!IsAlnum(c) && c != '-') {
        return std::nullopt;
      }
    }
  }
  return Lower(text);
}

bool HasSuffix(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool IsOrUnder(std::string_view name, std::string_view domain) {
  return name == domain || (name.size() > domain.size() && HasSuffix(name, domain) &&
                            name[name.size() - domain.size() - 1] == '.');
}

// Words of a name: its text split at '.' and '-', the separators wildcard DNS services accept
// between the numbers of an embedded address.
std::vector<std::string_view> Words(std::string_view name) {
  std::vector<std::string_view> words;
  size_t start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.' || name[i] == '-') {
      words.push_back(name.substr(start, i - start));
      start = i + 1;
    }
  }
  return words;
}

// A word that reads as one byte of an address: as inet_aton reads it ("0251" is octal 169,
// "0xa9" hex), or as the decimal number wildcard DNS services see ("0251" is 251).
std::optional<int> OctetWord(std::string_view word, bool aton) {
  if (aton) {
    const std::optional<uint64_t> value = ParseIpv4Part(word);
    return value && *value <= 255 ? std::optional<int>(static_cast<int>(*value)) : std::nullopt;
  }
  if (!AllOf(word, IsDigit) || word.size() > 6) {
    return std::nullopt;
  }
  int value = 0;
  for (char c : word) {
    value = value * 10 + (c - '0');
  }
  return value <= 255 ? std::optional<int>(value) : std::nullopt;
}

// An IPv4 address written into a name as four numbers separated by dots or dashes, as nip.io
// and sslip.io read them ("169.254.169.254.nip.io", "app-169-254-169-254.sslip.io",
// "x-169.254.169.254-y.1u.ms"); or as a word of eight hex digits ("a9fea9fe.nip.io",
// "7f000001.c0a80001.rbndr.us"); or as a "0x" hex number.
std::optional<std::string> EmbeddedIpv4(std::string_view name) {
  const std::vector<std::string_view> words = Words(name);
  for (size_t i = 0; i + 4 <= words.size(); ++i) {
    for (bool aton : {true, false}) {
      uint32_t value = 0;
      bool all = true;
      for (size_t j = i; j < i + 4 && all; ++j) {
        const std::optional<int> octet = OctetWord(words[j], aton);
        all = octet.has_value();
        value = (value << 8) | static_cast<uint32_t>(octet.value_or(0));
      }
      if (all) {
        return "embeds the IPv4 address " + V4(value).ToString() +
               ", which wildcard DNS services such as nip.io resolve to that address";
      }
    }
  }
  for (std::string_view word : words) {
    const bool hex_prefix = word.size() > 2 && word[0] == '0' && (word[1] == 'x');
    const std::string_view digits = hex_prefix ? word.substr(2) : word;
    if (AllOf(digits, IsHexDigit) && (digits.size() == 8 || (hex_prefix && digits.size() < 8))) {
      uint32_t value = 0;
      for (char c : digits) {
        value = (value << 4) | static_cast<uint32_t>(HexValue(c));
      }
      return "embeds the IPv4 address " + V4(value).ToString() + " in hexadecimal ('" +
             std::string(word) + "'), which wildcard DNS services resolve to that address";
    }
  }
  return std::nullopt;
}

// An IPv6 address written into a label with '-' for ':', as sslip.io reads it ("--1.sslip.io"
// is ::1, "fe80--1", "www-2001-db8--1"): any tail of a label that starts at its beginning, at a
// dash or just after one.
std::optional<std::string> EmbeddedIpv6(std::string_view name) {
  for (std::string_view label : Split(name, '.')) {
    if (label.find('-') == std::string_view::npos) {
      continue;
    }
    for (size_t start = 0; start < label.size(); ++start) {
      if (start != 0 && label[start] != '-' && label[start - 1] != '-') {
        continue;
      }
      std::string candidate(label.substr(start));
      std::replace(candidate.begin(), candidate.end(), '-', ':');
      if (std::optional<IpAddress> ip = ParseIpv6(candidate)) {
        return "embeds the IPv6 address " + ip->ToString() + " (dashes for colons, '" +
               std::string(label) +
               "'), which wildcard DNS services such as sslip.io resolve "
               "to that address";
      }
    }
  }
  return std::nullopt;
}

std::string DescribeByte(unsigned char c) {
  char buf[8];
  std::snprintf(buf, sizeof(buf), "0x%02X", c);
  if (c == ' ') {
    return "a space";
  }
  if (c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
    return std::string("whitespace (") + buf + ")";
  }
  if (c < 0x20 || c == 0x7F) {
    return std::string("a control character (") + buf + ")";
  }
  return std::string("a byte outside ASCII (") + buf + ")";
}

// Default ports of the schemes Debian 12's libcurl 7.88 supports (curl_url_get with
// CURLU_DEFAULT_PORT); the URL test checks this table against the library.
int DefaultPort(std::string_view scheme) {
  static constexpr std::pair<std::string_view, int> kPorts[] = {
      {"http", 80},    {"https", 443},  {"ftp", 21},    {"ftps", 990},  {"dict", 2628},
      {"gopher", 70},  {"gophers", 70}, {"imap", 143},  {"imaps", 993}, {"ldap", 389},
      {"ldaps", 636},  {"mqtt", 1883},  {"pop3", 110},  {"pop3s", 995}, {"rtmp", 1935},
      {"rtmpe", 1935}, {"rtmps", 443},  {"rtmpt", 80},  {"rtmpte", 80}, {"rtmpts", 443},
      {"rtsp", 554},   {"scp", 22},     {"sftp", 22},   {"smb", 445},   {"smbs", 445},
      {"smtp", 25},    {"smtps", 465},  {"telnet", 23}, {"tftp", 69},
  };
  for (const auto& [name, port] : kPorts) {
    if (name == scheme) {
      return port;
    }
  }
  return 0;
}

// RFC 3986 5.2.4 "remove dot segments", as curl's dedotdotify applies it to the path (the query
// is separated first).
std::string RemoveDotSegments(std::string_view in) {
  std::string out;
  const auto drop_last_segment = [&out] {
    const size_t slash = out.rfind('/');
    out.erase(slash == std::string::npos ? 0 : slash);
  };
  while (!in.empty()) {
    if (in.starts_with("../")) {
      in.remove_prefix(3);
    } else if (in.starts_with("./")) {
      in.remove_prefix(2);
    } else if (in.starts_with("/./")) {
      in.remove_prefix(2);
    } else if (in == "/.") {
      in = "/";
    } else if (in.starts_with("/../")) {
      in.remove_prefix(3);
      drop_last_segment();
    } else if (in == "/..") {
      in = "/";
      drop_last_segment();
    } else if (in == "." || in == "..") {
      in = {};
    } else {
      const size_t next = in.find('/', in[0] == '/' ? 1 : 0);
      const size_t len = next == std::string_view::npos ? in.size() : next;
      out.append(in.substr(0, len));
      in.remove_prefix(len);
    }
  }
  return out.empty() ? "/" : out;
}

// Percent-escapes in the path are passed to the server as they are, and the server decodes them
// after curl removed dot segments: "%2e%2e" and "%2f" would walk out of a path prefix a rule
// allows, and a control byte or a malformed escape is read differently by different servers.
std::optional<std::string> CheckPathEscapes(std::string_view path, std::string_view what) {
  for (size_t i = 0; i < path.size(); ++i) {
    if (path[i] != '%') {
      continue;
    }
    if (i + 2 >= path.size() || !IsHexDigit(path[i + 1]) || !IsHexDigit(path[i + 2])) {
      return "has a malformed percent escape in its " + std::string(what) +
             " ('%' must be followed by two hex digits)";
    }
    const unsigned char c =
        static_cast<unsigned char>(HexValue(path[i + 1]) * 16 + HexValue(path[i + 2]));
    if (what == "path" && (c == '.' || c == '/' || c == '\\')) {
      return "has a percent-encoded '" + std::string(1, static_cast<char>(c)) +
             "' in its path, which a server may decode into a different path than the one "
             "checked";
    }
    if (c < 0x20 || c == 0x7F) {
      return "has a percent-encoded control character in its " + std::string(what);
    }
  }
  return std::nullopt;
}

}  // namespace

// ---------------------------------------------------------------------------------------------

std::string IpAddress::ToString() const {
  char buf[64];
  if (!v6) {
    std::snprintf(buf, sizeof(buf), "%u.%u.%u.%u", bytes[0], bytes[1], bytes[2], bytes[3]);
    return buf;
  }
  // IPv4-mapped addresses read best with their dotted tail (RFC 5952 section 5).
  if (BytesZero(*this, 0, 10) && bytes[10] == 0xFF && bytes[11] == 0xFF) {
    std::snprintf(buf, sizeof(buf), "::ffff:%u.%u.%u.%u", bytes[12], bytes[13], bytes[14],
                  bytes[15]);
    return buf;
  }
  unsigned groups[8];
  for (size_t i = 0; i < 8; ++i) {
    groups[i] = (unsigned{bytes[2 * i]} << 8) | bytes[2 * i + 1];
  }
  // The longest run of two or more zero groups becomes "::", the first one on a tie.
  int best_start = -1, best_len = 0;
  for (int i = 0; i < 8;) {
    if (groups[i] != 0) {
      ++i;
      continue;
    }
    int j = i;
    while (j < 8 && groups[j] == 0) {
      ++j;
    }
    if (j - i > best_len && j - i >= 2) {
      best_start = i;
      best_len = j - i;
    }
    i = j;
  }
  std::string out;
  for (int i = 0; i < 8; ++i) {
    if (i == best_start) {
      out += "::";
      i += best_len - 1;
      continue;
    }
    if (!out.empty() && out.back() != ':') {
      out += ':';
    }
    std::snprintf(buf, sizeof(buf), "%x", groups[i]);
    out += buf;
  }
  return out;
}

std::optional<IpAddress> ParseIpv4AnyForm(std::string_view text) {
  if (text.size() > 1 && text.back() == '.') {
    text.remove_suffix(1);
  }
  // No length limit: inet_aton takes any number of leading zeros ("0000000177.1").
  if (text.empty()) {
    return std::nullopt;
  }
  const std::vector<std::string_view> parts = Split(text, '.');
  if (parts.size() > 4) {
    return std::nullopt;
  }
  uint64_t values[4] = {};
  for (size_t i = 0; i < parts.size(); ++i) {
    std::optional<uint64_t> v = ParseIpv4Part(parts[i]);
    if (!v) {
      return std::nullopt;
    }
    values[i] = *v;
  }
  // Every part but the last is one byte; the last fills the bytes that remain ("127.1" is
  // 127.0.0.1, "169.254.43518" is 169.254.169.254).
  const size_t n = parts.size();
  uint64_t address = 0;
  for (size_t i = 0; i + 1 < n; ++i) {
    if (values[i] > 0xFF) {
      return std::nullopt;
    }
    address |= values[i] << (8 * (3 - i));
  }
  const uint64_t last_max = 0xFFFFFFFFu >> (8 * (n - 1));
  if (values[n - 1] > last_max) {
    return std::nullopt;
  }
  address |= values[n - 1];
  return V4(static_cast<uint32_t>(address));
}

std::optional<IpAddress> ParseIpv6(std::string_view text) {
  // The longest form is eight groups of four hex digits (39 bytes) or six and a dotted quad (45).
  if (text.size() < 2 || text.size() > 45) {
    return std::nullopt;
  }
  for (char c : text) {
    if (!IsHexDigit(c) && c != ':' && c != '.') {
      return std::nullopt;  // zone ids ("%eth0"), brackets, spaces, anything else
    }
  }
  std::vector<uint8_t> head, tail;
  const size_t gap = text.find("::");
  if (gap == std::string_view::npos) {
    if (!ParseIpv6Groups(text, true, &head) || head.size() != 16) {
      return std::nullopt;
    }
  } else {
    if (text.find("::", gap + 1) != std::string_view::npos) {
      return std::nullopt;  // a second "::", or ":::"
    }
    const std::string_view before = text.substr(0, gap);
    const std::string_view after = text.substr(gap + 2);
    if (!ParseIpv6Groups(before, false, &head) || !ParseIpv6Groups(after, true, &tail) ||
        head.size() + tail.size() > 14) {
      return std::nullopt;  // "::" stands for at least one group of zeros
    }
  }
  IpAddress ip;
  ip.v6 = true;
  std::copy(head.begin(), head.end(), ip.bytes.begin());
  std::copy(tail.begin(), tail.end(), ip.bytes.end() - static_cast<ptrdiff_t>(tail.size()));
  return ip;
}

std::optional<std::string> SensitiveAddress(const IpAddress& ip) {
  if (!ip.v6) {
    return SensitiveV4(ip);
  }
  const auto& b = ip.bytes;
  const uint8_t* tail4 = b.data() + 12;
  if (BytesZero(ip, 0, 10) && b[10] == 0xFF && b[11] == 0xFF) {
    return SensitiveEmbedded(V4FromBytes(tail4), "IPv4-mapped, ::ffff:0:0/96");
  }
  if (BytesZero(ip, 0, 16)) {
    return "is the unspecified address ::, which reaches the local host";
  }
  if (BytesZero(ip, 0, 15) && b[15] == 1) {
    return "is the loopback address ::1";
  }
  if (BytesZero(ip, 0, 12)) {
    return SensitiveEmbedded(V4FromBytes(tail4), "IPv4-compatible, ::/96");
  }
  if (BytesZero(ip, 0, 8) && b[8] == 0xFF && b[9] == 0xFF && b[10] == 0 && b[11] == 0) {
    return SensitiveEmbedded(V4FromBytes(tail4), "IPv4-translated, ::ffff:0:0:0/96");
  }
  if (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xFF && b[3] == 0x9B) {
    if (BytesZero(ip, 4, 12)) {
      return SensitiveEmbedded(V4FromBytes(tail4), "NAT64, 64:ff9b::/96");
    }
    if (b[4] == 0 && b[5] == 1) {
      // The local-use prefix may be /48 to /96 (RFC 6052): only the /96 layout, the usual one,
      // tells where the IPv4 address sits. Any other layout is refused rather than guessed.
      if (!BytesZero(ip, 6, 12)) {
        return "is a local-use NAT64 address (64:ff9b:1::/48) whose embedded IPv4 address "
               "depends on the network's prefix length";
      }
      return SensitiveEmbedded(V4FromBytes(tail4), "local-use NAT64, 64:ff9b:1::/48");
    }
  }
  if (b[0] == 0x20 && b[1] == 0x02) {
    return SensitiveEmbedded(V4FromBytes(b.data() + 2), "6to4, 2002::/16");
  }
  if (b[0] == 0x20 && b[1] == 0x01 && b[2] == 0 && b[3] == 0) {
    // Teredo carries the server's address in clear and the client's (the destination) with its
    // bits inverted.
    uint8_t client[4];
    for (size_t i = 0; i < 4; ++i) {
      client[i] = static_cast<uint8_t>(~b[12 + i]);
    }
    if (auto why = SensitiveEmbedded(V4FromBytes(client), "Teredo client, 2001::/32")) {
      return why;
    }
    return SensitiveEmbedded(V4FromBytes(b.data() + 4), "Teredo server, 2001::/32");
  }
  if (b[0] == 0xFE && (b[1] & 0xC0) == 0x80) {
    return "is a link-local address (fe80::/10)";
  }
  if (b[0] == 0xFD && b[1] == 0x00 && b[2] == 0x0E && b[3] == 0xC2) {
    if (BytesZero(ip, 4, 14) && b[14] == 0x02 && b[15] == 0x54) {
      return "is the AWS metadata address fd00:ec2::254";
    }
    return "is in fd00:ec2::/32, where AWS serves instance metadata, DNS and time";
  }
  if (b[0] == 0xFF) {
    return "is a multicast address (ff00::/8)";
  }
  return std::nullopt;
}

std::string Host::ToString() const {
  if (kind == Kind::kName) {
    return name;
  }
  return ip.v6 ? "[" + ip.ToString() + "]" : ip.ToString();
}

std::optional<std::string> SensitiveName(std::string_view name) {
  const std::vector<std::string_view> labels = Split(name, '.');
  const std::string_view first = labels.front();
  const std::string_view last = labels.back();

  if (IsOrUnder(name, "localhost")) {
    return "is the local host (localhost)";
  }
  for (std::string_view local : {"localhost.localdomain", "localhost6", "localhost6.localdomain6",
                                 "ip6-localhost", "ip6-loopback"}) {
    if (name == local) {
      return "is a name the system's hosts file gives to the local host";
    }
  }
  // Public names whose DNS answers with 127.0.0.1 for every subdomain; a short list of the
  // well-known ones, not a defence against a domain an attacker controls (that needs egress
  // rules in the cluster).
  for (std::string_view loopback : {"localtest.me", "lvh.me", "vcap.me", "localho.st"}) {
    if (IsOrUnder(name, loopback)) {
      return "is a public name that resolves to the loopback address";
    }
  }

  if ((first == "metadata" || first == "instance-data") &&
      (labels.size() == 1 || last == "internal")) {
    return "is a cloud metadata service name";
  }
  for (std::string_view metadata : {"metadata.goog", "metadata.azure.com",
                                    "metadata.tencentyun.com", "metadata.platformequinix.com"}) {
    if (name == metadata) {
      return "is a cloud metadata service name";
    }
  }
  if (last == "internal" && labels.size() >= 2 &&
      (first == "host" || first == "gateway" || first == "control-plane" ||
       first == "kubernetes")) {
    return "is a name local development clusters (Docker Desktop, minikube, Podman) give to the "
           "host machine or its Kubernetes API server";
  }
  if (IsOrUnder(name, "ec2.internal") || IsOrUnder(name, "compute.internal") ||
      (labels.size() >= 3 && last == "internal" && labels[labels.size() - 3] == "c")) {
    return "is a cloud provider's name for an instance (a node, where the kubelet listens)";
  }

  if (name == "kubernetes" || name == "kubernetes.default" || name == "kubernetes.default.svc" ||
      name.starts_with("kubernetes.default.svc.")) {
    return "is the Kubernetes API server's in-cluster name";
  }

  // No top-level domain is numeric, so such a name never resolves through DNS; what reads it is
  // an address parser, and the ones in libraries differ ("0x7f.1", "1.2.3.4.5", "08").
  if (AllOf(last, IsDigit)) {
    return "ends in a numeric label, which no DNS name does and which programs may read as an "
           "address";
  }
  if (last.size() >= 2 && last[0] == '0' && last[1] == 'x' &&
      std::all_of(last.begin() + 2, last.end(), IsHexDigit)) {
    return "ends in a hexadecimal number, which programs may read as an address";
  }
  if (auto why = EmbeddedIpv4(name)) {
    return why;
  }
  if (auto why = EmbeddedIpv6(name)) {
    return why;
  }
  return std::nullopt;
}

std::optional<Host> CanonicaliseHostArgument(std::string_view text, std::string* error) {
  Host host;
  if (std::optional<IpAddress> v4 = ParseIpv4AnyForm(text)) {
    host.kind = Host::Kind::kIp;
    host.ip = *v4;
    return host;
  }
  if (text.find(':') != std::string_view::npos) {
    if (std::optional<IpAddress> v6 = ParseIpv6(text)) {
      host.kind = Host::Kind::kIp;
      host.ip = *v6;
      return host;
    }
    *error = text.find('%') != std::string_view::npos
                 ? "names an IPv6 zone ('%'), which podgate does not accept"
                 : "is not a valid IPv6 address";
    return std::nullopt;
  }
  if (std::optional<std::string> name = CanonicalName(text)) {
    host.name = std::move(*name);
    return host;
  }
  *error = "is not a host name or address";
  return std::nullopt;
}

std::optional<HostList> HostList::Parse(const std::vector<std::string>& entries,
                                        std::string* error) {
  HostList list;
  for (const std::string& text : entries) {
    const auto bad = [&](std::string_view why) {
      *error = "hosts entry " + Quote(text) + " " + std::string(why);
      return std::nullopt;
    };
    if (text.size() > kMaxNameBytes + 2) {
      return bad("is too long");
    }
    for (char c : text) {
      if (!IsVisibleAscii(static_cast<unsigned char>(c))) {
        return bad("contains " + DescribeByte(static_cast<unsigned char>(c)));
      }
    }
    Entry entry;
    if (text == "*") {
      entry.kind = Entry::Kind::kAny;
    } else if (text.starts_with("*.")) {
      std::optional<std::string> suffix = CanonicalName(std::string_view(text).substr(2));
      if (!suffix || text.back() == '.') {
        return bad("is not a pattern of the form *.domain");
      }
      entry.kind = Entry::Kind::kSuffix;
      entry.name = "." + *suffix;
    } else if (const size_t slash = text.find('/'); slash != std::string::npos) {
      const std::string_view address = std::string_view(text).substr(0, slash);
      const std::string_view length = std::string_view(text).substr(slash + 1);
      // The network is written plainly: "10/8" would be 0.0.0.10 to inet_aton.
      std::optional<IpAddress> net = address.find(':') != std::string_view::npos
                                         ? ParseIpv6(address)
                                         : ParseStrictDottedQuad(address);
      if (!net) {
        return bad("is not a CIDR block (address/prefix length)");
      }
      const int max_len = net->v6 ? 128 : 32;
      if (!AllOf(length, IsDigit) || length.size() > 3 || (length.size() > 1 && length[0] == '0')) {
        return bad("has a prefix length that is not a decimal number");
      }
      const int prefix_len = std::stoi(std::string(length));
      if (prefix_len > max_len) {
        return bad("has a prefix length above " + std::to_string(max_len));
      }
      if (prefix_len == 0) {
        return bad("covers every address; write \"*\" to allow any host");
      }
      IpAddress masked = *net;
      for (int bit = prefix_len; bit < max_len; ++bit) {
        masked.bytes[static_cast<size_t>(bit / 8)] &= static_cast<uint8_t>(~(0x80 >> (bit % 8)));
      }
      if (!(masked == *net)) {
        return bad("has address bits set after the prefix length (did you mean " +
                   masked.ToString() + "/" + std::to_string(prefix_len) + "?)");
      }
      entry.kind = Entry::Kind::kCidr;
      entry.ip = *net;
      entry.prefix_len = prefix_len;
    } else {
      std::string_view host_text = text;
      if (host_text.size() > 2 && host_text.front() == '[' && host_text.back() == ']') {
        host_text = host_text.substr(1, host_text.size() - 2);
        if (!ParseIpv6(host_text)) {
          return bad("is not a valid IPv6 address");
        }
      }
      std::string why;
      std::optional<Host> host = CanonicaliseHostArgument(host_text, &why);
      if (!host) {
        if (text.find('*') != std::string::npos) {
          return bad("has a '*' that is not the whole entry or a leading \"*.\"");
        }
        return bad(why);
      }
      if (host->kind == Host::Kind::kIp) {
        entry.kind = Entry::Kind::kAddress;
        entry.ip = host->ip;
      } else {
        entry.kind = Entry::Kind::kName;
        entry.name = host->name;
      }
    }
    list.entries_.push_back(std::move(entry));
  }
  return list;
}

bool HostList::Admits(const Host& host, std::string* why) const {
  const bool is_ip = host.kind == Host::Kind::kIp;
  const std::optional<std::string> sensitive =
      is_ip ? SensitiveAddress(host.ip) : SensitiveName(host.name);
  for (const Entry& entry : entries_) {
    switch (entry.kind) {
      case Entry::Kind::kAny:
        if (!sensitive) {
          return true;
        }
        break;
      case Entry::Kind::kName:
        if (!is_ip && host.name == entry.name) {
          return true;
        }
        break;
      case Entry::Kind::kSuffix:
        if (!sensitive && !is_ip && HasSuffix(host.name, entry.name)) {
          return true;
        }
        break;
      case Entry::Kind::kAddress:
        if (is_ip && host.ip == entry.ip) {
          return true;
        }
        break;
      case Entry::Kind::kCidr:
        if (!sensitive && is_ip && InCidr(host.ip, entry.ip, entry.prefix_len)) {
          return true;
        }
        break;
    }
  }
  if (why != nullptr) {
    *why = sensitive ? host.ToString() + " " + *sensitive +
                           ", and only a hosts entry naming it exactly allows it"
                     : host.ToString() + " is not among the hosts the rule allows";
  }
  return false;
}

bool AdmitsByDefault(const Host& host, std::string* why) {
  const std::optional<std::string> sensitive =
      host.kind == Host::Kind::kIp ? SensitiveAddress(host.ip) : SensitiveName(host.name);
  if (!sensitive) {
    return true;
  }
  if (why != nullptr) {
    *why = host.ToString() + " " + *sensitive +
           ", and only a rule listing it exactly in its hosts allows it";
  }
  return false;
}

std::optional<Url> ParseUrl(std::string_view text, std::string* error) {
  const auto fail = [error](std::string why) {
    *error = std::move(why);
    return std::nullopt;
  };
  if (text.empty()) {
    return fail("is empty");
  }
  if (text.size() > kMaxUrlBytes) {
    return fail("is longer than " + std::to_string(kMaxUrlBytes) + " bytes");
  }
  for (char c : text) {
    if (!IsVisibleAscii(static_cast<unsigned char>(c))) {
      return fail("contains " + DescribeByte(static_cast<unsigned char>(c)) +
                  "; only printable ASCII is accepted");
    }
  }
  if (text.find('\\') != std::string_view::npos) {
    return fail("contains a backslash, which URL parsers read differently (as '/' or as text)");
  }
  if (text.find('#') != std::string_view::npos) {
    return fail("has a fragment ('#'), which is never sent and confuses other URL parsers");
  }

  // scheme "://": curl guesses a scheme (http, ftp, ...) from a URL without one, and reads
  // "http:/x" and "http:///x" too; podgate takes only the unambiguous form.
  Url url;
  size_t i = 0;
  while (i < text.size() &&
         (IsAlnum(text[i]) || text[i] == '+' || text[i] == '-' || text[i] == '.')) {
    ++i;
  }
  if (i == 0 || i >= text.size() || text[i] != ':' || !IsAlpha(text[0])) {
    return fail("has no scheme (such as http://); curl would guess one");
  }
  if (i > 40) {
    return fail("has a scheme longer than 40 characters");
  }
  if (text.substr(i, 2) != ":/") {
    return fail("has no scheme (such as http://); curl would guess one");
  }
  url.scheme = Lower(text.substr(0, i));
  if (url.scheme == "file") {
    return fail("is a file: URL, which reads local files rather than a network destination");
  }
  if (text.substr(i, 3) != "://" || (i + 3 < text.size() && text[i + 3] == '/')) {
    return fail("does not have exactly two slashes after its scheme");
  }
  std::string_view rest = text.substr(i + 3);

  const size_t authority_end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, authority_end);
  const std::string_view path_and_query =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);
  if (authority.empty()) {
    return fail("has no host");
  }
  if (authority.find('@') != std::string_view::npos) {
    return fail("carries user information (user@host), which hides the real host");
  }

  std::string_view host_text;
  std::string_view port_text;
  bool has_port = false;
  if (authority[0] == '[') {
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) {
      return fail("has a '[' without a closing ']' in its host");
    }
    host_text = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after[0] != ':') {
        return fail("has text after its IPv6 address that is not a port");
      }
      has_port = true;
      port_text = after.substr(1);
    }
    if (host_text.find('%') != std::string_view::npos) {
      return fail("names an IPv6 zone ('%' in the address), which podgate does not accept");
    }
    std::optional<IpAddress> v6 = ParseIpv6(host_text);
    if (!v6) {
      if (host_text.find_first_of("-,") != std::string_view::npos) {
        return fail("uses curl's [a-b] globbing in its host, which makes many requests");
      }
      return fail("has an invalid IPv6 address " + Quote(host_text));
    }
    url.host.kind = Host::Kind::kIp;
    url.host.ip = *v6;
  } else {
    const size_t colon = authority.find(':');
    host_text = authority.substr(0, colon);
    if (colon != std::string_view::npos) {
      has_port = true;
      port_text = authority.substr(colon + 1);
    }
    if (authority.find_first_of("[]{}") != std::string_view::npos) {
      return fail(
          "uses curl's globbing ([a-b] or {a,b}) in its host or port, which makes many "
          "requests");
    }
    // curl percent-decodes the host before resolving it ("%31%36%39.254.169.254" is
    // 169.254.169.254): decode, then judge the result like any other host.
    std::string decoded;
    for (size_t j = 0; j < host_text.size(); ++j) {
      char c = host_text[j];
      if (c == '%') {
        if (j + 2 >= host_text.size() || !IsHexDigit(host_text[j + 1]) ||
            !IsHexDigit(host_text[j + 2])) {
          return fail("has a malformed percent escape in its host");
        }
        c = static_cast<char>(HexValue(host_text[j + 1]) * 16 + HexValue(host_text[j + 2]));
        j += 2;
        if (!IsVisibleAscii(static_cast<unsigned char>(c))) {
          return fail("has a host whose percent escapes decode to " +
                      DescribeByte(static_cast<unsigned char>(c)));
        }
        if (!IsAlnum(c) && c != '.' && c != '-') {
          return fail("has a host whose percent escapes decode to '" + std::string(1, c) +
                      "', which no host name contains");
        }
      } else if (!IsAlnum(c) && c != '.' && c != '-') {
        return fail("has a host with '" + std::string(1, c) + "', which no host name contains");
      }
      decoded += c;
    }
    if (decoded.empty()) {
      return fail("has no host");
    }
    if (std::optional<IpAddress> v4 = ParseIpv4AnyForm(decoded)) {
      url.host.kind = Host::Kind::kIp;
      url.host.ip = *v4;
    } else if (std::optional<std::string> name = CanonicalName(decoded)) {
      url.host.name = std::move(*name);
    } else {
      return fail("has an invalid host name " + Quote(decoded));
    }
  }

  if (has_port && !port_text.empty()) {
    // curl reads the port with strtoul(base 10) after checking for a digit: leading zeros are
    // decimal ("080" is 80), signs and spaces are refused.
    if (!AllOf(port_text, IsDigit)) {
      return fail("has a port that is not a decimal number");
    }
    size_t digits = port_text.find_first_not_of('0');
    const std::string_view significant =
        digits == std::string_view::npos ? std::string_view("0") : port_text.substr(digits);
    if (significant.size() > 5 || std::stoi(std::string(significant)) > 65535) {
      return fail("has a port above 65535");
    }
    url.port = std::stoi(std::string(significant));
    if (url.port == 0) {
      return fail("has port 0");
    }
    url.explicit_port = true;
  } else {
    // An empty port ("http://host:/") means the default, in curl as in browsers.
    url.port = DefaultPort(url.scheme);
  }

  const size_t question = path_and_query.find('?');
  const std::string_view raw_path = path_and_query.substr(0, question);
  if (question != std::string_view::npos) {
    url.has_query = true;
    url.query = std::string(path_and_query.substr(question + 1));
  }
  if (auto why = CheckPathEscapes(raw_path, "path")) {
    return fail(std::move(*why));
  }
  if (auto why = CheckPathEscapes(url.query, "query")) {
    return fail(std::move(*why));
  }
  // "/..;/" is ".." to Tomcat and the servers that follow it, but an ordinary segment to curl.
  for (std::string_view segment : Split(raw_path, '/')) {
    if (segment.starts_with(".;") || segment.starts_with("..;")) {
      return fail("has a path segment " + Quote(segment) +
                  " that some servers read as a dot segment");
    }
  }
  url.path = RemoveDotSegments(raw_path);
  url.has_glob = path_and_query.find_first_of("[]{}") != std::string_view::npos;
  return url;
}

}  // namespace podgate::policy::net
