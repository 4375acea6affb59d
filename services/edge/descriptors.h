// File descriptors for edge's connections. Each browser connection holds one descriptor for its
// whole life, so 10,000 sessions need more than 10,000 of them; the usual soft limit of a
// process (1024, e.g. under containerd 2 or systemd) would refuse most of them (accept fails
// with EMFILE and the accept loop backs off). edge raises its soft limit to the hard one at
// start, as Go's runtime does for every Go program, and warns when even that is below what its
// connection caps need (docs/performance.md, "Limits for 10,000 sessions").
#pragma once

#include <cstdint>

#include "absl/status/statusor.h"

namespace podgate::edge {

struct DescriptorLimit {
  uint64_t before = 0;  // the soft limit found at start
  uint64_t soft = 0;    // the soft limit now
  uint64_t hard = 0;
};

// Raises the soft RLIMIT_NOFILE to the hard limit (an unlimited hard limit raises it to
// /proc/sys/fs/nr_open's value). INTERNAL when the limits cannot be read or set.
absl::StatusOr<DescriptorLimit> RaiseDescriptorLimit();

// Descriptors edge needs with `http_connections` browser and HTTP connections at once (the HTTP
// server's cap): those, plus room for its listening sockets, gRPC channels, metrics scrapes,
// files and logs.
uint64_t DescriptorsNeeded(uint64_t http_connections);

}  // namespace podgate::edge
