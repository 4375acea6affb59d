#include "crypto/sha256.h"

#include "gtest/gtest.h"

namespace podgate::crypto {
namespace {

TEST(Sha256Test, KnownDigests) {
  // FIPS 180-2 test vectors.
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(Sha256("abc").size(), 32u);
  EXPECT_EQ(HexLower(Sha256("abc")), Sha256Hex("abc"));
}

TEST(Sha256Test, HexIsLowerCaseTwoDigitsAByte) {
  EXPECT_EQ(HexLower(std::string_view("\x00\x0f\xa0\xff", 4)), "000fa0ff");
  EXPECT_EQ(HexLower(""), "");
}

}  // namespace
}  // namespace podgate::crypto
