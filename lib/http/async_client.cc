#include "http/async_client.h"

#include <openssl/ssl.h>
#include <poll.h>

#include <algorithm>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <deque>
#include <optional>
#include <type_traits>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "http/socket_options.h"

namespace podgate::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// Which server a spare was made for: it serves only connections to the same one, checked the
// same way.
std::string ServerKey(const ClientOptions& c) {
  return absl::StrCat(c.host, ":", c.port, "|", c.server_name, "|",
                      c.insecure_skip_verify ? "insecure" : "verified");
}

// A broken connection rather than an answer: the request may be sent again elsewhere.
bool IsBrokenConnection(error_code ec) {
  return ec == net::error::eof || ec == bhttp::error::end_of_stream ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

// A connection made ahead: TCP and TLS done, nothing sent. Its strand becomes the strand of the
// WebSocket session that takes it.
struct Spare {
  Spare(net::io_context& io, std::shared_ptr<ssl::context> context, std::string key)
      : strand(net::make_strand(io)),
        resolver(strand),
        tls(std::move(context)),
        server(std::move(key)),
        expiry(strand) {
    stream.emplace(strand, *tls);
  }
  net::strand<net::io_context::executor_type> strand;
  tcp::resolver resolver;
  std::shared_ptr<ssl::context> tls;
  std::optional<TlsStream> stream;
  std::string server;
  absl::Time ready_at;
  net::steady_timer expiry;
};

// True when the server has closed (or half-closed) the idle connection, or it failed.
bool PeerClosed(Spare& spare) {
  pollfd p{};
  p.fd = beast::get_lowest_layer(*spare.stream).socket().native_handle();
  p.events = POLLIN | POLLRDHUP;
  if (::poll(&p, 1, 0) < 0) {
    return true;
  }
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

void CloseSpare(const std::shared_ptr<Spare>& spare) {
  net::dispatch(spare->strand, [spare] {
    error_code ignored;
    spare->expiry.cancel();
    beast::get_lowest_layer(*spare->stream).socket().close(ignored);
  });
}

}  // namespace

struct SpareConnections::Impl : std::enable_shared_from_this<SpareConnections::Impl> {
  Impl(net::io_context& context, Options o, std::function<void(Event)> sink)
      : io(context), options(o), on_event(std::move(sink)) {}

  void Count(Event e) const {
    if (on_event) {
      on_event(e);
    }
  }

  // A usable spare for `o`, or null (counted as a miss); the unusable ones met on the way are
  // closed.
  std::shared_ptr<Spare> Take(const AsyncClientOptions& o) {
    const std::string key = ServerKey(o.connection);
    std::vector<std::pair<std::shared_ptr<Spare>, Event>> dropped;
    std::shared_ptr<Spare> got;
    {
      absl::MutexLock lock(&mu);
      const absl::Time now = absl::Now();
      while (!ready.empty() && got == nullptr) {
        std::shared_ptr<Spare> s = std::move(ready.back());  // the newest first
        ready.pop_back();
        if (s->tls != o.tls_context || s->server != key) {
          dropped.emplace_back(std::move(s), Event::kStale);
        } else if (now - s->ready_at >= options.max_idle) {
          dropped.emplace_back(std::move(s), Event::kExpired);
        } else if (PeerClosed(*s)) {
          dropped.emplace_back(std::move(s), Event::kClosed);
        } else {
          got = std::move(s);
        }
      }
    }
    for (auto& [s, why] : dropped) {
      CloseSpare(s);
      Count(why);
    }
    if (got != nullptr) {
      net::dispatch(got->strand, [got] { got->expiry.cancel(); });
    }
    Count(got != nullptr ? Event::kUsed : Event::kMissed);
    return got;
  }

  // Has spares made for `o` until max_spares are ready or being made.
  void Refill(const AsyncClientOptions& o) {
    size_t n = 0;
    {
      absl::MutexLock lock(&mu);
      if (shut) {
        return;
      }
      const size_t have = ready.size() + dialling;
      n = options.max_spares > have ? options.max_spares - have : 0;
      dialling += n;
    }
    for (size_t i = 0; i < n; ++i) {
      Dial(o);
    }
  }

  void Dial(const AsyncClientOptions& o) {
    auto s = std::make_shared<Spare>(io, o.tls_context, ServerKey(o.connection));
    net::dispatch(s->strand, [self = shared_from_this(), s, c = o.connection] {
      beast::get_lowest_layer(*s->stream).expires_after(absl::ToChronoNanoseconds(c.timeout));
      s->resolver.async_resolve(
          c.host, std::to_string(c.port),
          [self, s, c](error_code ec, tcp::resolver::results_type results) {
            if (ec) {
              return self->DialDone(s, false);
            }
            beast::get_lowest_layer(*s->stream)
                .async_connect(results, [self, s, c](error_code ec, const tcp::endpoint&) {
                  if (ec) {
                    return self->DialDone(s, false);
                  }
                  SendSmallFramesAtOnce(beast::get_lowest_layer(*s->stream).socket());
                  SetTlsPeerName(s->stream->native_handle(), c);
                  s->stream->async_handshake(ssl::stream_base::client,
                                             [self, s](error_code ec) { self->DialDone(s, !ec); });
                });
          });
    });
  }

  // On the spare's strand.
  void DialDone(const std::shared_ptr<Spare>& s, bool ok) {
    beast::get_lowest_layer(*s->stream).expires_never();
    bool keep = false;
    {
      absl::MutexLock lock(&mu);
      --dialling;
      if (ok && !shut && ready.size() < options.max_spares) {
        s->ready_at = absl::Now();
        ready.push_back(s);
        keep = true;
      }
    }
    if (!ok) {
      Count(Event::kDialFailed);
    }
    if (!keep) {
      error_code ignored;
      beast::get_lowest_layer(*s->stream).socket().close(ignored);
      return;
    }
    s->expiry.expires_after(absl::ToChronoNanoseconds(options.max_idle));
    std::weak_ptr<Spare> weak = s;
    s->expiry.async_wait([self = shared_from_this(), weak](error_code ec) {
      std::shared_ptr<Spare> spare = weak.lock();
      if (ec || spare == nullptr) {
        return;  // taken (or closed) meanwhile
      }
      bool mine = false;
      {
        absl::MutexLock lock(&self->mu);
        auto it = std::find(self->ready.begin(), self->ready.end(), spare);
        if (it != self->ready.end()) {
          self->ready.erase(it);
          mine = true;
        }
      }
      if (mine) {
        error_code ignored;
        beast::get_lowest_layer(*spare->stream).socket().close(ignored);
        self->Count(Event::kExpired);
      }
    });
  }

  void Shutdown() {
    std::vector<std::shared_ptr<Spare>> all;
    {
      absl::MutexLock lock(&mu);
      shut = true;
      all.swap(ready);
    }
    for (const std::shared_ptr<Spare>& s : all) {
      CloseSpare(s);
    }
  }

  net::io_context& io;
  const Options options;
  const std::function<void(Event)> on_event;
  mutable absl::Mutex mu;
  std::vector<std::shared_ptr<Spare>> ready ABSL_GUARDED_BY(mu);
  size_t dialling ABSL_GUARDED_BY(mu) = 0;
  bool shut ABSL_GUARDED_BY(mu) = false;
};

namespace {

template <class Next>
class Session final : public WebSocketConnection,
                      public std::enable_shared_from_this<Session<Next>> {
 public:
  static constexpr bool kTls = std::is_same_v<Next, TlsStream>;

  Session(net::io_context& io, AsyncClientOptions options, std::shared_ptr<ssl::context> tls,
          std::string target, std::vector<std::string> subprotocols,
          std::shared_ptr<WebSocketHandler> handler,
          std::function<void(const HandshakeResult&)> on_handshake)
      : io_(io),
        strand_(net::make_strand(io)),
        resolver_(strand_),
        tls_(std::move(tls)),
        ws_(MakeNext(strand_, tls_.get())),
        options_(std::move(options)),
        target_(std::move(target)),
        subprotocols_(std::move(subprotocols)),
        handler_(std::move(handler)),
        on_handshake_(std::move(on_handshake)) {}

  // On a connection made ahead (TLS only): its strand, its TLS stream.
  Session(net::io_context& io, AsyncClientOptions options,
          std::shared_ptr<SpareConnections::Impl> spares, Spare& spare, std::string target,
          std::vector<std::string> subprotocols, std::shared_ptr<WebSocketHandler> handler,
          std::function<void(const HandshakeResult&)> on_handshake)
      : io_(io),
        strand_(spare.strand),
        resolver_(strand_),
        tls_(spare.tls),
        ws_(std::move(*spare.stream)),
        options_(std::move(options)),
        target_(std::move(target)),
        subprotocols_(std::move(subprotocols)),
        handler_(std::move(handler)),
        on_handshake_(std::move(on_handshake)),
        spares_(std::move(spares)) {}

  void Start() {
    net::dispatch(strand_, [self = this->shared_from_this()] { self->DoResolve(); });
  }

  // The upgrade on the spare's connection, at once.
  void StartOnSpare() {
    net::dispatch(strand_, [self = this->shared_from_this()] {
      self->Tcp().expires_after(absl::ToChronoNanoseconds(self->options_.connection.timeout));
      self->DoUpgrade();
    });
  }

  // --- WebSocketConnection ---
  bool Send(std::string data, bool binary) override {
    const size_t size = data.size();
    net::post(strand_, [self = this->shared_from_this(), data = std::move(data), binary]() mutable {
      self->Enqueue(std::move(data), binary);
    });
    return queued_.fetch_add(size) + size <= options_.write_high_watermark_bytes;
  }
  void Close(uint16_t code, std::string reason) override {
    net::post(strand_, [self = this->shared_from_this(), code, reason = std::move(reason)] {
      self->close_requested_ = true;
      self->close_reason_ = websocket::close_reason(static_cast<websocket::close_code>(code), reason);
      self->MaybeClose();
    });
  }
  void PauseReading() override {
    // From a handler callback (on the strand) take effect before the next read starts.
    if (strand_.running_in_this_thread()) {
      paused_ = true;
      return;
    }
    net::post(strand_, [self = this->shared_from_this()] { self->paused_ = true; });
  }
  void ResumeReading() override {
    // From a handler callback (a consumer that took a message at once) the next read starts
    // without a trip through the strand's queue, which could wake another I/O thread.
    if (strand_.running_in_this_thread()) {
      paused_ = false;
      MaybeRead();
      return;
    }
    net::post(strand_, [self = this->shared_from_this()] {
      self->paused_ = false;
      self->MaybeRead();
    });
  }
  size_t queued_bytes() const override { return queued_.load(); }
  bool InputWaiting() override {
    // Bytes decrypted and not yet read, and bytes received and not yet decrypted. A control
    // frame (a ping the server sends while the client is silent, or a close) is at most 127
    // bytes, plus 29 of TLS record: fewer than kMinWaitingBytes never count, so output is
    // never held behind a frame that is not output.
    constexpr size_t kMinWaitingBytes = 512;
    size_t waiting = 0;
    if constexpr (kTls) {
      waiting += static_cast<size_t>(std::max(0, SSL_pending(ws_.next_layer().native_handle())));
    }
    error_code ec;
    const size_t received = Tcp().socket().available(ec);
    return (ec ? waiting : waiting + received) >= kMinWaitingBytes;
  }
  boost::asio::any_io_executor executor() const override { return strand_; }

 private:
  using WsStream = websocket::stream<Next>;

  static WsStream MakeNext(net::strand<net::io_context::executor_type>& strand, ssl::context* tls) {
    if constexpr (kTls) {
      return WsStream(strand, *tls);
    } else {
      return WsStream(strand);
    }
  }

  beast::tcp_stream& Tcp() { return beast::get_lowest_layer(ws_); }

  void Fail(absl::Status status) {
    if (on_handshake_) {
      HandshakeResult r;
      r.status = std::move(status);
      r.refusal = std::move(refusal_);
      auto cb = std::move(on_handshake_);
      on_handshake_ = nullptr;
      cb(r);
      handler_.reset();
    }
  }

  void DoResolve() {
    Tcp().expires_after(absl::ToChronoNanoseconds(options_.connection.timeout));
    resolver_.async_resolve(
        options_.connection.host, std::to_string(options_.connection.port),
        beast::bind_front_handler(&Session::OnResolve, this->shared_from_this()));
  }

  void OnResolve(error_code ec, tcp::resolver::results_type results) {
    if (ec) {
      return Fail(NetError("resolve", ec));
    }
    Tcp().async_connect(results,
                        beast::bind_front_handler(&Session::OnConnect, this->shared_from_this()));
  }

  void OnConnect(error_code ec, tcp::resolver::results_type::endpoint_type) {
    if (ec) {
      return Fail(NetError("connect", ec));
    }
    SendSmallFramesAtOnce(Tcp().socket());
    if constexpr (kTls) {
      SetTlsPeerName(ws_.next_layer().native_handle(), options_.connection);
      ws_.next_layer().async_handshake(
          ssl::stream_base::client,
          beast::bind_front_handler(&Session::OnTlsHandshake, this->shared_from_this()));
    } else {
      DoUpgrade();
    }
  }

  void OnTlsHandshake(error_code ec) {
    if (ec) {
      return Fail(NetError("TLS handshake", ec));
    }
    DoUpgrade();
  }

  void DoUpgrade() {
    auto headers = options_.connection.headers;
    const std::string offer = absl::StrJoin(subprotocols_, ", ");
    ws_.set_option(websocket::stream_base::decorator(
        [headers, offer](websocket::request_type& req) {
          req.set(bhttp::field::user_agent, "podgate");
          for (const auto& [k, v] : headers) {
            req.set(k, v);
          }
          if (!offer.empty()) {
            req.set(bhttp::field::sec_websocket_protocol, offer);
          }
        }));
    ws_.read_message_max(options_.max_message_bytes);
    const std::string host = absl::StrCat(
        options_.connection.server_name.empty() ? options_.connection.host
                                                : options_.connection.server_name,
        ":", options_.connection.port);
    ws_.async_handshake(response_, host, target_,
                        beast::bind_front_handler(&Session::OnUpgrade, this->shared_from_this()));
  }

  void OnUpgrade(error_code ec) {
    if constexpr (kTls) {
      if (ec && spares_ != nullptr && IsBrokenConnection(ec)) {
        // The spare broke before the server answered (it closed it as idle, say): the server
        // started nothing, so the upgrade goes again, once, on a connection of its own.
        spares_->Count(SpareConnections::Event::kRetried);
        error_code ignored;
        Tcp().socket().close(ignored);
        AsyncClientOptions fresh = options_;
        fresh.spares = nullptr;
        auto again = std::make_shared<Session>(io_, std::move(fresh), tls_, std::move(target_),
                                               std::move(subprotocols_), std::move(handler_),
                                               std::move(on_handshake_));
        on_handshake_ = nullptr;
        again->Start();
        return;
      }
    }
    if (ec) {
      // A connection that broke before any answer is a network error, not a refusal.
      if (ec == websocket::error::upgrade_declined ||
          (!IsBrokenConnection(ec) && response_.result_int() != 101)) {
        refusal_.status = static_cast<int>(response_.result_int());
        refusal_.content_type = std::string(response_[bhttp::field::content_type]);
        refusal_.body = response_.body();
        return Fail(absl::FailedPreconditionError(
            absl::StrCat("the server refused the WebSocket upgrade with HTTP ",
                         refusal_.status)));
      }
      return Fail(NetError("WebSocket upgrade", ec));
    }
    const std::string chosen(response_[bhttp::field::sec_websocket_protocol]);
    if (!chosen.empty() &&
        std::find(subprotocols_.begin(), subprotocols_.end(), chosen) == subprotocols_.end()) {
      return Fail(absl::FailedPreconditionError(
          absl::StrCat("the server chose sub-protocol '", chosen, "', which was not offered")));
    }
    Tcp().expires_never();
    websocket::stream_base::timeout timeouts{};
    timeouts.handshake_timeout = absl::ToChronoNanoseconds(options_.connection.timeout);
    timeouts.idle_timeout = absl::ToChronoNanoseconds(options_.keepalive);
    timeouts.keep_alive_pings = true;
    ws_.set_option(timeouts);
    ws_.binary(true);
    open_ = true;
    HandshakeResult ok;
    ok.subprotocol = chosen;
    auto cb = std::move(on_handshake_);
    on_handshake_ = nullptr;
    cb(ok);
    handler_->OnOpen(this->shared_from_this());
    MaybeRead();
    MaybeWrite();
  }

  void MaybeRead() {
    if (!open_ || reading_ || paused_ || closed_) {
      return;
    }
    reading_ = true;
    ws_.async_read(buffer_,
                   beast::bind_front_handler(&Session::OnRead, this->shared_from_this()));
  }

  void OnRead(error_code ec, size_t) {
    if (ec) {
      reading_ = false;
      return Closed(ec == websocket::error::closed
                        ? absl::StrCat("closed by the server (", ws_.reason().code, ")")
                        : absl::StrCat("read: ", ec.message()));
    }
    // The handler sees the message in buffer_ itself, so no read may start until it returns:
    // reading_ stays set through the call (a ResumeReading inside it only clears paused_, and
    // the read starts below).
    const auto message = buffer_.cdata();
    handler_->OnMessage(std::string_view(static_cast<const char*>(message.data()), message.size()),
                        ws_.got_binary());
    buffer_.consume(buffer_.size());
    reading_ = false;
    MaybeRead();
  }

  void Enqueue(std::string data, bool binary) {
    if (closed_) {
      queued_ -= data.size();
      return;
    }
    if (queued_.load() > options_.write_hard_limit_bytes) {
      queued_ -= data.size();
      return Closed("the server is not reading (write queue over its hard limit)");
    }
    out_.push_back({std::move(data), binary});
    MaybeWrite();
  }

  void MaybeWrite() {
    if (!open_ || writing_ || out_.empty() || closed_) {
      if (!writing_ && out_.empty()) {
        MaybeClose();
      }
      return;
    }
    writing_ = true;
    ws_.binary(out_.front().second);
    ws_.async_write(net::buffer(out_.front().first),
                    beast::bind_front_handler(&Session::OnWrite, this->shared_from_this()));
  }

  void OnWrite(error_code ec, size_t) {
    writing_ = false;
    const size_t size = out_.front().first.size();
    out_.pop_front();
    const size_t before = queued_.fetch_sub(size);
    if (ec) {
      return Closed(absl::StrCat("write: ", ec.message()));
    }
    if (before > options_.write_high_watermark_bytes &&
        before - size <= options_.write_high_watermark_bytes && handler_ != nullptr) {
      handler_->OnWritable();
    }
    MaybeWrite();
  }

  void MaybeClose() {
    if (!close_requested_ || closing_ || closed_ || writing_ || !out_.empty()) {
      return;
    }
    if (!open_) {
      // Still connecting: give up the attempt.
      close_requested_ = false;
      error_code ignored;
      Tcp().socket().close(ignored);
      return;
    }
    closing_ = true;
    ws_.async_close(close_reason_, [self = this->shared_from_this()](error_code) {
      self->Closed("closed by the client");
    });
  }

  void Closed(std::string reason) {
    if (closed_) {
      return;
    }
    closed_ = true;
    if (!closing_) {
      error_code ignored;
      Tcp().socket().close(ignored);
    }
    if (open_ && handler_ != nullptr) {
      std::shared_ptr<WebSocketHandler> handler = std::move(handler_);
      handler->OnClose(std::move(reason));
    }
  }

  net::io_context& io_;
  net::strand<net::io_context::executor_type> strand_;
  tcp::resolver resolver_;
  std::shared_ptr<ssl::context> tls_;
  WsStream ws_;
  AsyncClientOptions options_;
  std::string target_;
  std::vector<std::string> subprotocols_;
  std::shared_ptr<WebSocketHandler> handler_;
  std::function<void(const HandshakeResult&)> on_handshake_;
  websocket::response_type response_;
  ClientResponse refusal_;
  beast::flat_buffer buffer_;
  std::deque<std::pair<std::string, bool>> out_;
  std::atomic<size_t> queued_{0};
  websocket::close_reason close_reason_;
  bool open_ = false;
  bool reading_ = false;
  bool writing_ = false;
  bool paused_ = false;
  bool close_requested_ = false;
  bool closing_ = false;
  bool closed_ = false;
  // Set when the connection is a spare: counts a retry.
  std::shared_ptr<SpareConnections::Impl> spares_;
};

}  // namespace

const char* SpareConnections::EventName(Event e) {
  switch (e) {
    case Event::kUsed:
      return "used";
    case Event::kMissed:
      return "missed";
    case Event::kExpired:
      return "expired";
    case Event::kClosed:
      return "closed";
    case Event::kStale:
      return "stale";
    case Event::kDialFailed:
      return "dial_failed";
    case Event::kRetried:
      return "retried";
  }
  return "unknown";
}

SpareConnections::SpareConnections(boost::asio::io_context& io, Options options,
                                   std::function<void(Event)> on_event)
    : impl_(std::make_shared<Impl>(io, options, std::move(on_event))) {}

SpareConnections::~SpareConnections() { impl_->Shutdown(); }

size_t SpareConnections::ready() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->ready.size();
}

