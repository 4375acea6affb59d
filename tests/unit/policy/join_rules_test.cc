// Joining other users' sessions (JoinAction) and moderated shells: `join: observe|moderate`
// allow rules, `deny: {join: true}`, `moderated: true` on shell rules, and the loader's errors
// for each misuse. Each test loads a small document through the real loader.
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"

namespace podgate::policy {
namespace {

using podgate::common::v1::Decision;
using podgate::common::v1::VERDICT_ALLOW;
using podgate::common::v1::VERDICT_DENY;
using ::testing::HasSubstr;

constexpr char kHeader[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
)";

std::shared_ptr<const CompiledPolicy> Load(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  for (const LoadIssue& issue : r.issues) {
    if (issue.severity == podgate::policy::v1::SEVERITY_ERROR) {
      ADD_FAILURE() << issue.ToString();
    }
  }
  return r.policy;
}

std::string FirstError(const std::string& rules) {
  LoadResult r = LoadPolicy(std::string(kHeader) + rules, "test.yaml");
  return r.ok() ? "" : r.FirstError();
}

podgate::policy::v1::AuthorizeRequest Join(const std::string& user, std::vector<std::string> groups,
                                           const std::string& ns = "prod") {
  podgate::policy::v1::AuthorizeRequest req;
  req.mutable_principal()->set_user(user);
  for (std::string& g : groups) {
    req.mutable_principal()->add_groups(std::move(g));
  }
  req.mutable_target()->set_namespace_(ns);
  req.mutable_target()->set_pod("api-0");
  req.mutable_target()->set_container("app");
  req.mutable_join()->set_session_user("alice");
  req.mutable_join()->set_mode(podgate::common::v1::SESSION_MODE_SHELL);
  return req;
}

podgate::policy::v1::AuthorizeRequest Shell(const std::string& user, const std::string& ns) {
  podgate::policy::v1::AuthorizeRequest req = Join(user, {"dev"}, ns);
  req.mutable_shell();
  return req;
}

constexpr char kRules[] = R"(
  - id: dev-shell-prod
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [prod]}
    shell: true
    moderated: true
  - id: dev-shell-staging
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [staging]}
    shell: true
  - id: auditors-watch
    effect: allow
    subjects: {groups: [auditors]}
    targets: {namespaces: ["*"]}
    join: observe
  - id: sre-moderate-prod
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: [prod]}
    join: moderate
  - id: sre-watch-all
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: ["*"]}
    join: observe
  - id: no-joining-vault
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: [vault]}
    deny: {join: true}
)";

TEST(JoinRulesTest, AModeratedShellRuleSaysAModeratorIsRequired) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  Decision prod = policy->Evaluate(Shell("alice", "prod"));
  EXPECT_EQ(prod.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(prod.rule(), "dev-shell-prod");
  EXPECT_TRUE(prod.moderator_required());
  EXPECT_THAT(prod.reason(), HasSubstr("moderated shell"));
  Decision staging = policy->Evaluate(Shell("alice", "staging"));
  EXPECT_EQ(staging.verdict(), VERDICT_ALLOW);
  EXPECT_FALSE(staging.moderator_required());
}

