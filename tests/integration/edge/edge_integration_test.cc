// edge through real processes: kubesim (the Kubernetes API), podgate-policy, podgate-exec and
// podgate-edge over real sockets, driven by a C++ WebSocket client speaking the seed and v1
// browser protocols, with podgate-audit on SQLite behind exec (strict) and edge's audit view.
// (support/http_client.h is not used: it builds Beast without BOOST_ASIO_NO_DEPRECATED, which
// must not be linked next to podgate::http.)
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "auth/base64url.h"
#include "auth/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/grpc_health.h"
#include "support/loopback.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr char kOrigin[] = "https://podgate.test";
constexpr char kIssuer[] = "https://issuer.podgate.test";
constexpr char kSecret[] = "an-integration-test-secret-of-40-bytes!!";

constexpr size_t kBigFileBytes = 20 << 20;

constexpr char kCluster[] = R"(
namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    labels: {tier: web}
    containers:
      - name: app
  - name: root-1
    namespace: demo
    containers:
      - name: app
        securityContext: {runAsUser: 0}
access:
  - user: admin
    verbs: ["*"]
    resources: ["*"]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(
apiVersion: podgate.io/v1
kind: CommandPolicy
defaults:
  timeLimit: 30s
  outputLimitBytes: 67108864
rules:
  - id: dev-echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[A-Za-z0-9._-]+", repeat: true, maxCount: 8}
  - id: dev-ls
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: ls
      args:
        - {name: path, type: path, prefixes: [/]}
  - id: dev-cat
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: cat
      args:
        - {name: file, type: path, prefixes: [/tmp]}
  - id: dev-sleep
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    limits: {timeLimit: 120s}
    command:
      program: sleep
      args:
        - {name: seconds, type: integer, min: 1, max: 120}
  - id: ops-web-uptime
    effect: allow
    subjects: {groups: [ops]}
    targets: {namespaces: [demo], podLabels: {tier: web}}
    command:
      program: uptime
)";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path);
  out << text;
}

int JsonPort(const std::string& line, const char* key) {
  return nlohmann::json::parse(line)[key].get<int>();
}

// What edge tells browsers when it shuts down (docs/protocol.md, "Shutdown").
const nlohmann::json kV1Shutdown = {{"type", "closed"},
                                    {"reason", "shutdown"},
                                    {"message", "edge is shutting down; reconnect to continue"}};
constexpr char kSeedShutdown[] = R"({"stderr": "edge is shutting down"})";
// The seed consumer's own messages (the design note's consumer.py through json.dumps), byte for
// byte, its typo included (docs/protocol.md, "Seed consumer vs podgate's seed endpoint").
constexpr char kSeedWelcome[] = R"({"stdout": "welcom!"})";
constexpr char kSeedLoginFirst[] = R"({"stderr": "Please login first"})";
constexpr char kSeedNewline[] = R"({"stdout": "\n"})";
constexpr char kSeedBye[] = R"({"stdout": "bye!"})";
constexpr char kSeedDenyRoot[] = R"({"stderr": "deny root user\n"})";

// The argv of a running process, empty when there is none (or it has exited).
std::vector<std::string> ArgvOf(pid_t pid) {
  const std::string raw = testing::ReadProcFile(absl::StrCat("/proc/", pid, "/cmdline"));
  std::vector<std::string> argv;
  for (absl::string_view part : absl::StrSplit(raw, '\0')) {
    argv.emplace_back(part);
  }
  if (!argv.empty() && argv.back().empty()) {
    argv.pop_back();
  }
  return argv;
}

pid_t ParentOf(pid_t pid) {
  const std::string stat = testing::ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  // "pid (comm) state ppid ...": comm may hold spaces and parentheses.
  size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return -1;
  }
  std::vector<std::string> fields = absl::StrSplit(stat.substr(close + 2), ' ');
  int ppid = -1;
  return fields.size() > 1 && absl::SimpleAtoi(fields[1], &ppid) ? ppid : -1;
}

// Waits until `parent` (kubesim, which starts each command as its own child) runs `argv`;
// returns that child's pid, or -1 after `timeout`.
pid_t WaitForChild(pid_t parent, const std::vector<std::string>& argv,
                   absl::Duration timeout = absl::Seconds(30)) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      int pid = 0;
      if (absl::SimpleAtoi(entry.path().filename().string(), &pid) && ParentOf(pid) == parent &&
          ArgvOf(pid) == argv) {
        return pid;
      }
    }
    absl::SleepFor(absl::Milliseconds(20));
  }
  return -1;
}

// One keep-alive HTTP/1.1 connection over a plain socket: requests sent on a connection
// opened before a drain, when edge accepts no new ones.
class KeepAliveConnection {
 public:
  // From `source`, a loopback address (127.0.0.0/8 is all local on Linux): one test can be
  // several client addresses.
  static std::unique_ptr<KeepAliveConnection> Open(int port, const char* source = "127.0.0.1") {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in local{};
    local.sin_family = AF_INET;
    inet_pton(AF_INET, source, &local.sin_addr);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(port));
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof(local)) != 0 ||
        connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
      if (fd >= 0) {
        close(fd);
      }
      return nullptr;
    }
    return std::unique_ptr<KeepAliveConnection>(new KeepAliveConnection(fd));
  }
  ~KeepAliveConnection() { close(fd_); }

  // Sends `request` and returns the response's status line and headers.
  absl::StatusOr<std::string> RoundTripHead(const std::string& request,
                                            absl::Duration timeout = absl::Seconds(10)) {
    send(fd_, request.data(), request.size(), MSG_NOSIGNAL);  // may stop short on an early answer
    const absl::Time deadline = absl::Now() + timeout;
    while (buffer_.find("\r\n\r\n") == std::string::npos) {
      pollfd p{fd_, POLLIN, 0};
      int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (wait_ms <= 0 || poll(&p, 1, wait_ms) != 1) {
        return absl::DeadlineExceededError(absl::StrCat("no whole head: ", buffer_));
      }
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        return absl::UnavailableError(absl::StrCat("connection closed after: ", buffer_));
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    return buffer_.substr(0, buffer_.find("\r\n\r\n") + 2);
  }

  struct Answer {
    int status = 0;
    std::string body;
  };

  // Sends `request` (a whole HTTP/1.1 request) and reads one response with a Content-Length.
  absl::StatusOr<Answer> RoundTrip(const std::string& request,
                                   absl::Duration timeout = absl::Seconds(20)) {
    for (size_t sent = 0; sent < request.size();) {
      ssize_t n = send(fd_, request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) {
        return absl::UnavailableError("send failed");
      }
      sent += static_cast<size_t>(n);
    }
    const absl::Time deadline = absl::Now() + timeout;
    size_t header_end = std::string::npos;
    size_t length = 0;
    while (header_end == std::string::npos || buffer_.size() < header_end + 4 + length) {
      if (header_end == std::string::npos &&
          (header_end = buffer_.find("\r\n\r\n")) != std::string::npos) {
        for (absl::string_view line : absl::StrSplit(buffer_.substr(0, header_end), "\r\n")) {
          if (absl::StartsWithIgnoreCase(line, "content-length:") &&
              !absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(15)), &length)) {
            return absl::InternalError("bad Content-Length");
          }
        }
        continue;
      }
      pollfd p{fd_, POLLIN, 0};
      int wait_ms = static_cast<int>(absl::ToInt64Milliseconds(deadline - absl::Now()));
      if (wait_ms <= 0 || poll(&p, 1, wait_ms) != 1) {
        return absl::DeadlineExceededError(absl::StrCat("no whole response: ", buffer_));
      }
      char chunk[4096];
      ssize_t n = recv(fd_, chunk, sizeof(chunk), 0);
      if (n <= 0) {
        return absl::UnavailableError(absl::StrCat("connection closed after: ", buffer_));
      }
      buffer_.append(chunk, static_cast<size_t>(n));
    }
    Answer answer;
    // "HTTP/1.1 503 Service Unavailable"
    std::vector<std::string> status_line =
        absl::StrSplit(buffer_.substr(0, buffer_.find('\r')), ' ');
    if (status_line.size() < 2 || !absl::SimpleAtoi(status_line[1], &answer.status)) {
      return absl::InternalError(absl::StrCat("bad status line: ", buffer_));
    }
    answer.body = buffer_.substr(header_end + 4, length);
    buffer_.erase(0, header_end + 4 + length);
    return answer;
  }

 private:
  explicit KeepAliveConnection(int fd) : fd_(fd) {}
  int fd_;
  std::string buffer_;
};

class EdgeTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(testing::MakeTempDir("edge-integration"));
    const std::string& d = *dir_;
    WriteFile(d + "/cluster.yaml", kCluster);
    WriteFile(d + "/tokens.csv", "admin-token,admin,1\n");
    WriteFile(d + "/policy.yaml", kPolicy);
    WriteFile(d + "/jwt.secret", kSecret);
    WriteFile(d + "/big.txt", std::string(kBigFileBytes, 'x'));
    auto kubesim = Subprocess::Start(
        KUBESIM_BIN, {"--cluster", d + "/cluster.yaml", "--token_file", d + "/tokens.csv",
                      "--state_dir", d + "/kube", "--port", "0"});
    ASSERT_TRUE(kubesim.ok()) << kubesim.status();
    kubesim_ = kubesim->release();
    ASSERT_TRUE(kubesim_->WaitForLine("\"serving\"", absl::Seconds(20)).ok());

    auto policy = Subprocess::Start(PODGATE_POLICY_BIN,
                                    {"--grpc_address=127.0.0.1:0",
                                     "--metrics_address=", "--policy_file=" + d + "/policy.yaml"});
    ASSERT_TRUE(policy.ok()) << policy.status();
    policy_ = policy->release();
    auto line = policy_->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    const std::string policy_address = absl::StrCat("127.0.0.1:", JsonPort(*line, "grpc_port"));

    const std::vector<std::string> jwt = {"--jwt_key_file=" + d + "/jwt.secret",
                                          "--jwt_algorithm=HS256",
                                          std::string("--jwt_issuer=") + kIssuer};
    auto audit = Subprocess::Start(PODGATE_AUDIT_BIN,
                                   {"--grpc_address=127.0.0.1:0",
                                    "--metrics_address=", "--store=sqlite://" + d + "/audit.db"});
    ASSERT_TRUE(audit.ok()) << audit.status();
    audit_ = audit->release();
    line = audit_->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    const std::string audit_address = absl::StrCat("127.0.0.1:", JsonPort(*line, "grpc_port"));

    // Strict audit (the default): nothing runs before audit has acknowledged it.
    std::vector<std::string> exec_args = {
        "--grpc_address=127.0.0.1:0",
        "--metrics_address=", "--kubeconfig=" + d + "/kube/kubeconfig",
        "--policy_address=" + policy_address, "--audit_address=" + audit_address};
    exec_args.insert(exec_args.end(), jwt.begin(), jwt.end());
    exec_args_ = new std::vector<std::string>(exec_args);
    auto exec = Subprocess::Start(PODGATE_EXEC_BIN, exec_args);
    ASSERT_TRUE(exec.ok()) << exec.status();
    exec_ = exec->release();
    line = exec_->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    const std::string exec_address = absl::StrCat("127.0.0.1:", JsonPort(*line, "grpc_port"));

    std::vector<std::string> edge_args = {
        "--grpc_address=127.0.0.1:0",
        "--metrics_address=127.0.0.1:0",
        "--http_address=127.0.0.1:0",
        "--exec_address=" + exec_address,
        "--policy_address=" + policy_address,
        "--audit_address=" + audit_address,
        "--backend_timeout=2s",
        std::string("--allowed_origins=") + kOrigin + ",https://other.podgate.test",
        "--web_root=" EDGE_WEB_ROOT,
        "--messages_per_second=5",
        "--message_burst=12",
        "--max_connections_per_user=3",
        "--write_buffer_bytes=65536"};
    edge_args.insert(edge_args.end(), jwt.begin(), jwt.end());
    edge_args_ = new std::vector<std::string>(edge_args);
    auto edge = Subprocess::Start(PODGATE_EDGE_BIN, edge_args);
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
    line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    http_port_ = JsonPort(*line, "http_port");
    line = edge_->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    metrics_port_ = JsonPort(*line, "metrics_port");
  }

  // Whatever a test did to edge's browser sessions, none refused a change of its state as
  // invalid (services/edge/session_state.h): the transition tables hold for every path the
  // suite drives.
  void TearDown() override {
    http::ClientOptions mo;
    mo.port = static_cast<uint16_t>(metrics_port_);
    auto metrics = http::Fetch(mo, "GET", "/metrics");
    ASSERT_TRUE(metrics.ok()) << metrics.status();
    auto parsed = testing::ParsePrometheusText(metrics->body);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    for (const char* what : {"state", "exec", "slot"}) {
      auto it = parsed->samples.find(
          absl::StrCat("podgate_edge_session_invalid_transitions_total{what=\"", what, "\"}"));
      ASSERT_NE(it, parsed->samples.end()) << what;
      EXPECT_EQ(it->second, 0) << what;
    }
  }

  static void TearDownTestSuite() {
    // On failure, what the services said helps more than the assertion.
    const ::testing::TestSuite* suite = ::testing::UnitTest::GetInstance()->current_test_suite();
    if (suite != nullptr && suite->Failed()) {
      for (Subprocess* p : {policy_, audit_, exec_, edge_}) {
        if (p == nullptr) {
          continue;
        }
        std::vector<std::string> lines = p->Lines();
        for (size_t i = lines.size() > 40 ? lines.size() - 40 : 0; i < lines.size(); ++i) {
          std::cerr << lines[i] << "\n";
        }
      }
    }
    for (Subprocess** p : {&edge_, &exec_, &audit_, &policy_, &kubesim_}) {
      delete *p;
      *p = nullptr;
    }
    delete edge_args_;
    edge_args_ = nullptr;
    delete exec_args_;
    exec_args_ = nullptr;
  }

  // Another exec replica (for tests that kill it), over the suite's kubesim or, with
  // `kubesim_flags`, over a kubesim of its own. Logs are printed when the test fails.
  struct ExecReplica {
    std::unique_ptr<Subprocess> kubesim;
    std::unique_ptr<Subprocess> process;
    std::string address;
    pid_t kubesim_pid = 0;  // the kubesim whose children run the commands
    ~ExecReplica() {
      if (::testing::Test::HasFailure()) {
        for (Subprocess* p : {kubesim.get(), process.get()}) {
          for (const std::string& line : p != nullptr ? p->Lines() : std::vector<std::string>{}) {
            std::cerr << line << "\n";
          }
        }
      }
    }
  };

  static bool StartExec(const std::vector<std::string>& kubesim_flags,
                        const std::vector<std::string>& extra, ExecReplica* exec) {
    std::vector<std::string> args = *exec_args_;
    exec->kubesim_pid = kubesim_->pid();
    if (!kubesim_flags.empty()) {
      static int n = 0;
      const std::string state = absl::StrCat(*dir_, "/kube-", ++n);
      std::vector<std::string> kargs = {"--cluster",    *dir_ + "/cluster.yaml",
                                        "--token_file", *dir_ + "/tokens.csv",
                                        "--state_dir",  state,
                                        "--port",       "0"};
      kargs.insert(kargs.end(), kubesim_flags.begin(), kubesim_flags.end());
      auto kubesim = Subprocess::Start(KUBESIM_BIN, kargs);
      EXPECT_TRUE(kubesim.ok()) << kubesim.status();
      if (!kubesim.ok()) {
        return false;
      }
      exec->kubesim = *std::move(kubesim);
      EXPECT_TRUE(exec->kubesim->WaitForLine("\"serving\"", absl::Seconds(20)).ok());
      exec->kubesim_pid = exec->kubesim->pid();
      args.push_back("--kubeconfig=" + state + "/kubeconfig");
    }
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = Subprocess::Start(PODGATE_EXEC_BIN, args);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) {
      return false;
    }
    exec->process = *std::move(process);
    auto line = exec->process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) {
      return false;
    }
    exec->address = absl::StrCat("127.0.0.1:", JsonPort(*line, "grpc_port"));
    return true;
  }

  // A v1 connection with the token in the sub-protocol offer; returns exec's `ready`.
  static std::unique_ptr<http::WebSocketClient> V1Ready(const std::string& token, int port,
                                                        nlohmann::json* ready) {
    auto ws = http::WebSocketClient::Connect(
        Options(kOrigin, port), "/ws/v1/demo/web-1",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)});
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return nullptr;
    }
    auto m = (*ws)->Read(absl::Seconds(10));
    EXPECT_TRUE(m.ok()) << m.status();
    if (!m.ok()) {
      return nullptr;
    }
    *ready = nlohmann::json::parse(m->data);
    EXPECT_EQ((*ready)["type"], "ready") << m->data;
    return *std::move(ws);
  }

  // Another edge replica in front of the same back end, for tests that stop it. Its log is
  // printed when the test fails.
  struct EdgeReplica {
    std::unique_ptr<Subprocess> process;
    int http_port = 0;
    int metrics_port = 0;
    ~EdgeReplica() {
      if (process != nullptr && ::testing::Test::HasFailure()) {
        for (const std::string& line : process->Lines()) {
          std::cerr << line << "\n";
        }
      }
    }
  };

  // Starts an EdgeReplica with the suite's flags plus `extra` (later flags win).
  static bool StartEdge(const std::vector<std::string>& extra, EdgeReplica* edge) {
    std::vector<std::string> args = *edge_args_;
    args.insert(args.end(), extra.begin(), extra.end());
    auto process = Subprocess::Start(PODGATE_EDGE_BIN, args);
    EXPECT_TRUE(process.ok()) << process.status();
    if (!process.ok()) {
      return false;
    }
    edge->process = *std::move(process);
    auto line = edge->process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) {
      return false;
    }
    edge->http_port = JsonPort(*line, "http_port");
    line = edge->process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
    EXPECT_TRUE(line.ok()) << line.status();
    if (!line.ok()) {
      return false;
    }
    edge->metrics_port = JsonPort(*line, "metrics_port");
    return true;
  }

  // Sends a v1 command and waits until kubesim runs it (a command that prints nothing, such as
  // `sleep`, gives no other sign); returns the process id, or -1. Tests give each of their
  // commands an argv of its own (`sleep 93`): exec's interrupt signals the oldest process with
  // that argv in the container, and kubesim's containers share the machine's processes with
  // tests running in parallel.
  static pid_t StartCommand(http::WebSocketClient& ws, const std::string& id,
                            const std::string& line) {
    EXPECT_TRUE(
        ws.Write(nlohmann::json{{"type", "command"}, {"id", id}, {"line", line}}.dump(), false)
            .ok());
    return WaitForChild(kubesim_->pid(), absl::StrSplit(line, ' '));
  }

  static auth::Key SigningKey() {
    auth::Key key;
    key.alg = auth::Algorithm::kHS256;
    key.secret = kSecret;
    return key;
  }

  static nlohmann::json Claims(const std::string& user, std::vector<std::string> groups,
                               absl::Duration lifetime = absl::Minutes(10)) {
    int64_t now = absl::ToUnixSeconds(absl::Now());
    return {{"iss", kIssuer},   {"aud", "podgate"}, {"sub", user},
            {"groups", groups}, {"iat", now},       {"exp", now + absl::ToInt64Seconds(lifetime)}};
  }

  static std::string Token(const std::string& user = "alice",
                           std::vector<std::string> groups = {"developers"},
                           absl::Duration lifetime = absl::Minutes(10)) {
    return *auth::Sign(Claims(user, std::move(groups), lifetime), SigningKey());
  }

  static http::ClientOptions Options(const std::string& origin = kOrigin, int port = http_port_) {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(port);
    o.timeout = absl::Seconds(10);
    if (!origin.empty()) {
      o.headers.push_back({"Origin", origin});
    }
    return o;
  }

  // A seed-protocol connection whose first message is the seed's login line; nothing read.
  static std::unique_ptr<http::WebSocketClient> SeedLogin(
      const std::string& token, int port = http_port_,
      const std::string& target = "/ws/seed/demo/web-1?container=app") {
    auto ws = http::WebSocketClient::Connect(Options(kOrigin, port), target, {});
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return nullptr;
    }
    EXPECT_TRUE((*ws)->Write("Authorization: Bearer " + token, false).ok());
    return *std::move(ws);
  }

  // A seed-protocol connection, authenticated: the seed's welcome has been read.
  static std::unique_ptr<http::WebSocketClient> Seed(const std::string& token = Token(),
                                                     int port = http_port_) {
    auto ws = SeedLogin(token, port);
    if (ws == nullptr) {
      return nullptr;
    }
    auto welcome = ws->Read(absl::Seconds(10));
    EXPECT_TRUE(welcome.ok()) << welcome.status();
    if (!welcome.ok()) {
      return nullptr;
    }
    EXPECT_EQ(welcome->data, kSeedWelcome);
    return ws;
  }

  // A v1 connection with the token in the sub-protocol offer; reads `ready`.
  static std::unique_ptr<http::WebSocketClient> V1(const std::string& token = Token(),
                                                   int port = http_port_) {
    auto ws = http::WebSocketClient::Connect(
        Options(kOrigin, port), "/ws/v1/demo/web-1",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)});
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return nullptr;
    }
    EXPECT_EQ((*ws)->subprotocol(), "podgate.v1");
    auto ready = (*ws)->Read(absl::Seconds(10));
    EXPECT_TRUE(ready.ok()) << ready.status();
    if (ready.ok()) {
      nlohmann::json j = nlohmann::json::parse(ready->data);
      EXPECT_EQ(j["type"], "ready") << ready->data;
      EXPECT_EQ(j["container"], "app");
    }
    return *std::move(ws);
  }

  // Resumes a frozen exec and waits until it answers health checks again: a thawed exec first
  // works off what queued up meanwhile, and the next test must not meet it still busy.
  static void ThawExec() {
    exec_->Signal(SIGCONT);
    int port = 0;
    for (const std::string& arg : *edge_args_) {
      if (absl::StartsWith(arg, "--exec_address=127.0.0.1:")) {
        port = std::stoi(arg.substr(std::string("--exec_address=127.0.0.1:").size()));
      }
    }
    auto channel = podgate::testing::LocalChannel(port);
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (absl::Now() < deadline) {
      auto serving = podgate::testing::CheckHealth(channel);
      if (serving.ok() && *serving == grpc::health::v1::HealthCheckResponse::SERVING) {
        return;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    ADD_FAILURE() << "exec did not answer health checks within 30s of SIGCONT";
  }

  // Reads until the server closes; returns the close status message.
  static std::string ReadUntilClosed(http::WebSocketClient& ws, std::vector<std::string>* seen,
                                     absl::Duration timeout = absl::Seconds(10)) {
    absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      auto m = ws.Read(deadline - absl::Now());
      if (!m.ok()) {
        return m.status().ToString();
      }
      if (seen != nullptr) {
        seen->push_back(m->data);
      }
    }
    return "timeout";
  }

  static int RefusalStatus(const std::string& target, std::vector<std::string> protocols,
                           const std::string& origin = kOrigin, std::string* body = nullptr) {
    http::ClientResponse refusal;
    auto ws = http::WebSocketClient::Connect(Options(origin), target, protocols, &refusal);
    if (ws.ok()) {
      return 101;
    }
    if (body != nullptr) {
      *body = refusal.body;
    }
    return refusal.status;
  }

  static absl::StatusOr<http::ClientResponse> Get(const std::string& target,
                                                  const std::string& token) {
    http::ClientOptions o = Options("");
    if (!token.empty()) {
      o.headers.push_back({"Authorization", "Bearer " + token});
    }
    return http::Fetch(o, "GET", target);
  }

  // A request to edge's HTTP server with exactly these headers (no Origin unless given).
  static http::ClientResponse Call(const std::string& method, const std::string& target,
                                   std::vector<std::pair<std::string, std::string>> headers) {
    http::ClientOptions o = Options("");
    o.headers = std::move(headers);
    auto response = http::Fetch(o, method, target);
    EXPECT_TRUE(response.ok()) << method << " " << target << ": " << response.status();
    return response.ok() ? *std::move(response) : http::ClientResponse{};
  }

  static std::string HeaderOf(const http::ClientResponse& response, const std::string& name) {
    for (const auto& [k, v] : response.headers) {
      if (absl::EqualsIgnoreCase(k, name)) {
        return v;
      }
    }
    return "";
  }

  // The `{"error":{...}}` of a refusal.
  static nlohmann::json ErrorOf(const http::ClientResponse& response) {
    nlohmann::json j = nlohmann::json::parse(response.body, nullptr, false);
    return j.is_object() && j.contains("error") ? j["error"] : nlohmann::json::object();
  }

  // One sample of edge's /metrics (0 when absent).
  static double Metric(const std::string& sample, int port = metrics_port_) {
    http::ClientOptions mo;
    mo.port = static_cast<uint16_t>(port);
    auto metrics = http::Fetch(mo, "GET", "/metrics");
    EXPECT_TRUE(metrics.ok()) << metrics.status();
    if (!metrics.ok()) {
      return 0;
    }
    auto parsed = testing::ParsePrometheusText(metrics->body);
    EXPECT_TRUE(parsed.ok()) << parsed.status();
    if (!parsed.ok()) {
      return 0;
    }
    auto it = parsed->samples.find(sample);
    return it == parsed->samples.end() ? 0 : it->second;
  }

  static double ApiRequests(const std::string& route, const std::string& code) {
    return Metric(
        absl::StrCat("podgate_edge_api_requests_total{code=\"", code, "\",route=\"", route, "\"}"));
  }

  static double AuthFailures(const std::string& reason) {
    return Metric(absl::StrCat("podgate_edge_auth_failures_total{reason=\"", reason, "\"}"));
  }

  static int64_t RssKiB(pid_t pid) {
    std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
    std::string line;
    while (std::getline(in, line)) {
      if (absl::StartsWith(line, "VmRSS:")) {
        int64_t kib = 0;
        std::vector<std::string> parts = absl::StrSplit(line, ' ', absl::SkipEmpty());
        if (parts.size() >= 2 && absl::SimpleAtoi(parts[1], &kib)) {
          return kib;
        }
      }
    }
    return -1;
  }

  static std::string* dir_;
  static std::vector<std::string>* edge_args_;
  static std::vector<std::string>* exec_args_;
  static Subprocess* kubesim_;
  static Subprocess* policy_;
  static Subprocess* exec_;
  static Subprocess* audit_;
  static Subprocess* edge_;
  static int http_port_;
  static int metrics_port_;
};

std::string* EdgeTest::dir_ = nullptr;
std::vector<std::string>* EdgeTest::edge_args_ = nullptr;
std::vector<std::string>* EdgeTest::exec_args_ = nullptr;
Subprocess* EdgeTest::kubesim_ = nullptr;
Subprocess* EdgeTest::policy_ = nullptr;
Subprocess* EdgeTest::exec_ = nullptr;
Subprocess* EdgeTest::audit_ = nullptr;
Subprocess* EdgeTest::edge_ = nullptr;
int EdgeTest::http_port_ = 0;
int EdgeTest::metrics_port_ = 0;

TEST_F(EdgeTest, SeedProtocolRunsAllowedCommandsRefusesOthersAndEndsOnExit) {
  auto ws = Seed();
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("echo hello podgate", false).ok());
  auto out = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_FALSE(out->binary);
  EXPECT_EQ(out->data, R"({"stdout": "hello podgate\n"})");

  // The design note's refusal, byte for byte.
  ASSERT_TRUE(ws->Write("cat /etc/passwd", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->data,
            "{\"stderr\": \"Command `cat /etc/passwd` is not allowed, please contact the "
            "administrator\"}");
  // Shell syntax is refused the same way, and the line is escaped as JSON.
  ASSERT_TRUE(ws->Write("echo \"a\" ; id", false).ok());
  auto injected = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(injected.ok()) << injected.status();
  EXPECT_EQ(injected->data,
            "{\"stderr\": \"Command `echo \\\"a\\\" ; id` is not allowed, please contact the "
            "administrator\"}");

  // stderr stays apart from stdout.
  // (The container may write the message in several chunks: one reply each.)
  // (cat of a directory: a path that does not exist is refused by exec's check in the
  // container before anything runs.)
  ASSERT_TRUE(ws->Write("cat /tmp", false).ok());
  std::string err_text;
  while (!absl::StrContains(err_text, "\n")) {
    auto err = ws->Read(absl::Seconds(10));
    ASSERT_TRUE(err.ok()) << err.status();
    ASSERT_THAT(err->data, StartsWith("{\"stderr\": \""));
    err_text += nlohmann::json::parse(err->data)["stderr"].get<std::string>();
  }
  EXPECT_THAT(err_text, StartsWith("cat: "));
  EXPECT_THAT(err_text, HasSubstr("Is a directory"));

  // Commands sent back to back run in order, one at a time.
  ASSERT_TRUE(ws->Write("echo one", false).ok());
  ASSERT_TRUE(ws->Write("echo two", false).ok());
  auto one = ws->Read(absl::Seconds(10));
  auto two = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(one.ok() && two.ok());
  EXPECT_EQ(one->data, R"({"stdout": "one\n"})");
  EXPECT_EQ(two->data, R"({"stdout": "two\n"})");

  ASSERT_TRUE(ws->Write("exit", false).ok());
  std::vector<std::string> rest;
  EXPECT_THAT(ReadUntilClosed(*ws, &rest), HasSubstr("code 1000"));
  EXPECT_EQ(rest, std::vector<std::string>{kSeedBye});
}

