// kubesim's authorizer and impersonation: RBAC rules, roles and bindings (parsed and
// evaluated), the impersonation headers, and — on a real TLS socket — impersonated requests
// allowed and refused with the API server's messages, and the audit log naming both the caller
// and the impersonated user.
#include "rbac.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "access_review.h"
#include "api_server.h"
#include "cluster.h"
#include "http/client.h"
#include "http/server.h"
#include "impersonation.h"
#include "k8s/exec_protocol.h"
#include "support/test_pki.h"

namespace podgate::kubesim {
namespace {

using nlohmann::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr char kExecSa[] = "system:serviceaccount:podgate:podgate-exec";

constexpr char kClusterYaml[] = R"(
namespaces:
  - name: team-a
  - name: team-b
pods:
  - name: api-1
    namespace: team-a
    containers:
      - name: app
  - name: db-1
    namespace: team-b
    containers:
      - name: app
rbac:
  clusterRoles:
    - name: podgate-impersonator
      rules:
        - apiGroups: [""]
          resources: [users]
          verbs: [impersonate]
          resourceNames: [alice, bob]
        - apiGroups: [""]
          resources: [groups]
          verbs: [impersonate]
          resourceNames: [devs]
        - apiGroups: [authentication.k8s.io]
          resources: [userextras/podgate-session]
          verbs: [impersonate]
    - name: pod-reader
      rules:
        - apiGroups: [""]
          resources: [pods]
          verbs: [get, list]
    - name: reviewer
      rules:
        - apiGroups: [authorization.k8s.io]
          resources: [subjectaccessreviews]
          verbs: [create]
  roles:
    - name: exec-pods
      namespace: team-a
      rules:
        - apiGroups: [""]
          resources: [pods, pods/exec]
          verbs: [get, list, create]
  clusterRoleBindings:
    - name: podgate-impersonator
      roleRef: {kind: ClusterRole, name: podgate-impersonator}
      subjects: [{kind: ServiceAccount, name: podgate-exec, namespace: podgate}]
    - name: podgate-reviewer
      roleRef: {kind: ClusterRole, name: reviewer}
      subjects: [{kind: ServiceAccount, name: podgate-exec, namespace: podgate}]
  roleBindings:
    - name: devs-exec
      namespace: team-a
      roleRef: {kind: Role, name: exec-pods}
      subjects: [{kind: Group, name: devs}]
    - name: bob-reads
      namespace: team-a
      roleRef: {kind: ClusterRole, name: pod-reader}
      subjects: [{kind: User, name: bob}]
)";

Cluster TestCluster() {
  absl::StatusOr<Cluster> c = ParseCluster(kClusterYaml);
  EXPECT_TRUE(c.ok()) << c.status();
  return c.ok() ? *c : Cluster{};
}

TEST(Rbac, RulesMatchVerbsGroupsResourcesAndNames) {
  PolicyRule rule{{""}, {"pods", "pods/exec"}, {"get"}, {}};
  EXPECT_TRUE(RuleAllows(rule, {"get", "", "pods", "", "ns", "p"}));
  EXPECT_TRUE(RuleAllows(rule, {"get", "", "pods", "exec", "ns", "p"}));
  EXPECT_FALSE(RuleAllows(rule, {"create", "", "pods", "exec", "ns", "p"}));
  EXPECT_FALSE(RuleAllows(rule, {"get", "apps", "pods", "", "ns", "p"}));
  EXPECT_FALSE(RuleAllows(rule, {"get", "", "pods", "log", "ns", "p"}));
  PolicyRule any_sub{{"*"}, {"*/exec"}, {"*"}, {}};
  EXPECT_TRUE(RuleAllows(any_sub, {"create", "x", "pods", "exec", "ns", "p"}));
  EXPECT_FALSE(RuleAllows(any_sub, {"create", "x", "pods", "", "ns", "p"}));
  PolicyRule named{{""}, {"users"}, {"impersonate"}, {"alice"}};
  EXPECT_TRUE(RuleAllows(named, {"impersonate", "", "users", "", "", "alice"}));
  EXPECT_FALSE(RuleAllows(named, {"impersonate", "", "users", "", "", "mallory"}));
  // resourceNames never match a request without a name.
  EXPECT_FALSE(RuleAllows(named, {"impersonate", "", "users", "", "", ""}));
}

TEST(Rbac, BindingsApplyToTheirSubjectsAndRoleBindingsToTheirNamespace) {
  Cluster c = TestCluster();
  UserInfo exec_sa{kExecSa, "", {"system:authenticated"}, {}};
  UserInfo other_sa{"system:serviceaccount:other:podgate-exec", "", {}, {}};
  UserInfo dev{"carol", "", {"devs", "system:authenticated"}, {}};
  UserInfo bob{"bob", "", {}, {}};
  EXPECT_TRUE(c.Authorize(exec_sa, {"impersonate", "", "users", "", "", "alice"}));
  EXPECT_FALSE(c.Authorize(other_sa, {"impersonate", "", "users", "", "", "alice"}));
  EXPECT_TRUE(c.Authorize(dev, {"create", "", "pods", "exec", "team-a", "api-1"}));
  EXPECT_FALSE(c.Authorize(dev, {"create", "", "pods", "exec", "team-b", "db-1"}));
  // A ClusterRole bound by a RoleBinding grants only in the binding's namespace.
  EXPECT_TRUE(c.Authorize(bob, {"get", "", "pods", "", "team-a", "api-1"}));
  EXPECT_FALSE(c.Authorize(bob, {"get", "", "pods", "", "team-b", "db-1"}));
  EXPECT_FALSE(c.Authorize(bob, {"list", "", "pods", "", "", ""}));
  EXPECT_FALSE(c.Authorize(bob, {"create", "", "pods", "exec", "team-a", "api-1"}));
}

TEST(Rbac, RejectsBadDocuments) {
  struct Case {
    const char* yaml;
    const char* error;
  };
  for (const Case& k : std::vector<Case>{
           {"rbac: {bogus: []}", "unknown key \"bogus\""},
           {"rbac: {clusterRoles: [{rules: []}]}", "needs a name"},
           {"rbac: {roles: [{name: r, rules: []}]}", "needs a name and a namespace"},
           {"rbac: {clusterRoles: [{name: r, rules: [{apiGroups: [''], resources: [pods]}]}]}",
            "verbs is required"},
           {"rbac: {clusterRoles: [{name: r, rules: [{apiGroups: [''], resources: [], verbs: "
            "[get]}]}]}",
            "resources must not be empty"},
           {"rbac: {clusterRoles: [{name: r, rules: [{apiGroups: [''], resources: [pods], "
            "verbs: [get], bogus: 1}]}]}",
            "unknown key \"bogus\""},
           {"rbac: {clusterRoles: [{name: r, rules: []}, {name: r, rules: []}]}", "duplicate name"},
           {"rbac: {clusterRoleBindings: [{name: b, roleRef: {kind: ClusterRole, name: nope}, "
            "subjects: [{kind: User, name: u}]}]}",
            "ClusterRole \"nope\" does not exist"},
           {"rbac: {clusterRoles: [{name: r, rules: []}], clusterRoleBindings: [{name: b, "
            "roleRef: {kind: Role, name: r}, subjects: [{kind: User, name: u}]}]}",
            "kind ClusterRole"},
           {"rbac: {clusterRoles: [{name: r, rules: []}], clusterRoleBindings: [{name: b, "
            "roleRef: {kind: ClusterRole, name: r}, subjects: []}]}",
            "subjects must be a non-empty list"},
           {"rbac: {clusterRoles: [{name: r, rules: []}], clusterRoleBindings: [{name: b, "
            "roleRef: {kind: ClusterRole, name: r}, subjects: [{kind: Robot, name: u}]}]}",
            "kind must be User, Group or ServiceAccount"},
           {"rbac: {clusterRoles: [{name: r, rules: []}], clusterRoleBindings: [{name: b, "
            "roleRef: {kind: ClusterRole, name: r}, subjects: [{kind: ServiceAccount, name: "
            "u}]}]}",
            "needs a name and a namespace"},
           {"rbac: {roles: [{name: r, namespace: a, rules: []}], roleBindings: [{name: b, "
            "namespace: other, roleRef: {kind: Role, name: r}, subjects: [{kind: User, name: "
            "u}]}]}",
            "Role \"r\" does not exist"},
       }) {
    absl::StatusOr<Cluster> c = ParseCluster(k.yaml);
    ASSERT_FALSE(c.ok()) << k.yaml;
    EXPECT_THAT(c.status().message(), HasSubstr(k.error)) << k.yaml;
  }
}

TEST(ImpersonationHeaders, ParsesEveryKindCaseInsensitively) {
  absl::StatusOr<ImpersonationRequest> r =
      ParseImpersonationHeaders({{"impersonate-user", "alice"},
                                 {"Impersonate-Group", "devs"},
                                 {"IMPERSONATE-GROUP", "ops"},
                                 {"Impersonate-Uid", "42"},
                                 {"Impersonate-Extra-Podgate-Session", "s1"},
                                 {"Impersonate-Extra-example.com%2fteam", "a"},
                                 {"Impersonate-Extra-bad%zz", "b"},
                                 {"Accept", "application/json"}});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->user, "alice");
  EXPECT_THAT(r->groups, ElementsAre("devs", "ops"));
  EXPECT_EQ(r->uid, "42");
  ASSERT_EQ(r->extras.size(), 3u);
  EXPECT_EQ(r->extras[0], std::make_pair(std::string("podgate-session"), std::string("s1")));
  EXPECT_EQ(r->extras[1].first, "example.com/team");
  EXPECT_EQ(r->extras[2].first, "bad%zz");  // kept as sent, as the API server keeps it
  EXPECT_TRUE(ParseImpersonationHeaders({{"Accept", "x"}})->empty());
}

