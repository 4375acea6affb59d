// The checks an allowed decision asks exec to make in the container before it runs a command
// (common.v1.ContainerCheck): what policy cannot see in the argv. Each check is one probe
// (container_probe.h) whose answer is judged here; the session runs them in order and refuses
// the command on the first that does not pass (fail closed).
#pragma once

#include <string>
#include <variant>
#include <vector>

#include "absl/status/statusor.h"
#include "exec/probe_run.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::exec {

// The argv exec runs for an allowed decision: Decision.argv (the rule's fixed arguments put in)
// when set, else the argv as asked.
std::vector<std::string> ArgvToRun(const podgate::common::v1::Decision& decision,
                                   const std::vector<std::string>& asked);

// The `kind` label of podgate_exec_container_checks_total: jvm_pid, path_under, unspecified.
const char* CheckKindLabel(const podgate::common::v1::ContainerCheck& check);

// How one check ended.
struct CheckOutcome {
  enum class Result {
    kPassed,   // the command may go on (with `argv`)
    kRefused,  // the check ran and said no, or its input was refused before any probe
    kError,    // the check could not be made: the command is refused all the same
  };
  Result result = Result::kError;
  // For kRefused and kError: a sentence for the user and the audit trail.
  std::string reason;
  // For kPassed: the argv to run from here on (KIND_PATH_UNDER puts the resolved path in).
  std::vector<std::string> argv;
};

// The `result` label: passed, refused, error.
const char* CheckResultLabel(CheckOutcome::Result result);

// Before the probe: the probe's argv, or the outcome when the check ends without one (an
// unknown kind, arg_index outside `argv`, a pid that is not a strict pid). `where` names the
// container for sentences, e.g. "orders-7d4b9c/app".
std::variant<std::vector<std::string>, CheckOutcome> PrepareCheck(
    const podgate::common::v1::ContainerCheck& check, const std::vector<std::string>& argv,
    const std::string& where);

// Judges the probe's answer (or its failure: a stream error, a timeout).
CheckOutcome JudgeCheck(const podgate::common::v1::ContainerCheck& check,
                        const std::vector<std::string>& argv,
                        const absl::StatusOr<ProbeOutput>& answer, const std::string& where);

}  // namespace podgate::exec
