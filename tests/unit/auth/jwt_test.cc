#include "auth/jwt.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdio>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/base64url.h"
#include "crypto/openssl_ptr.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

namespace podgate::auth {
namespace {

using ::testing::HasSubstr;

const absl::Time kNow = absl::FromUnixSeconds(1'800'000'000);

std::shared_ptr<EVP_PKEY> GenRsa(int bits) { return crypto::SharePkey(EVP_RSA_gen(bits)); }
std::shared_ptr<EVP_PKEY> GenEc(const char* curve) { return crypto::SharePkey(EVP_EC_gen(curve)); }

std::string PublicPem(EVP_PKEY* key) {
  crypto::BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PUBKEY(bio.get(), key);
  char* data = nullptr;
  const long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(len));
}

// A key parameter big-endian, left-padded to `width` bytes when given (a JWK's EC coordinates
// are always full length: one P-256 key in 128 has a coordinate with a leading zero byte).
std::string BnParam(EVP_PKEY* key, const char* name, int width = 0) {
  BIGNUM* raw = nullptr;
  EVP_PKEY_get_bn_param(key, name, &raw);
  crypto::BignumPtr bn(raw);
  const int len = width > 0 ? width : BN_num_bytes(bn.get());
  std::string out(static_cast<size_t>(len), '\0');
  BN_bn2binpad(bn.get(), reinterpret_cast<unsigned char*>(out.data()), len);
  return out;
}

std::string WriteFile(const std::string& dir, const std::string& name, const std::string& data) {
  const std::string path = absl::StrCat(dir, "/", name);
  std::ofstream(path, std::ios::binary) << data;
  return path;
}

// A token built by hand: any header, any payload, any signature bytes.
std::string Forge(const nlohmann::json& header, const nlohmann::json& payload,
                  const std::string& sig) {
  return absl::StrCat(Base64UrlEncode(header.dump()), ".", Base64UrlEncode(payload.dump()), ".",
                      Base64UrlEncode(sig));
}

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("podgate-jwt");
    hs_.kid = "hs";
    hs_.alg = Algorithm::kHS256;
    hs_.secret = std::string(32, 'k');
    rs_.kid = "rs";
    rs_.alg = Algorithm::kRS256;
    rs_.pkey = GenRsa(2048);
    es_.kid = "es";
    es_.alg = Algorithm::kES256;
    es_.pkey = GenEc("P-256");
  }

  nlohmann::json Claims() {
    return {{"sub", "alice"},
            {"groups", {"dev", "sre"}},
            {"iss", "https://idp.example"},
            {"aud", "podgate"},
            {"iat", absl::ToUnixSeconds(kNow) - 10},
            {"exp", absl::ToUnixSeconds(kNow) + 300}};
  }

  Verifier MakeVerifier(std::vector<Key> keys, VerifierOptions options = {}) {
    KeySet set;
    for (Key& k : keys) {
      EXPECT_TRUE(set.Add(std::move(k)).ok());
    }
    if (options.issuer.empty()) {
      options.issuer = "https://idp.example";
    }
    if (options.audiences.empty()) {
      options.audiences = {"podgate"};
    }
    auto v = Verifier::Create(std::move(set), options, [] { return kNow; });
    EXPECT_TRUE(v.ok()) << v.status();
    return *std::move(v);
  }

  static std::string Reason(const absl::StatusOr<VerifiedToken>& r) {
    EXPECT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), absl::StatusCode::kUnauthenticated);
    return AuthFailureReason(r.status());
  }

  std::string dir_;
  Key hs_, rs_, es_;
};

TEST_F(JwtTest, EachAlgorithmRoundTripsAndYieldsThePrincipal) {
  Verifier v = MakeVerifier({hs_, rs_, es_});
  for (const Key* key : {&hs_, &rs_, &es_}) {
    SCOPED_TRACE(AlgorithmName(key->alg));
    auto token = Sign(Claims(), *key);
    ASSERT_TRUE(token.ok()) << token.status();
    auto verified = v.Verify(*token);
    ASSERT_TRUE(verified.ok()) << verified.status();
    EXPECT_EQ(verified->principal.user(), "alice");
    EXPECT_THAT(verified->principal.groups(), ::testing::ElementsAre("dev", "sre"));
    EXPECT_EQ(verified->principal.issuer(), "https://idp.example");
    EXPECT_EQ(verified->expires, kNow + absl::Seconds(300));
  }
}

