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
// is out of range. Exactly glibc's inet_aton (which getaddrinfo applies to every name before
// DNS) apart from the trailing dot: curl 7.88 looks "1.2.3.4." up as a name, which no DNS
// answers (no top-level domain is numeric), so reading it as the address is the stricter choice.
std::optional<IpAddress> ParseIpv4AnyForm(std::string_view text);

// IPv6 text without brackets, embedded dotted-quad tail included ("::ffff:169.254.169.254"),
// exactly as glibc's inet_pton reads it (at most four hex digits a group, a strict dotted quad,
// "::" for at least one group). A zone id ("fe80::1%eth0") is refused.
std::optional<IpAddress> ParseIpv6(std::string_view text);

// Why an address must not be reached unless a rule lists it exactly, or nullopt. The reason
// is a phrase such as "is a loopback address" or "is the cloud metadata address
// 169.254.169.254". Covered: unspecified (0.0.0.0/8, ::), loopback (127/8, ::1), link-local
// (169.254/16, fe80::/10, which holds the metadata services of AWS, GCP, Azure, OpenStack and
// others), the metadata addresses outside it (AWS fd00:ec2::254, Alibaba 100.100.100.200,
// Oracle 192.0.0.192), multicast (224/4, ff00::/8), broadcast 255.255.255.255, 240/4.
// IPv6 forms that embed an IPv4 address (IPv4-mapped ::ffff:0:0/96, IPv4-compatible ::/96,
// IPv4-translated ::ffff:0:0:0/96, NAT64 64:ff9b::/96 and 64:ff9b:1::/48, 6to4 2002::/16,
// Teredo 2001::/32, client and server) are also judged by the IPv4 address they carry; a
// 64:ff9b:1::/48 address not laid out as /96 is refused, its IPv4 address being unknowable.
// Not sensitive: private ranges (10/8, 172.16/12, 192.168/16, fc00::/7 apart from AWS's
// fd00:ec2::/32), where cluster services live, and the documentation ranges (192.0.2/24,
// 198.51.100/24, 203.0.113/24, 2001:db8::/32): nothing routes them, so reaching them harms
// nothing, and examples use them.
std::optional<std::string> SensitiveAddress(const IpAddress& ip);

// A host as a program will resolve it.
struct Host {
  enum class Kind { kName, kIp };
  Kind kind = Kind::kName;
  // kName: lower-case ASCII, no trailing dot; IDNA A-labels ("xn--...") are kept as they are.
  // Non-ASCII names (which curl would convert with libidn2, under rules that changed between
  // IDNA 2003 and 2008) are refused everywhere, percent-encoded ones included.
  std::string name;
  // kIp: the canonical address.
  IpAddress ip;

  // The name, a dotted quad, or "[v6]".
  std::string ToString() const;
};

