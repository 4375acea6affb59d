// The flags every podgate server shares, and the main() skeleton that uses them.
//
//   --grpc_address     host:port for gRPC (default per service, see ServiceDefaults)
//   --metrics_address  host:port for Prometheus /metrics (empty disables)
//   --tls_cert / --tls_key / --tls_client_ca   PEM files: TLS, and mutual TLS with a CA
//   --drain_timeout    how long in-flight calls may finish after SIGTERM
//   --log_level        debug, info, warn or error
// Each has an environment override: PODGATE_<FLAG NAME IN UPPER CASE>.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "grpcpp/impl/service_type.h"
#include "prometheus/registry.h"
#include "runtime/server.h"

namespace podgate::runtime {

// A service's defaults for the shared flags.
struct ServiceDefaults {
  // Short name: "policy", "exec", "audit", "edge".
  std::string name;
  // Used when --grpc_address is empty.
  std::string grpc_address;
  // Used when --metrics_address is not given.
  std::string metrics_address;
};

// Reads the shared flags; errors name the flag.
absl::StatusOr<ServerOptions> ServerOptionsFromFlags(const ServiceDefaults& defaults);

// Sets up JSON logging from --log_level; exits with one clear line when the level is bad.
void InitLoggingFromFlags(std::string_view service);

// Prints "<program>: <message>" on stderr and exits with status 2: a start-up failure.
[[noreturn]] void ExitWithError(const std::string& message);

// The rest of a service's main(): starts the server with `services`, calls `on_started` (for
// drain hooks), waits for SIGINT/SIGTERM, shuts down gracefully. Returns the exit status.
int RunServer(const ServiceDefaults& defaults, std::vector<grpc::Service*> services,
              std::shared_ptr<prometheus::Registry> registry,
              const std::function<void(Server&)>& on_started = nullptr);
// The same with the shared flags already read (a service's own options hold them).
int RunServer(ServerOptions options, std::vector<grpc::Service*> services,
              std::shared_ptr<prometheus::Registry> registry,
              const std::function<void(Server&)>& on_started = nullptr);

}  // namespace podgate::runtime
