// edge behind proxies, through real processes (kubesim, policy, audit on SQLite, exec, and two
// podgate-edge replicas) and real WebSockets:
//   - "trusted": --trusted_proxies=127.0.0.0/8, and auth-proxy mode with the auth proxy at
//     127.0.0.1 (the tests' own address): the tests play the proxy;
//   - "untrusted": the same flags with 10.0.0.0/8, which excludes the tests' address: the tests
//     play a client that forges the proxy's headers.
// What must hold: the forwarded address is what audit records, only from a trusted proxy;
// identity headers from anyone but the auth proxy are refused and audited; from the auth proxy
// they must agree with the verified token it forwards.
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <iostream>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kOrigin[] = "https://podgate.test";

constexpr char kCluster[] = R"(namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - name: app
        image: demo/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s, outputLimitBytes: 1048576}
rules:
  - id: dev-echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[A-Za-z0-9._-]+", repeat: true, maxCount: 8}
)";

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Edge {
  std::unique_ptr<Subprocess> process;
  int http_port = 0;
  int metrics_port = 0;
};

class EdgeProxyTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    trusted_ = new Edge();
    untrusted_ = new Edge();
    // Per-source cap 2: for the forwarded clients behind the trusted edge's proxy.
    StartEdge("127.0.0.0/8", "127.0.0.1", {"--max_connections_per_source=2"}, trusted_);
    StartEdge("10.0.0.0/8", "10.0.0.0/8", {}, untrusted_);
  }

  static void TearDownTestSuite() {
    const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    for (Edge* e : {trusted_, untrusted_}) {
      if (e != nullptr && e->process != nullptr && suite != nullptr && suite->Failed()) {
        for (const std::string& line : e->process->Lines()) {
          std::cerr << line << "\n";
        }
      }
      delete e;
    }
    trusted_ = untrusted_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static void StartEdge(const std::string& trusted_proxies, const std::string& auth_proxy_cidrs,
                        const std::vector<std::string>& extra, Edge* edge) {
    std::vector<std::string> args = {
        "--grpc_address=127.0.0.1:0",
        "--metrics_address=127.0.0.1:0",
        "--http_address=127.0.0.1:0",
        absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
        absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
        absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()),
        "--backend_timeout=5s",
        std::string("--allowed_origins=") + kOrigin,
        "--jwt_key_file=" + stack_->jwt_secret_file(),
        "--jwt_algorithm=HS256",
        std::string("--jwt_issuer=") + testing::Stack::kIssuer,
        "--jwt_audience=podgate",
        "--trusted_proxies=" + trusted_proxies,
        "--auth_proxy_user_header=X-Auth-Request-User",
        "--auth_proxy_groups_header=X-Auth-Request-Groups",
        "--auth_proxy_cidrs=" + auth_proxy_cidrs};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = Subprocess::Start(PODGATE_EDGE_BIN, args);
    ASSERT_TRUE(process.ok()) << process.status();
    edge->process = *std::move(process);
    auto line = edge->process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    edge->http_port = nlohmann::json::parse(*line)["http_port"];
    line = edge->process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    edge->metrics_port = nlohmann::json::parse(*line)["metrics_port"];
  }

  static std::string Token(const std::string& user,
                           const std::vector<std::string>& groups = {"developers"}) {
    return stack_->Token(user, groups);
  }

  static http::ClientOptions Options(const Edge& edge, Headers headers) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(edge.http_port);
    o.timeout = absl::Seconds(10);
    o.headers = std::move(headers);
    return o;
  }

  // A v1 WebSocket with `headers` (Origin added) and, when `token` is set, the bearer entry.
  static absl::StatusOr<std::unique_ptr<http::WebSocketClient>> Connect(
      const Edge& edge, const std::string& target, Headers headers, const std::string& token,
      http::ClientResponse* refusal) {
    headers.push_back({"Origin", kOrigin});
    std::vector<std::string> protocols = {"podgate.v1"};
    if (!token.empty()) {
      protocols.push_back("base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token));
    }
    return http::WebSocketClient::Connect(Options(edge, std::move(headers)), target, protocols,
                                          refusal);
  }

  // Runs `echo <word>` on a ready v1 connection; expects its output.
  static void Echo(http::WebSocketClient& ws, const std::string& word) {
    auto ready = ws.Read(absl::Seconds(10));
    ASSERT_TRUE(ready.ok()) << ready.status();
    ASSERT_EQ(nlohmann::json::parse(ready->data)["type"], "ready") << ready->data;
    ASSERT_TRUE(
        ws.Write(nlohmann::json{{"type", "command"}, {"id", "c1"}, {"line", "echo " + word}}.dump(),
                 false)
            .ok());
    auto out = ws.Read(absl::Seconds(10));
    ASSERT_TRUE(out.ok()) << out.status();
    EXPECT_EQ(out->data, std::string("\x01", 1) + word + "\n");
    auto exit = ws.Read(absl::Seconds(10));
    ASSERT_TRUE(exit.ok()) << exit.status();
    EXPECT_EQ(nlohmann::json::parse(exit->data)["type"], "exit") << exit->data;
  }

  // Audit events of `kind` matching `query` (extra filters), polled until `want` of them
  // satisfy `match` or 15 s pass.
  static std::vector<nlohmann::json> AuditEvents(
      const std::string& filters, const std::function<bool(const nlohmann::json&)>& match,
      size_t want) {
    std::vector<nlohmann::json> found;
    for (absl::Time deadline = absl::Now() + absl::Seconds(15); absl::Now() < deadline;) {
      auto audit = http::Fetch(
          Options(*trusted_, {{"Authorization", "Bearer " + Token("ann", {"podgate-auditors"})}}),
          "GET", "/api/v1/audit?page_size=1000&" + filters);
      EXPECT_TRUE(audit.ok()) << audit.status();
      if (!audit.ok()) {
        return found;
      }
      EXPECT_EQ(audit->status, 200) << audit->body;
      found.clear();
      const nlohmann::json body = nlohmann::json::parse(audit->body);
      for (const nlohmann::json& r : body["records"]) {
        if (match(r["event"])) {
          found.push_back(r["event"]);
        }
      }
      if (found.size() >= want) {
        break;
      }

      absl::SleepFor(absl::Milliseconds(100));
    }
    return found;
  }

  static double Metric(const Edge& edge, const std::string& sample) {
    http::ClientOptions mo;
    mo.port = static_cast<uint16_t>(edge.metrics_port);
    auto metrics = http::Fetch(mo, "GET", "/metrics");
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (!metrics.ok()) {
      return 0;
    }
    auto parsed = testing::ParsePrometheusText(metrics->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) {
      return 0;
    }
    auto it = parsed->samples.find(sample);
    return it == parsed->samples.end() ? 0 : it->second;
  }

  static std::string Tag(const char* prefix) {
    return absl::StrCat(prefix, absl::ToUnixMicros(absl::Now()));
  }

  static testing::Stack* stack_;
  static Edge* trusted_;
  static Edge* untrusted_;
};

