#include "runtime/tls.h"

#include <fstream>
#include <thread>

#include "echo_service.h"
#include "gmock/gmock.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "runtime/server.h"
#include "support/grpc_health.h"
#include "support/loopback.h"
#include "support/test_pki.h"

namespace podgate::runtime {
namespace {

using ::podgate::testing::CheckHealth;
using ::podgate::testing::UnusedLoopbackPort;
using ::testing::HasSubstr;

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new std::string(podgate::testing::MakeTempDir("podgate-tls"));
    auto pki = podgate::testing::MakeTestPki(*dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = new podgate::testing::TestPki(*pki);
    garbage_ = new std::string(*dir_ + "/garbage.pem");
    std::ofstream(*garbage_) << "this is not PEM\n";
  }
  static std::string* dir_;
  static std::string* garbage_;
  static podgate::testing::TestPki* pki_;

  absl::StatusOr<std::unique_ptr<Server>> StartTls(ServerTlsOptions tls,
                                                   const std::string& address = "127.0.0.1:0") {
    ServerOptions options;
    options.service_name = "tls-test";
    options.grpc_address = address;
    options.tls = std::move(tls);
    options.drain_timeout = absl::Seconds(1);
    return Server::Start(options, {&echo_}, std::make_shared<prometheus::Registry>());
  }

