// A real OpenID provider for tests: tools/oidc-provider (the `oidc-provider` package, OpenID
// Certified) run with node on loopback, plus a browser's part of its flows done over HTTP (its
// own login page, cookies, redirects), so a test signs in as a user would.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/subprocess.h"

namespace podgate::testing {

class OidcProvider {
 public:
  // Starts the provider with `config` (tools/oidc-provider/provider.mjs: users, clients, ttl,
  // groupsClaim, deviceFlow, tls; "keys" is set to a file in a fresh temporary directory unless
  // given), on `port` (0: one the OS picks; a fixed one to bring a stopped provider back at its
  // issuer).
  static absl::StatusOr<std::unique_ptr<OidcProvider>> Start(nlohmann::json config = {},
                                                             int port = 0);

  // http://127.0.0.1:<port>
  const std::string& issuer() const { return issuer_; }
  const std::string& keys_file() const { return keys_file_; }

  // Rotation: writes `jwks` (private keys, the first signs) and has the provider load it.
  absl::Status Rotate(const nlohmann::json& jwks);
  // A fresh RS256 private JWK with a new kid (node's crypto).
  static absl::StatusOr<nlohmann::json> NewRsaKey();
  // A JWT with `claims`, signed RS256 with `private_jwk` (a key of the provider's keys file,
  // its kid in the header): a token as the provider would issue it, with the lifetime a test
  // chooses (the provider's own may be too short to outlive a rotation).
  static absl::StatusOr<std::string> Sign(const nlohmann::json& private_jwk,
                                          const nlohmann::json& claims);

  Subprocess* process() { return process_.get(); }

 private:
  std::unique_ptr<Subprocess> process_;
  std::string issuer_;
  std::string keys_file_;
};

// A browser's cookie jar and redirect following, against one provider.
class Browser {
 public:
  // Follows redirects from `url` until one leaves the provider's origin (returned: e.g. the
  // client's callback with its code), or a page answers 200 (returned in `page`, URL "").
  absl::StatusOr<std::string> Open(const std::string& url, std::string* page = nullptr);
  // Posts a form on the provider's origin and follows the redirects like Open.
  absl::StatusOr<std::string> Post(const std::string& url,
                                   const std::vector<std::pair<std::string, std::string>>& form,
                                   std::string* page = nullptr);
  // Signs in on the login page that `url` leads to; returns where the provider finally sends
  // the browser (the callback URL with code and state), or the login page again ("" and
  // `page`) when the password is wrong.
  absl::StatusOr<std::string> SignIn(const std::string& url, const std::string& username,
                                     const std::string& password, std::string* page = nullptr);
  // The device flow's browser half: enters `user_code` at `verification_uri`, confirms, signs in.
  absl::Status ApproveDevice(const std::string& verification_uri, const std::string& user_code,
                             const std::string& username, const std::string& password);
  // The user refuses: enters `user_code`, then presses the confirmation page's "Abort" (the
  // client's next poll gets access_denied).
  absl::Status DenyDevice(const std::string& verification_uri, const std::string& user_code);
  // For a provider serving https: verify it against this PEM CA.
  void TrustCa(const std::string& ca_file) { ca_file_ = ca_file; }

 private:
  absl::StatusOr<std::string> Follow(std::string method, std::string url, std::string body,
                                     std::string* page);
  std::map<std::string, std::string> cookies_;
  std::string ca_file_;
};

}  // namespace podgate::testing
