// One exec serves two clusters, each a kubesim of its own (eu-prod and us-staging, served from
// --kubeconfig_dir): targets are listed per cluster, commands reach the cluster their target
// names, the cluster is in policy's question, the client's answer and the audit record, and a
// cluster that stops answering takes only its own targets down. Real processes throughout.
#include <signal.h>

#include <algorithm>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_session.h"
#include "support/grpc_health.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

// Both clusters have namespace team; each has a pod the other does not, and a pod of the same
// name (app) whose label tells the clusters apart.
constexpr char kAccess[] = R"(
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";

std::string Cluster(const std::string& only_pod, const std::string& label) {
  return absl::StrCat(R"(namespaces:
  - name: team
pods:
  - name: app
    namespace: team
    labels: {region: )",
                      label, R"(}
    containers:
      - {name: main, image: demo/app:1}
  - name: )",
                      only_pod, R"(
    namespace: team
    containers:
      - {name: main, image: demo/app:1}
)",
                      kAccess);
}

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s}
rules:
  - id: team-echo
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z-]+", optional: true, repeat: true}
  - id: staging-date
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team], clusters: ["us-*"]}
    command:
      program: date
)";

std::unique_ptr<testing::Stack> StartTwoClusters(std::vector<std::string> exec_flags = {}) {
  testing::StackOptions options;
  options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
  options.cluster_name = "eu-prod";
  options.cluster_yaml = Cluster("only-eu", "eu");
  options.more_clusters = {{"us-staging", Cluster("only-us", "us")}};
  options.policy_yaml = kPolicy;
  options.exec_flags = std::move(exec_flags);
  auto stack = testing::Stack::Start(options);
  EXPECT_TRUE(stack.ok()) << stack.status();
  return stack.ok() ? *std::move(stack) : nullptr;
}

common::Target Target(const std::string& cluster, const std::string& pod) {
  common::Target t;
  t.set_cluster(cluster);
  t.set_namespace_("team");
  t.set_pod(pod);
  return t;
}

absl::StatusOr<pb::ListTargetsResponse> ListTargets(const testing::Stack& stack,
                                                    const std::string& cluster = "") {
  auto stub = pb::ExecService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack.exec_port()), grpc::InsecureChannelCredentials()));
  pb::ListTargetsRequest req;
  req.mutable_credential()->set_bearer_token(stack.Token("alice", {"devs"}));
  req.set_cluster(cluster);
  pb::ListTargetsResponse res;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  grpc::Status status = stub->ListTargets(&ctx, req, &res);
  if (!status.ok()) {
    return absl::Status(static_cast<absl::StatusCode>(status.error_code()), status.error_message());
  }
  return res;
}

std::vector<std::string> PodNames(const pb::ClusterInfo& c) {
  std::vector<std::string> out;
  for (const pb::NamespaceInfo& ns : c.namespaces()) {
    for (const pb::PodInfo& p : ns.pods()) {
      out.push_back(absl::StrCat(ns.name(), "/", p.name()));
    }
  }
  return out;
}

// One sample of exec's /metrics (-1 when absent).
double Sample(const testing::Stack& stack, const std::string& sample) {
  return testing::MetricSample(stack.exec_metrics_port(), sample);
}

class ClustersTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    stack_ = StartTwoClusters({"--kube_default_cluster=us-staging"}).release();
    ASSERT_NE(stack_, nullptr);
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static testing::Stack* stack_;
};
testing::Stack* ClustersTest::stack_ = nullptr;

