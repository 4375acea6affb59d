// Export with the real podgate-audit binary: a file sink receives every record at least once and
// in chain order while audit is SIGKILLed mid-export and restarted twice (SQLite); two replicas
// on one real PostgreSQL share a sink through the lease (one delivers at a time, the other takes
// over when the holder is killed); a bad export configuration stops start-up with one line.
#include <signal.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/synchronization/mutex.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "podgate/audit/v1/audit.grpc.pb.h"
#include "support/grpc_health.h"
#include "support/prometheus_text.h"
#include "support/rsyslog.h"
#include "support/subprocess.h"
#include "support/test_pki.h"
#include "support/webhook_receiver.h"

namespace podgate::audit {
namespace {

using ::podgate::audit::v1::AuditService;
using ::podgate::testing::Subprocess;

struct Running {
  std::unique_ptr<Subprocess> process;
  std::unique_ptr<AuditService::Stub> stub;
  int metrics_port = 0;
};

Running StartAudit(const std::string& store_url, const std::string& chain_id,
                   const std::string& export_config, std::vector<std::string> extra = {}) {
  Running running;
  std::vector<std::string> args = {"--grpc_address=127.0.0.1:0", "--metrics_address=127.0.0.1:0",
                                   "--store=" + store_url,       "--chain_id=" + chain_id,
                                   "--drain_timeout=1s",         "--export_config=" + export_config,
                                   "--export_poll_interval=50ms"};
  args.insert(args.end(), extra.begin(), extra.end());
  auto process = Subprocess::Start(PODGATE_AUDIT_BIN, args);
  EXPECT_TRUE(process.ok()) << process.status();
  running.process = *std::move(process);
  auto line = running.process->WaitForLine("\"msg\":\"serving\"", absl::Seconds(20));
  EXPECT_TRUE(line.ok()) << line.status() << "\n" << absl::StrJoin(running.process->Lines(), "\n");
  if (line.ok()) {
    const nlohmann::json j = nlohmann::json::parse(*line);
    running.stub = AuditService::NewStub(podgate::testing::LocalChannel(j["grpc_port"]));
    running.metrics_port = j["metrics_port"];
  }
  return running;
}

std::string WriteConfig(const std::string& dir, const std::string& name, const std::string& json) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path) << json;
  return path;
}

std::string FileSinkConfig(const std::string& sink, const std::string& path) {
  return absl::StrCat(R"({"sinks":[{"name":")", sink, R"(","maxBatch":500,"maxWait":"50ms",)",
                      R"("initialBackoff":"20ms","maxBackoff":"200ms","file":{"path":")", path,
                      R"("}}]})");
}

// A gRPC client recording events on one stream with a bounded window of unacked events, as
// exec does, until stopped or the stream breaks.
class Load {
 public:
  // Records up to `limit` events.
  Load(AuditService::Stub* stub, std::string prefix, int64_t limit = INT64_MAX)
      : prefix_(std::move(prefix)), limit_(limit) {
    thread_ = std::thread([this, stub] { Run(stub); });
  }
  ~Load() { Stop(); }
  void Stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
  }
  int64_t acked() const { return acked_.load(); }

 private:
  void Run(AuditService::Stub* stub) {
    grpc::ClientContext ctx;
    auto stream = stub->Record(&ctx);
    std::thread reader([&] {
      podgate::audit::v1::RecordResponse response;
      while (stream->Read(&response)) {
        acked_ += response.ack().ids_size();
      }
    });
    for (int64_t i = 0; !stop_ && i < limit_; ++i) {
      while (!stop_ && i - acked_.load() >= 500) {
        absl::SleepFor(absl::Milliseconds(1));
      }
      podgate::audit::v1::RecordRequest request;
      *request.mutable_event() = testing::MakeEvent(absl::StrCat(prefix_, "-", i));
      if (!stream->Write(request)) {
        break;
      }
    }
    while (!stop_ && acked_.load() < limit_) {
      absl::SleepFor(absl::Milliseconds(1));
    }
    ctx.TryCancel();
    reader.join();
    stream->Finish().IgnoreError();
  }

  const std::string prefix_;
  const int64_t limit_;
  std::atomic<bool> stop_{false};
  std::atomic<int64_t> acked_{0};
  std::thread thread_;
};

