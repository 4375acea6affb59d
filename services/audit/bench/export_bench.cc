// podgate-audit-export-bench: how fast the exporter delivers stored records to a file sink.
//
// Two runs on a fresh store: "backlog" stores --records records first, then measures how long
// the exporter takes to deliver them all (cursor at the head); "live" appends records in
// group-commit sized transactions for --duration while the exporter runs beside it, then reports
// the ingest rate, the export rate and the lag left at the end (export keeping up means the lag
// stays around one batch). The file sink fsyncs every batch, as in production.
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/export/config.h"
#include "audit/export/exporter.h"
#include "audit/store.h"
#include "audit_testing.h"
#include "prometheus/registry.h"
#include "runtime/flags.h"
#include "runtime/log.h"

ABSL_FLAG(int64_t, records, 200000, "Records in the backlog run. Default 200000.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(5), "How long the live run lasts. Default 5s.");
ABSL_FLAG(int, export_batch, 1000, "The sink's max_batch (1 to 10000). Default 1000.");
ABSL_FLAG(int, commit_batch, 256,
          "Records per store transaction while loading (the writer's group commit). Default 256.");
ABSL_FLAG(std::string, store, "sqlite",
          "sqlite or postgresql (a temporary server). Default sqlite.");

namespace podgate::audit {
namespace {

using podgate::common::v1::AuditEvent;

class Bench {
 public:
  Bench(std::string url, std::string dir) : url_(std::move(url)), dir_(std::move(dir)) {
    auto store = OpenStore(url_);
    if (!store.ok()) {
      std::fprintf(stderr, "store: %s\n", std::string(store.status().message()).c_str());
      std::exit(2);
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
        std::exit(2);
      }
      done += k;
    }
  }

  std::unique_ptr<exporting::Exporter> StartExporter(ExportMetrics* metrics) {
    auto settings = exporting::ParseExportConfig(
        absl::StrCat(R"({"sinks":[{"name":"bench","maxWait":"10ms","maxBatch":)",
                     absl::GetFlag(FLAGS_export_batch), R"(,"file":{"path":")", dir_,
                     R"(/export.log","maxBytes":"1073741824"}}]})"));
    if (!settings.ok()) {
      std::fprintf(stderr, "config: %s\n", std::string(settings.status().message()).c_str());
      std::exit(2);
    }
    auto sinks = exporting::MakeSinks(*std::move(settings));
    if (!sinks.ok()) {
      std::fprintf(stderr, "sink: %s\n", std::string(sinks.status().message()).c_str());
      std::exit(2);
    }
    exporting::ExporterOptions options;
    options.owner = "bench";
    options.poll_interval = absl::Milliseconds(50);
    return std::make_unique<exporting::Exporter>(store_.get(), *std::move(sinks), options, metrics);
  }

  int64_t Cursor() {
    auto cursors = store_->LoadExportCursors("bench");
    return cursors.ok() ? (*cursors)["bench"] : -1;
  }
  int64_t head() const { return head_.sequence; }
  Store* store() { return store_.get(); }

 private:
  const std::string url_;
  const std::string dir_;
  std::unique_ptr<Store> store_;
  ChainHead head_;
  int64_t next_id_ = 0;
};

}  // namespace
}  // namespace podgate::audit

int main(int argc, char** argv) {
  namespace audit = podgate::audit;
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-audit-export-bench: records per second the exporter "
                               "delivers to a file sink, from a backlog and beside live ingest.");
  podgate::log::Init("audit-export-bench", podgate::log::Level::kWarn);
  const int export_batch = absl::GetFlag(FLAGS_export_batch);
  if (export_batch < 1 || export_batch > 10000 || absl::GetFlag(FLAGS_commit_batch) < 1 ||
      absl::GetFlag(FLAGS_records) < 1) {
    std::fprintf(stderr,
                 "podgate-audit-export-bench: bad --export_batch, --commit_batch or "
                 "--records\n");
    return 2;
  }
  std::unique_ptr<audit::testing::PostgresServer> pg;
  auto url_for = [&](const std::string& dir, int run) -> std::string {
    if (absl::GetFlag(FLAGS_store) == "sqlite") {
      return absl::StrCat("sqlite://", dir, "/audit.db");
    }
    if (pg == nullptr) {
      auto started = audit::testing::PostgresServer::Start();
      if (!started.ok()) {
        std::fprintf(stderr, "postgresql: %s\n", std::string(started.status().message()).c_str());
        std::exit(2);
      }
      pg = *std::move(started);
    }
    return *pg->CreateDatabase(absl::StrCat("bench", run));
  };
  std::printf("store %s, export batch %d, commit batch %d\n", absl::GetFlag(FLAGS_store).c_str(),
              export_batch, absl::GetFlag(FLAGS_commit_batch));
  {
    audit::testing::TempDir tmp("podgate-export-bench");
    audit::Bench bench(url_for(tmp.path(), 1), tmp.path());
    const int64_t n = absl::GetFlag(FLAGS_records);
    bench.Append(n);
    prometheus::Registry registry;
    audit::ExportMetrics metrics(registry);
    const absl::Time start = absl::Now();
    auto exporter = bench.StartExporter(&metrics);
    while (bench.Cursor() < n) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
    exporter.reset();
    std::printf("backlog: %lld records delivered in %.2f s: %.0f records/s\n",
                static_cast<long long>(n), seconds, static_cast<double>(n) / seconds);
  }
  {
    audit::testing::TempDir tmp("podgate-export-bench");
    audit::Bench bench(url_for(tmp.path(), 2), tmp.path());
    prometheus::Registry registry;
    audit::ExportMetrics metrics(registry);
    auto exporter = bench.StartExporter(&metrics);
    const absl::Time start = absl::Now();
    const absl::Time end = start + absl::GetFlag(FLAGS_duration);
    int64_t max_lag = 0;
    while (absl::Now() < end) {
      bench.Append(absl::GetFlag(FLAGS_commit_batch));
      exporter->NotifyCommit();
      max_lag = std::max(max_lag, bench.head() - bench.Cursor());
    }
    const double ingest_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    const int64_t cursor_at_end = bench.Cursor();
    const int64_t total = bench.head();
    while (bench.Cursor() < total) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    const double all_seconds = absl::ToDoubleSeconds(absl::Now() - start);
    exporter.reset();
    std::printf(
        "live: ingest %.0f records/s; exported %lld of %lld during ingest (lag at end %lld, "
        "largest lag seen %lld); export %.0f records/s including the drain\n",
        static_cast<double>(total) / ingest_seconds, static_cast<long long>(cursor_at_end),
        static_cast<long long>(total), static_cast<long long>(total - cursor_at_end),
        static_cast<long long>(max_lag), static_cast<double>(total) / all_seconds);
  }
  return 0;
}
