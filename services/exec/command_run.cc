// Command mode: the Session's steps for one command (see command_run.h), and the observer of its
// Kubernetes stream.
#include "exec/command_run.h"

#include <algorithm>
#include <variant>

#include "absl/hash/hash.h"
#include "absl/strings/str_cat.h"
#include "exec/command_line.h"
#include "exec/container_check.h"
#include "exec/policy_stream.h"
#include "exec/probe_run.h"
#include "exec/session_reactor.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "wire/enum_label.h"
#include "wire/time.h"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

// Receives one command's stream. Owned by the stream; refers to the session and the command
// weakly, so a finished session is freed even while a stream winds down.
class Session::CommandObserver final : public ExecObserver {
 public:
  CommandObserver(std::weak_ptr<Session> session, std::weak_ptr<Command> cmd)
      : session_(std::move(session)), cmd_(std::move(cmd)) {}

  void OnStarted(const std::string& protocol) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    s->hub_->metrics()->protocol_total.Add({{"protocol", protocol}}).Increment();
    std::lock_guard<std::mutex> lock(s->mu_);
    cmd->started = true;
    cmd->upgraded = absl::Now();
    const double upgrade = absl::ToDoubleSeconds(cmd->upgraded - cmd->upgrade_started);
    s->hub_->metrics()->upgrade_latency.Observe(upgrade);
    s->hub_->metrics()->CommandStart(ExecMetrics::Stage::kUpgrade).Observe(upgrade);
  }

  void OnOutput(int channel, std::string data, std::function<void()> resume) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      resume();
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    Command& c = *cmd;
    if (c.report.status() != LaunchReport::Status::kReported) {
      // The first line of stderr is the launch wrapper's report, never the command's output;
      // nothing may come before it.
      if (c.report.status() == LaunchReport::Status::kInvalid || !c.launch_error.empty()) {
        resume();
        return;
      }
      std::string rest;
      const LaunchReport::Status st =
          channel == 2 ? c.report.Feed(data, &rest) : LaunchReport::Status::kInvalid;
      if (st == LaunchReport::Status::kInvalid) {
        s->LaunchFailedLocked(cmd, channel == 2
                                       ? "its process could not be identified (its launch "
                                         "report was malformed), so it could not have been "
                                         "stopped"
                                       : "its process could not be identified (it wrote output "
                                         "before its launch report), so it could not have been "
                                         "stopped");
        resume();
        return;
      }
      if (st == LaunchReport::Status::kPending) {
        resume();
        return;
      }
      s->OnLaunchReportedLocked(cmd);
      data = std::move(rest);
      if (data.empty()) {
        resume();
        return;
      }
    }
    (channel == 2 ? c.stderr_bytes : c.stdout_bytes) += static_cast<int64_t>(data.size());
    if (c.finished || s->state_ == State::kClosed ||
        c.stop_reason != common::TERMINATION_UNSPECIFIED) {
      resume();  // drain and drop: the command is being stopped
      return;
    }
    if (c.keep_end) {
      // Held until the command ends, the oldest bytes dropped beyond the limit.
      c.kept_end_bytes += static_cast<int64_t>(data.size());
      c.kept_end.emplace_back(channel, std::move(data));
      while (c.kept_end_bytes > c.output_limit) {
        const int64_t excess = c.kept_end_bytes - c.output_limit;
        std::string& front = c.kept_end.front().second;
        c.over_limit = true;
        if (static_cast<int64_t>(front.size()) <= excess) {
          c.kept_end_bytes -= static_cast<int64_t>(front.size());
          c.kept_end.pop_front();
        } else {
          front.erase(0, static_cast<size_t>(excess));
          c.kept_end_bytes -= excess;
        }
      }
      if (c.stdout_bytes + c.stderr_bytes - c.output_limit > s->opts_.output_overrun_bytes) {
        s->StopCommandLocked(common::TERMINATION_OUTPUT_LIMIT);
      }
      resume();
      return;
    }
    if (c.over_limit) {
      // Past the limit: counted above, never forwarded; stopped once it overruns.
      if (c.stdout_bytes + c.stderr_bytes - c.forwarded > s->opts_.output_overrun_bytes) {
        s->StopCommandLocked(common::TERMINATION_OUTPUT_LIMIT);
      }
      resume();
      return;
    }
    if (c.forwarded + static_cast<int64_t>(data.size()) > c.output_limit) {
      data.resize(static_cast<size_t>(std::max<int64_t>(0, c.output_limit - c.forwarded)));
      c.over_limit = true;
      if (s->opts_.output_overrun_bytes == 0) {
        s->StopCommandLocked(common::TERMINATION_OUTPUT_LIMIT);
      }
    }
    if (data.empty()) {
      resume();
      return;
    }
    // Backpressure: past the session's output window the pod's stream resumes only once the
    // queue towards the client has drained (SendOutputLocked).
    s->ForwardOutputLocked(c, channel, std::move(data), std::move(resume));
  }

  void OnExit(ExecResult result) override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    s->FinishCommandLocked(cmd, result);
  }

  void OnWritable() override {
    std::shared_ptr<Session> s = session_.lock();
    std::shared_ptr<Command> cmd = cmd_.lock();
    if (s == nullptr || cmd == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    if (s->running_ == cmd) {
      s->ResumeReadsLocked();
    }
  }

 private:
  const std::weak_ptr<Session> session_;
  const std::weak_ptr<Command> cmd_;
};

void Session::DenyLocked(const std::string& command_id, const std::string& rule,
                         const std::string& reason, const common::Decision* decision) {
  pb::SessionResponse msg;
  pb::CommandDenied* denied = msg.mutable_denied();
  denied->set_command_id(command_id);
  denied->set_rule(rule);
  denied->set_reason(reason);
  if (decision != nullptr) {
    // What helps the user recover, as policy gave it.
    denied->set_rule_description(decision->rule_description());
    denied->set_contact(decision->contact());
    denied->set_request_url(decision->request_url());
  }
  SendLocked(std::move(msg));
}

