// An identity provider's JWKS endpoint for tests: a real HTTP server on loopback that serves,
// rotates, withholds and breaks its key set (status, body, Cache-Control, ETag) as the test
// says, and counts the requests; plus EC P-256 keys and the JWKS document that publishes them.
#pragma once

#include <boost/asio/io_context.hpp>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "auth/keys.h"
#include "http/server.h"

namespace podgate::testing {

// A fresh ES256 key with `kid`.
auth::Key GenerateEs256Key(const std::string& kid);
// {"keys":[...]} publishing the public halves of `keys`.
std::string JwksDocument(const std::vector<const auth::Key*>& keys);

class JwksProvider {
 public:
  JwksProvider();
  ~JwksProvider();
  // http://127.0.0.1:<port>/jwks
  std::string url() const;
  // What GET answers from now on. With an ETag, a request carrying it in If-None-Match gets 304
  // (with the same Cache-Control).
  void Serve(int status, std::string body, std::string cache_control = "", std::string etag = "");
  int requests();
  int conditional_requests();

 private:
  boost::asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
  std::mutex mu_;
  int status_ = 200;
  std::string body_ = R"({"keys":[]})";
  std::string cache_control_;
  std::string etag_;
  int requests_ = 0;
  int conditional_ = 0;
};

}  // namespace podgate::testing
