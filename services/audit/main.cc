// podgate-audit: persists audit records durably and tamper-evidently: Record, Query, Verify.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/export/config.h"
#include "audit/export/exporter.h"
#include "audit/options.h"
#include "audit/retention.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  namespace audit = podgate::audit;
  namespace runtime = podgate::runtime;
  runtime::BlockShutdownSignals();
  runtime::ParseFlags(argc, argv,
                      "podgate-audit: persists audit records durably and tamper-evidently: "
                      "Record, Query, Verify.\nEvery flag may also be set as PODGATE_<FLAG>.");
  runtime::InitLoggingFromFlags("audit");
  // Every flag is checked before the store is touched.
  absl::StatusOr<audit::AuditOptions> options = audit::AuditOptionsFromFlags();
  if (!options.ok()) {
    runtime::ExitWithError(std::string(options.status().message()));
  }
  std::vector<audit::exporting::SinkSettings> export_settings;
  if (!options->export_config.empty()) {
    absl::StatusOr<std::vector<audit::exporting::SinkSettings>> parsed =
        audit::exporting::LoadExportConfig(options->export_config);
    if (!parsed.ok()) {
      runtime::ExitWithError(absl::StrCat("--export_config: ", parsed.status().message()));
    }
    export_settings = *std::move(parsed);
  }
  // Sinks check their own settings (addresses, certificates) before the store is touched; a
  // receiver that is merely down is no error (the backlog builds in the store).
  absl::StatusOr<std::vector<audit::exporting::ConfiguredSink>> sinks =
      audit::exporting::MakeSinks(std::move(export_settings));
  if (!sinks.ok()) {
    runtime::ExitWithError(absl::StrCat("--export_config: ", sinks.status().message()));
  }
  absl::StatusOr<std::unique_ptr<audit::Store>> store = audit::OpenStore(options->store_url);
  if (!store.ok()) {
    runtime::ExitWithError(absl::StrCat("--store: ", store.status().message()));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  audit::AuditMetrics metrics(*registry);
  audit::ExportMetrics export_metrics(*registry);
  std::unique_ptr<audit::exporting::Exporter> exporter;
  if (!sinks->empty()) {
    audit::exporting::ExporterOptions exporter_options;
    exporter_options.owner = options->chain_id;
    exporter_options.lease_ttl = options->export_lease_ttl;
    exporter_options.poll_interval = options->export_poll_interval;
    exporter = std::make_unique<audit::exporting::Exporter>(store->get(), *std::move(sinks),
                                                            exporter_options, &export_metrics);
  }
  audit::WriterOptions writer_options;
  writer_options.chain_id = options->chain_id;
  writer_options.queue_capacity = options->queue_capacity;
  writer_options.max_batch = options->max_batch;
  // Readiness follows the store. The writer starts before the server and outlives it: the
  // server is reachable from the callback only between start and drain, under a lock.
  absl::Mutex server_mu;
  runtime::Server* running_server = nullptr;
  writer_options.on_store_health = [&server_mu, &running_server](bool healthy) {
    absl::MutexLock lock(&server_mu);
    if (running_server != nullptr) {
      running_server->SetServiceServing(healthy);
    }
  };
  if (exporter != nullptr) {
    writer_options.on_commit = [e = exporter.get()] { e->NotifyCommit(); };
    writer_options.admission = [e = exporter.get()] { return e->Admission(); };
  }
  absl::StatusOr<std::unique_ptr<audit::Writer>> writer =
      audit::Writer::Start(store->get(), writer_options, &metrics);
  if (!writer.ok()) {
    runtime::ExitWithError(absl::StrCat("--store: ", writer.status().message()));
  }
  std::optional<audit::Retention> retention_runner;
  if (options->retention > absl::ZeroDuration()) {
    retention_runner.emplace(store->get(), options->retention, options->retention_interval);
  }
  audit::AuditServiceImpl service(store->get(), writer->get(), &metrics);
  // Destruction runs backwards: the service, then the writer (which commits what it holds and
  // may still notify the exporter), then the exporter (deliveries in progress are cancelled and
  // delivered again by the next start; the leases go to another replica).
  return runtime::RunServer(options->server, {&service}, registry, [&](runtime::Server& server) {
    {
      absl::MutexLock lock(&server_mu);
      running_server = &server;
    }
    server.AddDrainHook([&server_mu, &running_server] {
      absl::MutexLock lock(&server_mu);
      running_server = nullptr;
    });
    server.AddDrainHook([&service] { service.Drain(); });
    podgate::log::Info("audit store open",
                       {{"store", (*store)->kind()}, {"chain_id", options->chain_id}});
  });
}
