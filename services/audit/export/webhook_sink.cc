#include "audit/export/webhook_sink.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/status.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "http/client_connection.h"
#include "http/url.h"

#ifndef PODGATE_VERSION
#define PODGATE_VERSION "dev"
#endif

namespace podgate::audit::exporting {
namespace {

using podgate::audit::v1::SinkConfig;
using podgate::audit::v1::WebhookSinkConfig;

constexpr absl::Duration kDefaultTimeout = absl::Seconds(10);
constexpr absl::Duration kMinTimeout = absl::Milliseconds(10);
constexpr absl::Duration kMaxTimeout = absl::Minutes(5);
// An answer's body is only quoted in errors: a receiver's bigger answer is refused.
constexpr size_t kMaxResponseBytes = 1024 * 1024;
// How much of an error answer's body a message quotes.
constexpr size_t kQuotedBodyBytes = 200;

absl::StatusOr<std::string> ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", std::strerror(errno)));
  }
  std::stringstream content;
  content << in.rdbuf();
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": read failed"));
  }
  return content.str();
}

// OpenSSL's last error as text, clearing the queue.
std::string OpenSslReason() {
  unsigned long e = ERR_peek_last_error();
  ERR_clear_error();
  if (e == 0) {
    return "no PEM data";
  }
  char buf[256];
  ERR_error_string_n(e, buf, sizeof(buf));
  return buf;
}

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(const std::string& pem) {
  return BioPtr(BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size())));
}

// The certificates of a PEM text (at least one), or why not.
absl::StatusOr<std::vector<X509Ptr>> ParseCertificates(const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  std::vector<X509Ptr> certs;
  while (X509* cert = PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr)) {
    certs.emplace_back(cert);
  }
  unsigned long err = ERR_peek_last_error();
  if (certs.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("holds no PEM certificate (", OpenSslReason(), ")"));
  }
  // The loop ends with "no start line" after the last certificate; anything else is damage.
  if (err != 0 && ERR_GET_REASON(err) != PEM_R_NO_START_LINE) {
    return absl::InvalidArgumentError(
        absl::StrCat("holds a damaged PEM certificate (", OpenSslReason(), ")"));
  }
  ERR_clear_error();
  return certs;
}

absl::StatusOr<PkeyPtr> ParsePrivateKey(const std::string& pem) {
  ERR_clear_error();
  BioPtr bio = MemBio(pem);
  PkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (key == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("holds no PEM private key (", OpenSslReason(), ")"));
  }
  return key;
}

// A bearer token file's content: trailing whitespace dropped, then not empty and only visible
// ASCII (a header value that cannot smuggle a line break).
absl::StatusOr<std::string> ReadToken(const std::string& path) {
  absl::StatusOr<std::string> content = ReadWholeFile(path);
  if (!content.ok()) {
    return content.status();
  }
  std::string token(absl::StripTrailingAsciiWhitespace(*content));
  if (token.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": empty"));
  }
  for (char c : token) {
    if (c < 0x21 || c > 0x7e) {
      return absl::InvalidArgumentError(
          absl::StrCat(path,
                       ": holds a character that a bearer token cannot have (only "
                       "visible ASCII without spaces)"));
    }
  }
  return token;
}

// What identifies a version of a file: a Secret's rotation swaps a symlink (new inode) or
// rewrites the file (new mtime or size).
struct FileVersion {
  dev_t dev = 0;
  ino_t ino = 0;
  off_t size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileVersion&) const = default;
};

std::optional<FileVersion> StatFile(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    return std::nullopt;
  }
  return FileVersion{st.st_dev, st.st_ino, st.st_size,
                     static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec};
}

// The URL for messages: no query string (it may carry a secret).
std::string DisplayUrl(const http::HttpUrl& url) {
  http::HttpUrl shown = url;
  shown.target = url.target.substr(0, url.target.find('?'));
  return shown.ToString();
}

// The start of an answer's body for a message: printable ASCII, the rest as '?'.
std::string QuoteBody(const std::string& body) {
  std::string out = body.substr(0, kQuotedBodyBytes);
  for (char& c : out) {
    if (c < 0x20 || c > 0x7e) {
      c = '?';
    }
  }
  if (body.size() > kQuotedBodyBytes) {
    absl::StrAppend(&out, "...");
  }
  return out;
}