// Every cluster is listed, in configuration order, with its own pods; the default is marked and
// its namespaces are also the top-level answer an older client reads.
TEST_F(ClustersTest, ListTargetsAnswersPerCluster) {
  absl::StatusOr<pb::ListTargetsResponse> res = ListTargets(*stack_);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->clusters_size(), 2) << res->DebugString();
  EXPECT_EQ(res->clusters(0).name(), "eu-prod");
  EXPECT_FALSE(res->clusters(0).default_());
  EXPECT_TRUE(res->clusters(0).reachable());
  EXPECT_THAT(PodNames(res->clusters(0)), ::testing::ElementsAre("team/app", "team/only-eu"));
  EXPECT_EQ(res->clusters(1).name(), "us-staging");
  EXPECT_TRUE(res->clusters(1).default_());
  EXPECT_THAT(PodNames(res->clusters(1)), ::testing::ElementsAre("team/app", "team/only-us"));
  ASSERT_EQ(res->namespaces_size(), 1);
  EXPECT_EQ(res->namespaces(0).pods(1).name(), "only-us");

  // One cluster asked for: only it.
  res = ListTargets(*stack_, "eu-prod");
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->clusters_size(), 1);
  EXPECT_EQ(res->clusters(0).name(), "eu-prod");
  EXPECT_EQ(res->namespaces_size(), 0);  // the default cluster was not asked for

  // A cluster exec does not serve, or a name no cluster can have: refused by name.
  res = ListTargets(*stack_, "ap-prod");
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(res.status().message()),
              HasSubstr("this exec serves no cluster 'ap-prod' (it serves: eu-prod, us-staging)"));
  res = ListTargets(*stack_, "EU/prod");
  ASSERT_FALSE(res.ok());
  EXPECT_THAT(std::string(res.status().message()), HasSubstr("is not a Kubernetes name"));
}

// A command runs in the cluster its target names: the pod of the same name answers with its own
// cluster's label, a pod only the other cluster has is not found, and the answer, the policy
// question and the audit record carry the resolved cluster.
TEST_F(ClustersTest, CommandsAreRoutedToTheNamedCluster) {
  for (const std::string cluster : {"eu-prod", "us-staging"}) {
    testing::ExecSession s(stack_->exec_port());
    auto ready = s.Open(stack_->Token("alice", {"devs"}), Target(cluster, "app"));
    ASSERT_TRUE(ready.ok()) << cluster << ": " << ready.status();
    EXPECT_EQ(ready->target().cluster(), cluster);
    EXPECT_EQ(ready->target().pod_labels().at("region"), cluster == "eu-prod" ? "eu" : "us");
    testing::CommandOutcome o = s.Run("echo routed");
    ASSERT_TRUE(o.exit.has_value()) << (o.error ? o.error->DebugString() : "");
    EXPECT_EQ(o.stdout_text, "routed\n");
    s.Close();
    int with_cluster = 0;
    for (const auto& r : testing::AuditRecords(stack_->audit_port(), ready->session_id())) {
      EXPECT_EQ(r.event().target().cluster(), cluster) << r.event().DebugString();
      ++with_cluster;
    }
    EXPECT_GE(with_cluster, 4);  // open, request, decision, result, close
  }
  // The pod only eu-prod has is not in us-staging.
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"devs"}), Target("us-staging", "only-eu"));
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kNotFound);
}

// Policy sees the resolved cluster: a rule scoped to clusters us-* allows `date` in
// us-staging, and the same pod name in eu-prod is refused with a reason naming the cluster.
TEST_F(ClustersTest, PolicyRulesMatchTheCluster) {
  testing::ExecSession us(stack_->exec_port());
  ASSERT_TRUE(us.Open(stack_->Token("alice", {"devs"}), Target("us-staging", "app")).ok());
  testing::CommandOutcome o = us.Run("date");
  ASSERT_TRUE(o.exit.has_value()) << (o.denied ? o.denied->DebugString() : "");
  EXPECT_EQ(o.exit->exit_code(), 0);
  us.Close();
  testing::ExecSession eu(stack_->exec_port());
  ASSERT_TRUE(eu.Open(stack_->Token("alice", {"devs"}), Target("eu-prod", "app")).ok());
  o = eu.Run("date");
  ASSERT_TRUE(o.denied.has_value()) << (o.exit ? "ran in eu-prod" : "");
  EXPECT_THAT(o.denied->DebugString(), HasSubstr("eu-prod"));
  eu.Close();
  // Without a cluster the default (us-staging here) is what policy is asked about.
  testing::ExecSession def(stack_->exec_port());
  ASSERT_TRUE(def.Open(stack_->Token("alice", {"devs"}), "team", "app").ok());
  EXPECT_TRUE(def.Run("date").exit.has_value());
  def.Close();
}

