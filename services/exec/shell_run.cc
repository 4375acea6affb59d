// Shell mode: the TTY stream's observer, starting the shell, and its asciicast recording.
#include "exec/shell_run.h"

#include "absl/strings/str_cat.h"
#include "exec/session_reactor.h"
#include "nlohmann/json.hpp"

namespace podgate::exec {

namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;

// --- the recording ---------------------------------------------------------------------------

void AsciicastRecording::Start(uint32_t width, uint32_t height, absl::Time now,
                               const std::string& title) {
  nlohmann::json header = {{"version", 2},
                           {"width", width},
                           {"height", height},
                           {"timestamp", absl::ToUnixSeconds(now)},
                           {"title", title}};
  pending_ = absl::StrCat(header.dump(), "\n", pending_);
  started_ = true;
  last_flush_ = now;
}

bool AsciicastRecording::Add(double t, char kind, const std::string& data, absl::Time now) {
  nlohmann::json event = {
      t, std::string(1, kind),
      nlohmann::json(data).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
  // The event's data is the JSON string of the bytes (invalid UTF-8 replaced).
  event[2] = nlohmann::json::parse(event[2].get<std::string>());
  pending_ += event.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  pending_ += "\n";
  return started_ && (pending_.size() >= chunk_bytes_ || now - last_flush_ >= flush_every_);
}

std::pair<int64_t, std::string> AsciicastRecording::TakeChunk(absl::Time now) {
  std::pair<int64_t, std::string> chunk{sequence_++, std::move(pending_)};
  pending_.clear();
  last_flush_ = now;
  return chunk;
}

// --- the shell's stream ----------------------------------------------------------------------

class Session::ShellObserver final : public ExecObserver {
 public:
  explicit ShellObserver(std::weak_ptr<Session> session) : session_(std::move(session)) {}

  void OnStarted(const std::string& protocol) override {
    if (std::shared_ptr<Session> s = session_.lock()) {
      s->hub_->metrics()->protocol_total.Add({{"protocol", protocol}}).Increment();
    }
  }

  void OnOutput(int, std::string data, std::function<void()> resume) override {
    std::shared_ptr<Session> s = session_.lock();
    if (s == nullptr) {
      resume();
      return;
    }
    std::lock_guard<std::mutex> lock(s->mu_);
    if (s->state_ == State::kClosed) {
      resume();
      return;
    }
    s->hub_->metrics()->output_bytes_tty.Increment(static_cast<double>(data.size()));
    s->RecordShellLocked('o', data);
    pb::SessionResponse msg;
    msg.mutable_stdout()->set_data(std::move(data));
    s->SendOutputLocked(std::move(msg), std::move(resume));
  }

  void OnExit(ExecResult result) override {
    std::shared_ptr<Session> session = session_.lock();
    if (session == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> lock(session->mu_);
    if (IsKubernetesRbacDenial(result.status)) {
      // The API server refused the shell's stream to the user: audited as a denial.
      session->hub_->metrics()->kubernetes_denials_total.Add({{"at", "shell"}}).Increment();
      common::AuditEvent e = session->BaseEventLocked(common::EVENT_KIND_DECISION);
      e.mutable_decision()->set_verdict(common::VERDICT_DENY);
      e.mutable_decision()->set_rule("kubernetes-rbac");
      e.mutable_decision()->set_reason(std::string(result.status.message()));
      session->hub_->audit()->Record(std::move(e), [](absl::Status) {});
      session->CloseLocked(common::CLOSE_REASON_ERROR, std::string(result.status.message()));
      return;
    }
    if (result.status.ok()) {
      session->CloseLocked(common::CLOSE_REASON_REMOTE_EXIT,
                           absl::StrCat("the shell exited with status ", result.exit_code));
    } else {
      session->CloseLocked(common::CLOSE_REASON_ERROR,
                           absl::StrCat("the shell stream failed: ", result.status.message()));
    }
  }

  void OnWritable() override {
    if (std::shared_ptr<Session> s = session_.lock()) {
      std::lock_guard<std::mutex> lock(s->mu_);
      s->ResumeReadsLocked();
    }
  }

 private:
  const std::weak_ptr<Session> session_;
};

void Session::StartShell() {
  std::unique_lock<std::mutex> lock(mu_);
  if (state_ != State::kReady) {
    return;
  }
  ExecSpec spec = TargetSpecLocked();
  spec.argv = opts_.shell_argv;
  spec.stdin = true;
  spec.tty = true;
  spec.width = width_;
  spec.height = height_;
  auto observer = std::make_shared<ShellObserver>(weak_from_this());
  lock.unlock();
  std::unique_ptr<ExecHandle> handle = cluster_->kube()->Exec(spec, std::move(observer));
  lock.lock();
  shell_ = std::move(handle);
  if (state_ == State::kClosed) {
    // Closed while the stream was being opened (CloseLocked found no shell to flush): nothing
    // more reaches the pod, and what was recorded meanwhile (keystrokes) still goes to audit.
    FlushRecordingLocked();
    shell_->Close();
    return;
  }
  // A resize that arrived while the stream was being opened found no shell: apply it now.
  if (width_ != spec.width || height_ != spec.height) {
    shell_->Resize(width_, height_);
    RecordShellLocked('r', absl::StrCat(width_, "x", height_));
  }
  if (!early_stdin_.empty()) {
    (void)shell_->WriteStdin(std::move(early_stdin_));
    early_stdin_.clear();
  }
}

void Session::RecordShellLocked(char kind, const std::string& data) {
  const double t = absl::ToDoubleSeconds(absl::Now() - opened_at_);
  if (recording_.Add(t, kind, data, absl::Now())) {
    FlushRecordingLocked();
  }
}

void Session::FlushRecordingLocked() {
  if (recording_.empty()) {
    return;
  }
  common::AuditEvent e = BaseEventLocked(common::EVENT_KIND_SHELL_RECORDING);
  auto [sequence, asciicast] = recording_.TakeChunk(absl::Now());
  e.mutable_shell_recording()->set_sequence(sequence);
  e.mutable_shell_recording()->set_asciicast(std::move(asciicast));
  std::weak_ptr<Session> weak = shared_from_this();
  const bool strict = opts_.strict_audit;
  hub_->audit()->Record(std::move(e), [weak, strict](absl::Status s) {
    if (!s.ok() && strict) {
      if (auto self = weak.lock()) {
        std::lock_guard<std::mutex> lock(self->mu_);
        self->CloseLocked(common::CLOSE_REASON_ERROR,
                          absl::StrCat("the shell recording could not be audited: ", s.message()));
      }
    }
  });
}

}  // namespace podgate::exec
