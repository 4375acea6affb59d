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

}  // namespace podgate::testing
