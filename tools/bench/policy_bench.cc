// podgate-bench-policy: policy decisions per second over gRPC, unary Authorize and the
// AuthorizeStream bidi stream, against a real podgate-policy process serving the example policy
// (deploy/policy/example.yaml). Part of `make bench` (tools/bench/bench.py, docs/performance.md).
//
//   podgate-bench-policy [--json=FILE] [--quick] [--duration=5s] [--rounds=3]
//                        [--unary_inflight=64,256] [--streams=4x64,16x16] [--channels=2]
//                        [--health_inflight=256] [--stream_floor_bin=PATH]
//
// The client is the gRPC callback API: unary calls keep K calls in flight (each completion
// starts the next call), streams keep W questions in flight on each of S streams (answers are
// matched to questions by correlation id, in order). Every answer is checked against the
// decision the example policy gives (allow or deny, and the rule), so a fast wrong answer fails
// the run. Each configuration is one side of RunInterleaved: they take turns, round after round,
// so that machine noise hits every side alike.
//
// The client and the server share the machine's cores; each row shows the CPU each used
// (utime+stime from /proc/<pid>/stat over the measured window, as a share of one core) and the
// server's CPU time per decision, the number that does not depend on how fast the client is.
//
// The unary ceiling: grpc.health.v1.Health/Check on the same server, from the same client with
// the same calls in flight, is the lightest unary call that server answers (the shared
// runtime's gRPC server, its interceptors and threads, no policy work). Unary Authorize cannot
// go faster than it on this machine.
//
// The stream ceiling: the same stream shapes against podgate-bench-stream-floor
// --role=policy-server (mode "floor"), which answers AuthorizeStream through podgate-policy's
// stream reactor with no decision (a fixed allow of the mean size of podgate-policy's answers to
// the mix, measured first), on the same gRPC settings: the most AuthorizeStream can carry here with
// the client beside it. Its answers are matched by correlation id; their decision is not checked.
//
// The unary floor: the same unary calls (the mix's questions, the same calls in flight) against
// the same floor server's unary Authorize (mode "unary_floor"), answered with the same fixed
// allow: what a unary call with podgate-policy's question and answer sizes costs gRPC with no
// decision, a tighter ceiling of unary Authorize than Health/Check's empty messages. Its
// answers' size is checked, not their decision.
//
// Exit status: 0 when every run ran and every answer was right, 1 when something failed (the
// server did not start, an RPC failed, a wrong decision), 2 on a usage error.
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "policy/authorizer.h"
#include "policy/policy_metrics.h"
#include "policy/policy_store.h"
#include "prometheus/registry.h"
#include "report.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "stream_floor_server.h"
#include "support/subprocess.h"

ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file (tools/bench/bench.py).");
ABSL_FLAG(bool, quick, false,
          "Smoke mode: one round of ~2 s runs; proves the benchmark runs, not how fast.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5),
          "Measured time of each run (after --warmup). Default 5s; --quick: 1.5s.");
ABSL_FLAG(absl::Duration, warmup, absl::Seconds(1),
          "Load before each run is measured (connections up, caches warm). Default 1s; "
          "--quick: 0.5s.");
ABSL_FLAG(int, rounds, 3, "Rounds of the interleaved runs. Default 3; --quick: 1.");
ABSL_FLAG(std::string, unary_inflight, "64,256",
          "Unary Authorize: calls kept in flight, one run per value (comma-separated).");
ABSL_FLAG(std::string, health_inflight, "256",
          "The unary ceiling: grpc.health.v1.Health/Check calls kept in flight on the same "
          "server, one run per value (comma-separated; empty: none). Default 256.");
ABSL_FLAG(std::string, streams, "4x64,16x16",
          "AuthorizeStream: SxW runs, S streams each with W questions in flight "
          "(comma-separated).");
ABSL_FLAG(int, channels, 2,
          "gRPC channels (each its own TCP connection) the calls and streams are spread over. "
          "Default 2.");
ABSL_FLAG(std::string, policy_bin, PODGATE_POLICY_BIN,
          "podgate-policy binary (or a wrapper script that runs it, e.g. under perf).");
ABSL_FLAG(std::string, compare_bin, "",
          "A second podgate-policy binary (e.g. a build from before a change), started beside "
          "the first and measured in turn with it, every configuration on each, so that a "
          "before/after comparison sees the same machine noise. Its rows are marked 'compare'; "
          "the metrics are those of --policy_bin. Default: none.");
ABSL_FLAG(std::string, stream_floor_bin, PODGATE_STREAM_FLOOR_BIN,
          "podgate-bench-stream-floor binary: the --streams shapes also run against its "
          "policy-server (AuthorizeStream with no decision), the stream ceiling. Empty: not "
          "run.");
ABSL_FLAG(std::string, policy_file, PODGATE_EXAMPLE_POLICY, "The policy document served.");
ABSL_FLAG(std::string, policy_log_level, "info",
          "podgate-policy's --log_level: info or debug (the benchmark reads the server's "
          "info line that says where it serves). Default info.");
ABSL_FLAG(absl::Duration, pause_before, absl::ZeroDuration(),
          "Sleep this long after podgate-policy is serving and before the runs (e.g. to attach "
          "perf to the pid it prints). Default 0.");