TEST(ImpersonationHeaders, GroupsUidOrExtrasNeedAUser) {
  for (const auto& header : std::vector<std::pair<std::string, std::string>>{
           {"Impersonate-Group", "devs"}, {"Impersonate-Uid", "1"}, {"Impersonate-Extra-x", "y"}}) {
    absl::StatusOr<ImpersonationRequest> r = ParseImpersonationHeaders({header});
    ASSERT_FALSE(r.ok()) << header.first;
    EXPECT_THAT(r.status().message(), HasSubstr("without impersonating a user"));
  }
}

TEST(Impersonate, ChecksEachPartAndBuildsTheIdentity) {
  Cluster c = TestCluster();
  UserInfo exec_sa{kExecSa, "", {"system:authenticated"}, {}};
  ImpersonationResult ok =
      Impersonate(c, exec_sa, {"alice", {"devs"}, "", {{"podgate-session", "s1"}}});
  ASSERT_TRUE(ok.user.has_value());
  EXPECT_EQ(ok.user->name, "alice");
  EXPECT_THAT(ok.user->groups, ElementsAre("devs", "system:authenticated"));
  EXPECT_THAT(ok.user->extra["podgate-session"], ElementsAre("s1"));

  ImpersonationResult no_user = Impersonate(c, exec_sa, {"carol", {}, "", {}});
  ASSERT_FALSE(no_user.user.has_value());
  EXPECT_EQ(ForbiddenMessage(kExecSa, no_user.denied),
            "users \"carol\" is forbidden: User \"system:serviceaccount:podgate:podgate-exec\" "
            "cannot impersonate resource \"users\" in API group \"\" at the cluster scope");
  ImpersonationResult no_group = Impersonate(c, exec_sa, {"alice", {"devs", "ops"}, "", {}});
  ASSERT_FALSE(no_group.user.has_value());
  EXPECT_EQ(no_group.denied.resource, "groups");
  EXPECT_EQ(no_group.denied.name, "ops");
  ImpersonationResult no_extra = Impersonate(c, exec_sa, {"alice", {}, "", {{"scopes", "x"}}});
  ASSERT_FALSE(no_extra.user.has_value());
  EXPECT_EQ(ForbiddenMessage(kExecSa, no_extra.denied),
            "userextras.authentication.k8s.io \"x\" is forbidden: User "
            "\"system:serviceaccount:podgate:podgate-exec\" cannot impersonate resource "
            "\"userextras/scopes\" in API group \"authentication.k8s.io\" at the cluster scope");
  ImpersonationResult no_uid = Impersonate(c, exec_sa, {"alice", {}, "7", {}});
  ASSERT_FALSE(no_uid.user.has_value());
  EXPECT_EQ(no_uid.denied.resource, "uids");
  EXPECT_EQ(no_uid.denied.api_group, "authentication.k8s.io");
  // A service account is impersonated through `serviceaccounts` in its namespace.
  ImpersonationResult sa = Impersonate(c, exec_sa, {"system:serviceaccount:team-a:ci", {}, "", {}});
  ASSERT_FALSE(sa.user.has_value());
  EXPECT_EQ(ForbiddenMessage(kExecSa, sa.denied),
            "serviceaccounts \"ci\" is forbidden: User "
            "\"system:serviceaccount:podgate:podgate-exec\" cannot impersonate resource "
            "\"serviceaccounts\" in API group \"\" in the namespace \"team-a\"");
  // Someone without the grant impersonates no one.
  UserInfo alice{"alice", "", {"devs", "system:authenticated"}, {}};
  EXPECT_FALSE(Impersonate(c, alice, {"bob", {}, "", {}}).user.has_value());
}

