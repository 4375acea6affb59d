// One entry of exec's journal of running commands (journal.h) and its file format: a launch
// line of kJournalLaunchLineBytes, then the entry as JSON (version 2); entries of an older exec
// (JSON version 1, the pid inside) are read too. Kept apart from the journal so that the parser,
// which reads files a crash may have cut off, is fuzzed alone (tests/fuzz/journal_entry_fuzzer.cc).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::exec {

struct JournalEntry {
  // The name of the entry's file: the id of the command's COMMAND_RESULT event (random hex).
  // Recovery records its result under this id and its session's close under close_event_id,
  // so a record the dead exec already delivered is not stored twice (audit keeps an id once).
  std::string result_event_id;
  std::string close_event_id;
  std::string session_id;
  std::string command_id;
  podgate::common::v1::Principal principal;
  // Namespace, pod and container (labels are not kept).
  podgate::common::v1::Target target;
  std::string source_address;
  // The session's W3C trace id (optional in the file: entries of an older exec have none).
  std::string trace_id;
  // The launch wrapper's report: the process and its start time in clock ticks since boot.
  // Both empty while the command is not launched: its wrapper never got `go`, so nothing of it
  // ran (go follows the pid's fdatasync).
  std::string pid;
  std::string start_ticks;
  absl::Time started;
  absl::Time session_opened;
  // The command line as the user sent it.
  std::string line;
};

// The entry's first line: "podgate-launch <pid> <start_ticks>" or "podgate-launch -" (not
// launched), padded with spaces to this size with its newline. It lies in the file's first
// sector, so rewriting it changes no size, no name and no other block.
inline constexpr size_t kJournalLaunchLineBytes = 64;

// An entry's id, its file's name: lower-case hex and '-' (runtime::RandomId), 1 to 64 bytes.
bool IsJournalEntryId(std::string_view id);
// A pid or start time as the launch line holds it: 1 to 20 ASCII digits.
bool IsJournalNumber(std::string_view n);

// Serializes and parses one entry: the launch line, then JSON (version 2). Entries of an older
// exec (JSON version 1, always with a pid) are read too. Parse errors say which field is wrong.
std::string EncodeJournalEntry(const JournalEntry& entry);
// The launch line for `pid` and `start_ticks` ("" and "": not launched).
std::string JournalLaunchLine(const std::string& pid, const std::string& start_ticks);
absl::StatusOr<JournalEntry> DecodeJournalEntry(const std::string& text);

}  // namespace podgate::exec
