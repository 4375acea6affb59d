// Shell mode: one TTY stream per session (Session::StartShell, shell_run.cc), and its recording
// for audit. Keystrokes, output and resizes go into an asciicast (v2) recording, sent to audit
// in chunks (SHELL_RECORDING events, numbered from 0) when a chunk is big or old enough, and at
// close.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>

#include "absl/time/time.h"

namespace podgate::exec {

// A shell session's asciicast v2 text, cut into chunks: the header line, then one event a line,
// [seconds since the session opened, kind, data] (kind "o" output, "i" input, "r" resize).
class AsciicastRecording {
 public:
  // A chunk is due when the pending text reaches `chunk_bytes`, or `flush_every` after the
  // previous chunk.
  AsciicastRecording(size_t chunk_bytes, absl::Duration flush_every)
      : chunk_bytes_(chunk_bytes), flush_every_(flush_every) {}

  // Starts the recording with its header, which goes before anything already added: chunk 0
  // always begins with it, whatever order a session's threads reach the recording in.
  void Start(uint32_t width, uint32_t height, absl::Time now, const std::string& title);
  // Appends one event `t` seconds into the session; `data` is bytes (invalid UTF-8 replaced).
  // True when a chunk is due (TakeChunk); never before Start, so no chunk lacks the header.
  bool Add(double t, char kind, const std::string& data, absl::Time now);

  bool empty() const { return pending_.empty(); }
  // The pending text as the next chunk, with its sequence number; nothing is pending after.
  std::pair<int64_t, std::string> TakeChunk(absl::Time now);

 private:
  const size_t chunk_bytes_;
  const absl::Duration flush_every_;
  std::string pending_;
  int64_t sequence_ = 0;
  bool started_ = false;
  absl::Time last_flush_;
};

}  // namespace podgate::exec
