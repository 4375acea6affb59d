// The flags for reaching the exec service (see runtime/peer_flags.h).
#include <string>

#include "absl/flags/flag.h"
#include "runtime/peer_flags.h"

ABSL_FLAG(std::string, exec_address, "127.0.0.1:7102",
          "The exec service, e.g. dns:///podgate-exec:7102. Default 127.0.0.1:7102.");
ABSL_FLAG(std::string, exec_tls_ca, "", "PEM CA of the exec service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, exec_tls_cert, "", "PEM client certificate for exec (mTLS).");
ABSL_FLAG(std::string, exec_tls_key, "", "PEM client key for exec (mTLS).");

namespace podgate::runtime {

PeerFlags ExecPeerFlags() {
  return PeerFlags{
      absl::GetFlag(FLAGS_exec_address),
      ChannelTlsOptions{absl::GetFlag(FLAGS_exec_tls_ca), absl::GetFlag(FLAGS_exec_tls_cert),
                        absl::GetFlag(FLAGS_exec_tls_key), "", "exec"}};
}

}  // namespace podgate::runtime