struct Line {
  std::string chain;
  int64_t sequence = 0;
};

std::vector<Line> ReadSink(const std::string& path) {
  std::vector<Line> lines;
  std::ifstream in(path);
  for (std::string text; std::getline(in, text);) {
    auto json = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
    if (json.is_discarded() || json["type"] != "record") {
      continue;
    }
    lines.push_back(
        {json["chainId"].get<std::string>(), std::stoll(json["sequence"].get<std::string>())});
  }
  return lines;
}

int64_t ChainHead(AuditService::Stub& stub, const std::string& chain) {
  grpc::ClientContext ctx;
  podgate::audit::v1::VerifyResponse response;
  EXPECT_TRUE(stub.Verify(&ctx, podgate::audit::v1::VerifyRequest(), &response).ok());
  for (const auto& c : response.chains()) {
    if (c.chain_id() == chain) {
      return c.records();
    }
  }
  return 0;
}

// What the file holds about each chain: every sequence 1..head present, never a gap forward
// (each line follows its chain's previous line or goes back to re-deliver), and how many lines
// repeat an earlier one.
struct Delivery {
  std::map<std::string, std::set<int64_t>> seen;
  int64_t duplicates = 0;
  int64_t rewinds = 0;
  int64_t gaps = 0;
};

Delivery Check(const std::vector<Line>& lines) {
  Delivery d;
  std::map<std::string, int64_t> last;
  for (const Line& line : lines) {
    int64_t& prev = last[line.chain];
    if (line.sequence > prev + 1) {
      ++d.gaps;
    } else if (line.sequence <= prev) {
      ++d.rewinds;
    }
    if (!d.seen[line.chain].insert(line.sequence).second) {
      ++d.duplicates;
    }
    prev = line.sequence;  // a re-delivery continues from here, in order
  }
  return d;
}

bool WaitUntil(const std::function<bool()>& done, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (absl::Now() < deadline) {
    if (done()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return done();
}

TEST(AuditExportProcessTest, FileSinkGetsEveryRecordInOrderAcrossTwoKills) {
  testing::TempDir tmp("podgate-audit-export-crash");
  const std::string url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
  const std::string sink_path = tmp.path() + "/export.log";
  const std::string config =
      WriteConfig(tmp.path(), "export.json", FileSinkConfig("archive", sink_path));
  constexpr int64_t kTotal = 20000;
  int64_t acked = 0;
  Running audit = StartAudit(url, "crash-chain", config);
  ASSERT_NE(audit.stub, nullptr);
  // Two kills while records are being produced and exported, then the rest.
  for (int round = 0; round < 3; ++round) {
    const int64_t target = round < 2 ? (round + 1) * kTotal / 3 : kTotal;
    auto load = std::make_unique<Load>(audit.stub.get(), absl::StrCat("r", round));
    ASSERT_TRUE(WaitUntil([&] { return acked + load->acked() >= target; }, absl::Seconds(90)))
        << "round " << round << " acked " << acked + load->acked();
    if (round < 2) {
      // Mid-export: the sink is behind or delivering when the kill lands.
      audit.process->Signal(SIGKILL);
      ASSERT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 128 + SIGKILL);
      load->Stop();
      acked += load->acked();
      std::cout << "killed after " << acked << " acked, " << ReadSink(sink_path).size()
                << " lines exported\n";
      audit = StartAudit(url, "crash-chain", config);
      ASSERT_NE(audit.stub, nullptr);
    } else {
      load->Stop();
      acked += load->acked();
    }
  }
  // Events queued before the last stream was cancelled still commit: wait for a stable head.
  int64_t head = ChainHead(*audit.stub, "crash-chain");
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(absl::Milliseconds(300));
    const int64_t again = ChainHead(*audit.stub, "crash-chain");
    if (again == head) {
      break;
    }
    head = again;
  }
  ASSERT_GE(head, kTotal);
  ASSERT_TRUE(WaitUntil(
      [&] {
        Delivery d = Check(ReadSink(sink_path));
        return static_cast<int64_t>(d.seen["crash-chain"].size()) >= head;
      },
      absl::Seconds(60)));
  const std::vector<Line> lines = ReadSink(sink_path);
  Delivery d = Check(lines);
  EXPECT_EQ(d.gaps, 0) << "a record came before its predecessor was delivered";
  ASSERT_EQ(static_cast<int64_t>(d.seen["crash-chain"].size()), head);
  EXPECT_EQ(*d.seen["crash-chain"].begin(), 1);
  EXPECT_EQ(*d.seen["crash-chain"].rbegin(), head);
  // Duplicates only around the kills: at most one re-delivery run per kill, each at most the
  // batches in flight (one batch of 500 and what the cursor had not stored yet).
  EXPECT_LE(d.rewinds, 2);
  EXPECT_LE(d.duplicates, 2 * 500);
  std::cout << "stored " << head << " records (" << acked << " acked), file lines " << lines.size()
            << ", duplicates " << d.duplicates << " in " << d.rewinds << " re-deliveries\n";
  EXPECT_EQ(podgate::testing::MetricSample(audit.metrics_port,
                                           "podgate_audit_export_lag_records{sink=\"archive\"}"),
            0);
  audit.process->Signal(SIGTERM);
  EXPECT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 0);
}

