// The service runtime every podgate server is built on: a gRPC server with grpc.health.v1 and
// server reflection, TLS or mutual TLS, Prometheus metrics on their own port, and a graceful
// shutdown (health NOT_SERVING, drain hooks, drain waits, stop accepting, drain in-flight calls
// until a deadline, then cancel what is left).
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "grpcpp/server.h"
#include "grpcpp/server_builder.h"
#include "prometheus/registry.h"
#include "runtime/metrics.h"
#include "runtime/tls.h"

namespace podgate::runtime {

struct ServerOptions {
  // The service's short name ("policy"), used in logs, metrics and health.
  std::string service_name;
  // "host:port" for gRPC; port 0 picks a free port.
  std::string grpc_address;
  // "host:port" for /metrics; port 0 picks a free port; empty disables metrics.
  std::string metrics_address;
  // TLS for the gRPC port.
  ServerTlsOptions tls;
  // How long in-flight calls may run after shutdown starts before they are cancelled.
  absl::Duration drain_timeout = absl::Seconds(10);
  // The largest message a client may send.
  int max_receive_message_bytes = 4 << 20;
};

class Server {
 public:
  // Builds, binds and starts the server with `services` (not owned; they must outlive the
  // server). Errors name the flag at fault (address in use, bad TLS file).
  static absl::StatusOr<std::unique_ptr<Server>> Start(
      ServerOptions options, std::vector<grpc::Service*> services,
      std::shared_ptr<prometheus::Registry> registry);

  ~Server();

  // Runs `hook` when shutdown begins, after health turns NOT_SERVING and before the server
  // stops accepting calls: services use it to tell long-lived streams to wind down.
  void AddDrainHook(std::function<void()> hook);

  // Runs `wait` after the drain hooks and before the server stops accepting calls, with the
  // drain deadline (shutdown start + drain_timeout). A service whose in-flight work is not a
  // gRPC call (edge's browser WebSockets) waits for it there and ends what is left at the
  // deadline; meanwhile health answers NOT_SERVING and /metrics is still served. gRPC calls
  // keep the same deadline.
  void AddDrainWait(std::function<void(absl::Time deadline)> wait);

  // Reports whether the service can do its work (e.g. its store is reachable): health for the
  // service's name turns SERVING or NOT_SERVING, so readiness checks take the replica out of
  // rotation while the server itself stays up. Ignored once shutdown has begun.
  void SetServiceServing(bool serving);

  // The health of one part of the service, under "<service>/<part>" in grpc.health.v1 (exec's
  // clusters: "exec/cluster/eu-prod"), beside the service's own: a part that is down does not
  // take the replica out of rotation. Not logged (the caller logs changes). Ignored once
  // shutdown has begun (every name then answers NOT_SERVING).
  void SetPartServing(const std::string& part, bool serving);

  // Graceful shutdown; returns once every call has finished or been cancelled. Idempotent.
  void Shutdown();

  // Blocks until Shutdown() completes.
  void Wait();

  int grpc_port() const { return grpc_port_; }
  int metrics_port() const { return metrics_ != nullptr ? metrics_->port() : 0; }
  bool serving() const { return serving_.load(); }
  const ServerOptions& options() const { return options_; }

 private:
  explicit Server(ServerOptions options) : options_(std::move(options)) {}

  ServerOptions options_;
  // Calls in flight (a server interceptor counts them), but not health watches, which last as
  // long as their client: once it is zero, shutdown does not wait for idle connections.
  std::shared_ptr<std::atomic<int>> calls_ = std::make_shared<std::atomic<int>>(0);
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<MetricsServer> metrics_;
  int grpc_port_ = 0;
  std::atomic<bool> serving_{false};

  absl::Mutex mu_;
  std::vector<std::function<void()>> drain_hooks_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void(absl::Time)>> drain_waits_ ABSL_GUARDED_BY(mu_);
  bool shutdown_started_ ABSL_GUARDED_BY(mu_) = false;
  bool shutdown_done_ ABSL_GUARDED_BY(mu_) = false;
};

// Blocks SIGINT and SIGTERM in the calling thread and every thread it starts later. Call first
// thing in main, before any library starts a thread, then WaitForShutdownSignal().
void BlockShutdownSignals();

// First thing in a service's main: BlockShutdownSignals(); Abseil's lock-order checking turned
// off (Debian's Abseil keeps it on, and gRPC's own locks are absl::Mutex too: a graph update
// per lock, 2-3 % of a busy service's CPU); and glibc's malloc told to keep buffers up to
// kMallocMmapThreshold in its heap and up to kMallocTrimThreshold of free memory per arena
// instead of returning it at once: streamed output (gRPC messages of up to 256 KiB) otherwise
// took fresh pages from the kernel for every message, page faults that were half of edge's CPU
// per MiB (docs/performance.md). At most kMallocArenaMax arenas keep that bounded: a slow
// reader's 20 MiB through edge grows its RSS by about 8 MiB, as with the defaults. Tests keep
// the defaults.
inline constexpr int kMallocMmapThreshold = 1 << 20;
inline constexpr int kMallocTrimThreshold = 4 << 20;
inline constexpr int kMallocArenaMax = 2;
void PrepareServiceProcess();

// Waits for SIGINT or SIGTERM (blocked by BlockShutdownSignals) and returns its number.
int WaitForShutdownSignal();

}  // namespace podgate::runtime