namespace podgate::bench {
namespace {

using podgate::policy::v1::AuthorizeRequest;
using podgate::policy::v1::AuthorizeResponse;
using podgate::policy::v1::AuthorizeStreamRequest;
using podgate::policy::v1::AuthorizeStreamResponse;
using podgate::policy::v1::PolicyService;
using HealthStub = grpc::health::v1::Health::Stub;

// One question of the mix and the answer the example policy gives to it.
struct Question {
  AuthorizeRequest request;
  bool allow = false;
  std::string rule;
};

// What developers ask in a day: Java diagnostics, health checks, logs, and one in ten refused
// (a shell through a wrapper, a dangerous jcmd). Allowed decisions are
// logged at debug level, denials at info: the refused ones also exercise the log path.
std::vector<Question> Mix() {
  struct Spec {
    std::vector<std::string> argv;
    bool allow;
    const char* rule;
  };
  const std::vector<Spec> specs = {
      {{"jstack", "-l", "4242"}, true, "dev-jstack"},
      {{"jmap", "-histo", "4242"}, true, "dev-jmap-histo"},
      {{"jcmd", "4242", "GC.heap_info"}, true, "dev-jcmd"},
      {{"curl", "-s", "-m", "5", "http://orders.app-shop.svc.cluster.local:8080/actuator/health"},
       true,
       "dev-curl"},
      {{"ps", "-eo", "pid,ppid,rss,comm"}, true, "dev-ps"},
      {{"tail", "-n", "200", "/var/log/app/server.log"}, true, "dev-tail-logs"},
      {{"free", "-m"}, true, "dev-free"},
      {{"df", "-h"}, true, "dev-df"},
      {{"dig", "orders.app-shop.svc.cluster.local", "SRV"}, true, "dev-dig"},
      {{"env", "sh", "-c", "id"}, false, "deny-program-runners"},
      {{"jstack", "4242"}, true, "dev-jstack"},
      {{"curl", "-I", "https://payments.app-shop.svc:8443/healthz"}, true, "dev-curl"},
      {{"cat", "/var/log/app/server.log", "/var/log/app/gc.log"}, true, "dev-cat-logs"},
      {{"ping", "-c", "3", "orders.app-shop.svc.cluster.local"}, true, "dev-ping"},
      {{"ss", "-tnl"}, true, "dev-ss"},
      {{"jps"}, true, "dev-jps"},
      {{"jcmd", "4242", "VM.uptime"}, true, "dev-jcmd"},
      {{"jmap", "-histo", "4242"}, true, "dev-jmap-histo"},
      {{"jcmd", "4242", "JVMTI.agent_load", "/tmp/a.so"}, false, "deny-jcmd-dangerous"},
      {{"top", "-b", "-n", "1"}, true, "dev-top"},
  };
  std::vector<Question> out;
  for (const Spec& s : specs) {
    Question q;
    q.request.mutable_principal()->set_user("ana");
    q.request.mutable_principal()->add_groups("employees");
    q.request.mutable_principal()->add_groups("developers");
    q.request.mutable_principal()->set_issuer("https://login.example.com");
    podgate::common::v1::Target* t = q.request.mutable_target();
    t->set_cluster("eu-prod");
    t->set_namespace_("app-shop");
    t->set_pod("orders-7c9f6d5b8-x2kqp");
    t->set_container("app");
    (*t->mutable_pod_labels())["app"] = "orders";
    (*t->mutable_pod_labels())["pod-template-hash"] = "7c9f6d5b8";
    for (const std::string& a : s.argv) {
      q.request.mutable_command()->add_argv(a);
    }
    q.allow = s.allow;
    q.rule = s.rule;
    out.push_back(std::move(q));
  }
  return out;
}

// Why an answer is wrong for `q`, or nullopt.
std::optional<std::string> WrongAnswer(const Question& q, const AuthorizeResponse& answer) {
  const podgate::common::v1::Decision& d = answer.decision();
  const bool allow = d.verdict() == podgate::common::v1::VERDICT_ALLOW;
  if (allow == q.allow && d.rule() == q.rule) {
    return std::nullopt;
  }
  return absl::StrCat("wrong decision for '", q.request.command().argv(0),
                      "': ", allow ? "allow" : "deny", " by ", d.rule(), " (", d.reason(),
                      "), expected ", q.allow ? "allow" : "deny", " by ", q.rule);
}

// What one measured run adds to its configuration's totals.
struct RunTotals {
  int64_t decisions = 0;
  double seconds = 0;
  double client_cpu_s = 0;
  double server_cpu_s = 0;
  Samples latency_ms;
  int64_t errors = 0;
  std::string first_error;
};

// The measuring window every run shares: load starts, warm-up, then `duration` counted.
class Window {
 public:
  bool measuring() const { return measuring_.load(std::memory_order_relaxed); }
  bool stopping() const { return stopping_.load(std::memory_order_relaxed); }
  // Runs the warm-up and the measured time; fills seconds and CPU of `totals`.
  void Run(absl::Duration warmup, absl::Duration duration, pid_t server, RunTotals* totals) {
    absl::SleepFor(warmup);
    const double client0 = CpuSeconds(0);
    const double server0 = CpuSeconds(server);
    const absl::Time t0 = absl::Now();
    measuring_ = true;
    absl::SleepFor(duration);
    measuring_ = false;
    const absl::Time t1 = absl::Now();
    totals->client_cpu_s += CpuSeconds(0) - client0;
    totals->server_cpu_s += CpuSeconds(server) - server0;
    totals->seconds += absl::ToDoubleSeconds(t1 - t0);
    stopping_ = true;
  }

 private:
  std::atomic<bool> measuring_{false};
  std::atomic<bool> stopping_{false};
};

// Counts the work of a run's callbacks; Wait returns when every one of them has ended.
class Pending {
 public:
  explicit Pending(int n) : left_(n) {}
  void Done() {
    absl::MutexLock lock(&mu_);
    --left_;
  }
  bool Wait(absl::Duration timeout) {
    absl::MutexLock lock(&mu_);
    return mu_.AwaitWithTimeout(absl::Condition(
                                    +[](int* left) { return *left == 0; }, &left_),
                                timeout);
  }

 private:
  absl::Mutex mu_;
  int left_ ABSL_GUARDED_BY(mu_);
};

// A failure seen by a callback, kept once.
class Errors {
 public:
  void Add(const std::string& what) {
    absl::MutexLock lock(&mu_);
    if (count_++ == 0) {
      first_ = what;
    }
  }
  void MoveTo(RunTotals* totals) {
    absl::MutexLock lock(&mu_);
    totals->errors += count_;
    if (totals->first_error.empty()) {
      totals->first_error = first_;
    }
  }

