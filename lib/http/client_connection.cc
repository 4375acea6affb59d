#include "http/client_connection.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <chrono>
#include <optional>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "http/socket_options.h"

namespace podgate::http {
namespace {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;
using TlsStream = beast::ssl_stream<beast::tcp_stream>;
using Deadline = std::chrono::steady_clock::time_point;

// A failure that, on a reused keep-alive connection, means the server closed it while idle (the
// request never reached it): worth one more try on a new connection.
bool ClosedWhileIdle(const error_code& ec) {
  return ec == bhttp::error::end_of_stream || ec == net::error::eof ||
         ec == net::error::connection_reset || ec == net::error::broken_pipe ||
         ec == ssl::error::stream_truncated;
}

std::string HostHeader(const ClientOptions& o) {
  std::string host =
      o.host.find(':') != std::string::npos ? absl::StrCat("[", o.host, "]") : o.host;
  if ((o.tls && o.port == 443) || (!o.tls && o.port == 80)) {
    return host;
  }
  return absl::StrCat(host, ":", o.port);
}

template <class Stream>
class ClientConnectionImpl final : public ClientConnection {
 public:
  ClientConnectionImpl(const ClientOptions& options, std::optional<ssl::context> tls)
      : tls_(std::move(tls)), options_(options) {}

  absl::StatusOr<ClientResponse> Request(
      const std::string& method, const std::string& target, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& headers) override {
    {
      absl::MutexLock lock(&mu_);
      if (cancelled_) {
        return absl::CancelledError("request cancelled");
      }
      in_flight_ = true;
    }
    absl::StatusOr<ClientResponse> result = Exchange(method, target, body, headers);
    absl::MutexLock lock(&mu_);
    in_flight_ = false;
    if (cancelled_ && !result.ok()) {
      Drop();
      return absl::CancelledError("request cancelled");
    }
    return result;
  }

  void Cancel() override {
    absl::MutexLock lock(&mu_);
    if (cancelled_) {
      return;
    }
    cancelled_ = true;
    if (in_flight_) {
      // Runs on the requesting thread inside its io_.run(), the only thread touching stream_;
      // the pending operation then completes with operation_aborted.
      net::post(io_, [this] { Abort(); });
    }
  }

  uint64_t connections_opened() const override { return connections_opened_.load(); }

 private:
  absl::StatusOr<ClientResponse> Exchange(
      const std::string& method, const std::string& target, const std::string& body,
      const std::vector<std::pair<std::string, std::string>>& headers) {
    const Deadline deadline =
        options_.timeout == absl::InfiniteDuration()
            ? Deadline::max()
            : std::chrono::steady_clock::now() +
                  std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                      absl::ToChronoNanoseconds(options_.timeout));
    bhttp::request<bhttp::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(bhttp::field::host, HostHeader(options_));
    req.set(bhttp::field::user_agent, "podgate");
    for (const auto& [name, value] : options_.headers) {
      req.set(name, value);
    }
    for (const auto& [name, value] : headers) {
      req.set(name, value);
    }
    req.body() = body;
    req.keep_alive(true);
    req.prepare_payload();

    for (int attempt = 0;; ++attempt) {
      const bool reused = stream_.has_value();
      if (!reused) {
        if (absl::Status s = Connect(deadline); !s.ok()) {
          Drop();
          return s;
        }
      }
      auto& lowest = beast::get_lowest_layer(*stream_);
      lowest.expires_at(deadline);
      std::optional<error_code> done;
      bhttp::async_write(*stream_, req, [&](error_code e, size_t) { done = e; });
      RunPending();
      if (*done) {
        Drop();
        if (reused && attempt == 0 && ClosedWhileIdle(*done)) {
          continue;
        }
        return NetError("write request", *done);
      }
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(options_.max_message_bytes);
      lowest.expires_at(deadline);
      done.reset();
      bhttp::async_read(*stream_, buffer_, parser, [&](error_code e, size_t) { done = e; });
      RunPending();
      if (*done) {
        Drop();
        if (reused && attempt == 0 && !parser.got_some() && ClosedWhileIdle(*done)) {
          continue;
        }
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
      if (!res.keep_alive()) {
        Drop();
      } else {
        lowest.expires_never();
      }
      return out;
    }
  }

  absl::Status Connect(Deadline deadline) {
    error_code ec;
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(options_.host, std::to_string(options_.port), ec);
    if (ec) {
      return NetError("resolve", ec);
    }
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      stream_.emplace(io_, *tls_);
    } else {
      stream_.emplace(io_);
    }
    buffer_.clear();
    auto& lowest = beast::get_lowest_layer(*stream_);
    lowest.expires_at(deadline);
    std::optional<error_code> done;
    lowest.async_connect(results, [&](error_code e, const tcp::endpoint&) { done = e; });
    RunPending();
    if (*done) {
      return NetError("connect", *done);
    }
    SendSmallFramesAtOnce(lowest.socket());
    connections_opened_.fetch_add(1);
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      SSL* native = stream_->native_handle();
      SetTlsPeerName(native, options_);
      lowest.expires_at(deadline);
      done.reset();
      stream_->async_handshake(ssl::stream_base::client, [&](error_code e) { done = e; });
      RunPending();
      if (*done) {
        long verify = SSL_get_verify_result(native);
        if (verify != X509_V_OK && *done != net::error::operation_aborted &&
            *done != beast::error::timeout) {
          return absl::FailedPreconditionError(absl::StrCat(
              "TLS handshake: the server's certificate does not verify: ",
              X509_verify_cert_error_string(verify), " (name ",
              options_.server_name.empty() ? options_.host : options_.server_name, ")"));
        }
        return NetError("TLS handshake", *done);
      }
    }
    return absl::OkStatus();
  }

  // Closes the socket under a pending operation, which then completes with operation_aborted;
  // the stream itself stays until that operation has returned (Drop).
  void Abort() {
    if (stream_.has_value()) {
      beast::get_lowest_layer(*stream_).close();
    }
  }

  // Closes the connection (the next request opens a new one). Never while an operation is
  // pending.
  void Drop() {
    if (stream_.has_value()) {
      beast::get_lowest_layer(*stream_).close();
      stream_.reset();
    }
    buffer_.clear();
  }

  void RunPending() {
    io_.restart();
    io_.run();
  }

  net::io_context io_;
  std::optional<ssl::context> tls_;
  const ClientOptions options_;
  std::optional<Stream> stream_;
  beast::flat_buffer buffer_;
  std::atomic<uint64_t> connections_opened_{0};

  absl::Mutex mu_;
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool in_flight_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ClientConnection>> ClientConnection::Create(
    const ClientOptions& options) {
  if (options.tls) {
    std::optional<ssl::context> tls;
    if (absl::Status s = MakeClientTlsContext(options, tls); !s.ok()) {
      return s;
    }
    return std::unique_ptr<ClientConnection>(
        std::make_unique<ClientConnectionImpl<TlsStream>>(options, std::move(tls)));
  }
  return std::unique_ptr<ClientConnection>(
      std::make_unique<ClientConnectionImpl<beast::tcp_stream>>(options, std::nullopt));
}

}  // namespace podgate::http
