// Chaos under load: clients keep running commands through exec directly (gRPC, as another
// backend does) and through edge (v1 WebSockets, as the page does) while podgate-audit and then
// podgate-policy are killed with SIGKILL and restarted on the same port and store. Afterwards
// every command a client sent is compared with audit's Query: nothing exec or edge recorded is
// lost, every command that ran has its result, and every command refused during an outage was
// refused before reaching the pod (fail closed), never run unrecorded. Each command touches a
// marker file of its own in the container, so "did it run" is read from the container itself.
// (kill -9 of exec is covered with exec's restart journal, elsewhere.)
#include <signal.h>

#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "auth/jwt.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "support/exec_session.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
namespace common = podgate::common::v1;
namespace audit_pb = podgate::audit::v1;

constexpr char kOrigin[] = "https://podgate.test";
constexpr char kIssuer[] = "https://issuer.podgate.test";
constexpr char kSecret[] = "a-chaos-test-secret-that-is-long-enough!!";

constexpr char kCluster[] = R"(namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - name: app
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s, outputLimitBytes: 65536}
rules:
  - id: load-touch
    effect: allow
    subjects: {groups: [load]}
    targets: {namespaces: [demo]}
    command:
      program: touch
      args:
        - {name: marker, type: regex, pattern: "m-[a-z0-9-]+"}
)";

// A client waits this long after a refusal before its next command, as a person or a backend
// would (and edge's message rate limit expects).
constexpr absl::Duration kRefusalPause = absl::Milliseconds(50);

void WriteFile(const std::string& path, const std::string& text) { std::ofstream(path) << text; }

int JsonPort(const std::string& line, const char* key) {
  return nlohmann::json::parse(line)[key].get<int>();
}

// One service process that can be killed and started again on the same port.
struct Service {
  Service(std::string n, std::string b, std::vector<std::string> a)
      : name(std::move(n)), binary(std::move(b)), args(std::move(a)) {}

  std::string name;
  std::string binary;
  std::vector<std::string> args;  // without --grpc_address
  int port = 0;
  std::unique_ptr<Subprocess> process;

  void Start() {
    std::vector<std::string> all = args;
    all.push_back(absl::StrCat("--grpc_address=127.0.0.1:", port));
    auto p = Subprocess::Start(binary, all);
    ASSERT_TRUE(p.ok()) << p.status();
    process = *std::move(p);
    auto line = process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(30));
    ASSERT_TRUE(line.ok()) << name << ": " << line.status();
    port = JsonPort(*line, "grpc_port");
  }

  void Kill() {
    process->Signal(SIGKILL);
    ASSERT_TRUE(process->WaitExit(absl::Seconds(10)).ok());
  }

  ~Service() {
    if (process != nullptr) {
      process->Signal(SIGTERM);
      if (!process->WaitExit(absl::Seconds(10)).ok()) {
        process->Signal(SIGKILL);
      }
    }
  }
};

// One command as its client saw it.
struct Sent {
  std::string session_id;
  std::string id;
  std::string marker;
  enum Outcome { kRan, kRefused, kLost } outcome = kLost;
  std::string detail;
  absl::Time ended;  // when the client saw the outcome
};

class Ledger {
 public:
  void Add(Sent s) {
    absl::MutexLock lock(&mu_);
    sent_.push_back(std::move(s));
  }
  void Opened(const std::string& session_id) {
    absl::MutexLock lock(&mu_);
    sessions_.insert(session_id);
  }
  std::vector<Sent> sent() {
    absl::MutexLock lock(&mu_);
    return sent_;
  }
  std::set<std::string> sessions() {
    absl::MutexLock lock(&mu_);
    return sessions_;
  }

 private:
  absl::Mutex mu_;
  std::vector<Sent> sent_ ABSL_GUARDED_BY(mu_);
  std::set<std::string> sessions_ ABSL_GUARDED_BY(mu_);
};

