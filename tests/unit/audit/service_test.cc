// The audit gRPC service in process over a real socket, on real stores: Record acks only
// durable ids (group commit, idempotent resend, rejections, half-close), backpressure stops
// reading while the writer is stuck, store failures end the stream UNAVAILABLE without a false
// ack and the writer recovers; Query pages and Verify over gRPC.
#include <sqlite3.h>

#include <functional>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/cli.h"
#include "audit/record_reactor.h"
#include "audit/store.h"
#include "audit/verify.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/server.h"
#include "support/grpc_health.h"
#include "support/test_pki.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::audit::v1::RecordRequest;
using ::podgate::audit::v1::RecordResponse;
using ::podgate::common::v1::AuditEvent;
using ::testing::HasSubstr;

// A real store whose Append waits while the gate is closed: a slow disk on demand.
class GatedStore final : public Store {
 public:
  explicit GatedStore(std::unique_ptr<Store> inner) : inner_(std::move(inner)) {}
  void SetOpen(bool open) {
    absl::MutexLock lock(&mu_);
    open_ = open;
  }
  int64_t events_seen() {
    absl::MutexLock lock(&mu_);
    return events_seen_;
  }
  absl::StatusOr<ChainHead> LoadHead(const std::string& c) override { return inner_->LoadHead(c); }
  absl::Status Append(ChainHead* head, const std::vector<const AuditEvent*>& events,
                      int64_t t) override {
    {
      absl::MutexLock lock(&mu_);
      events_seen_ += static_cast<int64_t>(events.size());
      mu_.Await(absl::Condition(&open_));
    }
    return inner_->Append(head, events, t);
  }
  absl::Status CheckWritable(const std::string& c) override { return inner_->CheckWritable(c); }
  // The writer's path: commit, then Sync on the syncer thread.
  absl::Status AppendUnsynced(ChainHead* head, const std::vector<const AuditEvent*>& events,
                              int64_t t) override {
    {
      absl::MutexLock lock(&mu_);
      events_seen_ += static_cast<int64_t>(events.size());
      mu_.Await(absl::Condition(&open_));
    }
    return inner_->AppendUnsynced(head, events, t);
  }
  // While set, Sync fails as an fdatasync reporting an I/O error would.
  void SetSyncFails(bool fails) {
    absl::MutexLock lock(&mu_);
    sync_fails_ = fails;
  }
  int syncs() {
    absl::MutexLock lock(&mu_);
    return syncs_;
  }
  // While closed, Sync waits (counted in syncs_waiting) until the gate opens.
  void SetSyncOpen(bool open) {
    absl::MutexLock lock(&mu_);
    sync_open_ = open;
  }
  int syncs_waiting() {
    absl::MutexLock lock(&mu_);
    return syncs_waiting_;
  }
  absl::Status Sync() override {
    {
      absl::MutexLock lock(&mu_);
      ++syncs_;
      ++syncs_waiting_;
      mu_.Await(absl::Condition(&sync_open_));
      --syncs_waiting_;
      if (sync_fails_) {
        return absl::UnavailableError("sqlite: syncing audit.db-wal: Input/output error");
      }
    }
    return inner_->Sync();
  }
  void SetQueriesOpen(bool open) {
    absl::MutexLock lock(&mu_);
    queries_open_ = open;
  }
  int queries_waiting() {
    absl::MutexLock lock(&mu_);
    return queries_waiting_;
  }
  absl::StatusOr<QueryPage> Query(const v1::QueryRequest& r) override {
    {
      absl::MutexLock lock(&mu_);
      ++queries_waiting_;
      mu_.Await(absl::Condition(&queries_open_));
      --queries_waiting_;
    }
    return inner_->Query(r);
  }
  absl::StatusOr<std::vector<std::string>> ListChains() override { return inner_->ListChains(); }
  absl::StatusOr<Checkpoint> GetCheckpoint(const std::string& c) override {
    return inner_->GetCheckpoint(c);
  }
  absl::Status ScanChain(const std::string& c,
                         const std::function<bool(const StoredRow&)>& v) override {
    return inner_->ScanChain(c, v);
  }
  absl::StatusOr<std::vector<ExportChain>> ListExportChains() override {
    return inner_->ListExportChains();
  }
  absl::StatusOr<std::vector<StoredRow>> ReadChainAfter(const std::string& c, int64_t after,
                                                        int limit) override {
    return inner_->ReadChainAfter(c, after, limit);
  }
  absl::StatusOr<std::map<std::string, int64_t>> LoadExportCursors(const std::string& s) override {
    return inner_->LoadExportCursors(s);
  }
  absl::StatusOr<ExportLease> AcquireExportLease(const std::string& s, const std::string& o,
                                                 absl::Duration ttl) override {
    return inner_->AcquireExportLease(s, o, ttl);
  }
  absl::Status ReleaseExportLease(const std::string& s, const std::string& o) override {
    return inner_->ReleaseExportLease(s, o);
  }
  absl::Status AdvanceExportCursors(
      const std::string& s, const std::string& o, int64_t e,
      const std::vector<std::pair<std::string, int64_t>>& c) override {
    return inner_->AdvanceExportCursors(s, o, e, c);
  }
  absl::StatusOr<int64_t> DeleteBefore(int64_t c, const CutSigner& s) override {
    return inner_->DeleteBefore(c, s);
  }
  absl::StatusOr<std::string> HashAt(const std::string& c, int64_t s) override {
    return inner_->HashAt(c, s);
  }
  absl::StatusOr<std::vector<std::string>> CheckIntegrity(std::string* n) override {
    return inner_->CheckIntegrity(n);
  }
  std::string kind() const override { return inner_->kind(); }

