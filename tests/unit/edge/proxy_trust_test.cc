// ProxyTrust on requests: the client's address from a trusted proxy (and only from one), the
// auth-proxy headers accepted only from the auth proxy (by address or client certificate), and
// their check against the verified token; each outcome counted.
#include "edge/proxy_trust.h"

#include <memory>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/registry.h"
#include "runtime/log.h"

namespace podgate::edge {
namespace {

namespace bhttp = boost::beast::http;
using ::testing::HasSubstr;

std::vector<Cidr> Cidrs(const std::string& list) { return *ParseCidrList(list, "x"); }

http::Request Req(std::vector<std::pair<std::string, std::string>> headers) {
  http::Request r{bhttp::verb::get, "/api/v1/session", 11};
  for (const auto& [k, v] : headers) {
    r.insert(k, v);
  }
  return r;
}

http::RequestContext Peer(const std::string& address) {
  http::RequestContext p;
  p.remote_address = address;
  return p;
}

double Value(prometheus::Registry& registry, const std::string& name, const std::string& result) {
  for (const prometheus::MetricFamily& f : registry.Collect()) {
    if (f.name != name) {
      continue;
    }
    for (const prometheus::ClientMetric& m : f.metric) {
      for (const prometheus::ClientMetric::Label& l : m.label) {
        if (l.name == "result" && l.value == result) {
          return m.counter.value;
        }
      }
    }
  }
  return -1;
}

auth::VerifiedToken Verified(const std::string& user, std::vector<std::string> groups) {
  auth::VerifiedToken v;
  v.principal.set_user(user);
  for (const std::string& g : groups) {
    v.principal.add_groups(g);
  }
  return v;
}

TEST(ProxyTrustTest, TrustedProxyNamesTheClientAndMultipleLinesCombineInOrder) {
  prometheus::Registry registry;
  ProxyOptions o;
  o.trusted_proxies = Cidrs("10.0.0.0/8");
  ProxyTrust trust(o, &registry);
  // Two lines: "203.0.113.7, 10.0.0.3" then "10.0.0.4": the walk sees all three, in order.
  http::RequestContext c = trust.ClientContext(
      Req({{"X-Forwarded-For", "198.51.100.1, 203.0.113.7"}, {"X-Forwarded-For", "10.0.0.4"}}),
      Peer("10.0.0.2:5000"));
  EXPECT_EQ(c.remote_address, "203.0.113.7");
  EXPECT_EQ(c.proxy_address, "10.0.0.2:5000");
  EXPECT_EQ(TcpPeer(c), "10.0.0.2:5000");
  EXPECT_EQ(Value(registry, "podgate_edge_forwarded_address_total", "trusted"), 1);

  // From an untrusted peer: ignored and counted as such.
  c = trust.ClientContext(Req({{"X-Forwarded-For", "203.0.113.7"}}), Peer("127.0.0.1:1"));
  EXPECT_EQ(c.remote_address, "127.0.0.1:1");
  EXPECT_EQ(c.proxy_address, "");
  EXPECT_EQ(Value(registry, "podgate_edge_forwarded_address_total", "untrusted_ignored"), 1);

  // Malformed from a trusted peer: the peer, counted.
  c = trust.ClientContext(Req({{"X-Forwarded-For", "203.0.113.7, <script>"}}),
                          Peer("10.0.0.2:5000"));
  EXPECT_EQ(c.remote_address, "10.0.0.2:5000");
  EXPECT_EQ(Value(registry, "podgate_edge_forwarded_address_total", "malformed"), 1);

  // No header: nothing counted.
  c = trust.ClientContext(Req({}), Peer("10.0.0.2:5000"));
  EXPECT_EQ(c.remote_address, "10.0.0.2:5000");
  EXPECT_EQ(Value(registry, "podgate_edge_forwarded_address_total", "trusted"), 1);

  // The Forwarded header is not read while X-Forwarded-For is the configured one.
  c = trust.ClientContext(Req({{"Forwarded", "for=203.0.113.9"}}), Peer("10.0.0.2:5000"));
  EXPECT_EQ(c.remote_address, "10.0.0.2:5000");
}

TEST(ProxyTrustTest, ForwardedHeaderWhenConfigured) {
  ProxyOptions o;
  o.trusted_proxies = Cidrs("::1, 127.0.0.0/8");
  o.forwarded_header = ForwardedHeader::kForwarded;
  ProxyTrust trust(o, nullptr);
  http::RequestContext c =
      trust.ClientContext(Req({{"X-Forwarded-For", "6.6.6.6"},
                               {"Forwarded", "for=\"[2001:db8:cafe::17]:4711\";proto=https"},
                               {"forwarded", "for=127.0.0.9"}}),
                          Peer("::1:8080"));
  EXPECT_EQ(c.remote_address, "2001:db8:cafe::17");
}

TEST(ProxyTrustTest, OffByDefault) {
  ProxyTrust trust(ProxyOptions{}, nullptr);
  http::RequestContext c =
      trust.ClientContext(Req({{"X-Forwarded-For", "203.0.113.7"}}), Peer("127.0.0.1:1"));
  EXPECT_EQ(c.remote_address, "127.0.0.1:1");
  absl::StatusOr<AuthProxyRequest> r =
      trust.Inspect(Req({{"X-Auth-Request-User", "mallory"}}), Peer("127.0.0.1:1"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->from_proxy);
  EXPECT_EQ(r->token, "");
}

ProxyOptions AuthProxy() {
  ProxyOptions o;
  o.user_header = "X-Auth-Request-User";
  o.groups_header = "X-Auth-Request-Groups";
  o.auth_proxy_cidrs = Cidrs("10.9.0.0/16");
  o.auth_proxy_client_names = {"oauth2-proxy.podgate.svc"};
  return o;
}

TEST(ProxyTrustTest, IdentityHeadersFromAnyoneButTheProxyAreRefused) {
  prometheus::Registry registry;
  ProxyTrust trust(AuthProxy(), &registry);
  for (const auto& headers : std::vector<std::vector<std::pair<std::string, std::string>>>{
           {{"X-Auth-Request-User", "alice"}},
           {{"x-auth-request-groups", "admins"}},
           {{"X-Forwarded-Access-Token", "eyJ..."}}}) {
    absl::StatusOr<AuthProxyRequest> r = trust.Inspect(Req(headers), Peer("10.8.0.1:1"));
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("only from the configured auth proxy"));
  }
  EXPECT_EQ(Value(registry, "podgate_edge_auth_proxy_total", "untrusted"), 3);
  // Behind a trusted (forwarding) proxy, the auth-proxy check is on the TCP peer, not the
  // forwarded address: a client cannot claim the auth proxy's address in X-Forwarded-For.
  http::RequestContext forwarded = Peer("10.9.0.1");
  forwarded.proxy_address = "10.8.0.1:1";
  EXPECT_FALSE(trust.Inspect(Req({{"X-Auth-Request-User", "alice"}}), forwarded).ok());
  // A client certificate that does not carry the proxy's name does not help; without TLS none
  // counts.
  http::RequestContext cert = Peer("10.8.0.1:1");
  cert.tls = true;
  cert.peer_common_name = "someone-else";
  cert.peer_dns_names = {"other.podgate.svc"};
  EXPECT_FALSE(trust.Inspect(Req({{"X-Auth-Request-User", "alice"}}), cert).ok());
  http::RequestContext plain = Peer("10.8.0.1:1");
  plain.peer_common_name = "oauth2-proxy.podgate.svc";
  EXPECT_FALSE(trust.Inspect(Req({{"X-Auth-Request-User", "alice"}}), plain).ok());
  // Without identity headers, a request from anyone passes untouched (and its Authorization is
  // the caller's own business).
  absl::StatusOr<AuthProxyRequest> r =
      trust.Inspect(Req({{"Authorization", "Bearer abc"}}), Peer("10.8.0.1:1"));
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->from_proxy);
  EXPECT_EQ(r->token, "");
}

TEST(ProxyTrustTest, TheProxyByAddressOrCertificate) {
  ProxyTrust trust(AuthProxy(), nullptr);
  http::Request request = Req({{"X-Auth-Request-User", "alice"},
                               {"X-Auth-Request-Groups", "developers, ,sre"},
                               {"X-Forwarded-Access-Token", "the-token"},
                               {"Authorization", "Bearer other"}});
  absl::StatusOr<AuthProxyRequest> r = trust.Inspect(request, Peer("10.9.3.4:1"));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->from_proxy);
  EXPECT_EQ(r->user, "alice");
  EXPECT_THAT(*r->groups, ::testing::ElementsAre("developers", "sre"));
  EXPECT_EQ(r->token, "the-token");