TEST_F(JwtTest, AlgNoneIsRefused) {
  Verifier v = MakeVerifier({hs_});
  for (const char* alg : {"none", "None", "NONE", "HS512", "PS256", ""}) {
    EXPECT_EQ(Reason(v.Verify(Forge({{"alg", alg}, {"kid", "hs"}}, Claims(), ""))),
              "unsupported_algorithm")
        << alg;
  }
  // No alg at all.
  EXPECT_EQ(Reason(v.Verify(Forge({{"kid", "hs"}}, Claims(), "x"))), "malformed");
}

// RFC 8725 §2.1: an attacker signs HS256 with the RSA public key's PEM as the HMAC secret.
TEST_F(JwtTest, KeyConfusionRsaPublicKeyAsHmacSecretIsRefused) {
  Verifier v = MakeVerifier({rs_});
  Key forged;
  forged.kid = "rs";
  forged.alg = Algorithm::kHS256;
  forged.secret = PublicPem(rs_.pkey.get());
  auto token = Sign(Claims(), forged);
  ASSERT_TRUE(token.ok());
  EXPECT_EQ(Reason(v.Verify(*token)), "unsupported_algorithm");
}

TEST_F(JwtTest, ExpiryHonoursBoundedLeeway) {
  VerifierOptions options;
  options.leeway = absl::Seconds(30);
  Verifier v = MakeVerifier({hs_}, options);
  auto claims = Claims();
  claims["exp"] = absl::ToUnixSeconds(kNow) - 10;  // within leeway
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
  claims["exp"] = absl::ToUnixSeconds(kNow) - 31;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "expired");
  claims.erase("exp");
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "missing_claim");
  claims["exp"] = "tomorrow";
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  // Out of range for a time (tests/fuzz found 1e300 overflowing the conversion to seconds).
  claims["exp"] = 1e300;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  claims["exp"] = absl::ToUnixSeconds(kNow) + 300;
  claims["iat"] = -1e300;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
}

TEST_F(JwtTest, NotBeforeAndIssuedInTheFutureAreRefused) {
  Verifier v = MakeVerifier({hs_});
  auto claims = Claims();
  claims["nbf"] = absl::ToUnixSeconds(kNow) + 120;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "not_yet_valid");
  claims = Claims();
  claims["iat"] = absl::ToUnixSeconds(kNow) + 120;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "not_yet_valid");
}

// A NumericDate far outside any real time overflowed the conversion to int64 (1e20 became the
// most negative int64, a time long past), so an nbf or iat of 1e20 passed as "long ago".
// Dates before 1970 or after 9999 are malformed.
TEST_F(JwtTest, NumericDatesOutsideAnyRealTimeAreMalformed) {
  Verifier v = MakeVerifier({hs_});
  for (const char* claim : {"nbf", "iat", "exp"}) {
    for (double value : {1e20, -1e20, 9.3e18, -1.0, 253402300800.0}) {
      auto claims = Claims();
      claims[claim] = value;
      EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed") << claim << "=" << value;
    }
  }
  auto claims = Claims();
  claims["nbf"] = static_cast<double>(absl::ToUnixSeconds(kNow) - 60) + 0.5;  // fractional
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
}

TEST_F(JwtTest, IssuerAndAudienceAreChecked) {
  Verifier v = MakeVerifier({hs_});
  auto claims = Claims();
  claims["iss"] = "https://evil.example";
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "bad_issuer");
  claims = Claims();
  claims.erase("iss");
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "bad_issuer");
  claims = Claims();
  claims["aud"] = "another-service";
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "bad_audience");
  claims["aud"] = {"another-service", "podgate"};
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
  claims.erase("aud");
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "bad_audience");
}

