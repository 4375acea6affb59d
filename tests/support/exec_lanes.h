// A blocking client of exec's Sessions stream (many sessions as lanes of one stream), with
// the lanes' flow control as exec.proto states it: the tests' stand-in for what edge does, and
// the way ExecSession runs over lanes (PODGATE_TEST_EXEC_LANES=1 runs a whole suite so).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "wire/lanes.h"

namespace podgate::testing {

// What ExecSession drives: a Session stream of its own, or a lane.
class SessionStream {
 public:
  virtual ~SessionStream() = default;
  virtual bool Write(const podgate::exec::v1::SessionRequest& request) = 0;
  virtual bool Read(podgate::exec::v1::SessionResponse* response) = 0;
  virtual bool WritesDone() = 0;
  // Once, after the last Read; the stream's (or lane's) status.
  virtual grpc::Status Finish() = 0;
  // Leaves the stream as a client that went away does.
  virtual void TryCancel() = 0;
};

class ExecLanes : public std::enable_shared_from_this<ExecLanes> {
 public:
  // The windows (exec.proto).
  static constexpr int64_t kResponseWindow = wire::kLaneResponseWindowBytes;
  static constexpr int64_t kRequestWindow = wire::kLaneRequestWindowBytes;

  // Opens a Sessions stream on `channel`; it lasts up to `deadline`.
  ExecLanes(std::shared_ptr<grpc::Channel> channel, absl::Duration deadline = absl::Minutes(10));
  // Cancels the stream if it is still open and waits for its reader.
  ~ExecLanes();

  // The process-wide stream on `channel` (one per channel, as edge keeps one per connection to
  // exec): reused while it is open, a new one once it has ended.
  static std::shared_ptr<ExecLanes> For(const std::shared_ptr<grpc::Channel>& channel);

  // A new lane, numbered when its first message is written (under the lock of the stream's
  // writes, so numbers go up in the order lanes open); `deadline` bounds each of its waits.
  std::unique_ptr<SessionStream> Open(absl::Duration deadline = absl::Seconds(60),
                                      const std::string& traceparent = "");

  // The raw stream, for tests of the protocol itself: a frame as it is (no flow control).
  bool WriteRaw(const podgate::exec::v1::SessionsRequest& request);
  // A lane number nobody has used (for raw frames), and the highest number handed out.
  uint64_t NextLane();
  uint64_t LastLane() const;

  // Half-closes the stream; Finish waits for its end and returns its status.
  void WritesDone();
  grpc::Status Finish();
  void Cancel();
  bool ended() const;

  // Frames received for lanes no longer open here (e.g. exec's `end` after a cancel).
  int64_t stray_frames() const;

 private:
  friend class LaneStream;
  struct LaneState {
    std::deque<podgate::exec::v1::SessionResponse> queued;
    std::optional<grpc::Status> end;
    int64_t send_credit = kRequestWindow;
    int64_t taken = 0;
    bool detached = false;
  };

  void ReadLoop();
  // Numbers a lane and writes its first frame; 0 when the stream is closed for writes.
  uint64_t WriteFirst(const std::shared_ptr<LaneState>& state,
                      podgate::exec::v1::SessionsRequest* frame);

  std::unique_ptr<podgate::exec::v1::ExecService::Stub> stub_;
  grpc::ClientContext ctx_;
  std::unique_ptr<grpc::ClientReaderWriter<podgate::exec::v1::SessionsRequest,
                                           podgate::exec::v1::SessionsResponse>>
      stream_;
  std::mutex write_mu_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, std::shared_ptr<LaneState>> lanes_;
  uint64_t next_lane_ = 1;
  bool ended_ = false;
  bool finished_ = false;
  bool writes_done_ = false;
  grpc::Status status_;
  int64_t stray_ = 0;
  std::thread reader_;
};

// Whether PODGATE_TEST_EXEC_LANES asks ExecSession to run over lanes.
bool ExecSessionsOverLanes();

}  // namespace podgate::testing
