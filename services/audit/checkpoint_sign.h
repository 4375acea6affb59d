// Signed checkpoints: audit's Ed25519 key, the canonical signing input of a SignedCheckpoint,
// signing and checking, and the JSON-lines files checkpoints travel in (the checkpoint state
// file, a file sink's output, a collection an operator keeps).
//
// Canonical signing input (every integer big-endian, every byte string length-prefixed):
//   "podgate.audit.checkpoint.v1\n" | u32 kind | u32 len | chain_id | u64 sequence |
//   u32 len | hash | i64 time.seconds | u32 time.nanos
// The domain string keeps a checkpoint signature from ever being valid for another message
// signed with the same key; the kind keeps a head checkpoint from passing as a retention cut
// (and back). key_id is not signed: it only names the key (KeyId) and a wrong one just fails.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "crypto/openssl_ptr.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

// An Ed25519 key: private (audit signs with it) or public only (a verifier checks with it).
class CheckpointKey {
 public:
  // A PEM private key (PKCS#8, as `openssl genpkey -algorithm ed25519` writes it). Errors name
  // the file and the problem: missing, not PEM, a public key, not Ed25519.
  static absl::StatusOr<std::shared_ptr<const CheckpointKey>> LoadPrivate(const std::string& path);
  // A PEM public key (`openssl pkey -pubout`); a private key file is accepted too (its public
  // half is used).
  static absl::StatusOr<std::shared_ptr<const CheckpointKey>> LoadPublic(const std::string& path);
  // The same, from PEM text; `name` is used in errors.
  static absl::StatusOr<std::shared_ptr<const CheckpointKey>> PrivateFromPem(
      absl::string_view pem, const std::string& name);
  static absl::StatusOr<std::shared_ptr<const CheckpointKey>> PublicFromPem(
      absl::string_view pem, const std::string& name);

  // The first 16 hex digits of SHA-256 over the raw 32-byte public key.
  const std::string& key_id() const { return key_id_; }
  bool has_private() const { return private_; }

  // Sets key_id and signature of `checkpoint` (chain_id, sequence,
  // hash, time and kind must be set). FailedPrecondition without a private key.
  absl::Status Sign(podgate::audit::v1::SignedCheckpoint* checkpoint) const;
  // OK when `checkpoint` carries this key's id and a valid signature over its content.
  absl::Status Check(const podgate::audit::v1::SignedCheckpoint& checkpoint) const;

 private:
  CheckpointKey(crypto::EvpPkeyPtr key, bool is_private, std::string key_id)
      : key_(std::move(key)), private_(is_private), key_id_(std::move(key_id)) {}
  static absl::StatusOr<std::shared_ptr<const CheckpointKey>> FromPem(absl::string_view pem,
                                                                      const std::string& name,
                                                                      bool want_private);

  crypto::EvpPkeyPtr key_;
  bool private_;
  std::string key_id_;
};

// The bytes a checkpoint's signature covers (see the top of this file).
std::string CheckpointSigningInput(const podgate::audit::v1::SignedCheckpoint& checkpoint);

// Checks `checkpoint` with whichever of `keys` has its key_id; the error names the chain, the
// sequence and the problem (unknown key, bad signature, no kind, bad hash length).
absl::Status CheckCheckpoint(const std::vector<std::shared_ptr<const CheckpointKey>>& keys,
                             const podgate::audit::v1::SignedCheckpoint& checkpoint);

// Short description for messages: "chain X sequence N (head, signed 2026-...)".
std::string DescribeCheckpoint(const podgate::audit::v1::SignedCheckpoint& checkpoint);

// One JSON line (protobuf JSON of SignedCheckpoint, no newline).
std::string CheckpointJson(const podgate::audit::v1::SignedCheckpoint& checkpoint);

// Parses JSON lines of signed checkpoints: SignedCheckpoint's protobuf JSON, or an export
// sink's {"type":"checkpoint",...} line (the "type" key is dropped); {"type":"record",...}
// lines and blank lines are skipped. An error names `name`, the line number and the problem.
absl::StatusOr<std::vector<podgate::audit::v1::SignedCheckpoint>> ParseCheckpointLines(
    absl::string_view text, const std::string& name);
// The same, from a file.
absl::StatusOr<std::vector<podgate::audit::v1::SignedCheckpoint>> ReadCheckpointFile(
    const std::string& path);

// Replaces `path` with `text` atomically: a temporary file beside it, fsync, rename, fsync of
// the folder, so a crash leaves the old or the new content, never a mix.
absl::Status WriteFileAtomically(const std::string& path, const std::string& text);

}  // namespace podgate::audit
