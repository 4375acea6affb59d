// Runs a short exec on exec's own behalf (the root guard's `id -u`, the checks, the stop
// helper) and collects its output, with a deadline.
#pragma once

#include <functional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "exec/kube.h"
#include "runtime/timer.h"

namespace podgate::exec {

struct ProbeOutput {
  int exit_code = 0;
  std::string stdout_text;
  std::string stderr_text;
};

// Starts `spec` (stdin off, no TTY) and calls `done` once with its output (each stream capped
// at 64 KiB) and exit code, or an error: the stream failed, or DEADLINE_EXCEEDED.
void RunProbe(KubeApi* kube, runtime::TimerQueue* timers, const ExecSpec& spec,
              absl::Duration timeout, std::function<void(absl::StatusOr<ProbeOutput>)> done);

}  // namespace podgate::exec
