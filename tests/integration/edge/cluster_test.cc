// edge's part of multi-cluster targets (docs/protocol.md, "Clusters"), through the real edge
// binary in front of the real back end: kubesim twice (clusters eu-prod and us-staging, served
// by one podgate-exec from a kubeconfig directory), podgate-policy and podgate-audit. The
// `cluster` parameter is checked as exec checks it (a DNS-1123 label; a bad one is 400 naming
// the parameter) and reaches exec, policy and audit: the evidence is what they answer — the
// cluster's own pods, a rule scoped to clusters, `ready` naming the cluster exec resolved, and
// audit records filtered by cluster.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/base64url.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "https://podgate.test";

std::string Cluster(const std::string& only_pod) {
  return absl::StrCat(R"(namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - {name: app, image: demo/web:1}
  - name: )",
                      only_pod, R"(
    namespace: demo
    containers:
      - {name: app, image: demo/web:1}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)");
}

// echo everywhere; date only in clusters us-*.
constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z-]+", optional: true, repeat: true}
  - id: staging-date
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo], clusters: ["us-*"]}
    command:
      program: date
)";

class EdgeClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_name = "eu-prod";
    options.cluster_yaml = Cluster("only-eu");
    options.more_clusters = {{"us-staging", Cluster("only-us")}};
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    auto edge = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--http_address=127.0.0.1:0",
         absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
         absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
         absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()), "--backend_timeout=10s",
         std::string("--allowed_origins=") + kOrigin, "--jwt_key_file=" + stack_->jwt_secret_file(),
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + testing::Stack::kIssuer,
         "--jwt_audience=podgate"});
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
    auto line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    http_port_ = nlohmann::json::parse(*line)["http_port"].get<int>();
  }

  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->current_test_suite()->Failed() && edge_ != nullptr) {
      for (const std::string& l : edge_->Lines()) {
        std::cerr << l << "\n";
      }
    }
    delete edge_;
    edge_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static std::string Dana() { return stack_->Token("dana", {"developers"}); }
  static std::string Ann() { return stack_->Token("ann", {"podgate-auditors"}); }

  static http::ClientOptions Options() {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(http_port_);
    o.timeout = absl::Seconds(20);
    return o;
  }

  static http::ClientResponse Get(const std::string& target, const std::string& token) {
    http::ClientOptions o = Options();
    o.headers.push_back({"Authorization", "Bearer " + token});
    auto r = http::Fetch(o, "GET", target);
    EXPECT_TRUE(r.ok()) << target << ": " << r.status();
    return r.ok() ? *std::move(r) : http::ClientResponse{};
  }

  // A v1 session at `target`: `ready` (null when refused: the refusal in `refused`), after
  // running `line` when set (its output is not read) and closing.
  static nlohmann::json Ready(const std::string& target, http::ClientResponse* refused = nullptr,
                              const std::string& line = "") {
    http::ClientOptions o = Options();
    o.headers.push_back({"Origin", kOrigin});
    http::ClientResponse refusal;
    auto ws = http::WebSocketClient::Connect(
        o, target, {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(Dana())},
        &refusal);
    if (!ws.ok()) {
      if (refused != nullptr) {
        *refused = refusal;
      }
      return nlohmann::json();
    }
    auto m = (*ws)->Read(absl::Seconds(20));
    EXPECT_TRUE(m.ok()) << m.status();
    nlohmann::json ready = m.ok() ? nlohmann::json::parse(m->data) : nlohmann::json();
    (*ws)->Write(R"({"type":"close"})", false).IgnoreError();
    for (int i = 0; i < 20; ++i) {  // until edge closes the stream (the close is recorded)
      if (!(*ws)->Read(absl::Seconds(2)).ok()) {
        break;
      }
    }
    return ready;
  }

  static std::vector<std::string> PodsOf(const nlohmann::json& cluster) {
    std::vector<std::string> out;
    for (const auto& ns : cluster.value("namespaces", nlohmann::json::array())) {
      for (const auto& p : ns.value("pods", nlohmann::json::array())) {
        out.push_back(p["name"].get<std::string>());
      }
    }
    return out;
  }

  static testing::Stack* stack_;
  static Subprocess* edge_;
  static int http_port_;
};

testing::Stack* EdgeClusterTest::stack_ = nullptr;
Subprocess* EdgeClusterTest::edge_ = nullptr;
int EdgeClusterTest::http_port_ = 0;

