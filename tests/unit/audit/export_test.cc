// Export: the configuration parser, the file sink on a real folder, the stores' cursors and
// leases on real SQLite files and a real PostgreSQL 15 server, and the exporter delivering a
// real SQLite store's records into a real file.
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "audit/audit_metrics.h"
#include "audit/export/config.h"
#include "audit/export/exporter.h"
#include "audit/export/sink.h"
#include "audit/store.h"
#include "audit/store_sql.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "prometheus/registry.h"
#include "support/webhook_receiver.h"

namespace podgate::audit::exporting {
namespace {

using ::podgate::common::v1::AuditEvent;
using ::testing::HasSubstr;

// ---- configuration ----

std::string OneSink(const std::string& fields) {
  return absl::StrCat(R"({"sinks":[{"name":"siem","file":{"path":"/tmp/x.log"})",
                      fields.empty() ? "" : ",", fields, "}]}");
}

TEST(ExportConfigTest, DefaultsAndDurations) {
  auto parsed = ParseExportConfig(OneSink(
      R"("maxBatch":50,"maxWait":"250ms","initialBackoff":"1s","maxBackoff":"1m","blockingMaxLagRecords":"1000")"));
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  ASSERT_EQ(parsed->size(), 1u);
  const SinkSettings& s = (*parsed)[0];
  EXPECT_EQ(s.name, "siem");
  EXPECT_EQ(s.max_batch, 50);
  EXPECT_EQ(s.max_wait, absl::Milliseconds(250));
  EXPECT_EQ(s.initial_backoff, absl::Seconds(1));
  EXPECT_EQ(s.max_backoff, absl::Minutes(1));
  EXPECT_EQ(s.blocking_max_lag_records, 1000);
  auto defaults = ParseExportConfig(OneSink(""));
  ASSERT_TRUE(defaults.ok()) << defaults.status();
  EXPECT_EQ((*defaults)[0].max_batch, 400);
  EXPECT_EQ((*defaults)[0].max_wait, absl::Seconds(1));
  EXPECT_EQ((*defaults)[0].initial_backoff, absl::Milliseconds(200));
  EXPECT_EQ((*defaults)[0].max_backoff, absl::Seconds(30));
  auto empty = ParseExportConfig("{}");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->empty());
}

struct BadConfig {
  std::string json;
  std::string message;
};

class ExportConfigErrorTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(ExportConfigErrorTest, NamesTheProblem) {
  auto parsed = ParseExportConfig(GetParam().json);
  ASSERT_FALSE(parsed.ok()) << GetParam().json;
  EXPECT_EQ(parsed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(parsed.status().message(), HasSubstr(GetParam().message));
  EXPECT_EQ(std::string(parsed.status().message()).find('\n'), std::string::npos);
}

std::string ManySinks(int n) {
  std::string sinks;
  for (int i = 0; i < n; ++i) {
    absl::StrAppend(&sinks, i == 0 ? "" : ",", R"({"name":"s)", i,
                    R"(","file":{"path":"/tmp/a"}})");
  }
  return absl::StrCat(R"({"sinks":[)", sinks, "]}");
}

INSTANTIATE_TEST_SUITE_P(
    Each, ExportConfigErrorTest,
    ::testing::Values(
        BadConfig{"not json", "export config:"},
        BadConfig{R"({"sinks":[{"name":"a","file":{"path":"/x"},"colour":"red"}]})", "colour"},
        BadConfig{R"({"sinks":[{"name":"Siem","file":{"path":"/x"}}]})",
                  "sink Siem: name: must be a DNS-1123 label"},
        BadConfig{R"({"sinks":[{"name":"-a","file":{"path":"/x"}}]})", "DNS-1123"},
        BadConfig{R"({"sinks":[{"file":{"path":"/x"}}]})", "sink #1: name"},
        BadConfig{
            R"({"sinks":[{"name":"a","file":{"path":"/x"}},{"name":"a","file":{"path":"/y"}}]})",
            "sink a: name: used by another sink"},
        BadConfig{ManySinks(17), "17 sinks, at most 16"},
        BadConfig{R"({"sinks":[{"name":"a"}]})", "sink a: kind: unknown sink type"},
        BadConfig{OneSink(R"("maxBatch":10001)"), "sink siem: max_batch: 10001 is out of range"},
        BadConfig{OneSink(R"("maxBatch":-1)"), "sink siem: max_batch: -1 is out of range"},
        BadConfig{OneSink(R"("maxWait":"soon")"),
                  "sink siem: max_wait: \"soon\" is not a duration"},
        BadConfig{OneSink(R"("maxWait":"2m")"), "sink siem: max_wait: 2m is out of range"},
        BadConfig{OneSink(R"("maxWait":"-1s")"), "sink siem: max_wait: -1s is out of range"},
        BadConfig{OneSink(R"("initialBackoff":"0s")"), "sink siem: initial_backoff:"},
        BadConfig{OneSink(R"("maxBackoff":"2h")"), "sink siem: max_backoff: 2h is out of range"},
        BadConfig{OneSink(R"("initialBackoff":"5s","maxBackoff":"1s")"),
                  "sink siem: max_backoff: is shorter than initial_backoff"},
        BadConfig{OneSink(R"("blockingMaxLagRecords":"-5")"),
                  "sink siem: blocking_max_lag_records: must not be negative"}));

TEST(ExportConfigTest, MissingFileIsNamed) {
  auto parsed = LoadExportConfig("/nonexistent/export.json");
  ASSERT_FALSE(parsed.ok());
  EXPECT_THAT(parsed.status().message(), HasSubstr("cannot read /nonexistent/export.json"));
}