void Session::RecordRefusalLocked(const std::string& command_id, const std::string& line,
                                  const std::string& rule, const std::string& reason) {
  // Every refusal is one DECISION record, so `rule=<rule> verdict=deny` queries find it.
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.set_command_id(command_id);
  e.mutable_decision()->set_verdict(common::VERDICT_DENY);
  e.mutable_decision()->set_rule(rule);
  e.mutable_decision()->set_reason(reason);
  e.mutable_command_request()->set_line(line.substr(0, 16384));
  hub_->audit()->Record(std::move(e), [](absl::Status) {});
}

void Session::SendCommandErrorLocked(const std::string& command_id, grpc::StatusCode code,
                                     const std::string& message) {
  pb::SessionResponse msg;
  msg.mutable_error()->set_command_id(command_id);
  msg.mutable_error()->mutable_status()->set_code(static_cast<int>(code));
  msg.mutable_error()->mutable_status()->set_message(message);
  SendLocked(std::move(msg));
}

void Session::HandleCommand(const pb::RunCommand& run) {
  std::unique_lock<std::mutex> lock(mu_);
  const std::string id =
      run.command_id().empty() ? runtime::RandomId() : run.command_id().substr(0, 64);
  if (state_ != State::kReady || mode_ != common::SESSION_MODE_COMMAND) {
    SendCommandErrorLocked(
        id, grpc::StatusCode::FAILED_PRECONDITION,
        state_ != State::kReady ? "the session is not ready" : "commands need command mode");
    return;
  }
  if (used_ids_.size() >= static_cast<size_t>(hub_->options().max_commands_per_session)) {
    // What a session remembers is bounded: past its command budget it must be reopened.
    const std::string why = absl::StrCat(
        "this session has asked for its limit of ", hub_->options().max_commands_per_session,
        " commands (--max_commands_per_session); open a new session to go on");
    RecordRefusalLocked(id, run.line(), "command-limit", why);
    hub_->metrics()->commands_total.Add({{"decision", "error"}, {"result", "refused"}}).Increment();
    SendCommandErrorLocked(id, grpc::StatusCode::RESOURCE_EXHAUSTED, why);
    return;
  }
  if (!used_ids_.insert(absl::HashOf(id)).second) {
    // Ids are unique per session: a reused one would make two commands one in audit.
    const std::string why = absl::StrCat(
        "command id \"", id,
        "\" was already used in this session; ids are unique per session (send none and exec "
        "assigns one)");
    RecordRefusalLocked(id, run.line(), "duplicate-id", why);
    SendCommandErrorLocked(id, grpc::StatusCode::ALREADY_EXISTS, why);
    return;
  }
  if (running_ != nullptr) {
    constexpr char kBusy[] = "a command is running; interrupt it or wait for its exit";
    RecordRefusalLocked(id, run.line(), "busy", kBusy);
    SendCommandErrorLocked(id, grpc::StatusCode::FAILED_PRECONDITION, kBusy);
    return;
  }
  if (hub_->audit()->saturated()) {
    // Records wait for audit's ack and are never dropped; past the client's bound, no new
    // command starts (fail closed) rather than a record being forgotten.
    hub_->metrics()->commands_total.Add({{"decision", "error"}, {"result", "refused"}}).Increment();
    SendCommandErrorLocked(
        id, grpc::StatusCode::UNAVAILABLE,
        absl::StrCat("audit has ", hub_->audit()->pending(),
                     " records not yet acknowledged, so no command runs until they are durable"));
    return;
  }
  auto cmd = std::make_shared<Command>(&hub_->metrics()->live_commands);
  cmd->asked = absl::Now();
  cmd->id = id;
  cmd->line = run.line().substr(0, 16384);
  running_ = cmd;
  ++commands_;
  if (!watchers_.empty()) {
    // Those who joined see what the owner asked for before its answer (denied, or output).
    pb::SessionResponse started;
    started.mutable_command()->set_command_id(id);
    started.mutable_command()->set_line(cmd->line);
    announced_command_ = id;
    FanOutLocked(started, 0);
  }

  common::AuditEvent request = BaseEventLocked(common::EVENT_KIND_COMMAND_REQUEST);
  request.set_command_id(id);
  request.mutable_command_request()->set_line(cmd->line);
  absl::StatusOr<std::vector<std::string>> argv = SplitCommandLine(run.line());
  if (!argv.ok()) {
    request.mutable_command_request()->set_parse_error(std::string(argv.status().message()));
    hub_->audit()->Record(std::move(request), [](absl::Status) {});
    RecordRefusalLocked(id, cmd->line, "parser", std::string(argv.status().message()));
    hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
    ClearRunningLocked();
    DenyLocked(id, "parser", std::string(argv.status().message()));
    return;
  }
  cmd->argv = *argv;
  for (const std::string& a : cmd->argv) {
    request.mutable_command_request()->add_argv(a);
  }
  hub_->audit()->Record(std::move(request), [](absl::Status) {});

  podgate::policy::v1::AuthorizeRequest ask;
  *ask.mutable_principal() = principal_;
  *ask.mutable_target() = target_;
  for (const std::string& a : cmd->argv) {
    ask.mutable_command()->add_argv(a);
  }
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  policy_->Ask(std::move(ask), opts_.policy_timeout,
               [self, cmd](absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
                 self->OnDecision(cmd, std::move(answer));
               });
}

