// Network destinations as the programs podgate allows will reach them.
//
// A URL or host argument is a network destination, and the same address has many spellings:
// curl, ping and the C library read "2852039166", "0xa9fea9fe", "0251.0376.0251.0376",
// "169.254.43518" and "[::ffff:a9fe:a9fe]" all as 169.254.169.254. Policy therefore never
// matches the text a user typed: it canonicalises the host the way the program will (curl's
// URL parser, inet_aton for the host arguments of ping, dig and nslookup), then judges the
// canonical form. Anything whose reading is ambiguous (user-info, backslashes, zone ids,
// percent-encoding that decodes to something unusual, a scheme-less URL) is refused rather
// than guessed. One implementation serves the `url`, `host`, `hostname` and `ip` types.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace podgate::policy::net {

// An IPv4 or IPv6 address in network byte order.
struct IpAddress {
  bool v6 = false;
  // IPv4 uses bytes[0..3]; the rest stay zero.
  std::array<uint8_t, 16> bytes{};

  // Dotted quad, or RFC 5952 text for IPv6 (lower-case, "::" compression, no brackets).
  std::string ToString() const;
  bool operator==(const IpAddress& other) const = default;
};

// IPv4 in every spelling inet_aton(3) and curl accept: one to four parts separated by dots,
// each decimal, octal (a leading 0) or hexadecimal (0x/0X), the last part filling all the
// remaining bytes ("127.1", "2852039166", "0xa9fea9fe", "0251.0376.0251.0376", "0",
// "169.254.43518"); one trailing dot is accepted. nullopt when `text` is no such form or a part
// is out of range.
std::optional<IpAddress> ParseIpv4AnyForm(std::string_view text);

// IPv6 text without brackets, embedded dotted-quad tail included ("::ffff:169.254.169.254").
// A zone id ("fe80::1%eth0") is refused.
std::optional<IpAddress> ParseIpv6(std::string_view text);

// Why an address must not be reached unless a rule lists it exactly, or nullopt. The reason
// is a phrase such as "is a loopback address" or "is the cloud metadata address
// 169.254.169.254". Covered: unspecified (0.0.0.0/8, ::), loopback (127/8, ::1), link-local
// (169.254/16, fe80::/10, which holds the metadata services of AWS, GCP, Azure, OpenStack and
// others), the metadata addresses outside it (AWS fd00:ec2::254, Alibaba 100.100.100.200,
// Oracle 192.0.0.192), multicast (224/4, ff00::/8), broadcast 255.255.255.255, 240/4.
// IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96,
// IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16,
// Teredo 2001::/32) are also judged by the IPv4 address they carry.
std::optional<std::string> SensitiveAddress(const IpAddress& ip);

// A host as a program will resolve it.
struct Host {
  enum class Kind { kName, kIp };
  Kind kind = Kind::kName;
  // kName: lower-case ASCII, no trailing dot; IDNA A-labels ("xn--...") are kept as they are.
  std::string name;
  // kIp: the canonical address.
  IpAddress ip;

  // The name, a dotted quad, or "[v6]".
  std::string ToString() const;
};

// Why a host name must not be reached unless a rule lists it exactly, or nullopt:
// "localhost" and "*.localhost"; cloud metadata names (metadata, metadata.google.internal,
// instance-data and their *.internal / *.ec2.internal forms, metadata.azure.com, ...); the
// Kubernetes API server's in-cluster names (kubernetes, kubernetes.default,
// kubernetes.default.svc and kubernetes.default.svc.<cluster domain>); names whose last label
// is all digits or looks like a hex number (a program may read them as an address); and names
// that embed an IPv4 address in dotted, dashed or hex form ("169.254.169.254.nip.io",
// "169-254-169-254.sslip.io", "a9fea9fe.example"), which wildcard DNS services resolve to that
// address.
std::optional<std::string> SensitiveName(std::string_view canonical_name);

