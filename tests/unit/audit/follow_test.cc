// The live tail (Query with follow) on a real in-process audit server and real stores: the
// backlog then records committed after the follow started, filters, the follower limit, a
// slow follower dropped, drain, two writers on one PostgreSQL database, and `cli tail`.
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/cli.h"
#include "audit/follow_hub.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "runtime/server.h"
#include "support/grpc_health.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::audit::v1::QueryRequest;
using ::podgate::audit::v1::QueryResponse;
using ::podgate::audit::v1::RecordRequest;
using ::podgate::audit::v1::RecordResponse;
using ::podgate::common::v1::AuditEvent;
using ::testing::HasSubstr;

class Harness {
 public:
  Harness(std::unique_ptr<Store> store, const std::string& chain_id, FollowOptions follow = {}) {
    store_ = std::move(store);
    metrics_ = std::make_unique<AuditMetrics>(registry_);
    WriterOptions options;
    options.chain_id = chain_id;
    auto writer = Writer::Start(store_.get(), options, metrics_.get());
    EXPECT_TRUE(writer.ok()) << writer.status();
    writer_ = *std::move(writer);
    AuditServiceOptions service_options;
    service_options.follow = follow;
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
  int port() const { return server_->grpc_port(); }
  void Shutdown() { server_->Shutdown(); }
  AuditMetrics& metrics() { return *metrics_; }

 private:
  prometheus::Registry registry_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<AuditMetrics> metrics_;
  std::unique_ptr<Writer> writer_;
  std::unique_ptr<AuditServiceImpl> service_;
  std::unique_ptr<runtime::Server> server_;
  std::unique_ptr<AuditService::Stub> stub_;
};

std::unique_ptr<Store> SqliteIn(const std::string& dir) {
  auto store = OpenSqliteStore(dir + "/audit.db");
  EXPECT_TRUE(store.ok()) << store.status();
  return *std::move(store);
}

// Records `events` on one stream; returns how many were acked.
size_t RecordAll(AuditService::Stub& stub, const std::vector<AuditEvent>& events) {
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  auto stream = stub.Record(&ctx);
  size_t acked = 0;
  std::thread reader([&] {
    RecordResponse response;
    while (stream->Read(&response)) {
      acked += static_cast<size_t>(response.ack().ids_size());
    }
  });
  for (const AuditEvent& event : events) {
    RecordRequest request;
    *request.mutable_event() = event;
    if (!stream->Write(request)) {
      break;
    }
  }
  stream->WritesDone();
  reader.join();
  EXPECT_TRUE(stream->Finish().ok());
  return acked;
}

std::vector<AuditEvent> Events(const std::string& prefix, int n, const std::string& user = "alice",
                               const std::string& line = "jstack 1") {
  std::vector<AuditEvent> events;
  for (int i = 0; i < n; ++i) {
    events.push_back(testing::MakeEvent(absl::StrCat(prefix, i), user, "shop", "api-0", line));
  }
  return events;
}

struct Follow {
  explicit Follow(AuditService::Stub& stub, QueryRequest request) {
    request.set_follow(true);
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
    reader = stub.Query(&ctx, request);
  }
  // The backlog's event ids, up to the page_end.
  std::vector<std::string> Backlog() {
    std::vector<std::string> ids;
    QueryResponse response;
    while (reader->Read(&response) && response.has_record()) {
      ids.push_back(response.record().event().id());
    }
    EXPECT_TRUE(response.has_page_end());
    EXPECT_TRUE(response.page_end().next_page_token().empty());
    return ids;
  }
  // The next `n` records.
  std::vector<v1::AuditRecord> Next(int n) {
    std::vector<v1::AuditRecord> records;
    QueryResponse response;
    while (static_cast<int>(records.size()) < n && reader->Read(&response)) {
      EXPECT_TRUE(response.has_record());
      records.push_back(response.record());
    }
    return records;
  }
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReader<QueryResponse>> reader;
};

std::vector<std::string> Ids(const std::vector<v1::AuditRecord>& records) {
  std::vector<std::string> ids;
  for (const auto& r : records) {
    ids.push_back(r.event().id());
  }
  return ids;
}

TEST(AuditFollowTest, SendsTheLastRecordsThenEachNewMatchingRecordInCommitOrder) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  ASSERT_EQ(RecordAll(h.stub(), Events("old", 5)), 5u);
  ASSERT_EQ(RecordAll(h.stub(), Events("bob-old", 2, "bob")), 2u);

