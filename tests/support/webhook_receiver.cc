#include "support/webhook_receiver.h"

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <optional>
#include <thread>
#include <type_traits>

#include "absl/base/thread_annotations.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"

namespace podgate::testing {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;
using error_code = boost::system::error_code;

std::string ReceivedRequest::Header(absl::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (absl::EqualsIgnoreCase(key, name)) {
      return value;
    }
  }
  return "";
}

struct WebhookReceiver::Impl {
  explicit Impl(WebhookReceiverOptions o) : options(std::move(o)) {}

  // What to do with one request that was read, after recording it.
  struct Decision {
    WebhookBehavior::Kind kind = WebhookBehavior::Kind::kAnswer;
    int status = 200;
    std::string retry_after;
    std::string body;
    bool close_after = false;
  };

  Decision Record(ReceivedRequest request) {
    absl::MutexLock lock(&mu);
    const bool expired = (behavior.requests > 0 && behavior_used >= behavior.requests) ||
                         absl::Now() - behavior_since >= behavior.duration;
    if (expired) {
      behavior = WebhookBehavior::Ok();
      behavior_since = absl::Now();
      behavior_used = 0;
    }
    ++behavior_used;
    Decision d{behavior.kind, behavior.status, behavior.retry_after, behavior.body,
               behavior.close_after};
    request.answered = d.kind == WebhookBehavior::Kind::kAnswer ? d.status : 0;
    nlohmann::json doc = nlohmann::json::parse(request.body, nullptr, /*allow_exceptions=*/false);
    if (doc.is_object() && doc.contains("items") && doc["items"].is_array()) {
      request.body_parsed = true;
      for (auto& item : doc["items"]) {
        request.items.push_back(item);
      }
    }
    if (request.answered >= 200 && request.answered < 300) {
      for (const nlohmann::json& item : request.items) {
        items.push_back(item);
        if (item.value("type", "") == "record" && item.contains("chainId") &&
            item.contains("sequence")) {
          int64_t sequence = 0;
          const nlohmann::json& s = item["sequence"];
          if (s.is_string()) {
            (void)absl::SimpleAtoi(s.get<std::string>(), &sequence);
          } else if (s.is_number_integer()) {
            sequence = s.get<int64_t>();
          }
          record_keys.emplace(item["chainId"].get<std::string>(), sequence);
        }
      }
    }
    requests.push_back(std::move(request));
    return d;
  }

  void Accept();

  WebhookReceiverOptions options;
  // Before io: the sessions that io's pending handlers hold use it.
  std::optional<ssl::context> tls;
  net::io_context io;
  tcp::acceptor acceptor{io};
  uint16_t port = 0;  // set before the I/O thread starts
  std::thread thread;
  std::atomic<uint64_t> connections{0};

  mutable absl::Mutex mu;
  WebhookBehavior behavior ABSL_GUARDED_BY(mu);
  absl::Time behavior_since ABSL_GUARDED_BY(mu) = absl::Now();
  int behavior_used ABSL_GUARDED_BY(mu) = 0;
  std::vector<ReceivedRequest> requests ABSL_GUARDED_BY(mu);
  std::vector<nlohmann::json> items ABSL_GUARDED_BY(mu);
  std::set<std::pair<std::string, int64_t>> record_keys ABSL_GUARDED_BY(mu);
};

namespace {

using TlsStream = beast::ssl_stream<beast::tcp_stream>;

// One connection: read a request, record it, answer (or hang, or reset), read the next.
template <class Stream>
class Session : public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(WebhookReceiver::Impl* impl, tcp::socket socket, uint64_t id)
      : impl_(impl), stream_(MakeStream(impl, std::move(socket))), id_(id) {}

