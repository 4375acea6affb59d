// Identifiers for sessions, commands and audit events.
#pragma once

#include <string>

#include "absl/time/time.h"

namespace podgate::runtime {

// 128 random bits from the OS's CSPRNG as 32 lower-case hex digits. For what must not be
// guessed or ordered: session ids, tokens.
std::string RandomId();

// An audit event's id: 32 lower-case hex digits, the first 12 the Unix time in milliseconds
// and the other 20 random (80 bits from the CSPRNG). Ids made later sort after those made
// earlier (to the millisecond, and while the clock does not step back), so the store's unique
// index on event ids grows at its end instead of at a random page per record
// (docs/audit.md, "Event ids"). It tells when the event was made: not for secrets.
std::string EventId();
// The same, at `now` (tests).
std::string EventIdAt(absl::Time now);

}  // namespace podgate::runtime
