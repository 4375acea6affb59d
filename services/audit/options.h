// podgate-audit's configuration from its flags, checked before the store is touched: main.cc only
// parses the command line, calls AuditOptionsFromFlags and wires what it returns.
//
//   --store               sqlite:///absolute/path.db or postgresql://user@host:port/db
//   --chain_id            this replica's hash chain id (default: the host name), at most 128 bytes
//   --queue_capacity      events waiting for the writer (1 to 1000000)
//   --max_batch           events per group-commit transaction (1 to 10000)
//   --store_recheck_interval  while writes fail, how often the store is re-checked with a
//                         real write so readiness can return without an event (100ms to 10m,
//                         default 5s)
//   --retention           how long records are kept (0: forever)
//   --retention_interval  how often retention runs (at least 1s)
//   --export_config       JSON file of export sinks (empty: no export); parsed by main
//   --export_lease_ttl    how long a replica's export lease lasts unrenewed (1s to 10m)
//   --export_poll_interval how often sinks look for other replicas' records (10ms to 1m)
//   --checkpoint_key      PEM Ed25519 private key signing chain heads and retention cuts
//                         (empty, the default: no signed checkpoints, behaviour as before)
//   --checkpoint_interval how often the head is signed when it moved (1s to 24h, default 1m)
//   --checkpoint_state    file keeping the last signed checkpoint outside the database,
//                         required with --checkpoint_key; audit refuses to start when the
//                         database's head is older than it
//   --max_followers, --follower_queue, --follow_poll_interval   the live tail (Query follow)
// plus the shared server flags (runtime/server_flags.h).
#pragma once

#include <cstddef>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "audit/checkpoint_sign.h"
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
  // WriterOptions::store_recheck_interval.
  absl::Duration store_recheck_interval;
  // Zero: keep everything.
  absl::Duration retention;
  absl::Duration retention_interval;
  // Empty: no export. main reads and checks the file (exporting::LoadExportConfig).
  std::string export_config;
  absl::Duration export_lease_ttl;
  absl::Duration export_poll_interval;
  // Null: no signed checkpoints.
  std::shared_ptr<const CheckpointKey> checkpoint_key;
  absl::Duration checkpoint_interval;
  std::string checkpoint_state;
  // The live tail (FollowOptions).
  size_t max_followers = 0;
  size_t follower_queue = 0;
  absl::Duration follow_poll_interval;
};

// The defaults of the shared server flags for audit.
const runtime::ServiceDefaults& AuditServiceDefaults();

// --store_recheck_interval's range.
inline constexpr absl::Duration kMinStoreRecheckInterval = absl::Milliseconds(100);
inline constexpr absl::Duration kMaxStoreRecheckInterval = absl::Minutes(10);

// The longest --chain_id, in bytes.
inline constexpr size_t kMaxChainIdBytes = 128;

// The chain id when --chain_id is empty: the host name (the pod name in Kubernetes), or "audit"
// when there is none.
std::string DefaultChainId();

// Reads and checks the flags; an error is one line naming the flag.
absl::StatusOr<AuditOptions> AuditOptionsFromFlags();

}  // namespace podgate::audit
