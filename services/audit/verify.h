// Chain verification: walks each chain in sequence order and reports the first broken link.
//
// A link is broken when a record's sequence does not follow the previous one (a deleted row),
// its previous_hash differs from the previous record's hash (a deleted, inserted or edited
// neighbour), its hash differs from SHA-256(previous_hash || canonical content) (an edited
// event, sequence, chain or stored time; rows swapped), or a query column differs from the
// value derived from the event (an edited column).
//
// A hash chain alone cannot show what someone with write access to the database did to the
// whole chain: delete its last records, append or re-hash records, delete a chain. Signed
// checkpoints (checkpoint_sign.h), whose key the database never holds, close that gap: given
// the checkpoints the caller trusts (their signatures already checked), each chain must
// extend its newest checkpoint (the record at its sequence holds its hash, or retention's cut
// is at or after it), hold at most `max_unsigned_records` records after it, and every chain
// in the store must have one. The database's own integrity check runs too, and an empty store
// is a failure. Retention's cut is returned with its stored signature for the caller to check
// (the server holds no public key list; the verifier does).
#pragma once

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "audit/store.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

struct VerifyOptions {
  // One chain; empty: every chain.
  std::string chain_id;
  // Trusted signed checkpoints (any kind, any order; the newest of each chain counts).
  std::vector<podgate::audit::v1::SignedCheckpoint> checkpoints;
  // Records allowed after a chain's newest checkpoint (only with checkpoints).
  int64_t max_unsigned_records = 0;
};

// `newest`: the chain's newest trusted checkpoint, or null; `attested`: whether checkpoints
// were given at all (then a chain without one is reported).
absl::StatusOr<podgate::audit::v1::ChainReport> VerifyChain(
    Store& store, const std::string& chain_id,
    const podgate::audit::v1::SignedCheckpoint* newest = nullptr, bool attested = false,
    int64_t max_unsigned_records = 0);

// Every chain when `chain_id` is empty; NotFound for an unknown chain no checkpoint names.
absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const VerifyOptions& options);
absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const std::string& chain_id);

}  // namespace podgate::audit
