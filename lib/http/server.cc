#include "http/server.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <array>
#include <boost/asio/dispatch.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <list>
#include <mutex>
#include <optional>
#include <type_traits>
#include <unordered_map>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "http/socket_options.h"

namespace podgate::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(net::io_context& io_context, ServerOptions opts, Router r)
      : io(io_context),
        options(std::move(opts)),
        router(std::move(r)),
        acceptor(io_context),
        accept_timer(io_context) {}

  void DoAccept() {
    acceptor.async_accept(net::make_strand(io),
                          beast::bind_front_handler(&Impl::OnAccept, shared_from_this()));
  }
  void OnAccept(error_code ec, tcp::socket socket);
  // Answers (plain HTTP) and closes a connection refused at accept.
  void Refuse(tcp::socket socket, std::string_view reason);

  bool TracksSources() const {
    return options.max_connections_per_source > 0 || options.max_unauthenticated_per_source > 0;
  }
  // Counts a new (unauthenticated) connection from `source`; the refusal reason when over a
  // per-source limit.
  std::optional<std::string_view> AcquireSource(const std::string& source) {
    std::lock_guard<std::mutex> lock(sources_mu);
    SourceCounts& c = sources[source];
    std::optional<std::string_view> refusal;
    if (options.max_connections_per_source > 0 && c.total >= options.max_connections_per_source) {
      refusal = "per_source";
    } else if (options.max_unauthenticated_per_source > 0 &&
               c.unauthenticated >= options.max_unauthenticated_per_source) {
      refusal = "unauthenticated_per_source";
    }
    if (refusal.has_value()) {
      if (c.total == 0) {
        sources.erase(source);
      }
      return refusal;
    }
    ++c.total;
    ++c.unauthenticated;
    return std::nullopt;
  }
  void SourceAuthenticated(const std::string& source) {
    std::lock_guard<std::mutex> lock(sources_mu);
    auto it = sources.find(source);
    if (it != sources.end() && it->second.unauthenticated > 0) {
      --it->second.unauthenticated;
    }
  }
  void ReleaseSource(const std::string& source, bool authenticated) {
    std::lock_guard<std::mutex> lock(sources_mu);
    auto it = sources.find(source);
    if (it == sources.end()) {
      return;
    }
    --it->second.total;
    if (!authenticated && it->second.unauthenticated > 0) {
      --it->second.unauthenticated;
    }
    if (it->second.total == 0) {
      sources.erase(it);  // memory follows the open connections, not every address ever seen
    }
  }

  struct SourceCounts {
    size_t total = 0;
    size_t unauthenticated = 0;
  };

  net::io_context& io;
  ServerOptions options;
  Router router;
  std::optional<ssl::context> ssl_context;
  tcp::acceptor acceptor;
  ServerStats stats;
  std::atomic<bool> stopped{false};
  uint16_t port = 0;
  std::mutex sources_mu;
  std::unordered_map<std::string, SourceCounts> sources;  // guarded by sources_mu
  std::atomic<int> refusals_in_flight{0};
  // Only the accept loop touches these (one accept or one pause outstanding at a time).
  net::steady_timer accept_timer;
  absl::Duration accept_backoff = absl::ZeroDuration();
};

bool WebSocketConnection::SendWithHead(std::string_view head, std::string body) {
  std::string data;
  data.reserve(head.size() + body.size());
  data.append(head).append(body);
  return Send(std::move(data), true);
}

namespace {

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

template <class Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

// Counts one in a gauge of ServerStats for as long as it lives: a connection for as long as
// some session object owns it (connections_open), a request from when it is read until its
// answer is written (answers_pending).
class Counted {
 public:
  explicit Counted(std::atomic<int64_t>& gauge) : gauge_(gauge) { ++gauge_; }
  ~Counted() { --gauge_; }
  Counted(const Counted&) = delete;
  Counted& operator=(const Counted&) = delete;

 private:
  std::atomic<int64_t>& gauge_;
};

// A connection's place in its source address's counts (Server::Impl::AcquireSource), released
// when the last session object owning the connection goes.
class SourceSlot {
 public:
  SourceSlot(std::shared_ptr<Server::Impl> server, std::string source)
      : server_(std::move(server)), source_(std::move(source)) {}
  ~SourceSlot() { server_->ReleaseSource(source_, authenticated_.load()); }
  SourceSlot(const SourceSlot&) = delete;
  SourceSlot& operator=(const SourceSlot&) = delete;

  void MarkAuthenticated() {
    if (!authenticated_.exchange(true)) {
      server_->SourceAuthenticated(source_);
    }
  }

 private:
  std::shared_ptr<Server::Impl> server_;
  std::string source_;
  std::atomic<bool> authenticated_{false};
};

// A connection refused at accept: a short HTTP answer (plain HTTP only), then the request the
// client may already have sent is read and dropped until it closes, for at most a second, so
// the answer is not lost to a reset.
class Refusal : public std::enable_shared_from_this<Refusal> {
 public:
  Refusal(tcp::socket socket, std::string text, std::shared_ptr<Server::Impl> server)
      : socket_(std::move(socket)),
        timer_(socket_.get_executor()),
        text_(std::move(text)),
        server_(std::move(server)) {}
  ~Refusal() { --server_->refusals_in_flight; }