  QueryRequest request;
  request.add_users("alice");
  request.set_page_size(3);
  Follow follow(h.stub(), request);
  // Like tail -f: the last three of alice's, oldest first.
  EXPECT_THAT(follow.Backlog(), ::testing::ElementsAre("old2", "old3", "old4"));

  // Committed after the follow started: alice's arrive, bob's do not.
  ASSERT_EQ(RecordAll(h.stub(), Events("bob-new", 3, "bob")), 3u);
  ASSERT_EQ(RecordAll(h.stub(), Events("new", 4)), 4u);
  std::vector<v1::AuditRecord> live = follow.Next(4);
  EXPECT_THAT(Ids(live), ::testing::ElementsAre("new0", "new1", "new2", "new3"));
  for (size_t i = 1; i < live.size(); ++i) {
    EXPECT_EQ(live[i].sequence(), live[i - 1].sequence() + 1);
  }
  EXPECT_EQ(live[0].chain_id(), "test-chain");
  EXPECT_EQ(h.metrics().followers().Value(), 1);

  follow.ctx.TryCancel();
  QueryResponse extra;
  while (follow.reader->Read(&extra)) {
  }
  EXPECT_EQ(follow.reader->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_GE(h.metrics().follow_records_sent().Value(), 7);
}

TEST(AuditFollowTest, UserPrefixesMatchLikeTheStoreQuery) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  QueryRequest request;
  request.add_user_prefixes("da");
  Follow follow(h.stub(), request);
  EXPECT_TRUE(follow.Backlog().empty());
  ASSERT_EQ(RecordAll(h.stub(), Events("alice", 2, "alice")), 2u);
  ASSERT_EQ(RecordAll(h.stub(), Events("adam", 1, "adam")), 1u);
  ASSERT_EQ(RecordAll(h.stub(), Events("dana", 1, "dana")), 1u);
  ASSERT_EQ(RecordAll(h.stub(), Events("daniel", 1, "daniel")), 1u);
  EXPECT_THAT(Ids(follow.Next(2)), ::testing::ElementsAre("dana0", "daniel0"));
}

TEST(AuditFollowTest, ArgvAndGroupFiltersMatchLikeTheStoreQuery) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  QueryRequest request;
  request.set_argv_contains("needle");
  Follow follow(h.stub(), request);
  EXPECT_TRUE(follow.Backlog().empty());
  ASSERT_EQ(RecordAll(h.stub(), Events("hay", 3, "alice", "ls -l")), 3u);
  ASSERT_EQ(RecordAll(h.stub(), Events("found", 1, "alice", "grep needle x")), 1u);
  EXPECT_THAT(Ids(follow.Next(1)), ::testing::ElementsAre("found0"));
  // The same filter through a plain query selects the same record.
  grpc::ClientContext ctx;
  auto reader = h.stub().Query(&ctx, request);
  QueryResponse response;
  std::vector<std::string> queried;
  while (reader->Read(&response)) {
    if (response.has_record()) {
      queried.push_back(response.record().event().id());
    }
  }
  EXPECT_THAT(queried, ::testing::ElementsAre("found0"));
  follow.ctx.TryCancel();
}