TEST_F(EdgeTest, SeedProtocolRefusesBadTokensInTheFirstMessage) {
  auth::Key wrong = SigningKey();
  wrong.secret = "another-secret-that-is-long-enough-000000";
  nlohmann::json wrong_aud = Claims("alice", {"developers"});
  wrong_aud["aud"] = "someone-else";
  for (const std::string& token :
       {*auth::Sign(Claims("alice", {"developers"}), wrong), *auth::Sign(wrong_aud, SigningKey()),
        Token("alice", {"developers"}, absl::Seconds(-120))}) {
    // Refused in silence, as the seed's consumer does (the only message is the next line's
    // answer); the next line is told to log in.
    auto ws = SeedLogin(token);
    ASSERT_NE(ws, nullptr);
    ASSERT_TRUE(ws->Write("echo hello", false).ok());
    std::vector<std::string> seen;
    EXPECT_THAT(ReadUntilClosed(*ws, &seen), HasSubstr("code 1008"));
    EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst});
  }
}

// The seed's consumer situation by situation (docs/protocol.md, "Seed consumer vs podgate's
// seed endpoint"), each answer byte for byte as consumer.py sends it through json.dumps.

// After a good login: `welcom!` (sic), before anything else, even lines sent before exec is
// ready.
TEST_F(EdgeTest, SeedWelcomesAGoodLoginBeforeAnyOtherAnswer) {
  auto ws = SeedLogin(Token("seed-welcome"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("", false).ok());
  ASSERT_TRUE(ws->Write("echo first", false).ok());
  std::vector<std::string> seen;
  for (int i = 0; i < 3; ++i) {
    auto m = ws->Read(absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status() << " after " << absl::StrJoin(seen, " | ");
    EXPECT_FALSE(m->binary);
    seen.push_back(m->data);
  }
  EXPECT_EQ(seen,
            (std::vector<std::string>{kSeedWelcome, kSeedNewline, R"({"stdout": "first\n"})"}));
}

// An empty line: `{"stdout": "\n"}`, answered at once, even while a command runs.
TEST_F(EdgeTest, SeedAnswersAnEmptyLineWithANewlineAtOnce) {
  auto ws = Seed(Token("seed-empty"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("", false).ok());
  auto nl = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(nl.ok()) << nl.status();
  EXPECT_EQ(nl->data, "{\"stdout\": \"\\n\"}");
  ASSERT_TRUE(ws->Write("sleep 4", false).ok());
  ASSERT_GT(WaitForChild(kubesim_->pid(), {"sleep", "4"}), 0);
  ASSERT_TRUE(ws->Write("", false).ok());
  auto during = ws->Read(absl::Seconds(2));
  ASSERT_TRUE(during.ok()) << during.status() << ": the empty line waited for the command";
  EXPECT_EQ(during->data, kSeedNewline);
}

// A line of only spaces is not empty: the consumer checks it against its allowlist and refuses
// it; exec's parser refuses it (nothing to run) and the seed's refusal says so.
TEST_F(EdgeTest, SeedRefusesALineOfOnlySpacesWithTheSeedsRefusal) {
  auto ws = Seed(Token("seed-spaces"));
  ASSERT_NE(ws, nullptr);
  for (const std::string line : {" ", "   "}) {
    ASSERT_TRUE(ws->Write(line, false).ok());
    auto denied = ws->Read(absl::Seconds(10));
    ASSERT_TRUE(denied.ok()) << denied.status();
    EXPECT_EQ(denied->data, "{\"stderr\": \"Command `" + line +
                                "` is not allowed, please contact the administrator\"}");
  }
}

// `exit`, exactly: `bye!`, the last message, then the close (1000); a running command is
// stopped. ` exit` is a command line, refused as the consumer refuses it.
TEST_F(EdgeTest, SeedSaysByeOnExitAndStopsTheRunningCommand) {
  auto ws = Seed(Token("seed-exit"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write(" exit", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->data,
            R"({"stderr": "Command ` exit` is not allowed, please contact the administrator"})");
  ASSERT_TRUE(ws->Write("sleep 60", false).ok());
  const pid_t sleeping = WaitForChild(kubesim_->pid(), {"sleep", "60"});
  ASSERT_GT(sleeping, 0);
  ASSERT_TRUE(ws->Write("exit", false).ok());
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*ws, &seen), HasSubstr("code 1000"));
  EXPECT_EQ(seen, std::vector<std::string>{kSeedBye});
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!ArgvOf(sleeping).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(ArgvOf(sleeping).empty()) << "the command outlived `exit`";
}

// Before a login, whatever the line (a command, an empty line, `exit`, a login spelled
// otherwise than `Authorization: Bearer `): `Please login first`, then the close (1008).
TEST_F(EdgeTest, SeedAsksForALoginFirstWhenTheFirstLineIsNotOne) {
  for (const std::string& first :
       {std::string("echo hello"), std::string(""), std::string("exit"),
        "authorization: bearer " + Token(), "Authorization: bearer " + Token(),
        "Authorization:Bearer " + Token(), "Bearer " + Token()}) {
    auto ws = http::WebSocketClient::Connect(Options(), "/ws/seed/demo/web-1", {});
    ASSERT_TRUE(ws.ok()) << ws.status();
    ASSERT_TRUE((*ws)->Write(first, false).ok());
    std::vector<std::string> seen;
    EXPECT_THAT(ReadUntilClosed(**ws, &seen), HasSubstr("code 1008")) << first.substr(0, 24);
    EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst}) << first.substr(0, 24);
  }
}

// A refused login (bad, expired or empty token): no answer, as the consumer; the next line,
// even another login, gets `Please login first` and the close; so does a connection that
// sends nothing more, at --auth_timeout.
TEST_F(EdgeTest, SeedSaysNothingOnARefusedLoginAndAsksForALoginNext) {
  const std::string expired = Token("seed-bad", {"developers"}, absl::Minutes(-10));
  for (const std::string& next : {std::string("exit"), "Authorization: Bearer " + Token()}) {
    for (const std::string& token : {expired, std::string("")}) {
      auto ws = SeedLogin(token);
      ASSERT_NE(ws, nullptr);
      ASSERT_TRUE(ws->Write(next, false).ok());
      std::vector<std::string> seen;
      EXPECT_THAT(ReadUntilClosed(*ws, &seen), HasSubstr("code 1008"));
      EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst});
    }
  }
  auto quiet = SeedLogin(expired);
  ASSERT_NE(quiet, nullptr);
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*quiet, &seen, absl::Seconds(20)), HasSubstr("code 1008"));
  EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst});
}

// A login line on an open session is never a command (the token would reach exec and audit):
// the session user's own credential gets the welcome again; another user's, or a bad one,
// `Please login first` and the close.
TEST_F(EdgeTest, SeedWelcomesALoginAgainAndEndsTheSessionOnAnyOtherCredential) {
  auto ws = Seed(Token("seed-again"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("Authorization: Bearer " + Token("seed-again"), false).ok());
  auto again = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->data, kSeedWelcome);
  ASSERT_TRUE(ws->Write("echo still", false).ok());
  auto out = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, R"({"stdout": "still\n"})");
  ASSERT_TRUE(ws->Write("Authorization: Bearer " + Token("seed-other"), false).ok());
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*ws, &seen), HasSubstr("code 1008"));
  EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst});

  auto bad = Seed(Token("seed-again"));
  ASSERT_NE(bad, nullptr);
  ASSERT_TRUE(bad->Write("Authorization: Bearer not-a-token", false).ok());
  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*bad, &seen), HasSubstr("code 1008"));
  EXPECT_EQ(seen, std::vector<std::string>{kSeedLoginFirst});

  // Neither line reached exec: no command record holds a credential.
  auto audit =
      Get("/api/v1/audit?user=seed-again&page_size=200", Token("ann", {"podgate-auditors"}));
  ASSERT_TRUE(audit.ok()) << audit.status();
  ASSERT_EQ(audit->status, 200) << audit->body;
  EXPECT_THAT(audit->body, ::testing::Not(HasSubstr("Bearer")));
}

// Command output: one `{"stdout": ...}` / `{"stderr": ...}` per chunk, escaped as json.dumps
// escapes (ensure_ascii: \uXXXX, surrogate pairs above U+FFFF).
TEST_F(EdgeTest, SeedSendsCommandOutputEscapedAsJsonDumps) {
  WriteFile(*dir_ + "/seed-bytes.txt",
            "tab\tquote\"back\\slash \xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\n");
  auto ws = Seed(Token("seed-output"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("cat " + *dir_ + "/seed-bytes.txt", false).ok());
  auto out = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, R"({"stdout": "tab\tquote\"back\\slash \u00e9\u20ac\ud83d\ude00\n"})");
}

// A container running as root: the seed's shell says `deny root user` on stderr; exec's root
// guard refuses the command and the seed endpoint says the same.
TEST_F(EdgeTest, SeedSaysDenyRootUserForARootContainer) {
  auto ws = SeedLogin(Token("seed-root"), http_port_, "/ws/seed/demo/root-1?container=app");
  ASSERT_NE(ws, nullptr);
  auto welcome = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(welcome.ok()) << welcome.status();
  EXPECT_EQ(welcome->data, kSeedWelcome);
  ASSERT_TRUE(ws->Write("echo hi", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_EQ(denied->data, kSeedDenyRoot);
}

// Errors the consumer has no words for (it closes, or fails): one `{"stderr": "<why>"}` and the
// close; no welcome for a session exec could not open.
TEST_F(EdgeTest, SeedSaysWhyASessionCannotOpenAndClosesOnBinaryFrames) {
  auto missing = SeedLogin(Token("seed-error"), http_port_, "/ws/seed/demo/no-such-pod");
  ASSERT_NE(missing, nullptr);
  std::vector<std::string> seen;
  const std::string closed = ReadUntilClosed(*missing, &seen);
  EXPECT_THAT(closed, HasSubstr("code 1011"));
  EXPECT_EQ(seen, std::vector<std::string>{
                      "{\"stderr\": \"no such target, or no rule lets you use it (the targets "
                      "you may use are listed by ListTargets)\"}"});

  auto ws = Seed(Token("seed-error"));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("echo hi", true).ok());
  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*ws, &seen), HasSubstr("code 1003"));
  EXPECT_TRUE(seen.empty()) << absl::StrJoin(seen, " | ");
}

TEST_F(EdgeTest, V1ProtocolSeparatesControlFromBinaryOutput) {
  auto ws = V1();
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write(R"({"type":"command","id":"a1","line":"echo hi"})", false).ok());
  auto out = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_TRUE(out->binary);
  EXPECT_EQ(out->data, std::string("\x01", 1) + "hi\n");
  auto exit = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(exit.ok());
  nlohmann::json e = nlohmann::json::parse(exit->data);
  EXPECT_EQ(e["type"], "exit");
  EXPECT_EQ(e["id"], "a1");
  EXPECT_EQ(e["termination"], "exited");
  EXPECT_EQ(e["code"], 0);
  EXPECT_EQ(e["output_bytes"], 3);

  ASSERT_TRUE(ws->Write(R"({"type":"command","id":"a2","line":"cat /tmp"})", false).ok());
  std::string err_text;
  while (true) {
    auto m = ws->Read(absl::Seconds(10));
    ASSERT_TRUE(m.ok()) << m.status();
    if (!m->binary) {
      nlohmann::json exit2 = nlohmann::json::parse(m->data);
      EXPECT_EQ(exit2["type"], "exit");
      EXPECT_NE(exit2["code"], 0);
      break;
    }
    ASSERT_EQ(m->data[0], '\x02');  // stderr only
    err_text += m->data.substr(1);
  }
  EXPECT_THAT(err_text, HasSubstr("Is a directory"));

  ASSERT_TRUE(ws->Write(R"({"type":"command","id":"a3","line":"rm -rf /"})", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok());
  nlohmann::json d = nlohmann::json::parse(denied->data);
  EXPECT_EQ(d["type"], "denied");
  EXPECT_EQ(d["id"], "a3");
  EXPECT_EQ(d["rule"], "default-deny");

  ASSERT_TRUE(ws->Write(R"({"type":"close"})", false).ok());
  std::vector<std::string> rest;
  EXPECT_THAT(ReadUntilClosed(*ws, &rest), HasSubstr("code 1000"));
  ASSERT_FALSE(rest.empty());
  EXPECT_EQ(nlohmann::json::parse(rest.back())["type"], "closed");
}

TEST_F(EdgeTest, V1ProtocolAcceptsAFirstAuthMessageAndRejectsMalformedOnes) {
  auto ws = http::WebSocketClient::Connect(Options(), "/ws/v1/demo/web-1", {"podgate.v1"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  ASSERT_TRUE(
      (*ws)->Write(nlohmann::json{{"type", "auth"}, {"token", Token()}}.dump(), false).ok());
  auto ready = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(nlohmann::json::parse(ready->data)["type"], "ready");
  ASSERT_TRUE((*ws)->Write("{not json", false).ok());
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(**ws, &seen), HasSubstr("code 1007"));
  ASSERT_FALSE(seen.empty());
  EXPECT_EQ(nlohmann::json::parse(seen[0])["code"], "INVALID_ARGUMENT");
}

TEST_F(EdgeTest, HandshakesRefuseForeignOriginsAndBadTokens) {
  const std::string bearer = "base64url.bearer.podgate.v1.";
  EXPECT_EQ(RefusalStatus("/ws/seed/demo/web-1", {}, "https://evil.test"), 403);
  EXPECT_EQ(RefusalStatus("/ws/v1/demo/web-1", {"podgate.v1"}, "https://podgate.test.evil"), 403);
  EXPECT_EQ(RefusalStatus("/ws/seed/demo/web-1", {}, ""), 403);  // no Origin, no flag
  EXPECT_EQ(RefusalStatus("/ws/seed/demo/web-1", {}, "https://other.podgate.test"), 101);

  // alg: none, expired, wrong audience, wrong issuer: 401 before the upgrade.
  std::string none = auth::Base64UrlEncode(R"({"alg":"none","typ":"JWT"})") + "." +
                     auth::Base64UrlEncode(Claims("alice", {"developers"}).dump()) + ".";
  nlohmann::json wrong_aud = Claims("alice", {"developers"});
  wrong_aud["aud"] = "kubernetes";
  nlohmann::json wrong_iss = Claims("alice", {"developers"});
  wrong_iss["iss"] = "https://evil.test";
  for (const std::string& token :
       {none, Token("alice", {"developers"}, absl::Seconds(-120)),
        *auth::Sign(wrong_aud, SigningKey()), *auth::Sign(wrong_iss, SigningKey())}) {
    std::string body;
    EXPECT_EQ(RefusalStatus("/ws/v1/demo/web-1",
                            {"podgate.v1", bearer + auth::Base64UrlEncode(token)}, kOrigin, &body),
              401)
        << token;
    EXPECT_THAT(body, HasSubstr("UNAUTHENTICATED"));
    EXPECT_THAT(body, ::testing::Not(HasSubstr(token)));
  }
  EXPECT_EQ(RefusalStatus("/ws/v1/demo/web-1", {"podgate.v1", bearer + "!!"}), 401);
  EXPECT_EQ(RefusalStatus("/ws/v1/demo/web-1", {"chat"}), 400);
  EXPECT_EQ(RefusalStatus("/ws/v1/Demo/web-1", {"podgate.v1"}), 400);
  EXPECT_EQ(RefusalStatus("/ws/v2/demo/web-1", {"podgate.v1"}), 404);

  // Tokens never reach the logs.
  for (const std::string& line : edge_->Lines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr(none.substr(0, 40))));
    EXPECT_THAT(line, ::testing::Not(HasSubstr("eyJ")));
  }
}

