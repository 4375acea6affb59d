// A real syslog receiver for tests: Debian's rsyslogd (with its OpenSSL stream driver) started
// as a child process with a configuration of its own (no system config, its own work directory,
// the current user) listening on free loopback ports: plain TCP (imtcp), TLS (RFC 5425, server
// certificate from the test PKI, no client certificate asked) and mutual TLS (client certificate
// signed by the test CA required). Octet-counted framing (RFC 6587) is auto-detected by imtcp.
// Every received message is written, exactly as received, one JSON-escaped line per message, to
// a file that Messages() reads and parses (RFC 5424). Also an RFC 5424 parser for tests.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "support/subprocess.h"
#include "support/test_pki.h"

namespace podgate::testing {

// One RFC 5424 message, parsed.
struct SyslogMessage {
  std::string raw;
  int pri = -1;
  int version = 0;
  std::string timestamp;
  std::string hostname;
  std::string app_name;
  std::string procid;
  std::string msgid;
  struct Element {
    std::string id;
    std::vector<std::pair<std::string, std::string>> params;  // values unescaped
  };
  std::vector<Element> structured_data;
  bool bom = false;  // MSG started with a UTF-8 BOM (not part of `msg`)
  std::string msg;

  // The (first) value of `name` in the element `sd_id`; "" when absent.
  std::string Param(absl::string_view sd_id, absl::string_view name) const;
  bool HasParam(absl::string_view sd_id, absl::string_view name) const;
};

// Parses an RFC 5424 message strictly (header field syntax, SD-NAME rules, escaping); the error
// names what is wrong and where.
absl::StatusOr<SyslogMessage> ParseRfc5424(absl::string_view raw);

class RsyslogServer {
 public:
  // Starts rsyslogd with its files under a new temporary directory, using `pki`'s CA and server
  // certificate for the TLS listeners. Returns once all three listeners are open.
  static absl::StatusOr<std::unique_ptr<RsyslogServer>> Start(const TestPki& pki);

  ~RsyslogServer();

  int tcp_port() const { return tcp_port_; }
  int tls_port() const { return tls_port_; }
  int mtls_port() const { return mtls_port_; }
  // The temporary directory holding its configuration and the received messages' file (kept
  // after the server stops; a caller that received a lot may remove it).
  const std::string& dir() const { return dir_; }

  // Stops rsyslogd: SIGTERM and a wait (or SIGKILL right away when `kill`).
  absl::Status Stop(bool kill = false);
  // SIGSTOP: rsyslogd reads nothing more, while its kernel still accepts (and acknowledges)
  // bytes into the socket buffer. Stop or Restart ends it.
  absl::Status Freeze();
  // Stop (unless stopped) and start again on the same ports; the output file is kept.
  absl::Status Restart(bool kill = false);

  // Every message received so far (complete lines of the output file), raw.
  std::vector<std::string> RawMessages() const;
  // How many messages arrived (cheaper than RawMessages for large counts).
  size_t CountMessages() const;
  // The same, parsed.
  absl::StatusOr<std::vector<SyslogMessage>> Messages() const;
  // Waits until at least `count` messages arrived; returns them all (or DeadlineExceeded saying
  // how many arrived).
  absl::StatusOr<std::vector<SyslogMessage>> WaitForMessages(size_t count,
                                                             absl::Duration timeout) const;
  // rsyslogd's stderr so far (for failure messages).
  std::vector<std::string> Log() const;

 private:
  RsyslogServer() = default;
  absl::Status Launch();

  TestPki pki_;
  std::string dir_;
  std::string output_;
  int tcp_port_ = 0;
  int tls_port_ = 0;
  int mtls_port_ = 0;
  std::unique_ptr<Subprocess> process_;
  std::vector<std::string> old_log_;
};

}  // namespace podgate::testing
