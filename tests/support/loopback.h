// Loopback TCP sockets for tests of what a client does when the server is not there or does
// not answer.
#pragma once

#include <cstdint>
#include <vector>

namespace podgate::testing {

// A TCP socket on 127.0.0.1 as the kernel lists it (/proc/net/tcp), for a test that waits for a
// socket's state without touching the socket (a probe connection is not harmless to every
// server, support/rsyslog.cc says why).
struct LoopbackTcpSocket {
  int local_port = 0;
  int remote_port = 0;  // 0 for a listener
  int state = 0;        // the kernel's TCP state: 1 ESTABLISHED, 10 LISTEN, ...
  // Bytes written and not yet acknowledged by the peer, and bytes received and not yet read.
  uint64_t tx_queue = 0;
  uint64_t rx_queue = 0;
};
constexpr int kTcpEstablished = 1;
constexpr int kTcpListen = 10;

// Every IPv4 TCP socket whose local address is 127.0.0.1 (empty if /proc/net/tcp is unreadable).
std::vector<LoopbackTcpSocket> LoopbackTcpSockets();

// Whether a socket listens on 127.0.0.1:`port`.
bool ListensOnLoopback(int port);

// A loopback port nothing listens on (bound, read and closed), for a server a test starts after
// its client. 0 if no port could be had.
int UnusedLoopbackPort();

// A loopback listener that never accepts: the kernel completes TCP connections into its accept
// queue and nothing is ever read or written (a peer that hangs after the TCP handshake). Closed
// when destroyed.
class SilentListener {
 public:
  SilentListener();
  ~SilentListener();
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;

  bool ok() const { return port_ > 0; }
  int fd() const { return fd_; }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace podgate::testing