// The records a syslog receiver got, in arrival order (the ids from the structured data).
std::vector<Line> SyslogLines(const podgate::testing::RsyslogServer& rsyslog) {
  std::vector<Line> lines;
  for (const std::string& raw : rsyslog.RawMessages()) {
    absl::StatusOr<podgate::testing::SyslogMessage> m = podgate::testing::ParseRfc5424(raw);
    if (!m.ok() || m->msgid == "checkpoint") {
      continue;
    }
    const std::string sequence = m->Param("podgate@32473", "sequence");
    if (sequence.empty()) {
      continue;
    }
    lines.push_back({m->Param("podgate@32473", "chainId"), std::stoll(sequence)});
  }
  return lines;
}

// The records a webhook receiver got, in arrival order (requests in order, items in order).
std::vector<Line> WebhookLines(const podgate::testing::WebhookReceiver& receiver) {
  std::vector<Line> lines;
  for (const nlohmann::json& item : receiver.Items()) {
    if (item.value("type", "") != "record") {
      continue;
    }
    lines.push_back(
        {item["chainId"].get<std::string>(), std::stoll(item["sequence"].get<std::string>())});
  }
  return lines;
}

// The issue's whole scenario: three sinks (file, syslog into a real rsyslogd, a webhook) while
// 20,000 records are produced, audit is SIGKILLed and restarted twice, rsyslogd is restarted and
// the webhook answers 500 for 10 s. Every record reaches every sink, in chain order, none missing;
// duplicates only around the failures, counted.
TEST(AuditExportProcessTest, EverySinkGetsEveryRecordAcrossKillsRestartsAndErrors) {
  testing::TempDir tmp("podgate-audit-export-all");
  absl::StatusOr<podgate::testing::TestPki> pki =
      podgate::testing::MakeTestPki(podgate::testing::MakeTempDir("export-all-pki"));
  ASSERT_TRUE(pki.ok()) << pki.status();
  absl::StatusOr<std::unique_ptr<podgate::testing::RsyslogServer>> rsyslog =
      podgate::testing::RsyslogServer::Start(*pki);
  ASSERT_TRUE(rsyslog.ok()) << rsyslog.status();
  absl::StatusOr<std::unique_ptr<podgate::testing::WebhookReceiver>> webhook =
      podgate::testing::WebhookReceiver::Start({});
  ASSERT_TRUE(webhook.ok()) << webhook.status();

  const std::string url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
  const std::string file_path = tmp.path() + "/export.log";
  const std::string retry =
      R"("maxBatch":500,"maxWait":"50ms","initialBackoff":"20ms","maxBackoff":"500ms")";
  const std::string config = WriteConfig(
      tmp.path(), "export.json",
      absl::StrCat(R"({"sinks":[)",  //
                   R"({"name":"archive",)", retry, R"(,"file":{"path":")", file_path, R"("}},)",
                   R"({"name":"siem",)", retry, R"(,"syslog":{"address":"127.0.0.1:)",
                   (*rsyslog)->tcp_port(), R"(","transport":"tcp"}},)",  //
                   R"({"name":"events",)", retry, R"(,"webhook":{"url":")", (*webhook)->url(),
                   R"(","timeout":"2s"}})",  //
                   "]}"));
  constexpr int64_t kTotal = 20000;
  int64_t acked = 0;
  // The export log lines of every audit process, printed when the test fails.
  std::vector<std::string> export_log;
  auto keep_log = [&](Running& r) {
    for (std::string& line : r.process->Lines()) {
      if (absl::StrContains(line, "export") || absl::StrContains(line, "syslog")) {
        export_log.push_back(std::move(line));
      }
    }
  };
  Running audit = StartAudit(url, "all-chain", config);
  ASSERT_NE(audit.stub, nullptr);
  absl::Cleanup print_log = [&] {
    if (HasFailure()) {
      keep_log(audit);
      std::cout << "audit export log:\n" << absl::StrJoin(export_log, "\n") << "\n";
    }
  };
  // The webhook fails for the first 10 s of the load.
  (*webhook)->SetBehavior(podgate::testing::WebhookBehavior::Status(500).For(absl::Seconds(10)));
  for (int round = 0; round < 3; ++round) {
    const int64_t target = round < 2 ? (round + 1) * kTotal / 3 : kTotal;
    auto load = std::make_unique<Load>(audit.stub.get(), absl::StrCat("r", round));
    if (round == 1) {
      // rsyslogd restarts while records flow.
      ASSERT_TRUE(
          WaitUntil([&] { return acked + load->acked() >= kTotal / 2; }, absl::Seconds(90)));
      ASSERT_TRUE((*rsyslog)->Restart().ok());
    }
    ASSERT_TRUE(WaitUntil([&] { return acked + load->acked() >= target; }, absl::Seconds(90)))
        << "round " << round << " acked " << acked + load->acked();
    if (round < 2) {
      audit.process->Signal(SIGKILL);
      ASSERT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 128 + SIGKILL);
      load->Stop();
      acked += load->acked();
      keep_log(audit);
      audit = StartAudit(url, "all-chain", config);
      ASSERT_NE(audit.stub, nullptr);
    } else {
      load->Stop();
      acked += load->acked();
    }
  }
  int64_t head = ChainHead(*audit.stub, "all-chain");
  for (int i = 0; i < 50; ++i) {
    absl::SleepFor(absl::Milliseconds(300));
    const int64_t again = ChainHead(*audit.stub, "all-chain");
    if (again == head) {
      break;
    }
    head = again;
  }
  ASSERT_GE(head, kTotal);
  const std::map<std::string, std::function<std::vector<Line>()>> sinks = {
      {"archive", [&] { return ReadSink(file_path); }},
      {"siem", [&] { return SyslogLines(**rsyslog); }},
      {"events", [&] { return WebhookLines(**webhook); }}};
  for (const auto& sink : sinks) {
    // Named copies: clang does not let a lambda capture structured bindings before C++20's P1091.
    const std::string& name = sink.first;
    const std::function<std::vector<Line>()>& read = sink.second;
    SCOPED_TRACE(name);
    EXPECT_TRUE(WaitUntil(
        [&] { return static_cast<int64_t>(Check(read()).seen["all-chain"].size()) >= head; },
        absl::Seconds(90)));
    const std::vector<Line> lines = read();
    Delivery d = Check(lines);
    EXPECT_EQ(d.gaps, 0) << "a record came before its predecessor was delivered";
    ASSERT_EQ(static_cast<int64_t>(d.seen["all-chain"].size()), head);
    EXPECT_EQ(*d.seen["all-chain"].begin(), 1);
    EXPECT_EQ(*d.seen["all-chain"].rbegin(), head);
    // Re-deliveries only around the two kills (and, for syslog, the replay after rsyslogd's
    // restart), each at most what was in flight; for syslog also its 1 MiB replay window (about
    // 900 records of this size) after each kill and after rsyslogd's restart.
    EXPECT_LE(d.rewinds, name == "siem" ? 4 : 2);
    EXPECT_LE(d.duplicates, name == "siem" ? 4 * 1000 + 3 * 1000 : 4 * 1000);
    std::cout << "sink " << name << ": " << head << " records, " << lines.size() << " delivered, "
              << d.duplicates << " duplicates in " << d.rewinds << " re-deliveries\n";
    EXPECT_EQ(podgate::testing::MetricSample(
                  audit.metrics_port,
                  absl::StrCat("podgate_audit_export_lag_records{sink=\"", name, "\"}")),
              0);
  }
  // The webhook's failures were retried, not skipped.
  size_t failed = 0;
  for (const auto& r : (*webhook)->Requests()) {
    failed += r.answered == 500;
  }
  EXPECT_GT(failed, 0u);
  audit.process->Signal(SIGTERM);
  EXPECT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 0);
}

