// Resuming a session through edge (docs/protocol.md, "Resuming a session"), with real
// processes: kubesim, podgate-policy, podgate-audit, podgate-exec with --resume_grace, and
// podgate-edge replicas started and killed by each test. The client is a real WebSocket client
// that keeps its position as the page does (one more seq per output frame, its payload in the
// offset; `seq` and `offset` from exec's JSON messages) and resumes with the
// `podgate.resume.` sub-protocol entry.
#include <csignal>
#include <iostream>
#include <memory>
#include <string>
#include <utility>
#include <vector>

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

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "https://podgate.test";

constexpr char kCluster[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    containers:
      - {name: main, image: demo/app:1}
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
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
)";

// Prints line-1 .. line-N, one every 0.25 s.
std::string Loop(int n, const std::string& tag) {
  return absl::StrCat("sh -c 'i=0; while [ $i -lt ", n, " ]; do i=$((i+1)); echo ", tag,
                      "-$i; sleep 0.25; done'");
}

std::string Lines(int n, const std::string& tag) {
  std::string out;
  for (int i = 1; i <= n; ++i) {
    absl::StrAppend(&out, tag, "-", i, "\n");
  }
  return out;
}

// What the page keeps of a session.
struct Page {
  std::string session_id;
  std::string token;
  uint64_t seq = 0;
  uint64_t offset = 0;
  std::string output;
  std::vector<nlohmann::json> control;  // JSON messages after ready/resumed, in order
  bool contiguous = true;               // every seq exec gave was one more than the last

  void Take(const http::Message& m) {
    if (m.binary) {
      ++seq;
      offset += m.data.size() - 1;
      output += m.data.substr(1);
      return;
    }
    nlohmann::json j = nlohmann::json::parse(m.data);
    if (j.contains("seq")) {
      if (j["seq"].get<uint64_t>() != seq + 1) {
        contiguous = false;
      }
      seq = j["seq"].get<uint64_t>();
      offset = j["offset"].get<uint64_t>();
    }
    control.push_back(std::move(j));
  }

  std::string ResumeEntry() const {
    return absl::StrCat("podgate.resume.", session_id, ".", token, ".", seq, ".", offset);
  }
};

class EdgeResumeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--resume_grace=20s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }

  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  struct Edge {
    std::unique_ptr<Subprocess> process;
    int http_port = 0;
    int metrics_port = 0;
    ~Edge() {
      if (process != nullptr && ::testing::Test::HasFailure()) {
        for (const std::string& l : process->Lines()) {
          std::cerr << l << "\n";
        }
      }
    }
  };

  static void StartEdge(Edge* edge) {
    auto process = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
         "--http_address=127.0.0.1:0",
         absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
         absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
         absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()), "--backend_timeout=10s",
         std::string("--allowed_origins=") + kOrigin, "--jwt_key_file=" + stack_->jwt_secret_file(),
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + testing::Stack::kIssuer,
         "--jwt_audience=podgate", "--drain_timeout=30s"});
    ASSERT_TRUE(process.ok()) << process.status();
    edge->process = *std::move(process);
    auto line = edge->process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    edge->http_port = nlohmann::json::parse(*line)["http_port"].get<int>();
    line = edge->process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    edge->metrics_port = nlohmann::json::parse(*line)["metrics_port"].get<int>();
  }

  static std::string Token(const std::string& user = "ada") {
    return stack_->Token(user, {"admins"});
  }

  // A v1 connection to `edge` offering `extra` sub-protocol entries (a resume), or the refusal.
  static absl::StatusOr<std::unique_ptr<http::WebSocketClient>> Connect(
      const Edge& edge, const std::string& token, const std::vector<std::string>& extra = {},
      http::ClientResponse* refusal = nullptr) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(edge.http_port);
    o.timeout = absl::Seconds(20);
    o.headers.push_back({"Origin", kOrigin});
    std::vector<std::string> offer = {
        "podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)};
    offer.insert(offer.end(), extra.begin(), extra.end());
    return http::WebSocketClient::Connect(o, "/ws/v1/team/app-1?container=main", offer, refusal);
  }

  // The first JSON message (ready or resumed); fills the page's session and token from it.
  static nlohmann::json First(http::WebSocketClient& ws, Page* page) {
    auto m = ws.Read(absl::Seconds(20));
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) {
      return nlohmann::json();
    }
    nlohmann::json j = nlohmann::json::parse(m->data);
    if (j.value("type", "") == "ready" || j.value("type", "") == "resumed") {
      page->session_id = j["session_id"];
      page->token = j["resume"]["token"];
      page->seq = j.value("seq", uint64_t{0});
      page->offset = j.value("offset", uint64_t{0});
    }
    return j;
  }

  // Reads into `page` until `done` holds or the connection ends; false on timeout.
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

  static bool HasExit(const Page& p) {
    for (const nlohmann::json& j : p.control) {
      if (j.value("type", "") == "exit") {
        return true;
      }
    }
    return false;
  }

  static double Metric(const Edge& edge, const std::string& name) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(edge.metrics_port);
    auto r = http::Fetch(o, "GET", "/metrics");
    EXPECT_TRUE(r.ok()) << r.status();
    auto parsed = testing::ParsePrometheusText(r.ok() ? r->body : "");
    EXPECT_TRUE(parsed.ok());
    auto it = parsed->samples.find(name);
    return it == parsed->samples.end() ? -1 : it->second;
  }

  static testing::Stack* stack_;
};