  http::RequestContext by_san = Peer("192.168.1.1:1");
  by_san.tls = true;
  by_san.peer_dns_names = {"x", "oauth2-proxy.podgate.svc"};
  r = trust.Inspect(Req({{"X-Auth-Request-User", "alice"}, {"Authorization", "Bearer abc"}}),
                    by_san);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->token, "abc");  // --pass-authorization-header
  EXPECT_FALSE(r->groups.has_value());

  http::RequestContext by_cn = Peer("192.168.1.1:1");
  by_cn.tls = true;
  by_cn.peer_common_name = "oauth2-proxy.podgate.svc";
  EXPECT_TRUE(trust.Inspect(Req({{"X-Auth-Request-User", "alice"}}), by_cn).ok());
}

TEST(ProxyTrustTest, HeadersMustAgreeWithTheVerifiedToken) {
  prometheus::Registry registry;
  ProxyTrust trust(AuthProxy(), &registry);
  AuthProxyRequest proxy;
  proxy.from_proxy = true;
  proxy.user = "alice";
  proxy.groups = std::vector<std::string>{"developers"};
  EXPECT_TRUE(trust.CheckIdentity(proxy, Verified("alice", {"sre", "developers"})).ok());
  EXPECT_EQ(Value(registry, "podgate_edge_auth_proxy_total", "accepted"), 1);

  absl::Status s = trust.CheckIdentity(proxy, Verified("bob", {"developers"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("user header"));
  s = trust.CheckIdentity(proxy, Verified("alice", {"sre"}));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("group"));
  // Case matters: "Alice" is another user name.
  proxy.user = "Alice";
  EXPECT_FALSE(trust.CheckIdentity(proxy, Verified("alice", {"developers"})).ok());
  EXPECT_EQ(Value(registry, "podgate_edge_auth_proxy_total", "mismatch"), 3);

  // Not from the proxy: nothing to agree with.
  EXPECT_TRUE(trust.CheckIdentity(AuthProxyRequest{}, Verified("bob", {})).ok());
  EXPECT_EQ(Value(registry, "podgate_edge_auth_proxy_total", "accepted"), 1);
}

}  // namespace
}  // namespace podgate::edge

