// podgate-audit-bench: durable records per second through the real Record RPC with group
// commit, on SQLite and on PostgreSQL (docs/performance.md, "Audit"; docs/audit.md,
// "Benchmark").
//
// Strict: each writer is one Record stream that sends an event and waits for its ack before
// sending the next (exec runs nothing before audit acks), at 1, 16 and 256 writers, so
// throughput beyond one writer comes only from group commit merging concurrent writers into one
// transaction. Pipelined: a few streams each keep up to --pipelined_window events in flight (an
// exec replica multiplexes its sessions' events on one stream), which measures the ingest path
// itself: gRPC, the writer, the store.
//
// The service runs in process over a loopback socket; the client is gRPC's callback API (one
// reactor per writer on gRPC's own threads), so 256 writers do not cost 512 client threads.
// PostgreSQL is a temporary server started by the benchmark (initdb + pg_ctl, as the tests do)
// unless --postgres_url names one. For each configuration the two stores run in turn, round
// after round (SQLite, PostgreSQL, SQLite, ...), so that machine noise hits both alike; each
// run uses a fresh database.
//
// Exit status: 0 every run completed, 1 a run failed (a store could not be opened, a stream
// ended with an error), 2 a usage error.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "grpcpp/grpcpp.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/server.h"
#include "tools/bench/report.h"

ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file (tools/bench/bench.py).");
ABSL_FLAG(bool, quick, false,
          "Smoke mode: short runs, one round; proves the benchmark runs, not how fast.");
ABSL_FLAG(std::string, writers, "1,16,256", "Strict writer counts, comma separated.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(3),
          "How long each run lasts (--quick: 0.5s). Default 3s.");
ABSL_FLAG(int, rounds, 3, "Runs per store and configuration, interleaved (--quick: 1).");
ABSL_FLAG(std::string, stores, "sqlite,postgresql", "Stores to measure: sqlite, postgresql.");
ABSL_FLAG(int, pipelined_writers, 16, "Streams of the pipelined run.");
ABSL_FLAG(int, pipelined_window, 512,
          "Events each pipelined stream keeps in flight (sent, not yet acked).");
ABSL_FLAG(int, connections, 1,
          "Client connections (gRPC channels) the writers of a run are spread over, as many "
          "exec replicas would; 1: every stream on one HTTP/2 connection.");
ABSL_FLAG(std::string, postgres_url, "",
          "An existing PostgreSQL database to use for every run (records accumulate in chain "
          "\"bench\"); empty starts a temporary server with a fresh database per run.");

namespace podgate::audit {
namespace {

using podgate::audit::v1::RecordRequest;
using podgate::audit::v1::RecordResponse;

struct RunResult {
  int64_t records = 0;
  double seconds = 0;
  std::vector<double> latencies_ms;
  double mean_batch = 0;
  double records_per_s() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
};

// One writer: a Record stream keeping up to `window` events in flight until `end`, then
// half-closing once every event is acked.
class WriterStream final : public grpc::ClientBidiReactor<RecordRequest, RecordResponse> {
 public:
  WriterStream(v1::AuditService::Stub* stub, std::string prefix, int window, absl::Time end,
               const podgate::common::v1::AuditEvent& event)
      : prefix_(std::move(prefix)), window_(window), end_(end) {
    *request_.mutable_event() = event;
    stub->async()->Record(&context_, this);
    StartRead(&response_);
    AddHold();
    absl::MutexLock lock(&mu_);
    MaybeWriteLocked();
    StartCall();
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock lock(&mu_);
    writing_ = false;
    if (!ok) {
      broken_ = true;
      MaybeCloseLocked();
      return;
    }
    MaybeWriteLocked();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      absl::MutexLock lock(&mu_);
      broken_ = true;  // the server ended the stream (OnDone says why)
      MaybeCloseLocked();
      return;
    }
    const absl::Time now = absl::Now();
    {
      absl::MutexLock lock(&mu_);
      if (response_.has_rejection()) {
        error_ = absl::StrCat("event rejected: ", response_.rejection().reason());
        broken_ = true;
      }
      for (int k = 0; k < response_.ack().ids_size() && !sent_at_.empty(); ++k) {
        latencies_ms_.push_back(absl::ToDoubleMilliseconds(now - sent_at_.front()));
        sent_at_.pop_front();
        ++acked_;
      }
      MaybeWriteLocked();
    }
    StartRead(&response_);
  }

