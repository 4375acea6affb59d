#include "policy/options.h"

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

// The shared server flag (runtime/server_flags.h).
ABSL_DECLARE_FLAG(std::string, log_level);

ABSL_FLAG(std::string, policy_file, "",
          "Path of the policy document (YAML, docs/policy.md), reloaded when it changes. Empty "
          "(default) serves an empty policy that denies everything.");
ABSL_FLAG(absl::Duration, policy_poll_interval, absl::Seconds(1),
          "How often the policy file is also stat()ed for changes, besides inotify, e.g. 1s. "
          "Default 1s.");
ABSL_FLAG(std::string, check, "",
          "Validate this policy document, print its issues as FILE:LINE:COLUMN: SEVERITY: "
          "MESSAGE and exit: 0 valid, 1 invalid, 2 unreadable. Default: empty (serve).");

namespace podgate::policy {

const runtime::ServiceDefaults& PolicyServiceDefaults() {
  static const auto* const kDefaults =
      new runtime::ServiceDefaults{"policy", "[::]:7101", "[::]:9101"};
  return *kDefaults;
}

absl::StatusOr<PolicyOptions> PolicyOptionsFromFlags() {
  PolicyOptions options;
  options.check_file = absl::GetFlag(FLAGS_check);
  if (!options.check_file.empty()) {
    return options;
  }
  absl::StatusOr<runtime::ServerOptions> server =
      runtime::ServerOptionsFromFlags(PolicyServiceDefaults());
  if (!server.ok()) {
    return server.status();
  }
  options.server = *std::move(server);
  options.policy_file = absl::GetFlag(FLAGS_policy_file);
  options.poll_interval = absl::GetFlag(FLAGS_policy_poll_interval);
  // Only a watched file is polled.
  if (!options.policy_file.empty() && options.poll_interval < kMinPollInterval) {
    return absl::InvalidArgumentError(
        "--policy_poll_interval: the poll interval must be at least 10ms");
  }
  options.audit = runtime::AuditPeerFlags();
  if (absl::Status s = log::ParseLevel(absl::GetFlag(FLAGS_log_level), &options.log_level);
      !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--log_level: ", s.message()));
  }
  return options;
}

}  // namespace podgate::policy