namespace podgate::edge {
namespace {

TEST(ProxyTrustTest, TrustedProxiesAreNotOneSourceTheirClientsAre) {
  ProxyOptions o;
  o.trusted_proxies = *ParseCidrList("10.0.0.0/8, fd00::/8", "x");
  o.max_websockets_per_client = 2;
  ProxyTrust trust(o, nullptr);
  EXPECT_TRUE(trust.IsTrustedProxy("10.1.2.3"));
  EXPECT_TRUE(trust.IsTrustedProxy("::ffff:10.1.2.3"));  // a dual-stack socket's IPv4 peer
  EXPECT_TRUE(trust.IsTrustedProxy("fd00::1"));
  EXPECT_FALSE(trust.IsTrustedProxy("127.0.0.1"));
  EXPECT_FALSE(trust.IsTrustedProxy("unknown"));

  std::shared_ptr<void> a = trust.AcquireClientSlot("203.0.113.7");
  std::shared_ptr<void> b = trust.AcquireClientSlot("203.0.113.7");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(trust.AcquireClientSlot("203.0.113.7"), nullptr);  // over the cap
  EXPECT_NE(trust.AcquireClientSlot("203.0.113.8"), nullptr);  // another client
  a.reset();
  std::shared_ptr<void> c = trust.AcquireClientSlot("203.0.113.7");
  EXPECT_NE(c, nullptr);  // a place given back is free again

  ProxyOptions unlimited = o;
  unlimited.max_websockets_per_client = 0;
  ProxyTrust none(unlimited, nullptr);
  std::vector<std::shared_ptr<void>> many;
  for (int i = 0; i < 100; ++i) {
    many.push_back(none.AcquireClientSlot("203.0.113.7"));
    ASSERT_NE(many.back(), nullptr);
  }
}

}  // namespace
}  // namespace podgate::edge

namespace podgate::edge {
namespace {

void Capture(std::string_view line, void* arg) {
  static_cast<std::vector<std::string>*>(arg)->emplace_back(line);
}

TEST(ProxyTrustTest, AMalformedHeaderIsLoggedOnceThenOncePerN) {
  std::vector<std::string> lines;
  log::InitForTest("unit", log::Level::kInfo, &Capture, &lines);
  prometheus::Registry registry;
  ProxyOptions o;
  o.trusted_proxies = Cidrs("10.0.0.0/8");
  o.log_malformed_every = 4;
  ProxyTrust trust(o, &registry);
  for (int i = 0; i < 9; ++i) {
    trust.ClientContext(Req({{"X-Forwarded-For", "not an address"}}), Peer("10.0.0.2:1"));
  }
  log::Init("unit", log::Level::kInfo);
  // The 1st, 5th and 9th: each with the running count.
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_THAT(lines[0], HasSubstr("\"malformed_total\":1"));
  EXPECT_THAT(lines[1], HasSubstr("\"malformed_total\":5"));
  EXPECT_THAT(lines[2], HasSubstr("\"malformed_total\":9"));
  EXPECT_THAT(lines[0], HasSubstr("\"proxy\":\"10.0.0.2:1\""));
  EXPECT_EQ(Value(registry, "podgate_edge_forwarded_address_total", "malformed"), 9);
}

}  // namespace
}  // namespace podgate::edge
