// podgate-probe: exit 0 when a podgate service is healthy, 1 when it is not (one line saying
// why), 2 on bad flags. For Kubernetes exec probes and `helm test`; see docs/architecture.md.
#include <cstdio>
#include <string>

#include "absl/flags/flag.h"
#include "absl/time/time.h"
#include "grpc/support/log.h"
#include "probe/probe.h"
#include "runtime/flags.h"

ABSL_FLAG(std::string, address, "",
          "host:port of the gRPC server to ask grpc.health.v1 Health/Check. Default: none.");
ABSL_FLAG(std::string, service, "",
          "The health service name: empty (default) for the whole server, or e.g. policy, "
          "exec/cluster/NAME.");
ABSL_FLAG(std::string, http, "",
          "Instead of --address: GET this http:// or https:// URL (e.g. edge's /readyz); "
          "2xx is healthy. Default: none.");
ABSL_FLAG(std::string, ca, "",
          "PEM CA bundle the server's certificate must chain to: TLS. Empty (default): "
          "plaintext gRPC, or the system roots for https.");
ABSL_FLAG(std::string, cert, "", "PEM client certificate for mutual TLS (with --key).");
ABSL_FLAG(std::string, key, "", "PEM private key of --cert.");
ABSL_FLAG(std::string, server_name, "",
          "The name to verify in the server's certificate instead of the host of --address or "
          "--http. Default: that host.");
ABSL_FLAG(absl::Duration, timeout, absl::Seconds(3),
          "Deadline of the whole check, e.g. 3s. Default 3s.");

namespace {

// gRPC's own log lines (a failed handshake is logged at ERROR) would break the one-line answer.
void DropGrpcLog(gpr_log_func_args*) {}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-probe: health check of a podgate service; exit 0 healthy, 1 not (one line why), "
      "2 bad flags.\n"
      "  podgate-probe --address=HOST:PORT [--service=NAME] [--ca=PEM [--cert=PEM --key=PEM]]\n"
      "                [--server_name=NAME] [--timeout=3s]\n"
      "  podgate-probe --http=URL [--ca=PEM] [--cert=PEM --key=PEM] [--timeout=3s]");
  if (rest.size() > 1) {
    std::fprintf(stderr, "podgate-probe: unexpected argument '%s' (see --help)\n", rest[1]);
    return 2;
  }
  gpr_set_log_function(&DropGrpcLog);
  podgate::probe::ProbeOptions options;
  options.address = absl::GetFlag(FLAGS_address);
  options.service = absl::GetFlag(FLAGS_service);
  options.http_url = absl::GetFlag(FLAGS_http);
  options.ca_file = absl::GetFlag(FLAGS_ca);
  options.cert_file = absl::GetFlag(FLAGS_cert);
  options.key_file = absl::GetFlag(FLAGS_key);
  options.server_name = absl::GetFlag(FLAGS_server_name);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  absl::StatusOr<podgate::probe::ProbeResult> result = podgate::probe::RunProbe(options);
  if (!result.ok()) {
    std::fprintf(stderr, "podgate-probe: %s (see --help)\n",
                 std::string(result.status().message()).c_str());
    return 2;
  }
  std::FILE* out = result->exit_code == 0 ? stdout : stderr;
  std::fprintf(out, "podgate-probe: %s\n", result->line.c_str());
  return result->exit_code;
}
