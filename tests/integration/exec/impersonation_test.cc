// Kubernetes sees the real user: podgate-exec with --kube_impersonation=user+groups against
// kubesim, which enforces impersonation and RBAC as an API server does and keeps an
// audit.k8s.io/v1 log. Real processes throughout (kubesim, policy, audit, exec).
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_session.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
namespace common = podgate::common::v1;

// Pods in team; RBAC: exec (User podgate-exec) may impersonate oidc:* users it is told about,
// the group oidc:devs and the session extra; oidc:devs may exec in team, oidc:viewers may only
// read pods there. exec keeps pods/exec for itself (its stop helper).
constexpr char kRbac[] = R"(
rbac:
  clusterRoles:
    - name: podgate-exec-impersonator
      rules:
        - {apiGroups: [""], resources: [users], verbs: [impersonate]}
        - {apiGroups: [""], resources: [groups], verbs: [impersonate],
           resourceNames: [oidc:devs, oidc:viewers, oidc:strangers]}
        - {apiGroups: [authentication.k8s.io], resources: [userextras/podgate-session],
           verbs: [impersonate]}
        - {apiGroups: [authentication.k8s.io], resources: [uids], verbs: [impersonate]}
  roles:
    - name: debugger
      namespace: team
      rules:
        - {apiGroups: [""], resources: [pods], verbs: [get, list]}
        - {apiGroups: [""], resources: [pods/exec], verbs: [get, create]}
    - name: viewer
      namespace: team
      rules:
        - {apiGroups: [""], resources: [pods], verbs: [get, list]}
  roleBindings:
    - name: devs-debug
      namespace: team
      roleRef: {kind: Role, name: debugger}
      subjects: [{kind: Group, name: "oidc:devs"}]
    - name: viewers-view
      namespace: team
      roleRef: {kind: Role, name: viewer}
      subjects: [{kind: Group, name: "oidc:viewers"}]
)";

constexpr char kImpersonatorBinding[] = R"(
  clusterRoleBindings:
    - name: podgate-exec-impersonator
      roleRef: {kind: ClusterRole, name: podgate-exec-impersonator}
      subjects: [{kind: User, name: podgate-exec}]
)";

constexpr char kClusterHead[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
  - name: shell-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s}
rules:
  - id: team-echo
    effect: allow
    subjects: {groups: [devs, viewers, strangers]}
    targets: {namespaces: [team]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z-]+", optional: true, repeat: true}
  - id: viewers-shell
    effect: allow
    subjects: {groups: [viewers]}
    targets: {namespaces: [team], pods: [shell-1]}
    shell: true
  - id: team-jstack
    effect: allow
    subjects: {groups: [devs, viewers]}
    targets: {namespaces: [team]}
    command:
      program: jstack
      args:
        - {name: pid, type: integer}
)";

testing::BinaryPaths Binaries() {
  return {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
}

using testing::AuditRecords;

// The kubesim audit log's events.
std::vector<nlohmann::json> KubeAudit(const std::string& path) {
  std::ifstream in(path);
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) {
    out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

std::unique_ptr<testing::Stack> StartStack(bool exec_may_impersonate,
                                           const std::string& kube_audit_log,
                                           std::vector<std::string> more_exec_flags = {}) {
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml =
      absl::StrCat(kClusterHead, kRbac, exec_may_impersonate ? kImpersonatorBinding : "");
  options.policy_yaml = kPolicy;
  options.kubesim_flags = {"--audit_log=" + kube_audit_log};
  options.exec_flags = {"--kube_impersonation=user+groups", "--kube_impersonate_user_prefix=oidc:",
                        "--kube_impersonate_group_prefix=oidc:", "--kube_impersonate_uid=true"};
  options.exec_flags.insert(options.exec_flags.end(), more_exec_flags.begin(),
                            more_exec_flags.end());
  auto stack = testing::Stack::Start(options);
  EXPECT_TRUE(stack.ok()) << stack.status();
  return stack.ok() ? *std::move(stack) : nullptr;
}

class ImpersonationTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("exec-impersonation"));
    stack_ = StartStack(true, *dir_ + "/kube-audit.log").release();
    ASSERT_NE(stack_, nullptr);
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  // The DECISION records of a session whose rule is `rule`.
  std::vector<common::Decision> Decisions(const std::string& session_id, const std::string& rule) {
    std::vector<common::Decision> out;
    for (const auto& r : AuditRecords(stack_->audit_port(), session_id)) {
      if (r.event().kind() == common::EVENT_KIND_DECISION && r.event().decision().rule() == rule) {
        out.push_back(r.event().decision());
      }
    }
    return out;
  }

  // One sample of exec's /metrics (-1 when absent).
  static double Sample(const std::string& sample) {
    return testing::MetricSample(stack_->exec_metrics_port(), sample);
  }

  static std::string* dir_;
  static testing::Stack* stack_;
};
std::string* ImpersonationTest::dir_ = nullptr;
testing::Stack* ImpersonationTest::stack_ = nullptr;

