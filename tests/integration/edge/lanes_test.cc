// Browser sessions as lanes of one exec Sessions stream (edge's --exec_lanes, the default),
// with real processes: kubesim, podgate-policy, podgate-audit, podgate-exec and podgate-edge.
// Several browser sessions share one stream to exec and each runs its own commands; a browser
// that stops reading holds up only its own session; --exec_lanes=false, or an exec without
// Sessions, gives each session a Session call of its own. (Every other edge test runs over
// lanes too, the default.)
#include <chrono>
#include <csignal>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/exec_session.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
namespace pb = podgate::exec::v1;

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
defaults: {timeLimit: 60s, outputLimitBytes: 67108864}
rules:
  - id: admins-anything
    effect: allow
    subjects: {groups: [admins]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
)";

// An exec from before Sessions: a gRPC server with only ExecService.Session, each call relayed
// unchanged to the real exec (which does all the work); Sessions answers UNIMPLEMENTED, as a
// server without the method does.
class SessionOnlyExec final : public pb::ExecService::Service {
 public:
  explicit SessionOnlyExec(int exec_port)
      : stub_(pb::ExecService::NewStub(testing::LoopbackChannel(exec_port))) {
    grpc::ServerBuilder builder;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port_);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
  }
  ~SessionOnlyExec() override { server_->Shutdown(std::chrono::system_clock::now()); }
  int port() const { return port_; }

  grpc::Status Session(
      grpc::ServerContext* context,
      grpc::ServerReaderWriter<pb::SessionResponse, pb::SessionRequest>* client) override {
    grpc::ClientContext call;
    for (const auto& [key, value] : context->client_metadata()) {
      if (key == "traceparent") {
        call.AddMetadata("traceparent", std::string(value.data(), value.size()));
      }
    }
    auto exec = stub_->Session(&call);
    std::thread back([&] {
      pb::SessionResponse response;
      while (exec->Read(&response)) {
        if (!client->Write(response)) {
          call.TryCancel();
          break;
        }
      }
    });
    pb::SessionRequest request;
    while (client->Read(&request)) {
      if (!exec->Write(request)) {
        break;
      }
    }
    if (context->IsCancelled()) {
      call.TryCancel();
    } else {
      exec->WritesDone();
    }
    back.join();
    return exec->Finish();
  }

 private:
  std::unique_ptr<pb::ExecService::Stub> stub_;
  int port_ = 0;
  std::unique_ptr<grpc::Server> server_;
};

class EdgeLanesTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }

  // `exec_port` 0: the stack's exec.
  void StartEdge(const std::vector<std::string>& extra = {}, int exec_port = 0) {
    std::vector<std::string> args = {
        "--grpc_address=127.0.0.1:0",
        "--metrics_address=127.0.0.1:0",
        "--http_address=127.0.0.1:0",
        absl::StrCat("--exec_address=127.0.0.1:", exec_port != 0 ? exec_port : stack_->exec_port()),
        absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
        absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()),
        std::string("--allowed_origins=") + kOrigin,
        "--jwt_key_file=" + stack_->jwt_secret_file(),
        "--jwt_algorithm=HS256",
        std::string("--jwt_issuer=") + testing::Stack::kIssuer,
        "--jwt_audience=podgate"};
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = Subprocess::Start(PODGATE_EDGE_BIN, args);
    ASSERT_TRUE(process.ok()) << process.status();
    edge_ = *std::move(process);
    auto line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    http_port_ = nlohmann::json::parse(*line)["http_port"].get<int>();
  }

  // A v1 session for `user`, once `ready` has come.
  std::unique_ptr<http::WebSocketClient> Open(const std::string& user) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(http_port_);
    o.timeout = absl::Seconds(20);
    o.headers.push_back({"Origin", kOrigin});
    const std::string token = stack_->Token(user, {"admins"});
    auto ws = http::WebSocketClient::Connect(
        o, "/ws/v1/team/app-1?container=main",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)});
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return nullptr;
    }
    auto ready = (*ws)->Read(absl::Seconds(20));
    EXPECT_TRUE(ready.ok()) << ready.status();
    if (!ready.ok() || nlohmann::json::parse(ready->data)["type"] != "ready") {
      ADD_FAILURE() << (ready.ok() ? ready->data : "no ready");
      return nullptr;
    }
    return *std::move(ws);
  }

  // Runs `line` and returns its output, or "<failed: ...>".
  static std::string Run(http::WebSocketClient& ws, const std::string& id, const std::string& line,
                         int64_t* bytes = nullptr) {
    if (!ws.Write(nlohmann::json{{"type", "command"}, {"id", id}, {"line", line}}.dump(), false)
             .ok()) {
      return "<failed: write>";
    }
    std::string out;
    for (;;) {
      auto m = ws.Read(absl::Seconds(30));
      if (!m.ok()) {
        return absl::StrCat("<failed: ", m.status().ToString(), ">");
      }
      if (m->binary) {
        // v1 output frames: a header byte, then the bytes.
        if (bytes != nullptr) {
          *bytes += static_cast<int64_t>(m->data.size()) - 1;
        } else {
          out += m->data.substr(1);
        }
        continue;
      }
      nlohmann::json j = nlohmann::json::parse(m->data);
      if (j["type"] == "exit") {
        return out;
      }
      if (j["type"] == "denied" || j["type"] == "error") {
        return absl::StrCat("<failed: ", m->data, ">");
      }
    }
  }

  static double ExecMetric(const std::string& sample) {
    return testing::MetricSample(stack_->exec_metrics_port(), sample);
  }
  static bool WaitForExecMetric(const std::string& sample, double want) {
    for (int i = 0; i < 200; ++i) {
      if (ExecMetric(sample) == want) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(50));
    }
    return false;
  }

  static testing::Stack* stack_;
  std::unique_ptr<Subprocess> edge_;
  int http_port_ = 0;
};
testing::Stack* EdgeLanesTest::stack_ = nullptr;

TEST_F(EdgeLanesTest, BrowserSessionsShareOneStreamToExecEachWithItsOwnCommands) {
  StartEdge();
  std::vector<std::unique_ptr<http::WebSocketClient>> sessions;
  for (const char* user : {"ada", "bob", "cy"}) {
    sessions.push_back(Open(user));
    ASSERT_NE(sessions.back(), nullptr) << user;
  }
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 1);
  EXPECT_EQ(ExecMetric("podgate_exec_session_lanes"), 3);
  for (size_t i = 0; i < sessions.size(); ++i) {
    EXPECT_EQ(Run(*sessions[i], "c", absl::StrCat("echo session-", i)),
              absl::StrCat("session-", i, "\n"));
  }
  sessions.clear();  // the browsers go away
  EXPECT_TRUE(WaitForExecMetric("podgate_exec_session_lanes", 0));
  // The stream stays for the next sessions.
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 1);
  auto again = Open("ada");
  ASSERT_NE(again, nullptr);
  EXPECT_EQ(Run(*again, "c", "echo again"), "again\n");
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 1);
}

TEST_F(EdgeLanesTest, ABrowserThatStopsReadingHoldsUpOnlyItsOwnSession) {
  StartEdge();
  auto slow = Open("ada");
  auto quick = Open("bob");
  ASSERT_NE(slow, nullptr);
  ASSERT_NE(quick, nullptr);
  // 16 MiB the slow browser does not read for now: exec and edge hold at most their windows.
  constexpr int64_t kBytes = 16 * 1024 * 1024;
  ASSERT_TRUE(slow->Write(nlohmann::json{{"type", "command"},
                                         {"id", "big"},
                                         {"line", absl::StrCat("head -c ", kBytes, " /dev/zero")}}
                              .dump(),
                          false)
                  .ok());
  absl::SleepFor(absl::Seconds(1));
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(Run(*quick, absl::StrCat("q", i), absl::StrCat("echo quick-", i)),
              absl::StrCat("quick-", i, "\n"));
  }
  // The slow browser reads now: every byte, then the exit.
  int64_t seen = 0;
  for (;;) {
    auto m = slow->Read(absl::Seconds(30));
    ASSERT_TRUE(m.ok()) << m.status() << " after " << seen << " bytes";
    if (m->binary) {
      seen += static_cast<int64_t>(m->data.size()) - 1;
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(m->data);
    if (j["type"] == "exit") {
      EXPECT_EQ(j["code"], 0) << m->data;
      break;
    }
  }
  EXPECT_EQ(seen, kBytes);
}

