// Network destinations end to end: a loopback HTTP server stands in for the cloud metadata
// service, and every spelling of its address goes through podgate-run, podgate-exec,
// podgate-policy and kubesim to a real curl in the container. Each spelling reaches the server
// when curl is run directly (so the attack is real); through podgate, none does. A rule that
// names the address exactly reaches it (so the test can fail), and a globbed URL is refused.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_replace.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;

constexpr char kCluster[] = R"(namespaces:
  - name: team
pods:
  - name: app-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

// PORT is replaced by the stand-in server's port.
constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: devs-curl
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    command:
      program: curl
      prependArgs: [-q, -g, --proto, "=http,https", --noproxy, "*", -s, -o, /dev/null]
      args:
        - {name: url, type: url, hosts: ["*", "*.svc.cluster.local"], ports: [PORT]}
  - id: ops-curl-metadata
    effect: allow
    subjects: {groups: [ops]}
    targets: {namespaces: [team]}
    command:
      program: curl
      prependArgs: [-q, -s, -o, /dev/null]
      args:
        - {name: url, type: url, hosts: ["127.0.0.1"], ports: [PORT]}
)";

// Accepts connections on 127.0.0.1 and answers each with 200, counting them.
class StandInServer {
 public:
  StandInServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    int one = 1;
    setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(fd_, 64) != 0) {
      ADD_FAILURE() << "cannot listen on 127.0.0.1";
      return;
    }
    socklen_t len = sizeof(addr);
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] {
      while (true) {
        const int c = accept(fd_, nullptr, nullptr);
        if (c < 0) {
          return;
        }
        hits_.fetch_add(1);
        char buf[4096];
        (void)!read(c, buf, sizeof(buf));
        const char kReply[] =
            "HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nsecret\n";
        (void)!write(c, kReply, sizeof(kReply) - 1);
        close(c);
      }
    });
  }
  ~StandInServer() {
    shutdown(fd_, SHUT_RDWR);
    close(fd_);
    thread_.join();
  }
  int port() const { return port_; }
  int hits() const { return hits_.load(); }

 private:
  int fd_ = -1;
  int port_ = 0;
  std::atomic<int> hits_{0};
  std::thread thread_;
};

class DestinationsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = absl::StrReplaceAll(kPolicy, {{"PORT", absl::StrCat(server_.port())}});
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = *std::move(stack);
  }

  // Runs `curl <url>` through podgate as a user of `group`; returns podgate-run's exit status
  // and its stderr (the refusal's reason).
  std::pair<int, std::string> Run(const std::string& group, const std::string& url) {
    std::vector<std::string> args = {absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
                                     "--token=" + stack_->Token("dana", {group}),
                                     "--namespace=team",
                                     "--pod=app-1",
                                     "--",
                                     "curl",
                                     url};
    auto p = testing::Subprocess::Start(PODGATE_RUN_BIN, args);
    EXPECT_TRUE(p.ok());
    auto status = (*p)->WaitExit(absl::Seconds(30));
    (*p)->WaitForLine("\x01never", absl::Milliseconds(50)).IgnoreError();
    return {status.ok() ? *status : -1, absl::StrJoin((*p)->Lines(), "\n")};
  }

  // Runs curl directly, as an attacker's shell in the pod would.
  int RunCurlDirectly(const std::string& url) {
    auto p = testing::Subprocess::Start(
        "/usr/bin/curl", {"-q", "-s", "-o", "/dev/null", "--max-time", "5", "--noproxy", "*", url});
    EXPECT_TRUE(p.ok());
    auto status = (*p)->WaitExit(absl::Seconds(10));
    return status.ok() ? *status : -1;
  }

  StandInServer server_;
  std::unique_ptr<testing::Stack> stack_;
};

TEST_F(DestinationsTest, NoSpellingOfTheMetadataStandInIsReachedThroughPodgate) {
  const std::string port = absl::StrCat(server_.port());
  // Every one of these is 127.0.0.1 to curl.
  const std::vector<std::string> spellings = {
      "http://127.0.0.1:" + port + "/latest/meta-data/",
      "http://127.1:" + port + "/",
      "http://2130706433:" + port + "/",
      "http://0x7f000001:" + port + "/",
      "http://0X7F.0.0.1:" + port + "/",
      "http://0177.0.0.1:" + port + "/",
      "http://0177.1:" + port + "/",
      "http://127.0.1:" + port + "/",
      "http://127.000.000.001:" + port + "/",
      "http://%31%32%37.0.0.1:" + port + "/",
      "http://[::ffff:127.0.0.1]:" + port + "/",
      "http://[::ffff:7f00:1]:" + port + "/",
      "http://LOCALHOST:" + port + "/",
  };
  int direct = 0;
  for (const std::string& url : spellings) {
    const int before = server_.hits();
    RunCurlDirectly(url);
    if (server_.hits() > before) {
      ++direct;
    } else {
      ADD_FAILURE() << url << " does not reach the stand-in even directly; not an attack";
    }
  }
  EXPECT_EQ(direct, static_cast<int>(spellings.size()));
  const int before = server_.hits();
  for (const std::string& url : spellings) {
    auto [code, why] = Run("devs", url);
    EXPECT_EQ(code, 126) << url << ": " << why;
    EXPECT_THAT(why, HasSubstr("devs-curl")) << url;
  }
  EXPECT_EQ(server_.hits(), before) << "a spelling reached the stand-in through podgate";
}

TEST_F(DestinationsTest, AnExactListingReachesItAndGlobbingIsRefused) {
  const std::string url = absl::StrCat("http://127.0.0.1:", server_.port(), "/health");
  const int before = server_.hits();
  auto [code, why] = Run("ops", url);
  EXPECT_EQ(code, 0) << why;
  EXPECT_EQ(server_.hits(), before + 1);
  // The same host with curl's globbing: one line would be three requests.
  auto [glob, reason] = Run("ops", absl::StrCat("http://127.0.0.1:", server_.port(), "/[1-3]"));
  EXPECT_EQ(glob, 126);
  EXPECT_THAT(reason, HasSubstr("globbing"));
  auto [brace, why2] = Run("ops", absl::StrCat("http://127.0.0.1:", server_.port(), "/{a,b}"));
  EXPECT_EQ(brace, 126) << why2;
  EXPECT_EQ(server_.hits(), before + 1);
  // Another port of the listed host is refused too.
  auto [other, why3] = Run("ops", absl::StrCat("http://127.0.0.1:", server_.port() + 1, "/"));
  EXPECT_EQ(other, 126);
  EXPECT_THAT(why3, HasSubstr("port"));
}

}  // namespace
}  // namespace podgate