// Syslog has no acknowledgements: what the receiver's kernel acknowledged but rsyslogd never
// read is lost when rsyslogd dies. The sink re-sends its replay window after a broken
// connection, and that window must survive audit itself: here rsyslogd is frozen, takes a few
// batches into its socket buffer, audit is SIGKILLed, rsyslogd is killed, and the next audit
// process (empty memory) must still deliver those records.
TEST(AuditExportProcessTest, SyslogRecordsTheReceiverNeverReadSurviveAnAuditCrash) {
  testing::TempDir tmp("podgate-audit-export-unread");
  absl::StatusOr<podgate::testing::TestPki> pki =
      podgate::testing::MakeTestPki(podgate::testing::MakeTempDir("export-unread-pki"));
  ASSERT_TRUE(pki.ok()) << pki.status();
  absl::StatusOr<std::unique_ptr<podgate::testing::RsyslogServer>> rsyslog =
      podgate::testing::RsyslogServer::Start(*pki);
  ASSERT_TRUE(rsyslog.ok()) << rsyslog.status();
  const std::string url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
  const std::string config =
      WriteConfig(tmp.path(), "export.json",
                  absl::StrCat(R"({"sinks":[{"name":"siem","maxBatch":10,"maxWait":"20ms",)",
                               R"("initialBackoff":"20ms","maxBackoff":"200ms",)",
                               R"("syslog":{"address":"127.0.0.1:)", (*rsyslog)->tcp_port(),
                               R"(","transport":"tcp","timeout":"2s"}}]})"));
  auto lag = [](const Running& r) {
    return podgate::testing::MetricSample(r.metrics_port,
                                          "podgate_audit_export_lag_records{sink=\"siem\"}");
  };
  auto received = [&] { return Check(SyslogLines(**rsyslog)).seen["unread-chain"]; };
  auto record = [](Running& r, const std::string& prefix, int64_t n) {
    Load load(r.stub.get(), prefix, n);
    EXPECT_TRUE(WaitUntil([&] { return load.acked() >= n; }, absl::Seconds(30)));
  };
  Running audit = StartAudit(url, "unread-chain", config);
  ASSERT_NE(audit.stub, nullptr);
  // Connected, and rsyslogd reads: the first records arrive.
  record(audit, "read", 10);
  int64_t head = ChainHead(*audit.stub, "unread-chain");
  ASSERT_TRUE(WaitUntil([&] { return static_cast<int64_t>(received().size()) >= head; },
                        absl::Seconds(30)));
  // rsyslogd stops reading; its kernel still acknowledges a few batches (well under its socket
  // buffer), and the sink counts them delivered.
  ASSERT_TRUE((*rsyslog)->Freeze().ok());
  record(audit, "unread", 20);
  ASSERT_TRUE(WaitUntil(
      [&] {
        head = ChainHead(*audit.stub, "unread-chain");
        return lag(audit) == 0;
      },
      absl::Seconds(30)));
  const int64_t unread_from = static_cast<int64_t>(received().size()) + 1;
  ASSERT_GT(head, unread_from);
  // audit dies first (nothing in its memory survives), then rsyslogd with the unread bytes.
  audit.process->Signal(SIGKILL);
  ASSERT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 128 + SIGKILL);
  ASSERT_TRUE((*rsyslog)->Restart(/*kill=*/true).ok());
  audit = StartAudit(url, "unread-chain", config);
  ASSERT_NE(audit.stub, nullptr);
  EXPECT_TRUE(
      WaitUntil([&] { return static_cast<int64_t>(received().size()) >= head; }, absl::Seconds(30)))
      << "records " << unread_from << ".." << head
      << " were acknowledged by the receiver's kernel but never read; received "
      << received().size();
  Delivery d = Check(SyslogLines(**rsyslog));
  EXPECT_EQ(d.gaps, 0);
  EXPECT_EQ(*d.seen["unread-chain"].rbegin(), head);
  audit.process->Signal(SIGTERM);
  EXPECT_EQ(*audit.process->WaitExit(absl::Seconds(10)), 0);
}

