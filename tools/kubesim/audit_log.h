// kubesim's API-server-style audit log: one `audit.k8s.io/v1` `Event` per request, as JSON
// lines at level Metadata, with the authenticated `user`, the `impersonatedUser` when the
// request impersonated someone, the verb, the objectRef (subresource `exec` included) and the
// responseStatus — so a test can read the cluster's own trail of who did what.
#pragma once

#include <cstdio>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "rbac.h"

namespace podgate::kubesim {

// One request as the audit log records it.
struct AuditRecord {
  std::string request_uri;
  std::string source_ip;
  std::string user_agent;
  std::string received;  // RFC 3339 with microseconds
  // Unset before authentication succeeded (a 401): the event names no user.
  std::optional<UserInfo> user;
  std::optional<UserInfo> impersonated_user;
  // Set once the request's attributes are known (an authorizer decision was made).
  std::optional<Attributes> attributes;
  std::string verb;  // the request's verb even without attributes (get, list, create)
  bool allowed = false;
  int code = 0;  // 101 for an accepted exec upgrade
  std::string status_reason;
  std::string status_message;
};

// The Event as one JSON line (no trailing newline).
std::string AuditEventJson(const AuditRecord& record, const std::string& audit_id,
                           const std::string& stage_timestamp);

// Appends events to a file (mode 0600), one line each, flushed per event so a reader sees an
// event once the response is sent.
class AuditLog {
 public:
  static absl::StatusOr<std::unique_ptr<AuditLog>> Open(const std::string& path);
  ~AuditLog();
  void Write(const AuditRecord& record);

 private:
  explicit AuditLog(std::FILE* file) : file_(file) {}
  absl::Mutex mu_;
  std::FILE* const file_;
};

// The current time in the audit log's format (RFC 3339, microseconds, UTC).
std::string AuditTimestamp();

}  // namespace podgate::kubesim
