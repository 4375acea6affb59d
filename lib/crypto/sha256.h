// SHA-256 and lower-case hex, one way for every service (OpenSSL underneath).
#pragma once

#include <string>
#include <string_view>

namespace podgate::crypto {

// The 32-byte digest.
std::string Sha256(std::string_view data);
// Two lower-case hex digits a byte.
std::string HexLower(std::string_view bytes);
// HexLower(Sha256(data)): 64 characters.
std::string Sha256Hex(std::string_view data);

}  // namespace podgate::crypto
