// The flags for reaching the policy service (see runtime/peer_flags.h).
#include <string>

#include "absl/flags/flag.h"
#include "runtime/peer_flags.h"

ABSL_FLAG(std::string, policy_address, "127.0.0.1:7101",
          "The policy service, e.g. dns:///podgate-policy:7101. Default 127.0.0.1:7101.");
ABSL_FLAG(std::string, policy_tls_ca, "",
          "PEM CA of the policy service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, policy_tls_cert, "", "PEM client certificate for policy (mTLS).");
ABSL_FLAG(std::string, policy_tls_key, "", "PEM client key for policy (mTLS).");

namespace podgate::runtime {

PeerFlags PolicyPeerFlags() {
  return PeerFlags{
      absl::GetFlag(FLAGS_policy_address),
      ChannelTlsOptions{absl::GetFlag(FLAGS_policy_tls_ca), absl::GetFlag(FLAGS_policy_tls_cert),
                        absl::GetFlag(FLAGS_policy_tls_key), "", "policy"}};
}

}  // namespace podgate::runtime
