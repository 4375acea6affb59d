// The browser protocols' parsers and encoders, the query parser, and the rate limits.
#include "edge/protocol.h"

#include <set>
#include <string>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/strip.h"
#include "auth/base64url.h"
#include "edge/codec.h"
#include "edge/http_reply.h"
#include "edge/limits.h"
#include "gmock/gmock.h"
#include "google/protobuf/descriptor.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"

namespace podgate::edge {
namespace {

using ::testing::HasSubstr;

TEST(SeedReplyTest, MatchesPythonJsonDumpsByteForByte) {
  EXPECT_EQ(SeedReply("stdout", "hello\n"), R"({"stdout": "hello\n"})");
  EXPECT_EQ(SeedDenial("ls; id"),
            "{\"stderr\": \"Command `ls; id` is not allowed, please contact the "
            "administrator\"}");
  // json.dumps("\"\\\t\x01\x7f") == '"\\"\\\\\\t\\u0001\\u007f"' (DEL is outside ' '..'~')
  EXPECT_EQ(PythonJsonString("\"\\\t\x01\x7f"), "\"\\\"\\\\\\t\\u0001\\u007f\"");
  // ensure_ascii: é and € as \u escapes, U+1F600 as a surrogate pair.
  EXPECT_EQ(PythonJsonString("\xc3\xa9\xe2\x82\xac"), "\"\\u00e9\\u20ac\"");
  EXPECT_EQ(PythonJsonString("\xf0\x9f\x98\x80"), "\"\\ud83d\\ude00\"");
}

TEST(SeedReplyTest, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(PythonJsonString("a\xff"
                             "b"),
            "\"a\\ufffdb\"");
  EXPECT_EQ(PythonJsonString("\xc3"), "\"\\ufffd\"");                        // truncated sequence
  EXPECT_EQ(PythonJsonString("\xc0\xaf"), "\"\\ufffd\\ufffd\"");             // overlong
  EXPECT_EQ(PythonJsonString("\xed\xa0\x80"), "\"\\ufffd\\ufffd\\ufffd\"");  // surrogate
}

TEST(SeedAuthTest, ParsesOnlyABearerAuthorizationLine) {
  EXPECT_EQ(ParseSeedAuth("Authorization: Bearer abc.def.ghi"), "abc.def.ghi");
  EXPECT_EQ(ParseSeedAuth("Authorization:   bearer abc"), "abc");
  EXPECT_FALSE(ParseSeedAuth("Authorization: Basic abc").has_value());
  EXPECT_FALSE(ParseSeedAuth("Bearer abc").has_value());
  EXPECT_FALSE(ParseSeedAuth("").has_value());
}

TEST(OfferedProtocolsTest, DecodesTheBearerEntryAndNeverEchoesIt) {
  auto offered = ParseOfferedProtocols(std::string("podgate.v1, ") + kBearerSubprotocolPrefix +
                                       auth::Base64UrlEncode("t.o.k"));
  ASSERT_TRUE(offered.ok());
  EXPECT_TRUE(offered->v1);
  EXPECT_EQ(offered->token, "t.o.k");
  auto none = ParseOfferedProtocols("chat, superchat");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->v1);
  EXPECT_FALSE(none->token.has_value());
  EXPECT_FALSE(ParseOfferedProtocols(std::string(kBearerSubprotocolPrefix) + "a=b").ok());
  EXPECT_FALSE(ParseOfferedProtocols(std::string(kBearerSubprotocolPrefix)).ok());
  const std::string entry = kBearerSubprotocolPrefix + auth::Base64UrlEncode("x");
  EXPECT_FALSE(ParseOfferedProtocols(entry + "," + entry).ok());
}

TEST(OfferedProtocolsTest, ParsesAResumeEntryAndRefusesAMalformedOne) {
  auto offered = ParseOfferedProtocols(std::string("podgate.v1, ") + kResumeSubprotocolPrefix +
                                       "5f3a9c.tok_EN-1.42.70000");
  ASSERT_TRUE(offered.ok());
  ASSERT_TRUE(offered->resume_error.ok()) << offered->resume_error;
  ASSERT_TRUE(offered->resume.has_value());
  EXPECT_EQ(offered->resume->session_id, "5f3a9c");
  EXPECT_EQ(offered->resume->token, "tok_EN-1");
  EXPECT_EQ(offered->resume->last_seq, 42u);
  EXPECT_EQ(offered->resume->output_offset, 70000u);
  EXPECT_FALSE(ParseOfferedProtocols("podgate.v1")->resume.has_value());
  // The largest position there is, and 0 (nothing after `ready`).
  auto edge =
      ParseOfferedProtocols(std::string(kResumeSubprotocolPrefix) + "s.t.18446744073709551615.0");
  ASSERT_TRUE(edge.ok());
  ASSERT_TRUE(edge->resume.has_value()) << edge->resume_error;
  EXPECT_EQ(edge->resume->last_seq, 18446744073709551615u);
  EXPECT_EQ(edge->resume->output_offset, 0u);
  // Each malformed entry is a bad request (resume_error), never a resume, and the rest of the
  // offer still parses.
  const std::string long_id(129, 'a');
  for (const std::string& bad : std::vector<std::string>{
           "", "s.t.1", "s.t.1.2.3", ".t.1.2", "s..1.2", "s.t..2", "s.t.1.", "s.t.-1.2", "s.t.+1.2",
           "s.t.1x.2", "s.t.18446744073709551616.0", "s.t.123456789012345678901.0", "s/x.t.1.2",
           "s.t%41.1.2", long_id + ".t.1.2", "s." + long_id + ".1.2"}) {
    auto parsed =
        ParseOfferedProtocols(std::string("podgate.v1,") + kResumeSubprotocolPrefix + bad);
    ASSERT_TRUE(parsed.ok()) << bad;
    EXPECT_TRUE(parsed->v1);
    EXPECT_FALSE(parsed->resume.has_value()) << bad;
    EXPECT_TRUE(absl::IsInvalidArgument(parsed->resume_error)) << bad;
    EXPECT_THAT(std::string(parsed->resume_error.message()),
                ::testing::HasSubstr("<session_id>.<token>.<seq>.<offset>"));
  }
  const std::string entry = std::string(kResumeSubprotocolPrefix) + "s.t.1.2";
  auto twice = ParseOfferedProtocols(entry + "," + entry);
  ASSERT_TRUE(twice.ok());
  EXPECT_FALSE(twice->resume.has_value());
  EXPECT_THAT(std::string(twice->resume_error.message()), ::testing::HasSubstr("more than one"));
}

TEST(OriginTest, ExactMatchOnly) {
  const char* list = "https://a.example, https://b.example:8443";
  EXPECT_TRUE(OriginAllowed("https://a.example", list));
  EXPECT_TRUE(OriginAllowed("https://b.example:8443", list));
  EXPECT_FALSE(OriginAllowed("https://a.example.evil", list));
  EXPECT_FALSE(OriginAllowed("http://a.example", list));
  EXPECT_FALSE(OriginAllowed("https://b.example", list));
  EXPECT_FALSE(OriginAllowed("", list));
  EXPECT_FALSE(OriginAllowed("null", list));
  EXPECT_FALSE(OriginAllowed("https://a.example", ""));
}

TEST(CookieTest, FindsTheNamedCookie) {
  EXPECT_EQ(FindCookie("a=1; podgate_token=xyz; b=2", kTokenCookie), "xyz");
  EXPECT_FALSE(FindCookie("podgate_token_old=1", kTokenCookie).has_value());
  EXPECT_FALSE(FindCookie("", kTokenCookie).has_value());
}

TEST(V1ParseTest, ParsesEveryClientMessage) {
  auto c = ParseV1Text(R"({"type":"command","id":"x","line":"ls -l"})");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->type, V1ClientMessage::Type::kCommand);
  EXPECT_EQ(c->id, "x");
  EXPECT_EQ(c->line, "ls -l");
  auto r = ParseV1Text(R"({"type":"resize","cols":120,"rows":40})");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->cols, 120u);
  EXPECT_EQ(r->rows, 40u);
  auto s = ParseV1Text(R"({"type":"stdin","data":"y\n","eof":true})");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->data, "y\n");
  EXPECT_TRUE(s->eof);
  EXPECT_EQ(ParseV1Text(R"({"type":"interrupt"})")->type, V1ClientMessage::Type::kInterrupt);
  EXPECT_EQ(ParseV1Text(R"({"type":"close"})")->type, V1ClientMessage::Type::kClose);
  EXPECT_EQ(ParseV1Text(R"({"type":"auth","token":"t"})")->token, "t");
  auto renew = ParseV1Text(R"({"type":"renew","ticket":"k"})");
  ASSERT_TRUE(renew.ok());
  EXPECT_EQ(renew->type, V1ClientMessage::Type::kRenew);
  EXPECT_EQ(renew->ticket, "k");
  EXPECT_EQ(ParseV1Text(R"({"type":"renew","token":"t"})")->token, "t");
  auto b = ParseV1Binary(std::string("\0abc", 4));
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(b->type, V1ClientMessage::Type::kStdin);
  EXPECT_EQ(b->data, "abc");
}

