// The webhook export sink against a real loopback receiver (tests/support/webhook_receiver):
// the request it sends, every mapping of an answer (or of no answer) to a DeliveryResult, TLS
// and mTLS with the test PKI, bearer token rotation, Cancel, and each check of the factory.
#include "audit/export/webhook_sink.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "support/test_pki.h"
#include "support/webhook_receiver.h"

namespace podgate::audit::exporting {
namespace {

using podgate::audit::v1::SinkConfig;
using podgate::testing::WebhookBehavior;
using podgate::testing::WebhookReceiver;
using podgate::testing::WebhookReceiverOptions;

constexpr char kToken[] = "s3cret-token-value";

ExportItem Record(const std::string& chain, int64_t sequence) {
  ExportItem item;
  item.kind = ExportItem::Kind::kRecord;
  item.record.set_chain_id(chain);
  item.record.set_sequence(sequence);
  item.record.mutable_event()->set_session_id("session-1");
  return item;
}

ExportItem Checkpoint(const std::string& chain, int64_t sequence) {
  ExportItem item;
  item.kind = ExportItem::Kind::kCheckpoint;
  item.checkpoint.set_chain_id(chain);
  item.checkpoint.set_sequence(sequence);
  item.checkpoint.set_key_id("key-1");
  return item;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << content;
}

class WebhookSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("webhook-sink");
    ASSERT_FALSE(dir_.empty());
    auto pki = podgate::testing::MakeTestPki(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    token_file_ = dir_ + "/token";
    WriteFile(token_file_, std::string(kToken) + "\n");
    batch_ = {Record("chain-a", 1), Record("chain-a", 2), Checkpoint("chain-a", 2)};
  }

  std::unique_ptr<WebhookReceiver> StartReceiver(WebhookReceiverOptions options = {}) {
    auto receiver = WebhookReceiver::Start(std::move(options));
    EXPECT_TRUE(receiver.ok()) << receiver.status();
    return receiver.ok() ? *std::move(receiver) : nullptr;
  }

  WebhookReceiverOptions TlsReceiverOptions(bool require_client_cert = false) {
    WebhookReceiverOptions o;
    o.cert_file = pki_.server_cert;
    o.key_file = pki_.server_key;
    if (require_client_cert) {
      o.client_ca_file = pki_.ca_cert;
    }
    return o;
  }

  SinkConfig Config(const std::string& url, const std::string& timeout = "5s") {
    SinkConfig config;
    config.set_name("siem");
    config.mutable_webhook()->set_url(url);
    config.mutable_webhook()->set_bearer_token_file(token_file_);
    config.mutable_webhook()->set_timeout(timeout);
    return config;
  }

  std::unique_ptr<Sink> MakeSink(const SinkConfig& config) {
    auto sink = MakeWebhookSink(config);
    EXPECT_TRUE(sink.ok()) << sink.status();
    return sink.ok() ? *std::move(sink) : nullptr;
  }

  // The message of a factory error for `config`.
  std::string FactoryError(const SinkConfig& config) {
    auto sink = MakeWebhookSink(config);
    EXPECT_FALSE(sink.ok());
    if (sink.ok()) {
      return "";
    }
    EXPECT_EQ(sink.status().code(), absl::StatusCode::kInvalidArgument) << sink.status();
    return std::string(sink.status().message());
  }

  std::string dir_;
  podgate::testing::TestPki pki_;
  std::string token_file_;
  std::vector<ExportItem> batch_;
};

// --- pure parts ---

TEST(RetryAfterTest, DeltaSeconds) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("7", now), absl::Seconds(7));
  EXPECT_EQ(ParseRetryAfter(" 120 ", now), absl::Seconds(120));
  EXPECT_EQ(ParseRetryAfter("0", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("3600", now), kMaxRetryAfter);
  EXPECT_EQ(ParseRetryAfter("99999999999999999999", now), kMaxRetryAfter);
}

