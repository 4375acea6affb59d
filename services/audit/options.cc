#include "audit/options.h"

#include <unistd.h>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"

ABSL_FLAG(std::string, store, "sqlite:///var/lib/podgate/audit.db",
          "Where records live: sqlite:///absolute/path.db (embedded, one replica) or "
          "postgresql://user@host:port/db (several replicas). Default "
          "sqlite:///var/lib/podgate/audit.db.");
ABSL_FLAG(std::string, chain_id, "",
          "This replica's hash chain id; replicas sharing a database need distinct ids and a "
          "restarted replica keeps its id to continue its chain. Default: the host name (the "
          "pod name in Kubernetes).");
ABSL_FLAG(int64_t, queue_capacity, 8192,
          "Events waiting for the group-commit writer before Record streams stop reading. "
          "Default 8192.");
ABSL_FLAG(absl::Duration, store_recheck_interval, absl::Seconds(5),
          "While writes to the store fail (readiness NOT_SERVING), how often audit re-checks the "
          "store by itself with a real write, so that readiness returns without waiting for an "
          "event. 100ms to 10m. Default 5s.");
ABSL_FLAG(int64_t, max_batch, 1024, "Events per group-commit transaction, at most. Default 1024.");
ABSL_FLAG(absl::Duration, retention, absl::ZeroDuration(),
          "Records stored longer ago than this are removed (chains stay verifiable through "
          "checkpoints), e.g. 2160h. Default 0: keep everything.");
ABSL_FLAG(absl::Duration, retention_interval, absl::Hours(1),
          "How often retention runs when --retention is set. Default 1h.");
ABSL_FLAG(int64_t, max_followers, 256,
          "Query streams following new records (live tail) at once, at most; more are refused "
          "with RESOURCE_EXHAUSTED. Default 256.");
ABSL_FLAG(int64_t, follower_queue, 1024,
          "New records waiting to be sent to one follower, at most; a follower with more is "
          "ended with RESOURCE_EXHAUSTED. Default 1024.");
ABSL_FLAG(absl::Duration, follow_poll_interval, absl::Seconds(1),
          "How often followers' records are read from the store besides after each local "
          "commit (other replicas' chains on PostgreSQL), 10ms to 1m. Default 1s.");

ABSL_FLAG(std::string, export_config, "",
          "A JSON file naming the sinks stored records are delivered to (webhook, syslog, file; "
          "see docs/audit.md, Export). Default empty: no export.");
ABSL_FLAG(absl::Duration, export_lease_ttl, absl::Seconds(15),
          "How long a replica's export lease on a sink lasts without renewal (renewed every "
          "third of it); another replica takes the sink over this long after a crash. 1s to "
          "10m. Default 15s.");
ABSL_FLAG(absl::Duration, export_poll_interval, absl::Milliseconds(500),
          "How often each export sink looks for records it was not told about (other "
          "replicas' chains) and refreshes its lag. 10ms to 1m. Default 500ms.");
ABSL_FLAG(std::string, checkpoint_key, "",
          "PEM file of the Ed25519 private key that signs chain heads and retention cuts "
          "(openssl genpkey -algorithm ed25519); the database never holds it. Default empty: "
          "no signed checkpoints.");
ABSL_FLAG(absl::Duration, checkpoint_interval, absl::Minutes(1),
          "How often the chain head is signed when it moved, 1s to 24h. Default 1m.");
ABSL_FLAG(std::string, checkpoint_state, "",
          "File keeping the last signed checkpoint outside the database (replaced atomically); "
          "required with --checkpoint_key. audit refuses to start when the database's head is "
          "older than it. Default empty.");

namespace podgate::audit {

const runtime::ServiceDefaults& AuditServiceDefaults() {
  static const auto* const kDefaults =
      new runtime::ServiceDefaults{"audit", "[::]:7103", "[::]:9103"};
  return *kDefaults;
}

std::string DefaultChainId() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return "audit";
  }
  return host;
}

