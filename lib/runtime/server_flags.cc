#include "runtime/server_flags.h"

#include <signal.h>

#include <errno.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/flags/usage.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "runtime/log.h"

ABSL_FLAG(std::string, grpc_address, "",
          "host:port the gRPC server listens on; port 0 picks a free port. Default per "
          "service: policy [::]:7101, exec [::]:7102, audit [::]:7103, edge [::]:7104.");
ABSL_FLAG(std::string, metrics_address, "default",
          "host:port serving Prometheus /metrics; empty disables. Default per service: "
          "policy [::]:9101, exec [::]:9102, audit [::]:9103, edge [::]:9104.");
ABSL_FLAG(std::string, tls_cert, "",
          "PEM certificate chain for the gRPC port. Empty (default) serves plaintext.");
ABSL_FLAG(std::string, tls_key, "", "PEM private key of --tls_cert. Default: none.");
ABSL_FLAG(std::string, tls_client_ca, "",
          "PEM CA bundle; when set, gRPC clients must present a certificate it signed "
          "(mutual TLS). Default: none.");
ABSL_FLAG(absl::Duration, drain_timeout, absl::Seconds(10),
          "How long in-flight calls may run after SIGTERM before they are cancelled, e.g. "
          "10s. Default 10s.");
ABSL_FLAG(std::string, log_level, "info", "Log level: debug, info, warn or error. Default info.");
ABSL_FLAG(int64_t, log_buffer_bytes, 1024 * 1024,
          "Bytes of log lines that may wait for stderr's reader, 65536 to 268435456. A thread of "
          "its own writes them; lines that do not fit while the reader is stalled are dropped, "
          "counted (podgate_log_lines_dropped_total) and reported in one line once stderr takes "
          "writes again. Default 1048576.");

namespace podgate::runtime {

absl::StatusOr<ServerOptions> ServerOptionsFromFlags(const ServiceDefaults& defaults) {
  ServerOptions options;
  options.service_name = defaults.name;
  options.grpc_address = absl::GetFlag(FLAGS_grpc_address);
  if (options.grpc_address.empty()) {
    options.grpc_address = defaults.grpc_address;
  }
  options.metrics_address = absl::GetFlag(FLAGS_metrics_address);
  if (options.metrics_address == "default") {
    options.metrics_address = defaults.metrics_address;
  }
  options.tls.cert_file = absl::GetFlag(FLAGS_tls_cert);
  options.tls.key_file = absl::GetFlag(FLAGS_tls_key);
  options.tls.client_ca_file = absl::GetFlag(FLAGS_tls_client_ca);
  options.drain_timeout = absl::GetFlag(FLAGS_drain_timeout);
  if (options.drain_timeout < absl::ZeroDuration() ||
      options.drain_timeout > absl::Minutes(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--drain_timeout: ", absl::FormatDuration(options.drain_timeout),
                     " is out of range (0s to 10m)"));
  }
  return options;
}

void InitLoggingFromFlags(std::string_view service) {
  log::Level level;
  if (absl::Status s = log::ParseLevel(absl::GetFlag(FLAGS_log_level), &level); !s.ok()) {
    ExitWithError(absl::StrCat("--log_level: ", s.message()));
  }
  const int64_t buffer = absl::GetFlag(FLAGS_log_buffer_bytes);
  if (buffer < static_cast<int64_t>(log::LineWriter::kMinBufferBytes) ||
      buffer > static_cast<int64_t>(log::LineWriter::kMaxBufferBytes)) {
    ExitWithError(absl::StrCat("--log_buffer_bytes: ", buffer, " is out of range (",
                               log::LineWriter::kMinBufferBytes, " to ",
                               log::LineWriter::kMaxBufferBytes, ")"));
  }
  log::Init(service, level, static_cast<size_t>(buffer));
}

void ExitWithError(const std::string& message) {
  // The lines logged before it come first (at most 2 s when stderr's reader is stalled).
  log::Flush(absl::Seconds(2));
  std::fprintf(stderr, "%s: %s\n", program_invocation_short_name, message.c_str());
  std::fflush(stderr);
  std::_Exit(2);
}

int RunServer(const ServiceDefaults& defaults, std::vector<grpc::Service*> services,
              std::shared_ptr<prometheus::Registry> registry,
              const std::function<void(Server&)>& on_started) {
  absl::StatusOr<ServerOptions> options = ServerOptionsFromFlags(defaults);
  if (!options.ok()) {
    ExitWithError(std::string(options.status().message()));
  }
  return RunServer(*std::move(options), std::move(services), std::move(registry), on_started);
}

int RunServer(ServerOptions options, std::vector<grpc::Service*> services,
              std::shared_ptr<prometheus::Registry> registry,
              const std::function<void(Server&)>& on_started) {
  absl::StatusOr<std::unique_ptr<Server>> server =
      Server::Start(std::move(options), std::move(services), std::move(registry));
  if (!server.ok()) {
    ExitWithError(std::string(server.status().message()));
  }
  if (on_started) {
    on_started(**server);
  }
  const int sig = WaitForShutdownSignal();
  log::Info("signal received", {{"signal", sig == SIGTERM ? "SIGTERM" : "SIGINT"}});
  (*server)->Shutdown();
  return 0;
}

}  // namespace podgate::runtime
