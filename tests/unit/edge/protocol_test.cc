// The browser protocols' parsers and encoders, the query parser, and the rate limits.
#include "edge/protocol.h"

#include "auth/base64url.h"
#include "edge/edge_server.h"
#include "edge/limits.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::edge {
namespace {

using ::testing::HasSubstr;

TEST(SeedReplyTest, MatchesPythonJsonDumpsByteForByte) {
  EXPECT_EQ(SeedReply("stdout", "hello\n"), R"({"stdout": "hello\n"})");
  EXPECT_EQ(SeedDenial("ls; id"),
            "{\"stderr\": \"Command `ls; id` is not allowed, please contact the "
            "administrator\"}");
  // json.dumps("\"\\\t\x01\x7f") == '"\\"\\\\\\t\\u0001\x7f"'
  EXPECT_EQ(PythonJsonString("\"\\\t\x01\x7f"), "\"\\\"\\\\\\t\\u0001\x7f\"");
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

}  // namespace
}  // namespace podgate::edge