 private:
  absl::Mutex mu_;
  int64_t count_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_ ABSL_GUARDED_BY(mu_);
};

// `inflight` unary Authorize calls kept going: each completion checks its answer and starts
// the next call from the same slot, so a slot is only ever touched by one callback at a time.
class UnaryRun {
 public:
  // With `health_stubs`, the calls are Health/Check (the unary ceiling) instead of Authorize.
  // With `floor_answer_bytes` (the unary floor) an answer's decision is not checked, its size
  // is.
  UnaryRun(const std::vector<std::unique_ptr<PolicyService::Stub>>& stubs,
           const std::vector<Question>& mix, int inflight,
           const std::vector<std::unique_ptr<HealthStub>>* health_stubs = nullptr,
           size_t floor_answer_bytes = 0)
      : mix_(mix), floor_answer_bytes_(floor_answer_bytes), pending_(inflight) {
    for (int i = 0; i < inflight; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->stub = stubs[i % stubs.size()].get();
      if (health_stubs != nullptr) {
        slot->health = (*health_stubs)[i % health_stubs->size()].get();
      }
      slot->next = static_cast<size_t>(i) * 7;  // slots start at different questions
      slot->latency_ms.reserve(1 << 14);
      slots_.push_back(std::move(slot));
    }
  }

  absl::Status Run(absl::Duration warmup, absl::Duration duration, pid_t server,
                   RunTotals* totals) {
    for (auto& slot : slots_) {
      Issue(slot.get());
    }
    window_.Run(warmup, duration, server, totals);
    if (!pending_.Wait(absl::Seconds(30))) {
      return absl::DeadlineExceededError("unary calls still running 30 s after the run");
    }
    for (auto& slot : slots_) {
      totals->decisions += slot->counted;
      for (double v : slot->latency_ms) {
        totals->latency_ms.Add(v);
      }
    }
    errors_.MoveTo(totals);
    return absl::OkStatus();
  }

 private:
  struct Slot {
    PolicyService::Stub* stub = nullptr;
    HealthStub* health = nullptr;
    std::unique_ptr<grpc::ClientContext> context;
    AuthorizeResponse answer;
    grpc::health::v1::HealthCheckResponse health_answer;
    size_t next = 0;
    const Question* question = nullptr;
    absl::Time start;
    bool measured = false;
    int64_t counted = 0;
    std::vector<double> latency_ms;
  };

  void Issue(Slot* slot) {
    if (window_.stopping()) {
      pending_.Done();
      return;
    }
    slot->question = &mix_[slot->next++ % mix_.size()];
    slot->context = std::make_unique<grpc::ClientContext>();
    slot->answer.Clear();
    slot->measured = window_.measuring();
    slot->start = absl::Now();
    if (slot->health != nullptr) {
      slot->health_answer.Clear();
      slot->health->async()->Check(slot->context.get(), &health_request_, &slot->health_answer,
                                   [this, slot](grpc::Status status) { OnDone(slot, status); });
      return;
    }
    slot->stub->async()->Authorize(slot->context.get(), &slot->question->request, &slot->answer,
                                   [this, slot](grpc::Status status) { OnDone(slot, status); });
  }

  void OnDone(Slot* slot, const grpc::Status& status) {
    const absl::Time end = absl::Now();
    if (!status.ok()) {
      errors_.Add(absl::StrCat(
          slot->health != nullptr ? "Health/Check: " : "Authorize: ", status.error_message(),
          " (code ", static_cast<int>(status.error_code()), ")"));
    } else if (slot->health != nullptr) {
      if (slot->health_answer.status() != grpc::health::v1::HealthCheckResponse::SERVING) {
        errors_.Add("Health/Check: the server is not SERVING");
      } else if (slot->measured && window_.measuring()) {
        ++slot->counted;
        slot->latency_ms.push_back(absl::ToDoubleMilliseconds(end - slot->start));
      }
    } else if (std::optional<std::string> wrong = Wrong(*slot)) {
      errors_.Add(*wrong);
    } else if (slot->measured && window_.measuring()) {
      ++slot->counted;
      slot->latency_ms.push_back(absl::ToDoubleMilliseconds(end - slot->start));
    }
    Issue(slot);
  }

  std::optional<std::string> Wrong(const Slot& slot) const {
    if (floor_answer_bytes_ == 0) {
      return WrongAnswer(*slot.question, slot.answer);
    }
    if (const size_t n = slot.answer.ByteSizeLong(); n != floor_answer_bytes_) {
      return absl::StrCat("the unary floor answered with ", n, " bytes, not ", floor_answer_bytes_);
    }
    return std::nullopt;
  }

