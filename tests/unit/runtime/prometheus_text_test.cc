// The test support's reading of histograms from /metrics pages as prometheus-cpp writes them:
// the quantile between two reads that the benchmarks print beside a stage's mean.
#include "support/prometheus_text.h"

#include <string>

#include "gtest/gtest.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"

namespace podgate::testing {
namespace {

class HistogramQuantileTest : public ::testing::Test {
 protected:
  HistogramQuantileTest()
      : family_(prometheus::BuildHistogram()
                    .Name("podgate_test_stage_seconds")
                    .Help("Test stages.")
                    .Register(registry_)),
        policy_(
            family_.Add({{"stage", "policy"}}, prometheus::Histogram::BucketBoundaries{1, 2, 4})),
        launch_(
            family_.Add({{"stage", "launch"}}, prometheus::Histogram::BucketBoundaries{1, 2, 4})) {}

  MetricsPage Read() {
    absl::StatusOr<MetricsPage> page =
        ParsePrometheusText(prometheus::TextSerializer().Serialize(registry_.Collect()));
    EXPECT_TRUE(page.ok()) << page.status();
    return page.ok() ? *page : MetricsPage{};
  }

  void Observe(prometheus::Histogram& h, double value, int times) {
    for (int i = 0; i < times; ++i) {
      h.Observe(value);
    }
  }

  absl::StatusOr<double> Policy(const MetricsPage& before, const MetricsPage& after, double q) {
    return HistogramQuantile(before, after, "podgate_test_stage_seconds", "stage=\"policy\"", q);
  }

  prometheus::Registry registry_;
  prometheus::Family<prometheus::Histogram>& family_;
  prometheus::Histogram& policy_;
  prometheus::Histogram& launch_;
};

TEST_F(HistogramQuantileTest, InterpolatesInsideTheBucketThatHoldsTheRank) {
  const MetricsPage before = Read();
  Observe(policy_, 0.5, 10);
  Observe(policy_, 1.5, 80);
  Observe(policy_, 3, 9);
  Observe(policy_, 10, 1);
  Observe(launch_, 3, 1000);  // another series of the family, not counted
  const MetricsPage after = Read();
  // 100 observations: rank 50 is the 40th of 80 in (1, 2]; rank 99 the last of 9 in (2, 4];
  // rank 5 the 5th of 10 in (0, 1].
  EXPECT_DOUBLE_EQ(*Policy(before, after, 0.5), 1.5);
  EXPECT_DOUBLE_EQ(*Policy(before, after, 0.99), 4);
  EXPECT_DOUBLE_EQ(*Policy(before, after, 0.05), 0.5);
  EXPECT_DOUBLE_EQ(
      *HistogramQuantile(before, after, "podgate_test_stage_seconds", "stage=\"launch\"", 0.5),
      2 + 2 * 0.5);
}

TEST_F(HistogramQuantileTest, CountsOnlyWhatWasObservedBetweenTheReads) {
  Observe(policy_, 3, 1000);  // before the first read: not counted
  const MetricsPage before = Read();
  Observe(policy_, 0.5, 100);
  const MetricsPage after = Read();
  EXPECT_DOUBLE_EQ(*Policy(before, after, 0.99), 0.99);
  // Against an empty first read, every observation counts: rank 990 of 1,100 is in (2, 4].
  EXPECT_DOUBLE_EQ(*Policy(MetricsPage{}, after, 0.9), 2 + 2 * (990.0 - 100) / 1000);
}

TEST_F(HistogramQuantileTest, ARankPastTheHighestBoundIsAnErrorThatNamesIt) {
  const MetricsPage before = Read();
  Observe(policy_, 1.5, 98);
  Observe(policy_, 10, 2);
  const MetricsPage after = Read();
  absl::StatusOr<double> q = Policy(before, after, 0.99);
  ASSERT_EQ(q.status().code(), absl::StatusCode::kOutOfRange) << q.status();
  EXPECT_NE(q.status().message().find("above the highest bound, 4"), std::string::npos)
      << q.status();
  EXPECT_DOUBLE_EQ(*Policy(before, after, 0.98), 2);
}

TEST_F(HistogramQuantileTest, RefusesWhatCannotGiveAQuantile) {
  const MetricsPage before = Read();
  // Nothing observed in between.
  EXPECT_EQ(Policy(before, before, 0.5).status().code(), absl::StatusCode::kFailedPrecondition);
  Observe(policy_, 1.5, 10);
  const MetricsPage after = Read();
  // The reads swapped: counts fell, as after a restart.
  absl::StatusOr<double> fell = Policy(after, before, 0.5);
  EXPECT_EQ(fell.status().code(), absl::StatusCode::kFailedPrecondition) << fell.status();
  EXPECT_NE(fell.status().message().find("fell"), std::string::npos) << fell.status();
  // No such histogram, no such series.
  EXPECT_EQ(HistogramQuantile(before, after, "podgate_missing_seconds", "", 0.5).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(HistogramQuantile(before, after, "podgate_test_stage_seconds", "stage=\"audit\"", 0.5)
                .status()
                .code(),
            absl::StatusCode::kNotFound);
  // Quantiles outside (0, 1).
  for (double q : {0.0, 1.0, -0.5, 2.0}) {
    EXPECT_EQ(Policy(before, after, q).status().code(), absl::StatusCode::kInvalidArgument) << q;
  }
}

TEST_F(HistogramQuantileTest, RefusesBucketsThatAreNotAHistogram) {
  MetricsPage page;
  page.samples["h_bucket{le=\"1\"}"] = 5;
  page.samples["h_bucket{le=\"2\"}"] = 3;  // fewer than the bucket below it
  page.samples["h_bucket{le=\"+Inf\"}"] = 6;
  EXPECT_EQ(HistogramQuantile(MetricsPage{}, page, "h", "", 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  page.samples["h_bucket{le=\"2\"}"] = 5;
  EXPECT_DOUBLE_EQ(*HistogramQuantile(MetricsPage{}, page, "h", "", 0.5), 0.6);
  page.samples.erase("h_bucket{le=\"+Inf\"}");
  EXPECT_EQ(HistogramQuantile(MetricsPage{}, page, "h", "", 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
  page.samples["h_bucket{le=\"+Inf\"}"] = 6;
  page.samples["h_bucket{le=\"soon\"}"] = 6;
  EXPECT_EQ(HistogramQuantile(MetricsPage{}, page, "h", "", 0.5).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace podgate::testing