  void OnWritesDoneDone(bool /*ok*/) override {}

  void OnDone(const grpc::Status& status) override {
    {
      absl::MutexLock lock(&mu_);
      if (!status.ok() && error_.empty()) {
        error_ =
            absl::StrCat("stream ended with ", status.error_code(), ": ", status.error_message());
      }
    }
    done_.Notify();
  }

  // Waits for the stream to end; returns its error ("" when it ended OK).
  std::string Await() {
    done_.WaitForNotification();
    absl::MutexLock lock(&mu_);
    return error_;
  }
  int64_t acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  // Ack latencies in ms; taken once the stream ended.
  std::vector<double> TakeLatencies() {
    absl::MutexLock lock(&mu_);
    return std::move(latencies_ms_);
  }

 private:
  void MaybeWriteLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || closed_) {
      return;
    }
    if (broken_ || absl::Now() >= end_) {
      MaybeCloseLocked();
      return;
    }
    if (static_cast<int>(sent_at_.size()) >= window_) {
      return;
    }
    request_.mutable_event()->set_id(absl::StrCat(prefix_, next_++));
    sent_at_.push_back(absl::Now());
    writing_ = true;
    StartWrite(&request_);
  }
  void MaybeCloseLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (closed_ || writing_ || (!broken_ && !sent_at_.empty())) {
      return;
    }
    closed_ = true;
    StartWritesDone();
    RemoveHold();
  }

  grpc::ClientContext context_;
  const std::string prefix_;
  const int window_;
  const absl::Time end_;
  RecordRequest request_;
  RecordResponse response_;
  absl::Notification done_;
  absl::Mutex mu_;
  std::deque<absl::Time> sent_at_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
};

absl::StatusOr<RunResult> Run(const std::string& url, int writers, int window, int connections,
                              absl::Duration duration, int run_id) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(url);
  if (!store.ok()) {
    return store.status();
  }
  prometheus::Registry registry;
  AuditMetrics metrics(registry);
  WriterOptions options;
  options.chain_id = "bench";
  absl::StatusOr<std::unique_ptr<Writer>> writer = Writer::Start(store->get(), options, &metrics);
  if (!writer.ok()) {
    return writer.status();
  }
  AuditServiceImpl service(store->get(), writer->get(), &metrics);
  runtime::ServerOptions server_options;
  server_options.service_name = "audit";
  server_options.grpc_address = "127.0.0.1:0";
  server_options.drain_timeout = absl::Seconds(1);
  auto server =
      runtime::Server::Start(server_options, {&service}, std::make_shared<prometheus::Registry>());
  if (!server.ok()) {
    return server.status();
  }
  // Separate connections: each channel gets its own subchannel pool.
  std::vector<std::unique_ptr<v1::AuditService::Stub>> stubs;
  for (int c = 0; c < std::max(1, std::min(connections, writers)); ++c) {
    grpc::ChannelArguments args;
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    stubs.push_back(v1::AuditService::NewStub(
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()),
                                  grpc::InsecureChannelCredentials(), args)));
  }
  const podgate::common::v1::AuditEvent event = testing::MakeEvent("template");

  const absl::Time start = absl::Now();
  std::vector<std::unique_ptr<WriterStream>> streams;
  streams.reserve(static_cast<size_t>(writers));
  for (int w = 0; w < writers; ++w) {
    streams.push_back(std::make_unique<WriterStream>(
        stubs[static_cast<size_t>(w) % stubs.size()].get(), absl::StrCat("r", run_id, "-w", w, "-"),
        window, start + duration, event));
  }
  RunResult result;
  std::string error;
  for (auto& stream : streams) {
    if (std::string e = stream->Await(); !e.empty() && error.empty()) {
      error = e;
    }
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  for (auto& stream : streams) {
    result.records += stream->acked();
    std::vector<double> latencies = stream->TakeLatencies();
    result.latencies_ms.insert(result.latencies_ms.end(), latencies.begin(), latencies.end());
  }
  const auto batches = metrics.batch_size().Collect().histogram;
  if (batches.sample_count > 0) {
    result.mean_batch = batches.sample_sum / static_cast<double>(batches.sample_count);
  }
  (*server)->Shutdown();
  if (!error.empty()) {
    return absl::UnavailableError(error);
  }
  return result;
}