TEST(AuditFollowTest, CombinationsThatMakeNoSenseAreInvalid) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  auto status_of = [&](QueryRequest request) {
    Follow follow(h.stub(), request);
    QueryResponse response;
    while (follow.reader->Read(&response)) {
    }
    return follow.reader->Finish();
  };
  QueryRequest newest;
  newest.set_newest_first(true);
  grpc::Status s = status_of(newest);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("newest_first"));
  QueryRequest token;
  token.set_page_token(EncodePageToken(3, false));
  s = status_of(token);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("page_token"));
  QueryRequest until;
  until.mutable_end_time()->set_seconds(1);
  s = status_of(until);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("end_time"));
  QueryRequest big;
  big.set_page_size(5000);
  EXPECT_EQ(status_of(big).error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST(AuditFollowTest, FollowersBeyondTheLimitAreRefusedAndASlotFreesOnCancel) {
  testing::TempDir tmp("podgate-audit-follow");
  FollowOptions options;
  options.max_followers = 2;
  Harness h(SqliteIn(tmp.path()), "test-chain", options);
  auto first = std::make_unique<Follow>(h.stub(), QueryRequest());
  Follow second(h.stub(), QueryRequest());
  first->Backlog();
  second.Backlog();
  {
    Follow third(h.stub(), QueryRequest());
    QueryResponse response;
    EXPECT_FALSE(third.reader->Read(&response));
    grpc::Status s = third.reader->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    EXPECT_THAT(s.error_message(), HasSubstr("too many followers"));
  }
  first->ctx.TryCancel();
  QueryResponse response;
  while (first->reader->Read(&response)) {
  }
  first->reader->Finish();
  first.reset();
  // The slot frees once the server saw the cancel; a new follower then gets in.
  for (int attempt = 0;; ++attempt) {
    Follow again(h.stub(), QueryRequest());
    QueryResponse r;
    if (again.reader->Read(&r)) {
      EXPECT_TRUE(r.has_page_end());
      again.ctx.TryCancel();
      break;
    }
    ASSERT_EQ(again.reader->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
    ASSERT_LT(attempt, 500);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  second.ctx.TryCancel();
}

TEST(AuditFollowTest, AFollowerThatDoesNotReadIsEndedWithoutSlowingTheWriter) {
  testing::TempDir tmp("podgate-audit-follow");
  FollowOptions options;
  options.queue_records = 8;
  Harness h(SqliteIn(tmp.path()), "test-chain", options);
  // A client with a small receive window: unread messages back up on the server.
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, 1024);
  auto slow_stub = AuditService::NewStub(grpc::CreateCustomChannel(
      absl::StrCat("127.0.0.1:", h.port()), grpc::InsecureChannelCredentials(), args));
  Follow slow(*slow_stub, QueryRequest());
  slow.Backlog();
  // Large records, many more than the window and the queue hold; every one is acked.
  const std::string line(4000, 'x');
  ASSERT_EQ(RecordAll(h.stub(), Events("big", 400, "alice", line)), 400u);
  for (int i = 0; i < 1000 && h.metrics().followers_dropped().Value() < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(h.metrics().followers_dropped().Value(), 1);
  // Reading now drains what was in flight, then the reason.
  QueryResponse response;
  int read = 0;
  while (slow.reader->Read(&response)) {
    ++read;
  }
  EXPECT_LT(read, 400);
  grpc::Status s = slow.reader->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_THAT(s.error_message(), HasSubstr("fell behind"));
}

TEST(AuditFollowTest, DrainEndsFollowersUnavailable) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  Follow follow(h.stub(), QueryRequest());
  follow.Backlog();
  std::thread shutdown([&] { h.Shutdown(); });
  QueryResponse response;
  while (follow.reader->Read(&response)) {
  }
  grpc::Status s = follow.reader->Finish();
  shutdown.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE);
  EXPECT_THAT(s.error_message(), HasSubstr("shutting down"));
}

// Two replicas (two writers, two chains) commit concurrently into one PostgreSQL database; a
// follower on replica A sees every record of both chains exactly once, each chain in sequence
// order, although row ids commit out of order across the two transactions.
TEST(AuditFollowTest, PostgresTwoWritersEveryRecordOnceInChainOrder) {
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto url = (*pg)->CreateDatabase("audit");
  ASSERT_TRUE(url.ok());
  auto store_a = OpenStore(*url);
  auto store_b = OpenStore(*url);
  ASSERT_TRUE(store_a.ok() && store_b.ok());
  FollowOptions options;
  options.poll_interval = absl::Milliseconds(20);
  options.chain_discovery_interval = absl::Milliseconds(20);
  options.queue_records = 10000;
  Harness a(*std::move(store_a), "replica-a", options);
  Harness b(*std::move(store_b), "replica-b");
  ASSERT_EQ(RecordAll(a.stub(), Events("a-old", 3)), 3u);

  QueryRequest request;
  request.set_page_size(1);
  Follow follow(a.stub(), request);
  EXPECT_THAT(follow.Backlog(), ::testing::ElementsAre("a-old2"));

  constexpr int kPerWriter = 300;
  std::vector<std::thread> writers;
  for (const char* name : {"a", "b"}) {
    Harness* h = name[0] == 'a' ? &a : &b;
    // Several streams per replica: bigger, interleaved group commits.
    for (int s = 0; s < 3; ++s) {
      writers.emplace_back([h, name, s] {
        EXPECT_EQ(RecordAll(h->stub(), Events(absl::StrCat(name, s, "-"), kPerWriter / 3)),
                  static_cast<size_t>(kPerWriter / 3));
      });
    }
  }
  std::vector<v1::AuditRecord> live = follow.Next(2 * kPerWriter);
  for (auto& t : writers) {
    t.join();
  }
  ASSERT_EQ(live.size(), 2u * kPerWriter);
  std::set<std::string> ids;
  std::map<std::string, int64_t> last;
  for (const auto& r : live) {
    EXPECT_TRUE(ids.insert(r.event().id()).second) << r.event().id();
    int64_t& previous = last[r.chain_id()];
    if (previous != 0) {
      EXPECT_EQ(r.sequence(), previous + 1) << r.chain_id();
    }
    previous = r.sequence();
  }
  EXPECT_EQ(last.size(), 2u);
  EXPECT_EQ(last["replica-a"], 3 + kPerWriter);
  EXPECT_EQ(last["replica-b"], kPerWriter);
  follow.ctx.TryCancel();
}

// A string stream another thread may read while the tail writes.
class LockedBuf : public std::stringbuf {
 public:
  std::string Text() {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return str();
  }

 protected:
  // xsputn may call overflow: a recursive mutex.
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return std::stringbuf::xsputn(s, n);
  }
  int_type overflow(int_type c) override {
    std::lock_guard<std::recursive_mutex> lock(mu_);
    return std::stringbuf::overflow(c);
  }

 private:
  std::recursive_mutex mu_;
};

