// Which clusters exec serves, and under which names: contexts of one kubeconfig, a directory of
// kubeconfigs, in-cluster; every mistake refused at start-up with the flag and the file named.
// Real files in a temporary directory; no API server is contacted.
#include "exec/clusters.h"

#include <stdlib.h>
#include <sys/stat.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "fake_kube.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::exec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A kubeconfig with one context per (context, server port) pair.
std::string Kubeconfig(const std::vector<std::pair<std::string, int>>& contexts,
                       const std::string& current) {
  std::string clusters, contexts_text;
  for (const auto& [name, port] : contexts) {
    absl::StrAppend(&clusters, "- name: c-", port,
                    "\n  cluster:\n    server: https://127.0.0.1:", port, "\n");
    absl::StrAppend(&contexts_text, "- name: \"", name, "\"\n  context:\n    cluster: c-", port,
                    "\n    user: u\n");
  }
  return absl::StrCat("apiVersion: v1\nkind: Config\nclusters:\n", clusters, "contexts:\n",
                      contexts_text, "users:\n- name: u\n  user:\n    token: t\n",
                      current.empty() ? "" : absl::StrCat("current-context: \"", current, "\"\n"));
}

class ClustersTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("exec-clusters");
    unsetenv("KUBERNETES_SERVICE_HOST");
  }
  std::string Write(const std::string& name, const std::string& text) {
    const std::string path = absl::StrCat(dir_, "/", name);
    std::ofstream(path) << text;
    return path;
  }
  static std::vector<std::string> Names(const ClusterConfigs& c) {
    std::vector<std::string> out;
    for (const NamedKubeConfig& n : c.clusters) {
      out.push_back(n.name);
    }
    return out;
  }
  std::string dir_;
};

TEST_F(ClustersTest, AKubeconfigAloneServesItsCurrentContextUnderItsName) {
  ClusterSources s;
  s.kubeconfig = Write("config", Kubeconfig({{"eu-prod", 6443}, {"us-staging", 7443}}, "eu-prod"));
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("eu-prod"));
  EXPECT_EQ(c->default_name, "eu-prod");
  EXPECT_EQ(c->clusters[0].config.port, 6443);
  EXPECT_EQ(c->clusters[0].config.context, "eu-prod");
}

TEST_F(ClustersTest, EveryContextWithAStarEachToItsOwnServer) {
  ClusterSources s;
  s.kubeconfig =
      Write("config", Kubeconfig({{"eu-prod", 6443}, {"us-staging", 7443}}, "us-staging"));
  s.contexts = {"*"};
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("eu-prod", "us-staging"));
  EXPECT_EQ(c->clusters[0].config.port, 6443);
  EXPECT_EQ(c->clusters[1].config.port, 7443);
  // The current context is the default, whatever its place.
  EXPECT_EQ(c->default_name, "us-staging");
}

TEST_F(ClustersTest, ContextsAreRenamedWithNameEqualsContext) {
  ClusterSources s;
  s.kubeconfig = Write(
      "config", Kubeconfig({{"arn:aws:eks:eu-west-1:1:cluster/prod", 6443}, {"kind-staging", 7443}},
                           "kind-staging"));
  s.contexts = {"eu-prod=arn:aws:eks:eu-west-1:1:cluster/prod", "kind-staging"};
  s.default_cluster = "eu-prod";
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("eu-prod", "kind-staging"));
  EXPECT_EQ(c->clusters[0].config.context, "arn:aws:eks:eu-west-1:1:cluster/prod");
  EXPECT_EQ(c->default_name, "eu-prod");
}

TEST_F(ClustersTest, AContextNameThatIsNoClusterNameIsRefusedWithTheFix) {
  ClusterSources s;
  s.kubeconfig = Write("config", Kubeconfig({{"arn:aws:eks:eu-west-1:1:cluster/prod", 6443}},
                                            "arn:aws:eks:eu-west-1:1:cluster/prod"));
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("is not a Kubernetes name"));
  EXPECT_THAT(
      std::string(c.status().message()),
      HasSubstr("; name it with --kube_contexts=NAME=arn:aws:eks:eu-west-1:1:cluster/prod"));
}

