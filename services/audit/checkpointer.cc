#include "audit/checkpointer.h"

#include <sys/stat.h>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "runtime/log.h"

namespace podgate::audit {
namespace {

using google::protobuf::util::TimeUtil;
using podgate::audit::v1::SignedCheckpoint;

std::string ShortHex(const std::string& hash) { return absl::BytesToHexString(hash).substr(0, 16); }

}  // namespace

absl::StatusOr<std::unique_ptr<Checkpointer>> Checkpointer::Start(CheckpointerOptions options) {
  if (options.key == nullptr || !options.key->has_private()) {
    return absl::InvalidArgumentError("checkpointer: a private checkpoint key is required");
  }
  if (!options.head || options.chain_id.empty()) {
    return absl::InvalidArgumentError("checkpointer: a chain id and a head source are required");
  }
  std::unique_ptr<Checkpointer> checkpointer(new Checkpointer(std::move(options)));
  if (checkpointer->options_.head().sequence > 0) {
    absl::StatusOr<SignedCheckpoint> first = checkpointer->CheckpointNow();
    if (!first.ok()) {
      return first.status();
    }
  }
  if (checkpointer->options_.interval > absl::ZeroDuration()) {
    checkpointer->thread_ = std::thread([c = checkpointer.get()] { c->Run(); });
  }
  return checkpointer;
}

Checkpointer::~Checkpointer() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) {
    thread_.join();
  }
  // The final head: what was committed up to shutdown is attested.
  const ChainHead head = options_.head();
  absl::MutexLock lock(&sign_mu_);
  if (head.sequence > 0 && (!last_head_.has_value() || last_head_->sequence() != head.sequence)) {
    SignedCheckpoint checkpoint;
    checkpoint.set_kind(SignedCheckpoint::KIND_HEAD);
    checkpoint.set_chain_id(head.chain_id);
    checkpoint.set_sequence(head.sequence);
    checkpoint.set_hash(head.hash);
    if (absl::StatusOr<SignedCheckpoint> s = SignLocked(std::move(checkpoint)); !s.ok()) {
      log::Warn("final checkpoint failed", {{"error", std::string(s.status().message())}});
    }
  }
}

void Checkpointer::Run() {
  while (true) {
    {
      absl::MutexLock lock(&mu_);
      if (mu_.AwaitWithTimeout(absl::Condition(&stopping_), options_.interval)) {
        return;
      }
    }
    const ChainHead head = options_.head();
    bool moved = false;
    {
      absl::MutexLock lock(&sign_mu_);
      moved =
          head.sequence > 0 && (!last_head_.has_value() || last_head_->sequence() != head.sequence);
    }
    if (moved) {
      if (absl::StatusOr<SignedCheckpoint> s = CheckpointNow(); !s.ok()) {
        if (options_.metrics != nullptr) {
          options_.metrics->Error("checkpoint_failed").Increment();
        }
        log::Warn("checkpoint failed", {{"error", std::string(s.status().message())}});
      }
    }
  }
}

absl::StatusOr<SignedCheckpoint> Checkpointer::CheckpointNow() {
  absl::MutexLock lock(&sign_mu_);
  // Read under the signing lock so that checkpoints are signed in head order.
  const ChainHead head = options_.head();
  if (head.sequence == 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("chain ", options_.chain_id, " has no records to sign yet"));
  }
  SignedCheckpoint checkpoint;
  checkpoint.set_kind(SignedCheckpoint::KIND_HEAD);
  checkpoint.set_chain_id(head.chain_id);
  checkpoint.set_sequence(head.sequence);
  checkpoint.set_hash(head.hash);
  return SignLocked(std::move(checkpoint));
}

absl::Status Checkpointer::SignCut(Checkpoint* cut) {
  absl::MutexLock lock(&sign_mu_);
  const int64_t now_us = absl::ToUnixMicros(options_.now());
  SignedCheckpoint checkpoint;
  checkpoint.set_kind(SignedCheckpoint::KIND_RETENTION_CUT);
  checkpoint.set_chain_id(cut->chain_id);
  checkpoint.set_sequence(cut->sequence);
  checkpoint.set_hash(cut->hash);
  *checkpoint.mutable_time() = TimeUtil::MicrosecondsToTimestamp(now_us);
  if (absl::Status s = options_.key->Sign(&checkpoint); !s.ok()) {
    return s;
  }
  cut->signed_time_us = now_us;
  cut->key_id = checkpoint.key_id();
  cut->signature = checkpoint.signature();
  if (options_.metrics != nullptr) {
    options_.metrics->checkpoints_signed("retention_cut").Increment();
  }
  if (cut->chain_id == options_.chain_id) {
    last_cut_ = checkpoint;
    // Retention's cut is signed before it commits; the state file keeping it too only adds
    // evidence, so a failed write is logged, not fatal.
    std::string text;
    if (last_head_.has_value()) {
      absl::StrAppend(&text, CheckpointJson(*last_head_), "\n");
    }
    absl::StrAppend(&text, CheckpointJson(checkpoint), "\n");
    if (!options_.state_path.empty()) {
      if (absl::Status s = WriteFileAtomically(options_.state_path, text); !s.ok()) {
        log::Warn("checkpoint state write failed", {{"error", std::string(s.message())}});
      }
    }
  }
  if (options_.on_checkpoint) {
    options_.on_checkpoint(checkpoint);
  }
  return absl::OkStatus();
}