TEST(AuditCliTest, TailPrintsTheNewestThenFollowsUntilCancelled) {
  testing::TempDir tmp("podgate-audit-follow");
  Harness h(SqliteIn(tmp.path()), "test-chain");
  ASSERT_EQ(RecordAll(h.stub(), Events("t", 5)), 5u);

  std::ostringstream last;
  grpc::ClientContext once;
  auto printed =
      cli::RunTail(h.stub(), QueryRequest(), 2, false, cli::Format::kJsonLines, last, &once);
  ASSERT_TRUE(printed.ok()) << printed.status();
  EXPECT_EQ(*printed, 2);
  const std::string text = last.str();
  EXPECT_LT(text.find("\"id\":\"t3\""), text.find("\"id\":\"t4\""));
  EXPECT_EQ(text.find("\"id\":\"t2\""), std::string::npos);

  LockedBuf buf;
  std::ostream out(&buf);
  grpc::ClientContext ctx;
  absl::StatusOr<int64_t> followed;
  std::thread tail([&] {
    followed = cli::RunTail(h.stub(), QueryRequest(), 1, true, cli::Format::kTable, out, &ctx);
  });
  auto lines = [&] {
    const std::string text = buf.Text();
    return std::count(text.begin(), text.end(), '\n');
  };
  // The backlog (header + t4) printed means the follow has its cursors: what is recorded now
  // comes live. Counting the follower is not enough: it is counted before its cursors are set,
  // and records committed in between belong to the backlog (the last page_size records).
  while (lines() < 2) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_EQ(RecordAll(h.stub(), Events("live", 2, "carol")), 2u);
  while (lines() < 4) {  // header + 3
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ctx.TryCancel();
  tail.join();
  ASSERT_TRUE(followed.ok()) << followed.status();
  EXPECT_EQ(*followed, 3);  // t4, then live0 and live1
  const std::string followed_text = buf.Text();
  EXPECT_THAT(followed_text, HasSubstr("carol"));
  EXPECT_EQ(std::count(followed_text.begin(), followed_text.end(), '\n'), 4);

  grpc::ClientContext bad;
  EXPECT_EQ(cli::RunTail(h.stub(), QueryRequest(), 0, true, cli::Format::kTable, out, &bad)
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace podgate::audit