  const std::vector<Question>& mix_;
  const size_t floor_answer_bytes_;
  const grpc::health::v1::HealthCheckRequest health_request_;
  Window window_;
  Pending pending_;
  Errors errors_;
  std::vector<std::unique_ptr<Slot>> slots_;
};

// One AuthorizeStream with up to `inflight` questions unanswered: one write at a time (the
// callback API allows no more), reads always pending; an answer must carry the correlation id
// of the oldest unanswered question.
class StreamClient final
    : public grpc::ClientBidiReactor<AuthorizeStreamRequest, AuthorizeStreamResponse> {
 public:
  // With `floor_answer_bytes` (the stream floor) an answer's decision is not checked, its size
  // is.
  StreamClient(PolicyService::Stub* stub, const std::vector<Question>& mix, int inflight,
               size_t first, size_t floor_answer_bytes, Window* window, Pending* pending,
               Errors* errors)
      : mix_(mix),
        inflight_(inflight),
        floor_answer_bytes_(floor_answer_bytes),
        next_(first),
        window_(window),
        pending_(pending),
        errors_(errors) {
    latency_ms_.reserve(1 << 16);
    stub->async()->AuthorizeStream(&context_, this);
    StartRead(&answer_);
    {
      absl::MutexLock lock(&mu_);
      MaybeWriteLocked();
    }
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      return;  // the stream broke: OnDone reports the status
    }
    MaybeWriteLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      return;  // the server ended the stream: OnDone follows
    }
    const absl::Time end = absl::Now();
    absl::MutexLock lock(&mu_);
    if (sent_.empty()) {
      errors_->Add(absl::StrCat("an answer with correlation id '", answer_.correlation_id(),
                                "' to no question"));
    } else {
      Sent& oldest = sent_.front();
      if (answer_.correlation_id() != oldest.id) {
        errors_->Add(absl::StrCat("answer for '", answer_.correlation_id(), "' where '", oldest.id,
                                  "' was the oldest question"));
      } else if (std::optional<std::string> wrong = Wrong(*oldest.question)) {
        errors_->Add(*wrong);
      } else if (oldest.measured && window_->measuring()) {
        ++counted_;
        latency_ms_.push_back(absl::ToDoubleMilliseconds(end - oldest.start));
      }
      sent_.pop_front();
    }
    MaybeWriteLocked();
    StartRead(&answer_);
  }

  void OnDone(const grpc::Status& status) override {
    if (!status.ok()) {
      errors_->Add(absl::StrCat("AuthorizeStream: ", status.error_message(), " (code ",
                                static_cast<int>(status.error_code()), ")"));
    }
    pending_->Done();
  }

  int64_t counted() const { return counted_; }
  const std::vector<double>& latency_ms() const { return latency_ms_; }

 private:
  struct Sent {
    std::string id;
    const Question* question;
    absl::Time start;
    bool measured;
  };

  std::optional<std::string> Wrong(const Question& q) const {
    if (floor_answer_bytes_ == 0) {
      return WrongAnswer(q, answer_.response());
    }
    if (const size_t n = answer_.response().ByteSizeLong(); n != floor_answer_bytes_) {
      return absl::StrCat("the stream floor answered with ", n, " bytes, not ",
                          floor_answer_bytes_);
    }
    return std::nullopt;
  }

  // Starts the next write, or the half-close once the run stops and every answer is in.
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || closed_) {
      return;
    }
    if (window_->stopping()) {
      if (sent_.empty()) {
        closed_ = true;
        StartWritesDone();
      }
      return;
    }
    if (sent_.size() >= static_cast<size_t>(inflight_)) {
      return;
    }
    const Question& q = mix_[next_ % mix_.size()];
    const std::string id = absl::StrCat(next_++);
    question_.set_correlation_id(id);
    *question_.mutable_request() = q.request;
    sent_.push_back({id, &q, absl::Now(), window_->measuring()});
    writing_ = true;
    StartWrite(&question_);
  }

  const std::vector<Question>& mix_;
  const int inflight_;
  const size_t floor_answer_bytes_;
  size_t next_;
  Window* const window_;
  Pending* const pending_;
  Errors* const errors_;
  grpc::ClientContext context_;
  AuthorizeStreamResponse answer_;

  absl::Mutex mu_;
  AuthorizeStreamRequest question_ ABSL_GUARDED_BY(mu_);
  std::deque<Sent> sent_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int64_t counted_ = 0;
  std::vector<double> latency_ms_;
};

absl::Status StreamRun(const std::vector<std::unique_ptr<PolicyService::Stub>>& stubs,
                       const std::vector<Question>& mix, int streams, int inflight,
                       size_t floor_answer_bytes, absl::Duration warmup, absl::Duration duration,
                       pid_t server, RunTotals* totals) {
  Window window;
  Pending pending(streams);
  Errors errors;
  std::vector<std::unique_ptr<StreamClient>> clients;
  for (int s = 0; s < streams; ++s) {
    clients.push_back(std::make_unique<StreamClient>(stubs[s % stubs.size()].get(), mix, inflight,
                                                     static_cast<size_t>(s) * 7, floor_answer_bytes,
                                                     &window, &pending, &errors));
  }
  window.Run(warmup, duration, server, totals);
  if (!pending.Wait(absl::Seconds(30))) {
    // The reactors are still in use by gRPC: they are leaked rather than freed under it.
    for (auto& c : clients) {
      c.release();
    }
    return absl::DeadlineExceededError("streams still open 30 s after the run");
  }
  for (const auto& c : clients) {
    totals->decisions += c->counted();
    for (double v : c->latency_ms()) {
      totals->latency_ms.Add(v);
    }
  }
  errors.MoveTo(totals);
  return absl::OkStatus();
}

// A configuration measured: "unary", "health" or "unary_floor" with `inflight` calls, "stream"
// or "floor" with `streams` x `inflight`.
struct Config {
  std::string mode;
  int streams = 0;
  int inflight = 0;
  RunTotals totals;
  // Index into the servers: 0 is --policy_bin, then --compare_bin if given, then the stream
  // floor (modes "floor" and "unary_floor" only).
  size_t server = 0;

  bool streaming() const { return mode == "stream" || mode == "floor"; }
  // Answered by the floor server: answers, not decisions.
  bool on_floor() const { return mode == "floor" || mode == "unary_floor"; }
  std::string Label() const {
    return streaming() ? absl::StrCat(streams, " streams x ", inflight)
                       : absl::StrCat(inflight, " calls");
  }
  std::string MetricKey() const {
    return streaming() ? absl::StrCat("policy.", mode == "floor" ? "stream_floor" : "stream", ".s",
                                      streams, "x", inflight)
                       : absl::StrCat("policy.", mode, ".c", inflight);
  }
  double DecisionsPerS() const {
    return totals.seconds > 0 ? static_cast<double>(totals.decisions) / totals.seconds : 0;
  }
};