TEST(AuditExportProcessTest, TwoReplicasOnePostgresShareTheSinkThroughTheLease) {
  testing::TempDir tmp("podgate-audit-export-replicas");
  auto pg = testing::PostgresServer::Start();
  ASSERT_TRUE(pg.ok()) << pg.status();
  auto url = (*pg)->CreateDatabase("audit");
  ASSERT_TRUE(url.ok());
  // The same sink name on both replicas, each writing its own file: the lease decides which
  // replica delivers, so records appear in one file at a time.
  const std::string file_one = tmp.path() + "/one.log";
  const std::string file_two = tmp.path() + "/two.log";
  const std::string config_one =
      WriteConfig(tmp.path(), "one.json", FileSinkConfig("archive", file_one));
  const std::string config_two =
      WriteConfig(tmp.path(), "two.json", FileSinkConfig("archive", file_two));
  Running one = StartAudit(*url, "replica-1", config_one, {"--export_lease_ttl=5s"});
  Running two = StartAudit(*url, "replica-2", config_two, {"--export_lease_ttl=5s"});
  ASSERT_NE(one.stub, nullptr);
  ASSERT_NE(two.stub, nullptr);
  const std::string lease = "podgate_audit_export_lease_held{sink=\"archive\"}";
  {
    Load load_one(one.stub.get(), "a");
    Load load_two(two.stub.get(), "b");
    ASSERT_TRUE(WaitUntil([&] { return load_one.acked() >= 2000 && load_two.acked() >= 2000; },
                          absl::Seconds(90)));
    // Exactly one replica holds the lease at each look.
    for (int i = 0; i < 10; ++i) {
      const double held = podgate::testing::MetricSample(one.metrics_port, lease) +
                          podgate::testing::MetricSample(two.metrics_port, lease);
      EXPECT_EQ(held, 1) << "look " << i;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }
  // Nothing written so far went to both files: one replica delivered everything.
  ASSERT_TRUE(WaitUntil(
      [&] {
        return podgate::testing::MetricSample(
                   one.metrics_port, "podgate_audit_export_lag_records{sink=\"archive\"}") == 0;
      },
      absl::Seconds(60)));
  const bool one_holds = podgate::testing::MetricSample(one.metrics_port, lease) == 1;
  const std::vector<Line> before_one = ReadSink(file_one);
  const std::vector<Line> before_two = ReadSink(file_two);
  EXPECT_TRUE(before_one.empty() != before_two.empty())
      << before_one.size() << " and " << before_two.size() << " lines";
  // The holder is killed mid-load; the other takes over from the stored cursor.
  Running& holder = one_holds ? one : two;
  Running& survivor = one_holds ? two : one;
  {
    Load load(survivor.stub.get(), "c");
    Load load_holder(holder.stub.get(), "d");
    ASSERT_TRUE(WaitUntil([&] { return load_holder.acked() >= 1000; }, absl::Seconds(60)));
    holder.process->Signal(SIGKILL);
    ASSERT_EQ(*holder.process->WaitExit(absl::Seconds(10)), 128 + SIGKILL);
    load_holder.Stop();
    ASSERT_TRUE(WaitUntil([&] { return load.acked() >= 2000; }, absl::Seconds(60)));
  }
  ASSERT_TRUE(WaitUntil(
      [&] {
        return podgate::testing::MetricSample(survivor.metrics_port, lease) == 1 &&
               podgate::testing::MetricSample(
                   survivor.metrics_port, "podgate_audit_export_lag_records{sink=\"archive\"}") ==
                   0;
      },
      absl::Seconds(60)));
  std::vector<Line> all = ReadSink(file_one);
  const std::vector<Line> second = ReadSink(file_two);
  // The holder's file first, then the survivor's: together one delivery history.
  std::vector<Line> ordered = one_holds ? all : second;
  const std::vector<Line>& later = one_holds ? second : all;
  ordered.insert(ordered.end(), later.begin(), later.end());
  Delivery d = Check(ordered);
  EXPECT_EQ(d.gaps, 0);
  absl::SleepFor(absl::Seconds(1));  // the killed holder's last batch is committed or gone
  for (const std::string chain : {"replica-1", "replica-2"}) {
    const int64_t head = ChainHead(*survivor.stub, chain);
    EXPECT_EQ(static_cast<int64_t>(d.seen[chain].size()), head) << chain;
  }
  EXPECT_LE(d.duplicates, 2 * 500);
  std::cout << "lines " << ordered.size() << ", duplicates " << d.duplicates << "\n";
  survivor.process->Signal(SIGTERM);
  EXPECT_EQ(*survivor.process->WaitExit(absl::Seconds(10)), 0);
}

TEST(AuditExportProcessTest, BadExportConfigExitsWithOneClearLine) {
  testing::TempDir tmp("podgate-audit-export-bad");
  for (const auto& [json, needle] : std::vector<std::pair<std::string, std::string>>{
           {R"({"sinks":[{"name":"siem"}]})", "sink siem: kind: unknown sink type"},
           {R"({"sinks":[{"name":"siem","maxWait":"later","file":{"path":"/tmp/x"}}]})",
            "sink siem: max_wait"},
           {R"({"sinks":[{"name":"siem","file":{"path":"/nonexistent-dir/x.log"}}]})",
            "sink siem: file.path: folder /nonexistent-dir does not exist"},
           {R"({"sinks":[],"extra":1})", "extra"}}) {
    const std::string config = WriteConfig(tmp.path(), "bad.json", json);
    auto process = Subprocess::Start(
        PODGATE_AUDIT_BIN, {"--grpc_address=127.0.0.1:0",
                            "--metrics_address=", "--store=sqlite:///nonexistent/never-opened.db",
                            "--export_config=" + config});
    ASSERT_TRUE(process.ok());
    auto status = (*process)->WaitExit(absl::Seconds(20));
    ASSERT_TRUE(status.ok());
    EXPECT_NE(*status, 0);
    (*process)->WaitForLine("\x01never", absl::Milliseconds(200)).IgnoreError();
    const auto lines = (*process)->Lines();
    ASSERT_EQ(lines.size(), 1u) << json;
    EXPECT_THAT(lines[0], ::testing::HasSubstr("--export_config"));
    EXPECT_THAT(lines[0], ::testing::HasSubstr(needle));
  }
}

}  // namespace
}  // namespace podgate::audit