absl::StatusOr<SignedCheckpoint> Checkpointer::SignLocked(SignedCheckpoint checkpoint) {
  // Microsecond precision, like every other time audit stores.
  *checkpoint.mutable_time() =
      TimeUtil::MicrosecondsToTimestamp(absl::ToUnixMicros(options_.now()));
  if (absl::Status s = options_.key->Sign(&checkpoint); !s.ok()) {
    return s;
  }
  if (!options_.state_path.empty()) {
    std::string text = absl::StrCat(CheckpointJson(checkpoint), "\n");
    if (last_cut_.has_value()) {
      absl::StrAppend(&text, CheckpointJson(*last_cut_), "\n");
    }
    // The state file is the restart check's memory: a checkpoint it cannot keep is an error,
    // and the hook is not told about it.
    if (absl::Status s = WriteFileAtomically(options_.state_path, text); !s.ok()) {
      return absl::UnavailableError(absl::StrCat("--checkpoint_state: ", s.message()));
    }
  }
  last_head_ = checkpoint;
  if (options_.metrics != nullptr) {
    options_.metrics->checkpoints_signed("head").Increment();
    options_.metrics->checkpoint_head_sequence().Set(static_cast<double>(checkpoint.sequence()));
  }
  if (options_.on_checkpoint) {
    options_.on_checkpoint(checkpoint);
  }
  return checkpoint;
}

std::optional<SignedCheckpoint> Checkpointer::last_head() const {
  absl::MutexLock lock(&sign_mu_);
  return last_head_;
}

absl::Status CheckStoreAgainstState(Store& store, const std::string& chain_id,
                                    const CheckpointKey& key, const std::string& state_path) {
  struct stat st;
  if (::stat(state_path.c_str(), &st) != 0 && errno == ENOENT) {
    return absl::OkStatus();  // the first start with this state file
  }
  absl::StatusOr<std::vector<SignedCheckpoint>> checkpoints = ReadCheckpointFile(state_path);
  if (!checkpoints.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("--checkpoint_state: ", checkpoints.status().message()));
  }
  std::optional<SignedCheckpoint> last;
  for (const SignedCheckpoint& c : *checkpoints) {
    if (c.kind() != SignedCheckpoint::KIND_HEAD) {
      continue;
    }
    if (c.chain_id() != chain_id) {
      return absl::FailedPreconditionError(absl::StrCat(
          "--checkpoint_state: ", state_path, " holds a checkpoint of chain ", c.chain_id(),
          ", not of this replica's chain ", chain_id, " (one state file per --chain_id)"));
    }
    if (absl::Status s = key.Check(c); !s.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("--checkpoint_state: ", state_path, ": ", s.message()));
    }
    if (!last.has_value() || c.sequence() > last->sequence()) {
      last = c;
    }
  }
  if (!last.has_value()) {
    return absl::OkStatus();
  }
  absl::StatusOr<ChainHead> head = store.LoadHead(chain_id);
  if (!head.ok()) {
    return head.status();
  }
  const std::string signed_text = absl::StrCat(
      "its last signed checkpoint in ", state_path, " is at sequence ", last->sequence(), " (hash ",
      ShortHex(last->hash()), ", signed ", TimeUtil::ToString(last->time()), ")");
  auto refuse = [&](const std::string& what) {
    return absl::FailedPreconditionError(absl::StrCat(
        "chain ", chain_id, ": ", what, ", but ", signed_text,
        ": the database was truncated or rewritten behind audit's back; refusing to start "
        "(restore the database, or move the state file away to accept it as it is)"));
  };
  if (head->sequence < last->sequence()) {
    return refuse(absl::StrCat("the store's head is at sequence ", head->sequence, " (hash ",
                               ShortHex(head->hash), ")"));
  }
  absl::StatusOr<std::string> hash = store.HashAt(chain_id, last->sequence());
  if (hash.ok()) {
    if (*hash != last->hash()) {
      return refuse(
          absl::StrCat("the store's record ", last->sequence(), " has hash ", ShortHex(*hash)));
    }
    return absl::OkStatus();
  }
  if (!absl::IsNotFound(hash.status())) {
    return hash.status();
  }
  // Retention removed the record: its cut must be at or after the checkpoint.
  absl::StatusOr<Checkpoint> cut = store.GetCheckpoint(chain_id);
  if (!cut.ok()) {
    return cut.status();
  }
  if (cut->sequence < last->sequence() ||
      (cut->sequence == last->sequence() && cut->hash != last->hash())) {
    return refuse(absl::StrCat("the store has no record ", last->sequence(),
                               " and retention's cut is at sequence ", cut->sequence));
  }
  return absl::OkStatus();
}

}  // namespace podgate::audit
