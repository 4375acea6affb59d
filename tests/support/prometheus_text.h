// A strict reader of the Prometheus text exposition format (version 0.0.4), so tests can
// check that a /metrics page is valid and read sample values from it.
#pragma once

#include <map>
#include <string>

#include "absl/status/statusor.h"

namespace podgate::testing {

struct MetricsPage {
  // Sample name with its label set as written (e.g. `x_total{code="OK"}`) → value.
  std::map<std::string, double> samples;
  // Family name → type from its # TYPE line.
  std::map<std::string, std::string> types;
};

// Parses the page; the error names the first bad line and says what is wrong.
absl::StatusOr<MetricsPage> ParsePrometheusText(const std::string& text);

// One sample (`name{labels}` as written) of the /metrics page served on 127.0.0.1:`port`; -1
// when the page cannot be fetched or parsed, or holds no such sample.
double MetricSample(int port, const std::string& sample);

// The q-quantile (0 < q < 1) of what histogram `name` observed between two reads of a page,
// `before` and `after`, in the series whose labels other than `le` are `labels` as written
// (e.g. `stage="policy"`; empty for none). Estimated as Prometheus's histogram_quantile does:
// the bucket holding the rank q * observations, linear inside it, the first bucket starting at
// 0. So it is exact only to the buckets' bounds. Errors: no such histogram in `after`, a bound
// that does not parse, no +Inf bucket, counts not cumulative or fallen since `before` (the
// process restarted), no observation in between, and (OutOfRange) a rank in the +Inf bucket:
// the quantile is then above the highest bound, which the error names.
absl::StatusOr<double> HistogramQuantile(const MetricsPage& before, const MetricsPage& after,
                                         const std::string& name, const std::string& labels,
                                         double q);

}  // namespace podgate::testing