// An allowed command reaches the pod as the developer: kubesim's own audit log names them
// (impersonatedUser, with their group and the podgate session), exec's account only as the
// caller.
TEST_F(ImpersonationTest, TheClusterAuditLogNamesTheDeveloper) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("alice", {"devs"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  testing::CommandOutcome o = s.Run("echo seen-by-kubernetes");
  ASSERT_TRUE(o.exit.has_value()) << (o.error ? o.error->DebugString() : "");
  EXPECT_EQ(o.exit->exit_code(), 0);
  EXPECT_EQ(o.stdout_text, "seen-by-kubernetes\n");
  s.Close();

  bool pod_read = false;
  bool probe = false;
  bool command = false;
  for (const nlohmann::json& e : KubeAudit(*dir_ + "/kube-audit.log")) {
    const nlohmann::json ref = e.value("objectRef", nlohmann::json::object());
    if (ref.value("resource", "") != "pods" || ref.value("name", "") != "app-1") {
      continue;
    }
    const std::string uri = e["requestURI"];
    const bool alices = e.contains("impersonatedUser") &&
                        e["impersonatedUser"].value("username", "") == "oidc:alice";
    if (!alices) {
      continue;
    }
    EXPECT_EQ(e["user"]["username"], "podgate-exec");
    EXPECT_EQ(e["impersonatedUser"]["groups"],
              nlohmann::json({"oidc:devs", "system:authenticated"}));
    EXPECT_EQ(e["impersonatedUser"]["extra"]["podgate-session"],
              nlohmann::json({ready->session_id()}));
    // --kube_impersonate_uid: the token's subject, unprefixed (Impersonate-Uid).
    EXPECT_EQ(e["impersonatedUser"].value("uid", ""), "alice");
    if (!ref.contains("subresource")) {
      pod_read = true;
      EXPECT_EQ(e["responseStatus"]["code"], 200);
    } else if (uri.find("seen-by-kubernetes") != std::string::npos) {
      command = true;
      EXPECT_EQ(ref["subresource"], "exec");
      EXPECT_EQ(e["responseStatus"]["code"], 101);
    } else if (uri.find("command=id") != std::string::npos) {
      probe = true;  // the root guard's `id -u`
    }
  }
  EXPECT_TRUE(pod_read) << "the pod read was not made as the developer";
  EXPECT_TRUE(probe) << "the root guard's probe was not made as the developer";
  EXPECT_TRUE(command) << "the command's exec stream was not made as the developer";
}

// Policy allows jstack for viewers, Kubernetes RBAC does not let them exec: the command is
// refused with rule kubernetes-rbac (the root guard's probe is the first exec, refused), and
// audited; nothing reaches the pod.
TEST_F(ImpersonationTest, PolicyAllowsButRbacRefusesTheProbe) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("victor", {"viewers"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();  // viewers may read the pod
  testing::CommandOutcome o = s.Run("jstack 1");
  ASSERT_TRUE(o.denied.has_value()) << (o.error ? o.error->DebugString() : "no denial");
  EXPECT_EQ(o.denied->rule(), "kubernetes-rbac");
  EXPECT_THAT(o.denied->reason(),
              HasSubstr("pods \"app-1\" is forbidden: User \"oidc:victor\" cannot create "
                        "resource \"pods/exec\" in API group \"\" in the namespace \"team\""));
  s.Close();
  std::vector<common::Decision> d = Decisions(ready->session_id(), "kubernetes-rbac");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].verdict(), common::VERDICT_DENY);
  EXPECT_THAT(d[0].reason(), HasSubstr("User \"oidc:victor\" cannot create"));
  EXPECT_FALSE(d[0].policy_version().empty());
  EXPECT_GE(Sample(R"(podgate_exec_kubernetes_denials_total{at="command"})"), 1);
}

