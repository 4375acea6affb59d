// podgate-audit: persists audit records durably and tamper-evidently: Record, Query, Verify,
// CreateCheckpoint.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/checkpointer.h"
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
  runtime::PrepareServiceProcess();
  runtime::ParseFlags(
      argc, argv,
      "podgate-audit: persists audit records durably and tamper-evidently: "
      "Record, Query, Verify, CreateCheckpoint.\nEvery flag may also be set as PODGATE_<FLAG>.");
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
  // Before the writer loads its head: a database whose head is older than what this replica
  // signed before was truncated or rewritten, and continuing from it would sign the damage.
  if (options->checkpoint_key != nullptr) {
    if (absl::Status s = audit::CheckStoreAgainstState(
            **store, options->chain_id, *options->checkpoint_key, options->checkpoint_state);
        !s.ok()) {
      runtime::ExitWithError(std::string(s.message()));
    }
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
  writer_options.store_recheck_interval = options->store_recheck_interval;
  writer_options.refuse_foreign_records = options->checkpoint_key != nullptr;
  // Readiness follows the store: off when a commit fails, on again when a commit or the
  // writer's own re-check of the store (--store_recheck_interval) succeeds. The writer starts
  // before the server and outlives it: the server is reachable from the callback only between
  // start and drain, under a lock.
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
  std::unique_ptr<audit::Checkpointer> checkpointer;
  if (options->checkpoint_key != nullptr) {
    audit::CheckpointerOptions checkpointer_options;
    checkpointer_options.chain_id = options->chain_id;
    checkpointer_options.key = options->checkpoint_key;
    checkpointer_options.interval = options->checkpoint_interval;
    checkpointer_options.state_path = options->checkpoint_state;
    checkpointer_options.head = [w = writer->get()] { return w->committed_head(); };
    checkpointer_options.metrics = &metrics;
    // Each checkpoint is queued for the export sinks (delivered after the records it covers).
    checkpointer_options.on_checkpoint = [e = exporter.get()](
                                             const podgate::audit::v1::SignedCheckpoint& c) {
      podgate::log::Info("checkpoint signed",
                         {{"chain_id", c.chain_id()},
                          {"sequence", c.sequence()},
                          {"kind", podgate::audit::v1::SignedCheckpoint::Kind_Name(c.kind())}});
      if (e != nullptr) {
        e->PublishCheckpoint(c);
      }
    };
    absl::StatusOr<std::unique_ptr<audit::Checkpointer>> started =
        audit::Checkpointer::Start(std::move(checkpointer_options));
    if (!started.ok()) {
      runtime::ExitWithError(absl::StrCat("--checkpoint_key: ", started.status().message()));
    }
    checkpointer = *std::move(started);
  }
  std::optional<audit::Retention> retention_runner;
  if (options->retention > absl::ZeroDuration()) {
    audit::CutSigner sign;
    if (checkpointer != nullptr) {
      sign = [c = checkpointer.get()](audit::Checkpoint* cut) { return c->SignCut(cut); };
    }
    retention_runner.emplace(store->get(), options->retention, options->retention_interval,
                             std::move(sign));
  }
  audit::AuditServiceOptions service_options;
  service_options.follow.max_followers = options->max_followers;
  service_options.follow.queue_records = options->follower_queue;
  service_options.follow.poll_interval = options->follow_poll_interval;
  service_options.checkpointer = checkpointer.get();
  // Destruction runs backwards: the service, then the writer (which commits what it holds and
  // may still notify the exporter), then the exporter (deliveries in progress are cancelled and
  // delivered again by the next start; the leases go to another replica).
  audit::AuditServiceImpl service(store->get(), writer->get(), &metrics, service_options);
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
