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
  ASSERT_GE(sqlite.size(), 5u);  // later versions are pinned once released
  ASSERT_GE(postgres.size(), 5u);
  EXPECT_EQ(Sha256Hex(sqlite[0]),
            "e9576c57d7d25e87863342f3cecde467639b3f4bba7a9ce5a30effcad563f7c5");
  EXPECT_EQ(Sha256Hex(postgres[0]),
            "5a582a16aad62d601ec087d48e08d2a220148775b16cc015f9bb2d9ba576449b");
  EXPECT_EQ(Sha256Hex(sqlite[1]),
            "eff0c519a8c3b551b31119167d7c0d9613cb44e027468ecc670f41a52bf93d59");
  EXPECT_EQ(Sha256Hex(postgres[1]),
            "eff0c519a8c3b551b31119167d7c0d9613cb44e027468ecc670f41a52bf93d59");
  EXPECT_EQ(Sha256Hex(sqlite[2]),
            "f66344fbf2629dbe9781c24720e8791b5fcaae6ac9cbef76062ecd5af45b75c5");
  EXPECT_EQ(Sha256Hex(postgres[2]),
            "f9c003585d8f27d8264b8ff9ae56a430a9218a70eb989dfd125c9ec0b5c267aa");
  EXPECT_EQ(Sha256Hex(sqlite[3]),
            "78b2e102b808b86aee0fc49ed770048f2e9777f1615f726df4b5593ba83e0e69");
  EXPECT_EQ(Sha256Hex(postgres[3]),
            "49a6beb439ca48bc76b0c80a12140a77d86e3b2c68272558e088fd8f026e86a2");
  EXPECT_EQ(Sha256Hex(sqlite[4]),
            "7e10cef96b6150bd802d33394787abfa0de64165b16703f332ecee100810f832");
  EXPECT_EQ(Sha256Hex(postgres[4]),
            "7e10cef96b6150bd802d33394787abfa0de64165b16703f332ecee100810f832");
  ASSERT_GE(sqlite.size(), 8u);
  ASSERT_GE(postgres.size(), 8u);
  EXPECT_EQ(Sha256Hex(sqlite[5]),
            "91c7e6debe110f458113b6875bae8f4c01ca634dd2781521e18b25ab846c5b65");
  EXPECT_EQ(Sha256Hex(postgres[5]),
            "91c7e6debe110f458113b6875bae8f4c01ca634dd2781521e18b25ab846c5b65");
  EXPECT_EQ(Sha256Hex(sqlite[6]),
            "ef917dc1dd09d62670c60aef14552570527c926c150199650f89681187c98cf2");
  EXPECT_EQ(Sha256Hex(postgres[6]),
            "52cc6d455f5412ad83c6c09d7b11e53c3aacb54f3758f2e820f5cb706a316c69");
  EXPECT_EQ(Sha256Hex(sqlite[7]),
            "fa1ba3be7898804ee363f3b31abaa815ce055bc1df86b9009e9980b2df39c258");
  EXPECT_EQ(Sha256Hex(postgres[7]),
            "fa1ba3be7898804ee363f3b31abaa815ce055bc1df86b9009e9980b2df39c258");
}

}  // namespace
}  // namespace podgate::audit
