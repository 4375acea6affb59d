#include "audit/export/syslog_sink.h"

#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/write.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <deque>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "audit/export/sink.h"
#include "audit/export/syslog_format.h"
#include "http/client.h"
#include "runtime/log.h"

namespace podgate::audit::exporting {

namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = boost::asio::ip::tcp;

constexpr absl::Duration kDefaultTimeout = absl::Seconds(10);
constexpr absl::Duration kMinTimeout = absl::Milliseconds(100);
constexpr absl::Duration kMaxTimeout = absl::Minutes(10);
// How often a blocked step looks at Cancel().
constexpr auto kCancelPoll = std::chrono::milliseconds(20);
// TLS 1.3: how long a new connection waits for the server's verdict on the client (see
// AwaitServerVerdict), and how long it looks for a close after the first post-handshake bytes.
constexpr absl::Duration kTls13VerdictWait = absl::Milliseconds(500);
constexpr absl::Duration kTls13CloseSettle = absl::Milliseconds(30);

struct Settings {
  std::string name;
  std::string host;
  std::string port;
  bool tls = false;
  std::string server_name;
  podgate::http::ClientOptions tls_options;
  SyslogFormatOptions format;
  absl::Duration timeout = kDefaultTimeout;
};

absl::Status Invalid(const std::string& sink, absl::string_view what, absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat("sink ", sink, ": syslog ", what, ": ", problem));
}

// "host:port" or "[v6]:port".
absl::Status ParseAddress(const std::string& sink, const std::string& address, Settings& s) {
  if (address.empty()) {
    return Invalid(sink, "address", "missing (host:port)");
  }
  std::string host;
  std::string port;
  if (address.front() == '[') {
    size_t close = address.find(']');
    if (close == std::string::npos || close + 1 >= address.size() || address[close + 1] != ':') {
      return Invalid(sink, "address", absl::StrCat("\"", address, "\" is not [ipv6]:port"));
    }
    host = address.substr(1, close - 1);
    port = address.substr(close + 2);
  } else {
    size_t colon = address.rfind(':');
    if (colon == std::string::npos) {
      return Invalid(sink, "address", absl::StrCat("\"", address, "\" has no port (host:port)"));
    }
    host = address.substr(0, colon);
    port = address.substr(colon + 1);
    if (host.find(':') != std::string::npos) {
      return Invalid(sink, "address",
                     absl::StrCat("\"", address, "\": an IPv6 address goes in brackets"));
    }
  }
  if (host.empty()) {
    return Invalid(sink, "address", absl::StrCat("\"", address, "\" has no host"));
  }
  int port_number = 0;
  if (!absl::SimpleAtoi(port, &port_number) || port_number < 1 || port_number > 65535 ||
      port.find_first_not_of("0123456789") != std::string::npos) {
    return Invalid(sink, "address",
                   absl::StrCat("port \"", port, "\" in \"", address, "\" is not 1 to 65535"));
  }
  s.host = host;
  s.port = port;
  return absl::OkStatus();
}

