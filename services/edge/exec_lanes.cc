#include "edge/exec_lanes.h"

#include <algorithm>
#include <atomic>
#include <boost/asio/post.hpp>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "edge/backend_calls.h"
#include "runtime/log.h"

namespace podgate::edge {

namespace pb = podgate::exec::v1;

// What the streams share with ExecLanes (which may go first).
struct ExecLanes::Shared {
  std::mutex mu;
  std::shared_ptr<Call> current;
  bool unsupported = false;
  std::atomic<int64_t> lanes{0};
};

namespace {

// Past its window plus this much, a lane's responses mean exec ignores the flow control: the lane
// ends (a bound on what one session can make edge hold).
constexpr int64_t kResponseSlackBytes = 8 * 1024 * 1024;

}  // namespace

// One lane: the ExecStream of one browser session. Its state is guarded by its Call's mutex.
class Lane final : public ExecStream {
 public:
  Lane(std::shared_ptr<ExecLanes::Call> call, uint64_t id, std::shared_ptr<ExecStreamEvents> events,
       boost::asio::any_io_executor executor)
      : call_(std::move(call)),
        id_(id),
        events_(std::move(events)),
        executor_(std::move(executor)) {}

  void Write(pb::SessionRequest request) override;
  void Read() override;
  void CloseWrites() override;
  void Cancel() override;
  void Release() override;

 private:
  friend class ExecLanes::Call;

  template <typename F>
  void Post(F&& f) {
    boost::asio::post(executor_, std::forward<F>(f));
  }

