// edge's part of multi-cluster targets (docs/protocol.md, "Clusters"), through the real edge
// binary: the `cluster` parameter is checked as exec checks it (a DNS-1123 label; a bad one is
// 400 naming the parameter) and reaches exec, policy and audit exactly as asked; `ready` names
// the cluster exec resolved; /api/v1/targets hands the page exec's per-cluster listing.
//
// exec, policy and audit are recording fakes on a real gRPC server (recording_backends.h): the
// real services' own handling of clusters is tested with them; here the evidence is the
// request that crossed the wire.
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "auth/base64url.h"
#include "auth/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "integration/edge/recording_backends.h"
#include "nlohmann/json.hpp"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::RecordingBackends;
using ::podgate::testing::Subprocess;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "https://podgate.test";
constexpr char kIssuer[] = "https://issuer.podgate.test";
constexpr char kSecret[] = "an-integration-test-secret-of-40-bytes!!";

// Two clusters exec serves, the second unreachable.
podgate::exec::v1::ListTargetsResponse TwoClusters() {
  podgate::exec::v1::ListTargetsResponse r;
  auto* ns = r.add_namespaces();
  ns->set_name("demo");
  auto* pod = ns->add_pods();
  pod->set_name("web-1");
  pod->add_containers()->set_name("app");
  auto* prod = r.add_clusters();
  prod->set_name("prod");
  prod->set_default_(true);
  prod->set_reachable(true);
  *prod->add_namespaces() = *ns;
  auto* lab = r.add_clusters();
  lab->set_name("lab");
  lab->set_reachable(false);
  lab->set_error("connection refused (lab.example:6443)");
  return r;
}

class EdgeClusterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    backends_ = RecordingBackends::Start({TwoClusters(), "prod"}).release();
    ASSERT_NE(backends_, nullptr);
    dir_ = new std::string(testing::MakeTempDir("edge-cluster"));
    { std::ofstream(*dir_ + "/jwt.secret") << kSecret; }
    auto edge = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--http_address=127.0.0.1:0",
         "--exec_address=" + backends_->address(), "--policy_address=" + backends_->address(),
         "--audit_address=" + backends_->address(), "--backend_timeout=5s",
         std::string("--allowed_origins=") + kOrigin, "--jwt_key_file=" + *dir_ + "/jwt.secret",
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + kIssuer});
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
    auto line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    nlohmann::json j = nlohmann::json::parse(*line);
    http_port_ = j["http_port"].get<int>();
  }

  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->current_test_suite()->Failed() && edge_ != nullptr) {
      for (const std::string& l : edge_->Lines()) {
        std::cerr << l << "\n";
      }
    }
    delete edge_;
    edge_ = nullptr;
    delete backends_;
    backends_ = nullptr;
    delete dir_;
    dir_ = nullptr;
  }

  static std::string Token(const std::string& user, std::vector<std::string> groups) {
    auth::Key key;
    key.alg = auth::Algorithm::kHS256;
    key.secret = kSecret;
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    return *auth::Sign({{"iss", kIssuer},
                        {"aud", "podgate"},
                        {"sub", user},
                        {"groups", groups},
                        {"iat", now},
                        {"exp", now + 600}},
                       key);
  }

  static http::ClientOptions Options() {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(http_port_);
    o.timeout = absl::Seconds(10);
    return o;
  }

  static http::ClientResponse Get(const std::string& target, const std::string& token) {
    http::ClientOptions o = Options();
    o.headers.push_back({"Authorization", "Bearer " + token});
    auto r = http::Fetch(o, "GET", target);
    EXPECT_TRUE(r.ok()) << target << ": " << r.status();
    return r.ok() ? *std::move(r) : http::ClientResponse{};
  }

  // A v1 session at `target`; returns `ready` (or the refusal's status and body in `refused`).
  static nlohmann::json Ready(const std::string& target, http::ClientResponse* refused = nullptr) {
    http::ClientOptions o = Options();
    o.headers.push_back({"Origin", kOrigin});
    http::ClientResponse refusal;
    auto ws = http::WebSocketClient::Connect(
        o, target,
        {"podgate.v1",
         "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(Token("dana", {"developers"}))},
        &refusal);
    if (!ws.ok()) {
      if (refused != nullptr) {
        *refused = refusal;
      }
      return nlohmann::json();
    }
    auto m = (*ws)->Read(absl::Seconds(10));
    EXPECT_TRUE(m.ok()) << m.status();
    nlohmann::json ready = m.ok() ? nlohmann::json::parse(m->data) : nlohmann::json();
    (*ws)->Write(R"({"type":"close"})", false).IgnoreError();
    return ready;
  }

  static std::string* dir_;
  static RecordingBackends* backends_;
  static Subprocess* edge_;
  static int http_port_;
};

std::string* EdgeClusterTest::dir_ = nullptr;
RecordingBackends* EdgeClusterTest::backends_ = nullptr;
Subprocess* EdgeClusterTest::edge_ = nullptr;
int EdgeClusterTest::http_port_ = 0;