void Session::OnDecision(std::shared_ptr<Command> cmd,
                         absl::StatusOr<podgate::policy::v1::AuthorizeResponse> answer) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  cmd->decided = absl::Now();
  hub_->metrics()
      ->CommandStart(ExecMetrics::Stage::kPolicy)
      .Observe(absl::ToDoubleSeconds(cmd->decided - cmd->asked));
  if (!answer.ok()) {
    hub_->metrics()
        ->policy_failures_total.Add({{"reason", absl::StatusCodeToString(answer.status().code())}})
        .Increment();
    cmd->decision.set_verdict(common::VERDICT_DENY);
    cmd->decision.set_rule("policy-unavailable");
    cmd->decision.set_reason(absl::StrCat("policy could not be asked, so the command is refused: ",
                                          answer.status().message()));
  } else {
    cmd->decision = answer->decision();
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_DECISION);
  e.set_command_id(cmd->id);
  *e.mutable_decision() = cmd->decision;
  e.mutable_command_request()->set_line(cmd->line);
  for (const std::string& a : cmd->argv) {
    e.mutable_command_request()->add_argv(a);
  }
  std::shared_ptr<Session> self = shared_from_this();
  const bool allow = cmd->decision.verdict() == common::VERDICT_ALLOW;
  lock.unlock();
  Audit(
      std::move(e),
      [self, cmd, allow] {
        std::unique_lock<std::mutex> lock(self->mu_);
        if (self->state_ == State::kClosed || self->running_ != cmd) {
          return;
        }
        self->hub_->metrics()
            ->CommandStart(ExecMetrics::Stage::kAudit)
            .Observe(absl::ToDoubleSeconds(absl::Now() - cmd->decided));
        if (!allow) {
          self->hub_->metrics()
              ->commands_total.Add({{"decision", "deny"}, {"result", "refused"}})
              .Increment();
          self->ClearRunningLocked();
          self->DenyLocked(cmd->id, cmd->decision.rule(), cmd->decision.reason(), &cmd->decision);
          return;
        }
        cmd->decision_durable = true;
        if (cmd->handle != nullptr && cmd->report.status() == LaunchReport::Status::kReported) {
          self->SendGoLocked(cmd);  // the wrapper reported first
        }
      },
      [self, cmd](absl::Status s) {
        std::lock_guard<std::mutex> lock(self->mu_);
        if (self->running_ != cmd) {
          return;
        }
        if (cmd->launched && !cmd->finished) {
          // Its checks and launch went on meanwhile; "go" was never sent, so the wrapper ran
          // nothing of the user's. Closing the stream ends it (EOF on its stdin); this is the
          // command's only end.
          cmd->finished = true;
          cmd->gone = true;
          self->DropUnsentJournalLocked(cmd);
          self->hub_->timers()->Cancel(cmd->launch_timer);
          self->hub_->timers()->Cancel(cmd->limit_timer);
          if (cmd->handle != nullptr) {
            cmd->handle->Close();
          }
        }
        self->ClearRunningLocked();
        self->hub_->metrics()
            ->commands_total.Add({{"decision", "error"}, {"result", "refused"}})
            .Increment();
        // The decision keeps being sent until audit acks it, and it may say allow: the trail
        // must also say the command never ran.
        common::AuditEvent not_run = self->BaseEventLocked(common::EVENT_KIND_COMMAND_RESULT);
        not_run.set_id(cmd->result_event_id);
        not_run.set_command_id(cmd->id);
        not_run.mutable_command_result()->set_line(cmd->line);
        not_run.mutable_command_result()->set_termination(common::TERMINATION_ERROR);
        not_run.mutable_command_result()->set_error(
            absl::StrCat("not run: audit did not acknowledge the decision in time (strict mode): ",
                         s.message()));
        self->hub_->audit()->Record(std::move(not_run), [](absl::Status) {});
        self->SendCommandErrorLocked(
            cmd->id, grpc::StatusCode::UNAVAILABLE,
            absl::StrCat("audit is unavailable, so the command was not run (strict mode): ",
                         s.message()));
      });
  if (allow) {
    // The checks and the launch need not wait for audit: nothing of the user's runs before
    // "go", and "go" waits for the decision to be durable (SendGoLocked).
    StartChecks(cmd);
  }
}

void Session::StartChecks(std::shared_ptr<Command> cmd) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (state_ == State::kClosed || running_ != cmd) {
      return;  // audit refused the decision already
    }
  }
  std::shared_ptr<Session> self = shared_from_this();
  CheckRootThen(cmd->decision.root_allowed(), [self, cmd](absl::Status s) {
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(self->mu_);
      if (self->running_ != cmd) {
        return;
      }
      // The probe itself may have been refused to the user by Kubernetes RBAC.
      self->RefuseCommandLocked(cmd, IsKubernetesRbacDenial(s) ? "kubernetes-rbac" : "root-guard",
                                std::string(s.message()));
      return;
    }
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      cmd->run_argv = ArgvToRun(cmd->decision, cmd->argv);
    }
    self->RunChecks(cmd, 0);
  });
}

// Runs the decision's checks in the container from `index` on, one probe at a time and in
// order; each may change the argv to run. The first that does not pass refuses the command.
void Session::RunChecks(std::shared_ptr<Command> cmd, int index) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  if (index >= cmd->decision.checks_size() || cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    lock.unlock();
    StartCommand(cmd);
    return;
  }
  const common::ContainerCheck& check = cmd->decision.checks(index);
  const std::string where = absl::StrCat(target_.pod(), "/", target_.container());
  std::variant<std::vector<std::string>, CheckOutcome> prepared =
      PrepareCheck(check, cmd->run_argv, where);
  if (auto* outcome = std::get_if<CheckOutcome>(&prepared)) {
    RefuseByCheckLocked(cmd, check, *outcome);
    return;
  }
  ExecSpec spec = TargetSpecLocked();
  spec.argv = std::get<std::vector<std::string>>(std::move(prepared));
  std::shared_ptr<Session> self = shared_from_this();
  lock.unlock();
  RunProbe(cluster_->kube(), hub_->timers(), spec, opts_.probe_timeout,
           [self, cmd, index, where](absl::StatusOr<ProbeOutput> answer) {
             {
               std::lock_guard<std::mutex> lock(self->mu_);
               if (self->state_ == State::kClosed || self->running_ != cmd) {
                 return;
               }
               if (!answer.ok() && IsKubernetesRbacDenial(answer.status())) {
                 self->RefuseCommandLocked(cmd, "kubernetes-rbac",
                                           std::string(answer.status().message()));
                 return;
               }
               const common::ContainerCheck& check = cmd->decision.checks(index);
               CheckOutcome outcome = JudgeCheck(check, cmd->run_argv, answer, where);
               if (outcome.result != CheckOutcome::Result::kPassed) {
                 self->RefuseByCheckLocked(cmd, check, outcome);
                 return;
               }
               self->hub_->metrics()
                   ->container_checks_total
                   .Add({{"kind", CheckKindLabel(check)}, {"result", "passed"}})
                   .Increment();
               cmd->run_argv = std::move(outcome.argv);
             }
             self->RunChecks(cmd, index + 1);
           });
}