// The same when the root guard already knows the container (another user's command cached
// its uid): the command's own exec stream is refused, and that too is a kubernetes-rbac
// denial, never a generic error.
TEST_F(ImpersonationTest, PolicyAllowsButRbacRefusesTheCommandsStream) {
  testing::ExecSession dev(stack_->exec_port());
  ASSERT_TRUE(dev.Open(stack_->Token("alice", {"devs"}), "team", "app-1").ok());
  ASSERT_TRUE(dev.Run("echo warm").exit.has_value());
  dev.Close();
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("victor", {"viewers"}), "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  testing::CommandOutcome o = s.Run("echo hello");
  ASSERT_TRUE(o.denied.has_value()) << (o.error ? o.error->DebugString() : "no denial");
  EXPECT_EQ(o.denied->rule(), "kubernetes-rbac");
  EXPECT_THAT(o.denied->reason(), HasSubstr("User \"oidc:victor\" cannot create resource "
                                            "\"pods/exec\""));
  EXPECT_TRUE(o.stdout_text.empty());
  s.Close();
  EXPECT_EQ(Decisions(ready->session_id(), "kubernetes-rbac").size(), 1u);
  for (const auto& r : AuditRecords(stack_->audit_port(), ready->session_id())) {
    EXPECT_NE(r.event().kind(), common::EVENT_KIND_COMMAND_RESULT) << "nothing ran";
  }
}

// A shell policy allows, for a user RBAC does not let exec: the root guard's probe (no other
// test touches shell-1, so it is not cached) is refused to them, and so is the session, with
// the API server's reason, audited as kubernetes-rbac.
TEST_F(ImpersonationTest, AShellRbacRefusesIsRefusedAtOpen) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("victor", {"viewers"}), "team", "shell-1", "",
                      common::SESSION_MODE_SHELL);
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(ready.status().message(),
              HasSubstr("Kubernetes RBAC refused it for you: pods \"shell-1\" is forbidden: User "
                        "\"oidc:victor\" cannot create resource \"pods/exec\""));
}

// A user policy lets in but Kubernetes does not even let read the pod: the session is refused
// at open with PERMISSION_DENIED and the API server's reason, audited as kubernetes-rbac.
TEST_F(ImpersonationTest, AUserRbacDoesNotLetReadThePodIsRefusedAtOpen) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("sam", {"strangers"}), "team", "app-1");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(ready.status().message(),
              HasSubstr("pods \"app-1\" is forbidden: User \"oidc:sam\" cannot get resource "
                        "\"pods\""));
  EXPECT_GE(Sample(R"(podgate_exec_kubernetes_denials_total{at="open"})"), 1);
}

// A group outside what the chart's resourceNames let exec impersonate: the API server refuses
// the impersonation, and exec says so (a configuration matter), rather than drop the group.
TEST_F(ImpersonationTest, AGroupExecMayNotImpersonateIsAClearError) {
  testing::ExecSession s(stack_->exec_port());
  auto ready = s.Open(stack_->Token("eve", {"devs", "system:masters"}), "team", "app-1");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ready.status().message(),
              HasSubstr("groups \"oidc:system:masters\" is forbidden: User \"podgate-exec\" "
                        "cannot impersonate resource \"groups\""));
}

// exec's own account without the impersonate verb: every session fails with a clear error
// naming the missing grant, and exec never falls back to acting as itself (kubesim saw no pod
// request from it without impersonation).
TEST(ImpersonationWithoutRights, IsAClearErrorAndNoFallback) {
  const std::string dir = testing::MakeTempDir("exec-no-impersonate");
  const std::string log = dir + "/kube-audit.log";
  // Without the session extra the start-up check cannot be conclusive (a grant may list
  // resourceNames), so exec starts with a warning and the first call says what is missing.
  std::unique_ptr<testing::Stack> stack =
      StartStack(false, log, {"--kube_impersonate_session_extra=false"});
  ASSERT_NE(stack, nullptr);
  testing::ExecSession s(stack->exec_port());
  auto ready = s.Open(stack->Token("alice", {"devs"}), "team", "app-1");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(ready.status().message(),
              HasSubstr("exec's Kubernetes identity may not impersonate this user"));
  EXPECT_THAT(ready.status().message(),
              HasSubstr("users \"oidc:alice\" is forbidden: User \"podgate-exec\" cannot "
                        "impersonate resource \"users\" in API group \"\" at the cluster scope"));
  EXPECT_THAT(ready.status().message(), HasSubstr("grant it the impersonate verb"));
  std::vector<nlohmann::json> events = KubeAudit(log);
  ASSERT_FALSE(events.empty());
  for (const nlohmann::json& e : events) {
    if (e.value("objectRef", nlohmann::json::object()).value("resource", "") ==
        "selfsubjectaccessreviews") {
      continue;  // the start-up check, exec asking about itself
    }
    EXPECT_EQ(e["verb"], "impersonate") << e.dump();
    EXPECT_EQ(e["responseStatus"]["code"], 403) << e.dump();
    EXPECT_FALSE(e.contains("impersonatedUser"));
  }
}