 private:
  std::unique_ptr<Store> inner_;
  absl::Mutex mu_;
  bool open_ ABSL_GUARDED_BY(mu_) = true;
  bool sync_fails_ ABSL_GUARDED_BY(mu_) = false;
  bool sync_open_ ABSL_GUARDED_BY(mu_) = true;
  int syncs_ ABSL_GUARDED_BY(mu_) = 0;
  int syncs_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  bool queries_open_ ABSL_GUARDED_BY(mu_) = true;
  int queries_waiting_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t events_seen_ ABSL_GUARDED_BY(mu_) = 0;
};

class Harness {
 public:
  explicit Harness(std::unique_ptr<Store> store, WriterOptions options = {},
                   AuditServiceOptions service_options = {}) {
    store_ = std::move(store);
    metrics_ = std::make_unique<AuditMetrics>(registry_);
    if (options.chain_id.empty()) {
      options.chain_id = "test-chain";
    }
    auto writer = Writer::Start(store_.get(), options, metrics_.get());
    EXPECT_TRUE(writer.ok()) << writer.status();
    writer_ = *std::move(writer);
    service_ = std::make_unique<AuditServiceImpl>(store_.get(), writer_.get(), metrics_.get(),
                                                  service_options);
    runtime::ServerOptions server_options;
    server_options.service_name = "audit";
    server_options.grpc_address = "127.0.0.1:0";
    server_options.drain_timeout = absl::Seconds(5);
    auto server = runtime::Server::Start(server_options, {service_.get()},
                                         std::make_shared<prometheus::Registry>());
    EXPECT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    server_->AddDrainHook([this] { service_->Drain(); });
    stub_ = AuditService::NewStub(podgate::testing::LocalChannel(server_->grpc_port()));
  }

  AuditService::Stub& stub() { return *stub_; }
  void Shutdown() { server_->Shutdown(); }
  Store& store() { return *store_; }
  AuditMetrics& metrics() { return *metrics_; }

  int64_t Count() {
    auto report = store_->LoadHead("test-chain");
    return report.ok() ? report->sequence : -1;
  }

 private:
  prometheus::Registry registry_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuditMetrics> metrics_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<AuditServiceImpl> service_;
  std::unique_ptr<runtime::Server> server_;
  std::unique_ptr<AuditService::Stub> stub_;
};

std::unique_ptr<Store> SqliteIn(const std::string& dir, absl::Duration busy = absl::Seconds(5)) {
  auto store = OpenSqliteStore(dir + "/audit.db", busy);
  EXPECT_TRUE(store.ok()) << store.status();
  return *std::move(store);
}

struct StreamResult {
  std::vector<std::string> acked;
  std::vector<RecordResponse> rejections;
  grpc::Status status;
};

// Sends `requests` on one Record stream, half-closes, reads every response.
StreamResult RecordRequests(AuditService::Stub& stub, const std::vector<RecordRequest>& requests,
                            std::string* batch_metadata = nullptr) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub.Record(&ctx);
  StreamResult result;
  std::thread reader([&] {
    RecordResponse response;
    while (stream->Read(&response)) {
      if (response.has_ack()) {
        for (const std::string& id : response.ack().ids()) {
          result.acked.push_back(id);
        }
      } else {
        result.rejections.push_back(response);
      }
    }
  });
  for (const RecordRequest& request : requests) {
    if (!stream->Write(request)) {
      break;
    }
  }
  stream->WritesDone();
  reader.join();
  result.status = stream->Finish();
  if (batch_metadata != nullptr) {
    const auto& metadata = ctx.GetServerInitialMetadata();
    auto it = metadata.find("podgate-record-batch-max");
    *batch_metadata = it == metadata.end() ? "" : std::string(it->second.data(), it->second.size());
  }
  return result;
}

// Sends `events` on one Record stream, one per message.
StreamResult RecordAll(AuditService::Stub& stub, const std::vector<AuditEvent>& events) {
  std::vector<RecordRequest> requests;
  for (const AuditEvent& event : events) {
    *requests.emplace_back().mutable_event() = event;
  }
  return RecordRequests(stub, requests);
}

RecordRequest Batch(const std::vector<AuditEvent>& events) {
  RecordRequest request;
  request.mutable_batch();  // set even when empty
  for (const AuditEvent& event : events) {
    *request.mutable_batch()->add_events() = event;
  }
  return request;
}

std::vector<AuditEvent> Events(const std::string& prefix, int n) {
  std::vector<AuditEvent> events;
  for (int i = 0; i < n; ++i) {
    events.push_back(testing::MakeEvent(absl::StrCat(prefix, i)));
  }
  return events;
}