TEST(JoinRulesTest, ObserveAllowsWatchingAndModerateSaysModerator) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  Decision auditor = policy->Evaluate(Join("ann", {"auditors"}));
  EXPECT_EQ(auditor.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(auditor.rule(), "auditors-watch");
  EXPECT_FALSE(auditor.moderator());
  // An SRE in prod: the moderate rule wins over the observe rule that also applies.
  Decision sre = policy->Evaluate(Join("sam", {"sre"}));
  EXPECT_EQ(sre.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(sre.rule(), "sre-moderate-prod");
  EXPECT_TRUE(sre.moderator());
  // Elsewhere the same SRE only watches.
  Decision staging = policy->Evaluate(Join("sam", {"sre"}, "staging"));
  EXPECT_EQ(staging.verdict(), VERDICT_ALLOW);
  EXPECT_EQ(staging.rule(), "sre-watch-all");
  EXPECT_FALSE(staging.moderator());
}

TEST(JoinRulesTest, JoiningIsDeniedByDefaultAndByADenyRule) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  // A developer with a shell rule still may not join someone else's session.
  Decision dev = policy->Evaluate(Join("dana", {"dev"}));
  EXPECT_EQ(dev.verdict(), VERDICT_DENY);
  EXPECT_EQ(dev.rule(), "default-deny");
  EXPECT_EQ(dev.reason(), "no rule lets dana join sessions on prod/api-0/app");
  EXPECT_FALSE(dev.moderator());
  // The deny rule wins over `join: observe` for every namespace.
  Decision vault = policy->Evaluate(Join("ann", {"auditors"}, "vault"));
  EXPECT_EQ(vault.verdict(), VERDICT_DENY);
  EXPECT_EQ(vault.rule(), "no-joining-vault");
  EXPECT_THAT(vault.reason(), HasSubstr("joining sessions is denied"));
  // A join rule lets nobody run anything or open a shell.
  podgate::policy::v1::AuthorizeRequest shell = Shell("ann", "staging");
  shell.mutable_principal()->clear_groups();
  shell.mutable_principal()->add_groups("auditors");
  EXPECT_EQ(policy->Evaluate(shell).verdict(), VERDICT_DENY);
  podgate::policy::v1::AuthorizeRequest cmd = Join("sam", {"sre"});
  cmd.mutable_command()->add_argv("id");
  EXPECT_EQ(policy->Evaluate(cmd).verdict(), VERDICT_DENY);
}

TEST(JoinRulesTest, AJoinWithoutUserOrTargetIsAnInvalidRequest) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  podgate::policy::v1::AuthorizeRequest no_user = Join("", {"sre"});
  EXPECT_EQ(policy->Evaluate(no_user).rule(), "invalid-request");
  podgate::policy::v1::AuthorizeRequest no_pod = Join("sam", {"sre"});
  no_pod.mutable_target()->clear_pod();
  EXPECT_EQ(policy->Evaluate(no_pod).rule(), "invalid-request");
}

TEST(JoinRulesTest, ExplainNamesEveryJoinRuleConsidered) {
  auto policy = Load(kRules);
  ASSERT_NE(policy, nullptr);
  std::vector<std::string> lines;
  policy->Evaluate(Join("sam", {"sre"}, "staging"), &lines);
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("rule auditors-watch: user sam")));
  EXPECT_THAT(lines, ::testing::Contains(HasSubstr("rule sre-moderate-prod: namespace")));
  EXPECT_THAT(lines.back(), HasSubstr("decision: allow by sre-watch-all"));
}

TEST(JoinRulesTest, EveryMisuseIsRefusedNamingTheRule) {
  const std::string head = R"(
  - id: r1
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: [prod]}
)";
  EXPECT_THAT(FirstError(head + "    join: watch\n"),
              HasSubstr("rule r1: join must be observe or moderate, not 'watch'"));
  EXPECT_THAT(FirstError(head + "    join: observe\n    shell: true\n"),
              HasSubstr("needs exactly one of command, shell: true, superuser: true, join"));
  EXPECT_THAT(FirstError(head + "    join: moderate\n    moderated: true\n"),
              HasSubstr("moderated applies only to shell rules (rule r1)"));
  EXPECT_THAT(FirstError(head + "    join: observe\n    limits: {timeLimit: 5s}\n"),
              HasSubstr("'limits' does not apply to join rule r1"));
  EXPECT_THAT(FirstError(head + "    join: observe\n    allowRoot: true\n"),
              HasSubstr("'allowRoot' does not apply to join rule r1"));
  EXPECT_THAT(FirstError(R"(
  - id: d1
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: [prod]}
    join: observe
    deny: {join: true}
)"),
              HasSubstr("'join' does not apply to deny rule d1"));
  EXPECT_THAT(FirstError(R"(
  - id: d1
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: [prod]}
    deny: {join: false}
)"),
              HasSubstr("denies nothing: give programs, classes, shell: true or join: true"));
  // A join rule a deny rule always overrides is unreachable, like any other.
  EXPECT_THAT(FirstError(R"(
  - id: watch-prod
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: [prod]}
    join: observe
  - id: d1
    effect: deny
    subjects: {users: ["*"]}
    targets: {namespaces: ["*"]}
    deny: {join: true}
)"),
              HasSubstr("unreachable: rule watch-prod is always overridden by deny rule d1"));
}

}  // namespace
}  // namespace podgate::policy
