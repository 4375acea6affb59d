// An asynchronous WebSocket client on Boost.Beast, for long-lived streams that must not hold a
// thread each: the exec service's `pods/exec` streams to the Kubernetes API server.
//
// The connection is the same `WebSocketConnection` the server hands to its handlers (Send with
// a bounded queue, Close, PauseReading/ResumeReading), and events arrive on the same
// `WebSocketHandler` interface, serialized on the connection's strand.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "http/client.h"
#include "http/server.h"

namespace podgate::http {

// The outcome of the connect and upgrade, reported once before any handler event.
struct HandshakeResult {
  // OK; or UNAVAILABLE / DEADLINE_EXCEEDED (network, TLS), FAILED_PRECONDITION (the server
  // answered the upgrade with an HTTP error: `refusal` holds its status and body), or
  // INVALID_ARGUMENT (bad options).
  absl::Status status;
  // The sub-protocol the server chose ("" when none).
  std::string subprotocol;
  ClientResponse refusal;
};

struct AsyncClientOptions {
  // Connection, TLS and header settings; `timeout` bounds connect, TLS and upgrade together.
  ClientOptions connection;
  // After the upgrade: ping when idle this long, and give up when no pong comes as long again.
  absl::Duration keepalive = absl::Seconds(30);
  // Largest message accepted from the server.
  size_t max_message_bytes = 16 * 1024 * 1024;
  // Send() returns false above this many queued bytes; the connection is closed above the hard
  // limit (the server is not reading).
  size_t write_high_watermark_bytes = 256 * 1024;
  size_t write_hard_limit_bytes = 8 * 1024 * 1024;
  // With connection.tls: a context made once by MakeSharedClientTlsContext and used for every
  // connection, instead of building one (reading the CA and client certificate files) per
  // connection. connection's TLS file and PEM fields are then not read.
  std::shared_ptr<boost::asio::ssl::context> tls_context;
};

// A client TLS context for `options` (as MakeClientTlsContext) that connections may share.
absl::StatusOr<std::shared_ptr<boost::asio::ssl::context>> MakeSharedClientTlsContext(
    const ClientOptions& options);

// Connects to `target` (path and query) offering `subprotocols`, most preferred first. Calls
// `on_handshake` exactly once; on success, then `handler->OnOpen` and the other events. The
// handler must not be destroyed before OnClose (the connection keeps a reference).
void ConnectWebSocket(boost::asio::io_context& io, const AsyncClientOptions& options,
                      const std::string& target, std::vector<std::string> subprotocols,
                      std::shared_ptr<WebSocketHandler> handler,
                      std::function<void(const HandshakeResult&)> on_handshake);

}  // namespace podgate::http