absl::StatusOr<std::vector<int>> ParseInts(const std::string& flag, const std::string& text) {
  std::vector<int> out;
  for (absl::string_view part : absl::StrSplit(text, ',', absl::SkipEmpty())) {
    int v = 0;
    if (!absl::SimpleAtoi(part, &v) || v < 1 || v > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--", flag, ": '", part, "' is not a count from 1 to 100000"));
    }
    out.push_back(v);
  }
  return out;
}

absl::StatusOr<std::vector<Config>> ParseConfigs() {
  std::vector<Config> configs;
  const std::pair<const char*, std::string> unary_modes[] = {
      {"unary", absl::GetFlag(FLAGS_unary_inflight)},
      {"health", absl::GetFlag(FLAGS_health_inflight)}};
  for (const auto& [mode, text] : unary_modes) {
    absl::StatusOr<std::vector<int>> counts = ParseInts(absl::StrCat(mode, "_inflight"), text);
    if (!counts.ok()) {
      return counts.status();
    }
    for (int k : *counts) {
      configs.push_back({mode, 0, k, {}});
    }
  }
  for (absl::string_view shape :
       absl::StrSplit(absl::GetFlag(FLAGS_streams), ',', absl::SkipEmpty())) {
    std::vector<std::string> parts = absl::StrSplit(shape, 'x');
    int s = 0;
    int w = 0;
    if (parts.size() != 2 || !absl::SimpleAtoi(parts[0], &s) || !absl::SimpleAtoi(parts[1], &w) ||
        s < 1 || w < 1 || s > 10000 || w > 100000) {
      return absl::InvalidArgumentError(
          absl::StrCat("--streams: '", shape, "' is not SxW (streams x questions in flight)"));
    }
    configs.push_back({"stream", s, w, {}});
  }
  if (configs.empty()) {
    return absl::InvalidArgumentError("--unary_inflight and --streams are both empty");
  }
  return configs;
}

// Starts podgate-policy on a port the OS picks; returns the process and its gRPC port.
absl::StatusOr<std::pair<std::unique_ptr<testing::Subprocess>, int>> StartPolicy(
    const std::string& binary) {
  std::vector<std::string> args = {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                                   "--policy_file=" + absl::GetFlag(FLAGS_policy_file),
                                   "--log_level=" + absl::GetFlag(FLAGS_policy_log_level)};
  absl::StatusOr<std::unique_ptr<testing::Subprocess>> policy =
      testing::Subprocess::Start(binary, args);
  if (!policy.ok()) {
    return policy.status();
  }
  absl::StatusOr<std::string> line =
      (*policy)->WaitForLine("\"msg\":\"serving\"", absl::Seconds(30));
  if (!line.ok()) {
    std::string log;
    for (const std::string& l : (*policy)->Lines()) {
      absl::StrAppend(&log, "\n  ", l);
    }
    return absl::UnavailableError(
        absl::StrCat("podgate-policy did not start: ", line.status().message(), log));
  }
  const nlohmann::json serving = nlohmann::json::parse(*line, nullptr, false);
  if (!serving.is_object() || !serving.contains("grpc_port")) {
    return absl::UnavailableError(absl::StrCat("podgate-policy's serving line: ", *line));
  }
  return std::make_pair(*std::move(policy), serving["grpc_port"].get<int>());
}

// The mean serialized size of the answers `stub` gives to the mix, each checked.
absl::StatusOr<size_t> MeanAnswerBytes(PolicyService::Stub* stub,
                                       const std::vector<Question>& mix) {
  size_t total = 0;
  for (const Question& q : mix) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    AuthorizeResponse answer;
    const grpc::Status status = stub->Authorize(&context, q.request, &answer);
    if (!status.ok()) {
      return absl::UnavailableError(absl::StrCat("Authorize: ", status.error_message()));
    }
    if (std::optional<std::string> wrong = WrongAnswer(q, answer)) {
      return absl::InternalError(*wrong);
    }
    total += answer.ByteSizeLong();
  }
  return (total + mix.size() / 2) / mix.size();
}

// The decision alone: podgate-policy's Authorizer (the policy version in force, the
// evaluation, the rate limits, the metrics, and the log lines --policy_log_level asks for,
// built and handed to a logger that drops them) on the same mix, on one thread of this process,
// with no gRPC. Each answer is checked as over gRPC. The server's CPU per unary Authorize minus
// this and minus a Health/Check call's is what the service's RPC handling adds to a decision. With
// `messages`, each question is also parsed from its serialized bytes first and each answer
// serialized, as the gRPC server does: the difference is the messages' own cost.
struct InProcessResult {
  int64_t decisions = 0;
  double cpu_us_per_decision = 0;
  double cpu_us_with_messages = 0;
};

double ThreadCpuSeconds() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) * 1e-9;
}

