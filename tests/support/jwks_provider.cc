#include "support/jwks_provider.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>

#include "absl/strings/str_cat.h"
#include "auth/base64url.h"
#include "crypto/openssl_ptr.h"
#include "nlohmann/json.hpp"

namespace podgate::testing {
namespace {

namespace bhttp = boost::beast::http;

std::string Coordinate(EVP_PKEY* key, const char* name) {
  BIGNUM* raw = nullptr;
  EVP_PKEY_get_bn_param(key, name, &raw);
  crypto::BignumPtr bn(raw);
  std::string out(32, '\0');
  BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), 32);
  return auth::Base64UrlEncode(out);
}

}  // namespace

auth::Key GenerateEs256Key(const std::string& kid) {
  auth::Key k;
  k.kid = kid;
  k.alg = auth::Algorithm::kES256;
  k.pkey = crypto::SharePkey(EVP_EC_gen("P-256"));
  return k;
}

std::string JwksDocument(const std::vector<const auth::Key*>& keys) {
  nlohmann::json doc = {{"keys", nlohmann::json::array()}};
  for (const auth::Key* k : keys) {
    doc["keys"].push_back({{"kty", "EC"},
                           {"crv", "P-256"},
                           {"kid", k->kid},
                           {"alg", "ES256"},
                           {"use", "sig"},
                           {"x", Coordinate(k->pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X)},
                           {"y", Coordinate(k->pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y)}});
  }
  return doc.dump();
}

JwksProvider::JwksProvider() {
  auto server = http::Server::Start(
      io_, http::ServerOptions{},
      [this](const http::Request& req, const http::RequestContext&, bool) {
        http::RouteResult r;
        std::lock_guard<std::mutex> lock(mu_);
        ++requests_;
        const bool fresh = !etag_.empty() && req[bhttp::field::if_none_match] == etag_;
        if (fresh) {
          ++conditional_;
          r.response = http::MakeResponse(req, bhttp::status::not_modified, "", "");
        } else {
          r.response = http::MakeResponse(req, static_cast<bhttp::status>(status_),
                                          "application/json", body_);
        }
        if (!cache_control_.empty()) {
          r.response->set(bhttp::field::cache_control, cache_control_);
        }
        if (!etag_.empty()) {
          r.response->set(bhttp::field::etag, etag_);
        }
        return r;
      });
  if (server.ok()) {
    server_ = *std::move(server);
  }
  thread_ = std::thread([this] { io_.run(); });
}

JwksProvider::~JwksProvider() {
  if (server_) {
    server_->Stop();
  }
  io_.stop();
  thread_.join();
}

std::string JwksProvider::url() const {
  return absl::StrCat("http://127.0.0.1:", server_ ? server_->port() : 0, "/jwks");
}

void JwksProvider::Serve(int status, std::string body, std::string cache_control,
                         std::string etag) {
  std::lock_guard<std::mutex> lock(mu_);
  status_ = status;
  body_ = std::move(body);
  cache_control_ = std::move(cache_control);
  etag_ = std::move(etag);
}

int JwksProvider::requests() {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

int JwksProvider::conditional_requests() {
  std::lock_guard<std::mutex> lock(mu_);
  return conditional_;
}

}  // namespace podgate::testing