  void Start() {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      beast::get_lowest_layer(stream_).expires_after(std::chrono::seconds(30));
      stream_.async_handshake(
          ssl::stream_base::server,
          beast::bind_front_handler(&Session::OnHandshake, this->shared_from_this()));
    } else {
      DoRead();
    }
  }

 private:
  static Stream MakeStream(WebhookReceiver::Impl* impl, tcp::socket socket) {
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      return Stream(std::move(socket), *impl->tls);
    } else {
      return Stream(std::move(socket));
    }
  }

  void OnHandshake(error_code ec) {
    if (ec) {
      return;
    }
    if constexpr (std::is_same_v<Stream, TlsStream>) {
      X509* cert = SSL_get1_peer_certificate(stream_.native_handle());
      if (cert != nullptr) {
        char cn[256] = {0};
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof(cn));
        client_cn_ = cn;
        X509_free(cert);
      }
    }
    DoRead();
  }

  void DoRead() {
    parser_.emplace();
    parser_->body_limit(impl_->options.body_limit_bytes);
    beast::get_lowest_layer(stream_).expires_never();
    bhttp::async_read(stream_, buffer_, *parser_,
                      beast::bind_front_handler(&Session::OnRead, this->shared_from_this()));
  }

  void OnRead(error_code ec, size_t) {
    if (ec == bhttp::error::body_limit) {
      Answer(413, "", "request body too large", false, true);
      return;
    }
    if (ec) {
      return;  // the client closed, or the receiver stops
    }
    bhttp::request<bhttp::string_body> req = parser_->release();
    ReceivedRequest r;
    r.received = absl::Now();
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& field : req) {
      r.headers.emplace_back(std::string(field.name_string()), std::string(field.value()));
    }
    r.body = std::move(req.body());
    r.connection = id_;
    r.client_cn = client_cn_;
    WebhookReceiver::Impl::Decision d = impl_->Record(std::move(r));
    switch (d.kind) {
      case WebhookBehavior::Kind::kAnswer:
        Answer(d.status, d.retry_after, d.body, req.keep_alive(), d.close_after);
        return;
      case WebhookBehavior::Kind::kHang:
        Hang();
        return;
      case WebhookBehavior::Kind::kReset: {
        auto& socket = beast::get_lowest_layer(stream_).socket();
        error_code ignored;
        socket.set_option(net::socket_base::linger(true, 0), ignored);
        socket.close(ignored);
        return;
      }
    }
  }

  void Answer(int status, const std::string& retry_after, const std::string& body, bool keep_alive,
              bool close_after) {
    auto res = std::make_shared<bhttp::response<bhttp::string_body>>(
        static_cast<bhttp::status>(status), 11);
    res->set(bhttp::field::server, "podgate-test-webhook");
    res->set(bhttp::field::content_type, "text/plain");
    if (!retry_after.empty()) {
      res->set(bhttp::field::retry_after, retry_after);
    }
    res->body() = body;
    res->keep_alive(keep_alive);
    res->prepare_payload();
    bhttp::async_write(
        stream_, *res,
        [self = this->shared_from_this(), res, keep_alive, close_after](error_code ec, size_t) {
          if (ec) {
            return;
          }
          if (keep_alive && !close_after) {
            self->DoRead();
          } else {
            error_code ignored;
            beast::get_lowest_layer(self->stream_)
                .socket()
                .shutdown(tcp::socket::shutdown_both, ignored);
          }
        });
  }

  // Keeps the connection open without answering, until the client gives up (or the receiver
  // stops): reads and drops whatever comes.
  void Hang() {
    buffer_.consume(buffer_.size());
    stream_.async_read_some(buffer_.prepare(4096),
                            [self = this->shared_from_this()](error_code ec, size_t n) {
                              if (ec) {
                                return;
                              }
                              self->buffer_.commit(n);
                              self->Hang();
                            });
  }

  WebhookReceiver::Impl* impl_;
  Stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  uint64_t id_;
  std::string client_cn_;
};

}  // namespace