TEST(AuditServiceTest, RecordAcksEveryIdOnceItIsDurable) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  Harness h(SqliteIn(dir));
  StreamResult r = RecordAll(h.stub(), Events("e", 500));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.acked.size(), 500u);
  EXPECT_EQ(std::set<std::string>(r.acked.begin(), r.acked.end()).size(), 500u);
  EXPECT_EQ(h.Count(), 500);
  // Group commit: fewer transactions than events.
  EXPECT_LT(h.metrics().batch_size().Collect().histogram.sample_count, 500u);
  EXPECT_EQ(h.metrics().events_stored().Value(), 500);

  // Resending acks again and stores nothing new.
  StreamResult again = RecordAll(h.stub(), Events("e", 10));
  EXPECT_TRUE(again.status.ok());
  EXPECT_EQ(again.acked.size(), 10u);
  EXPECT_EQ(h.Count(), 500);

  // What was acked is on disk: a fresh store over the same file sees it.
  auto reopened = OpenSqliteStore(dir + "/audit.db");
  ASSERT_TRUE(reopened.ok());
  EXPECT_EQ((*reopened)->LoadHead("test-chain")->sequence, 500);
}

TEST(AuditServiceTest, ShutdownEndsRecordStreamsUnavailableOnceWhatTheyReadIsAcked) {
  testing::TempDir tmp("podgate-audit-svc");
  Harness h(SqliteIn(tmp.path()));
  grpc::ClientContext ctx;
  auto stream = h.stub().Record(&ctx);
  for (const AuditEvent& event : Events("d", 3)) {
    RecordRequest request;
    *request.mutable_event() = event;
    ASSERT_TRUE(stream->Write(request));
  }
  RecordResponse response;
  int acked = 0;
  while (acked < 3 && stream->Read(&response)) {
    acked += response.ack().ids_size();
  }
  ASSERT_EQ(acked, 3);
  // The client stays connected without half-closing; the drain ends the stream long before
  // the 5 s drain timeout would cancel it.
  const absl::Time start = absl::Now();
  std::thread stopper([&] { h.Shutdown(); });
  EXPECT_FALSE(stream->Read(&response));
  const grpc::Status status = stream->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(status.error_message(), HasSubstr("shutting down"));
  EXPECT_LT(absl::Now() - start, absl::Seconds(3));
  stopper.join();
  EXPECT_EQ(h.Count(), 3);
}

TEST(AuditServiceTest, InvalidEventsAreRejectedAndTheStreamGoesOn) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  Harness h(SqliteIn(dir));
  std::vector<AuditEvent> events = {testing::MakeEvent(""), testing::MakeEvent("ok")};
  events.push_back(testing::MakeEvent("nokind"));
  events.back().set_kind(podgate::common::v1::EVENT_KIND_UNSPECIFIED);
  StreamResult r = RecordAll(h.stub(), events);
  ASSERT_TRUE(r.status.ok());
  EXPECT_THAT(r.acked, ::testing::ElementsAre("ok"));
  ASSERT_EQ(r.rejections.size(), 2u);
  EXPECT_THAT(r.rejections[0].rejection().reason(), HasSubstr("no id"));
  EXPECT_EQ(r.rejections[1].rejection().id(), "nokind");
  EXPECT_EQ(h.metrics().Error("invalid_event").Value(), 2);
}

// A batch is taken event by event, in order, as if each had come alone: each acked or
// rejected on its own, a resent id acked again and stored once, an empty batch harmless.
TEST(AuditServiceTest, BatchesAreTakenEventByEventInOrder) {
  testing::TempDir tmp("podgate-audit-svc");
  // A queue smaller than a batch: the reactor queues what fits and the rest when room frees.
  WriterOptions options;
  options.queue_capacity = 16;
  Harness h(SqliteIn(tmp.path()), options);
  std::vector<AuditEvent> mixed = Events("m", 3);
  mixed[1].set_kind(podgate::common::v1::EVENT_KIND_UNSPECIFIED);
  std::vector<AuditEvent> again = Events("b", 2);  // stored by the first batch already
  std::vector<RecordRequest> requests = {Batch(Events("b", 1000)), Batch(mixed), RecordRequest(),
                                         Batch({}), Batch(again)};
  *requests[2].mutable_event() = testing::MakeEvent("single");
  std::string advertised;
  StreamResult r = RecordRequests(h.stub(), requests, &advertised);
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(advertised, "1024");  // the stream says it takes batches, and how large
  std::vector<std::string> expected;
  for (int i = 0; i < 1000; ++i) {
    expected.push_back(absl::StrCat("b", i));
  }
  expected.insert(expected.end(), {"m0", "m2", "single", "b0", "b1"});
  EXPECT_EQ(r.acked, expected);  // in the order sent
  ASSERT_EQ(r.rejections.size(), 1u);
  EXPECT_EQ(r.rejections[0].rejection().id(), "m1");
  EXPECT_THAT(r.rejections[0].rejection().reason(), HasSubstr("no known kind"));
  EXPECT_EQ(h.Count(), 1003);
  EXPECT_EQ(h.metrics().events_stored().Value(), 1003);
}

