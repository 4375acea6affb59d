#include "pki.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/str_cat.h"

extern char** environ;

namespace podgate::kubesim {
namespace {

absl::Status Run(const std::vector<std::string>& args) {
  std::vector<char*> argv;
  for (const std::string& a : args) {
    argv.push_back(const_cast<char*>(a.c_str()));
  }
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) {
    return absl::FailedPreconditionError(absl::StrCat("cannot run ", args[0]));
  }
  int status = 0;
  waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return absl::InternalError(absl::StrCat(args[0], " ", args[1], " failed"));
  }
  return absl::OkStatus();
}

bool Exists(const std::string& path) { return std::filesystem::exists(path); }

}  // namespace

absl::Status EnsurePki(const std::string& dir, PkiFiles* f) {
  f->ca_cert = dir + "/ca.crt";
  f->ca_key = dir + "/ca.key";
  f->server_cert = dir + "/server.crt";
  f->server_key = dir + "/server.key";
  if (Exists(f->ca_cert) && Exists(f->ca_key) && Exists(f->server_cert) && Exists(f->server_key)) {
    return absl::OkStatus();
  }
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  const std::string ec_key = "ec:" + dir + "/ec.param";
  if (absl::Status s =
          Run({"openssl", "ecparam", "-name", "prime256v1", "-out", dir + "/ec.param"});
      !s.ok()) {
    return s;
  }
  if (absl::Status s = Run({"openssl", "req", "-x509", "-newkey", ec_key, "-nodes", "-days", "365",
                            "-subj", "/CN=kubesim-ca", "-keyout", f->ca_key, "-out", f->ca_cert});
      !s.ok()) {
    return s;
  }
  std::string ext = dir + "/server.ext";
  {
    std::ofstream out(ext);
    out << "subjectAltName=DNS:localhost,DNS:kubesim,IP:127.0.0.1,IP:::1\n"
           "extendedKeyUsage=serverAuth\n";
  }
  if (absl::Status s = Run({"openssl", "req", "-newkey", ec_key, "-nodes", "-subj", "/CN=kubesim",
                            "-keyout", f->server_key, "-out", dir + "/server.csr"});
      !s.ok()) {
    return s;
  }
  return Run({"openssl", "x509", "-req", "-in", dir + "/server.csr", "-CA", f->ca_cert, "-CAkey",
              f->ca_key, "-CAcreateserial", "-days", "365", "-extfile", ext, "-out",
              f->server_cert});
}

absl::Status IssueClientCert(const PkiFiles& pki, const std::string& dir, const std::string& user,
                             std::string* cert, std::string* key) {
  *cert = absl::StrCat(dir, "/", user, ".crt");
  *key = absl::StrCat(dir, "/", user, ".key");
  std::string ext = absl::StrCat(dir, "/client.ext");
  {
    std::ofstream out(ext);
    out << "extendedKeyUsage=clientAuth\n";
  }
  if (absl::Status s = Run({"openssl", "req", "-newkey", "ec:" + dir + "/ec.param", "-nodes",
                            "-subj", "/CN=" + user, "-keyout", *key, "-out", *cert + ".csr"});
      !s.ok()) {
    return s;
  }
  return Run({"openssl", "x509", "-req", "-in", *cert + ".csr", "-CA", pki.ca_cert, "-CAkey",
              pki.ca_key, "-CAcreateserial", "-days", "365", "-extfile", ext, "-out", *cert});
}

absl::Status WriteKubeconfig(const std::string& path, const KubeconfigSpec& spec) {
  std::string user_block;
  if (!spec.token.empty()) {
    user_block = absl::StrCat("    token: ", spec.token, "\n");
  } else {
    user_block = absl::StrCat("    client-certificate: ", spec.client_cert_file,
                              "\n    client-key: ", spec.client_key_file, "\n");
  }
  std::string text = absl::StrCat(
      "apiVersion: v1\nkind: Config\nclusters:\n- name: kubesim\n  cluster:\n    server: ",
      spec.server, "\n    certificate-authority: ", spec.ca_file, "\nusers:\n- name: ", spec.user,
      "\n  user:\n", user_block,
      "contexts:\n- name: kubesim\n  context:\n    cluster: kubesim\n    user: ", spec.user,
      "\n    namespace: ", spec.namespace_name, "\ncurrent-context: kubesim\n");
  std::string tmp = path + ".tmp";
  int fd = open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) {
    return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  close(fd);
  if (!ok || rename(tmp.c_str(), path.c_str()) != 0) {
    return absl::InternalError(absl::StrCat("cannot write ", path));
  }
  return absl::OkStatus();
}

}  // namespace podgate::kubesim