TEST(ExportConfigTest, SinkFactoriesNameTheSink) {
  auto parsed = ParseExportConfig(
      R"({"sinks":[{"name":"archive","file":{"path":"/nonexistent-dir/audit.log"}}]})");
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto sinks = MakeSinks(*std::move(parsed));
  ASSERT_FALSE(sinks.ok());
  EXPECT_THAT(sinks.status().message(),
              HasSubstr("sink archive: file.path: folder /nonexistent-dir does not exist"));
  parsed = ParseExportConfig(R"({"sinks":[{"name":"logs","file":{}}]})");
  ASSERT_TRUE(parsed.ok());
  sinks = MakeSinks(*std::move(parsed));
  ASSERT_FALSE(sinks.ok());
  EXPECT_THAT(sinks.status().message(), HasSubstr("sink logs: file.path is empty"));
}

// ---- file sink ----

// The file's complete lines. A line the exporter is still writing (no newline yet) is left
// out: the tests read the file while the sink appends to it.
std::vector<std::string> Lines(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream text;
  text << in.rdbuf();
  const std::string all = text.str();
  std::vector<std::string> lines;
  size_t start = 0;
  for (size_t end = all.find('\n'); end != std::string::npos; end = all.find('\n', start)) {
    lines.push_back(all.substr(start, end - start));
    start = end + 1;
  }
  return lines;
}

ExportItem RecordItem(const std::string& chain, int64_t sequence, const std::string& id) {
  ExportItem item;
  item.record.set_chain_id(chain);
  item.record.set_sequence(sequence);
  *item.record.mutable_event() = testing::MakeEvent(id);
  return item;
}

std::unique_ptr<Sink> FileSinkAt(const std::string& path, int64_t max_bytes = 0,
                                 int max_files = 0) {
  podgate::audit::v1::SinkConfig config;
  config.set_name("archive");
  config.mutable_file()->set_path(path);
  config.mutable_file()->set_max_bytes(max_bytes);
  config.mutable_file()->set_max_files(max_files);
  auto sink = MakeFileSink(config);
  EXPECT_TRUE(sink.ok()) << sink.status();
  return sink.ok() ? *std::move(sink) : nullptr;
}

TEST(FileSinkTest, AppendsOneJsonLinePerItem) {
  testing::TempDir dir("podgate-file-sink");
  const std::string path = dir.path() + "/audit.log";
  auto sink = FileSinkAt(path);
  std::vector<ExportItem> batch = {RecordItem("c", 1, "e1"), RecordItem("c", 2, "e2")};
  ExportItem checkpoint;
  checkpoint.kind = ExportItem::Kind::kCheckpoint;
  checkpoint.checkpoint.set_chain_id("c");
  checkpoint.checkpoint.set_sequence(2);
  batch.push_back(checkpoint);
  ASSERT_TRUE(sink->Deliver(batch).status.ok());
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 3, "e3")}).status.ok());
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 4u);
  for (size_t i = 0; i < 4; ++i) {
    auto json = nlohmann::json::parse(lines[i]);
    EXPECT_EQ(json["type"], i == 2 ? "checkpoint" : "record");
    EXPECT_EQ(json["chainId"], "c");
  }
  EXPECT_EQ(nlohmann::json::parse(lines[3])["sequence"], "3");
  EXPECT_EQ(nlohmann::json::parse(lines[3])["event"]["id"], "e3");
}

TEST(FileSinkTest, RotatesBySizeKeepingMaxFiles) {
  testing::TempDir dir("podgate-file-sink");
  const std::string path = dir.path() + "/audit.log";
  const int64_t line_bytes = static_cast<int64_t>(ItemJson(RecordItem("c", 1, "e-00")).size()) + 1;
  // Two lines fit in a file; the third rotates.
  auto sink = FileSinkAt(path, 2 * line_bytes + 5, 2);
  for (int i = 1; i <= 7; ++i) {
    ASSERT_TRUE(sink->Deliver({RecordItem("c", i, absl::StrCat("e-0", i))}).status.ok());
  }
  // 7 lines: path holds 7, .1 holds 5-6, .2 holds 3-4, 1-2 are gone (max_files 2).
  auto seq = [](const std::string& line) {
    return nlohmann::json::parse(line)["sequence"].get<std::string>();
  };
  auto current = Lines(path);
  auto first = Lines(path + ".1");
  auto second = Lines(path + ".2");
  ASSERT_EQ(current.size(), 1u);
  ASSERT_EQ(first.size(), 2u);
  ASSERT_EQ(second.size(), 2u);
  EXPECT_EQ(seq(current[0]), "7");
  EXPECT_EQ(seq(first[0]), "5");
  EXPECT_EQ(seq(second[1]), "4");
  EXPECT_FALSE(std::filesystem::exists(path + ".3"));
}

TEST(FileSinkTest, ReopensAfterExternalRotationOrRemoval) {
  testing::TempDir dir("podgate-file-sink");
  const std::string path = dir.path() + "/audit.log";
  auto sink = FileSinkAt(path);
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 1, "e1")}).status.ok());
  std::filesystem::rename(path, path + ".shipped");
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 2, "e2")}).status.ok());
  EXPECT_EQ(Lines(path).size(), 1u);
  EXPECT_EQ(Lines(path + ".shipped").size(), 1u);
  std::filesystem::remove(path);
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 3, "e3")}).status.ok());
  ASSERT_EQ(Lines(path).size(), 1u);
  EXPECT_EQ(nlohmann::json::parse(Lines(path)[0])["sequence"], "3");
}