absl::StatusOr<InProcessResult> MeasureInProcess(const std::string& policy_file,
                                                 const std::vector<Question>& mix, bool log_allowed,
                                                 absl::Duration warmup, absl::Duration duration) {
  // As the server at --policy_log_level: denials are logged at info, allowances at debug (not
  // built at all unless `log_allowed`).
  log::InitForTest(
      "policy", log_allowed ? log::Level::kDebug : log::Level::kInfo,
      [](std::string_view, void*) {}, nullptr);
  prometheus::Registry registry;
  policy::PolicyMetrics metrics(registry);
  policy::PolicyStore store(&metrics, nullptr);
  if (absl::Status s = store.LoadFile(policy_file); !s.ok()) {
    return s;
  }
  const policy::Authorizer authorizer(&store, &metrics, log_allowed);
  InProcessResult result;
  std::vector<std::string> serialized;
  for (const Question& q : mix) {
    serialized.push_back(q.request.SerializeAsString());
  }
  size_t next = 0;
  std::string answer_bytes;
  const auto run = [&](absl::Duration length, bool messages, int64_t* decisions) -> absl::Status {
    const absl::Time end = absl::Now() + length;
    while (absl::Now() < end) {
      for (int i = 0; i < 256; ++i) {  // between clock reads
        const size_t n = next++ % mix.size();
        const Question& q = mix[n];
        AuthorizeResponse answer;
        if (messages) {
          AuthorizeRequest request;
          if (!request.ParseFromString(serialized[n])) {
            return absl::InternalError("in process: a question does not parse");
          }
          answer = authorizer.Authorize(request);
          answer.SerializeToString(&answer_bytes);
        } else {
          answer = authorizer.Authorize(q.request);
        }
        if (std::optional<std::string> wrong = WrongAnswer(q, answer)) {
          return absl::InternalError(absl::StrCat("in process: ", *wrong));
        }
      }
      *decisions += 256;
    }
    return absl::OkStatus();
  };
  int64_t ignored = 0;
  for (bool messages : {false, true}) {
    if (absl::Status s = run(warmup, messages, &ignored); !s.ok()) {
      return s;
    }
    int64_t decisions = 0;
    const double cpu_before = ThreadCpuSeconds();
    if (absl::Status s = run(duration, messages, &decisions); !s.ok()) {
      return s;
    }
    const double us = 1e6 * (ThreadCpuSeconds() - cpu_before) / static_cast<double>(decisions);
    if (messages) {
      result.cpu_us_with_messages = us;
    } else {
      result.cpu_us_per_decision = us;
      result.decisions = decisions;
    }
  }
  return result;
}