  void Run() {
    timer_.expires_after(std::chrono::seconds(1));
    timer_.async_wait([self = shared_from_this()](error_code ec) {
      if (!ec) {
        error_code ignored;
        self->socket_.close(ignored);
      }
    });
    net::async_write(socket_, net::buffer(text_),
                     [self = shared_from_this()](error_code ec, size_t) {
                       if (ec) {
                         self->Done();
                         return;
                       }
                       error_code ignored;
                       self->socket_.shutdown(tcp::socket::shutdown_send, ignored);
                       self->Drain();
                     });
  }

 private:
  void Drain() {
    socket_.async_read_some(net::buffer(buffer_),
                            [self = shared_from_this()](error_code ec, size_t) {
                              if (ec) {
                                self->Done();
                                return;
                              }
                              self->Drain();
                            });
  }
  void Done() {
    timer_.cancel();
    error_code ignored;
    socket_.close(ignored);
  }

  tcp::socket socket_;
  net::steady_timer timer_;
  std::string text_;
  std::shared_ptr<Server::Impl> server_;
  char buffer_[1024];
};

bool HeaderHasToken(const Request& req, bhttp::field field, std::string_view token) {
  auto it = req.find(field);
  if (it == req.end()) {
    return false;
  }
  for (absl::string_view part :
       absl::StrSplit(absl::string_view(it->value().data(), it->value().size()), ',')) {
    if (absl::EqualsIgnoreCase(absl::StripAsciiWhitespace(part),
                               absl::string_view(token.data(), token.size()))) {
      return true;
    }
  }
  return false;
}

bool IsUpgradeRequest(const Request& req) {
  if (req.method() != bhttp::verb::get && req.method() != bhttp::verb::post) {
    return false;
  }
  return HeaderHasToken(req, bhttp::field::connection, "upgrade") &&
         HeaderHasToken(req, bhttp::field::upgrade, "websocket");
}

template <class Stream>
class WebSocketSession : public WebSocketConnection,
                         public std::enable_shared_from_this<WebSocketSession<Stream>> {
 public:
  WebSocketSession(Stream&& stream, std::shared_ptr<Server::Impl> server,
                   std::unique_ptr<SourceSlot> source)
      : ws_(std::move(stream)),
        server_(std::move(server)),
        count_(server_->stats.connections_open),
        source_(std::move(source)) {}

  void Accept(Request request, std::string subprotocol,
              std::vector<std::pair<std::string, std::string>> headers,
              std::shared_ptr<WebSocketHandler> handler) {
    request_ = std::move(request);
    handler_ = std::move(handler);
    const ServerOptions& o = server_->options;
    beast::get_lowest_layer(ws_).expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = ToChrono(o.handshake_timeout);
    if (o.websocket_keepalive == absl::InfiniteDuration()) {
      timeouts.idle_timeout = websocket::stream_base::none();
      timeouts.keep_alive_pings = false;
    } else {
      timeouts.idle_timeout = ToChrono(o.websocket_keepalive);
      timeouts.keep_alive_pings = true;
    }
    ws_.set_option(timeouts);
    ws_.set_option(websocket::stream_base::decorator(
        [subprotocol, headers = std::move(headers)](websocket::response_type& res) {
          res.set(bhttp::field::server, "podgate");
          if (!subprotocol.empty()) {
            res.set(bhttp::field::sec_websocket_protocol, subprotocol);
          }
          for (const auto& [name, value] : headers) {
            res.set(name, value);
          }
        }));
    ws_.read_message_max(o.websocket_message_limit_bytes);
    ws_.auto_fragment(false);
    ws_.async_accept(
        request_, beast::bind_front_handler(&WebSocketSession::OnAccept, this->shared_from_this()));
  }

  bool Send(std::string data, bool binary) override {
    return Queue(Outgoing{{}, std::move(data), binary});
  }

  bool SendWithHead(std::string_view head, std::string body) override {
    return Queue(Outgoing{std::string(head), std::move(body), true});
  }

  void Close(uint16_t code, std::string reason) override {
    net::dispatch(ws_.get_executor(),
                  [self = this->shared_from_this(), code, reason = std::move(reason)]() mutable {
                    if (self->close_pending_ || self->finished_) {
                      return;
                    }
                    self->close_pending_ = true;
                    self->close_reason_ =
                        websocket::close_reason(static_cast<websocket::close_code>(code), reason);
                    if (!self->writing_) {
                      self->DoWrite();
                    }
                  });
  }

  void PauseReading() override {
    net::dispatch(ws_.get_executor(), [self = this->shared_from_this()] { self->paused_ = true; });
  }

  void ResumeReading() override {
    net::dispatch(ws_.get_executor(), [self = this->shared_from_this()] {
      self->paused_ = false;
      if (self->open_ && !self->reading_ && !self->finished_) {
        self->DoRead();
      }
    });
  }

  size_t queued_bytes() const override { return queued_bytes_.load(); }

  void SetAuthenticated() override {
    if (source_ != nullptr) {
      source_->MarkAuthenticated();
    }
  }

  net::any_io_executor executor() const override {
    return const_cast<websocket::stream<Stream, false>&>(ws_).get_executor();
  }

 private:
  // One message: `head` then `data` (head is empty but for SendWithHead: short enough for the
  // string's own storage, so it costs no allocation).
  struct Outgoing {
    std::string head;
    std::string data;
    bool binary;
    size_t size() const { return head.size() + data.size(); }
  };

  void OnAccept(error_code ec) {
    // The handshake is over: its request (headers, often a credential) and the decorator that
    // wrote the 101 are not needed again, so an idle connection does not keep them.
    request_ = Request();
    ws_.set_option(websocket::stream_base::decorator([](websocket::response_type&) {}));
    if (ec) {
      handler_.reset();  // never opened: no OnOpen, no OnClose
      return;
    }
    ++server_->stats.websocket_upgrades;
    open_ = true;
    handler_->OnOpen(this->shared_from_this());
    if (!paused_ && !finished_) {
      DoRead();
    }
  }

  void DoRead() {
    reading_ = true;
    ws_.async_read(read_buffer_,
                   beast::bind_front_handler(&WebSocketSession::OnRead, this->shared_from_this()));
  }

  void OnRead(error_code ec, size_t) {
    if (ec) {
      reading_ = false;
      Finish(ec == websocket::error::closed ? "closed by peer" : ec.message());
      return;
    }
    // The handler sees the message in read_buffer_ itself, so no read may start until it
    // returns: reading_ stays set through the call (a ResumeReading inside it only clears
    // paused_, and the read starts below).
    if (handler_ != nullptr) {
      const auto message = read_buffer_.cdata();
      handler_->OnMessage(
          std::string_view(static_cast<const char*>(message.data()), message.size()),
          ws_.got_binary());
    }
    read_buffer_.consume(read_buffer_.size());
    if (read_buffer_.capacity() > kIdleReadCapacity) {
      // A large message grew the buffer: give the memory back rather than keep it for a
      // connection that may now stay idle (the next read takes what it needs again).
      read_buffer_.shrink_to_fit();
    }
    reading_ = false;
    if (!paused_ && !finished_) {
      DoRead();
    }
  }

  void Enqueue(Outgoing message) {
    if (finished_ || close_pending_) {
      queued_bytes_.fetch_sub(message.size());
      return;
    }
    queue_.push_back(std::move(message));
    if (!writing_) {
      DoWrite();
    }
  }

  void DoWrite() {
    if (finished_) {
      return;
    }
    if (queue_.empty()) {
      if (close_pending_ && !closing_) {
        closing_ = true;
        writing_ = true;
        ws_.async_close(close_reason_, beast::bind_front_handler(&WebSocketSession::OnClosed,
                                                                 this->shared_from_this()));
      }
      return;
    }
    writing_ = true;
    const Outgoing& front = queue_.front();
    ws_.binary(front.binary);
    // One frame (no auto-fragmenting) whose payload is gathered from the head and the body.
    ws_.async_write(
        std::array<net::const_buffer, 2>{net::buffer(front.head), net::buffer(front.data)},
        beast::bind_front_handler(&WebSocketSession::OnWrite, this->shared_from_this()));
  }

  void OnWrite(error_code ec, size_t) {
    writing_ = false;
    if (!queue_.empty()) {
      queued_bytes_.fetch_sub(queue_.front().size());
      queue_.pop_front();
    }
    if (ec) {
      Finish(ec.message());
      return;
    }
    if (want_writable_ && queued_bytes_.load() <= server_->options.write_high_watermark_bytes / 2) {
      want_writable_ = false;
      if (handler_ != nullptr) {
        handler_->OnWritable();
      }
    }
    DoWrite();
  }

  void OnClosed(error_code ec) {
    writing_ = false;
    Finish(ec ? ec.message() : "closed");
  }

  void Finish(std::string reason) {
    if (finished_) {
      return;
    }
    finished_ = true;
    // A write in flight still reads the front message; it is released in OnWrite.
    size_t keep = (writing_ && !closing_ && !queue_.empty()) ? 1 : 0;
    while (queue_.size() > keep) {
      queued_bytes_.fetch_sub(queue_.back().size());
      queue_.pop_back();
    }
    std::shared_ptr<WebSocketHandler> handler = std::move(handler_);
    handler_.reset();
    if (handler != nullptr && open_) {
      handler->OnClose(std::move(reason));
    }
    if (!closing_) {
      beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(1));
    }
  }