// A batch over the limit ends the stream with INVALID_ARGUMENT and none of its events is
// stored; what came before it is.
TEST(AuditServiceTest, ABatchOverTheLimitEndsTheStreamAndNothingOfItIsStored) {
  testing::TempDir tmp("podgate-audit-svc");
  Harness h(SqliteIn(tmp.path()));
  StreamResult r = RecordRequests(
      h.stub(), {Batch(Events("ok", 5)), Batch(Events("big", RecordReactor::kMaxBatchEvents + 1))});
  EXPECT_EQ(r.status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(r.status.error_message(),
              HasSubstr("a batch carries at most 1024 events; this one had 1025"));
  EXPECT_EQ(h.Count(), 5);
  EXPECT_EQ(h.metrics().Error("invalid_event").Value(), 1);
  // Exactly the limit is fine.
  StreamResult ok =
      RecordRequests(h.stub(), {Batch(Events("max", RecordReactor::kMaxBatchEvents))});
  EXPECT_TRUE(ok.status.ok()) << ok.status.error_message();
  EXPECT_EQ(ok.acked.size(), 1024u);
  EXPECT_EQ(h.Count(), 1029);
}

TEST(AuditServiceTest, BackpressureStopsReadingWhileTheStoreIsSlow) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  auto gated = std::make_unique<GatedStore>(SqliteIn(dir));
  GatedStore* gate = gated.get();
  WriterOptions options;
  options.queue_capacity = 4;
  options.max_batch = 2;
  Harness h(std::move(gated), options);
  gate->SetOpen(false);
  StreamResult r;
  std::thread client([&] { r = RecordAll(h.stub(), Events("bp", 300)); });
  // Wait until the queue is full behind the stuck transaction.
  for (int i = 0; i < 200 && h.metrics().queue_depth().Value() < 4; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  absl::SleepFor(absl::Milliseconds(300));
  // The service holds at most: one batch in the store, a full queue, one event in hand.
  EXPECT_EQ(h.metrics().queue_depth().Value(), 4);
  EXPECT_GE(gate->events_seen(), 1);
  EXPECT_LE(gate->events_seen(), 2);
  gate->SetOpen(true);
  client.join();
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.acked.size(), 300u);
  EXPECT_EQ(h.Count(), 300);
}

// Polls `done` every 5 ms for up to 20 s; false if it never held.
bool Eventually(const std::function<bool()>& done) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (!done()) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return true;
}

// podgate_audit_ack_latency_seconds says where an ack's time went. Each stage is held in turn
// for 150 ms by the store's gates: the sync (event A), the syncer busy with A while B is
// committed (B's sync_wait), the transaction (C) and the queue behind it (D).
TEST(AuditServiceTest, AckLatencySaysWhichStageTheEventWaitedIn) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  Harness h(std::move(gated));
  using Stage = AuditMetrics::AckStage;
  auto sum = [&](Stage stage) {
    return h.metrics().ack_latency(stage).Collect().histogram.sample_sum;
  };
  auto count = [&](Stage stage) {
    return h.metrics().ack_latency(stage).Collect().histogram.sample_count;
  };
  const std::vector<AuditEvent> events = Events("stage", 4);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  auto stream = h.stub().Record(&ctx);
  absl::Mutex mu;
  std::vector<std::string> acked;
  std::thread reader([&] {
    RecordResponse response;
    while (stream->Read(&response)) {
      absl::MutexLock lock(&mu);
      for (const std::string& id : response.ack().ids()) {
        acked.push_back(id);
      }
    }
  });
  auto send = [&](const AuditEvent& event) {
    RecordRequest request;
    *request.mutable_event() = event;
    ASSERT_TRUE(stream->Write(request));
  };
  auto acks = [&] {
    absl::MutexLock lock(&mu);
    return acked.size();
  };
  const absl::Duration hold = absl::Milliseconds(150);

  // A waits in its sync; B, committed meanwhile, waits for the syncer.
  gate->SetSyncOpen(false);
  send(events[0]);
  ASSERT_TRUE(Eventually([&] { return gate->syncs_waiting() == 1; }));
  send(events[1]);
  ASSERT_TRUE(Eventually([&] { return gate->events_seen() == 2; }));
  absl::SleepFor(hold);
  gate->SetSyncOpen(true);
  ASSERT_TRUE(Eventually([&] { return acks() == 2; }));
  EXPECT_EQ(count(Stage::kSync), 2u);
  EXPECT_GE(sum(Stage::kSync), absl::ToDoubleSeconds(hold));
  // B's transaction may end a moment after the gate saw it start.
  EXPECT_GE(sum(Stage::kSyncWait), 0.8 * absl::ToDoubleSeconds(hold));
  EXPECT_LT(sum(Stage::kQueued), absl::ToDoubleSeconds(hold));
  EXPECT_LT(sum(Stage::kCommit), absl::ToDoubleSeconds(hold));

  // C waits in its transaction; D waits in the queue behind it.
  gate->SetOpen(false);
  send(events[2]);
  ASSERT_TRUE(Eventually([&] { return gate->events_seen() == 3; }));
  send(events[3]);
  ASSERT_TRUE(Eventually([&] { return h.metrics().queue_depth().Value() == 1; }));
  absl::SleepFor(hold);
  gate->SetOpen(true);
  ASSERT_TRUE(Eventually([&] { return acks() == 4; }));
  stream->WritesDone();
  reader.join();
  ASSERT_TRUE(stream->Finish().ok());

  // One sample per batch in every stage, and the stages add up to the total.
  const uint64_t batches = h.metrics().commit_latency().Collect().histogram.sample_count;
  EXPECT_EQ(batches, 4u);
  for (Stage stage :
       {Stage::kQueued, Stage::kCommit, Stage::kSyncWait, Stage::kSync, Stage::kTotal}) {
    EXPECT_EQ(count(stage), batches) << static_cast<int>(stage);
  }
  EXPECT_GE(sum(Stage::kCommit), absl::ToDoubleSeconds(hold));
  EXPECT_GE(sum(Stage::kQueued), absl::ToDoubleSeconds(hold));
  const double parts =
      sum(Stage::kQueued) + sum(Stage::kCommit) + sum(Stage::kSyncWait) + sum(Stage::kSync);
  EXPECT_NEAR(sum(Stage::kTotal), parts, 1e-6);
  EXPECT_GE(sum(Stage::kTotal), 4 * absl::ToDoubleSeconds(hold));
}

