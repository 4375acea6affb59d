// The flags for reaching the audit service (see runtime/peer_flags.h). Compiled twice: as
// podgate::peer_flags_audit, and with PODGATE_AUDIT_OPTIONAL as podgate::peer_flags_audit_optional,
// where --audit_address is empty by default because audit is optional to that binary.
#include <string>

#include "absl/flags/flag.h"
#include "runtime/peer_flags.h"

#ifdef PODGATE_AUDIT_OPTIONAL
ABSL_FLAG(std::string, audit_address, "",
          "The audit service that records every policy version loaded or refused, e.g. "
          "dns:///podgate-audit:7103. Empty (default): changes are only logged.");
#else
ABSL_FLAG(std::string, audit_address, "127.0.0.1:7103",
          "The audit service, e.g. dns:///podgate-audit:7103. Default 127.0.0.1:7103.");
#endif
ABSL_FLAG(std::string, audit_tls_ca, "", "PEM CA of the audit service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, audit_tls_cert, "", "PEM client certificate for audit (mTLS).");
ABSL_FLAG(std::string, audit_tls_key, "", "PEM client key for audit (mTLS).");

namespace podgate::runtime {

PeerFlags AuditPeerFlags() {
  return PeerFlags{
      absl::GetFlag(FLAGS_audit_address),
      ChannelTlsOptions{absl::GetFlag(FLAGS_audit_tls_ca), absl::GetFlag(FLAGS_audit_tls_cert),
                        absl::GetFlag(FLAGS_audit_tls_key), "", "audit"}};
}

}  // namespace podgate::runtime
