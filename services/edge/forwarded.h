// Addresses behind proxies: IP addresses and CIDR lists as flags give them, the two headers
// proxies use to name the client (X-Forwarded-For and RFC 7239 Forwarded), and the walk that
// finds the client's address in them. Pure functions: ProxyTrust (proxy_trust.h) applies them
// to requests, counts and logs.
//
// The walk (ResolveClient): only when the TCP peer is inside a trusted CIDR is the header read
// at all. Its hops are then walked from the right (the hop nearest to edge first), skipping
// trusted proxies; the first hop that is not a trusted proxy is the client. When every hop is a
// trusted proxy, the leftmost is. A hop may be an obfuscated identifier ("_hidden") or
// "unknown" (RFC 7239 section 6): it is not trusted, so the walk stops there and that text is
// the client's address. Everything left of the client was written by the client (or by
// proxies edge does not trust) and is never looked at, beyond parsing the header as a whole.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"

namespace podgate::edge {

// An IPv4 or IPv6 address. An IPv4-mapped IPv6 address (::ffff:a.b.c.d) is its IPv4 address,
// so a dual-stack socket's peers match IPv4 CIDRs.
struct IpAddress {
  bool v6 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4: the first 4

  // The canonical text: "192.0.2.1", "2001:db8::1".
  std::string ToString() const;
  bool operator==(const IpAddress& other) const = default;
};

// An address exactly as inet_pton reads it (no zone, no brackets, no port, no leading zeros in
// IPv4 octets); nullopt for anything else.
std::optional<IpAddress> ParseIp(std::string_view text);

// The address of RequestContext::remote_address ("ip:port", IPv6 without brackets as the
// server writes it: "::1:5555"); nullopt when it is not one.
std::optional<IpAddress> ParseRemoteAddress(std::string_view remote_address);

struct Cidr {
  IpAddress base;
  int prefix = 0;  // 0..32 (IPv4), 0..128 (IPv6)

  bool Contains(const IpAddress& address) const;
};

// A comma-separated list of CIDRs ("10.0.0.0/8, 2001:db8::/32"); a bare address is a single
// host (/32 or /128). Strict: an entry that is not an address, a prefix out of range, or bits
// set beyond the prefix ("10.0.0.1/8") is an error naming `flag` and the entry. Empty entries
// are skipped; an empty list is an empty vector.
absl::StatusOr<std::vector<Cidr>> ParseCidrList(std::string_view list, std::string_view flag);

bool InAny(const std::vector<Cidr>& cidrs, const IpAddress& address);

// One hop of a forwarding chain: an address, or (when `address` is empty) an identifier that
// names no address: "unknown" or an obfuscated "_name" (RFC 7239 section 6.3).
struct ForwardedHop {
  std::optional<IpAddress> address;
  std::string identifier;

  // The address's text, or the identifier.
  std::string ToString() const;
};

// More hops than this in one header make it malformed.
inline constexpr size_t kMaxForwardedHops = 64;

// X-Forwarded-For, every line of the request joined by ",": a list of IPv4 ("192.0.2.1"),
// IPv6 ("2001:db8::1", "[2001:db8::1]"), either with a port ("192.0.2.1:443",
// "[2001:db8::1]:443"; the port is dropped) or "unknown". Anything else, an empty entry or more
// than kMaxForwardedHops hops is an error.
absl::StatusOr<std::vector<ForwardedHop>> ParseXForwardedFor(std::string_view value);

// RFC 7239 Forwarded, every line joined by ",": elements of token=value pairs (value a token or
// a quoted string), ';' between pairs, ',' between elements. Each element's `for` parameter is
// its hop: an IPv4 address, a quoted "[IPv6]", either with an optional ":port" (digits or an
// obfuscated "_port"), "unknown" or an obfuscated "_name". An element without `for` is an
// "unknown" hop. A syntax error, a parameter given twice in one element, a `for` that is none of
// these, no element at all, or more than kMaxForwardedHops elements is an error.
absl::StatusOr<std::vector<ForwardedHop>> ParseForwarded(std::string_view value);

// Which header edge reads (--forwarded_header). Only one: a proxy that writes one of them passes
// the other through from the client unchanged, and reading that one would let the client name
// any address.
enum class ForwardedHeader { kXForwardedFor, kForwarded };

struct ClientAddress {
  enum class Outcome {
    kPeer,              // no header, or no trusted proxies configured: the TCP peer
    kTrusted,           // the header from a trusted peer named the client
    kUntrustedIgnored,  // a header from a peer that is not a trusted proxy: ignored
    kMalformed,         // a trusted peer's header did not parse: ignored, the TCP peer
  };
  Outcome outcome = Outcome::kPeer;
  // The TCP peer's remote_address unchanged, or the client's address from the header (the
  // address without port, or the identifier).
  std::string address;
  // Why the header was malformed.
  std::string error;
};

// The client of a request from `remote_address` (the TCP peer, "ip:port") whose `header` (the
// chosen header's lines joined by ","; nullopt when the request has none) is read only when the
// peer is inside `trusted`.
ClientAddress ResolveClient(const std::vector<Cidr>& trusted, ForwardedHeader which,
                            std::string_view remote_address,
                            const std::optional<std::string>& header);

}  // namespace podgate::edge