// kubesim on a real TLS socket with its audit log on.
class ImpersonationServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("kubesim-rbac");
    absl::StatusOr<testing::TestPki> pki = testing::MakeTestPki(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    ApiServerOptions options;
    options.state_dir = dir_ + "/state";
    options.audit_log_path = dir_ + "/audit.log";
    api_ = std::make_shared<ApiServer>(
        TestCluster(),
        std::vector<TokenUser>{{"exec-token", kExecSa, "sa-1", {"system:serviceaccounts"}},
                               {"plain-token", "system:serviceaccount:podgate:plain", "sa-2", {}},
                               {"alice-token", "alice", "u-1", {"devs"}}},
        options);
    ASSERT_TRUE(api_->OpenAuditLog().ok());
    ASSERT_TRUE(api_->PrepareContainers().ok());
    http::ServerOptions so;
    so.cert_file = pki_.server_cert;
    so.key_file = pki_.server_key;
    auto server = http::Server::Start(
        io_, so, [this](const http::Request& r, const http::RequestContext& c, bool u) {
          return api_->Route(r, c, u);
        });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    thread_ = std::thread([this] { io_.run(); });
  }

  void TearDown() override {
    api_->processes()->KillAll(SIGKILL);
    server_->Stop();
    for (int i = 0; i < 100 && (api_->processes()->live_processes() > 0 ||
                                api_->processes()->live_sessions.load() > 0);
         ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    io_.stop();
    thread_.join();
  }

  http::ClientOptions Client(const std::string& token,
                             std::vector<std::pair<std::string, std::string>> headers) {
    http::ClientOptions o;
    o.port = server_->port();
    o.tls = true;
    o.ca_file = pki_.ca_cert;
    o.server_name = "localhost";
    o.headers = std::move(headers);
    o.headers.emplace_back("Authorization", "Bearer " + token);
    return o;
  }

  http::ClientResponse Get(const std::string& target, const std::string& token,
                           std::vector<std::pair<std::string, std::string>> headers) {
    absl::StatusOr<http::ClientResponse> r =
        http::Fetch(Client(token, std::move(headers)), "GET", target);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : http::ClientResponse{};
  }

  std::vector<json> AuditEvents() {
    std::ifstream in(dir_ + "/audit.log");
    std::vector<json> out;
    std::string line;
    while (std::getline(in, line)) {
      out.push_back(json::parse(line));
    }
    return out;
  }

  std::string dir_;
  testing::TestPki pki_;
  boost::asio::io_context io_;
  std::shared_ptr<ApiServer> api_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(ImpersonationServerTest, RequestsRunAsTheImpersonatedUser) {
  // The service account itself has no pod rights; alice in devs has them in team-a only.
  http::ClientResponse r = Get("/api/v1/namespaces/team-a/pods/api-1", "exec-token", {});
  EXPECT_EQ(r.status, 403);
  r = Get("/api/v1/namespaces/team-a/pods/api-1", "exec-token",
          {{"Impersonate-User", "alice"}, {"Impersonate-Group", "devs"}});
  EXPECT_EQ(r.status, 200) << r.body;
  r = Get("/api/v1/namespaces/team-b/pods/db-1", "exec-token",
          {{"Impersonate-User", "alice"}, {"Impersonate-Group", "devs"}});
  ASSERT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body)["message"],
            "pods \"db-1\" is forbidden: User \"alice\" cannot get resource \"pods\" in API group "
            "\"\" in the namespace \"team-b\"");
  // Without the group, alice is only alice (and system:authenticated): the caller's groups
  // never carry over.
  r = Get("/api/v1/namespaces/team-a/pods/api-1", "exec-token", {{"Impersonate-User", "alice"}});
  ASSERT_EQ(r.status, 403);
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("User \"alice\" cannot get resource \"pods\""));
}

