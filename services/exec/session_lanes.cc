// The Sessions call: lanes, their flow control, and the order of what they report.
#include "exec/session_lanes.h"

#include <algorithm>
#include <atomic>
#include <deque>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "absl/container/flat_hash_map.h"
#include "absl/strings/str_cat.h"
#include "exec/session_call.h"
#include "exec/session_reactor.h"
#include "runtime/log.h"
#include "runtime/trace.h"

namespace podgate::exec {

namespace pb = podgate::exec::v1;

namespace {

class Lanes;

// One lane: a session's call. Its state is guarded by its Lanes' mutex.
class Lane final : public SessionCall {
 public:
  Lane(Lanes* lanes, uint64_t id, runtime::TraceContext trace)
      : lanes_(lanes), id_(id), trace_(std::move(trace)) {}

  void StartRead(pb::SessionRequest* request) override;
  void StartWrite(const pb::SessionResponse* response) override;
  void Finish(const grpc::Status& status) override;
  bool IsCancelled() const override { return cancelled_.load(); }
  std::string peer() const override;
  runtime::TraceContext trace() const override { return trace_; }

 private:
  friend class Lanes;

  Lanes* const lanes_;
  const uint64_t id_;
  const runtime::TraceContext trace_;
  std::shared_ptr<Session> session_;
  // Received and not yet taken by the session, with their sizes.
  std::list<std::pair<pb::SessionRequest, int64_t>> queued_;
  // The session's read waiting for a message.
  pb::SessionRequest* read_into_ = nullptr;
  // The session's write waiting for credit.
  const pb::SessionResponse* waiting_write_ = nullptr;
  // What exec may still send (may go below zero by one message).
  int64_t send_credit_ = kLaneResponseWindowBytes;
  // Bytes received and not yet credited back (queued or taken), and of them those taken.
  int64_t received_ = 0;
  int64_t taken_ = 0;
  // The client half-closed the lane; the client left it (or the stream broke, or the client
  // broke its window); the session called Finish; its OnDone is queued.
  bool writes_done_ = false;
  std::atomic<bool> cancelled_{false};
  bool finished_ = false;
  bool done_posted_ = false;
};

// The Sessions call's reactor. Owned by itself (self_) until gRPC's OnDone and the last queued
// report have let it go.
class Lanes final : public grpc::ServerBidiReactor<pb::SessionsRequest, pb::SessionsResponse>,
                    public std::enable_shared_from_this<Lanes> {
 public:
  Lanes(SessionHub* hub, grpc::CallbackServerContext* context)
      : hub_(hub), context_(context), peer_(context->peer()) {
    hub_->metrics()->session_streams.Increment();
  }
  ~Lanes() override { hub_->metrics()->session_streams.Decrement(); }

  void Begin() {
    self_ = shared_from_this();
    std::weak_ptr<Lanes> weak = self_;
    listener_ = hub_->AddDrainListener([weak] {
      if (auto lanes = weak.lock()) {
        lanes->OnDrain();
      }
    });
    StartRead(&request_);
  }

  const std::string& peer() const { return peer_; }

  void OnReadDone(bool ok) override;
  void OnWriteDone(bool ok) override;
  void OnCancel() override;
  void OnDone() override;

  // The lanes' operations (Lane's SessionCall), called by sessions with their lock held.
  void LaneRead(Lane* lane, pb::SessionRequest* request);
  void LaneWrite(Lane* lane, const pb::SessionResponse* response);
  void LaneFinish(Lane* lane, const grpc::Status& status);

 private:
  // A message to the client. A lane's `message` borrows the session's SessionResponse (it stays
  // the session's until its OnWriteDone), given back before the frame goes.
  struct Frame {
    pb::SessionsResponse message;
    Lane* data_of = nullptr;
    Lane* end_of = nullptr;
  };

  void OnDrain();
  // Queues a report to a session; they run in order (RunReports), never with mu_ held.
  void PostLocked(std::function<void()> report) { reports_.push_back(std::move(report)); }
  // Runs the queued reports unless another thread is running them.
  void RunReports();
  // From a session's call: the queued reports run on the timer thread.
  void ScheduleReportsLocked();
  void HandleRequestLocked(pb::SessionsRequest& request);
  void OpenLaneLocked(uint64_t id, pb::SessionsRequest& request);
  void DeliverLocked(Lane* lane, pb::SessionRequest message);
  void CreditLocked(Lane* lane);
  void SendEndLocked(uint64_t lane, const grpc::Status& status, Lane* end_of);
  void QueueDataLocked(Lane* lane, const pb::SessionResponse* response);
  void MaybeWriteLocked();
  void CancelLaneLocked(Lane* lane);
  void PostDoneLocked(Lane* lane);
  // The stream is gone (or ends in error): every lane breaks, queued frames are dropped.
  void BreakLocked();
  void ProtocolErrorLocked(const std::string& message);
  void MaybeFinishLocked();
  void DropFrame(Frame& frame);

  SessionHub* const hub_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  std::shared_ptr<Lanes> self_;
  uint64_t listener_ = 0;

  std::mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Lane>> lanes_;
  uint64_t last_lane_ = 0;
  pb::SessionsRequest request_;
  std::deque<Frame> frames_;
  Frame in_flight_;
  bool writing_ = false;
  bool reading_ = true;
  // The client half-closed the stream; the stream broke; exec shuts down; Finish was called.
  bool read_closed_ = false;
  bool broken_ = false;
  bool draining_ = false;
  bool finish_called_ = false;
  grpc::Status error_;
  std::deque<std::function<void()>> reports_;
  bool reporting_ = false;
  bool report_scheduled_ = false;
};

// --- Lane -------------------------------------------------------------------------------------

void Lane::StartRead(pb::SessionRequest* request) { lanes_->LaneRead(this, request); }
void Lane::StartWrite(const pb::SessionResponse* response) { lanes_->LaneWrite(this, response); }
void Lane::Finish(const grpc::Status& status) { lanes_->LaneFinish(this, status); }
std::string Lane::peer() const { return lanes_->peer(); }

// --- reports ------------------------------------------------------------------------------------

void Lanes::RunReports() {
  // The last report may end the call, and gRPC's OnDone (another thread) let go of self_.
  std::shared_ptr<Lanes> keep = shared_from_this();
  std::unique_lock<std::mutex> lock(mu_);
  if (reporting_) {
    return;  // the thread running them runs these too
  }
  reporting_ = true;
  while (!reports_.empty()) {
    std::function<void()> report = std::move(reports_.front());
    reports_.pop_front();
    lock.unlock();
    report();
    lock.lock();
  }
  reporting_ = false;
}

void Lanes::ScheduleReportsLocked() {
  if (reporting_ || report_scheduled_ || reports_.empty()) {
    return;
  }
  report_scheduled_ = true;
  std::shared_ptr<Lanes> self = shared_from_this();
  hub_->timers()->After(absl::ZeroDuration(), [self] {
    {
      std::lock_guard<std::mutex> lock(self->mu_);
      self->report_scheduled_ = false;
    }
    self->RunReports();
  });
}

// --- the client's messages ------------------------------------------------------------------

void Lanes::OnReadDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!ok) {
      reading_ = false;
      if (context_->IsCancelled()) {
        BreakLocked();
      } else if (!read_closed_) {
        // A half-close: every lane is half-closed; the stream ends once they have ended.
        read_closed_ = true;
        for (auto& [id, lane] : lanes_) {
          Lane* l = lane.get();
          l->writes_done_ = true;
          if (l->read_into_ != nullptr && l->queued_.empty()) {
            l->read_into_ = nullptr;
            PostLocked([s = l->session_] { s->OnReadDone(false); });
          }
        }
        MaybeFinishLocked();
      }
    } else {
      HandleRequestLocked(request_);
      if (error_.ok() && !broken_) {
        StartRead(&request_);
      } else {
        reading_ = false;
      }
    }
  }
  RunReports();
}

