// Test certificates made with the openssl command: a CA, a server certificate for localhost
// and 127.0.0.1, a client certificate, and a second unrelated CA.
#pragma once

#include <string>

#include "absl/status/statusor.h"

namespace podgate::testing {

struct TestPki {
  std::string dir;
  std::string ca_cert;
  std::string server_cert;
  std::string server_key;
  std::string client_cert;
  std::string client_key;
  std::string other_ca_cert;   // a CA that signed nothing here
  std::string other_key;       // a key that matches no certificate here
};

// Creates the files under `dir` (which must exist).
absl::StatusOr<TestPki> MakeTestPki(const std::string& dir);

// A fresh directory under $TMPDIR (or /tmp), named <prefix>-XXXXXX. It and everything in it
// are removed when the test process exits normally, so that a test run leaves no files behind
// (thousands of runs filled the disk before); PODGATE_KEEP_TEST_DIRS=1 keeps them to look at.
// A process that is killed (a test's timeout) still leaves its directories.
std::string MakeTempDir(const std::string& prefix);

}  // namespace podgate::testing
