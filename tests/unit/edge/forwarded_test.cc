// Addresses behind proxies: CIDR flags, the X-Forwarded-For and RFC 7239 Forwarded parsers
// against tables of good and hostile input, and the walk that picks the client.
#include "edge/forwarded.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::edge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::string> Hops(const absl::StatusOr<std::vector<ForwardedHop>>& hops) {
  std::vector<std::string> out;
  if (hops.ok()) {
    for (const ForwardedHop& h : *hops) {
      out.push_back(h.ToString());
    }
  }
  return out;
}

std::vector<Cidr> Cidrs(const std::string& list) {
  absl::StatusOr<std::vector<Cidr>> cidrs = ParseCidrList(list, "trusted_proxies");
  EXPECT_TRUE(cidrs.ok()) << cidrs.status();
  return cidrs.ok() ? *cidrs : std::vector<Cidr>{};
}

TEST(ParseIpTest, StrictAddresses) {
  EXPECT_EQ(ParseIp("192.0.2.1")->ToString(), "192.0.2.1");
  EXPECT_EQ(ParseIp("2001:DB8::1")->ToString(), "2001:db8::1");
  EXPECT_TRUE(ParseIp("2001:db8::1")->v6);
  // IPv4-mapped IPv6 (a dual-stack socket's IPv4 peer) is the IPv4 address.
  EXPECT_EQ(ParseIp("::ffff:10.1.2.3")->ToString(), "10.1.2.3");
  EXPECT_FALSE(ParseIp("::ffff:10.1.2.3")->v6);
  for (const char* bad :
       {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1.2.3.4 ", " 1.2.3.4", "fe80::1%eth0",
        "[::1]", "::1:", "localhost", "1.2.3.4/8", "0x7f.0.0.1", "::g"}) {
    EXPECT_FALSE(ParseIp(bad).has_value()) << bad;
  }
}

TEST(ParseIpTest, RemoteAddressAsTheServerWritesIt) {
  EXPECT_EQ(ParseRemoteAddress("127.0.0.1:5555")->ToString(), "127.0.0.1");
  EXPECT_EQ(ParseRemoteAddress("::1:5555")->ToString(), "::1");
  EXPECT_EQ(ParseRemoteAddress("[2001:db8::7]:80")->ToString(), "2001:db8::7");
  EXPECT_EQ(ParseRemoteAddress("::ffff:127.0.0.2:80")->ToString(), "127.0.0.2");
  EXPECT_FALSE(ParseRemoteAddress("unknown").has_value());
  EXPECT_FALSE(ParseRemoteAddress("127.0.0.1").has_value());
}

TEST(CidrTest, ContainsV4AndV6) {
  std::vector<Cidr> c = Cidrs(" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,,::1");
  ASSERT_EQ(c.size(), 4u);
  EXPECT_TRUE(InAny(c, *ParseIp("10.255.0.1")));
  EXPECT_FALSE(InAny(c, *ParseIp("11.0.0.1")));
  EXPECT_TRUE(InAny(c, *ParseIp("192.0.2.7")));
  EXPECT_FALSE(InAny(c, *ParseIp("192.0.2.8")));
  EXPECT_TRUE(InAny(c, *ParseIp("2001:db8:ffff::1")));
  EXPECT_FALSE(InAny(c, *ParseIp("2001:db9::1")));
  EXPECT_TRUE(InAny(c, *ParseIp("::1")));
  EXPECT_TRUE(InAny(c, *ParseIp("::ffff:10.0.0.1")));  // mapped: the IPv4 CIDR
  EXPECT_TRUE(InAny(Cidrs("0.0.0.0/0"), *ParseIp("203.0.113.9")));
  EXPECT_FALSE(InAny(Cidrs("0.0.0.0/0"), *ParseIp("2001:db8::1")));
  EXPECT_TRUE(InAny(Cidrs("10.1.2.0/23"), *ParseIp("10.1.3.255")));
  EXPECT_FALSE(InAny(Cidrs("10.1.2.0/23"), *ParseIp("10.1.4.0")));
  EXPECT_TRUE(Cidrs("").empty());
}

