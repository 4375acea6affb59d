// The JWKS URL key source against a real HTTP server on loopback that serves, rotates, withholds
// and breaks its key set the way an identity provider can.
#include "auth/jwks_url.h"

#include "absl/strings/str_cat.h"
#include "auth/jwt.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "prometheus/text_serializer.h"
#include "support/jwks_provider.h"
#include "support/prometheus_text.h"

namespace podgate::auth {
namespace {

using ::testing::HasSubstr;

std::string Token(const Key& key) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  absl::StatusOr<std::string> t = Sign(
      {{"iss", "https://idp.test"}, {"aud", "podgate"}, {"sub", "alice"}, {"exp", now + 600}}, key);
  return t.ok() ? *t : "";
}

// One sample of the registry (as written on /metrics, e.g. `x_total{result="ok"}`), or -1.
double Sample(prometheus::Registry& registry, const std::string& sample) {
  const std::string text = prometheus::TextSerializer().Serialize(registry.Collect());
  absl::StatusOr<testing::MetricsPage> page = testing::ParsePrometheusText(text);
  if (!page.ok() || page->samples.count(sample) == 0) {
    return -1;
  }
  return page->samples.at(sample);
}

// Polls `cond` for up to `limit`.
template <typename F>
bool Eventually(F cond, absl::Duration limit = absl::Seconds(5)) {
  const absl::Time end = absl::Now() + limit;
  while (absl::Now() < end) {
    if (cond()) {
      return true;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return cond();
}

VerifierOptions Options() {
  VerifierOptions o;
  o.issuer = "https://idp.test";
  o.audiences = {"podgate"};
  return o;
}

JwksUrlOptions Fast(const std::string& url) {
  JwksUrlOptions o;
  o.url = url;
  o.min_refresh = absl::Milliseconds(200);
  o.max_refresh = absl::Seconds(30);
  o.max_stale = absl::Seconds(30);
  o.timeout = absl::Seconds(2);
  o.initial_wait = absl::Seconds(2);
  return o;
}

TEST(JwksUrlTest, RotationIsPickedUpOnAnUnknownKidAndRemovedKeysStopWorking) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  const Key b = testing::GenerateEs256Key("b");
  idp.Serve(200, testing::JwksDocument({&a}));
  auto source = JwksUrlSource::Start(Fast(idp.url()));
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  ASSERT_TRUE(verifier.ok()) << verifier.status();
  ASSERT_TRUE(verifier->Verify(Token(a)).ok());
  EXPECT_EQ(idp.requests(), 1);

  // The provider rotates: b is published, a withdrawn. The first token signed with b is refused
  // (its kid is unknown) and triggers a fetch; once fetched, b verifies and a no longer does.
  idp.Serve(200, testing::JwksDocument({&b}));
  absl::Status first = verifier->Verify(Token(b)).status();
  EXPECT_EQ(AuthFailureReason(first), "unknown_key");
  EXPECT_TRUE(Eventually([&] { return verifier->Verify(Token(b)).ok(); }));
  EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(a)).status()), "unknown_key");
}

TEST(JwksUrlTest, AnUnknownKidsFetchIsPendingUntilTheSetIsIn) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  const Key b = testing::GenerateEs256Key("b");
  idp.Serve(200, testing::JwksDocument({&a}));
  JwksUrlOptions o = Fast(idp.url());
  o.min_refresh = absl::Seconds(5);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  ASSERT_TRUE(verifier.ok());
  EXPECT_FALSE(verifier->KeysBeingFetched());  // the first fetch was not asked for by a kid

  // b is published; a token naming it asks for the set. Once that fetch is over, the very next
  // verification has b (what a caller that waits relies on).
  idp.Serve(200, testing::JwksDocument({&a, &b}));
  EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(b)).status()), "unknown_key");
  ASSERT_TRUE(Eventually([&] { return !verifier->KeysBeingFetched(); }));
  EXPECT_TRUE(verifier->Verify(Token(b)).ok());
  EXPECT_EQ(idp.requests(), 2);

  // Within the rate limit a made-up kid asks for nothing: nothing is pending, nobody waits.
  const Key forged = testing::GenerateEs256Key("made-up");
  EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(forged)).status()), "unknown_key");
  EXPECT_FALSE(verifier->KeysBeingFetched());
}

