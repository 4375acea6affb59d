// podgate-policy's configuration from its flags, checked before anything starts: main.cc only
// parses the command line, calls PolicyOptionsFromFlags and wires what it returns.
//
//   --policy_file           the policy document (YAML), hot-reloaded; empty denies everything
//   --policy_poll_interval  how often the file is also stat()ed for changes (at least 10ms)
//   --check                 validate a document and exit (no server starts)
// plus the shared server flags (runtime/server_flags.h) and the optional audit peer flags.
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

namespace podgate::policy {

struct PolicyOptions {
  // --check: validate this document and exit; nothing else is read or checked then.
  std::string check_file;
  runtime::ServerOptions server;
  // Empty: serve an empty policy that denies everything.
  std::string policy_file;
  absl::Duration poll_interval = absl::Seconds(1);
  // Where policy changes are recorded; address empty when no audit service is named.
  runtime::PeerFlags audit;
  // The shared --log_level: allowed decisions are logged (at debug level) only when it is
  // debug, and their log lines are not even built otherwise.
  log::Level log_level = log::Level::kInfo;
};

// The defaults of the shared server flags for policy.
const runtime::ServiceDefaults& PolicyServiceDefaults();

// The smallest --policy_poll_interval.
inline constexpr absl::Duration kMinPollInterval = absl::Milliseconds(10);

// Reads and checks the flags; an error is one line naming the flag.
absl::StatusOr<PolicyOptions> PolicyOptionsFromFlags();

}  // namespace podgate::policy