testing::Stack* EdgeProxyTest::stack_ = nullptr;
Edge* EdgeProxyTest::trusted_ = nullptr;
Edge* EdgeProxyTest::untrusted_ = nullptr;

bool CommandWith(const nlohmann::json& e, const std::string& word) {
  return e.value("kind", "") == "EVENT_KIND_COMMAND_REQUEST" &&
         e.dump().find(word) != std::string::npos;
}

TEST_F(EdgeProxyTest, FromATrustedProxyTheCommandAuditShowsTheForwardedAddress) {
  const std::string word = Tag("fwd");
  const double trusted_before =
      Metric(*trusted_, "podgate_edge_forwarded_address_total{result=\"trusted\"}");
  // The client wrote 6.6.6.6 itself, the outer proxy (127.0.0.9, trusted) appended the
  // client's address, the inner one (the test, 127.0.0.1) the outer's. (Several header lines are
  // combined in order: ProxyTrustTest; this client sends one line per header.)
  auto ws =
      Connect(*trusted_, "/ws/v1/demo/web-1",
              {{"X-Forwarded-For", "6.6.6.6, 198.51.100.23, 127.0.0.9"}}, Token("alice"), nullptr);
  ASSERT_TRUE(ws.ok()) << ws.status();
  Echo(**ws, word);
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=command_request&user=alice",
      [&](const nlohmann::json& e) { return CommandWith(e, word); }, 1);
  ASSERT_EQ(events.size(), 1u);
  // exec records what edge says, "via" the gRPC peer it heard it from.
  EXPECT_THAT(events[0].value("source_address", ""), StartsWith("198.51.100.23 via "))
      << events[0].dump();
  EXPECT_EQ(Metric(*trusted_, "podgate_edge_forwarded_address_total{result=\"trusted\"}"),
            trusted_before + 1);

  // Malformed from the trusted proxy: ignored, the peer's address, counted.
  const std::string word2 = Tag("bad");
  auto ws2 = Connect(*trusted_, "/ws/v1/demo/web-1", {{"X-Forwarded-For", "198.51.100.23, x"}},
                     Token("alice"), nullptr);
  ASSERT_TRUE(ws2.ok()) << ws2.status();
  Echo(**ws2, word2);
  events = AuditEvents(
      "kind=command_request&user=alice",
      [&](const nlohmann::json& e) { return CommandWith(e, word2); }, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("source_address", ""), StartsWith("127.0.0.1:"));
  EXPECT_GE(Metric(*trusted_, "podgate_edge_forwarded_address_total{result=\"malformed\"}"), 1);
}

