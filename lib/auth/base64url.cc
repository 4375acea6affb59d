#include "auth/base64url.h"

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"

namespace podgate::auth {
namespace {

// The value of a base64url digit, or -1.
int DigitValue(char c) {
  if (absl::ascii_isupper(static_cast<unsigned char>(c))) {
    return c - 'A';
  }
  if (absl::ascii_islower(static_cast<unsigned char>(c))) {
    return c - 'a' + 26;
  }
  if (absl::ascii_isdigit(static_cast<unsigned char>(c))) {
    return c - '0' + 52;
  }
  if (c == '-') {
    return 62;
  }
  if (c == '_') {
    return 63;
  }
  return -1;
}

// Abseil's decoder is lenient: it skips whitespace, takes '=' and '.' padding and ignores
// non-zero trailing bits ("QR" and "QQ" both decode to "A"). A JWS segment has exactly one
// encoding, so only the alphabet, a possible length and zero trailing bits pass here.
bool IsCanonicalUnpadded(absl::string_view text) {
  if (text.size() % 4 == 1) {
    return false;
  }
  for (const char c : text) {
    if (DigitValue(c) < 0) {
      return false;
    }
  }
  // The last digit of a 2-digit group carries 4 unused bits, of a 3-digit group 2.
  switch (text.size() % 4) {
    case 2:
      return (DigitValue(text.back()) & 0xF) == 0;
    case 3:
      return (DigitValue(text.back()) & 0x3) == 0;
    default:
      return true;
  }
}

}  // namespace

std::string Base64UrlEncode(absl::string_view data) { return absl::WebSafeBase64Escape(data); }

std::optional<std::string> Base64UrlDecode(absl::string_view text) {
  if (!IsCanonicalUnpadded(text)) {
    return std::nullopt;
  }
  std::string out;
  if (!absl::WebSafeBase64Unescape(text, &out)) {
    return std::nullopt;
  }
  return out;
}

}  // namespace podgate::auth
