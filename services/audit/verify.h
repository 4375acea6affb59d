// Chain verification: walks each chain in sequence order and reports the first broken link.
//
// A link is broken when a record's sequence does not follow the previous one (a deleted row),
// its previous_hash differs from the previous record's hash (a deleted, inserted or edited
// neighbour), its hash differs from SHA-256(previous_hash || canonical content) (an edited
// event, sequence, chain or stored time; rows swapped), or a query column differs from the
// value derived from the event (an edited column).
#pragma once

#include <string>

#include "absl/status/statusor.h"
#include "audit/store.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::audit {

absl::StatusOr<podgate::audit::v1::ChainReport> VerifyChain(Store& store,
                                                            const std::string& chain_id);

// Every chain when `chain_id` is empty; NotFound for an unknown chain.
absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const std::string& chain_id);

}  // namespace podgate::audit
