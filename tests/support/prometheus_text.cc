#include "support/prometheus_text.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <set>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/strings/strip.h"
#include "support/http_client.h"

namespace podgate::testing {
namespace {

bool IsMetricName(absl::string_view name) {
  if (name.empty()) {
    return false;
  }
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    const bool ok = std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
                    (i > 0 && std::isdigit(static_cast<unsigned char>(c)));
    if (!ok) {
      return false;
    }
  }
  return true;
}

bool ParseValue(absl::string_view text, double* value) {
  if (text == "+Inf") {
    *value = INFINITY;
    return true;
  }
  if (text == "-Inf") {
    *value = -INFINITY;
    return true;
  }
  if (text == "NaN") {
    *value = NAN;
    return true;
  }
  return absl::SimpleAtod(text, value);
}

// Checks `{a="x",b="y"}` and returns the length consumed.
absl::StatusOr<size_t> ParseLabels(absl::string_view s) {
  size_t i = 1;  // after '{'
  while (i < s.size() && s[i] != '}') {
    size_t start = i;
    while (i < s.size() && s[i] != '=') {
      ++i;
    }
    if (!IsMetricName(s.substr(start, i - start))) {
      return absl::InvalidArgumentError("bad label name");
    }
    if (i + 1 >= s.size() || s[i + 1] != '"') {
      return absl::InvalidArgumentError("label value not quoted");
    }
    i += 2;
    while (i < s.size() && s[i] != '"') {
      if (s[i] == '\\') {
        ++i;
      }
      ++i;
    }
    if (i >= s.size()) {
      return absl::InvalidArgumentError("unterminated label value");
    }
    ++i;
    if (i < s.size() && s[i] == ',') {
      ++i;
    }
  }
  if (i >= s.size()) {
    return absl::InvalidArgumentError("unterminated label set");
  }
  return i + 1;
}

}  // namespace

absl::StatusOr<MetricsPage> ParsePrometheusText(const std::string& text) {
  MetricsPage page;
  if (text.empty()) {
    return absl::InvalidArgumentError("empty page");
  }
  if (text.back() != '\n') {
    return absl::InvalidArgumentError("page does not end with a newline");
  }
  int line_no = 0;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    ++line_no;
    if (line.empty()) {
      continue;
    }
    auto bad = [&](absl::string_view why) {
      return absl::InvalidArgumentError(absl::StrCat("line ", line_no, ": ", why, ": ", line));
    };
    if (line[0] == '#') {
      std::vector<absl::string_view> parts = absl::StrSplit(line, absl::MaxSplits(' ', 3));
      if (parts.size() >= 3 && parts[1] == "TYPE") {
        static const std::set<std::string> kTypes = {"counter", "gauge", "histogram", "summary",
                                                     "untyped"};
        if (parts.size() != 4 || kTypes.count(std::string(parts[3])) == 0) {
          return bad("bad TYPE line");
        }
        if (!IsMetricName(parts[2])) {
          return bad("bad metric name");
        }
        page.types[std::string(parts[2])] = std::string(parts[3]);
      } else if (parts.size() >= 3 && parts[1] == "HELP") {
        if (!IsMetricName(parts[2])) {
          return bad("bad metric name");
        }
      }
      continue;
    }
    size_t name_end = 0;
    while (name_end < line.size() && line[name_end] != '{' && line[name_end] != ' ') {
      ++name_end;
    }
    if (!IsMetricName(line.substr(0, name_end))) {
      return bad("bad metric name");
    }
    size_t key_end = name_end;
    if (name_end < line.size() && line[name_end] == '{') {
      absl::StatusOr<size_t> n = ParseLabels(line.substr(name_end));
      if (!n.ok()) {
        return bad(n.status().message());
      }
      key_end = name_end + *n;
    }
    if (key_end >= line.size() || line[key_end] != ' ') {
      return bad("no value");
    }
    std::vector<absl::string_view> rest =
        absl::StrSplit(line.substr(key_end + 1), ' ', absl::SkipEmpty());
    if (rest.empty() || rest.size() > 2) {
      return bad("want a value and an optional timestamp");
    }
    double value;
    if (!ParseValue(rest[0], &value)) {
      return bad("value is not a number");
    }
    page.samples[std::string(line.substr(0, key_end))] = value;
  }
  return page;
}

double MetricSample(int port, const std::string& sample) {
  absl::StatusOr<HttpResponse> page = HttpGet(port, "/metrics");
  if (!page.ok()) {
    return -1;
  }
  absl::StatusOr<MetricsPage> parsed = ParsePrometheusText(page->body);
  if (!parsed.ok()) {
    return -1;
  }
  auto it = parsed->samples.find(sample);
  return it == parsed->samples.end() ? -1 : it->second;
}

absl::StatusOr<double> HistogramQuantile(const MetricsPage& before, const MetricsPage& after,
                                         const std::string& name, const std::string& labels,
                                         double q) {
  if (!(q > 0 && q < 1)) {
    return absl::InvalidArgumentError(absl::StrCat("quantile ", q, " is not between 0 and 1"));
  }
  const std::string prefix =
      absl::StrCat(name, "_bucket{", labels, labels.empty() ? "" : ",", "le=\"");
  const std::string what = absl::StrCat(name, "{", labels, "}");
  // (upper bound, observations between the two reads), cumulative as exposed.
  std::vector<std::pair<double, double>> buckets;
  for (auto it = after.samples.lower_bound(prefix);
       it != after.samples.end() && absl::StartsWith(it->first, prefix); ++it) {
    absl::string_view bound_text = absl::string_view(it->first).substr(prefix.size());
    double bound = 0;
    if (!absl::ConsumeSuffix(&bound_text, "\"}") || !ParseValue(bound_text, &bound) ||
        std::isnan(bound)) {
      return absl::InvalidArgumentError(absl::StrCat(what, ": bad bucket ", it->first));
    }
    auto earlier = before.samples.find(it->first);
    const double count = it->second - (earlier == before.samples.end() ? 0 : earlier->second);
    if (count < 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(what, ": bucket ", it->first, " fell between the reads (a restart?)"));
    }
    buckets.emplace_back(bound, count);
  }
  if (buckets.empty()) {
    return absl::NotFoundError(absl::StrCat(what, ": no such histogram"));
  }
  std::sort(buckets.begin(), buckets.end());
  if (!std::isinf(buckets.back().first)) {
    return absl::InvalidArgumentError(absl::StrCat(what, ": no +Inf bucket"));
  }
  for (size_t i = 1; i < buckets.size(); ++i) {
    if (buckets[i].second < buckets[i - 1].second) {
      return absl::InvalidArgumentError(
          absl::StrCat(what, ": bucket counts are not cumulative at le=", buckets[i].first));
    }
  }
  const double total = buckets.back().second;
  if (total <= 0) {
    return absl::FailedPreconditionError(absl::StrCat(what, ": no observation between the reads"));
  }
  const double rank = q * total;
  size_t i = 0;
  while (buckets[i].second < rank) {
    ++i;
  }
  if (std::isinf(buckets[i].first)) {
    return absl::OutOfRangeError(
        absl::StrCat(what, ": the ", q, "-quantile is above the highest bound, ",
                     buckets.size() > 1 ? buckets[buckets.size() - 2].first : 0.0));
  }
  const double lower = i == 0 ? 0 : buckets[i - 1].first;
  const double below = i == 0 ? 0 : buckets[i - 1].second;
  return lower + (buckets[i].first - lower) * (rank - below) / (buckets[i].second - below);
}

}  // namespace podgate::testing
