// The syslog sink against a real rsyslogd (tests/support/rsyslog.h): plain TCP, TLS and mutual
// TLS delivery, the framing, TLS failures, a receiver that is down, restarted between and during
// batches (everything arrives after retries, duplicates allowed), Cancel and the timeout of a
// blocked connect, and a throughput figure.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <map>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "audit/export/sink.h"
#include "audit/export/syslog_format.h"
#include "nlohmann/json.hpp"
#include "support/loopback.h"
#include "support/rsyslog.h"
#include "support/test_pki.h"

namespace podgate::audit::exporting {
namespace {

using ::podgate::testing::RsyslogServer;
using ::podgate::testing::SyslogMessage;
using ::testing::HasSubstr;

constexpr char kNastyLine[] = "printf 'a]b\"c\\\\d'\necho \"zwei\" ]] ü € 日本\n";

ExportItem Item(int64_t sequence) {
  ExportItem item;
  auto& r = item.record;
  r.set_chain_id("chain-1");
  r.set_sequence(sequence);
  r.mutable_stored_time()->set_seconds(1764559277 + sequence);
  r.mutable_stored_time()->set_nanos(1000 * static_cast<int32_t>(sequence % 1000));
  auto* e = r.mutable_event();
  e->set_id(absl::StrCat("event-", sequence));
  e->set_kind(podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
  e->set_session_id("session-1");
  e->set_command_id(absl::StrCat("command-", sequence));
  e->mutable_principal()->set_user("alice");
  e->mutable_target()->set_cluster("prod");
  e->mutable_target()->set_namespace_("shop");
  e->mutable_target()->set_pod("web-0");
  e->mutable_decision()->set_verdict(sequence % 5 == 0 ? podgate::common::v1::VERDICT_DENY
                                                       : podgate::common::v1::VERDICT_ALLOW);
  e->mutable_command_request()->set_line(absl::StrCat("ls -l /srv/data/", sequence));
  return item;
}

std::vector<ExportItem> Batch(int64_t first, int count) {
  std::vector<ExportItem> batch;
  for (int64_t s = first; s < first + count; ++s) {
    batch.push_back(Item(s));
  }
  return batch;
}

// The sequences received, in arrival order.
std::vector<int64_t> Sequences(const std::vector<SyslogMessage>& messages) {
  std::vector<int64_t> out;
  for (const SyslogMessage& m : messages) {
    out.push_back(std::stoll(m.Param(kSyslogSdId, "sequence")));
  }
  return out;
}

class SyslogSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<podgate::testing::TestPki> pki =
        podgate::testing::MakeTestPki(podgate::testing::MakeTempDir("syslog-pki"));
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
    absl::StatusOr<std::unique_ptr<RsyslogServer>> server = RsyslogServer::Start(pki_);
    ASSERT_TRUE(server.ok()) << server.status();
    rsyslog_ = *std::move(server);
  }

  podgate::audit::v1::SinkConfig Config(const std::string& transport, int port) const {
    podgate::audit::v1::SinkConfig c;
    c.set_name("siem");
    c.mutable_syslog()->set_address(absl::StrCat("127.0.0.1:", port));
    c.mutable_syslog()->set_transport(transport);
    c.mutable_syslog()->set_timeout("5s");
    if (transport == "tls") {
      c.mutable_syslog()->mutable_tls()->set_ca_file(pki_.ca_cert);
    }
    return c;
  }

  std::unique_ptr<Sink> MakeSink(const podgate::audit::v1::SinkConfig& c) {
    absl::StatusOr<std::unique_ptr<Sink>> sink = MakeSyslogSink(c);
    EXPECT_TRUE(sink.ok()) << sink.status();
    return sink.ok() ? *std::move(sink) : nullptr;
  }

  // As the exporter does: the same batch again until it is delivered.
  void DeliverWithRetries(Sink& sink, const std::vector<ExportItem>& batch) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    while (true) {
      absl::Status s = sink.Deliver(batch).status;
      if (s.ok()) {
        return;
      }
      ASSERT_LT(absl::Now(), deadline) << "still failing: " << s;
      absl::SleepFor(absl::Milliseconds(100));
    }
  }