TEST(V1ParseTest, RefusesMalformedMessagesWithAReason) {
  EXPECT_THAT(ParseV1Text("not json").status().message(), HasSubstr("JSON object"));
  EXPECT_THAT(ParseV1Text("[1]").status().message(), HasSubstr("JSON object"));
  EXPECT_THAT(ParseV1Text("{}").status().message(), HasSubstr("type"));
  EXPECT_THAT(ParseV1Text(R"({"type":"launch"})").status().message(), HasSubstr("unknown"));
  EXPECT_THAT(ParseV1Text(R"({"type":"command"})").status().message(), HasSubstr("line"));
  EXPECT_THAT(ParseV1Text(R"({"type":"command","line":1})").status().message(), HasSubstr("line"));
  EXPECT_THAT(ParseV1Text(R"({"type":"command","line":"x","id":")" + std::string(65, 'i') + "\"}")
                  .status()
                  .message(),
              HasSubstr("64"));
  EXPECT_FALSE(ParseV1Text(R"({"type":"resize","cols":0,"rows":4})").ok());
  EXPECT_FALSE(ParseV1Text(R"({"type":"resize","cols":-1,"rows":4})").ok());
  EXPECT_FALSE(ParseV1Text(R"({"type":"resize","cols":10001,"rows":4})").ok());
  EXPECT_FALSE(ParseV1Text(R"({"type":"auth"})").ok());
  // A renewal carries exactly one of a token and a ticket.
  EXPECT_THAT(ParseV1Text(R"({"type":"renew"})").status().message(), HasSubstr("ticket"));
  EXPECT_FALSE(ParseV1Text(R"({"type":"renew","token":"t","ticket":"k"})").ok());
  EXPECT_FALSE(ParseV1Binary("").ok());
  EXPECT_FALSE(ParseV1Binary("\x01out").ok());
}

