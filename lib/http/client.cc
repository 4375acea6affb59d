#include "http/client.h"

#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <optional>
#include <type_traits>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "http/socket_options.h"

namespace podgate::http {

ClientOptions ClientOptionsFor(const HttpUrl& url, const std::string& ca_file,
                               absl::Duration timeout, size_t max_message_bytes) {
  ClientOptions o;
  o.host = url.host;
  o.port = url.port;
  o.tls = url.tls;
  o.ca_file = ca_file;
  o.timeout = timeout;
  o.max_message_bytes = max_message_bytes;
  return o;
}

std::string ClientResponse::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace websocket = boost::beast::websocket;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;

template <class Stream>
constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

std::chrono::steady_clock::duration ToChrono(absl::Duration d) {
  return absl::ToChronoNanoseconds(d);
}

// Owns the I/O context and TLS context that the stream below is built on.
struct IoBase {
  IoBase() = default;
  explicit IoBase(std::optional<ssl::context> t) : tls(std::move(t)) {}
  net::io_context io;
  std::optional<ssl::context> tls;

  // Runs the one pending operation to completion; its timeout is the stream's expiry.
  void RunPending() {
    io.restart();
    io.run();
  }
};

// Connects the lowest layer and, for TLS, performs the handshake with host verification.
template <class Stream>
absl::Status ConnectStream(IoBase& base, Stream& stream, const ClientOptions& o) {
  error_code ec;
  tcp::resolver resolver(base.io);
  auto results = resolver.resolve(o.host, std::to_string(o.port), ec);
  if (ec) {
    return NetError("resolve", ec);
  }
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(ToChrono(o.timeout));
  std::optional<error_code> done;
  lowest.async_connect(results, [&](error_code e, const tcp::endpoint&) { done = e; });
  base.RunPending();
  if (*done) {
    return NetError("connect", *done);
  }
  SendSmallFramesAtOnce(lowest.socket());
  if constexpr (kIsTls<Stream>) {
    SetTlsPeerName(stream.native_handle(), o);
    lowest.expires_after(ToChrono(o.timeout));
    done.reset();
    stream.async_handshake(ssl::stream_base::client, [&](error_code e) { done = e; });
    base.RunPending();
    if (*done) {
      return NetError("TLS handshake", *done);
    }
  }
  return absl::OkStatus();
}

template <class Stream>
absl::StatusOr<ClientResponse> FetchOn(IoBase& base, Stream& stream, const ClientOptions& o,
                                       const std::string& method, const std::string& target,
                                       const std::string& body) {
  if (absl::Status s = ConnectStream(base, stream, o); !s.ok()) {
    return s;
  }
  bhttp::request<bhttp::string_body> req;
  req.method_string(method);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, absl::StrCat(o.host, ":", o.port));
  req.set(bhttp::field::user_agent, "podgate");
  for (const auto& [name, value] : o.headers) {
    req.set(name, value);
  }
  req.body() = body;
  req.keep_alive(false);
  req.prepare_payload();
  auto& lowest = beast::get_lowest_layer(stream);
  lowest.expires_after(ToChrono(o.timeout));
  std::optional<error_code> done;
  bhttp::async_write(stream, req, [&](error_code e, size_t) { done = e; });
  base.RunPending();
  if (*done) {
    return NetError("write request", *done);
  }
  beast::flat_buffer buffer;
  bhttp::response_parser<bhttp::string_body> parser;
  parser.body_limit(o.max_message_bytes);
  lowest.expires_after(ToChrono(o.timeout));
  done.reset();
  bhttp::async_read(stream, buffer, parser, [&](error_code e, size_t) { done = e; });
  base.RunPending();
  if (*done) {
    return NetError("read response", *done);
  }
  auto res = parser.release();
  ClientResponse out;
  out.status = static_cast<int>(res.result_int());
  out.content_type = std::string(res[bhttp::field::content_type]);
  for (const auto& field : res) {
    out.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
  }
  out.body = std::move(res.body());
  return out;
}