TEST(CidrTest, BadEntriesAreStartUpErrorsNamingTheFlagAndEntry) {
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.1/8", "10.0.0.0/", "10.0.0.0/-1",
                          "10.0.0.0/8/8", "example.com", "10.0.0.0/ 8", "10.0.0.0/+8",
                          "10.0.0.0/0008", "2001:db8::1/32", "1.2.3.4:80", "[::1]"}) {
    absl::StatusOr<std::vector<Cidr>> c = ParseCidrList(absl::StrCat("127.0.0.1, ", bad), "flag_x");
    ASSERT_FALSE(c.ok()) << bad;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr("--flag_x")) << bad;
    EXPECT_THAT(std::string(c.status().message()), HasSubstr(bad)) << c.status();
  }
}

TEST(XForwardedForTest, GoodChains) {
  EXPECT_THAT(Hops(ParseXForwardedFor("203.0.113.7")), ElementsAre("203.0.113.7"));
  EXPECT_THAT(Hops(ParseXForwardedFor("203.0.113.7, 10.0.0.1,10.0.0.2")),
              ElementsAre("203.0.113.7", "10.0.0.1", "10.0.0.2"));
  EXPECT_THAT(Hops(ParseXForwardedFor("2001:db8::1, [2001:db8::2], [2001:db8::3]:443")),
              ElementsAre("2001:db8::1", "2001:db8::2", "2001:db8::3"));
  EXPECT_THAT(Hops(ParseXForwardedFor("203.0.113.7:51234,\t10.0.0.1 ")),
              ElementsAre("203.0.113.7", "10.0.0.1"));
  EXPECT_THAT(Hops(ParseXForwardedFor("unknown, 10.0.0.1")), ElementsAre("unknown", "10.0.0.1"));
  EXPECT_THAT(Hops(ParseXForwardedFor("::ffff:192.0.2.1")), ElementsAre("192.0.2.1"));
}

TEST(XForwardedForTest, HostileInputIsMalformed) {
  const std::string huge(20000, '1');
  std::string many;
  for (size_t i = 0; i <= kMaxForwardedHops; ++i) {
    absl::StrAppend(&many, i == 0 ? "" : ",", "10.0.0.", i % 250);
  }
  for (const std::string& bad : std::vector<std::string>{"",
                                                         ",",
                                                         "1.2.3.4,",
                                                         ",1.2.3.4",
                                                         "1.2.3.4,,5.6.7.8",
                                                         "garbage",
                                                         "1.2.3.4 5.6.7.8",
                                                         "1.2.3.4;5.6.7.8",
                                                         "1.2.3.4:",
                                                         "1.2.3.4:99999",
                                                         "1.2.3.4:http",
                                                         "[2001:db8::1",
                                                         "[2001:db8::1]x",
                                                         "[1.2.3.4]",
                                                         "2001:db8::1:443:x",
                                                         "for=1.2.3.4",
                                                         "\"1.2.3.4\"",
                                                         "_hidden",
                                                         "1.2.3.4\r\nX-Evil: 1",
                                                         std::string("1.2.3.4\0", 8),
                                                         "fe80::1%eth0",
                                                         "01.2.3.4",
                                                         huge,
                                                         many,
                                                         "[::1]:1:2"}) {
    absl::StatusOr<std::vector<ForwardedHop>> hops = ParseXForwardedFor(bad);
    EXPECT_FALSE(hops.ok()) << bad.substr(0, 80) << " -> " << ::testing::PrintToString(Hops(hops));
  }
  // Exactly the limit parses.
  std::string limit;
  for (size_t i = 0; i < kMaxForwardedHops; ++i) {
    absl::StrAppend(&limit, i == 0 ? "" : ",", "10.0.0.", i);
  }
  EXPECT_EQ(ParseXForwardedFor(limit)->size(), kMaxForwardedHops);
}

