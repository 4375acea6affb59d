// Structured logs: one JSON object per line on stderr, written through spdlog.
//
//   {"ts":"2026-11-28T04:33:01.123Z","level":"info","service":"exec","msg":"session open",
//    "session_id":"7f3c...","user":"alice"}
//
// Fields carry request and session ids explicitly, because asynchronous callbacks run on
// whatever thread gRPC or Asio picks: a thread-local context would attach the wrong ids.
// Never pass a credential as a field; tokens must not reach logs.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "runtime/log_writer.h"

namespace podgate::log {

enum class Level { kDebug, kInfo, kWarn, kError };

// Parses "debug", "info", "warn" or "error".
absl::Status ParseLevel(std::string_view text, Level* level);

// One key/value pair of a log line. Numbers and booleans are written unquoted.
class Field {
 public:
  Field(std::string_view key, std::string_view value);
  Field(std::string_view key, const char* value);
  Field(std::string_view key, const std::string& value);
  Field(std::string_view key, int64_t value);
  Field(std::string_view key, int value);
  Field(std::string_view key, uint64_t value);
  Field(std::string_view key, double value);
  Field(std::string_view key, bool value);

  std::string_view key() const { return key_; }
  // The value as a JSON token (quoted and escaped for strings).
  const std::string& json() const { return json_; }

 private:
  std::string_view key_;
  std::string json_;
};

using Fields = std::initializer_list<Field>;

// Sets up the process-wide logger for `service` (the "service" field of every line). Without
// a call, lines go to stderr with service "podgate", written by the thread that logs. With it,
// lines go to stderr through a buffer of `buffer_bytes` written by a thread of its own
// (runtime/log_writer.h): a stalled reader of stderr costs dropped, counted lines, never a
// blocked service thread; a normal exit flushes the buffer (at most 2 s). Safe to call again
// (tests do).
void Init(std::string_view service, Level level,
          size_t buffer_bytes = LineWriter::kDefaultBufferBytes);

// Waits until every line logged so far is written, at most `timeout` (before an exit that
// skips the exit handlers); false when the time ran out. True without Init.
bool Flush(absl::Duration timeout);

// The buffer's counters since Init (podgate_log_* metrics); zeros without Init.
WriterStats Stats();

// Where lines go; tests capture them. `sink` receives each complete JSON line.
void InitForTest(std::string_view service, Level level,
                 void (*sink)(std::string_view line, void* arg), void* arg);

void Debug(std::string_view msg, Fields fields = {});
void Info(std::string_view msg, Fields fields = {});
void Warn(std::string_view msg, Fields fields = {});
void Error(std::string_view msg, Fields fields = {});

// Appends `text` to `out` as a JSON string literal (quotes included). Invalid UTF-8 bytes are
// replaced by U+FFFD so that every line stays valid JSON.
void AppendJsonString(std::string_view text, std::string* out);

}  // namespace podgate::log
