// podgate-policy: Evaluates commands against the policy document: Authorize, AuthorizeStream, ListAllowed, GetPolicy, ValidatePolicy.
#include "policy/policy_service.h"
#include "runtime/flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  podgate::runtime::BlockShutdownSignals();
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-policy: Evaluates commands against the policy document: Authorize, AuthorizeStream, ListAllowed, GetPolicy, ValidatePolicy.\n"
                               "Every flag may also be set as PODGATE_<FLAG>.");
  podgate::runtime::InitLoggingFromFlags("policy");
  auto registry = std::make_shared<prometheus::Registry>();
  podgate::policy::PolicyServiceImpl service;
  return podgate::runtime::RunServer({"policy", "[::]:7101", "[::]:9101"}, {&service},
                                     registry);
}
