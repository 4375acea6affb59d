// Joining a session through edge (docs/protocol.md, "Joining a session"), with real processes:
// kubesim, podgate-policy, podgate-audit, podgate-exec and podgate-edge. A user with an observe
// rule lists live sessions over HTTP and joins one over /ws/join/{id}, read-only; a moderator
// starts a moderated shell and ends it by leaving; the handshake refuses malformed joins before
// exec sees them, and exec's refusals reach the page with their reasons.
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "https://podgate.test";

constexpr char kCluster[] = R"(namespaces:
  - name: team
  - name: prod
pods:
  - name: app-1
    namespace: team
    containers:
      - {name: main, image: demo/app:1}
  - name: api-0
    namespace: prod
    containers:
      - {name: main, image: demo/api:1}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 60s}
rules:
  - id: devs-anything
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
  - id: devs-shell-prod
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [prod]}
    shell: true
    moderated: true
  - id: auditors-watch
    effect: allow
    subjects: {groups: [auditors]}
    targets: {namespaces: ["*"]}
    join: observe
  - id: sre-moderate
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: ["*"]}
    join: moderate
)";

// What a page has received: output text and the JSON messages in order.
struct Page {
  std::string output;
  std::vector<nlohmann::json> control;
  void Take(const http::Message& m) {
    if (m.binary) {
      output += m.data.substr(1);
      return;
    }
    control.push_back(nlohmann::json::parse(m.data));
  }
  const nlohmann::json* Last(const std::string& type) const {
    for (auto it = control.rbegin(); it != control.rend(); ++it) {
      if (it->value("type", "") == type) {
        return &*it;
      }
    }
    return nullptr;
  }
};

class EdgeJoinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    auto process = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
         "--http_address=127.0.0.1:0",
         absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
         absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
         absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()), "--backend_timeout=10s",
         std::string("--allowed_origins=") + kOrigin, "--jwt_key_file=" + stack_->jwt_secret_file(),
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + testing::Stack::kIssuer,
         "--jwt_audience=podgate"});
    ASSERT_TRUE(process.ok()) << process.status();
    edge_ = process->release();
    auto line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    port_ = nlohmann::json::parse(*line)["http_port"].get<int>();
  }
  static void TearDownTestSuite() {
    delete edge_;
    edge_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static absl::StatusOr<std::unique_ptr<http::WebSocketClient>> Connect(
      const std::string& token, const std::string& path, http::ClientResponse* refusal = nullptr,
      const std::vector<std::string>& extra = {}) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(port_);
    o.timeout = absl::Seconds(20);
    o.headers.push_back({"Origin", kOrigin});
    std::vector<std::string> offer = {
        "podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)};
    offer.insert(offer.end(), extra.begin(), extra.end());
    return http::WebSocketClient::Connect(o, path, offer, refusal);
  }

  static absl::StatusOr<http::ClientResponse> Get(const std::string& token,
                                                  const std::string& path) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(port_);
    o.timeout = absl::Seconds(20);
    if (!token.empty()) {
      o.headers.push_back({"Authorization", "Bearer " + token});
    }
    return http::Fetch(o, "GET", path);
  }

  template <class Done>
  static bool ReadUntil(http::WebSocketClient& ws, Page* page, Done done,
                        absl::Duration timeout = absl::Seconds(30)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (!done(*page)) {
      auto m = ws.Read(deadline - absl::Now());
      if (!m.ok()) {
        return done(*page);
      }
      page->Take(*m);
    }
    return true;
  }

  static void Send(http::WebSocketClient& ws, const nlohmann::json& j) {
    ASSERT_TRUE(ws.Write(j.dump(), false).ok());
  }

  static testing::Stack* stack_;
  static Subprocess* edge_;
  static int port_;
};

testing::Stack* EdgeJoinTest::stack_ = nullptr;
Subprocess* EdgeJoinTest::edge_ = nullptr;
int EdgeJoinTest::port_ = 0;