  podgate::testing::EchoServiceImpl echo_;
};
std::string* TlsTest::dir_ = nullptr;
std::string* TlsTest::garbage_ = nullptr;
podgate::testing::TestPki* TlsTest::pki_ = nullptr;

// A command-line client waits for its channel before its first call: a service that comes up
// after the client started (its first attempts refused) is reached, where a call made at once
// fails.
TEST_F(TlsTest, WaitForChannelReadyRidesOutRefusedAttempts) {
  const std::string address = absl::StrCat("127.0.0.1:", UnusedLoopbackPort());
  auto channel = CreateServiceChannel(address, {});
  ASSERT_TRUE(channel.ok());
  EXPECT_EQ(CheckHealth(*channel).status().code(), absl::StatusCode::kUnavailable);

  absl::StatusOr<std::unique_ptr<Server>> server = absl::UnknownError("not started");
  std::thread later([&] {
    absl::SleepFor(absl::Milliseconds(700));
    server = StartTls({}, address);
  });
  const bool ready = WaitForChannelReady(**channel, absl::Now() + absl::Seconds(30));
  later.join();
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_TRUE(ready);
  auto health = CheckHealth(*channel);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
}

// With nothing listening it gives up at its deadline, and the call made then says why.
TEST_F(TlsTest, WaitForChannelReadyGivesUpAtItsDeadline) {
  auto channel = CreateServiceChannel(absl::StrCat("127.0.0.1:", UnusedLoopbackPort()), {});
  ASSERT_TRUE(channel.ok());
  const absl::Time start = absl::Now();
  EXPECT_FALSE(WaitForChannelReady(**channel, start + absl::Seconds(1)));
  const absl::Duration waited = absl::Now() - start;
  EXPECT_GE(waited, absl::Milliseconds(990));
  EXPECT_LT(waited, absl::Seconds(20));
  auto health = CheckHealth(*channel);
  EXPECT_EQ(health.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(health.status().message(), HasSubstr("Connection refused"));
  // A deadline already passed: one look, no wait.
  EXPECT_FALSE(WaitForChannelReady(**channel, absl::Now() - absl::Seconds(1)));
}

TEST_F(TlsTest, NoFilesMeansPlaintext) {
  auto creds = MakeServerCredentials({});
  ASSERT_TRUE(creds.ok());
}

TEST_F(TlsTest, MissingFileNamesFlagAndFile) {
  auto creds = MakeServerCredentials({"/nonexistent/server.crt", pki_->server_key, ""});
  ASSERT_FALSE(creds.ok());
  EXPECT_THAT(creds.status().message(), HasSubstr("--tls_cert"));
  EXPECT_THAT(creds.status().message(), HasSubstr("/nonexistent/server.crt"));
  EXPECT_THAT(creds.status().message(), HasSubstr("No such file"));
}

TEST_F(TlsTest, GarbageCertificateIsRefused) {
  auto creds = MakeServerCredentials({*garbage_, pki_->server_key, ""});
  ASSERT_FALSE(creds.ok());
  EXPECT_THAT(creds.status().message(), HasSubstr("--tls_cert"));
  EXPECT_THAT(creds.status().message(), HasSubstr("no PEM certificate"));
}

TEST_F(TlsTest, GarbageKeyIsRefused) {
  auto creds = MakeServerCredentials({pki_->server_cert, *garbage_, ""});
  ASSERT_FALSE(creds.ok());
  EXPECT_THAT(creds.status().message(), HasSubstr("--tls_key"));
  EXPECT_THAT(creds.status().message(), HasSubstr("no PEM private key"));
}

TEST_F(TlsTest, KeyNotMatchingCertificateIsRefused) {
  auto creds = MakeServerCredentials({pki_->server_cert, pki_->other_key, ""});
  ASSERT_FALSE(creds.ok());
  EXPECT_THAT(creds.status().message(), HasSubstr("does not match"));
}

TEST_F(TlsTest, HalfConfiguredPairsAreRefused) {
  EXPECT_THAT(MakeServerCredentials({pki_->server_cert, "", ""}).status().message(),
              HasSubstr("--tls_key is not"));
  EXPECT_THAT(MakeServerCredentials({"", pki_->server_key, ""}).status().message(),
              HasSubstr("--tls_cert is not"));
  EXPECT_THAT(MakeServerCredentials({"", "", pki_->ca_cert}).status().message(),
              HasSubstr("--tls_client_ca needs"));
  EXPECT_THAT(MakeServerCredentials({pki_->server_cert, pki_->server_key, *garbage_})
                  .status()
                  .message(),
              HasSubstr("--tls_client_ca"));
}

TEST_F(TlsTest, ChannelErrorsUseTheirFlagPrefix) {
  ChannelTlsOptions options;
  options.flag_prefix = "policy";
  options.ca_file = "/nonexistent/ca.crt";
  auto creds = MakeChannelCredentials(options);
  ASSERT_FALSE(creds.ok());
  EXPECT_THAT(creds.status().message(), HasSubstr("--policy_tls_ca"));
  options.ca_file = "";
  options.cert_file = pki_->client_cert;
  EXPECT_THAT(MakeChannelCredentials(options).status().message(), HasSubstr("need"));
}

TEST_F(TlsTest, TlsServerAnswersAClientThatTrustsItsCa) {
  auto server = StartTls({pki_->server_cert, pki_->server_key, ""});
  ASSERT_TRUE(server.ok()) << server.status();
  ChannelTlsOptions good;
  good.ca_file = pki_->ca_cert;
  good.server_name_override = "localhost";
  auto channel = CreateServiceChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()), good);
  ASSERT_TRUE(channel.ok());
  auto health = CheckHealth(*channel);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);

  // A client trusting another CA is refused, and so is a plaintext one.
  ChannelTlsOptions wrong = good;
  wrong.ca_file = pki_->other_ca_cert;
  auto wrong_channel =
      CreateServiceChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()), wrong);
  ASSERT_TRUE(wrong_channel.ok());
  EXPECT_EQ(CheckHealth(*wrong_channel).status().code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(CheckHealth(podgate::testing::LocalChannel((*server)->grpc_port())).status().code(),
            absl::StatusCode::kUnavailable);
}

TEST_F(TlsTest, MutualTlsRequiresAClientCertificate) {
  auto server = StartTls({pki_->server_cert, pki_->server_key, pki_->ca_cert});
  ASSERT_TRUE(server.ok()) << server.status();
  const std::string target = absl::StrCat("127.0.0.1:", (*server)->grpc_port());
  ChannelTlsOptions no_cert;
  no_cert.ca_file = pki_->ca_cert;
  no_cert.server_name_override = "localhost";
  EXPECT_FALSE(CheckHealth(*CreateServiceChannel(target, no_cert)).ok());

  ChannelTlsOptions with_cert = no_cert;
  with_cert.cert_file = pki_->client_cert;
  with_cert.key_file = pki_->client_key;
  auto health = CheckHealth(*CreateServiceChannel(target, with_cert));
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace podgate::runtime