TEST(ForwardedTest, GoodChains) {
  EXPECT_THAT(Hops(ParseForwarded("for=192.0.2.60;proto=http;by=203.0.113.43")),
              ElementsAre("192.0.2.60"));
  EXPECT_THAT(Hops(ParseForwarded("for=192.0.2.43, for=198.51.100.17")),
              ElementsAre("192.0.2.43", "198.51.100.17"));
  // RFC 7239 section 4's examples.
  EXPECT_THAT(Hops(ParseForwarded("for=\"_gazonk\"")), ElementsAre("_gazonk"));
  EXPECT_THAT(Hops(ParseForwarded("For=\"[2001:db8:cafe::17]:4711\"")),
              ElementsAre("2001:db8:cafe::17"));
  EXPECT_THAT(Hops(ParseForwarded("for=unknown, for=\"192.0.2.1:8080\";proto=https")),
              ElementsAre("unknown", "192.0.2.1"));
  EXPECT_THAT(Hops(ParseForwarded("for=_hidden, for=\"[::1]\", for=\"_x:_port\"")),
              ElementsAre("_hidden", "::1", "_x"));
  EXPECT_THAT(Hops(ParseForwarded("for=\"192.0.2.1:_obf\"")), ElementsAre("192.0.2.1"));
  // An element without `for` is an unknown hop; empty list elements are allowed.
  EXPECT_THAT(Hops(ParseForwarded("proto=https;by=10.0.0.1, ,for=10.0.0.2")),
              ElementsAre("unknown", "10.0.0.2"));
  // Quoted strings may hold the separators and escapes.
  EXPECT_THAT(Hops(ParseForwarded("for=10.0.0.3;host=\"a,b;c=\\\"d\\\"\"")),
              ElementsAre("10.0.0.3"));
  EXPECT_THAT(Hops(ParseForwarded("for=10.0.0.3 ; proto=https , for=10.0.0.4")),
              ElementsAre("10.0.0.3", "10.0.0.4"));
}

TEST(ForwardedTest, HostileInputIsMalformed) {
  std::string many;
  for (size_t i = 0; i <= kMaxForwardedHops; ++i) {
    absl::StrAppend(&many, i == 0 ? "" : ",", "for=10.0.0.", i % 250);
  }
  const std::string huge_quoted = "for=\"" + std::string(30000, 'a');
  for (const std::string& bad : std::vector<std::string>{"",
                                                         ", ,",
                                                         " ",
                                                         "for=",
                                                         "for",
                                                         "=1.2.3.4",
                                                         "for=[2001:db8::1]",
                                                         "for=2001:db8::1",
                                                         "for=\"2001:db8::1\"",
                                                         "for=192.0.2.1:80",
                                                         "for=\"192.0.2.1:http\"",
                                                         "for=\"[2001:db8::1]:99999\"",
                                                         "for=\"[2001:db8::1\"",
                                                         "for=\"unterminated",
                                                         "for=1.2.3.4;for=5.6.7.8",
                                                         "for=1.2.3.4 by=5",
                                                         "for=garbage",
                                                         "for=_",
                                                         "for=\"_a b\"",
                                                         "for=1.2.3.4;;=x",
                                                         "for=\"1.2.3.4\r\n\"",
                                                         "for=1.2.3.4\x01",
                                                         "for=\"[1.2.3.4]\"",
                                                         "for=\"\"",
                                                         "f o r=1.2.3.4",
                                                         "for=1.2.3.4, garbage",
                                                         huge_quoted,
                                                         many,
                                                         "for=\"1.2.3.4\\\"",
                                                         "for=300.1.1.1",
                                                         "for=\"fe80::1%eth0\""}) {
    absl::StatusOr<std::vector<ForwardedHop>> hops = ParseForwarded(bad);
    EXPECT_FALSE(hops.ok()) << bad.substr(0, 80) << " -> " << ::testing::PrintToString(Hops(hops));
  }
}

