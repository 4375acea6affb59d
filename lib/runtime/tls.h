// TLS and mutual-TLS credentials for gRPC servers and channels, from PEM files.
//
// Files are read and checked at start-up (certificate parses, key parses and matches the
// certificate, CA bundle parses), so a misconfigured service exits with one clear line naming
// the flag and the file instead of failing at its first handshake.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "grpcpp/channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/security/server_credentials.h"

namespace podgate::runtime {

// A server's TLS material. All empty: plaintext (for loopback and tests).
struct ServerTlsOptions {
  // PEM certificate chain the server presents (flag --tls_cert).
  std::string cert_file;
  // PEM private key of that certificate (flag --tls_key).
  std::string key_file;
  // PEM CA bundle; when set, clients must present a certificate it signed (flag
  // --tls_client_ca): mutual TLS.
  std::string client_ca_file;
};

// How a service connects to another podgate service.
struct ChannelTlsOptions {
  // PEM CA bundle that signed the server's certificate. Empty: plaintext.
  std::string ca_file;
  // PEM client certificate for mutual TLS (optional, needs key_file).
  std::string cert_file;
  // PEM private key of the client certificate.
  std::string key_file;
  // The name to check in the server's certificate instead of the target's host.
  std::string server_name_override;
  // The flag prefix used in error messages, e.g. "policy" for --policy_tls_ca.
  std::string flag_prefix;
};

// Builds server credentials; plaintext when no file is given. Errors name the flag and file.
absl::StatusOr<std::shared_ptr<grpc::ServerCredentials>> MakeServerCredentials(
    const ServerTlsOptions& options);

// Builds channel credentials; plaintext when no CA is given. Errors name the flag and file.
absl::StatusOr<std::shared_ptr<grpc::ChannelCredentials>> MakeChannelCredentials(
    const ChannelTlsOptions& options);

// What a service channel carries.
enum class ChannelCalls {
  // Unary calls and streams, with gRPC's transparent retries (a call that never reached the
  // server, e.g. on a connection being replaced, is sent again).
  kDefault,
  // One long-lived stream per user session (edge's Session streams to exec): gRPC's retry
  // filter is off. It keeps about 6.5 KiB in every call's arena for the call's whole life (the
  // idle-session benchmark: edge 31.0 -> 24.5 KiB per session), and a stream that fails to
  // start is reported to the user's page, which reconnects.
  kSessionStreams,
};

// A channel to another podgate service: TLS per `options`, round-robin over every address the
// target resolves to (e.g. `dns:///podgate-policy:7101`, one per replica behind a headless
// Service) and keepalive pings so that a dead peer is noticed while idle.
absl::StatusOr<std::shared_ptr<grpc::Channel>> CreateServiceChannel(
    const std::string& target, const ChannelTlsOptions& options,
    ChannelCalls calls = ChannelCalls::kDefault);

// Waits until `channel` is connected, or `deadline` passes, starting a connection if there is
// none and letting gRPC reconnect after a failed attempt (every 250 ms to 1 s). Returns whether
// the channel is ready. A command-line client calls it before its first call: a first call on
// a new channel fails at once when the first connection attempt does, so one refused or broken
// attempt (a service restarting, a port-forward coming up) would fail the whole command. When
// it returns false, the caller makes its call anyway: the call fails with gRPC's reason (e.g.
// "Connection refused"), which says more than a timeout.
bool WaitForChannelReady(grpc::Channel& channel, absl::Time deadline);

// A certificate file this process loaded, for podgate_tls_certificate_expiry_timestamp_seconds.
struct LoadedCertificate {
  // "server" (--tls_cert), "client_ca" (--tls_client_ca), "client" (a peer's --<peer>_tls_cert),
  // "ca" (a peer's --<peer>_tls_ca).
  std::string usage;
  std::string path;
  // The earliest notAfter of the certificates in the file (a chain or a CA bundle), Unix seconds.
  double not_after_seconds = 0;
};

// Every certificate file loaded so far by MakeServerCredentials and MakeChannelCredentials, one
// entry per (usage, path), updated when a file is loaded again. Bounded by the flags given.
std::vector<LoadedCertificate> LoadedCertificates();

// The earliest notAfter among the PEM certificates in `pem`, as Unix seconds; InvalidArgument
// when none parses.
absl::StatusOr<double> EarliestNotAfter(const std::string& pem);

// Reads a whole file; the error names `flag` and the file and says why (errno text).
absl::StatusOr<std::string> ReadPemFile(const std::string& flag, const std::string& path);

}  // namespace podgate::runtime