TEST(FileSinkTest, FailsClearlyWhileThePathIsUnusableThenRecovers) {
  testing::TempDir dir("podgate-file-sink");
  const std::string path = dir.path() + "/audit.log";
  auto sink = FileSinkAt(path);
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 1, "e1")}).status.ok());
  // A folder where the file should be: a failure even for root.
  std::filesystem::remove(path);
  std::filesystem::create_directory(path);
  DeliveryResult failed = sink->Deliver({RecordItem("c", 2, "e2")});
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.status.message(), HasSubstr("sink archive: file: opening " + path));
  std::filesystem::remove(path);
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 2, "e2")}).status.ok());
  EXPECT_EQ(Lines(path).size(), 1u);
  // The folder itself gone.
  std::filesystem::remove_all(dir.path());
  failed = sink->Deliver({RecordItem("c", 3, "e3")});
  EXPECT_EQ(failed.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(failed.status.message(), HasSubstr("is missing"));
}

TEST(FileSinkTest, AHalfWrittenLineIsEndedBeforeTheNextAppend) {
  testing::TempDir dir("podgate-file-sink");
  const std::string path = dir.path() + "/audit.log";
  {
    std::ofstream out(path);
    out << R"({"type":"record","chainId":"c")";  // a crash mid-write
  }
  auto sink = FileSinkAt(path);
  ASSERT_TRUE(sink->Deliver({RecordItem("c", 1, "e1")}).status.ok());
  const auto lines = Lines(path);
  ASSERT_EQ(lines.size(), 2u);
  EXPECT_EQ(nlohmann::json::parse(lines[1])["sequence"], "1");
}

// ---- the stores' cursors and leases ----

std::unique_ptr<testing::PostgresServer>& PostgresSlot() {
  static auto* slot = new std::unique_ptr<testing::PostgresServer>();
  return *slot;
}

testing::PostgresServer* SharedPostgres() {
  if (PostgresSlot() == nullptr) {
    auto started = testing::PostgresServer::Start();
    if (!started.ok()) {
      ADD_FAILURE() << started.status();
      return nullptr;
    }
    PostgresSlot() = *std::move(started);
  }
  return PostgresSlot().get();
}

class PostgresEnvironment : public ::testing::Environment {
 public:
  void TearDown() override { PostgresSlot().reset(); }
};
[[maybe_unused]] auto* const kPostgresEnvironment =
    ::testing::AddGlobalTestEnvironment(new PostgresEnvironment);

class ExportStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "sqlite") {
      tmp_ = std::make_unique<testing::TempDir>("podgate-export-store");
      url_ = absl::StrCat("sqlite://", tmp_->path(), "/audit.db");
    } else {
      ASSERT_NE(SharedPostgres(), nullptr);
      static std::atomic<int> counter{0};
      auto url = SharedPostgres()->CreateDatabase(absl::StrCat("e", getpid(), "_", counter++));
      ASSERT_TRUE(url.ok()) << url.status();
      url_ = *url;
    }
    auto store = OpenStore(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }

  void Append(const std::string& chain, int n, int64_t stored_time_us = 0) {
    auto head = store_->LoadHead(chain);
    ASSERT_TRUE(head.ok()) << head.status();
    std::vector<AuditEvent> events;
    for (int i = 0; i < n; ++i) {
      events.push_back(testing::MakeEvent(absl::StrCat(chain, "-", head->sequence + i + 1)));
    }
    std::vector<const AuditEvent*> pointers;
    for (const AuditEvent& e : events) {
      pointers.push_back(&e);
    }
    ASSERT_TRUE(store_
                    ->Append(&*head, pointers,
                             stored_time_us != 0 ? stored_time_us : absl::ToUnixMicros(absl::Now()))
                    .ok());
  }

  std::unique_ptr<testing::TempDir> tmp_;
  std::string url_;
  std::unique_ptr<Store> store_;
};

TEST_P(ExportStoreTest, ReadsAChainAfterASequenceInOrderAndLimited) {
  Append("a", 5);
  Append("b", 2);
  auto rows = store_->ReadChainAfter("a", 2, 2);
  ASSERT_TRUE(rows.ok()) << rows.status();
  ASSERT_EQ(rows->size(), 2u);
  EXPECT_EQ((*rows)[0].sequence, 3);
  EXPECT_EQ((*rows)[1].sequence, 4);
  EXPECT_EQ((*rows)[1].event_id, "a-4");
  rows = store_->ReadChainAfter("a", 5, 10);
  ASSERT_TRUE(rows.ok());
  EXPECT_TRUE(rows->empty());
  auto chains = store_->ListExportChains();
  ASSERT_TRUE(chains.ok()) << chains.status();
  ASSERT_EQ(chains->size(), 2u);
  EXPECT_EQ((*chains)[0].chain_id, "a");
  EXPECT_EQ((*chains)[0].head_sequence, 5);
  EXPECT_EQ((*chains)[1].chain_id, "b");
  EXPECT_EQ((*chains)[1].head_sequence, 2);
  EXPECT_EQ((*chains)[1].checkpoint_sequence, 0);
}

TEST_P(ExportStoreTest, ListExportChainsShowsRetentionCheckpoints) {
  const int64_t old_us = absl::ToUnixMicros(absl::Now() - absl::Hours(2));
  Append("a", 4, old_us);
  Append("a", 1);
  auto removed = store_->DeleteBefore(absl::ToUnixMicros(absl::Now() - absl::Hours(1)));
  ASSERT_TRUE(removed.ok()) << removed.status();
  EXPECT_EQ(*removed, 4);
  auto chains = store_->ListExportChains();
  ASSERT_TRUE(chains.ok());
  ASSERT_EQ(chains->size(), 1u);
  EXPECT_EQ((*chains)[0].head_sequence, 5);
  EXPECT_EQ((*chains)[0].checkpoint_sequence, 4);
}