  // Send and SendWithHead: the queue's bound, then the message onto the strand.
  bool Queue(Outgoing message) {
    const ServerOptions& o = server_->options;
    size_t size = message.size();
    size_t queued = queued_bytes_.fetch_add(size) + size;
    if (queued > o.write_hard_limit_bytes) {
      // The peer stopped reading: a close frame would queue behind the backlog forever, so drop
      // the connection.
      queued_bytes_.fetch_sub(size);
      net::dispatch(ws_.get_executor(), [self = this->shared_from_this()] {
        if (self->finished_) {
          return;
        }
        ++self->server_->stats.websocket_slow_peer_closes;
        self->Finish("peer too slow");
        error_code ignored;
        beast::get_lowest_layer(self->ws_).socket().close(ignored);
      });
      return false;
    }
    net::dispatch(ws_.get_executor(),
                  [self = this->shared_from_this(), message = std::move(message)]() mutable {
                    self->Enqueue(std::move(message));
                  });
    if (queued >= o.write_high_watermark_bytes) {
      want_writable_ = true;
      return false;
    }
    return true;
  }

  // What a read buffer may keep between messages: what a pending read prepares for a frame
  // (Beast asks for up to 1536 bytes), with room for a small message.
  static constexpr size_t kIdleReadCapacity = 4096;