TEST_F(ImpersonationServerTest, RefusalsAreTheApiServers) {
  http::ClientResponse r =
      Get("/api/v1/namespaces/team-a/pods", "exec-token", {{"Impersonate-User", "mallory"}});
  ASSERT_EQ(r.status, 403);
  json s = json::parse(r.body);
  EXPECT_EQ(s["kind"], "Status");
  EXPECT_EQ(s["reason"], "Forbidden");
  EXPECT_EQ(s["details"]["name"], "mallory");
  EXPECT_EQ(s["details"]["kind"], "users");
  EXPECT_EQ(s["message"],
            "users \"mallory\" is forbidden: User \"system:serviceaccount:podgate:podgate-exec\" "
            "cannot impersonate resource \"users\" in API group \"\" at the cluster scope");
  r = Get("/api/v1/namespaces/team-a/pods", "plain-token", {{"Impersonate-User", "alice"}});
  ASSERT_EQ(r.status, 403);
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("User \"system:serviceaccount:podgate:plain\" cannot impersonate"));
  r = Get("/api/v1/namespaces/team-a/pods", "exec-token",
          {{"Impersonate-User", "alice"}, {"Impersonate-Group", "system:masters"}});
  ASSERT_EQ(r.status, 403);
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("groups \"system:masters\" is forbidden"));
  r = Get("/api/v1/namespaces/team-a/pods", "exec-token", {{"Impersonate-Group", "devs"}});
  ASSERT_EQ(r.status, 400);
  EXPECT_EQ(json::parse(r.body)["reason"], "BadRequest");
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("without impersonating a user"));
  EXPECT_EQ(api_->forbidden.load(), 3u);
}

