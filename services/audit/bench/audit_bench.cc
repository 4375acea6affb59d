// podgate-audit-bench: durable records per second through the real Record RPC with group
// commit, on SQLite and on PostgreSQL (docs/performance.md, "Audit"; docs/audit.md,
// "Benchmark").
//
// Strict: each writer is one Record stream that sends an event and waits for its ack before
// sending the next (exec runs nothing before audit acks), at 1, 16 and 256 writers, so
// throughput beyond one writer comes only from group commit merging concurrent writers into one
// transaction; then 256 such writers sharing one clients::AuditClient, so one stream, as one
// exec replica's sessions do (its events batch when they queue behind a write). Pipelined: a few
// streams each keep up to --pipelined_window events in flight (an exec replica multiplexes its
// sessions' events on one stream), which measures the ingest path itself: gRPC, the writer, the
// store; once with one event per message, once with up to
// --pipelined_batch events per message (RecordRequest.batch), as exec's audit client sends what
// queued behind its previous message. The store alone: Store::Append of batches of
// --store_batches events from one thread, no gRPC and no writer, the rate the service's ingest
// cannot pass on this machine with the store's schema (its indexes, its chain hashing). The
// shape alone: --shape_writers strict writers, with a stream each and then on one audit client,
// against a store that keeps nothing (Append returns at once), the rate that shape cannot pass
// whatever the store (gRPC, the writer's queue, the acks). The store at a row's commits: after
// each strict row of 16 writers or more, the store alone once more, in batches of that row's
// mean commit on that store (a commit of n records through the writer takes at least what
// the store takes for n alone, so that rate bounds the row). Every run also measures its CPU per
// record (this process and, on PostgreSQL, the server's processes) and the cores it kept busy.
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
#include <sched.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/hash/hash.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/record_reactor.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "clients/audit_client.h"
#include "grpcpp/grpcpp.h"
#include "libpq-fe.h"
#include "runtime/flags.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "runtime/server.h"
#include "tools/bench/report.h"
#include "wire/time.h"

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
ABSL_FLAG(int, pipelined_batch, 256,
          "Events per message, at most, in the batched pipelined run (exec's audit client sends "
          "up to 256); 1 skips that run.");
ABSL_FLAG(int, client_writers, 256,
          "Strict writers sharing one audit client (one Record stream, as the sessions of one "
          "exec replica); 0 skips that run.");
ABSL_FLAG(int, connections, 1,
          "Client connections (gRPC channels) the writers of a run are spread over, as many "
          "exec replicas would; 1: every stream on one HTTP/2 connection.");
ABSL_FLAG(std::string, store_batches, "256,1024,4096",
          "Batch sizes of the store-alone runs (Store::Append of a batch from one thread, no "
          "gRPC and no writer: the store's own rate, the ceiling of ingest), comma separated, "
          "1 to 100000; empty for none. (Each strict row of 16 writers or more also gets a "
          "store-alone run at its own mean commit size.)");
ABSL_FLAG(bool, without_query_indexes, false,
          "Drop the records table's query indexes (those of Query's filters and retention; the "
          "unique ones an append checks stay) from each fresh database before its run: what "
          "the indexes cost ingest. A measurement only: never on a database in use.");
ABSL_FLAG(int, shape_writers, 256,
          "Strict writers of the runs against a store that keeps nothing, with a stream each and "
          "(unless --client_writers=0) on one audit client: what each shape can reach without a "
          "store, a limit of the strict rows of the same count and shape (0: no such run).");
ABSL_FLAG(std::string, events, "varied",
          "The events' shape, as the store's indexes see it: \"varied\" (the keys exec's events "
          "carry: a time-ordered id each, a random trace id per command, random session ids, "
          "users, namespaces and pods from pools, the current time) or \"uniform\" (one event "
          "repeated with only its id changing, so every index grows at its end; the shape of "
          "the runs before 2026-12-06).");
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
  // CPU time spent over the run (CpuClock): this process (client, service, writer, SQLite) and,
  // on PostgreSQL, the database server's processes.
  double cpu_seconds = 0;
  std::vector<double> latencies_ms;
  double mean_batch = 0;
  // Events per Record message sent.
  double per_message = 0;
  double records_per_s() const { return seconds > 0 ? static_cast<double>(records) / seconds : 0; }
  double cpu_us_per_record() const {
    return records > 0 ? cpu_seconds * 1e6 / static_cast<double>(records) : 0;
  }
  // How many cores the run kept busy on average.
  double cores_busy() const { return seconds > 0 ? cpu_seconds / seconds : 0; }
};

