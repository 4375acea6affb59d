// Fixtures for the audit tests: a real PostgreSQL 15 server in a temporary folder, and audit
// events to record.
#pragma once

#include <memory>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit::testing {

// A PostgreSQL server started with initdb and pg_ctl in a fresh temporary folder, listening
// only on a unix socket in that folder (port number picked free). When the test runs as root
// (CI), the server runs as the `postgres` system user, which owns the folder. The destructor
// stops the server and removes the folder.
class PostgresServer {
 public:
  static absl::StatusOr<std::unique_ptr<PostgresServer>> Start();
  ~PostgresServer();

  // Stops the server immediately (as a crash would) / starts it again on the same data.
  absl::Status Stop();
  absl::Status Restart();

  // Creates a database and returns its store URL (postgresql://...).
  absl::StatusOr<std::string> CreateDatabase(const std::string& name);
  // Runs SQL in a database (tests tamper with rows directly).
  absl::Status Exec(const std::string& database, const std::string& sql);
  // The first column of the first row of a query, as text.
  absl::StatusOr<std::string> QueryValue(const std::string& database, const std::string& sql);

  std::string Url(const std::string& database) const;
  // The server's process (the postmaster: its backends are its children), from its pid file.
  absl::StatusOr<int> ServerPid() const;

 private:
  PostgresServer() = default;
  absl::Status Ctl(const std::string& action);
  std::string AsPostgres(const std::string& command) const;

  std::string dir_;
  int port_ = 0;
  bool root_ = false;
};

// A fresh temporary folder, removed with everything in it by the destructor.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

// A well-formed command request event by `user` in namespace `ns`, pod `pod`.
podgate::common::v1::AuditEvent MakeEvent(const std::string& id, const std::string& user = "alice",
                                          const std::string& ns = "shop",
                                          const std::string& pod = "api-0",
                                          const std::string& line = "jstack 1");

}  // namespace podgate::audit::testing
