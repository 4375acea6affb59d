// edge and exec take their keys from an identity provider's JWKS URL: a key the provider
// publishes while they run is accepted without a restart, a key it withdraws is refused, and a
// URL that is not acceptable stops the service at start with one clear line.
#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/http_client.h"
#include "support/jwks_provider.h"
#include "support/prometheus_text.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kIssuer[] = "https://idp.test";
constexpr char kOrigin[] = "https://podgate.test";

std::string Token(const auth::Key& key, const std::string& user) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return *auth::Sign({{"iss", kIssuer}, {"aud", "podgate"}, {"sub", user}, {"exp", now + 600}},
                     key);
}

std::vector<std::string> JwksFlags(const std::string& url) {
  return {"--jwt_jwks_url=" + url, std::string("--jwt_issuer=") + kIssuer,
          "--jwt_jwks_refresh_min=1s", "--grpc_address=127.0.0.1:0",
          "--metrics_address=127.0.0.1:0"};
}

struct Edge {
  std::unique_ptr<Subprocess> process;
  int http_port = 0;
  int metrics_port = 0;
};

Edge StartEdge(const std::string& url) {
  std::vector<std::string> args = JwksFlags(url);
  args.push_back("--http_address=127.0.0.1:0");
  args.push_back(std::string("--allowed_origins=") + kOrigin);
  Edge edge;
  auto process = Subprocess::Start(PODGATE_EDGE_BIN, args);
  EXPECT_TRUE(process.ok()) << process.status();
  if (!process.ok()) {
    return edge;
  }
  edge.process = *std::move(process);
  auto serving = edge.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  auto http = edge.process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
  EXPECT_TRUE(serving.ok() && http.ok());
  if (serving.ok() && http.ok()) {
    edge.metrics_port = nlohmann::json::parse(*serving)["metrics_port"];
    edge.http_port = nlohmann::json::parse(*http)["http_port"];
  }
  return edge;
}

// POST /api/v1/login with the token: the HTTP status.
int Login(int port, const std::string& token) {
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(port);
  o.headers = {{"Authorization", "Bearer " + token}, {"Origin", kOrigin}};
  absl::StatusOr<http::ClientResponse> r = http::Fetch(o, "POST", "/api/v1/login");
  return r.ok() ? r->status : -1;
}

double Metric(int port, const std::string& sample) { return testing::MetricSample(port, sample); }

template <typename F>
bool Eventually(F cond, absl::Duration limit = absl::Seconds(10)) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (cond()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return cond();
}

TEST(JwksUrlServiceTest, EdgeFollowsTheProvidersKeyRotationWithoutRestart) {
  testing::JwksProvider idp;
  const auth::Key old_key = testing::GenerateEs256Key("2026-old");
  const auth::Key new_key = testing::GenerateEs256Key("2026-new");
  idp.Serve(200, testing::JwksDocument({&old_key}), "max-age=3600");
  Edge edge = StartEdge(idp.url());
  ASSERT_NE(edge.http_port, 0);
  EXPECT_EQ(Login(edge.http_port, Token(old_key, "alice")), 200);
  EXPECT_EQ(Metric(edge.metrics_port, "podgate_auth_jwks_usable"), 1);

  // The provider publishes the new key and withdraws the old one; its cache header says an
  // hour, but a token naming the new kid makes edge fetch again (rate-limited to 1 s here).
  idp.Serve(200, testing::JwksDocument({&new_key}), "max-age=3600");
  EXPECT_TRUE(Eventually([&] { return Login(edge.http_port, Token(new_key, "bob")) == 200; }));
  EXPECT_EQ(Login(edge.http_port, Token(old_key, "alice")), 401);
  EXPECT_GE(Metric(edge.metrics_port, "podgate_auth_jwks_unknown_kid_fetches_total"), 1);
  EXPECT_EQ(Metric(edge.metrics_port, R"(podgate_auth_jwks_fetches_total{result="ok"})"), 2);
}

TEST(JwksUrlServiceTest, ExecLoadsTheSetFromTheUrlAndReportsIt) {
  testing::JwksProvider idp;
  const auth::Key key = testing::GenerateEs256Key("k1");
  idp.Serve(200, testing::JwksDocument({&key}));
  const std::string dir = testing::MakeTempDir("podgate-jwks-exec");
  std::vector<std::string> args = JwksFlags(idp.url());
  args.push_back("--kubeconfig=" + dir + "/kubeconfig");
  std::ofstream(dir + "/kubeconfig") << "apiVersion: v1\nkind: Config\ncurrent-context: c\n"
                                        "clusters: [{name: k, cluster: {server: "
                                        "'https://127.0.0.1:1'}}]\n"
                                        "users: [{name: u, user: {token: t}}]\n"
                                        "contexts: [{name: c, context: {cluster: k, user: u}}]\n";
  auto exec = Subprocess::Start(PODGATE_EXEC_BIN, args);
  ASSERT_TRUE(exec.ok()) << exec.status();
  auto serving = (*exec)->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  ASSERT_TRUE(serving.ok()) << serving.status();
  const int metrics_port = nlohmann::json::parse(*serving)["metrics_port"];
  EXPECT_EQ(Metric(metrics_port, "podgate_auth_jwks_keys"), 1);
  EXPECT_EQ(Metric(metrics_port, "podgate_auth_jwks_usable"), 1);
  EXPECT_EQ(idp.requests(), 1);
}

TEST(JwksUrlServiceTest, AnUnacceptableUrlStopsTheServiceWithOneClearLine) {
  struct Case {
    std::vector<std::string> flags;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {{"--jwt_jwks_url=http://idp.example.com/jwks"}, "loopback"},
           {{"--jwt_jwks_url=https://user@idp.example.com/jwks"}, "user information"},
           {{"--jwt_jwks_url=https://idp.example.com/jwks", "--jwt_jwks_refresh_min=0s"},
            "--jwt_jwks_refresh_min"},
           {{"--jwt_jwks_url=https://idp.example.com/jwks", "--jwt_jwks_max_stale=1m"},
            "--jwt_jwks_max_stale"},
           {{"--jwt_jwks_url=https://idp.example.com/jwks", "--jwt_key_file=/dev/null"},
            "cannot be combined"},
       }) {
    std::vector<std::string> args = {std::string("--jwt_issuer=") + kIssuer,
                                     "--http_address=127.0.0.1:0", "--grpc_address=127.0.0.1:0",
                                     "--metrics_address=127.0.0.1:0"};
    args.insert(args.end(), c.flags.begin(), c.flags.end());
    auto edge = Subprocess::Start(PODGATE_EDGE_BIN, args);
    ASSERT_TRUE(edge.ok());
    auto code = (*edge)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(code.ok()) << code.status();
    EXPECT_NE(*code, 0);
    const std::vector<std::string> lines = (*edge)->Lines();
    ASSERT_EQ(lines.size(), 1u) << c.says;
    EXPECT_THAT(lines[0], HasSubstr(c.says));
  }
}

}  // namespace
}  // namespace podgate