// Namespace and container are DNS-1123 labels (63), the pod a DNS-1123 subdomain (253), as
// Kubernetes and exec have them: edge refuses the others at the door, saying which and why.
TEST_F(EdgeTest, HandshakesRefuseNamesKubernetesRefuses) {
  const std::string long_label(253, 'a');
  for (const std::string& target :
       {"/ws/v1/" + long_label + "/web-1", "/ws/seed/" + std::string(64, 'a') + "/web-1",
        "/ws/v1/demo/web-1?container=" + long_label, std::string("/ws/v1/demo/a..b"),
        "/ws/v1/demo/" + std::string(254, 'a')}) {
    std::string body;
    EXPECT_EQ(RefusalStatus(target, {"podgate.v1"}, kOrigin, &body), 400) << target;
    EXPECT_THAT(body, HasSubstr("INVALID_ARGUMENT")) << target;
    EXPECT_THAT(body, HasSubstr("is not a Kubernetes name: a DNS-1123")) << target;
  }
  std::string body;
  EXPECT_EQ(RefusalStatus("/ws/v1/" + long_label + "/web-1", {"podgate.v1"}, kOrigin, &body), 400);
  EXPECT_THAT(body, HasSubstr(R"(namespace \"aaaa)"));
  EXPECT_THAT(body, HasSubstr("label is at most 63 characters"));
  // A long pod name that is a valid subdomain passes the door (exec then looks it up).
  EXPECT_EQ(RefusalStatus("/ws/v1/demo/" + std::string(253, 'a'), {"podgate.v1"}), 101);
}

TEST_F(EdgeTest, LoginSetsAnHttpOnlyCookieThatAuthenticatesTheHandshake) {
  http::ClientOptions o = Options();
  o.headers.push_back({"Authorization", "Bearer " + Token()});
  auto login = http::Fetch(o, "POST", "/api/v1/login");
  ASSERT_TRUE(login.ok()) << login.status();
  EXPECT_EQ(login->status, 200) << login->body;
  EXPECT_EQ(nlohmann::json::parse(login->body)["user"], "alice");
  // The blocking client does not expose response headers: the cookie is rebuilt from the
  // token, and the handshake with it alone must open a session.
  http::ClientOptions foreign = Options("https://evil.test");
  foreign.headers.push_back({"Authorization", "Bearer " + Token()});
  auto refused = http::Fetch(foreign, "POST", "/api/v1/login");
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ(refused->status, 403);
  http::ClientOptions bad = Options();
  bad.headers.push_back({"Authorization", "Bearer " + Token("x", {}, absl::Seconds(-99))});
  EXPECT_EQ(http::Fetch(bad, "POST", "/api/v1/login")->status, 401);

  http::ClientOptions cookie = Options();
  cookie.headers.push_back({"Cookie", "theme=dark; podgate_token=" + Token()});
  auto ws = http::WebSocketClient::Connect(cookie, "/ws/v1/demo/web-1", {"podgate.v1"});
  ASSERT_TRUE(ws.ok()) << ws.status();
  auto ready = (*ws)->Read(absl::Seconds(10));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(nlohmann::json::parse(ready->data)["type"], "ready");
  http::ClientOptions stale = Options();
  stale.headers.push_back(
      {"Cookie", "podgate_token=" + Token("alice", {"developers"}, absl::Seconds(-99))});
  http::ClientResponse refusal;
  EXPECT_FALSE(
      http::WebSocketClient::Connect(stale, "/ws/v1/demo/web-1", {"podgate.v1"}, &refusal).ok());
  EXPECT_EQ(refusal.status, 401);
}

TEST_F(EdgeTest, ConnectionsPerUserAreCapped) {
  const std::string token = Token("dave", {"developers"});
  std::vector<std::unique_ptr<http::WebSocketClient>> open;
  for (int i = 0; i < 3; ++i) {
    open.push_back(V1(token));
    ASSERT_NE(open.back(), nullptr);
  }
  const std::vector<std::string> offer = {
      "podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)};
  EXPECT_EQ(RefusalStatus("/ws/v1/demo/web-1", offer), 429);
  // Another user is not affected; a closed connection frees its slot.
  auto erin = V1(Token("erin", {"developers"}));
  ASSERT_NE(erin, nullptr);
  ASSERT_TRUE(open.back()->Close().ok());
  open.pop_back();
  absl::Time deadline = absl::Now() + absl::Seconds(5);
  int status = 0;
  while (absl::Now() < deadline && (status = RefusalStatus("/ws/v1/demo/web-1", offer)) != 101) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(status, 101);
}

TEST_F(EdgeTest, OversizedMessageClosesWith1009) {
  auto ws = V1();
  ASSERT_NE(ws, nullptr);
  std::string line(70 * 1024, 'a');
  // The write itself may fail: edge can close before the client has sent the whole frame.
  ws->Write(nlohmann::json{{"type", "command"}, {"line", line}}.dump(), false).IgnoreError();
  // edge answers with close 1009 without reading the rest of the frame; the blocking client
  // may see that close frame, or fail replying to it on the torn-down socket. The server's
  // count says which limit closed it.
  std::string end = ReadUntilClosed(*ws, nullptr);
  EXPECT_TRUE(absl::StrContains(end, "code 1009") || absl::StrContains(end, "UNAVAILABLE")) << end;
  http::ClientOptions mo;
  mo.port = static_cast<uint16_t>(metrics_port_);
  auto metrics = http::Fetch(mo, "GET", "/metrics");
  ASSERT_TRUE(metrics.ok());
  auto parsed = testing::ParsePrometheusText(metrics->body);
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->samples["podgate_edge_rejections_total{reason=\"size\"}"], 1);
  // A message just under the limit is fine.
  auto ok = V1();
  ASSERT_NE(ok, nullptr);
  std::string words;
  while (words.size() < 60 * 1024) {
    words += " a";
  }
  ASSERT_TRUE(
      ok->Write(nlohmann::json{{"type", "command"}, {"line", "echo" + words}}.dump(), false).ok());
  auto reply = ok->Read(absl::Seconds(10));
  ASSERT_TRUE(reply.ok()) << reply.status();
}

TEST_F(EdgeTest, ExpiredCredentialClosesTheSessionWith1008) {
  auto ws = V1(Token("alice", {"developers"}, absl::Seconds(3)));
  ASSERT_NE(ws, nullptr);
  absl::Time start = absl::Now();
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*ws, &seen, absl::Seconds(10)), HasSubstr("code 1008"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(6));
  ASSERT_FALSE(seen.empty());
  // Whichever notices first: edge's timer (error) or exec's session limit (closed).
  nlohmann::json last = nlohmann::json::parse(seen.back());
  EXPECT_TRUE(last["code"] == "UNAUTHENTICATED" || last["reason"] == "credential_expired")
      << seen.back();
}

TEST_F(EdgeTest, AFloodIsClosedWhileAnotherUserIsUnaffected) {
  // The flood is of interrupts, not commands: edge's limiter is under test, not exec's
  // handling of sessions closed with a policy decision outstanding.
  auto flooder = V1(Token("mallory", {"developers"}));
  auto other = Seed(Token("bob", {"developers"}));
  ASSERT_NE(flooder, nullptr);
  ASSERT_NE(other, nullptr);
  for (int i = 0; i < 200; ++i) {
    if (!flooder->Write(R"({"type":"interrupt"})", false).ok()) {
      break;
    }
  }
  EXPECT_THAT(ReadUntilClosed(*flooder, nullptr, absl::Seconds(20)), HasSubstr("code 1008"));
  ASSERT_TRUE(other->Write("echo still here", false).ok());
  auto out = other->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, R"({"stdout": "still here\n"})");

  http::ClientOptions mo;
  mo.port = static_cast<uint16_t>(metrics_port_);
  auto metrics = http::Fetch(mo, "GET", "/metrics");
  ASSERT_TRUE(metrics.ok());
  auto parsed = testing::ParsePrometheusText(metrics->body);
  ASSERT_TRUE(parsed.ok());
  EXPECT_GE(parsed->samples["podgate_edge_rejections_total{reason=\"rate\"}"], 1);
}

TEST_F(EdgeTest, ASlowReaderKeepsEdgeMemoryBounded) {
  auto ws = V1();
  ASSERT_NE(ws, nullptr);
  // 20 MiB of output; the client reads nothing for a while.
  const int64_t before = RssKiB(edge_->pid());
  ASSERT_TRUE(ws->Write(
                    nlohmann::json{
                        {"type", "command"}, {"id", "big"}, {"line", "cat " + *dir_ + "/big.txt"}}
                        .dump(),
                    false)
                  .ok());
  int64_t peak = before;
  for (int i = 0; i < 30; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    peak = std::max(peak, RssKiB(edge_->pid()));
  }
  int64_t received = 0;
  while (true) {
    auto m = ws->Read(absl::Seconds(20));
    ASSERT_TRUE(m.ok()) << m.status() << " after " << received << " bytes";
    if (m->binary) {
      ASSERT_EQ(m->data[0], '\x01');
      received += static_cast<int64_t>(m->data.size()) - 1;
      peak = std::max(peak, RssKiB(edge_->pid()));
      continue;
    }
    nlohmann::json j = nlohmann::json::parse(m->data);
    ASSERT_EQ(j["type"], "exit") << m->data;
    EXPECT_EQ(j["code"], 0);
    break;
  }
  EXPECT_EQ(received, static_cast<int64_t>(kBigFileBytes));
  std::cout << "edge RSS before " << before << " KiB, peak " << peak << " KiB while 20 MiB "
            << "streamed to a reader that paused 3 s\n";
  // Buffering the output would cost at least its 20 MiB; allocator and socket buffers under
  // load cost a few MiB (4-8 measured), so 14 MiB separates the two with room on a busy CI.
  EXPECT_LT(peak - before, 14 * 1024) << "edge buffered the output instead of pausing exec";
}

TEST_F(EdgeTest, HttpApiServesTargetsAllowedCommandsAuditAndThePage) {
  auto targets = Get("/api/v1/targets", Token());
  ASSERT_TRUE(targets.ok()) << targets.status();
  EXPECT_EQ(targets->status, 200) << targets->body;
  EXPECT_THAT(targets->body, HasSubstr("web-1"));
  auto anonymous = Get("/api/v1/targets", "");
  ASSERT_TRUE(anonymous.ok());
  EXPECT_EQ(anonymous->status, 401);

  auto allowed = Get("/api/v1/allowed?namespace=demo&pod=web-1&container=app", Token());
  ASSERT_TRUE(allowed.ok());
  EXPECT_EQ(allowed->status, 200) << allowed->body;
  nlohmann::json a = nlohmann::json::parse(allowed->body);
  EXPECT_THAT(allowed->body, HasSubstr("echo"));
  EXPECT_THAT(allowed->body, HasSubstr("cat"));
  // edge does not see pods, so a rule selecting pods by label counts as matching (exec decides
  // each command with the pod's labels): the page lists uptime for an ops user on web-1 (it
  // listed nothing).
  auto by_label =
      Get("/api/v1/allowed?namespace=demo&pod=web-1&container=app", Token("olga", {"ops"}));
  ASSERT_TRUE(by_label.ok());
  EXPECT_EQ(by_label->status, 200) << by_label->body;
  EXPECT_THAT(by_label->body, HasSubstr("uptime"));
  EXPECT_THAT(by_label->body, ::testing::Not(HasSubstr("echo")));
  EXPECT_EQ(Get("/api/v1/allowed?namespace=demo", Token())->status, 400);
  EXPECT_EQ(
      Get("/api/v1/allowed?namespace=demo&pod=web-1", Token("x", {}, absl::Seconds(-99)))->status,
      401);

  EXPECT_EQ(Get("/api/v1/audit", Token())->status, 403);  // not an auditor
  EXPECT_EQ(Get("/api/v1/audit?format=xml", Token("ann", {"podgate-auditors"}))->status, 400);
  EXPECT_EQ(Get("/api/v1/audit?color=red", Token("ann", {"podgate-auditors"}))->status, 400);

  // A seed session's allowed and refused commands both reach the audit trail.
  auto ws = Seed(Token("carol", {"developers"}));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("echo audited", false).ok());
  ASSERT_TRUE(ws->Read(absl::Seconds(10)).ok());
  ASSERT_TRUE(ws->Write("cat /etc/shadow", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok());
  EXPECT_THAT(denied->data, HasSubstr("is not allowed"));
  ASSERT_TRUE(ws->Write("exit", false).ok());
  ReadUntilClosed(*ws, nullptr);
  auto audit = Get("/api/v1/audit?user=carol&page_size=100", Token("ann", {"podgate-auditors"}));
  ASSERT_TRUE(audit.ok());
  ASSERT_EQ(audit->status, 200) << audit->body;
  nlohmann::json records = nlohmann::json::parse(audit->body)["records"];
  std::string all = records.dump();
  EXPECT_THAT(all, HasSubstr("audited"));
  EXPECT_THAT(all, HasSubstr("/etc/shadow"));
  EXPECT_THAT(all, HasSubstr("carol"));
  auto lines = Get("/api/v1/audit?user=carol&format=jsonl", Token("ann", {"podgate-auditors"}));
  ASSERT_TRUE(lines.ok());
  EXPECT_EQ(lines->status, 200);
  EXPECT_EQ(lines->content_type, "application/x-ndjson");
  // The session's close event may land between the two queries: never fewer lines than records.
  EXPECT_GE(static_cast<size_t>(std::count(lines->body.begin(), lines->body.end(), '\n')),
            records.size());

  auto page = Get("/", "");
  ASSERT_TRUE(page.ok());
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->content_type, "text/html; charset=utf-8");
  // The built page: its script is a fingerprinted file under /assets/, cached for good.
  EXPECT_THAT(page->body, HasSubstr("<div id=\"app\">"));
  const size_t script = page->body.find("/assets/index-");
  ASSERT_NE(script, std::string::npos) << page->body;
  const std::string asset = page->body.substr(script, page->body.find('"', script) - script);
  auto js = Get(asset, "");
  ASSERT_TRUE(js.ok());
  EXPECT_EQ(js->status, 200) << asset;
  EXPECT_THAT(js->body, HasSubstr("podgate.history.v1:"));
  EXPECT_EQ(Get("/missing.js", "")->status, 404);
  EXPECT_EQ(Get("/../CMakeLists.txt", "")->status, 404);
  EXPECT_EQ(Get("/healthz", "")->status, 200);
  auto ready = Get("/readyz", "");
  ASSERT_TRUE(ready.ok());
  EXPECT_THAT(ready->body, HasSubstr("\"exec\""));
}

