#include "support/exec_lanes.h"

#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"

namespace podgate::testing {

namespace pb = podgate::exec::v1;

namespace {

grpc::Status EndStatus(const pb::LaneEnd& end) {
  return grpc::Status(static_cast<grpc::StatusCode>(end.code()), end.message());
}

}  // namespace

// One lane, driven as a Session stream is.
class LaneStream final : public SessionStream {
 public:
  LaneStream(std::shared_ptr<ExecLanes> lanes, std::shared_ptr<ExecLanes::LaneState> state,
             absl::Duration deadline, std::string traceparent)
      : lanes_(std::move(lanes)),
        state_(std::move(state)),
        deadline_(absl::Now() + deadline),
        traceparent_(std::move(traceparent)) {}

  ~LaneStream() override {
    if (!finished_) {
      TryCancel();
    }
    std::lock_guard<std::mutex> lock(lanes_->mu_);
    if (id_ != 0) {
      lanes_->lanes_.erase(id_);
    }
  }

  bool Write(const pb::SessionRequest& request) override {
    const int64_t size = static_cast<int64_t>(request.ByteSizeLong());
    {
      std::unique_lock<std::mutex> lock(lanes_->mu_);
      if (!lanes_->cv_.wait_until(lock, absl::ToChronoTime(deadline_), [&] {
            return state_->send_credit > 0 || state_->end.has_value();
          })) {
        return false;
      }
      if (state_->end.has_value()) {
        return false;
      }
      state_->send_credit -= size;
    }
    pb::SessionsRequest frame;
    *frame.mutable_message() = request;
    if (id_ == 0) {
      // Numbered as its first message is written: numbers go up in the order lanes open.
      frame.set_traceparent(traceparent_);
      id_ = lanes_->WriteFirst(state_, &frame);
      return id_ != 0;
    }
    frame.set_lane(id_);
    return lanes_->WriteRaw(frame);
  }

  bool Read(pb::SessionResponse* response) override {
    int64_t credit = 0;
    {
      std::unique_lock<std::mutex> lock(lanes_->mu_);
      if (!lanes_->cv_.wait_until(lock, absl::ToChronoTime(deadline_), [&] {
            return !state_->queued.empty() || state_->end.has_value();
          })) {
        state_->end = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
        lock.unlock();
        SendCancel();
        return false;
      }
      if (state_->queued.empty()) {
        return false;
      }
      *response = std::move(state_->queued.front());
      state_->queued.pop_front();
      state_->taken += static_cast<int64_t>(response->ByteSizeLong());
      if (state_->taken >= ExecLanes::kResponseWindow / 4) {
        credit = state_->taken;
        state_->taken = 0;
      }
    }
    if (credit > 0 && id_ != 0) {
      pb::SessionsRequest frame;
      frame.set_lane(id_);
      frame.set_credit(static_cast<uint64_t>(credit));
      lanes_->WriteRaw(frame);
    }
    return true;
  }

  bool WritesDone() override {
    if (id_ == 0) {
      return false;
    }
    pb::SessionsRequest frame;
    frame.set_lane(id_);
    frame.set_writes_done(true);
    return lanes_->WriteRaw(frame);
  }

  grpc::Status Finish() override {
    finished_ = true;
    std::unique_lock<std::mutex> lock(lanes_->mu_);
    if (!lanes_->cv_.wait_until(lock, absl::ToChronoTime(deadline_),
                                [&] { return state_->end.has_value(); })) {
      state_->end = grpc::Status(grpc::StatusCode::DEADLINE_EXCEEDED, "Deadline Exceeded");
      lock.unlock();
      SendCancel();
      lock.lock();
    }
    return *state_->end;
  }

  void TryCancel() override {
    {
      std::lock_guard<std::mutex> lock(lanes_->mu_);
      if (!state_->end.has_value()) {
        state_->end = grpc::Status(grpc::StatusCode::CANCELLED, "Cancelled");
      }
      state_->detached = true;
      lanes_->cv_.notify_all();
    }
    SendCancel();
  }

 private:
  void SendCancel() {
    if (id_ == 0) {
      return;
    }
    pb::SessionsRequest frame;
    frame.set_lane(id_);
    frame.set_cancel(true);
    lanes_->WriteRaw(frame);
  }

