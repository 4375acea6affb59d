// An asynchronous HTTP/1.1 + WebSocket server on Boost.Beast, shared by every podgate component
// that speaks HTTP to the outside (edge for browsers, kubesim for Kubernetes clients).
//
// One accept loop; each connection runs on its own strand (no thread per connection), optionally
// behind TLS with an optional verified client certificate. A routing callback sees each request
// and answers it, or accepts a WebSocket upgrade with a chosen sub-protocol and a handler. The
// WebSocket connection has a bounded write queue and lets its handler pause reading, so a slow
// peer on either side bounds the memory a connection holds. A route may also stream a chunked
// response body (RouteResult::stream) through the same kind of bounded queue.
#pragma once

#include <atomic>
#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/http.hpp>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"

namespace podgate::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;

// What the server knows about the peer of a request.
struct RequestContext {
  std::string remote_address;  // "ip:port"
  bool tls = false;
  std::string peer_common_name;  // CN of a client certificate the server's CA verified
  std::vector<std::string> peer_dns_names;  // DNS names (SAN) of that certificate
  // Set by an application that replaced remote_address with the address a trusted proxy
  // forwarded (edge's ProxyTrust): the TCP peer's "ip:port". Empty otherwise.
  std::string proxy_address;
  // Set by an application's router: the request's W3C traceparent as the application continued
  // or started it (edge: runtime/trace.h). Empty otherwise.
  std::string traceparent;
};

// A WebSocket connection as its handler sees it. Every method may be called from any thread.
class WebSocketConnection {
 public:
  virtual ~WebSocketConnection() = default;

  // Queues one message. Returns false when the queue is at or above the high watermark: the
  // caller should stop producing until its handler's OnWritable. A queue beyond the hard limit
  // closes the connection (the peer is not reading).
  virtual bool Send(std::string data, bool binary = true) = 0;

  // Queues one binary message: `head` followed by `body`, as Send(head + body) would, but
  // without joining them into one string first (the server writes both in one frame). For a
  // protocol that puts a tag of a few bytes before a large payload (edge's v1 output: a kind
  // byte, then the bytes), so the payload is not copied once more. This default joins them;
  // the server's connections override it.
  virtual bool SendWithHead(std::string_view head, std::string body);

  // Sends a close frame once the queued messages are written.
  virtual void Close(uint16_t code = 1000, std::string reason = "") = 0;

  // Stops/starts reading messages from the peer (backpressure towards the peer).
  virtual void PauseReading() = 0;
  virtual void ResumeReading() = 0;

  virtual size_t queued_bytes() const = 0;

  // From a handler callback (on the strand): whether at least 512 bytes of what follows are
  // already here, received but not yet read: more than any control frame, so part of a next
  // message, and a read started now would not wait for the network for it to begin. A handler
  // may hold what it was given until that next message (kube_client.cc's ExecBridge). False
  // where the connection cannot tell.
  virtual bool InputWaiting() { return false; }

  // The peer has authenticated (e.g. with a first message): the connection no longer counts
  // against ServerOptions::max_unauthenticated_per_source.
  virtual void SetAuthenticated() {}

  // The connection's strand: handler callbacks run on it; I/O objects the handler creates on it
  // share the connection's serialization.
  virtual boost::asio::any_io_executor executor() const = 0;
};

// Receives a WebSocket connection's events, all on the connection's strand.
class WebSocketHandler {
 public:
  virtual ~WebSocketHandler() = default;
  // The handshake completed; `connection` is valid until the handler drops it.
  virtual void OnOpen(std::shared_ptr<WebSocketConnection> connection) = 0;
  // One whole message. `data` points into the connection's read buffer and is valid only
  // during the call: a handler copies what it keeps (exec appends output frames straight into
  // the chunk it passes on, with no copy of the message in between).
  virtual void OnMessage(std::string_view data, bool binary) = 0;
  // The queue fell below the low watermark after Send returned false.
  virtual void OnWritable() {}
  // The connection is gone (peer close, error, or Close completed). Called exactly once, and
  // only after OnOpen; the connection drops its reference to the handler right after.
  virtual void OnClose(std::string reason) = 0;
};

// A streamed response body (chunked transfer encoding, e.g. Server-Sent Events) as its producer
// sees it. Every method may be called from any thread.
class ResponseStream {
 public:
  virtual ~ResponseStream() = default;

