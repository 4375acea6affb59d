// podgate-audit-export-bench: whether the exporter keeps up with ingest, per sink kind
// (docs/audit.md, "Export benchmark").
//
// For each sink (--sinks: the JSON-lines file sink, fsync per batch as in production; the syslog
// sink over TCP into a real rsyslogd on loopback, started with the tests' support code
// tests/support/rsyslog.h and writing every message to its file), on a fresh store each run:
//   - "backlog": --records records are stored first, then the time until the exporter delivered
//     them all (cursor at the head);
//   - "live": records are appended in group-commit sized transactions (--commit_batch) for
//     --duration at each rate of --ingest_rates (records/s offered; 0 = as fast as the store
//     takes them) while the exporter runs beside it in the same process. Reported: the ingest
//     rate reached, the export rate during ingest, the lag left when ingest stopped, the time to
//     drain it and the export rate including the drain; export keeps up when the final lag is
//     about one batch and the drain takes a moment.
// For the syslog sink, "at receiver" is when rsyslogd's file holds every record (the sink counts
// a record delivered once the receiver's kernel acknowledged its bytes; rsyslogd writes later).
//
// Prints tables (tools/bench/report.h) and, with --json, writes them for tools/bench/bench.py.
// Exit status: 0 every run completed, 1 a run failed (store, sink, receiver), 2 a usage error.

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/export/config.h"
#include "audit/export/exporter.h"
#include "audit/store.h"
#include "audit_testing.h"
#include "prometheus/registry.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "support/rsyslog.h"
#include "support/test_pki.h"
#include "tools/bench/report.h"

ABSL_FLAG(std::string, json, "", "Write the results as JSON to this file (tools/bench/bench.py).");
ABSL_FLAG(bool, quick, false,
          "Smoke mode: 5,000 records, 1 s live runs; proves the benchmark runs, not how fast.");