TEST_F(EdgeProxyTest, FromAnUntrustedPeerTheHeaderIsIgnored) {
  const std::string word = Tag("untrusted");
  auto ws = Connect(*untrusted_, "/ws/v1/demo/web-1", {{"X-Forwarded-For", "198.51.100.23"}},
                    Token("alice"), nullptr);
  ASSERT_TRUE(ws.ok()) << ws.status();
  Echo(**ws, word);
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=command_request&user=alice",
      [&](const nlohmann::json& e) { return CommandWith(e, word); }, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("source_address", ""), StartsWith("127.0.0.1:")) << events[0].dump();
  EXPECT_GE(
      Metric(*untrusted_, "podgate_edge_forwarded_address_total{result=\"untrusted_ignored\"}"), 1);
  EXPECT_EQ(Metric(*untrusted_, "podgate_edge_forwarded_address_total{result=\"trusted\"}"), 0);
}

TEST_F(EdgeProxyTest, AuthProxyHeadersFromAnUntrustedPeerAreRefusedAndAudited) {
  const std::string pod = Tag("pod");
  // Even with a valid token for the user the headers name: the headers are what is refused.
  http::ClientResponse refusal;
  auto ws =
      Connect(*untrusted_, "/ws/v1/demo/" + pod,
              {{"X-Auth-Request-User", "alice"}, {"X-Forwarded-Access-Token", Token("alice")}}, "",
              &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(refusal.status, 403) << refusal.body;
  EXPECT_THAT(refusal.body, HasSubstr("only from the configured auth proxy"));
  // The HTTP API, with the forger's own (valid) token and a user header naming someone else.
  auto session = http::Fetch(Options(*untrusted_, {{"Authorization", "Bearer " + Token("mallory")},
                                                   {"X-Auth-Request-User", "alice"},
                                                   {"X-Auth-Request-Groups", "podgate-auditors"}}),
                             "GET", "/api/v1/session?tag=" + pod);
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 403) << session->body;
  // Nor can the headers ride along with a login that would set the cookie.
  auto login = http::Fetch(Options(*untrusted_, {{"Origin", kOrigin},
                                                 {"Authorization", "Bearer " + Token("mallory")},
                                                 {"X-Auth-Request-User", "alice"}}),
                           "POST", "/api/v1/login");
  ASSERT_TRUE(login.ok()) << login.status();
  EXPECT_EQ(login->status, 403) << login->body;
  EXPECT_EQ(Metric(*untrusted_, "podgate_edge_auth_proxy_total{result=\"untrusted\"}"), 3);
  EXPECT_EQ(Metric(*untrusted_, "podgate_edge_auth_failures_total{reason=\"untrusted_proxy\"}"), 3);
  // A clear log line.
  EXPECT_TRUE(untrusted_->process
                  ->WaitForLine("identity headers from a peer that is not the auth proxy refused",
                                absl::Seconds(5))
                  .ok());
  // Both audited as auth failures with the reason, from the peer's address.
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=auth_failure",
      [&](const nlohmann::json& e) {
        return e["auth_failure"].value("reason", "") == "untrusted_proxy" &&
               (e.dump().find(pod) != std::string::npos ||
                e.dump().find("(path /api/v1/session)") != std::string::npos);
      },
      2);
  ASSERT_GE(events.size(), 2u);
  for (const nlohmann::json& e : events) {
    EXPECT_THAT(e.value("source_address", ""), StartsWith("127.0.0.1:")) << e.dump();
    EXPECT_EQ(e.value("source_service", ""), "edge");
  }
}