TEST_F(ImpersonationServerTest, AuditLogNamesTheCallerAndTheImpersonatedUser) {
  k8s::ExecOptions o;
  o.command = {"true"};
  o.stdout = true;
  o.stderr = true;
  auto ws = http::WebSocketClient::Connect(
      Client("exec-token", {{"Impersonate-User", "alice"},
                            {"Impersonate-Group", "devs"},
                            {"Impersonate-Extra-Podgate-Session", "s-42"}}),
      "/api/v1/namespaces/team-a/pods/api-1/exec?" + k8s::EncodeExecQuery(o),
      {"v5.channel.k8s.io"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  while ((*ws)->Read(absl::Seconds(10)).ok()) {
  }
  EXPECT_EQ(
      Get("/api/v1/namespaces/team-a/pods", "exec-token", {{"Impersonate-User", "eve"}}).status,
      403);
  EXPECT_EQ(Get("/api/v1/namespaces/team-a/pods", "bad-token", {}).status, 401);

  std::vector<json> events = AuditEvents();
  ASSERT_EQ(events.size(), 3u);
  const json& exec = events[0];
  EXPECT_EQ(exec["apiVersion"], "audit.k8s.io/v1");
  EXPECT_EQ(exec["kind"], "Event");
  EXPECT_EQ(exec["level"], "Metadata");
  EXPECT_EQ(exec["verb"], "get");
  EXPECT_EQ(exec["stage"], "ResponseStarted");
  EXPECT_EQ(exec["user"]["username"], kExecSa);
  EXPECT_EQ(exec["user"]["uid"], "sa-1");
  EXPECT_EQ(exec["impersonatedUser"]["username"], "alice");
  EXPECT_EQ(exec["impersonatedUser"]["groups"], json({"devs", "system:authenticated"}));
  EXPECT_EQ(exec["impersonatedUser"]["extra"]["podgate-session"], json({"s-42"}));
  EXPECT_EQ(exec["objectRef"]["resource"], "pods");
  EXPECT_EQ(exec["objectRef"]["subresource"], "exec");
  EXPECT_EQ(exec["objectRef"]["namespace"], "team-a");
  EXPECT_EQ(exec["objectRef"]["name"], "api-1");
  EXPECT_EQ(exec["responseStatus"]["code"], 101);
  EXPECT_EQ(exec["annotations"]["authorization.k8s.io/decision"], "allow");
  EXPECT_EQ(exec["sourceIPs"][0], "127.0.0.1");
  EXPECT_EQ(exec["auditID"].get<std::string>().size(), 36u);

  const json& refused = events[1];
  EXPECT_EQ(refused["verb"], "impersonate");
  EXPECT_EQ(refused["objectRef"]["resource"], "users");
  EXPECT_EQ(refused["objectRef"]["name"], "eve");
  EXPECT_FALSE(refused.contains("impersonatedUser"));
  EXPECT_EQ(refused["responseStatus"]["code"], 403);
  EXPECT_EQ(refused["responseStatus"]["reason"], "Forbidden");
  EXPECT_EQ(refused["annotations"]["authorization.k8s.io/decision"], "forbid");

  EXPECT_EQ(events[2]["responseStatus"]["code"], 401);
  EXPECT_EQ(events[2]["user"], json::object());
  // No credential reaches the log.
  std::ifstream in(dir_ + "/audit.log");
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_THAT(all, ::testing::Not(HasSubstr("exec-token")));
  EXPECT_THAT(all, ::testing::Not(HasSubstr("bad-token")));
}

std::string Review(const std::string& kind, const std::string& spec) {
  return R"({"kind":")" + kind + R"(","apiVersion":"authorization.k8s.io/v1","spec":)" + spec + "}";
}

constexpr char kExecInTeamA[] =
    R"({"verb":"create","resource":"pods","subresource":"exec","namespace":"team-a","name":"api-1"})";
constexpr char kExecInTeamB[] =
    R"({"verb":"create","resource":"pods","subresource":"exec","namespace":"team-b"})";

TEST_F(ImpersonationServerTest, SelfSubjectAccessReviewAnswersForTheImpersonatedUser) {
  const std::string path = "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews";
  auto post = [&](const std::string& token, std::vector<std::pair<std::string, std::string>> h,
                  const std::string& body) {
    h.emplace_back("Content-Type", "application/json");
    absl::StatusOr<http::ClientResponse> r =
        http::Fetch(Client(token, std::move(h)), "POST", path, body);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : http::ClientResponse{};
  };
  const std::vector<std::pair<std::string, std::string>> as_alice = {{"Impersonate-User", "alice"},
                                                                     {"Impersonate-Group", "devs"}};
  http::ClientResponse r =
      post("exec-token", as_alice,
           Review("SelfSubjectAccessReview",
                  absl::StrCat(R"({"resourceAttributes":)", kExecInTeamA, "}")));
  ASSERT_EQ(r.status, 201) << r.body;
  json answer = json::parse(r.body);
  EXPECT_EQ(answer["kind"], "SelfSubjectAccessReview");
  EXPECT_EQ(answer["status"]["allowed"], true);
  EXPECT_EQ(answer["spec"]["resourceAttributes"]["namespace"], "team-a");
  r = post("exec-token", as_alice,
           Review("SelfSubjectAccessReview",
                  absl::StrCat(R"({"resourceAttributes":)", kExecInTeamB, "}")));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], false);
  // Without impersonation it answers for the caller: the service account may not exec.
  r = post("exec-token", {},
           Review("SelfSubjectAccessReview",
                  absl::StrCat(R"({"resourceAttributes":)", kExecInTeamA, "}")));
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], false);
  // ...but it may impersonate alice, and not mallory (resourceNames).
  r = post(
      "exec-token", {},
      Review("SelfSubjectAccessReview",
             R"({"resourceAttributes":{"verb":"impersonate","resource":"users","name":"alice"}})"));
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], true);
  r = post(
      "exec-token", {},
      Review(
          "SelfSubjectAccessReview",
          R"({"resourceAttributes":{"verb":"impersonate","resource":"users","name":"mallory"}})"));
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], false);
  // Every authenticated user may ask about themselves.
  r = post("plain-token", {},
           Review("SelfSubjectAccessReview",
                  absl::StrCat(R"({"resourceAttributes":)", kExecInTeamA, "}")));
  ASSERT_EQ(r.status, 201);
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], false);
}

