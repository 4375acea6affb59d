// edge's flag validation: valid flags become the options the replica is wired from; each bad
// flag is refused with the one line the CLI prints.
#include "edge/options.h"

#include <cmath>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "crypto/sha256.h"
#include "edge/http_reply.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::edge {
namespace {

using ::testing::ElementsAre;

// The defaults, served on loopback (the default [::]:8080 needs TLS or --behind_tls_proxy).
EdgeFlags Loopback() {
  EdgeFlags f;
  f.http_address = "127.0.0.1:8080";
  return f;
}

TEST(EdgeOptionsTest, DefaultsOnLoopbackBecomeTheOptions) {
  absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(Loopback());
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->http.address, "127.0.0.1");
  EXPECT_EQ(config->http.port, 8080);
  EXPECT_FALSE(config->tls);
  EXPECT_EQ(config->http_threads, 2);
  EXPECT_EQ(config->auth_audit_queue, 1000u);
  EXPECT_EQ(config->http.websocket_message_limit_bytes, 65536u);
  EXPECT_EQ(config->http.write_high_watermark_bytes, 262144u);
  EXPECT_EQ(config->http.write_hard_limit_bytes, 262144u * 4 + (1u << 20));
  EXPECT_EQ(config->http.websocket_keepalive, absl::Seconds(30));
  // Both WebSocket pools and room for plain HTTP.
  EXPECT_EQ(config->http.max_connections, 10000u + 1000u + 256u);
  EXPECT_EQ(config->http.max_connections_per_source, 256u);
  EXPECT_EQ(config->http.max_unauthenticated_per_source, 32u);
  EXPECT_EQ(config->http.idle_timeout, absl::Seconds(60));
  EXPECT_EQ(config->http.unauthenticated_idle_timeout, absl::Seconds(5));
  EXPECT_EQ(config->http.response_headers, SecurityHeaderList());
  EXPECT_EQ(config->limits.messages_per_second, 50);
  EXPECT_EQ(config->limits.message_burst, 200);
  EXPECT_EQ(config->limits.user_messages_per_second, 100);
  EXPECT_EQ(config->limits.user_message_burst, 400);
  EXPECT_EQ(config->limits.max_connections, 10000);
  EXPECT_EQ(config->limits.max_connections_per_user, 20);
  EXPECT_EQ(config->limits.max_unauthenticated_connections, 1000);
  EXPECT_THAT(config->edge.auditor_groups, ElementsAre("podgate-auditors"));
  EXPECT_EQ(config->edge.auth_timeout, absl::Seconds(5));
  EXPECT_EQ(config->edge.idle_timeout, absl::Minutes(15));
  EXPECT_EQ(config->edge.backend_timeout, absl::Seconds(5));
  EXPECT_FALSE(config->edge.secure_cookie);  // plain HTTP on loopback
  EXPECT_FALSE(config->edge.allow_missing_origin);
  EXPECT_EQ(config->edge.allowed_origins, "");
  EXPECT_EQ(config->edge.web_root, "");
}

TEST(EdgeOptionsTest, EveryFlagReachesItsOption) {
  EdgeFlags f;
  f.http_address = "[::1]:0";
  f.http_threads = 4;
  f.allowed_origins = "https://a.example,https://b.example";
  f.allow_missing_origin = true;
  f.web_root = "/srv/web";
  f.auditor_groups = "sre, auditors,,";
  f.max_message_bytes = 1024;
  f.write_buffer_bytes = 4096;
  f.messages_per_second = 1.5;
  f.message_burst = 1;
  f.user_messages_per_second = 2;
  f.user_message_burst = 3;
  f.max_connections = 7;
  f.max_connections_per_user = 1;
  f.max_unauthenticated_connections = 5;
  f.max_connections_per_source = 0;
  f.max_unauthenticated_per_source = 0;
  f.ws_idle_timeout = absl::Seconds(11);
  f.ws_keepalive = absl::Seconds(12);
  f.auth_timeout = absl::Seconds(13);
  f.http_idle_timeout = absl::Seconds(14);
  f.http_unauthenticated_idle_timeout = absl::Seconds(15);
  f.backend_timeout = absl::Seconds(16);
  f.auth_audit_queue = 1;
  absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(f);
  ASSERT_TRUE(config.ok()) << config.status();
  EXPECT_EQ(config->http.address, "::1");  // brackets removed
  EXPECT_EQ(config->http.port, 0);
  EXPECT_EQ(config->http_threads, 4);
  EXPECT_EQ(config->edge.allowed_origins, "https://a.example,https://b.example");
  EXPECT_TRUE(config->edge.allow_missing_origin);
  EXPECT_EQ(config->edge.web_root, "/srv/web");
  EXPECT_THAT(config->edge.auditor_groups, ElementsAre("sre", " auditors"));
  EXPECT_EQ(config->http.websocket_message_limit_bytes, 1024u);
  EXPECT_EQ(config->http.write_high_watermark_bytes, 4096u);
  EXPECT_EQ(config->limits.messages_per_second, 1.5);
  EXPECT_EQ(config->limits.message_burst, 1);
  EXPECT_EQ(config->limits.user_messages_per_second, 2);
  EXPECT_EQ(config->limits.user_message_burst, 3);
  EXPECT_EQ(config->limits.max_connections, 7);
  EXPECT_EQ(config->limits.max_connections_per_user, 1);
  EXPECT_EQ(config->limits.max_unauthenticated_connections, 5);
  EXPECT_EQ(config->http.max_connections, 7u + 5u + 256u);
  EXPECT_EQ(config->http.max_connections_per_source, 0u);
  EXPECT_EQ(config->http.max_unauthenticated_per_source, 0u);
  EXPECT_EQ(config->edge.idle_timeout, absl::Seconds(11));
  EXPECT_EQ(config->http.websocket_keepalive, absl::Seconds(12));
  EXPECT_EQ(config->edge.auth_timeout, absl::Seconds(13));
  EXPECT_EQ(config->http.idle_timeout, absl::Seconds(14));
  EXPECT_EQ(config->http.unauthenticated_idle_timeout, absl::Seconds(15));
  EXPECT_EQ(config->edge.backend_timeout, absl::Seconds(16));
  EXPECT_EQ(config->auth_audit_queue, 1u);
}

