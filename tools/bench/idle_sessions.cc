// podgate-bench-idle: memory per idle v1 session, session open rate and sessions held, through
// the real processes (kubesim, podgate-policy, podgate-audit on SQLite, podgate-exec, and
// podgate-edge in front), started the way the integration tests start them. It prints numbers;
// it is not a timed test (docs/performance.md, "Sessions").
//
//   podgate-bench-idle [--sessions=2000] [--concurrency=64] [--warmup=200] [--sample=100]
//
// 1. Opens and closes `warmup` sessions (pools and caches filled as on a running replica).
// 2. Reads edge's and exec's VmRSS, then opens `sessions` v1 WebSockets (credential in the
//    sub-protocol), `concurrency` handshakes in flight, each counted open at exec's `ready`;
//    prints the open rate.
// 3. Waits a moment, reads VmRSS and open descriptors again: KiB per idle session for each.
// 4. Runs `echo` in `sample` sessions spread over all of them: each must answer.
// With --json=FILE the numbers are also written as a JSON object, with the "metrics" that
// `make bench` reads (idle.held: the sessions held when every one opened and every sampled one
// answered, else 0; idle.open_per_s; idle.edge.kib_per_session, idle.exec.kib_per_session).
//
// The client, edge and exec each hold one descriptor per session or more: the tool raises its
// own RLIMIT_NOFILE to the hard limit (the services inherit it) and says when that is too low.
#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "bench_fixtures.h"
#include "http/async_client.h"
#include "nlohmann/json.hpp"
#include "runtime/flags.h"
#include "support/exec_session.h"
#include "support/stack.h"
#include "support/subprocess.h"

ABSL_FLAG(int, sessions, 2000, "Idle sessions held at once. Default 2000.");
ABSL_FLAG(int, concurrency, 64, "Handshakes in flight while opening. Default 64.");
ABSL_FLAG(int, warmup, 200, "Sessions opened and closed before the baseline. Default 200.");
ABSL_FLAG(int, sample, 100, "Sessions that run `echo` once all are open. Default 100.");
ABSL_FLAG(int, sessions_per_user, 20,
          "Sessions per user (edge's default --max_connections_per_user). Default 20.");
ABSL_FLAG(absl::Duration, settle, absl::Seconds(2),
          "Pause before memory is read after opening. Default 2s.");
ABSL_FLAG(std::string, json, "", "Also write the results as JSON to this file. Default none.");
ABSL_FLAG(std::string, kubesim_bin, PODGATE_KUBESIM_BIN, "kubesim binary.");
ABSL_FLAG(std::string, policy_bin, PODGATE_POLICY_BIN, "podgate-policy binary.");
ABSL_FLAG(std::string, audit_bin, PODGATE_AUDIT_BIN, "podgate-audit binary.");
ABSL_FLAG(std::string, exec_bin, PODGATE_EXEC_BIN, "podgate-exec binary (or a wrapper).");
ABSL_FLAG(std::string, edge_bin, PODGATE_EDGE_BIN, "podgate-edge binary (or a wrapper).");

namespace podgate {
namespace {

constexpr char kOrigin[] = "https://bench.podgate.test";

// What the sessions have seen, shared by every handler (all on the client's one I/O thread,
// read by the main thread under the lock).
struct Tally {
  absl::Mutex mu;
  int handshakes_failed ABSL_GUARDED_BY(mu) = 0;
  int ready ABSL_GUARDED_BY(mu) = 0;
  int closed ABSL_GUARDED_BY(mu) = 0;  // closed before the tool closed it
  int answered ABSL_GUARDED_BY(mu) = 0;
  std::string first_error ABSL_GUARDED_BY(mu);

  void Error(const std::string& what) {
    absl::MutexLock lock(&mu);
    if (first_error.empty()) {
      first_error = what;
    }
  }
};

class BenchSession : public http::WebSocketHandler {
 public:
  explicit BenchSession(Tally* tally) : tally_(tally) {}