TEST_P(ExportStoreTest, CursorsMoveOnlyForwardAndOnlyUnderTheLease) {
  auto lease = store_->AcquireExportLease("siem", "replica-a", absl::Seconds(30));
  ASSERT_TRUE(lease.ok()) << lease.status();
  ASSERT_TRUE(lease->held);
  const int64_t epoch = lease->epoch;
  EXPECT_GT(epoch, 0);
  // Renewing keeps the epoch; another owner cannot take a live lease.
  auto renewed = store_->AcquireExportLease("siem", "replica-a", absl::Seconds(30));
  ASSERT_TRUE(renewed.ok());
  EXPECT_TRUE(renewed->held);
  EXPECT_EQ(renewed->epoch, epoch);
  auto other = store_->AcquireExportLease("siem", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->held);
  EXPECT_EQ(other->owner, "replica-a");
  // Another sink's lease is independent.
  auto other_sink = store_->AcquireExportLease("archive", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(other_sink.ok());
  EXPECT_TRUE(other_sink->held);

  ASSERT_TRUE(store_->AdvanceExportCursors("siem", "replica-a", epoch, {{"a", 10}, {"b", 3}}).ok());
  ASSERT_TRUE(store_->AdvanceExportCursors("siem", "replica-a", epoch, {{"a", 7}}).ok());
  auto cursors = store_->LoadExportCursors("siem");
  ASSERT_TRUE(cursors.ok()) << cursors.status();
  EXPECT_EQ((*cursors)["a"], 10);  // never back
  EXPECT_EQ((*cursors)["b"], 3);
  EXPECT_TRUE(store_->LoadExportCursors("archive")->empty());

  // A wrong owner or a stale epoch moves nothing.
  absl::Status fenced = store_->AdvanceExportCursors("siem", "replica-b", epoch, {{"a", 20}});
  EXPECT_EQ(fenced.code(), absl::StatusCode::kFailedPrecondition) << fenced;
  fenced = store_->AdvanceExportCursors("siem", "replica-a", epoch + 1, {{"a", 20}});
  EXPECT_EQ(fenced.code(), absl::StatusCode::kFailedPrecondition) << fenced;
  EXPECT_EQ((*store_->LoadExportCursors("siem"))["a"], 10);

  // Released: the other replica takes it with a new epoch; the old holder is fenced out.
  ASSERT_TRUE(store_->ReleaseExportLease("siem", "replica-a").ok());
  auto taken = store_->AcquireExportLease("siem", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(taken.ok());
  ASSERT_TRUE(taken->held);
  EXPECT_GT(taken->epoch, epoch);
  fenced = store_->AdvanceExportCursors("siem", "replica-a", epoch, {{"a", 30}});
  EXPECT_EQ(fenced.code(), absl::StatusCode::kFailedPrecondition);
  ASSERT_TRUE(store_->AdvanceExportCursors("siem", "replica-b", taken->epoch, {{"a", 11}}).ok());
  EXPECT_EQ((*store_->LoadExportCursors("siem"))["a"], 11);
}

TEST_P(ExportStoreTest, AnExpiredLeaseGoesToTheNextOwnerAndFencesTheOld) {
  auto lease = store_->AcquireExportLease("siem", "replica-a", absl::Milliseconds(300));
  ASSERT_TRUE(lease.ok() && lease->held);
  absl::SleepFor(absl::Milliseconds(600));
  // Expired: the old holder cannot move the cursor even before anyone takes over.
  EXPECT_EQ(store_->AdvanceExportCursors("siem", "replica-a", lease->epoch, {{"a", 1}}).code(),
            absl::StatusCode::kFailedPrecondition);
  auto taken = store_->AcquireExportLease("siem", "replica-b", absl::Seconds(30));
  ASSERT_TRUE(taken.ok());
  EXPECT_TRUE(taken->held);
  EXPECT_GT(taken->epoch, lease->epoch);
}

INSTANTIATE_TEST_SUITE_P(Stores, ExportStoreTest, ::testing::Values("sqlite", "postgresql"),
                         [](const auto& info) { return info.param; });

// ---- the exporter on a real SQLite store and a real file ----

class ExporterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto store = OpenStore(absl::StrCat("sqlite://", dir_.path(), "/audit.db"));
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    path_ = dir_.path() + "/export.log";
  }

  void Start(const std::string& extra =
                 R"("maxWait":"20ms","initialBackoff":"10ms","maxBackoff":"50ms")") {
    StartWith(absl::StrCat(R"({"name":"archive","file":{"path":")", path_, R"("},"maxBatch":100,)",
                           extra, "}"));
  }

  // One sink, given as its JSON object.
  void StartWith(const std::string& sink_json) {
    auto settings = ParseExportConfig(absl::StrCat(R"({"sinks":[)", sink_json, "]}"));
    ASSERT_TRUE(settings.ok()) << settings.status();
    auto sinks = MakeSinks(*std::move(settings));
    ASSERT_TRUE(sinks.ok()) << sinks.status();
    ExporterOptions options;
    options.owner = "replica-a";
    options.poll_interval = absl::Milliseconds(20);
    exporter_ = std::make_unique<Exporter>(store_.get(), *std::move(sinks), options, &metrics_);
  }

  void Append(const std::string& chain, int n, int64_t stored_time_us = 0) {
    auto head = store_->LoadHead(chain);
    ASSERT_TRUE(head.ok());
    std::vector<AuditEvent> events;
    for (int i = 0; i < n; ++i) {
      events.push_back(testing::MakeEvent(absl::StrCat(chain, "-", head->sequence + i + 1)));
    }
    std::vector<const AuditEvent*> pointers;
    for (const AuditEvent& e : events) {
      pointers.push_back(&e);
    }
    ASSERT_TRUE(store_
                    ->Append(&*head, pointers,
                             stored_time_us != 0 ? stored_time_us : absl::ToUnixMicros(absl::Now()))
                    .ok());
    if (exporter_ != nullptr) {
      exporter_->NotifyCommit();
    }
  }

  // (chain, sequence) of each record line, and the checkpoint lines.
  std::vector<std::pair<std::string, int64_t>> Records() {
    std::vector<std::pair<std::string, int64_t>> out;
    for (const std::string& line : Lines(path_)) {
      auto json = nlohmann::json::parse(line);
      if (json["type"] == "record") {
        out.emplace_back(json["chainId"].get<std::string>(),
                         std::stoll(json["sequence"].get<std::string>()));
      } else {
        out.emplace_back(absl::StrCat("checkpoint:", json["chainId"].get<std::string>()),
                         std::stoll(json["sequence"].get<std::string>()));
      }
    }
    return out;
  }

  bool WaitFor(const std::function<bool()>& done, absl::Duration timeout = absl::Seconds(20)) {
    const absl::Time deadline = absl::Now() + timeout;
    while (absl::Now() < deadline) {
      if (done()) {
        return true;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    return done();
  }

  double Metric(const std::string& name, const std::string& sink = "archive") {
    for (const auto& family : registry_.Collect()) {
      if (family.name != name) {
        continue;
      }
      for (const auto& m : family.metric) {
        for (const auto& label : m.label) {
          if (label.name == "sink" && label.value == sink) {
            return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
          }
        }
      }
    }
    return -1;
  }

  testing::TempDir dir_{"podgate-exporter"};
  std::string path_;
  std::unique_ptr<Store> store_;
  prometheus::Registry registry_;
  ExportMetrics metrics_{registry_};
  std::unique_ptr<Exporter> exporter_;
};

TEST_F(ExporterTest, DeliversEveryRecordInChainOrderAndStoresTheCursor) {
  Append("a", 250);
  Append("b", 30);
  Start();
  Append("a", 20);
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 300; })) << Records().size();
  std::map<std::string, int64_t> last;
  for (const auto& [chain, sequence] : Records()) {
    EXPECT_EQ(sequence, last[chain] + 1) << chain;
    last[chain] = sequence;
  }
  EXPECT_EQ(last["a"], 270);
  EXPECT_EQ(last["b"], 30);
  ASSERT_TRUE(WaitFor([&] {
    auto cursors = store_->LoadExportCursors("archive");
    return cursors.ok() && (*cursors)["a"] == 270 && (*cursors)["b"] == 30;
  }));
  EXPECT_EQ(Metric("podgate_audit_export_delivered_records_total"), 300);
  EXPECT_EQ(Metric("podgate_audit_export_lease_held"), 1);
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_lag_records") == 0; }));

  // A restart continues from the cursor: nothing delivered twice after a clean stop.
  exporter_.reset();
  Append("b", 5);
  Start();
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 305; }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ(Records().size(), 305u);
  EXPECT_EQ(Records().back(), std::make_pair(std::string("b"), int64_t{35}));
}

