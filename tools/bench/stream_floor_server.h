// Starting one of podgate-bench-stream-floor's server roles, shared by the benchmarks that
// measure against it (podgate-bench-chain: Session streams; podgate-bench-policy:
// AuthorizeStream).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "support/subprocess.h"

namespace podgate::bench {

// Starts `binary` with `args` (a --role=...server) and waits for its "listening <port>" line;
// the port in `*port`. Its output so far is in the error when it does not start.
inline absl::StatusOr<std::unique_ptr<testing::Subprocess>> StartStreamFloorServer(
    const std::string& binary, const std::vector<std::string>& args, int* port) {
  absl::StatusOr<std::unique_ptr<testing::Subprocess>> server =
      testing::Subprocess::Start(binary, args);
  if (!server.ok()) {
    return server.status();
  }
  constexpr std::string_view kListening = "listening ";  // then the port
  absl::StatusOr<std::string> line =
      (*server)->WaitForLine(std::string(kListening), absl::Seconds(20));
  if (!line.ok() ||
      !absl::SimpleAtoi(line->substr(line->find(kListening) + kListening.size()), port)) {
    std::string log;
    for (const std::string& l : (*server)->Lines()) {
      absl::StrAppend(&log, "\n  ", l);
    }
    return absl::UnavailableError(absl::StrCat(
        "the stream-floor server did not start: ",
        line.ok() ? absl::StrCat("no port in '", *line, "'") : std::string(line.status().message()),
        log));
  }
  return server;
}

}  // namespace podgate::bench