  void OnOpen(std::shared_ptr<http::WebSocketConnection> connection) override {
    absl::MutexLock lock(&mu_);
    connection_ = std::move(connection);
  }
  void OnMessage(std::string_view data, bool binary) override {
    if (binary) {
      return;  // output: the `exit` that follows is what counts
    }
    nlohmann::json m = nlohmann::json::parse(data, nullptr, false);
    const std::string type = m.is_object() ? m.value("type", "") : "";
    if (type == "ready") {
      absl::MutexLock lock(&tally_->mu);
      ++tally_->ready;
    } else if (type == "exit") {
      absl::MutexLock lock(&tally_->mu);
      if (m.value("code", -1) == 0) {
        ++tally_->answered;
      }
    } else if (type == "error" || type == "denied" || type == "closed") {
      tally_->Error(std::string(data));
    }
  }
  void OnClose(std::string reason) override {
    bool expected;
    {
      absl::MutexLock lock(&mu_);
      expected = closing_;
      connection_.reset();
    }
    if (!expected) {
      absl::MutexLock lock(&tally_->mu);
      ++tally_->closed;
      if (tally_->first_error.empty()) {
        tally_->first_error = "closed: " + reason;
      }
    }
  }

  void Send(const std::string& text) {
    absl::MutexLock lock(&mu_);
    if (connection_ != nullptr) {
      connection_->Send(text, false);
    }
  }
  void Close() {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    if (connection_ != nullptr) {
      connection_->Close(1000, "");
    }
  }

 private:
  Tally* const tally_;
  absl::Mutex mu_;
  std::shared_ptr<http::WebSocketConnection> connection_ ABSL_GUARDED_BY(mu_);
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
};

struct Services {
  std::unique_ptr<testing::Stack> stack;
  std::unique_ptr<testing::Subprocess> edge;
  int http_port = 0;
};

absl::StatusOr<Services> Start(int sessions) {
  testing::StackOptions options;
  options.binaries = {absl::GetFlag(FLAGS_kubesim_bin), absl::GetFlag(FLAGS_policy_bin),
                      absl::GetFlag(FLAGS_audit_bin), absl::GetFlag(FLAGS_exec_bin)};
  options.cluster_yaml = bench::kBenchCluster;
  options.policy_yaml = bench::kBenchEchoPolicy;
  // The sample's commands run at once: kubesim must not refuse them for its own cap on
  // concurrent execs (64 by default), which a real API server does not have.
  options.kubesim_flags = {absl::StrCat("--max_execs=", std::max(64, absl::GetFlag(FLAGS_sample)))};
  const int per_user = absl::GetFlag(FLAGS_sessions_per_user);
  options.exec_flags = {absl::StrCat("--max_sessions=", sessions + 1000),
                        absl::StrCat("--max_sessions_per_user=", per_user)};
  Services s;
  auto stack = testing::Stack::Start(options);
  if (!stack.ok()) {
    return stack.status();
  }
  s.stack = *std::move(stack);
  const std::vector<std::string> edge_args = {
      "--grpc_address=127.0.0.1:0",
      "--metrics_address=127.0.0.1:0",
      "--http_address=127.0.0.1:0",
      absl::StrCat("--exec_address=127.0.0.1:", s.stack->exec_port()),
      absl::StrCat("--policy_address=127.0.0.1:", s.stack->policy_port()),
      absl::StrCat("--audit_address=127.0.0.1:", s.stack->audit_port()),
      std::string("--allowed_origins=") + kOrigin,
      absl::StrCat("--max_connections=", sessions + 1000),
      absl::StrCat("--max_connections_per_user=", per_user),
      "--max_connections_per_source=0",
      "--max_unauthenticated_per_source=0",
      "--jwt_key_file=" + s.stack->jwt_secret_file(),
      "--jwt_algorithm=HS256",
      std::string("--jwt_issuer=") + testing::Stack::kIssuer,
      "--jwt_audience=podgate"};
  auto edge = testing::Subprocess::Start(absl::GetFlag(FLAGS_edge_bin), edge_args);
  if (!edge.ok()) {
    return edge.status();
  }
  s.edge = *std::move(edge);
  auto line = s.edge->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
  if (!line.ok()) {
    return line.status();
  }
  s.http_port = nlohmann::json::parse(*line)["http_port"].get<int>();
  if (auto serving = s.edge->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20)); !serving.ok()) {
    return serving.status();
  }
  return s;
}

// Opens `count` sessions, `concurrency` handshakes at a time; returns them once each is ready
// (or failed), or an error after `timeout`.
class Opener {
 public:
  Opener(boost::asio::io_context& io, int port, Tally* tally, testing::Stack& stack)
      : io_(io), port_(port), tally_(tally), stack_(stack) {}

