#include "runtime/server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "echo_service.h"
#include "gmock/gmock.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/create_channel.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "runtime/grpc_metrics.h"
#include "runtime/tls.h"
#include "support/grpc_health.h"
#include "support/http_client.h"
#include "support/prometheus_text.h"
#include "support/stack.h"
#include "support/test_pki.h"

namespace podgate::runtime {
namespace {

using ::podgate::testing::CheckHealth;
using ::podgate::testing::LocalChannel;
using ::podgate::testing::v1::EchoRequest;
using ::podgate::testing::v1::EchoResponse;
using ::podgate::testing::v1::EchoService;
using ::testing::HasSubstr;

ServerOptions LocalOptions() {
  ServerOptions options;
  options.service_name = "echo";
  options.grpc_address = "127.0.0.1:0";
  options.metrics_address = "127.0.0.1:0";
  options.drain_timeout = absl::Seconds(5);
  return options;
}

class ServerTest : public ::testing::Test {
 protected:
  podgate::testing::EchoServiceImpl echo_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
};

TEST_F(ServerTest, ServesHealthReflectionAndMetrics) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  EXPECT_NE((*server)->grpc_port(), 0);
  EXPECT_NE((*server)->metrics_port(), 0);

  auto channel = LocalChannel((*server)->grpc_port());
  EXPECT_EQ(*CheckHealth(channel), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(*CheckHealth(channel, "echo"), grpc::health::v1::HealthCheckResponse::SERVING);
  EXPECT_EQ(CheckHealth(channel, "nope").status().code(), absl::StatusCode::kNotFound);

  auto page = podgate::testing::HttpGet((*server)->metrics_port(), "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  auto parsed = podgate::testing::ParsePrometheusText(page->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  EXPECT_GT(parsed->samples["process_resident_memory_bytes"], 1e6);
  EXPECT_GT(parsed->samples["process_open_fds"], 3);
  EXPECT_GT(parsed->samples["process_start_time_seconds"], 1.7e9);
  EXPECT_EQ(parsed->types["process_cpu_seconds_total"], "counter");
  EXPECT_EQ((parsed->samples["podgate_build_info{service=\"echo\",version=\"" +
                             std::string(PODGATE_TEST_VERSION) + "\"}"]),
            1);
}

std::string HeaderOf(const http::ClientResponse& r, const std::string& name) {
  for (const auto& [k, v] : r.headers) {
    if (absl::EqualsIgnoreCase(k, name)) {
      return v;
    }
  }
  return "";
}

void ExpectSecurityHeaders(const http::ClientResponse& r) {
  EXPECT_EQ(HeaderOf(r, "X-Content-Type-Options"), "nosniff") << r.status;
  EXPECT_EQ(HeaderOf(r, "Cache-Control"), "no-store") << r.status;
  EXPECT_EQ(HeaderOf(r, "X-Frame-Options"), "DENY") << r.status;
  EXPECT_EQ(HeaderOf(r, "Referrer-Policy"), "no-referrer") << r.status;
  EXPECT_EQ(HeaderOf(r, "Content-Security-Policy"), "default-src 'none'; frame-ancestors 'none'")
      << r.status;
}

// The metrics port is podgate's own HTTP layer: /metrics, a 404, a 405 and the parser's own
// 431 all carry the security headers, over a real connection.
TEST_F(ServerTest, MetricsPortAnswersCarryTheSecurityHeaders) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  http::ClientOptions client;
  client.port = static_cast<uint16_t>((*server)->metrics_port());

  auto page = http::Fetch(client, "GET", "/metrics");
  ASSERT_TRUE(page.ok()) << page.status();
  EXPECT_EQ(page->status, 200);
  EXPECT_EQ(page->content_type, "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_THAT(page->body, HasSubstr("# TYPE process_open_fds gauge"));
  ExpectSecurityHeaders(*page);
  auto query = http::Fetch(client, "GET", "/metrics?x=1");
  ASSERT_TRUE(query.ok()) << query.status();
  EXPECT_EQ(query->status, 200);

  for (const char* target : {"/", "/metrics/", "/metricsx", "/healthz", "/../metrics"}) {
    auto missing = http::Fetch(client, "GET", target);
    ASSERT_TRUE(missing.ok()) << missing.status();
    EXPECT_EQ(missing->status, 404) << target;
    ExpectSecurityHeaders(*missing);
  }
  auto post = http::Fetch(client, "POST", "/metrics", "x");
  ASSERT_TRUE(post.ok()) << post.status();
  EXPECT_EQ(post->status, 405);
  EXPECT_EQ(HeaderOf(*post, "Allow"), "GET");
  ExpectSecurityHeaders(*post);

  http::ClientOptions big = client;
  big.headers.emplace_back("X-Big", std::string(16 * 1024, 'h'));
  auto too_big = http::Fetch(big, "GET", "/metrics");
  ASSERT_TRUE(too_big.ok()) << too_big.status();
  EXPECT_EQ(too_big->status, 431);
  ExpectSecurityHeaders(*too_big);
}

TEST_F(ServerTest, MetricsAddressMustBeAnIpAndPort) {
  for (const char* bad : {"localhost:0", "127.0.0.1", "127.0.0.1:99999", "::1:0", ":0"}) {
    ServerOptions options = LocalOptions();
    options.metrics_address = bad;
    auto server = Server::Start(options, {&echo_}, std::make_shared<prometheus::Registry>());
    ASSERT_FALSE(server.ok()) << bad;
    EXPECT_THAT(server.status().message(), HasSubstr("--metrics_address")) << bad;
  }
  ServerOptions v6 = LocalOptions();
  v6.metrics_address = "[::1]:0";
  auto server = Server::Start(v6, {&echo_}, registry_);
  if (server.ok()) {  // hosts without IPv6 cannot bind [::1]
    EXPECT_NE((*server)->metrics_port(), 0);
  }
}

TEST_F(ServerTest, AddressInUseNamesTheFlag) {
  auto first = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(first.ok());
  ServerOptions clash = LocalOptions();
  clash.grpc_address = absl::StrCat("127.0.0.1:", (*first)->grpc_port());
  podgate::testing::EchoServiceImpl other;
  auto second = Server::Start(clash, {&other}, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("--grpc_address"));

  ServerOptions metrics_clash = LocalOptions();
  metrics_clash.metrics_address = absl::StrCat("127.0.0.1:", (*first)->metrics_port());
  auto third = Server::Start(metrics_clash, {&other}, std::make_shared<prometheus::Registry>());
  ASSERT_FALSE(third.ok());
  EXPECT_THAT(third.status().message(), HasSubstr("--metrics_address"));
}

// Shutdown must let an in-flight stream finish: health turns NOT_SERVING, new calls are
// refused, the open stream keeps working until the client ends it, then Shutdown returns.
TEST_F(ServerTest, ShutdownDrainsAnInFlightStream) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  auto channel = LocalChannel((*server)->grpc_port());
  auto stub = EchoService::NewStub(channel);
  grpc::ClientContext ctx;
  auto stream = stub->Echo(&ctx);
  EchoRequest req;
  EchoResponse res;
  req.set_text("before");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&res));
  EXPECT_EQ(res.text(), "before");

