// Fuzzes the reading of network destinations: net::ParseUrl, CanonicaliseHostArgument and
// HostList. Besides crashes and undefined behaviour it checks invariants a policy relies on:
//  - an accepted URL, written back as scheme://Host::ToString():port/path?query, reads as the
//    same host, port, path and query (the canonical form means what the original meant);
//  - every address prints to text that parses back to the same address;
//  - "*" never admits a sensitive host, an exact entry for a host always admits it, and
//    AdmitsByDefault is exactly "not sensitive".
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "policy/net_address.h"
#include "require.h"

using podgate::fuzz::Require;

namespace net = podgate::policy::net;

namespace {

bool SameHost(const net::Host& a, const net::Host& b) {
  return a.kind == b.kind && (a.kind == net::Host::Kind::kName ? a.name == b.name : a.ip == b.ip);
}

bool IsSensitive(const net::Host& host) {
  return host.kind == net::Host::Kind::kIp ? net::SensitiveAddress(host.ip).has_value()
                                           : net::SensitiveName(host.name).has_value();
}

void CheckAddressPrintsBack(const net::IpAddress& ip, std::string_view input) {
  const std::string text = ip.ToString();
  if (ip.v6) {
    Require(net::ParseIpv6(text) == ip, "IPv6 ToString parses back", input);
  } else {
    Require(net::ParseIpv4AnyForm(text) == ip, "IPv4 ToString parses back", input);
    for (size_t i = 4; i < ip.bytes.size(); ++i) {
      Require(ip.bytes[i] == 0, "IPv4 uses four bytes", input);
    }
  }
}

void CheckHost(const net::Host& host, std::string_view input) {
  if (host.kind == net::Host::Kind::kIp) {
    CheckAddressPrintsBack(host.ip, input);
  } else {
    Require(!host.name.empty() && host.name.size() <= 253, "name length", input);
    for (char c : host.name) {
      Require((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.',
              "canonical name is lower-case LDH", input);
    }
  }
  std::string why;
  Require(net::AdmitsByDefault(host, &why) == !IsSensitive(host),
          "AdmitsByDefault is not-sensitive", input);

  // The host as a host argument (IPv6 without brackets) canonicalises to itself.
  std::string text = host.ToString();
  if (host.kind == net::Host::Kind::kIp && host.ip.v6) {
    text = text.substr(1, text.size() - 2);
  }
  std::string error;
  std::optional<net::Host> again = net::CanonicaliseHostArgument(text, &error);
  Require(again.has_value() && SameHost(*again, host), "host argument round trip", input);

  std::optional<net::HostList> any = net::HostList::Parse({"*"}, &error);
  Require(any.has_value(), "\"*\" parses", input);
  Require(any->Admits(host, &why) == !IsSensitive(host), "\"*\" admits exactly the insensitive",
          input);
  std::optional<net::HostList> exact = net::HostList::Parse({host.ToString()}, &error);
  Require(exact.has_value(), "a host's ToString is a valid hosts entry", input);
  Require(exact->Admits(host, &why), "an exact entry admits its host", input);
}

void CheckUrl(const net::Url& url, std::string_view input) {
  Require(!url.scheme.empty(), "scheme", input);
  Require(url.port >= 0 && url.port <= 65535, "port range", input);
  Require(!url.explicit_port || url.port > 0, "explicit port is not 0", input);
  Require(!url.path.empty() && url.path[0] == '/', "path is absolute", input);
  CheckHost(url.host, input);

  std::string canonical = url.scheme + "://" + url.host.ToString();
  if (url.port != 0) {
    canonical += ":" + std::to_string(url.port);
  }
  canonical += url.path;
  if (url.has_query) {
    canonical += "?" + url.query;
  }
  std::string error;
  std::optional<net::Url> again = net::ParseUrl(canonical, &error);
  Require(again.has_value(), "the canonical URL parses", input);
  Require(SameHost(again->host, url.host), "the canonical URL has the same host", input);
  Require(again->port == url.port, "the canonical URL has the same port", input);
  Require(again->path == url.path, "the canonical URL has the same path", input);
  Require(again->query == url.query && again->has_query == url.has_query,
          "the canonical URL has the same query", input);
  // Dot-segment removal may drop a segment that held the only glob character, never add one.
  Require(!again->has_glob || url.has_glob, "no globbing appears", input);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::string error;

  if (std::optional<net::Url> url = net::ParseUrl(input, &error)) {
    CheckUrl(*url, input);
  } else {
    Require(!error.empty(), "a refused URL says why", input);
  }

  error.clear();
  if (std::optional<net::Host> host = net::CanonicaliseHostArgument(input, &error)) {
    CheckHost(*host, input);
  } else {
    Require(!error.empty(), "a refused host says why", input);
  }

  if (std::optional<net::IpAddress> v4 = net::ParseIpv4AnyForm(input)) {
    CheckAddressPrintsBack(*v4, input);
  }
  if (std::optional<net::IpAddress> v6 = net::ParseIpv6(input)) {
    CheckAddressPrintsBack(*v6, input);
    net::SensitiveAddress(*v6);
  }
  // Callers pass canonical names, but nothing may break on any text.
  net::SensitiveName(input);

  // The input as a hosts list (entries separated by ','), judged against hosts read from the
  // same input's entries.
  std::vector<std::string> entries;
  size_t start = 0;
  while (start <= input.size() && entries.size() < 16) {
    const size_t comma = input.find(',', start);
    const size_t end = comma == std::string_view::npos ? input.size() : comma;
    entries.emplace_back(input.substr(start, end - start));
    start = end + 1;
  }
  error.clear();
  std::optional<net::HostList> list = net::HostList::Parse(entries, &error);
  Require(list.has_value() || !error.empty(), "a refused hosts list says why", input);
  if (list) {
    for (const std::string& entry : entries) {
      std::string why;
      if (std::optional<net::Host> host = net::CanonicaliseHostArgument(entry, &why)) {
        // An entry that is itself a host admits that host.
        Require(list->Admits(*host, &why), "an entry admits its own host", input);
      }
    }
  }
  return 0;
}