// Canonicalises the host argument of ping, dig, nslookup and the like: an IPv4 address in any
// form ParseIpv4AnyForm accepts, an IPv6 address (no brackets), or an RFC 1123 host name
// (labels of [A-Za-z0-9-], 1-63 bytes, at most 253 in all; one trailing dot dropped;
// lower-cased). nullopt with `*error` set to a phrase ("is not a host name or address") when
// it is none of these.
std::optional<Host> CanonicaliseHostArgument(std::string_view text, std::string* error);

// The `hosts` parameter of the url, host, hostname and ip types.
class HostList {
 public:
  // Entries: "*" (any host that is not sensitive), an exact name ("orders",
  // "orders.shop.svc.cluster.local"; canonicalised like a host argument), a suffix pattern
  // ("*.svc.cluster.local": one or more labels in front of the suffix), an IP address in
  // canonical or any other accepted form, or a CIDR block ("10.0.0.0/8", "fd00::/8"; host bits
  // must be zero, /0 is refused: use "*"). nullopt with `*error` naming the bad entry.
  static std::optional<HostList> Parse(const std::vector<std::string>& entries,
                                       std::string* error);

  // Whether `host` may be reached: it matches an entry, and a sensitive host (SensitiveAddress,
  // SensitiveName) matches an exact name or exact address entry; suffix patterns, CIDR blocks
  // and "*" never admit a sensitive host. On refusal `*why` (when non-null) says why.
  bool Admits(const Host& host, std::string* why) const;

  bool empty() const { return entries_.empty(); }

 private:
  struct Entry {
    enum class Kind { kAny, kName, kSuffix, kAddress, kCidr };
    Kind kind = Kind::kAny;
    std::string name;  // kName, kSuffix (".svc.cluster.local" with its leading dot)
    IpAddress ip;      // kAddress, kCidr
    int prefix_len = 0;
  };
  std::vector<Entry> entries_;
};

// Without a `hosts` listing: admits any host that is neither a sensitive address nor a
// sensitive name; `*why` says why otherwise.
bool AdmitsByDefault(const Host& host, std::string* why);

// A URL as curl will use it.
struct Url {
  // Lower-case.
  std::string scheme;
  Host host;
  // The explicit port, else the scheme's default (http 80, https 443; 0 for a scheme curl
  // has no default for).
  int port = 0;
  bool explicit_port = false;
  // The path after curl's dot-segment removal ("/a/../b" -> "/b"), "/" when absent.
  std::string path;
  // The query without '?', empty when absent; `has_query` tells "?" from nothing.
  std::string query;
  bool has_query = false;
  // Whether the text holds curl globbing syntax ('[' ']' '{' '}' outside an IPv6 host):
  // without -g, curl expands it into many requests.
  bool has_glob = false;
};

// Parses `text` the way curl 7.88's URL API (lib/urlapi.c, as Debian 12's libcurl) reads a
// URL given on its command line, and refuses every form whose reading could differ between
// podgate and curl or a server behind it:
//  - a scheme is required (curl would guess one): letters, digits, '+', '-', '.', case-folded;
//  - no user-info ('@' in the authority), no backslash, no whitespace or control character,
//    no fragment ('#'), nothing outside printable ASCII;
//  - the host is percent-decoded as curl does, then must decode to printable ASCII and be an
//    IPv4 address in any form (canonicalised), a bracketed IPv6 address without zone id, or a
//    host name (trailing dot dropped, lower-cased);
//  - the port is decimal 0-65535 without sign or spaces (empty ":" means the default, as in
//    curl), and port 0 is refused;
//  - the path has dot segments removed as curl does (no --path-as-is here).
// nullopt with `*error` set to a phrase that completes "the URL ..." ("has no scheme",
// "carries user information (user@host)", ...).
std::optional<Url> ParseUrl(std::string_view text, std::string* error);

}  // namespace podgate::policy::net