  bool hook_ran = false;
  (*server)->AddDrainHook([&] { hook_ran = true; });
  const absl::Time start = absl::Now();
  std::thread shutdown([&] { (*server)->Shutdown(); });
  // Wait until shutdown has begun.
  while ((*server)->serving()) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  absl::SleepFor(absl::Milliseconds(200));

  // The in-flight stream still echoes.
  req.set_text("during");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&res));
  EXPECT_EQ(res.text(), "during");

  // A new call on a new connection is refused.
  auto fresh = LocalChannel((*server)->grpc_port());
  EXPECT_FALSE(CheckHealth(fresh).ok());

  stream->WritesDone();
  EXPECT_FALSE(stream->Read(&res));
  EXPECT_TRUE(stream->Finish().ok());
  shutdown.join();
  EXPECT_TRUE(hook_ran);
  EXPECT_LT(absl::Now() - start, absl::Seconds(4)) << "shutdown waited for the deadline";
  EXPECT_EQ(echo_.finished.load(), 1);
  EXPECT_EQ(echo_.cancelled.load(), 0);
}

// gRPC's graceful shutdown also waits for every client connection to go away, calls or not: an
// idle channel kept podgate-exec alive ~5 s after its drain (edge keeps one open all the time).
// With no call in flight, Shutdown closes such connections instead of waiting for them; a
// health watch, which lasts as long as its client, does not hold it either.
TEST_F(ServerTest, ShutdownDoesNotWaitForIdleConnections) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  auto idle = LocalChannel((*server)->grpc_port());
  ASSERT_TRUE(CheckHealth(idle).ok());  // connected, then idle
  auto watched = LocalChannel((*server)->grpc_port());
  auto health = grpc::health::v1::Health::NewStub(watched);
  grpc::ClientContext watch_ctx;
  grpc::health::v1::HealthCheckRequest req;
  auto watch = health->Watch(&watch_ctx, req);
  grpc::health::v1::HealthCheckResponse res;
  ASSERT_TRUE(watch->Read(&res));
  EXPECT_EQ(res.status(), grpc::health::v1::HealthCheckResponse::SERVING);

  const absl::Time start = absl::Now();
  (*server)->Shutdown();
  EXPECT_LT(absl::Now() - start, absl::Seconds(1)) << "shutdown waited for idle connections";
  while (watch->Read(&res)) {
  }
  watch->Finish();
}

