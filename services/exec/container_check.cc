#include "exec/container_check.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "exec/container_probe.h"
#include "policy/text_checks.h"

namespace podgate::exec {

namespace common = podgate::common::v1;

namespace {

using Result = CheckOutcome::Result;

CheckOutcome Outcome(Result result, std::string reason) {
  CheckOutcome o;
  o.result = result;
  o.reason = std::move(reason);
  return o;
}

CheckOutcome Passed(std::vector<std::string> argv) {
  CheckOutcome o;
  o.result = Result::kPassed;
  o.argv = std::move(argv);
  return o;
}

// The program's name as a user knows it: "jstack" for "/usr/bin/jstack".
std::string ProgramName(const std::vector<std::string>& argv) {
  const std::string& p = argv.empty() ? std::string() : argv[0];
  const size_t slash = p.rfind('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// The prefixes as policy sent them, each normalised (they should already be); a prefix that is
// not an absolute path without ".." is dropped, which can only refuse more.
std::vector<std::string> Prefixes(const common::ContainerCheck& check) {
  std::vector<std::string> out;
  for (const std::string& p : check.prefixes()) {
    if (std::optional<std::string> n = policy::NormaliseAbsolutePath(p)) {
      out.push_back(*n);
    }
  }
  return out;
}

CheckOutcome JudgeJvm(const std::vector<std::string>& argv, const std::string& pid,
                      const absl::StatusOr<ProbeOutput>& answer, const std::string& where) {
  const std::string program = ProgramName(argv);
  absl::StatusOr<JvmProbeVerdict> verdict =
      answer.ok() ? ParseJvmProbe(pid, answer->exit_code, answer->stdout_text) : answer.status();
  if (!verdict.ok()) {
    return Outcome(Result::kError,
                   absl::StrCat("whether pid ", pid, " in ", where,
                                " is a Java virtual machine could not be checked (",
                                verdict.status().message(), "), so ", program, " was not run"));
  }
  switch (*verdict) {
    case JvmProbeVerdict::kJvm:
      return Passed(argv);
    case JvmProbeVerdict::kNotJvm:
      return Outcome(Result::kRefused,
                     absl::StrCat("pid ", pid, " is not a Java virtual machine in ", where, " (",
                                  program, " would kill it); run jps to list JVMs"));
    case JvmProbeVerdict::kNoProcess:
      return Outcome(Result::kRefused, absl::StrCat("there is no process ", pid, " in ", where,
                                                    "; run jps to list JVMs"));
    case JvmProbeVerdict::kThread:
      return Outcome(Result::kRefused, absl::StrCat(pid, " is a thread id, not a process id, in ",
                                                    where, "; run jps to list JVMs"));
    case JvmProbeVerdict::kUnreadable:
      return Outcome(Result::kRefused,
                     absl::StrCat("pid ", pid, " in ", where,
                                  " cannot be inspected (it belongs to another user, and only its "
                                  "own user could attach to it, or it is exiting), so ",
                                  program, " was not run"));
    case JvmProbeVerdict::kNoQuitHandler:
      return Outcome(Result::kRefused,
                     absl::StrCat("pid ", pid, " in ", where,
                                  " is a Java virtual machine that does not catch SIGQUIT "
                                  "(started with -Xrs, or still starting), so ",
                                  program, " would kill it"));
  }
  return Outcome(Result::kError, "unknown JVM check verdict");
}

CheckOutcome JudgePath(const common::ContainerCheck& check, const std::vector<std::string>& argv,
                       const absl::StatusOr<ProbeOutput>& answer, const std::string& where) {
  const std::string& asked = argv[check.arg_index()];
  const std::string program = ProgramName(argv);
  absl::StatusOr<std::string> resolved =
      answer.ok() ? ParsePathProbe(answer->exit_code, answer->stdout_text) : answer.status();
  if (resolved.status().code() == absl::StatusCode::kNotFound) {
    return Outcome(Result::kRefused, absl::StrCat(asked, " does not exist in ", where,
                                                  " (or the container's user cannot reach it)"));
  }
  if (!resolved.ok()) {
    return Outcome(Result::kError,
                   absl::StrCat("where ", asked, " leads in ", where, " could not be checked (",
                                resolved.status().message(), "), so ", program, " was not run"));
  }
  const std::vector<std::string> prefixes = Prefixes(check);
  for (const std::string& prefix : prefixes) {
    if (policy::PathIsUnder(*resolved, prefix)) {
      std::vector<std::string> out = argv;
      out[check.arg_index()] = *resolved;
      return Passed(std::move(out));
    }
  }
  if (prefixes.empty()) {
    return Outcome(Result::kError, absl::StrCat("the rule gives no valid prefix for ", asked,
                                                ", so ", program, " was not run"));
  }
  const std::string target =
      *resolved == asked ? asked : absl::StrCat(asked, " resolves to ", *resolved);
  return Outcome(Result::kRefused, absl::StrCat(target, " in ", where, ", which is not under ",
                                                absl::StrJoin(prefixes, " or ")));
}

}  // namespace

std::vector<std::string> ArgvToRun(const common::Decision& decision,
                                   const std::vector<std::string>& asked) {
  if (decision.argv().empty()) {
    return asked;
  }
  return {decision.argv().begin(), decision.argv().end()};
}

const char* CheckKindLabel(const common::ContainerCheck& check) {
  switch (check.kind()) {
    case common::ContainerCheck::KIND_JVM_PID:
      return "jvm_pid";
    case common::ContainerCheck::KIND_PATH_UNDER:
      return "path_under";
    default:
      return "unspecified";
  }
}

const char* CheckResultLabel(CheckOutcome::Result result) {
  switch (result) {
    case Result::kPassed:
      return "passed";
    case Result::kRefused:
      return "refused";
    default:
      return "error";
  }
}

std::variant<std::vector<std::string>, CheckOutcome> PrepareCheck(
    const common::ContainerCheck& check, const std::vector<std::string>& argv,
    const std::string& where) {
  const std::string program = ProgramName(argv);
  if (check.kind() != common::ContainerCheck::KIND_JVM_PID &&
      check.kind() != common::ContainerCheck::KIND_PATH_UNDER) {
    return Outcome(Result::kError,
                   absl::StrCat("the rule asks for a check in the container that exec does not "
                                "know (kind ",
                                static_cast<int>(check.kind()), "), so ", program, " was not run"));
  }
  if (check.arg_index() >= argv.size()) {
    return Outcome(
        Result::kError,
        absl::StrCat("the rule asks to check argument ", check.arg_index(), " of a command with ",
                     argv.size(), " arguments, so ", program, " was not run"));
  }
  const std::string& arg = argv[check.arg_index()];
  if (check.kind() == common::ContainerCheck::KIND_JVM_PID) {
    absl::StatusOr<std::vector<std::string>> probe = JvmProbeArgv(arg);
    if (!probe.ok()) {
      return Outcome(Result::kRefused, absl::StrCat(probe.status().message(), ", so ", program,
                                                    " was not run in ", where));
    }
    return *std::move(probe);
  }
  if (arg.empty()) {
    return Outcome(Result::kRefused,
                   absl::StrCat("an empty path is not a file, so ", program, " was not run"));
  }
  return PathProbeArgv(arg);
}

CheckOutcome JudgeCheck(const common::ContainerCheck& check, const std::vector<std::string>& argv,
                        const absl::StatusOr<ProbeOutput>& answer, const std::string& where) {
  if (check.arg_index() >= argv.size()) {
    return Outcome(Result::kError, "the check's argument is out of range");
  }
  switch (check.kind()) {
    case common::ContainerCheck::KIND_JVM_PID:
      return JudgeJvm(argv, argv[check.arg_index()], answer, where);
    case common::ContainerCheck::KIND_PATH_UNDER:
      return JudgePath(check, argv, answer, where);
    default:
      return Outcome(Result::kError, "unknown check kind");
  }
}

}  // namespace podgate::exec