// The real file sink, declaring an unconfirmed window as the syslog sink does (each delivered
// batch counted as 1000 bytes).
class WindowedFileSink final : public Sink {
 public:
  WindowedFileSink(std::unique_ptr<Sink> file, size_t window)
      : file_(std::move(file)), window_(window) {}
  DeliveryResult Deliver(absl::Span<const ExportItem> batch) override {
    DeliveryResult result = file_->Deliver(batch);
    result.bytes = 1000;
    return result;
  }
  size_t UnconfirmedWindowBytes() const override { return window_; }

 private:
  std::unique_ptr<Sink> file_;
  size_t window_;
};

// A sink whose receiver may not have processed what it acknowledged: the stored cursor stays a
// window's worth of whole batches behind what was delivered, the lag follows the delivered
// records, and a restart (empty memory) re-sends exactly that window.
TEST_F(ExporterTest, ASinkWithAnUnconfirmedWindowStoresTheCursorAWindowBehind) {
  auto settings = ParseExportConfig(absl::StrCat(
      R"({"sinks":[{"name":"archive","file":{"path":")", path_,
      R"("},"maxBatch":10,"maxWait":"20ms","initialBackoff":"10ms","maxBackoff":"50ms"}]})"));
  ASSERT_TRUE(settings.ok()) << settings.status();
  auto start = [&] {
    auto sinks = MakeSinks(*settings);
    ASSERT_TRUE(sinks.ok()) << sinks.status();
    (*sinks)[0].sink = std::make_unique<WindowedFileSink>(std::move((*sinks)[0].sink), 3000);
    ExporterOptions options;
    options.owner = "replica-a";
    options.poll_interval = absl::Milliseconds(20);
    exporter_ = std::make_unique<Exporter>(store_.get(), *std::move(sinks), options, &metrics_);
  };
  start();
  // Five batches of ten, one after the other.
  for (int i = 0; i < 5; ++i) {
    Append("a", 10);
    ASSERT_TRUE(WaitFor([&] { return Records().size() == static_cast<size_t>(10 * (i + 1)); }))
        << Records().size();
  }
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_lag_records") == 0; }));
  // Batches 3..5 fill the 3000-byte window; 1 and 2 are outside it.
  ASSERT_TRUE(WaitFor([&] {
    auto cursors = store_->LoadExportCursors("archive");
    return cursors.ok() && (*cursors)["a"] == 20;
  }));
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_EQ((*store_->LoadExportCursors("archive"))["a"], 20);
  EXPECT_EQ(Metric("podgate_audit_export_lag_records"), 0);
  EXPECT_EQ(Records().size(), 50u) << "nothing is sent twice while the process lives";

  // A new process knows nothing of the window: it re-sends 21..50, then continues.
  exporter_.reset();
  Append("a", 5);
  start();
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 85; })) << Records().size();
  const auto records = Records();
  EXPECT_EQ(records[50], std::make_pair(std::string("a"), int64_t{21}));
  EXPECT_EQ(records.back(), std::make_pair(std::string("a"), int64_t{55}));
}