TEST(RetryAfterTest, HttpDateInAllThreeForms) {
  // 1700000000 is Tue, 14 Nov 2023 22:13:20 GMT.
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:14:05 GMT", now), absl::Seconds(45));
  EXPECT_EQ(ParseRetryAfter("Tuesday, 14-Nov-23 22:14:05 GMT", now), absl::Seconds(45));
  EXPECT_EQ(ParseRetryAfter("Tue Nov 14 22:14:05 2023", now), absl::Seconds(45));
  EXPECT_EQ(ParseRetryAfter("Wed, 15 Nov 2023 22:13:20 GMT", now), kMaxRetryAfter);
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 22:00:00 GMT", now), absl::ZeroDuration());
}

TEST(RetryAfterTest, EmptyOrGarbageIsZero) {
  const absl::Time now = absl::FromUnixSeconds(1700000000);
  EXPECT_EQ(ParseRetryAfter("", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("soon", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("-5", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("1.5", now), absl::ZeroDuration());
  EXPECT_EQ(ParseRetryAfter("Tue, 14 Nov 2023 25:14:05 GMT", now), absl::ZeroDuration());
}

TEST(BatchTest, IdNamesFirstAndLastItem) {
  std::vector<ExportItem> batch = {Record("chain a", 5), Record("chain a", 9),
                                   Checkpoint("chain a", 9)};
  EXPECT_EQ(BatchId(batch), "chain%20a/5..chain%20a/9/checkpoint");
  EXPECT_EQ(BatchId(absl::MakeSpan(batch).subspan(0, 1)), "chain%20a/5..chain%20a/5");
}

TEST(BatchTest, JsonHoldsEveryItemInOrder) {
  std::vector<ExportItem> batch = {Record("c", 1), Checkpoint("c", 1)};
  nlohmann::json doc = nlohmann::json::parse(BatchJson(batch));
  ASSERT_TRUE(doc["items"].is_array());
  ASSERT_EQ(doc["items"].size(), 2u);
  EXPECT_EQ(doc["items"][0]["type"], "record");
  EXPECT_EQ(doc["items"][0]["chainId"], "c");
  EXPECT_EQ(doc["items"][1]["type"], "checkpoint");
  EXPECT_EQ(doc["items"][1]["keyId"], "key-1");
}

// --- deliveries ---

TEST_F(WebhookSinkTest, PostsTheBatchWithItsHeaders) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url("/ingest?tenant=a")));
  DeliveryResult result = sink->Deliver(batch_);
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(result.retry_after, absl::ZeroDuration());

  auto requests = receiver->Requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& r = requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.target, "/ingest?tenant=a");
  EXPECT_EQ(r.Header("Content-Type"), "application/json");
  EXPECT_EQ(r.Header("Authorization"), std::string("Bearer ") + kToken);
  EXPECT_TRUE(absl::StartsWith(r.Header("User-Agent"), "podgate-audit/")) << r.Header("User-Agent");
  EXPECT_EQ(r.Header("Podgate-Batch-Id"), "chain-a/1..chain-a/2/checkpoint");
  ASSERT_TRUE(r.body_parsed);
  ASSERT_EQ(r.items.size(), 3u);
  EXPECT_EQ(r.items[0]["type"], "record");
  EXPECT_EQ(r.items[0]["sequence"], "1");
  EXPECT_EQ(r.items[2]["type"], "checkpoint");
  EXPECT_EQ(receiver->ItemCount(), 3u);
  EXPECT_EQ(receiver->RecordKeys(),
            (std::set<std::pair<std::string, int64_t>>{{"chain-a", 1}, {"chain-a", 2}}));
}

TEST_F(WebhookSinkTest, NoTokenFileSendsNoAuthorization) {
  auto receiver = StartReceiver();
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->clear_bearer_token_file();
  auto sink = MakeSink(config);
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  EXPECT_EQ(receiver->Requests().at(0).Header("Authorization"), "");
}

TEST_F(WebhookSinkTest, ReusesTheConnection) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  }
  EXPECT_EQ(receiver->RequestCount(), 3u);
  EXPECT_EQ(receiver->connections(), 1u);
}