TEST(V1EncodeTest, BinaryOutputIsKindBytePlusRawPayload) {
  EXPECT_EQ(V1Binary(BinaryKind::kStdout, "a\"b\n"), std::string("\x01"
                                                                 "a\"b\n"));
  EXPECT_EQ(V1Binary(BinaryKind::kStderr, ""), std::string("\x02"));
}

TEST(QueryTest, DecodesAndRefusesBadEncoding) {
  auto q = ParseQuery("namespace=a%2Db&pod=web+1&x");
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->find("namespace")->second, "a-b");
  EXPECT_EQ(q->find("pod")->second, "web 1");
  EXPECT_EQ(q->find("x")->second, "");
  EXPECT_FALSE(ParseQuery("a=%zz").ok());
  EXPECT_FALSE(ParseQuery("a=%2").ok());
  EXPECT_FALSE(ParseQuery("a=%").ok());
}

TEST(TokenBucketTest, RefillsAtTheRateUpToTheBurst) {
  absl::Time t = absl::UnixEpoch();
  TokenBucket bucket(/*rate=*/2, /*burst=*/3, t);
  EXPECT_TRUE(bucket.Take(t));
  EXPECT_TRUE(bucket.Take(t));
  EXPECT_TRUE(bucket.Take(t));
  EXPECT_FALSE(bucket.Take(t));
  EXPECT_TRUE(bucket.Take(t + absl::Milliseconds(500)));
  EXPECT_FALSE(bucket.Take(t + absl::Milliseconds(500)));
  // A long pause refills only up to the burst.
  absl::Time later = t + absl::Hours(1);
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(bucket.Take(later));
  }
  EXPECT_FALSE(bucket.Take(later));
}

