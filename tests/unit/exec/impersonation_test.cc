// Impersonation on exec's side: the mode's parser, the principal's mapping (prefixes, groups,
// the session extra, system: names and control characters refused), the headers a request
// carries, and what a 403 means once exec impersonates (the user refused, or exec itself not
// allowed to impersonate).
#include "exec/impersonation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <future>

#include "exec/access_cache.h"
#include "exec/kube.h"
#include "exec/kube_client.h"
#include "fake_kube.h"

namespace podgate::exec {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Pair = std::pair<std::string, std::string>;

TEST(ImpersonationMode, ParsesTheThreeModesOnly) {
  EXPECT_EQ(*ParseImpersonationMode("off"), ImpersonationMode::kOff);
  EXPECT_EQ(*ParseImpersonationMode("user"), ImpersonationMode::kUser);
  EXPECT_EQ(*ParseImpersonationMode("user+groups"), ImpersonationMode::kUserAndGroups);
  for (const char* bad : {"", "User", "groups", "user+group", "on", "user groups"}) {
    absl::StatusOr<ImpersonationMode> m = ParseImpersonationMode(bad);
    ASSERT_FALSE(m.ok()) << bad;
    EXPECT_THAT(m.status().message(), HasSubstr("not one of off, user, user+groups"));
  }
  EXPECT_STREQ(ImpersonationModeName(ImpersonationMode::kUserAndGroups), "user+groups");
}

TEST(MapIdentity, OffIsExecItself) {
  absl::StatusOr<KubeIdentity> id = MapIdentity({}, "alice", {"devs"}, "s-1");
  ASSERT_TRUE(id.ok());
  EXPECT_TRUE(id->empty());
  EXPECT_TRUE(id->groups.empty());
  EXPECT_TRUE(id->extra.empty());
}

TEST(MapIdentity, UserModeSendsTheUserAndSessionButNoGroups) {
  ImpersonationOptions o{ImpersonationMode::kUser, "oidc:", "grp:", true};
  absl::StatusOr<KubeIdentity> id = MapIdentity(o, "alice", {"devs", "ops"}, "s-1");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->user, "oidc:alice");
  EXPECT_TRUE(id->groups.empty());
  EXPECT_THAT(id->extra, ElementsAre(Pair{"podgate-session", "s-1"}));
  o.session_extra = false;
  EXPECT_TRUE(MapIdentity(o, "alice", {}, "s-1")->extra.empty());
  // No session (ListTargets): no extra.
  o.session_extra = true;
  EXPECT_TRUE(MapIdentity(o, "alice", {}, "")->extra.empty());
}

// The credential's subject becomes Impersonate-Uid only when asked for, never prefixed, and a
// subject with a control character is refused like a name.
TEST(MapIdentity, TheSubjectIsTheUidWhenAskedFor) {
  ImpersonationOptions o{ImpersonationMode::kUser, "oidc:", "", false};
  EXPECT_EQ(MapIdentity(o, "alice@example.com", {}, "s", "248289761001")->uid, "");
  o.uid = true;
  absl::StatusOr<KubeIdentity> id = MapIdentity(o, "alice@example.com", {}, "s", "248289761001");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->user, "oidc:alice@example.com");
  EXPECT_EQ(id->uid, "248289761001");
  EXPECT_EQ(MapIdentity(o, "alice", {}, "s", "")->uid, "");
  EXPECT_EQ(MapIdentity(o, "alice", {}, "s", "a\r\nImpersonate-User: root").status().code(),
            absl::StatusCode::kPermissionDenied);
  std::vector<std::pair<std::string, std::string>> headers;
  ASSERT_TRUE(ImpersonationHeaders(*id, &headers).ok());
  EXPECT_THAT(headers, ::testing::Contains(Pair{"Impersonate-Uid", "248289761001"}));
}

TEST(MapIdentity, UserAndGroupsPrefixesEachGroup) {
  ImpersonationOptions o{ImpersonationMode::kUserAndGroups, "", "oidc:", true};
  absl::StatusOr<KubeIdentity> id = MapIdentity(o, "alice", {"devs", "ops"}, "s-1");
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(id->user, "alice");
  EXPECT_THAT(id->groups, ElementsAre("oidc:devs", "oidc:ops"));
}

