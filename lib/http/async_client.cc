#include "http/async_client.h"

#include <openssl/ssl.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
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

template <class Next>
class Session final : public WebSocketConnection,
                      public std::enable_shared_from_this<Session<Next>> {
 public:
  static constexpr bool kTls = std::is_same_v<Next, TlsStream>;

  Session(net::io_context& io, AsyncClientOptions options, std::shared_ptr<ssl::context> tls,
          std::string target, std::vector<std::string> subprotocols,
          std::shared_ptr<WebSocketHandler> handler,
          std::function<void(const HandshakeResult&)> on_handshake)
      : strand_(net::make_strand(io)),
        resolver_(strand_),
        tls_(std::move(tls)),
        ws_(MakeNext(strand_, tls_.get())),
        options_(std::move(options)),
        target_(std::move(target)),
        subprotocols_(std::move(subprotocols)),
        handler_(std::move(handler)),
        on_handshake_(std::move(on_handshake)) {}

  void Start() {
    net::dispatch(strand_, [self = this->shared_from_this()] { self->DoResolve(); });
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
    net::post(strand_, [self = this->shared_from_this()] {
      self->paused_ = false;
      self->MaybeRead();
    });
  }
  size_t queued_bytes() const override { return queued_.load(); }
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
      const std::string& name = options_.connection.server_name.empty()
                                    ? options_.connection.host
                                    : options_.connection.server_name;
      SSL* ssl = ws_.next_layer().native_handle();
      // SNI only for names; an IP address is checked as an IP SAN below.
      error_code parse_ec;
      net::ip::make_address(name, parse_ec);
      if (parse_ec) {
        SSL_set_tlsext_host_name(ssl, name.c_str());
      }
      if (!options_.connection.insecure_skip_verify) {
        ws_.next_layer().set_verify_callback(ssl::host_name_verification(name));
      }
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
    if (ec) {
      if (ec == websocket::error::upgrade_declined || response_.result_int() != 101) {
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
    reading_ = false;
    if (ec) {
      return Closed(ec == websocket::error::closed
                        ? absl::StrCat("closed by the server (", ws_.reason().code, ")")
                        : absl::StrCat("read: ", ec.message()));
    }
    std::string data = beast::buffers_to_string(buffer_.data());
    buffer_.consume(buffer_.size());
    handler_->OnMessage(std::move(data), ws_.got_binary());
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
};

}  // namespace

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
