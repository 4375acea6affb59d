// An asynchronous WebSocket client on Boost.Beast, for long-lived streams that must not hold a
// thread each: the exec service's `pods/exec` streams to the Kubernetes API server.
//
// The connection is the same `WebSocketConnection` the server hands to its handlers (Send with
// a bounded queue, Close, PauseReading/ResumeReading), and events arrive on the same
// `WebSocketHandler` interface, serialized on the connection's strand.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
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

// Connections to one TLS server made ahead of need, so that a WebSocket upgrade costs one
// request and its answer instead of TCP, TLS and then the request (the upgrade was the longest
// stage of a command's start in exec). Each spare serves one upgrade: it is taken by
// ConnectWebSocket (AsyncClientOptions::spares), which then asks for a new one. Bounded: at most
// `max_spares` wait at once, each at most `max_idle` (then it is closed: servers close idle
// connections, and a spare must not outlive a rotated CA or client certificate); none is made
// until the first connection asks. A spare is used only with the TLS context and the server it
// was made for, and never once the server has closed or half-closed it. An upgrade whose spare
// breaks before the server answered is retried once on a new connection: a server acts on the
// request only when it answers it.
class SpareConnections {
 public:
  struct Options {
    size_t max_spares = 2;
    absl::Duration max_idle = absl::Seconds(20);
  };
  enum class Event {
    kUsed,        // an upgrade went out on a spare
    kMissed,      // none was ready: the upgrade dialled its own connection
    kExpired,     // closed unused after max_idle
    kClosed,      // found closed by the server when taken
    kStale,       // made with another TLS context or for another server: closed
    kDialFailed,  // making one failed (it is tried again at the next upgrade)
    kRetried,     // its upgrade broke before an answer and went again on a new connection
  };
  static const char* EventName(Event e);

  SpareConnections(boost::asio::io_context& io, Options options,
                   std::function<void(Event)> on_event = nullptr);
  ~SpareConnections();  // closes every spare
  SpareConnections(const SpareConnections&) = delete;
  SpareConnections& operator=(const SpareConnections&) = delete;

  // Spares ready now, and being made.
  size_t ready() const;
  size_t dialling() const;

  // The pool itself, for ConnectWebSocket (defined in async_client.cc).
  struct Impl;
  const std::shared_ptr<Impl>& impl() const { return impl_; }

 private:
  std::shared_ptr<Impl> impl_;
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
  // With connection.tls and tls_context: take a connection made ahead from here when one is
  // ready, and have the next one made. Spares must be made on the same io_context.
  SpareConnections* spares = nullptr;
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