template <class Stream>
class WebSocketClientImpl : private IoBase, public WebSocketClient {
 public:
  WebSocketClientImpl(const ClientOptions& o, std::optional<ssl::context> tls)
      : IoBase(std::move(tls)), options_(o), ws_(MakeStream()) {}

  absl::Status Connect(const std::string& target, const std::vector<std::string>& subprotocols,
                       ClientResponse* refusal) {
    if (absl::Status s = ConnectStream(*this, ws_.next_layer(), options_); !s.ok()) {
      return s;
    }
    std::string offer = absl::StrJoin(subprotocols, ", ");
    ws_.set_option(websocket::stream_base::decorator([this, offer](websocket::request_type& req) {
      req.set(bhttp::field::user_agent, "podgate");
      if (!offer.empty()) {
        req.set(bhttp::field::sec_websocket_protocol, offer);
      }
      for (const auto& [name, value] : options_.headers) {
        req.set(name, value);
      }
    }));
    ws_.read_message_max(options_.max_message_bytes);
    websocket::response_type res;
    beast::get_lowest_layer(ws_).expires_after(ToChrono(options_.timeout));
    std::optional<error_code> done;
    ws_.async_handshake(res, absl::StrCat(options_.host, ":", options_.port), target,
                        [&](error_code e) { done = e; });
    RunPending();
    if (*done) {
      if (res.result_int() != 0 && res.result() != bhttp::status::switching_protocols) {
        if (refusal != nullptr) {
          refusal->status = static_cast<int>(res.result_int());
          refusal->content_type = std::string(res[bhttp::field::content_type]);
          refusal->body = res.body();
          for (const auto& field : res) {
            refusal->headers.emplace_back(std::string(field.name_string()),
                                          std::string(field.value()));
          }
        }
        return absl::FailedPreconditionError(
            absl::StrCat("WebSocket upgrade refused: HTTP ", res.result_int(), " ", res.body()));
      }
      return NetError("WebSocket handshake", *done);
    }
    subprotocol_ = std::string(res[bhttp::field::sec_websocket_protocol]);
    for (const auto& field : res) {
      upgrade_headers_.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    beast::get_lowest_layer(ws_).expires_never();
    return absl::OkStatus();
  }

  const std::string& subprotocol() const override { return subprotocol_; }
  const std::vector<std::pair<std::string, std::string>>& upgrade_headers() const override {
    return upgrade_headers_;
  }

  absl::Status Write(const std::string& data, bool binary) override {
    ws_.binary(binary);
    beast::get_lowest_layer(ws_).expires_after(ToChrono(options_.timeout));
    std::optional<error_code> done;
    ws_.async_write(net::buffer(data), [&](error_code e, size_t) { done = e; });
    RunPending();
    beast::get_lowest_layer(ws_).expires_never();
    if (*done) {
      return NetError("WebSocket write", *done);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<Message> Read(absl::Duration timeout) override {
    beast::flat_buffer buffer;
    beast::get_lowest_layer(ws_).expires_after(ToChrono(timeout));
    std::optional<error_code> done;
    ws_.async_read(buffer, [&](error_code e, size_t) { done = e; });
    RunPending();
    beast::get_lowest_layer(ws_).expires_never();
    if (*done == websocket::error::closed) {
      return absl::OutOfRangeError(
          absl::StrCat("closed by server: code ", ws_.reason().code, " ",
                       std::string(ws_.reason().reason.data(), ws_.reason().reason.size())));
    }
    if (*done) {
      return NetError("WebSocket read", *done);
    }
    return Message{beast::buffers_to_string(buffer.data()), ws_.got_binary()};
  }

  absl::Status Close() override {
    beast::get_lowest_layer(ws_).expires_after(ToChrono(options_.timeout));
    std::optional<error_code> done;
    ws_.async_close(websocket::close_code::normal, [&](error_code e) { done = e; });
    RunPending();
    if (*done) {
      return NetError("WebSocket close", *done);
    }
    return absl::OkStatus();
  }

  void Abort() override {
    error_code ignored;
    beast::get_lowest_layer(ws_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(ws_).socket().close(ignored);
  }

 private:
  Stream MakeStream() {
    if constexpr (kIsTls<Stream>) {
      return Stream(io, *tls);
    } else {
      return Stream(io);
    }
  }

  ClientOptions options_;
  websocket::stream<Stream> ws_;
  std::string subprotocol_;
  std::vector<std::pair<std::string, std::string>> upgrade_headers_;
};

}  // namespace

absl::Status NetError(const char* what, const boost::system::error_code& ec) {
  if (ec == boost::beast::error::timeout) {
    return absl::DeadlineExceededError(absl::StrCat(what, ": timed out"));
  }
  return absl::UnavailableError(absl::StrCat(what, ": ", ec.message()));
}

void SetTlsPeerName(SSL* native, const ClientOptions& o) {
  std::string name = o.server_name.empty() ? o.host : o.server_name;
  boost::system::error_code addr_ec;
  boost::asio::ip::make_address(name, addr_ec);
  if (addr_ec) {
    SSL_set_tlsext_host_name(native, name.c_str());
  }
  if (!o.insecure_skip_verify) {
    X509_VERIFY_PARAM* param = SSL_get0_param(native);
    if (!addr_ec) {
      X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
    } else {
      X509_VERIFY_PARAM_set1_host(param, name.c_str(), 0);
    }
  }
}

absl::Status MakeClientTlsContext(const ClientOptions& o, std::optional<ssl::context>& ctx) {
  try {
    ctx.emplace(ssl::context::tls_client);
    ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                     ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (o.insecure_skip_verify) {
      ctx->set_verify_mode(ssl::verify_none);
    } else {
      if (!o.ca_pem.empty()) {
        ctx->add_certificate_authority(boost::asio::buffer(o.ca_pem));
      } else if (o.ca_file.empty()) {
        ctx->set_default_verify_paths();
      } else {
        ctx->load_verify_file(o.ca_file);
      }
      ctx->set_verify_mode(ssl::verify_peer);
    }
    if (!o.client_cert_pem.empty()) {
      ctx->use_certificate_chain(boost::asio::buffer(o.client_cert_pem));
      ctx->use_private_key(boost::asio::buffer(o.client_key_pem), ssl::context::pem);
    } else if (!o.client_cert_file.empty()) {
      ctx->use_certificate_chain_file(o.client_cert_file);
      ctx->use_private_key_file(o.client_key_file, ssl::context::pem);
    }
  } catch (const boost::system::system_error& e) {
    return absl::InvalidArgumentError(absl::StrCat("TLS client setup failed: ", e.what()));
  }
  return absl::OkStatus();
}


absl::StatusOr<ClientResponse> Fetch(const ClientOptions& options, const std::string& method,
                                     const std::string& target, const std::string& body) {
  IoBase base;
  if (options.tls) {
    if (absl::Status s = MakeClientTlsContext(options, base.tls); !s.ok()) {
      return s;
    }
    TlsStream stream(base.io, *base.tls);
    return FetchOn(base, stream, options, method, target, body);
  }
  beast::tcp_stream stream(base.io);
  return FetchOn(base, stream, options, method, target, body);
}

absl::StatusOr<std::unique_ptr<WebSocketClient>> WebSocketClient::Connect(
    const ClientOptions& options, const std::string& target,
    const std::vector<std::string>& subprotocols, ClientResponse* refusal) {
  if (options.tls) {
    std::optional<ssl::context> tls;
    if (absl::Status s = MakeClientTlsContext(options, tls); !s.ok()) {
      return s;
    }
    auto client = std::make_unique<WebSocketClientImpl<TlsStream>>(options, std::move(tls));
    if (absl::Status s = client->Connect(target, subprotocols, refusal); !s.ok()) {
      return s;
    }
    return std::unique_ptr<WebSocketClient>(std::move(client));
  }
  auto client = std::make_unique<WebSocketClientImpl<beast::tcp_stream>>(options, std::nullopt);
  if (absl::Status s = client->Connect(target, subprotocols, refusal); !s.ok()) {
    return s;
  }
  return std::unique_ptr<WebSocketClient>(std::move(client));
}

}  // namespace podgate::http
