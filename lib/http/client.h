// Blocking HTTP and WebSocket clients over plain TCP or TLS (Boost.Beast), for callers that own a
// thread per call: the exec service's calls to the Kubernetes API server, tests and benchmarks.
// Every operation has a deadline; a refused WebSocket upgrade reports the HTTP status and body.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "http/url.h"

namespace podgate::http {

struct ClientOptions {
  std::string host = "127.0.0.1";
  uint16_t port = 0;
  bool tls = false;
  std::string ca_file;      // verify the server against it (TLS); empty: system roots
  std::string ca_pem;       // or against these PEM certificates, held in memory
  std::string server_name;  // SNI and host name to verify; default: host
  bool insecure_skip_verify = false;
  std::string client_cert_file;  // optional client certificate (PEM) and key
  std::string client_key_file;
  std::string client_cert_pem;  // or the same held in memory (never written to disk)
  std::string client_key_pem;
  std::vector<std::pair<std::string, std::string>> headers;  // e.g. Authorization
  absl::Duration timeout = absl::Seconds(10);                // per operation
  size_t max_message_bytes = 64 * 1024 * 1024;
};

// Options for calls to `url`'s server (its host, port and scheme), verified against `ca_file`
// (empty: system roots), each step bounded by `timeout`, answers by `max_message_bytes`.
ClientOptions ClientOptionsFor(const HttpUrl& url, const std::string& ca_file,
                               absl::Duration timeout, size_t max_message_bytes);

struct ClientResponse {
  int status = 0;
  std::string content_type;
  std::string body;
  // Every response header in order, names as the server wrote them (e.g. Set-Cookie).
  std::vector<std::pair<std::string, std::string>> headers;

  // The first header named `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};

// A failed network step as a status: DEADLINE_EXCEEDED for a timeout, UNAVAILABLE otherwise,
// naming the step ("connect: Connection refused"). Shared by the blocking and async clients.
absl::Status NetError(const char* what, const boost::system::error_code& ec);

// The TLS client context every podgate HTTP/WebSocket client uses: TLS 1.2 or newer, the
// server verified against `ca_file` (or the system roots) unless insecure_skip_verify, and the
// optional client certificate.
absl::Status MakeClientTlsContext(const ClientOptions& options,
                                  std::optional<boost::asio::ssl::context>& context);

// Before a client TLS handshake: SNI and the name (or IP address) to verify, both
// `options.server_name` or else `options.host`.
void SetTlsPeerName(SSL* native, const ClientOptions& options);

// One request on a fresh connection.
absl::StatusOr<ClientResponse> Fetch(const ClientOptions& options, const std::string& method,
                                     const std::string& target, const std::string& body = "");

// A received WebSocket message.
struct Message {
  std::string data;
  bool binary = true;
};

class WebSocketClient {
 public:
  // Connects and upgrades at `target`, offering `subprotocols` (most preferred first). When the
  // server answers the upgrade with an HTTP error, the status is FailedPrecondition and
  // `refusal` (when given) receives the server's status code and body.
  static absl::StatusOr<std::unique_ptr<WebSocketClient>> Connect(
      const ClientOptions& options, const std::string& target,
      const std::vector<std::string>& subprotocols, ClientResponse* refusal = nullptr);

  virtual ~WebSocketClient() = default;

  // The sub-protocol the server selected ("" when none).
  virtual const std::string& subprotocol() const = 0;
  // The headers of the server's 101 response, as received.
  virtual const std::vector<std::pair<std::string, std::string>>& upgrade_headers() const = 0;

  virtual absl::Status Write(const std::string& data, bool binary = true) = 0;

  // The next message. OutOfRange when the server closed the connection cleanly (the close code
  // and reason in the message), Unavailable on a transport error, DeadlineExceeded on timeout.
  virtual absl::StatusOr<Message> Read(absl::Duration timeout) = 0;

  // Sends a close frame and waits for the server's.
  virtual absl::Status Close() = 0;

  // Drops the TCP connection without a close frame (a client that vanishes).
  virtual void Abort() = 0;
};

}  // namespace podgate::http
