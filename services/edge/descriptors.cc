#include "edge/descriptors.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>
#include <fstream>

#include "absl/strings/str_cat.h"

namespace podgate::edge {
namespace {

// The most a process may open when the hard limit is unlimited.
uint64_t NrOpen() {
  std::ifstream in("/proc/sys/fs/nr_open");
  uint64_t n = 0;
  if (in >> n && n > 0) {
    return n;
  }
  return 1 << 20;  // the kernel's default
}

}  // namespace

absl::StatusOr<DescriptorLimit> RaiseDescriptorLimit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return absl::InternalError(absl::StrCat("getrlimit(RLIMIT_NOFILE): ", std::strerror(errno)));
  }
  DescriptorLimit result;
  result.before = limit.rlim_cur;
  result.hard = limit.rlim_max == RLIM_INFINITY ? NrOpen() : limit.rlim_max;
  if (limit.rlim_cur != RLIM_INFINITY && limit.rlim_cur < result.hard) {
    limit.rlim_cur = result.hard;
    if (setrlimit(RLIMIT_NOFILE, &limit) != 0) {
      return absl::InternalError(
          absl::StrCat("setrlimit(RLIMIT_NOFILE, ", result.hard, "): ", std::strerror(errno)));
    }
  }
  result.soft = limit.rlim_cur == RLIM_INFINITY ? result.hard : limit.rlim_cur;
  return result;
}

uint64_t DescriptorsNeeded(uint64_t http_connections) { return http_connections + 128; }

}  // namespace podgate::edge