TEST(JwksUrlTest, AFailedFetchEndsTheWait) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  const Key b = testing::GenerateEs256Key("b");
  idp.Serve(200, testing::JwksDocument({&a}));
  auto source = JwksUrlSource::Start(Fast(idp.url()));
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  ASSERT_TRUE(verifier.ok());
  idp.Serve(500, "down");
  EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(b)).status()), "unknown_key");
  ASSERT_TRUE(Eventually([&] { return !verifier->KeysBeingFetched(); }));
  EXPECT_EQ(idp.requests(), 2);
  EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(b)).status()), "unknown_key");
  EXPECT_TRUE(verifier->Verify(Token(a)).ok());  // the last good set stays
}

TEST(JwksUrlTest, UnknownKidsTriggerAtMostOneFetchPerInterval) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(200, testing::JwksDocument({&a}));
  JwksUrlOptions o = Fast(idp.url());
  o.min_refresh = absl::Seconds(5);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  ASSERT_TRUE(verifier.ok());
  // 200 tokens with made-up kids: one early fetch, not 200.
  for (int i = 0; i < 200; ++i) {
    const Key forged = testing::GenerateEs256Key(absl::StrCat("made-up-", i));
    EXPECT_EQ(AuthFailureReason(verifier->Verify(Token(forged)).status()), "unknown_key");
  }
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_EQ(idp.requests(), 2);
}

TEST(JwksUrlTest, CacheHeadersSetTheRefreshAndEtagsMakeItConditional) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(200, testing::JwksDocument({&a}), "public, max-age=0", "\"v1\"");
  JwksUrlOptions o = Fast(idp.url());
  o.min_refresh = absl::Milliseconds(100);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok()) << source.status();
  // max-age=0 is clamped to the minimum interval: the set is re-validated every 100 ms, with
  // If-None-Match, and stays usable on 304.
  EXPECT_TRUE(Eventually([&] { return idp.conditional_requests() >= 3; }))
      << idp.requests() << " requests, " << idp.conditional_requests() << " conditional";
  EXPECT_NE((*source)->Current(), nullptr);

  // A long max-age is honoured (clamped to max_refresh, 30 s here): no fetch for a while.
  testing::JwksProvider idp2;
  idp2.Serve(200, testing::JwksDocument({&a}), "max-age=3600");
  auto source2 = JwksUrlSource::Start(Fast(idp2.url()));
  ASSERT_TRUE(source2.ok());
  absl::SleepFor(absl::Milliseconds(500));
  EXPECT_EQ(idp2.requests(), 1);
}

TEST(JwksUrlTest, TheLastGoodSetOutlivesAnOutageForMaxStaleThenEverythingIsRefused) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(200, testing::JwksDocument({&a}), "max-age=0");
  JwksUrlOptions o = Fast(idp.url());
  o.min_refresh = absl::Milliseconds(100);
  o.max_refresh = absl::Milliseconds(100);
  o.max_stale = absl::Milliseconds(1500);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  ASSERT_TRUE(verifier->Verify(Token(a)).ok());

  // The provider breaks in every way it can; the last good set keeps working meanwhile.
  const absl::Time broke = absl::Now();
  for (auto [status, body] : std::vector<std::pair<int, std::string>>{
           {500, "oops"}, {200, "not json"}, {200, R"({"keys":[]})"}, {200, R"({"keys":{}})"}}) {
    idp.Serve(status, body);
    const int before = idp.requests();
    ASSERT_TRUE(Eventually([&] { return idp.requests() > before; }));
    if (absl::Now() - broke < absl::Milliseconds(1200)) {
      EXPECT_TRUE(verifier->Verify(Token(a)).ok()) << status << " " << body;
    }
  }
  // Past max_stale: fail closed, with a reason that says why.
  ASSERT_TRUE(Eventually([&] { return (*source)->Current() == nullptr; }));
  absl::Status refused = verifier->Verify(Token(a)).status();
  EXPECT_EQ(AuthFailureReason(refused), "keys_unavailable");
  EXPECT_THAT(refused.message(), HasSubstr("could not be refreshed"));

  // The provider comes back: keys are usable again within the retry backoff.
  idp.Serve(200, testing::JwksDocument({&a}));
  EXPECT_TRUE(Eventually([&] { return verifier->Verify(Token(a)).ok(); }));
}

