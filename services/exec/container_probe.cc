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

// POSIX sh, builtins only (`read`, `set`, `echo`, `exec`; works in any image that has /bin/sh,
// BusyBox included). The command's argv is "$@", passed as data and never interpolated. The
// shell reads its own /proc/<pid>/stat (field 22: the start time in clock ticks since boot),
// reports "podgate-pid <pid> <start>" as the first line of stderr, and waits for the line "go"
// on stdin before it `exec`s the argv, so the pid reported IS the command's pid (exec keeps the
// pid and the start time). Anything else on stdin (EOF included: exec closed the stream because
// the report was not understood, or the command was stopped first) ends it with status 125
// without running the command. `read` takes one byte at a time from a pipe, so the command's
// own stdin starts right after "go\n".
constexpr char kLaunchScript[] = R"sh(set -f
st() { [ $# -ge 20 ] || exit 125; shift 19; start=$1; }
s=''; IFS= read -r s < "/proc/$$/stat" || [ -n "$s" ] || exit 125
st ${s##*) }
echo "podgate-pid $$ $start" >&2
go=''; IFS= read -r go || exit 125
[ "$go" = go ] || exit 125
exec "$@"
)sh";

// POSIX sh, builtins only. $1 signal name ("INT", "KILL"), $2 the pid, $3 its start time as
// the launch wrapper reported it, $4 "group" when an earlier stop found the process leading its
// process group. When /proc/<pid> is that process (same start time, not a zombie), the signal
// goes to its process group when it leads one (every child it started and did not move
// elsewhere), else to the process alone; exit 0 printing "group <pid>" or "process <pid>".
// When it is not (it exited, or the pid now belongs to another process) nothing is signalled
// and the answer is "gone" (exit 3) — except that with $4 "group" and no process <pid> at all,
// the group's survivors (children that ignored SIGINT) get the signal: exit 0 "orphans <pid>".
// Exit 4 when kill failed.
constexpr char kStopScript[] = R"sh(set -f
sig=$1; p=$2; want=$3; led=$4
case $p in ''|0*|*[!0-9]*) echo "not a pid" >&2; exit 2;; esac
st() { [ $# -ge 20 ] || return 1; state=$1; pg=$3; shift 19; start=$1; }
orphans() {
  [ "$led" = group ] && [ ! -e "/proc/$p" ] && kill -s "$sig" -- "-$p" 2>/dev/null &&
    { echo "orphans $p"; exit 0; }
  echo gone; exit 3
}
s=''; IFS= read -r s 2>/dev/null < "/proc/$p/stat" || [ -n "$s" ] || orphans
st ${s##*) } || orphans
[ "$start" = "$want" ] || { echo gone; exit 3; }
[ "$state" = Z ] && { echo gone; exit 3; }
if [ "$pg" = "$p" ]; then
  kill -s "$sig" -- "-$p" || exit 4
  echo "group $p"
else
  kill -s "$sig" "$p" || exit 4
  echo "process $p"
fi
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

std::vector<std::string> LaunchWrapperArgv(const std::vector<std::string>& argv) {
  std::vector<std::string> out = {"/bin/sh", "-c", kLaunchScript, "podgate-launch"};
  out.insert(out.end(), argv.begin(), argv.end());
  return out;
}

namespace {

// A decimal number without sign or leading zero, at most `max_digits` digits.
bool StrictDecimal(absl::string_view s, size_t max_digits) {
  if (s.empty() || s.size() > max_digits || (s[0] == '0' && s.size() > 1)) {
    return false;
  }
  for (const char c : s) {
    if (c < '0' || c > '9') {
      return false;
    }
  }
  return true;
}

}  // namespace

LaunchReport::Status LaunchReport::Feed(absl::string_view data, std::string* rest) {
  if (status_ != Status::kPending) {
    rest->assign(data.data(), data.size());
    return status_;
  }
  const size_t nl = data.find('\n');
  const size_t take = nl == absl::string_view::npos ? data.size() : nl + 1;
  line_.append(data.data(), take);
  if (line_.size() > kMaxLine) {
    status_ = Status::kInvalid;
    return status_;
  }
  if (nl == absl::string_view::npos) {
    return status_;
  }
  data.remove_prefix(take);
  rest->assign(data.data(), data.size());
  absl::string_view line(line_);
  line.remove_suffix(1);
  constexpr absl::string_view kPrefix = "podgate-pid ";
  if (line.substr(0, kPrefix.size()) != kPrefix) {
    status_ = Status::kInvalid;
    return status_;
  }
  line.remove_prefix(kPrefix.size());
  const size_t space = line.find(' ');
  if (space == absl::string_view::npos) {
    status_ = Status::kInvalid;
    return status_;
  }
  const absl::string_view pid = line.substr(0, space);
  const absl::string_view start = line.substr(space + 1);
  int64_t pid_value = 0;
  if (!StrictDecimal(pid, 7) || !absl::SimpleAtoi(pid, &pid_value) || pid_value < 1 ||
      pid_value > kMaxPid || !StrictDecimal(start, 20)) {
    status_ = Status::kInvalid;
    return status_;
  }
  pid_ = std::string(pid);
  start_ = std::string(start);
  status_ = Status::kReported;
  return status_;
}

std::vector<std::string> StopHelperArgv(const std::string& pid, const std::string& start_ticks,
                                        const std::string& signal, bool led_group) {
  return {"/bin/sh", "-c", kStopScript, "podgate-stop",
          signal,    pid,  start_ticks, led_group ? "group" : ""};
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
  if (std::optional<std::string> bad = policy::DescribeUnsafeCharacter(path)) {
    return absl::InvalidArgumentError(absl::StrCat("the resolved path contains a ", *bad));
  }
  const std::optional<std::string> normal = policy::NormaliseAbsolutePath(path);
  if (!normal.has_value() || *normal != path) {
    return absl::InvalidArgumentError("the resolved path is not a canonical absolute path");
  }
  return *normal;
}

}  // namespace podgate::exec