TEST_F(EdgeJoinTest, AnAuditorListsAndWatchesASessionLiveAndCannotTypeIntoIt) {
  auto owner = Connect(stack_->Token("alice", {"devs"}), "/ws/v1/team/app-1?container=main");
  ASSERT_TRUE(owner.ok()) << owner.status();
  Page o;
  ASSERT_TRUE(ReadUntil(**owner, &o, [](const Page& p) { return p.Last("ready") != nullptr; }));
  const nlohmann::json ready = *o.Last("ready");
  EXPECT_EQ(ready["role"], "owner");
  EXPECT_EQ(ready["moderator_required"], false);
  const std::string id = ready["session_id"];

  const std::string ann = stack_->Token("ann", {"auditors"});
  auto listed = Get(ann, "/api/v1/sessions");
  ASSERT_TRUE(listed.ok()) << listed.status();
  ASSERT_EQ(listed->status, 200) << listed->body;
  nlohmann::json sessions = nlohmann::json::parse(listed->body)["sessions"];
  ASSERT_EQ(sessions.size(), 1u) << listed->body;
  EXPECT_EQ(sessions[0]["session_id"], id);
  EXPECT_EQ(sessions[0]["user"], "alice");
  EXPECT_EQ(sessions[0]["namespace"], "team");
  EXPECT_EQ(sessions[0]["pod"], "app-1");
  EXPECT_EQ(sessions[0]["mode"], "command");
  EXPECT_EQ(sessions[0]["may_moderate"], false);
  EXPECT_EQ(sessions[0]["participants"][0]["role"], "owner");
  // Without a credential: 401; a developer without a join rule: nothing listed.
  auto anonymous = Get("", "/api/v1/sessions");
  ASSERT_TRUE(anonymous.ok());
  EXPECT_EQ(anonymous->status, 401);
  auto dev = Get(stack_->Token("bob", {"devs"}), "/api/v1/sessions");
  ASSERT_TRUE(dev.ok());
  EXPECT_EQ(nlohmann::json::parse(dev->body)["sessions"].size(), 0u) << dev->body;

  auto watcher = Connect(ann, "/ws/join/" + id);
  ASSERT_TRUE(watcher.ok()) << watcher.status();
  Page w;
  ASSERT_TRUE(ReadUntil(**watcher, &w, [](const Page& p) { return p.Last("participants"); }));
  ASSERT_NE(w.Last("ready"), nullptr);
  EXPECT_EQ((*w.Last("ready"))["role"], "observer");
  EXPECT_EQ((*w.Last("ready"))["user"], "alice");
  EXPECT_FALSE(w.Last("ready")->contains("resume"));
  const nlohmann::json& people = (*w.Last("participants"))["participants"];
  ASSERT_EQ(people.size(), 2u);
  EXPECT_EQ(people[1]["user"], "ann");
  EXPECT_EQ(people[1]["role"], "observer");

  Send(**owner, {{"type", "command"}, {"id", "c1"}, {"line", "sh -c 'echo from-alice'"}});
  ASSERT_TRUE(ReadUntil(**watcher, &w, [](const Page& p) { return p.Last("exit") != nullptr; }));
  ASSERT_NE(w.Last("command"), nullptr);
  EXPECT_EQ((*w.Last("command"))["id"], "c1");
  EXPECT_EQ((*w.Last("command"))["line"], "sh -c 'echo from-alice'");
  EXPECT_EQ(w.output, "from-alice\n");
  // The owner's page heard the join too.
  ASSERT_TRUE(ReadUntil(**owner, &o, [](const Page& p) { return p.Last("exit") != nullptr; }));
  ASSERT_NE(o.Last("participants"), nullptr);

  // Typing in a joined session is refused by exec and runs nothing.
  Send(**watcher, {{"type", "command"}, {"id", "w1"}, {"line", "sh -c 'echo from-ann'"}});
  ASSERT_TRUE(ReadUntil(**watcher, &w, [](const Page& p) { return p.Last("error") != nullptr; }));
  EXPECT_EQ((*w.Last("error"))["code"], "PERMISSION_DENIED");
  EXPECT_EQ((*w.Last("error"))["id"], "w1");
  EXPECT_EQ(w.output, "from-alice\n");

  // Leaving: the watcher's page is closed normally, the owner's session goes on.
  Send(**watcher, {{"type", "close"}});
  ASSERT_TRUE(ReadUntil(**watcher, &w, [](const Page& p) { return p.Last("closed") != nullptr; }));
  EXPECT_EQ((*w.Last("closed"))["reason"], "client");
  Send(**owner, {{"type", "command"}, {"id", "c2"}, {"line", "sh -c 'echo still'"}});
  ASSERT_TRUE(ReadUntil(
      **owner, &o, [](const Page& p) { return p.output.find("still\n") != std::string::npos; }));
}

