#include "exec/container_probe.h"

#include <cmath>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "policy/text_checks.h"

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

// POSIX sh, builtins only (`read`, `case`, `[`, `true`, `echo`). $1 is the pid, already
// validated by JvmProbeArgv and checked again here. Exit 0 printing "jvm <pid>": a process (its
// Tgid is itself, so not a thread) that maps libjvm.so and catches SIGQUIT (bit 2 of the last
// hex digit of SigCgt); 1 no libjvm.so; 3 no such process; 4 its maps cannot be opened (the
// kernel allows that only to its own user, whose attach would also work); 5 SIGQUIT not
// caught; 6 a thread. `true < file` tests the open: a failed redirection of a regular builtin
// does not end the shell.
constexpr char kJvmScript[] = R"sh(p=$1
case $p in ''|0*|*[!0-9]*) echo "not a pid" >&2; exit 2;; esac
[ -d "/proc/$p" ] || { echo "no such process" >&2; exit 3; }
tgid=''; cgt=''
while IFS=': 	' read -r k v _; do
  case $k in
    Tgid) tgid=$v;;
    SigCgt) cgt=$v;;
  esac
done 2>/dev/null < "/proc/$p/status"
[ -n "$tgid" ] || { echo "no such process" >&2; exit 3; }
[ "$tgid" = "$p" ] || { echo "a thread of process $tgid" >&2; exit 6; }
true 2>/dev/null < "/proc/$p/maps" || { echo "its memory map cannot be read" >&2; exit 4; }
jvm=''
while IFS= read -r l; do
  case $l in
    */libjvm.so|*'/libjvm.so (deleted)') jvm=1; break;;
  esac
done 2>/dev/null < "/proc/$p/maps"
[ -n "$jvm" ] || { echo "no libjvm.so in its memory map" >&2; exit 1; }
case $cgt in
  *[4567cdefCDEF]) ;;
  *) echo "SIGQUIT is not caught" >&2; exit 5;;
esac
echo "jvm $p"
)sh";

// POSIX sh; `readlink` is the one external program (GNU coreutils and BusyBox both have -f).
// $1 is the path. Existence is tested with `[ -e ]` (which follows links) before and after
// resolving, because `readlink -f` differs on a missing last component: coreutils prints it,
// BusyBox fails. The resolved path is captured with a sentinel so that no trailing newline of
// a hostile name is lost, and printed once.
constexpr char kPathScript[] = R"sh(p=$1
case $p in /*) a=$p;; *) a=./$p;; esac
[ -e "$a" ] || { echo "does not exist" >&2; exit 3; }
command -v readlink >/dev/null 2>&1 || { echo "no readlink in the image" >&2; exit 6; }
r=$(readlink -f -- "$a" && echo x) || { echo "readlink failed" >&2; exit 4; }
r=${r%x}
case $r in
  /*'
') r=${r%?};;
  *) echo "readlink printed no absolute path" >&2; exit 4;;
esac
[ -e "$r" ] || { echo "does not exist" >&2; exit 3; }
printf '%s\n' "$r"
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
                                             absl::Duration started_ago, const std::string& signal,
                                             const std::string& only_pid) {
  const int64_t seconds = static_cast<int64_t>(std::ceil(absl::ToDoubleSeconds(started_ago))) + 1;
  return {"/bin/sh",
          "-c",
          kInterruptScript,
          "podgate-interrupt",
          signal,
          absl::StrCat(seconds),
          absl::StrJoin(target_argv, ""),
          only_pid};
}

absl::StatusOr<std::vector<std::string>> JvmProbeArgv(absl::string_view pid) {
  const auto refuse = [&] {
    return absl::InvalidArgumentError(
        absl::StrCat("\"", absl::CHexEscape(pid.substr(0, 32)), pid.size() > 32 ? "..." : "",
                     "\" is not a process id (a decimal number from 1 to ", kMaxPid, ")"));
  };
  if (pid.empty() || pid.size() > 7 || pid[0] == '0') {
    return refuse();
  }
  for (const char c : pid) {
    if (c < '0' || c > '9') {
      return refuse();
    }
  }
  int64_t value = 0;
  if (!absl::SimpleAtoi(pid, &value) || value < 1 || value > kMaxPid) {
    return refuse();
  }
  return std::vector<std::string>{"/bin/sh", "-c", kJvmScript, "podgate-jvm-check",
                                  std::string(pid)};
}

absl::StatusOr<JvmProbeVerdict> ParseJvmProbe(absl::string_view pid, int exit_code,
                                              absl::string_view stdout_text) {
  if (exit_code == 0) {
    if (stdout_text != absl::StrCat("jvm ", pid, "\n")) {
      return absl::InternalError("the JVM check succeeded but printed something unexpected");
    }
    return JvmProbeVerdict::kJvm;
  }
  if (!stdout_text.empty()) {
    return absl::InternalError(
        absl::StrCat("the JVM check exited with status ", exit_code, " and printed output"));
  }
  switch (exit_code) {
    case 1:
      return JvmProbeVerdict::kNotJvm;
    case 3:
      return JvmProbeVerdict::kNoProcess;
    case 4:
      return JvmProbeVerdict::kUnreadable;
    case 5:
      return JvmProbeVerdict::kNoQuitHandler;
    case 6:
      return JvmProbeVerdict::kThread;
    case 126:
    case 127:
      return absl::FailedPreconditionError(
          absl::StrCat("the container has no usable /bin/sh (exit status ", exit_code, ")"));
    default:
      return absl::InternalError(absl::StrCat("the JVM check exited with status ", exit_code));
  }
}

std::vector<std::string> PathProbeArgv(absl::string_view path) {
  return {"/bin/sh", "-c", kPathScript, "podgate-path-check", std::string(path)};
}

absl::StatusOr<std::string> ParsePathProbe(int exit_code, absl::string_view stdout_text) {
  switch (exit_code) {
    case 0:
      break;
    case 3:
      return absl::NotFoundError("does not exist");
    case 6:
      return absl::FailedPreconditionError("the container has no readlink");
    case 126:
    case 127:
      return absl::FailedPreconditionError(
          absl::StrCat("the container has no usable /bin/sh (exit status ", exit_code, ")"));
    default:
      return absl::InternalError(absl::StrCat("the path check exited with status ", exit_code));
  }
  if (stdout_text.empty() || stdout_text.back() != '\n') {
    return absl::InternalError("the path check printed no complete line");
  }
  stdout_text.remove_suffix(1);
  const std::string_view path(stdout_text.data(), stdout_text.size());
  if (path.size() > policy::kMaxArgBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("the resolved path is longer than ", policy::kMaxArgBytes, " bytes"));
  }
  if (std::optional<std::string> bad = policy::DescribeForbiddenCharacter(path)) {
    return absl::InvalidArgumentError(absl::StrCat("the resolved path contains a ", *bad));
  }
  const std::optional<std::string> normal = policy::NormaliseAbsolutePath(path);
  if (!normal.has_value() || *normal != path) {
    return absl::InvalidArgumentError("the resolved path is not a canonical absolute path");
  }
  return *normal;
}

}  // namespace podgate::exec