TEST(LimitsTest, CapsConnectionsInTotalAndPerUserAndSharesTheUserBucket) {
  absl::Time now = absl::UnixEpoch();
  LimitOptions o;
  o.max_connections = 2;
  o.max_connections_per_user = 1;
  o.user_messages_per_second = 1;
  o.user_message_burst = 2;
  Limits limits(o, [&now] { return now; });
  EXPECT_TRUE(limits.AcquireConnection());
  EXPECT_TRUE(limits.AcquireConnection());
  EXPECT_FALSE(limits.AcquireConnection());
  limits.ReleaseConnection();
  EXPECT_TRUE(limits.AcquireConnection());

  EXPECT_TRUE(limits.AcquireUser("a"));
  EXPECT_FALSE(limits.AcquireUser("a"));
  EXPECT_TRUE(limits.AcquireUser("b"));
  EXPECT_TRUE(limits.TakeUserMessage("a"));
  EXPECT_TRUE(limits.TakeUserMessage("a"));
  EXPECT_FALSE(limits.TakeUserMessage("a"));
  EXPECT_TRUE(limits.TakeUserMessage("b"));  // another user's bucket is untouched
  EXPECT_FALSE(limits.TakeUserMessage("nobody"));
  limits.ReleaseUser("a");
  EXPECT_TRUE(limits.AcquireUser("a"));
}

TEST(LimitsTest, AuditFollowsPerReplicaAndPerUserNameTheCap) {
  LimitOptions o;
  o.max_audit_follows = 2;
  o.max_audit_follows_per_user = 1;
  Limits limits(o);
  EXPECT_TRUE(limits.AcquireAuditFollow("ann").ok());
  absl::Status mine = limits.AcquireAuditFollow("ann");
  EXPECT_EQ(mine.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(mine.message()), ::testing::HasSubstr("close one"));
  EXPECT_TRUE(limits.AcquireAuditFollow("bob").ok());
  absl::Status replica = limits.AcquireAuditFollow("cat");
  EXPECT_EQ(replica.code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(replica.message()), ::testing::HasSubstr("at most 2 live audit streams"));
  limits.ReleaseAuditFollow("ann");
  EXPECT_TRUE(limits.AcquireAuditFollow("cat").ok());
  EXPECT_FALSE(limits.AcquireAuditFollow("ann").ok());  // the replica is full again
  limits.ReleaseAuditFollow("bob");
  EXPECT_TRUE(limits.AcquireAuditFollow("ann").ok());
}

TEST(LimitsTest, UnauthenticatedConnectionsHaveAPoolOfTheirOwn) {
  LimitOptions o;
  o.max_connections = 1;
  o.max_unauthenticated_connections = 2;
  Limits limits(o);
  EXPECT_TRUE(limits.AcquireUnauthenticated());
  EXPECT_TRUE(limits.AcquireUnauthenticated());
  EXPECT_FALSE(limits.AcquireUnauthenticated());
  // A full anonymous pool leaves the replica's pool alone.
  EXPECT_TRUE(limits.AcquireConnection());
  EXPECT_FALSE(limits.AcquireConnection());
  EXPECT_EQ(limits.connections(), 1);
  EXPECT_EQ(limits.unauthenticated_connections(), 2);
  limits.ReleaseUnauthenticated();
  EXPECT_TRUE(limits.AcquireUnauthenticated());
}

