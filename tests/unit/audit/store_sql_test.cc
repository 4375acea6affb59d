// What both stores share: the migrations rendered per dialect.
#include "audit/store_sql.h"

#include "absl/strings/escaping.h"
#include "audit/chain.h"
#include "gtest/gtest.h"

namespace podgate::audit {
namespace {

std::string Sha256Hex(const std::string& text) {
  return absl::BytesToHexString(LinkHash("", text));
}

// A released migration is never edited: an existing database has already run it (and SQLite
// keeps its CREATE text). These digests pin each released version's text per dialect; a schema
// change is a new version, with its digests appended here.
TEST(StoreSqlTest, ReleasedMigrationsKeepTheirText) {
  const std::vector<std::string>& sqlite = Migrations(Dialect::kSqlite);
  const std::vector<std::string>& postgres = Migrations(Dialect::kPostgres);
  ASSERT_EQ(sqlite.size(), 3u);
  ASSERT_EQ(postgres.size(), 3u);
  EXPECT_EQ(Sha256Hex(sqlite[0]),
            "e9576c57d7d25e87863342f3cecde467639b3f4bba7a9ce5a30effcad563f7c5");
  EXPECT_EQ(Sha256Hex(postgres[0]),
            "5a582a16aad62d601ec087d48e08d2a220148775b16cc015f9bb2d9ba576449b");
  EXPECT_EQ(Sha256Hex(sqlite[1]),
            "eff0c519a8c3b551b31119167d7c0d9613cb44e027468ecc670f41a52bf93d59");
  EXPECT_EQ(Sha256Hex(postgres[1]),
            "eff0c519a8c3b551b31119167d7c0d9613cb44e027468ecc670f41a52bf93d59");
  EXPECT_EQ(Sha256Hex(sqlite[2]),
            "7e10cef96b6150bd802d33394787abfa0de64165b16703f332ecee100810f832");
  EXPECT_EQ(Sha256Hex(postgres[2]),
            "7e10cef96b6150bd802d33394787abfa0de64165b16703f332ecee100810f832");
}

}  // namespace
}  // namespace podgate::audit