TEST_F(EdgeTest, SessionNamesTheCallerFromABearerHeaderOrTheLoginCookie) {
  const double answered_before = ApiRequests("session", "2xx");
  const nlohmann::json claims = Claims("dana", {"developers"});
  const std::string dana = *auth::Sign(claims, SigningKey());
  const std::string expected_expires =
      absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(claims["exp"].get<int64_t>()),
                       absl::UTCTimeZone());

  // A bearer header, GET without Origin (a CLI client, or a same-origin GET).
  http::ClientResponse r = Call("GET", "/api/v1/session", {{"Authorization", "Bearer " + dana}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-store");
  nlohmann::json j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j, nlohmann::json({{"user", "dana"},
                               {"groups", {"developers"}},
                               {"issuer", kIssuer},
                               {"expires", expected_expires},
                               {"auditor", false}}))
      << r.body;
  EXPECT_THAT(j["expires"].get<std::string>(),
              ::testing::MatchesRegex("[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z"));

  // Members of --auditor_groups (default podgate-auditors) are auditors.
  r = Call("GET", "/api/v1/session",
           {{"Authorization", "Bearer " + Token("ann", {"developers", "podgate-auditors"})}});
  ASSERT_EQ(r.status, 200) << r.body;
  j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["user"], "ann");
  EXPECT_EQ(j["groups"], nlohmann::json({"developers", "podgate-auditors"}));
  EXPECT_EQ(j["auditor"], true);

  // The page's way: the HttpOnly cookie POST /api/v1/login set, and nothing else.
  http::ClientResponse login =
      Call("POST", "/api/v1/login", {{"Origin", kOrigin}, {"Authorization", "Bearer " + dana}});
  ASSERT_EQ(login.status, 200) << login.body;
  const std::string set_cookie = HeaderOf(login, "Set-Cookie");
  EXPECT_THAT(set_cookie, HasSubstr("HttpOnly"));
  EXPECT_THAT(set_cookie, HasSubstr("SameSite=Strict"));
  const std::string cookie = set_cookie.substr(0, set_cookie.find(';'));
  ASSERT_THAT(cookie, StartsWith("podgate_token="));
  r = Call("POST", "/api/v1/session", {{"Origin", kOrigin}, {"Cookie", "theme=dark; " + cookie}});
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(nlohmann::json::parse(r.body)["user"], "dana");
  EXPECT_EQ(nlohmann::json::parse(r.body)["expires"], expected_expires);
  r = Call("GET", "/api/v1/session", {{"Cookie", cookie}});
  EXPECT_EQ(r.status, 200) << r.body;
  // Every listed origin is accepted.
  r = Call("POST", "/api/v1/session",
           {{"Origin", "https://other.podgate.test"}, {"Cookie", cookie}});
  EXPECT_EQ(r.status, 200) << r.body;

  EXPECT_EQ(ApiRequests("session", "2xx") - answered_before, 5);
  // Tokens never reach the logs.
  for (const std::string& line : edge_->Lines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("eyJ")));
  }
}

TEST_F(EdgeTest, SessionRefusesMissingOrBadCredentialsForeignOriginsAndOtherMethods) {
  const double missing_before = AuthFailures("missing");
  const double expired_before = AuthFailures("expired");
  const double malformed_before = AuthFailures("malformed");
  const double refused_before = ApiRequests("session", "4xx");
  const double origin_before = Metric("podgate_edge_rejections_total{reason=\"origin\"}");

  // No credential: from a CLI client, and from the page before anyone signed in.
  for (const auto& [method, headers] :
       std::vector<std::pair<std::string, std::vector<std::pair<std::string, std::string>>>>{
           {"GET", {}}, {"POST", {{"Origin", kOrigin}}}}) {
    http::ClientResponse r = Call(method, "/api/v1/session", headers);
    EXPECT_EQ(r.status, 401) << method << " " << r.body;
    EXPECT_EQ(ErrorOf(r)["code"], "UNAUTHENTICATED") << r.body;
    EXPECT_THAT(ErrorOf(r)["message"].get<std::string>(), HasSubstr("credential is required"));
  }
  http::ClientResponse r = Call("GET", "/api/v1/session", {{"Authorization", "Basic ZGFuYTp4"}});
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_THAT(ErrorOf(r)["message"].get<std::string>(), HasSubstr("not a Bearer token"));

  // An expired token, as a header or as the cookie: the verifier's reason, never the token.
  const std::string expired = Token("dana", {"developers"}, absl::Seconds(-120));
  for (const auto& header : std::vector<std::pair<std::string, std::string>>{
           {"Authorization", "Bearer " + expired}, {"Cookie", "podgate_token=" + expired}}) {
    r = Call("POST", "/api/v1/session", {{"Origin", kOrigin}, header});
    EXPECT_EQ(r.status, 401) << header.first << " " << r.body;
    EXPECT_EQ(ErrorOf(r)["code"], "UNAUTHENTICATED") << r.body;
    EXPECT_THAT(ErrorOf(r)["message"].get<std::string>(), HasSubstr("token expired"));
    EXPECT_THAT(r.body, ::testing::Not(HasSubstr(expired)));
  }

  // A foreign Origin is refused before the credential is looked at, on any method, and the
  // message names the origin and the flag that would admit it.
  const std::string valid = Token("dana", {"developers"});
  for (const std::string method : {"POST", "GET"}) {
    for (const std::string origin : {"https://evil.test", "https://podgate.test.evil", "null"}) {
      r = Call(method, "/api/v1/session",
               {{"Origin", origin}, {"Authorization", "Bearer " + valid}});
      EXPECT_EQ(r.status, 403) << method << " " << origin << " " << r.body;
      EXPECT_EQ(ErrorOf(r)["code"], "PERMISSION_DENIED") << r.body;
      EXPECT_EQ(ErrorOf(r)["message"],
                "Origin " + origin + " is not allowed: edge's --allowed_origins must list it");
    }
  }
  // An Origin that is not UTF-8 is quoted with replacement characters, still as JSON.
  r = Call("POST", "/api/v1/session", {{"Origin", "https://\xff.test"}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_THAT(ErrorOf(r)["message"].get<std::string>(), HasSubstr("https://\xEF\xBF\xBD.test"));

  // The login route's refusal names the origin the same way.
  r = Call("POST", "/api/v1/login",
           {{"Origin", "https://evil.test"}, {"Authorization", "Bearer " + valid}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(ErrorOf(r)["message"],
            "Origin https://evil.test is not allowed: edge's --allowed_origins must list it");
  r = Call("POST", "/api/v1/login", {{"Authorization", "Bearer " + valid}});
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(ErrorOf(r)["message"], "an Origin header is required");

  // Other methods.
  r = Call("DELETE", "/api/v1/session", {{"Authorization", "Bearer " + valid}});
  EXPECT_EQ(r.status, 405) << r.body;
  EXPECT_THAT(ErrorOf(r)["message"].get<std::string>(), HasSubstr("GET or POST"));
  EXPECT_EQ(HeaderOf(r, "Allow"), "GET, HEAD, POST");

  EXPECT_EQ(AuthFailures("missing") - missing_before, 2);
  EXPECT_EQ(AuthFailures("malformed") - malformed_before, 1);
  EXPECT_EQ(AuthFailures("expired") - expired_before, 2);
  // 2 missing + 1 malformed + 2 expired + 7 origin + 1 method.
  EXPECT_EQ(ApiRequests("session", "4xx") - refused_before, 13);
  // 7 on the session route, 2 on login.
  EXPECT_EQ(Metric("podgate_edge_rejections_total{reason=\"origin\"}") - origin_before, 9);
  for (const std::string& line : edge_->Lines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("eyJ")));
  }
}

TEST_F(EdgeTest, AuditFiltersByKindAndVerdict) {
  const std::string auditor = Token("ann", {"podgate-auditors"});
  auto records = [&](const std::string& query) {
    auto r = Get("/api/v1/audit?user=frank&page_size=1000&" + query, auditor);
    EXPECT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r.ok() ? r->status : 0, 200) << query << ": " << (r.ok() ? r->body : "");
    if (!r.ok() || r->status != 200) {
      return nlohmann::json::array();
    }
    return nlohmann::json::parse(r->body)["records"];
  };
  auto kinds_of = [](const nlohmann::json& rs) {
    std::set<std::string> kinds;
    for (const auto& rec : rs) {
      kinds.insert(rec["event"]["kind"].get<std::string>());
    }
    return kinds;
  };

  auto ws = Seed(Token("frank", {"developers"}));
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write("echo filtered", false).ok());
  auto out = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, R"({"stdout": "filtered\n"})");
  ASSERT_TRUE(ws->Write("cat /etc/hostname", false).ok());
  auto denied = ws->Read(absl::Seconds(10));
  ASSERT_TRUE(denied.ok()) << denied.status();
  EXPECT_THAT(denied->data, HasSubstr("is not allowed"));
  ASSERT_TRUE(ws->Write("exit", false).ok());
  ReadUntilClosed(*ws, nullptr);

  // exec records a command's result after its output has left: wait for it (and the close).
  nlohmann::json results;
  absl::Time deadline = absl::Now() + absl::Seconds(10);
  while ((results = records("kind=command_result")).empty() ||
         records("kind=session_close").empty()) {
    ASSERT_LT(absl::Now(), deadline) << "no command_result / session_close record for frank";
    absl::SleepFor(absl::Milliseconds(50));
  }
  const nlohmann::json all = records("");
  EXPECT_GT(kinds_of(all).size(), 2u) << all.dump();
  EXPECT_EQ(kinds_of(results), std::set<std::string>{"EVENT_KIND_COMMAND_RESULT"});
  EXPECT_EQ(results.size(), 1u) << results.dump();  // the denied line never ran
  EXPECT_EQ(records("kind=EVENT_KIND_COMMAND_RESULT"), results);

  // Repeated values match any of them.
  const nlohmann::json sessions = records("kind=session_open&kind=EVENT_KIND_SESSION_CLOSE");
  EXPECT_EQ(kinds_of(sessions),
            (std::set<std::string>{"EVENT_KIND_SESSION_OPEN", "EVENT_KIND_SESSION_CLOSE"}));

  const nlohmann::json denials = records("verdict=deny");
  ASSERT_FALSE(denials.empty()) << all.dump();
  for (const auto& rec : denials) {
    EXPECT_EQ(rec["event"]["decision"]["verdict"], "VERDICT_DENY") << rec.dump();
  }
  EXPECT_THAT(denials.dump(), HasSubstr("/etc/hostname"));
  EXPECT_THAT(denials.dump(), ::testing::Not(HasSubstr("filtered")));
  EXPECT_EQ(records("verdict=VERDICT_DENY"), denials);

  // Filters combine with AND.
  const nlohmann::json allowed = records("kind=decision&verdict=allow");
  ASSERT_FALSE(allowed.empty()) << all.dump();
  for (const auto& rec : allowed) {
    EXPECT_EQ(rec["event"]["kind"], "EVENT_KIND_DECISION") << rec.dump();
    EXPECT_EQ(rec["event"]["decision"]["verdict"], "VERDICT_ALLOW") << rec.dump();
  }
  EXPECT_THAT(allowed.dump(), HasSubstr("filtered"));

  // Unknown values: 400 naming the value and listing the short names.
  const double bad_before = ApiRequests("audit", "4xx");
  for (const std::string value :
       {"bogus", "EVENT_KIND_UNSPECIFIED", "unspecified", "COMMAND_RESULT", ""}) {
    auto r = Get("/api/v1/audit?kind=" + value, auditor);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 400) << value << ": " << r->body;
    nlohmann::json error = nlohmann::json::parse(r->body)["error"];
    EXPECT_EQ(error["code"], "INVALID_ARGUMENT");
    EXPECT_EQ(
        error["message"],
        "kind: unknown value \"" + value +
            "\"; use one of session_open, session_close, command_request, decision, "
            "command_result, auth_failure, policy_change, shell_recording, "
            "session_detach, session_resume, session_join, session_leave (or the full enum names, "
            "e.g. "
            "EVENT_KIND_SESSION_OPEN)");
  }
  auto r = Get("/api/v1/audit?kind=command_result&verdict=maybe", auditor);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_EQ(nlohmann::json::parse(r->body)["error"]["message"],
            "verdict: unknown value \"maybe\"; use one of allow, deny (or the full enum names, "
            "e.g. VERDICT_ALLOW)");
  // A value that is not UTF-8 is still answered as JSON.
  r = Get("/api/v1/audit?kind=%FF", auditor);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 400) << r->body;
  EXPECT_THAT(nlohmann::json::parse(r->body)["error"]["message"].get<std::string>(),
              HasSubstr("\"\xEF\xBF\xBD\""));
  EXPECT_EQ(ApiRequests("audit", "4xx") - bad_before, 7);
  // A non-auditor learns nothing about the filters.
  r = Get("/api/v1/audit?kind=bogus", Token("frank", {"developers"}));
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->status, 403) << r->body;
}

// SIGTERM (a rolling update): every idle browser session is told why and closed with 1001,
// never dropped; with nothing left to wait for, edge exits long before --drain_timeout.
TEST_F(EdgeTest, ShutdownClosesIdleSessionsWith1001AndExitsPromptly) {
  EdgeReplica replica;
  ASSERT_TRUE(StartEdge({"--drain_timeout=60s"}, &replica));
  Subprocess* edge = replica.process.get();
  const int port = replica.http_port;
  auto v1 = V1(Token(), port);
  auto seed = Seed(Token("bob", {"developers"}), port);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(seed, nullptr);
  // The seed session is open once a line has run (its first message only authenticates).
  ASSERT_TRUE(seed->Write("echo open", false).ok());
  auto out = seed->Read(absl::Seconds(10));
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->data, R"({"stdout": "open\n"})");

  edge->Signal(SIGTERM);
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*v1, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(seen[0]), kV1Shutdown) << seen[0];
  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*seed, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  EXPECT_EQ(seen, std::vector<std::string>{kSeedShutdown});

  auto status = edge->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "edge waited for --drain_timeout: " << status.status();
  EXPECT_EQ(*status, 0);
  bool drained = false;
  for (const std::string& line : edge->Lines()) {
    drained = drained || absl::StrContains(line, "\"msg\":\"draining browser sessions\"");
    EXPECT_THAT(line, ::testing::Not(HasSubstr("drain deadline")));
  }
  EXPECT_TRUE(drained);
}

