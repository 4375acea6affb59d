// The one UTF-8 decoder: strict (RFC 3629: no overlong forms, no surrogates, nothing above
// U+10FFFF), one code point at a time, so each caller decides what an invalid byte means
// (refuse the text, replace it with U+FFFD, escape it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace podgate::text {

struct Utf8CodePoint {
  uint32_t code_point = 0;
  // Bytes the sequence takes: 1 to 4, or 0 when `text` does not start with a valid sequence
  // (or is empty).
  size_t length = 0;
};

// Decodes the sequence at the start of `text`.
Utf8CodePoint DecodeUtf8(std::string_view text);

bool IsValidUtf8(std::string_view text);

}  // namespace podgate::text