std::string ItemKey(const ExportItem& item) {
  if (item.kind == ExportItem::Kind::kRecord) {
    return absl::StrCat(http::UrlEncode(item.record.chain_id()), "/", item.record.sequence());
  }
  return absl::StrCat(http::UrlEncode(item.checkpoint.chain_id()), "/", item.checkpoint.sequence(),
                      "/checkpoint");
}

class WebhookSink final : public Sink {
 public:
  WebhookSink(std::string name, http::HttpUrl url, std::string token_file, std::string token,
              std::optional<FileVersion> token_version, absl::Duration timeout,
              std::unique_ptr<http::ClientConnection> connection)
      : prefix_(absl::StrCat("sink ", name, ": POST ", DisplayUrl(url), ": ")),
        url_(std::move(url)),
        token_file_(std::move(token_file)),
        token_(std::move(token)),
        token_version_(token_version),
        timeout_(timeout),
        connection_(std::move(connection)) {}

  DeliveryResult Deliver(absl::Span<const ExportItem> batch) override {
    std::vector<std::pair<std::string, std::string>> headers = {
        {"Content-Type", "application/json"},
        {"User-Agent", "podgate-audit/" PODGATE_VERSION},
        {"Podgate-Batch-Id", BatchId(batch)},
    };
    if (!token_file_.empty()) {
      if (absl::Status s = RefreshToken(); !s.ok()) {
        return {s, absl::ZeroDuration()};
      }
      headers.emplace_back("Authorization", absl::StrCat("Bearer ", token_));
    }
    absl::StatusOr<http::ClientResponse> response =
        connection_->Request("POST", url_.target, BatchJson(batch), headers);
    if (!response.ok()) {
      const absl::Status& s = response.status();
      std::string message = absl::StrCat(prefix_, s.message());
      switch (s.code()) {
        case absl::StatusCode::kCancelled:
          return {absl::CancelledError(message), absl::ZeroDuration()};
        case absl::StatusCode::kDeadlineExceeded:
          return {absl::DeadlineExceededError(
                      absl::StrCat(message, " (timeout ", absl::FormatDuration(timeout_), ")")),
                  absl::ZeroDuration()};
        case absl::StatusCode::kFailedPrecondition:
          return {absl::FailedPreconditionError(message), absl::ZeroDuration()};
        default:
          return {absl::UnavailableError(message), absl::ZeroDuration()};
      }
    }
    const int status = response->status;
    if (status >= 200 && status < 300) {
      return {absl::OkStatus(), absl::ZeroDuration()};
    }
    std::string reason(
        boost::beast::http::obsolete_reason(static_cast<boost::beast::http::status>(status)));
    std::string message = absl::StrCat(prefix_, "HTTP ", status);
    if (reason != "<unknown-status>") {
      absl::StrAppend(&message, " ", reason);
    }
    if (!response->body.empty()) {
      absl::StrAppend(&message, ": ", QuoteBody(response->body));
    }
    if (status == 408 || status == 425 || status == 429 || (status >= 500 && status < 600)) {
      return {absl::UnavailableError(message),
              ParseRetryAfter(response->Header("Retry-After"), absl::Now())};
    }
    if (status >= 300 && status < 400) {
      absl::StrAppend(&message, " (redirects are not followed)");
    }
    return {absl::FailedPreconditionError(message), absl::ZeroDuration()};
  }

  void Cancel() override { connection_->Cancel(); }

 private:
  // Re-reads the token file when it changed since the last read (a rotated Secret). A file
  // that cannot be read or is empty fails the delivery rather than send a stale token.
  absl::Status RefreshToken() {
    std::optional<FileVersion> version = StatFile(token_file_);
    if (version.has_value() && version == token_version_) {
      return absl::OkStatus();
    }
    absl::StatusOr<std::string> token = ReadToken(token_file_);
    if (!token.ok()) {
      token_version_.reset();
      return absl::FailedPreconditionError(
          absl::StrCat(prefix_, "bearer token file ", token.status().message()));
    }
    token_ = *std::move(token);
    token_version_ = version;
    return absl::OkStatus();
  }