// A step after policy's allow refused the command (rule root-guard, kubernetes-rbac, ...):
// recorded as a second decision (deny, that rule) of the same policy version, and `denied` to
// the client. Nothing of the command ran.
void Session::RefuseCommandLocked(const std::shared_ptr<Command>& cmd, const std::string& rule,
                                  const std::string& reason) {
  hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
  if (running_ == cmd) {
    ClearRunningLocked();
  }
  common::AuditEvent denial = BaseEventLocked(common::EVENT_KIND_DECISION);
  denial.set_command_id(cmd->id);
  denial.mutable_decision()->set_verdict(common::VERDICT_DENY);
  denial.mutable_decision()->set_rule(rule);
  denial.mutable_decision()->set_reason(reason);
  denial.mutable_decision()->set_policy_version(cmd->decision.policy_version());
  hub_->audit()->Record(std::move(denial), [](absl::Status) {});
  if (rule == "kubernetes-rbac") {
    hub_->metrics()->kubernetes_denials_total.Add({{"at", "command"}}).Increment();
    log::Info("kubernetes refused the user", {{"session_id", session_id_},
                                              {"trace_id", trace_.trace_id},
                                              {"command_id", cmd->id},
                                              {"span_id", cmd->span_id},
                                              {"reason", reason}});
  }
  if (state_ != State::kClosed) {
    DenyLocked(cmd->id, rule, reason);
  }
}

// A check refused the command: recorded like the root guard's refusal, as a second decision
// (deny, rule container-check) of the same policy version.
void Session::RefuseByCheckLocked(const std::shared_ptr<Command>& cmd,
                                  const common::ContainerCheck& check,
                                  const CheckOutcome& outcome) {
  hub_->metrics()
      ->container_checks_total
      .Add({{"kind", CheckKindLabel(check)}, {"result", CheckResultLabel(outcome.result)}})
      .Increment();
  hub_->metrics()->commands_total.Add({{"decision", "deny"}, {"result", "refused"}}).Increment();
  ClearRunningLocked();
  common::AuditEvent denial = BaseEventLocked(common::EVENT_KIND_DECISION);
  denial.set_command_id(cmd->id);
  denial.mutable_decision()->set_verdict(common::VERDICT_DENY);
  denial.mutable_decision()->set_rule("container-check");
  denial.mutable_decision()->set_reason(outcome.reason);
  denial.mutable_decision()->set_policy_version(cmd->decision.policy_version());
  hub_->audit()->Record(std::move(denial), [](absl::Status) {});
  log::Info("container check refused", {{"session_id", session_id_},
                                        {"trace_id", trace_.trace_id},
                                        {"command_id", cmd->id},
                                        {"span_id", cmd->span_id},
                                        {"kind", CheckKindLabel(check)},
                                        {"result", CheckResultLabel(outcome.result)}});
  DenyLocked(cmd->id, "container-check", outcome.reason);
}

void Session::StartCommand(std::shared_ptr<Command> cmd) {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ == State::kClosed || running_ != cmd) {
    return;
  }
  cmd->launched = true;
  cmd->start = absl::Now();
  cmd->upgrade_started = cmd->start;
  hub_->metrics()
      ->CommandStart(ExecMetrics::Stage::kChecks)
      .Observe(absl::ToDoubleSeconds(cmd->start - cmd->decided));
  EVP_DigestInit_ex(cmd->sha.get(), EVP_sha256(), nullptr);
  if (cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    // Interrupted while it was being decided or checked: it never reaches the pod.
    FinishCommandLocked(cmd, ExecResult{});
    return;
  }
  const common::Limits& limits = cmd->decision.limits();
  cmd->time_limit =
      limits.has_time_limit() && wire::FromProtoDuration(limits.time_limit()) > absl::ZeroDuration()
          ? wire::FromProtoDuration(limits.time_limit())
          : opts_.default_time_limit;
  cmd->output_limit = limits.output_limit_bytes() > 0 ? limits.output_limit_bytes()
                                                      : opts_.default_output_limit_bytes;
  cmd->keep_end = limits.output_keep_end();
  if (cmd->keep_end) {
    // Held in memory until the command ends: bounded whatever the limit says.
    cmd->output_limit = std::min(cmd->output_limit, kMaxKeepEndBytes);
  }
  ExecSpec spec = TargetSpecLocked();
  // The launch wrapper reports the process's pid before it execs the argv (see
  // LaunchWrapperArgv): that is how a stop reaches exactly this command's process.
  spec.argv = LaunchWrapperArgv(cmd->run_argv);
  spec.stdin = true;
  auto observer = std::make_shared<CommandObserver>(weak_from_this(), cmd);
  // The time limit holds whatever happens to the stream: the timer is cancelled only once the
  // process is known to be gone, and it holds the session until then.
  std::shared_ptr<Session> self = shared_from_this();
  cmd->limit_timer = hub_->timers()->After(cmd->time_limit, [self, cmd] {
    std::lock_guard<std::mutex> lock(self->mu_);
    if (!cmd->finished) {
      if (self->running_ == cmd) {
        self->StopCommandLocked(common::TERMINATION_TIME_LIMIT);
      }
    } else if (!cmd->gone) {
      log::Warn("time limit reached by a process whose stream has ended: stopping it",
                {{"session_id", self->session_id_},
                 {"trace_id", self->trace_.trace_id},
                 {"command_id", cmd->id},
                 {"span_id", cmd->span_id}});
      self->StartStopLocked(cmd);
    }
  });
  ArmLaunchTimerLocked(cmd);
  log::Info("command start", {{"session_id", session_id_},
                              {"trace_id", trace_.trace_id},
                              {"command_id", cmd->id},
                              {"span_id", cmd->span_id},
                              {"rule", cmd->decision.rule()}});
  StartJournalLocked(cmd);
  lock.unlock();
  std::unique_ptr<ExecHandle> handle = cluster_->kube()->Exec(spec, std::move(observer));
  lock.lock();
  if (!cmd->finished) {
    cmd->handle = std::move(handle);
    if (!cmd->launch_error.empty() ||
        (!cmd->go_sent && cmd->stop_reason != common::TERMINATION_UNSPECIFIED)) {
      // Not identified, or stopped before it ran: close the stream, and the wrapper exits
      // without running the argv.
      cmd->handle->Close();
    } else if (cmd->report.status() == LaunchReport::Status::kReported && !cmd->go_sent) {
      SendGoLocked(cmd);  // the report came before the handle
    }
  }
}

