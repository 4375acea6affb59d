// The checkpointer: signs this replica's chain head with audit's Ed25519 checkpoint key, every
// interval (when the head moved) and on demand (the CreateCheckpoint RPC), signs retention's
// cuts, keeps the last signed head in a state file outside the database, and hands every
// signed checkpoint to a hook (the export sinks deliver them).
//
// The state file (JSON lines of SignedCheckpoint, replaced atomically after each signing)
// lets a restarted audit refuse a database whose head is older than what it signed before:
// CheckStoreAgainstState. The file is readable by `podgate-audit-cli verify --checkpoint`.
#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "audit/audit_metrics.h"
#include "audit/chain.h"
#include "audit/checkpoint_sign.h"
#include "audit/store.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

struct CheckpointerOptions {
  // The chain this replica writes.
  std::string chain_id;
  // The private key; required.
  std::shared_ptr<const CheckpointKey> key;
  // How often the head is signed when it moved since the last signing; 0: only on demand.
  absl::Duration interval = absl::Minutes(1);
  // Where the last signed checkpoints are kept; empty: nowhere.
  std::string state_path;
  // The head to sign: what the writer committed (Writer::committed_head). Required.
  std::function<ChainHead()> head;
  // Called after each signing (head or retention cut) and the state file write, in signing
  // order, under the signing lock: it must only queue the checkpoint (never call into the
  // store or the checkpointer), since retention calls it inside its transaction.
  std::function<void(const podgate::audit::v1::SignedCheckpoint&)> on_checkpoint;
  // Counts signings and failures; optional.
  AuditMetrics* metrics = nullptr;
  // The clock (tests pin it).
  std::function<absl::Time()> now = [] { return absl::Now(); };
};

class Checkpointer {
 public:
  // Signs the head once right away (so a fresh replica's chain is attested and the state file
  // exists), then starts the periodic thread when interval > 0.
  static absl::StatusOr<std::unique_ptr<Checkpointer>> Start(CheckpointerOptions options);
  // Stops the thread and signs the final head.
  ~Checkpointer();

  // Signs the current head (a new checkpoint even when the head did not move), writes the
  // state file, calls the hook. Thread-safe. FailedPrecondition for an empty chain.
  absl::StatusOr<podgate::audit::v1::SignedCheckpoint> CheckpointNow();

  // Retention's CutSigner: signs `cut` as a RETENTION_CUT checkpoint and calls the hook; a cut
  // of this replica's own chain is kept in the state file too.
  absl::Status SignCut(Checkpoint* cut);

  // The last head checkpoint signed (none before the first).
  std::optional<podgate::audit::v1::SignedCheckpoint> last_head() const;

 private:
  explicit Checkpointer(CheckpointerOptions options) : options_(std::move(options)) {}
  void Run();
  absl::StatusOr<podgate::audit::v1::SignedCheckpoint> SignLocked(
      podgate::audit::v1::SignedCheckpoint checkpoint) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sign_mu_);

  const CheckpointerOptions options_;
  // Serializes signings and state-file writes.
  mutable absl::Mutex sign_mu_;
  std::optional<podgate::audit::v1::SignedCheckpoint> last_head_ ABSL_GUARDED_BY(sign_mu_);
  std::optional<podgate::audit::v1::SignedCheckpoint> last_cut_ ABSL_GUARDED_BY(sign_mu_);
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread thread_;
};

// Start-up check: when `state_path` holds a head checkpoint of `chain_id` signed by `key`, the
// store's chain must extend it (its head at or after the checkpoint's sequence, the record at
// that sequence with that hash, or retention's cut at or after it). FailedPrecondition with
// one line naming both heads otherwise; a missing state file is a first start (OK); a state
// file that does not parse, names another chain or is not signed by `key` is an error.
absl::Status CheckStoreAgainstState(Store& store, const std::string& chain_id,
                                    const CheckpointKey& key, const std::string& state_path);

}  // namespace podgate::audit
