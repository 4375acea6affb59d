// A webhook receiver for tests: a real loopback HTTP or HTTPS server (Boost.Beast, one I/O
// thread) that records every POST it reads (headers, body, the parsed {"items":[...]}) and
// answers as the test says at run time: 200, an error status (with Retry-After, for N requests
// or N seconds), never (hang), or a TCP reset. Audit's export tests point a webhook sink at it.
//
//   auto receiver = WebhookReceiver::Start({}).value();
//   sink_config.mutable_webhook()->set_url(receiver->url());
//   receiver->SetBehavior(WebhookBehavior::Status(503, "2").ForRequests(3));
//   ... receiver->WaitForItems(20000, absl::Seconds(60)); receiver->RecordKeys() ...
#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "nlohmann/json.hpp"

namespace podgate::testing {

struct WebhookReceiverOptions {
  // HTTPS with this certificate and key (PEM files, e.g. TestPki's server pair); plain HTTP when
  // empty.
  std::string cert_file;
  std::string key_file;
  // HTTPS only: require a client certificate that verifies against this CA (mTLS).
  std::string client_ca_file;
  // Largest request body read (a larger one is answered 413).
  size_t body_limit_bytes = 256 * 1024 * 1024;
};

// How the receiver answers, from the next request on.
struct WebhookBehavior {
  enum class Kind {
    kAnswer,  // answer `status` with `retry_after` and `body`
    kHang,    // read the request, never answer (the connection stays open)
    kReset,   // read the request, then reset the connection (RST, no answer)
  };
  Kind kind = Kind::kAnswer;
  int status = 200;
  std::string retry_after;  // the Retry-After header's value when not empty
  std::string body;
  // kAnswer: close the connection right after the answer although it said keep-alive (a
  // receiver dropping an idle connection, which the client sees only when it reuses it).
  bool close_after = false;
  // For this many requests (0: no limit) or this long from SetBehavior (infinite: no limit),
  // whichever ends first; then the receiver answers 200 again.
  int requests = 0;
  absl::Duration duration = absl::InfiniteDuration();

  static WebhookBehavior Ok() { return {}; }
  static WebhookBehavior Status(int status, std::string retry_after = "", std::string body = "") {
    WebhookBehavior b;
    b.status = status;
    b.retry_after = std::move(retry_after);
    b.body = std::move(body);
    return b;
  }
  static WebhookBehavior Hang() {
    WebhookBehavior b;
    b.kind = Kind::kHang;
    return b;
  }
  static WebhookBehavior Reset() {
    WebhookBehavior b;
    b.kind = Kind::kReset;
    return b;
  }
  WebhookBehavior ForRequests(int n) && {
    requests = n;
    return std::move(*this);
  }
  WebhookBehavior For(absl::Duration d) && {
    duration = d;
    return std::move(*this);
  }
};

// One request as read.
struct ReceivedRequest {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  // The parsed body's "items" (empty when it is not {"items":[...]}).
  std::vector<nlohmann::json> items;
  bool body_parsed = false;
  // The status answered; 0 when the receiver hung or reset instead.
  int answered = 0;
  // Which TCP connection it came on (1, 2, ... in accept order).
  uint64_t connection = 0;
  // The client certificate's subject CN under mTLS, else "".
  std::string client_cn;
  // When the whole request had been read (the receiver's clock: absl::Now()).
  absl::Time received;

  // The first header named `name` (case-insensitive), or "".
  std::string Header(absl::string_view name) const;
};

// Every method may be called from any thread while the receiver runs.
class WebhookReceiver {
 public:
  static absl::StatusOr<std::unique_ptr<WebhookReceiver>> Start(
      WebhookReceiverOptions options = {});
  // Stops the server and closes every connection (hung ones included).
  ~WebhookReceiver();

  uint16_t port() const;
  // "http://127.0.0.1:<port><path>" (https:// when serving TLS).
  std::string url(absl::string_view path = "/audit") const;

  void SetBehavior(WebhookBehavior behavior);

  // Every request read, in order.
  std::vector<ReceivedRequest> Requests() const;
  size_t RequestCount() const;
  // The items of the requests answered 2xx, in order (a batch delivered twice appears twice).
  std::vector<nlohmann::json> Items() const;
  size_t ItemCount() const;
  // The (chainId, sequence) of every record item answered 2xx, without repeats.
  std::set<std::pair<std::string, int64_t>> RecordKeys() const;
  // Waits until at least `n` items were answered 2xx (true) or `timeout` passes (false).
  bool WaitForItems(size_t n, absl::Duration timeout) const;
  // Waits until at least `n` requests were read.
  bool WaitForRequests(size_t n, absl::Duration timeout) const;
  // Forgets the requests and items seen so far.
  void Clear();
  // TCP connections accepted so far.
  uint64_t connections() const;

  struct Impl;

 private:
  explicit WebhookReceiver(std::shared_ptr<Impl> impl) : impl_(std::move(impl)) {}
  std::shared_ptr<Impl> impl_;
};

}  // namespace podgate::testing
