// Stand-ins for the webhook and syslog sinks until they are merged (the merger deletes this file).
#include "absl/strings/str_cat.h"
#include "audit/export/sink.h"

namespace podgate::audit::exporting {

absl::StatusOr<std::unique_ptr<Sink>> MakeWebhookSink(
    const podgate::audit::v1::SinkConfig& config) {
  return absl::UnimplementedError(
      absl::StrCat("sink ", config.name(), ": webhook sinks are not built yet"));
}

absl::StatusOr<std::unique_ptr<Sink>> MakeSyslogSink(const podgate::audit::v1::SinkConfig& config) {
  return absl::UnimplementedError(
      absl::StrCat("sink ", config.name(), ": syslog sinks are not built yet"));
}

}  // namespace podgate::audit::exporting
