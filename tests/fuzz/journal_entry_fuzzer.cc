// Fuzzes the parser of exec's journal entries (services/exec/journal_entry.h), which reads, at
// start-up, files a crash may have cut off anywhere. Besides crashes and undefined behaviour it
// checks what recovery relies on:
//  - an entry that parses has a valid id and either no pid (never launched: nothing ran) or a
//    pid and start time that are numbers the launch line has room for;
//  - encoding a parsed entry and parsing that again gives the same entry (same encoding), and
//    the encoding starts with the entry's launch line, exactly kJournalLaunchLineBytes long;
//  - replacing that launch line with another pid's, as exec does in place before "go", parses
//    to the same entry with the new pid; and with "not launched", to the entry without one;
//  - the result is deterministic.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "exec/journal_entry.h"
#include "require.h"

using podgate::fuzz::Require;

namespace exec = podgate::exec;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<exec::JournalEntry> entry = exec::DecodeJournalEntry(input);
  absl::StatusOr<exec::JournalEntry> again = exec::DecodeJournalEntry(input);
  Require(entry.ok() == again.ok(), "deterministic", input);
  if (!entry.ok()) {
    Require(!entry.status().message().empty(), "a refusal says why", input);
    Require(entry.status() == again.status(), "the same refusal", input);
    return 0;
  }
  Require(exec::IsJournalEntryId(entry->result_event_id), "a valid id", input);
  Require(!entry->close_event_id.empty(), "a close event id", input);
  Require(entry->pid.empty() == entry->start_ticks.empty(), "pid and start time together", input);
  Require(entry->pid.empty() ||
              (exec::IsJournalNumber(entry->pid) && exec::IsJournalNumber(entry->start_ticks)),
          "a pid and start time are numbers", input);
  Require(!entry->target.namespace_().empty() && !entry->target.pod().empty() &&
              !entry->target.container().empty(),
          "a complete target", input);

  const std::string encoded = exec::EncodeJournalEntry(*entry);
  const std::string launch_line = exec::JournalLaunchLine(entry->pid, entry->start_ticks);
  Require(launch_line.size() == exec::kJournalLaunchLineBytes, "the launch line's size", input);
  Require(encoded.compare(0, launch_line.size(), launch_line) == 0,
          "the encoding starts with the launch line", input);
  absl::StatusOr<exec::JournalEntry> decoded = exec::DecodeJournalEntry(encoded);
  Require(decoded.ok(), "an encoded entry parses", input);
  Require(exec::EncodeJournalEntry(*decoded) == encoded, "encoding round-trips", input);

  std::string launched = encoded;
  launched.replace(0, exec::kJournalLaunchLineBytes,
                   exec::JournalLaunchLine("4194304", "18446744073709551615"));
  absl::StatusOr<exec::JournalEntry> with_pid = exec::DecodeJournalEntry(launched);
  Require(with_pid.ok() && with_pid->pid == "4194304" &&
              with_pid->start_ticks == "18446744073709551615",
          "a launch line written in place is read", input);
  std::string not_launched = encoded;
  not_launched.replace(0, exec::kJournalLaunchLineBytes, exec::JournalLaunchLine("", ""));
  absl::StatusOr<exec::JournalEntry> without = exec::DecodeJournalEntry(not_launched);
  Require(without.ok() && without->pid.empty() && without->start_ticks.empty(),
          "a not launched entry is read", input);
  exec::JournalEntry expected = *entry;
  expected.pid.clear();
  expected.start_ticks.clear();
  Require(exec::EncodeJournalEntry(*without) == exec::EncodeJournalEntry(expected),
          "only the launch line differs", input);
  return 0;
}