// Why a host name must not be reached unless a rule lists it exactly, or nullopt:
// "localhost" and "*.localhost", the other names hosts files give the local host
// (localhost.localdomain, ip6-localhost, ...) and a few well-known public names that resolve to
// 127.0.0.1 (*.localtest.me, *.lvh.me, ...); cloud metadata names (metadata, instance-data and
// their *.internal forms such as metadata.google.internal and instance-data.ec2.internal,
// metadata.goog, metadata.azure.com, ...); the names local clusters give the host or the API
// server (host.docker.internal, kubernetes.docker.internal, control-plane.minikube.internal);
// cloud instance names (*.ec2.internal, *.compute.internal, *.c.<project>.internal: nodes, where
// the kubelet listens); the Kubernetes API server's in-cluster names (kubernetes,
// kubernetes.default, kubernetes.default.svc and kubernetes.default.svc.<cluster domain>).
// Names that programs may read as an address: the last label all digits ("08", "1.2.3.4.5":
// no top-level domain is numeric, so DNS never answers them and only address parsers read
// them), or "0x" and hex digits ("0x", "0x100000000"). A last label of hex letters alone
// ("deadbeef", and real TLDs such as .de, .ca, .be, .cafe) is not: inet_aton and curl read a
// part as a number only when it starts with a digit. Names that embed an address, which
// wildcard DNS services resolve to it: four numbers of at most one byte each (decimal, octal or
// hex) separated by dots or dashes anywhere in the name ("169.254.169.254.nip.io",
// "app-169-254-169-254.sslip.io", "x-169.254.169.254-y.1u.ms"), a word (text between dots and
// dashes) of eight hex digits or of "0x" and up to eight ("a9fea9fe.nip.io",
// "magic-7f000001.nip.io"), and an IPv6 address with dashes for colons ("--1.sslip.io",
// "fe80--1.sslip.io"). Ordinary service names ("orders.app-shop.svc.cluster.local",
// "api-v2.example.com", "db-1.shop.svc") match none of these. No name check stops a domain
// whose owner points it at an internal address: that takes egress rules in the cluster.
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
  // must be zero, /0 is refused: use "*"). nullopt with `*error` naming the bad entry. CIDR
  // blocks take a plain dotted quad ("10/8" would be 0.0.0.10 to inet_aton); an IPv6 address
  // may be bracketed ("[fe80::1]"). Addresses match addresses of their own family only:
  // "10.0.0.0/8" does not admit [::ffff:10.0.0.1].
  static std::optional<HostList> Parse(const std::vector<std::string>& entries, std::string* error);

  // Whether `host` may be reached: it matches an entry, and a sensitive host (SensitiveAddress,
  // SensitiveName) matches an exact name or exact address entry; suffix patterns, CIDR blocks
  // and "*" never admit a sensitive host. Names never match addresses: podgate does not
  // resolve. On refusal `*why` (when non-null) is a sentence that starts with the host
  // ("127.0.0.1 is a loopback address (127.0.0.0/8), and only a hosts entry naming it exactly
  // allows it", "orders2 is not among the hosts the rule allows").
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
  // The explicit port, else the scheme's default as Debian 12's libcurl knows it (http 80,
  // https 443, ftp 21, gopher 70, ...; 0 for a scheme it has no default for, ws and wss
  // included: that libcurl is built without WebSockets).
  int port = 0;
  bool explicit_port = false;
  // The path after curl's dot-segment removal ("/a/../b" -> "/b"), "/" when absent.
  std::string path;
  // The query without '?', empty when absent; `has_query` tells "?" from nothing.
  std::string query;
  bool has_query = false;
  // Whether the text holds curl globbing syntax ('[' ']' '{' '}' outside an IPv6 host):
  // without -g, curl expands it into many requests. Globbing in the host or port is refused
  // outright; in the path or query it is flagged, and `path` then describes the pattern, not
  // the paths requested ("/{..,a}/x" may become "/../x").
  bool has_glob = false;
};

// Parses `text` the way curl 7.88's URL API (lib/urlapi.c, as Debian 12's libcurl) reads a
// URL given on its command line, and refuses every form whose reading could differ between
// podgate and curl or a server behind it (url_curl_oracle_test checks the agreement with that
// libcurl):
//  - a scheme is required (curl would guess one): a letter, then letters, digits, '+', '-',
//    '.', case-folded, followed by exactly "://" (curl also reads "http:/x" and "http:///x");
//    file: is refused, as it reads local files;
//  - no user-info ('@' in the authority), no backslash, no whitespace or control character,
//    no fragment ('#'), nothing outside printable ASCII;
//  - the host is percent-decoded as curl does, then must decode to printable ASCII and be an
//    IPv4 address in any form (canonicalised), a bracketed IPv6 address without zone id, or a
//    host name (RFC 1123: curl's "a_b", "a~b", ".a" are refused; trailing dot dropped,
//    lower-cased);
//  - the port is decimal 0-65535 without sign or spaces (leading zeros are decimal and an
//    empty ":" means the default, as in curl), and port 0 is refused;
//  - the path has dot segments removed as curl does (no --path-as-is here). Escapes stay
//    encoded, as curl sends them, but none in the path may decode to '.', '/' or a backslash
//    (a server decoding "%2e%2e" after curl removed dot segments walks out of the path a rule
//    checked), no segment may be "..;" or ".;" (Tomcat's parent directory), and neither path
//    nor query may hold a malformed escape or one that decodes to a control character.
// nullopt with `*error` set to a phrase that completes "the URL ..." ("has no scheme",
// "carries user information (user@host)", ...).
std::optional<Url> ParseUrl(std::string_view text, std::string* error);

}  // namespace podgate::policy::net