TEST_F(WebhookSinkTest, ServerErrorIsUnavailableNamingSinkStatusAndBody) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(500, "", "database on fire"));
  auto sink = MakeSink(Config(receiver->url("/ingest?key=hidden")));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable) << result.status;
  const std::string message(result.status.message());
  EXPECT_TRUE(absl::StrContains(message, "sink siem")) << message;
  EXPECT_TRUE(absl::StrContains(message, "/ingest")) << message;
  EXPECT_TRUE(absl::StrContains(message, "HTTP 500")) << message;
  EXPECT_TRUE(absl::StrContains(message, "database on fire")) << message;
  EXPECT_FALSE(absl::StrContains(message, "hidden")) << message;
  EXPECT_FALSE(absl::StrContains(message, kToken)) << message;
  EXPECT_EQ(result.retry_after, absl::ZeroDuration());
  EXPECT_EQ(receiver->ItemCount(), 0u);  // answered 500: not delivered
}

TEST_F(WebhookSinkTest, RetryableStatusesAreUnavailable) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  for (int status : {408, 425, 429, 502, 503, 504, 599}) {
    receiver->SetBehavior(WebhookBehavior::Status(status));
    DeliveryResult result = sink->Deliver(batch_);
    EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable)
        << status << ": " << result.status;
    EXPECT_TRUE(absl::StrContains(result.status.message(), absl::StrCat("HTTP ", status)))
        << result.status;
    EXPECT_FALSE(absl::StrContains(result.status.message(), "unknown")) << result.status;
  }
}

TEST_F(WebhookSinkTest, RetryAfterDeltaSeconds) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(429, "7"));
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(result.retry_after, absl::Seconds(7));
}

TEST_F(WebhookSinkTest, RetryAfterHttpDateIsCapped) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(503, "Fri, 31 Dec 2100 23:59:59 GMT"));
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(result.retry_after, kMaxRetryAfter);
}

TEST_F(WebhookSinkTest, RetryAfterHttpDateFromNow) {
  auto receiver = StartReceiver();
  const std::string when = absl::FormatTime("%a, %d %b %Y %H:%M:%S GMT",
                                            absl::Now() + absl::Seconds(120), absl::UTCTimeZone());
  receiver->SetBehavior(WebhookBehavior::Status(503, when));
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable);
  // Whole seconds on the wire, and the clock moves on while the answer travels.
  EXPECT_GT(result.retry_after, absl::Seconds(100));
  EXPECT_LE(result.retry_after, absl::Seconds(120));
}

TEST_F(WebhookSinkTest, ClientErrorIsFailedPreconditionNamingStatusAndBody) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  for (int status : {400, 401, 403, 404, 413, 422}) {
    receiver->SetBehavior(WebhookBehavior::Status(status, "9", "bad\r\nthing"));
    DeliveryResult result = sink->Deliver(batch_);
    EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition)
        << status << ": " << result.status;
    EXPECT_TRUE(absl::StrContains(result.status.message(), absl::StrCat("HTTP ", status)));
    EXPECT_TRUE(absl::StrContains(result.status.message(), "bad??thing")) << result.status;
    EXPECT_EQ(result.retry_after, absl::ZeroDuration());  // only for retryable answers
  }
}

TEST_F(WebhookSinkTest, RedirectIsNotFollowed) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(302));
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(result.status.message(), "redirects are not followed"));
  EXPECT_EQ(receiver->RequestCount(), 1u);
}

TEST_F(WebhookSinkTest, ErrorsForSomeRequestsThenDelivered) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(500).ForRequests(2));
  auto sink = MakeSink(Config(receiver->url()));
  EXPECT_EQ(sink->Deliver(batch_).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(sink->Deliver(batch_).status.code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(sink->Deliver(batch_).status.ok());
  auto requests = receiver->Requests();
  ASSERT_EQ(requests.size(), 3u);
  // The same batch carries the same idempotency key each time.
  EXPECT_EQ(requests[0].Header("Podgate-Batch-Id"), requests[2].Header("Podgate-Batch-Id"));
  EXPECT_EQ(receiver->ItemCount(), 3u);
}

TEST_F(WebhookSinkTest, ErrorsForSomeTimeThenDelivered) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Status(503, "1").For(absl::Milliseconds(300)));
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult first = sink->Deliver(batch_);
  EXPECT_EQ(first.status.code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(first.retry_after, absl::Seconds(1));
  absl::SleepFor(absl::Milliseconds(600));  // past the receiver's outage
  EXPECT_TRUE(sink->Deliver(batch_).status.ok());
  EXPECT_EQ(receiver->ItemCount(), 3u);
}

