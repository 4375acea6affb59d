#include "audit/verify.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

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

absl::StatusOr<podgate::audit::v1::ChainReport> VerifyChain(Store& store,
                                                            const std::string& chain_id) {
  absl::StatusOr<Checkpoint> checkpoint = store.GetCheckpoint(chain_id);
  if (!checkpoint.ok()) {
    return checkpoint.status();
  }
  podgate::audit::v1::ChainReport report;
  report.set_chain_id(chain_id);
  report.set_intact(true);
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
    expected_sequence = row.sequence + 1;
    expected_previous = row.hash;
    return true;
  });
  if (!scan.ok()) {
    return scan;
  }
  return report;
}

absl::StatusOr<podgate::audit::v1::VerifyResponse> VerifyChains(Store& store,
                                                                const std::string& chain_id) {
  absl::StatusOr<std::vector<std::string>> chains = store.ListChains();
  if (!chains.ok()) {
    return chains.status();
  }
  if (!chain_id.empty()) {
    if (std::find(chains->begin(), chains->end(), chain_id) == chains->end()) {
      return absl::NotFoundError(absl::StrCat("chain ", chain_id, " has no records"));
    }
    *chains = {chain_id};
  }
  podgate::audit::v1::VerifyResponse response;
  response.set_intact(true);
  for (const std::string& chain : *chains) {
    absl::StatusOr<podgate::audit::v1::ChainReport> report = VerifyChain(store, chain);
    if (!report.ok()) {
      return report.status();
    }
    response.set_intact(response.intact() && report->intact());
    *response.add_chains() = *std::move(report);
  }
  return response;
}

}  // namespace podgate::audit
