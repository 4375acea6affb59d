// podgate-exec: Holds the Kubernetes exec streams: Session and ListTargets.
#include "exec/exec_service.h"
#include "runtime/flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  podgate::runtime::BlockShutdownSignals();
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-exec: Holds the Kubernetes exec streams: Session and ListTargets.\n"
                               "Every flag may also be set as PODGATE_<FLAG>.");
  podgate::runtime::InitLoggingFromFlags("exec");
  auto registry = std::make_shared<prometheus::Registry>();
  podgate::exec::ExecServiceImpl service;
  return podgate::runtime::RunServer({"exec", "[::]:7102", "[::]:9102"}, {&service},
                                     registry);
}