TEST_F(JwtTest, TamperingBreaksTheSignature) {
  Verifier v = MakeVerifier({hs_, rs_, es_});
  for (const Key* key : {&hs_, &rs_, &es_}) {
    SCOPED_TRACE(AlgorithmName(key->alg));
    const std::string token = *Sign(Claims(), *key);
    std::vector<std::string> parts = absl::StrSplit(token, '.');
    auto claims = Claims();
    claims["sub"] = "root";
    const std::string swapped =
        absl::StrCat(parts[0], ".", Base64UrlEncode(claims.dump()), ".", parts[2]);
    EXPECT_EQ(Reason(v.Verify(swapped)), "bad_signature");
    std::string sig = *Base64UrlDecode(parts[2]);
    sig[sig.size() / 2] ^= 1;
    EXPECT_EQ(Reason(v.Verify(absl::StrCat(parts[0], ".", parts[1], ".", Base64UrlEncode(sig)))),
              "bad_signature");
    EXPECT_EQ(Reason(v.Verify(absl::StrCat(parts[0], ".", parts[1], "."))), "bad_signature");
  }
}

TEST_F(JwtTest, Es256DerSignatureIsRefused) {
  // JOSE wants raw R||S; a DER signature (what OpenSSL emits) must not verify.
  Verifier v = MakeVerifier({es_});
  const std::string token = *Sign(Claims(), es_);
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  const std::string input = absl::StrCat(parts[0], ".", parts[1]);
  crypto::EvpMdCtxPtr ctx(EVP_MD_CTX_new());
  size_t len = 0;
  EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, es_.pkey.get());
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                 input.size());
  std::string der(len, '\0');
  EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(der.data()), &len,
                 reinterpret_cast<const unsigned char*>(input.data()), input.size());
  der.resize(len);
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(input, ".", Base64UrlEncode(der)))), "bad_signature");
}

TEST_F(JwtTest, KeyIdSelectsTheKey) {
  Verifier v = MakeVerifier({hs_, rs_});
  Key unknown = hs_;
  unknown.kid = "other";
  EXPECT_EQ(Reason(v.Verify(*Sign(Claims(), unknown))), "unknown_key");
  Key no_kid = hs_;
  no_kid.kid = "";
  EXPECT_EQ(Reason(v.Verify(*Sign(Claims(), no_kid))), "unknown_key");
  // With a single configured key, a token without kid is unambiguous.
  Verifier single = MakeVerifier({hs_});
  EXPECT_TRUE(single.Verify(*Sign(Claims(), no_kid)).ok());
}

// Keys a token carries or points at (jwk, jku, x5u) are never used: a token signed with the
// attacker's own key, which it embeds, does not verify.
TEST_F(JwtTest, EmbeddedJwkAndJkuHeadersAreIgnored) {
  Verifier v = MakeVerifier({hs_});
  const std::string attacker_secret(32, 'a');
  const nlohmann::json header = {{"alg", "HS256"},
                                 {"kid", "hs"},
                                 {"jku", "https://evil.example/jwks"},
                                 {"x5u", "https://evil.example/cert"},
                                 {"jwk", {{"kty", "oct"}, {"k", Base64UrlEncode(attacker_secret)}}}};
  const std::string input =
      absl::StrCat(Base64UrlEncode(header.dump()), ".", Base64UrlEncode(Claims().dump()));
  unsigned char mac[32];
  unsigned int len = 0;
  HMAC(EVP_sha256(), attacker_secret.data(), static_cast<int>(attacker_secret.size()),
       reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
  const std::string token = absl::StrCat(
      input, ".", Base64UrlEncode(std::string(reinterpret_cast<char*>(mac), len)));
  EXPECT_EQ(Reason(v.Verify(token)), "bad_signature");
}

TEST_F(JwtTest, CritAndForeignTypAreRefused) {
  Verifier v = MakeVerifier({hs_});
  EXPECT_EQ(Reason(v.Verify(Forge({{"alg", "HS256"}, {"crit", {"exp"}}}, Claims(), "x"))),
            "malformed");
  EXPECT_EQ(Reason(v.Verify(Forge({{"alg", "HS256"}, {"typ", "dpop+jwt"}}, Claims(), "x"))),
            "bad_type");
}

TEST_F(JwtTest, MalformedTokensAreRefusedClearly) {
  Verifier v = MakeVerifier({hs_});
  const std::string good = *Sign(Claims(), hs_);
  std::vector<std::string> parts = absl::StrSplit(good, '.');
  EXPECT_EQ(Reason(v.Verify("")), "malformed");
  EXPECT_EQ(Reason(v.Verify("abc")), "malformed");
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(parts[0], ".", parts[1]))), "malformed");
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(good, ".extra"))), "malformed");
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(parts[0], "=.", parts[1], ".", parts[2]))), "malformed");
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(parts[0], ".", parts[1], "+/.", parts[2]))),
            "malformed");
  EXPECT_EQ(Reason(v.Verify(absl::StrCat(Base64UrlEncode("not json"), ".", parts[1], ".",
                                         parts[2]))),
            "malformed");
  EXPECT_EQ(Reason(v.Verify(std::string(kMaxTokenBytes + 1, 'a'))), "too_large");
  // The message never echoes the token.
  auto r = v.Verify(absl::StrCat(good, "x"));
  EXPECT_THAT(std::string(r.status().message()), ::testing::Not(HasSubstr(parts[1])));
}