// The CPU a run costs: this process's (the client, the service, the writer, SQLite) plus, for
// a PostgreSQL run, that of the temporary server's processes (its backends and background
// workers), which share the machine's cores with it.
struct CpuClock {
  int postgres_pid = 0;  // 0: no database server to count
  double Now() const {
    return bench::SelfCpuSeconds() +
           (postgres_pid > 0 ? bench::ProcessTreeCpuSeconds(postgres_pid) : 0);
  }
};

// What the benchmark's events look like to the store's indexes (--events). "uniform": one event
// repeated with only its id changing ("<prefix><n>"), so every query index gets the same key
// and grows only at its end, and the unique id index almost so. "varied": the keys exec's
// events carry. Each event's id is exec's (runtime::EventId); two events per command share the
// command's trace id (random); 256 sessions run at a time, each for 8 commands before a new
// session (a random id) takes its place; the users (64), namespaces (16) and pods (256) come
// from pools; the time is the current time. The random keys land all over their indexes, as
// they do in production, where every record of a batch dirties a different page of them.
class EventShape {
 public:
  static constexpr int kSessions = 256;
  static constexpr int kCommandsPerSession = 8;

  EventShape(bool varied, std::string prefix)
      : varied_(varied), prefix_(std::move(prefix)), seed_(absl::HashOf(prefix_)) {}

  // Sets the fields of event `n` (0, 1, ...) of this writer on a copy of the template.
  void Fill(int64_t n, podgate::common::v1::AuditEvent* event) const {
    if (!varied_) {
      event->set_id(absl::StrCat(prefix_, n));
      return;
    }
    event->set_id(runtime::EventId());
    const uint64_t command = static_cast<uint64_t>(n) / 2;
    const uint64_t slot = command % kSessions;
    const uint64_t generation = command / (kSessions * kCommandsPerSession);
    event->set_trace_id(Hex128(seed_ ^ 0x7472616365ULL, command));
    event->set_session_id(Hex128(seed_ ^ (generation << 9), slot));
    event->mutable_principal()->set_user(absl::StrCat("user-", slot % 64));
    event->mutable_target()->set_namespace_(absl::StrCat("ns-", slot % 16));
    event->mutable_target()->set_pod(absl::StrCat("pod-", slot));
    *event->mutable_time() = wire::ToProtoTimestamp(absl::Now());
  }

 private:
  // splitmix64: well-spread bits from a counter, so that keys are as random as real ids
  // without the cost of the CSPRNG.
  static uint64_t Mix(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
  }
  static std::string Hex128(uint64_t seed, uint64_t n) {
    const uint64_t a = Mix(seed ^ Mix(n));
    return absl::StrFormat("%016x%016x", a, Mix(a));
  }

  const bool varied_;
  const std::string prefix_;
  const uint64_t seed_;
};

// The cores this process may run on.
int UsableCores() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) != 0) {
    return 1;
  }
  return std::max(1, CPU_COUNT(&set));
}