  const std::string prefix_;
  const http::HttpUrl url_;
  const std::string token_file_;
  // Only the exporter's thread calls Deliver: no lock for these.
  std::string token_;
  std::optional<FileVersion> token_version_;
  const absl::Duration timeout_;
  std::unique_ptr<http::ClientConnection> connection_;
};

absl::StatusOr<std::unique_ptr<Sink>> BuildWebhookSink(const SinkConfig& config,
                                                       const std::string& problem_prefix) {
  const WebhookSinkConfig& webhook = config.webhook();
  auto error = [&](absl::string_view what, absl::string_view detail) {
    return absl::InvalidArgumentError(absl::StrCat(problem_prefix, what, ": ", detail));
  };
  if (webhook.url().empty()) {
    return error("webhook url", "empty (an http:// or https:// URL)");
  }
  absl::StatusOr<http::HttpUrl> url = http::ParseHttpUrl(webhook.url());
  if (!url.ok()) {
    return error("webhook url", url.status().message());
  }
  const auto& tls = webhook.tls();
  const bool any_tls = !tls.ca_file().empty() || !tls.cert_file().empty() ||
                       !tls.key_file().empty() || !tls.server_name().empty();
  if (any_tls && !url->tls) {
    return error("webhook tls", "set for an http:// URL (TLS settings need https://)");
  }
  if (tls.cert_file().empty() != tls.key_file().empty()) {
    return error("webhook tls", tls.cert_file().empty() ? "key_file without cert_file"
                                                        : "cert_file without key_file");
  }

  http::ClientOptions options;
  options.host = url->host;
  options.port = url->port;
  options.tls = url->tls;
  options.server_name = tls.server_name();
  options.max_message_bytes = kMaxResponseBytes;
  if (!tls.server_name().empty()) {
    boost::system::error_code not_ip;
    boost::asio::ip::make_address(tls.server_name(), not_ip);
    if (not_ip && (tls.server_name().find_first_of(":/[]?#@") != std::string::npos ||
                   !http::ParseHttpUrl(absl::StrCat("https://", tls.server_name(), "/")).ok())) {
      return error("webhook tls server_name",
                   absl::StrCat("\"", tls.server_name(), "\" is not a host name or address"));
    }
  }
  if (!tls.ca_file().empty()) {
    absl::StatusOr<std::string> pem = ReadWholeFile(tls.ca_file());
    if (!pem.ok()) {
      return error("webhook tls ca_file", pem.status().message());
    }
    if (auto certs = ParseCertificates(*pem); !certs.ok()) {
      return error("webhook tls ca_file",
                   absl::StrCat(tls.ca_file(), " ", certs.status().message()));
    }
    options.ca_pem = *std::move(pem);
  }
  if (!tls.cert_file().empty()) {
    absl::StatusOr<std::string> cert_pem = ReadWholeFile(tls.cert_file());
    if (!cert_pem.ok()) {
      return error("webhook tls cert_file", cert_pem.status().message());
    }
    absl::StatusOr<std::vector<X509Ptr>> certs = ParseCertificates(*cert_pem);
    if (!certs.ok()) {
      return error("webhook tls cert_file",
                   absl::StrCat(tls.cert_file(), " ", certs.status().message()));
    }
    absl::StatusOr<std::string> key_pem = ReadWholeFile(tls.key_file());
    if (!key_pem.ok()) {
      return error("webhook tls key_file", key_pem.status().message());
    }
    absl::StatusOr<PkeyPtr> key = ParsePrivateKey(*key_pem);
    if (!key.ok()) {
      return error("webhook tls key_file",
                   absl::StrCat(tls.key_file(), " ", key.status().message()));
    }
    if (X509_check_private_key(certs->front().get(), key->get()) != 1) {
      ERR_clear_error();
      return error(
          "webhook tls key_file",
          absl::StrCat(tls.key_file(), " does not match the certificate in ", tls.cert_file()));
    }
    options.client_cert_pem = *std::move(cert_pem);
    options.client_key_pem = *std::move(key_pem);
  }

  options.timeout = kDefaultTimeout;
  if (!webhook.timeout().empty()) {
    absl::Duration timeout;
    if (!absl::ParseDuration(webhook.timeout(), &timeout)) {
      return error("webhook timeout",
                   absl::StrCat("\"", webhook.timeout(), "\" is not a duration (e.g. \"10s\")"));
    }
    if (timeout < kMinTimeout || timeout > kMaxTimeout) {
      return error("webhook timeout",
                   absl::StrCat(absl::FormatDuration(timeout), " is out of range (",
                                absl::FormatDuration(kMinTimeout), " to ",
                                absl::FormatDuration(kMaxTimeout), ")"));
    }
    options.timeout = timeout;
  }

  std::string token;
  std::optional<FileVersion> token_version;
  if (!webhook.bearer_token_file().empty()) {
    token_version = StatFile(webhook.bearer_token_file());
    absl::StatusOr<std::string> read = ReadToken(webhook.bearer_token_file());
    if (!read.ok()) {
      return error("webhook bearer_token_file", read.status().message());
    }
    token = *std::move(read);
  }

  // The host must resolve now (a typo is a start-up error); a receiver that is down is not.
  {
    boost::asio::io_context io;
    boost::asio::ip::tcp::resolver resolver(io);
    boost::system::error_code ec;
    resolver.resolve(url->host, std::to_string(url->port), ec);
    if (ec) {
      return error("webhook url",
                   absl::StrCat("host \"", url->host, "\" does not resolve: ", ec.message()));
    }
  }

  absl::StatusOr<std::unique_ptr<http::ClientConnection>> connection =
      http::ClientConnection::Create(options);
  if (!connection.ok()) {
    return error("webhook tls", connection.status().message());
  }
  return std::unique_ptr<Sink>(std::make_unique<WebhookSink>(
      config.name(), *std::move(url), webhook.bearer_token_file(), std::move(token), token_version,
      options.timeout, *std::move(connection)));
}

}  // namespace