TEST_F(JwtTest, ClaimsMustHaveTheRightTypes) {
  Verifier v = MakeVerifier({hs_});
  auto claims = Claims();
  claims["groups"] = 7;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  claims["groups"] = {"dev", 7};
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  claims["groups"] = {"dev", ""};
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  claims["groups"] = {{"name", "dev"}};
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
  claims = Claims();
  claims["sub"] = 42;
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "missing_claim");
  claims.erase("sub");
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "missing_claim");
  // A payload that is not an object.
  EXPECT_EQ(Reason(v.Verify(*Sign(nlohmann::json::array({1, 2}), hs_))), "malformed");
}

TEST_F(JwtTest, CustomUserClaim) {
  VerifierOptions options;
  options.user_claim = "preferred_username";
  Verifier v = MakeVerifier({hs_}, options);
  auto claims = Claims();
  claims["preferred_username"] = "alice.smith";
  auto verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok());
  EXPECT_EQ(verified->principal.user(), "alice.smith");
  // The subject is kept beside the user name (exec's Impersonate-Uid), never prefixed.
  EXPECT_EQ(verified->principal.subject(), "alice");
  claims.erase("sub");
  verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok());
  EXPECT_EQ(verified->principal.subject(), "");
}

// Claims mapping as providers shape their tokens: Keycloak's realm_access.roles, Azure's
// groups array, one group as a plain string, namespaced claim names that contain dots.
TEST_F(JwtTest, ClaimPathsReachNestedClaimsAndAnExactNameWins) {
  VerifierOptions options;
  options.user_claim = "ext.login";
  options.groups_claim = "realm_access.roles";
  Verifier v = MakeVerifier({hs_}, options);
  auto claims = Claims();
  claims["ext"] = {{"login", "alice.k"}};
  claims["realm_access"] = {{"roles", {"offline_access", "sre"}}};
  auto verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->principal.user(), "alice.k");
  EXPECT_THAT(verified->principal.groups(), ::testing::ElementsAre("offline_access", "sre"));
  // A top-level claim named with the dots wins over the path.
  claims["realm_access.roles"] = {"flat"};
  verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_THAT(verified->principal.groups(), ::testing::ElementsAre("flat"));
  // One group as a string; no groups claim at all is no groups.
  claims.erase("realm_access.roles");
  claims["realm_access"]["roles"] = "sre";
  verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_THAT(verified->principal.groups(), ::testing::ElementsAre("sre"));
  claims.erase("realm_access");
  verified = v.Verify(*Sign(claims, hs_));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_THAT(verified->principal.groups(), ::testing::IsEmpty());
  // A path through something that is not an object finds nothing.
  claims["ext"] = "alice";
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "missing_claim");
  claims["ext"] = {{"login", {"alice"}}};
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "missing_claim");

  nlohmann::json c = {{"a", {{"b", {{"c", 1}}}}}, {"a.b", 2}, {"x.", 3}};
  EXPECT_EQ(*FindClaim(c, "a.b.c"), 1);
  EXPECT_EQ(*FindClaim(c, "a.b"), 2);
  EXPECT_EQ(*FindClaim(c, "x."), 3);
  EXPECT_EQ(FindClaim(c, "a..b"), nullptr);
  EXPECT_EQ(FindClaim(c, ".a"), nullptr);
  EXPECT_EQ(FindClaim(c, "a.b.c.d"), nullptr);
  EXPECT_EQ(FindClaim(c, ""), nullptr);
}

