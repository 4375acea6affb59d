#include "support/test_pki.h"

#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <system_error>
#include <vector>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace podgate::testing {
namespace {

absl::Status Run(const std::string& cmd) {
  const std::string full = absl::StrCat(cmd, " >/dev/null 2>&1");
  if (std::system(full.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("command failed: ", cmd));
  }
  return absl::OkStatus();
}

// The directories MakeTempDir made in this process, removed at its exit.
struct MadeDirs {
  std::mutex mu;
  std::vector<std::string> paths;
};

MadeDirs& Made() {
  static MadeDirs* made = new MadeDirs;
  return *made;
}

void RemoveMadeDirs() {
  const char* keep = std::getenv("PODGATE_KEEP_TEST_DIRS");
  if (keep != nullptr && std::string(keep) == "1") {
    return;
  }
  MadeDirs& made = Made();
  std::lock_guard<std::mutex> lock(made.mu);
  for (const std::string& path : made.paths) {
    std::error_code ignored;  // a directory already removed by its test
    std::filesystem::remove_all(path, ignored);
  }
  made.paths.clear();
}

}  // namespace

std::string MakeTempDir(const std::string& prefix) {
  const char* tmpdir = std::getenv("TMPDIR");
  std::string tmpl =
      absl::StrCat(tmpdir != nullptr && *tmpdir != '\0' ? tmpdir : "/tmp", "/", prefix, "-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    return "";
  }
  MadeDirs& made = Made();
  std::lock_guard<std::mutex> lock(made.mu);
  static const bool registered = [] { return std::atexit(RemoveMadeDirs) == 0; }();
  (void)registered;
  made.paths.push_back(tmpl);
  return tmpl;
}

absl::StatusOr<TestPki> MakeTestPki(const std::string& dir) {
  TestPki pki;
  pki.dir = dir;
  pki.ca_cert = dir + "/ca.crt";
  pki.server_cert = dir + "/server.crt";
  pki.server_key = dir + "/server.key";
  pki.client_cert = dir + "/client.crt";
  pki.client_key = dir + "/client.key";
  pki.other_ca_cert = dir + "/other-ca.crt";
  pki.other_key = dir + "/other.key";
  const std::string ec = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
  // Written here: a shell redirection in Run's command would lose to the one Run appends.
  std::ofstream(dir + "/server.ext") << "subjectAltName=DNS:localhost,IP:127.0.0.1\n";
  for (const std::string& cmd : {
           absl::StrCat("openssl req -x509 ", ec, " -days 2 -subj /CN=test-ca -keyout ", dir,
                        "/ca.key -out ", pki.ca_cert),
           absl::StrCat("openssl req -x509 ", ec, " -days 2 -subj /CN=other-ca -keyout ",
                        pki.other_key, " -out ", pki.other_ca_cert),
           absl::StrCat("openssl req ", ec, " -subj /CN=localhost -keyout ", pki.server_key,
                        " -out ", dir, "/server.csr"),
           absl::StrCat("openssl x509 -req -in ", dir, "/server.csr -CA ", pki.ca_cert, " -CAkey ",
                        dir, "/ca.key -CAcreateserial -days 2 -extfile ", dir, "/server.ext -out ",
                        pki.server_cert),
           absl::StrCat("openssl req ", ec, " -subj /CN=podgate-client -keyout ", pki.client_key,
                        " -out ", dir, "/client.csr"),
           absl::StrCat("openssl x509 -req -in ", dir, "/client.csr -CA ", pki.ca_cert, " -CAkey ",
                        dir, "/ca.key -CAcreateserial -days 2 -out ", pki.client_cert),
       }) {
    if (absl::Status s = Run(cmd); !s.ok()) {
      return s;
    }
  }
  return pki;
}

}  // namespace podgate::testing
