// The log's writer: complete lines queued in a bounded buffer and written to a file descriptor
// (stderr) by one thread of its own, several lines per write(2).
//
// A service's threads must not wait on whoever reads its stderr: when that reader stalls (a stuck
// container runtime or log collector, a node's full disk), a pipe is full after 64 KiB and every
// write(2) to it blocks, and with it the gRPC or Asio thread that logged — a policy service that
// logs its denials stops answering, and an exit that logs "signal received" never ends. Here a
// line is only appended to the buffer; when the buffer (what is queued plus what is being
// written) would exceed its limit, the line is dropped and counted, and as soon as a write
// succeeds again the writer adds one line saying how many were dropped:
//
//   {"ts":"...","level":"warning","service":"policy","msg":"log lines dropped","dropped":2618}
//
// The price: lines still queued when the process dies of a signal are lost (a normal exit, and
// runtime::ExitWithError, flush them first with a bounded wait).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/time/time.h"

namespace podgate::log {

// What a writer did so far, for the metrics (podgate_log_*).
struct WriterStats {
  uint64_t lines_written = 0;
  uint64_t lines_dropped = 0;
  // Queued or being written now, and the limit on that.
  size_t buffer_bytes = 0;
  size_t buffer_limit_bytes = 0;
};

class LineWriter {
 public:
  // The buffer's bounds (--log_buffer_bytes).
  static constexpr size_t kMinBufferBytes = 64 * 1024;
  static constexpr size_t kMaxBufferBytes = 256 * 1024 * 1024;
  static constexpr size_t kDefaultBufferBytes = 1024 * 1024;

  // Writes to `fd` (not owned, left open). `service_json` is the "service" value of the notice
  // lines, already a JSON string literal. `limit_bytes` within the bounds above.
  LineWriter(int fd, size_t limit_bytes, std::string service_json);
  // Flushes (waiting at most 2 s for a stalled reader), then stops the thread. A thread still
  // blocked in write(2) is left to finish on its own; it holds its own state.
  ~LineWriter();

  LineWriter(const LineWriter&) = delete;
  LineWriter& operator=(const LineWriter&) = delete;

  // Queues `line` (without its newline) if it fits; false when it was dropped.
  bool Append(std::string_view line);

  // Waits until every line appended before the call is written (or its write failed), at most
  // `timeout`; false when the time ran out.
  bool Flush(absl::Duration timeout);

  WriterStats Stats() const;

  struct Core;

 private:
  std::shared_ptr<Core> core_;
};

}  // namespace podgate::log