TEST_F(JwtTest, PrefixesKeepProviderNamesApart) {
  VerifierOptions options;
  options.user_prefix = "oidc:";
  options.groups_prefix = "corp:";
  Verifier v = MakeVerifier({hs_}, options);
  auto verified = v.Verify(*Sign(Claims(), hs_));
  ASSERT_TRUE(verified.ok()) << verified.status();
  EXPECT_EQ(verified->principal.user(), "oidc:alice");
  EXPECT_THAT(verified->principal.groups(), ::testing::ElementsAre("corp:dev", "corp:sre"));
}

TEST_F(JwtTest, RequiredClaimsMustHold) {
  VerifierOptions options;
  auto required = ParseRequiredClaims(" email_verified=true, hd = example.com ,org.team=sre");
  ASSERT_TRUE(required.ok()) << required.status();
  EXPECT_THAT(*required, ::testing::ElementsAre(::testing::Pair("email_verified", "true"),
                                                ::testing::Pair("hd", "example.com"),
                                                ::testing::Pair("org.team", "sre")));
  options.required_claims = *required;
  Verifier v = MakeVerifier({hs_}, options);
  auto claims = Claims();
  claims["email_verified"] = true;
  claims["hd"] = "example.com";
  claims["org"] = {{"team", {"dev", "sre"}}};
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
  for (const char* broken : {"email_verified", "hd", "org"}) {
    SCOPED_TRACE(broken);
    auto c = claims;
    c.erase(broken);
    auto r = v.Verify(*Sign(c, hs_));
    EXPECT_EQ(Reason(r), "missing_claim");
    EXPECT_THAT(r.status().message(), HasSubstr("required claim"));
  }
  auto c = claims;
  c["email_verified"] = false;
  EXPECT_EQ(Reason(v.Verify(*Sign(c, hs_))), "missing_claim");
  c = claims;
  c["email_verified"] = "true";  // some providers send the boolean as a string
  EXPECT_TRUE(v.Verify(*Sign(c, hs_)).ok());
  c["email_verified"] = "TRUE";
  EXPECT_EQ(Reason(v.Verify(*Sign(c, hs_))), "missing_claim");
  c["email_verified"] = 1;
  EXPECT_EQ(Reason(v.Verify(*Sign(c, hs_))), "missing_claim");
  c = claims;
  c["hd"] = "evil.example.com";
  EXPECT_EQ(Reason(v.Verify(*Sign(c, hs_))), "missing_claim");

  for (const char* bad : {"email_verified", "=true", "a=b,c", " = x"}) {
    SCOPED_TRACE(bad);
    auto r = ParseRequiredClaims(bad);
    ASSERT_FALSE(r.ok());
    EXPECT_THAT(r.status().message(), HasSubstr("is not name=value"));
  }
  EXPECT_THAT(*ParseRequiredClaims(""), ::testing::IsEmpty());
  EXPECT_THAT(*ParseRequiredClaims("x="), ::testing::ElementsAre(::testing::Pair("x", "")));
}

TEST_F(JwtTest, GroupsAreBoundedInNumberAndLength) {
  VerifierOptions options;
  options.max_groups = 3;
  options.groups_prefix = "p:";
  Verifier v = MakeVerifier({hs_}, options);
  auto claims = Claims();
  claims["groups"] = {"a", "b", "c"};
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
  claims["groups"] = {"a", "b", "c", "d"};
  auto r = v.Verify(*Sign(claims, hs_));
  EXPECT_EQ(Reason(r), "malformed");
  EXPECT_THAT(r.status().message(), HasSubstr("more than the limit of 3"));
  // kMaxGroupBytes counts the prefix.
  claims["groups"] = {std::string(kMaxGroupBytes - 2, 'g')};
  EXPECT_TRUE(v.Verify(*Sign(claims, hs_)).ok());
  claims["groups"] = {std::string(kMaxGroupBytes - 1, 'g')};
  EXPECT_EQ(Reason(v.Verify(*Sign(claims, hs_))), "malformed");
}

