#include "k8s/names.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

namespace podgate::k8s {
namespace {

using ::testing::HasSubstr;

TEST(NamesTest, LabelIsWhatKubernetesTakesForNamespacesAndContainers) {
  for (const std::string& ok :
       {std::string("a"), std::string("web-1"), std::string("0"), std::string(63, 'a')}) {
    EXPECT_TRUE(IsDns1123Label(ok)) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string(64, 'a'), std::string(253, 'a'), std::string("a.b"),
        std::string("Web"), std::string("-a"), std::string("a-"), std::string("a_b"),
        std::string("a/b"), std::string("../x"), std::string("a b"), std::string("a\0b", 3)}) {
    EXPECT_FALSE(IsDns1123Label(bad)) << bad;
  }
}

TEST(NamesTest, SubdomainIsWhatKubernetesTakesForPods) {
  std::string long_ok = std::string(63, 'a') + "." + std::string(63, 'b') + "." +
                        std::string(63, 'c') + "." + std::string(61, 'd');
  ASSERT_EQ(long_ok.size(), 253u);
  for (const std::string& ok : {std::string("web-1"), std::string("a.b"), std::string("a-b.c-d"),
                                std::string(253, 'a'), long_ok}) {
    EXPECT_TRUE(IsDns1123Subdomain(ok)) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string(254, 'a'), long_ok + "e", std::string("a..b"),
        std::string(".a"), std::string("a."), std::string("a-.b"), std::string("a.-b"),
        std::string("A.b"), std::string("a_b"), std::string("../x")}) {
    EXPECT_FALSE(IsDns1123Subdomain(bad)) << bad;
  }
}

TEST(NamesTest, TargetErrorsNameTheFieldAndTheRule) {
  EXPECT_TRUE(ValidateTarget("demo", "web-1.x", "").ok());
  EXPECT_TRUE(ValidateTarget("demo", "web-1", "app").ok());

  const absl::Status ns = ValidateTarget(std::string(253, 'a'), "web-1", "");
  EXPECT_EQ(ns.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(ns.message(), HasSubstr("namespace \"aaaa"));
  EXPECT_THAT(ns.message(), HasSubstr("(253 characters)"));
  EXPECT_THAT(ns.message(), HasSubstr("DNS-1123 label is at most 63 characters"));

  const absl::Status container = ValidateTarget("demo", "web-1", std::string(64, 'c'));
  EXPECT_THAT(container.message(), HasSubstr("container \""));
  EXPECT_THAT(container.message(), HasSubstr("DNS-1123 label"));

  const absl::Status pod = ValidateTarget("demo", "a..b", "");
  EXPECT_THAT(pod.message(), HasSubstr("pod \"a..b\""));
  EXPECT_THAT(pod.message(), HasSubstr("DNS-1123 subdomain is at most 253 characters"));
}

TEST(NamesTest, ClusterNamesAreLabelsAndErrorsNameTheCluster) {
  EXPECT_TRUE(ValidateClusterName("prod-eu-1").ok());
  EXPECT_TRUE(ValidateClusterName(std::string(63, 'c')).ok());
  for (const std::string& bad :
       std::vector<std::string>{"", "Prod", "prod.eu", "-prod", "prod_eu", std::string(64, 'c')}) {
    const absl::Status s = ValidateClusterName(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("cluster \"")) << bad;
    EXPECT_THAT(s.message(), HasSubstr("DNS-1123 label")) << bad;
  }
  // As a request gives it: empty means the default, anything else must be a name.
  EXPECT_TRUE(ValidateTargetCluster("").ok());
  EXPECT_TRUE(ValidateTargetCluster("prod-eu-1").ok());
  EXPECT_EQ(ValidateTargetCluster("Prod").code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace podgate::k8s