TEST_F(ClustersTest, EveryMistakeIsRefusedNamingTheFlag) {
  const std::string config =
      Write("config", Kubeconfig({{"eu-prod", 6443}, {"us-staging", 7443}}, ""));
  struct Case {
    ClusterSources sources;
    std::string error;
  };
  std::vector<Case> cases;
  {
    Case c;
    c.sources.kubeconfig = config;  // no current-context, no --kube_contexts
    c.error = "has no current-context; name the contexts to serve with --kube_contexts";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = config;
    c.sources.contexts = {"ap-prod"};
    c.error =
        "--kube_contexts: '" + config + "' has no context 'ap-prod' (it has: eu-prod, us-staging)";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = config;
    c.sources.contexts = {"prod=eu-prod", "prod=us-staging"};
    c.error = "cluster 'prod' is configured twice";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = config;
    c.sources.contexts = {"Prod=eu-prod"};
    c.error = "cluster \"Prod\" is not a Kubernetes name";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = config;
    c.sources.contexts = {"=eu-prod"};
    c.error = "is not CONTEXT or NAME=CONTEXT";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = config;
    c.sources.contexts = {"*"};
    c.sources.default_cluster = "ap-prod";
    c.error =
        "--kube_default_cluster: no cluster 'ap-prod' is configured (configured: eu-prod, "
        "us-staging)";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.contexts = {"eu-prod"};
    c.error = "--kube_contexts: needs --kubeconfig";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig = dir_ + "/missing";
    c.error = "--kubeconfig: kubeconfig '" + dir_ + "/missing'";
    cases.push_back(c);
  }
  {
    Case c;
    c.sources.kubeconfig_dir = dir_ + "/none";
    c.error = "--kubeconfig_dir: cannot read '" + dir_ + "/none'";
    cases.push_back(c);
  }
  {
    Case c;  // nothing configured and not in a cluster
    c.error = "--kubeconfig: not in a cluster";
    cases.push_back(c);
  }
  for (const Case& c : cases) {
    absl::StatusOr<ClusterConfigs> got = LoadClusterConfigs(c.sources);
    ASSERT_FALSE(got.ok()) << c.error;
    EXPECT_THAT(std::string(got.status().message()), HasSubstr(c.error));
  }
}

TEST_F(ClustersTest, ADirectoryServesEachFileUnderItsName) {
  const std::string d = dir_ + "/clusters";
  mkdir(d.c_str(), 0700);
  Write("clusters/us-staging.yaml", Kubeconfig({{"whatever", 7443}}, "whatever"));
  Write("clusters/eu-prod", Kubeconfig({{"arn:x", 6443}}, "arn:x"));
  Write("clusters/.hidden", "not: a kubeconfig");
  mkdir((d + "/..data").c_str(), 0700);  // a Secret volume's own entries are skipped
  ClusterSources s;
  s.kubeconfig_dir = d;
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("eu-prod", "us-staging"));
  EXPECT_EQ(c->clusters[0].config.port, 6443);
  EXPECT_EQ(c->clusters[1].config.port, 7443);
  EXPECT_EQ(c->default_name, "eu-prod");

  // With a kubeconfig too: its current context comes first and is the default; a file of the
  // same name is a duplicate.
  s.kubeconfig = Write("config", Kubeconfig({{"home", 5443}}, "home"));
  c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("home", "eu-prod", "us-staging"));
  EXPECT_EQ(c->default_name, "home");
  Write("clusters/home.yml", Kubeconfig({{"x", 4443}}, "x"));
  c = LoadClusterConfigs(s);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("cluster 'home' is configured twice"));

  // A file that is no kubeconfig names itself.
  const std::string e = dir_ + "/broken";
  mkdir(e.c_str(), 0700);
  Write("broken/bad.yaml", "clusters: [");
  ClusterSources b;
  b.kubeconfig_dir = e;
  c = LoadClusterConfigs(b);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr(e + "/bad.yaml"));
  // An empty directory serves nothing: refused.
  const std::string empty = dir_ + "/empty";
  mkdir(empty.c_str(), 0700);
  b.kubeconfig_dir = empty;
  c = LoadClusterConfigs(b);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("holds no kubeconfig file"));
}