TEST_F(EdgeJoinTest, AModeratorStartsAModeratedShellAndItsLeavingEndsIt) {
  auto owner =
      Connect(stack_->Token("alice", {"devs"}), "/ws/v1/prod/api-0?container=main&mode=shell");
  ASSERT_TRUE(owner.ok()) << owner.status();
  Page o;
  ASSERT_TRUE(ReadUntil(**owner, &o, [](const Page& p) { return p.Last("participants"); }));
  EXPECT_EQ((*o.Last("ready"))["moderator_required"], true);
  EXPECT_EQ((*o.Last("participants"))["waiting_for_moderator"], true);
  const std::string id = (*o.Last("ready"))["session_id"];

  // An auditor may not moderate: exec's refusal reaches the page with its reason.
  auto pretender = Connect(stack_->Token("ann", {"auditors"}), "/ws/join/" + id + "?moderator=1");
  ASSERT_TRUE(pretender.ok()) << pretender.status();
  Page p;
  ReadUntil(**pretender, &p, [](const Page& pg) { return pg.Last("error") != nullptr; });
  ASSERT_NE(p.Last("error"), nullptr);
  EXPECT_EQ((*p.Last("error"))["code"], "PERMISSION_DENIED");
  EXPECT_THAT((*p.Last("error"))["message"].get<std::string>(), HasSubstr("not moderate it"));

  auto moderator = Connect(stack_->Token("sam", {"sre"}), "/ws/join/" + id + "?moderator=1");
  ASSERT_TRUE(moderator.ok()) << moderator.status();
  Page m;
  ASSERT_TRUE(ReadUntil(**moderator, &m, [](const Page& pg) {
    return pg.Last("participants") != nullptr &&
           (*pg.Last("participants"))["waiting_for_moderator"] == false;
  }));
  EXPECT_EQ((*m.Last("ready"))["role"], "moderator");
  ASSERT_TRUE((*owner)->Write(std::string("\0echo mod-$((40+2))\n", 21), true).ok());
  ASSERT_TRUE(ReadUntil(**moderator, &m, [](const Page& pg) {
    return pg.output.find("mod-42") != std::string::npos;
  }));
  Send(**moderator, {{"type", "close"}});
  ASSERT_TRUE(ReadUntil(**owner, &o, [](const Page& pg) { return pg.Last("closed") != nullptr; }));
  EXPECT_EQ((*o.Last("closed"))["reason"], "moderator_left");
  EXPECT_THAT((*o.Last("closed"))["message"].get<std::string>(),
              HasSubstr("the last moderator (sam) left"));
}

TEST_F(EdgeJoinTest, MalformedJoinsAreRefusedAtTheHandshake) {
  const std::string sam = stack_->Token("sam", {"sre"});
  for (const std::string& path :
       {std::string("/ws/join/bad.id"), std::string("/ws/join/abc?moderator=yes"),
        std::string("/ws/join/abc?container=main"),
        std::string("/ws/join/") + std::string(129, 'a')}) {
    http::ClientResponse refusal;
    auto ws = Connect(sam, path, &refusal);
    EXPECT_FALSE(ws.ok()) << path;
    EXPECT_EQ(refusal.status, 400) << path << " " << refusal.body;
  }
  http::ClientResponse refusal;
  auto resumed = Connect(sam, "/ws/join/abc", &refusal, {"podgate.resume.abc.def.1.0"});
  EXPECT_FALSE(resumed.ok());
  EXPECT_EQ(refusal.status, 400);
  EXPECT_THAT(refusal.body, HasSubstr("a join cannot be resumed"));
  // An unknown session: exec's NOT_FOUND, after the upgrade.
  auto unknown = Connect(sam, "/ws/join/no-such-session");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  Page p;
  ReadUntil(**unknown, &p, [](const Page& pg) { return pg.Last("error") != nullptr; });
  ASSERT_NE(p.Last("error"), nullptr);
  EXPECT_EQ((*p.Last("error"))["code"], "NOT_FOUND");
}

}  // namespace
}  // namespace podgate
