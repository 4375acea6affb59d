// podgate-audit: persists audit records durably and tamper-evidently: Record, Query, Verify.
#include <unistd.h>

#include <memory>
#include <optional>
#include <string>

#include "absl/flags/flag.h"
#include "absl/synchronization/mutex.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/retention.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

ABSL_FLAG(std::string, store, "sqlite:///var/lib/podgate/audit.db",
          "Where records live: sqlite:///absolute/path.db (embedded, one replica) or "
          "postgresql://user@host:port/db (several replicas). Default "
          "sqlite:///var/lib/podgate/audit.db.");
ABSL_FLAG(std::string, chain_id, "",
          "This replica's hash chain id; replicas sharing a database need distinct ids and a "
          "restarted replica keeps its id to continue its chain. Default: the host name (the "
          "pod name in Kubernetes).");
ABSL_FLAG(int64_t, queue_capacity, 8192,
          "Events waiting for the group-commit writer before Record streams stop reading. "
          "Default 8192.");
ABSL_FLAG(int64_t, max_batch, 1024, "Events per group-commit transaction, at most. Default 1024.");
ABSL_FLAG(absl::Duration, retention, absl::ZeroDuration(),
          "Records stored longer ago than this are removed (chains stay verifiable through "
          "checkpoints), e.g. 2160h. Default 0: keep everything.");
ABSL_FLAG(absl::Duration, retention_interval, absl::Hours(1),
          "How often retention runs when --retention is set. Default 1h.");

namespace {

std::string DefaultChainId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return "audit";
  }
  return host;
}

}  // namespace

int main(int argc, char** argv) {
  namespace audit = podgate::audit;
  namespace runtime = podgate::runtime;
  runtime::BlockShutdownSignals();
  runtime::ParseFlags(argc, argv,
                      "podgate-audit: persists audit records durably and tamper-evidently: "
                      "Record, Query, Verify.\nEvery flag may also be set as PODGATE_<FLAG>.");
  runtime::InitLoggingFromFlags("audit");
  const runtime::ServiceDefaults defaults{"audit", "[::]:7103", "[::]:9103"};
  // Report bad shared flags before touching the store.
  if (auto options = runtime::ServerOptionsFromFlags(defaults); !options.ok()) {
    runtime::ExitWithError(std::string(options.status().message()));
  }
  const int64_t queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  if (queue_capacity < 1 || queue_capacity > 1000000) {
    runtime::ExitWithError(
        absl::StrCat("--queue_capacity: ", queue_capacity, " is out of range (1 to 1000000)"));
  }
  const int64_t max_batch = absl::GetFlag(FLAGS_max_batch);
  if (max_batch < 1 || max_batch > 10000) {
    runtime::ExitWithError(
        absl::StrCat("--max_batch: ", max_batch, " is out of range (1 to 10000)"));
  }
  const absl::Duration retention = absl::GetFlag(FLAGS_retention);
  const absl::Duration retention_interval = absl::GetFlag(FLAGS_retention_interval);
  if (retention < absl::ZeroDuration() || retention_interval < absl::Seconds(1)) {
    runtime::ExitWithError("--retention must be >= 0 and --retention_interval >= 1s");
  }
  std::string chain_id = absl::GetFlag(FLAGS_chain_id);
  if (chain_id.empty()) {
    chain_id = DefaultChainId();
  }
  if (chain_id.size() > 128) {
    runtime::ExitWithError("--chain_id: longer than 128 bytes");
  }

  const std::string store_url = absl::GetFlag(FLAGS_store);
  absl::StatusOr<std::unique_ptr<audit::Store>> store = audit::OpenStore(store_url);
  if (!store.ok()) {
    runtime::ExitWithError(absl::StrCat("--store: ", store.status().message()));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  audit::AuditMetrics metrics(*registry);
  audit::WriterOptions writer_options;
  writer_options.chain_id = chain_id;
  writer_options.queue_capacity = static_cast<size_t>(queue_capacity);
  writer_options.max_batch = static_cast<size_t>(max_batch);
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
  if (retention > absl::ZeroDuration()) {
    retention_runner.emplace(store->get(), retention, retention_interval);
  }
  audit::AuditServiceImpl service(store->get(), writer->get(), &metrics);
  return runtime::RunServer(defaults, {&service}, registry, [&](runtime::Server& server) {
    {
      absl::MutexLock lock(&server_mu);
      running_server = &server;
    }
    server.AddDrainHook([&server_mu, &running_server] {
      absl::MutexLock lock(&server_mu);
      running_server = nullptr;
    });
    server.AddDrainHook([&service] { service.Drain(); });
    podgate::log::Info("audit store open", {{"store", (*store)->kind()}, {"chain_id", chain_id}});
  });
}
