#include "text/utf8.h"

#include "gtest/gtest.h"

namespace podgate::text {
namespace {

TEST(Utf8Test, DecodesOneToFourByteSequences) {
  EXPECT_EQ(DecodeUtf8("a").code_point, 0x61u);
  EXPECT_EQ(DecodeUtf8("a").length, 1u);
  EXPECT_EQ(DecodeUtf8("\xc3\xa9x").code_point, 0xE9u);  // é
  EXPECT_EQ(DecodeUtf8("\xc3\xa9x").length, 2u);
  EXPECT_EQ(DecodeUtf8("\xe2\x80\xae").code_point, 0x202Eu);  // RLO
  EXPECT_EQ(DecodeUtf8("\xf0\x9f\x98\x80").code_point, 0x1F600u);
  EXPECT_EQ(DecodeUtf8("\xf0\x9f\x98\x80").length, 4u);
  EXPECT_EQ(DecodeUtf8(std::string_view("\0", 1)).length, 1u);
}

TEST(Utf8Test, RefusesWhatRfc3629Refuses) {
  for (std::string_view bad :
       {std::string_view(""), std::string_view("\x80"), std::string_view("\xc3"),
        std::string_view("\xc3x"),
        std::string_view("\xc0\xaf"),          // overlong '/'
        std::string_view("\xe0\x80\xaf"),      // overlong
        std::string_view("\xed\xa0\x80"),      // surrogate U+D800
        std::string_view("\xf4\x90\x80\x80"),  // above U+10FFFF
        std::string_view("\xf8\x88\x80\x80\x80"), std::string_view("\xff")}) {
    EXPECT_EQ(DecodeUtf8(bad).length, 0u);
  }
}

TEST(Utf8Test, ValidatesWholeTexts) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("jstack 1 \xc3\xa9\xf0\x9f\x98\x80"));
  EXPECT_FALSE(IsValidUtf8("ok \xc3"));
  EXPECT_FALSE(IsValidUtf8("\xed\xbf\xbf"));
}

}  // namespace
}  // namespace podgate::text
