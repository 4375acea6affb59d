#include "runtime/ids.h"

#include <openssl/rand.h>

#include <cstdlib>

#include "crypto/sha256.h"

namespace podgate::runtime {

std::string RandomId() {
  unsigned char bytes[16];
  if (RAND_bytes(bytes, sizeof(bytes)) != 1) {
    // No randomness means ids could collide and audit idempotency would merge events.
    std::abort();
  }
  return crypto::HexLower(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

}  // namespace podgate::runtime
