// Reads a session's records back from a real podgate-audit over gRPC, as an auditor would.
#pragma once

#include <string>
#include <vector>

#include "podgate/audit/v1/audit.grpc.pb.h"

namespace podgate::testing {

// Every audit record of `session_id` in the audit service on 127.0.0.1:`audit_port`, oldest
// first. The close event is recorded without waiting for it, so this asks again (up to 5 s)
// until the session's SESSION_CLOSE is there; what is there by then is returned.
std::vector<podgate::audit::v1::AuditRecord> AuditRecords(int audit_port,
                                                          const std::string& session_id);

// The events of `kind` among `session_id`'s records, once there are `want` of them (asked again
// for up to 10 s); what is there by then.
std::vector<podgate::common::v1::AuditEvent> AuditEventsOf(int audit_port,
                                                           const std::string& session_id,
                                                           podgate::common::v1::EventKind kind,
                                                           size_t want);

}  // namespace podgate::testing