ABSL_FLAG(std::string, sinks, "file,syslog", "Sinks to measure, comma separated: file, syslog.");
ABSL_FLAG(int64_t, records, 200000, "Records in the backlog run. Default 200000.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "How long a live run ingests. Default 5s.");
ABSL_FLAG(std::string, ingest_rates, "20000,0",
          "Live runs: records/s offered, comma separated; 0 = as fast as the store takes them; "
          "empty = backlog runs only. Default 20000,0.");
ABSL_FLAG(int, export_batch, 1000, "The sink's max_batch (1 to 10000). Default 1000.");
ABSL_FLAG(int, commit_batch, 256,
          "Records per store transaction while loading (the writer's group commit). Default 256.");
ABSL_FLAG(std::string, store, "sqlite",
          "sqlite or postgresql (a temporary server). Default sqlite.");

namespace podgate::audit {
namespace {

using podgate::common::v1::AuditEvent;

// One run's outcome.
struct RunResult {
  int64_t records = 0;
  double ingest_per_s = 0;        // live only
  double export_per_s = 0;        // during ingest (live), or the whole backlog
  int64_t final_lag = 0;          // records not delivered when ingest stopped
  int64_t largest_lag = 0;        // live only, sampled after each commit
  double drain_s = 0;             // from the end of ingest (or the exporter's start) to the cursor
  double overall_per_s = 0;       // records / (ingest + drain)
  double receiver_s = -1;         // until the receiver holds every record (syslog), else -1
  double cpu_us_per_record = -1;  // backlog only: this process's CPU time per record delivered
};

// A sink under test: its JSON settings and, for syslog, the receiver.
class Target {
 public:
  static absl::StatusOr<std::unique_ptr<Target>> Make(const std::string& kind,
                                                      const std::string& dir) {
    auto target = std::unique_ptr<Target>(new Target(kind, dir));
    if (kind == "syslog") {
      std::filesystem::create_directories(dir + "/pki");
      absl::StatusOr<podgate::testing::TestPki> pki = podgate::testing::MakeTestPki(dir + "/pki");
      if (!pki.ok()) {
        return pki.status();
      }
      absl::StatusOr<std::unique_ptr<podgate::testing::RsyslogServer>> rsyslog =
          podgate::testing::RsyslogServer::Start(*pki);
      if (!rsyslog.ok()) {
        return rsyslog.status();
      }
      target->rsyslog_ = *std::move(rsyslog);
    } else if (kind != "file") {
      return absl::InvalidArgumentError(absl::StrCat("unknown sink \"", kind, "\""));
    }
    return target;
  }

  ~Target() {
    if (rsyslog_ != nullptr) {
      const std::string dir = rsyslog_->dir();
      rsyslog_.reset();
      std::error_code ignored;
      std::filesystem::remove_all(dir, ignored);  // its file holds every message
    }
  }

  std::string SinkJson() const {
    const std::string common = absl::StrCat(R"({"name":"bench","maxWait":"10ms","maxBatch":)",
                                            absl::GetFlag(FLAGS_export_batch), ",");
    if (rsyslog_ != nullptr) {
      return absl::StrCat(common, R"("syslog":{"address":"127.0.0.1:)", rsyslog_->tcp_port(),
                          R"(","transport":"tcp"}})");
    }
    return absl::StrCat(common, R"("file":{"path":")", dir_,
                        R"(/export.log","maxBytes":"1073741824"}})");
  }

  // Waits until the receiver holds `n` records; the seconds since `since`, or -1 without a
  // receiver of its own (the file sink's file is the delivery) or on a timeout.
  double WaitAtReceiver(int64_t n, absl::Time since) const {
    if (rsyslog_ == nullptr) {
      return -1;
    }
    const absl::Time deadline = absl::Now() + absl::Seconds(120);
    while (static_cast<int64_t>(rsyslog_->CountMessages()) < n) {
      if (absl::Now() > deadline) {
        std::fprintf(stderr, "rsyslogd holds %zu of %lld messages after 120 s\n",
                     rsyslog_->CountMessages(), static_cast<long long>(n));
        return -1;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    return absl::ToDoubleSeconds(absl::Now() - since);
  }

 private:
  Target(std::string kind, std::string dir) : kind_(std::move(kind)), dir_(std::move(dir)) {}
  const std::string kind_;
  const std::string dir_;
  std::unique_ptr<podgate::testing::RsyslogServer> rsyslog_;
};

class Bench {
 public:
  Bench(const std::string& url, const Target* target) : target_(target) {
    auto store = OpenStore(url);
    if (!store.ok()) {
      std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
      std::exit(1);
    }
    store_ = *std::move(store);
    head_ = *store_->LoadHead("bench");
  }

  // Appends `n` records in transactions of --commit_batch.
  void Append(int64_t n) {
    const int batch = absl::GetFlag(FLAGS_commit_batch);
    std::vector<AuditEvent> events(static_cast<size_t>(batch));
    std::vector<const AuditEvent*> pointers;
    for (int64_t done = 0; done < n;) {
      const int k = static_cast<int>(std::min<int64_t>(batch, n - done));
      pointers.clear();
      for (int i = 0; i < k; ++i) {
        events[i] = testing::MakeEvent(absl::StrCat("e", next_id_++));
        pointers.push_back(&events[i]);
      }
      if (absl::Status s = store_->Append(&head_, pointers, absl::ToUnixMicros(absl::Now()));
          !s.ok()) {
        std::fprintf(stderr, "append: %s\n", std::string(s.message()).c_str());
        std::exit(1);
      }
      done += k;
    }
  }

  std::unique_ptr<exporting::Exporter> StartExporter() {
    auto settings =
        exporting::ParseExportConfig(absl::StrCat(R"({"sinks":[)", target_->SinkJson(), "]}"));
    if (!settings.ok()) {
      std::fprintf(stderr, "config: %s\n", std::string(settings.status().message()).c_str());
      std::exit(1);
    }
    auto sinks = exporting::MakeSinks(*std::move(settings));
    if (!sinks.ok()) {
      std::fprintf(stderr, "sink: %s\n", std::string(sinks.status().message()).c_str());
      std::exit(1);
    }
    exporting::ExporterOptions options;
    options.owner = "bench";
    options.poll_interval = absl::Milliseconds(50);
    return std::make_unique<exporting::Exporter>(store_.get(), *std::move(sinks), options,
                                                 &metrics_);
  }

  // Records delivered so far (podgate_audit_export_delivered_records_total). Not the stored
  // cursor: for the syslog sink that stays a replay window behind (docs/audit.md).
  int64_t Delivered() const {
    for (const prometheus::MetricFamily& family : registry_.Collect()) {
      if (family.name != "podgate_audit_export_delivered_records_total") {
        continue;
      }
      for (const prometheus::ClientMetric& m : family.metric) {
        return static_cast<int64_t>(m.counter.value);
      }
    }
    return 0;
  }
  int64_t head() const { return head_.sequence; }

  // Waits until `n` records were delivered.
  void Drain(int64_t n) {
    while (Delivered() < n) {
      absl::SleepFor(absl::Milliseconds(5));
    }
  }

 private:
  const Target* const target_;
  prometheus::Registry registry_;
  ExportMetrics metrics_{registry_};
  std::unique_ptr<Store> store_;
  ChainHead head_;
  int64_t next_id_ = 0;
};

RunResult Backlog(const std::string& url, const Target& target, int64_t n) {
  Bench bench(url, &target);
  bench.Append(n);
  const absl::Time start = absl::Now();
  const double cpu_start = bench::SelfCpuSeconds();
  auto exporter = bench.StartExporter();
  bench.Drain(n);
  RunResult r;
  r.records = n;
  r.drain_s = absl::ToDoubleSeconds(absl::Now() - start);
  // Only the exporter works meanwhile (the main thread polls the counter every 5 ms): what
  // delivery costs here, whatever share of the CPU the machine's load left it.
  r.cpu_us_per_record = (bench::SelfCpuSeconds() - cpu_start) * 1e6 / static_cast<double>(n);
  r.export_per_s = static_cast<double>(n) / r.drain_s;
  r.overall_per_s = r.export_per_s;
  r.final_lag = n;
  r.receiver_s = target.WaitAtReceiver(n, start);
  exporter.reset();
  return r;
}

// `rate` records/s offered (0: unpaced) for `duration`.
RunResult Live(const std::string& url, const Target& target, int64_t rate,
               absl::Duration duration) {
  Bench bench(url, &target);
  auto exporter = bench.StartExporter();
  const int commit = absl::GetFlag(FLAGS_commit_batch);
  RunResult r;
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  for (int64_t offered = 0; absl::Now() < end;) {
    if (rate > 0) {
      // The next commit is due once the previous records' share of the second has passed.
      const absl::Time due = start + absl::Seconds(static_cast<double>(offered) / rate);
      if (due > absl::Now()) {
        absl::SleepFor(due - absl::Now());
      }
    }
    bench.Append(commit);
    offered += commit;
    exporter->NotifyCommit();
    r.largest_lag = std::max(r.largest_lag, bench.head() - bench.Delivered());
  }
  const absl::Time ingest_end = absl::Now();
  const double ingest_s = absl::ToDoubleSeconds(ingest_end - start);
  const int64_t cursor_at_end = bench.Delivered();
  r.records = bench.head();
  bench.Drain(r.records);
  const absl::Time drained = absl::Now();
  r.ingest_per_s = static_cast<double>(r.records) / ingest_s;
  r.export_per_s = static_cast<double>(cursor_at_end) / ingest_s;
  r.final_lag = r.records - cursor_at_end;
  r.drain_s = absl::ToDoubleSeconds(drained - ingest_end);
  r.overall_per_s = static_cast<double>(r.records) / absl::ToDoubleSeconds(drained - start);
  r.receiver_s = target.WaitAtReceiver(r.records, ingest_end);
  exporter.reset();
  return r;
}

}  // namespace
}  // namespace podgate::audit

