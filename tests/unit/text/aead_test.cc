#include "crypto/aead.h"

#include "gtest/gtest.h"

namespace podgate::crypto {
namespace {

const std::string kKey(32, 'k');

TEST(AeadTest, OpensWhatItSealedWithTheSameKeyAndPurpose) {
  const std::string sealed = AeadSeal(kKey, "a refresh token", "podgate_refresh");
  EXPECT_EQ(sealed.size(), 12u + 15u + 16u);
  EXPECT_EQ(sealed.find("a refresh token"), std::string::npos);
  EXPECT_EQ(AeadOpen(kKey, sealed, "podgate_refresh"), "a refresh token");
  // A fresh IV each time: the same value seals differently.
  EXPECT_NE(AeadSeal(kKey, "a refresh token", "podgate_refresh"), sealed);
  EXPECT_EQ(AeadOpen(kKey, AeadSeal(kKey, "", "x"), "x"), "");
}

TEST(AeadTest, RefusesAnotherKeyAnotherPurposeAndAnyChangedByte) {
  const std::string sealed = AeadSeal(kKey, "state and nonce", "podgate_login");
  EXPECT_FALSE(AeadOpen(std::string(32, 'o'), sealed, "podgate_login").has_value());
  EXPECT_FALSE(AeadOpen(kKey, sealed, "podgate_refresh").has_value());
  for (size_t i = 0; i < sealed.size(); ++i) {
    std::string changed = sealed;
    changed[i] ^= 1;
    EXPECT_FALSE(AeadOpen(kKey, changed, "podgate_login").has_value()) << i;
  }
  EXPECT_FALSE(AeadOpen(kKey, sealed.substr(0, 27), "podgate_login").has_value());
  EXPECT_FALSE(AeadOpen(kKey, "", "podgate_login").has_value());
  EXPECT_FALSE(AeadOpen("short", sealed, "podgate_login").has_value());
}

}  // namespace
}  // namespace podgate::crypto