TEST(JwksUrlTest, AProviderDownAtStartRefusesTokensUntilItIsUp) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(503, "down");
  JwksUrlOptions o = Fast(idp.url());
  o.initial_wait = absl::Milliseconds(500);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok()) << source.status();
  auto verifier = Verifier::Create(std::shared_ptr<KeySource>(*source), Options());
  absl::Status refused = verifier->Verify(Token(a)).status();
  EXPECT_EQ(AuthFailureReason(refused), "keys_unavailable");
  EXPECT_THAT(refused.message(), HasSubstr("have not been fetched yet"));
  idp.Serve(200, testing::JwksDocument({&a}));
  EXPECT_TRUE(Eventually([&] { return verifier->Verify(Token(a)).ok(); }));
}

TEST(JwksUrlTest, AnOversizedDocumentIsRefused) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(200, testing::JwksDocument({&a}) + std::string(4096, ' '));
  JwksUrlOptions o = Fast(idp.url());
  o.max_bytes = 1024;
  o.initial_wait = absl::Milliseconds(500);
  auto source = JwksUrlSource::Start(o);
  ASSERT_TRUE(source.ok());
  EXPECT_EQ((*source)->Current(), nullptr);
}

TEST(JwksUrlTest, MetricsCountFetchesAndUsability) {
  testing::JwksProvider idp;
  const Key a = testing::GenerateEs256Key("a");
  idp.Serve(200, testing::JwksDocument({&a}), "", "\"e\"");
  auto registry = std::make_shared<prometheus::Registry>();
  JwksUrlOptions o = Fast(idp.url());
  auto source = JwksUrlSource::Start(o, registry);
  ASSERT_TRUE(source.ok());
  (*source)->UnknownKey("zzz");
  ASSERT_TRUE(Eventually([&] { return idp.conditional_requests() == 1; }));
  ASSERT_TRUE(Eventually([&] {
    return Sample(*registry, R"(podgate_auth_jwks_fetches_total{result="not_modified"})") == 1;
  }));
  EXPECT_EQ(Sample(*registry, R"(podgate_auth_jwks_fetches_total{result="ok"})"), 1);
  EXPECT_EQ(Sample(*registry, "podgate_auth_jwks_unknown_kid_fetches_total"), 1);
  EXPECT_EQ(Sample(*registry, "podgate_auth_jwks_keys"), 1);
  EXPECT_EQ(Sample(*registry, "podgate_auth_jwks_usable"), 1);
}

TEST(JwksUrlTest, BadOptionsAreRefusedWithTheReason) {
  JwksUrlOptions o;
  o.url = "http://idp.example.com/jwks";
  EXPECT_THAT(JwksUrlSource::Start(o).status().message(), HasSubstr("loopback"));
  o.url = "ftp://idp.example.com/jwks";
  EXPECT_THAT(JwksUrlSource::Start(o).status().message(), HasSubstr("not http or https"));
  o.url = "https://idp.example.com/jwks";
  o.max_stale = absl::Minutes(1);
  EXPECT_THAT(JwksUrlSource::Start(o).status().message(), HasSubstr("max staleness"));
  o.max_stale = absl::Hours(2);
  o.min_refresh = absl::ZeroDuration();
  EXPECT_THAT(JwksUrlSource::Start(o).status().message(), HasSubstr("refresh"));
}

TEST(JwksUrlTest, CacheLifetimeReadsTheHeaders) {
  auto with = [](std::vector<std::pair<std::string, std::string>> headers) {
    http::ClientResponse r;
    r.headers = std::move(headers);
    return CacheLifetime(r);
  };
  EXPECT_EQ(with({}), std::nullopt);
  EXPECT_EQ(with({{"Cache-Control", "public, max-age=600"}}), absl::Seconds(600));
  EXPECT_EQ(with({{"cache-control", "Max-Age=7"}}), absl::Seconds(7));
  EXPECT_EQ(with({{"Cache-Control", "no-store"}}), absl::ZeroDuration());
  EXPECT_EQ(with({{"Cache-Control", "max-age=-1"}}), std::nullopt);
  EXPECT_EQ(with({{"Date", "Mon, 30 Nov 2026 10:00:00 GMT"},
                  {"Expires", "Mon, 30 Nov 2026 10:05:00 GMT"}}),
            absl::Minutes(5));
  EXPECT_EQ(with({{"Expires", "0"}}), absl::ZeroDuration());
}

}  // namespace
}  // namespace podgate::auth
