// Loopback TCP sockets for tests of what a client does when the server is not there or does
// not answer.
#pragma once

namespace podgate::testing {

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
