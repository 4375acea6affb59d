// podgate-audit: Persists audit records: Record, Query, Verify.
#include "audit/audit_service.h"
#include "runtime/flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  podgate::runtime::BlockShutdownSignals();
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-audit: Persists audit records: Record, Query, Verify.\n"
                               "Every flag may also be set as PODGATE_<FLAG>.");
  podgate::runtime::InitLoggingFromFlags("audit");
  auto registry = std::make_shared<prometheus::Registry>();
  podgate::audit::AuditServiceImpl service;
  return podgate::runtime::RunServer({"audit", "[::]:7103", "[::]:9103"}, {&service},
                                     registry);
}
