// The HTTP server's events as edge's metrics: refusals at accept by reason, accept backoffs.
#include <string>

#include "edge/edge_metrics.h"
#include "gtest/gtest.h"
#include "http/server.h"
#include "prometheus/registry.h"
#include "prometheus/text_serializer.h"
#include "support/prometheus_text.h"

namespace podgate::edge {
namespace {

double Sample(prometheus::Registry& registry, const std::string& name) {
  auto page =
      testing::ParsePrometheusText(prometheus::TextSerializer().Serialize(registry.Collect()));
  EXPECT_TRUE(page.ok()) << page.status();
  auto it = page->samples.find(name);
  return it == page->samples.end() ? -1 : it->second;
}

TEST(ServerEventsTest, RefusalsAreCountedByReasonAndEveryBackoffIsCounted) {
  prometheus::Registry registry;
  EdgeMetrics metrics(registry);
  http::ServerOptions options;
  ReportServerEvents(&metrics, options, absl::Hours(1));
  ASSERT_TRUE(options.on_refusal);
  ASSERT_TRUE(options.on_accept_backoff);
  options.on_refusal("per_source");
  options.on_refusal("per_source");
  options.on_refusal("max_connections");
  EXPECT_EQ(Sample(registry, "podgate_edge_rejections_total{reason=\"per_source\"}"), 2);
  EXPECT_EQ(Sample(registry, "podgate_edge_rejections_total{reason=\"max_connections\"}"), 1);
  // Logged at most once an hour here, counted every time.
  for (int i = 0; i < 5; ++i) {
    options.on_accept_backoff("Too many open files", absl::Milliseconds(10));
  }
  EXPECT_EQ(Sample(registry, "podgate_edge_accept_backoffs_total"), 5);
}

}  // namespace
}  // namespace podgate::edge