// Every exec close reason has a page outcome of its own: a label (the value's name without
// CLOSE_REASON_, lower case) and a documented close code. The values come from the proto
// descriptor, so a value added to the enum without a mapping fails here.
TEST(PageCloseTest, EveryCloseReasonFromTheDescriptorIsMapped) {
  const google::protobuf::EnumDescriptor* d = podgate::common::v1::CloseReason_descriptor();
  ASSERT_GE(d->value_count(), 9);
  const std::set<uint16_t> documented = {kCloseNormal, kCloseGoingAway, kClosePolicy,
                                         kCloseInternal};
  for (int i = 0; i < d->value_count(); ++i) {
    const auto value = static_cast<podgate::common::v1::CloseReason>(d->value(i)->number());
    const PageClose page = PageCloseFor(value);
    EXPECT_TRUE(documented.count(page.code)) << d->value(i)->name() << ": " << page.code;
    if (value == podgate::common::v1::CLOSE_REASON_UNSPECIFIED) {
      EXPECT_EQ(page.reason, "unknown");
      continue;
    }
    std::string expected(absl::StripPrefix(d->value(i)->name(), "CLOSE_REASON_"));
    absl::AsciiStrToLower(&expected);
    EXPECT_EQ(page.reason, expected) << d->value(i)->name();
  }
  // A failure is not a normal close; a shell that exited is.
  EXPECT_EQ(PageCloseFor(podgate::common::v1::CLOSE_REASON_ERROR).code, kCloseInternal);
  EXPECT_EQ(PageCloseFor(podgate::common::v1::CLOSE_REASON_REMOTE_EXIT).code, kCloseNormal);
  EXPECT_EQ(PageCloseFor(podgate::common::v1::CLOSE_REASON_CREDENTIAL_EXPIRED).code, kClosePolicy);
  EXPECT_EQ(PageCloseFor(podgate::common::v1::CLOSE_REASON_IDLE_TIMEOUT).code, kCloseGoingAway);
  EXPECT_EQ(PageCloseFor(podgate::common::v1::CLOSE_REASON_MODERATOR_LEFT).code, kCloseNormal);
  EXPECT_EQ(PageCloseFor(static_cast<podgate::common::v1::CloseReason>(99)).reason, "unknown");
}

TEST(PageCloseTest, EveryTerminationFromTheDescriptorHasItsLabel) {
  const google::protobuf::EnumDescriptor* d = podgate::common::v1::Termination_descriptor();
  for (int i = 0; i < d->value_count(); ++i) {
    const auto value = static_cast<podgate::common::v1::Termination>(d->value(i)->number());
    std::string expected(absl::StripPrefix(d->value(i)->name(), "TERMINATION_"));
    absl::AsciiStrToLower(&expected);
    EXPECT_EQ(TerminationLabel(value),
              value == podgate::common::v1::TERMINATION_UNSPECIFIED ? "unknown" : expected)
        << d->value(i)->name();
  }
}

// exec's answers as v1 and seed messages.
TEST(CodecTest, AnErrorExitCarriesItsReasonOnBothProtocols) {
  podgate::exec::v1::CommandExit e;
  e.set_command_id("c7");
  e.set_termination(podgate::common::v1::TERMINATION_ERROR);
  e.set_error("the container stream broke; exec stops its process");
  e.mutable_duration()->set_seconds(2);
  EXPECT_EQ(nlohmann::json::parse(V1Exit(e)),
            nlohmann::json({{"type", "exit"},
                            {"id", "c7"},
                            {"termination", "error"},
                            {"code", 0},
                            {"duration_ms", 2000},
                            {"output_bytes", 0},
                            {"reason", "the container stream broke; exec stops its process"}}));
  EXPECT_EQ(
      SeedExit(e),
      R"({"stderr": "Command ended: error: the container stream broke; exec stops its process"})");
  // From an exec that does not say why, a generic reason; never an error without one.
  e.clear_error();
  EXPECT_EQ(nlohmann::json::parse(V1Exit(e))["reason"],
            "the stream to the container failed; the exit status is unknown");
}