  // Every record of the batch arrived exactly once, in order, ids and body intact.
  void ExpectDelivered(const std::vector<ExportItem>& batch) {
    absl::StatusOr<std::vector<SyslogMessage>> got =
        rsyslog_->WaitForMessages(batch.size(), absl::Seconds(10));
    ASSERT_TRUE(got.ok()) << got.status();
    ASSERT_EQ(got->size(), batch.size());
    for (size_t i = 0; i < batch.size(); ++i) {
      const SyslogMessage& m = (*got)[i];
      const auto& r = batch[i].record;
      EXPECT_EQ(m.app_name, "podgate-audit");
      EXPECT_EQ(m.procid, absl::StrCat(getpid()));
      EXPECT_EQ(m.msgid, "command_request");
      EXPECT_EQ(m.timestamp, SyslogTimestamp(r.stored_time()));
      EXPECT_EQ(
          m.pri,
          13 * 8 + (r.event().decision().verdict() == podgate::common::v1::VERDICT_DENY ? 4 : 5));
      EXPECT_EQ(m.Param(kSyslogSdId, "chainId"), r.chain_id());
      EXPECT_EQ(m.Param(kSyslogSdId, "sequence"), absl::StrCat(r.sequence()));
      EXPECT_EQ(m.Param(kSyslogSdId, "eventId"), r.event().id());
      EXPECT_EQ(m.Param(kSyslogSdId, "sessionId"), r.event().session_id());
      EXPECT_EQ(m.Param(kSyslogSdId, "commandId"), r.event().command_id());
      EXPECT_EQ(m.Param(kSyslogSdId, "user"), r.event().principal().user());
      EXPECT_EQ(m.Param(kSyslogSdId, "cluster"), "prod");
      EXPECT_EQ(m.Param(kSyslogSdId, "namespace"), "shop");
      EXPECT_EQ(m.Param(kSyslogSdId, "pod"), "web-0");
      EXPECT_TRUE(m.bom);
      EXPECT_EQ(m.msg, ItemJson(batch[i])) << "message " << i;
    }
  }

  // Every sequence of [first, last] arrived at least once. A replay window re-sends messages
  // the receiver already has, so a count of messages can be reached while some sequence is
  // still on its way: this waits for the sequences themselves.
  void ExpectAllArrived(int64_t first, int64_t last) {
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    std::vector<int64_t> missing;
    while (true) {
      absl::StatusOr<std::vector<SyslogMessage>> got = rsyslog_->Messages();
      ASSERT_TRUE(got.ok()) << got.status();
      std::set<int64_t> seen;
      for (int64_t s : Sequences(*got)) {
        seen.insert(s);
      }
      missing.clear();
      for (int64_t s = first; s <= last; ++s) {
        if (!seen.count(s)) {
          missing.push_back(s);
        }
      }
      if (missing.empty() || absl::Now() > deadline) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    }
    ASSERT_TRUE(missing.empty()) << missing.size() << " sequences are missing, the first "
                                 << missing.front() << "; " << rsyslog_->CountMessages()
                                 << " messages received; rsyslogd's log:\n"
                                 << absl::StrJoin(rsyslog_->Log(), "\n");
  }

  // Whether a delivery to `port` is blocked: the connection's receiving end holds unread bytes,
  // the sending end has bytes the receiver has not acknowledged, and neither changes for
  // 200 ms (up to 30 s).
  static bool WaitUntilBlocked(int port) {
    const absl::Time deadline = absl::Now() + absl::Seconds(30);
    std::pair<uint64_t, uint64_t> last{0, 0};
    int steady = 0;
    while (absl::Now() < deadline) {
      std::pair<uint64_t, uint64_t> now{0, 0};
      for (const podgate::testing::LoopbackTcpSocket& s : podgate::testing::LoopbackTcpSockets()) {
        if (s.state != podgate::testing::kTcpEstablished) {
          continue;
        }
        if (s.local_port == port) {
          now.first += s.rx_queue;
        } else if (s.remote_port == port) {
          now.second += s.tx_queue;
        }
      }
      steady = now.first > 0 && now.second > 0 && now == last ? steady + 1 : 0;
      if (steady >= 10) {
        return true;
      }
      last = now;
      absl::SleepFor(absl::Milliseconds(20));
    }
    return false;
  }

