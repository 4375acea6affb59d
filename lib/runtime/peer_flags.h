// The client flags for reaching another podgate service, and the channel they describe.
//
//   --<peer>_address   the peer's gRPC target, e.g. dns:///podgate-policy:7101
//   --<peer>_tls_ca    PEM CA of the peer (TLS); empty: plaintext
//   --<peer>_tls_cert  PEM client certificate for mutual TLS (with --<peer>_tls_key)
//   --<peer>_tls_key   PEM key of that certificate
//
// Each peer's four flags are defined once, in their own library (podgate::peer_flags_exec,
// podgate::peer_flags_policy, podgate::peer_flags_audit), linked only into the binaries that
// reach that peer, as auth/auth_flags.h does for the JWT flags. podgate::peer_flags_audit_optional
// is the same audit flags with --audit_address empty by default, for a binary to which audit is
// optional (policy). Calling the accessor of a peer whose library is not linked fails to link.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "runtime/tls.h"

namespace podgate::runtime {

// One peer's flags as given.
struct PeerFlags {
  // --<peer>_address; empty only for an optional peer that is not configured.
  std::string address;
  // --<peer>_tls_*, with the flag prefix for error messages.
  ChannelTlsOptions tls;
};

// Defined in podgate::peer_flags_exec.
PeerFlags ExecPeerFlags();
// Defined in podgate::peer_flags_policy.
PeerFlags PolicyPeerFlags();
// Defined in podgate::peer_flags_audit and podgate::peer_flags_audit_optional.
PeerFlags AuditPeerFlags();

// Checks the TLS files (a certificate without its key, a key without a CA, unreadable or
// mismatched files) and opens the channel; errors are one line naming the flag and the file.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreatePeerChannel(
    const PeerFlags& peer, ChannelCalls calls = ChannelCalls::kDefault);

}  // namespace podgate::runtime