// exec frozen at SIGTERM: the session is closed at once (1001), its exec stream gets no answer
// and is cancelled (by the session, 5s after the browser left, or by edge's last wait for its
// calls in flight), and edge exits 0 without waiting for --drain_timeout and with nothing left
// in flight.
TEST_F(EdgeTest, ShutdownWithExecFrozenStillEndsEverythingAndExits) {
  EdgeReplica replica;
  ASSERT_TRUE(StartEdge({"--drain_timeout=60s"}, &replica));
  auto v1 = V1(Token(), replica.http_port);
  ASSERT_NE(v1, nullptr);
  ASSERT_TRUE(exec_->Freeze().ok());
  struct Resume {
    ~Resume() { ThawExec(); }
  } resume;

  replica.process->Signal(SIGTERM);
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*v1, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  auto status = replica.process->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << "edge waited for --drain_timeout: " << status.status();
  EXPECT_EQ(*status, 0);
  for (const std::string& line : replica.process->Lines()) {
    EXPECT_THAT(line, ::testing::Not(HasSubstr("still in flight at exit")));
    EXPECT_THAT(line, ::testing::Not(HasSubstr("drain deadline")));
  }
}

// A running command is not cut off: edge refuses new commands, lets the running one finish,
// sends its result and only then closes (1001), on both protocols.
TEST_F(EdgeTest, ShutdownClosesASessionRightAfterItsRunningCommand) {
  EdgeReplica replica;
  ASSERT_TRUE(StartEdge({"--drain_timeout=60s"}, &replica));
  Subprocess* edge = replica.process.get();
  const int port = replica.http_port;
  auto v1 = V1(Token(), port);
  auto seed = Seed(Token("bob", {"developers"}), port);
  ASSERT_NE(v1, nullptr);
  ASSERT_NE(seed, nullptr);
  // Long enough that the drain surely starts while both run, even on a busy machine.
  ASSERT_TRUE(seed->Write("sleep 7", false).ok());
  ASSERT_GT(StartCommand(*v1, "s1", "sleep 6"), 0);
  const pid_t seed_sleep = WaitForChild(kubesim_->pid(), {"sleep", "7"});
  ASSERT_GT(seed_sleep, 0);

  edge->Signal(SIGTERM);
  ASSERT_TRUE(edge->WaitForLine("\"msg\":\"draining browser sessions\"", absl::Seconds(30)).ok());
  // Sent during the drain: answered by edge at once (exec would have answered the v1 one with
  // FAILED_PRECONDITION, a command being busy), never run.
  ASSERT_TRUE(v1->Write(R"({"type":"command","id":"late","line":"echo late"})", false).ok());
  ASSERT_TRUE(seed->Write("echo late", false).ok());

  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*v1, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  ASSERT_EQ(seen.size(), 3u) << absl::StrJoin(seen, " | ");
  EXPECT_EQ(nlohmann::json::parse(seen[0]),
            nlohmann::json({{"type", "error"},
                            {"id", "late"},
                            {"code", "UNAVAILABLE"},
                            {"message", "edge is shutting down; reconnect to continue"}}));
  nlohmann::json exit = nlohmann::json::parse(seen[1]);
  EXPECT_EQ(exit["type"], "exit") << seen[1];
  EXPECT_EQ(exit["id"], "s1");
  EXPECT_EQ(exit["termination"], "exited");
  EXPECT_EQ(exit["code"], 0);
  EXPECT_EQ(nlohmann::json::parse(seen[2]), kV1Shutdown) << seen[2];

  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*seed, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  // The late line's answer, then the close's, which waited for the sleep to end.
  EXPECT_EQ(seen, (std::vector<std::string>{kSeedShutdown, kSeedShutdown}));
  EXPECT_TRUE(ArgvOf(seed_sleep).empty()) << "the seed session closed while its command ran";

  auto status = edge->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
}

// While the drain runs, load balancers see /readyz 503 and a handshake on a connection opened
// before it gets 503; what runs meanwhile (here an interrupt) still reaches exec.
TEST_F(EdgeTest, ShutdownAnswersReadyzAndHandshakesWith503WhileDraining) {
  EdgeReplica replica;
  ASSERT_TRUE(StartEdge({"--drain_timeout=60s"}, &replica));
  Subprocess* edge = replica.process.get();
  const int port = replica.http_port;
  auto holder = V1(Token(), port);
  auto idle = V1(Token("bob", {"developers"}), port);
  ASSERT_NE(holder, nullptr);
  ASSERT_NE(idle, nullptr);
  ASSERT_GT(StartCommand(*holder, "h", "sleep 93"), 0);
  // Ready (the backend channels connect on first use), on a connection kept open.
  const std::string readyz = "GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
  std::unique_ptr<KeepAliveConnection> connection;
  KeepAliveConnection::Answer ready;
  for (absl::Time deadline = absl::Now() + absl::Seconds(30); ready.status != 200;) {
    ASSERT_LT(absl::Now(), deadline) << "edge never ready: " << ready.body;
    connection = KeepAliveConnection::Open(port);
    ASSERT_NE(connection, nullptr);
    auto answer = connection->RoundTrip(readyz);
    ASSERT_TRUE(answer.ok()) << answer.status();
    ready = *answer;
    if (ready.status != 200) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  edge->Signal(SIGTERM);
  ASSERT_TRUE(edge->WaitForLine("\"msg\":\"draining browser sessions\"", absl::Seconds(30)).ok());
  auto draining = connection->RoundTrip(readyz);
  ASSERT_TRUE(draining.ok()) << draining.status();
  EXPECT_EQ(draining->status, 503);
  EXPECT_EQ(nlohmann::json::parse(draining->body), nlohmann::json({{"edge", "shutting down"}}));
  auto upgrade = connection->RoundTrip(absl::StrCat(
      "GET /ws/v1/demo/web-1 HTTP/1.1\r\nHost: 127.0.0.1\r\nOrigin: ", kOrigin,
      "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: podgate.v1\r\n\r\n"));
  ASSERT_TRUE(upgrade.ok()) << upgrade.status();
  EXPECT_EQ(upgrade->status, 503) << upgrade->body;
  EXPECT_EQ(ErrorOf(http::ClientResponse{upgrade->status, "", upgrade->body, {}})["code"],
            "UNAVAILABLE")
      << upgrade->body;
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*idle, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  EXPECT_EQ(seen.size(), 1u) << absl::StrJoin(seen, " | ");
  // /metrics is still served while browsers drain.
  EXPECT_EQ(Metric("podgate_edge_rejections_total{reason=\"shutdown\"}", replica.metrics_port), 1);
  EXPECT_EQ(Metric("podgate_edge_drain_closes_total{when=\"at_once\"}", replica.metrics_port), 1);
  EXPECT_EQ(Metric("podgate_edge_drain_closes_total{when=\"after_command\"}", replica.metrics_port),
            0);

  ASSERT_TRUE(holder->Write(R"({"type":"interrupt"})", false).ok());
  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*holder, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  ASSERT_EQ(seen.size(), 2u) << absl::StrJoin(seen, " | ");
  nlohmann::json exit = nlohmann::json::parse(seen[0]);
  EXPECT_EQ(exit["type"], "exit") << seen[0];
  EXPECT_EQ(exit["id"], "h");
  EXPECT_EQ(exit["termination"], "interrupted");
  EXPECT_EQ(nlohmann::json::parse(seen[1]), kV1Shutdown) << seen[1];
  auto status = edge->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
}

// A command still running when --drain_timeout runs out is ended with the session: the
// browser gets `closed` and 1001 (not a dropped connection), exec stops the command.
TEST_F(EdgeTest, ShutdownClosesWhatIsLeftAtTheDrainDeadline) {
  EdgeReplica replica;
  ASSERT_TRUE(StartEdge({"--drain_timeout=2s"}, &replica));
  Subprocess* edge = replica.process.get();
  const int port = replica.http_port;
  auto v1 = V1(Token(), port);
  ASSERT_NE(v1, nullptr);
  const pid_t sleep = StartCommand(*v1, "long", "sleep 94");
  ASSERT_GT(sleep, 0);

  const absl::Time start = absl::Now();
  edge->Signal(SIGTERM);
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*v1, &seen, absl::Seconds(30)), HasSubstr("code 1001"));
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1900)) << "closed before the deadline";
  ASSERT_EQ(seen.size(), 1u) << absl::StrJoin(seen, " | ");
  EXPECT_EQ(nlohmann::json::parse(seen[0]), kV1Shutdown) << seen[0];
  auto status = edge->WaitExit(absl::Seconds(30));
  ASSERT_TRUE(status.ok()) << status.status();
  EXPECT_EQ(*status, 0);
  EXPECT_THAT(absl::StrJoin(edge->Lines(), "\n"), HasSubstr("drain deadline"));
  // exec ended the command with the session instead of leaving it to its time limit.
  const absl::Time deadline = absl::Now() + absl::Seconds(30);
  while (!ArgvOf(sleep).empty() && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_TRUE(ArgvOf(sleep).empty()) << "sleep 94 still runs";
}

}  // namespace
}  // namespace podgate

namespace podgate {
namespace {

constexpr char kHealthz[] = "GET /healthz HTTP/1.1\r\nHost: edge\r\n\r\n";

std::string SessionRequest(const std::string& token) {
  return absl::StrCat("GET /api/v1/session HTTP/1.1\r\nHost: edge\r\nAuthorization: Bearer ", token,
                      "\r\n\r\n");
}

// One client address holding keep-alive connections (the incident: 10,256 idle /healthz
// connections from one address starved everyone) is capped per source address before any
// authentication, gets 429 with a reason, and every other address is still served.
TEST_F(EdgeTest, OneSourceAddressCannotStarveTheOthers) {
  EdgeReplica edge;
  ASSERT_TRUE(
      StartEdge({"--max_connections=10", "--max_connections_per_source=12",
                 "--max_unauthenticated_per_source=8", "--http_unauthenticated_idle_timeout=1s"},
                &edge));
  std::vector<std::unique_ptr<KeepAliveConnection>> held;
  int refused = 0;
  for (int i = 0; i < 300 && refused == 0; ++i) {
    auto c = KeepAliveConnection::Open(edge.http_port, "127.0.0.1");
    ASSERT_NE(c, nullptr);
    auto answer = c->RoundTrip(kHealthz, absl::Seconds(5));
    ASSERT_TRUE(answer.ok()) << "connection " << i << ": " << answer.status();
    if (answer->status == 200) {
      held.push_back(std::move(c));
      continue;
    }
    ++refused;
    EXPECT_EQ(answer->status, 429) << answer->body;
    EXPECT_THAT(answer->body, HasSubstr("too many unauthenticated connections from this address"));
  }
  EXPECT_EQ(held.size(), 8u);
  EXPECT_EQ(refused, 1);
  auto other = KeepAliveConnection::Open(edge.http_port, "127.0.0.2");
  ASSERT_NE(other, nullptr);
  auto answer = other->RoundTrip(kHealthz, absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);

  // Anonymous keep-alive is short: the idle ones are gone after
  // --http_unauthenticated_idle_timeout.
  absl::SleepFor(absl::Milliseconds(2500));
  EXPECT_FALSE(held.front()->RoundTrip(kHealthz, absl::Seconds(2)).ok());
  held.clear();

  // Signed-in connections count against the address's total only.
  for (int i = 0; i < 12; ++i) {
    auto c = KeepAliveConnection::Open(edge.http_port, "127.0.0.1");
    ASSERT_NE(c, nullptr);
    auto signed_in = c->RoundTrip(SessionRequest(Token("many-" + std::to_string(i))));
    ASSERT_TRUE(signed_in.ok()) << signed_in.status();
    EXPECT_EQ(signed_in->status, 200) << signed_in->body;
    held.push_back(std::move(c));
  }
  auto over = KeepAliveConnection::Open(edge.http_port, "127.0.0.1");
  ASSERT_NE(over, nullptr);
  answer = over->RoundTrip(SessionRequest(Token()), absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 429);
  EXPECT_THAT(answer->body, HasSubstr("too many connections from this address"));
  // The signed-in connections keep the long keep-alive.
  absl::SleepFor(absl::Milliseconds(1500));
  answer = held.front()->RoundTrip(kHealthz, absl::Seconds(5));
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);
  answer = other->RoundTrip(kHealthz, absl::Seconds(5));
  if (!answer.ok()) {  // idle anonymous: closed; a new one from 127.0.0.2 is served
    other = KeepAliveConnection::Open(edge.http_port, "127.0.0.2");
    answer = other->RoundTrip(kHealthz, absl::Seconds(5));
  }
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(Metric("podgate_edge_rejections_total{reason=\"unauthenticated_per_source\"}",
                   edge.metrics_port),
            1);
  EXPECT_EQ(Metric("podgate_edge_rejections_total{reason=\"per_source\"}", edge.metrics_port), 1);
}

// WebSockets waiting for a first-message credential have a pool of their own: filling it does
// not keep a signed-in browser out, and one that authenticates moves over and frees its place.
TEST_F(EdgeTest, APreAuthWebSocketFloodDoesNotBlockSignedInSessions) {
  EdgeReplica edge;
  ASSERT_TRUE(StartEdge({"--max_connections=4", "--max_unauthenticated_connections=4",
                         "--max_connections_per_source=0", "--max_unauthenticated_per_source=0",
                         "--auth_timeout=60s"},
                        &edge));
  std::vector<std::unique_ptr<http::WebSocketClient>> anonymous;
  for (int i = 0; i < 4; ++i) {
    auto ws = http::WebSocketClient::Connect(Options(kOrigin, edge.http_port), "/ws/v1/demo/web-1",
                                             {"podgate.v1"});
    ASSERT_TRUE(ws.ok()) << ws.status();
    anonymous.push_back(*std::move(ws));
  }
  http::ClientResponse refusal;
  auto fifth = http::WebSocketClient::Connect(Options(kOrigin, edge.http_port), "/ws/v1/demo/web-1",
                                              {"podgate.v1"}, &refusal);
  EXPECT_FALSE(fifth.ok());
  EXPECT_EQ(refusal.status, 503);
  EXPECT_THAT(refusal.body, HasSubstr("waiting to authenticate"));
  EXPECT_EQ(
      Metric("podgate_edge_rejections_total{reason=\"unauthenticated_limit\"}", edge.metrics_port),
      1);

  // Signed-in sessions open while the anonymous pool is full.
  auto first = V1(Token("pool-a"), edge.http_port);
  ASSERT_NE(first, nullptr);
  auto second = V1(Token("pool-b"), edge.http_port);
  ASSERT_NE(second, nullptr);

  // An anonymous one authenticates: it is a session now, and its place is free again.
  ASSERT_TRUE(
      anonymous[0]
          ->Write(nlohmann::json{{"type", "auth"}, {"token", Token("pool-c")}}.dump(), false)
          .ok());
  auto ready = anonymous[0]->Read(absl::Seconds(10));
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_THAT(ready->data, HasSubstr("\"ready\""));
  auto again = http::WebSocketClient::Connect(Options(kOrigin, edge.http_port), "/ws/v1/demo/web-1",
                                              {"podgate.v1"});
  EXPECT_TRUE(again.ok()) << again.status();
}

// CPU time (user + system) of a process so far, in seconds.
double CpuSeconds(pid_t pid) {
  const std::string stat = testing::ReadProcFile(absl::StrCat("/proc/", pid, "/stat"));
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(stat.rfind(')') + 2), ' ', absl::SkipEmpty());
  int64_t utime = 0;
  int64_t stime = 0;
  if (fields.size() < 13 || !absl::SimpleAtoi(fields[11], &utime) ||
      !absl::SimpleAtoi(fields[12], &stime)) {
    return -1;
  }
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Out of file descriptors (EMFILE), edge's accept loop backs off instead of spinning (it used
// 55-76% of a core), and serves again once descriptors are free.
TEST_F(EdgeTest, OutOfDescriptorsTheAcceptLoopBacksOffAndRecovers) {
  const char* prlimit = "/usr/bin/prlimit";
  if (access(prlimit, X_OK) != 0) {
    GTEST_SKIP() << "needs prlimit (util-linux)";
  }
  std::vector<std::string> args = {"--nofile=80:80", PODGATE_EDGE_BIN};
  args.insert(args.end(), edge_args_->begin(), edge_args_->end());
  args.push_back("--max_connections_per_source=0");
  args.push_back("--max_unauthenticated_per_source=0");
  EdgeReplica edge;
  auto process = Subprocess::Start(prlimit, args);  // prlimit execs edge: same pid
  ASSERT_TRUE(process.ok()) << process.status();
  edge.process = *std::move(process);
  auto line = edge.process->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  edge.http_port = JsonPort(*line, "http_port");
  line = edge.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  edge.metrics_port = JsonPort(*line, "metrics_port");

  // More connections than descriptors: the rest wait in the listen backlog.
  std::vector<std::unique_ptr<KeepAliveConnection>> flood;
  for (int i = 0; i < 150; ++i) {
    auto c = KeepAliveConnection::Open(edge.http_port);
    ASSERT_NE(c, nullptr) << i;
    flood.push_back(std::move(c));
  }
  absl::SleepFor(absl::Seconds(1));
  const pid_t pid = edge.process->pid();
  const double cpu_before = CpuSeconds(pid);
  const absl::Time t0 = absl::Now();
  absl::SleepFor(absl::Seconds(3));
  const double cpu = (CpuSeconds(pid) - cpu_before) / absl::ToDoubleSeconds(absl::Now() - t0);
  EXPECT_GE(cpu_before, 0);
  EXPECT_LT(cpu, 0.2) << "edge used " << cpu * 100 << "% of a core while out of descriptors";
  EXPECT_TRUE(edge.process->WaitForLine("accept failing, backing off", absl::Seconds(1)).ok());

  flood.clear();
  absl::StatusOr<KeepAliveConnection::Answer> answer;
  for (absl::Time deadline = absl::Now() + absl::Seconds(10); absl::Now() < deadline;) {
    auto c = KeepAliveConnection::Open(edge.http_port);
    ASSERT_NE(c, nullptr);
    answer = c->RoundTrip(kHealthz, absl::Seconds(3));
    if (answer.ok()) {
      break;
    }
  }
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status, 200);
  EXPECT_GE(Metric("podgate_edge_accept_backoffs_total", edge.metrics_port), 1);
}