TEST(AuditServiceTest, ACancelledStreamWithQueuedEventsLeavesTheWriterWorking) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  Harness h(std::move(gated));
  gate->SetOpen(false);
  {
    grpc::ClientContext ctx;
    auto stream = h.stub().Record(&ctx);
    for (const AuditEvent& event : Events("x", 10)) {
      RecordRequest request;
      *request.mutable_event() = event;
      ASSERT_TRUE(stream->Write(request));
    }
    // Every event is in the stuck transaction or the queue.
    for (int i = 0; i < 200 && gate->events_seen() + h.metrics().queue_depth().Value() < 10; ++i) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    ASSERT_EQ(gate->events_seen() + h.metrics().queue_depth().Value(), 10);
    ctx.TryCancel();
    EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  }
  // The stream is gone while its events are still in the writer.
  for (int i = 0; i < 200 && h.metrics().record_streams().Value() > 0; ++i) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(h.metrics().record_streams().Value(), 0);
  gate->SetOpen(true);
  StreamResult r = RecordAll(h.stub(), Events("y", 5));
  ASSERT_TRUE(r.status.ok()) << r.status.error_message();
  EXPECT_EQ(r.acked.size(), 5u);
  // Events of the cancelled stream that reached the writer are stored (never acked: the
  // client resends them and they are stored once).
  EXPECT_EQ(h.Count(), 15);
  EXPECT_EQ(RecordAll(h.stub(), Events("x", 10)).acked.size(), 10u);
  EXPECT_EQ(h.Count(), 15);
}

// The writer commits a batch, then a second thread syncs it (SQLite: fdatasync of the WAL) and
// only then acks. A failed sync acks nothing: the streams end UNAVAILABLE, readiness follows,
// and once syncs work again the resent events are acked, each stored once, the chain intact.
TEST(AuditServiceTest, AFailedSyncAcksNothingAndTheWriterRecovers) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(20);
  absl::Mutex mu;
  std::vector<bool> health;
  options.on_store_health = [&](bool healthy) {
    absl::MutexLock lock(&mu);
    health.push_back(healthy);
  };
  Harness h(std::move(gated), options);
  gate->SetSyncFails(true);
  StreamResult failed = RecordAll(h.stub(), Events("s", 20));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(failed.status.error_message(), HasSubstr("Input/output error"));
  EXPECT_TRUE(failed.acked.empty());
  EXPECT_GE(gate->syncs(), 1);
  EXPECT_GE(h.metrics().Error("store_unavailable").Value(), 1);

  gate->SetSyncFails(false);
  StreamResult resent = RecordAll(h.stub(), Events("s", 20));
  ASSERT_TRUE(resent.status.ok()) << resent.status.error_message();
  EXPECT_EQ(resent.acked.size(), 20u);
  EXPECT_EQ(h.Count(), 20);
  auto report = VerifyChain(h.store(), "test-chain");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->intact()) << report->problem();
  EXPECT_EQ(report->records(), 20);
  absl::MutexLock lock(&mu);
  EXPECT_EQ(health, (std::vector<bool>{false, true}));
}

TEST(AuditServiceTest, LockedSqliteEndsTheStreamUnavailableWithoutAckAndRecovers) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(10);
  absl::Mutex health_mu;
  std::vector<bool> health;  // readiness flips the writer reports
  options.on_store_health = [&](bool healthy) {
    absl::MutexLock lock(&health_mu);
    health.push_back(healthy);
  };
  Harness h(SqliteIn(dir, absl::Milliseconds(100)), options);
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/audit.db").c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  StreamResult failed = RecordAll(h.stub(), Events("f", 3));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(failed.status.error_message(), HasSubstr("not acked"));
  EXPECT_TRUE(failed.acked.empty());
  EXPECT_GE(h.metrics().Error("store_unavailable").Value(), 1);

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  StreamResult retried = RecordAll(h.stub(), Events("f", 3));
  ASSERT_TRUE(retried.status.ok()) << retried.status.error_message();
  EXPECT_EQ(retried.acked.size(), 3u);
  EXPECT_EQ(h.Count(), 3);
  auto verify = h.store().ListChains();
  ASSERT_TRUE(verify.ok());
  absl::MutexLock lock(&health_mu);
  EXPECT_EQ(health, (std::vector<bool>{false, true}));  // not ready while locked, ready again
}

// Waits (up to 20 s) until the writer has counted `n` failed re-checks of the store.
void WaitForFailedRechecks(Harness& h, double n) {
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (h.metrics().store_rechecks("failed").Value() < n && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(20));
  }
}