TEST_F(EdgeClusterTest, ABadClusterIsRefusedWith400NamingTheParameter) {
  for (const std::string& bad :
       std::vector<std::string>{"Prod", "prod.eu", "-lab", "lab_1", std::string(64, 'c')}) {
    for (const auto& [target, token] : std::vector<std::pair<std::string, std::string>>{
             {"/api/v1/targets?cluster=" + bad, Dana()},
             {"/api/v1/allowed?namespace=demo&pod=web-1&cluster=" + bad, Dana()},
             {"/api/v1/audit?cluster=eu-prod&cluster=" + bad, Ann()}}) {
      http::ClientResponse r = Get(target, token);
      EXPECT_EQ(r.status, 400) << target << ": " << r.body;
      EXPECT_THAT(r.body, HasSubstr("INVALID_ARGUMENT")) << target;
      EXPECT_THAT(r.body, HasSubstr(R"(cluster \")")) << target << ": " << r.body;
      EXPECT_THAT(r.body, HasSubstr("is not a Kubernetes name: a DNS-1123 label")) << target;
    }
    http::ClientResponse refused;
    EXPECT_TRUE(Ready("/ws/v1/demo/web-1?cluster=" + bad, &refused).is_null()) << bad;
    EXPECT_EQ(refused.status, 400) << bad;
    EXPECT_THAT(refused.body, HasSubstr(R"(cluster \")")) << refused.body;
  }
  // A well-formed name exec does not serve: exec's refusal, named.
  http::ClientResponse unknown = Get("/api/v1/targets?cluster=ap-prod", Dana());
  EXPECT_EQ(unknown.status, 400) << unknown.body;
  EXPECT_THAT(unknown.body, HasSubstr("this exec serves no cluster 'ap-prod'"));
}

// The page's picker reads `clusters`; `namespaces` stays the default cluster's for pages from
// before clusters. One cluster asked for: only its pods.
TEST_F(EdgeClusterTest, TargetsListEveryClusterOrTheOneAskedFor) {
  http::ClientResponse all = Get("/api/v1/targets", Dana());
  ASSERT_EQ(all.status, 200) << all.body;
  nlohmann::json j = nlohmann::json::parse(all.body);
  ASSERT_EQ(j["clusters"].size(), 2u) << all.body;
  EXPECT_EQ(j["clusters"][0]["name"], "eu-prod");
  EXPECT_EQ(j["clusters"][0]["default"], true);
  EXPECT_EQ(j["clusters"][0]["reachable"], true);
  EXPECT_THAT(PodsOf(j["clusters"][0]), ::testing::ElementsAre("only-eu", "web-1"));
  EXPECT_EQ(j["clusters"][1]["name"], "us-staging");
  EXPECT_THAT(PodsOf(j["clusters"][1]), ::testing::ElementsAre("only-us", "web-1"));
  EXPECT_EQ(j["namespaces"][0]["pods"][0]["name"], "only-eu");

  http::ClientResponse us = Get("/api/v1/targets?cluster=us-staging&namespace=demo", Dana());
  ASSERT_EQ(us.status, 200) << us.body;
  j = nlohmann::json::parse(us.body);
  ASSERT_EQ(j["clusters"].size(), 1u) << us.body;
  EXPECT_THAT(PodsOf(j["clusters"][0]), ::testing::ElementsAre("only-us", "web-1"));
}

// Policy answers for the cluster asked about: date (a rule scoped to us-*) is listed for
// us-staging, not for eu-prod nor for the default (eu-prod).
TEST_F(EdgeClusterTest, AllowedAnswersForTheCluster) {
  auto programs = [](const http::ClientResponse& r) {
    std::vector<std::string> out;
    for (const auto& c : nlohmann::json::parse(r.body).value("commands", nlohmann::json::array())) {
      out.push_back(c.value("program", ""));
    }
    return out;
  };
  const std::string base = "/api/v1/allowed?namespace=demo&pod=web-1&container=app";
  http::ClientResponse us = Get(base + "&cluster=us-staging", Dana());
  ASSERT_EQ(us.status, 200) << us.body;
  EXPECT_THAT(programs(us), ::testing::UnorderedElementsAre("echo", "date"));
  http::ClientResponse eu = Get(base + "&cluster=eu-prod", Dana());
  ASSERT_EQ(eu.status, 200) << eu.body;
  EXPECT_THAT(programs(eu), ::testing::ElementsAre("echo"));
}

// A session opens in the cluster asked for, `ready` names the cluster exec resolved (the
// default when none was asked), and audit's records of it are found by that cluster only.
TEST_F(EdgeClusterTest, ASessionOpensOnTheAskedClusterAndAuditFindsItByCluster) {
  nlohmann::json us = Ready("/ws/v1/demo/only-us?container=app&cluster=us-staging");
  ASSERT_EQ(us["type"], "ready") << us.dump();
  EXPECT_EQ(us["cluster"], "us-staging");
  nlohmann::json dflt = Ready("/ws/v1/demo/only-eu");
  ASSERT_EQ(dflt["type"], "ready") << dflt.dump();
  EXPECT_EQ(dflt["cluster"], "eu-prod");
  // A pod only us-staging has is not found in the default cluster.
  http::ClientResponse refused;
  nlohmann::json missing = Ready("/ws/v1/demo/only-us", &refused);
  EXPECT_NE(missing.value("type", ""), "ready") << missing.dump();

  const std::string session = us["session_id"];
  auto count = [&](const std::string& query) {
    http::ClientResponse r = Get("/api/v1/audit?session_id=" + session + query, Ann());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? nlohmann::json::parse(r.body)["records"].size() : 0u;
  };
  size_t in_us = 0;
  for (int i = 0; i < 50 && in_us < 2; ++i) {
    in_us = count("&cluster=us-staging");
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_GE(in_us, 2u);  // open and close at least
  EXPECT_EQ(count("&cluster=eu-prod"), 0u);
  EXPECT_EQ(count("&cluster=eu-prod&cluster=us-staging"), in_us);
  EXPECT_EQ(count("&cluster="), 0u);  // records from before clusters: none here
}

}  // namespace
}  // namespace podgate
