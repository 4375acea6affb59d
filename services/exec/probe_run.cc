#include "exec/probe_run.h"

#include <memory>
#include <mutex>

#include "absl/strings/str_cat.h"

namespace podgate::exec {
namespace {

constexpr size_t kMaxProbeOutput = 64 * 1024;

class Probe final : public ExecObserver, public std::enable_shared_from_this<Probe> {
 public:
  explicit Probe(std::function<void(absl::StatusOr<ProbeOutput>)> done) : done_(std::move(done)) {}

  void Start(KubeApi* kube, runtime::TimerQueue* timers, const ExecSpec& spec,
             absl::Duration timeout) {
    self_ = shared_from_this();
    std::weak_ptr<Probe> weak = self_;
    timer_ = timers->After(timeout, [weak, timeout] {
      if (auto probe = weak.lock()) {
        probe->Fail(absl::DeadlineExceededError(
            absl::StrCat("no answer within ", absl::FormatDuration(timeout))));
      }
    });
    timers_ = timers;
    std::unique_ptr<ExecHandle> handle = kube->Exec(spec, shared_from_this());
    std::lock_guard<std::mutex> lock(mu_);
    if (!finished_) {
      handle_ = std::move(handle);
    }
    // else: already finished; `handle` is destroyed here, closing the stream.
  }

  void OnStarted(const std::string&) override {}

  void OnOutput(int channel, std::string data, std::function<void()> resume) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      std::string& out = channel == 2 ? output_.stderr_text : output_.stdout_text;
      out.append(data, 0, kMaxProbeOutput - std::min(kMaxProbeOutput, out.size()));
    }
    resume();
  }

  void OnExit(ExecResult result) override {
    timers_->Cancel(timer_);
    if (result.status.ok()) {
      ProbeOutput out;
      {
        std::lock_guard<std::mutex> lock(mu_);
        out = output_;
      }
      out.exit_code = result.exit_code;
      Deliver(std::move(out));
    } else {
      Deliver(result.status);
    }
    // The stream is over: the last reference may go now.
    std::shared_ptr<Probe> self;
    std::lock_guard<std::mutex> lock(mu_);
    self = std::move(self_);
  }

  void Fail(absl::Status status) {
    Deliver(std::move(status));
    std::unique_ptr<ExecHandle> handle;
    {
      std::lock_guard<std::mutex> lock(mu_);
      handle = std::move(handle_);
    }
    // Closing the stream leads to OnExit, which releases the probe.
    handle.reset();
  }

 private:
  void Deliver(absl::StatusOr<ProbeOutput> result) {
    std::function<void(absl::StatusOr<ProbeOutput>)> done;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (finished_) {
        return;
      }
      finished_ = true;
      done = std::move(done_);
    }
    done(std::move(result));
  }

  std::mutex mu_;
  std::function<void(absl::StatusOr<ProbeOutput>)> done_;
  ProbeOutput output_;
  bool finished_ = false;
  std::unique_ptr<ExecHandle> handle_;
  std::shared_ptr<Probe> self_;
  runtime::TimerQueue* timers_ = nullptr;
  runtime::TimerQueue::Id timer_ = 0;
};

}  // namespace

void RunProbe(KubeApi* kube, runtime::TimerQueue* timers, const ExecSpec& spec,
              absl::Duration timeout, std::function<void(absl::StatusOr<ProbeOutput>)> done) {
  auto probe = std::make_shared<Probe>(std::move(done));
  probe->Start(kube, timers, spec, timeout);
}

}  // namespace podgate::exec