TEST_F(ExporterTest, RetentionBeforeDeliveryIsSkippedAndCounted) {
  Append("a", 6, absl::ToUnixMicros(absl::Now() - absl::Hours(2)));
  Append("a", 2);
  ASSERT_EQ(*store_->DeleteBefore(absl::ToUnixMicros(absl::Now() - absl::Hours(1))), 6);
  Start();
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 2; }));
  EXPECT_EQ(Records()[0].second, 7);
  EXPECT_EQ(Metric("podgate_audit_export_lost_records_total"), 6);
}

TEST_F(ExporterTest, ACheckpointFollowsItsChainsRecordsNewestOnly) {
  Start(R"("maxWait":"20ms")");
  podgate::audit::v1::SignedCheckpoint early;
  early.set_chain_id("a");
  early.set_sequence(3);
  podgate::audit::v1::SignedCheckpoint later = early;
  later.set_sequence(5);
  exporter_->PublishCheckpoint(early);
  exporter_->PublishCheckpoint(later);  // replaces the pending one
  Append("a", 5);
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 6; })) << Records().size();
  const auto records = Records();
  EXPECT_EQ(records[4], std::make_pair(std::string("a"), int64_t{5}));
  EXPECT_EQ(records[5], std::make_pair(std::string("checkpoint:a"), int64_t{5}));
  // Counted once Deliver returned (the lines are in the file before its fsync ends).
  EXPECT_TRUE(
      WaitFor([&] { return Metric("podgate_audit_export_delivered_checkpoints_total") == 1; }));
  absl::SleepFor(absl::Milliseconds(100));
  EXPECT_EQ(Metric("podgate_audit_export_delivered_checkpoints_total"), 1);
}

TEST_F(ExporterTest, BlockingModeRefusesWhileTheSinkFailsAndResumes) {
  Start(
      R"("maxWait":"20ms","initialBackoff":"10ms","maxBackoff":"50ms","blockingMaxLagRecords":"10")");
  Append("a", 5);
  ASSERT_TRUE(WaitFor([&] { return Records().size() == 5; }));
  EXPECT_TRUE(exporter_->Admission().ok());
  // The file's place taken by a folder: deliveries fail.
  std::filesystem::remove(path_);
  std::filesystem::create_directory(path_);
  Append("a", 20);
  ASSERT_TRUE(WaitFor([&] { return !exporter_->Admission().ok(); }));
  absl::Status refused = exporter_->Admission();
  EXPECT_EQ(refused.code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(refused.message(), HasSubstr("export sink archive lags 20 records (bound 10)"));
  EXPECT_EQ(Metric("podgate_audit_export_blocking"), 1);
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_retries_total") > 0; }));
  EXPECT_GT(Metric("podgate_audit_export_failures_total"), 0);
  std::filesystem::remove(path_);
  ASSERT_TRUE(WaitFor([&] { return exporter_->Admission().ok(); }));
  ASSERT_TRUE(WaitFor([&] { return Lines(path_).size() == 20; }));
  EXPECT_EQ(Metric("podgate_audit_export_blocking"), 0);
}

TEST_F(ExporterTest, WithoutTheLeaseNothingIsDelivered) {
  ASSERT_TRUE(store_->AcquireExportLease("archive", "replica-b", absl::Seconds(60))->held);
  Append("a", 3);
  Start();
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(std::filesystem::exists(path_));
  EXPECT_EQ(Metric("podgate_audit_export_lease_held"), 0);
  EXPECT_EQ(Metric("podgate_audit_export_lag_records"), 3);
  ASSERT_TRUE(store_->ReleaseExportLease("archive", "replica-b").ok());
  ASSERT_TRUE(WaitFor([&] { return std::filesystem::exists(path_) && Lines(path_).size() == 3; }));
}

// ---- batching, back-off, Retry-After and lag against a real loopback webhook receiver ----

class ExporterWebhookTest : public ExporterTest {
 protected:
  void SetUp() override {
    ExporterTest::SetUp();
    auto receiver = podgate::testing::WebhookReceiver::Start({});
    ASSERT_TRUE(receiver.ok()) << receiver.status();
    receiver_ = *std::move(receiver);
  }
  // The exporter goes first: its thread may be delivering to the receiver.
  void TearDown() override { exporter_.reset(); }

  // A webhook sink "siem" with `fields` (maxBatch, maxWait, back-off) added.
  void StartWebhook(const std::string& fields) {
    StartWith(absl::StrCat(R"({"name":"siem",)", fields, R"(,"webhook":{"url":")", receiver_->url(),
                           R"(","timeout":"5s"}})"));
  }

  // (chain, sequence) of each record item of a request.
  static std::vector<std::pair<std::string, int64_t>> Keys(
      const podgate::testing::ReceivedRequest& request) {
    std::vector<std::pair<std::string, int64_t>> out;
    for (const nlohmann::json& item : request.items) {
      out.emplace_back(item["chainId"].get<std::string>(),
                       std::stoll(item["sequence"].get<std::string>()));
    }
    return out;
  }

  // The gaps between successive requests' arrivals.
  std::vector<absl::Duration> Gaps() const {
    std::vector<absl::Duration> gaps;
    const auto requests = receiver_->Requests();
    for (size_t i = 1; i < requests.size(); ++i) {
      gaps.push_back(requests[i].received - requests[i - 1].received);
    }
    return gaps;
  }

  std::unique_ptr<podgate::testing::WebhookReceiver> receiver_;
};