TEST_F(ImpersonationServerTest, SubjectAccessReviewNeedsItsOwnGrant) {
  const std::string path = "/apis/authorization.k8s.io/v1/subjectaccessreviews";
  auto post = [&](const std::string& token, const std::string& body) {
    absl::StatusOr<http::ClientResponse> r = http::Fetch(Client(token, {}), "POST", path, body);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : http::ClientResponse{};
  };
  const std::string alice_devs =
      Review("SubjectAccessReview",
             absl::StrCat(R"({"user":"alice","groups":["devs"],"resourceAttributes":)",
                          kExecInTeamA, "}"));
  http::ClientResponse r = post("exec-token", alice_devs);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], true);
  r = post("exec-token",
           Review("SubjectAccessReview",
                  absl::StrCat(R"({"user":"alice","resourceAttributes":)", kExecInTeamA, "}")));
  EXPECT_EQ(json::parse(r.body)["status"]["allowed"], false) << "alice without devs";
  r = post("plain-token", alice_devs);
  ASSERT_EQ(r.status, 403);
  EXPECT_EQ(json::parse(r.body)["message"],
            "subjectaccessreviews.authorization.k8s.io is forbidden: User "
            "\"system:serviceaccount:podgate:plain\" cannot create resource "
            "\"subjectaccessreviews\" in API group \"authorization.k8s.io\" at the cluster "
            "scope");
  // Bad reviews are the API server's 400 and 422.
  r = post("exec-token", "not json");
  EXPECT_EQ(r.status, 400);
  r = post("exec-token", Review("SelfSubjectAccessReview", "{}"));
  EXPECT_EQ(r.status, 400) << "the wrong kind";
  r = post("exec-token", Review("SubjectAccessReview", R"({"user":"alice"})"));
  ASSERT_EQ(r.status, 422);
  EXPECT_EQ(json::parse(r.body)["reason"], "Invalid");
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("exactly one of nonResourceAttributes or resourceAttributes"));
  r = post("exec-token", Review("SubjectAccessReview",
                                absl::StrCat(R"({"resourceAttributes":)", kExecInTeamA, "}")));
  ASSERT_EQ(r.status, 422);
  EXPECT_THAT(json::parse(r.body)["message"].get<std::string>(),
              HasSubstr("at least one of user or group must be specified"));
  EXPECT_EQ(Get(path, "exec-token", {}).status, 405);
}