  // No permessage-deflate (never offered, so never negotiated): no zlib state per connection.
  websocket::stream<Stream, /*deflateSupported=*/false> ws_;
  std::shared_ptr<Server::Impl> server_;
  Counted count_;
  const std::unique_ptr<SourceSlot> source_;  // null when sources are not tracked
  Request request_;                           // the upgrade request, until the handshake completes
  std::shared_ptr<WebSocketHandler> handler_;
  beast::flat_buffer read_buffer_;
  // A list, not a deque: an empty list holds no memory (a deque keeps a block of its own even
  // when empty), and most connections are idle most of the time.
  std::list<Outgoing> queue_;
  std::atomic<size_t> queued_bytes_{0};
  std::atomic<bool> want_writable_{false};
  websocket::close_reason close_reason_;
  bool open_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool paused_ = false;
  bool close_pending_ = false;
  bool closing_ = false;
  bool finished_ = false;
};

// A streamed (chunked) response: the head, then the producer's chunks through a bounded queue,
// then the last chunk and a close. A read kept pending on the socket notices the peer leaving
// (or sending anything: no pipelining on a stream) and ends the stream. Each write must
// complete within idle_timeout, so a peer that stops reading cannot hold the queue forever.
template <class Stream>
class StreamSession : public ResponseStream,
                      public std::enable_shared_from_this<StreamSession<Stream>> {
 public:
  StreamSession(Stream&& stream, std::shared_ptr<Server::Impl> server,
                std::unique_ptr<SourceSlot> source, std::shared_ptr<StreamProducer> producer)
      : stream_(std::move(stream)),
        server_(std::move(server)),
        count_(server_->stats.connections_open),
        source_(std::move(source)),
        producer_(std::move(producer)) {}

  void Start(Response head) {
    ++server_->stats.streams_started;
    head_.result(head.result());
    head_.version(head.version());
    for (const auto& field : head) {
      if (field.name() != bhttp::field::content_length) {
        head_.set(field.name_string(), field.value());
      }
    }
    for (const auto& [name, value] : server_->options.response_headers) {
      if (head_.find(name) == head_.end()) {
        head_.set(name, value);
      }
    }
    head_.keep_alive(false);
    head_.chunked(true);
    serializer_.emplace(head_);
    writing_ = true;
    beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options.idle_timeout));
    bhttp::async_write_header(
        stream_, *serializer_,
        beast::bind_front_handler(&StreamSession::OnHeadWritten, this->shared_from_this()));
    producer_->OnStart(this->shared_from_this());
    DoProbe();
  }

  bool Write(std::string data) override {
    if (data.empty()) {
      return true;
    }
    const ServerOptions& o = server_->options;
    const size_t size = data.size();
    const size_t queued = queued_bytes_.fetch_add(size) + size;
    if (queued > o.write_hard_limit_bytes) {
      queued_bytes_.fetch_sub(size);
      net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
        if (!self->finished_) {
          ++self->server_->stats.stream_slow_peer_closes;
          self->Abort("peer too slow");
        }
      });
      return false;
    }
    net::dispatch(stream_.get_executor(),
                  [self = this->shared_from_this(), data = std::move(data)]() mutable {
                    self->Enqueue(std::move(data));
                  });
    if (queued >= o.write_high_watermark_bytes) {
      want_writable_ = true;
      return false;
    }
    return true;
  }

  void End() override {
    net::dispatch(stream_.get_executor(), [self = this->shared_from_this()] {
      if (self->finished_ || self->end_pending_) {
        return;
      }
      self->end_pending_ = true;
      if (!self->writing_) {
        self->DoWrite();
      }
    });
  }

  size_t queued_bytes() const override { return queued_bytes_.load(); }

  net::any_io_executor executor() const override {
    return const_cast<Stream&>(stream_).get_executor();
  }

 private:
  void OnHeadWritten(error_code ec, size_t) {
    writing_ = false;
    if (ec) {
      Abort(ec.message());
      return;
    }
    DoWrite();
  }

  void Enqueue(std::string data) {
    if (finished_ || end_pending_) {
      queued_bytes_.fetch_sub(data.size());
      return;
    }
    queue_.push_back(std::move(data));
    if (!writing_) {
      DoWrite();
    }
  }

  void DoWrite() {
    if (finished_ || writing_) {
      return;
    }
    if (queue_.empty() && !end_pending_) {
      // Idle between chunks: only the producer decides (e.g. keepalive comments).
      beast::get_lowest_layer(stream_).expires_never();
      return;
    }
    beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options.idle_timeout));
    if (queue_.empty()) {
      if (end_pending_) {
        writing_ = true;
        net::async_write(
            stream_, bhttp::make_chunk_last(),
            beast::bind_front_handler(&StreamSession::OnLastWritten, this->shared_from_this()));
      }
      return;
    }
    writing_ = true;
    net::async_write(stream_, bhttp::make_chunk(net::buffer(queue_.front())),
                     beast::bind_front_handler(&StreamSession::OnWrite, this->shared_from_this()));
  }

  void OnWrite(error_code ec, size_t) {
    writing_ = false;
    if (!queue_.empty()) {
      queued_bytes_.fetch_sub(queue_.front().size());
      queue_.pop_front();
    }
    if (ec) {
      if (ec == beast::error::timeout && !finished_) {
        ++server_->stats.stream_slow_peer_closes;
      }
      Abort(ec == beast::error::timeout ? "peer too slow" : ec.message());
      return;
    }
    if (want_writable_ && queued_bytes_.load() <= server_->options.write_high_watermark_bytes / 2) {
      want_writable_ = false;
      if (producer_ != nullptr) {
        producer_->OnWritable();
      }
    }
    DoWrite();
  }

  void OnLastWritten(error_code ec, size_t) {
    writing_ = false;
    Finish(ec ? ec.message() : "ended");
    // The pending probe read ends when the peer closes too, or at this deadline.
    beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
    // (No TLS close_notify: its read would race the probe's; the last chunk already tells the
    // peer the body is complete.)
    if constexpr (!kIsTls<Stream>) {
      error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  // A read that completes only when the peer closes, resets or sends something.
  void DoProbe() {
    stream_.async_read_some(
        net::buffer(probe_),
        beast::bind_front_handler(&StreamSession::OnProbe, this->shared_from_this()));
  }

  void OnProbe(error_code ec, size_t) {
    if (finished_) {
      error_code ignored;
      beast::get_lowest_layer(stream_).socket().close(ignored);
      return;
    }
    if (ec == beast::error::timeout) {
      ++server_->stats.stream_slow_peer_closes;
    }
    Abort(!ec                           ? "the peer sent data on a stream"
          : ec == net::error::eof       ? "closed by peer"
          : ec == beast::error::timeout ? "peer too slow"
                                        : ec.message());
  }

  void Abort(std::string reason) {
    Finish(std::move(reason));
    error_code ignored;
    beast::get_lowest_layer(stream_).socket().close(ignored);
  }

  void Finish(std::string reason) {
    if (finished_) {
      return;
    }
    finished_ = true;
    const size_t keep = (writing_ && !queue_.empty()) ? 1 : 0;
    while (queue_.size() > keep) {
      queued_bytes_.fetch_sub(queue_.back().size());
      queue_.pop_back();
    }
    std::shared_ptr<StreamProducer> producer = std::move(producer_);
    producer_.reset();
    if (producer != nullptr) {
      producer->OnClose(std::move(reason));
    }
  }

  Stream stream_;
  std::shared_ptr<Server::Impl> server_;
  Counted count_;
  const std::unique_ptr<SourceSlot> source_;
  std::shared_ptr<StreamProducer> producer_;
  bhttp::response<bhttp::empty_body> head_;
  std::optional<bhttp::response_serializer<bhttp::empty_body>> serializer_;
  std::deque<std::string> queue_;
  std::atomic<size_t> queued_bytes_{0};
  std::atomic<bool> want_writable_{false};
  char probe_[1] = {};
  bool writing_ = false;
  bool end_pending_ = false;
  bool finished_ = false;
};

template <class Stream>
class HttpSession : public std::enable_shared_from_this<HttpSession<Stream>> {
 public:
  HttpSession(Stream&& stream, std::shared_ptr<Server::Impl> server,
              std::unique_ptr<SourceSlot> source)
      : stream_(std::move(stream)),
        server_(std::move(server)),
        count_(server_->stats.connections_open),
        source_(std::move(source)) {}

  void Run(std::string remote) {
    context_.remote_address = std::move(remote);
    context_.tls = kIsTls<Stream>;
    net::dispatch(stream_.get_executor(),
                  beast::bind_front_handler(&HttpSession::DoStart, this->shared_from_this()));
  }

 private:
  void DoStart() {
    if constexpr (kIsTls<Stream>) {
      beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options.handshake_timeout));
      stream_.async_handshake(
          ssl::stream_base::server,
          beast::bind_front_handler(&HttpSession::OnHandshake, this->shared_from_this()));
    } else {
      DoRead();
    }
  }

  void OnHandshake(error_code ec) {
    if (ec) {
      ++server_->stats.tls_handshake_failures;
      return;
    }
    if constexpr (kIsTls<Stream>) {
      SSL* native = stream_.native_handle();
      X509* cert = SSL_get1_peer_certificate(native);
      if (cert != nullptr) {
        if (SSL_get_verify_result(native) == X509_V_OK) {
          char cn[256] = {0};
          int n = X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn,
                                            sizeof(cn));
          if (n > 0) {
            context_.peer_common_name.assign(cn, static_cast<size_t>(n));
          }
          auto* names = static_cast<GENERAL_NAMES*>(
              X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
          for (int i = 0; names != nullptr && i < sk_GENERAL_NAME_num(names) && i < 64; ++i) {
            const GENERAL_NAME* name = sk_GENERAL_NAME_value(names, i);
            if (name->type == GEN_DNS) {
              const ASN1_STRING* dns = name->d.dNSName;
              context_.peer_dns_names.emplace_back(
                  reinterpret_cast<const char*>(ASN1_STRING_get0_data(dns)),
                  static_cast<size_t>(ASN1_STRING_length(dns)));
            }
          }
          GENERAL_NAMES_free(names);
        }
        X509_free(cert);
      }
    }
    DoRead();
  }

  void DoRead() {
    const ServerOptions& o = server_->options;
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(o.header_limit_bytes));
    parser_->body_limit(o.body_limit_bytes);
    beast::get_lowest_layer(stream_).expires_after(
        ToChrono(first_request_   ? o.handshake_timeout
                 : authenticated_ ? o.idle_timeout
                                  : o.unauthenticated_idle_timeout.value_or(o.idle_timeout)));
    first_request_ = false;
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&HttpSession::OnRead, this->shared_from_this()));
  }

  void OnRead(error_code ec, size_t) {
    if (ec == bhttp::error::end_of_stream) {
      DoClose();
      return;
    }
    if (ec) {
      if (ec.category() == bhttp::make_error_code(bhttp::error::body_limit).category()) {
        ++server_->stats.bad_requests;
        bhttp::status status = bhttp::status::bad_request;
        std::string message = "malformed HTTP request";
        if (ec == bhttp::error::body_limit) {
          status = bhttp::status::payload_too_large;
          message = "request body too large";
        } else if (ec == bhttp::error::header_limit) {
          status = bhttp::status::request_header_fields_too_large;
          message = "request headers too large";
        }
        answer_.emplace(server_->stats.answers_pending);
        auto res = std::make_shared<Response>(status, 11);
        res->set(bhttp::field::content_type, "text/plain");
        res->body() = message + "\n";
        res->keep_alive(false);
        res->prepare_payload();
        DoWrite(std::move(res));
      }
      return;  // timeouts and resets: just drop the connection
    }
    ++server_->stats.requests;
    answer_.emplace(server_->stats.answers_pending);
    Request request = parser_->release();
    bool upgrade = IsUpgradeRequest(request);
    RouteResult result;
    try {
      Request routed = request;
      if (upgrade) {
        routed.method(bhttp::verb::get);
      }
      result = server_->router(routed, context_, upgrade);
      if (result.authenticated && !authenticated_) {
        authenticated_ = true;
        if (source_ != nullptr) {
          source_->MarkAuthenticated();
        }
      }
      if (upgrade && result.websocket != nullptr) {
        answer_.reset();
        beast::get_lowest_layer(stream_).expires_never();
        auto ws = std::make_shared<WebSocketSession<Stream>>(std::move(stream_), server_,
                                                             std::move(source_));
        routed.set(bhttp::field::content_length, "0");
        ws->Accept(std::move(routed), std::move(result.subprotocol),
                   std::move(result.upgrade_headers), std::move(result.websocket));
        return;
      }
      if (!upgrade && result.stream != nullptr && result.response.has_value()) {
        answer_.reset();
        beast::get_lowest_layer(stream_).expires_never();
        result.response->version(request.version());
        auto streamed = std::make_shared<StreamSession<Stream>>(
            std::move(stream_), server_, std::move(source_), std::move(result.stream));
        streamed->Start(std::move(*result.response));
        return;
      }
      if (!upgrade && result.deferred && !result.response.has_value()) {
        bool keep_alive = request.keep_alive();
        unsigned version = request.version();
        beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options.idle_timeout));
        result.deferred([self = this->shared_from_this(), keep_alive, version](Response res) {
          res.version(version);
          res.keep_alive(keep_alive);
          res.prepare_payload();
          net::dispatch(self->stream_.get_executor(),
                        [self, res = std::make_shared<Response>(std::move(res))]() mutable {
                          self->DoWrite(std::move(res));
                        });
        });
        return;
      }
    } catch (const std::exception& e) {
      result = RouteResult{};
      result.response = MakeResponse(request, bhttp::status::internal_server_error, "text/plain",
                                     "internal error\n");
    }
    if (!result.response.has_value()) {
      result.response = MakeResponse(request, bhttp::status::internal_server_error, "text/plain",
                                     "no response\n");
    }
    if (upgrade) {
      result.response->keep_alive(false);  // a refused upgrade ends the connection
    }
    DoWrite(std::make_shared<Response>(std::move(*result.response)));
  }

  void DoWrite(std::shared_ptr<Response> res) {
    for (const auto& [name, value] : server_->options.response_headers) {
      if (res->find(name) == res->end()) {
        res->set(name, value);
      }
    }
    response_ = std::move(res);
    beast::get_lowest_layer(stream_).expires_after(ToChrono(server_->options.idle_timeout));
    bhttp::async_write(stream_, *response_,
                       beast::bind_front_handler(&HttpSession::OnWrite, this->shared_from_this(),
                                                 response_->keep_alive()));
  }

  void OnWrite(bool keep_alive, error_code ec, size_t) {
    response_.reset();
    answer_.reset();
    if (ec) {
      return;
    }
    if (!keep_alive) {
      DoClose();
      return;
    }
    DoRead();
  }

  void DoClose() {
    if constexpr (kIsTls<Stream>) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(2));
      stream_.async_shutdown([self = this->shared_from_this()](error_code) {});
    } else {
      error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
    }
  }

  Stream stream_;
  std::shared_ptr<Server::Impl> server_;
  Counted count_;
  std::unique_ptr<SourceSlot> source_;  // handed to the WebSocket on an upgrade
  RequestContext context_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Response> response_;
  std::optional<Counted> answer_;  // from a request read until its answer is written
  bool first_request_ = true;
  bool authenticated_ = false;  // a request on this connection was authenticated
};

}  // namespace