TEST_F(WebhookSinkTest, ResetIsUnavailable) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Reset());
  auto sink = MakeSink(Config(receiver->url()));
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "sink siem")) << result.status;
  // The sink recovers on a new connection once the receiver answers again.
  receiver->SetBehavior(WebhookBehavior::Ok());
  EXPECT_TRUE(sink->Deliver(batch_).status.ok());
}

TEST_F(WebhookSinkTest, ReceiverClosingAnIdleConnectionIsNotAnError) {
  auto receiver = StartReceiver();
  WebhookBehavior drop = WebhookBehavior::Ok().ForRequests(1);
  drop.close_after = true;  // answers keep-alive, then drops the connection anyway
  receiver->SetBehavior(std::move(drop));
  auto sink = MakeSink(Config(receiver->url()));
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  // The kept connection is dead; the sink notices and sends on a new one.
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(receiver->RequestCount(), 2u);
  EXPECT_EQ(receiver->connections(), 2u);
}

TEST_F(WebhookSinkTest, ConnectionRefusedIsUnavailable) {
  uint16_t port = 0;
  {
    auto receiver = StartReceiver();
    port = receiver->port();
  }
  // Refused at start is fine: the receiver may come up later.
  auto sink = MakeSink(Config(absl::StrCat("http://127.0.0.1:", port, "/audit")));
  ASSERT_NE(sink, nullptr);
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "connect")) << result.status;
}

TEST_F(WebhookSinkTest, HangIsDeadlineExceededAfterTheTimeout) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Hang());
  auto sink = MakeSink(Config(receiver->url(), "0.3s"));
  const absl::Time start = absl::Now();
  DeliveryResult result = sink->Deliver(batch_);
  const absl::Duration took = absl::Now() - start;
  EXPECT_EQ(result.status.code(), absl::StatusCode::kDeadlineExceeded) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "sink siem")) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "timed out (timeout 300ms)"))
      << result.status;
  EXPECT_GE(took, absl::Milliseconds(300));
  EXPECT_LT(took, absl::Seconds(10));  // the timeout bounds it, far below the 10s default
  EXPECT_EQ(receiver->RequestCount(), 1u);
}

TEST_F(WebhookSinkTest, CancelAbortsAHungDelivery) {
  auto receiver = StartReceiver();
  receiver->SetBehavior(WebhookBehavior::Hang());
  auto sink = MakeSink(Config(receiver->url(), "120s"));
  DeliveryResult result;
  absl::Time finished;
  std::thread deliver([&] {
    result = sink->Deliver(batch_);
    finished = absl::Now();
  });
  ASSERT_TRUE(receiver->WaitForRequests(1, absl::Seconds(30)));
  const absl::Time cancelled = absl::Now();
  sink->Cancel();
  deliver.join();
  EXPECT_EQ(result.status.code(), absl::StatusCode::kCancelled) << result.status;
  EXPECT_LT(finished - cancelled, absl::Seconds(30));  // not the 120s timeout
  // Cancel is final.
  receiver->SetBehavior(WebhookBehavior::Ok());
  EXPECT_EQ(sink->Deliver(batch_).status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(receiver->RequestCount(), 1u);
}

TEST_F(WebhookSinkTest, CancelBeforeDeliverRefusesIt) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  sink->Cancel();
  EXPECT_EQ(sink->Deliver(batch_).status.code(), absl::StatusCode::kCancelled);
  EXPECT_EQ(receiver->RequestCount(), 0u);
}

// --- bearer token ---