testing::Stack* EdgeResumeTest::stack_ = nullptr;

// The edge a session runs through is SIGKILLed mid-command; the page resumes through a second
// edge and gets every line, in order, once, then the exit. Another user, and the first token
// once used, cannot resume it.
TEST_F(EdgeResumeTest, ASessionSurvivesItsEdgeBeingKilledAndResumesThroughAnother) {
  Edge a;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&a));
  auto ws = Connect(a, Token());
  ASSERT_TRUE(ws.ok()) << ws.status();
  Page page;
  nlohmann::json ready = First(**ws, &page);
  ASSERT_EQ(ready["type"], "ready") << ready;
  EXPECT_EQ(ready["resume"]["grace_seconds"], 20);
  EXPECT_EQ(page.token.size(), 64u) << "256 bits, hex";
  const std::string first_token = page.token;
  ASSERT_TRUE(
      (*ws)
          ->Write(nlohmann::json{{"type", "command"}, {"id", "loop"}, {"line", Loop(16, "line")}}
                      .dump(),
                  false)
          .ok());
  ASSERT_TRUE(ReadUntil(
      **ws, &page, [](const Page& p) { return p.output.find("line-3\n") != std::string::npos; }));
  a.process->Signal(SIGKILL);
  ASSERT_TRUE(a.process->WaitExit(absl::Seconds(10)).ok());
  (*ws)->Abort();

  Edge b;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&b));
  // Another user with the right token: the session is not theirs (the same answer as for an
  // unknown session), and the refusal does not use the token up.
  {
    http::ClientResponse refusal;
    auto other = Connect(b, Token("eve"), {page.ResumeEntry()}, &refusal);
    ASSERT_TRUE(other.ok()) << other.status();
    auto m = (*other)->Read(absl::Seconds(20));
    ASSERT_TRUE(m.ok()) << m.status();
    nlohmann::json j = nlohmann::json::parse(m->data);
    EXPECT_EQ(j["type"], "error") << j;
    EXPECT_EQ(j["code"], "NOT_FOUND") << j;
  }
  auto resumed_ws = Connect(b, Token(), {page.ResumeEntry()});
  ASSERT_TRUE(resumed_ws.ok()) << resumed_ws.status();
  const uint64_t seq_before = page.seq;
  const uint64_t offset_before = page.offset;
  nlohmann::json resumed = First(**resumed_ws, &page);
  ASSERT_EQ(resumed["type"], "resumed") << resumed;
  EXPECT_EQ(resumed["session_id"], ready["session_id"]);
  EXPECT_EQ(resumed["lost_bytes"], 0);
  EXPECT_EQ(resumed["seq"], seq_before);
  EXPECT_EQ(resumed["offset"], offset_before);
  EXPECT_NE(page.token, first_token) << "each resume brings the next token";
  ASSERT_TRUE(ReadUntil(**resumed_ws, &page, HasExit));
  EXPECT_EQ(page.output, Lines(16, "line")) << "every line once, in order";
  EXPECT_TRUE(page.contiguous);
  ASSERT_FALSE(page.control.empty());
  EXPECT_EQ(page.control.back()["type"], "exit");
  EXPECT_EQ(page.control.back()["code"], 0);
  EXPECT_EQ(page.control.back()["offset"], page.output.size());
  EXPECT_EQ(Metric(b, "podgate_edge_sessions_resumed_total"), 1);

  // The first token resumed once; it does not again (while the session runs on b).
  {
    Page stale = page;
    stale.token = first_token;
    auto again = Connect(b, Token(), {stale.ResumeEntry()});
    ASSERT_TRUE(again.ok()) << again.status();
    auto m = (*again)->Read(absl::Seconds(20));
    ASSERT_TRUE(m.ok()) << m.status();
    nlohmann::json j = nlohmann::json::parse(m->data);
    EXPECT_EQ(j["code"], "PERMISSION_DENIED") << j;
  }
  // The session still answers on b, and a deliberate close ends it for good.
  ASSERT_TRUE(
      (*resumed_ws)
          ->Write(
              nlohmann::json{{"type", "command"}, {"id", "after"}, {"line", "echo after"}}.dump(),
              false)
          .ok());
  ASSERT_TRUE(ReadUntil(**resumed_ws, &page, [](const Page& p) {
    return p.output.find("after\n") != std::string::npos && p.control.back()["type"] == "exit";
  }));
  ASSERT_TRUE((*resumed_ws)->Write(R"({"type":"close"})", false).ok());
  ASSERT_TRUE(ReadUntil(**resumed_ws, &page, [](const Page& p) {
    return !p.control.empty() && p.control.back()["type"] == "closed";
  }));
  EXPECT_EQ(page.control.back()["reason"], "client");
  auto gone = Connect(b, Token(), {page.ResumeEntry()});
  ASSERT_TRUE(gone.ok()) << gone.status();
  auto m = (*gone)->Read(absl::Seconds(20));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(nlohmann::json::parse(m->data)["code"], "NOT_FOUND") << m->data;
}