TEST_F(JwtTest, VerifierRefusesUnsafeOptions) {
  KeySet set;
  ASSERT_TRUE(set.Add(hs_).ok());
  VerifierOptions options;
  options.leeway = absl::Minutes(10);
  EXPECT_THAT(Verifier::Create(set, options).status().message(), HasSubstr("out of range"));
  EXPECT_THAT(Verifier::Create(KeySet(), {}).status().message(), HasSubstr("no verification key"));
  options = {};
  options.groups_claim = "";
  EXPECT_THAT(Verifier::Create(set, options).status().message(), HasSubstr("groups claim"));
  options = {};
  options.max_groups = 0;
  EXPECT_THAT(Verifier::Create(set, options).status().message(), HasSubstr("group limit"));
  options = {};
  options.groups_prefix = std::string(kMaxGroupBytes, 'p');
  EXPECT_THAT(Verifier::Create(set, options).status().message(), HasSubstr("groups prefix"));
  options = {};
  options.required_claims = {{"", "x"}};
  EXPECT_THAT(Verifier::Create(set, options).status().message(), HasSubstr("empty name"));
}

TEST_F(JwtTest, PemKeysLoadPinnedToTheirAlgorithm) {
  const std::string rsa_pem = WriteFile(dir_, "rsa.pub", PublicPem(rs_.pkey.get()));
  const std::string ec_pem = WriteFile(dir_, "ec.pub", PublicPem(es_.pkey.get()));
  auto rsa = KeySet::FromPemFile(rsa_pem, Algorithm::kRS256, "rs");
  ASSERT_TRUE(rsa.ok()) << rsa.status();
  Verifier v = MakeVerifier({rsa->keys().front()});
  EXPECT_TRUE(v.Verify(*Sign(Claims(), rs_)).ok());

  EXPECT_THAT(KeySet::FromPemFile(rsa_pem, Algorithm::kES256, "x").status().message(),
              HasSubstr("needs an EC key"));
  EXPECT_THAT(KeySet::FromPemFile(ec_pem, Algorithm::kRS256, "x").status().message(),
              HasSubstr("needs an RSA key"));
  auto p384 = GenEc("P-384");
  const std::string p384_pem = WriteFile(dir_, "p384.pub", PublicPem(p384.get()));
  EXPECT_THAT(KeySet::FromPemFile(p384_pem, Algorithm::kES256, "x").status().message(),
              HasSubstr("P-256"));
  auto small = GenRsa(1024);
  const std::string small_pem = WriteFile(dir_, "small.pub", PublicPem(small.get()));
  EXPECT_THAT(KeySet::FromPemFile(small_pem, Algorithm::kRS256, "x").status().message(),
              HasSubstr("at least 2048"));
  EXPECT_THAT(KeySet::FromPemFile(dir_ + "/missing.pem", Algorithm::kRS256, "x").status().message(),
              HasSubstr("No such file"));
  const std::string junk = WriteFile(dir_, "junk.pem", "hello");
  EXPECT_THAT(KeySet::FromPemFile(junk, Algorithm::kRS256, "x").status().message(),
              HasSubstr("no PEM"));
}

TEST_F(JwtTest, HmacSecretsMustBeLongEnough) {
  const std::string short_secret = WriteFile(dir_, "short", "tooshort\n");
  EXPECT_THAT(KeySet::FromHmacSecretFile(short_secret, "hs").status().message(),
              HasSubstr("at least 32 bytes"));
  const std::string good = WriteFile(dir_, "good", std::string(32, 'k') + "\n");
  auto set = KeySet::FromHmacSecretFile(good, "hs");
  ASSERT_TRUE(set.ok());
  EXPECT_EQ(set->keys().front().secret, std::string(32, 'k'));
}