int Main() {
  const bool quick = absl::GetFlag(FLAGS_quick);
  absl::StatusOr<std::vector<Config>> parsed = ParseConfigs();
  if (!parsed.ok()) {
    std::fprintf(stderr, "podgate-bench-policy: %s (see --help)\n",
                 std::string(parsed.status().message()).c_str());
    return 2;
  }
  std::vector<Config> configs = *std::move(parsed);
  const int channels = absl::GetFlag(FLAGS_channels);
  const int rounds = quick ? 1 : absl::GetFlag(FLAGS_rounds);
  const absl::Duration duration = quick ? absl::Milliseconds(1500) : absl::GetFlag(FLAGS_duration);
  const absl::Duration warmup = quick ? absl::Milliseconds(500) : absl::GetFlag(FLAGS_warmup);
  const std::string log_level = absl::GetFlag(FLAGS_policy_log_level);
  if (log_level != "info" && log_level != "debug") {
    std::fprintf(stderr,
                 "podgate-bench-policy: --policy_log_level must be info or debug, not '%s': the "
                 "benchmark reads podgate-policy's info line that says where it serves\n",
                 log_level.c_str());
    return 2;
  }
  if (channels < 1 || channels > 64 || rounds < 1 || duration <= absl::ZeroDuration() ||
      warmup < absl::ZeroDuration()) {
    std::fprintf(stderr,
                 "podgate-bench-policy: --channels must be 1..64, --rounds at least 1, "
                 "--duration positive and --warmup not negative (see --help)\n");
    return 2;
  }

  struct Server {
    std::unique_ptr<testing::Subprocess> process;
    std::vector<std::unique_ptr<PolicyService::Stub>> stubs;
    std::vector<std::unique_ptr<HealthStub>> health_stubs;
    std::string name;  // the table's "binary" column
  };
  // `channels` connections to `port`, each its own: channels with different arguments share no
  // subchannel.
  const auto connect = [channels](int port, Server* server) {
    for (int c = 0; c < channels; ++c) {
      grpc::ChannelArguments args;
      args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
      args.SetInt("podgate.bench.channel", c);
      auto channel = grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                               grpc::InsecureChannelCredentials(), args);
      server->stubs.push_back(PolicyService::NewStub(channel));
      server->health_stubs.push_back(grpc::health::v1::Health::NewStub(channel));
    }
  };
  std::vector<std::string> binaries = {absl::GetFlag(FLAGS_policy_bin)};
  if (!absl::GetFlag(FLAGS_compare_bin).empty()) {
    binaries.push_back(absl::GetFlag(FLAGS_compare_bin));
  }
  std::vector<Server> servers;
  for (const std::string& binary : binaries) {
    absl::StatusOr<std::pair<std::unique_ptr<testing::Subprocess>, int>> started =
        StartPolicy(binary);
    if (!started.ok()) {
      std::fprintf(stderr, "podgate-bench-policy: %s: %s\n", binary.c_str(),
                   std::string(started.status().message()).c_str());
      return 1;
    }
    Server server;
    server.process = std::move(started->first);
    server.name = servers.empty() ? "policy_bin" : "compare_bin";
    const int port = started->second;
    std::printf("%s: pid %d on 127.0.0.1:%d, %d channels, %ld cores\n", binary.c_str(),
                static_cast<int>(server.process->pid()), port, channels,
                sysconf(_SC_NPROCESSORS_ONLN));
    connect(port, &server);
    servers.push_back(std::move(server));
  }
  const std::vector<Question> mix = Mix();
  // The stream floor answers with podgate-policy's mean answer size to the mix.
  const size_t policy_servers = servers.size();
  const std::string floor_bin = absl::GetFlag(FLAGS_stream_floor_bin);
  size_t answer_bytes = 0;
  if (!floor_bin.empty()) {
    absl::StatusOr<size_t> mean = MeanAnswerBytes(servers[0].stubs[0].get(), mix);
    if (!mean.ok()) {
      std::fprintf(stderr, "podgate-bench-policy: the mix's answers: %s\n",
                   std::string(mean.status().message()).c_str());
      return 1;
    }
    answer_bytes = *mean;
    int port = 0;
    absl::StatusOr<std::unique_ptr<testing::Subprocess>> started = StartStreamFloorServer(
        floor_bin, {"--role=policy-server", absl::StrCat("--answer_bytes=", answer_bytes)}, &port);
    if (!started.ok()) {
      std::fprintf(stderr, "podgate-bench-policy: %s: %s\n", floor_bin.c_str(),
                   std::string(started.status().message()).c_str());
      return 1;
    }
    Server floor;
    floor.process = *std::move(started);
    floor.name = "stream_floor";
    std::printf("%s: pid %d on 127.0.0.1:%d, answers of %zu bytes (podgate-policy's mean)\n",
                floor_bin.c_str(), static_cast<int>(floor.process->pid()), port, answer_bytes);
    connect(port, &floor);
    servers.push_back(std::move(floor));
  }
  std::fflush(stdout);
  absl::SleepFor(absl::GetFlag(FLAGS_pause_before));
  {
    // Every configuration on each policy server in turn, then each stream shape and each
    // unary Authorize configuration on the floor.
    std::vector<Config> all;
    for (const Config& c : configs) {
      for (size_t i = 0; i < policy_servers; ++i) {
        all.push_back(c);
        all.back().server = i;
      }
      if ((c.mode == "stream" || c.mode == "unary") && servers.size() > policy_servers) {
        all.push_back(c);
        all.back().mode = c.mode == "stream" ? "floor" : "unary_floor";
        all.back().server = policy_servers;
      }
    }
    configs = std::move(all);
  }

  std::vector<std::function<absl::Status(int)>> sides;
  for (Config& config : configs) {
    sides.push_back([&](int round) -> absl::Status {
      const auto& stubs = servers[config.server].stubs;
      const pid_t server = servers[config.server].process->pid();
      RunTotals& totals = config.totals;
      const int64_t before = totals.decisions;
      const double seconds_before = totals.seconds;
      absl::Status s;
      if (!config.streaming()) {
        UnaryRun run(stubs, mix, config.inflight,
                     config.mode == "health" ? &servers[config.server].health_stubs : nullptr,
                     config.mode == "unary_floor" ? answer_bytes : 0);
        s = run.Run(warmup, duration, server, &totals);
      } else {
        s = StreamRun(stubs, mix, config.streams, config.inflight,
                      config.mode == "floor" ? answer_bytes : 0, warmup, duration, server, &totals);
      }
      if (!s.ok()) {
        return s;
      }
      if (totals.errors > 0) {
        return absl::InternalError(
            absl::StrCat(config.Label(), ": ", totals.errors,
                         " failed answers, the first: ", totals.first_error));
      }
      const double rate = static_cast<double>(totals.decisions - before) /
                          std::max(1e-9, totals.seconds - seconds_before);
      std::printf("round %d, %s%s %s: %.0f %s/s\n", round + 1,
                  config.server == 0 || config.on_floor() ? "" : "compare ", config.mode.c_str(),
                  config.Label().c_str(), rate,
                  config.mode == "stream" || config.mode == "unary" ? "decisions" : "answers");
      std::fflush(stdout);
      return absl::OkStatus();
    });
  }
  if (absl::Status s = RunInterleaved(rounds, sides); !s.ok()) {
    std::fprintf(stderr, "podgate-bench-policy: %s\n", std::string(s.message()).c_str());
    return 1;
  }

  Report report("policy", quick);
  Table table(absl::StrCat("Policy decisions over gRPC (", rounds, " rounds of ",
                           absl::FormatDuration(duration),
                           " each, interleaved; client and server share the cores)"),
              {"binary", "mode", "concurrency", "decisions/s", "p50 ms", "p99 ms", "client CPU %",
               "server CPU %", "server CPU us/decision"});
  std::map<std::string, Config*> best;
  for (Config& c : configs) {
    RunTotals& t = c.totals;
    if (t.decisions == 0) {
      std::fprintf(stderr, "podgate-bench-policy: %s %s: no decision measured\n", c.mode.c_str(),
                   c.Label().c_str());
      return 1;
    }
    const double client_pct = 100 * t.client_cpu_s / t.seconds;
    const double server_pct = 100 * t.server_cpu_s / t.seconds;
    const double server_us = 1e6 * t.server_cpu_s / static_cast<double>(t.decisions);
    const double p50 = t.latency_ms.Percentile(50);
    const double p99 = t.latency_ms.Percentile(99);
    table.AddRow({servers[c.server].name, c.mode, c.Label(), Cell(c.DecisionsPerS(), 0),
                  Cell(p50, 2), Cell(p99, 2), Cell(client_pct, 0), Cell(server_pct, 0),
                  Cell(server_us, 1)});
    if (c.server != 0 && !c.on_floor()) {
      continue;  // the metrics are --policy_bin's (and the floor's)
    }
    const std::string key = c.MetricKey();
    report.Metric(key + ".decisions_per_s", c.DecisionsPerS());
    report.Metric(key + ".p50_ms", p50);
    report.Metric(key + ".p99_ms", p99);
    report.Metric(key + ".server_us_per_decision", server_us);
    report.Metric(key + ".client_cpu_pct", client_pct);
    report.Metric(key + ".server_cpu_pct", server_pct);
    Config*& b = best[c.mode];
    if (b == nullptr || c.DecisionsPerS() > b->DecisionsPerS()) {
      b = &c;
    }
  }
  report.Add(table);
  for (const auto& [mode, c] : best) {
    // Health checks are the unary ceiling and the floor's answers the stream and unary
    // Authorize ceilings, not decisions.
    const std::string key = mode == "health"        ? "policy.unary_ceiling"
                            : mode == "floor"       ? "policy.stream_ceiling"
                            : mode == "unary_floor" ? "policy.unary_floor"
                                                    : "policy." + mode;
    report.Metric(key + (mode == "health"                           ? ".calls_per_s"
                         : mode == "floor" || mode == "unary_floor" ? ".answers_per_s"
                                                                    : ".decisions_per_s"),
                  c->DecisionsPerS());
    report.Metric(key + ".p99_ms", c->totals.latency_ms.Percentile(99));
  }
  if (answer_bytes > 0) {
    report.Metric("policy.stream_ceiling.answer_bytes", static_cast<double>(answer_bytes));
  }
  // Where a unary Authorize's server CPU goes: an empty call (Health/Check), the decision and
  // its messages (both in process) and the rest. The unary configuration compared is the one
  // with as many calls in flight as the best Health/Check run, else the best unary one.
  if (best.count("unary") > 0 && best.count("health") > 0) {
    absl::StatusOr<InProcessResult> in_process = MeasureInProcess(
        absl::GetFlag(FLAGS_policy_file), mix, log_level == "debug", warmup, duration);
    if (!in_process.ok()) {
      std::fprintf(stderr, "podgate-bench-policy: %s\n",
                   std::string(in_process.status().message()).c_str());
      return 1;
    }
    const Config* health = best["health"];
    const Config* unary = best["unary"];
    for (const Config& c : configs) {
      if (c.server == 0 && c.mode == "unary" && c.inflight == health->inflight) {
        unary = &c;
      }
    }
    const auto server_us = [](const Config& c) {
      return 1e6 * c.totals.server_cpu_s / static_cast<double>(c.totals.decisions);
    };
    const double call_us = server_us(*health);
    const double authorize_us = server_us(*unary);
    const double decision_us = in_process->cpu_us_per_decision;
    const double messages_us = std::max(0.0, in_process->cpu_us_with_messages - decision_us);
    const double rest_us = authorize_us - call_us - decision_us - messages_us;
    Table split("Where a unary Authorize's server CPU goes (us per call)",
                {"part", "us", "share %"});
    const auto row = [&](const std::string& part, double us) {
      split.AddRow({part, Cell(us, 2), Cell(100 * us / authorize_us, 0)});
    };
    row(absl::StrCat("an empty call: Health/Check, ", health->Label(), " in flight"), call_us);
    row(absl::StrCat("the decision: Authorizer in process, one thread, ", in_process->decisions,
                     " decisions"),
        decision_us);
    row("the messages: parsing the question and serializing the answer, in process", messages_us);
    row("the rest: what else Authorize costs the server beyond an empty call", rest_us);
    row(absl::StrCat("unary Authorize over gRPC, ", unary->Label(), " in flight"), authorize_us);
    report.Add(split);
    report.Metric("policy.decision_in_process.cpu_us", decision_us);
    report.Metric("policy.unary_split.empty_call_us", call_us);
    report.Metric("policy.unary_split.messages_us", messages_us);
    report.Metric("policy.unary_split.rest_us", rest_us);
    // The same calls against the unary floor: what gRPC alone costs a unary Authorize of
    // podgate-policy's sizes, and what podgate-policy adds to it.
    for (const Config& c : configs) {
      if (c.mode != "unary_floor" || c.inflight != unary->inflight) {
        continue;
      }
      const double floor_us = server_us(c);
      Table against(
          "Unary Authorize against its floor (server CPU us per call, the same calls in flight)",
          {"part", "us", "share %"});
      against.AddRow({absl::StrCat("the unary floor: Authorize with no decision, answers of ",
                                   answer_bytes, " bytes, ", c.Label(), " in flight"),
                      Cell(floor_us, 2), Cell(100 * floor_us / authorize_us, 0)});
      against.AddRow({"podgate-policy's own work beyond it", Cell(authorize_us - floor_us, 2),
                      Cell(100 * (authorize_us - floor_us) / authorize_us, 0)});
      against.AddRow({absl::StrCat("unary Authorize over gRPC, ", unary->Label(), " in flight"),
                      Cell(authorize_us, 2), "100"});
      report.Add(against);
      report.Metric("policy.unary_split.floor_us", floor_us);
      report.Metric("policy.unary_split.own_work_us", authorize_us - floor_us);
    }
  }
  report.Note(absl::StrCat(
      "CPU %: utime+stime over the measured time, 100 = one core of ",
      sysconf(_SC_NPROCESSORS_ONLN),
      ". The per-mode metrics (policy.unary.decisions_per_s, policy.stream.decisions_per_s and "
      "their p99_ms) are those of the configuration with the most decisions/s. Mix: ",
      mix.size(), " questions from the example policy, ",
      std::count_if(mix.begin(), mix.end(), [](const Question& q) { return !q.allow; }),
      " of them denied (a denial is logged at info level, an allowance at debug). Mode health: "
      "grpc.health.v1.Health/Check on the same server (a call, not a decision; "
      "policy.unary_ceiling.calls_per_s): the lightest unary call it answers, the most unary "
      "Authorize can reach here.",
      answer_bytes == 0
          ? " Mode floor: not run (--stream_floor_bin is empty)."
          : absl::StrCat(
                " Mode floor: the same AuthorizeStream shapes against "
                "podgate-bench-stream-floor --role=policy-server, podgate-policy's stream with no "
                "decision, answering with a fixed allow of podgate-policy's mean answer size (",
                answer_bytes,
                " bytes; policy.stream_ceiling.answers_per_s, the best shape): the most "
                "AuthorizeStream can carry here. Mode unary_floor: the same unary calls against "
                "the same server's unary Authorize, answered with the same fixed allow "
                "(policy.unary_floor.answers_per_s, the best count in flight): the most unary "
                "Authorize can carry here with podgate-policy's question and answer sizes.")));
  if (absl::Status s = report.WriteJson(absl::GetFlag(FLAGS_json)); !s.ok()) {
    std::fprintf(stderr, "podgate-bench-policy: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace podgate::bench

int main(int argc, char** argv) {
  std::vector<char*> args = podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-bench-policy [--json=FILE] [--quick] [flags]: policy decisions/s over gRPC, "
      "unary and streaming, against a real podgate-policy (docs/performance.md)");
  if (args.size() > 1) {
    std::fprintf(stderr, "podgate-bench-policy: unexpected argument '%s' (see --help)\n", args[1]);
    return 2;
  }
  return podgate::bench::Main();
}
