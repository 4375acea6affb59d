// Impersonation on exec's side: the mode's parser, the principal's mapping (prefixes, groups,
// the session extra, system: names and control characters refused), the headers a request
// carries, and what a 403 means once exec impersonates (the user refused, or exec itself not
// allowed to impersonate).
#include "exec/impersonation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "exec/kube.h"
#include "exec/kube_client.h"

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
  KubeIdentity id{"oidc:alice", {"oidc:devs", "oidc:ops"}, {{"podgate-session", "s-1"}}};
  ASSERT_TRUE(ImpersonationHeaders(id, &headers).ok());
  EXPECT_THAT(headers, ElementsAre(Pair{"Impersonate-User", "oidc:alice"},
                                   Pair{"Impersonate-Group", "oidc:devs"},
                                   Pair{"Impersonate-Group", "oidc:ops"},
                                   Pair{"Impersonate-Extra-podgate-session", "s-1"}));
}

TEST(ImpersonationHeaders, RefusesWhatCannotBeAHeader) {
  std::vector<Pair> headers;
  EXPECT_EQ(ImpersonationHeaders({"a\nb", {}, {}}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {"g\r"}, {}}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"Bad Key", "v"}}}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"k", "v\x7f"}}}, &headers).code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ImpersonationHeaders({"a", {}, {{"", "v"}}}, &headers).code(),
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

}  // namespace
}  // namespace podgate::exec