  std::vector<std::shared_ptr<BenchSession>> Open(int first, int count, int concurrency,
                                                  absl::Duration timeout) {
    std::vector<std::shared_ptr<BenchSession>> sessions;
    int ready_before;
    {
      absl::MutexLock lock(&tally_->mu);
      ready_before = tally_->ready + tally_->handshakes_failed;
    }
    const int per_user = std::max(1, absl::GetFlag(FLAGS_sessions_per_user));
    const absl::Time deadline = absl::Now() + timeout;
    for (int i = 0; i < count; ++i) {
      // Wait for a free slot: at most `concurrency` sessions between handshake and ready.
      tally_->mu.LockWhenWithDeadline(
          absl::Condition(
              +[](std::pair<Tally*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return a->first->ready + a->first->handshakes_failed + a->first->closed >=
                       a->second;
              },
              new_arg(ready_before + i - concurrency + 1)),
          deadline);
      tally_->mu.Unlock();
      const int n = first + i;
      const std::string user = absl::StrCat("bench", n / per_user);
      auto session = std::make_shared<BenchSession>(tally_);
      sessions.push_back(session);
      http::AsyncClientOptions o;
      o.connection.port = static_cast<uint16_t>(port_);
      o.connection.headers = {{"Origin", kOrigin}};
      o.connection.timeout = absl::Seconds(30);
      o.keepalive = absl::Hours(1);
      const std::string token = Token(user);
      Tally* tally = tally_;
      http::ConnectWebSocket(
          io_, o, "/ws/v1/bench/app-1",
          {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(token)}, session,
          [tally](const http::HandshakeResult& r) {
            if (!r.status.ok()) {
              tally->Error(absl::StrCat(r.status.ToString(), " ", r.refusal.body));
              absl::MutexLock lock(&tally->mu);
              ++tally->handshakes_failed;
            }
          });
    }
    tally_->mu.LockWhenWithDeadline(
        absl::Condition(
            +[](std::pair<Tally*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
              return a->first->ready + a->first->handshakes_failed + a->first->closed >= a->second;
            },
            new_arg(ready_before + count)),
        deadline);
    tally_->mu.Unlock();
    return sessions;
  }

 private:
  // The condition's argument lives as long as the Opener (one wait at a time).
  std::pair<Tally*, int>* new_arg(int target) {
    arg_ = {tally_, target};
    return &arg_;
  }
  std::string Token(const std::string& user) {
    auto it = tokens_.find(user);
    if (it == tokens_.end()) {
      it = tokens_.emplace(user, stack_.Token(user, {"bench"}, absl::Hours(2))).first;
    }
    return it->second;
  }

  boost::asio::io_context& io_;
  const int port_;
  Tally* const tally_;
  testing::Stack& stack_;
  std::pair<Tally*, int> arg_;
  std::map<std::string, std::string> tokens_;
};

void CloseAll(const std::vector<std::shared_ptr<BenchSession>>& sessions) {
  for (const auto& s : sessions) {
    s->Close();
  }
}

