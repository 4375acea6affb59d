// Command mode: one command from request to result. The Session runs it (command_run.cc):
//
//   HandleCommand   the line is split (SplitCommandLine) and recorded (COMMAND_REQUEST);
//   OnDecision      policy decides, the decision is audited (acked in strict mode); an allowed
//                   command's checks and launch go on while audit stores the decision;
//   CheckRootThen   the root guard (session_open.h);
//   RunChecks       the decision's container checks (container_check.h), in order;
//   StartCommand    the command's journal entry is written while the launch wrapper
//                   (LaunchWrapperArgv) starts; the time limit is armed;
//   SendGoLocked    the wrapper reported the process's pid: the pid journaled (while audit's
//                   ack of the decision may still be awaited), then, once audit acknowledged
//                   the decision too, "go" (nothing of the user's runs before);
//   StopCommandLocked / StartStopLocked / RunStopStep
//                   a stop: SIGINT to exactly that process, SIGKILL after the grace period;
//   FinishCommandLocked
//                   the stream ended: COMMAND_RESULT, and `exit` (or `error`) to the client.
//
// Command is the state of one of them; CommandObserver (command_run.cc) receives its stream.
#pragma once

#include <openssl/evp.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/time/time.h"
#include "crypto/openssl_ptr.h"
#include "exec/container_probe.h"
#include "exec/kube.h"
#include "podgate/common/v1/common.pb.h"
#include "prometheus/gauge.h"
#include "runtime/ids.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

namespace podgate::exec {

namespace common = podgate::common::v1;

// A kept end (Limits.output_keep_end) is held in memory until its command ends: at most this
// many bytes, whatever the rule's output limit says.
inline constexpr int64_t kMaxKeepEndBytes = int64_t{8} << 20;

// A command from request to result.
struct Command {
  explicit Command(prometheus::Gauge* live) : live(live) { live->Increment(); }
  ~Command() { live->Decrement(); }
  Command(const Command&) = delete;
  Command& operator=(const Command&) = delete;
  prometheus::Gauge* const live;
  std::string id;
  // The id of its COMMAND_RESULT event (also its journal entry's name).
  const std::string result_event_id = runtime::EventId();
  // The command's own span in its session's trace (docs/architecture.md, "Trace context"):
  // its log lines carry it beside the session's trace_id.
  const std::string span_id = runtime::NewSpanId();
  // A write of its journal entry or launch line is under way (the journal's thread); its entry
  // exists (durable); its launch line holds the pid (durable); audit acknowledged its
  // COMMAND_RESULT.
  bool journal_pending = false;
  bool journaled = false;
  bool journal_launched = false;
  bool result_acked = false;
  std::string line;
  // The argv as asked (and decided on by policy).
  std::vector<std::string> argv;
  // The argv that runs: Decision.argv when policy set it, then with every path a
  // KIND_PATH_UNDER check resolved put in. It runs inside the launch wrapper, which is recorded
  // nowhere as the user's command.
  std::vector<std::string> run_argv;
  common::Decision decision;
  absl::Time start;
  absl::Duration time_limit;
  int64_t output_limit = 0;
  int64_t stdout_bytes = 0;
  int64_t stderr_bytes = 0;
  int64_t forwarded = 0;
  // The output reached output_limit: what follows is counted, not forwarded, until the command
  // ends or has written ExecOptions::output_overrun_bytes more (then it is stopped).
  bool over_limit = false;
  // Limits.output_keep_end: the last output_limit bytes are held here (channel, bytes), oldest
  // first, and sent when the command ends; nothing is forwarded while it runs.
  bool keep_end = false;
  std::deque<std::pair<int, std::string>> kept_end;
  int64_t kept_end_bytes = 0;
  crypto::EvpMdCtxPtr sha{EVP_MD_CTX_new()};
  std::string excerpt;
  bool excerpt_truncated = false;
  common::Termination stop_reason = common::TERMINATION_UNSPECIFIED;
  // StartCommand ran: an exec stream exists or is being opened (or an interrupt that came
  // before it ended the command there).
  bool launched = false;
  // The WebSocket upgrade succeeded.
  bool started = false;
  bool finished = false;
  std::unique_ptr<ExecHandle> handle;
  // The launch wrapper's report (pid and start time of the command's process).
  LaunchReport report;
  // Why the report was not understood (the command is then not run).
  std::string launch_error;
  // Audit acknowledged the (allowing) decision. The container checks and the launch wrapper's
  // stream start while audit stores it; "go" waits for this.
  bool decision_durable = false;
  // "go" was sent: the wrapper execs the argv, so a process runs as report.pid().
  bool go_sent = false;
  // The stop helper runs (or ran) against the process.
  bool stop_started = false;
  // The stop helper found the process leading its own process group: the SIGKILL follow-up
  // also reaches the group's survivors once the process itself has exited.
  bool group = false;
  // The process is known to be gone: its exit status arrived, it never ran, or the stop helper
  // found it gone or SIGKILLed it. Until then the time limit stays armed.
  bool gone = false;
  // Input that arrived before the process may run (bounded: reading pauses past it).
  std::string early_stdin;
  bool early_eof = false;
  runtime::TimerQueue::Id limit_timer = 0;
  // Armed until "go" is sent (LaunchTimedOutLocked); 0 while audit's deadline governs the wait
  // for "go" instead (the decision not yet durable).
  runtime::TimerQueue::Id launch_timer = 0;
  absl::Time upgrade_started;
  // When it was received, decided, and its stream upgraded (podgate_exec_command_start_seconds).
  absl::Time asked;
  absl::Time decided;
  absl::Time upgraded;
  // When it was ready for "go" (reported, and journaled) but audit had not yet acknowledged its
  // decision (podgate_exec_command_start_seconds{stage="audit_wait"}); unset if it never waited.
  absl::Time audit_wait_since;
};

}  // namespace podgate::exec
