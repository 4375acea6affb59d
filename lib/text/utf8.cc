#include "text/utf8.h"

namespace podgate::text {

Utf8CodePoint DecodeUtf8(std::string_view text) {
  if (text.empty()) {
    return {};
  }
  const auto b0 = static_cast<unsigned char>(text[0]);
  size_t len;
  uint32_t cp;
  if (b0 < 0x80) {
    return {b0, 1};
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2;
    cp = b0 & 0x1F;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3;
    cp = b0 & 0x0F;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4;
    cp = b0 & 0x07;
  } else {
    return {};
  }
  if (text.size() < len) {
    return {};
  }
  for (size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    if ((b & 0xC0) != 0x80) {
      return {};
    }
    cp = (cp << 6) | (b & 0x3F);
  }
  if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
      (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) {
    return {};
  }
  return {cp, len};
}

bool IsValidUtf8(std::string_view text) {
  while (!text.empty()) {
    const size_t len = DecodeUtf8(text).length;
    if (len == 0) {
      return false;
    }
    text.remove_prefix(len);
  }
  return true;
}

}  // namespace podgate::text