  // Queues one chunk (empty data is ignored). Returns false when the queue is at or above the
  // high watermark: the producer should stop until its OnWritable. A queue beyond the hard
  // limit closes the connection (the peer is not reading).
  virtual bool Write(std::string data) = 0;

  // Ends the body (the last chunk) once the queued chunks are written, then closes the
  // connection.
  virtual void End() = 0;

  virtual size_t queued_bytes() const = 0;

  // The connection's strand: producer callbacks run on it; timers the producer creates on it
  // share the connection's serialization.
  virtual boost::asio::any_io_executor executor() const = 0;
};

// Produces a streamed response; its events arrive on the connection's strand.
class StreamProducer {
 public:
  virtual ~StreamProducer() = default;
  // The head is queued; `stream` accepts chunks until OnClose.
  virtual void OnStart(std::shared_ptr<ResponseStream> stream) = 0;
  // The queue fell below half the high watermark after Write returned false.
  virtual void OnWritable() {}
  // The stream is over: the last chunk was written, the peer went away (closed, reset, or sent
  // anything), a write failed or stalled for idle_timeout. Exactly once, after OnStart; the
  // connection drops its reference to the producer right after.
  virtual void OnClose(std::string reason) = 0;
};

// A route's answer: a response, or an accepted upgrade.
struct RouteResult {
  std::optional<Response> response;
  std::shared_ptr<WebSocketHandler> websocket;  // non-null: accept the upgrade
  std::string subprotocol;                      // sent in Sec-WebSocket-Protocol when non-empty
  // More headers on an accepted upgrade's 101 response (e.g. edge's traceresponse).
  std::vector<std::pair<std::string, std::string>> upgrade_headers;
  // Set (with no response and no websocket): the answer comes later. The server calls it once
  // with a `reply` that may be called from any thread, exactly once, e.g. when a backend call
  // completes; the connection waits (bounded by the idle timeout) without holding a thread.
  std::function<void(std::function<void(Response)> reply)> deferred;
  // The request carried a verified credential: the connection leaves the unauthenticated count
  // of its source and keeps the (longer) `idle_timeout` between requests from now on. For an
  // accepted upgrade, the WebSocket starts authenticated.
  bool authenticated = false;
  // Set with `response` as the head (status and headers; its body is ignored): the body is
  // streamed in chunks by the producer, and the connection closes after it (no keep-alive).
  // Not for upgrades.
  std::shared_ptr<StreamProducer> stream;
};

// Called on the connection's strand for every request; must not block. For a WebSocket upgrade
// (GET, or POST as the Kubernetes API server also accepts) `is_upgrade` is true.
using Router = std::function<RouteResult(const Request& request, const RequestContext& context,
                                         bool is_upgrade)>;

