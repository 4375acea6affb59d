// podgate-audit's configuration from its flags, checked before the store is touched: main.cc only
// parses the command line, calls AuditOptionsFromFlags and wires what it returns.
//
//   --store               sqlite:///absolute/path.db or postgresql://user@host:port/db
//   --chain_id            this replica's hash chain id (default: the host name), at most 128 bytes
//   --queue_capacity      events waiting for the writer (1 to 1000000)
//   --max_batch           events per group-commit transaction (1 to 10000)
//   --retention           how long records are kept (0: forever)
//   --retention_interval  how often retention runs (at least 1s)
//   --max_followers, --follower_queue, --follow_poll_interval   the live tail (Query follow)
// plus the shared server flags (runtime/server_flags.h).
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

namespace podgate::audit {

struct AuditOptions {
  runtime::ServerOptions server;
  // Opened (and so checked) by OpenStore.
  std::string store_url;
  std::string chain_id;
  size_t queue_capacity = 0;
  size_t max_batch = 0;
  // Zero: keep everything.
  absl::Duration retention;
  absl::Duration retention_interval;
  // The live tail (FollowOptions).
  size_t max_followers = 0;
  size_t follower_queue = 0;
  absl::Duration follow_poll_interval;
};

// The defaults of the shared server flags for audit.
const runtime::ServiceDefaults& AuditServiceDefaults();

// The longest --chain_id, in bytes.
inline constexpr size_t kMaxChainIdBytes = 128;

// The chain id when --chain_id is empty: the host name (the pod name in Kubernetes), or "audit"
// when there is none.
std::string DefaultChainId();

// Reads and checks the flags; an error is one line naming the flag.
absl::StatusOr<AuditOptions> AuditOptionsFromFlags();

}  // namespace podgate::audit