// Protobuf as kubectl sends it: a length-delimited field.
std::string Pb(int number, const std::string& bytes) {
  std::string out(1, static_cast<char>((number << 3) | 2));
  out += static_cast<char>(bytes.size());  // every test field is shorter than 128 bytes
  return out + bytes;
}

std::string ProtobufReview(const std::string& kind, const std::string& spec) {
  std::string type_meta = Pb(1, "authorization.k8s.io/v1") + Pb(2, kind);
  return std::string("k8s\0", 4) + Pb(1, type_meta) + Pb(2, Pb(2, spec));
}

TEST(AccessReviewProtobuf, ReadsWhatKubectlSends) {
  std::string attrs = Pb(1, "team-a") + Pb(2, "create") + Pb(5, "pods") + Pb(6, "exec");
  absl::StatusOr<std::string> j =
      AccessReviewProtobufToJson(ProtobufReview("SelfSubjectAccessReview", Pb(1, attrs)), true);
  ASSERT_TRUE(j.ok()) << j.status();
  json review = json::parse(*j);
  EXPECT_EQ(review["kind"], "SelfSubjectAccessReview");
  EXPECT_EQ(review["spec"]["resourceAttributes"], json({{"namespace", "team-a"},
                                                        {"verb", "create"},
                                                        {"resource", "pods"},
                                                        {"subresource", "exec"}}));
  j = AccessReviewProtobufToJson(
      ProtobufReview("SubjectAccessReview",
                     Pb(1, attrs) + Pb(3, "alice") + Pb(4, "devs") + Pb(4, "ops") + Pb(6, "u-1")),
      false);
  ASSERT_TRUE(j.ok()) << j.status();
  review = json::parse(*j);
  EXPECT_EQ(review["spec"]["user"], "alice");
  EXPECT_EQ(review["spec"]["groups"], json({"devs", "ops"}));
  EXPECT_EQ(review["spec"]["uid"], "u-1");
  // The answer for it, through the same authorizer as every request.
  absl::StatusOr<std::string> answer = AnswerAccessReview(TestCluster(), {}, false, *j);
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(json::parse(*answer)["status"]["allowed"], true);
}

