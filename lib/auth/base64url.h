// Base64url without padding (RFC 4648 §5), as JWS uses it. Decoding is strict: padding,
// whitespace, characters outside the alphabet and non-zero trailing bits are refused, so a
// token has exactly one encoding. Abseil does the coding; its decoder alone is lenient (it
// skips whitespace, takes padding, ignores trailing bits), so a strict check runs before it.
#pragma once

#include <optional>
#include <string>

#include "absl/strings/string_view.h"

namespace podgate::auth {

std::string Base64UrlEncode(absl::string_view data);
std::optional<std::string> Base64UrlDecode(absl::string_view text);

}  // namespace podgate::auth
