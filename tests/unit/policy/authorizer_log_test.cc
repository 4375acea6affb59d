// The decision log lines of Authorizer: denials at info with the call's trace, allowances at
// debug only when the service logs at debug level, and the trace asked for only when a line is
// written (a new trace costs random bytes on every unary call otherwise).
#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "policy/authorizer.h"
#include "policy/policy_store.h"
#include "runtime/log.h"

namespace podgate::policy {
namespace {

struct Captured {
  absl::Mutex mu;
  std::vector<nlohmann::json> decisions;
};

void Capture(std::string_view line, void* arg) {
  auto* captured = static_cast<Captured*>(arg);
  nlohmann::json j = nlohmann::json::parse(line, nullptr, false);
  if (!j.is_discarded() && j.value("msg", "") == "decision") {
    absl::MutexLock lock(&captured->mu);
    captured->decisions.push_back(std::move(j));
  }
}

podgate::policy::v1::AuthorizeRequest Request(std::vector<std::string> argv) {
  podgate::policy::v1::AuthorizeRequest r;
  r.mutable_principal()->set_user("ana");
  r.mutable_principal()->add_groups("developers");
  r.mutable_target()->set_namespace_("app-shop");
  r.mutable_target()->set_pod("orders-1");
  r.mutable_target()->set_container("app");
  for (std::string& a : argv) {
    r.mutable_command()->add_argv(std::move(a));
  }
  return r;
}

class AuthorizerLogTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(store_.LoadFile(PODGATE_EXAMPLE_POLICY).ok()); }
  void TearDown() override { log::Init("policy", log::Level::kInfo); }

  // Decides `argv`; returns how often the trace was asked for.
  int Decide(const Authorizer& authorizer, std::vector<std::string> argv, bool allow) {
    int asked = 0;
    const podgate::policy::v1::AuthorizeResponse response =
        authorizer.Authorize(Request(std::move(argv)), [&asked] {
          ++asked;
          return runtime::TraceContext{"0af7651916cd43dd8448eb211c80319c", "b7ad6b7169203331", 1};
        });
    EXPECT_EQ(response.decision().verdict() == podgate::common::v1::VERDICT_ALLOW, allow);
    return asked;
  }

  PolicyStore store_{nullptr, nullptr};
  Captured captured_;
};

TEST_F(AuthorizerLogTest, BelowDebugAnAllowanceBuildsNoLineAndMakesNoTrace) {
  log::InitForTest("policy", log::Level::kInfo, &Capture, &captured_);
  const Authorizer authorizer(&store_, nullptr, /*log_allowed=*/false);
  EXPECT_EQ(Decide(authorizer, {"jps"}, true), 0);
  EXPECT_EQ(Decide(authorizer, {"env", "sh"}, false), 1);
  absl::MutexLock lock(&captured_.mu);
  ASSERT_EQ(captured_.decisions.size(), 1u);
  const nlohmann::json& line = captured_.decisions[0];
  EXPECT_EQ(line["level"], "info");
  EXPECT_EQ(line["verdict"], "deny");
  EXPECT_EQ(line["rule"], "deny-program-runners");
  EXPECT_EQ(line["program"], "env");
  EXPECT_EQ(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
  EXPECT_EQ(line["span_id"], "b7ad6b7169203331");
}

TEST_F(AuthorizerLogTest, AtDebugAnAllowanceIsLoggedWithItsTrace) {
  log::InitForTest("policy", log::Level::kDebug, &Capture, &captured_);
  const Authorizer authorizer(&store_, nullptr, /*log_allowed=*/true);
  EXPECT_EQ(Decide(authorizer, {"jps"}, true), 1);
  absl::MutexLock lock(&captured_.mu);
  ASSERT_EQ(captured_.decisions.size(), 1u);
  const nlohmann::json& line = captured_.decisions[0];
  EXPECT_EQ(line["level"], "debug");
  EXPECT_EQ(line["verdict"], "allow");
  EXPECT_EQ(line["rule"], "dev-jps");
  EXPECT_EQ(line["trace_id"], "0af7651916cd43dd8448eb211c80319c");
}

}  // namespace
}  // namespace podgate::policy