std::string Token(const std::string& user, const std::vector<std::string>& groups,
                  absl::Duration ttl = absl::Minutes(10)) {
  auth::Key key;
  key.alg = auth::Algorithm::kHS256;
  key.secret = kSecret;
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return *auth::Sign({{"iss", kIssuer},
                      {"aud", "podgate"},
                      {"sub", user},
                      {"groups", groups},
                      {"iat", now - 60},
                      {"exp", now + absl::ToInt64Seconds(ttl)}},
                     key);
}

// A client of exec's gRPC Session: one long-lived session, reopened when it ends.
void DirectClient(int exec_port, const std::string& name, std::atomic<bool>* stop, Ledger* ledger) {
  auto channel = testing::LoopbackChannel(exec_port);
  const std::string token = Token(name, {"load"});
  int n = 0;
  while (!*stop) {
    testing::ExecSession session(channel, absl::Minutes(2));
    auto ready = session.Open(token, "demo", "web-1");
    if (!ready.ok()) {
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    ledger->Opened(ready->session_id());
    while (!*stop) {
      Sent s;
      s.session_id = ready->session_id();
      s.id = absl::StrCat(name, "-", n++);
      s.marker = "m-" + s.id;
      testing::CommandOutcome o = session.Run("touch " + s.marker, s.id);
      if (o.exit.has_value()) {
        s.outcome = o.exit->termination() == common::TERMINATION_EXITED && o.exit->exit_code() == 0
                        ? Sent::kRan
                        : Sent::kLost;
        s.detail = o.exit->DebugString();
      } else if (o.denied.has_value() || o.error.has_value()) {
        s.outcome = Sent::kRefused;
        s.detail = o.denied ? o.denied->DebugString() : o.error->DebugString();
      } else {
        s.detail = "the stream ended";
      }
      const bool ended = o.stream_ended;
      s.ended = absl::Now();
      const bool pause = s.outcome == Sent::kRefused;
      ledger->Add(std::move(s));
      if (pause) {
        absl::SleepFor(kRefusalPause);
      }
      if (ended) {
        break;
      }
    }
    session.Close();
  }
}

// A browser through edge's v1 protocol: one long-lived WebSocket, reconnected when it ends.
void EdgeClient(int http_port, const std::string& name, std::atomic<bool>* stop, Ledger* ledger) {
  http::ClientOptions options;
  options.port = static_cast<uint16_t>(http_port);
  options.headers.push_back({"Origin", kOrigin});
  const std::string token = Token(name, {"load"});
  int n = 0;
  while (!*stop) {
    auto ws = http::WebSocketClient::Connect(
        options, "/ws/v1/demo/web-1",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)});
    if (!ws.ok()) {
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    auto first = (*ws)->Read(absl::Seconds(20));
    nlohmann::json ready =
        first.ok() ? nlohmann::json::parse(first->data, nullptr, false) : nlohmann::json();
    if (!ready.is_object() || ready.value("type", "") != "ready") {
      absl::SleepFor(absl::Milliseconds(50));
      continue;
    }
    const std::string session_id = ready.value("session_id", "");
    ledger->Opened(session_id);
    bool open = true;
    while (open && !*stop) {
      Sent s;
      s.session_id = session_id;
      s.id = absl::StrCat(name, "-", n++);
      s.marker = "m-" + s.id;
      if (!(*ws)
               ->Write(
                   nlohmann::json{{"type", "command"}, {"id", s.id}, {"line", "touch " + s.marker}}
                       .dump(),
                   false)
               .ok()) {
        s.detail = "write failed";
        ledger->Add(std::move(s));
        break;
      }
      while (true) {
        auto m = (*ws)->Read(absl::Seconds(30));
        if (!m.ok()) {
          s.detail = absl::StrCat("the connection ended: ", m.status().ToString());
          open = false;
          break;
        }
        if (m->binary) {
          continue;
        }
        nlohmann::json j = nlohmann::json::parse(m->data, nullptr, false);
        const std::string type = j.is_object() ? j.value("type", "") : "";
        if (type == "exit") {
          s.outcome = j.value("termination", "") == "exited" && j.value("code", -1) == 0
                          ? Sent::kRan
                          : Sent::kLost;
          s.detail = m->data;
          break;
        }
        if (type == "denied" || type == "error") {
          s.outcome = Sent::kRefused;
          s.detail = m->data;
          break;
        }
        if (type == "closed") {
          s.detail = m->data;
          open = false;
          break;
        }
      }
      s.ended = absl::Now();
      const bool pause = s.outcome == Sent::kRefused;
      ledger->Add(std::move(s));
      if (pause) {
        absl::SleepFor(kRefusalPause);
      }
    }
    (*ws)->Write(nlohmann::json{{"type", "close"}}.dump(), false).IgnoreError();
    for (int i = 0; i < 10 && (*ws)->Read(absl::Seconds(5)).ok(); ++i) {
    }
  }
}