// A stream that never ends is cancelled at the drain deadline, and Shutdown returns then.
TEST_F(ServerTest, ShutdownCancelsStreamsAtTheDeadline) {
  ServerOptions options = LocalOptions();
  options.drain_timeout = absl::Milliseconds(500);
  auto server = Server::Start(options, {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  auto stub = EchoService::NewStub(LocalChannel((*server)->grpc_port()));
  grpc::ClientContext ctx;
  auto stream = stub->Echo(&ctx);
  EchoRequest req;
  EchoResponse res;
  req.set_text("x");
  ASSERT_TRUE(stream->Write(req));
  ASSERT_TRUE(stream->Read(&res));

  const absl::Time start = absl::Now();
  (*server)->Shutdown();
  const absl::Duration took = absl::Now() - start;
  EXPECT_GE(took, absl::Milliseconds(450));
  EXPECT_LT(took, absl::Seconds(5));
  EXPECT_FALSE(stream->Read(&res));
  grpc::Status status = stream->Finish();
  EXPECT_FALSE(status.ok());
  EXPECT_EQ(echo_.cancelled.load(), 1);
}

// Drain waits run after the hooks with the drain deadline, while health still answers
// NOT_SERVING and /metrics is still served; the server stops only once they return.
TEST_F(ServerTest, DrainWaitsRunAfterTheHooksWhileTheServerStillAnswers) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  auto channel = LocalChannel((*server)->grpc_port());
  ASSERT_EQ(*CheckHealth(channel), grpc::health::v1::HealthCheckResponse::SERVING);
  const int metrics_port = (*server)->metrics_port();
  std::vector<std::string> order;
  absl::Time deadline;
  absl::StatusOr<grpc::health::v1::HealthCheckResponse::ServingStatus> health_during;
  int metrics_during = 0;
  (*server)->AddDrainHook([&] { order.push_back("hook"); });
  (*server)->AddDrainWait([&](absl::Time d) {
    order.push_back("wait");
    deadline = d;
    health_during = CheckHealth(channel);
    auto page = podgate::testing::HttpGet(metrics_port, "/metrics");
    metrics_during = page.ok() ? page->status : -1;
  });
  const absl::Time start = absl::Now();
  (*server)->Shutdown();
  EXPECT_EQ(order, (std::vector<std::string>{"hook", "wait"}));
  EXPECT_GE(deadline, start + absl::Seconds(5));
  EXPECT_LT(deadline, absl::Now() + absl::Seconds(5));
  ASSERT_TRUE(health_during.ok()) << health_during.status();
  EXPECT_EQ(*health_during, grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(metrics_during, 200);
}

TEST_F(ServerTest, ServiceReadinessFollowsTheServiceWhileTheServerStaysUp) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  auto channel = LocalChannel((*server)->grpc_port());
  (*server)->SetServiceServing(false);
  EXPECT_EQ(*CheckHealth(channel, "echo"), grpc::health::v1::HealthCheckResponse::NOT_SERVING);
  EXPECT_EQ(*CheckHealth(channel), grpc::health::v1::HealthCheckResponse::SERVING);
  (*server)->SetServiceServing(true);
  EXPECT_EQ(*CheckHealth(channel, "echo"), grpc::health::v1::HealthCheckResponse::SERVING);
  (*server)->Shutdown();
  (*server)->SetServiceServing(true);  // ignored after shutdown, and harmless
}

TEST_F(ServerTest, ShutdownIsIdempotent) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok());
  (*server)->Shutdown();
  (*server)->Shutdown();
  (*server)->Wait();
  EXPECT_FALSE((*server)->serving());
}

