// edge's descriptor limit (descriptors.h): the soft limit is raised to the hard one.
#include "edge/descriptors.h"

#include <sys/resource.h>

#include "gtest/gtest.h"

namespace podgate::edge {
namespace {

TEST(DescriptorsTest, RaisesTheSoftLimitToTheHardLimit) {
  rlimit original{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &original), 0);
  if (original.rlim_max == RLIM_INFINITY || original.rlim_max < 128) {
    GTEST_SKIP() << "needs a finite hard limit of at least 128";
  }
  rlimit lowered = original;
  lowered.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &lowered), 0);

  absl::StatusOr<DescriptorLimit> raised = RaiseDescriptorLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->before, 64u);
  EXPECT_EQ(raised->soft, original.rlim_max);
  EXPECT_EQ(raised->hard, original.rlim_max);
  rlimit now{};
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &now), 0);
  EXPECT_EQ(now.rlim_cur, original.rlim_max);

  // Already at the hard limit: nothing changes.
  raised = RaiseDescriptorLimit();
  ASSERT_TRUE(raised.ok()) << raised.status();
  EXPECT_EQ(raised->before, original.rlim_max);
  EXPECT_EQ(raised->soft, original.rlim_max);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &original), 0);
}

TEST(DescriptorsTest, NeedsOnePerConnectionAndARoomForTheRest) {
  EXPECT_EQ(DescriptorsNeeded(10000 + 1000 + 256), 11256u + 128u);
  EXPECT_GT(DescriptorsNeeded(0), 0u);
}

}  // namespace
}  // namespace podgate::edge
