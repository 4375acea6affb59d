// The export configuration (--export_config): a JSON file in the protobuf JSON mapping of
// podgate.audit.v1.ExportConfig, checked as a whole at start-up. An error is one line naming the
// sink and the field ("export config: sink siem: max_wait: ...").
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "podgate/audit/v1/export.pb.h"

namespace podgate::audit::exporting {

// Sinks in one configuration, at most.
inline constexpr int kMaxSinks = 16;

// One sink's settings with the defaults filled in and the durations parsed.
struct SinkSettings {
  podgate::audit::v1::SinkConfig config;  // as written (the sink factory reads its kind)
  std::string name;
  int max_batch = 400;
  absl::Duration max_wait = absl::Seconds(1);
  absl::Duration initial_backoff = absl::Milliseconds(200);
  absl::Duration max_backoff = absl::Seconds(30);
  int64_t blocking_max_lag_records = 0;
};

// Parses and checks a configuration's JSON text.
absl::StatusOr<std::vector<SinkSettings>> ParseExportConfig(absl::string_view json);

// Reads the file at `path` and parses it.
absl::StatusOr<std::vector<SinkSettings>> LoadExportConfig(const std::string& path);

}  // namespace podgate::audit::exporting