void Lanes::HandleRequestLocked(pb::SessionsRequest& request) {
  const uint64_t id = request.lane();
  if (id == 0) {
    ProtocolErrorLocked("a Sessions message named lane 0");
    return;
  }
  auto it = lanes_.find(id);
  if (it == lanes_.end()) {
    if (id <= last_lane_) {
      if (request.has_message() && request.message().has_open()) {
        // An open is a lane's first message: it cannot cross the lane's end. The client
        // numbered this lane below one it opened before.
        hub_->metrics()->lane_refusals_total.Add({{"reason", "order"}}).Increment();
        SendEndLocked(id,
                      grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   absl::StrCat("lane ", id, " opened after lane ", last_lane_,
                                                ": a new lane's number must be above every "
                                                "lane opened before on the stream")),
                      nullptr);
      }
      return;  // a lane that has ended: the message crossed its end
    }
    if (request.kind_case() != pb::SessionsRequest::kMessage) {
      ProtocolErrorLocked(absl::StrCat("lane ", id, " was never opened (its first message must ",
                                       "be a `message`)"));
      return;
    }
    OpenLaneLocked(id, request);
    return;
  }
  Lane* lane = it->second.get();
  switch (request.kind_case()) {
    case pb::SessionsRequest::kMessage:
      DeliverLocked(lane, std::move(*request.mutable_message()));
      break;
    case pb::SessionsRequest::kCredit: {
      lane->send_credit_ = wire::AddLaneCredit(lane->send_credit_, request.credit());
      if (lane->waiting_write_ != nullptr && lane->send_credit_ > 0 && !lane->cancelled_) {
        const pb::SessionResponse* response = lane->waiting_write_;
        lane->waiting_write_ = nullptr;
        QueueDataLocked(lane, response);
      }
      break;
    }
    case pb::SessionsRequest::kWritesDone:
      lane->writes_done_ = true;
      if (lane->read_into_ != nullptr && lane->queued_.empty()) {
        lane->read_into_ = nullptr;
        PostLocked([s = lane->session_] { s->OnReadDone(false); });
      }
      break;
    case pb::SessionsRequest::kCancel:
      CancelLaneLocked(lane);
      break;
    case pb::SessionsRequest::KIND_NOT_SET:
      ProtocolErrorLocked(absl::StrCat("a Sessions message for lane ", id, " carried nothing"));
      break;
  }
}

