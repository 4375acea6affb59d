// targets.clusters: rules scoped to Kubernetes clusters. A rule without clusters applies in
// every cluster (documents written before clusters keep their meaning); a rule with clusters
// applies only where one glob matches the request's cluster, and never to a request that names
// no cluster (an exec that predates clusters). Each test loads a document through the real
// loader.
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"
#include "policy/rate_limiter.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::VERDICT_ALLOW;
using podgate::common::v1::VERDICT_DENY;
using ::testing::HasSubstr;

constexpr char kHeader[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
)";

// jps in eu-prod only (any eu-* cluster for sre), jinfo everywhere, shells in staging clusters.
constexpr char kRules[] = R"(  - id: jps-eu
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: [eu-prod], namespaces: [app]}
    command: {program: jps}
  - id: jstat-eu-any
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: ["eu-*", "ap-?"], namespaces: [app]}
    command: {program: jstat}
  - id: jinfo-anywhere
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: jinfo}
  - id: staging-shell
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: ["*-staging"], namespaces: [app]}
    shell: true
)";

std::shared_ptr<const CompiledPolicy> Load(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  EXPECT_TRUE(r.ok()) << r.FirstError();
  return r.policy;
}

std::string Errors(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  std::string out;
  for (const LoadIssue& issue : r.issues) {
    if (issue.severity == podgate::policy::v1::SEVERITY_ERROR) {
      out += issue.ToString() + "\n";
    }
  }
  return out;
}

podgate::common::v1::Target Where(const std::string& cluster, const std::string& pod = "p-1") {
  podgate::common::v1::Target t;
  t.set_cluster(cluster);
  t.set_namespace_("app");
  t.set_pod(pod);
  t.set_container("c");
  return t;
}

podgate::policy::v1::AuthorizeRequest Ask(const std::string& cluster,
                                          std::vector<std::string> argv) {
  podgate::policy::v1::AuthorizeRequest req;
  req.mutable_principal()->set_user("dana");
  req.mutable_principal()->add_groups("dev");
  *req.mutable_target() = Where(cluster);
  if (argv.empty()) {
    req.mutable_shell();
  }
  for (std::string& a : argv) {
    req.mutable_command()->add_argv(std::move(a));
  }
  return req;
}

TEST(Clusters, ARuleWithClustersAppliesOnlyInThem) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  podgate::common::v1::Decision eu = policy->Evaluate(Ask("eu-prod", {"jps"}));
  EXPECT_EQ(eu.verdict(), VERDICT_ALLOW) << eu.reason();
  EXPECT_EQ(eu.rule(), "jps-eu");

  std::vector<std::string> why;
  podgate::common::v1::Decision us = policy->Evaluate(Ask("us-staging", {"jps"}), &why);
  EXPECT_EQ(us.verdict(), VERDICT_DENY);
  EXPECT_EQ(us.rule(), "default-deny");
  EXPECT_EQ(us.reason(), "no rule allows 'jps' for dana on app/p-1/c in cluster us-staging");
  EXPECT_THAT(why, ::testing::Contains("rule jps-eu: cluster us-staging is not in scope"));

  // Globs: * and ?.
  EXPECT_EQ(policy->Evaluate(Ask("eu-west", {"jstat"})).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(policy->Evaluate(Ask("ap-1", {"jstat"})).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(policy->Evaluate(Ask("ap-12", {"jstat"})).verdict(), VERDICT_DENY);
  EXPECT_EQ(policy->Evaluate(Ask("us-east", {"jstat"})).verdict(), VERDICT_DENY);
  EXPECT_EQ(policy->Evaluate(Ask("us-staging", {})).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(policy->Evaluate(Ask("eu-prod", {})).verdict(), VERDICT_DENY);
}

TEST(Clusters, ARuleWithoutClustersAppliesInEveryClusterAndToOldRequests) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  for (const char* cluster : {"eu-prod", "us-staging", ""}) {
    podgate::common::v1::Decision d = policy->Evaluate(Ask(cluster, {"jinfo"}));
    EXPECT_EQ(d.verdict(), VERDICT_ALLOW) << cluster << ": " << d.reason();
    EXPECT_EQ(d.rule(), "jinfo-anywhere");
  }
}

TEST(Clusters, ARequestWithoutAClusterIsOutsideEveryRuleNamingClusters) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  std::vector<std::string> why;
  podgate::common::v1::Decision d = policy->Evaluate(Ask("", {"jps"}), &why);
  EXPECT_EQ(d.verdict(), VERDICT_DENY);
  EXPECT_EQ(d.reason(), "no rule allows 'jps' for dana on app/p-1/c");
  EXPECT_THAT(why, ::testing::Contains(
                       "rule jps-eu: the request names no cluster and the rule names clusters"));
  // "*" names every cluster, but still only requests that name one.
  auto star = Load(R"(  - id: jps-star
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: ["*"], namespaces: [app]}
    command: {program: jps}
)");
  ASSERT_NE(star, nullptr);
  EXPECT_EQ(star->Evaluate(Ask("anything", {"jps"})).verdict(), VERDICT_ALLOW);
  EXPECT_EQ(star->Evaluate(Ask("", {"jps"})).verdict(), VERDICT_DENY);
  EXPECT_EQ(star->Evaluate(Ask("", {})).verdict(), VERDICT_DENY);
}