absl::StatusOr<AuditOptions> AuditOptionsFromFlags() {
  AuditOptions options;
  absl::StatusOr<runtime::ServerOptions> server =
      runtime::ServerOptionsFromFlags(AuditServiceDefaults());
  if (!server.ok()) {
    return server.status();
  }
  options.server = *std::move(server);
  const int64_t queue_capacity = absl::GetFlag(FLAGS_queue_capacity);
  if (queue_capacity < 1 || queue_capacity > 1000000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--queue_capacity: ", queue_capacity, " is out of range (1 to 1000000)"));
  }
  options.queue_capacity = static_cast<size_t>(queue_capacity);
  const int64_t max_batch = absl::GetFlag(FLAGS_max_batch);
  if (max_batch < 1 || max_batch > 10000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_batch: ", max_batch, " is out of range (1 to 10000)"));
  }
  options.max_batch = static_cast<size_t>(max_batch);
  options.store_recheck_interval = absl::GetFlag(FLAGS_store_recheck_interval);
  if (options.store_recheck_interval < kMinStoreRecheckInterval ||
      options.store_recheck_interval > kMaxStoreRecheckInterval) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--store_recheck_interval: ", absl::FormatDuration(options.store_recheck_interval),
        " is out of range (", absl::FormatDuration(kMinStoreRecheckInterval), " to ",
        absl::FormatDuration(kMaxStoreRecheckInterval), ")"));
  }
  options.retention = absl::GetFlag(FLAGS_retention);
  options.retention_interval = absl::GetFlag(FLAGS_retention_interval);
  if (options.retention < absl::ZeroDuration() || options.retention_interval < absl::Seconds(1)) {
    return absl::InvalidArgumentError("--retention must be >= 0 and --retention_interval >= 1s");
  }
  const int64_t max_followers = absl::GetFlag(FLAGS_max_followers);
  if (max_followers < 0 || max_followers > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--max_followers: ", max_followers, " is out of range (0 to 100000)"));
  }
  options.max_followers = static_cast<size_t>(max_followers);
  const int64_t follower_queue = absl::GetFlag(FLAGS_follower_queue);
  if (follower_queue < 1 || follower_queue > 100000) {
    return absl::InvalidArgumentError(
        absl::StrCat("--follower_queue: ", follower_queue, " is out of range (1 to 100000)"));
  }
  options.follower_queue = static_cast<size_t>(follower_queue);
  options.follow_poll_interval = absl::GetFlag(FLAGS_follow_poll_interval);
  if (options.follow_poll_interval < absl::Milliseconds(10) ||
      options.follow_poll_interval > absl::Minutes(1)) {
    return absl::InvalidArgumentError("--follow_poll_interval: out of range (10ms to 1m)");
  }
  options.chain_id = absl::GetFlag(FLAGS_chain_id);
  if (options.chain_id.empty()) {
    options.chain_id = DefaultChainId();
  }
  if (options.chain_id.size() > kMaxChainIdBytes) {
    return absl::InvalidArgumentError("--chain_id: longer than 128 bytes");
  }
  options.export_config = absl::GetFlag(FLAGS_export_config);
  options.export_lease_ttl = absl::GetFlag(FLAGS_export_lease_ttl);
  if (options.export_lease_ttl < absl::Seconds(1) || options.export_lease_ttl > absl::Minutes(10)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--export_lease_ttl: ", absl::FormatDuration(options.export_lease_ttl),
                     " is out of range (1s to 10m)"));
  }
  options.export_poll_interval = absl::GetFlag(FLAGS_export_poll_interval);
  if (options.export_poll_interval < absl::Milliseconds(10) ||
      options.export_poll_interval > absl::Minutes(1)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--export_poll_interval: ", absl::FormatDuration(options.export_poll_interval),
                     " is out of range (10ms to 1m)"));
  }
  options.store_url = absl::GetFlag(FLAGS_store);
  options.checkpoint_interval = absl::GetFlag(FLAGS_checkpoint_interval);
  if (options.checkpoint_interval < absl::Seconds(1) ||
      options.checkpoint_interval > absl::Hours(24)) {
    return absl::InvalidArgumentError(
        absl::StrCat("--checkpoint_interval: ", absl::FormatDuration(options.checkpoint_interval),
                     " is out of range (1s to 24h)"));
  }
  options.checkpoint_state = absl::GetFlag(FLAGS_checkpoint_state);
  const std::string key_path = absl::GetFlag(FLAGS_checkpoint_key);
  if (!key_path.empty()) {
    absl::StatusOr<std::shared_ptr<const CheckpointKey>> key = CheckpointKey::LoadPrivate(key_path);
    if (!key.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("--checkpoint_key: ", key.status().message()));
    }
    options.checkpoint_key = *std::move(key);
    if (options.checkpoint_state.empty()) {
      return absl::InvalidArgumentError(
          "--checkpoint_state: required with --checkpoint_key (where audit keeps its last "
          "signed checkpoint, outside the database)");
    }
  } else if (!options.checkpoint_state.empty()) {
    return absl::InvalidArgumentError("--checkpoint_state: needs --checkpoint_key");
  }
  return options;
}

}  // namespace podgate::audit