struct ServerOptions {
  std::string address = "127.0.0.1";
  uint16_t port = 0;  // 0 picks a free port
  // TLS when cert_file is set (PEM). With client_ca_file, client certificates are requested and
  // verified against it, but not required (bearer tokens are the other way in).
  std::string cert_file;
  std::string key_file;
  std::string client_ca_file;
  size_t header_limit_bytes = 16 * 1024;
  size_t body_limit_bytes = 1024 * 1024;
  size_t websocket_message_limit_bytes = 1024 * 1024;
  size_t write_high_watermark_bytes = 256 * 1024;
  size_t write_hard_limit_bytes = 8 * 1024 * 1024;
  absl::Duration handshake_timeout = absl::Seconds(10);  // TLS + request headers + upgrade
  absl::Duration idle_timeout = absl::Seconds(60);       // keep-alive HTTP between requests
  // Keep-alive between requests on a connection none of whose requests was authenticated
  // (RouteResult::authenticated), so idle anonymous connections do not pile up. Unset: as
  // idle_timeout.
  std::optional<absl::Duration> unauthenticated_idle_timeout;
  // WebSocket keepalive: ping when the peer has been silent for half of it, close when it stays
  // silent for all of it. Infinite (the default) disables pings.
  absl::Duration websocket_keepalive = absl::InfiniteDuration();
  size_t max_connections = 4096;
  // Per source address: the peer's IP address as the socket reports it (no proxy header is
  // trusted). Connections of any kind (HTTP and WebSocket), and connections that have not
  // authenticated yet. Checked at accept, before anything is read; 0 means no limit.
  size_t max_connections_per_source = 0;
  size_t max_unauthenticated_per_source = 0;
  // When set and true for a peer's IP address, its connections are not counted per source
  // (e.g. a trusted proxy, behind which the application counts the forwarded clients itself).
  // Any I/O thread; must not block.
  std::function<bool(const std::string& address)> per_source_exempt;
  // A refused connection (plain HTTP) is answered 503 (max_connections) or 429 (per source)
  // with this Retry-After, then closed; a TLS connection is just closed.
  int retry_after_seconds = 5;
  // Accepting fails for lack of descriptors or memory (EMFILE, ENFILE, ENOBUFS, ENOMEM): the
  // accept loop pauses this long, doubling up to accept_backoff_max, until an accept succeeds.
  absl::Duration accept_backoff_initial = absl::Milliseconds(10);
  absl::Duration accept_backoff_max = absl::Seconds(1);
  // Headers added to every HTTP response the server writes that does not set them itself:
  // the router's answers, the parser's own 400/413/431, the 500 of a failing router and the
  // refusals at accept (e.g. a web front's security headers). Not on a WebSocket's 101.
  std::vector<std::pair<std::string, std::string>> response_headers;
  // Called for each connection refused at accept, with the reason: "max_connections",
  // "per_source", "unauthenticated_per_source". Any I/O thread; must not block.
  std::function<void(std::string_view reason)> on_refusal;
  // Called each time the accept loop backs off: the error and the pause. Any I/O thread.
  std::function<void(const std::string& error, absl::Duration pause)> on_accept_backoff;
};

// Counters a server keeps; read them for metrics.
struct ServerStats {
  std::atomic<uint64_t> connections_accepted{0};
  std::atomic<uint64_t> connections_rejected{0};  // over max_connections
  std::atomic<uint64_t> connections_rejected_per_source{0};
  std::atomic<uint64_t> connections_rejected_unauthenticated{0};  // per source, unauthenticated
  std::atomic<uint64_t> accept_backoffs{0};                       // EMFILE, ENFILE, ENOBUFS, ENOMEM
  std::atomic<int64_t> connections_open{0};
  std::atomic<uint64_t> tls_handshake_failures{0};
  std::atomic<uint64_t> requests{0};
  std::atomic<uint64_t> bad_requests{0};  // unparseable or over limits
  std::atomic<uint64_t> websocket_upgrades{0};
  std::atomic<uint64_t> websocket_slow_peer_closes{0};
  std::atomic<uint64_t> streams_started{0};
  std::atomic<uint64_t> stream_slow_peer_closes{0};  // over write_hard_limit_bytes or stalled
  // Requests read whose answer is not written yet (a deferred one still waits, or its write is
  // under way); an upgrade or a streamed response stops counting when it starts.
  std::atomic<int64_t> answers_pending{0};
};

class Server {
 public:
  // Binds and starts accepting on `io`. Runs until Stop or until `io` stops.
  static absl::StatusOr<std::unique_ptr<Server>> Start(boost::asio::io_context& io,
                                                       ServerOptions options, Router router);
  ~Server();

  uint16_t port() const;
  const ServerStats& stats() const;
  // Stops accepting; open connections finish on their own.
  void Stop();
  // Waits until every request read so far has its answer written (answers_pending is 0), or
  // until `deadline`; true when none is left. For shutdown: once whatever produces deferred
  // answers is done, their writes are still queued on the I/O context, and stopping it then
  // would close those connections unanswered.
  bool WaitAnswersWritten(absl::Time deadline) const;

  struct Impl;

 private:
  explicit Server(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

// A listen address as flags give it: "host:port" or "[ipv6]:port", the host an IP address (no
// name is looked up), the port 0 to 65535 (0 picks a free port).
struct ListenAddress {
  std::string host;  // without brackets, e.g. "::" or "127.0.0.1"
  uint16_t port = 0;
};
absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text);

// A response with a body and content type, keep-alive following the request.
Response MakeResponse(const Request& request, boost::beast::http::status status,
                      std::string content_type, std::string body);

}  // namespace podgate::http