TEST_F(JwtTest, JwksWithRsaEcAndOctKeys) {
  nlohmann::json jwks = {
      {"keys",
       {{{"kty", "RSA"},
         {"kid", "rs"},
         {"alg", "RS256"},
         {"use", "sig"},
         {"n", Base64UrlEncode(BnParam(rs_.pkey.get(), "n"))},
         {"e", Base64UrlEncode(BnParam(rs_.pkey.get(), "e"))}},
        {{"kty", "EC"},
         {"kid", "es"},
         {"crv", "P-256"},
         {"x", Base64UrlEncode(BnParam(es_.pkey.get(), "qx", 32))},
         {"y", Base64UrlEncode(BnParam(es_.pkey.get(), "qy", 32))}},
        {{"kty", "oct"}, {"kid", "hs"}, {"k", Base64UrlEncode(hs_.secret)}},
        {{"kty", "RSA"}, {"kid", "enc"}, {"use", "enc"}, {"n", "AQAB"}, {"e", "AQAB"}}}}};
  const std::string path = WriteFile(dir_, "jwks.json", jwks.dump());
  auto set = KeySet::FromJwksFile(path);
  ASSERT_TRUE(set.ok()) << set.status();
  ASSERT_EQ(set->keys().size(), 3u);  // the encryption key is skipped
  VerifierOptions options;
  options.issuer = "https://idp.example";
  options.audiences = {"podgate"};
  auto v = Verifier::Create(*set, options, [] { return kNow; });
  ASSERT_TRUE(v.ok());
  for (const Key* key : {&hs_, &rs_, &es_}) {
    EXPECT_TRUE(v->Verify(*Sign(Claims(), *key)).ok()) << AlgorithmName(key->alg);
  }
}

TEST_F(JwtTest, BadJwksDocumentsSayWhatIsWrong) {
  EXPECT_THAT(KeySet::FromJwks("not json", "jwks").status().message(), HasSubstr("not a JWKS"));
  EXPECT_THAT(KeySet::FromJwks(R"({"keys":[]})", "jwks").status().message(),
              HasSubstr("no signing key"));
  EXPECT_THAT(KeySet::FromJwks(R"({"keys":[{"kty":"OKP"}]})", "jwks").status().message(),
              HasSubstr("not supported"));
  EXPECT_THAT(KeySet::FromJwks(R"({"keys":[{"kty":"RSA","n":"!!"}]})", "jwks").status().message(),
              HasSubstr("\"n\""));
  EXPECT_THAT(KeySet::FromJwks(R"({"keys":[{"kty":"EC","crv":"P-521","x":"AA","y":"AA"}]})",
                               "jwks")
                  .status()
                  .message(),
              HasSubstr("P-256"));
  const std::string k = Base64UrlEncode(std::string(32, 'k'));
  EXPECT_THAT(KeySet::FromJwks(absl::StrCat(R"({"keys":[{"kty":"oct","alg":"RS256","k":")", k,
                                            R"("}]})"),
                               "jwks")
                  .status()
                  .message(),
              HasSubstr("does not fit"));
  EXPECT_THAT(KeySet::FromJwks(absl::StrCat(R"({"keys":[{"kty":"oct","kid":"a","k":")", k,
                                            R"("},{"kty":"oct","kid":"a","k":")", k, R"("}]})"),
                               "jwks")
                  .status()
                  .message(),
              HasSubstr("appears twice"));
  EXPECT_THAT(KeySet::FromJwks(R"({"keys":[{"kty":"oct","k":"c2hvcnQ"}]})", "jwks")
                  .status()
                  .message(),
              HasSubstr("shorter than"));
}