TEST_F(ExporterWebhookTest, BatchesHoldAtMostMaxBatchAndABacklogGoesInFullBatches) {
  // 520 records waiting on two chains; maxWait is long, so nothing below may have waited for it.
  Append("a", 330);
  Append("b", 190);
  StartWebhook(R"("maxBatch":50,"maxWait":"10s")");
  ASSERT_TRUE(receiver_->WaitForItems(520, absl::Seconds(8))) << receiver_->ItemCount();
  const auto requests = receiver_->Requests();
  ASSERT_EQ(requests.size(), 11u);
  std::map<std::string, int64_t> last;
  for (size_t i = 0; i < requests.size(); ++i) {
    SCOPED_TRACE(absl::StrCat("request ", i));
    EXPECT_EQ(requests[i].answered, 200);
    // Ten full batches, then the rest of the backlog at once (it is not a partial batch
    // waiting for more records: more are already stored).
    EXPECT_EQ(requests[i].items.size(), i < 10 ? 50u : 20u);
    for (const auto& [chain, sequence] : Keys(requests[i])) {
      EXPECT_EQ(sequence, last[chain] + 1) << chain;
      last[chain] = sequence;
    }
  }
  EXPECT_EQ(last["a"], 330);
  EXPECT_EQ(last["b"], 190);

  // Live records: a commit of 3 x maxBatch goes as three full batches, never more than maxBatch.
  receiver_->Clear();
  Append("a", 150);
  ASSERT_TRUE(receiver_->WaitForItems(150, absl::Seconds(5)));
  ASSERT_EQ(receiver_->RequestCount(), 3u);
  for (const auto& request : receiver_->Requests()) {
    EXPECT_EQ(request.items.size(), 50u);
  }
  EXPECT_TRUE(WaitFor(
      [&] { return Metric("podgate_audit_export_delivered_records_total", "siem") == 670; }));
}

TEST_F(ExporterWebhookTest, APartialBatchWaitsMaxWaitThenGoesWhole) {
  StartWebhook(R"("maxBatch":50,"maxWait":"1500ms")");
  absl::SleepFor(absl::Milliseconds(100));  // the exporter is idle, caught up
  const absl::Time first = absl::Now();
  Append("a", 1);
  absl::SleepFor(absl::Milliseconds(300));
  Append("a", 2);  // joins the waiting batch
  ASSERT_TRUE(receiver_->WaitForItems(3, absl::Seconds(5)));
  auto requests = receiver_->Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].items.size(), 3u);
  const absl::Duration waited = requests[0].received - first;
  EXPECT_GE(waited, absl::Milliseconds(1500)) << "sent before maxWait";
  EXPECT_LT(waited, absl::Milliseconds(1500 + 1000)) << "held long after maxWait";

  // maxBatch records do not wait.
  receiver_->Clear();
  const absl::Time full = absl::Now();
  Append("a", 50);
  ASSERT_TRUE(receiver_->WaitForItems(50, absl::Seconds(5)));
  requests = receiver_->Requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_LT(requests[0].received - full, absl::Milliseconds(1000));
}

TEST_F(ExporterWebhookTest, RetryAfterSecondsIsWaitedBeforeTheNextAttempt) {
  // The back-off alone would retry after ~10 ms.
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Status(503, "2").ForRequests(1));
  StartWebhook(R"("maxBatch":50,"maxWait":"10ms","initialBackoff":"10ms","maxBackoff":"50ms")");
  Append("a", 3);
  ASSERT_TRUE(receiver_->WaitForItems(3, absl::Seconds(10)));
  const auto requests = receiver_->Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].answered, 503);
  EXPECT_EQ(requests[1].answered, 200);
  EXPECT_EQ(Keys(requests[1]), Keys(requests[0])) << "the same batch again";
  const absl::Duration gap = requests[1].received - requests[0].received;
  EXPECT_GE(gap, absl::Seconds(2)) << "Retry-After: 2 not honoured";
  EXPECT_LT(gap, absl::Seconds(3));
  EXPECT_EQ(Metric("podgate_audit_export_failures_total", "siem"), 1);
  EXPECT_EQ(Metric("podgate_audit_export_retries_total", "siem"), 1);
}

TEST_F(ExporterWebhookTest, ABackOffLongerThanRetryAfterWins) {
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Status(429, "1").ForRequests(1));
  StartWebhook(R"("maxBatch":50,"maxWait":"10ms","initialBackoff":"2s","maxBackoff":"2s")");
  Append("a", 1);
  ASSERT_TRUE(receiver_->WaitForItems(1, absl::Seconds(10)));
  const std::vector<absl::Duration> gaps = Gaps();
  ASSERT_EQ(gaps.size(), 1u);
  EXPECT_GE(gaps[0], absl::Milliseconds(1600)) << "2s back-off -20%, not Retry-After: 1";
  EXPECT_LT(gaps[0], absl::Milliseconds(2400 + 500));
}