// One writer: a Record stream keeping up to `window` events in flight until `end`, then
// half-closing once every event is acked.
class WriterStream final : public grpc::ClientBidiReactor<RecordRequest, RecordResponse> {
 public:
  WriterStream(v1::AuditService::Stub* stub, EventShape shape, int window, int batch,
               absl::Time end, const podgate::common::v1::AuditEvent& event)
      : shape_(std::move(shape)), window_(window), batch_(batch), end_(end), event_(event) {
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
  int64_t sent() {
    absl::MutexLock lock(&mu_);
    return next_;
  }
  int64_t messages() {
    absl::MutexLock lock(&mu_);
    return messages_;
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
    const int room = window_ - static_cast<int>(sent_at_.size());
    if (room <= 0) {
      return;
    }
    // Everything the window allows, up to batch_ per message: what a client whose events
    // queued behind its previous write sends.
    const int n = std::min(room, batch_);
    const absl::Time now = absl::Now();
    // The events are built once and only their ids change, so that the client's own copies
    // do not weigh on a benchmark of the server (both share the process and the cores).
    if (batch_ == 1) {
      if (!request_.has_event()) {
        *request_.mutable_event() = event_;
      }
      shape_.Fill(next_++, request_.mutable_event());
    } else {
      auto* events = request_.mutable_batch()->mutable_events();
      while (events->size() > n) {
        events->RemoveLast();
      }
      while (events->size() < n) {
        *events->Add() = event_;
      }
      for (podgate::common::v1::AuditEvent& e : *events) {
        shape_.Fill(next_++, &e);
      }
    }
    for (int k = 0; k < n; ++k) {
      sent_at_.push_back(now);
    }
    ++messages_;
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
  const EventShape shape_;
  const int window_;
  const int batch_;
  const absl::Time end_;
  const podgate::common::v1::AuditEvent event_;
  RecordRequest request_;
  RecordResponse response_;
  absl::Notification done_;
  absl::Mutex mu_;
  std::deque<absl::Time> sent_at_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t messages_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool broken_ ABSL_GUARDED_BY(mu_) = false;
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
};

// Strict writers through the audit client every service uses (clients::AuditClient): one
// client, so one Record stream, carries every writer's events, as one exec replica carries all
// its sessions'; each writer records its next event once the previous one is acked.
class ClientWriters {
 public:
  ClientWriters(const std::string& address, int writers, absl::Time end, EventShape shape,
                const podgate::common::v1::AuditEvent& event)
      : end_(end), shape_(std::move(shape)), event_(event), running_(writers) {
    clients::AuditClientOptions options;
    options.source_service = "bench";
    client_ = std::make_unique<clients::AuditClient>(
        grpc::CreateChannel(address, grpc::InsecureChannelCredentials()), options);
    for (int w = 0; w < writers; ++w) {
      Next();
    }
  }
  ~ClientWriters() { client_.reset(); }

  // Waits until every writer stopped; returns the first error ("" when none).
  std::string Await() {
    absl::MutexLock lock(&mu_);
    mu_.Await(absl::Condition(
        +[](int* running) { return *running == 0; }, &running_));
    return error_;
  }
  int64_t acked() {
    absl::MutexLock lock(&mu_);
    return acked_;
  }
  std::vector<double> TakeLatencies() {
    absl::MutexLock lock(&mu_);
    return std::move(latencies_ms_);
  }

 private:
  void Next() {
    int64_t n;
    {
      absl::MutexLock lock(&mu_);
      if (absl::Now() >= end_ || !error_.empty()) {
        --running_;
        return;
      }
      n = next_++;
    }
    podgate::common::v1::AuditEvent event = event_;
    shape_.Fill(n, &event);
    const absl::Time sent = absl::Now();
    // Called on a gRPC or timer thread, never inside Record.
    client_->Record(std::move(event), [this, sent](absl::Status status) {
      {
        absl::MutexLock lock(&mu_);
        if (status.ok()) {
          ++acked_;
          latencies_ms_.push_back(absl::ToDoubleMilliseconds(absl::Now() - sent));
        } else if (error_.empty()) {
          error_ = std::string(status.message());
        }
      }
      Next();
    });
  }

  const absl::Time end_;
  const EventShape shape_;
  const podgate::common::v1::AuditEvent event_;
  std::unique_ptr<clients::AuditClient> client_;
  absl::Mutex mu_;
  int running_ ABSL_GUARDED_BY(mu_);
  int64_t next_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t acked_ ABSL_GUARDED_BY(mu_) = 0;
  std::string error_ ABSL_GUARDED_BY(mu_);
  std::vector<double> latencies_ms_ ABSL_GUARDED_BY(mu_);
};

// The records table's indexes that serve Query's filters and retention (store_sql.cc); the
// unique ones (event_id, chain_id + sequence), which an append itself checks, stay.
constexpr const char* kQueryIndexes[] = {
    "records_user",       "records_namespace_pod", "records_pod",  "records_session",
    "records_event_time", "records_kind_verdict",  "records_rule", "records_stored_time",
    "records_cluster",    "records_trace"};

// --without_query_indexes: drops kQueryIndexes from the store's fresh database (migrated first,
// by a write) over a connection of its own.
absl::Status DropQueryIndexes(Store* store, const std::string& url) {
  if (absl::Status s = store->CheckWritable("bench-indexes"); !s.ok()) {
    return s;
  }
  constexpr absl::string_view kSqlite = "sqlite://";
  if (absl::StartsWith(url, kSqlite)) {
    sqlite3* db = nullptr;
    const std::string path(url.substr(kSqlite.size()));
    int rc = sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READWRITE, nullptr);
    for (const char* index : kQueryIndexes) {
      if (rc == SQLITE_OK) {
        rc =
            sqlite3_exec(db, absl::StrCat("DROP INDEX ", index).c_str(), nullptr, nullptr, nullptr);
      }
    }
    const std::string error = rc == SQLITE_OK ? "" : sqlite3_errmsg(db);
    sqlite3_close(db);
    if (!error.empty()) {
      return absl::InternalError(absl::StrCat("dropping the query indexes: ", error));
    }
    return absl::OkStatus();
  }
  PGconn* conn = PQconnectdb(url.c_str());
  std::string error;
  if (PQstatus(conn) != CONNECTION_OK) {
    error = PQerrorMessage(conn);
  }
  for (const char* index : kQueryIndexes) {
    if (!error.empty()) {
      break;
    }
    PGresult* result = PQexec(conn, absl::StrCat("DROP INDEX ", index).c_str());
    if (PQresultStatus(result) != PGRES_COMMAND_OK) {
      error = PQerrorMessage(conn);
    }
    PQclear(result);
  }
  PQfinish(conn);
  if (!error.empty()) {
    return absl::InternalError(absl::StrCat("dropping the query indexes: ", error));
  }
  return absl::OkStatus();
}

// A run's store, its query indexes dropped with --without_query_indexes.
absl::StatusOr<std::unique_ptr<Store>> OpenRunStore(const std::string& url) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(url);
  if (store.ok() && absl::GetFlag(FLAGS_without_query_indexes)) {
    if (absl::Status s = DropQueryIndexes(store->get(), url); !s.ok()) {
      return s;
    }
  }
  return store;
}