TEST_F(WebhookSinkTest, RotatedTokenIsSent) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  // As a Secret rotates: a new file swapped in by rename.
  WriteFile(dir_ + "/token.new", "rotated-token\n");
  std::filesystem::rename(dir_ + "/token.new", token_file_);
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  // And a file rewritten in place (a new size and mtime).
  WriteFile(token_file_, "third-token-is-longer");
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  auto requests = receiver->Requests();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_EQ(requests[0].Header("Authorization"), std::string("Bearer ") + kToken);
  EXPECT_EQ(requests[1].Header("Authorization"), "Bearer rotated-token");
  EXPECT_EQ(requests[2].Header("Authorization"), "Bearer third-token-is-longer");
}

TEST_F(WebhookSinkTest, TokenFileGoneFailsTheDeliveryWithoutSending) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  std::filesystem::remove(token_file_);
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), token_file_)) << result.status;
  EXPECT_EQ(receiver->RequestCount(), 0u);
  WriteFile(token_file_, "back-again\n");
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  EXPECT_EQ(receiver->Requests().at(0).Header("Authorization"), "Bearer back-again");
}

TEST_F(WebhookSinkTest, EmptiedTokenFileFailsTheDelivery) {
  auto receiver = StartReceiver();
  auto sink = MakeSink(Config(receiver->url()));
  WriteFile(token_file_, "\n");
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "empty")) << result.status;
  EXPECT_EQ(receiver->RequestCount(), 0u);
}

// --- TLS ---

TEST_F(WebhookSinkTest, HttpsVerifiedAgainstTheCa) {
  auto receiver = StartReceiver(TlsReceiverOptions());
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  auto sink = MakeSink(config);
  DeliveryResult result = sink->Deliver(batch_);
  ASSERT_TRUE(result.status.ok()) << result.status;
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  EXPECT_EQ(receiver->ItemCount(), 6u);
  EXPECT_EQ(receiver->connections(), 1u);
}

TEST_F(WebhookSinkTest, HttpsWithServerName) {
  auto receiver = StartReceiver(TlsReceiverOptions());
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  config.mutable_webhook()->mutable_tls()->set_server_name("localhost");
  auto sink = MakeSink(config);
  EXPECT_TRUE(sink->Deliver(batch_).status.ok());

  config.mutable_webhook()->mutable_tls()->set_server_name("siem.example.com");
  auto wrong = MakeSink(config);
  DeliveryResult result = wrong->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "siem.example.com")) << result.status;
}

TEST_F(WebhookSinkTest, HttpsReceiverClosingAnIdleConnectionIsNotAnError) {
  auto receiver = StartReceiver(TlsReceiverOptions());
  WebhookBehavior drop = WebhookBehavior::Ok().ForRequests(1);
  drop.close_after = true;
  receiver->SetBehavior(std::move(drop));
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  auto sink = MakeSink(config);
  ASSERT_TRUE(sink->Deliver(batch_).status.ok());
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(receiver->RequestCount(), 2u);
  EXPECT_EQ(receiver->connections(), 2u);
}

TEST_F(WebhookSinkTest, WrongCaIsAClearError) {
  auto receiver = StartReceiver(TlsReceiverOptions());
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.other_ca_cert);
  auto sink = MakeSink(config);
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_EQ(result.status.code(), absl::StatusCode::kFailedPrecondition) << result.status;
  const std::string message(result.status.message());
  EXPECT_TRUE(absl::StrContains(message, "sink siem")) << message;
  EXPECT_TRUE(absl::StrContains(message, "certificate does not verify")) << message;
  EXPECT_TRUE(absl::StrContains(message, "issuer")) << message;  // OpenSSL's reason
  EXPECT_EQ(receiver->RequestCount(), 0u);
}

