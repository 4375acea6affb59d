#include "audit_testing.h"

#include <libpq-fe.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "support/test_pki.h"

namespace podgate::audit::testing {
namespace {

constexpr char kBin[] = "/usr/lib/postgresql/15/bin";

absl::Status Run(const std::string& command) {
  const int rc = std::system(command.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("command failed (", rc, "): ", command));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::unique_ptr<PostgresServer>> PostgresServer::Start() {
  std::unique_ptr<PostgresServer> server(new PostgresServer());
  server->dir_ = podgate::testing::MakeTempDir("podgate-pg");
  // The server listens on a Unix socket in its own folder only (listen_addresses is empty), so
  // the port is just the socket file's name: no TCP port to find or race for.
  server->port_ = 5432;
  server->root_ = geteuid() == 0;
  if (server->root_) {
    const passwd* pw = getpwnam("postgres");
    if (pw == nullptr) {
      return absl::FailedPreconditionError("running as root but there is no postgres user");
    }
    if (chown(server->dir_.c_str(), pw->pw_uid, pw->pw_gid) != 0) {
      return absl::InternalError("cannot chown the PostgreSQL folder");
    }
  }
  if (absl::Status s = Run(server->AsPostgres(absl::StrCat(
          kBin, "/initdb -D ", server->dir_, "/data -A trust -U podgate -E UTF8 --no-sync > ",
          server->dir_, "/initdb.log 2>&1")));
      !s.ok()) {
    return s;
  }
  if (absl::Status s = server->Ctl("start"); !s.ok()) {
    return s;
  }
  return server;
}

PostgresServer::~PostgresServer() {
  if (!dir_.empty()) {
    Ctl("stop -m immediate").IgnoreError();
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string PostgresServer::AsPostgres(const std::string& command) const {
  return root_ ? absl::StrCat("runuser -u postgres -- sh -c '", command, "'") : command;
}

absl::Status PostgresServer::Ctl(const std::string& action) {
  std::string options;
  if (action == "start") {
    options = absl::StrCat(" -o \"-p ", port_, " -k ", dir_,
                           " -c listen_addresses= -c max_connections=300\"");
  }
  return Run(
      AsPostgres(absl::StrCat(kBin, "/pg_ctl -D ", dir_, "/data -l ", dir_, "/server.log -w -t 60",
                              options, " ", action, " > /dev/null 2>&1")));
}

absl::Status PostgresServer::Stop() { return Ctl("stop -m immediate"); }
absl::Status PostgresServer::Restart() { return Ctl("start"); }

std::string PostgresServer::Url(const std::string& database) const {
  return absl::StrCat("postgresql://podgate@/", database, "?host=", dir_, "&port=", port_);
}

absl::StatusOr<int> PostgresServer::ServerPid() const {
  // postmaster.pid's first line is the pid (PostgreSQL's miscinit.c writes it at start).
  std::ifstream in(absl::StrCat(dir_, "/data/postmaster.pid"));
  std::string line;
  int pid = 0;
  if (!std::getline(in, line) || !absl::SimpleAtoi(line, &pid) || pid <= 0) {
    return absl::UnavailableError(absl::StrCat("no server pid in ", dir_, "/data/postmaster.pid"));
  }
  return pid;
}

absl::StatusOr<std::string> PostgresServer::QueryValue(const std::string& database,
                                                       const std::string& sql) {
  PGconn* conn = PQconnectdb(Url(database).c_str());
  if (PQstatus(conn) != CONNECTION_OK) {
    const std::string error = PQerrorMessage(conn);
    PQfinish(conn);
    return absl::UnavailableError(error);
  }
  PGresult* r = PQexec(conn, sql.c_str());
  absl::StatusOr<std::string> out;
  const ExecStatusType st = PQresultStatus(r);
  if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
    out = absl::InternalError(absl::StrCat(sql, ": ", PQresultErrorMessage(r)));
  } else {
    out = PQntuples(r) > 0 ? std::string(PQgetvalue(r, 0, 0)) : std::string();
  }
  PQclear(r);
  PQfinish(conn);
  return out;
}

absl::Status PostgresServer::Exec(const std::string& database, const std::string& sql) {
  return QueryValue(database, sql).status();
}

absl::StatusOr<std::string> PostgresServer::CreateDatabase(const std::string& name) {
  if (absl::Status s = Exec("postgres", absl::StrCat("CREATE DATABASE ", name)); !s.ok()) {
    return s;
  }
  return Url(name);
}

TempDir::TempDir(const std::string& prefix) : path_(podgate::testing::MakeTempDir(prefix)) {}

TempDir::~TempDir() {
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

podgate::common::v1::AuditEvent MakeEvent(const std::string& id, const std::string& user,
                                          const std::string& ns, const std::string& pod,
                                          const std::string& line) {
  podgate::common::v1::AuditEvent event;
  event.set_id(id);
  event.mutable_time()->set_seconds(1795000000);
  event.set_kind(podgate::common::v1::EVENT_KIND_COMMAND_REQUEST);
  event.set_source_service("exec");
  event.set_session_id("s-" + user);
  event.mutable_principal()->set_user(user);
  event.mutable_principal()->add_groups("dev");
  event.mutable_target()->set_namespace_(ns);
  event.mutable_target()->set_pod(pod);
  event.mutable_target()->set_container("app");
  event.mutable_command_request()->set_line(line);
  for (absl::string_view arg : absl::StrSplit(line, ' ', absl::SkipEmpty())) {
    event.mutable_command_request()->add_argv(std::string(arg));
  }
  return event;
}

}  // namespace podgate::audit::testing
