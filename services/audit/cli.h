// The logic of podgate-audit-cli (query and verify against a running audit service), kept in
// the library so that tests drive it against a real in-process server.
#pragma once

#include <ostream>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::audit::cli {

// Output formats of `query`.
enum class Format { kTable, kJsonLines };

absl::StatusOr<Format> ParseFormat(const std::string& text);

// "command_request" or "EVENT_KIND_COMMAND_REQUEST" (any case) to the enum value.
absl::StatusOr<podgate::common::v1::EventKind> ParseKind(const std::string& text);
// "allow" / "deny" (or the enum names).
absl::StatusOr<podgate::common::v1::Verdict> ParseVerdict(const std::string& text);
// An RFC 3339 time ("2026-11-28T04:00:00Z").
absl::StatusOr<google::protobuf::Timestamp> ParseTime(const std::string& text);

// Runs the query page after page until `limit` records (0: all) were printed to `out`, one
// record per line: a table (with a header) or JSON lines (protobuf JSON of AuditRecord, for a
// SIEM). Returns how many records were printed.
// `timeout` bounds each page's call.
absl::StatusOr<int64_t> RunQuery(podgate::audit::v1::AuditService::StubInterface& stub,
                                 podgate::audit::v1::QueryRequest request, int64_t limit,
                                 Format format, std::ostream& out,
                                 absl::Duration timeout = absl::InfiniteDuration());

// `tail --lines`: 1 to 1000.
absl::Status CheckLines(int lines);

// `tail`: prints the last `lines` matching records (oldest first); with `follow`, then every
// new matching record as the server commits it, flushing each line, until the stream ends.
// `ctx` is the call's context: cancelling it (e.g. on SIGINT) ends a follow cleanly (returns
// the count, not an error). Returns how many records were printed.
absl::StatusOr<int64_t> RunTail(podgate::audit::v1::AuditService::StubInterface& stub,
                                podgate::audit::v1::QueryRequest request, int lines, bool follow,
                                Format format, std::ostream& out, grpc::ClientContext* ctx);

// Prints one line per chain; returns whether every chain is intact.
absl::StatusOr<bool> RunVerify(podgate::audit::v1::AuditService::StubInterface& stub,
                               const std::string& chain_id, std::ostream& out);

// `verify` with signed checkpoints.
struct VerifyFlags {
  // One chain; empty: every chain.
  std::string chain_id;
  // Files of signed checkpoints (JSON lines: the checkpoint state file, a file sink's output,
  // `checkpoint` command output).
  std::vector<std::string> checkpoint_files;
  // PEM Ed25519 public keys the checkpoints and retention cuts must be signed with.
  std::vector<std::string> public_key_files;
  // Records a chain may hold after its newest signed checkpoint.
  int64_t max_unsigned_records = 0;
  // The longest the Verify call may take.
  absl::Duration timeout = absl::InfiniteDuration();
};

// Checks every checkpoint's signature here (offline, with the public keys), sends each chain's
// newest valid one with the Verify request, checks the signature of each chain's retention cut, and
// prints one line per chain and one per problem (naming the chain and the sequence). Returns
// whether everything holds; an error (bad flags, an unreadable key or file, the server unreachable)
// is a status.
absl::StatusOr<bool> RunVerify(podgate::audit::v1::AuditService::StubInterface& stub,
                               const VerifyFlags& flags, std::ostream& out);

// Asks audit to sign its head now and prints the checkpoint as one JSON line (append it to a
// checkpoint file).
absl::StatusOr<podgate::audit::v1::SignedCheckpoint> RunCheckpoint(
    podgate::audit::v1::AuditService::StubInterface& stub, std::ostream& out,
    absl::Duration timeout = absl::InfiniteDuration());

// Sets `ctx`'s deadline `timeout` from now; an infinite timeout sets none.
void SetTimeout(grpc::ClientContext& ctx, absl::Duration timeout);

// One table line for a record (no newline).
std::string TableRow(const podgate::audit::v1::AuditRecord& record);
std::string TableHeader();

}  // namespace podgate::audit::cli
