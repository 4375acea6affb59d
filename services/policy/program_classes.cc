#include "policy/program_classes.h"

#include <algorithm>

#include "absl/container/flat_hash_set.h"

namespace podgate::policy {
namespace {

// Programs that run other programs or code handed to them. Grouped by why; every name is a
// basename as installed by common distributions (Debian, Alpine, UBI, distroless debug).
const absl::flat_hash_set<std::string_view>& Runners() {
  static const auto* set = new absl::flat_hash_set<std::string_view>{
      // Shells, restricted shells and multi-call binaries that contain one.
      "sh", "bash", "dash", "zsh", "ksh", "ksh93", "mksh", "pdksh", "oksh", "lksh", "ash", "hush",
      "csh", "tcsh", "fish", "yash", "posh", "rc", "es", "elvish", "nu", "xonsh", "rbash", "rksh",
      "rzsh", "rsh", "busybox", "toybox",
      // Language interpreters and REPLs (version suffixes are stripped before the lookup).
      "python", "pypy", "perl", "ruby", "irb", "node", "nodejs", "deno", "bun", "lua", "luajit",
      "php", "php-cgi", "tclsh", "wish", "expect", "rscript", "R", "Rscript", "julia", "guile",
      "racket", "sbcl", "clisp", "ghci", "runghc", "erl", "escript", "elixir", "iex", "ocaml",
      "scala", "groovy", "kotlin", "java", "jshell", "jrunscript", "dotnet", "pwsh", "osqueryi",
      "awk", "gawk", "mawk", "nawk", "sed", "gsed", "m4", "dc", "sqlite3", "mysql", "psql",
      // Editors, pagers and viewers with a shell escape.
      "ed", "ex", "vi", "vim", "nvim", "view", "vimdiff", "rvim", "rview", "emacs", "nano", "pico",
      "joe", "mg", "less", "more", "most", "pg", "man", "info",
      // Wrappers that exec their arguments.
      "env", "nice", "nohup", "timeout", "setsid", "stdbuf", "ionice", "taskset", "chrt", "unshare",
      "nsenter", "flock", "chroot", "su", "sudo", "doas", "runuser", "setpriv", "capsh", "prlimit",
      "numactl", "cgexec", "systemd-run", "run-parts", "script", "watch", "time", "xargs",
      "parallel", "exec", "eval", "command", "builtin", "sg", "newgrp", "login", "sshpass",
      "faketime", "fakeroot", "proot", "bwrap", "firejail", "start-stop-daemon", "catchsegv",
      "valgrind", "strace", "ltrace", "gdb", "lldb", "perf", "setarch", "linux32", "linux64",
      "ld.so", "rlwrap", "tini", "dumb-init", "su-exec", "gosu", "chpst", "softlimit", "daemonize",
      // Programs with an option or sub-command that runs a program.
      "find", "tar", "zip", "rsync", "ssh", "scp", "sftp", "git", "make", "tmux", "screen", "socat",
      "nc", "ncat", "netcat", "crontab", "at", "batch", "podman", "docker", "ctr", "crictl",
      "kubectl", "split", "dpkg", "rpm", "apt", "apt-get", "pip", "npm", "npx", "cpan", "gem",
      "mail", "mutt", "ftp", "telnet", "tftp", "systemctl", "journalctl"};
  return *set;
}

bool IsDynamicLoader(std::string_view base) {
  // ld-linux-x86-64.so.2, ld-linux-aarch64.so.1, ld-linux.so.2, ld-musl-x86_64.so.1, ld.so,
  // ld64.so.2, ld-2.36.so
  return base.starts_with("ld-") || base.starts_with("ld.so") || base.starts_with("ld64.so");
}

bool IsVersionChar(char c) { return (c >= '0' && c <= '9') || c == '.'; }

}  // namespace

std::optional<ProgramClass> ParseProgramClass(std::string_view name) {
  if (name == "program-runners") {
    return ProgramClass::kProgramRunners;
  }
  return std::nullopt;
}

std::string_view ProgramClassName(ProgramClass c) {
  switch (c) {
    case ProgramClass::kProgramRunners:
      return "program-runners";
  }
  return "";
}

std::string_view ProgramBasename(std::string_view program) {
  const size_t slash = program.rfind('/');
  return slash == std::string_view::npos ? program : program.substr(slash + 1);
}

std::string StripVersionSuffix(std::string_view name) {
  std::string_view rest = name;
  // python3.7m, python3.11d: an ABI letter after the version.
  if (rest.size() >= 2 && (rest.back() == 'm' || rest.back() == 'd' || rest.back() == 'u') &&
      rest[rest.size() - 2] >= '0' && rest[rest.size() - 2] <= '9') {
    rest.remove_suffix(1);
  }
  size_t end = rest.size();
  while (end > 0 && IsVersionChar(rest[end - 1])) {
    --end;
  }
  if (end == rest.size() && rest.size() == name.size()) {
    return std::string(name);
  }
  if (end > 0 && (rest[end - 1] == '-' || rest[end - 1] == '_')) {
    --end;
  }
  if (end == 0) {
    return std::string(name);
  }
  return std::string(rest.substr(0, end));
}

bool InProgramClass(ProgramClass c, std::string_view program) {
  const std::string_view base = ProgramBasename(program);
  return InProgramClass(c, base, StripVersionSuffix(base));
}

bool InProgramClass(ProgramClass c, std::string_view base, std::string_view stripped) {
  switch (c) {
    case ProgramClass::kProgramRunners:
      if (base.empty()) {
        return false;
      }
      return IsDynamicLoader(base) || Runners().contains(base) || Runners().contains(stripped);
  }
  return false;
}

std::vector<std::string> ProgramClassMembers(ProgramClass c) {
  std::vector<std::string> out;
  switch (c) {
    case ProgramClass::kProgramRunners:
      for (std::string_view name : Runners()) {
        out.emplace_back(name);
      }
      break;
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace podgate::policy
