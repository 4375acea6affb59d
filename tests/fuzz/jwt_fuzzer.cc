// Fuzzes JWT verification (lib/auth/jwt.h) against a fixed key set: two HS256 keys ("k1", "k2")
// and an ES256 key ("e1"), a fixed clock, an issuer and an audience. The first input byte picks
// the mode:
//  - even: the rest is a token as a browser would send it (header, signature, size checks);
//  - odd: the rest is "<header JSON>\n<payload JSON>" (or only a payload, with the header
//    {"alg":"HS256","kid":"k1"}), which the fuzzer signs with k1, so that the claims checks
//    behind the signature are reached too.
// Checks, besides crashes and undefined behaviour: every refusal is UNAUTHENTICATED with a reason
// code; an accepted token has a user, an unexpired exp, the configured issuer and the token size
// limit; an accepted token with its signature altered is refused; the claims of an accepted
// token, signed again by Sign(), verify to the same principal; "Bearer <token>" gives the token.
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>

#include "absl/strings/ascii.h"
#include "auth/base64url.h"
#include "auth/jwt.h"
#include "crypto/openssl_ptr.h"
#include "require.h"

using podgate::fuzz::Require;

namespace auth = podgate::auth;

namespace {

constexpr char kSecret1[] = "fuzz-secret-one-0123456789abcdef";
constexpr char kSecret2[] = "fuzz-secret-two-0123456789abcdef";
const absl::Time kNow = absl::FromUnixSeconds(1700000000);

auth::Key HmacKey(const char* kid, const char* secret) {
  auth::Key key;
  key.kid = kid;
  key.alg = auth::Algorithm::kHS256;
  key.secret = secret;
  return key;
}

const auth::Verifier& TheVerifier() {
  static const auth::Verifier* verifier = [] {
    auth::KeySet keys;
    if (!keys.Add(HmacKey("k1", kSecret1)).ok() || !keys.Add(HmacKey("k2", kSecret2)).ok()) {
      std::abort();
    }
    auth::Key ec;
    ec.kid = "e1";
    ec.alg = auth::Algorithm::kES256;
    ec.pkey = podgate::crypto::SharePkey(EVP_EC_gen("P-256"));
    if (ec.pkey == nullptr || !keys.Add(ec).ok()) {
      std::abort();
    }
    auth::VerifierOptions options;
    options.issuer = "https://issuer.example";
    options.audiences = {"podgate"};
    absl::StatusOr<auth::Verifier> v =
        auth::Verifier::Create(std::move(keys), options, [] { return kNow; });
    if (!v.ok()) {
      std::abort();
    }
    return new auth::Verifier(*std::move(v));
  }();
  return *verifier;
}

std::string HmacSign(std::string_view secret, std::string_view input) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), secret.data(), static_cast<int>(secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

absl::StatusOr<auth::VerifiedToken> Check(const std::string& token, std::string_view input) {
  absl::StatusOr<auth::VerifiedToken> verified = TheVerifier().Verify(token);
  if (!verified.ok()) {
    Require(verified.status().code() == absl::StatusCode::kUnauthenticated,
            "a refusal is UNAUTHENTICATED", input);
    Require(!auth::AuthFailureReason(verified.status()).empty(), "a refusal has a reason", input);
    return verified;
  }
  Require(token.size() <= auth::kMaxTokenBytes, "size limit", input);
  Require(!verified->principal.user().empty(), "a user", input);
  Require(verified->principal.issuer() == "https://issuer.example", "the issuer", input);
  Require(verified->expires + absl::Seconds(30) >= kNow, "not expired", input);
  return verified;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (input.empty()) {
    return 0;
  }
  const std::string_view rest = input.substr(1);
  std::string token;
  if ((static_cast<uint8_t>(input[0]) & 1) == 0) {
    token = std::string(rest);
  } else {
    std::string_view header = R"({"alg":"HS256","kid":"k1"})";
    std::string_view payload = rest;
    if (const size_t newline = rest.find('\n'); newline != std::string_view::npos) {
      header = rest.substr(0, newline);
      payload = rest.substr(newline + 1);
    }
    const std::string signing_input =
        auth::Base64UrlEncode(absl::string_view(header.data(), header.size())) + "." +
        auth::Base64UrlEncode(absl::string_view(payload.data(), payload.size()));
    token = signing_input + "." + auth::Base64UrlEncode(HmacSign(kSecret1, signing_input));
  }

  absl::StatusOr<auth::VerifiedToken> verified = Check(token, input);
  Require(auth::BearerToken("Bearer " + token) ==
              (absl::StripAsciiWhitespace(token).empty()
                   ? std::nullopt
                   : std::optional<std::string>(std::string(absl::StripAsciiWhitespace(token)))),
          "Bearer <token> gives the token", input);
  if (!verified.ok()) {
    return 0;
  }

  // The same token with the first signature character changed does not verify.
  const size_t dot = token.rfind('.');
  if (dot != std::string::npos && dot + 1 < token.size()) {
    std::string altered = token;
    altered[dot + 1] = altered[dot + 1] == 'A' ? 'B' : 'A';
    Require(!TheVerifier().Verify(altered).ok(), "an altered signature is refused", input);
  }

  // The accepted claims, signed again, verify to the same principal.
  absl::StatusOr<std::string> resigned = auth::Sign(verified->claims, HmacKey("k2", kSecret2));
  Require(resigned.ok(), "accepted claims can be signed", input);
  absl::StatusOr<auth::VerifiedToken> again = TheVerifier().Verify(*resigned);
  Require(again.ok() || auth::AuthFailureReason(again.status()) == "too_large",
          "re-signed claims verify", input);
  if (again.ok()) {
    Require(again->principal.SerializeAsString() == verified->principal.SerializeAsString() &&
                again->expires == verified->expires,
            "re-signed claims give the same principal", input);
  }
  return 0;
}
