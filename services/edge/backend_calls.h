// The gRPC calls edge has in flight to exec, policy and audit for browser sessions and HTTP
// requests, for shutdown.
//
// A call's last callbacks post to the I/O context (a session's strand, an HTTP connection):
// the process must not destroy that context before every call is over, even one whose session
// or request has already ended (a released exec stream still waits for exec's status). Each
// call registers its ClientContext when it starts and unregisters it after its last callback
// has handed everything it holds (the session, the reply) onward, before the context is
// destroyed.
#pragma once

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"

namespace podgate::edge {

void RegisterBackendCall(grpc::ClientContext* context);
void UnregisterBackendCall(grpc::ClientContext* context);

// Cancels every call in flight (thread-safe).
void CancelBackendCalls();
// Waits until no call is in flight or until `deadline`; true when none is.
bool WaitBackendCallsDone(absl::Time deadline);
// How many calls are in flight.
int LiveBackendCalls();

}  // namespace podgate::edge