// Every record in audit, oldest first.
std::vector<audit_pb::AuditRecord> AllRecords(int audit_port) {
  auto stub = audit_pb::AuditService::NewStub(testing::LoopbackChannel(audit_port));
  std::vector<audit_pb::AuditRecord> out;
  std::string token;
  do {
    grpc::ClientContext ctx;
    ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::Seconds(20)));
    audit_pb::QueryRequest req;
    req.set_page_size(1000);
    req.set_page_token(token);
    token.clear();
    auto reader = stub->Query(&ctx, req);
    audit_pb::QueryResponse res;
    while (reader->Read(&res)) {
      if (res.has_record()) {
        out.push_back(res.record());
      } else if (res.has_page_end()) {
        token = res.page_end().next_page_token();
      }
    }
    EXPECT_TRUE(reader->Finish().ok());
  } while (!token.empty());
  return out;
}

TEST(ChaosTest, KillingAuditAndPolicyUnderLoadLosesNoRecordAndRunsNothingUnrecorded) {
  const std::string d = testing::MakeTempDir("podgate-chaos");
  WriteFile(d + "/cluster.yaml", kCluster);
  WriteFile(d + "/policy.yaml", kPolicy);
  WriteFile(d + "/tokens.csv", "exec-sa-token,podgate-exec,1001\n");
  WriteFile(d + "/jwt.secret", kSecret);
  auto kubesim = Subprocess::Start(
      PODGATE_KUBESIM_BIN, {"--port=0", "--cluster=" + d + "/cluster.yaml",
                            "--token_file=" + d + "/tokens.csv", "--state_dir=" + d + "/kube"});
  ASSERT_TRUE(kubesim.ok()) << kubesim.status();
  auto kubesim_line = (*kubesim)->WaitForLine("\"msg\":\"serving\"", absl::Seconds(30));
  ASSERT_TRUE(kubesim_line.ok()) << kubesim_line.status();
  const std::string kubeconfig = nlohmann::json::parse(*kubesim_line)["kubeconfig"];

  const std::vector<std::string> jwt = {"--jwt_key_file=" + d + "/jwt.secret",
                                        "--jwt_algorithm=HS256",
                                        std::string("--jwt_issuer=") + kIssuer};
  Service audit{"audit",
                PODGATE_AUDIT_BIN,
                {"--metrics_address=", "--drain_timeout=2s", "--store=sqlite://" + d + "/audit.db",
                 "--chain_id=chaos"}};
  ASSERT_NO_FATAL_FAILURE(audit.Start());
  const std::string audit_address = absl::StrCat("--audit_address=127.0.0.1:", audit.port);
  Service policy{"policy",
                 PODGATE_POLICY_BIN,
                 {"--metrics_address=", "--drain_timeout=2s", "--policy_file=" + d + "/policy.yaml",
                  audit_address}};
  ASSERT_NO_FATAL_FAILURE(policy.Start());
  const std::string policy_address = absl::StrCat("--policy_address=127.0.0.1:", policy.port);
  // Strict audit (the default) with a short ack timeout: during the audit outage commands are
  // refused rather than held.
  Service exec{"exec",
               PODGATE_EXEC_BIN,
               {"--metrics_address=", "--drain_timeout=2s", "--kubeconfig=" + kubeconfig,
                policy_address, audit_address, "--audit_ack_timeout=1s", "--policy_timeout=1s"}};
  exec.args.insert(exec.args.end(), jwt.begin(), jwt.end());
  ASSERT_NO_FATAL_FAILURE(exec.Start());
  std::vector<std::string> edge_args = {"--grpc_address=127.0.0.1:0",
                                        "--metrics_address=",
                                        "--http_address=127.0.0.1:0",
                                        absl::StrCat("--exec_address=127.0.0.1:", exec.port),
                                        policy_address,
                                        audit_address,
                                        "--backend_timeout=2s",
                                        std::string("--allowed_origins=") + kOrigin};
  edge_args.insert(edge_args.end(), jwt.begin(), jwt.end());
  auto edge = Subprocess::Start(PODGATE_EDGE_BIN, edge_args);
  ASSERT_TRUE(edge.ok()) << edge.status();
  auto http_line = (*edge)->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(30));
  ASSERT_TRUE(http_line.ok()) << http_line.status();
  const int http_port = JsonPort(*http_line, "http_port");

  Ledger ledger;
  std::atomic<bool> stop{false};
  std::vector<std::thread> clients;
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back(DirectClient, exec.port, absl::StrCat("grpc", i), &stop, &ledger);
    clients.emplace_back(EdgeClient, http_port, absl::StrCat("web", i), &stop, &ledger);
  }
  // Authentication failures at edge while audit is down: each must reach audit afterwards.
  const std::string bad = Token("mallory", {"load"}, absl::Minutes(-10));  // expired
  std::vector<std::string> probe_pods;
  auto probe = [&](const std::string& pod) {
    http::ClientOptions options;
    options.port = static_cast<uint16_t>(http_port);
    options.headers.push_back({"Origin", kOrigin});
    http::ClientResponse refusal;
    auto ws = http::WebSocketClient::Connect(
        options, "/ws/v1/demo/" + pod,
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(bad)}, &refusal);
    EXPECT_FALSE(ws.ok());
    EXPECT_EQ(refusal.status, 401);
    probe_pods.push_back(pod);
  };

  // How long each backend stays down. Audit's 7 s is past the point where a reconnect backoff
  // doubling to 5 s left exec refusing commands for seconds after audit was back (4-15 s
  // measured). PODGATE_CHAOS_OUTAGE (e.g. 75s) sets both, for longer outages by hand.
  absl::Duration audit_outage = absl::Seconds(7);
  absl::Duration policy_outage = absl::Seconds(2);
  if (const char* env = std::getenv("PODGATE_CHAOS_OUTAGE"); env != nullptr) {
    ASSERT_TRUE(absl::ParseDuration(env, &audit_outage)) << env;
    policy_outage = audit_outage;
  }
  auto progress = [&] { return ledger.sent().size(); };
  absl::SleepFor(absl::Seconds(1.5));
  const size_t before_audit = progress();
  ASSERT_NO_FATAL_FAILURE(audit.Kill());
  probe("probe-audit-down-1");
  absl::SleepFor(audit_outage);
  probe("probe-audit-down-2");
  ASSERT_NO_FATAL_FAILURE(audit.Start());
  const absl::Time audit_back = absl::Now();
  absl::SleepFor(absl::Seconds(2.5));
  const size_t before_policy = progress();
  ASSERT_NO_FATAL_FAILURE(policy.Kill());
  probe("probe-policy-down");
  absl::SleepFor(policy_outage);
  ASSERT_NO_FATAL_FAILURE(policy.Start());
  const absl::Time policy_back = absl::Now();
  absl::SleepFor(absl::Seconds(2.5));
  stop = true;
  for (std::thread& t : clients) {
    t.join();
  }
  const std::vector<Sent> sent = ledger.sent();
  EXPECT_GT(before_audit, 0u) << "no load before the first kill";
  EXPECT_GT(before_policy, before_audit) << "no load between the kills";

  // Outcomes as the clients saw them, and the markers in the container.
  const std::string container = d + "/kube/containers/demo/web-1/app";
  std::set<std::string> markers;
  for (const auto& entry : std::filesystem::directory_iterator(container)) {
    const std::string f = entry.path().filename().string();
    if (absl::StartsWith(f, "m-")) {
      markers.insert(f);
    }
  }
  int ran = 0;
  int refused = 0;
  for (const Sent& s : sent) {
    ran += s.outcome == Sent::kRan;
    refused += s.outcome == Sent::kRefused;
  }
  // Recovery: from a backend serving again to the first command that ran after it.
  auto recovery = [&](absl::Time back) {
    absl::Time first = absl::InfiniteFuture();
    for (const Sent& s : sent) {
      if (s.outcome == Sent::kRan && s.ended > back) {
        first = std::min(first, s.ended);
      }
    }
    return first - back;
  };
  const absl::Duration audit_recovery = recovery(audit_back);
  const absl::Duration policy_recovery = recovery(policy_back);
  EXPECT_LE(audit_recovery, absl::Seconds(2)) << "commands ran again only this long after audit";
  EXPECT_LE(policy_recovery, absl::Seconds(2)) << "commands ran again only this long after policy";
  EXPECT_GT(refused, 0) << "no command was refused during the outages: the test saw no outage";
  EXPECT_GT(ran, 10);

  // What audit holds, by session and command.
  std::vector<audit_pb::AuditRecord> records;
  std::map<std::pair<std::string, std::string>, std::vector<common::AuditEvent>> by_command;
  std::map<std::string, std::set<common::EventKind>> by_session;
  std::set<std::string> auth_failure_pods;
  for (int attempt = 0; attempt < 50; ++attempt) {
    records = AllRecords(audit.port);
    by_command.clear();
    by_session.clear();
    auth_failure_pods.clear();
    for (const auto& r : records) {
      const common::AuditEvent& e = r.event();
      if (!e.command_id().empty()) {
        by_command[{e.session_id(), e.command_id()}].push_back(e);
      }
      if (!e.session_id().empty()) {
        by_session[e.session_id()].insert(e.kind());
      }
      if (e.kind() == common::EVENT_KIND_AUTH_FAILURE && e.source_service() == "edge") {
        auth_failure_pods.insert(e.target().pod());
      }
    }
    bool closed = true;
    for (const std::string& id : ledger.sessions()) {
      closed = closed && by_session[id].count(common::EVENT_KIND_SESSION_CLOSE) > 0;
    }
    if (closed && auth_failure_pods.size() >= probe_pods.size()) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }

  int lost_records = 0;
  for (const Sent& s : sent) {
    const std::vector<common::AuditEvent>& events = by_command[{s.session_id, s.id}];
    bool request = false;
    bool allowed = false;
    bool denied = false;
    const common::AuditEvent* result = nullptr;
    for (const common::AuditEvent& e : events) {
      request = request || e.kind() == common::EVENT_KIND_COMMAND_REQUEST;
      if (e.kind() == common::EVENT_KIND_DECISION) {
        allowed = allowed || e.decision().verdict() == common::VERDICT_ALLOW;
        denied = denied || e.decision().verdict() == common::VERDICT_DENY;
      }
      if (e.kind() == common::EVENT_KIND_COMMAND_RESULT) {
        result = &e;
      }
    }
    const bool touched = markers.count(s.marker) > 0;
    const std::string what = absl::StrCat(s.id, " (session ", s.session_id, ", ", s.detail, ")");
    if (s.outcome == Sent::kLost && !touched && events.empty()) {
      continue;  // cut off before exec had it (e.g. edge closed the connection): never ran
    }
    EXPECT_TRUE(request) << "no COMMAND_REQUEST in audit for " << what;
    lost_records += !request;
    if (s.outcome == Sent::kRan || touched) {
      EXPECT_EQ(s.outcome, Sent::kRan)
          << "a command the client saw refused ran in the pod: " << what;
      EXPECT_TRUE(touched) << "the client saw exit 0 but nothing ran: " << what;
      EXPECT_TRUE(allowed) << "no allow DECISION in audit for " << what;
      ASSERT_NE(result, nullptr) << "no COMMAND_RESULT in audit for " << what;
      EXPECT_EQ(result->command_result().termination(), common::TERMINATION_EXITED) << what;
      EXPECT_EQ(result->command_result().exit_code(), 0) << what;
      lost_records += !allowed;
    } else {
      // Refused: audit says why; and if it says allow, it must also say the command never ran.
      EXPECT_TRUE(denied || result != nullptr)
          << "a refused command has neither a deny DECISION nor a result in audit: " << what;
      if (allowed) {
        ASSERT_NE(result, nullptr) << "audit says allow for a command that did not run: " << what;
        EXPECT_EQ(result->command_result().termination(), common::TERMINATION_ERROR) << what;
        EXPECT_TRUE(absl::StrContains(result->command_result().error(), "not run")) << what;
      }
    }
    markers.erase(s.marker);
  }
  EXPECT_TRUE(markers.empty()) << markers.size()
                               << " commands ran in the pod that no client saw end, e.g. "
                               << (markers.empty() ? "" : *markers.begin());
  for (const std::string& id : ledger.sessions()) {
    EXPECT_EQ(by_session[id].count(common::EVENT_KIND_SESSION_OPEN), 1u) << "session " << id;
    EXPECT_EQ(by_session[id].count(common::EVENT_KIND_SESSION_CLOSE), 1u) << "session " << id;
  }
  for (const std::string& pod : probe_pods) {
    EXPECT_EQ(auth_failure_pods.count(pod), 1u) << "edge's auth failure for " << pod << " was lost";
  }

  // The hash chain survived both kills.
  auto stub = audit_pb::AuditService::NewStub(testing::LoopbackChannel(audit.port));
  grpc::ClientContext ctx;
  audit_pb::VerifyRequest req;
  audit_pb::VerifyResponse res;
  ASSERT_TRUE(stub->Verify(&ctx, req, &res).ok());
  EXPECT_TRUE(res.intact()) << res.DebugString();

  std::printf(
      "chaos: %zu commands (%d ran, %d refused) in %zu sessions, %zu audit records, %d lost; "
      "commands ran again %s after audit and %s after policy were back\n",
      sent.size(), ran, refused, ledger.sessions().size(), records.size(), lost_records,
      absl::FormatDuration(audit_recovery).c_str(), absl::FormatDuration(policy_recovery).c_str());
  if (::testing::Test::HasFailure()) {
    // What exec said about its peers helps more than the assertion.
    int printed = 0;
    for (const std::string& line : exec.process->Lines()) {
      if (!absl::StrContains(line, "\"level\":\"info\"") &&
          !absl::StrContains(line, "audit event not recorded") && printed++ < 60) {
        std::fprintf(stderr, "exec: %s\n", line.c_str());
      }
    }
  }
  (*edge)->Signal(SIGTERM);
  (*edge)->WaitExit(absl::Seconds(10)).IgnoreError();
  (*kubesim)->Signal(SIGTERM);
  (*kubesim)->WaitExit(absl::Seconds(10)).IgnoreError();
  std::error_code ignored;
  std::filesystem::remove_all(d, ignored);
}

}  // namespace
}  // namespace podgate
