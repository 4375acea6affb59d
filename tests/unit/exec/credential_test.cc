// exec's credential check (exec/credential.h) with a real JWKS URL source against a loopback
// HTTP server: a key the provider has just published is waited for, on the timer thread; a
// made-up key id is refused without waiting.
#include "exec/credential.h"

#include <future>
#include <thread>

#include "auth/jwks_url.h"
#include "gtest/gtest.h"
#include "support/jwks_provider.h"

namespace podgate::exec {
namespace {

std::string Token(const auth::Key& key) {
  const int64_t now = absl::ToUnixSeconds(absl::Now());
  absl::StatusOr<std::string> t = auth::Sign(
      {{"iss", "https://idp.test"}, {"aud", "podgate"}, {"sub", "alice"}, {"exp", now + 600}}, key);
  return t.ok() ? *t : "";
}

class CredentialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    idp_.Serve(200, testing::JwksDocument({&a_}));
    auth::JwksUrlOptions o;
    o.url = idp_.url();
    o.min_refresh = absl::Seconds(5);
    o.max_refresh = absl::Seconds(30);
    o.max_stale = absl::Seconds(30);
    o.timeout = absl::Seconds(2);
    o.initial_wait = absl::Seconds(2);
    auto source = auth::JwksUrlSource::Start(o);
    ASSERT_TRUE(source.ok()) << source.status();
    auth::VerifierOptions v;
    v.issuer = "https://idp.test";
    v.audiences = {"podgate"};
    auto verifier = auth::Verifier::Create(std::shared_ptr<auth::KeySource>(*source), v);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = std::make_unique<auth::Verifier>(*std::move(verifier));
  }

  // What VerifyCredential answered, on which thread, and how long it took.
  struct Answer {
    absl::StatusOr<auth::VerifiedToken> verified = absl::UnknownError("no answer");
    bool on_caller_thread = false;
    absl::Duration took;
  };
  Answer Check(const std::string& token) {
    const std::thread::id caller = std::this_thread::get_id();
    const absl::Time start = absl::Now();
    std::promise<Answer> promise;
    VerifyCredential(
        verifier_.get(), &timers_, token, [&](absl::StatusOr<auth::VerifiedToken> verified) {
          promise.set_value(
              {std::move(verified), std::this_thread::get_id() == caller, absl::Now() - start});
        });
    std::future<Answer> answer = promise.get_future();
    EXPECT_EQ(answer.wait_for(std::chrono::seconds(10)), std::future_status::ready);
    return answer.get();
  }

  testing::JwksProvider idp_;
  const auth::Key a_ = testing::GenerateEs256Key("a");
  runtime::TimerQueue timers_;
  std::unique_ptr<auth::Verifier> verifier_;
};

TEST_F(CredentialTest, AKnownKeyIsAnsweredAtOnceOnTheCallersThread) {
  Answer answer = Check(Token(a_));
  ASSERT_TRUE(answer.verified.ok()) << answer.verified.status();
  EXPECT_EQ(answer.verified->principal.user(), "alice");
  EXPECT_TRUE(answer.on_caller_thread);
}

TEST_F(CredentialTest, AKeyJustPublishedIsWaitedForOnTheTimerThread) {
  const auth::Key b = testing::GenerateEs256Key("b");
  idp_.Serve(200, testing::JwksDocument({&a_, &b}));
  Answer answer = Check(Token(b));
  ASSERT_TRUE(answer.verified.ok()) << answer.verified.status();
  EXPECT_FALSE(answer.on_caller_thread);
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(CredentialTest, AMadeUpKeyIdIsRefusedWithoutWaitingForTheLimit) {
  // The first unknown kid asks for a fetch (answered without it); the next, within the rate
  // limit, asks for none: each is refused as soon as nothing is pending, well before
  // kKeyFetchWait.
  for (const char* kid : {"made-up-1", "made-up-2"}) {
    const auth::Key forged = testing::GenerateEs256Key(kid);
    Answer answer = Check(Token(forged));
    EXPECT_EQ(auth::AuthFailureReason(answer.verified.status()), "unknown_key") << kid;
    EXPECT_LT(answer.took, absl::Seconds(1)) << kid;
  }
  EXPECT_EQ(idp_.requests(), 2);
}

TEST_F(CredentialTest, OtherRefusalsAreAnsweredAtOnce) {
  Answer answer = Check("not-a-token");
  EXPECT_EQ(auth::AuthFailureReason(answer.verified.status()), "malformed");
  EXPECT_TRUE(answer.on_caller_thread);
}

}  // namespace
}  // namespace podgate::exec