int Run() {
  const int total = std::max(1, absl::GetFlag(FLAGS_sessions));
  const int concurrency = std::max(1, absl::GetFlag(FLAGS_concurrency));
  const int warmup = std::max(0, absl::GetFlag(FLAGS_warmup));
  const int sample = std::min(total, std::max(0, absl::GetFlag(FLAGS_sample)));

  const int64_t nofile = testing::RaiseDescriptorLimit();
  if (nofile < static_cast<int64_t>(total) + 1024) {
    std::fprintf(stderr,
                 "RLIMIT_NOFILE is %lld: %d sessions need at least %d descriptors in this "
                 "process and in edge (ulimit -n)\n",
                 static_cast<long long>(nofile), total, total + 1024);
    return 2;
  }

  auto services = Start(total);
  if (!services.ok()) {
    std::fprintf(stderr, "start: %s\n", services.status().ToString().c_str());
    return 2;
  }
  const int edge_pid = services->edge->pid();
  const int exec_pid = services->stack->exec()->pid();

  boost::asio::io_context io;
  auto work = boost::asio::make_work_guard(io);
  std::thread io_thread([&io] { io.run(); });
  Tally tally;
  Opener opener(io, services->http_port, &tally, *services->stack);
  int status = 0;
  nlohmann::json out;
  {
    auto warm = opener.Open(0, warmup, concurrency, absl::Seconds(60));
    CloseAll(warm);
    absl::SleepFor(absl::Seconds(1));
  }
  const int64_t edge_before = testing::ResidentKiB(edge_pid);
  const int64_t exec_before = testing::ResidentKiB(exec_pid);
  const int edge_fds_before = testing::OpenDescriptors(edge_pid);
  const int exec_fds_before = testing::OpenDescriptors(exec_pid);
  int ready_before;
  {
    absl::MutexLock lock(&tally.mu);
    ready_before = tally.ready;
  }
  const absl::Time start = absl::Now();
  auto sessions = opener.Open(warmup, total, concurrency, absl::Seconds(600));
  const double secs = absl::ToDoubleSeconds(absl::Now() - start);
  int ready;
  int failed;
  int closed;
  {
    absl::MutexLock lock(&tally.mu);
    ready = tally.ready - ready_before;
    failed = tally.handshakes_failed;
    closed = tally.closed;
  }
  std::printf(
      "opened %d of %d sessions in %.2f s: %.0f/s (%d handshakes in flight; %d failed, "
      "%d closed)\n",
      ready, total, secs, ready / secs, concurrency, failed, closed);
  absl::SleepFor(absl::GetFlag(FLAGS_settle));
  const int64_t edge_after = testing::ResidentKiB(edge_pid);
  const int64_t exec_after = testing::ResidentKiB(exec_pid);
  const int edge_fds = testing::OpenDescriptors(edge_pid);
  const int exec_fds = testing::OpenDescriptors(exec_pid);
  const double edge_per = static_cast<double>(edge_after - edge_before) / std::max(1, ready);
  const double exec_per = static_cast<double>(exec_after - exec_before) / std::max(1, ready);
  std::printf("%-6s %12s %12s %14s %10s %10s\n", "", "rss_before", "rss_after", "kib_per_session",
              "fds_before", "fds_after");
  std::printf("%-6s %12lld %12lld %14.1f %10d %10d\n", "edge", static_cast<long long>(edge_before),
              static_cast<long long>(edge_after), edge_per, edge_fds_before, edge_fds);
  std::printf("%-6s %12lld %12lld %14.1f %10d %10d\n", "exec", static_cast<long long>(exec_before),
              static_cast<long long>(exec_after), exec_per, exec_fds_before, exec_fds);

  // A sample spread over every session: each still answers.
  const absl::Time sample_start = absl::Now();
  for (int i = 0; i < sample; ++i) {
    sessions[static_cast<size_t>(i) * sessions.size() / sample]->Send(
        R"({"type":"command","line":"echo ok"})");
  }
  std::pair<Tally*, int> want(&tally, sample);
  tally.mu.LockWhenWithDeadline(absl::Condition(
                                    +[](std::pair<Tally*, int>* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                                      return a->first->answered >= a->second;
                                    },
                                    &want),
                                absl::Now() + absl::Seconds(60));
  const int answered = tally.answered;
  const std::string error = tally.first_error;
  tally.mu.Unlock();
  std::printf("%d of %d sampled sessions answered `echo ok` in %.2f s\n", answered, sample,
              absl::ToDoubleSeconds(absl::Now() - sample_start));
  if (!error.empty()) {
    std::printf("first error: %s\n", error.c_str());
  }
  if (ready < total || answered < sample) {
    status = 1;
  }
  out["sessions"] = {{"requested", total},
                     {"held", ready},
                     {"open_per_s", ready / secs},
                     {"concurrency", concurrency},
                     {"sampled", sample},
                     {"answered", answered},
                     {"edge",
                      {{"rss_before_kib", edge_before},
                       {"rss_after_kib", edge_after},
                       {"kib_per_session", edge_per},
                       {"fds", edge_fds}}},
                     {"exec",
                      {{"rss_before_kib", exec_before},
                       {"rss_after_kib", exec_after},
                       {"kib_per_session", exec_per},
                       {"fds", exec_fds}}}};
  // For tools/bench/bench.py (`make bench`): held counts only when every session opened and
  // every sampled one answered, as the chain's sessions.held does.
  out["metrics"] = {{"idle.held", ready == total && answered == sample ? ready : 0},
                    {"idle.open_per_s", ready / secs},
                    {"idle.edge.kib_per_session", edge_per},
                    {"idle.exec.kib_per_session", exec_per}};
  if (const std::string path = absl::GetFlag(FLAGS_json); !path.empty()) {
    std::ofstream(path) << out.dump(2) << "\n";
  }
  CloseAll(sessions);
  absl::SleepFor(absl::Seconds(1));
  work.reset();
  io.stop();
  io_thread.join();
  return status;
}

}  // namespace
}  // namespace podgate

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-bench-idle [flags]: memory per idle v1 session, open rate "
                               "and sessions held, through edge and exec");
  return podgate::Run();
}