namespace {

// Accept errors that mean "no descriptor or memory right now": retrying at once only spins.
bool IsResourceShortage(const error_code& ec) {
  return ec == net::error::no_descriptors ||                          // EMFILE
         ec == boost::system::errc::too_many_files_open_in_system ||  // ENFILE
         ec == net::error::no_buffer_space || ec == net::error::no_memory;
}

std::string RefusalAnswer(std::string_view reason, int retry_after,
                          const std::vector<std::pair<std::string, std::string>>& headers) {
  const bool replica = reason == "max_connections";
  const std::string body = absl::StrCat(
      R"({"error":{"code":"RESOURCE_EXHAUSTED","message":")",
      replica ? "the server is at its connection limit; try again later"
      : reason == "per_source"
          ? "too many connections from this address; close some and try again"
          : "too many unauthenticated connections from this address; authenticate or close "
            "some and try again",
      "\"}}\n");
  std::string extra;
  for (const auto& [name, value] : headers) {
    if (!absl::EqualsIgnoreCase(name, "Cache-Control")) {
      absl::StrAppend(&extra, name, ": ", value, "\r\n");
    }
  }
  return absl::StrCat("HTTP/1.1 ", replica ? "503 Service Unavailable" : "429 Too Many Requests",
                      "\r\nServer: podgate\r\nContent-Type: application/json\r\n"
                      "Cache-Control: no-store\r\nRetry-After: ",
                      retry_after, "\r\nConnection: close\r\nContent-Length: ", body.size(), "\r\n",
                      extra, "\r\n", body);
}

}  // namespace