TEST_F(ExporterWebhookTest, FailuresBackOffDoublingWithinTheJitterUpToTheCap) {
  constexpr int kFailures = 9;
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Status(500).ForRequests(kFailures));
  StartWebhook(R"("maxBatch":50,"maxWait":"10ms","initialBackoff":"100ms","maxBackoff":"800ms")");
  Append("a", 1);
  ASSERT_TRUE(receiver_->WaitForItems(1, absl::Seconds(14)));
  const std::vector<absl::Duration> gaps = Gaps();
  ASSERT_EQ(gaps.size(), static_cast<size_t>(kFailures));
  // Delay i is min(100ms * 2^i, 800ms) times a factor in [0.8, 1.2]; the gap adds the request's
  // round trip and the scheduler's lateness on a busy machine (never less than the delay).
  constexpr absl::Duration kLate = absl::Milliseconds(250);
  absl::Duration capped_min = absl::InfiniteDuration();
  absl::Duration capped_max = absl::ZeroDuration();
  for (int i = 0; i < kFailures; ++i) {
    const absl::Duration delay =
        std::min(absl::Milliseconds(100) * (1 << i), absl::Milliseconds(800));
    SCOPED_TRACE(absl::StrCat("retry ", i + 1, ": nominal ", absl::FormatDuration(delay), ", gap ",
                              absl::FormatDuration(gaps[i])));
    EXPECT_GE(gaps[i], delay * 0.8);
    EXPECT_LE(gaps[i], delay * 1.2 + kLate);
    if (delay == absl::Milliseconds(800)) {
      capped_min = std::min(capped_min, gaps[i]);
      capped_max = std::max(capped_max, gaps[i]);
    }
  }
  std::string measured;
  for (absl::Duration gap : gaps) {
    absl::StrAppend(&measured, measured.empty() ? "" : ", ", absl::ToInt64Milliseconds(gap));
  }
  std::cout << "gaps between attempts (ms): " << measured << "\n";
  // Six delays at the cap: jittered, not one fixed value (uniform over 320 ms: six within
  // 10 ms of each other is a chance of about 2e-7).
  EXPECT_GT(capped_max - capped_min, absl::Milliseconds(10));
  EXPECT_EQ(Metric("podgate_audit_export_failures_total", "siem"), kFailures);
  EXPECT_EQ(Metric("podgate_audit_export_retries_total", "siem"), kFailures);
}

TEST_F(ExporterWebhookTest, AResetAndAHungDeliveryAreRetriedAfterTheBackOff) {
  // The sink's own timeout (200 ms) ends the hung request; each failure waits its back-off.
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Reset().ForRequests(1));
  StartWith(absl::StrCat(
      R"({"name":"siem","maxBatch":50,"maxWait":"10ms","initialBackoff":"300ms",)",
      R"("maxBackoff":"300ms","webhook":{"url":")", receiver_->url(), R"(","timeout":"200ms"}})"));
  Append("a", 2);
  ASSERT_TRUE(receiver_->WaitForItems(2, absl::Seconds(5)));
  receiver_->Clear();
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Hang().ForRequests(1));
  Append("a", 2);
  ASSERT_TRUE(receiver_->WaitForItems(2, absl::Seconds(5)));
  const auto requests = receiver_->Requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].answered, 0);  // hung
  EXPECT_EQ(requests[1].answered, 200);
  EXPECT_EQ(Keys(requests[1]), Keys(requests[0]));
  // The 200 ms timeout, then the 300 ms back-off (-20%).
  EXPECT_GE(requests[1].received - requests[0].received, absl::Milliseconds(200 + 240));
  EXPECT_EQ(Metric("podgate_audit_export_failures_total", "siem"), 2);
  EXPECT_EQ(Metric("podgate_audit_export_retries_total", "siem"), 2);
}

TEST_F(ExporterWebhookTest, LagSecondsGrowsWhileTheSinkIsDownAndIsZeroOnceDrained) {
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Status(503));
  StartWebhook(R"("maxBatch":50,"maxWait":"10ms","initialBackoff":"50ms","maxBackoff":"200ms")");
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_lease_held", "siem") == 1; }));
  EXPECT_EQ(Metric("podgate_audit_export_lag_seconds", "siem"), 0);
  const absl::Time stored = absl::Now();
  Append("a", 5);
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_failures_total", "siem") >= 2; }));
  EXPECT_GT(Metric("podgate_audit_export_lag_seconds", "siem"), 0);
  EXPECT_EQ(Metric("podgate_audit_export_lag_records", "siem"), 5);
  // The oldest waiting record's age, not the age it had when its batch was first read.
  absl::SleepFor(stored + absl::Milliseconds(1500) - absl::Now());
  ASSERT_TRUE(WaitFor([&] { return Metric("podgate_audit_export_lag_seconds", "siem") >= 1.0; },
                      absl::Seconds(3)))
      << Metric("podgate_audit_export_lag_seconds", "siem");
  EXPECT_LE(Metric("podgate_audit_export_lag_seconds", "siem"),
            absl::ToDoubleSeconds(absl::Now() - stored) + 0.1);
  receiver_->SetBehavior(podgate::testing::WebhookBehavior::Ok());
  ASSERT_TRUE(receiver_->WaitForItems(5, absl::Seconds(5)));
  ASSERT_TRUE(WaitFor([&] {
    return Metric("podgate_audit_export_lag_seconds", "siem") == 0 &&
           Metric("podgate_audit_export_lag_records", "siem") == 0;
  }));
}

}  // namespace
}  // namespace podgate::audit::exporting