void WebhookReceiver::Impl::Accept() {
  acceptor.async_accept([this](error_code ec, tcp::socket socket) {
    if (ec) {
      if (ec != net::error::operation_aborted) {
        Accept();
      }
      return;
    }
    const uint64_t id = connections.fetch_add(1) + 1;
    if (tls.has_value()) {
      std::make_shared<Session<TlsStream>>(this, std::move(socket), id)->Start();
    } else {
      std::make_shared<Session<beast::tcp_stream>>(this, std::move(socket), id)->Start();
    }
    Accept();
  });
}

absl::StatusOr<std::unique_ptr<WebhookReceiver>> WebhookReceiver::Start(
    WebhookReceiverOptions options) {
  auto impl = std::make_shared<Impl>(std::move(options));
  try {
    if (!impl->options.cert_file.empty()) {
      impl->tls.emplace(ssl::context::tls_server);
      impl->tls->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                             ssl::context::no_sslv3 | ssl::context::no_tlsv1 |
                             ssl::context::no_tlsv1_1);
      impl->tls->use_certificate_chain_file(impl->options.cert_file);
      impl->tls->use_private_key_file(impl->options.key_file, ssl::context::pem);
      if (!impl->options.client_ca_file.empty()) {
        impl->tls->load_verify_file(impl->options.client_ca_file);
        impl->tls->set_verify_mode(ssl::verify_peer | ssl::verify_fail_if_no_peer_cert);
      }
    }
    tcp::endpoint endpoint(net::ip::make_address("127.0.0.1"), 0);
    impl->acceptor.open(endpoint.protocol());
    impl->acceptor.set_option(net::socket_base::reuse_address(true));
    impl->acceptor.bind(endpoint);
    impl->acceptor.listen();
    impl->port = impl->acceptor.local_endpoint().port();
  } catch (const boost::system::system_error& e) {
    return absl::InternalError(absl::StrCat("webhook receiver: ", e.what()));
  }
  impl->Accept();
  Impl* raw = impl.get();
  impl->thread = std::thread([raw] { raw->io.run(); });
  return std::unique_ptr<WebhookReceiver>(new WebhookReceiver(std::move(impl)));
}

WebhookReceiver::~WebhookReceiver() {
  impl_->io.stop();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
}

uint16_t WebhookReceiver::port() const { return impl_->port; }

std::string WebhookReceiver::url(absl::string_view path) const {
  return absl::StrCat(impl_->tls.has_value() ? "https" : "http", "://127.0.0.1:", port(), path);
}

void WebhookReceiver::SetBehavior(WebhookBehavior behavior) {
  absl::MutexLock lock(&impl_->mu);
  impl_->behavior = std::move(behavior);
  impl_->behavior_since = absl::Now();
  impl_->behavior_used = 0;
}

std::vector<ReceivedRequest> WebhookReceiver::Requests() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->requests;
}

size_t WebhookReceiver::RequestCount() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->requests.size();
}

std::vector<nlohmann::json> WebhookReceiver::Items() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->items;
}

size_t WebhookReceiver::ItemCount() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->items.size();
}

std::set<std::pair<std::string, int64_t>> WebhookReceiver::RecordKeys() const {
  absl::MutexLock lock(&impl_->mu);
  return impl_->record_keys;
}

bool WebhookReceiver::WaitForItems(size_t n, absl::Duration timeout) const {
  Impl* impl = impl_.get();
  auto enough = [impl, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return impl->items.size() >= n; };
  absl::MutexLock lock(&impl->mu);
  return impl->mu.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

bool WebhookReceiver::WaitForRequests(size_t n, absl::Duration timeout) const {
  Impl* impl = impl_.get();
  auto enough = [impl, n]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return impl->requests.size() >= n; };
  absl::MutexLock lock(&impl->mu);
  return impl->mu.AwaitWithTimeout(absl::Condition(&enough), timeout);
}

void WebhookReceiver::Clear() {
  absl::MutexLock lock(&impl_->mu);
  impl_->requests.clear();
  impl_->items.clear();
  impl_->record_keys.clear();
}

uint64_t WebhookReceiver::connections() const { return impl_->connections.load(); }

}  // namespace podgate::testing