ExecSpec Session::TargetSpecLocked() const {
  ExecSpec spec;
  spec.as = kube_as_;
  spec.namespace_name = target_.namespace_();
  spec.pod = target_.pod();
  spec.container = target_.container();
  return spec;
}

void Session::OnLaunchReportedLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->upgraded != absl::Time()) {
    hub_->metrics()
        ->CommandStart(ExecMetrics::Stage::kLaunch)
        .Observe(absl::ToDoubleSeconds(absl::Now() - cmd->upgraded));
  }
  if (cmd->handle != nullptr) {
    SendGoLocked(cmd);
  }
  // else StartCommand sends it once the handle exists.
}

void Session::SendGoLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->finished || cmd->go_sent) {
    DropUnsentJournalLocked(cmd);
    return;
  }
  if (cmd->stop_reason != common::TERMINATION_UNSPECIFIED || state_ == State::kClosed) {
    // Stopped while it was being identified (or journaled): it never runs.
    cmd->handle->Close();
    DropUnsentJournalLocked(cmd);
    return;
  }
  if (Journal* journal = hub_->journal(); journal != nullptr && !cmd->journal_launched) {
    // The pid is journaled whether or not audit has acknowledged the decision yet, so that
    // its fdatasync overlaps audit's: a crash of exec before "go" leaves an entry whose
    // process (the wrapper, waiting for "go") the next exec stops, as for a crash between the
    // pid's fdatasync and "go".
    if (cmd->journal_pending || !cmd->journaled) {
      // Its entry is being written (the completion sends "go"), or could not be (the command
      // ends as not run).
      return;
    }
    // The pid durable before the process may run: an exec that dies now leaves the entry
    // behind, and the next one stops the process and records what this one could not. The
    // entry itself was written while the command was launched; this rewrites its first line
    // in place (one fdatasync), on the journal's thread: this thread (the Kubernetes client's,
    // or gRPC's) serves other sessions meanwhile.
    const absl::Time asked = absl::Now();
    std::shared_ptr<Session> self = shared_from_this();
    absl::Status s =
        journal->RecordLaunchAsync(cmd->result_event_id, cmd->report.pid(),
                                   cmd->report.start_ticks(), [self, cmd, asked](absl::Status s) {
                                     std::lock_guard<std::mutex> lock(self->mu_);
                                     self->JournalWrittenLocked(cmd, std::move(s), true, asked);
                                   });
    if (!s.ok()) {
      JournalFailedLocked(cmd, s);
      DropUnsentJournalLocked(cmd);
      return;
    }
    cmd->journal_pending = true;
    return;
  }
  if (!cmd->decision_durable) {
    // Ready before audit acknowledged the decision: the ack sends "go" (or its failure ends
    // the command), so audit's deadline, not the launch's, governs the wait.
    hub_->timers()->Cancel(cmd->launch_timer);
    cmd->launch_timer = 0;
    if (cmd->audit_wait_since == absl::Time()) {
      cmd->audit_wait_since = absl::Now();
    }
    return;
  }
  cmd->go_sent = true;
  const absl::Time now = absl::Now();
  hub_->metrics()
      ->CommandStart(ExecMetrics::Stage::kAuditWait)
      .Observe(cmd->audit_wait_since == absl::Time()
                   ? 0.0
                   : absl::ToDoubleSeconds(now - cmd->audit_wait_since));
  hub_->metrics()
      ->CommandStart(ExecMetrics::Stage::kTotal)
      .Observe(absl::ToDoubleSeconds(now - cmd->asked));
  hub_->timers()->Cancel(cmd->launch_timer);
  hub_->ProcessStarted();
  std::string first = "go\n";
  first += cmd->early_stdin;
  cmd->early_stdin.clear();
  cmd->early_stdin.shrink_to_fit();
  const bool writable = cmd->handle->WriteStdin(std::move(first));
  if (cmd->early_eof) {
    cmd->handle->CloseStdin();
  }
  if (writable) {
    ResumeReadsLocked();
  }
}

void Session::StartJournalLocked(const std::shared_ptr<Command>& cmd) {
  Journal* journal = hub_->journal();
  if (journal == nullptr) {
    return;
  }
  // Everything but the pid, which the launch wrapper has not reported yet: written while the
  // command is launched, so its fsyncs overlap the pods/exec upgrade and the wrapper's start.
  JournalEntry entry;
  entry.result_event_id = cmd->result_event_id;
  entry.close_event_id = close_event_id_;
  entry.session_id = session_id_;
  entry.command_id = cmd->id;
  entry.principal = principal_;
  entry.target.set_namespace_(target_.namespace_());
  entry.target.set_pod(target_.pod());
  entry.target.set_container(target_.container());
  entry.target.set_cluster(target_.cluster());
  entry.source_address = source_address_;
  entry.trace_id = trace_.trace_id;
  entry.started = cmd->start;
  entry.session_opened = opened_at_;
  entry.line = cmd->line;
  const absl::Time asked = absl::Now();
  std::shared_ptr<Session> self = shared_from_this();
  absl::Status s = journal->AddAsync(entry, [self, cmd, asked](absl::Status written) {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->JournalWrittenLocked(cmd, std::move(written), false, asked);
  });
  if (!s.ok()) {
    JournalFailedLocked(cmd, s);  // the stream, once open, is closed: nothing runs
    return;
  }
  cmd->journal_pending = true;
}