  std::shared_ptr<ExecLanes> lanes_;
  // 0 until the first message is written.
  uint64_t id_ = 0;
  std::shared_ptr<ExecLanes::LaneState> state_;
  const absl::Time deadline_;
  const std::string traceparent_;
  bool finished_ = false;
};

ExecLanes::ExecLanes(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline)
    : stub_(pb::ExecService::NewStub(std::move(channel))) {
  ctx_.set_deadline(absl::ToChronoTime(absl::Now() + deadline));
  stream_ = stub_->Sessions(&ctx_);
  reader_ = std::thread([this] { ReadLoop(); });
}

ExecLanes::~ExecLanes() {
  Cancel();
  reader_.join();
}

std::shared_ptr<ExecLanes> ExecLanes::For(const std::shared_ptr<grpc::Channel>& channel) {
  static std::mutex mu;
  static std::map<grpc::Channel*, std::weak_ptr<ExecLanes>> streams;
  std::lock_guard<std::mutex> lock(mu);
  std::weak_ptr<ExecLanes>& weak = streams[channel.get()];
  std::shared_ptr<ExecLanes> lanes = weak.lock();
  if (lanes == nullptr || lanes->ended()) {
    lanes = std::make_shared<ExecLanes>(channel);
    weak = lanes;
  }
  return lanes;
}

std::unique_ptr<SessionStream> ExecLanes::Open(absl::Duration deadline,
                                               const std::string& traceparent) {
  auto state = std::make_shared<LaneState>();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (ended_) {
      state->end =
          status_.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "the stream ended") : status_;
    }
  }
  return std::make_unique<LaneStream>(shared_from_this(), std::move(state), deadline, traceparent);
}

uint64_t ExecLanes::WriteFirst(const std::shared_ptr<LaneState>& state,
                               pb::SessionsRequest* frame) {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  if (writes_done_ || finished_) {
    return 0;
  }
  uint64_t id;
  {
    std::lock_guard<std::mutex> lock(mu_);
    id = next_lane_++;
    lanes_[id] = state;
  }
  frame->set_lane(id);
  return stream_->Write(*frame) ? id : 0;
}

uint64_t ExecLanes::NextLane() {
  std::lock_guard<std::mutex> write_lock(write_mu_);
  std::lock_guard<std::mutex> lock(mu_);
  return next_lane_++;
}

uint64_t ExecLanes::LastLane() const {
  std::lock_guard<std::mutex> lock(mu_);
  return next_lane_ - 1;
}

bool ExecLanes::WriteRaw(const pb::SessionsRequest& request) {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (writes_done_ || finished_) {
    return false;
  }
  return stream_->Write(request);
}

void ExecLanes::WritesDone() {
  std::lock_guard<std::mutex> lock(write_mu_);
  if (!writes_done_ && !finished_) {
    writes_done_ = true;
    stream_->WritesDone();
  }
}

grpc::Status ExecLanes::Finish() {
  std::unique_lock<std::mutex> lock(mu_);
  cv_.wait(lock, [&] { return ended_; });
  return status_;
}

void ExecLanes::Cancel() { ctx_.TryCancel(); }

bool ExecLanes::ended() const {
  std::lock_guard<std::mutex> lock(mu_);
  return ended_;
}

int64_t ExecLanes::stray_frames() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stray_;
}

void ExecLanes::ReadLoop() {
  pb::SessionsResponse frame;
  while (stream_->Read(&frame)) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = lanes_.find(frame.lane());
    if (it == lanes_.end() || it->second->detached) {
      ++stray_;
      continue;
    }
    LaneState& lane = *it->second;
    switch (frame.kind_case()) {
      case pb::SessionsResponse::kMessage:
        lane.queued.push_back(std::move(*frame.mutable_message()));
        break;
      case pb::SessionsResponse::kCredit:
        lane.send_credit += static_cast<int64_t>(frame.credit());
        break;
      case pb::SessionsResponse::kEnd:
        lane.end = EndStatus(frame.end());
        break;
      default:
        break;
    }
    cv_.notify_all();
  }
  grpc::Status status;
  {
    std::lock_guard<std::mutex> lock(write_mu_);
    finished_ = true;
    status = stream_->Finish();
  }
  std::lock_guard<std::mutex> lock(mu_);
  ended_ = true;
  status_ = status;
  for (auto& [id, lane] : lanes_) {
    if (!lane->end.has_value()) {
      lane->end = status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE,
                                             "the Sessions stream ended before the lane")
                              : status;
    }
  }
  cv_.notify_all();
}

bool ExecSessionsOverLanes() {
  const char* v = std::getenv("PODGATE_TEST_EXEC_LANES");
  return v != nullptr && std::string(v) == "1";
}

}  // namespace podgate::testing
