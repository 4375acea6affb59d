// Fuzzes the W3C traceparent parser (lib/runtime/trace.h). Besides crashes and undefined
// behaviour it checks what the services rely on:
//  - a value that parses yields a valid context whose Header() parses back to the same ids;
//  - whatever the input, ContinueOrStart yields a valid context, and keeps the trace id exactly
//    when the input parses.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "require.h"
#include "runtime/trace.h"

using podgate::fuzz::Require;

namespace runtime = podgate::runtime;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  absl::StatusOr<runtime::TraceContext> parsed = runtime::ParseTraceparent(input);
  if (parsed.ok()) {
    Require(parsed->valid(), "a parsed context is valid", input);
    absl::StatusOr<runtime::TraceContext> again = runtime::ParseTraceparent(parsed->Header());
    Require(again.ok() && again->trace_id == parsed->trace_id &&
                again->span_id == parsed->span_id && again->flags == (parsed->flags & 1),
            "Header() parses back", input);
  }
  std::string error;
  runtime::TraceContext continued = runtime::ContinueOrStart(input, &error);
  Require(continued.valid(), "ContinueOrStart is valid", input);
  Require(parsed.ok() == error.empty() || input.empty(), "an error exactly when it fails", input);
  if (parsed.ok()) {
    Require(continued.trace_id == parsed->trace_id, "the trace id is kept", input);
  }
  return 0;
}
