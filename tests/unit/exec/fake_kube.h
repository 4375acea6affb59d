// A KubeApi in memory for exec's unit tests, held to the interface's contract (kube.h) as the
// real client keeps it: every answer and every stream event comes on the fake's own thread,
// never inside the call that asked; a stream's events are serialized (OnStarted first, OnExit
// last and once); the next output waits for the previous one's `resume`; closing or destroying
// a handle ends its stream with an error. Pods are a map; what a process does is a Program. A
// command started through the launch wrapper (LaunchWrapperArgv) behaves as the wrapper does:
// its report ("podgate-pid <pid> <start>") is the first line of stderr, and its argv runs only
// once "go\n" arrives on stdin (anything else, or the stream closing, and it never runs). Each
// launched command gets its own pid (4242, 4243, ...); the stop helper (StopHelperArgv) signals
// exactly the running process with that pid and start time: it exits (130 on SIGINT, 137 on
// SIGKILL) and the helper answers "process <pid>", or "gone" (exit 3) when none runs.
#pragma once

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "exec/container_probe.h"
#include "exec/kube.h"

namespace podgate::exec::testing {

class FakeKube final : public KubeApi {
 public:
  // What one process does.
  struct Run {
    int exit_code = 0;
    std::string stdout_text;
    std::string stderr_text;
    // More stdout after stdout_text, one chunk per OnOutput (each waits for its resume), as a
    // large output comes from the API server: frame after frame.
    std::vector<std::string> stdout_chunks;
    // Never exits (until its stream is closed).
    bool hang = false;
    // The stream fails instead (an API error, a broken connection).
    absl::Status stream_error;
  };
  // `argv` is what runs (for a launched command, the argv after the wrapper).
  using Program = std::function<Run(const std::vector<std::string>& argv)>;

  FakeKube() : worker_([this] { Loop(); }) {}
  ~FakeKube() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    worker_.join();
  }

  void AddPod(PodView pod) {
    std::lock_guard<std::mutex> lock(mu_);
    pods_[pod.namespace_name + "/" + pod.name] = std::move(pod);
  }
  // The default program answers `id -u` with `uid_` and runs anything else silently (exit 0).
  void SetProgram(Program program) {
    std::lock_guard<std::mutex> lock(mu_);
    program_ = std::move(program);
  }
  void SetUid(int uid) {
    std::lock_guard<std::mutex> lock(mu_);
    uid_ = uid;
  }