void Session::JournalWrittenLocked(const std::shared_ptr<Command>& cmd, absl::Status written,
                                   bool launch, absl::Time asked) {
  cmd->journal_pending = false;
  if (!written.ok()) {
    if (!cmd->finished && !cmd->go_sent) {
      JournalFailedLocked(cmd, written);
    }
    DropUnsentJournalLocked(cmd);  // a failed launch line leaves the entry, "not launched"
    return;
  }
  if (launch) {
    hub_->metrics()
        ->CommandStart(ExecMetrics::Stage::kJournal)
        .Observe(absl::ToDoubleSeconds(absl::Now() - asked));
    cmd->journal_launched = true;
  } else {
    cmd->journaled = true;
  }
  if (cmd->finished || cmd->go_sent) {
    DropUnsentJournalLocked(cmd);  // ended while it was written: it never runs
  } else if (cmd->handle != nullptr && cmd->report.status() == LaunchReport::Status::kReported) {
    SendGoLocked(cmd);  // or, if it was stopped meanwhile, removes the entry
  }
}

void Session::JournalFailedLocked(const std::shared_ptr<Command>& cmd, const absl::Status& s) {
  LaunchFailedLocked(cmd, absl::StrCat("exec could not journal it (", s.message(),
                                       "), so it could not have been stopped after a crash"));
}

void Session::DropUnsentJournalLocked(const std::shared_ptr<Command>& cmd) {
  // Its process never got "go", so it never ran: nothing for a later exec to stop. A write
  // under way removes it on completion (JournalWrittenLocked).
  if (cmd->journaled && !cmd->journal_pending && !cmd->go_sent && hub_->journal() != nullptr) {
    cmd->journaled = false;
    cmd->journal_launched = false;
    hub_->journal()->Remove(cmd->result_event_id);
  }
}

void Session::LaunchFailedLocked(const std::shared_ptr<Command>& cmd, const std::string& why) {
  if (!cmd->launch_error.empty()) {
    return;
  }
  cmd->launch_error = why;
  log::Warn("command not run", {{"session_id", session_id_},
                                {"trace_id", trace_.trace_id},
                                {"command_id", cmd->id},
                                {"span_id", cmd->span_id},
                                {"error", why}});
  if (cmd->handle != nullptr) {
    cmd->handle->Close();
  }
}

// The stream never opened, or the wrapper's report never came (a stalled API server or kubelet;
// kubesim once lost it, docs/benchmarks.md). "go" was never sent, and the wrapper runs nothing
// without it, so the command did not run: it ends now, as not run and audited so, instead of at
// its time limit. Closing the stream ends the wrapper (EOF on its stdin) wherever it got to.
void Session::ArmLaunchTimerLocked(const std::shared_ptr<Command>& cmd) {
  std::shared_ptr<Session> self = shared_from_this();
  cmd->launch_timer = hub_->timers()->After(opts_.launch_timeout, [self, cmd] {
    std::lock_guard<std::mutex> lock(self->mu_);
    self->LaunchTimedOutLocked(cmd);
  });
}

void Session::LaunchTimedOutLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->finished || cmd->go_sent) {
    return;
  }
  if (cmd->stop_reason == common::TERMINATION_UNSPECIFIED) {
    const std::string within = absl::FormatDuration(opts_.launch_timeout);
    LaunchFailedLocked(
        cmd, cmd->journal_pending && cmd->report.status() == LaunchReport::Status::kReported
                 // The wrapper reported; the journal's disk did not keep up (its entry goes
                 // when the write completes).
                 ? absl::StrCat("exec's journal did not make it durable within ", within,
                                " (a slow disk under --journal_dir)")
                 : absl::StrCat("its launch was not confirmed within ", within,
                                " (no launch report from the container)"));
  } else if (cmd->handle != nullptr) {
    cmd->handle->Close();  // stopped first: it ends as stopped, now
  }
  FinishCommandLocked(cmd, ExecResult{});
}

// Stops the running command. Its process is known exactly (the launch wrapper's report), so
// the stop helper signals that process (and its process group) and nothing else: SIGINT, then
// SIGKILL after the grace period. A closed stream alone would leave it running. A command not
// yet running (being decided, checked or identified) never runs.
void Session::ForwardOutputLocked(Command& c, int channel, std::string data,
                                  std::function<void()> resume) {
  c.forwarded += static_cast<int64_t>(data.size());
  const char tag = static_cast<char>(channel);
  EVP_DigestUpdate(c.sha.get(), &tag, 1);
  EVP_DigestUpdate(c.sha.get(), data.data(), data.size());
  if (c.excerpt.size() < opts_.excerpt_bytes) {
    const size_t room = opts_.excerpt_bytes - c.excerpt.size();
    c.excerpt.append(data, 0, room);
    c.excerpt_truncated = c.excerpt_truncated || data.size() > room;
  } else {
    c.excerpt_truncated = true;
  }
  (channel == 2 ? hub_->metrics()->output_bytes_stderr : hub_->metrics()->output_bytes_stdout)
      .Increment(static_cast<double>(data.size()));
  if (state_ == State::kClosed) {
    resume();
    return;
  }
  pb::SessionResponse msg;
  pb::OutputData* out = channel == 2 ? msg.mutable_stderr() : msg.mutable_stdout();
  out->set_command_id(c.id);
  out->set_data(std::move(data));
  SendOutputLocked(std::move(msg), std::move(resume));
}

void Session::StopCommandLocked(common::Termination why) {
  std::shared_ptr<Command> cmd = running_;
  if (cmd == nullptr || cmd->finished || cmd->stop_reason != common::TERMINATION_UNSPECIFIED) {
    return;
  }
  cmd->stop_reason = why;
  if (!cmd->launched) {
    // Nothing runs yet (policy, the root guard or a check is still answering): StartCommand
    // sees the stop and ends the command without starting it.
    return;
  }
  if (!cmd->go_sent) {
    // The wrapper waits for "go": closing the stream ends it without running the argv.
    if (cmd->handle != nullptr) {
      cmd->handle->Close();
    }
    return;
  }
  if (cmd->handle != nullptr) {
    cmd->handle->CloseStdin();
  }
  StartStopLocked(cmd);
}