// podgate-run --cluster: the command runs in the cluster named; a pod of the other cluster is
// not found; a name exec does not serve, or no cluster name at all, is refused clearly.
TEST_F(ClustersTest, PodgateRunTakesTheCluster) {
  auto run = [&](const std::string& cluster, const std::string& pod) {
    std::vector<std::string> args = {absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                                     "--token=" + stack_->Token("alice", {"devs"}),
                                     "--namespace=team",
                                     "--pod=" + pod,
                                     "--cluster=" + cluster,
                                     "--",
                                     "echo",
                                     "from-the-cli"};
    auto p = testing::Subprocess::Start(PODGATE_RUN_BIN, args);
    EXPECT_TRUE(p.ok());
    auto status = (*p)->WaitExit(absl::Seconds(30));
    (*p)->WaitForLine("\x01never", absl::Milliseconds(100)).IgnoreError();
    return std::make_pair(status.ok() ? *status : -1, absl::StrJoin((*p)->Lines(), "\n"));
  };
  EXPECT_EQ(run("us-staging", "only-us").first, 0);
  EXPECT_EQ(run("eu-prod", "only-eu").first, 0);
  auto [missing, why_missing] = run("eu-prod", "only-us");
  EXPECT_NE(missing, 0);
  EXPECT_THAT(why_missing, HasSubstr("no such target"));
  auto [unknown, why_unknown] = run("ap-prod", "only-us");
  EXPECT_NE(unknown, 0);
  EXPECT_THAT(why_unknown, HasSubstr("this exec serves no cluster 'ap-prod'"));
  auto [bad, why_bad] = run("EU_prod", "only-us");
  EXPECT_EQ(bad, 2);
  EXPECT_THAT(why_bad, HasSubstr("--cluster"));
}

// A target without a cluster means the default one (--kube_default_cluster), and says so.
TEST_F(ClustersTest, NoClusterMeansTheDefault) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"devs"}), "team", "only-us");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->target().cluster(), "us-staging");
  s.Close();
  testing::ExecSession t(stack_->exec_port());
  ready = t.Open(stack_->Token("alice", {"devs"}), "team", "only-eu");
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kNotFound);
}

TEST_F(ClustersTest, AnUnknownClusterIsRefusedBeforeAnythingIsAsked) {
  const double before = Sample(
      *stack_, R"(podgate_exec_cluster_sessions_total{cluster="unknown",outcome="refused"})");
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"devs"}), Target("ap-prod", "app"));
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(ready.status().message()),
              HasSubstr("this exec serves no cluster 'ap-prod' (it serves: eu-prod, us-staging)"));
  EXPECT_EQ(Sample(*stack_,
                   R"(podgate_exec_cluster_sessions_total{cluster="unknown",outcome="refused"})"),
            std::max(before, 0.0) + 1);
  EXPECT_EQ(Sample(*stack_, R"(podgate_exec_cluster_up{cluster="eu-prod"})"), 1);
  EXPECT_EQ(Sample(*stack_, R"(podgate_exec_cluster_up{cluster="us-staging"})"), 1);
}

