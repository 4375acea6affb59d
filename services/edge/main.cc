// podgate-edge: terminates browser WebSockets, serves the web page and turns browser frames
// into exec sessions. Today it serves health and metrics; the HTTP/WebSocket front comes next.
#include "runtime/flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  podgate::runtime::BlockShutdownSignals();
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-edge: the browser-facing service of podgate.\n"
                               "Every flag may also be set as PODGATE_<FLAG>.");
  podgate::runtime::InitLoggingFromFlags("edge");
  auto registry = std::make_shared<prometheus::Registry>();
  return podgate::runtime::RunServer({"edge", "[::]:7104", "[::]:9104"}, {}, registry);
}