void Session::StartStopLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->stop_started || cmd->gone || !cmd->go_sent) {
    return;
  }
  cmd->stop_started = true;
  log::Info("stopping process", {{"session_id", session_id_},
                                 {"trace_id", trace_.trace_id},
                                 {"command_id", cmd->id},
                                 {"span_id", cmd->span_id},
                                 {"pid", cmd->report.pid()}});
  std::shared_ptr<Session> self = shared_from_this();
  hub_->timers()->After(absl::ZeroDuration(), [self, cmd] { self->RunStopStep(cmd, "INT", 0); });
}

// One step of a stop: the stop helper sends `signal` to the command's process if it is still
// that process. SIGINT is followed by SIGKILL after the grace period, and the stream is closed
// a grace period after that if the process's exit has not ended it. A helper that fails is
// retried (three times, a grace period apart); after that the time limit tries again.
void Session::RunStopStep(std::shared_ptr<Command> cmd, std::string signal, int attempt) {
  ExecSpec spec;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cmd->gone && !(signal == "KILL" && cmd->group)) {
      return;
    }
    spec = TargetSpecLocked();
    // exec stops what it started as itself: the stop must work even when the user's rights
    // changed meanwhile, and it reaches only this command's process (pid and start time).
    spec.as = KubeIdentity{};
    spec.argv = StopHelperArgv(cmd->report.pid(), cmd->report.start_ticks(), signal, cmd->group);
  }
  std::shared_ptr<Session> self = shared_from_this();
  RunProbe(cluster_->kube(), hub_->timers(), spec, opts_.probe_timeout,
           [self, cmd, signal, attempt](absl::StatusOr<ProbeOutput> out) {
             const bool signalled = out.ok() && out->exit_code == 0;
             const bool gone = out.ok() && out->exit_code == 3;
             runtime::TimerQueue* timers = self->hub_->timers();
             const absl::Duration grace = self->opts_.interrupt_grace;
             self->hub_->metrics()
                 ->stops_total
                 .Add({{"signal", signal},
                       {"result", signalled ? "signalled"
                                  : gone    ? "gone"
                                            : "error"}})
                 .Increment();
             std::lock_guard<std::mutex> lock(self->mu_);
             if (signalled && signal == "INT" && out->stdout_text.rfind("group ", 0) == 0) {
               cmd->group = true;
             }
             if (gone || (signalled && signal == "KILL")) {
               // SIGKILL cannot be caught: the process (group) is gone.
               self->MarkGoneLocked(cmd);
               if (cmd->finished) {
                 self->hub_->timers()->Cancel(cmd->limit_timer);
               }
               log::Info("process stopped", {{"session_id", self->session_id_},
                                             {"trace_id", self->trace_.trace_id},
                                             {"command_id", cmd->id},
                                             {"span_id", cmd->span_id},
                                             {"pid", cmd->report.pid()},
                                             {"how", gone ? "gone" : "SIGKILL"}});
               if (!cmd->finished) {
                 timers->After(grace, [self, cmd] {
                   std::lock_guard<std::mutex> lock(self->mu_);
                   if (!cmd->finished && cmd->handle != nullptr) {
                     cmd->handle->Close();
                   }
                 });
               }
               return;
             }
             if (!signalled) {
               log::Warn("stop helper failed",
                         {{"session_id", self->session_id_},
                          {"trace_id", self->trace_.trace_id},
                          {"command_id", cmd->id},
                          {"span_id", cmd->span_id},
                          {"signal", signal},
                          {"attempt", attempt},
                          {"error",
                           out.ok() ? absl::StrCat("exit ", out->exit_code, ": ", out->stderr_text)
                                    : out.status().ToString()}});
               if (attempt < 3) {
                 timers->After(grace, [self, cmd, signal, attempt] {
                   self->RunStopStep(cmd, signal, attempt + 1);
                 });
               } else {
                 // The time limit (still armed while the process may run) tries again.
                 cmd->stop_started = false;
               }
               return;
             }
             // SIGINT delivered: SIGKILL after the grace period unless the process is gone by then.
             timers->After(grace, [self, cmd] { self->RunStopStep(cmd, "KILL", 0); });
           });
}

void Session::MarkGoneLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->gone) {
    return;
  }
  cmd->gone = true;
  if (cmd->go_sent) {
    hub_->ProcessGone();
  }
  MaybeUnjournalLocked(cmd);
}

void Session::MaybeUnjournalLocked(const std::shared_ptr<Command>& cmd) {
  if (cmd->journaled && cmd->gone && cmd->result_acked && hub_->journal() != nullptr) {
    cmd->journaled = false;
    hub_->journal()->Remove(cmd->result_event_id);
  }
}

