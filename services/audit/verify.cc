#include "audit/verify.h"

#include <algorithm>
#include <map>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"

namespace podgate::audit {
namespace {

// The name of the first column that differs from the event's values, or "".
std::string ColumnMismatch(const EventColumns& stored, const EventColumns& derived) {
  const std::pair<bool, const char*> checks[] = {
      {stored.event_time_us == derived.event_time_us, "event_time_us"},
      {stored.kind == derived.kind, "kind"},
      {stored.user == derived.user, "user_name"},
      {stored.groups == derived.groups, "groups_text"},
      {stored.cluster == derived.cluster, "cluster"},
      {stored.namespace_name == derived.namespace_name, "namespace"},
      {stored.pod == derived.pod, "pod"},
      {stored.container == derived.container, "container"},
      {stored.verdict == derived.verdict, "verdict"},
      {stored.rule == derived.rule, "rule"},
      {stored.session_id == derived.session_id, "session_id"},
      {stored.argv_text == derived.argv_text, "argv_text"},
      {stored.trace_id == derived.trace_id, "trace_id"},
  };
  for (const auto& [equal, name] : checks) {
    if (!equal) {
      return name;
    }
  }
  return "";
}

}  // namespace

absl::StatusOr<podgate::audit::v1::ChainReport> VerifyChain(
    Store& store, const std::string& chain_id, const podgate::audit::v1::SignedCheckpoint* newest,
    bool attested, int64_t max_unsigned_records) {
  absl::StatusOr<Checkpoint> checkpoint = store.GetCheckpoint(chain_id);
  if (!checkpoint.ok()) {
    return checkpoint.status();
  }
  podgate::audit::v1::ChainReport report;
  report.set_chain_id(chain_id);
  report.set_intact(true);
  if (checkpoint->sequence > 0) {
    podgate::audit::v1::SignedCheckpoint* cut = report.mutable_retention_cut();
    cut->set_kind(podgate::audit::v1::SignedCheckpoint::KIND_RETENTION_CUT);
    cut->set_chain_id(chain_id);
    cut->set_sequence(checkpoint->sequence);
    cut->set_hash(checkpoint->hash);
    *cut->mutable_time() =
        google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(checkpoint->signed_time_us);
    cut->set_key_id(checkpoint->key_id);
    cut->set_signature(checkpoint->signature);
  }
  int64_t expected_sequence = checkpoint->sequence + 1;
  std::string expected_previous =
      checkpoint->sequence > 0 ? checkpoint->hash : std::string(kHashBytes, '\0');
  auto broken = [&](int64_t sequence, std::string problem) {
    report.set_intact(false);
    report.set_first_broken_sequence(sequence);
    report.set_problem(std::move(problem));
    return false;
  };
  absl::Status scan = store.ScanChain(chain_id, [&](const StoredRow& row) {
    report.set_records(report.records() + 1);
    if (row.sequence != expected_sequence) {
      return broken(row.sequence,
                    row.sequence > expected_sequence
                        ? absl::StrCat("sequence gap after ", expected_sequence - 1, " (records ",
                                       expected_sequence, " to ", row.sequence - 1, " are missing)")
                        : absl::StrCat("sequence ", row.sequence, " out of order after ",
                                       expected_sequence - 1));
    }
    if (row.previous_hash != expected_previous) {
      return broken(row.sequence, "previous_hash does not match the previous record's hash");
    }
    const std::string hash =
        LinkHash(row.previous_hash,
                 CanonicalContent(row.chain_id, row.sequence, row.stored_time_us, row.event_bytes));
    if (hash != row.hash) {
      return broken(row.sequence, "hash mismatch (the record's content was changed)");
    }
    podgate::common::v1::AuditEvent event;
    if (!event.ParseFromString(row.event_bytes)) {
      return broken(row.sequence, "the stored event does not parse");
    }
    if (event.id() != row.event_id) {
      return broken(row.sequence, "column event_id does not match the event");
    }
    if (std::string column = ColumnMismatch(row.columns, ColumnsOf(event)); !column.empty()) {
      return broken(row.sequence, absl::StrCat("column ", column, " does not match the event"));
    }
    if (newest != nullptr && row.sequence == newest->sequence() && row.hash != newest->hash()) {
      return broken(row.sequence,
                    absl::StrCat("the record's hash differs from the signed checkpoint at "
                                 "sequence ",
                                 newest->sequence(), " (the chain was rewritten since)"));
    }
    expected_sequence = row.sequence + 1;
    expected_previous = row.hash;
    return true;
  });
  if (absl::IsDataLoss(scan)) {
    // A chain that cannot be read to the end because the database is corrupt is a broken
    // chain, reported like the others; any other error (the store unreachable, locked) fails
    // the verification instead of posing as tampering.
    broken(expected_sequence, absl::StrCat("the chain cannot be read: ", scan.message()));
  } else if (!scan.ok()) {
    return scan;
  }
  const int64_t head = expected_sequence - 1;
  report.set_head_sequence(report.records() > 0 || checkpoint->sequence > 0 ? head : 0);
  if (!report.intact()) {
    return report;
  }
  if (attested && newest == nullptr) {
    broken(checkpoint->sequence + 1,
           "the chain has no signed checkpoint (a chain no checkpoint attests: added to the "
           "database, or written by a replica whose checkpoints were not given)");
    return report;
  }
  if (newest == nullptr) {
    return report;
  }
  if (head < newest->sequence()) {
    broken(head + 1, absl::StrCat("the chain ends at sequence ", head,
                                  ", before its signed checkpoint at sequence ", newest->sequence(),
                                  " (records were deleted from its end)"));
    return report;
  }
  if (newest->sequence() == checkpoint->sequence && newest->hash() != checkpoint->hash) {
    broken(newest->sequence(), absl::StrCat("retention's cut at sequence ", checkpoint->sequence,
                                            " has another hash than the signed checkpoint there"));
    return report;
  }
  const int64_t covered = std::max(newest->sequence(), checkpoint->sequence);
  if (head - covered > max_unsigned_records) {
    broken(covered + 1,
           absl::StrCat("records ", covered + 1, " to ", head,
                        " are not covered by a signed checkpoint (the newest is at sequence ",
                        newest->sequence(), "; allowed after it: ", max_unsigned_records, ")"));
  }
  return report;
}

absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const std::string& chain_id) {
  VerifyOptions options;
  options.chain_id = chain_id;
  return VerifyChains(store, options);
}

absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const VerifyOptions& options) {
  absl::StatusOr<std::vector<std::string>> chains = store.ListChains();
  if (!chains.ok()) {
    return chains.status();
  }
  podgate::audit::v1::VerifyResponse response;
  response.set_intact(true);
  auto problem = [&](std::string text) {
    response.set_intact(false);
    response.add_problems(std::move(text));
  };
  std::string note;
  absl::StatusOr<std::vector<std::string>> integrity = store.CheckIntegrity(&note);
  if (!integrity.ok()) {
    return integrity.status();
  }
  for (std::string& line : *integrity) {
    response.set_intact(false);
    response.add_integrity_problems(std::move(line));
  }
  // The newest trusted checkpoint of each chain.
  std::map<std::string, podgate::audit::v1::SignedCheckpoint> newest;
  for (const auto& c : options.checkpoints) {
    auto [it, inserted] = newest.try_emplace(c.chain_id(), c);
    if (!inserted && c.sequence() > it->second.sequence()) {
      it->second = c;
    }
  }
  const bool attested = !options.checkpoints.empty();
  std::vector<std::string> to_check = *chains;
  if (!options.chain_id.empty()) {
    if (std::find(chains->begin(), chains->end(), options.chain_id) == chains->end() &&
        newest.count(options.chain_id) == 0) {
      return absl::NotFoundError(absl::StrCat("chain ", options.chain_id, " has no records"));
    }
    to_check = {options.chain_id};
  }
  for (const auto& [chain, checkpoint] : newest) {
    if (!options.chain_id.empty() && chain != options.chain_id) {
      continue;
    }
    if (std::find(chains->begin(), chains->end(), chain) == chains->end()) {
      problem(absl::StrCat("chain ", chain, ": missing from the store, but signed checkpoint ",
                           "at sequence ", checkpoint.sequence(),
                           " attests it (the chain was deleted)"));
      to_check.erase(std::remove(to_check.begin(), to_check.end(), chain), to_check.end());
    }
  }
  if (chains->empty() && options.chain_id.empty()) {
    problem(
        "the store holds no chains: every record is gone (an audit store that recorded "
        "nothing yet has nothing to verify)");
  }
  for (const std::string& chain : to_check) {
    auto it = newest.find(chain);
    absl::StatusOr<podgate::audit::v1::ChainReport> report =
        VerifyChain(store, chain, it == newest.end() ? nullptr : &it->second, attested,
                    options.max_unsigned_records);
    if (!report.ok()) {
      return report.status();
    }
    response.set_intact(response.intact() && report->intact());
    *response.add_chains() = *std::move(report);
  }
  return response;
}

}  // namespace podgate::audit