// A peer that was down for long comes back: calls must work again within a couple of seconds.
// gRPC's default reconnect backoff grows to 120 s (x1.6 from 1 s, with jitter): after a 75 s
// outage calls kept failing 5 s here (31-45 s in the field) although the peer was serving.
TEST_F(ServerTest, PeerChannelsReconnectPromptlyAfterALongOutage) {
  podgate::testing::ReservedPort reserved;
  const int port = reserved.port();
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateServiceChannel(absl::StrCat("127.0.0.1:", port), ChannelTlsOptions{});
  ASSERT_TRUE(channel.ok()) << channel.status();
  const absl::Time outage_end = absl::Now() + absl::Seconds(75);
  while (absl::Now() < outage_end) {
    EXPECT_FALSE(podgate::testing::CheckHealth(*channel).ok());
    absl::SleepFor(absl::Milliseconds(250));
  }
  ServerOptions options = LocalOptions();
  options.grpc_address = absl::StrCat("127.0.0.1:", port);
  reserved.Release();
  auto server = Server::Start(options, {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  const absl::Time up = absl::Now();
  while (!podgate::testing::CheckHealth(*channel).ok() && absl::Now() - up < absl::Seconds(30)) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  const absl::Duration recovery = absl::Now() - up;
  std::printf("recovered %s after the peer came back\n", absl::FormatDuration(recovery).c_str());
  EXPECT_LT(recovery, absl::Seconds(2));
}

// A relay on loopback in front of a real server that holds each connection silent for `delay`
// before passing bytes either way: a peer slow to answer its handshake (a TLS handshake on a
// loaded node, a replica busy with its start-up).
class SlowHandshakeRelay {
 public:
  SlowHandshakeRelay(int target_port, absl::Duration delay) : target_(target_port), delay_(delay) {
    listener_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (bind(listener_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        listen(listener_, 16) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "relay: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
    accepter_ = std::thread([this] { Accept(); });
  }
  ~SlowHandshakeRelay() {
    shutdown(listener_, SHUT_RDWR);
    accepter_.join();
    close(listener_);
    for (int fd : fds_) {
      shutdown(fd, SHUT_RDWR);
    }
    for (std::thread& t : pumps_) {
      t.join();
    }
    for (int fd : fds_) {
      close(fd);
    }
  }
  int port() const { return port_; }

 private:
  void Accept() {
    while (true) {
      const int client = accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
      if (client < 0) {
        return;  // shut down
      }
      const int server = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = htons(static_cast<uint16_t>(target_));
      if (connect(server, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
        close(client);
        close(server);
        continue;
      }
      fds_.push_back(client);
      fds_.push_back(server);
      const absl::Time open_at = absl::Now() + delay_;
      pumps_.emplace_back([=] { Pump(client, server, open_at); });
      pumps_.emplace_back([=] { Pump(server, client, open_at); });
    }
  }
  // Copies `from` to `to` until either side ends. send(MSG_NOSIGNAL): a peer that already
  // closed makes the send fail with EPIPE instead of raising SIGPIPE, which would end the test.
  static void Pump(int from, int to, absl::Time open_at) {
    absl::SleepFor(open_at - absl::Now());
    char buf[16384];
    while (true) {
      const ssize_t n = read(from, buf, sizeof(buf));
      ssize_t sent = 0;
      while (n > 0 && sent < n) {
        const ssize_t k = send(to, buf + sent, static_cast<size_t>(n - sent), MSG_NOSIGNAL);
        if (k <= 0) {
          break;
        }
        sent += k;
      }
      if (n <= 0 || sent < n) {
        shutdown(to, SHUT_WR);
        return;
      }
    }
  }

  const int target_;
  const absl::Duration delay_;
  int listener_ = -1;
  int port_ = 0;
  std::thread accepter_;
  // Touched by the accepting thread only until the destructor joins it.
  std::vector<int> fds_;
  std::vector<std::thread> pumps_;
};

// A peer that takes longer than the reconnect backoff to answer a connection is still reached.
// The backoff (250 ms to 1 s) says when the next attempt starts, not how long one may take:
// with gRPC's minimum connect timeout set to the same 250 ms, an attempt to a peer that needed
// more was abandoned, every time, and calls failed UNAVAILABLE ("connection attempt timed out
// before receiving SETTINGS frame"), as edge's did to a loaded exec.
TEST_F(ServerTest, PeerChannelsWaitForAPeerSlowToAnswerItsHandshake) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  SlowHandshakeRelay relay((*server)->grpc_port(), absl::Milliseconds(1500));
  absl::StatusOr<std::shared_ptr<grpc::Channel>> channel =
      CreateServiceChannel(absl::StrCat("127.0.0.1:", relay.port()), ChannelTlsOptions{});
  ASSERT_TRUE(channel.ok()) << channel.status();
  // A call that does not wait for readiness, as peer calls do, with a 5 s deadline.
  const auto health = CheckHealth(*channel);
  ASSERT_TRUE(health.ok()) << health.status();
  EXPECT_EQ(*health, grpc::health::v1::HealthCheckResponse::SERVING);
}

}  // namespace
}  // namespace podgate::runtime

namespace podgate::runtime {
namespace {

// `openssl x509 -enddate` of the first certificate in `path`, as Unix seconds (read by the
// openssl command, not by the code under test).
double OpensslNotAfter(const std::string& path) {
  std::FILE* p = popen(("openssl x509 -noout -enddate -in " + path).c_str(), "r");
  char buf[256] = {};
  std::string out = p != nullptr && std::fgets(buf, sizeof(buf), p) != nullptr ? buf : "";
  if (p != nullptr) {
    pclose(p);
  }
  out = out.substr(out.find('=') + 1);
  while (!out.empty() && (out.back() == '\n' || out.back() == ' ')) {
    out.pop_back();
  }
  absl::Time t;
  std::string err;
  EXPECT_TRUE(absl::ParseTime("%b %e %H:%M:%S %Y GMT", out, absl::UTCTimeZone(), &t, &err))
      << out << ": " << err;
  return absl::ToDoubleSeconds(t - absl::UnixEpoch());
}

class GrpcMetricsTest : public ::testing::Test {
 protected:
  podgate::testing::EchoServiceImpl echo_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
};

TEST_F(GrpcMetricsTest, MethodsAreSplitAndUnknownOnesBounded) {
  EXPECT_EQ(GrpcServerMetrics::SplitMethod("/grpc.health.v1.Health/Check"),
            (std::pair<std::string, std::string>{"grpc.health.v1.Health", "Check"}));
  EXPECT_EQ(GrpcServerMetrics::SplitMethod("/podgate.testing.v1.EchoService/Echo").second, "Echo");
  for (const char* bad : {"/grpc.health.v1.Health/Nope", "/no.Such/Method", "", "/", "//x",
                          "/grpc.health.v1.Health/", "nonsense"}) {
    EXPECT_EQ(GrpcServerMetrics::SplitMethod(bad),
              (std::pair<std::string, std::string>{"unknown", "unknown"}))
        << bad;
  }
  EXPECT_EQ(GrpcServerMetrics::SplitMethod(nullptr).first, "unknown");
  EXPECT_EQ(GrpcServerMetrics::Buckets().front(), 0.0005);
  EXPECT_EQ(GrpcServerMetrics::Buckets().back(), 60);
}

// Each call finds its method's series in one lookup; names a client makes up share the one
// "unknown" entry (they cannot grow the cache), and a code outside gRPC's range counts as
// UNKNOWN.
TEST_F(GrpcMetricsTest, EachMethodHasOneEntryAndUnknownNamesShareOne) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  GrpcServerMetrics metrics(registry_);
  GrpcServerMetrics::Method& check = metrics.ForMethod("/grpc.health.v1.Health/Check", Type::UNARY);
  EXPECT_EQ(&check, &metrics.ForMethod("/grpc.health.v1.Health/Check", Type::UNARY));
  EXPECT_NE(&check, &metrics.ForMethod("/grpc.health.v1.Health/Check", Type::BIDI_STREAMING));
  GrpcServerMetrics::Method& unknown = metrics.ForMethod("/no.Such/Method", Type::UNARY);
  EXPECT_NE(&check, &unknown);
  for (const char* made_up : {"/no.Such/Other", "/grpc.health.v1.Health/Nope", "", "nonsense"}) {
    EXPECT_EQ(&unknown, &metrics.ForMethod(made_up, Type::UNARY)) << made_up;
  }
  EXPECT_EQ(&unknown, &metrics.ForMethod(nullptr, Type::UNARY));
  check.Started();
  check.Handled(static_cast<int>(grpc::StatusCode::OK), 0.001);
  check.Handled(static_cast<int>(grpc::StatusCode::OK), 0.001);
  check.Handled(99, 0.001);
  check.Handled(-1, 0.001);
  check.Handled(static_cast<int>(grpc::StatusCode::UNKNOWN), 0.001);
  std::map<std::string, double> counts;
  for (const prometheus::MetricFamily& family : registry_->Collect()) {
    for (const prometheus::ClientMetric& m : family.metric) {
      std::string key = family.name;
      for (const prometheus::ClientMetric::Label& l : m.label) {
        key += "," + l.name + "=" + l.value;
      }
      counts[key] = family.type == prometheus::MetricType::Histogram
                        ? static_cast<double>(m.histogram.sample_count)
                        : m.counter.value;
    }
  }
  const std::string labels = ",grpc_method=Check,grpc_service=grpc.health.v1.Health";
  EXPECT_EQ(counts["podgate_grpc_server_started_total" + labels + ",grpc_type=unary"], 1);
  EXPECT_EQ(counts["podgate_grpc_server_handled_total,grpc_code=OK" + labels], 2);
  EXPECT_EQ(counts["podgate_grpc_server_handled_total,grpc_code=UNKNOWN" + labels], 3);
  EXPECT_EQ(counts["podgate_grpc_server_handling_seconds" + labels], 5);
  EXPECT_EQ(counts.count("podgate_grpc_server_started_total,grpc_method=unknown,"
                         "grpc_service=unknown,grpc_type=unary"),
            1u);
}

// Real calls (unary OK, unary NOT_FOUND, a bidi stream) are counted per method and code.
TEST_F(GrpcMetricsTest, CallsAreCountedPerMethodAndCode) {
  auto server = Server::Start(LocalOptions(), {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  auto channel = LocalChannel((*server)->grpc_port());
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(CheckHealth(channel).ok());
  }
  EXPECT_EQ(CheckHealth(channel, "nope").status().code(), absl::StatusCode::kNotFound);
  {
    auto stub = EchoService::NewStub(channel);
    grpc::ClientContext ctx;
    auto stream = stub->Echo(&ctx);
    EchoRequest req;
    req.set_text("hi");
    ASSERT_TRUE(stream->Write(req));
    EchoResponse res;
    ASSERT_TRUE(stream->Read(&res));
    stream->WritesDone();
    ASSERT_TRUE(stream->Finish().ok());
  }
  const int port = (*server)->metrics_port();
  // Labels as the text format writes them: sorted by name.
  const std::string check = R"(grpc_method="Check",grpc_service="grpc.health.v1.Health")";
  const std::string echo = R"(grpc_method="Echo",grpc_service="podgate.testing.v1.EchoService")";
  // The stream's status is counted when its interceptor runs, right after the client saw it.
  double echo_ok = -1;
  for (int i = 0; i < 100 && echo_ok != 1; ++i) {
    echo_ok = podgate::testing::MetricSample(
        port, "podgate_grpc_server_handled_total{grpc_code=\"OK\"," + echo + "}");
    absl::SleepFor(absl::Milliseconds(20));
  }
  EXPECT_EQ(echo_ok, 1);
  auto page = podgate::testing::HttpGet(port, "/metrics");
  ASSERT_TRUE(page.ok());
  auto parsed = podgate::testing::ParsePrometheusText(page->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto& s = parsed->samples;
  EXPECT_EQ(s["podgate_grpc_server_started_total{" + check + ",grpc_type=\"unary\"}"], 4);
  EXPECT_EQ(s["podgate_grpc_server_handled_total{grpc_code=\"OK\"," + check + "}"], 3);
  EXPECT_EQ(s["podgate_grpc_server_handled_total{grpc_code=\"NOT_FOUND\"," + check + "}"], 1);
  EXPECT_EQ(s["podgate_grpc_server_started_total{" + echo + ",grpc_type=\"bidi_stream\"}"], 1);
  EXPECT_EQ(s["podgate_grpc_server_handling_seconds_count{" + check + "}"], 4);
  EXPECT_EQ(s["podgate_grpc_server_handling_seconds_bucket{" + check + ",le=\"60\"}"], 4);
  EXPECT_EQ(s["podgate_grpc_server_handling_seconds_bucket{" + check + ",le=\"+Inf\"}"], 4);
  EXPECT_GT(s["podgate_grpc_server_handling_seconds_sum{" + check + "}"], 0);
  EXPECT_EQ(parsed->types["podgate_grpc_server_handling_seconds"], "histogram");
  EXPECT_EQ(parsed->types["podgate_grpc_server_started_total"], "counter");
}

// Every certificate file loaded shows its notAfter; a bundle shows its earliest.
TEST_F(GrpcMetricsTest, CertificateExpiryOfEveryLoadedFile) {
  const std::string dir = podgate::testing::MakeTempDir("podgate-cert-expiry");
  auto pki = podgate::testing::MakeTestPki(dir);
  ASSERT_TRUE(pki.ok()) << pki.status();
  // A one-day certificate, in a client CA bundle after the two-day CA.
  const std::string short_cert = dir + "/short.pem";
  ASSERT_EQ(std::system(("openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes "
                         "-days 1 -subj /CN=short -keyout " +
                         dir + "/short.key -out " + short_cert + " 2>/dev/null")
                            .c_str()),
            0);
  const std::string bundle = dir + "/bundle.pem";
  ASSERT_EQ(std::system(("cat " + pki->ca_cert + " " + short_cert + " > " + bundle).c_str()), 0);
  ServerOptions options = LocalOptions();
  options.tls.cert_file = pki->server_cert;
  options.tls.key_file = pki->server_key;
  options.tls.client_ca_file = bundle;
  auto server = Server::Start(options, {&echo_}, registry_);
  ASSERT_TRUE(server.ok()) << server.status();
  ChannelTlsOptions peer;
  peer.ca_file = pki->ca_cert;
  peer.cert_file = pki->client_cert;
  peer.key_file = pki->client_key;
  ASSERT_TRUE(MakeChannelCredentials(peer).ok());

  auto page = podgate::testing::HttpGet((*server)->metrics_port(), "/metrics");
  ASSERT_TRUE(page.ok());
  auto parsed = podgate::testing::ParsePrometheusText(page->body);
  ASSERT_TRUE(parsed.ok()) << parsed.status();
  auto sample = [&](const std::string& path, const std::string& usage) {
    return parsed->samples["podgate_tls_certificate_expiry_timestamp_seconds{path=\"" + path +
                           "\",usage=\"" + usage + "\"}"];
  };
  EXPECT_EQ(parsed->types["podgate_tls_certificate_expiry_timestamp_seconds"], "gauge");
  EXPECT_EQ(sample(pki->server_cert, "server"), OpensslNotAfter(pki->server_cert));
  EXPECT_EQ(sample(bundle, "client_ca"), OpensslNotAfter(short_cert));
  EXPECT_LT(OpensslNotAfter(short_cert), OpensslNotAfter(pki->ca_cert));
  EXPECT_EQ(sample(pki->client_cert, "client"), OpensslNotAfter(pki->client_cert));
  EXPECT_EQ(sample(pki->ca_cert, "ca"), OpensslNotAfter(pki->ca_cert));
  EXPECT_GT(sample(pki->server_cert, "server"), absl::ToUnixSeconds(absl::Now()));
}

}  // namespace
}  // namespace podgate::runtime