TEST_F(WebhookSinkTest, SystemRootsDoNotTrustTheTestCa) {
  auto receiver = StartReceiver(TlsReceiverOptions());
  auto sink = MakeSink(Config(receiver->url()));
  EXPECT_EQ(sink->Deliver(batch_).status.code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(WebhookSinkTest, MutualTls) {
  auto receiver = StartReceiver(TlsReceiverOptions(/*require_client_cert=*/true));
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  config.mutable_webhook()->mutable_tls()->set_cert_file(pki_.client_cert);
  config.mutable_webhook()->mutable_tls()->set_key_file(pki_.client_key);
  auto sink = MakeSink(config);
  DeliveryResult result = sink->Deliver(batch_);
  ASSERT_TRUE(result.status.ok()) << result.status;
  EXPECT_EQ(receiver->Requests().at(0).client_cn, "podgate-client");
}

TEST_F(WebhookSinkTest, MutualTlsWithoutACertificateIsRefused) {
  auto receiver = StartReceiver(TlsReceiverOptions(/*require_client_cert=*/true));
  SinkConfig config = Config(receiver->url());
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  auto sink = MakeSink(config);
  DeliveryResult result = sink->Deliver(batch_);
  EXPECT_FALSE(result.status.ok());
  EXPECT_EQ(result.status.code(), absl::StatusCode::kUnavailable) << result.status;
  EXPECT_TRUE(absl::StrContains(result.status.message(), "sink siem")) << result.status;
  EXPECT_EQ(receiver->RequestCount(), 0u);
}

// --- the factory's checks ---

TEST_F(WebhookSinkTest, FactoryRefusesAnotherKind) {
  SinkConfig config;
  config.set_name("siem");
  config.mutable_file()->set_path("/tmp/x");
  EXPECT_EQ(FactoryError(config), "sink siem: not a webhook sink");
}

TEST_F(WebhookSinkTest, FactoryChecksTheUrl) {
  EXPECT_EQ(FactoryError(Config("")), "sink siem: webhook url: empty (an http:// or https:// URL)");
  std::string ftp = FactoryError(Config("ftp://example.com/x"));
  EXPECT_TRUE(absl::StartsWith(ftp, "sink siem: webhook url: ")) << ftp;
  std::string junk = FactoryError(Config("http://exa mple.com/"));
  EXPECT_TRUE(absl::StartsWith(junk, "sink siem: webhook url: ")) << junk;
  std::string user = FactoryError(Config("https://user:pw@example.com/"));
  EXPECT_TRUE(absl::StartsWith(user, "sink siem: webhook url: ")) << user;
}

TEST_F(WebhookSinkTest, FactoryRefusesAnUnresolvableHost) {
  std::string message = FactoryError(Config("https://no-such-host.invalid/audit"));
  EXPECT_TRUE(absl::StartsWith(message,
                               "sink siem: webhook url: host \"no-such-host.invalid\" "
                               "does not resolve"))
      << message;
}

TEST_F(WebhookSinkTest, FactoryRefusesTlsSettingsForHttp) {
  SinkConfig config = Config("http://127.0.0.1:1/audit");
  config.mutable_webhook()->mutable_tls()->set_ca_file(pki_.ca_cert);
  EXPECT_TRUE(absl::StrContains(FactoryError(config), "webhook tls: set for an http:// URL"));
  config.mutable_webhook()->mutable_tls()->Clear();
  config.mutable_webhook()->mutable_tls()->set_server_name("localhost");
  EXPECT_TRUE(absl::StrContains(FactoryError(config), "webhook tls: set for an http:// URL"));
}

TEST_F(WebhookSinkTest, FactoryNeedsCertificateAndKeyTogether) {
  SinkConfig config = Config("https://127.0.0.1:1/audit");
  config.mutable_webhook()->mutable_tls()->set_cert_file(pki_.client_cert);
  EXPECT_EQ(FactoryError(config), "sink siem: webhook tls: cert_file without key_file");
  config.mutable_webhook()->mutable_tls()->Clear();
  config.mutable_webhook()->mutable_tls()->set_key_file(pki_.client_key);
  EXPECT_EQ(FactoryError(config), "sink siem: webhook tls: key_file without cert_file");
}

TEST_F(WebhookSinkTest, FactoryLoadsEveryPemFile) {
  const std::string junk = dir_ + "/junk.pem";
  WriteFile(junk, "not a pem file\n");
  const std::string damaged = dir_ + "/damaged.pem";
  {
    std::ifstream in(pki_.ca_cert);
    std::string pem((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    pem[pem.size() / 2] = '!';
    WriteFile(damaged, pem);
  }
  const std::string missing = dir_ + "/missing.pem";

  SinkConfig config = Config("https://127.0.0.1:1/audit");
  auto* tls = config.mutable_webhook()->mutable_tls();
  tls->set_ca_file(missing);
  std::string m = FactoryError(config);
  EXPECT_TRUE(absl::StartsWith(m, "sink siem: webhook tls ca_file: " + missing)) << m;
  EXPECT_TRUE(absl::StrContains(m, "No such file")) << m;
  tls->set_ca_file(junk);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "webhook tls ca_file: " + junk + " holds no PEM certificate"))
      << m;
  tls->set_ca_file(damaged);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "webhook tls ca_file: " + damaged)) << m;

  tls->set_ca_file(pki_.ca_cert);
  tls->set_cert_file(junk);
  tls->set_key_file(pki_.client_key);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "webhook tls cert_file: " + junk + " holds no PEM certificate"))
      << m;
  tls->set_cert_file(pki_.client_cert);
  tls->set_key_file(junk);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "webhook tls key_file: " + junk + " holds no PEM private key"))
      << m;
  tls->set_key_file(missing);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "webhook tls key_file: " + missing)) << m;
  tls->set_key_file(pki_.other_key);
  m = FactoryError(config);
  EXPECT_TRUE(absl::StrContains(m, "does not match the certificate in " + pki_.client_cert)) << m;

  tls->set_key_file(pki_.client_key);
  EXPECT_NE(MakeSink(config), nullptr);
}

