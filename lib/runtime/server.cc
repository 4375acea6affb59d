#include "runtime/server.h"

#include <malloc.h>
#include <signal.h>

#include <string_view>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/support/server_interceptor.h"
#include "runtime/grpc_metrics.h"
#include "runtime/log.h"

namespace podgate::runtime {
namespace {

// One per call, alive as long as the call: counts the calls in flight.
class CallCounter final : public grpc::experimental::Interceptor {
 public:
  explicit CallCounter(std::shared_ptr<std::atomic<int>> calls) : calls_(std::move(calls)) {
    ++*calls_;
  }
  ~CallCounter() override { --*calls_; }
  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    methods->Proceed();
  }

 private:
  const std::shared_ptr<std::atomic<int>> calls_;
};

class CallCounterFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit CallCounterFactory(std::shared_ptr<std::atomic<int>> calls) : calls_(std::move(calls)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    if (std::string_view(info->method()) == "/grpc.health.v1.Health/Watch") {
      return nullptr;  // lasts as long as its client; ended by the shutdown itself
    }
    return new CallCounter(calls_);
  }

 private:
  const std::shared_ptr<std::atomic<int>> calls_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<Server>> Server::Start(
    ServerOptions options, std::vector<grpc::Service*> services,
    std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> creds =
      MakeServerCredentials(options.tls);
  if (!creds.ok()) {
    return creds.status();
  }
  std::unique_ptr<Server> server(new Server(std::move(options)));
  const ServerOptions& opts = server->options_;

  if (!opts.metrics_address.empty()) {
    absl::StatusOr<std::unique_ptr<MetricsServer>> metrics =
        MetricsServer::Start(opts.metrics_address, opts.service_name, registry);
    if (!metrics.ok()) {
      return metrics.status();
    }
    server->metrics_ = *std::move(metrics);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(opts.grpc_address, *creds, &server->grpc_port_);
  builder.SetMaxReceiveMessageSize(opts.max_receive_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which lets a second server silently share a port.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  // Keepalive: notice dead clients of long-lived streams; let clients ping while idle.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  for (grpc::Service* service : services) {
    builder.RegisterService(service);
  }
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> counters;
  counters.push_back(std::make_unique<CallCounterFactory>(server->calls_));
  if (registry != nullptr) {
    counters.push_back(
        GrpcServerMetrics::InterceptorFactory(std::make_shared<GrpcServerMetrics>(registry)));
  }
  builder.experimental().SetInterceptorCreators(std::move(counters));
  server->server_ = builder.BuildAndStart();
  if (server->server_ == nullptr || server->grpc_port_ == 0) {
    return absl::UnavailableError(absl::StrCat("--grpc_address: cannot listen on '",
                                               opts.grpc_address,
                                               "' (in use, or not a host:port)"));
  }
  server->server_->GetHealthCheckService()->SetServingStatus(true);
  server->server_->GetHealthCheckService()->SetServingStatus(opts.service_name, true);
  server->serving_ = true;
  log::Info("serving", {{"grpc_port", server->grpc_port_},
                        {"metrics_port", server->metrics_port()},
                        {"tls", !opts.tls.cert_file.empty()},
                        {"mtls", !opts.tls.client_ca_file.empty()}});
  return server;
}

Server::~Server() { Shutdown(); }

void Server::SetServiceServing(bool serving) {
  absl::MutexLock lock(&mu_);
  if (shutdown_started_ || server_ == nullptr) {
    return;
  }
  server_->GetHealthCheckService()->SetServingStatus(options_.service_name, serving);
  log::Info(serving ? "service ready" : "service not ready", {{"service", options_.service_name}});
}

void Server::SetPartServing(const std::string& part, bool serving) {
  absl::MutexLock lock(&mu_);
  if (shutdown_started_ || server_ == nullptr) {
    return;
  }
  server_->GetHealthCheckService()->SetServingStatus(absl::StrCat(options_.service_name, "/", part),
                                                     serving);
}

void Server::AddDrainHook(std::function<void()> hook) {
  absl::MutexLock lock(&mu_);
  drain_hooks_.push_back(std::move(hook));
}

void Server::AddDrainWait(std::function<void(absl::Time deadline)> wait) {
  absl::MutexLock lock(&mu_);
  drain_waits_.push_back(std::move(wait));
}

void Server::Shutdown() {
  std::vector<std::function<void()>> hooks;
  std::vector<std::function<void(absl::Time)>> waits;
  {
    absl::MutexLock lock(&mu_);
    if (shutdown_started_) {
      mu_.Await(absl::Condition(&shutdown_done_));
      return;
    }
    shutdown_started_ = true;
    hooks = drain_hooks_;
    waits = drain_waits_;
    if (server_ == nullptr) {
      // Start() failed part way: nothing served, nothing to drain.
      metrics_.reset();
      shutdown_done_ = true;
      return;
    }
  }
  const absl::Time start = absl::Now();
  const absl::Time deadline = start + options_.drain_timeout;
  log::Info("shutting down", {{"drain_timeout_ms",
                               absl::ToInt64Milliseconds(options_.drain_timeout)}});
  serving_ = false;
  // Load balancers and Kubernetes probes see NOT_SERVING first.
  server_->GetHealthCheckService()->SetServingStatus(false);
  for (auto& hook : hooks) {
    hook();
  }
  for (auto& wait : waits) {
    wait(deadline);
  }
  // Stops accepting new calls; in-flight ones run until they finish or the deadline passes,
  // then are cancelled. gRPC's graceful shutdown also waits for every client connection to go
  // away, calls or not (edge's channel to exec, a test's idle channel: exec exited ~5 s after its
  // drain). So once no call is in flight, the connections left are closed, again every 20 ms
  // until gRPC's shutdown returns (a connection may arrive just before it stops accepting).
  absl::Notification grpc_stopped;
  std::thread closer([this, deadline, &grpc_stopped] {
    while (!grpc_stopped.WaitForNotificationWithTimeout(absl::Milliseconds(20)) &&
           absl::Now() < deadline) {
      if (calls_->load() == 0) {
        grpc_server_cancel_all_calls(server_->c_server());
      }
    }
  });
  server_->Shutdown(absl::ToChronoTime(deadline));
  grpc_stopped.Notify();
  closer.join();
  server_->Wait();
  metrics_.reset();
  log::Info("stopped", {{"drain_ms", absl::ToInt64Milliseconds(absl::Now() - start)}});
  absl::MutexLock lock(&mu_);
  shutdown_done_ = true;
}

void Server::Wait() {
  absl::MutexLock lock(&mu_);
  mu_.Await(absl::Condition(&shutdown_done_));
}

void BlockShutdownSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void PrepareServiceProcess() {
  BlockShutdownSignals();
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  // Fixed values also turn off glibc's own adjustment of both thresholds.
  mallopt(M_MMAP_THRESHOLD, kMallocMmapThreshold);
  mallopt(M_TRIM_THRESHOLD, kMallocTrimThreshold);
  mallopt(M_ARENA_MAX, kMallocArenaMax);
}

int WaitForShutdownSignal() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
}

}  // namespace podgate::runtime