absl::Status CheckReadable(const std::string& sink, absl::string_view what,
                           const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return Invalid(sink, what, absl::StrCat("cannot read \"", path, "\": ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

bool IsIpAddress(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

absl::StatusOr<Settings> ParseSettings(const podgate::audit::v1::SinkConfig& config,
                                       std::optional<ssl::context>& tls_context) {
  const std::string& sink = config.name();
  const auto& c = config.syslog();
  Settings s;
  s.name = sink;
  if (absl::Status st = ParseAddress(sink, c.address(), s); !st.ok()) {
    return st;
  }
  if (c.transport() == "tls") {
    s.tls = true;
  } else if (c.transport() != "tcp") {
    return Invalid(sink, "transport",
                   absl::StrCat("\"", c.transport(), "\" is not \"tcp\" or \"tls\""));
  }
  const auto& t = c.tls();
  const bool any_tls = !t.ca_file().empty() || !t.cert_file().empty() || !t.key_file().empty() ||
                       !t.server_name().empty();
  if (!s.tls && any_tls) {
    return Invalid(sink, "tls", "settings given but transport is \"tcp\" (use \"tls\")");
  }
  if (t.cert_file().empty() != t.key_file().empty()) {
    return Invalid(sink, "tls",
                   t.cert_file().empty() ? "key_file given without cert_file"
                                         : "cert_file given without key_file");
  }
  if (c.facility() < 0 || c.facility() > 23) {
    return Invalid(sink, "facility", absl::StrCat(c.facility(), " is not 0 to 23"));
  }
  s.format.facility = c.facility() == 0 ? 13 : c.facility();
  if (!c.app_name().empty()) {
    if (c.app_name().size() > 48) {
      return Invalid(sink, "app_name", "longer than 48 characters");
    }
    for (char ch : c.app_name()) {
      if (ch < 33 || ch > 126) {
        return Invalid(sink, "app_name",
                       absl::StrCat("\"", c.app_name(),
                                    "\" has a character other than printable "
                                    "US-ASCII (no spaces)"));
      }
    }
    s.format.app_name = c.app_name();
  }
  if (!c.timeout().empty()) {
    absl::Duration d;
    if (!absl::ParseDuration(c.timeout(), &d)) {
      return Invalid(sink, "timeout", absl::StrCat("\"", c.timeout(), "\" is not a duration"));
    }
    if (d < kMinTimeout || d > kMaxTimeout) {
      return Invalid(
          sink, "timeout",
          absl::StrCat(c.timeout(), " is not between ", absl::FormatDuration(kMinTimeout), " and ",
                       absl::FormatDuration(kMaxTimeout)));
    }
    s.timeout = d;
  }
  if (s.tls) {
    for (const auto& [what, path] :
         {std::pair<const char*, const std::string*>{"tls ca_file", &t.ca_file()},
          {"tls cert_file", &t.cert_file()},
          {"tls key_file", &t.key_file()}}) {
      if (!path->empty()) {
        if (absl::Status st = CheckReadable(sink, what, *path); !st.ok()) {
          return st;
        }
      }
    }
    s.server_name = t.server_name().empty() ? s.host : t.server_name();
    s.tls_options.tls = true;
    s.tls_options.ca_file = t.ca_file();
    s.tls_options.client_cert_file = t.cert_file();
    s.tls_options.client_key_file = t.key_file();
    s.tls_options.server_name = s.server_name;
    if (absl::Status st = podgate::http::MakeClientTlsContext(s.tls_options, tls_context);
        !st.ok()) {
      return Invalid(sink, "tls", st.message());
    }
  }
  // Resolve now: a name that does not resolve is a configuration error. A receiver that is not
  // listening yet is not (the exporter retries).
  {
    asio::io_context io;
    tcp::resolver resolver(io);
    boost::system::error_code ec;
    auto results = resolver.resolve(s.host, s.port, ec);
    if (ec || results.empty()) {
      return Invalid(
          sink, "address",
          absl::StrCat("cannot resolve \"", s.host, "\": ", ec ? ec.message() : "no address"));
    }
  }
  char hostname[256] = {};
  if (gethostname(hostname, sizeof(hostname) - 1) == 0) {
    s.format.hostname = hostname;
  }
  s.format.pid = static_cast<int>(getpid());
  return s;
}

class SyslogSink final : public Sink {
 public:
  SyslogSink(Settings settings, std::optional<ssl::context> tls_context)
      : settings_(std::move(settings)), tls_context_(std::move(tls_context)) {
    peer_ = absl::StrCat(settings_.host, ":", settings_.port);
  }

  ~SyslogSink() override { Close(); }

  DeliveryResult Deliver(absl::Span<const ExportItem> batch) override {
    DeliveryResult result;
    result.status = DeliverBatch(batch, &result.bytes);
    return result;
  }

  void Cancel() override { cancelled_.store(true); }

  size_t UnconfirmedWindowBytes() const override { return kSyslogReplayWindowBytes; }

 private:
  absl::Status DeliverBatch(absl::Span<const ExportItem> batch, size_t* bytes) {
    if (cancelled_.load()) {
      return absl::CancelledError("syslog sink cancelled");
    }
    std::vector<std::string> frames;
    frames.reserve(batch.size());
    size_t total = 0;
    for (const ExportItem& item : batch) {
      bool replaced = false;
      std::string message = FormatSyslogMessage(item, settings_.format, &replaced);
      if (replaced) {
        const bool record = item.kind == ExportItem::Kind::kRecord;
        podgate::log::Warn(
            "syslog message too long: JSON body replaced by its ids (truncated=\"json\")",
            {{"sink", settings_.name},
             {"chain_id", record ? item.record.chain_id() : item.checkpoint.chain_id()},
             {"sequence", record ? item.record.sequence() : item.checkpoint.sequence()}});
      }
      frames.push_back(absl::StrCat(message.size(), " ", message));
      total += frames.back().size();
    }
    std::string payload;
    payload.reserve(total);
    for (const std::string& f : frames) {
      payload += f;
    }

    if (socket() != nullptr && PeerClosed()) {
      // The receiver closed the connection since the last batch (a restart): what it had not
      // read yet is gone, so the replay window goes first on the next connection.
      Close();
      replay_ = true;
    }
    if (socket() == nullptr) {
      if (absl::Status s = Connect(absl::Now() + settings_.timeout); !s.ok()) {
        Close();
        return s;
      }
    }
    const absl::Time deadline = absl::Now() + settings_.timeout;
    if (replay_ && !window_.empty()) {
      podgate::log::Info("syslog sink re-sending its replay window after a broken connection",
                         {{"sink", settings_.name},
                          {"peer", peer_},
                          {"messages", static_cast<uint64_t>(window_.size())},
                          {"bytes", static_cast<uint64_t>(window_bytes_)}});
      std::string replay;
      replay.reserve(window_bytes_);
      for (const std::string& f : window_) {
        replay += f;
      }
      if (absl::Status s = Write(replay, deadline); !s.ok()) {
        return Broken(s);
      }
    }
    if (absl::Status s = Write(payload, deadline); !s.ok()) {
      return Broken(s);
    }
    if (absl::Status s = WaitAcknowledged(deadline); !s.ok()) {
      return Broken(s);
    }
    replay_ = false;
    *bytes = payload.size();
    for (std::string& f : frames) {
      window_bytes_ += f.size();
      window_.push_back(std::move(f));
    }
    while (window_bytes_ > kSyslogReplayWindowBytes && !window_.empty()) {
      window_bytes_ -= window_.front().size();
      window_.pop_front();
    }
    return absl::OkStatus();
  }

  absl::Status Broken(absl::Status s) {
    Close();
    replay_ = true;
    return s;
  }

  tcp::socket* socket() {
    if (tls_) {
      return &tls_->next_layer();
    }
    return tcp_.get();
  }

  void Close() {
    boost::system::error_code ignored;
    if (tcp::socket* s = socket(); s != nullptr) {
      s->close(ignored);
    }
    // Let the aborted operations finish before the stream goes away.
    io_.restart();
    io_.poll();
    tls_.reset();
    tcp_.reset();
  }

  // Runs one asynchronous operation started by `start` until it completes, the deadline passes
  // (the socket is closed: DEADLINE_EXCEEDED) or Cancel() is called (CANCELLED).
  template <typename Start>
  absl::Status Run(absl::string_view what, absl::Time deadline, Start start) {
    bool done = false;
    boost::system::error_code result;
    io_.restart();
    start([&done, &result](const boost::system::error_code& ec, auto&&...) {
      done = true;
      result = ec;
    });
    absl::Status stopped;
    while (!done) {
      if (cancelled_.load()) {
        stopped = absl::CancelledError(absl::StrCat("syslog ", what, " ", peer_, ": cancelled"));
      } else if (absl::Now() >= deadline) {
        stopped = absl::DeadlineExceededError(
            absl::StrCat("syslog ", what, " ", peer_, ": timed out after ",
                         absl::FormatDuration(settings_.timeout)));
      }
      if (!stopped.ok()) {
        boost::system::error_code ignored;
        if (tcp::socket* s = socket(); s != nullptr) {
          s->close(ignored);
        }
        resolver_.cancel();
        while (!done) {
          io_.restart();
          io_.run_one();
        }
        return stopped;
      }
      auto wait = std::min<std::chrono::nanoseconds>(
          kCancelPoll, absl::ToChronoNanoseconds(deadline - absl::Now()));
      io_.run_one_for(std::max(wait, std::chrono::nanoseconds(0)));
      if (io_.stopped() && !done) {
        io_.restart();
      }
    }
    if (result) {
      return ErrorStatus(what, result);
    }
    return absl::OkStatus();
  }

  absl::Status ErrorStatus(absl::string_view what, const boost::system::error_code& ec) {
    std::string detail = ec.message();
    if (ec.category() == asio::error::get_ssl_category() && tls_) {
      long verify = SSL_get_verify_result(tls_->native_handle());
      if (verify != X509_V_OK) {
        detail = absl::StrCat("certificate verify failed: ", X509_verify_cert_error_string(verify),
                              " (server name \"", settings_.server_name, "\")");
      }
      // A TLS failure is a setting to fix (CA, names, client certificate), not a receiver down.
      return absl::FailedPreconditionError(absl::StrCat("syslog ", what, " ", peer_, ": ", detail));
    }
    return absl::UnavailableError(absl::StrCat("syslog ", what, " ", peer_, ": ", detail));
  }

  absl::Status Connect(absl::Time deadline) {
    Close();
    tcp::resolver::results_type endpoints;
    if (absl::Status s = Run("resolve", deadline,
                             [&](auto handler) {
                               resolver_.async_resolve(
                                   settings_.host, settings_.port,
                                   [&endpoints, handler](const boost::system::error_code& ec,
                                                         tcp::resolver::results_type r) mutable {
                                     endpoints = std::move(r);
                                     handler(ec);
                                   });
                             });
        !s.ok()) {
      return s;
    }
    if (settings_.tls) {
      tls_ = std::make_unique<ssl::stream<tcp::socket>>(io_, *tls_context_);
    } else {
      tcp_ = std::make_unique<tcp::socket>(io_);
    }
    if (absl::Status s =
            Run("connect", deadline,
                [&](auto handler) { asio::async_connect(*socket(), endpoints, handler); });
        !s.ok()) {
      return s;
    }
    boost::system::error_code ignored;
    socket()->set_option(tcp::no_delay(true), ignored);
    if (settings_.tls) {
      SSL* ssl = tls_->native_handle();
      if (!IsIpAddress(settings_.server_name)) {
        SSL_set_tlsext_host_name(ssl, settings_.server_name.c_str());
      }
      tls_->set_verify_callback(ssl::host_name_verification(settings_.server_name));
      if (absl::Status s =
              Run("TLS handshake with", deadline,
                  [&](auto handler) { tls_->async_handshake(ssl::stream_base::client, handler); });
          !s.ok()) {
        return s;
      }
      if (SSL_version(ssl) == TLS1_3_VERSION) {
        return AwaitServerVerdict(deadline);
      }
    }
    return absl::OkStatus();
  }

  // TLS 1.3 finishes the client's handshake before the server has checked the client's
  // certificate: a server that refuses it (mutual TLS) answers with an alert and closes only
  // then, and bytes written meanwhile would be acknowledged by its TCP stack and dropped. So a new
  // connection waits, before anything is written, for the server's first post-handshake message
  // (its session tickets: accepted) or its close (refused), at most kTls13VerdictWait; a server
  // that sends no tickets costs that wait once per connection.
  absl::Status AwaitServerVerdict(absl::Time deadline) {
    const absl::Time until = std::min(deadline, absl::Now() + kTls13VerdictWait);
    bool readable = false;
    while (true) {
      pollfd p{};
      p.fd = socket()->native_handle();
      p.events = POLLIN | POLLRDHUP;
      const absl::Duration left = until - absl::Now();
      const int wait_ms = static_cast<int>(
          std::clamp<int64_t>(absl::ToInt64Milliseconds(left), 0, kCancelPoll.count()));
      const int n = ::poll(&p, 1, wait_ms);
      if (n > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0) {
        return absl::FailedPreconditionError(absl::StrCat(
            "syslog TLS handshake with ", peer_,
            ": the server closed the connection right after the handshake (did it refuse the "
            "client certificate, or require one?)"));
      }
      if (n > 0 && (p.revents & POLLIN) != 0 && !readable) {
        // An alert is followed by the close at once; tickets are not. Look a little longer.
        readable = true;
        const absl::Time settle = absl::Now() + kTls13CloseSettle;
        if (settle < until) {
          absl::SleepFor(kTls13CloseSettle);
        }
        continue;
      }
      if (readable || cancelled_.load() || absl::Now() >= until) {
        return cancelled_.load() ? absl::CancelledError(absl::StrCat("syslog TLS handshake with ",
                                                                     peer_, ": cancelled"))
                                 : absl::OkStatus();
      }
    }
  }

  absl::Status Write(const std::string& data, absl::Time deadline) {
    return Run("write to", deadline, [&](auto handler) {
      if (tls_) {
        asio::async_write(*tls_, asio::buffer(data), handler);
      } else {
        asio::async_write(*tcp_, asio::buffer(data), handler);
      }
    });
  }

  // The peer closed (FIN or RST) or the socket has an error.
  bool PeerClosed() {
    pollfd p{};
    p.fd = socket()->native_handle();
    p.events = POLLRDHUP;
    return ::poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
  }

  // Waits until the peer's TCP stack acknowledged every byte written (the send queue is empty)
  // with the connection still up.
  absl::Status WaitAcknowledged(absl::Time deadline) {
    const int fd = socket()->native_handle();
    absl::Duration pause = absl::Microseconds(20);
    while (true) {
      int error = 0;
      socklen_t len = sizeof(error);
      if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &len) == 0 && error != 0) {
        return absl::UnavailableError(
            absl::StrCat("syslog delivery to ", peer_, ": ", std::strerror(error)));
      }
      tcp_info info{};
      len = sizeof(info);
      if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) != 0) {
        return absl::UnavailableError(
            absl::StrCat("syslog delivery to ", peer_, ": TCP_INFO: ", std::strerror(errno)));
      }
      if (info.tcpi_state != TCP_ESTABLISHED && info.tcpi_state != TCP_CLOSE_WAIT) {
        return absl::UnavailableError(
            absl::StrCat("syslog delivery to ", peer_,
                         ": connection closed before every byte was acknowledged"));
      }
      int queued = 0;
      if (ioctl(fd, SIOCOUTQ, &queued) != 0) {
        return absl::UnavailableError(
            absl::StrCat("syslog delivery to ", peer_, ": SIOCOUTQ: ", std::strerror(errno)));
      }
      if (queued == 0) {
        return absl::OkStatus();
      }
      if (cancelled_.load()) {
        return absl::CancelledError(absl::StrCat("syslog delivery to ", peer_, ": cancelled"));
      }
      if (absl::Now() >= deadline) {
        return absl::DeadlineExceededError(absl::StrCat("syslog delivery to ", peer_, ": ", queued,
                                                        " bytes not acknowledged after ",
                                                        absl::FormatDuration(settings_.timeout)));
      }
      absl::SleepFor(pause);
      pause = std::min(pause * 2, absl::Milliseconds(1));
    }
  }

  const Settings settings_;
  std::optional<ssl::context> tls_context_;
  std::string peer_;
  asio::io_context io_;
  tcp::resolver resolver_{io_};
  std::unique_ptr<tcp::socket> tcp_;
  std::unique_ptr<ssl::stream<tcp::socket>> tls_;
  // The last connection broke: the replay window goes first on the next one.
  bool replay_ = false;
  // Framed messages delivered OK, newest last, at most kSyslogReplayWindowBytes.
  std::deque<std::string> window_;
  size_t window_bytes_ = 0;
  std::atomic<bool> cancelled_{false};
};

}  // namespace

absl::StatusOr<std::unique_ptr<Sink>> MakeSyslogSink(const podgate::audit::v1::SinkConfig& config) {
  if (!config.has_syslog()) {
    return absl::InvalidArgumentError(absl::StrCat("sink ", config.name(), ": not a syslog sink"));
  }
  std::optional<ssl::context> tls_context;
  absl::StatusOr<Settings> settings = ParseSettings(config, tls_context);
  if (!settings.ok()) {
    return settings.status();
  }
  return std::unique_ptr<Sink>(new SyslogSink(*std::move(settings), std::move(tls_context)));
}

}  // namespace podgate::audit::exporting