TEST_F(WebhookSinkTest, FactoryChecksTheServerName) {
  SinkConfig config = Config("https://127.0.0.1:1/audit");
  config.mutable_webhook()->mutable_tls()->set_server_name("bad name/");
  EXPECT_TRUE(absl::StrContains(FactoryError(config),
                                "webhook tls server_name: \"bad name/\" is not a host name"));
  config.mutable_webhook()->mutable_tls()->set_server_name("::1");
  EXPECT_NE(MakeSink(config), nullptr);
}

TEST_F(WebhookSinkTest, FactoryChecksTheTokenFile) {
  SinkConfig config = Config("http://127.0.0.1:1/audit");
  config.mutable_webhook()->set_bearer_token_file(dir_ + "/nope");
  std::string m = FactoryError(config);
  EXPECT_TRUE(absl::StartsWith(m, "sink siem: webhook bearer_token_file: " + dir_ + "/nope: "))
      << m;
  WriteFile(token_file_, " \n");
  config.mutable_webhook()->set_bearer_token_file(token_file_);
  EXPECT_EQ(FactoryError(config),
            "sink siem: webhook bearer_token_file: " + token_file_ + ": empty");
  WriteFile(token_file_, "two words\n");
  EXPECT_TRUE(absl::StrContains(FactoryError(config), "a character that a bearer token cannot"));
  WriteFile(token_file_, "a\r\nInjected: yes");
  EXPECT_TRUE(absl::StrContains(FactoryError(config), "a character that a bearer token cannot"));
}

TEST_F(WebhookSinkTest, FactoryChecksTheTimeout) {
  std::string m = FactoryError(Config("http://127.0.0.1:1/audit", "ten seconds"));
  EXPECT_EQ(m, "sink siem: webhook timeout: \"ten seconds\" is not a duration (e.g. \"10s\")");
  m = FactoryError(Config("http://127.0.0.1:1/audit", "1ms"));
  EXPECT_TRUE(absl::StrContains(m, "webhook timeout: 1ms is out of range (10ms to 5m)")) << m;
  m = FactoryError(Config("http://127.0.0.1:1/audit", "1h"));
  EXPECT_TRUE(absl::StrContains(m, "webhook timeout: 1h is out of range")) << m;
  m = FactoryError(Config("http://127.0.0.1:1/audit", "-1s"));
  EXPECT_TRUE(absl::StrContains(m, "out of range")) << m;
  SinkConfig defaulted = Config("http://127.0.0.1:1/audit", "");
  EXPECT_NE(MakeSink(defaulted), nullptr);
}

}  // namespace
}  // namespace podgate::audit::exporting