TEST_F(ClustersTest, InClusterIsServedAloneOrNamedBesideTheOthers) {
  Write("token", "sa-token");
  Write("ca.crt", "ca");
  setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  ClusterSources s;
  s.service_account_dir = dir_;
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("in-cluster"));
  s.kubeconfig = Write("config", Kubeconfig({{"eu-prod", 6443}}, "eu-prod"));
  s.in_cluster_name = "home";
  c = LoadClusterConfigs(s);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_THAT(Names(*c), ElementsAre("eu-prod", "home"));
  EXPECT_EQ(c->clusters[1].config.host, "10.0.0.1");
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
}

TEST_F(ClustersTest, AtMostTheLimitOfClusters) {
  std::vector<std::pair<std::string, int>> many;
  for (size_t i = 0; i <= kMaxClusters; ++i) {
    many.emplace_back(absl::StrCat("c", i), 1000 + static_cast<int>(i));
  }
  ClusterSources s;
  s.kubeconfig = Write("config", Kubeconfig(many, "c0"));
  s.contexts = {"*"};
  absl::StatusOr<ClusterConfigs> c = LoadClusterConfigs(s);
  ASSERT_FALSE(c.ok());
  EXPECT_THAT(std::string(c.status().message()), HasSubstr("more than 64 clusters"));
}

// The health checker: each cluster checked now and every interval; a cluster that fails is
// marked (health, podgate_exec_cluster_up 0) and only that one; it comes back by itself.
TEST(ClusterHealthTest, MarksOnlyTheClusterThatFailsAndSeesItComeBack) {
  prometheus::Registry registry;
  ExecMetrics metrics(registry);
  testing::FakeKube eu, us;  // outlive the timer thread, whose checks call them
  runtime::TimerQueue timers;
  Cluster eu_cluster("eu-prod", &eu, &timers, &metrics, absl::Seconds(1), absl::Minutes(1),
                     absl::Seconds(1));
  Cluster us_cluster("us-staging", &us, &timers, &metrics, absl::Seconds(1), absl::Minutes(1),
                     absl::Seconds(1));
  auto up = [&](const std::string& name) {
    return metrics.cluster_up.Add({{"cluster", name}}).Value();
  };
  auto failed = [&](const std::string& name) {
    return metrics.cluster_health_checks_total.Add({{"cluster", name}, {"result", "failed"}})
        .Value();
  };
  auto wait_for = [](const std::function<bool()>& done) {
    for (int i = 0; i < 500 && !done(); ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    return done();
  };
  us.SetHealth(absl::UnavailableError("connect: connection refused"));
  ClusterHealth health({&eu_cluster, &us_cluster}, &metrics, &timers, absl::Milliseconds(20));
  EXPECT_EQ(up("us-staging"), 1);  // until the first check says otherwise
  health.Start();
  ASSERT_TRUE(wait_for([&] { return up("us-staging") == 0; }));
  EXPECT_EQ(up("eu-prod"), 1);
  EXPECT_TRUE(eu_cluster.health().ok());
  EXPECT_EQ(us_cluster.health().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(us_cluster.health().message(), "connect: connection refused");
  // Checked again and again, not once.
  ASSERT_TRUE(wait_for([&] { return failed("us-staging") >= 3; }));
  EXPECT_EQ(failed("eu-prod"), 0);
  us.SetHealth(absl::OkStatus());
  ASSERT_TRUE(wait_for([&] { return up("us-staging") == 1; }));
  EXPECT_TRUE(us_cluster.health().ok());
  // Stopped: no more checks.
  health.Stop();
  const double checks =
      metrics.cluster_health_checks_total.Add({{"cluster", "eu-prod"}, {"result", "ok"}}).Value();
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(
      metrics.cluster_health_checks_total.Add({{"cluster", "eu-prod"}, {"result", "ok"}}).Value(),
      checks);
}

}  // namespace
}  // namespace podgate::exec
