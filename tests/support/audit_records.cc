#include "support/audit_records.h"

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/create_channel.h"

namespace podgate::testing {

std::vector<podgate::audit::v1::AuditRecord> AuditRecords(int audit_port,
                                                          const std::string& session_id) {
  auto stub = podgate::audit::v1::AuditService::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", audit_port), grpc::InsecureChannelCredentials()));
  std::vector<podgate::audit::v1::AuditRecord> out;
  for (int attempt = 0; attempt < 50; ++attempt) {
    out.clear();
    grpc::ClientContext ctx;
    podgate::audit::v1::QueryRequest req;
    req.add_session_ids(session_id);
    req.set_page_size(1000);
    auto reader = stub->Query(&ctx, req);
    podgate::audit::v1::QueryResponse res;
    bool closed = false;
    while (reader->Read(&res)) {
      if (res.has_record()) {
        closed =
            closed || res.record().event().kind() == podgate::common::v1::EVENT_KIND_SESSION_CLOSE;
        out.push_back(res.record());
      }
    }
    (void)reader->Finish();
    if (closed) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(100));
  }
  return out;
}

std::vector<podgate::common::v1::AuditEvent> AuditEventsOf(int audit_port,
                                                           const std::string& session_id,
                                                           podgate::common::v1::EventKind kind,
                                                           size_t want) {
  std::vector<podgate::common::v1::AuditEvent> found;
  for (int i = 0; i < 200; ++i) {
    found.clear();
    for (const auto& r : AuditRecords(audit_port, session_id)) {
      if (r.event().kind() == kind) {
        found.push_back(r.event());
      }
    }
    if (found.size() >= want) {
      break;
    }
    absl::SleepFor(absl::Milliseconds(50));
  }
  return found;
}

}  // namespace podgate::testing
