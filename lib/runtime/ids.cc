#include "runtime/ids.h"

#include <openssl/rand.h>

#include <cstdlib>

namespace podgate::runtime {

std::string RandomId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // No randomness means ids could collide and audit idempotency would merge events.
    std::abort();
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '0');
  for (size_t i = 0; i < sizeof(bytes); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xF];
  }
  return out;
}

}  // namespace podgate::runtime
