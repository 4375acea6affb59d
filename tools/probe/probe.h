// podgate-probe's checks, for Kubernetes exec probes and `helm test`: a grpc.health.v1 Check
// over plaintext, TLS or mutual TLS, or an HTTP(S) GET (edge's /readyz), each answered as an exit
// status and one line.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podgate::probe {

struct ProbeOptions {
  // host:port of a gRPC server (gRPC mode); exclusive with `http_url`.
  std::string address;
  // The grpc.health.v1 service name ("" asks about the whole server; "policy", "exec/cluster/x").
  std::string service;
  // An http:// or https:// URL to GET (HTTP mode).
  std::string http_url;
  // PEM CA bundle: TLS, verified against it. Empty: plaintext (gRPC), system roots (https).
  std::string ca_file;
  // PEM client certificate and key: mutual TLS.
  std::string cert_file;
  std::string key_file;
  // The name to verify in the server's certificate instead of the address's host.
  std::string server_name;
  // The whole check's deadline.
  absl::Duration timeout = absl::Seconds(3);
};

struct ProbeResult {
  // 0: serving (gRPC SERVING, HTTP 2xx); 1: anything else.
  int exit_code = 1;
  // One line, without the program name: `127.0.0.1:7101 service "policy": SERVING`.
  std::string line;
};

// Checks the options themselves (one mode, TLS files that go together, a URL that parses, a
// positive timeout); InvalidArgument naming the flag.
absl::Status ValidateProbeOptions(const ProbeOptions& options);

// Runs the check. Errors reaching the server are a result (exit 1), not a status; only bad
// options (ValidateProbeOptions, unreadable files) are an error status.
absl::StatusOr<ProbeResult> RunProbe(const ProbeOptions& options);

}  // namespace podgate::probe