size_t SpareConnections::dialling() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->dialling;
}

absl::StatusOr<std::shared_ptr<ssl::context>> MakeSharedClientTlsContext(const ClientOptions& o) {
  std::optional<ssl::context> ctx;
  if (absl::Status s = MakeClientTlsContext(o, ctx); !s.ok()) {
    return s;
  }
  return std::make_shared<ssl::context>(std::move(*ctx));
}

void ConnectWebSocket(boost::asio::io_context& io, const AsyncClientOptions& options,
                      const std::string& target, std::vector<std::string> subprotocols,
                      std::shared_ptr<WebSocketHandler> handler,
                      std::function<void(const HandshakeResult&)> on_handshake) {
  if (options.connection.tls) {
    absl::StatusOr<std::shared_ptr<ssl::context>> tls =
        options.tls_context != nullptr ? options.tls_context
                                       : MakeSharedClientTlsContext(options.connection);
    if (!tls.ok()) {
      HandshakeResult r;
      r.status = tls.status();
      on_handshake(r);
      return;
    }
    if (options.spares != nullptr && options.tls_context != nullptr &&
        options.spares->impl()->options.max_spares > 0) {
      const std::shared_ptr<SpareConnections::Impl>& spares = options.spares->impl();
      std::shared_ptr<Spare> spare = spares->Take(options);
      spares->Refill(options);
      if (spare != nullptr) {
        auto session = std::make_shared<Session<TlsStream>>(
            io, options, spares, *spare, target, std::move(subprotocols), std::move(handler),
            std::move(on_handshake));
        session->StartOnSpare();
        return;
      }
    }
    auto session = std::make_shared<Session<TlsStream>>(io, options, *tls, target,
                                                         std::move(subprotocols),
                                                         std::move(handler),
                                                         std::move(on_handshake));
    session->Start();
  } else {
    auto session = std::make_shared<Session<beast::tcp_stream>>(
        io, options, nullptr, target, std::move(subprotocols), std::move(handler),
        std::move(on_handshake));
    session->Start();
  }
}

}  // namespace podgate::http