// us-staging's API server stops: its health check fails, its metric drops to 0 and it is listed
// unreachable with the reason, while eu-prod keeps listing and running commands. Back, it is
// listed again. (A stack of its own: this one loses a cluster.)
TEST(ClusterOutageTest, OneClusterDownTheOtherKeepsWorking) {
  auto stack = StartTwoClusters({"--kube_health_interval=1s"});
  ASSERT_NE(stack, nullptr);
  testing::Subprocess* us = stack->cluster_kubesim("us-staging");
  ASSERT_NE(us, nullptr);
  // A session in us-staging, open before the outage.
  testing::ExecSession before(stack->exec_port());
  ASSERT_TRUE(before.Open(stack->Token("alice", {"devs"}), Target("us-staging", "app")).ok());

  ASSERT_TRUE(us->Freeze().ok());  // accepts connections, answers nothing: the worst case
  const std::string up_us = R"(podgate_exec_cluster_up{cluster="us-staging"})";
  for (int i = 0; i < 300 && Sample(*stack, up_us) != 0; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  ASSERT_EQ(Sample(*stack, up_us), 0);
  EXPECT_EQ(Sample(*stack, R"(podgate_exec_cluster_up{cluster="eu-prod"})"), 1);
  EXPECT_GE(
      Sample(*stack,
             R"(podgate_exec_cluster_health_checks_total{cluster="us-staging",result="failed"})"),
      1);
  // grpc.health.v1 says the same per cluster, and exec itself stays ready.
  using Serving = grpc::health::v1::HealthCheckResponse;
  auto channel = testing::LocalChannel(stack->exec_port());
  EXPECT_EQ(testing::CheckHealth(channel, "exec/cluster/us-staging").value_or(Serving::UNKNOWN),
            Serving::NOT_SERVING);
  EXPECT_EQ(testing::CheckHealth(channel, "exec/cluster/eu-prod").value_or(Serving::UNKNOWN),
            Serving::SERVING);
  EXPECT_EQ(testing::CheckHealth(channel, "exec").value_or(Serving::UNKNOWN), Serving::SERVING);

  // Listing is not held up by the frozen cluster.
  const absl::Time start = absl::Now();
  absl::StatusOr<pb::ListTargetsResponse> res = ListTargets(*stack);
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->clusters_size(), 2);
  EXPECT_TRUE(res->clusters(0).reachable());
  EXPECT_THAT(PodNames(res->clusters(0)), ::testing::ElementsAre("team/app", "team/only-eu"));
  EXPECT_FALSE(res->clusters(1).reachable());
  EXPECT_THAT(res->clusters(1).error(), HasSubstr("cluster us-staging is unreachable"));
  EXPECT_EQ(res->clusters(1).namespaces_size(), 0);
  EXPECT_LT(took, absl::Seconds(5)) << "ListTargets waited for the frozen cluster";
  // Only the frozen cluster asked for: the call fails as a single cluster's did.
  res = ListTargets(*stack, "us-staging");
  ASSERT_FALSE(res.ok());
  EXPECT_EQ(res.status().code(), absl::StatusCode::kUnavailable);

  // eu-prod runs commands as before.
  testing::ExecSession eu(stack->exec_port());
  auto ready = eu.Open(stack->Token("alice", {"devs"}), Target("eu-prod", "only-eu"));
  ASSERT_TRUE(ready.ok()) << ready.status();
  testing::CommandOutcome o = eu.Run("echo still-here");
  ASSERT_TRUE(o.exit.has_value()) << (o.error ? o.error->DebugString() : "");
  EXPECT_EQ(o.stdout_text, "still-here\n");
  eu.Close();

  // Back: listed again.
  us->Signal(SIGCONT);
  for (int i = 0; i < 300 && Sample(*stack, up_us) != 1; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
  }
  EXPECT_EQ(Sample(*stack, up_us), 1);
  EXPECT_EQ(testing::CheckHealth(channel, "exec/cluster/us-staging").value_or(Serving::UNKNOWN),
            Serving::SERVING);
  res = ListTargets(*stack);
  ASSERT_TRUE(res.ok()) << res.status();
  ASSERT_EQ(res->clusters_size(), 2);
  EXPECT_TRUE(res->clusters(1).reachable()) << res->clusters(1).error();
  EXPECT_THAT(PodNames(res->clusters(1)), ::testing::ElementsAre("team/app", "team/only-us"));
  before.Close();
}

}  // namespace
}  // namespace podgate