// The store of the shape-alone run: keeps nothing. Append advances the chain's head and
// returns at once, so what is measured is the rest of the ingest path (gRPC, the writer's queue
// and its commit loop, the acks). Only what the writer and the Record RPC call is answered.
class NoStore final : public Store {
 public:
  absl::StatusOr<ChainHead> LoadHead(const std::string& chain_id) override {
    ChainHead head;
    head.chain_id = chain_id;
    return head;
  }
  absl::Status Append(ChainHead* head,
                      const std::vector<const podgate::common::v1::AuditEvent*>& events,
                      int64_t /*stored_time_us*/) override {
    head->sequence += static_cast<int64_t>(events.size());
    return absl::OkStatus();
  }
  absl::Status CheckWritable(const std::string& /*chain_id*/) override { return absl::OkStatus(); }
  absl::StatusOr<QueryPage> Query(const v1::QueryRequest& /*request*/) override {
    return Unsupported();
  }
  absl::StatusOr<std::vector<std::string>> ListChains() override { return Unsupported(); }
  absl::StatusOr<Checkpoint> GetCheckpoint(const std::string& /*chain_id*/) override {
    return Unsupported();
  }
  absl::Status ScanChain(const std::string& /*chain_id*/,
                         const std::function<bool(const StoredRow&)>& /*visit*/) override {
    return Unsupported();
  }
  absl::StatusOr<int64_t> DeleteBefore(int64_t /*cutoff_us*/, const CutSigner& /*sign*/) override {
    return Unsupported();
  }
  absl::StatusOr<std::string> HashAt(const std::string& /*chain_id*/,
                                     int64_t /*sequence*/) override {
    return Unsupported();
  }
  absl::StatusOr<std::vector<std::string>> CheckIntegrity(std::string* /*note*/) override {
    return Unsupported();
  }
  absl::StatusOr<std::vector<ExportChain>> ListExportChains() override { return Unsupported(); }
  absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& /*chain_id*/,
                                                        int64_t /*after_sequence*/,
                                                        int /*limit*/) override {
    return Unsupported();
  }
  absl::StatusOr<std::map<std::string, int64_t>> LoadExportCursors(
      const std::string& /*sink*/) override {
    return Unsupported();
  }
  absl::StatusOr<ExportLease> AcquireExportLease(const std::string& /*sink*/,
                                                 const std::string& /*owner*/,
                                                 absl::Duration /*ttl*/) override {
    return Unsupported();
  }
  absl::Status ReleaseExportLease(const std::string& /*sink*/,
                                  const std::string& /*owner*/) override {
    return Unsupported();
  }
  absl::Status AdvanceExportCursors(
      const std::string& /*sink*/, const std::string& /*owner*/, int64_t /*epoch*/,
      const std::vector<std::pair<std::string, int64_t>>& /*cursors*/) override {
    return Unsupported();
  }
  std::string kind() const override { return "none"; }

 private:
  static absl::Status Unsupported() {
    return absl::UnimplementedError("the benchmark's shape-alone store keeps nothing");
  }
};

// The store of the URL (its query indexes dropped with --without_query_indexes), or, for an
// empty URL, a NoStore.
absl::StatusOr<std::unique_ptr<Store>> OpenRunStoreOrNone(const std::string& url) {
  if (url.empty()) {
    return std::make_unique<NoStore>();
  }
  return OpenRunStore(url);
}

