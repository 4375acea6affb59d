// Fuzzes the headers proxies name clients in (services/edge/forwarded.h): X-Forwarded-For,
// RFC 7239 Forwarded, CIDR lists, and the walk. Besides crashes and undefined behaviour it
// checks what edge relies on:
//  - every address a parser returns prints to text that parses back to the same address;
//  - the walk's client is the peer itself, or one of the header's hops: never anything else;
//  - from a peer outside the trusted CIDRs, the header is never read.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "edge/forwarded.h"
#include "require.h"

using podgate::fuzz::Require;

namespace edge = podgate::edge;

namespace {

void CheckHops(const absl::StatusOr<std::vector<edge::ForwardedHop>>& hops, std::string_view in) {
  if (!hops.ok()) {
    return;
  }
  Require(!hops->empty() && hops->size() <= edge::kMaxForwardedHops, "hop count", in);
  for (const edge::ForwardedHop& hop : *hops) {
    if (hop.address.has_value()) {
      std::optional<edge::IpAddress> again = edge::ParseIp(hop.address->ToString());
      Require(again.has_value() && *again == *hop.address, "address prints back", in);
    } else {
      Require(!hop.identifier.empty(), "a hop without address has an identifier", in);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  CheckHops(edge::ParseXForwardedFor(input), input);
  CheckHops(edge::ParseForwarded(input), input);
  (void)edge::ParseCidrList(input, "fuzz");

  static const std::vector<edge::Cidr> trusted =
      *edge::ParseCidrList("10.0.0.0/8, 127.0.0.0/8, fd00::/8", "fuzz");
  for (auto which : {edge::ForwardedHeader::kXForwardedFor, edge::ForwardedHeader::kForwarded}) {
    const std::string header(input);
    edge::ClientAddress c = edge::ResolveClient(trusted, which, "10.1.1.1:443", header);
    if (c.outcome == edge::ClientAddress::Outcome::kTrusted) {
      auto hops = which == edge::ForwardedHeader::kForwarded ? edge::ParseForwarded(input)
                                                             : edge::ParseXForwardedFor(input);
      bool found = false;
      for (const edge::ForwardedHop& hop : *hops) {
        found = found || hop.ToString() == c.address;
      }
      Require(found, "the client is one of the hops", input);
    } else {
      Require(c.address == "10.1.1.1:443", "otherwise the peer", input);
    }
    edge::ClientAddress untrusted = edge::ResolveClient(trusted, which, "203.0.113.1:1", header);
    Require(untrusted.outcome == edge::ClientAddress::Outcome::kUntrustedIgnored &&
                untrusted.address == "203.0.113.1:1",
            "an untrusted peer's header is ignored", input);
  }
  return 0;
}