TEST(AccessReviewProtobuf, RefusesMalformedBodies) {
  const std::string good = ProtobufReview("SelfSubjectAccessReview", "");
  for (const std::string& bad : {
           std::string("{\"kind\":\"SelfSubjectAccessReview\"}"),  // no magic
           good.substr(0, good.size() - 3),                        // truncated
           ProtobufReview("SubjectAccessReview", ""),              // the other kind
           std::string("k8s\0", 4) + "\x0d\x01\x02\x03\x04",       // fixed32 field
           std::string("k8s\0", 4) + "\x08\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff",
       }) {
    absl::StatusOr<std::string> j = AccessReviewProtobufToJson(bad, true);
    EXPECT_FALSE(j.ok()) << bad;
    EXPECT_EQ(j.status().code(), absl::StatusCode::kInvalidArgument);
  }
}

TEST(AuditLogOpen, FailsOnAnUnwritablePath) {
  std::string dir = testing::MakeTempDir("kubesim-audit");
  absl::StatusOr<std::unique_ptr<AuditLog>> log = AuditLog::Open(dir + "/missing/audit.log");
  ASSERT_FALSE(log.ok());
  EXPECT_THAT(log.status().message(), HasSubstr("cannot open audit log"));
}

}  // namespace
}  // namespace podgate::kubesim