// A rolling update: edge is told to stop (SIGTERM) while a command runs. The page is told at
// once (it does not wait for the command), edge exits, and the command's output meanwhile
// arrives through the next edge.
TEST_F(EdgeResumeTest, EdgeShutdownLeavesARunningSessionToExecForTheNextEdge) {
  Edge a;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&a));
  auto ws = Connect(a, Token());
  ASSERT_TRUE(ws.ok()) << ws.status();
  Page page;
  ASSERT_EQ(First(**ws, &page)["type"], "ready");
  ASSERT_TRUE(
      (*ws)
          ->Write(nlohmann::json{{"type", "command"}, {"id", "roll"}, {"line", Loop(16, "roll")}}
                      .dump(),
                  false)
          .ok());
  ASSERT_TRUE(ReadUntil(
      **ws, &page, [](const Page& p) { return p.output.find("roll-2\n") != std::string::npos; }));
  const absl::Time signalled = absl::Now();
  a.process->Signal(SIGTERM);
  ASSERT_TRUE(ReadUntil(**ws, &page, [](const Page& p) {
    return !p.control.empty() && p.control.back()["type"] == "closed";
  }));
  EXPECT_EQ(page.control.back()["reason"], "shutdown");
  // As a browser does, answer edge's close frame.
  auto end = (*ws)->Read(absl::Seconds(10));
  EXPECT_FALSE(end.ok());
  EXPECT_THAT(std::string(end.status().message()), HasSubstr("1001"));
  auto code = a.process->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  // The loop takes 4 s; edge did not wait for it.
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(3));
  EXPECT_FALSE(HasExit(page));

  Edge b;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&b));
  auto resumed_ws = Connect(b, Token(), {page.ResumeEntry()});
  ASSERT_TRUE(resumed_ws.ok()) << resumed_ws.status();
  nlohmann::json resumed = First(**resumed_ws, &page);
  ASSERT_EQ(resumed["type"], "resumed") << resumed;
  ASSERT_TRUE(ReadUntil(**resumed_ws, &page, HasExit));
  EXPECT_EQ(page.output, Lines(16, "roll"));
  EXPECT_TRUE(page.contiguous);
}

// A WebSocket that breaks (no `close`) leaves the session to exec; one that sends `close`
// ends it. Without a resume entry a connection opens a new session as before.
TEST_F(EdgeResumeTest, OnlyABrokenConnectionLeavesTheSessionForAResume) {
  Edge a;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&a));
  auto ws = Connect(a, Token());
  ASSERT_TRUE(ws.ok()) << ws.status();
  Page page;
  ASSERT_EQ(First(**ws, &page)["type"], "ready");
  (*ws)->Abort();
  // Edge saw the break and left the session to exec.
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (Metric(a, "podgate_edge_sessions_detached_total{why=\"browser_gone\"}") < 1 &&
         absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Metric(a, "podgate_edge_sessions_detached_total{why=\"browser_gone\"}"), 1);
  auto back = Connect(a, Token(), {page.ResumeEntry()});
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(First(**back, &page)["type"], "resumed");
  ASSERT_TRUE((*back)->Write(R"({"type":"close"})", false).ok());
  ASSERT_TRUE(ReadUntil(**back, &page, [](const Page& p) {
    return !p.control.empty() && p.control.back()["type"] == "closed";
  }));
  auto fresh = Connect(a, Token());
  ASSERT_TRUE(fresh.ok()) << fresh.status();
  Page other;
  ASSERT_EQ(First(**fresh, &other)["type"], "ready");
  EXPECT_NE(other.session_id, page.session_id);
}

// A resume entry edge cannot parse is a bad request, answered before any session exists.
TEST_F(EdgeResumeTest, AMalformedResumeEntryIsRefusedWith400) {
  Edge a;
  ASSERT_NO_FATAL_FAILURE(StartEdge(&a));
  for (const std::string& bad :
       std::vector<std::string>{"podgate.resume.s1.tok.1", "podgate.resume.s1.tok.x.2",
                                "podgate.resume.s1.tok.1.2, podgate.resume.s1.tok.1.2"}) {
    http::ClientResponse refusal;
    auto ws = Connect(a, Token(), {bad}, &refusal);
    EXPECT_FALSE(ws.ok()) << bad;
    EXPECT_EQ(refusal.status, 400) << bad;
    EXPECT_THAT(refusal.body, HasSubstr("INVALID_ARGUMENT")) << bad;
    EXPECT_THAT(refusal.body, HasSubstr("resume sub-protocol entry")) << refusal.body;
  }
}

}  // namespace
}  // namespace podgate
