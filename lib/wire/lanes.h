// The flow control of ExecService.Sessions' lanes (exec.proto), one definition for exec, edge
// and the tests' client: the windows, in encoded bytes of a lane's messages, and how a credit
// frame adds to what a side may still send.
#pragma once

#include <algorithm>
#include <cstdint>

namespace podgate::wire {

// What exec sends a lane, and what the client sends it, before credit comes back.
inline constexpr int64_t kLaneResponseWindowBytes = 512 * 1024;
inline constexpr int64_t kLaneRequestWindowBytes = 64 * 1024;

// `balance` (may be below zero by one message) plus a credit frame's `credit`, bounded so that
// no peer can overflow it.
inline int64_t AddLaneCredit(int64_t balance, uint64_t credit) {
  return std::min<int64_t>(balance + static_cast<int64_t>(std::min<uint64_t>(credit, 1ULL << 40)),
                           int64_t{1} << 41);
}

}  // namespace podgate::wire