TEST_F(EdgeProxyTest, FromTheAuthProxyAMatchingVerifiedTokenWorks) {
  const std::string word = Tag("proxied");
  // No bearer entry: the token the proxy forwarded is the credential.
  auto ws = Connect(*trusted_, "/ws/v1/demo/web-1",
                    {{"X-Auth-Request-User", "bea"},
                     {"X-Auth-Request-Groups", "developers"},
                     {"X-Forwarded-Access-Token", Token("bea")},
                     {"X-Forwarded-For", "203.0.113.77"}},
                    "", nullptr);
  ASSERT_TRUE(ws.ok()) << ws.status();
  Echo(**ws, word);
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=command_request&user=bea",
      [&](const nlohmann::json& e) { return CommandWith(e, word); }, 1);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_THAT(events[0].value("source_address", ""), StartsWith("203.0.113.77 via "));

  // The HTTP API with oauth2-proxy's --pass-authorization-header.
  auto session = http::Fetch(Options(*trusted_, {{"Authorization", "Bearer " + Token("bea")},
                                                 {"X-Auth-Request-User", "bea"}}),
                             "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 200) << session->body;
  EXPECT_EQ(nlohmann::json::parse(session->body)["user"], "bea");
  EXPECT_GE(Metric(*trusted_, "podgate_edge_auth_proxy_total{result=\"accepted\"}"), 2);
}

