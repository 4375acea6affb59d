#include "exec/container_probe.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace podgate::exec {
namespace {

// POSIX sh, no external programs (works in any image that has /bin/sh, BusyBox included).
// $1 signal name, $2 the most seconds ago the target started, $3 the target's argv joined
// without separators (what `read` yields from /proc/<pid>/cmdline: shells drop its NULs),
// $4 optional: only this pid, and only if it still runs the target (a SIGKILL follow-up).
// Start times are in clock ticks since boot; Linux's USER_HZ is 100 on every architecture
// Kubernetes runs on.
constexpr char kInterruptScript[] = R"sh(sig=$1; maxage=$2; want=$3; only=$4
IFS=' ' read -r up _ < /proc/uptime || exit 5
up=${up%%.*}
found=''; best=''
for d in /proc/[0-9]*; do
  p=${d#/proc/}
  [ "$p" = "$$" ] && continue
  [ -n "$only" ] && [ "$p" != "$only" ] && continue
  c=''; IFS= read -r c 2>/dev/null < "$d/cmdline"
  [ "$c" = "$want" ] || continue
  s=''; IFS= read -r s 2>/dev/null < "$d/stat" || [ -n "$s" ] || continue
  s=${s##*) }
  set -- $s
  [ $# -ge 20 ] || continue
  shift 19
  start=$1
  age=$(( up - start / 100 ))
  [ "$age" -le "$maxage" ] || continue
  if [ -z "$best" ] || [ "$start" -lt "$best" ]; then best=$start; found=$p; fi
done
if [ -z "$found" ]; then echo "no matching process" >&2; exit 3; fi
kill -s "$sig" "$found" || exit 4
echo "$found"
)sh";

}  // namespace

std::vector<std::string> UidProbeArgv() { return {"id", "-u"}; }

absl::StatusOr<int64_t> ParseUid(absl::string_view text) {
  if (!text.empty() && text.back() == '\n') {
    text.remove_suffix(1);
  }
  if (text.empty()) {
    return absl::InvalidArgumentError("`id -u` printed nothing");
  }
  if (text.size() > 10) {
    return absl::InvalidArgumentError("`id -u` printed more than a uid");
  }
  for (const char c : text) {
    if (!absl::ascii_isdigit(static_cast<unsigned char>(c))) {
      return absl::InvalidArgumentError("`id -u` printed something other than a number");
    }
  }
  if (text.size() > 1 && text[0] == '0') {
    return absl::InvalidArgumentError("`id -u` printed a number with leading zeros");
  }
  int64_t uid = 0;
  if (!absl::SimpleAtoi(text, &uid) || uid > 4294967295LL) {
    return absl::InvalidArgumentError("`id -u` printed a number out of range");
  }
  return uid;
}

std::vector<std::string> InterruptHelperArgv(const std::vector<std::string>& target_argv,
                                             absl::Duration started_ago,
                                             const std::string& signal,
                                             const std::string& only_pid) {
  const int64_t seconds =
      static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(started_ago))) + 1;
  return {"/bin/sh", "-c", kInterruptScript, "podgate-interrupt", signal,
          absl::StrCat(seconds), absl::StrJoin(target_argv, ""), only_pid};
}

}  // namespace podgate::exec