TEST(Clusters, DenyRulesAreScopedByClusterToo) {
  auto policy = Load(R"(  - id: no-jinfo-in-prod
    effect: deny
    subjects: {users: ["*"]}
    targets: {clusters: ["*-prod"], namespaces: ["*"]}
    deny: {programs: [jinfo]}
  - id: jinfo
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: jinfo}
)");
  ASSERT_NE(policy, nullptr);
  podgate::common::v1::Decision prod = policy->Evaluate(Ask("eu-prod", {"jinfo"}));
  EXPECT_EQ(prod.verdict(), VERDICT_DENY);
  EXPECT_EQ(prod.rule(), "no-jinfo-in-prod");
  EXPECT_EQ(policy->Evaluate(Ask("us-staging", {"jinfo"})).verdict(), VERDICT_ALLOW);
  // A deny rule that names clusters does not apply to a request without one: the allow rule
  // (which names none) decides. An exec old enough to send no cluster serves one cluster.
  EXPECT_EQ(policy->Evaluate(Ask("", {"jinfo"})).verdict(), VERDICT_ALLOW);
}

TEST(Clusters, ListAllowedFollowsTheCluster) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  auto programs = [&](const std::string& cluster, bool any_container) {
    podgate::policy::v1::ListAllowedRequest req;
    req.mutable_principal()->set_user("dana");
    req.mutable_principal()->add_groups("dev");
    *req.mutable_target() = Where(cluster);
    if (any_container) {
      req.mutable_target()->clear_container();
    }
    podgate::policy::v1::ListAllowedResponse resp = policy->ListAllowed(req);
    std::vector<std::string> out;
    for (const auto& c : resp.commands()) {
      out.push_back(c.program());
    }
    if (resp.shell_allowed()) {
      out.push_back("<shell>");
    }
    return out;
  };
  using ::testing::ElementsAre;
  EXPECT_THAT(programs("eu-prod", false), ElementsAre("jinfo", "jps", "jstat"));
  EXPECT_THAT(programs("eu-prod", true), ElementsAre("jinfo", "jps", "jstat"));
  EXPECT_THAT(programs("us-staging", false), ElementsAre("jinfo", "<shell>"));
  EXPECT_THAT(programs("us-staging", true), ElementsAre("jinfo", "<shell>"));
  EXPECT_THAT(programs("", true), ElementsAre("jinfo"));
}

TEST(Clusters, RateLimitsCountEachClustersPodSeparately) {
  auto policy = Load(R"(  - id: jps-limited
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: jps}
    rateLimit: {count: 1, per: 1h, scope: target}
  - id: jstat-limited
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: jstat}
    rateLimit: {count: 1, per: 1h, scope: user-target}
)");
  ASSERT_NE(policy, nullptr);
  const absl::Time t0 = absl::FromUnixSeconds(1'800'000'000);
  for (const char* id : {"jps-limited", "jstat-limited"}) {
    RateLimiter limiter;
    const Rule& rule = *policy->FindRule(id);
    EXPECT_FALSE(limiter.Admit(rule, "dana", Where("eu-prod"), t0).has_value()) << id;
    // The same namespace and pod name in another cluster is another pod.
    EXPECT_FALSE(limiter.Admit(rule, "dana", Where("us-staging"), t0).has_value()) << id;
    EXPECT_FALSE(limiter.Admit(rule, "dana", Where(""), t0).has_value()) << id;
    EXPECT_TRUE(limiter.Admit(rule, "dana", Where("eu-prod"), t0).has_value()) << id;
    EXPECT_TRUE(limiter.Admit(rule, "dana", Where("us-staging"), t0).has_value()) << id;
    EXPECT_TRUE(limiter.Admit(rule, "dana", Where(""), t0).has_value()) << id;
    // Cluster names cannot be chosen to collide with another cluster's namespace and pod.
    podgate::common::v1::Target tricky = Where("eu-prod/app");
    tricky.set_namespace_("p-1");
    tricky.set_pod("x");
    EXPECT_FALSE(limiter.Admit(rule, "dana", tricky, t0).has_value()) << id;
  }
}