// With `mu` held: waits (up to 20 s) until on_store_health has reported `n` times.
bool AwaitReports(absl::Mutex& mu, const std::vector<bool>& health, size_t n)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
  auto reported = [&health, n] { return health.size() == n; };
  return mu.AwaitWithTimeout(absl::Condition(&reported), absl::Seconds(20));
}

// Readiness comes back without an event: while the store is unusable the writer re-checks it
// every store_recheck_interval (failing while the lock is held), and the first re-check after
// the lock is released makes it ready again.
TEST(AuditServiceTest, WriterRechecksALockedStoreAndReportsItHealthyWithoutAnEvent) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(10);
  options.store_recheck_interval = absl::Milliseconds(50);
  absl::Mutex health_mu;
  std::vector<bool> health;
  options.on_store_health = [&](bool healthy) {
    absl::MutexLock lock(&health_mu);
    health.push_back(healthy);
  };
  Harness h(SqliteIn(dir, absl::Milliseconds(100)), options);
  ASSERT_EQ(RecordAll(h.stub(), Events("a", 2)).acked.size(), 2u);
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/audit.db").c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);
  EXPECT_EQ(RecordAll(h.stub(), Events("b", 1)).status.error_code(), grpc::StatusCode::UNAVAILABLE);
  // Re-checks run and fail while the lock is held; readiness stays off.
  WaitForFailedRechecks(h, 3);
  EXPECT_GE(h.metrics().store_rechecks("failed").Value(), 3);
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 0);
  {
    absl::MutexLock lock(&health_mu);
    EXPECT_EQ(health, (std::vector<bool>{false}));
  }

  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  {
    absl::MutexLock lock(&health_mu);
    EXPECT_TRUE(AwaitReports(health_mu, health, 2));
    EXPECT_EQ(health, (std::vector<bool>{false, true}));
  }
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 1);
  // Healthy: no more re-checks, and events are stored as before (the refused one was not).
  const double failed = h.metrics().store_rechecks("failed").Value();
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(h.metrics().store_rechecks("failed").Value(), failed);
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 1);
  ASSERT_EQ(RecordAll(h.stub(), Events("c", 2)).acked.size(), 2u);
  EXPECT_EQ(h.Count(), 4);
}

// The same after a failed sync (fdatasync reporting an I/O error) with no event after it: the
// re-check syncs too, so it fails while syncs fail and makes the writer ready once they work.
TEST(AuditServiceTest, WriterRechecksAfterAFailedSyncWithoutAnEvent) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(10);
  options.store_recheck_interval = absl::Milliseconds(50);
  absl::Mutex health_mu;
  std::vector<bool> health;
  options.on_store_health = [&](bool healthy) {
    absl::MutexLock lock(&health_mu);
    health.push_back(healthy);
  };
  Harness h(std::move(gated), options);
  gate->SetSyncFails(true);
  StreamResult failed = RecordAll(h.stub(), Events("s", 5));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(failed.acked.empty());
  WaitForFailedRechecks(h, 3);
  EXPECT_GE(h.metrics().store_rechecks("failed").Value(), 3);
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 0);
  {
    absl::MutexLock lock(&health_mu);
    EXPECT_EQ(health, (std::vector<bool>{false}));
  }

  gate->SetSyncFails(false);
  {
    absl::MutexLock lock(&health_mu);
    EXPECT_TRUE(AwaitReports(health_mu, health, 2));
    EXPECT_EQ(health, (std::vector<bool>{false, true}));
  }
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 1);
  // The same events again: stored once, acked, the chain intact.
  StreamResult resent = RecordAll(h.stub(), Events("s", 5));
  ASSERT_TRUE(resent.status.ok()) << resent.status.error_message();
  EXPECT_EQ(resent.acked.size(), 5u);
  EXPECT_EQ(h.Count(), 5);
  auto report = VerifyChain(h.store(), "test-chain");
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->intact()) << report->problem();
}

// The sync fails only after the committer has gone back to waiting for events (the stream's
// one event is committed, the sync is held until then): the failure itself must start the
// re-checks, or readiness would stay off until the next event.
TEST(AuditServiceTest, ASyncFailingWhileTheCommitterIdlesStartsTheRechecks) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(10);
  options.store_recheck_interval = absl::Milliseconds(50);
  absl::Mutex health_mu;
  std::vector<bool> health;
  options.on_store_health = [&](bool healthy) {
    absl::MutexLock lock(&health_mu);
    health.push_back(healthy);
  };
  Harness h(std::move(gated), options);
  gate->SetSyncFails(true);
  gate->SetSyncOpen(false);
  StreamResult failed;
  std::thread writer([&] { failed = RecordAll(h.stub(), Events("s", 1)); });
  const absl::Time deadline = absl::Now() + absl::Seconds(20);
  while (gate->syncs_waiting() == 0 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  ASSERT_EQ(gate->syncs_waiting(), 1);
  absl::SleepFor(absl::Milliseconds(100));  // the committer is back waiting for events
  gate->SetSyncOpen(true);
  writer.join();
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  WaitForFailedRechecks(h, 2);
  EXPECT_GE(h.metrics().store_rechecks("failed").Value(), 2);

  gate->SetSyncFails(false);
  {
    absl::MutexLock lock(&health_mu);
    EXPECT_TRUE(AwaitReports(health_mu, health, 2));
    EXPECT_EQ(health, (std::vector<bool>{false, true}));
  }
  EXPECT_EQ(h.metrics().store_rechecks("ok").Value(), 1);
}