TEST(CodecTest, OtherExitsCarryNoReasonAndSeedIsSilentOnANormalExit) {
  podgate::exec::v1::CommandExit e;
  e.set_command_id("c1");
  e.set_termination(podgate::common::v1::TERMINATION_EXITED);
  e.set_exit_code(3);
  EXPECT_FALSE(nlohmann::json::parse(V1Exit(e)).contains("reason"));
  EXPECT_EQ(nlohmann::json::parse(V1Exit(e))["code"], 3);
  EXPECT_EQ(SeedExit(e), std::nullopt);
  e.set_termination(podgate::common::v1::TERMINATION_TIME_LIMIT);
  EXPECT_EQ(SeedExit(e), R"({"stderr": "Command ended: time_limit"})");
}

TEST(CodecTest, ControlMessages) {
  EXPECT_EQ(nlohmann::json::parse(V1Error("UNAVAILABLE", "later")),
            nlohmann::json({{"type", "error"}, {"code", "UNAVAILABLE"}, {"message", "later"}}));
  EXPECT_EQ(nlohmann::json::parse(V1Error("UNAVAILABLE", "later", "c2"))["id"], "c2");
  EXPECT_EQ(
      nlohmann::json::parse(V1Closed("exec_lost", kExecLostMessage)),
      nlohmann::json({{"type", "closed"}, {"reason", "exec_lost"}, {"message", kExecLostMessage}}));
  EXPECT_EQ(nlohmann::json::parse(V1ExecLostExit("k1")),
            nlohmann::json({{"type", "exit"},
                            {"id", "k1"},
                            {"termination", "error"},
                            {"reason", kExecLostCommandMessage}}));
  podgate::exec::v1::CommandError err;
  err.set_command_id("c3");
  err.mutable_status()->set_code(9);
  err.mutable_status()->set_message("busy \xff");  // not UTF-8: replaced, not thrown
  EXPECT_EQ(nlohmann::json::parse(V1CommandError(err)),
            nlohmann::json({{"type", "error"},
                            {"id", "c3"},
                            {"code", "FAILED_PRECONDITION"},
                            {"message", "busy \xef\xbf\xbd"}}));
  podgate::exec::v1::SessionReady r;
  r.set_session_id("s1");
  r.mutable_principal()->set_user("alice");
  r.mutable_target()->set_namespace_("demo");
  r.set_mode(podgate::common::v1::SESSION_MODE_SHELL);
  nlohmann::json ready = nlohmann::json::parse(V1Ready(r));
  EXPECT_EQ(ready["type"], "ready");
  EXPECT_EQ(ready["session_id"], "s1");
  EXPECT_EQ(ready["mode"], "shell");
  EXPECT_FALSE(ready.contains("expires"));
  // No cluster named (an exec from before clusters, asked for its default): none reported.
  EXPECT_FALSE(ready.contains("cluster"));
  r.mutable_target()->set_cluster("prod-eu");
  EXPECT_EQ(nlohmann::json::parse(V1Ready(r))["cluster"], "prod-eu");
}