int main(int argc, char** argv) {
  namespace audit = podgate::audit;
  namespace bench = podgate::bench;
  podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-audit-export-bench [--json=FILE] [--quick]: whether the exporter keeps up with "
      "ingest, to a file sink and to a syslog sink into a real rsyslogd on loopback.");
  podgate::log::Init("audit-export-bench", podgate::log::Level::kWarn);
  const bool quick = absl::GetFlag(FLAGS_quick);
  const int export_batch = absl::GetFlag(FLAGS_export_batch);
  const int64_t records = quick ? 5000 : absl::GetFlag(FLAGS_records);
  const absl::Duration duration = quick ? absl::Seconds(1) : absl::GetFlag(FLAGS_duration);
  std::vector<int64_t> rates;
  for (absl::string_view part :
       absl::StrSplit(absl::GetFlag(FLAGS_ingest_rates), ',', absl::SkipEmpty())) {
    int64_t rate = 0;
    if (!absl::SimpleAtoi(part, &rate) || rate < 0) {
      std::fprintf(stderr, "podgate-audit-export-bench: bad --ingest_rates \"%s\"\n",
                   std::string(part).c_str());
      return 2;
    }
    rates.push_back(rate);
  }
  const std::vector<std::string> sinks = absl::StrSplit(absl::GetFlag(FLAGS_sinks), ',');
  for (const std::string& sink : sinks) {
    if (sink != "file" && sink != "syslog") {
      std::fprintf(stderr, "podgate-audit-export-bench: unknown sink \"%s\" in --sinks\n",
                   sink.c_str());
      return 2;
    }
  }
  if (export_batch < 1 || export_batch > 10000 || absl::GetFlag(FLAGS_commit_batch) < 1 ||
      records < 1 || duration <= absl::ZeroDuration() ||
      (absl::GetFlag(FLAGS_store) != "sqlite" && absl::GetFlag(FLAGS_store) != "postgresql")) {
    std::fprintf(stderr,
                 "podgate-audit-export-bench: bad --export_batch, --commit_batch, --records, "
                 "--duration or --store\n");
    return 2;
  }
  std::unique_ptr<audit::testing::PostgresServer> pg;
  int databases = 0;
  auto url_for = [&](const std::string& dir) -> std::string {
    if (absl::GetFlag(FLAGS_store) == "sqlite") {
      return absl::StrCat("sqlite://", dir, "/audit.db");
    }
    if (pg == nullptr) {
      auto started = audit::testing::PostgresServer::Start();
      if (!started.ok()) {
        std::fprintf(stderr, "postgresql: %s\n", std::string(started.status().message()).c_str());
        std::exit(1);
      }
      pg = *std::move(started);
    }
    return *pg->CreateDatabase(absl::StrCat("bench", ++databases));
  };

  bench::Report report("audit_export", quick);
  bench::Table table(
      absl::StrCat("Export (", absl::GetFlag(FLAGS_store), ", export batch ", export_batch,
                   ", commit batch ", absl::GetFlag(FLAGS_commit_batch), ")"),
      {"sink", "run", "records", "ingest rec/s", "export rec/s", "final lag", "drain s",
       "rec/s with drain", "largest lag", "at receiver s", "export CPU us/rec"});
  for (const std::string& sink : sinks) {
    auto run = [&](const std::string& name, const std::string& metric, auto&& body) {
      audit::testing::TempDir tmp("podgate-export-bench");
      absl::StatusOr<std::unique_ptr<audit::Target>> target = audit::Target::Make(sink, tmp.path());
      if (!target.ok()) {
        std::fprintf(stderr, "%s sink: %s\n", sink.c_str(),
                     std::string(target.status().message()).c_str());
        std::exit(1);
      }
      const audit::RunResult r = body(url_for(tmp.path()), **target);
      const bool live = name != "backlog";
      table.AddRow({sink, name, absl::StrCat(r.records),
                    live ? bench::Cell(r.ingest_per_s, 0) : "-", bench::Cell(r.export_per_s, 0),
                    live ? absl::StrCat(r.final_lag) : "-", bench::Cell(r.drain_s, 2),
                    bench::Cell(r.overall_per_s, 0), live ? absl::StrCat(r.largest_lag) : "-",
                    r.receiver_s < 0 ? "-" : bench::Cell(r.receiver_s, 2),
                    r.cpu_us_per_record < 0 ? "-" : bench::Cell(r.cpu_us_per_record, 1)});
      const std::string key = absl::StrCat("export.", sink, ".", metric);
      if (live) {
        report.Metric(key + ".ingest.records_per_s", r.ingest_per_s);
        report.Metric(key + ".final_lag.records", static_cast<double>(r.final_lag));
      }
      report.Metric(key + ".export.records_per_s", r.export_per_s);
      report.Metric(key + ".drain_s", r.drain_s);
      if (r.cpu_us_per_record >= 0) {
        report.Metric(key + ".cpu_us_per_record", r.cpu_us_per_record);
      }
      std::fprintf(stderr, "%s %s done\n", sink.c_str(), name.c_str());
    };
    run("backlog", "backlog", [&](const std::string& url, const audit::Target& target) {
      return audit::Backlog(url, target, records);
    });
    for (int64_t rate : rates) {
      run(rate > 0 ? absl::StrCat("live ", rate, "/s") : "live unpaced",
          rate > 0 ? absl::StrCat("live_", rate) : "live_unpaced",
          [&](const std::string& url, const audit::Target& target) {
            return audit::Live(url, target, rate, duration);
          });
    }
  }
  report.Add(table);
  report.Note(
      "backlog: records stored first, then delivered (export rec/s = records / drain s). live: "
      "export rec/s is what was delivered while ingest ran; final lag is what was left when "
      "ingest stopped, drain s the time to deliver it. at receiver s: until rsyslogd's file "
      "held every record (from the exporter's start, or the end of ingest). export CPU us/rec: "
      "this process's CPU time per record during the backlog drain (the exporter alone; "
      "rsyslogd's own CPU not included); 1e6 / it is what one free core delivers.");
  if (absl::Status s = report.WriteJson(absl::GetFlag(FLAGS_json)); !s.ok()) {
    std::fprintf(stderr, "%s\n", std::string(s.message()).c_str());
    return 1;
  }
  return 0;
}
