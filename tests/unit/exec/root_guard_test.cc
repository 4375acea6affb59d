// The root guard against the in-memory KubeApi: what the pod spec declares decides without a
// probe; otherwise `id -u` in the container does, cached per (pod uid, container); a uid that
// cannot be determined counts as root.
#include <future>
#include <string>

#include "exec/container_probe.h"
#include "exec/exec_metrics.h"
#include "exec/session_open.h"
#include "fake_kube.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::exec {
namespace {

using testing::FakeKube;
using ::testing::HasSubstr;

PodView Pod(const std::string& uid = "uid-1") {
  PodView pod;
  pod.namespace_name = "app";
  pod.name = "api-0";
  pod.uid = uid;
  pod.phase = "Running";
  pod.containers.push_back({"main", "busybox", {}});
  pod.containers.push_back({"side", "busybox", {}});
  return pod;
}

class RootGuardTest : public ::testing::Test {
 protected:
  RootGuard& guard() { return guard_; }

  absl::Status Check(const PodView& pod, const std::string& container, bool root_allowed) {
    std::promise<absl::Status> answer;
    // A fresh Status, not a copy: a copy shares its message with the guard's thread through
    // abseil's uninstrumented refcount, and TSan then sees the last owner's free race this
    // thread's read.
    guard_.Check(KubeIdentity{}, pod, container, root_allowed, [&answer](absl::Status s) {
      answer.set_value(absl::Status(s.code(), std::string(s.message())));
    });
    std::future<absl::Status> f = answer.get_future();
    if (f.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      return absl::DeadlineExceededError("the root guard never answered");
    }
    return f.get();
  }

  double Count(const std::string& result) {
    return metrics_.root_guard_total.Add({{"result", result}}).Value();
  }

  int Probes() {
    int n = 0;
    for (const ExecSpec& spec : kube_.execs()) {
      n += spec.argv == UidProbeArgv() ? 1 : 0;
    }
    return n;
  }

  prometheus::Registry registry_;
  ExecMetrics metrics_{registry_};
  // The fake API server outlives the timer thread: a probe's deadline firing as the test ends
  // closes its stream into the fake from that thread.
  FakeKube kube_;
  runtime::TimerQueue timers_;
  absl::Duration ttl_ = absl::Minutes(10);
  RootGuard guard_{&kube_, &timers_, &metrics_, absl::Seconds(2), ttl_};
};

TEST_F(RootGuardTest, AContainerRunningAsAUserIsAllowedAfterOneProbe) {
  kube_.SetUid(1000);
  EXPECT_TRUE(Check(Pod(), "main", false).ok());
  ASSERT_EQ(kube_.execs().size(), 1u);
  const ExecSpec spec = kube_.execs()[0];
  EXPECT_EQ(spec.namespace_name, "app");
  EXPECT_EQ(spec.pod, "api-0");
  EXPECT_EQ(spec.container, "main");
  EXPECT_EQ(spec.argv, UidProbeArgv());
  EXPECT_FALSE(spec.stdin);
  EXPECT_FALSE(spec.tty);
  EXPECT_EQ(Count("allowed"), 1);
}

TEST_F(RootGuardTest, RootIsRefusedUnlessTheRuleAllowsIt) {
  kube_.SetUid(0);
  absl::Status s = Check(Pod(), "main", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("container main runs as root (uid 0) and the rule does not allow root"));
  EXPECT_EQ(Count("root_denied"), 1);
  // Cached: the rule that allows root gets its answer without a second probe.
  EXPECT_TRUE(Check(Pod(), "main", true).ok());
  EXPECT_EQ(Count("root_allowed"), 1);
  EXPECT_EQ(Probes(), 1);
}

TEST_F(RootGuardTest, ADeclaredRootIsRefusedWithoutAnyProbe) {
  PodView pod = Pod();
  pod.security.run_as_user = 0;
  absl::Status s = Check(pod, "main", false);
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()),
              HasSubstr("is declared to run as root (securityContext.runAsUser: 0)"));
  EXPECT_EQ(Count("declared_root_denied"), 1);
  // runAsNonRoot with runAsUser 0 is named (the kubelet would refuse to start it).
  pod.containers[0].security.run_as_non_root = true;
  s = Check(pod, "main", false);
  EXPECT_THAT(std::string(s.message()), HasSubstr("with runAsNonRoot: true"));
  // A rule that allows root lets it in, still without a probe.
  EXPECT_TRUE(Check(pod, "main", true).ok());
  EXPECT_EQ(kube_.execs().size(), 0u);
}