TEST(CodecTest, ResumeFieldsOnReadyResumedAndControlMessages) {
  podgate::exec::v1::SessionReady r;
  r.set_session_id("s1");
  r.mutable_principal()->set_user("alice");
  EXPECT_FALSE(nlohmann::json::parse(V1Ready(r)).contains("resume"));  // resume off in exec
  r.set_resume_token("t0k");
  r.mutable_resume_grace()->set_seconds(120);
  EXPECT_EQ(nlohmann::json::parse(V1Ready(r))["resume"],
            nlohmann::json({{"token", "t0k"}, {"grace_seconds", 120}}));

  podgate::exec::v1::SessionResumed resumed;
  *resumed.mutable_ready() = r;
  resumed.mutable_ready()->set_resume_token("next");
  resumed.set_replayed_messages(3);
  resumed.set_lost_messages(2);
  resumed.set_lost_bytes(900);
  nlohmann::json j = nlohmann::json::parse(V1Resumed(resumed, "tr", 12, 5000));
  EXPECT_EQ(j["type"], "resumed");
  EXPECT_EQ(j["session_id"], "s1");
  EXPECT_EQ(j["user"], "alice");
  EXPECT_EQ(j["trace_id"], "tr");
  EXPECT_EQ(j["resume"]["token"], "next");
  EXPECT_EQ(j["replayed_messages"], 3);
  EXPECT_EQ(j["lost_messages"], 2);
  EXPECT_EQ(j["lost_bytes"], 900);
  EXPECT_EQ(j["seq"], 12);
  EXPECT_EQ(j["offset"], 5000);

  podgate::exec::v1::CommandExit e;
  e.set_command_id("c1");
  nlohmann::json exit = nlohmann::json::parse(WithPosition(V1Exit(e), 7, 300));
  EXPECT_EQ(exit["type"], "exit");
  EXPECT_EQ(exit["id"], "c1");
  EXPECT_EQ(exit["seq"], 7);
  EXPECT_EQ(exit["offset"], 300);
  // Without a position (resume off) the message is as before.
  EXPECT_EQ(WithPosition(V1Exit(e), 0, 0), V1Exit(e));
}

TEST(CodecTest, JoiningMessagesAndTheSessionsList) {
  podgate::exec::v1::SessionReady r;
  r.set_session_id("s1");
  r.mutable_principal()->set_user("alice");
  r.set_role(podgate::common::v1::PARTICIPANT_ROLE_OBSERVER);
  nlohmann::json ready = nlohmann::json::parse(V1Ready(r));
  EXPECT_EQ(ready["role"], "observer");
  EXPECT_EQ(ready["moderator_required"], false);
  r.set_role(podgate::common::v1::PARTICIPANT_ROLE_UNSPECIFIED);  // an exec from before joins
  r.set_moderator_required(true);
  EXPECT_FALSE(nlohmann::json::parse(V1Ready(r)).contains("role"));
  EXPECT_EQ(nlohmann::json::parse(V1Ready(r))["moderator_required"], true);

  podgate::exec::v1::Participants p;
  auto* owner = p.add_participants();
  owner->set_user("alice");
  owner->set_role(podgate::common::v1::PARTICIPANT_ROLE_OWNER);
  owner->mutable_joined_time()->set_seconds(1796198400);
  auto* mod = p.add_participants();
  mod->set_user(
      "s\x1b"
      "am \xff");  // not UTF-8: replaced, not thrown; the page strips controls
  mod->set_role(podgate::common::v1::PARTICIPANT_ROLE_MODERATOR);
  p.set_waiting_for_moderator(true);
  nlohmann::json j = nlohmann::json::parse(WithPosition(V1Participants(p), 4, 10));
  EXPECT_EQ(j["type"], "participants");
  EXPECT_EQ(j["waiting_for_moderator"], true);
  ASSERT_EQ(j["participants"].size(), 2u);
  EXPECT_EQ(
      j["participants"][0],
      nlohmann::json({{"user", "alice"}, {"role", "owner"}, {"joined", "2026-12-02T08:00:00Z"}}));
  EXPECT_EQ(j["participants"][1]["user"],
            "s\x1b"
            "am \xef\xbf\xbd");
  EXPECT_EQ(j["participants"][1]["role"], "moderator");
  EXPECT_FALSE(j["participants"][1].contains("joined"));
  EXPECT_EQ(j["seq"], 4);
  EXPECT_EQ(RoleLabel(static_cast<podgate::common::v1::ParticipantRole>(42)), "unknown");

  podgate::exec::v1::CommandStarted c;
  c.set_command_id("c9");
  c.set_line("jstack 1");
  EXPECT_EQ(nlohmann::json::parse(V1CommandStarted(c)),
            nlohmann::json({{"type", "command"}, {"id", "c9"}, {"line", "jstack 1"}}));

  podgate::exec::v1::ListSessionsResponse list;
  EXPECT_EQ(nlohmann::json::parse(SessionsJson(list)),
            nlohmann::json({{"sessions", nlohmann::json::array()}}));
  auto* s = list.add_sessions();
  s->set_session_id("s1");
  s->mutable_principal()->set_user("alice");
  s->mutable_principal()->add_groups("devs");
  s->mutable_target()->set_namespace_("prod");
  s->mutable_target()->set_pod("api-0");
  s->mutable_target()->set_container("app");
  s->set_mode(podgate::common::v1::SESSION_MODE_SHELL);
  s->mutable_opened_time()->set_seconds(1796198400);
  *s->add_participants() = *owner;
  s->set_waiting_for_moderator(true);
  s->set_may_moderate(true);
  nlohmann::json sessions = nlohmann::json::parse(SessionsJson(list))["sessions"];
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0],
            nlohmann::json({{"session_id", "s1"},
                            {"user", "alice"},
                            {"groups", {"devs"}},
                            {"cluster", ""},
                            {"namespace", "prod"},
                            {"pod", "api-0"},
                            {"container", "app"},
                            {"mode", "shell"},
                            {"opened", "2026-12-02T08:00:00Z"},
                            {"participants", nlohmann::json::array({j["participants"][0]})},
                            {"waiting_for_moderator", true},
                            {"may_moderate", true}}));
}