  // A batch whose record 2 has a command line with newlines, ']', '"', '\' and non-ASCII, and
  // whose record 3 has a raw newline in an SD value (the user): with newline framing it would
  // arrive as two messages, with octet counting it is one.
  std::vector<ExportItem> NastyBatch() {
    std::vector<ExportItem> batch = Batch(1, 20);
    batch[1].record.mutable_event()->mutable_command_request()->set_line(kNastyLine);
    batch[2].record.mutable_event()->mutable_principal()->set_user("mallory\n<13>1 fake \"]");
    return batch;
  }

  podgate::testing::TestPki pki_;
  std::unique_ptr<RsyslogServer> rsyslog_;
};

TEST_F(SyslogSinkTest, PlainTcpBatchArrivesInOrderWithIdsAndBodyIntact) {
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
  ASSERT_NE(sink, nullptr);
  std::vector<ExportItem> batch = NastyBatch();
  ASSERT_TRUE(sink->Deliver(batch).status.ok());
  ExpectDelivered(batch);
  absl::StatusOr<std::vector<SyslogMessage>> got = rsyslog_->Messages();
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(nlohmann::json::parse((*got)[1].msg)["event"]["commandRequest"]["line"], kNastyLine);
  EXPECT_EQ((*got)[2].Param(kSyslogSdId, "user"), "mallory\n<13>1 fake \"]");

  // A second batch goes over the same connection, after the first.
  std::vector<ExportItem> second = Batch(21, 5);
  ASSERT_TRUE(sink->Deliver(second).status.ok());
  batch.insert(batch.end(), second.begin(), second.end());
  ExpectDelivered(batch);
}

TEST_F(SyslogSinkTest, LargeRecordsArriveWholeOrMarkedTruncated) {
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
  ASSERT_NE(sink, nullptr);
  std::vector<ExportItem> batch = Batch(1, 3);
  const std::string large(60 * 1024, 'x');  // the message stays within 64 KiB
  batch[0].record.mutable_event()->mutable_command_request()->set_line(large);
  batch[1].record.mutable_event()->mutable_command_request()->set_line(std::string(200000, 'y'));
  ASSERT_TRUE(sink->Deliver(batch).status.ok());
  absl::StatusOr<std::vector<SyslogMessage>> got = rsyslog_->WaitForMessages(3, absl::Seconds(10));
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 3u);
  EXPECT_EQ((*got)[0].msg, ItemJson(batch[0]));
  EXPECT_FALSE((*got)[0].HasParam(kSyslogSdId, "truncated"));
  EXPECT_EQ((*got)[1].Param(kSyslogSdId, "truncated"), "json");
  EXPECT_EQ((*got)[1].Param(kSyslogSdId, "jsonBytes"), absl::StrCat(ItemJson(batch[1]).size()));
  EXPECT_EQ((*got)[1].Param(kSyslogSdId, "sequence"), "2");
  nlohmann::json stub = nlohmann::json::parse((*got)[1].msg);
  EXPECT_EQ(stub["truncated"], true);
  EXPECT_EQ(stub["eventId"], "event-2");
  EXPECT_EQ((*got)[2].msg, ItemJson(batch[2]));
}

TEST_F(SyslogSinkTest, TlsBatchArrives) {
  auto config = Config("tls", rsyslog_->tls_port());
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  std::vector<ExportItem> batch = NastyBatch();
  absl::Status s = sink->Deliver(batch).status;
  ASSERT_TRUE(s.ok()) << s;
  ExpectDelivered(batch);
  // The connection stays up (no replay, so no duplicate) for the next batch.
  std::vector<ExportItem> second = Batch(21, 5);
  s = sink->Deliver(second).status;
  ASSERT_TRUE(s.ok()) << s;
  batch.insert(batch.end(), second.begin(), second.end());
  ExpectDelivered(batch);
}