  // Calls so far.
  int get_pod_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return get_pod_calls_;
  }
  int list_calls() const {
    std::lock_guard<std::mutex> lock(mu_);
    return list_calls_;
  }
  std::vector<ExecSpec> execs() const {
    std::lock_guard<std::mutex> lock(mu_);
    return execs_;
  }
  // Output bytes handed to observers so far (every stream).
  size_t output_offered() const {
    std::lock_guard<std::mutex> lock(mu_);
    return output_offered_;
  }
  int calls() const { return get_pod_calls() + list_calls() + static_cast<int>(execs().size()); }
  // Launched commands that received "go" (their argv ran).
  std::vector<std::vector<std::string>> ran() const {
    std::lock_guard<std::mutex> lock(mu_);
    return ran_;
  }
  // While set, an Exec whose spec matches blocks inside the call (after it is counted) until
  // ReleaseExecs: a stream that is slow to open.
  void HoldExecs(std::function<bool(const ExecSpec&)> which) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_ = std::move(which);
  }
  void ReleaseExecs() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      hold_ = nullptr;
    }
    cv_.notify_all();
  }
  // The user each pod read was made for, in order ("" for exec itself); execs carry theirs in
  // their spec.
  std::vector<std::string> callers() const {
    std::lock_guard<std::mutex> lock(mu_);
    return callers_;
  }
  // Everything written to any stream's stdin, in order.
  std::vector<std::string> stdin_written() const {
    std::lock_guard<std::mutex> lock(mu_);
    return stdin_written_;
  }
  // Signals the stop helper delivered, as "<signal> <pid>".
  std::vector<std::string> signals() const {
    std::lock_guard<std::mutex> lock(mu_);
    return signals_;
  }

  void GetPod(const KubeIdentity& as, const std::string& namespace_name, const std::string& name,
              std::function<void(absl::StatusOr<PodView>)> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++get_pod_calls_;
    callers_.push_back(as.user);
    absl::StatusOr<PodView> answer = absl::NotFoundError(
        absl::StrCat("pods \"", name, "\" not found in namespace ", namespace_name));
    if (auto it = pods_.find(namespace_name + "/" + name); it != pods_.end()) {
      answer = it->second;
    }
    PostLocked([done = std::move(done), answer = std::move(answer)] { done(answer); });
  }

  void ListPods(const KubeIdentity& as, const std::string& namespace_name,
                std::function<void(absl::StatusOr<std::vector<PodView>>)> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++list_calls_;
    callers_.push_back(as.user);
    std::vector<PodView> pods;
    for (const auto& [key, pod] : pods_) {
      if (namespace_name.empty() || pod.namespace_name == namespace_name) {
        pods.push_back(pod);
      }
    }
    PostLocked([done = std::move(done), pods = std::move(pods)] { done(pods); });
  }

  // Access reviews: allowed unless `deny_reviews_in` names the namespace.
  void ReviewAccess(const KubeIdentity& as, const AccessQuery& query,
                    std::function<void(absl::StatusOr<bool>)> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    callers_.push_back(as.user);
    const bool allowed = deny_reviews_in_.count(query.namespace_name) == 0;
    PostLocked([done = std::move(done), allowed] { done(allowed); });
  }
  void CheckHealth(std::function<void(absl::Status)> done) override {
    std::lock_guard<std::mutex> lock(mu_);
    absl::Status health = health_;
    PostLocked([done = std::move(done), health] { done(health); });
  }
  // What CheckHealth answers from now on.
  void SetHealth(absl::Status health) {
    std::lock_guard<std::mutex> lock(mu_);
    health_ = std::move(health);
  }
  void DenyReviewsIn(const std::string& ns) {
    std::lock_guard<std::mutex> lock(mu_);
    deny_reviews_in_.insert(ns);
  }

  std::unique_ptr<ExecHandle> Exec(const ExecSpec& spec,
                                   std::shared_ptr<ExecObserver> observer) override {
    auto stream = std::make_shared<Stream>(this, spec, std::move(observer));
    std::unique_lock<std::mutex> lock(mu_);
    execs_.push_back(spec);
    cv_.wait(lock, [&] { return hold_ == nullptr || !hold_(spec); });
    PostLocked([stream] { stream->Begin(); });
    return std::make_unique<Handle>(stream);
  }

 private:
  // One exec stream; its state is touched on the worker thread only.
  class Stream : public std::enable_shared_from_this<Stream> {
   public:
    Stream(FakeKube* kube, ExecSpec spec, std::shared_ptr<ExecObserver> observer)
        : kube_(kube), spec_(std::move(spec)), observer_(std::move(observer)) {}

    FakeKube* kube() const { return kube_; }

    void Begin() {
      if (ended_) {
        return;
      }
      observer_->OnStarted("v5.channel.k8s.io");
      const std::vector<std::string> prefix = LaunchWrapperArgv({});
      if (spec_.argv.size() >= prefix.size() &&
          std::equal(prefix.begin(), prefix.end(), spec_.argv.begin())) {
        launched_ = true;
        argv_.assign(spec_.argv.begin() + static_cast<long>(prefix.size()), spec_.argv.end());
        {
          std::lock_guard<std::mutex> lock(kube_->mu_);
          pid_ = std::to_string(kube_->next_pid_++);
        }
        Output(2, absl::StrCat("podgate-pid ", pid_, " 777\n"), nullptr);  // then waits for "go"
        return;
      }
      argv_ = spec_.argv;
      if (argv_.size() == 8 && argv_[3] == "podgate-stop") {
        Stop(argv_[4], argv_[5], argv_[6]);
        return;
      }
      RunProgram();
    }

    void Stdin(std::string data) {
      if (ended_ || !launched_ || go_) {
        return;
      }
      stdin_ += data;
      if (stdin_.size() < 3) {
        return;
      }
      if (stdin_.rfind("go\n", 0) != 0) {
        End(absl::OkStatus(), 125);  // the wrapper's refusal: the argv never runs
        return;
      }
      go_ = true;
      {
        std::lock_guard<std::mutex> lock(kube_->mu_);
        kube_->ran_.push_back(argv_);
        kube_->running_[pid_] = shared_from_this();
      }
      RunProgram();
    }

    void Close() { End(absl::CancelledError("the stream was closed"), 0); }

   private:
    // The stop helper: signals the process `pid` started at `start`, if it still runs.
    void Stop(const std::string& signal, const std::string& pid, const std::string& start) {
      std::shared_ptr<Stream> target;
      {
        std::lock_guard<std::mutex> lock(kube_->mu_);
        if (auto it = kube_->running_.find(pid); it != kube_->running_.end() && start == "777") {
          target = it->second.lock();
        }
        if (target != nullptr) {
          kube_->signals_.push_back(absl::StrCat(signal, " ", pid));
        }
      }
      if (target == nullptr) {
        Output(1, "gone\n", [self = shared_from_this()] { self->End(absl::OkStatus(), 3); });
        return;
      }
      target->End(absl::OkStatus(), signal == "KILL" ? 137 : 130);
      Output(1, absl::StrCat("process ", pid, "\n"),
             [self = shared_from_this()] { self->End(absl::OkStatus(), 0); });
    }

    void RunProgram() {
      Program program;
      int uid = 0;
      {
        std::lock_guard<std::mutex> lock(kube_->mu_);
        program = kube_->program_;
        uid = kube_->uid_;
      }
      Run run;
      if (program) {
        run = program(argv_);
      } else if (argv_ == UidProbeArgv()) {
        run.stdout_text = absl::StrCat(uid, "\n");
      }
      if (!run.stream_error.ok()) {
        End(run.stream_error, 0);
        return;
      }
      if (run.hang) {
        return;
      }
      auto self = shared_from_this();
      auto chunks = std::make_shared<std::vector<std::string>>(std::move(run.stdout_chunks));
      Output(1, run.stdout_text, [self, run, chunks] {
        self->Chunks(chunks, 0, [self, run] {
          self->Output(2, run.stderr_text,
                       [self, run] { self->End(absl::OkStatus(), run.exit_code); });
        });
      });
    }

    // Outputs chunks[i..] on stdout, one at a time, then runs `next`.
    void Chunks(std::shared_ptr<std::vector<std::string>> chunks, size_t i,
                std::function<void()> next) {
      if (i == chunks->size()) {
        next();
        return;
      }
      auto self = shared_from_this();
      Output(1, (*chunks)[i], [self, chunks, i, next] { self->Chunks(chunks, i + 1, next); });
    }

    // Sends `data` (when any) and runs `next` once the observer resumed the stream.
    void Output(int channel, const std::string& data, std::function<void()> next) {
      if (ended_) {
        return;
      }
      if (data.empty()) {
        if (next) {
          next();
        }
        return;
      }
      auto self = shared_from_this();
      {
        std::lock_guard<std::mutex> lock(kube_->mu_);
        kube_->output_offered_ += data.size();
      }
      observer_->OnOutput(channel, data, [self, next] {
        std::lock_guard<std::mutex> lock(self->kube_->mu_);
        self->kube_->PostLocked([next] {
          if (next) {
            next();
          }
        });
      });
    }

    void End(absl::Status status, int exit_code) {
      if (ended_) {
        return;
      }
      ended_ = true;
      if (!pid_.empty()) {
        std::lock_guard<std::mutex> lock(kube_->mu_);
        kube_->running_.erase(pid_);
      }
      ExecResult result;
      result.status = std::move(status);
      result.exit_code = exit_code;
      result.protocol = "v5.channel.k8s.io";
      std::shared_ptr<ExecObserver> observer = std::move(observer_);
      observer->OnExit(result);
    }

    FakeKube* const kube_;
    const ExecSpec spec_;
    std::shared_ptr<ExecObserver> observer_;
    std::vector<std::string> argv_;
    bool launched_ = false;
    std::string pid_;
    bool go_ = false;
    bool ended_ = false;
    std::string stdin_;
  };

  class Handle final : public ExecHandle {
   public:
    explicit Handle(std::shared_ptr<Stream> stream) : stream_(std::move(stream)) {}
    ~Handle() override { Close(); }
    bool WriteStdin(std::string data) override {
      {
        std::lock_guard<std::mutex> lock(stream_->kube()->mu_);
        stream_->kube()->stdin_written_.push_back(data);
      }
      Post([s = stream_, data = std::move(data)] { s->Stdin(data); });
      return true;
    }
    void CloseStdin() override {}
    void Resize(uint32_t, uint32_t) override {}
    void Close() override {
      Post([s = stream_] { s->Close(); });
    }

   private:
    void Post(std::function<void()> fn) {
      std::lock_guard<std::mutex> lock(stream_->kube()->mu_);
      stream_->kube()->PostLocked(std::move(fn));
    }
    std::shared_ptr<Stream> stream_;
  };

  void PostLocked(std::function<void()> fn) {
    tasks_.push_back(std::move(fn));
    cv_.notify_all();  // the worker, or an Exec held by HoldExecs
  }

  void Loop() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) {
        return;  // stopping, nothing left
      }
      std::function<void()> task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      task = nullptr;
      lock.lock();
    }
  }

  mutable std::mutex mu_;
  absl::Status health_ = absl::OkStatus();
  std::condition_variable cv_;
  std::deque<std::function<void()>> tasks_;
  bool stop_ = false;
  std::map<std::string, PodView> pods_;
  Program program_;
  int uid_ = 1000;
  size_t output_offered_ = 0;
  int get_pod_calls_ = 0;
  int list_calls_ = 0;
  std::vector<ExecSpec> execs_;
  std::vector<std::vector<std::string>> ran_;
  std::vector<std::string> signals_;
  std::vector<std::string> callers_;
  std::set<std::string> deny_reviews_in_;
  std::vector<std::string> stdin_written_;
  std::function<bool(const ExecSpec&)> hold_;
  int next_pid_ = 4242;
  // Launched processes that run (received "go" and have not exited), by pid.
  std::map<std::string, std::weak_ptr<Stream>> running_;
  std::thread worker_;
};

}  // namespace podgate::exec::testing
