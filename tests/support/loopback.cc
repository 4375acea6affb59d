#include "support/loopback.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

namespace podgate::testing {
namespace {

// A TCP socket bound to 127.0.0.1 on a port the kernel picks, listening when `backlog` > 0.
// Returns the port (0 on failure, `*fd` then closed and -1).
int BindLoopback(int backlog, int* fd) {
  *fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  const bool ok = *fd >= 0 && bind(*fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
                  (backlog <= 0 || listen(*fd, backlog) == 0) &&
                  getsockname(*fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0;
  if (!ok) {
    if (*fd >= 0) {
      close(*fd);
    }
    *fd = -1;
    return 0;
  }
  return ntohs(addr.sin_port);
}

}  // namespace

int UnusedLoopbackPort() {
  int fd = -1;
  const int port = BindLoopback(0, &fd);
  if (fd >= 0) {
    close(fd);
  }
  return port;
}

SilentListener::SilentListener() { port_ = BindLoopback(16, &fd_); }

SilentListener::~SilentListener() {
  if (fd_ >= 0) {
    close(fd_);
  }
}

}  // namespace podgate::testing