  std::shared_ptr<ExecLanes::Call> call_;
  const uint64_t id_;
  std::shared_ptr<ExecStreamEvents> events_;
  boost::asio::any_io_executor executor_;
  // Responses received and not yet read, with their sizes.
  std::deque<std::pair<pb::SessionResponse, int64_t>> queued_;
  // Bytes received and not credited back (queued or read), and of them those read.
  int64_t received_ = 0;
  int64_t taken_ = 0;
  bool read_pending_ = false;
  // Writes whose OnExecWriteDone is still to come (queued, in flight, or waiting for credit).
  int writes_outstanding_ = 0;
  std::optional<pb::SessionRequest> waiting_;
  int64_t send_credit_ = ExecLanes::kRequestWindowBytes;
  std::optional<grpc::Status> end_;
  bool released_ = false;
};

class ExecLanes::Call final
    : public grpc::ClientBidiReactor<pb::SessionsRequest, pb::SessionsResponse>,
      public std::enable_shared_from_this<ExecLanes::Call> {
 public:
  explicit Call(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  void Start(pb::ExecService::StubInterface* stub) {
    self_ = shared_from_this();
    RegisterBackendCall(&context_);
    stub->async()->Sessions(&context_, this);
    StartRead(&response_);
    // Lanes open and write from the sessions' threads, outside the reactions: without a hold,
    // the call could finish (its read failed, its status in) while a session starts a write on
    // it, and that write would never complete. The hold goes once the read fails (OnReadDone),
    // after which nothing starts on this call.
    AddHold();
    StartCall();
  }

  // Null once the stream has ended.
  Lane* OpenLane(std::shared_ptr<ExecStreamEvents> events, boost::asio::any_io_executor executor,
                 pb::SessionRequest& open, const runtime::TraceContext& trace) {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_ || ending_ || closing_) {
      return nullptr;
    }
    auto* lane = new Lane(shared_from_this(), ++last_lane_, std::move(events), std::move(executor));
    lanes_.emplace(lane->id_, lane);
    shared_->lanes.fetch_add(1);
    Frame f;
    f.message.set_lane(lane->id_);
    if (trace.valid()) {
      f.message.set_traceparent(trace.Header());
    }
    *f.message.mutable_message() = std::move(open);
    lane->send_credit_ -= static_cast<int64_t>(f.message.message().ByteSizeLong());
    ++lane->writes_outstanding_;
    f.completes = lane;
    // As a Session call does, the lane starts with its first read (of `ready`) under way.
    lane->read_pending_ = true;
    QueueLocked(std::move(f));
    return lane;
  }

  void Cancel() { context_.TryCancel(); }

  // No lane opens on this call any more; writes end (StartWritesDone) after the queued frames.
  void CloseWrites() {
    std::lock_guard<std::mutex> lock(mu_);
    closing_ = true;
    MaybeWriteLocked();
  }

  void LaneWrite(Lane* lane, pb::SessionRequest request) {
    std::lock_guard<std::mutex> lock(mu_);
    if (lane->end_.has_value()) {
      lane->Post([events = lane->events_] { events->OnExecWriteDone(false); });
      return;
    }
    ++lane->writes_outstanding_;
    if (lane->send_credit_ > 0) {
      SendLocked(lane, std::move(request));
    } else {
      lane->waiting_ = std::move(request);  // until exec gives credit
    }
  }

  void LaneRead(Lane* lane) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lane->queued_.empty()) {
      auto [message, size] = std::move(lane->queued_.front());
      lane->queued_.pop_front();
      TakenLocked(lane, size);
      lane->Post([events = lane->events_, message = std::move(message)]() mutable {
        events->OnExecRead(true, std::move(message));
      });
    } else if (lane->end_.has_value()) {
      lane->Post([events = lane->events_] { events->OnExecRead(false, {}); });
    } else {
      lane->read_pending_ = true;
    }
  }

  void LaneCloseWrites(Lane* lane) {
    std::lock_guard<std::mutex> lock(mu_);
    if (!lane->end_.has_value()) {
      Frame f;
      f.message.set_lane(lane->id_);
      f.message.set_writes_done(true);
      QueueLocked(std::move(f));
    }
  }

  void LaneCancel(Lane* lane) {
    std::lock_guard<std::mutex> lock(mu_);
    CancelLaneLocked(lane, grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled"));
  }

  void LaneRelease(Lane* lane) {
    std::unique_lock<std::mutex> lock(mu_);
    lane->released_ = true;
    CancelLaneLocked(lane, grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled"));
    MaybeDoneLocked(lane);
  }

  void OnReadDone(bool ok) override {
    std::unique_lock<std::mutex> lock(mu_);
    if (!ok) {
      // The stream is ending: nothing more starts on it, and OnDone ends the lanes with its
      // status once the writes under way are over.
      ending_ = true;
      lock.unlock();
      RemoveHold();
      return;
    }
    received_any_ = true;
    auto it = lanes_.find(response_.lane());
    if (it != lanes_.end()) {
      Lane* lane = it->second;
      switch (response_.kind_case()) {
        case pb::SessionsResponse::kMessage:
          DeliverLocked(lane, std::move(*response_.mutable_message()));
          break;
        case pb::SessionsResponse::kCredit:
          lane->send_credit_ = wire::AddLaneCredit(lane->send_credit_, response_.credit());
          if (lane->waiting_.has_value() && lane->send_credit_ > 0 && !lane->end_.has_value()) {
            pb::SessionRequest request = std::move(*lane->waiting_);
            lane->waiting_.reset();
            SendLocked(lane, std::move(request));
          }
          break;
        case pb::SessionsResponse::kEnd:
          EndLaneLocked(lane, grpc::Status(static_cast<grpc::StatusCode>(response_.end().code()),
                                           response_.end().message()));
          break;
        default:
          break;
      }
    }
    // Else a lane that has ended here (cancelled, released): what crossed its end is dropped.
    response_.Clear();
    StartRead(&response_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    Frame done = std::move(in_flight_);
    in_flight_ = Frame{};
    if (done.completes != nullptr) {
      Lane* lane = done.completes;
      --lane->writes_outstanding_;
      lane->Post([events = lane->events_, ok] { events->OnExecWriteDone(ok); });
      MaybeDoneLocked(lane);
    }
    if (ok) {
      MaybeWriteLocked();
    } else {
      write_failed_ = true;  // the stream is gone; OnDone ends the lanes
    }
  }

  void OnDone(const grpc::Status& status) override {
    bool unsupported;
    {
      std::lock_guard<std::mutex> lock(mu_);
      unsupported = status.error_code() == grpc::StatusCode::UNIMPLEMENTED && !received_any_;
      ended_ = true;
      // Frames never written: their writes fail.
      for (Frame& f : frames_) {
        if (f.completes != nullptr) {
          --f.completes->writes_outstanding_;
          f.completes->Post([events = f.completes->events_] { events->OnExecWriteDone(false); });
        }
      }
      frames_.clear();
      grpc::Status why =
          status.ok()
              ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "exec ended the Sessions stream")
          : unsupported ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                       "exec serves no Sessions stream (an older exec); try again")
                        : status;
      std::vector<Lane*> lanes;
      for (auto& [id, lane] : lanes_) {
        lanes.push_back(lane);
      }
      for (Lane* lane : lanes) {
        EndLaneLocked(lane, why);
      }
    }
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (shared_->current.get() == this) {
        shared_->current.reset();
      }
      if (unsupported && !shared_->unsupported) {
        shared_->unsupported = true;
        log::Warn("exec serves no Sessions stream: each browser session gets a Session call",
                  {{"status", status.error_message()}});
      }
    }
    UnregisterBackendCall(&context_);
    self_.reset();  // the lanes still open hold the call until they are released
  }

 private:
  struct Frame {
    pb::SessionsRequest message;
    // The lane whose write this is (OnExecWriteDone once written).
    Lane* completes = nullptr;
  };

  void SendLocked(Lane* lane, pb::SessionRequest request) {
    Frame f;
    f.message.set_lane(lane->id_);
    *f.message.mutable_message() = std::move(request);
    lane->send_credit_ -= static_cast<int64_t>(f.message.message().ByteSizeLong());
    f.completes = lane;
    QueueLocked(std::move(f));
  }

  void DeliverLocked(Lane* lane, pb::SessionResponse message) {
    if (lane->end_.has_value()) {
      return;
    }
    const int64_t size = static_cast<int64_t>(message.ByteSizeLong());
    lane->received_ += size;
    if (lane->received_ > kResponseWindowBytes + kResponseSlackBytes) {
      log::Warn("exec sent a lane past its window", {{"lane", static_cast<int64_t>(lane->id_)}});
      CancelLaneLocked(
          lane, grpc::Status(grpc::StatusCode::INTERNAL, "exec sent past the lane's window"));
      return;
    }
    if (lane->read_pending_) {
      lane->read_pending_ = false;
      TakenLocked(lane, size);
      lane->Post([events = lane->events_, message = std::move(message)]() mutable {
        events->OnExecRead(true, std::move(message));
      });
      return;
    }
    lane->queued_.emplace_back(std::move(message), size);
  }

  // The session read `size` bytes of the lane: credit goes back in quarters of the window.
  void TakenLocked(Lane* lane, int64_t size) {
    lane->taken_ += size;
    if (lane->taken_ < kResponseWindowBytes / 4) {
      return;
    }
    Frame f;
    f.message.set_lane(lane->id_);
    f.message.set_credit(static_cast<uint64_t>(lane->taken_));
    lane->received_ -= lane->taken_;
    lane->taken_ = 0;
    QueueLocked(std::move(f));
  }

  // The lane ends here: exec is told (a cancel), and the session sees the end.
  void CancelLaneLocked(Lane* lane, const grpc::Status& status) {
    if (lane->end_.has_value()) {
      return;
    }
    Frame f;
    f.message.set_lane(lane->id_);
    f.message.set_cancel(true);
    QueueLocked(std::move(f));
    lane->queued_.clear();  // left unread, as a cancelled call's messages are
    EndLaneLocked(lane, status);
  }

  void EndLaneLocked(Lane* lane, const grpc::Status& status) {
    if (lane->end_.has_value()) {
      return;
    }
    lane->end_ = status;
    // What came before the end is still read first (a session's `closed` precedes its end).
    if (lane->read_pending_) {
      lane->read_pending_ = false;
      lane->Post([events = lane->events_] { events->OnExecRead(false, {}); });
    }
    if (lane->waiting_.has_value()) {
      lane->waiting_.reset();
      --lane->writes_outstanding_;
      lane->Post([events = lane->events_] { events->OnExecWriteDone(false); });
    }
    MaybeDoneLocked(lane);
  }

  // A released lane whose end and last event have come is gone: OnExecDone, and it is deleted.
  void MaybeDoneLocked(Lane* lane) {
    if (!lane->released_ || !lane->end_.has_value() || lane->read_pending_ ||
        lane->writes_outstanding_ > 0) {
      return;
    }
    lanes_.erase(lane->id_);
    shared_->lanes.fetch_sub(1);
    lane->Post(
        [events = std::move(lane->events_), status = *lane->end_] { events->OnExecDone(status); });
    // Deleted on its own executor after its last event (it holds its call, and the call's lock
    // is held here).
    boost::asio::post(lane->executor_, [lane] { delete lane; });
  }

  void QueueLocked(Frame f) {
    if (ended_ || ending_ || write_failed_ || writes_done_) {
      if (f.completes != nullptr) {
        --f.completes->writes_outstanding_;
        f.completes->Post([events = f.completes->events_] { events->OnExecWriteDone(false); });
      }
      return;
    }
    frames_.push_back(std::move(f));
    MaybeWriteLocked();
  }

  void MaybeWriteLocked() {
    if (writing_ || ended_ || ending_ || write_failed_ || writes_done_) {
      return;
    }
    if (frames_.empty()) {
      if (closing_) {
        writes_done_ = true;
        StartWritesDone();
      }
      return;
    }
    writing_ = true;
    in_flight_ = std::move(frames_.front());
    frames_.pop_front();
    StartWrite(&in_flight_.message);
  }

  std::shared_ptr<Shared> shared_;
  std::shared_ptr<Call> self_;
  grpc::ClientContext context_;
  std::mutex mu_;
  std::map<uint64_t, Lane*> lanes_;
  uint64_t last_lane_ = 0;
  std::deque<Frame> frames_;
  Frame in_flight_;
  bool writing_ = false;
  bool write_failed_ = false;
  // CloseWrites was called; StartWritesDone was.
  bool closing_ = false;
  bool writes_done_ = false;
  bool ended_ = false;
  // The read failed: the call is finishing (its hold is gone), no write may start on it.
  bool ending_ = false;
  bool received_any_ = false;
  pb::SessionsResponse response_;
};