TEST(EdgeOptionsTest, PlainHttpOffLoopbackNeedsTlsOrAProxy) {
  for (const char* host : {"127.0.0.1:1", "127.9.9.9:1", "localhost:1", "[::1]:1"}) {
    EdgeFlags f;
    f.http_address = host;
    EXPECT_TRUE(EdgeConfigFromFlags(f).ok()) << host;
  }
  EdgeFlags f;  // [::]:8080
  EXPECT_EQ(EdgeConfigFromFlags(f).status().message(),
            "--http_address is not a loopback address: set --tls_cert_http/--tls_key_http, or "
            "--behind_tls_proxy when a TLS ingress terminates browser connections");
  f.http_address = "10.0.0.1:8080";
  EXPECT_FALSE(EdgeConfigFromFlags(f).ok());

  f.behind_tls_proxy = true;
  absl::StatusOr<EdgeConfig> proxied = EdgeConfigFromFlags(f);
  ASSERT_TRUE(proxied.ok()) << proxied.status();
  EXPECT_FALSE(proxied->tls);
  EXPECT_TRUE(proxied->edge.secure_cookie);

  f.behind_tls_proxy = false;
  f.tls_cert_http = "/etc/tls/cert.pem";
  f.tls_key_http = "/etc/tls/key.pem";
  absl::StatusOr<EdgeConfig> tls = EdgeConfigFromFlags(f);
  ASSERT_TRUE(tls.ok()) << tls.status();
  EXPECT_TRUE(tls->tls);
  EXPECT_TRUE(tls->edge.secure_cookie);
  EXPECT_EQ(tls->http.cert_file, "/etc/tls/cert.pem");
  EXPECT_EQ(tls->http.key_file, "/etc/tls/key.pem");
}

struct BadFlag {
  const char* name;
  std::function<void(EdgeFlags&)> set;
  const char* error;
};

