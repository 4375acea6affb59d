// Generates kubesim's certificate authority and serving certificate (with the `openssl`
// command) and writes a kubeconfig that points kubectl and other clients at kubesim.
#pragma once

#include <string>

#include "absl/status/status.h"

namespace podgate::kubesim {

struct PkiFiles {
  std::string ca_cert;
  std::string ca_key;
  std::string server_cert;
  std::string server_key;
};

// Creates (or reuses, when all files exist) <dir>/ca.crt, ca.key, server.crt, server.key; the
// serving certificate is valid for localhost, 127.0.0.1 and ::1.
absl::Status EnsurePki(const std::string& dir, PkiFiles* files);

// Issues a client certificate with CN=<user> signed by the CA into <dir>/<user>.crt/.key.
absl::Status IssueClientCert(const PkiFiles& pki, const std::string& dir, const std::string& user,
                             std::string* cert, std::string* key);

struct KubeconfigSpec {
  std::string server;  // https://127.0.0.1:port
  std::string ca_file;
  std::string token;             // bearer token, or
  std::string client_cert_file;  // a client certificate
  std::string client_key_file;
  std::string user = "kubesim-user";
  std::string namespace_name = "default";
};

// Writes the kubeconfig (mode 0600: it holds a credential).
absl::Status WriteKubeconfig(const std::string& path, const KubeconfigSpec& spec);

}  // namespace podgate::kubesim