void Lanes::OpenLaneLocked(uint64_t id, pb::SessionsRequest& request) {
  last_lane_ = id;
  if (draining_) {
    hub_->metrics()->lane_refusals_total.Add({{"reason", "shutdown"}}).Increment();
    SendEndLocked(id, grpc::Status(grpc::StatusCode::UNAVAILABLE, "exec is shutting down"),
                  nullptr);
    return;
  }
  if (lanes_.size() >= kMaxLanesPerStream) {
    hub_->metrics()->lane_refusals_total.Add({{"reason", "limit"}}).Increment();
    SendEndLocked(id,
                  grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat(kMaxLanesPerStream, " lanes are open on this stream")),
                  nullptr);
    return;
  }
  auto lane = std::make_unique<Lane>(this, id, runtime::ContinueOrStart(request.traceparent()));
  Lane* l = lane.get();
  l->session_ = std::make_shared<Session>(hub_, l);
  lanes_.emplace(id, std::move(lane));
  hub_->metrics()->session_lanes.Increment();
  PostLocked([s = l->session_] { s->Start(); });
  DeliverLocked(l, std::move(*request.mutable_message()));
}

void Lanes::DeliverLocked(Lane* lane, pb::SessionRequest message) {
  if (lane->finished_ || lane->cancelled_ || lane->writes_done_) {
    return;  // nobody reads it any more (a client writing after its half-close is ignored)
  }
  if (lane->received_ >= kLaneRequestWindowBytes) {
    // Past the window: the lane ends here; its session sees a client that went away.
    hub_->metrics()->lane_refusals_total.Add({{"reason", "window"}}).Increment();
    log::Warn("lane client sent past its window",
              {{"peer", peer_}, {"lane", static_cast<int64_t>(lane->id_)}});
    SendEndLocked(lane->id_,
                  grpc::Status(grpc::StatusCode::RESOURCE_EXHAUSTED,
                               absl::StrCat("the client sent more than the lane's window of ",
                                            kLaneRequestWindowBytes, " bytes without credit")),
                  nullptr);
    CancelLaneLocked(lane);
    return;
  }
  const int64_t size = static_cast<int64_t>(message.ByteSizeLong());
  lane->received_ += size;
  if (lane->read_into_ != nullptr) {
    *lane->read_into_ = std::move(message);
    lane->read_into_ = nullptr;
    lane->taken_ += size;
    CreditLocked(lane);
    PostLocked([s = lane->session_] { s->OnReadDone(true); });
    return;
  }
  lane->queued_.emplace_back(std::move(message), size);
}

