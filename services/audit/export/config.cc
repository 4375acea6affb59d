#include "audit/export/config.h"

#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace podgate::audit::exporting {
namespace {

using podgate::audit::v1::SinkConfig;

absl::Status Bad(absl::string_view sink, absl::string_view field, absl::string_view problem) {
  return absl::InvalidArgumentError(
      absl::StrCat("export config: sink ", sink, ": ", field, ": ", problem));
}

bool IsDns1123Label(const std::string& name) {
  if (name.empty() || name.size() > 63) {
    return false;
  }
  for (char c : name) {
    if (!absl::ascii_islower(c) && !absl::ascii_isdigit(c) && c != '-') {
      return false;
    }
  }
  return name.front() != '-' && name.back() != '-';
}

// A duration field: empty means `fallback`; otherwise within [min, max].
absl::Status ParseBounded(const std::string& sink, const char* field, const std::string& text,
                          absl::Duration fallback, absl::Duration min, absl::Duration max,
                          absl::Duration* out) {
  if (text.empty()) {
    *out = fallback;
    return absl::OkStatus();
  }
  absl::Duration d;
  if (!absl::ParseDuration(text, &d)) {
    return Bad(sink, field,
               absl::StrCat("\"", text, "\" is not a duration (e.g. \"500ms\", \"2s\")"));
  }
  if (d < min || d > max) {
    return Bad(sink, field,
               absl::StrCat(text, " is out of range (", absl::FormatDuration(min), " to ",
                            absl::FormatDuration(max), ")"));
  }
  *out = d;
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::vector<SinkSettings>> ParseExportConfig(absl::string_view json) {
  podgate::audit::v1::ExportConfig config;
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  const std::string text(json);
  if (auto s = google::protobuf::util::JsonStringToMessage(text, &config, options); !s.ok()) {
    // The parser's message may span lines; start-up errors are one line.
    std::string message(s.message().data(), s.message().size());
    for (char& c : message) {
      if (c == '\n' || c == '\r') {
        c = ' ';
      }
    }
    return absl::InvalidArgumentError(absl::StrCat("export config: ", message));
  }
  if (config.sinks_size() > kMaxSinks) {
    return absl::InvalidArgumentError(
        absl::StrCat("export config: ", config.sinks_size(), " sinks, at most ", kMaxSinks));
  }
  std::vector<SinkSettings> out;
  std::set<std::string> names;
  for (int i = 0; i < config.sinks_size(); ++i) {
    const SinkConfig& sink = config.sinks(i);
    const std::string label =
        sink.name().empty() ? absl::StrCat("#", i + 1) : sink.name().substr(0, 63);
    if (!IsDns1123Label(sink.name())) {
      return Bad(label, "name",
                 "must be a DNS-1123 label (lower-case letters, digits and '-', at most 63)");
    }
    if (!names.insert(sink.name()).second) {
      return Bad(label, "name", "used by another sink");
    }
    SinkSettings settings;
    settings.config = sink;
    settings.name = sink.name();
    if (sink.kind_case() == SinkConfig::KIND_NOT_SET) {
      return Bad(label, "kind", "unknown sink type (set one of webhook, syslog, file)");
    }
    if (sink.max_batch() != 0) {
      if (sink.max_batch() < 1 || sink.max_batch() > 10000) {
        return Bad(label, "max_batch",
                   absl::StrCat(sink.max_batch(), " is out of range (1 to 10000)"));
      }
      settings.max_batch = sink.max_batch();
    }
    if (absl::Status s = ParseBounded(label, "max_wait", sink.max_wait(), absl::Seconds(1),
                                      absl::ZeroDuration(), absl::Minutes(1), &settings.max_wait);
        !s.ok()) {
      return s;
    }
    if (settings.max_wait == absl::ZeroDuration()) {
      settings.max_wait = absl::Seconds(1);  // "0 means 1s"
    }
    if (absl::Status s =
            ParseBounded(label, "initial_backoff", sink.initial_backoff(), absl::Milliseconds(200),
                         absl::Milliseconds(1), absl::Minutes(10), &settings.initial_backoff);
        !s.ok()) {
      return s;
    }
    if (absl::Status s = ParseBounded(label, "max_backoff", sink.max_backoff(), absl::Seconds(30),
                                      absl::Milliseconds(1), absl::Hours(1), &settings.max_backoff);
        !s.ok()) {
      return s;
    }
    if (settings.max_backoff < settings.initial_backoff) {
      return Bad(label, "max_backoff", "is shorter than initial_backoff");
    }
    if (sink.blocking_max_lag_records() < 0) {
      return Bad(label, "blocking_max_lag_records", "must not be negative");
    }
    settings.blocking_max_lag_records = sink.blocking_max_lag_records();
    out.push_back(std::move(settings));
  }
  return out;
}

absl::StatusOr<std::vector<SinkSettings>> LoadExportConfig(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("export config: cannot read ", path));
  }
  std::stringstream text;
  text << in.rdbuf();
  return ParseExportConfig(text.str());
}

}  // namespace podgate::audit::exporting