// Every refused credential at edge is one AUTH_FAILURE audit record with the reason, the
// source address and the path, never the token: WebSocket sub-protocol, first message, seed
// Authorization line, HTTP API Bearer header, login, and the login cookie.
TEST_F(EdgeTest, AuthFailuresAtEdgeAreAuditedOnceWithoutTheToken) {
  const absl::Time start = absl::Now() - absl::Seconds(1);
  const std::string tag = absl::StrCat(absl::ToUnixMicros(absl::Now()) % 1000000000);
  const std::string bad = Token("mallory", {"developers"}, absl::Minutes(-10));  // expired
  const std::string sub_pod = "aud-sub-" + tag;
  const std::string first_pod = "aud-first-" + tag;
  const std::string seed_pod = "aud-seed-" + tag;

  EXPECT_EQ(RefusalStatus("/ws/v1/demo/" + sub_pod, {"podgate.v1", "base64url.bearer.podgate.v1." +
                                                                       auth::Base64UrlEncode(bad)}),
            401);
  auto first =
      http::WebSocketClient::Connect(Options(), "/ws/v1/demo/" + first_pod, {"podgate.v1"});
  ASSERT_TRUE(first.ok()) << first.status();
  ASSERT_TRUE((*first)->Write(nlohmann::json{{"type", "auth"}, {"token", bad}}.dump(), false).ok());
  ReadUntilClosed(**first, nullptr);
  auto seed = http::WebSocketClient::Connect(Options(), "/ws/seed/demo/" + seed_pod, {});
  ASSERT_TRUE(seed.ok()) << seed.status();
  ASSERT_TRUE((*seed)->Write("Authorization: Bearer " + bad, false).ok());
  // Refused in silence; the next line is told to log in, not audited a second time.
  ASSERT_TRUE((*seed)->Write("echo hello", false).ok());
  ReadUntilClosed(**seed, nullptr);
  EXPECT_EQ(
      Call("GET", "/api/v1/allowed?namespace=demo&pod=" + tag, {{"Authorization", "Bearer " + bad}})
          .status,
      401);
  EXPECT_EQ(Call("POST", "/api/v1/login", {{"Origin", kOrigin}, {"Authorization", "Bearer " + bad}})
                .status,
            401);
  EXPECT_EQ(Call("GET", "/api/v1/session", {{"Cookie", "podgate_token=" + bad}}).status, 401);

  // Audit acks arrive asynchronously: poll.
  const std::string query =
      absl::StrCat("/api/v1/audit?kind=auth_failure&page_size=1000&start_time=",
                   absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", start, absl::UTCTimeZone()));
  std::vector<nlohmann::json> edge_records;
  for (absl::Time deadline = absl::Now() + absl::Seconds(15); absl::Now() < deadline;) {
    auto audit = Get(query, Token("ann", {"podgate-auditors"}));
    ASSERT_TRUE(audit.ok()) << audit.status();
    ASSERT_EQ(audit->status, 200) << audit->body;
    EXPECT_THAT(audit->body, ::testing::Not(HasSubstr(bad)));
    EXPECT_THAT(audit->body, ::testing::Not(HasSubstr(bad.substr(bad.rfind('.') + 1))));
    edge_records.clear();
    const nlohmann::json body = nlohmann::json::parse(audit->body);
    for (const nlohmann::json& r : body["records"]) {
      if (r["event"].value("source_service", "") == "edge") {
        edge_records.push_back(r["event"]);
      }
    }
    if (edge_records.size() >= 6) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(200));
  }
  EXPECT_EQ(edge_records.size(), 6u)
      << "recorded " << Metric("podgate_edge_auth_audit_recorded_total") << ", dropped "
      << Metric("podgate_edge_auth_audit_dropped_total{reason=\"queue_full\"}") << "+"
      << Metric("podgate_edge_auth_audit_dropped_total{reason=\"failed\"}") << "; "
      << Get(query, Token("ann", {"podgate-auditors"}))->body.substr(0, 3000);
  auto count = [&](const std::string& needle) {
    int n = 0;
    for (const nlohmann::json& r : edge_records) {
      if (r.dump().find(needle) != std::string::npos) {
        ++n;
        EXPECT_EQ(r["auth_failure"]["reason"], "expired") << r.dump();
        EXPECT_THAT(r.value("source_address", ""), StartsWith("127.0.0.1:")) << r.dump();
      }
    }
    return n;
  };
  EXPECT_EQ(count("(path /ws/v1/demo/" + sub_pod + ")"), 1);
  EXPECT_EQ(count("(path /ws/v1/demo/" + first_pod + ")"), 1);
  EXPECT_EQ(count("(path /ws/seed/demo/" + seed_pod + ")"), 1);
  EXPECT_EQ(count("(path /api/v1/allowed)"), 1);
  EXPECT_EQ(count("(path /api/v1/login)"), 1);
  EXPECT_EQ(count("(path /api/v1/session)"), 1);
  for (const nlohmann::json& r : edge_records) {
    if (r.dump().find(sub_pod) != std::string::npos) {
      EXPECT_EQ(r["target"]["pod"], sub_pod);
    }
  }
}

// A flood of bad tokens does not grow edge's memory for audit: past --auth_audit_queue events
// waiting for audit, failures are dropped and counted.
TEST_F(EdgeTest, AFloodOfBadTokensIsDroppedPastTheAuditQueue) {
  EdgeReplica edge;
  // Nothing listens on port 1: audit never acks, so the queue fills.
  ASSERT_TRUE(StartEdge(
      {"--audit_address=127.0.0.1:1", "--auth_audit_queue=5", "--max_unauthenticated_per_source=0"},
      &edge));
  http::ClientOptions o = Options("", edge.http_port);
  o.headers.push_back({"Authorization", "Bearer not-a-token"});
  for (int i = 0; i < 50; ++i) {
    auto r = http::Fetch(o, "GET", "/api/v1/session");
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->status, 401);
  }
  EXPECT_EQ(Metric("podgate_edge_auth_failures_total{reason=\"malformed\"}", edge.metrics_port),
            50);
  // Five events wait (never acked, never given up); each of the other 45 is refused at once,
  // and its outcome reaches the counter on the timer thread, possibly after its 401 went out.
  const std::string dropped = "podgate_edge_auth_audit_dropped_total{reason=\"queue_full\"}";
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (absl::Now() < deadline && Metric(dropped, edge.metrics_port) < 45) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(Metric(dropped, edge.metrics_port), 45);
  EXPECT_EQ(Metric("podgate_edge_auth_audit_recorded_total", edge.metrics_port), 0);
}

// stdin is flow-controlled at edge: a browser flooding stdin while the exec stream accepts
// nothing (exec is stopped with SIGSTOP, so its HTTP/2 window closes) is held back (one write
// to exec at a time, at most 32 requests queued, then edge stops reading the WebSocket and TCP
// pushes back on the browser), so edge's memory stays bounded.
TEST_F(EdgeTest, AStdinFloodWhileExecAcceptsNothingKeepsEdgeMemoryBounded) {
  EdgeReplica edge;
  ASSERT_TRUE(StartEdge({"--messages_per_second=100000", "--message_burst=100000",
                         "--user_messages_per_second=100000", "--user_message_burst=100000"},
                        &edge));
  auto ws = V1(Token("stdin-flood"), edge.http_port);
  ASSERT_NE(ws, nullptr);
  ASSERT_NE(StartCommand(*ws, "s1", "sleep 67"), -1);
  const pid_t pid = edge.process->pid();
  const int64_t before = RssKiB(pid);
  ASSERT_TRUE(exec_->Freeze().ok());
  std::atomic<bool> stop{false};
  std::atomic<int64_t> written{0};
  const std::string frame = std::string(1, '\0') + std::string(60000, 'y');
  std::thread flood([&] {
    while (!stop.load() && written.load() < (int64_t{200} << 20)) {
      if (!ws->Write(frame, true).ok()) {
        return;  // edge stopped reading and the write timed out
      }
      written += static_cast<int64_t>(frame.size()) - 1;
    }
  });
  int64_t peak = before;
  for (int i = 0; i < 40; ++i) {
    absl::SleepFor(absl::Milliseconds(100));
    peak = std::max(peak, RssKiB(pid));
  }
  stop = true;
  flood.join();
  peak = std::max(peak, RssKiB(pid));
  ThawExec();
  std::cout << "edge RSS before " << before << " KiB, peak " << peak << " KiB; the browser got "
            << (written.load() >> 10) << " KiB of stdin out while exec accepted nothing\n";
  // What the browser got out sits in socket buffers, gRPC's window and edge's 32 requests.
  EXPECT_LT(written.load(), int64_t{64} << 20) << "edge kept reading the browser";
  // Buffering what the browser sent would cost tens of MiB; the bound is 32 queued requests of
  // at most 64 KiB plus socket and allocator slack.
  EXPECT_LT(peak - before, 14 * 1024) << "edge buffered stdin instead of pausing the browser";
}

