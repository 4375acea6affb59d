// Random identifiers for sessions, commands and audit events.
#pragma once

#include <string>

namespace podgate::runtime {

// 128 random bits from the OS's CSPRNG as 32 lower-case hex digits.
std::string RandomId();

}  // namespace podgate::runtime