TEST(MapIdentity, RefusesSystemNamesEmptyNamesAndControlCharacters) {
  ImpersonationOptions o{ImpersonationMode::kUserAndGroups, "", "", true};
  struct Case {
    std::string user;
    std::vector<std::string> groups;
    const char* error;
  };
  for (const Case& c : std::vector<Case>{
           {"system:admin", {}, "one of Kubernetes' own"},
           {"system:serviceaccount:kube-system:default", {}, "one of Kubernetes' own"},
           {"alice", {"system:masters"}, "group \"system:masters\""},
           {"", {}, "empty"},
           {"alice", {""}, "group name to show Kubernetes is empty"},
           {"al\r\nice", {}, "control character"},
           {"alice", {"devs\nImpersonate-Group: system:masters"}, "control character"},
       }) {
    absl::StatusOr<KubeIdentity> id = MapIdentity(o, c.user, c.groups, "s");
    ASSERT_FALSE(id.ok()) << c.user;
    EXPECT_EQ(id.status().code(), absl::StatusCode::kPermissionDenied);
    EXPECT_THAT(id.status().message(), HasSubstr(c.error)) << c.user;
  }
  // A prefix keeps a token's names out of system:.
  ImpersonationOptions prefixed{ImpersonationMode::kUserAndGroups, "oidc:", "oidc:", true};
  EXPECT_TRUE(MapIdentity(prefixed, "system:admin", {"system:masters"}, "s").ok());
}

TEST(ImpersonationHeaders, OneHeaderPerUserGroupAndExtra) {
  std::vector<Pair> headers;
  ASSERT_TRUE(ImpersonationHeaders({}, &headers).ok());
  EXPECT_TRUE(headers.empty());
  KubeIdentity id{"oidc:alice", {"oidc:devs", "oidc:ops"}, {{"podgate-session", "s-1"}}, ""};
  ASSERT_TRUE(ImpersonationHeaders(id, &headers).ok());
  EXPECT_THAT(headers, ElementsAre(Pair{"Impersonate-User", "oidc:alice"},
                                   Pair{"Impersonate-Group", "oidc:devs"},
                                   Pair{"Impersonate-Group", "oidc:ops"},
                                   Pair{"Impersonate-Extra-podgate-session", "s-1"}));
}

TEST(ImpersonationHeaders, RefusesWhatCannotBeAHeader) {
  std::vector<Pair> headers;
  EXPECT_EQ(ImpersonationHeaders({"a\nb", {}, {}, ""}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {"g\r"}, {}, ""}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"Bad Key", "v"}}, ""}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"k", "v\x7f"}}, ""}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"", "v"}}, ""}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
}

std::string Forbidden(const std::string& message) {
  return R"({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":")" +
         message + R"(","reason":"Forbidden","code":403})";
}

TEST(ApiErrorWhenImpersonating, A403ForTheUserIsAKubernetesRbacDenial) {
  const std::string body = Forbidden(
      R"(pods \"x\" is forbidden: User \"alice\" cannot create resource \"pods/exec\" in API group \"\" in the namespace \"ns\")");
  absl::Status s = ApiError(403, body, "exec refused", true);
  EXPECT_TRUE(IsKubernetesRbacDenial(s));
  EXPECT_EQ(s.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(s.message(), HasSubstr("Kubernetes RBAC refused it for you: pods \"x\" is "
                                     "forbidden: User \"alice\" cannot create"));
  // Without impersonation the same 403 is exec's own problem, not the user's denial.
  absl::Status own = ApiError(403, body, "exec refused", false);
  EXPECT_EQ(own.code(), absl::StatusCode::kPermissionDenied);
  EXPECT_FALSE(IsKubernetesRbacDenial(own));
  EXPECT_FALSE(IsKubernetesRbacDenial(absl::PermissionDeniedError("policy says no")));
  // A 403 without a Status body is still the user's denial.
  EXPECT_TRUE(IsKubernetesRbacDenial(ApiError(403, "", "GET /x", true)));
}

TEST(ApiErrorWhenImpersonating, ARefusedImpersonationIsAConfigurationError) {
  absl::Status s = ApiError(
      403,
      Forbidden(
          R"(users \"alice\" is forbidden: User \"system:serviceaccount:podgate:podgate-exec\" cannot impersonate resource \"users\" in API group \"\" at the cluster scope)"),
      "GET /api/v1/namespaces/ns/pods/x", true);
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_FALSE(IsKubernetesRbacDenial(s));
  EXPECT_THAT(s.message(), HasSubstr("exec's Kubernetes identity may not impersonate this user"));
  EXPECT_THAT(s.message(), HasSubstr("cannot impersonate resource \"users\""));
  EXPECT_THAT(s.message(), HasSubstr("grant it the impersonate verb"));
}

TEST(CheckImpersonationGrant, OffAsksNothing) {
  testing::FakeKube kube;
  EXPECT_TRUE(CheckImpersonationGrant(&kube, {}, absl::Seconds(2)).ok());
  EXPECT_TRUE(kube.callers().empty());
}

TEST(CheckImpersonationGrant, ASessionExtraGrantIsConclusive) {
  testing::FakeKube kube;
  ImpersonationOptions o{ImpersonationMode::kUser, "", "", true};
  EXPECT_TRUE(CheckImpersonationGrant(&kube, o, absl::Seconds(2)).ok());
  EXPECT_THAT(kube.callers(), ElementsAre(""));  // asked as exec itself
  kube.DenyReviewsIn("");                        // cluster scope: no
  absl::Status s = CheckImpersonationGrant(&kube, o, absl::Seconds(2));
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("may not impersonate"));
  EXPECT_THAT(s.message(), HasSubstr("grant it the impersonate verb"));
  // Without the extra, "no" to a nameless users review may be resourceNames: only a warning.
  o.session_extra = false;
  EXPECT_EQ(CheckImpersonationGrant(&kube, o, absl::Seconds(2)).code(), absl::StatusCode::kUnknown);
}