void Lane::Write(pb::SessionRequest request) { call_->LaneWrite(this, std::move(request)); }
void Lane::Read() { call_->LaneRead(this); }
void Lane::CloseWrites() { call_->LaneCloseWrites(this); }
void Lane::Cancel() { call_->LaneCancel(this); }
void Lane::Release() { call_->LaneRelease(this); }

ExecLanes::ExecLanes(pb::ExecService::StubInterface* stub)
    : stub_(stub), shared_(std::make_shared<Shared>()) {}

ExecLanes::~ExecLanes() {
  std::shared_ptr<Call> current;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    current = std::move(shared_->current);
  }
  if (current != nullptr) {
    current->Cancel();
  }
}

ExecStream* ExecLanes::Open(std::shared_ptr<ExecStreamEvents> events,
                            boost::asio::any_io_executor executor, pb::SessionRequest& open,
                            const runtime::TraceContext& trace) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    std::shared_ptr<Call> call;
    {
      std::lock_guard<std::mutex> lock(shared_->mu);
      if (shared_->unsupported) {
        return nullptr;
      }
      if (shared_->current == nullptr) {
        shared_->current = std::make_shared<Call>(shared_);
        shared_->current->Start(stub_);
      }
      call = shared_->current;
    }
    if (Lane* lane = call->OpenLane(events, executor, open, trace)) {
      return lane;
    }
    // That stream ended just now: the next one.
    std::lock_guard<std::mutex> lock(shared_->mu);
    if (shared_->current == call) {
      shared_->current.reset();
    }
  }
  return nullptr;
}

int64_t ExecLanes::lanes() const { return shared_->lanes.load(); }

void ExecLanes::CloseStreams() {
  std::shared_ptr<Call> current;
  {
    std::lock_guard<std::mutex> lock(shared_->mu);
    current = std::move(shared_->current);
  }
  if (current != nullptr) {
    current->CloseWrites();
  }
}

}  // namespace podgate::edge
