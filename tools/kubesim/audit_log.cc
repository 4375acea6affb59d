#include "audit_log.h"

#include <fcntl.h>
#include <sys/time.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"
#include "runtime/ids.h"

namespace podgate::kubesim {
namespace {

using nlohmann::json;

json UserJson(const UserInfo& user) {
  json j = {{"username", user.name}};
  if (!user.uid.empty()) {
    j["uid"] = user.uid;
  }
  if (!user.groups.empty()) {
    j["groups"] = user.groups;
  }
  if (!user.extra.empty()) {
    j["extra"] = user.extra;
  }
  return j;
}

}  // namespace

std::string AuditTimestamp() {
  struct timeval tv;
  gettimeofday(&tv, nullptr);
  std::tm tm;
  gmtime_r(&tv.tv_sec, &tm);
  char buf[40];
  std::strftime(buf, sizeof(buf), "%Y-%m-%dT%H:%M:%S", &tm);
  char out[64];
  std::snprintf(out, sizeof(out), "%s.%06ldZ", buf, static_cast<long>(tv.tv_usec));
  return out;
}

std::string AuditEventJson(const AuditRecord& r, const std::string& audit_id,
                           const std::string& stage_timestamp) {
  json event = {{"kind", "Event"},
                {"apiVersion", "audit.k8s.io/v1"},
                {"level", "Metadata"},
                {"auditID", audit_id},
                {"stage", r.code == 101 ? "ResponseStarted" : "ResponseComplete"},
                {"requestURI", r.request_uri},
                {"verb", r.attributes.has_value() ? r.attributes->verb : r.verb},
                {"user", r.user.has_value() ? UserJson(*r.user) : json::object()},
                {"sourceIPs", json::array({r.source_ip})},
                {"requestReceivedTimestamp", r.received},
                {"stageTimestamp", stage_timestamp}};
  if (!r.user_agent.empty()) {
    event["userAgent"] = r.user_agent;
  }
  if (r.impersonated_user.has_value()) {
    event["impersonatedUser"] = UserJson(*r.impersonated_user);
  }
  if (r.attributes.has_value() && !r.attributes->resource.empty()) {
    const Attributes& a = *r.attributes;
    json ref = {{"resource", a.resource}};
    if (!a.namespace_name.empty()) {
      ref["namespace"] = a.namespace_name;
    }
    if (!a.name.empty()) {
      ref["name"] = a.name;
    }
    if (!a.api_group.empty()) {
      ref["apiGroup"] = a.api_group;
    }
    ref["apiVersion"] = "v1";
    if (!a.subresource.empty()) {
      ref["subresource"] = a.subresource;
    }
    event["objectRef"] = ref;
  }
  json status = {{"metadata", json::object()}, {"code", r.code}};
  if (r.code >= 300 && r.code != 101) {
    status["status"] = "Failure";
    if (!r.status_reason.empty()) {
      status["reason"] = r.status_reason;
    }
    if (!r.status_message.empty()) {
      status["message"] = r.status_message;
    }
  }
  event["responseStatus"] = status;
  if (r.attributes.has_value()) {
    event["annotations"] = {{"authorization.k8s.io/decision", r.allowed ? "allow" : "forbid"},
                            {"authorization.k8s.io/reason", ""}};
  }
  return event.dump(-1, ' ', false, json::error_handler_t::replace);
}

absl::StatusOr<std::unique_ptr<AuditLog>> AuditLog::Open(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open audit log ", path, ": ", std::strerror(errno)));
  }
  std::FILE* file = ::fdopen(fd, "a");
  if (file == nullptr) {
    ::close(fd);
    return absl::FailedPreconditionError(absl::StrCat("cannot open audit log ", path));
  }
  return std::unique_ptr<AuditLog>(new AuditLog(file));
}

AuditLog::~AuditLog() { std::fclose(file_); }

void AuditLog::Write(const AuditRecord& record) {
  // An auditID is a UUID: 128 random bits in the 8-4-4-4-12 form.
  std::string id = runtime::RandomId();
  id = absl::StrCat(id.substr(0, 8), "-", id.substr(8, 4), "-", id.substr(12, 4), "-",
                    id.substr(16, 4), "-", id.substr(20));
  std::string line = AuditEventJson(record, id, AuditTimestamp());
  line += '\n';
  absl::MutexLock lock(&mu_);
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace podgate::kubesim