struct Config {
  std::string name;  // metric infix: "strict.w16", "pipelined"
  int writers;
  int window;
};

// Where each store's runs go: a fresh SQLite file, or a fresh PostgreSQL database.
class Databases {
 public:
  absl::StatusOr<std::string> Next(const std::string& kind) {
    ++count_;
    if (kind == "sqlite") {
      dirs_.push_back(std::make_unique<testing::TempDir>("podgate-audit-bench"));
      return absl::StrCat("sqlite://", dirs_.back()->path(), "/audit.db");
    }
    if (!absl::GetFlag(FLAGS_postgres_url).empty()) {
      return absl::GetFlag(FLAGS_postgres_url);
    }
    if (pg_ == nullptr) {
      absl::StatusOr<std::unique_ptr<testing::PostgresServer>> started =
          testing::PostgresServer::Start();
      if (!started.ok()) {
        return absl::UnavailableError(
            absl::StrCat("cannot start a temporary PostgreSQL: ", started.status().message()));
      }
      pg_ = *std::move(started);
    }
    return pg_->CreateDatabase(absl::StrCat("bench", count_));
  }
  // Removes the SQLite files of finished runs (the PostgreSQL server goes with the object).
  void DropFiles() { dirs_.clear(); }

 private:
  int count_ = 0;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::vector<std::unique_ptr<testing::TempDir>> dirs_;
};

std::string MetricStore(const std::string& kind) {
  return kind == "postgresql" ? "postgres" : kind;
}

std::string StoreTitle(const std::string& kind) {
  return kind == "postgresql" ? "PostgreSQL" : "SQLite";
}