void Session::FinishCommandLocked(const std::shared_ptr<Command>& cmd, const ExecResult& result) {
  if (cmd->finished) {
    return;
  }
  cmd->finished = true;
  hub_->timers()->Cancel(cmd->launch_timer);
  if (!cmd->go_sent && cmd->stop_reason == common::TERMINATION_UNSPECIFIED &&
      IsKubernetesRbacDenial(result.status)) {
    // The API server refused the exec stream to the user: a denial (rule kubernetes-rbac),
    // audited as one; nothing ran, so there is no process and no result.
    cmd->gone = true;
    cmd->started = false;
    DropUnsentJournalLocked(cmd);
    hub_->timers()->Cancel(cmd->limit_timer);
    ResumeReadsLocked();
    RefuseCommandLocked(cmd, "kubernetes-rbac", std::string(result.status.message()));
    cmd->handle.reset();
    return;
  }
  // What the audit record and the client are told (the stream's result, explained).
  ExecResult outcome = result;
  if (!cmd->go_sent) {
    // The argv never ran: the wrapper waits for "go" and exits without it.
    cmd->gone = true;
    DropUnsentJournalLocked(cmd);
    if (cmd->stop_reason == common::TERMINATION_UNSPECIFIED) {
      cmd->started = false;  // reported as an error, not an exit
      if (!cmd->launch_error.empty()) {
        outcome.status = absl::FailedPreconditionError(
            absl::StrCat("the command was not run: ", cmd->launch_error));
      } else if (outcome.status.ok()) {
        outcome.status = absl::FailedPreconditionError(absl::StrCat(
            "the command was not run: the launch wrapper exited with status ", outcome.exit_code,
            " before it reported its pid (podgate runs commands through /bin/sh, which the image "
            "may lack)"));
      } else {
        outcome.status =
            absl::Status(outcome.status.code(),
                         absl::StrCat(outcome.status.message(), " (the command was not run)"));
      }
    } else {
      outcome.status = absl::OkStatus();
      outcome.exit_code = 0;
    }
  } else if (result.status.ok()) {
    MarkGoneLocked(cmd);  // its exit status arrived
  } else {
    // The stream ended before the process did (a broken stream, the session closing, a
    // shutdown): the process is stopped, never forgotten.
    StartStopLocked(cmd);
    outcome.status =
        absl::Status(result.status.code(),
                     absl::StrCat(result.status.message(), "; exec stops its process (pid ",
                                  cmd->report.pid(), ") with SIGINT, then SIGKILL"));
  }
  if (cmd->gone) {
    hub_->timers()->Cancel(cmd->limit_timer);
  }
  ResumeReadsLocked();
  const absl::Duration duration = absl::Now() - cmd->start;
  // A kept end goes out now, before the exit (and into the hash and excerpt, as it is shown).
  while (!cmd->kept_end.empty()) {
    auto [channel, data] = std::move(cmd->kept_end.front());
    cmd->kept_end.pop_front();
    ForwardOutputLocked(*cmd, channel, std::move(data), [] {});
  }
  cmd->kept_end_bytes = 0;
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  if (cmd->launched) {
    EVP_DigestFinal_ex(cmd->sha.get(), digest, &digest_len);
  }

  common::Termination termination = cmd->stop_reason;
  if (termination == common::TERMINATION_UNSPECIFIED) {
    termination = outcome.status.ok() ? common::TERMINATION_EXITED : common::TERMINATION_ERROR;
  }
  // A command that ended by itself after its output reached the limit: its output was cut.
  const bool counted_to_end = cmd->over_limit && termination == common::TERMINATION_EXITED;
  if (counted_to_end) {
    termination = common::TERMINATION_OUTPUT_LIMIT;
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_COMMAND_RESULT);
  e.set_id(cmd->result_event_id);
  e.set_command_id(cmd->id);
  common::CommandResultDetail* r = e.mutable_command_result();
  r->set_line(cmd->line);
  r->set_termination(termination);
  r->set_exit_code(outcome.exit_code);
  *r->mutable_duration() = wire::ToProtoDuration(duration);
  r->set_stdout_bytes(cmd->stdout_bytes);
  r->set_stderr_bytes(cmd->stderr_bytes);
  r->set_output_sha256(digest, digest_len);
  r->set_output_excerpt(cmd->excerpt);
  r->set_excerpt_truncated(cmd->excerpt_truncated);
  if (!outcome.status.ok()) {
    r->set_error(std::string(outcome.status.message()));
  }
  if (cmd->run_argv != cmd->argv) {
    for (const std::string& a : cmd->run_argv) {
      r->add_argv(a);
    }
  }
  std::function<void(absl::Status)> recorded = [](absl::Status) {};
  if (cmd->journaled) {
    // The journal entry goes once this record is durable and the process is gone.
    std::shared_ptr<Session> self = shared_from_this();
    recorded = [self, cmd](absl::Status s) {
      if (s.ok()) {
        std::lock_guard<std::mutex> lock(self->mu_);
        cmd->result_acked = true;
        self->MaybeUnjournalLocked(cmd);
      }
    };
  }
  hub_->audit()->Record(std::move(e), std::move(recorded));
  hub_->metrics()
      ->commands_total
      .Add({{"decision", "allow"},
            {"result", !cmd->started && !outcome.status.ok()
                           ? "error"
                           : wire::EnumLabel(termination, "error")}})
      .Increment();
  if (!outcome.status.ok()) {
    hub_->metrics()
        ->api_errors_total.Add({{"code", absl::StatusCodeToString(outcome.status.code())}})
        .Increment();
  }
  log::Info("command end", {{"session_id", session_id_},
                            {"trace_id", trace_.trace_id},
                            {"command_id", cmd->id},
                            {"span_id", cmd->span_id},
                            {"termination", wire::EnumLabel(termination, "error")},
                            {"exit_code", outcome.exit_code},
                            {"duration_ms", absl::ToInt64Milliseconds(duration)}});
  if (running_ == cmd) {
    ClearRunningLocked();
  }
  if (state_ == State::kClosed) {
    return;
  }
  pb::SessionResponse msg;
  if (!cmd->started && !outcome.status.ok() &&
      cmd->stop_reason == common::TERMINATION_UNSPECIFIED) {
    // It never ran: an error, not an exit.
    msg.mutable_error()->set_command_id(cmd->id);
    msg.mutable_error()->mutable_status()->set_code(static_cast<int>(outcome.status.code()));
    msg.mutable_error()->mutable_status()->set_message(std::string(outcome.status.message()));
  } else {
    msg.mutable_exit()->set_command_id(cmd->id);
    msg.mutable_exit()->set_termination(termination);
    msg.mutable_exit()->set_exit_code(outcome.exit_code);
    *msg.mutable_exit()->mutable_duration() = wire::ToProtoDuration(duration);
    msg.mutable_exit()->set_output_bytes(cmd->stdout_bytes + cmd->stderr_bytes);
    msg.mutable_exit()->set_shown_bytes(cmd->forwarded);
    msg.mutable_exit()->set_output_complete(!cmd->over_limit || counted_to_end);
    msg.mutable_exit()->set_kept_end(cmd->keep_end);
    if (termination == common::TERMINATION_ERROR && !outcome.status.ok()) {
      msg.mutable_exit()->set_error(std::string(outcome.status.message()));
    }
  }
  SendLocked(std::move(msg));
  // Release the stream outside this observer callback's own bookkeeping.
  cmd->handle.reset();
}

}  // namespace podgate::exec
