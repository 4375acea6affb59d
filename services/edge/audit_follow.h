// GET /api/v1/audit?follow=1: the live tail of the audit trail for auditors, streamed.
//
// One audit Query with `follow` per HTTP stream. As Server-Sent Events (text/event-stream, the
// default): each record is one `data:` line of the record's JSON (event name "record"), the
// end of the backlog is an event "ready", a ": keepalive" comment goes out every 15 s, and a
// backend failure is a last event "end" with {"code","message"} (not "error": EventSource
// uses that name for its own connection errors). With format=jsonl
// (application/x-ndjson): one record per line, blank lines as keepalives, a last
// {"error":{...}} line on failure. The body is chunked and bounded (lib/http's stream queue);
// while the client reads slower than records come, edge stops reading from audit, and audit
// ends the follow when its own queue fills (RESOURCE_EXHAUSTED). The client going away cancels
// the audit call.
#pragma once

#include <memory>
#include <string>

#include "absl/time/time.h"
#include "edge/edge_context.h"
#include "http/server.h"
#include "podgate/audit/v1/audit.pb.h"

namespace podgate::edge {

// Holds a Limits::AcquireAuditFollow slot of `user` (released when the stream ends) and
// streams `request` (follow set) from audit. `json_lines`: JSON lines instead of SSE.
std::shared_ptr<http::StreamProducer> NewAuditFollowStream(EdgeContext* context,
                                                           podgate::audit::v1::QueryRequest request,
                                                           std::string user, bool json_lines);

// Cancels the audit call of every open stream (edge's drain): each ends with a last "end"
// event (CANCELLED) and the end of the body, so no stream outlives the HTTP server. A stream
// that starts afterwards is cancelled as it starts.
void CancelAuditFollowStreams();

// Waits until every stream has written its end (or its client left) and released its slot,
// or until `deadline`. Returns whether none is left. Edge's drain calls it after
// CancelAuditFollowStreams, before the HTTP threads stop: without the wait, a stream's last
// event could still be queued on its connection when the process exits.
bool WaitAuditFollowStreamsEnded(absl::Time deadline);

// How often an idle stream sends a keepalive.
inline constexpr int kAuditKeepaliveSeconds = 15;

}  // namespace podgate::edge