void Server::Impl::Refuse(tcp::socket socket, std::string_view reason) {
  if (options.on_refusal) {
    options.on_refusal(reason);
  }
  // Refusals answer only while few are in flight: a flood is closed without a word rather than
  // holding descriptors for its answers.
  constexpr int kMaxRefusalsInFlight = 64;
  if (ssl_context.has_value() || refusals_in_flight.fetch_add(1) >= kMaxRefusalsInFlight) {
    if (!ssl_context.has_value()) {
      --refusals_in_flight;
    }
    error_code ignored;
    socket.close(ignored);
    return;
  }
  std::make_shared<Refusal>(
      std::move(socket),
      RefusalAnswer(reason, options.retry_after_seconds, options.response_headers),
      shared_from_this())
      ->Run();
}

void Server::Impl::OnAccept(error_code ec, tcp::socket socket) {
  if (ec) {
    if (ec == net::error::operation_aborted || stopped) {
      return;
    }
    if (IsResourceShortage(ec)) {
      // The pending connection stays in the listen backlog: retrying at once fails again and
      // spins a core. Pause, doubling, until an accept succeeds.
      accept_backoff = accept_backoff == absl::ZeroDuration()
                           ? options.accept_backoff_initial
                           : std::min(accept_backoff * 2, options.accept_backoff_max);
      ++stats.accept_backoffs;
      if (options.on_accept_backoff) {
        options.on_accept_backoff(ec.message(), accept_backoff);
      }
      accept_timer.expires_after(ToChrono(accept_backoff));
      accept_timer.async_wait([self = shared_from_this()](error_code timer_ec) {
        if (timer_ec || self->stopped) {
          return;
        }
        self->DoAccept();
      });
      return;
    }
    DoAccept();
    return;
  }
  accept_backoff = absl::ZeroDuration();
  SendSmallFramesAtOnce(socket);
  error_code ep_ec;
  tcp::endpoint remote = socket.remote_endpoint(ep_ec);
  if (stats.connections_open.load() >= static_cast<int64_t>(options.max_connections)) {
    ++stats.connections_rejected;
    Refuse(std::move(socket), "max_connections");
    DoAccept();
    return;
  }
  std::unique_ptr<SourceSlot> source;
  std::string source_address = ep_ec ? "unknown" : remote.address().to_string();
  if (TracksSources() &&
      !(options.per_source_exempt && options.per_source_exempt(source_address))) {
    std::string address = std::move(source_address);
    if (std::optional<std::string_view> refusal = AcquireSource(address); refusal.has_value()) {
      ++(*refusal == "per_source" ? stats.connections_rejected_per_source
                                  : stats.connections_rejected_unauthenticated);
      Refuse(std::move(socket), *refusal);
      DoAccept();
      return;
    }
    source = std::make_unique<SourceSlot>(shared_from_this(), std::move(address));
  }
  ++stats.connections_accepted;
  std::string remote_text =
      ep_ec ? "unknown" : absl::StrCat(remote.address().to_string(), ":", remote.port());
  if (ssl_context.has_value()) {
    std::make_shared<HttpSession<TlsStream>>(TlsStream(std::move(socket), *ssl_context),
                                             shared_from_this(), std::move(source))
        ->Run(std::move(remote_text));
  } else {
    std::make_shared<HttpSession<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)),
                                                     shared_from_this(), std::move(source))
        ->Run(std::move(remote_text));
  }
  DoAccept();
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(net::io_context& io, ServerOptions options,
                                                      Router router) {
  auto impl = std::make_shared<Impl>(io, std::move(options), std::move(router));
  const ServerOptions& o = impl->options;
  if (!o.cert_file.empty()) {
    try {
      impl->ssl_context.emplace(ssl::context::tls_server);
      impl->ssl_context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                                     ssl::context::no_tlsv1_1);
      impl->ssl_context->use_certificate_chain_file(o.cert_file);
      impl->ssl_context->use_private_key_file(o.key_file, ssl::context::pem);
      if (!o.client_ca_file.empty()) {
        impl->ssl_context->load_verify_file(o.client_ca_file);
        impl->ssl_context->set_verify_mode(ssl::verify_peer);
      }
    } catch (const boost::system::system_error& e) {
      return absl::InvalidArgumentError(absl::StrCat("TLS setup failed: ", e.what()));
    }
  } else if (!o.client_ca_file.empty()) {
    return absl::InvalidArgumentError("client_ca_file needs cert_file (TLS)");
  }
  error_code ec;
  net::ip::address address = net::ip::make_address(o.address, ec);
  if (ec) {
    return absl::InvalidArgumentError(absl::StrCat("bad listen address \"", o.address, "\""));
  }
  tcp::endpoint endpoint(address, o.port);
  impl->acceptor.open(endpoint.protocol(), ec);
  if (!ec) {
    impl->acceptor.set_option(net::socket_base::reuse_address(true), ec);
  }
  if (!ec) {
    impl->acceptor.bind(endpoint, ec);
  }
  if (!ec) {
    impl->acceptor.listen(net::socket_base::max_listen_connections, ec);
  }
  if (ec) {
    return absl::UnavailableError(
        absl::StrCat("cannot listen on ", o.address, ":", o.port, ": ", ec.message()));
  }
  impl->port = impl->acceptor.local_endpoint(ec).port();
  impl->DoAccept();
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::~Server() { Stop(); }