double Median(std::vector<double> v) {
  if (v.empty()) {
    return 0;
  }
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 == 1 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

// Every round of one configuration on one store.
struct Runs {
  std::vector<double> records_per_s;
  bench::Samples latencies_ms;
  std::vector<double> batches;
};

int Main() {
  const bool quick = absl::GetFlag(FLAGS_quick);
  std::vector<int> writer_counts;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_writers), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 4096) {
      std::fprintf(stderr,
                   "podgate-audit-bench: --writers: bad count \"%s\" (1 to 4096) (see --help)\n",
                   std::string(part).c_str());
      return 2;
    }
    writer_counts.push_back(n);
  }
  std::vector<std::string> stores;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_stores), ',')) {
    if (part != "sqlite" && part != "postgresql") {
      std::fprintf(stderr,
                   "podgate-audit-bench: --stores: unknown store \"%s\" (sqlite, postgresql) "
                   "(see --help)\n",
                   std::string(part).c_str());
      return 2;
    }
    stores.emplace_back(part);
  }
  const int pipelined_writers = absl::GetFlag(FLAGS_pipelined_writers);
  const int pipelined_window = absl::GetFlag(FLAGS_pipelined_window);
  if (pipelined_writers < 0 || pipelined_writers > 4096 || pipelined_window < 1 ||
      pipelined_window > 100000) {
    std::fprintf(stderr,
                 "podgate-audit-bench: --pipelined_writers must be 0 (no pipelined run) to 4096 "
                 "and --pipelined_window 1 to 100000 (see --help)\n");
    return 2;
  }
  const int connections = absl::GetFlag(FLAGS_connections);
  if (connections < 1 || connections > 256) {
    std::fprintf(stderr, "podgate-audit-bench: --connections must be 1 to 256 (see --help)\n");
    return 2;
  }
  int rounds = absl::GetFlag(FLAGS_rounds);
  absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (rounds < 1 || rounds > 100 || duration <= absl::ZeroDuration() || duration > absl::Hours(1)) {
    std::fprintf(stderr,
                 "podgate-audit-bench: --rounds must be 1 to 100 and --duration above 0 and at "
                 "most 1h (see --help)\n");
    return 2;
  }
  if (quick) {
    rounds = 1;
    duration = std::min(duration, absl::Milliseconds(500));
  }

  std::vector<Config> configs;
  for (int n : writer_counts) {
    configs.push_back({absl::StrCat("strict.w", n), n, 1});
  }
  if (pipelined_writers > 0) {
    configs.push_back({"pipelined", pipelined_writers, pipelined_window});
  }

  bench::Report report("audit", quick);
  report.Note(absl::StrCat(
      "audit ingest through the Record RPC (loopback, in process), durable acks only: strict = "
      "one event in flight per writer stream; pipelined = ",
      pipelined_writers, " streams x ", pipelined_window, " events in flight; writers over ",
      connections, " connection(s). ", rounds, " round(s) of ", absl::FormatDuration(duration),
      " per store, stores interleaved; records/s is the median round."));

  Databases databases;
  std::map<std::string, std::map<std::string, Runs>> runs;  // config -> store -> runs
  int run_id = 0;
  for (const Config& config : configs) {
    absl::Status status = bench::RunInterleaved(rounds, [&] {
      std::vector<std::function<absl::Status(int)>> sides;
      for (const std::string& kind : stores) {
        sides.push_back([&, kind](int /*round*/) -> absl::Status {
          absl::StatusOr<std::string> url = databases.Next(kind);
          if (!url.ok()) {
            return url.status();
          }
          absl::StatusOr<RunResult> r =
              Run(*url, config.writers, config.window, connections, duration, ++run_id);
          databases.DropFiles();
          if (!r.ok()) {
            return absl::Status(r.status().code(), absl::StrCat(StoreTitle(kind), " ", config.name,
                                                                ": ", r.status().message()));
          }
          Runs& slot = runs[config.name][kind];
          slot.records_per_s.push_back(r->records_per_s());
          slot.batches.push_back(r->mean_batch);
          for (double ms : r->latencies_ms) {
            slot.latencies_ms.Add(ms);
          }
          return absl::OkStatus();
        });
      }
      return sides;
    }());
    if (!status.ok()) {
      std::fprintf(stderr, "podgate-audit-bench: %s\n", std::string(status.message()).c_str());
      return 1;
    }
  }

  auto table_for = [&](const std::string& title, bool strict) {
    std::vector<std::string> columns = {"writers", "window"};
    for (const std::string& kind : stores) {
      for (const char* what : {"records/s", "p50 ms", "p99 ms", "batch"}) {
        columns.push_back(absl::StrCat(StoreTitle(kind), " ", what));
      }
    }
    bench::Table table(title, columns);
    for (const Config& config : configs) {
      if ((config.name != "pipelined") != strict) {
        continue;
      }
      std::vector<std::string> row = {absl::StrCat(config.writers), absl::StrCat(config.window)};
      for (const std::string& kind : stores) {
        Runs& r = runs[config.name][kind];
        const double rate = Median(r.records_per_s);
        report.Metric(absl::StrCat("audit.", MetricStore(kind), ".", config.name, ".records_per_s"),
                      rate);
        report.Metric(absl::StrCat("audit.", MetricStore(kind), ".", config.name, ".p99_ms"),
                      r.latencies_ms.Percentile(99));
        row.push_back(bench::Cell(rate, 0));
        row.push_back(bench::Cell(r.latencies_ms.Percentile(50), 2));
        row.push_back(bench::Cell(r.latencies_ms.Percentile(99), 2));
        row.push_back(bench::Cell(Median(r.batches), 1));
      }
      table.AddRow(row);
    }
    report.Add(table);
  };
  table_for("Audit: strict ingest (each writer waits for its ack), records/s", true);
  if (pipelined_writers > 0) {
    table_for("Audit: pipelined ingest, records/s", false);
  }
  if (absl::Status s = report.WriteJson(absl::GetFlag(FLAGS_json)); !s.ok()) {
    std::fprintf(stderr, "podgate-audit-bench: %s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace podgate::audit

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-audit-bench [--json=FILE] [--quick]: durable audit records per second through "
      "the Record RPC with group commit, strict and pipelined, on SQLite and PostgreSQL.");
  podgate::log::Init("audit-bench", podgate::log::Level::kWarn);
  // Lock-order checking off, as in podgate-audit (runtime::PrepareServiceProcess): Debian's
  // Abseil keeps it on, and its graph took about 1.5 % of this benchmark's CPU samples.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  return podgate::audit::Main();
}