constexpr auto kXff = ForwardedHeader::kXForwardedFor;
using Outcome = ClientAddress::Outcome;

TEST(ResolveClientTest, WalksFromTheRightToTheFirstUntrustedHop) {
  const std::vector<Cidr> trusted = Cidrs("10.0.0.0/8, 2001:db8:1::/48");
  // The client wrote the leftmost entries itself: never believed past the first untrusted hop.
  ClientAddress c = ResolveClient(trusted, kXff, "10.0.0.5:3333",
                                  std::string("6.6.6.6, 203.0.113.7, 10.1.1.1, 10.2.2.2"));
  EXPECT_EQ(c.outcome, Outcome::kTrusted);
  EXPECT_EQ(c.address, "203.0.113.7");
  // Every hop trusted: the leftmost.
  c = ResolveClient(trusted, kXff, "10.0.0.5:3333", std::string("10.9.9.9, 10.1.1.1"));
  EXPECT_EQ(c.address, "10.9.9.9");
  // IPv6 peer and hops.
  c = ResolveClient(trusted, ForwardedHeader::kForwarded, "2001:db8:1::5:443",
                    std::string("for=\"[2001:db8:2::9]:1\", for=\"[2001:db8:1::7]\""));
  EXPECT_EQ(c.outcome, Outcome::kTrusted);
  EXPECT_EQ(c.address, "2001:db8:2::9");
  // An obfuscated hop is not trusted: the walk stops there.
  c = ResolveClient(trusted, ForwardedHeader::kForwarded, "10.0.0.5:1",
                    std::string("for=203.0.113.1, for=_hidden, for=10.0.0.9"));
  EXPECT_EQ(c.address, "_hidden");
  // A dual-stack socket's mapped peer matches the IPv4 CIDR.
  c = ResolveClient(trusted, kXff, "::ffff:10.0.0.5:1", std::string("198.51.100.2"));
  EXPECT_EQ(c.address, "198.51.100.2");
}

TEST(ResolveClientTest, UntrustedPeersAndMalformedHeadersKeepThePeer) {
  const std::vector<Cidr> trusted = Cidrs("10.0.0.0/8");
  ClientAddress c = ResolveClient(trusted, kXff, "127.0.0.1:4444", std::string("203.0.113.7"));
  EXPECT_EQ(c.outcome, Outcome::kUntrustedIgnored);
  EXPECT_EQ(c.address, "127.0.0.1:4444");
  c = ResolveClient(trusted, kXff, "10.0.0.1:4444", std::string("203.0.113.7, bogus"));
  EXPECT_EQ(c.outcome, Outcome::kMalformed);
  EXPECT_EQ(c.address, "10.0.0.1:4444");
  EXPECT_THAT(c.error, HasSubstr("not an address"));
  c = ResolveClient(trusted, kXff, "10.0.0.1:4444", std::nullopt);
  EXPECT_EQ(c.outcome, Outcome::kPeer);
  EXPECT_EQ(c.address, "10.0.0.1:4444");
  // No trusted proxies: nothing is read or counted.
  c = ResolveClient({}, kXff, "10.0.0.1:4444", std::string("203.0.113.7"));
  EXPECT_EQ(c.outcome, Outcome::kPeer);
  // The Forwarded header is not read when X-Forwarded-For is configured (the caller passes the
  // chosen header only): a Forwarded value fails X-Forwarded-For's grammar.
  c = ResolveClient(trusted, kXff, "10.0.0.1:4444", std::string("for=203.0.113.7"));
  EXPECT_EQ(c.outcome, Outcome::kMalformed);
}

}  // namespace
}  // namespace podgate::edge