TEST(BearerTokenTest, ParsesTheAuthorizationScheme) {
  EXPECT_EQ(BearerToken("Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(BearerToken("bearer   abc "), "abc");
  EXPECT_EQ(BearerToken("Authorization: Bearer abc"), std::nullopt);
  EXPECT_EQ(BearerToken("Basic abc"), std::nullopt);
  EXPECT_EQ(BearerToken("Bearer "), std::nullopt);
  EXPECT_EQ(BearerToken("Bearerabc"), std::nullopt);
}

TEST(Base64UrlTest, DecodingIsStrict) {
  EXPECT_EQ(Base64UrlDecode("aGk"), "hi");
  EXPECT_EQ(Base64UrlEncode("hi"), "aGk");
  EXPECT_EQ(Base64UrlDecode("aGk="), std::nullopt);  // padding
  EXPECT_EQ(Base64UrlDecode("aGl"), std::nullopt);   // non-zero trailing bits
  EXPECT_EQ(Base64UrlDecode("a+k"), std::nullopt);   // standard alphabet
  EXPECT_EQ(Base64UrlDecode("a"), std::nullopt);     // impossible length
  EXPECT_EQ(Base64UrlDecode("a Gk"), std::nullopt);  // whitespace
  // What Abseil's decoder alone would take (it skips whitespace, accepts '=' and '.' padding
  // and ignores trailing bits): each must still be refused.
  for (const char* lenient : {"QQ==", "QQ..", "QUI=", "aGk\n", " aGk", "aG\tk", "aGk\r", "QR",
                              "QUJ", "aGl", "a/k", "aGk.", "QQ=="}) {
    EXPECT_EQ(Base64UrlDecode(lenient), std::nullopt) << lenient;
  }
  EXPECT_EQ(Base64UrlDecode(std::string("aG\0k", 4)), std::nullopt);
  EXPECT_EQ(Base64UrlDecode("QQ"), "A");
  EXPECT_EQ(Base64UrlDecode("QUI"), "AB");
  EXPECT_EQ(Base64UrlDecode(""), "");
  EXPECT_EQ(Base64UrlDecode("-_-_"), "\xfb\xff\xbf");
  for (int n = 0; n < 40; ++n) {
    std::string data;
    for (int i = 0; i < n; ++i) {
      data.push_back(static_cast<char>(i * 37 + n));
    }
    EXPECT_EQ(Base64UrlDecode(Base64UrlEncode(data)), data);
  }
}

// Every 2- and 3-character text decodes exactly when it is the one canonical encoding: each
// character in the base64url alphabet and the bits past the last whole byte zero.
TEST(Base64UrlTest, ShortTextsDecodeExactlyWhenCanonical) {
  const std::string alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  auto value = [&](char c) { return static_cast<int>(alphabet.find(c)); };
  for (int a = 0; a < 256; ++a) {
    for (int b = 0; b < 256; ++b) {
      const std::string two = {static_cast<char>(a), static_cast<char>(b)};
      const bool canonical2 = alphabet.find(two[0]) != std::string::npos &&
                              alphabet.find(two[1]) != std::string::npos &&
                              (value(two[1]) & 0xF) == 0;
      ASSERT_EQ(Base64UrlDecode(two).has_value(), canonical2) << a << "," << b;
    }
  }
  for (const char a : alphabet) {
    for (int c = 0; c < 256; ++c) {
      const std::string three = {a, 'A', static_cast<char>(c)};
      const bool canonical3 =
          alphabet.find(three[2]) != std::string::npos && (value(three[2]) & 0x3) == 0;
      ASSERT_EQ(Base64UrlDecode(three).has_value(), canonical3) << a << "," << c;
      if (canonical3) {
        EXPECT_EQ(Base64UrlEncode(*Base64UrlDecode(three)), three);
      }
    }
  }
}

// A token whose segment is padded or wrapped is refused, though its bytes would decode.
TEST_F(JwtTest, PaddedOrWrappedSegmentsAreRefused) {
  Verifier v = MakeVerifier({hs_});
  const std::string token = *Sign(Claims(), hs_);
  ASSERT_TRUE(v.Verify(token).ok());
  std::vector<std::string> parts = absl::StrSplit(token, '.');
  for (const std::string& changed : {absl::StrCat(parts[0], "=.", parts[1], ".", parts[2]),
                                     absl::StrCat(parts[0], ".", parts[1], "\n.", parts[2]),
                                     absl::StrCat(parts[0], ".", parts[1], ".", parts[2], "=="),
                                     absl::StrCat(parts[0], ".", parts[1].substr(0, 10), " ",
                                                  parts[1].substr(10), ".", parts[2])}) {
    EXPECT_FALSE(v.Verify(changed).ok()) << changed;
  }
}

}  // namespace
}  // namespace podgate::auth