TEST_F(SyslogSinkTest, TlsByHostNameAndServerName) {
  auto config = Config("tls", rsyslog_->tls_port());
  config.mutable_syslog()->set_address(absl::StrCat("localhost:", rsyslog_->tls_port()));
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  absl::Status s = sink->Deliver(Batch(1, 3)).status;
  ASSERT_TRUE(s.ok()) << s;

  // The certificate names localhost and 127.0.0.1, not this.
  config.mutable_syslog()->mutable_tls()->set_server_name("siem.example.com");
  sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  s = sink->Deliver(Batch(4, 1)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("certificate verify failed"));
  EXPECT_THAT(s.message(), HasSubstr("siem.example.com"));
  ExpectAllArrived(1, 3);
}

TEST_F(SyslogSinkTest, MutualTlsNeedsTheClientCertificate) {
  auto config = Config("tls", rsyslog_->mtls_port());
  config.mutable_syslog()->mutable_tls()->set_cert_file(pki_.client_cert);
  config.mutable_syslog()->mutable_tls()->set_key_file(pki_.client_key);
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  std::vector<ExportItem> batch = Batch(1, 10);
  absl::Status s = sink->Deliver(batch).status;
  ASSERT_TRUE(s.ok()) << s;
  ExpectDelivered(batch);

  // Without it rsyslogd refuses the client after TLS 1.3's handshake has already finished on
  // the client's side: never delivered (the sink waits for the server's verdict before it
  // writes), and nothing arrives. Each try is a new connection, so repeat it.
  for (int attempt = 0; attempt < 5; ++attempt) {
    sink = MakeSink(Config("tls", rsyslog_->mtls_port()));
    ASSERT_NE(sink, nullptr);
    s = sink->Deliver(Batch(11 + attempt, 1)).status;
    EXPECT_FALSE(s.ok()) << "attempt " << attempt;
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(rsyslog_->CountMessages(), batch.size());
}

TEST_F(SyslogSinkTest, WrongCaIsAClearTlsError) {
  auto config = Config("tls", rsyslog_->tls_port());
  config.mutable_syslog()->mutable_tls()->set_ca_file(pki_.other_ca_cert);
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  absl::Status s = sink->Deliver(Batch(1, 1)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_THAT(s.message(), HasSubstr("syslog TLS handshake with 127.0.0.1:"));
  EXPECT_THAT(s.message(), HasSubstr("certificate verify failed"));
  EXPECT_EQ(rsyslog_->CountMessages(), 0u);
}

TEST_F(SyslogSinkTest, ReceiverDownIsUnavailable) {
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(rsyslog_->Stop().ok());
  absl::Status s = sink->Deliver(Batch(1, 1)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("syslog connect 127.0.0.1:"));
  EXPECT_THAT(s.message(), HasSubstr("refused"));
  // And once it is back, the same sink delivers.
  {
    absl::Status r = rsyslog_->Restart();
    ASSERT_TRUE(r.ok()) << r;
  }
  std::vector<ExportItem> batch = Batch(1, 3);
  ASSERT_TRUE(sink->Deliver(batch).status.ok());
  ExpectDelivered(batch);
}

TEST_F(SyslogSinkTest, RestartBetweenBatchesLosesNothing) {
  for (bool kill : {false, true}) {
    SCOPED_TRACE(kill ? "SIGKILL" : "SIGTERM");
    rsyslog_ = nullptr;
    SetUp();
    std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
    ASSERT_NE(sink, nullptr);
    ASSERT_TRUE(sink->Deliver(Batch(1, 10)).status.ok());
    ExpectAllArrived(1, 10);
    // Batch 2 is acknowledged by rsyslogd's kernel while rsyslogd reads nothing; then it is
    // stopped with the batch unread in its socket buffer: only the replay window brings it back.
    ASSERT_TRUE(rsyslog_->Freeze().ok());
    absl::Status s = sink->Deliver(Batch(11, 10)).status;
    ASSERT_TRUE(s.ok()) << s;
    {
      absl::Status r = rsyslog_->Restart(kill);
      ASSERT_TRUE(r.ok()) << r;
    }
    DeliverWithRetries(*sink, Batch(21, 10));
    ExpectAllArrived(1, 30);
  }
}

TEST_F(SyslogSinkTest, RestartDuringABatchLosesNothing) {
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Deliver(Batch(1, 10)).status.ok());
  // rsyslogd stops reading: a large batch fills the socket buffers and the delivery blocks.
  ASSERT_TRUE(rsyslog_->Freeze().ok());
  std::vector<ExportItem> big = Batch(11, 3000);
  auto first_try = std::async(std::launch::async, [&] { return sink->Deliver(big).status; });
  // The restart must come while the batch is on the way: once rsyslogd's socket has taken all
  // it will (its receive queue stops growing) and the sink still has bytes it does not
  // acknowledge. A fixed pause is not enough: on a loaded machine, formatting the batch can
  // outlast the restart, and the batch then goes to the new rsyslogd in one piece.
  ASSERT_TRUE(WaitUntilBlocked(rsyslog_->tcp_port())) << "the batch fits in the socket buffers";
  ASSERT_EQ(first_try.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  ASSERT_TRUE(rsyslog_->Restart(/*kill=*/true).ok());
  absl::Status s = first_try.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  DeliverWithRetries(*sink, big);
  ExpectAllArrived(1, 3010);
}

// A listener whose accept queue is full: the kernel drops further SYNs, so a connect blocks.
class BlackHole {
 public:
  BlackHole() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    listen(fd_, 0);
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    for (int i = 0; i < 4; ++i) {
      int c = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
      connect(c, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
      fillers_.push_back(c);
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  ~BlackHole() {
    for (int c : fillers_) {
      close(c);
    }
    close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::vector<int> fillers_;
};

TEST_F(SyslogSinkTest, CancelUnblocksABlockedConnect) {
  BlackHole hole;
  auto config = Config("tcp", hole.port());
  config.mutable_syslog()->set_timeout("60s");
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  auto delivery = std::async(std::launch::async, [&] { return sink->Deliver(Batch(1, 1)).status; });
  ASSERT_EQ(delivery.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "connect should block: " << delivery.get();
  const absl::Time cancelled = absl::Now();
  sink->Cancel();
  ASSERT_EQ(delivery.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "Cancel did not unblock the connect";
  absl::Status s = delivery.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_LT(absl::Now() - cancelled, absl::Seconds(5));
  // A cancelled sink stays cancelled (it is shutting down).
  EXPECT_EQ(sink->Deliver(Batch(1, 1)).status.code(), absl::StatusCode::kCancelled);
}

// A listener that never accepts: the kernel completes TCP connections into its accept queue, so
// a TLS handshake then waits for a ServerHello that never comes.
TEST_F(SyslogSinkTest, CancelAndTimeoutOfABlockedTlsHandshake) {
  ::podgate::testing::SilentListener listener;
  ASSERT_TRUE(listener.ok());
  auto config = Config("tls", listener.port());
  config.mutable_syslog()->set_timeout("60s");
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  auto delivery = std::async(std::launch::async, [&] { return sink->Deliver(Batch(1, 1)).status; });
  ASSERT_EQ(delivery.wait_for(std::chrono::milliseconds(300)), std::future_status::timeout)
      << "the handshake should block: " << delivery.get();
  sink->Cancel();
  ASSERT_EQ(delivery.wait_for(std::chrono::seconds(5)), std::future_status::ready)
      << "Cancel did not unblock the handshake";
  absl::Status s = delivery.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kCancelled) << s;
  EXPECT_THAT(s.message(), HasSubstr("TLS handshake"));

  config.mutable_syslog()->set_timeout("300ms");
  sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  s = sink->Deliver(Batch(1, 1)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("syslog TLS handshake with 127.0.0.1:"));
}

TEST_F(SyslogSinkTest, BlockedConnectTimesOut) {
  BlackHole hole;
  auto config = Config("tcp", hole.port());
  config.mutable_syslog()->set_timeout("300ms");
  std::unique_ptr<Sink> sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  absl::Status s = sink->Deliver(Batch(1, 1)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
  EXPECT_THAT(s.message(), HasSubstr("syslog connect 127.0.0.1:"));
  EXPECT_THAT(s.message(), HasSubstr("timed out after 300ms"));
}

TEST_F(SyslogSinkTest, FrozenReceiverTimesOutUnacknowledged) {
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", rsyslog_->tcp_port()));
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(sink->Deliver(Batch(1, 1)).status.ok());
  auto config = Config("tcp", rsyslog_->tcp_port());
  config.mutable_syslog()->set_timeout("500ms");
  sink = MakeSink(config);
  ASSERT_NE(sink, nullptr);
  ASSERT_TRUE(rsyslog_->Freeze().ok());
  absl::Status s = sink->Deliver(Batch(2, 3000)).status;
  EXPECT_EQ(s.code(), absl::StatusCode::kDeadlineExceeded) << s;
}

// Throughput into a real rsyslogd (printed, not asserted: the machine is shared).
TEST_F(SyslogSinkTest, Throughput) {
  for (const std::string transport : {"tcp", "tls"}) {
    rsyslog_ = nullptr;
    SetUp();
    std::unique_ptr<Sink> sink = MakeSink(
        Config(transport, transport == "tcp" ? rsyslog_->tcp_port() : rsyslog_->tls_port()));
    ASSERT_NE(sink, nullptr);
    constexpr int kRecords = 40000;
    constexpr int kBatch = 400;
    std::vector<std::vector<ExportItem>> batches;
    for (int i = 0; i < kRecords; i += kBatch) {
      batches.push_back(Batch(i + 1, kBatch));
    }
    const absl::Time start = absl::Now();
    for (const auto& batch : batches) {
      ASSERT_TRUE(sink->Deliver(batch).status.ok());
    }
    const absl::Duration delivered = absl::Now() - start;
    ASSERT_TRUE(rsyslog_->WaitForMessages(kRecords, absl::Seconds(60)).ok());
    const absl::Duration written = absl::Now() - start;
    std::printf(
        "syslog %s: %d records (~%zu bytes each) delivered in %s (%.0f records/s), "
        "written by rsyslogd after %s (%.0f records/s)\n",
        transport.c_str(), kRecords, ItemJson(batches[0][0]).size(),
        absl::FormatDuration(delivered).c_str(), kRecords / absl::ToDoubleSeconds(delivered),
        absl::FormatDuration(written).c_str(), kRecords / absl::ToDoubleSeconds(written));
  }
}

// The sink's own ceiling: the same batches into a receiver that only reads and discards.
TEST_F(SyslogSinkTest, ThroughputIntoADiscardingReceiver) {
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(listener, 4), 0);
  socklen_t len = sizeof(addr);
  getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len);
  std::atomic<size_t> received{0};
  std::thread reader([&] {
    int c = accept(listener, nullptr, nullptr);
    char buffer[1 << 16];
    ssize_t n;
    while ((n = read(c, buffer, sizeof(buffer))) > 0) {
      received += static_cast<size_t>(n);
    }
    close(c);
  });
  std::unique_ptr<Sink> sink = MakeSink(Config("tcp", ntohs(addr.sin_port)));
  ASSERT_NE(sink, nullptr);
  constexpr int kRecords = 40000;
  constexpr int kBatch = 400;
  std::vector<std::vector<ExportItem>> batches;
  for (int i = 0; i < kRecords; i += kBatch) {
    batches.push_back(Batch(i + 1, kBatch));
  }
  absl::Time start = absl::Now();
  size_t bytes = 0;
  for (const auto& batch : batches) {
    for (const ExportItem& item : batch) {
      bytes += FormatSyslogMessage(item, SyslogFormatOptions()).size();
    }
  }
  const absl::Duration formatting = absl::Now() - start;
  std::printf("syslog formatting alone: %d records (%zu bytes) in %s (%.0f records/s)\n", kRecords,
              bytes, absl::FormatDuration(formatting).c_str(),
              kRecords / absl::ToDoubleSeconds(formatting));
  start = absl::Now();
  for (const auto& batch : batches) {
    ASSERT_TRUE(sink->Deliver(batch).status.ok());
  }
  const absl::Duration delivered = absl::Now() - start;
  sink = nullptr;  // closes the connection: the reader ends
  reader.join();
  close(listener);
  EXPECT_GT(received.load(), static_cast<size_t>(kRecords) * 379);
  std::printf(
      "syslog tcp into a discarding receiver: %d records delivered in %s (%.0f records/s)\n",
      kRecords, absl::FormatDuration(delivered).c_str(),
      kRecords / absl::ToDoubleSeconds(delivered));
}

}  // namespace
}  // namespace podgate::audit::exporting
