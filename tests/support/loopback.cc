#include "support/loopback.h"

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"

namespace podgate::testing {
namespace {

// "0100007F:1F90" (hex IPv4 in the kernel's byte order, hex port) into 127.0.0.1 and the port.
bool ParseAddress(absl::string_view text, bool* loopback, int* port) {
  std::vector<absl::string_view> parts = absl::StrSplit(text, ':');
  uint32_t host = 0;
  uint32_t p = 0;
  if (parts.size() != 2 || !absl::SimpleHexAtoi(parts[0], &host) ||
      !absl::SimpleHexAtoi(parts[1], &p) || p > 65535) {
    return false;
  }
  *loopback = parts[0] == "0100007F";
  *port = static_cast<int>(p);
  return true;
}

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

std::vector<LoopbackTcpSocket> LoopbackTcpSockets() {
  // "  sl  local_address rem_address   st tx_queue:rx_queue tr:tm->when retrnsmt ..."
  std::vector<LoopbackTcpSocket> out;
  std::ifstream in("/proc/net/tcp");
  std::string line;
  std::getline(in, line);  // the header
  while (std::getline(in, line)) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ', absl::SkipWhitespace());
    if (f.size() < 5) {
      continue;
    }
    LoopbackTcpSocket s;
    bool local_loopback = false;
    bool remote_loopback = false;
    std::vector<absl::string_view> queues = absl::StrSplit(f[4], ':');
    uint32_t state = 0;
    if (!ParseAddress(f[1], &local_loopback, &s.local_port) || !local_loopback ||
        !ParseAddress(f[2], &remote_loopback, &s.remote_port) ||
        !absl::SimpleHexAtoi(f[3], &state) || queues.size() != 2 ||
        !absl::SimpleHexAtoi(queues[0], &s.tx_queue) ||
        !absl::SimpleHexAtoi(queues[1], &s.rx_queue)) {
      continue;
    }
    s.state = static_cast<int>(state);
    out.push_back(s);
  }
  return out;
}

bool ListensOnLoopback(int port) {
  for (const LoopbackTcpSocket& s : LoopbackTcpSockets()) {
    if (s.local_port == port && s.state == kTcpListen) {
      return true;
    }
  }
  return false;
}

}  // namespace podgate::testing