void Lanes::CreditLocked(Lane* lane) {
  // Given back in quarters of the window: a client at its window always gets some.
  if (lane->taken_ < kLaneRequestWindowBytes / 4) {
    return;
  }
  Frame f;
  f.message.set_lane(lane->id_);
  f.message.set_credit(static_cast<uint64_t>(lane->taken_));
  lane->received_ -= lane->taken_;
  lane->taken_ = 0;
  frames_.push_back(std::move(f));
  MaybeWriteLocked();
}

// --- the lanes' operations ---------------------------------------------------------------------

void Lanes::LaneRead(Lane* lane, pb::SessionRequest* request) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!lane->queued_.empty() && !lane->cancelled_) {
    auto& [message, size] = lane->queued_.front();
    *request = std::move(message);
    lane->taken_ += size;
    lane->queued_.pop_front();
    CreditLocked(lane);
    PostLocked([s = lane->session_] { s->OnReadDone(true); });
  } else if (lane->writes_done_ || lane->cancelled_ || lane->finished_) {
    PostLocked([s = lane->session_] { s->OnReadDone(false); });
  } else {
    lane->read_into_ = request;
  }
  ScheduleReportsLocked();
}

void Lanes::LaneWrite(Lane* lane, const pb::SessionResponse* response) {
  std::lock_guard<std::mutex> lock(mu_);
  if (lane->cancelled_ || broken_) {
    PostLocked([s = lane->session_] { s->OnWriteDone(false); });
  } else if (lane->send_credit_ > 0) {
    QueueDataLocked(lane, response);
  } else {
    lane->waiting_write_ = response;  // until the client gives credit
  }
  ScheduleReportsLocked();
}

void Lanes::LaneFinish(Lane* lane, const grpc::Status& status) {
  std::lock_guard<std::mutex> lock(mu_);
  lane->finished_ = true;
  if (lane->read_into_ != nullptr) {
    lane->read_into_ = nullptr;
    PostLocked([s = lane->session_] { s->OnReadDone(false); });
  }
  if (lane->cancelled_ || broken_) {
    PostDoneLocked(lane);  // the client has gone: nobody reads the end
  } else {
    SendEndLocked(lane->id_, status, lane);  // OnDone once it is written
  }
  ScheduleReportsLocked();
}

// --- writing ------------------------------------------------------------------------------------

void Lanes::SendEndLocked(uint64_t lane, const grpc::Status& status, Lane* end_of) {
  Frame f;
  f.message.set_lane(lane);
  f.message.mutable_end()->set_code(static_cast<int32_t>(status.error_code()));
  f.message.mutable_end()->set_message(status.error_message());
  f.end_of = end_of;
  frames_.push_back(std::move(f));
  MaybeWriteLocked();
}

void Lanes::QueueDataLocked(Lane* lane, const pb::SessionResponse* response) {
  lane->send_credit_ -= static_cast<int64_t>(response->ByteSizeLong());
  Frame f;
  f.message.set_lane(lane->id_);
  // Borrowed: the session keeps it unchanged until its OnWriteDone (DropFrame gives it back).
  f.message.set_allocated_message(const_cast<pb::SessionResponse*>(response));
  f.data_of = lane;
  frames_.push_back(std::move(f));
  MaybeWriteLocked();
}

void Lanes::DropFrame(Frame& frame) {
  if (frame.data_of != nullptr) {
    (void)frame.message.release_message();  // the session's, not ours
  }
}

void Lanes::MaybeWriteLocked() {
  if (writing_ || broken_ || finish_called_ || frames_.empty()) {
    return;
  }
  writing_ = true;
  in_flight_ = std::move(frames_.front());
  frames_.pop_front();
  StartWrite(&in_flight_.message);
}