TEST(Clusters, LoaderRefusesBadClusterValuesNamingTheRuleAndLine) {
  const auto rule = [](const std::string& clusters) {
    return "  - id: r\n    effect: allow\n    subjects: {groups: [dev]}\n"
           "    targets:\n      namespaces: [app]\n      clusters: " +
           clusters + "\n    command: {program: jps}\n";
  };
  // The clusters line is line 9 of the document (3 header lines, then the rule).
  EXPECT_THAT(Errors(rule("eu-prod")), HasSubstr("9:17: error: clusters of rule r must be a list"));
  EXPECT_THAT(Errors(rule("{a: b}")), HasSubstr("9:17: error: clusters of rule r must be a list"));
  EXPECT_THAT(Errors(rule("[]")),
              HasSubstr("9:17: error: clusters of rule r is empty; leave 'clusters' out for a "
                        "rule that applies to every cluster"));
  EXPECT_THAT(Errors(rule("[eu-prod, '']")),
              HasSubstr("error: an entry of clusters of rule r is empty"));
  EXPECT_THAT(Errors(rule("[[eu-prod]]")),
              HasSubstr("error: an entry of clusters of rule r must be a string"));
  EXPECT_THAT(Errors(rule("[{name: eu}]")),
              HasSubstr("error: an entry of clusters of rule r must be a string"));
  EXPECT_THAT(Errors(rule("['eu-[a-z]*']")),
              HasSubstr("9:17: error: cluster glob 'eu-[a-z]*' in rule r contains '[': clusters "
                        "are globs with * and ? only"));
  EXPECT_THAT(Errors(rule("['{eu,us}-prod']")), HasSubstr("contains '{'"));
  EXPECT_THAT(Errors(rule("['eu prod']")), HasSubstr("contains a space"));
  EXPECT_THAT(Errors(rule("[\"eu\\tprod\"]")), HasSubstr("control character"));
  EXPECT_EQ(Errors(rule("[eu-prod, 'us-*', 'ap-?']")), "");
  EXPECT_THAT(Errors("  - id: r\n    effect: allow\n    subjects: {groups: [dev]}\n"
                     "    targets: {cluster: [eu-prod], namespaces: [app]}\n"
                     "    command: {program: jps}\n"),
              HasSubstr("unknown key 'cluster' in the targets of rule r"));
}

TEST(Clusters, UnreachableRuleDetectionRespectsClusters) {
  const std::string allow_jps = R"(  - id: jps
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: jps}
)";
  // A denial in one cluster leaves the allowance reachable in the others.
  EXPECT_EQ(Errors(R"(  - id: no-jps
    effect: deny
    subjects: {users: ["*"]}
    targets: {clusters: [eu-prod], namespaces: ["*"]}
    deny: {programs: [jps]}
)" + allow_jps),
            "");
  // A denial in every cluster (no clusters) makes an allowance in one cluster unreachable.
  EXPECT_THAT(Errors(R"(  - id: no-jps
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny: {programs: [jps]}
  - id: jps
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: [eu-prod], namespaces: [app]}
    command: {program: jps}
)"),
              HasSubstr("unreachable"));
  // The same grammar in two different clusters is not a repeat.
  EXPECT_EQ(Errors(R"(  - id: jps-eu
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: [eu-prod], namespaces: [app]}
    command: {program: jps}
  - id: jps-us
    effect: allow
    subjects: {groups: [dev]}
    targets: {clusters: [us-staging], namespaces: [app]}
    command: {program: jps}
)"),
            "");
}

}  // namespace
}  // namespace podgate::policy
