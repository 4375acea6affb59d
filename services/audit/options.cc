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
  options.store_url = absl::GetFlag(FLAGS_store);
  return options;
}

}  // namespace podgate::audit