// A KubeApi whose reviews fail, or never answer.
class BrokenReviews final : public KubeApi {
 public:
  explicit BrokenReviews(bool answer) : answer_(answer) {}
  void GetPod(const KubeIdentity&, const std::string&, const std::string&,
              std::function<void(absl::StatusOr<PodView>)>) override {}
  void ListPods(const KubeIdentity&, const std::string&,
                std::function<void(absl::StatusOr<std::vector<PodView>>)>) override {}
  void CheckHealth(std::function<void(absl::Status)> done) override { done(absl::OkStatus()); }
  void ReviewAccess(const KubeIdentity&, const AccessQuery&,
                    std::function<void(absl::StatusOr<bool>)> done) override {
    ++reviews;
    if (answer_) {
      done(absl::UnavailableError("connection refused"));
    } else {
      held_ = std::move(done);
    }
  }
  std::unique_ptr<ExecHandle> Exec(const ExecSpec&, std::shared_ptr<ExecObserver>) override {
    return nullptr;
  }
  int reviews = 0;

 private:
  const bool answer_;
  std::function<void(absl::StatusOr<bool>)> held_;
};

TEST(CheckImpersonationGrant, AnUnansweredReviewIsUnavailable) {
  ImpersonationOptions o{ImpersonationMode::kUser, "", "", true};
  BrokenReviews failing(true);
  EXPECT_EQ(CheckImpersonationGrant(&failing, o, absl::Seconds(2)).code(),
            absl::StatusCode::kUnavailable);
  BrokenReviews silent(false);
  EXPECT_EQ(CheckImpersonationGrant(&silent, o, absl::Milliseconds(50)).code(),
            absl::StatusCode::kUnavailable);
}

absl::StatusOr<bool> MayExec(AccessCache& cache, const KubeIdentity& as, const std::string& ns) {
  std::promise<absl::StatusOr<bool>> answer;
  cache.MayExec(as, ns, [&](absl::StatusOr<bool> a) { answer.set_value(a); });
  return answer.get_future().get();
}

TEST(AccessCache, CachesAnswersPerIdentityAndNamespaceForItsTtl) {
  testing::FakeKube kube;
  kube.DenyReviewsIn("prod");
  absl::Time now = absl::FromUnixSeconds(1000);
  AccessCache cache(&kube, absl::Seconds(30), 10000, [&] { return now; });
  const KubeIdentity alice{"alice", {"devs"}, {{"podgate-session", "s-1"}}, ""};
  EXPECT_EQ(*MayExec(cache, alice, "team"), true);
  EXPECT_EQ(*MayExec(cache, alice, "prod"), false);
  EXPECT_EQ(kube.callers().size(), 2u);
  // Cached: another session of the same identity asks nothing.
  const KubeIdentity alice_again{"alice", {"devs"}, {{"podgate-session", "s-2"}}, ""};
  EXPECT_EQ(*MayExec(cache, alice_again, "team"), true);
  EXPECT_EQ(kube.callers().size(), 2u);
  // Other groups are another identity.
  EXPECT_EQ(*MayExec(cache, KubeIdentity{"alice", {"ops"}, {}, ""}, "team"), true);
  EXPECT_EQ(kube.callers().size(), 3u);
  now += absl::Seconds(31);
  EXPECT_EQ(*MayExec(cache, alice, "team"), true);
  EXPECT_EQ(kube.callers().size(), 4u) << "a stale answer is asked again";
}

TEST(AccessCache, ErrorsAreNotCachedAndTheSizeIsBounded) {
  BrokenReviews failing(true);
  AccessCache cache(&failing, absl::Seconds(30), 2);
  EXPECT_FALSE(MayExec(cache, {"alice", {}, {}, ""}, "team").ok());
  EXPECT_FALSE(MayExec(cache, {"alice", {}, {}, ""}, "team").ok());
  EXPECT_EQ(failing.reviews, 2);
  EXPECT_EQ(cache.size(), 0u);
  testing::FakeKube kube;
  AccessCache small(&kube, absl::Seconds(30), 2);
  for (const char* ns : {"a", "b", "c"}) {
    EXPECT_TRUE(*MayExec(small, {"alice", {}, {}, ""}, ns));
  }
  EXPECT_LE(small.size(), 2u);
}

}  // namespace
}  // namespace podgate::exec
