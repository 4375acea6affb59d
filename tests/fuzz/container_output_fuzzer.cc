// Fuzzes the parsers of what containers answer exec (services/exec/container_probe.h): the
// launch wrapper's report on a command's stderr, `id -u` for the root guard, the JVM probe and
// the path probe. A container's image may replace /bin/sh, `id` or `readlink`, so every byte
// here may be hostile. Besides crashes and undefined behaviour it checks what exec relies on:
//  - the launch report reads the same whether stderr arrives at once or in any chunks, what
//    follows the report is the command's own stderr byte for byte, and a reported pid and start
//    time are numbers the journal's launch line accepts (journal_entry.h), the pid 1..kMaxPid;
//  - a uid that parses prints back as the input (one optional newline);
//  - the JVM probe says kJvm only for exactly "jvm <pid>\n" with exit status 0;
//  - a resolved path that parses is absolute, canonical, and the input without its newline.
#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "exec/container_probe.h"
#include "exec/journal_entry.h"
#include "require.h"

using podgate::fuzz::Require;

namespace exec = podgate::exec;

namespace {

void LaunchReport(FuzzedDataProvider& in) {
  const std::string stderr_text = in.ConsumeRandomLengthString(256);
  exec::LaunchReport whole;
  std::string whole_rest;
  whole.Feed(stderr_text, &whole_rest);
  // The same bytes in chunks, as stream frames bring them; what follows the report is kept.
  exec::LaunchReport chunked;
  std::string chunked_rest;
  std::string_view left = stderr_text;
  while (!left.empty()) {
    const size_t n = in.ConsumeIntegralInRange<size_t>(1, left.size());
    std::string rest;
    const bool reported_before = chunked.status() != exec::LaunchReport::Status::kPending;
    const std::string_view chunk = left.substr(0, n);
    chunked.Feed(absl::string_view(chunk.data(), chunk.size()), &rest);
    if (reported_before || chunked.status() == exec::LaunchReport::Status::kReported) {
      chunked_rest += rest;
    }
    left.remove_prefix(n);
  }
  Require(whole.status() == chunked.status(), "chunks change nothing", stderr_text);
  if (whole.status() != exec::LaunchReport::Status::kReported) {
    return;
  }
  Require(whole.pid() == chunked.pid() && whole.start_ticks() == chunked.start_ticks(),
          "the same report", stderr_text);
  Require(whole_rest == chunked_rest, "the command's own stderr is kept", stderr_text);
  const std::string line =
      absl::StrCat("podgate-pid ", whole.pid(), " ", whole.start_ticks(), "\n");
  Require(stderr_text == line + whole_rest, "the report is the first line, exactly", stderr_text);
  Require(exec::IsJournalNumber(whole.pid()) && exec::IsJournalNumber(whole.start_ticks()),
          "the journal takes the report", stderr_text);
  int64_t pid = 0;
  Require(absl::SimpleAtoi(whole.pid(), &pid) && pid >= 1 && pid <= exec::kMaxPid, "a pid in range",
          stderr_text);
}

void Uid(FuzzedDataProvider& in) {
  const std::string text = in.ConsumeRandomLengthString(64);
  absl::StatusOr<int64_t> uid = exec::ParseUid(text);
  if (uid.ok()) {
    Require(*uid >= 0, "a uid is not negative", text);
    const std::string printed = absl::StrCat(*uid);
    Require(text == printed || text == printed + "\n", "the uid prints back", text);
  }
}

void Jvm(FuzzedDataProvider& in) {
  const int exit_code = in.ConsumeIntegralInRange<int>(-1, 256);
  const std::string pid = in.ConsumeRandomLengthString(16);
  const std::string text = in.ConsumeRandomLengthString(64);
  absl::StatusOr<exec::JvmProbeVerdict> verdict = exec::ParseJvmProbe(pid, exit_code, text);
  if (verdict.ok() && *verdict == exec::JvmProbeVerdict::kJvm) {
    Require(exit_code == 0 && text == absl::StrCat("jvm ", pid, "\n"), "kJvm only when exact",
            text);
  }
}

void Path(FuzzedDataProvider& in) {
  const int exit_code = in.ConsumeIntegralInRange<int>(-1, 256);
  const std::string text = in.ConsumeRandomLengthString(512);
  absl::StatusOr<std::string> path = exec::ParsePathProbe(exit_code, text);
  if (path.ok()) {
    Require(exit_code == 0, "a path only on success", text);
    Require(text == *path + "\n", "the path is the answer without its newline", text);
    Require(!path->empty() && (*path)[0] == '/', "absolute", text);
    Require(path->find("//") == std::string::npos, "no empty component", text);
    Require(*path == "/" || path->back() != '/', "no trailing slash", text);
    Require(path->find("/./") == std::string::npos && path->find("/../") == std::string::npos &&
                !path->ends_with("/.") && !path->ends_with("/.."),
            "no . or .. component", text);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider in(data, size);
  switch (in.ConsumeIntegralInRange<int>(0, 3)) {
    case 0:
      LaunchReport(in);
      break;
    case 1:
      Uid(in);
      break;
    case 2:
      Jvm(in);
      break;
    default:
      Path(in);
      break;
  }
  return 0;
}