void Lanes::OnWriteDone(bool ok) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    writing_ = false;
    Frame done = std::move(in_flight_);
    in_flight_ = Frame{};
    DropFrame(done);
    if (done.data_of != nullptr) {
      PostLocked([s = done.data_of->session_, ok] { s->OnWriteDone(ok); });
    }
    if (done.end_of != nullptr) {
      PostDoneLocked(done.end_of);
    }
    if (!ok) {
      BreakLocked();  // a write fails only when the stream is gone
    }
    MaybeWriteLocked();
    MaybeFinishLocked();
  }
  RunReports();
}

// --- ends
// -----------------------------------------------------------------------------------------

void Lanes::CancelLaneLocked(Lane* lane) {
  if (lane->cancelled_ || lane->done_posted_) {
    return;
  }
  lane->cancelled_ = true;
  lane->queued_.clear();
  std::shared_ptr<Session> s = lane->session_;
  PostLocked([s] { s->OnCancel(); });
  if (lane->read_into_ != nullptr) {
    lane->read_into_ = nullptr;
    PostLocked([s] { s->OnReadDone(false); });
  }
  if (lane->waiting_write_ != nullptr) {
    lane->waiting_write_ = nullptr;
    PostLocked([s] { s->OnWriteDone(false); });
  }
}

void Lanes::PostDoneLocked(Lane* lane) {
  if (lane->done_posted_) {
    return;
  }
  lane->done_posted_ = true;
  PostLocked([this, lane] {
    lane->session_->OnDone();
    std::unique_ptr<Lane> gone;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = lanes_.find(lane->id_);
      gone = std::move(it->second);
      lanes_.erase(it);
      hub_->metrics()->session_lanes.Decrement();
      MaybeFinishLocked();
    }
    // `gone` (and perhaps its session) is destroyed here, outside the lock.
  });
}

void Lanes::BreakLocked() {
  if (broken_) {
    return;
  }
  broken_ = true;
  for (auto& [id, lane] : lanes_) {
    CancelLaneLocked(lane.get());
  }
  for (Frame& f : frames_) {
    DropFrame(f);
    if (f.data_of != nullptr) {
      PostLocked([s = f.data_of->session_] { s->OnWriteDone(false); });
    }
    if (f.end_of != nullptr) {
      PostDoneLocked(f.end_of);
    }
  }
  frames_.clear();
  MaybeFinishLocked();
}

void Lanes::ProtocolErrorLocked(const std::string& message) {
  log::Warn("Sessions stream refused", {{"peer", peer_}, {"error", message}});
  error_ = grpc::Status(grpc::StatusCode::INVALID_ARGUMENT, message);
  BreakLocked();
}

void Lanes::OnDrain() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    draining_ = true;
    MaybeFinishLocked();
  }
  RunReports();
}

void Lanes::MaybeFinishLocked() {
  if (finish_called_ || !lanes_.empty() || writing_ || (!frames_.empty() && !broken_)) {
    return;
  }
  if (!error_.ok()) {
    Finish(error_);
  } else if (broken_) {
    Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the stream broke"));
  } else if (read_closed_) {
    Finish(grpc::Status::OK);
  } else if (draining_) {
    Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE, "exec is shutting down"));
  } else {
    return;
  }
  finish_called_ = true;
}

void Lanes::OnCancel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    BreakLocked();
  }
  RunReports();
}

void Lanes::OnDone() {
  hub_->RemoveDrainListener(listener_);
  std::shared_ptr<Lanes> self;
  {
    std::lock_guard<std::mutex> lock(mu_);
    self = std::move(self_);
  }
  // A report still queued (none should be: every lane has ended) holds its own reference.
}

}  // namespace

grpc::ServerBidiReactor<pb::SessionsRequest, pb::SessionsResponse>* StartSessions(
    SessionHub* hub, grpc::CallbackServerContext* context) {
  auto lanes = std::make_shared<Lanes>(hub, context);
  lanes->Begin();
  return lanes.get();
}

}  // namespace podgate::exec