// An exec replica killed (SIGKILL) under a running command: the page is told the command's
// outcome is unknown and why the session ends (v1 `exit` termination `error` with a reason,
// then `closed` reason `exec_lost`, close 1013; seed two stderr lines, 1013), and edge records
// the loss in audit with the session, the user and the running command.
TEST_F(EdgeTest, AnExecReplicaKilledMidCommandGivesTheBrowserAnOutcomeAndAnAuditRecord) {
  ExecReplica exec;
  ASSERT_TRUE(StartExec({}, {}, &exec));
  EdgeReplica edge;
  ASSERT_TRUE(StartEdge({"--exec_address=" + exec.address}, &edge));
  nlohmann::json ready;
  auto v1 = V1Ready(Token("alice-lost"), edge.http_port, &ready);
  ASSERT_NE(v1, nullptr);
  const std::string session_id = ready.value("session_id", "");
  ASSERT_FALSE(session_id.empty()) << ready.dump();
  auto seed = Seed(Token("bob-lost"), edge.http_port);
  ASSERT_NE(seed, nullptr);
  ASSERT_TRUE(seed->Write("sleep 88", false).ok());
  const pid_t seed_sleep = WaitForChild(exec.kubesim_pid, {"sleep", "88"});
  ASSERT_GT(seed_sleep, 0);
  const pid_t v1_sleep = StartCommand(*v1, "k1", "sleep 89");
  ASSERT_GT(v1_sleep, 0);

  exec.process->Signal(SIGKILL);
  std::vector<std::string> seen;
  EXPECT_THAT(ReadUntilClosed(*v1, &seen), HasSubstr("code 1013"));
  ASSERT_EQ(seen.size(), 2u) << absl::StrJoin(seen, " | ");
  EXPECT_EQ(nlohmann::json::parse(seen[0]),
            nlohmann::json({{"type", "exit"},
                            {"id", "k1"},
                            {"termination", "error"},
                            {"reason",
                             "the exec service was lost while the command ran; its "
                             "outcome is unknown"}}))
      << seen[0];
  EXPECT_EQ(nlohmann::json::parse(seen[1]),
            nlohmann::json({{"type", "closed"},
                            {"reason", "exec_lost"},
                            {"message",
                             "the connection to the exec service was lost; reconnect "
                             "to continue"}}))
      << seen[1];
  seen.clear();
  EXPECT_THAT(ReadUntilClosed(*seed, &seen), HasSubstr("code 1013"));
  EXPECT_EQ(
      seen,
      (std::vector<std::string>{
          R"({"stderr": "Command ended: error: the exec service was lost while the command ran; its outcome is unknown"})",
          R"({"stderr": "the connection to the exec service was lost; reconnect to continue"})"}));
  for (pid_t orphan : {seed_sleep, v1_sleep}) {
    kill(orphan, SIGKILL);  // exec died with them running; kubesim still holds them
  }

  // The trail is never silent: edge's SESSION_CLOSE (reason ERROR) names the command.
  // A query may meet audit's channel still connecting on a loaded machine (503, "connection
  // attempt timed out"): the record is what is waited for, the query is asked again.
  nlohmann::json record;
  std::string last_answer;
  for (absl::Time deadline = absl::Now() + absl::Seconds(15);
       record.is_null() && absl::Now() < deadline;) {
    auto audit = Get("/api/v1/audit?session_id=" + session_id, Token("ann", {"podgate-auditors"}));
    ASSERT_TRUE(audit.ok()) << audit.status();
    if (audit->status != 200) {
      ASSERT_EQ(audit->status, 503) << audit->body;
      last_answer = audit->body;
      absl::SleepFor(absl::Milliseconds(100));
      continue;
    }
    const nlohmann::json body = nlohmann::json::parse(audit->body);
    for (const nlohmann::json& r : body["records"]) {
      if (r["event"].value("source_service", "") == "edge" &&
          r["event"].value("kind", "") == "EVENT_KIND_SESSION_CLOSE") {
        record = r["event"];
      }
    }
    if (record.is_null()) {
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  ASSERT_FALSE(record.is_null())
      << "edge recorded no loss for session " << session_id << "; audit results: recorded "
      << Metric("podgate_edge_exec_lost_audit_total{result=\"recorded\"}", edge.metrics_port)
      << ", failed "
      << Metric("podgate_edge_exec_lost_audit_total{result=\"failed\"}", edge.metrics_port)
      << "; last refused query: " << last_answer;
  EXPECT_EQ(record["session_id"], session_id);
  EXPECT_EQ(record["command_id"], "k1");
  EXPECT_EQ(record["principal"]["user"], "alice-lost");
  EXPECT_EQ(record["target"]["pod"], "web-1");
  EXPECT_EQ(record["session_close"]["reason"], "CLOSE_REASON_ERROR");
  EXPECT_THAT(record["session_close"].value("message", ""),
              HasSubstr("while command k1 ran; its outcome is unknown"));
  EXPECT_EQ(Metric("podgate_edge_exec_lost_total", edge.metrics_port), 2);
}

// A command whose stream to the container fails ends with `exit` termination `error` and the
// reason (here kubesim drops the stream on a stdin frame above its --max_frame_bytes).
TEST_F(EdgeTest, AnExitWithTerminationErrorCarriesTheReason) {
  ExecReplica exec;
  ASSERT_TRUE(StartExec({"--max_frame_bytes=1024"}, {"--interrupt_grace=1s"}, &exec));
  EdgeReplica edge;
  ASSERT_TRUE(StartEdge({"--exec_address=" + exec.address}, &edge));
  auto ws = V1(Token(), edge.http_port);
  ASSERT_NE(ws, nullptr);
  ASSERT_TRUE(ws->Write(R"({"type":"command","id":"b1","line":"sleep 47"})", false).ok());
  ASSERT_GT(WaitForChild(exec.kubesim_pid, {"sleep", "47"}), 0);
  ASSERT_TRUE(ws->Write(std::string(1, '\0') + std::string(8192, 'x'), true).ok());
  nlohmann::json exit;
  for (absl::Time deadline = absl::Now() + absl::Seconds(15); absl::Now() < deadline;) {
    auto m = ws->Read(deadline - absl::Now());
    ASSERT_TRUE(m.ok()) << m.status();
    if (!m->binary) {
      exit = nlohmann::json::parse(m->data);
      break;
    }
  }
  EXPECT_EQ(exit["type"], "exit") << exit.dump();
  EXPECT_EQ(exit["id"], "b1");
  EXPECT_EQ(exit["termination"], "error");
  ASSERT_TRUE(exit.contains("reason")) << exit.dump();
  EXPECT_THAT(exit["reason"].get<std::string>(), HasSubstr("exec stops its process"))
      << exit.dump();
}

// A /readyz probe still waiting for a backend channel to settle when edge is told to stop gets
// its answer before edge exits: the probe polls on a timer thread of its own, and edge waits for
// it before its I/O context goes (an answer written to, or a connection destroyed after, a
// destroyed context is a use after free).
TEST_F(EdgeTest, AReadyzProbeInFlightAtShutdownIsAnsweredBeforeEdgeExits) {
  // An attempt where the probe had answered before SIGTERM (a machine too slow for the window
  // below) proves nothing and is made again with a new edge.
  bool in_flight = false;
  for (int attempt = 0; attempt < 3 && !in_flight; ++attempt) {
    // A policy that takes the TCP connection and never answers: its channel is CONNECTING
    // from the probe's first look until the attempt times out (250 ms, the channels' minimum
    // reconnect backoff, lib/runtime/tls.cc), and the probe waits meanwhile. Nothing else
    // uses the channel, so the connection arriving here says the probe is running.
    ::podgate::testing::SilentListener silent;
    ASSERT_TRUE(silent.ok());
    EdgeReplica replica;
    ASSERT_TRUE(StartEdge({absl::StrCat("--policy_address=127.0.0.1:", silent.port())}, &replica));
    auto connection = KeepAliveConnection::Open(replica.http_port);
    ASSERT_NE(connection, nullptr);
    absl::StatusOr<KeepAliveConnection::Answer> answer;
    std::atomic<bool> answered{false};
    std::thread probe([&] {
      answer = connection->RoundTrip("GET /readyz HTTP/1.1\r\nHost: edge\r\n\r\n");
      answered = true;
    });
    pollfd p{silent.fd(), POLLIN, 0};
    const bool connecting = poll(&p, 1, 10000) == 1;
    in_flight = connecting && !answered;
    replica.process->Signal(SIGTERM);
    probe.join();
    ASSERT_TRUE(connecting) << "the probe never asked policy's channel to connect";
    ASSERT_TRUE(answer.ok()) << answer.status();
    EXPECT_EQ(answer->status, 503) << answer->body;
    EXPECT_EQ(nlohmann::json::parse(answer->body)["policy"], "not ready") << answer->body;
    auto status = replica.process->WaitExit(absl::Seconds(30));
    ASSERT_TRUE(status.ok()) << status.status();
    EXPECT_EQ(*status, 0);
  }
  EXPECT_TRUE(in_flight) << "the probe answered before SIGTERM in every attempt";
}

// The first /readyz of a new replica, before anything used the backend channels (gRPC
// channels start IDLE), answers 200 when the backends are up.
TEST_F(EdgeTest, TheFirstReadyzAfterStartIs200) {
  EdgeReplica edge;
  ASSERT_TRUE(StartEdge({}, &edge));
  auto connection = KeepAliveConnection::Open(edge.http_port);
  ASSERT_NE(connection, nullptr);
  const absl::Time start = absl::Now();
  auto ready = connection->RoundTrip("GET /readyz HTTP/1.1\r\nHost: edge\r\n\r\n");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->status, 200) << ready->body;
  EXPECT_EQ(nlohmann::json::parse(ready->body),
            nlohmann::json({{"exec", "ready"}, {"policy", "ready"}, {"audit", "ready"}}));
  EXPECT_LT(absl::Now() - start, absl::Seconds(1));
}

// /api/v1/audit holds to --backend_timeout (2s here) when audit does not answer (SIGSTOP).
TEST_F(EdgeTest, TheAuditViewAnswersAtTheBackendDeadlineWhenAuditIsFrozen) {
  // Connected first, so the frozen audit holds the call (a channel still connecting fails it
  // fast with UNAVAILABLE instead).
  auto warm = Get("/api/v1/audit?kind=auth_failure", Token("ann", {"podgate-auditors"}));
  ASSERT_TRUE(warm.ok()) << warm.status();
  ASSERT_EQ(warm->status, 200) << warm->body;
  ASSERT_TRUE(audit_->Freeze().ok());
  struct Resume {
    ~Resume() { audit_->Signal(SIGCONT); }
  } resume;
  const absl::Time start = absl::Now();
  auto audit = Get("/api/v1/audit?kind=auth_failure", Token("ann", {"podgate-auditors"}));
  const absl::Duration took = absl::Now() - start;
  ASSERT_TRUE(audit.ok()) << audit.status() << " after " << took;
  EXPECT_EQ(audit->status, 504) << audit->body;
  EXPECT_EQ(ErrorOf(*audit)["code"], "DEADLINE_EXCEEDED") << audit->body;
  EXPECT_GE(took, absl::Milliseconds(1900));
  EXPECT_LT(took, absl::Seconds(4)) << "the 2s deadline was not applied";
}

// Every answer of edge's HTTP port carries the page's security headers: a 404, /healthz,
// /readyz, an API refusal, and the HTTP parser's own 400, 413 and 431.
TEST_F(EdgeTest, EveryAnswerCarriesTheSecurityHeaders) {
  auto check = [](const std::string& what, const std::string& head) {
    for (const char* header :
         {"X-Content-Type-Options: nosniff", "X-Frame-Options: DENY",
          "Referrer-Policy: no-referrer", "Content-Security-Policy: default-src 'self'"}) {
      EXPECT_THAT(head, HasSubstr(header)) << what << ":\n" << head;
    }
  };
  // Raw exchanges: the parser's answers come before any routing, and close the connection.
  auto raw = [](const std::string& request) {
    auto c = KeepAliveConnection::Open(http_port_);
    EXPECT_NE(c, nullptr);
    if (c == nullptr) {
      return std::string();
    }
    auto answer = c->RoundTripHead(request);
    EXPECT_TRUE(answer.ok()) << answer.status();
    return answer.ok() ? *answer : std::string();
  };
  for (const char* path : {"/no-such-file.txt", "/healthz", "/readyz", "/", "/api/v1/session"}) {
    const std::string head = raw(absl::StrCat("GET ", path, " HTTP/1.1\r\nHost: edge\r\n\r\n"));
    check(path, head);
  }
  EXPECT_THAT(raw("GET /no-such-file.txt HTTP/1.1\r\nHost: edge\r\n\r\n"),
              StartsWith("HTTP/1.1 404"));
  std::string head = raw("NOT HTTP AT ALL\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 400"));
  check("400", head);
  head = raw("POST /api/v1/login HTTP/1.1\r\nHost: edge\r\nContent-Length: 100000000\r\n\r\n");
  EXPECT_THAT(head, StartsWith("HTTP/1.1 413"));
  check("413", head);
  head = raw(
      absl::StrCat("GET / HTTP/1.1\r\nHost: edge\r\nX-Big: ", std::string(17000, 'h'), "\r\n\r\n"));
  EXPECT_THAT(head, StartsWith("HTTP/1.1 431"));
  check("431", head);
}

// With every backend down, the browser gets a clear answer at once, never a hang.
std::string DownToken() {
  auth::Key key;
  key.alg = auth::Algorithm::kHS256;
  key.secret = kSecret;
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  return *auth::Sign({{"iss", kIssuer},
                      {"aud", "podgate"},
                      {"sub", "alice"},
                      {"groups", {"developers"}},
                      {"iat", now},
                      {"exp", now + 600}},
                     key);
}

TEST(EdgeBackendsDownTest, BrowsersGetAClearErrorQuickly) {
  const std::string d = testing::MakeTempDir("edge-down");
  std::ofstream(d + "/jwt.secret") << kSecret << "\n";
  const testing::ReservedPort closed;
  const std::string dead = absl::StrCat("127.0.0.1:", closed.port());
  auto edge = testing::Subprocess::Start(
      PODGATE_EDGE_BIN,
      {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--http_address=127.0.0.1:0",
       "--exec_address=" + dead, "--policy_address=" + dead, "--audit_address=" + dead,
       "--backend_timeout=1s", std::string("--allowed_origins=") + kOrigin,
       "--jwt_key_file=" + d + "/jwt.secret", "--jwt_algorithm=HS256",
       std::string("--jwt_issuer=") + kIssuer});
  ASSERT_TRUE(edge.ok()) << edge.status();
  auto line = (*edge)->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
  ASSERT_TRUE(line.ok()) << line.status();
  const int port = nlohmann::json::parse(*line)["http_port"];
  http::ClientOptions o;
  o.port = static_cast<uint16_t>(port);
  o.timeout = absl::Seconds(10);

  absl::Time start = absl::Now();
  auto ready = http::Fetch(o, "GET", "/readyz");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_NE(ready->status, 200);
  http::ClientOptions with_token = o;
  with_token.headers.push_back({"Authorization", "Bearer " + DownToken()});
  auto targets = http::Fetch(with_token, "GET", "/api/v1/targets");
  ASSERT_TRUE(targets.ok()) << targets.status();
  EXPECT_GE(targets->status, 500) << targets->body;
  EXPECT_LT(absl::Now() - start, absl::Seconds(8));

  http::ClientOptions ws_options = o;
  ws_options.headers.push_back({"Origin", kOrigin});
  // Session after session: each opens its stream to exec while gRPC fails the previous one (the
  // connection is refused, the channel between attempts), and each browser must still hear why.
  // A stream whose call had already finished took the session's first message and never
  // answered: about one session in twenty waited for nothing.
  for (int round = 0; round < 100; ++round) {
    start = absl::Now();
    auto ws = http::WebSocketClient::Connect(
        ws_options, "/ws/v1/demo/web-1",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(DownToken())});
    ASSERT_TRUE(ws.ok()) << ws.status();
    std::string seen;
    for (int i = 0; i < 10; ++i) {
      auto m = (*ws)->Read(absl::Seconds(5));
      if (!m.ok()) {
        seen += " | " + m.status().ToString();
        break;
      }
      seen += " | " + m->data;
    }
    ASSERT_LT(absl::Now() - start, absl::Seconds(5)) << "session " << round << ": " << seen;
    ASSERT_THAT(seen, HasSubstr("UNAVAILABLE")) << "session " << round << ": " << seen;
  }
}

}  // namespace
}  // namespace podgate