absl::Duration ParseRetryAfter(absl::string_view value, absl::Time now) {
  value = absl::StripAsciiWhitespace(value);
  if (value.empty()) {
    return absl::ZeroDuration();
  }
  if (value.find_first_not_of("0123456789") == absl::string_view::npos) {
    int64_t seconds = 0;
    if (value.size() > 12 || !absl::SimpleAtoi(value, &seconds)) {
      return kMaxRetryAfter;  // all digits, too many of them: more than the cap
    }
    return std::min(absl::Seconds(seconds), kMaxRetryAfter);
  }
  // RFC 9110 section 5.6.7: IMF-fixdate, then the obsolete RFC 850 and asctime forms.
  static constexpr const char* kFormats[] = {
      "%a, %d %b %Y %H:%M:%S GMT",
      "%A, %d-%b-%y %H:%M:%S GMT",
      "%a %b %e %H:%M:%S %Y",
  };
  for (const char* format : kFormats) {
    absl::Time when;
    std::string err;
    if (absl::ParseTime(format, std::string(value), absl::UTCTimeZone(), &when, &err)) {
      if (when <= now) {
        return absl::ZeroDuration();
      }
      return std::min(when - now, kMaxRetryAfter);
    }
  }
  return absl::ZeroDuration();
}

std::string BatchId(absl::Span<const ExportItem> batch) {
  if (batch.empty()) {
    return "";
  }
  return absl::StrCat(ItemKey(batch.front()), "..", ItemKey(batch.back()));
}

std::string BatchJson(absl::Span<const ExportItem> batch) {
  std::string out = "{\"items\":[";
  for (size_t i = 0; i < batch.size(); ++i) {
    if (i > 0) {
      out.push_back(',');
    }
    absl::StrAppend(&out, ItemJson(batch[i]));
  }
  out.append("]}");
  return out;
}

absl::StatusOr<std::unique_ptr<Sink>> MakeWebhookSink(const SinkConfig& config) {
  const std::string prefix = absl::StrCat("sink ", config.name(), ": ");
  if (config.kind_case() != SinkConfig::kWebhook) {
    return absl::InvalidArgumentError(absl::StrCat(prefix, "not a webhook sink"));
  }
  return BuildWebhookSink(config, prefix);
}

}  // namespace podgate::audit::exporting
