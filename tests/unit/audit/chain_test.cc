// The canonical encoding, the hash chain, event validation and query validation.
#include "audit/chain.h"

#include "absl/strings/str_cat.h"
#include "audit/query_sql.h"
#include "audit/store.h"
#include "audit_testing.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace podgate::audit {
namespace {

using ::testing::HasSubstr;

TEST(ChainTest, LinkNextChainsHashesOverPreviousHashAndCanonicalContent) {
  ChainHead head;
  head.chain_id = "c";
  const auto a = testing::MakeEvent("a");
  const StoredRow first = LinkNext(&head, a, 42);
  EXPECT_EQ(first.sequence, 1);
  EXPECT_EQ(first.previous_hash, std::string(kHashBytes, '\0'));
  EXPECT_EQ(first.hash, LinkHash(std::string(kHashBytes, '\0'),
                                 CanonicalContent("c", 1, 42, first.event_bytes)));
  const StoredRow second = LinkNext(&head, testing::MakeEvent("b"), 43);
  EXPECT_EQ(second.previous_hash, first.hash);
  EXPECT_EQ(head.sequence, 2);
  EXPECT_EQ(head.hash, second.hash);
  // The same event on another chain, at another place or time hashes differently.
  ChainHead other;
  other.chain_id = "d";
  EXPECT_NE(LinkNext(&other, a, 42).hash, first.hash);
  EXPECT_NE(CanonicalContent("c", 1, 42, "x"), CanonicalContent("c", 2, 42, "x"));
  EXPECT_NE(CanonicalContent("c", 1, 42, "x"), CanonicalContent("c", 1, 43, "x"));
  // Length prefixes keep field boundaries unambiguous.
  EXPECT_NE(CanonicalContent("ab", 1, 1, "c"), CanonicalContent("a", 1, 1, "bc"));
}

TEST(ChainTest, SerializationIsDeterministicAcrossMapOrder) {
  auto e1 = testing::MakeEvent("a");
  (*e1.mutable_target()->mutable_pod_labels())["x"] = "1";
  (*e1.mutable_target()->mutable_pod_labels())["y"] = "2";
  auto e2 = testing::MakeEvent("a");
  (*e2.mutable_target()->mutable_pod_labels())["y"] = "2";
  (*e2.mutable_target()->mutable_pod_labels())["x"] = "1";
  ChainHead h1{"c"}, h2{"c"};
  EXPECT_EQ(LinkNext(&h1, e1, 1).hash, LinkNext(&h2, e2, 1).hash);
}

TEST(ChainTest, ColumnsComeFromTheEvent) {
  auto e = testing::MakeEvent("a", "alice", "shop", "api-0", "jcmd 1 VM.flags");
  e.mutable_principal()->add_groups("sre");
  const EventColumns c = ColumnsOf(e);
  EXPECT_EQ(c.user, "alice");
  EXPECT_EQ(c.groups, "\ndev\nsre\n");
  EXPECT_EQ(c.namespace_name, "shop");
  EXPECT_EQ(c.argv_text, "jcmd 1 VM.flags jcmd 1 VM.flags");
  EXPECT_EQ(c.event_time_us, 1795000000LL * 1000000);
}

TEST(ChainTest, ValidateEventRejectsWhatCannotBeStored) {
  EXPECT_TRUE(ValidateEvent(testing::MakeEvent("ok-1")).ok());
  auto e = testing::MakeEvent("");
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("no id"));
  e = testing::MakeEvent(std::string(129, 'x'));
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("limit is 128"));
  e = testing::MakeEvent("has space");
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("printable"));
  e = testing::MakeEvent("k");
  e.set_kind(podgate::common::v1::EVENT_KIND_UNSPECIFIED);
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("kind"));
  e.set_kind(static_cast<podgate::common::v1::EventKind>(99));
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("kind"));
  e = testing::MakeEvent("t");
  e.clear_time();
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("no time"));
  e = testing::MakeEvent("t");
  e.mutable_time()->set_nanos(-1);
  EXPECT_THAT(std::string(ValidateEvent(e).message()), HasSubstr("bad time"));
}

TEST(QueryValidationTest, LimitsAndTokens) {
  podgate::audit::v1::QueryRequest r;
  EXPECT_EQ(*ValidateQuery(r), 100);
  r.set_page_size(1000);
  EXPECT_EQ(*ValidateQuery(r), 1000);
  r.set_page_size(-1);
  EXPECT_THAT(std::string(ValidateQuery(r).status().message()), HasSubstr("page_size"));
  r.Clear();
  for (int i = 0; i < 101; ++i) {
    r.add_users(absl::StrCat("u", i));
  }
  EXPECT_THAT(std::string(ValidateQuery(r).status().message()), HasSubstr("users"));
  r.Clear();
  r.set_argv_contains(std::string(1025, 'a'));
  EXPECT_THAT(std::string(ValidateQuery(r).status().message()), HasSubstr("argv_contains"));
  r.Clear();
  r.mutable_start_time()->set_seconds(-999999999999);
  EXPECT_FALSE(ValidateQuery(r).ok());

  EXPECT_EQ(*DecodePageToken(EncodePageToken(77, false), false), 77);
  EXPECT_FALSE(DecodePageToken(EncodePageToken(77, false), true).ok());
  EXPECT_FALSE(DecodePageToken("djE6YTp4", false).ok());  // "v1:a:x"
}

TEST(QueryValidationTest, SqlBindsEveryValue) {
  podgate::audit::v1::QueryRequest r;
  r.add_users("alice'; DROP TABLE records; --");
  r.set_argv_contains("x");
  auto q = BuildQuery(r, Dialect::kPostgres);
  ASSERT_TRUE(q.ok());
  EXPECT_THAT(q->sql, ::testing::Not(HasSubstr("DROP")));
  EXPECT_THAT(q->sql, HasSubstr("user_name = $1"));
  EXPECT_THAT(q->sql, HasSubstr("strpos(argv_text, $2) > 0"));
  EXPECT_THAT(q->sql, HasSubstr("LIMIT 101"));
  auto s = BuildQuery(r, Dialect::kSqlite);
  EXPECT_THAT(s->sql, HasSubstr("instr(argv_text, ?2) > 0"));
}

}  // namespace
}  // namespace podgate::audit