// `url` empty: against a NoStore.
absl::StatusOr<RunResult> Run(const std::string& url, int writers, int window, int batch,
                              bool through_client, int connections, absl::Duration duration,
                              bool varied, int run_id, const CpuClock& cpu) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenRunStoreOrNone(url);
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

  const double cpu_start = cpu.Now();
  const absl::Time start = absl::Now();
  if (through_client) {
    RunResult result;
    std::string error;
    {
      ClientWriters clients(absl::StrCat("127.0.0.1:", (*server)->grpc_port()), writers,
                            start + duration, EventShape(varied, absl::StrCat("r", run_id, "-c-")),
                            event);
      error = clients.Await();
      result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
      result.cpu_seconds = cpu.Now() - cpu_start;
      result.records = clients.acked();
      result.latencies_ms = clients.TakeLatencies();
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
  std::vector<std::unique_ptr<WriterStream>> streams;
  streams.reserve(static_cast<size_t>(writers));
  for (int w = 0; w < writers; ++w) {
    streams.push_back(
        std::make_unique<WriterStream>(stubs[static_cast<size_t>(w) % stubs.size()].get(),
                                       EventShape(varied, absl::StrCat("r", run_id, "-w", w, "-")),
                                       window, batch, start + duration, event));
  }
  RunResult result;
  std::string error;
  for (auto& stream : streams) {
    if (std::string e = stream->Await(); !e.empty() && error.empty()) {
      error = e;
    }
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.cpu_seconds = cpu.Now() - cpu_start;
  int64_t sent = 0;
  int64_t messages = 0;
  for (auto& stream : streams) {
    sent += stream->sent();
    messages += stream->messages();
    result.records += stream->acked();
    std::vector<double> latencies = stream->TakeLatencies();
    result.latencies_ms.insert(result.latencies_ms.end(), latencies.begin(), latencies.end());
  }
  result.per_message = messages > 0 ? static_cast<double>(sent) / static_cast<double>(messages) : 0;
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

// The store alone: one thread appends batches of `batch` events to a fresh chain through
// Store::Append (one durable transaction each: for SQLite the same BEGIN .. COMMIT with its WAL
// sync that the writer runs, for PostgreSQL a transaction and its commit) until `duration` has
// passed. No gRPC, no queue, no acks: what the service's ingest can at most reach with that
// batch size on this machine and schema.
absl::StatusOr<RunResult> RunStoreAlone(const std::string& url, int batch, absl::Duration duration,
                                        bool varied, int run_id, const CpuClock& cpu) {
  absl::StatusOr<std::unique_ptr<Store>> store = OpenRunStore(url);
  if (!store.ok()) {
    return store.status();
  }
  absl::StatusOr<ChainHead> head = (*store)->LoadHead(absl::StrCat("bench-store-", run_id));
  if (!head.ok()) {
    return head.status();
  }
  const podgate::common::v1::AuditEvent event = testing::MakeEvent("template");
  std::vector<podgate::common::v1::AuditEvent> events(static_cast<size_t>(batch), event);
  std::vector<const podgate::common::v1::AuditEvent*> pointers;
  pointers.reserve(events.size());
  for (const auto& e : events) {
    pointers.push_back(&e);
  }
  RunResult result;
  result.mean_batch = batch;
  const EventShape shape(varied, absl::StrCat("r", run_id, "-s-"));
  int64_t next_id = 0;
  const double cpu_start = cpu.Now();
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  while (absl::Now() < end) {
    for (auto& e : events) {
      shape.Fill(next_id++, &e);
    }
    const absl::Time before = absl::Now();
    if (absl::Status s = (*store)->Append(&*head, pointers, absl::ToUnixMicros(before)); !s.ok()) {
      return s;
    }
    result.latencies_ms.push_back(absl::ToDoubleMilliseconds(absl::Now() - before));
    result.records += batch;
  }
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.cpu_seconds = cpu.Now() - cpu_start;
  return result;
}

struct Config {
  // metric infix: "strict.w16", "strict_client.w256", "pipelined", "pipelined_batched"
  std::string name;
  int writers;
  int window;
  int batch;                    // events per message, at most
  bool through_client = false;  // strict writers sharing one clients::AuditClient
  bool no_store = false;        // against a NoStore, once per round (not per store)
  // A store-alone run whose batch is the mean commit this strict run made on the same store.
  std::string commit_of = {};
  bool strict() const { return window == 1; }
  bool store_alone() const { return window == 0; }  // RunStoreAlone, batches of `batch`
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
  // The temporary PostgreSQL server's process, whose CPU a run on it counts; 0 when there is
  // none (yet) or the server is --postgres_url's, whose CPU this machine may not even see.
  int PostgresPid() const {
    if (pg_ == nullptr) {
      return 0;
    }
    absl::StatusOr<int> pid = pg_->ServerPid();
    return pid.ok() ? *pid : 0;
  }

 private:
  int count_ = 0;
  std::unique_ptr<testing::PostgresServer> pg_;
  std::vector<std::unique_ptr<testing::TempDir>> dirs_;
};

// The shape-alone run's side, in place of a store's.
constexpr char kNoStore[] = "no_store";

std::string MetricStore(const std::string& kind) {
  return kind == "postgresql" ? "postgres" : kind;
}

std::string StoreTitle(const std::string& kind) {
  return kind == "postgresql" ? "PostgreSQL" : kind == kNoStore ? "no store" : "SQLite";
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
  std::vector<double> per_message;
  std::vector<double> cpu_us_per_record;
  std::vector<double> cores_busy;
};

int Main() {
  const bool quick = absl::GetFlag(FLAGS_quick);
  const std::string events = absl::GetFlag(FLAGS_events);
  if (events != "varied" && events != "uniform") {
    std::fprintf(stderr,
                 "podgate-audit-bench: --events: unknown shape \"%s\" (varied, uniform) (see "
                 "--help)\n",
                 events.c_str());
    return 2;
  }
  const bool varied = events == "varied";
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
  const int pipelined_batch = absl::GetFlag(FLAGS_pipelined_batch);
  if (pipelined_batch < 1 || pipelined_batch > RecordReactor::kMaxBatchEvents) {
    std::fprintf(stderr,
                 "podgate-audit-bench: --pipelined_batch must be 1 to %d (audit's limit) (see "
                 "--help)\n",
                 RecordReactor::kMaxBatchEvents);
    return 2;
  }
  if (const int n = absl::GetFlag(FLAGS_client_writers); n < 0 || n > 100000) {
    std::fprintf(stderr,
                 "podgate-audit-bench: --client_writers must be 0 (no such run) to 100000 (see "
                 "--help)\n");
    return 2;
  }
  const int connections = absl::GetFlag(FLAGS_connections);
  if (connections < 1 || connections > 256) {
    std::fprintf(stderr, "podgate-audit-bench: --connections must be 1 to 256 (see --help)\n");
    return 2;
  }
  std::vector<int> store_batches;
  if (const std::string list = absl::GetFlag(FLAGS_store_batches); !list.empty()) {
    for (absl::string_view part : absl::StrSplit(list, ',')) {
      int n = 0;
      if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 100000) {
        std::fprintf(stderr,
                     "podgate-audit-bench: --store_batches: bad batch size \"%s\" (1 to 100000) "
                     "(see --help)\n",
                     std::string(part).c_str());
        return 2;
      }
      store_batches.push_back(n);
    }
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
    configs.push_back({absl::StrCat("strict.w", n), n, 1, 1});
  }
  if (const int n = absl::GetFlag(FLAGS_client_writers); n > 0) {
    configs.push_back({absl::StrCat("strict_client.w", n), n, 1, 1, true});
  }
  if (pipelined_writers > 0) {
    configs.push_back({"pipelined", pipelined_writers, pipelined_window, 1});
    if (pipelined_batch > 1) {
      configs.push_back(
          {"pipelined_batched", pipelined_writers, pipelined_window, pipelined_batch});
    }
  }

  for (int n : store_batches) {
    configs.push_back({absl::StrCat("store_alone.b", n), 1, 0, n});
  }
  // The store at each group-commit row's own commit size. 256 strict writers do not make
  // commits of 256: while one commit is synced and acked its writers wait, and the others
  // fill the next, so commits hold about half the writers.
  for (size_t c = 0, n = configs.size(); c < n; ++c) {
    if (configs[c].strict() && configs[c].writers >= 16) {
      Config at_commit{absl::StrCat("store_at_commit.", configs[c].name), 1, 0, 0};
      at_commit.commit_of = configs[c].name;
      configs.push_back(at_commit);
    }
  }
  const int shape_writers = absl::GetFlag(FLAGS_shape_writers);
  if (shape_writers < 0 || shape_writers > 4096) {
    std::fprintf(stderr,
                 "podgate-audit-bench: --shape_writers must be 0 (no such run) to 4096 (see "
                 "--help)\n");
    return 2;
  }
  if (shape_writers > 0) {
    configs.push_back({absl::StrCat("strict.w", shape_writers), shape_writers, 1, 1, false, true});
    if (absl::GetFlag(FLAGS_client_writers) > 0) {
      configs.push_back(
          {absl::StrCat("strict_client.w", shape_writers), shape_writers, 1, 1, true, true});
    }
  }

  bench::Report report("audit", quick);
  report.Note(absl::StrCat(
      "audit ingest through the Record RPC (loopback, in process), durable acks only: strict = "
      "one event in flight per writer, each writer its own stream, or (audit client) every "
      "writer on one stream through the client exec uses; pipelined = ",
      pipelined_writers, " streams x ", pipelined_window,
      " events in flight, one event per message, then up to ", pipelined_batch,
      " per message; writers over ", connections, " connection(s). ", rounds, " round(s) of ",
      absl::FormatDuration(duration),
      " per store, stores interleaved; records/s is the median round. The store alone = "
      "Store::Append of batches from one thread (no gRPC, no writer): the ceiling of ingest "
      "on this machine with the store's schema. The shape alone = the same strict writers "
      "against a store that keeps nothing. CPU = this process's, plus on PostgreSQL its "
      "server's processes' (",
      absl::GetFlag(FLAGS_postgres_url).empty()
          ? "the temporary server"
          : "not counted: --postgres_url names a server this benchmark did not start",
      "). Events: ", events,
      varied ? " (the keys exec's events carry: time-ordered ids, a random trace id per command, "
               "random session ids, users, namespaces and pods from pools)"
             : " (one event repeated, only its id changing: every index grows at its end)",
      ".",
      absl::GetFlag(FLAGS_without_query_indexes)
          ? " WITHOUT the records table's query indexes (--without_query_indexes)."
          : ""));

  Databases databases;
  std::map<std::string, std::map<std::string, Runs>> runs;  // config -> store -> runs
  int run_id = 0;
  for (const Config& config : configs) {
    absl::Status status = bench::RunInterleaved(rounds, [&] {
      std::vector<std::function<absl::Status(int)>> sides;
      for (const std::string& kind :
           config.no_store ? std::vector<std::string>{kNoStore} : stores) {
        sides.push_back([&, kind](int /*round*/) -> absl::Status {
          absl::StatusOr<std::string> url =
              kind == kNoStore ? absl::StatusOr<std::string>("") : databases.Next(kind);
          if (!url.ok()) {
            return url.status();
          }
          CpuClock cpu;
          if (kind == "postgresql") {
            cpu.postgres_pid = databases.PostgresPid();
          }
          int store_batch = config.batch;
          if (!config.commit_of.empty()) {
            store_batch = std::max(
                1, static_cast<int>(std::lround(Median(runs[config.commit_of][kind].batches))));
          }
          absl::StatusOr<RunResult> r =
              config.store_alone()
                  ? RunStoreAlone(*url, store_batch, duration, varied, ++run_id, cpu)
                  : Run(*url, config.writers, config.window, config.batch, config.through_client,
                        connections, duration, varied, ++run_id, cpu);
          databases.DropFiles();
          if (!r.ok()) {
            return absl::Status(r.status().code(), absl::StrCat(StoreTitle(kind), " ", config.name,
                                                                ": ", r.status().message()));
          }
          Runs& slot = runs[config.name][kind];
          slot.records_per_s.push_back(r->records_per_s());
          slot.batches.push_back(r->mean_batch);
          slot.per_message.push_back(r->per_message);
          slot.cpu_us_per_record.push_back(r->cpu_us_per_record());
          slot.cores_busy.push_back(r->cores_busy());
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
    std::vector<std::string> columns = {"writers", strict ? "streams" : "window"};
    if (!strict) {
      columns.push_back("events/message");
    }
    for (const std::string& kind : stores) {
      for (const char* what : {"records/s", "p50 ms", "p99 ms", "batch"}) {
        columns.push_back(absl::StrCat(StoreTitle(kind), " ", what));
      }
    }
    bench::Table table(title, columns);
    for (const Config& config : configs) {
      if (config.strict() != strict || config.store_alone() || config.no_store) {
        continue;
      }
      std::vector<std::string> row = {absl::StrCat(config.writers),
                                      strict
                                          ? (config.through_client ? std::string("1 (audit client)")
                                                                   : absl::StrCat(config.writers))
                                          : absl::StrCat(config.window)};
      if (!strict) {
        std::vector<double> per_message;
        for (const std::string& kind : stores) {
          const auto& v = runs[config.name][kind].per_message;
          per_message.insert(per_message.end(), v.begin(), v.end());
        }
        row.push_back(bench::Cell(Median(per_message), 1));
      }
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
  if (shape_writers > 0) {
    bench::Table table(
        "Audit: the shape alone, strict writers against a store that keeps nothing (the limit "
        "of the rows of the same shape), records/s",
        {"writers", "streams", "records/s", "p50 ms", "p99 ms", "batch"});
    for (const Config& config : configs) {
      if (!config.no_store) {
        continue;
      }
      Runs& r = runs[config.name][kNoStore];
      const double rate = Median(r.records_per_s);
      report.Metric(absl::StrCat("audit.no_store.", config.name, ".records_per_s"), rate);
      table.AddRow(
          {absl::StrCat(config.writers),
           config.through_client ? std::string("1 (audit client)") : absl::StrCat(config.writers),
           bench::Cell(rate, 0), bench::Cell(r.latencies_ms.Percentile(50), 2),
           bench::Cell(r.latencies_ms.Percentile(99), 2), bench::Cell(Median(r.batches), 1)});
    }
    report.Add(table);
  }
  if (!store_batches.empty()) {
    std::vector<std::string> columns = {"batch"};
    for (const std::string& kind : stores) {
      for (const char* what : {"records/s", "p50 ms per batch", "p99 ms per batch"}) {
        columns.push_back(absl::StrCat(StoreTitle(kind), " ", what));
      }
    }
    bench::Table table(
        "Audit: the store alone (Store::Append of a batch from one thread, no gRPC), records/s",
        columns);
    for (const Config& config : configs) {
      if (!config.store_alone() || !config.commit_of.empty()) {
        continue;
      }
      std::vector<std::string> row = {absl::StrCat(config.batch)};
      for (const std::string& kind : stores) {
        Runs& r = runs[config.name][kind];
        const double rate = Median(r.records_per_s);
        report.Metric(absl::StrCat("audit.", MetricStore(kind), ".", config.name, ".records_per_s"),
                      rate);
        row.push_back(bench::Cell(rate, 0));
        row.push_back(bench::Cell(r.latencies_ms.Percentile(50), 2));
        row.push_back(bench::Cell(r.latencies_ms.Percentile(99), 2));
      }
      table.AddRow(row);
    }
    report.Add(table);
  }
  // What each run cost in CPU per record, and how many cores it kept busy: a run near the
  // usable cores is bound by CPU, one well below them by waiting (the commits' syncs, the acks'
  // round trips).
  const int cores = UsableCores();
  {
    std::vector<std::string> sides = stores;
    if (shape_writers > 0) {
      sides.push_back(kNoStore);
    }
    std::vector<std::string> columns = {"run"};
    for (const std::string& kind : sides) {
      columns.push_back(absl::StrCat(StoreTitle(kind), " CPU us/record"));
      columns.push_back(absl::StrCat(StoreTitle(kind), " cores busy"));
    }
    bench::Table table(absl::StrCat("Audit: CPU per record and cores busy (this process; on "
                                    "PostgreSQL also its server's processes), of ",
                                    cores, " usable cores"),
                       columns);
    std::set<std::string> shown;  // a shape-alone run shares its name with the stores' runs
    for (const Config& config : configs) {
      if (!shown.insert(config.name).second) {
        continue;
      }
      std::vector<std::string> row = {config.name};
      for (const std::string& kind : sides) {
        auto found = runs[config.name].find(kind);
        if (found == runs[config.name].end()) {
          row.push_back("-");
          row.push_back("-");
          continue;
        }
        const double us = Median(found->second.cpu_us_per_record);
        const double busy = Median(found->second.cores_busy);
        const std::string key = absl::StrCat("audit.", MetricStore(kind), ".", config.name);
        report.Metric(key + ".cpu_us_per_record", us);
        report.Metric(key + ".cores_busy", busy);
        row.push_back(bench::Cell(us, 1));
        row.push_back(bench::Cell(busy, 2));
      }
      table.AddRow(row);
    }
    report.Add(table);
  }
  // The store alone at each group-commit row's own mean commit: a commit of n records through
  // the writer takes at least what Store::Append of n records takes alone, so that rate bounds
  // the row whatever gRPC and the acks cost.
  {
    bench::Table table(
        "Audit: the store alone at each strict row's own commit size (Store::Append of batches "
        "of the row's mean commit on that store, from one thread), records/s",
        {"store", "run", "mean commit", "store alone rec/s", "p50 ms per batch", "measured rec/s"});
    for (const std::string& kind : stores) {
      for (const Config& config : configs) {
        if (config.commit_of.empty()) {
          continue;
        }
        Runs& alone = runs[config.name][kind];
        const double limit = Median(alone.records_per_s);
        report.Metric(absl::StrCat("audit.", MetricStore(kind), ".", config.name, ".records_per_s"),
                      limit);
        table.AddRow({StoreTitle(kind), config.commit_of,
                      bench::Cell(Median(runs[config.commit_of][kind].batches), 1),
                      bench::Cell(limit, 0), bench::Cell(alone.latencies_ms.Percentile(50), 2),
                      bench::Cell(Median(runs[config.commit_of][kind].records_per_s), 0)});
      }
    }
    if (table.rows() > 0) {
      report.Add(table);
    }
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