TEST_F(EdgeLanesTest, OnShutdownTheStreamToExecEndsWithItsLanesAndEdgeExitsAtOnce) {
  StartEdge();
  {
    auto a = Open("ada");
    auto b = Open("bob");
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    EXPECT_EQ(Run(*a, "c", "echo a"), "a\n");
  }
  EXPECT_TRUE(WaitForExecMetric("podgate_exec_session_lanes", 0));
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 1);
  const absl::Time signalled = absl::Now();
  edge_->Signal(SIGTERM);
  auto code = edge_->WaitExit(absl::Seconds(20));
  ASSERT_TRUE(code.ok()) << code.status();
  EXPECT_EQ(*code, 0);
  // Nothing waited for the drain's grace (2 s) and was cancelled after it: edge half-closed the
  // stream and exec ended it.
  EXPECT_LT(absl::Now() - signalled, absl::Seconds(5));
  for (const std::string& line : edge_->Lines()) {
    EXPECT_EQ(line.find("cancelling backend calls still in flight"), std::string::npos) << line;
  }
  EXPECT_TRUE(WaitForExecMetric("podgate_exec_session_streams", 0));
}

TEST_F(EdgeLanesTest, WithoutLanesEachBrowserSessionHasASessionCallOfItsOwn) {
  StartEdge({"--exec_lanes=false"});
  auto a = Open("ada");
  auto b = Open("bob");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Run(*a, "c", "echo a"), "a\n");
  EXPECT_EQ(Run(*b, "c", "echo b"), "b\n");
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 0);
  EXPECT_EQ(ExecMetric("podgate_exec_session_lanes"), 0);
  EXPECT_EQ(ExecMetric("podgate_exec_sessions_active{mode=\"command\"}"), 2);
}

TEST_F(EdgeLanesTest, AnExecWithoutSessionsGetsACallForEverySessionAfterTheFirstTry) {
  SessionOnlyExec older(stack_->exec_port());
  StartEdge({}, older.port());
  // The first session tries a lane; the answer (UNIMPLEMENTED) ends it before `ready`.
  {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(http_port_);
    o.timeout = absl::Seconds(20);
    o.headers.push_back({"Origin", kOrigin});
    const std::string token = stack_->Token("ada", {"admins"});
    auto ws = http::WebSocketClient::Connect(
        o, "/ws/v1/team/app-1?container=main",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)});
    ASSERT_TRUE(ws.ok()) << ws.status();
    bool ready = false;
    for (;;) {
      auto m = (*ws)->Read(absl::Seconds(20));
      if (!m.ok()) {
        break;  // closed
      }
      if (!m->binary && nlohmann::json::parse(m->data)["type"] == "ready") {
        ready = true;
      }
    }
    EXPECT_FALSE(ready);
  }
  ASSERT_TRUE(edge_->WaitForLine("exec serves no Sessions stream", absl::Seconds(10)).ok());
  // Every session after it has a Session call of its own, through the older exec.
  auto a = Open("ada");
  auto b = Open("bob");
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(Run(*a, "c", "echo a"), "a\n");
  EXPECT_EQ(Run(*b, "c", "echo b"), "b\n");
  EXPECT_EQ(ExecMetric("podgate_exec_session_streams"), 0);
  EXPECT_EQ(ExecMetric("podgate_exec_sessions_active{mode=\"command\"}"), 2);
}

}  // namespace
}  // namespace podgate
