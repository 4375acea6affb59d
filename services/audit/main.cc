// podgate-audit: persists audit records durably and tamper-evidently: Record, Query, Verify.
#include <memory>
#include <optional>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
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
  absl::StatusOr<std::unique_ptr<audit::Store>> store = audit::OpenStore(options->store_url);
  if (!store.ok()) {
    runtime::ExitWithError(absl::StrCat("--store: ", store.status().message()));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  audit::AuditMetrics metrics(*registry);
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
  absl::StatusOr<std::unique_ptr<audit::Writer>> writer =
      audit::Writer::Start(store->get(), writer_options, &metrics);
  if (!writer.ok()) {
    runtime::ExitWithError(absl::StrCat("--store: ", writer.status().message()));
  }
  std::optional<audit::Retention> retention_runner;
  if (options->retention > absl::ZeroDuration()) {
    retention_runner.emplace(store->get(), options->retention, options->retention_interval);
  }
  audit::AuditServiceOptions service_options;
  service_options.follow.max_followers = options->max_followers;
  service_options.follow.queue_records = options->follower_queue;
  service_options.follow.poll_interval = options->follow_poll_interval;
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
