// edge's proxy flags: trusted proxies and auth-proxy mode become ProxyOptions, and each bad
// combination is refused at start-up with one line naming the flag.
#include <string>

#include "edge/options.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::edge {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

EdgeFlags Loopback() {
  EdgeFlags f;
  f.http_address = "127.0.0.1:8080";
  return f;
}

std::string Error(const EdgeFlags& f) {
  absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(f);
  return config.ok() ? "ok" : std::string(config.status().message());
}

TEST(EdgeProxyOptionsTest, OffByDefault) {
  absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(Loopback());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_TRUE(config->proxies.trusted_proxies.empty());
  EXPECT_EQ(config->proxies.forwarded_header, ForwardedHeader::kXForwardedFor);
  EXPECT_EQ(config->proxies.user_header, "");
  EXPECT_EQ(config->http.client_ca_file, "");
}

TEST(EdgeProxyOptionsTest, FlagsReachTheirOptions) {
  EdgeFlags f = Loopback();
  f.trusted_proxies = "10.0.0.0/8, fd00::/8";
  f.forwarded_header = "Forwarded";
  f.auth_proxy_user_header = "X-Forwarded-User";
  f.auth_proxy_groups_header = "X-Auth-Request-Groups";
  f.auth_proxy_cidrs = "10.1.0.0/16";
  absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(f);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->proxies.trusted_proxies.size(), 2u);
  EXPECT_EQ(config->proxies.forwarded_header, ForwardedHeader::kForwarded);
  EXPECT_EQ(config->proxies.user_header, "X-Forwarded-User");
  EXPECT_EQ(config->proxies.groups_header, "X-Auth-Request-Groups");
  EXPECT_EQ(config->proxies.auth_proxy_cidrs.size(), 1u);

  // By client certificate: TLS with a client CA.
  f = Loopback();
  f.tls_cert_http = "/c.pem";
  f.tls_key_http = "/k.pem";
  f.tls_client_ca_http = "/ca.pem";
  f.auth_proxy_user_header = "X-Auth-Request-User";
  f.auth_proxy_client_names = "oauth2-proxy, ,proxy.example";
  config = EdgeConfigFromFlags(f);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->http.client_ca_file, "/ca.pem");
  EXPECT_THAT(config->proxies.auth_proxy_client_names,
              ElementsAre("oauth2-proxy", "proxy.example"));
}

TEST(EdgeProxyOptionsTest, BadFlagsAreRefused) {
  EdgeFlags f = Loopback();
  f.trusted_proxies = "10.0.0.0/8,10.0.0.1/8";
  EXPECT_THAT(Error(f), HasSubstr("--trusted_proxies: \"10.0.0.1/8\""));
  f = Loopback();
  f.trusted_proxies = "proxy.example";
  EXPECT_THAT(Error(f), HasSubstr("--trusted_proxies"));
  f = Loopback();
  f.forwarded_header = "x-real-ip";
  EXPECT_THAT(Error(f), HasSubstr("--forwarded_header"));
  f = Loopback();
  f.auth_proxy_user_header = "X-User: evil";
  EXPECT_THAT(Error(f), HasSubstr("--auth_proxy_user_header is not an HTTP header name"));
  f = Loopback();
  f.auth_proxy_user_header = "X-Auth-Request-User";
  EXPECT_THAT(Error(f), HasSubstr("needs --auth_proxy_cidrs and/or --auth_proxy_client_names"));
  f.auth_proxy_cidrs = "10.0.0.0/33";
  EXPECT_THAT(Error(f), HasSubstr("--auth_proxy_cidrs"));
  f = Loopback();
  f.auth_proxy_cidrs = "10.0.0.0/8";
  EXPECT_THAT(Error(f), HasSubstr("need --auth_proxy_user_header"));
  f = Loopback();
  f.auth_proxy_groups_header = "X-Auth-Request-Groups";
  EXPECT_THAT(Error(f), HasSubstr("need --auth_proxy_user_header"));
  f = Loopback();
  f.auth_proxy_user_header = "X-Auth-Request-User";
  f.auth_proxy_client_names = "oauth2-proxy";
  EXPECT_THAT(Error(f), HasSubstr("--auth_proxy_client_names needs --tls_client_ca_http"));
  f = Loopback();
  f.tls_client_ca_http = "/ca.pem";
  EXPECT_THAT(Error(f), HasSubstr("--tls_client_ca_http needs --tls_cert_http"));
}

}  // namespace
}  // namespace podgate::edge
