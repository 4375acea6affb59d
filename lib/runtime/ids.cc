#include "runtime/ids.h"

#include <openssl/rand.h>

#include <cstdint>
#include <cstdlib>

#include "absl/time/clock.h"
#include "crypto/sha256.h"

namespace podgate::runtime {
namespace {

// Fills `bytes` from the CSPRNG. No randomness means ids could collide and audit idempotency
// would merge events: abort rather than go on.
void RandomBytes(unsigned char* bytes, int n) {
  if (RAND_bytes(bytes, n) != 1) {
    std::abort();
  }
}

}  // namespace

std::string RandomId() {
  unsigned char bytes[16];
  RandomBytes(bytes, sizeof(bytes));
  return crypto::HexLower(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

std::string EventId() { return EventIdAt(absl::Now()); }

std::string EventIdAt(absl::Time now) {
  unsigned char bytes[16];
  // 48 bits of milliseconds, big-endian so that the hex sorts by time (until the year 10889);
  // a time before 1970 counts as 0.
  const int64_t ms = absl::ToUnixMillis(now);
  const uint64_t stamp = ms > 0 ? static_cast<uint64_t>(ms) & 0xffffffffffffULL : 0;
  for (int i = 0; i < 6; ++i) {
    bytes[i] = static_cast<unsigned char>(stamp >> (8 * (5 - i)));
  }
  RandomBytes(bytes + 6, sizeof(bytes) - 6);
  return crypto::HexLower(std::string_view(reinterpret_cast<const char*>(bytes), sizeof(bytes)));
}

}  // namespace podgate::runtime