TEST(EdgeOptionsTest, EachBadFlagIsRefusedWithItsOwnLine) {
  constexpr char kAddress[] = "--http_address must be host:port";
  constexpr char kPools[] =
      "--max_unauthenticated_connections and --auth_audit_queue must be >= 1, "
      "--max_connections_per_source and --max_unauthenticated_per_source >= 0";
  constexpr char kRates[] = "message rates must be positive and bursts at least 1";
  constexpr char kConnections[] =
      "--max_connections and --max_connections_per_user must be >= 1, --http_threads 1 to 64";
  const std::vector<BadFlag> cases = {
      {"no port", [](EdgeFlags& f) { f.http_address = "localhost"; }, kAddress},
      {"port not a number", [](EdgeFlags& f) { f.http_address = "127.0.0.1:http"; }, kAddress},
      {"port too large", [](EdgeFlags& f) { f.http_address = "127.0.0.1:65536"; }, kAddress},
      {"negative port", [](EdgeFlags& f) { f.http_address = "127.0.0.1:-1"; }, kAddress},
      {"empty", [](EdgeFlags& f) { f.http_address = ""; }, kAddress},
      {"cert alone", [](EdgeFlags& f) { f.tls_cert_http = "c.pem"; },
       "--tls_cert_http and --tls_key_http go together"},
      {"key alone", [](EdgeFlags& f) { f.tls_key_http = "k.pem"; },
       "--tls_cert_http and --tls_key_http go together"},
      {"message too small", [](EdgeFlags& f) { f.max_message_bytes = 1023; },
       "--max_message_bytes must be 1024 to 16777216"},
      {"message too large", [](EdgeFlags& f) { f.max_message_bytes = (16 << 20) + 1; },
       "--max_message_bytes must be 1024 to 16777216"},
      {"buffer too small", [](EdgeFlags& f) { f.write_buffer_bytes = 4095; },
       "--write_buffer_bytes must be 4096 to 67108864"},
      {"buffer too large", [](EdgeFlags& f) { f.write_buffer_bytes = (64 << 20) + 1; },
       "--write_buffer_bytes must be 4096 to 67108864"},
      {"no unauthenticated pool", [](EdgeFlags& f) { f.max_unauthenticated_connections = 0; },
       kPools},
      {"negative per source", [](EdgeFlags& f) { f.max_connections_per_source = -1; }, kPools},
      {"negative unauthenticated per source",
       [](EdgeFlags& f) { f.max_unauthenticated_per_source = -1; }, kPools},
      {"no audit queue", [](EdgeFlags& f) { f.auth_audit_queue = 0; }, kPools},
      {"ws idle", [](EdgeFlags& f) { f.ws_idle_timeout = absl::ZeroDuration(); },
       "--ws_idle_timeout must be positive"},
      {"http idle", [](EdgeFlags& f) { f.http_idle_timeout = -absl::Seconds(1); },
       "--http_idle_timeout must be positive"},
      {"http unauthenticated idle",
       [](EdgeFlags& f) { f.http_unauthenticated_idle_timeout = absl::ZeroDuration(); },
       "--http_unauthenticated_idle_timeout must be positive"},
      {"keepalive", [](EdgeFlags& f) { f.ws_keepalive = absl::ZeroDuration(); },
       "--ws_keepalive must be positive"},
      {"auth timeout", [](EdgeFlags& f) { f.auth_timeout = absl::ZeroDuration(); },
       "--auth_timeout must be positive"},
      {"backend timeout", [](EdgeFlags& f) { f.backend_timeout = -absl::InfiniteDuration(); },
       "--backend_timeout must be positive"},
      {"zero rate", [](EdgeFlags& f) { f.messages_per_second = 0; }, kRates},
      {"burst under one", [](EdgeFlags& f) { f.message_burst = 0.5; }, kRates},
      {"zero user rate", [](EdgeFlags& f) { f.user_messages_per_second = 0; }, kRates},
      {"user burst under one", [](EdgeFlags& f) { f.user_message_burst = 0; }, kRates},
      {"rate not a number", [](EdgeFlags& f) { f.messages_per_second = std::nan(""); }, kRates},
      {"no connections", [](EdgeFlags& f) { f.max_connections = 0; }, kConnections},
      {"no connections per user", [](EdgeFlags& f) { f.max_connections_per_user = 0; },
       kConnections},
      {"no threads", [](EdgeFlags& f) { f.http_threads = 0; }, kConnections},
      {"too many threads", [](EdgeFlags& f) { f.http_threads = 65; }, kConnections},
  };
  for (const BadFlag& c : cases) {
    SCOPED_TRACE(c.name);
    EdgeFlags f = Loopback();
    c.set(f);
    absl::StatusOr<EdgeConfig> config = EdgeConfigFromFlags(f);
    EXPECT_EQ(config.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_EQ(config.status().message(), c.error);
  }
}

TEST(EdgeOptionsTest, TheBoundsThemselvesAreAccepted) {
  EdgeFlags f = Loopback();
  f.max_message_bytes = 16 << 20;
  f.write_buffer_bytes = 64 << 20;
  f.http_threads = 64;
  f.http_address = "127.0.0.1:65535";
  EXPECT_TRUE(EdgeConfigFromFlags(f).ok());
  f.max_message_bytes = 1024;
  f.write_buffer_bytes = 4096;
  f.http_threads = 1;
  f.http_address = "127.0.0.1:0";
  EXPECT_TRUE(EdgeConfigFromFlags(f).ok());
}

// Single sign-on's flags: valid ones become SsoOptions (the secret and key read from their
// files); each bad combination is refused naming the flag.
TEST(EdgeOptionsTest, SingleSignOnFlagsBecomeTheSsoOptions) {
  const std::string dir = testing::MakeTempDir("edge-options");
  std::ofstream(dir + "/key") << "0123456789abcdef0123456789abcdef\n";
  std::ofstream(dir + "/short") << "too-short";
  std::ofstream(dir + "/secret") << "  s3cret \n";
  EdgeFlags f = Loopback();
  f.allowed_origins = "http://127.0.0.1:8080";
  absl::StatusOr<EdgeConfig> off = EdgeConfigFromFlags(f);
  ASSERT_TRUE(off.ok()) << off.status();
  EXPECT_FALSE(off->sso.has_value());

  f.oidc_issuer = "https://login.example.com/realms/acme";
  f.oidc_client_id = "podgate";
  f.oidc_client_secret_file = dir + "/secret";
  f.oidc_redirect_url = "http://127.0.0.1:8080/auth/callback";
  f.oidc_cookie_key_file = dir + "/key";
  f.oidc_scopes = "openid  groups";
  f.oidc_provider_name = "Acme";
  absl::StatusOr<EdgeConfig> on = EdgeConfigFromFlags(f);
  ASSERT_TRUE(on.ok()) << on.status();
  ASSERT_TRUE(on->sso.has_value());
  EXPECT_EQ(on->sso->issuer, f.oidc_issuer);
  EXPECT_EQ(on->sso->client.client_id, "podgate");
  EXPECT_EQ(on->sso->client.client_secret, "s3cret");
  EXPECT_EQ(on->sso->client.scopes, "openid groups");
  EXPECT_EQ(on->sso->client.redirect_uri, f.oidc_redirect_url);
  EXPECT_EQ(on->sso->provider_name, "Acme");
  EXPECT_EQ(on->sso->cookie_key.size(), 32u);
  EXPECT_EQ(on->sso->cookie_key,
            crypto::Sha256("podgate edge sso cookie key v1\n0123456789abcdef0123456789abcdef"));
  EXPECT_EQ(on->sso->max_pending, 64u);
  EXPECT_EQ(on->sso->timeout, absl::Seconds(10));
  EXPECT_EQ(on->sso->session_lifetime, absl::Hours(12));

  struct Case {
    std::function<void(EdgeFlags&)> change;
    std::string error;
  };
  for (const Case& c : std::vector<Case>{
           {[](EdgeFlags& g) { g.oidc_issuer = ""; }, "--oidc_client_id is set but --oidc_issuer"},
           {[](EdgeFlags& g) { g.oidc_issuer = "http://login.example.com"; }, "--oidc_issuer: "},
           {[](EdgeFlags& g) { g.oidc_client_id = ""; }, "needs --oidc_client_id"},
           {[&](EdgeFlags& g) { g.oidc_client_secret_file = dir + "/missing"; },
            "--oidc_client_secret_file: cannot read"},
           {[](EdgeFlags& g) { g.oidc_client_auth_method = "none"; },
            "--oidc_client_auth_method=none goes without"},
           {[](EdgeFlags& g) { g.oidc_client_auth_method = "private_key_jwt"; },
            "--oidc_client_auth_method must be"},
           {[](EdgeFlags& g) { g.oidc_scopes = "profile email"; },
            "--oidc_scopes must include openid"},
           {[](EdgeFlags& g) { g.oidc_redirect_url = "http://127.0.0.1:8080/cb"; },
            "/auth/callback"},
           {[](EdgeFlags& g) { g.oidc_redirect_url = "http://podgate.example.com/auth/callback"; },
            "must be https"},
           {[](EdgeFlags& g) { g.allowed_origins = "https://podgate.example.com"; },
            "--allowed_origins must list the origin of --oidc_redirect_url"},
           {[](EdgeFlags& g) { g.oidc_cookie_key_file = ""; }, "needs --oidc_cookie_key_file"},
           {[&](EdgeFlags& g) { g.oidc_cookie_key_file = dir + "/short"; }, "fewer than 32 bytes"},
           {[](EdgeFlags& g) { g.oidc_provider_name = ""; }, "--oidc_provider_name"},
           {[](EdgeFlags& g) { g.oidc_timeout = absl::Milliseconds(500); }, "--oidc_timeout"},
           {[](EdgeFlags& g) { g.oidc_max_pending = 0; }, "--oidc_max_pending"},
           {[](EdgeFlags& g) { g.oidc_session_lifetime = absl::Seconds(30); },
            "--oidc_session_lifetime"}}) {
    EdgeFlags g = f;
    c.change(g);
    absl::StatusOr<EdgeConfig> refused = EdgeConfigFromFlags(g);
    ASSERT_FALSE(refused.ok()) << c.error;
    EXPECT_THAT(std::string(refused.status().message()), ::testing::HasSubstr(c.error));
  }
  // A public client: no secret file.
  EdgeFlags pub = f;
  pub.oidc_client_secret_file = "";
  absl::StatusOr<EdgeConfig> public_client = EdgeConfigFromFlags(pub);
  ASSERT_TRUE(public_client.ok()) << public_client.status();
  EXPECT_TRUE(public_client->sso->client.client_secret.empty());
}

}  // namespace
}  // namespace podgate::edge
