// W3C Trace Context (https://www.w3.org/TR/trace-context/): the `traceparent` value that ties
// together what edge, exec, policy and audit log and record about one session.
//
//   traceparent = version "-" trace-id "-" parent-id "-" trace-flags
//   e.g.          00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01
//
// podgate uses it as a correlation id only: a client may send any value, so a trace id is never
// trusted for anything but joining log lines and audit records. Parsing follows the
// specification strictly (lowercase hex, all-zero ids and version ff invalid, a future version's
// first four fields read and the rest ignored); a value that does not parse is replaced by a new
// trace, never refused. docs/architecture.md, "Trace context", is the reference.
//
// No gRPC here (the fuzz target compiles this file alone); runtime/trace_metadata.h carries a
// context over gRPC metadata.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace podgate::runtime {

// The HTTP header and gRPC metadata key.
inline constexpr char kTraceparentHeader[] = "traceparent";
// The response header edge answers with: the same format, naming edge's own span.
inline constexpr char kTraceresponseHeader[] = "traceresponse";
// Longer values are not parsed at all (a version-00 value is 55 characters; a future version may
// append fields, but a correlation id has no business being kilobytes long).
inline constexpr size_t kMaxTraceparentLength = 256;

// One hop's view of a trace: the trace it belongs to and its own span.
struct TraceContext {
  std::string trace_id;  // 32 lowercase hex digits, not all zero
  std::string span_id;   // 16 lowercase hex digits, not all zero: this hop's span
  uint8_t flags = 0;     // trace-flags; only bit 0 (sampled) is propagated

  // Whether both ids are well formed; a default-constructed context is not.
  bool valid() const;
  // "00-<trace_id>-<span_id>-<flags>": what this hop sends to the next one as its parent, and
  // what edge returns to the client.
  std::string Header() const;

  friend bool operator==(const TraceContext&, const TraceContext&) = default;
};

// Parses a traceparent value. The context names the sender's span (the parent-id). Errors say
// what is wrong (INVALID_ARGUMENT).
absl::StatusOr<TraceContext> ParseTraceparent(std::string_view value);

// A new trace: a random 16-byte trace id and 8-byte span id, flags 00.
TraceContext NewTrace();

// A new span of `parent`'s trace: same trace id and sampled flag, a new random span id.
TraceContext ChildSpan(const TraceContext& parent);

// What a receiver makes of an incoming traceparent (empty: none was sent): a child span of it
// when it parses, else a new trace. `error`, when given, receives why a non-empty value was
// replaced (empty when it was taken).
TraceContext ContinueOrStart(std::string_view incoming, std::string* error = nullptr);

// 16 lowercase hex digits of a new random span id (never all zero).
std::string NewSpanId();

// Whether `text` is a well-formed trace id: 32 lowercase hex digits, not all zero.
bool IsTraceId(std::string_view text);

}  // namespace podgate::runtime