TEST_F(RootGuardTest, TheContainersOwnSecurityContextOverridesThePods) {
  PodView pod = Pod();
  pod.security.run_as_user = 0;
  pod.containers[1].security.run_as_user = 1000;  // "side" overrides the pod's root
  kube_.SetUid(1000);
  EXPECT_TRUE(Check(pod, "side", false).ok());
  EXPECT_EQ(Probes(), 1);  // declared non-root is still probed
  pod.security.run_as_user = 1000;
  pod.containers[0].security.run_as_user = 0;  // "main" declares root itself
  EXPECT_EQ(Check(pod, "main", false).code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Probes(), 1);
}

TEST_F(RootGuardTest, AUidThatCannotBeDeterminedCountsAsRoot) {
  struct Case {
    FakeKube::Run run;
    const char* why;
  };
  FakeKube::Run garbage;
  garbage.stdout_text = "uid=1000\n";
  FakeKube::Run failed;
  failed.exit_code = 1;
  failed.stderr_text = "id: not found\n";
  FakeKube::Run broken;
  broken.stream_error = absl::UnavailableError("the API server went away");
  int pod = 0;
  for (const Case& c : {Case{garbage, ""}, Case{failed, "`id -u` exited with status 1"},
                        Case{broken, "the API server went away"}}) {
    kube_.SetProgram([run = c.run](const std::vector<std::string>&) { return run; });
    const PodView p = Pod(absl::StrCat("uid-", pod++));
    absl::Status s = Check(p, "main", false);
    EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(std::string(s.message()), HasSubstr("the container's uid could not be determined"));
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.why));
    EXPECT_THAT(std::string(s.message()), HasSubstr("so it is treated as root"));
    // Not cached: the next check probes again, and a rule allowing root gets in.
    EXPECT_TRUE(Check(p, "main", true).ok());
  }
  EXPECT_EQ(Count("unknown_denied"), 3);
  EXPECT_EQ(Probes(), 6);
}

TEST_F(RootGuardTest, AProbeThatNeverAnswersIsRefusedAtItsDeadline) {
  RootGuard quick(&kube_, &timers_, &metrics_, absl::Milliseconds(200), ttl_);
  kube_.SetProgram([](const std::vector<std::string>&) {
    FakeKube::Run run;
    run.hang = true;
    return run;
  });
  std::promise<absl::Status> answer;
  // A fresh Status, as Check() above hands it over: a copy would share its message with the
  // timer thread through abseil's uninstrumented refcount (a TSan report).
  quick.Check(KubeIdentity{}, Pod(), "main", false, [&answer](absl::Status s) {
    answer.set_value(absl::Status(s.code(), std::string(s.message())));
  });
  std::future<absl::Status> f = answer.get_future();
  ASSERT_EQ(f.wait_for(std::chrono::seconds(5)), std::future_status::ready);
  absl::Status s = f.get();
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(s.message()), HasSubstr("no answer within 200ms"));
}

TEST_F(RootGuardTest, TheUidIsCachedPerPodUidAndContainerForItsTtl) {
  kube_.SetUid(1000);
  EXPECT_TRUE(Check(Pod("uid-1"), "main", false).ok());
  EXPECT_TRUE(Check(Pod("uid-1"), "main", false).ok());
  EXPECT_EQ(Probes(), 1);
  EXPECT_TRUE(Check(Pod("uid-1"), "side", false).ok());  // another container
  EXPECT_TRUE(Check(Pod("uid-2"), "main", false).ok());  // the pod was recreated
  EXPECT_EQ(Probes(), 3);
  EXPECT_EQ(guard().CachedUid("uid-1/main"), 1000);
  EXPECT_EQ(guard().CachedUid("uid-3/main"), std::nullopt);
  // A stale entry is probed again.
  RootGuard no_cache(&kube_, &timers_, &metrics_, absl::Seconds(2), absl::ZeroDuration());
  no_cache.CacheUid("uid-1/main", 1000);
  absl::SleepFor(absl::Milliseconds(2));
  EXPECT_EQ(no_cache.CachedUid("uid-1/main"), std::nullopt);
}

}  // namespace
}  // namespace podgate::exec