uint16_t Server::port() const { return impl_->port; }

const ServerStats& Server::stats() const { return impl_->stats; }

bool Server::WaitAnswersWritten(absl::Time deadline) const {
  while (impl_->stats.answers_pending.load() > 0) {
    if (absl::Now() >= deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(2));
  }
  return true;
}

void Server::Stop() {
  if (impl_->stopped.exchange(true)) {
    return;
  }
  net::dispatch(impl_->acceptor.get_executor(), [impl = impl_] {
    error_code ignored;
    impl->acceptor.close(ignored);
    impl->accept_timer.cancel();
  });
}

absl::StatusOr<ListenAddress> ParseListenAddress(std::string_view text) {
  const size_t colon = text.rfind(':');
  if (colon == std::string_view::npos) {
    return absl::InvalidArgumentError("not host:port");
  }
  std::string_view host = text.substr(0, colon);
  const std::string_view port_text = text.substr(colon + 1);
  int port = -1;
  if (port_text.empty() || port_text.size() > 5 ||
      !absl::SimpleAtoi(absl::string_view(port_text.data(), port_text.size()), &port) || port < 0 ||
      port > 65535 || !absl::ascii_isdigit(static_cast<unsigned char>(port_text[0]))) {
    return absl::InvalidArgumentError(
        absl::StrCat("port '", std::string(port_text), "' is not 0 to 65535"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  } else if (host.find(':') != std::string_view::npos) {
    return absl::InvalidArgumentError("an IPv6 host goes in brackets: [::1]:port");
  }
  error_code ec;
  net::ip::make_address(std::string(host), ec);
  if (ec || host.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "host '", std::string(host), "' is not an IP address (names are not looked up)"));
  }
  return ListenAddress{std::string(host), static_cast<uint16_t>(port)};
}

Response MakeResponse(const Request& request, bhttp::status status, std::string content_type,
                      std::string body) {
  Response res(status, request.version());
  res.set(bhttp::field::server, "podgate");
  res.set(bhttp::field::content_type, content_type);
  res.keep_alive(request.keep_alive());
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace podgate::http