TEST(SessionIdTest, OnlyExecsIdsPass) {
  EXPECT_TRUE(ValidateSessionId("0af7651916cd43dd").ok());
  EXPECT_TRUE(ValidateSessionId("a-b_C9").ok());
  for (const std::string& bad :
       {std::string(), std::string("a.b"), std::string("a/b"), std::string("a b"),
        std::string(129, 'a'), std::string("\xc3\xa9")}) {
    absl::Status s = ValidateSessionId(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(std::string(s.message()), ::testing::HasSubstr("1 to 128 letters")) << bad;
  }
}

TEST(CodecTest, ALostExecStreamIsOneSeedLine) {
  EXPECT_EQ(SeedExecLostCommand(),
            SeedReply("stderr", std::string("Command ended: error: ") + kExecLostCommandMessage));
}

TEST(CodecTest, ExitDeniedAndErrorEndTheCommandTheyName) {
  using podgate::exec::v1::SessionResponse;
  SessionResponse exit;
  exit.mutable_exit()->set_command_id("c1");
  SessionResponse denied;
  denied.mutable_denied()->set_command_id("c2");
  SessionResponse error;
  error.mutable_error()->set_command_id("c3");
  SessionResponse out;
  out.mutable_stdout()->set_data("x");
  SessionResponse ready;
  ready.mutable_ready()->set_session_id("s");
  EXPECT_TRUE(EndsCommand(exit.kind_case()));
  EXPECT_TRUE(EndsCommand(denied.kind_case()));
  EXPECT_TRUE(EndsCommand(error.kind_case()));
  EXPECT_FALSE(EndsCommand(out.kind_case()));
  EXPECT_FALSE(EndsCommand(ready.kind_case()));
  EXPECT_FALSE(EndsCommand(SessionResponse::KIND_NOT_SET));
  EXPECT_EQ(CommandIdOf(exit), "c1");
  EXPECT_EQ(CommandIdOf(denied), "c2");
  EXPECT_EQ(CommandIdOf(error), "c3");
  EXPECT_EQ(CommandIdOf(out), "");
}

TEST(CodecTest, EveryStatusCodeClosesWithItsWebSocketCode) {
  for (int code = 1; code <= 16; ++code) {
    const auto c = static_cast<grpc::StatusCode>(code);
    uint16_t expected = kCloseInternal;
    if (c == grpc::StatusCode::UNAUTHENTICATED || c == grpc::StatusCode::PERMISSION_DENIED) {
      expected = kClosePolicy;
    } else if (c == grpc::StatusCode::UNAVAILABLE || c == grpc::StatusCode::RESOURCE_EXHAUSTED ||
               c == grpc::StatusCode::DEADLINE_EXCEEDED) {
      expected = kCloseTryAgainLater;
    }
    EXPECT_EQ(CloseCodeForStatus(c), expected) << StatusCodeName(code);
  }
}

}  // namespace
}  // namespace podgate::edge