TEST_F(EdgeProxyTest, FromTheAuthProxyAMismatchOrNoTokenIsRefused) {
  const double mismatch_before =
      Metric(*trusted_, "podgate_edge_auth_failures_total{reason=\"proxy_mismatch\"}");
  const std::string pod = Tag("mismatch");
  // The header names alice, the token is bob's.
  http::ClientResponse refusal;
  auto ws = Connect(*trusted_, "/ws/v1/demo/" + pod,
                    {{"X-Auth-Request-User", "alice"}, {"X-Forwarded-Access-Token", Token("bob")}},
                    "", &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(refusal.status, 403) << refusal.body;
  // A group the token does not carry.
  ws = Connect(*trusted_, "/ws/v1/demo/" + pod,
               {{"X-Auth-Request-User", "bob"}, {"X-Auth-Request-Groups", "podgate-auditors"}},
               Token("bob"), &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(refusal.status, 403) << refusal.body;
  auto session = http::Fetch(Options(*trusted_, {{"Authorization", "Bearer " + Token("bob")},
                                                 {"X-Auth-Request-User", "alice"}}),
                             "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 403) << session->body;
  EXPECT_EQ(Metric(*trusted_, "podgate_edge_auth_failures_total{reason=\"proxy_mismatch\"}"),
            mismatch_before + 3);
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=auth_failure",
      [&](const nlohmann::json& e) {
        return e["auth_failure"].value("reason", "") == "proxy_mismatch" &&
               e.dump().find(pod) != std::string::npos;
      },
      2);
  EXPECT_EQ(events.size(), 2u);

  // The proxy forwarded no token: refused, never the header's user.
  ws = Connect(*trusted_, "/ws/v1/demo/web-1", {{"X-Auth-Request-User", "alice"}}, "", &refusal);
  ASSERT_FALSE(ws.ok());
  EXPECT_EQ(refusal.status, 401) << refusal.body;
  EXPECT_THAT(refusal.body, HasSubstr("forwarded no token"));
  session =
      http::Fetch(Options(*trusted_, {{"X-Auth-Request-User", "alice"}}), "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 401) << session->body;
  EXPECT_GE(Metric(*trusted_, "podgate_edge_auth_proxy_total{result=\"missing_token\"}"), 2);
}

TEST_F(EdgeProxyTest, TheSeedProtocolsFirstMessageMustAgreeWithTheAuthProxy) {
  const std::string pod = Tag("seed");
  // The proxy signed in alice; the first message brings bob's token.
  auto ws =
      Connect(*trusted_, "/ws/seed/demo/" + pod, {{"X-Auth-Request-User", "alice"}}, "", nullptr);
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE((*ws)->Write("Authorization: Bearer " + Token("bob"), false).ok());
  // Refused in silence, as the seed's consumer refuses a login; the next line is told to log in.
  ASSERT_TRUE((*ws)->Write("echo hello", false).ok());
  auto m = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->data, R"({"stderr": "Please login first"})");
  std::vector<nlohmann::json> events = AuditEvents(
      "kind=auth_failure",
      [&](const nlohmann::json& e) {
        return e["auth_failure"].value("reason", "") == "proxy_mismatch" &&
               e.dump().find(pod) != std::string::npos;
      },
      1);
  EXPECT_EQ(events.size(), 1u);
}

// The auth proxy named by its client certificate over mTLS (--auth_proxy_client_names), not by
// address: the same peer without the certificate is refused.
TEST_F(EdgeProxyTest, TheAuthProxyByClientCertificate) {
  const std::string dir = testing::MakeTempDir("edge-proxy-pki");
  absl::StatusOr<testing::TestPki> pki = testing::MakeTestPki(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  Edge mtls;
  // A second client certificate whose name is only in its DNS SAN (its CN is another).
  const std::string san_cert = dir + "/san.crt";
  const std::string san_key = dir + "/san.key";
  const std::string make_san = absl::StrCat(
      "cd ", dir, " && openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes ",
      "-subj /CN=not-the-proxy -keyout san.key -out san.csr 2>/dev/null && ",
      "printf 'subjectAltName=DNS:x.example,DNS:oauth2-proxy.podgate.test\\n' > san.ext && ",
      "openssl x509 -req -in san.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 ",
      "-extfile san.ext -out san.crt 2>/dev/null");
  ASSERT_EQ(std::system(make_san.c_str()), 0) << make_san;
  StartEdge("127.0.0.0/8", "",
            {"--auth_proxy_cidrs=", "--tls_cert_http=" + pki->server_cert,
             "--tls_key_http=" + pki->server_key, "--tls_client_ca_http=" + pki->ca_cert,
             "--auth_proxy_client_names=podgate-client,oauth2-proxy.podgate.test"},
            &mtls);
  ASSERT_NE(mtls.process, nullptr);
  const Headers headers = {{"X-Auth-Request-User", "dora"},
                           {"X-Forwarded-Access-Token", Token("dora")}};
  http::ClientOptions with_cert = Options(mtls, headers);
  with_cert.tls = true;
  with_cert.ca_file = pki->ca_cert;
  with_cert.server_name = "localhost";
  with_cert.client_cert_file = pki->client_cert;
  with_cert.client_key_file = pki->client_key;
  auto session = http::Fetch(with_cert, "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 200) << session->body;
  EXPECT_EQ(nlohmann::json::parse(session->body)["user"], "dora");

  http::ClientOptions by_san = with_cert;
  by_san.client_cert_file = san_cert;
  by_san.client_key_file = san_key;
  session = http::Fetch(by_san, "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 200) << session->body;

  http::ClientOptions without_cert = with_cert;
  without_cert.client_cert_file.clear();
  without_cert.client_key_file.clear();
  session = http::Fetch(without_cert, "GET", "/api/v1/session");
  ASSERT_TRUE(session.ok()) << session.status();
  EXPECT_EQ(session->status, 403) << session->body;
  // (A certificate with another name, and a DNS SAN, are ProxyTrustTest's.)
  EXPECT_EQ(Metric(mtls, "podgate_edge_auth_proxy_total{result=\"untrusted\"}"), 1);
  EXPECT_EQ(Metric(mtls, "podgate_edge_auth_proxy_total{result=\"accepted\"}"), 2);
  std::filesystem::remove_all(dir);
}

TEST_F(EdgeProxyTest, BehindATrustedProxyThePerSourceCapCountsForwardedClients) {
  // All from the test's one address (the proxy): not capped as one source.
  const double refused_before =
      Metric(*trusted_, "podgate_edge_rejections_total{reason=\"per_source\"}");
  std::vector<std::unique_ptr<http::WebSocketClient>> open;
  for (const char* client :
       {"198.51.100.61", "198.51.100.61", "198.51.100.62", "198.51.100.62", "198.51.100.63"}) {
    auto ws = Connect(*trusted_, "/ws/v1/demo/web-1", {{"X-Forwarded-For", client}}, Token("carol"),
                      nullptr);
    ASSERT_TRUE(ws.ok()) << client << ": " << ws.status();
    open.push_back(*std::move(ws));
  }
  // A third WebSocket of one forwarded client is over --max_connections_per_source=2.
  http::ClientResponse refusal;
  auto third = Connect(*trusted_, "/ws/v1/demo/web-1", {{"X-Forwarded-For", "198.51.100.61"}},
                       Token("carol"), &refusal);
  ASSERT_FALSE(third.ok());
  EXPECT_EQ(refusal.status, 429) << refusal.body;
  EXPECT_EQ(Metric(*trusted_, "podgate_edge_rejections_total{reason=\"per_source\"}"),
            refused_before + 1);
  // Once one of them closes, its place is free again.
  ASSERT_TRUE(open[0]->Close().ok());
  open.erase(open.begin());
  absl::StatusOr<std::unique_ptr<http::WebSocketClient>> again;
  for (absl::Time deadline = absl::Now() + absl::Seconds(5); absl::Now() < deadline;) {
    again = Connect(*trusted_, "/ws/v1/demo/web-1", {{"X-Forwarded-For", "198.51.100.61"}},
                    Token("carol"), nullptr);
    if (again.ok()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(again.ok()) << again.status();
}

}  // namespace
}  // namespace podgate
