// Carries a W3C trace context (runtime/trace.h) over gRPC metadata: the caller sends its own
// span as the `traceparent` entry, the callee continues the trace with a span of its own (or
// starts a new trace when the entry is missing or malformed: a direct gRPC client need not send
// one).
#pragma once

#include "grpcpp/client_context.h"
#include "grpcpp/server_context.h"
#include "runtime/trace.h"

namespace podgate::runtime {

// Adds `trace`'s traceparent (naming trace.span_id as the parent) to an outgoing call. A
// context that is not valid() adds nothing.
void AddTraceMetadata(grpc::ClientContext* context, const TraceContext& trace);

// The trace of an incoming call: a child span of the caller's traceparent, or a new trace.
TraceContext TraceOfCall(const grpc::ServerContextBase& context);

}  // namespace podgate::runtime