TEST_F(EdgeClusterTest, ABadClusterIsRefusedWith400NamingTheParameterAndReachesNoBackend) {
  const std::string dana = Token("dana", {"developers"});
  const std::string ann = Token("ann", {"podgate-auditors"});
  const size_t targets = backends_->list_targets().size();
  const size_t allowed = backends_->list_allowed().size();
  const size_t queries = backends_->audit_queries().size();
  for (const std::string& bad :
       std::vector<std::string>{"Prod", "prod.eu", "-lab", "lab_1", std::string(64, 'c')}) {
    for (const auto& [target, token] : std::vector<std::pair<std::string, std::string>>{
             {"/api/v1/targets?cluster=" + bad, dana},
             {"/api/v1/allowed?namespace=demo&pod=web-1&cluster=" + bad, dana},
             {"/api/v1/audit?cluster=prod&cluster=" + bad, ann}}) {
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
  EXPECT_EQ(backends_->list_targets().size(), targets);
  EXPECT_EQ(backends_->list_allowed().size(), allowed);
  EXPECT_EQ(backends_->audit_queries().size(), queries);
}

TEST_F(EdgeClusterTest, TargetsPassesTheClusterOnAndListsEveryClusterExecServes) {
  const std::string dana = Token("dana", {"developers"});
  http::ClientResponse all = Get("/api/v1/targets", dana);
  ASSERT_EQ(all.status, 200) << all.body;
  http::ClientResponse lab = Get("/api/v1/targets?cluster=lab&namespace=demo", dana);
  ASSERT_EQ(lab.status, 200) << lab.body;
  std::vector<podgate::exec::v1::ListTargetsRequest> asked = backends_->list_targets();
  ASSERT_GE(asked.size(), 2u);
  EXPECT_EQ(asked[asked.size() - 2].cluster(), "");
  EXPECT_EQ(asked.back().cluster(), "lab");
  EXPECT_EQ(asked.back().namespace_(), "demo");

  // The page's picker reads `clusters`; `namespaces` stays for pages from before clusters.
  nlohmann::json j = nlohmann::json::parse(all.body);
  ASSERT_TRUE(j.contains("clusters")) << all.body;
  ASSERT_EQ(j["clusters"].size(), 2u) << all.body;
  EXPECT_EQ(j["clusters"][0]["name"], "prod");
  EXPECT_EQ(j["clusters"][0]["default"], true);
  EXPECT_EQ(j["clusters"][0]["reachable"], true);
  EXPECT_EQ(j["clusters"][0]["namespaces"][0]["pods"][0]["name"], "web-1");
  EXPECT_EQ(j["clusters"][1]["name"], "lab");
  EXPECT_EQ(j["clusters"][1].value("reachable", false), false);
  EXPECT_EQ(j["clusters"][1]["error"], "connection refused (lab.example:6443)");
  EXPECT_EQ(j["namespaces"][0]["name"], "demo");
}

TEST_F(EdgeClusterTest, AllowedAndAuditPassTheClusterOn) {
  http::ClientResponse allowed =
      Get("/api/v1/allowed?namespace=demo&pod=web-1&container=app&cluster=lab",
          Token("dana", {"developers"}));
  EXPECT_EQ(allowed.status, 200) << allowed.body;
  ASSERT_FALSE(backends_->list_allowed().empty());
  EXPECT_EQ(backends_->list_allowed().back().target().cluster(), "lab");
  EXPECT_EQ(backends_->list_allowed().back().target().pod(), "web-1");
  http::ClientResponse no_cluster =
      Get("/api/v1/allowed?namespace=demo&pod=web-1", Token("dana", {"developers"}));
  EXPECT_EQ(no_cluster.status, 200) << no_cluster.body;
  EXPECT_EQ(backends_->list_allowed().back().target().cluster(), "");

  // Repeatable; `cluster=` (empty) asks for the records from before clusters existed.
  const std::string ann = Token("ann", {"podgate-auditors"});
  http::ClientResponse audit = Get("/api/v1/audit?cluster=prod&cluster=lab&cluster=", ann);
  EXPECT_EQ(audit.status, 200) << audit.body;
  const std::vector<podgate::audit::v1::QueryRequest> queries = backends_->audit_queries();
  ASSERT_FALSE(queries.empty());
  const podgate::audit::v1::QueryRequest& q = queries.back();
  EXPECT_THAT(std::vector<std::string>(q.clusters().begin(), q.clusters().end()),
              ElementsAre("prod", "lab", ""));
  EXPECT_EQ(Get("/api/v1/audit?user=dana", ann).status, 200);
  EXPECT_EQ(backends_->audit_queries().back().clusters_size(), 0);
}

TEST_F(EdgeClusterTest, ASessionOpensOnTheAskedClusterAndReadyNamesTheResolvedOne) {
  const size_t before = backends_->session_opens().size();
  nlohmann::json lab = Ready("/ws/v1/demo/web-1?container=app&cluster=lab");
  ASSERT_EQ(lab["type"], "ready") << lab.dump();
  EXPECT_EQ(lab["cluster"], "lab");
  EXPECT_EQ(lab["namespace"], "demo");
  // No cluster: exec's default, named by exec in `ready`.
  nlohmann::json dflt = Ready("/ws/v1/demo/web-1");
  ASSERT_EQ(dflt["type"], "ready") << dflt.dump();
  EXPECT_EQ(dflt["cluster"], "prod");
  // The page reconnects with the same URL: the same cluster again.
  nlohmann::json again = Ready("/ws/v1/demo/web-1?container=app&cluster=lab");
  EXPECT_EQ(again["cluster"], "lab");
  ASSERT_TRUE(backends_->WaitForOpenSessions(before + 3, absl::Seconds(10)));
  std::vector<podgate::exec::v1::OpenSession> opens = backends_->session_opens();
  EXPECT_EQ(opens[before].target().cluster(), "lab");
  EXPECT_EQ(opens[before].target().container(), "app");
  EXPECT_EQ(opens[before + 1].target().cluster(), "");
  EXPECT_EQ(opens[before + 2].target().cluster(), "lab");
}

}  // namespace
}  // namespace podgate