// A re-check interval below zero is refused at start.
TEST(AuditServiceTest, WriterRefusesANegativeRecheckInterval) {
  testing::TempDir tmp("podgate-audit-svc");
  auto store = SqliteIn(tmp.path());
  prometheus::Registry registry;
  AuditMetrics metrics(registry);
  WriterOptions options;
  options.chain_id = "c";
  options.store_recheck_interval = absl::Seconds(-1);
  auto writer = Writer::Start(store.get(), options, &metrics);
  EXPECT_EQ(writer.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(writer.status().message()), HasSubstr("re-check interval"));
}

TEST(AuditServiceTest, StoppedPostgresEndsTheStreamUnavailableAndRestartRecovers) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto url = (*pg)->CreateDatabase("audit");
  ASSERT_TRUE(url.ok());
  auto store = OpenStore(*url);
  ASSERT_TRUE(store.ok()) << store.status();
  WriterOptions options;
  options.retry_backoff = absl::Milliseconds(10);
  Harness h(*std::move(store), options);
  EXPECT_EQ(RecordAll(h.stub(), Events("p", 20)).acked.size(), 20u);

  ASSERT_TRUE((*pg)->Stop().ok());
  StreamResult failed = RecordAll(h.stub(), Events("q", 5));
  EXPECT_EQ(failed.status.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_TRUE(failed.acked.empty());

  ASSERT_TRUE((*pg)->Restart().ok());
  StreamResult retried = RecordAll(h.stub(), Events("q", 5));
  ASSERT_TRUE(retried.status.ok()) << retried.status.error_message();
  EXPECT_EQ(retried.acked.size(), 5u);
  EXPECT_EQ(*(*pg)->QueryValue("audit", "SELECT count(*) FROM records"), "25");

  grpc::ClientContext ctx;
  v1::VerifyResponse verify;
  ASSERT_TRUE(h.stub().Verify(&ctx, v1::VerifyRequest(), &verify).ok());
  EXPECT_TRUE(verify.intact());
  EXPECT_EQ(verify.chains(0).records(), 25);
}

TEST(AuditServiceTest, QueryStreamsOnePageThenPageEnd) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  Harness h(SqliteIn(dir));
  ASSERT_EQ(RecordAll(h.stub(), Events("q", 5)).acked.size(), 5u);
  v1::QueryRequest request;
  request.set_page_size(3);
  std::vector<std::string> ids;
  std::string token;
  for (int page = 0; page < 2; ++page) {
    grpc::ClientContext ctx;
    request.set_page_token(token);
    auto reader = h.stub().Query(&ctx, request);
    v1::QueryResponse response;
    int ends = 0;
    while (reader->Read(&response)) {
      if (response.has_record()) {
        EXPECT_EQ(ends, 0) << "record after page_end";
        ids.push_back(response.record().event().id());
        EXPECT_EQ(response.record().chain_id(), "test-chain");
      } else {
        ++ends;
        token = response.page_end().next_page_token();
      }
    }
    ASSERT_TRUE(reader->Finish().ok());
    EXPECT_EQ(ends, 1);
  }
  EXPECT_THAT(ids, ::testing::ElementsAre("q0", "q1", "q2", "q3", "q4"));
  EXPECT_TRUE(token.empty());

  grpc::ClientContext ctx;
  request.set_page_size(5000);
  auto reader = h.stub().Query(&ctx, request);
  v1::QueryResponse response;
  EXPECT_FALSE(reader->Read(&response));
  grpc::Status status = reader->Finish();
  EXPECT_EQ(status.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(status.error_message(), HasSubstr("page_size"));
}