// With the session extra on (the default) the start-up check is conclusive: exec without the
// grant does not start, and says what to grant.
TEST(ImpersonationWithoutRights, ExecDoesNotStart) {
  const std::string dir = testing::MakeTempDir("exec-no-impersonate-startup");
  testing::StackOptions options;
  options.binaries = Binaries();
  options.cluster_yaml = absl::StrCat(kClusterHead, kRbac);
  options.policy_yaml = kPolicy;
  auto stack = testing::Stack::Start(options);  // impersonation off: exec starts
  ASSERT_TRUE(stack.ok()) << stack.status();
  auto exec = testing::Subprocess::Start(
      PODGATE_EXEC_BIN,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--kubeconfig=" + (*stack)->kubeconfig(),
       "--jwt_key_file=" + (*stack)->jwt_secret_file(), "--jwt_algorithm=HS256",
       std::string("--jwt_issuer=") + testing::Stack::kIssuer, "--jwt_audience=podgate",
       "--kube_impersonation=user"});
  ASSERT_TRUE(exec.ok()) << exec.status();
  absl::StatusOr<int> code = (*exec)->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(code.ok()) << "exec kept running without the impersonate grant";
  EXPECT_NE(*code, 0);
  std::string out;
  for (const std::string& line : (*exec)->Lines()) {
    out += line + "\n";
  }
  EXPECT_THAT(out, HasSubstr("may not impersonate"));
  EXPECT_THAT(out, HasSubstr("userextras/podgate-session said no"));
}

// ListTargets shows what both policy and Kubernetes allow: viewers may read the pods of team
// (and policy lists them) but may not exec there, so nothing is listed for them; developers
// see team. Asked for one namespace or for all.
TEST_F(ImpersonationTest, ListTargetsHidesWhatRbacDoesNotLetTheUserExecInto) {
  auto stub = podgate::exec::v1::ExecService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", stack_->exec_port()), grpc::InsecureChannelCredentials()));
  for (const std::string ns : {"", "team"}) {
    podgate::exec::v1::ListTargetsRequest req;
    req.set_namespace_(ns);
    podgate::exec::v1::ListTargetsResponse res;
    grpc::ClientContext dev_ctx;
    req.mutable_credential()->set_bearer_token(stack_->Token("alice", {"devs"}));
    ASSERT_TRUE(stub->ListTargets(&dev_ctx, req, &res).ok());
    ASSERT_EQ(res.namespaces_size(), 1) << "namespace " << ns;
    EXPECT_EQ(res.namespaces(0).name(), "team");
    grpc::ClientContext viewer_ctx;
    req.mutable_credential()->set_bearer_token(stack_->Token("victor", {"viewers"}));
    res.Clear();
    ASSERT_TRUE(stub->ListTargets(&viewer_ctx, req, &res).ok());
    EXPECT_EQ(res.namespaces_size(), 0) << "namespace " << ns << ": " << res.DebugString();
  }
  // The reviews were made as the users, and kubesim's audit log shows them.
  bool reviewed_as_victor = false;
  for (const nlohmann::json& e : KubeAudit(*dir_ + "/kube-audit.log")) {
    if (e.value("objectRef", nlohmann::json::object()).value("resource", "") ==
            "selfsubjectaccessreviews" &&
        e.contains("impersonatedUser") && e["impersonatedUser"]["username"] == "oidc:victor") {
      reviewed_as_victor = true;
    }
  }
  EXPECT_TRUE(reviewed_as_victor);
}

}  // namespace
}  // namespace podgate
