// Authenticated encryption (AES-256-GCM, OpenSSL EVP) of small values a server hands to a client
// and must get back unchanged and unread: edge's sign-in and session cookies.
//
// Sealed form: 12-byte random IV || ciphertext || 16-byte tag. The associated data binds a
// sealed value to its purpose (a cookie's name), so one cookie cannot be replayed as another.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace podgate::crypto {

inline constexpr size_t kAeadKeyBytes = 32;

// `key` must be kAeadKeyBytes long.
std::string AeadSeal(std::string_view key, std::string_view plaintext,
                     std::string_view associated_data);
// nullopt when `sealed` was not sealed with this key and associated data, or was changed.
std::optional<std::string> AeadOpen(std::string_view key, std::string_view sealed,
                                    std::string_view associated_data);

}  // namespace podgate::crypto