TEST(AuditServiceTest, ReadsBeyondTheExecutorQueueAreRefused) {
  testing::TempDir tmp("podgate-audit-svc");
  auto gated = std::make_unique<GatedStore>(SqliteIn(tmp.path()));
  GatedStore* gate = gated.get();
  AuditServiceOptions options;
  options.read_threads = 1;
  options.max_queued_reads = 1;
  Harness h(std::move(gated), {}, options);
  gate->SetQueriesOpen(false);
  // One query runs (stuck in the store), one waits in the queue.
  std::vector<std::thread> clients;
  std::vector<grpc::Status> statuses(2);
  for (int i = 0; i < 2; ++i) {
    clients.emplace_back([&, i] {
      grpc::ClientContext ctx;
      auto reader = h.stub().Query(&ctx, v1::QueryRequest());
      v1::QueryResponse response;
      while (reader->Read(&response)) {
      }
      statuses[i] = reader->Finish();
    });
    for (int k = 0; k < 200 && i == 0 && gate->queries_waiting() == 0; ++k) {
      absl::SleepFor(absl::Milliseconds(10));
    }
  }
  absl::SleepFor(absl::Milliseconds(200));
  {
    grpc::ClientContext ctx;
    v1::VerifyResponse verify;
    grpc::Status status = h.stub().Verify(&ctx, v1::VerifyRequest(), &verify);
    EXPECT_EQ(status.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    grpc::ClientContext ctx2;
    auto reader = h.stub().Query(&ctx2, v1::QueryRequest());
    v1::QueryResponse response;
    EXPECT_FALSE(reader->Read(&response));
    EXPECT_EQ(reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  }
  EXPECT_EQ(h.metrics().Error("executor_full").Value(), 2);
  gate->SetQueriesOpen(true);
  for (auto& t : clients) {
    t.join();
  }
  EXPECT_TRUE(statuses[0].ok());
  EXPECT_TRUE(statuses[1].ok());
}

TEST(AuditServiceTest, VerifyReportsTheFirstBrokenLink) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  Harness h(SqliteIn(dir));
  ASSERT_EQ(RecordAll(h.stub(), Events("v", 10)).acked.size(), 10u);
  {
    grpc::ClientContext ctx;
    v1::VerifyResponse verify;
    ASSERT_TRUE(h.stub().Verify(&ctx, v1::VerifyRequest(), &verify).ok());
    EXPECT_TRUE(verify.intact());
    ASSERT_EQ(verify.chains_size(), 1);
    EXPECT_EQ(verify.chains(0).records(), 10);
  }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir + "/audit.db").c_str(), &db), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(db, "DELETE FROM records WHERE sequence = 7", nullptr, nullptr, nullptr),
            SQLITE_OK);
  sqlite3_close(db);
  grpc::ClientContext ctx;
  v1::VerifyResponse verify;
  ASSERT_TRUE(h.stub().Verify(&ctx, v1::VerifyRequest(), &verify).ok());
  EXPECT_FALSE(verify.intact());
  EXPECT_EQ(verify.chains(0).first_broken_sequence(), 8);
  EXPECT_THAT(verify.chains(0).problem(), HasSubstr("gap"));

  grpc::ClientContext ctx2;
  v1::VerifyRequest unknown;
  unknown.set_chain_id("nope");
  EXPECT_EQ(h.stub().Verify(&ctx2, unknown, &verify).error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST(AuditCliTest, QueryPrintsATableOrJsonLinesAndVerifyReportsChains) {
  testing::TempDir tmp("podgate-audit-svc");
  const std::string& dir = tmp.path();
  Harness h(SqliteIn(dir));
  std::vector<AuditEvent> events = Events("c", 5);
  events[2] = testing::MakeEvent("c2", "bob", "pay", "db-0", "ps\x1b[2J aux");
  ASSERT_EQ(RecordAll(h.stub(), events).acked.size(), 5u);

  std::ostringstream table;
  v1::QueryRequest request;
  request.set_page_size(2);  // several pages
  auto printed = cli::RunQuery(h.stub(), request, 0, cli::Format::kTable, table);
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(*printed, 5);
  const std::string text = table.str();
  EXPECT_EQ(std::count(text.begin(), text.end(), '\n'), 6);  // header + 5
  EXPECT_THAT(text, HasSubstr("NAMESPACE/POD/CONTAINER"));
  EXPECT_THAT(text, HasSubstr("pay/db-0/app"));
  EXPECT_THAT(text, HasSubstr("2026-11-18T"));
  // Terminal escapes in stored text are shown, not obeyed.
  EXPECT_THAT(text, HasSubstr("ps\\x1b[2J aux"));
  EXPECT_THAT(text, ::testing::Not(HasSubstr("\x1b")));

  std::ostringstream json;
  request.add_users("bob");
  ASSERT_EQ(*cli::RunQuery(h.stub(), request, 0, cli::Format::kJsonLines, json), 1);
  EXPECT_THAT(json.str(), HasSubstr("\"chain_id\":\"test-chain\""));
  EXPECT_THAT(json.str(), HasSubstr("\"user\":\"bob\""));

  std::ostringstream limited;
  request.Clear();
  EXPECT_EQ(*cli::RunQuery(h.stub(), request, 3, cli::Format::kJsonLines, limited), 3);

  std::ostringstream verify;
  auto intact = cli::RunVerify(h.stub(), "", verify);
  ASSERT_TRUE(intact.ok());
  EXPECT_TRUE(*intact);
  EXPECT_EQ(verify.str(), "chain test-chain: intact, 5 records\n");

  request.set_page_size(-5);
  EXPECT_EQ(cli::RunQuery(h.stub(), request, 0, cli::Format::kTable, table).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(AuditCliTest, ParsersNameTheBadValue) {
  EXPECT_EQ(*cli::ParseKind("command_request"), podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
  EXPECT_EQ(*cli::ParseKind("EVENT_KIND_DECISION"), podgate::common::v1::EVENT_KIND_DECISION);
  EXPECT_THAT(std::string(cli::ParseKind("nap").status().message()), HasSubstr("\"nap\""));
  EXPECT_FALSE(cli::ParseKind("unspecified").ok());
  EXPECT_EQ(*cli::ParseVerdict("deny"), podgate::common::v1::VERDICT_DENY);
  EXPECT_FALSE(cli::ParseVerdict("maybe").ok());
  EXPECT_EQ(cli::ParseTime("2026-11-28T04:00:00Z")->seconds(), 1795838400);
  EXPECT_THAT(std::string(cli::ParseTime("yesterday").status().message()), HasSubstr("RFC 3339"));
  EXPECT_EQ(*cli::ParseFormat("json"), cli::Format::kJsonLines);
  EXPECT_FALSE(cli::ParseFormat("xml").ok());
}

}  // namespace
}  // namespace podgate::audit
