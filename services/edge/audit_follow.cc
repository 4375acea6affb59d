#include "edge/audit_follow.h"

#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <set>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "edge/http_reply.h"
#include "edge/live_count.h"
#include "grpcpp/grpcpp.h"
#include "nlohmann/json.hpp"
#include "wire/status.h"

namespace podgate::edge {
namespace {

class AuditFollowStream;

// The open streams, for the drain. Process-wide: one edge per process.
absl::Mutex g_streams_mu(absl::kConstInit);
std::set<AuditFollowStream*>& Streams() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_streams_mu) {
  static auto* const streams = new std::set<AuditFollowStream*>();
  return *streams;
}
// Set by CancelAuditFollowStreams: a stream starting after it is cancelled at once.
bool g_draining ABSL_GUARDED_BY(g_streams_mu) = false;
// Streams not yet destroyed: a stream lives until both its audit call and its HTTP response
// are over (the response releases it after the last chunk is written or the client left).
constinit LiveCount g_live_streams;

class AuditFollowStream final : public http::StreamProducer,
                                public grpc::ClientReadReactor<podgate::audit::v1::QueryResponse>,
                                public std::enable_shared_from_this<AuditFollowStream> {
 public:
  AuditFollowStream(EdgeContext* context, podgate::audit::v1::QueryRequest request,
                    std::string user, bool json_lines)
      : context_(context),
        request_(std::move(request)),
        user_(std::move(user)),
        json_lines_(json_lines) {}

  ~AuditFollowStream() override { context_->limits->ReleaseAuditFollow(user_); }

  void Cancel() {
    grpc_context_.TryCancel();
    // A paused read starts no more: the call may end (OnDone) without the client reading.
    bool release;
    {
      absl::MutexLock lock(&mu_);
      release = read_paused_ && DropHoldLocked();
    }
    if (release) {
      RemoveHold();
    }
  }

  void OnStart(std::shared_ptr<http::ResponseStream> stream) override {
    {
      absl::MutexLock lock(&mu_);
      stream_ = stream;
      self_ = shared_from_this();  // until the gRPC call is done
      hold_ = true;                // taken below, before the call starts
    }
    timer_ = std::make_unique<boost::asio::steady_timer>(stream->executor());
    ArmKeepalive();
    {
      // In the set before the call starts, whose OnDone takes it out; a stream that starts
      // after the drain's cancel (routed just before it) is cancelled here instead, and ends
      // with its "end" event like the others. gRPC applies a cancel made before the call.
      absl::MutexLock lock(&g_streams_mu);
      Streams().insert(this);
      if (g_draining) {
        grpc_context_.TryCancel();
      }
    }
    context_->audit->async()->Query(&grpc_context_, &request_, this);
    StartRead(&response_);
    // A paused read resumes from the HTTP side (OnWritable), outside the reactions: without a
    // hold the call could finish while paused and the resumed read would touch a call gRPC had
    // already destroyed. The hold goes once no read can start any more.
    AddHold();
    StartCall();
  }

  void OnWritable() override {
    absl::MutexLock lock(&mu_);
    if (read_paused_ && hold_) {
      read_paused_ = false;
      StartRead(&response_);
    }
  }

  void OnClose(std::string reason) override {
    bool release;
    {
      absl::MutexLock lock(&mu_);
      stream_.reset();
      release = read_paused_ && DropHoldLocked();  // nothing resumes it now
    }
    timer_->cancel();
    grpc_context_.TryCancel();
    if (release) {
      RemoveHold();
    }
  }

  void OnReadDone(bool ok) override {
    if (!ReadNext(ok)) {
      RemoveHold();  // no read starts on the call again: OnDone may follow
    }
  }

  void OnDone(const grpc::Status& status) override {
    // Counted until this function returns, not only until the stream is destroyed: the lambda
    // posted below may destroy the stream on an I/O thread while this gRPC thread still holds
    // copies of the connection's strand (`executor`, and post's own), and a strand copy must
    // not outlive the I/O context that edge's shutdown destroys once the count is zero.
    // Declared first: released after every other local.
    LiveCount::Member finishing{g_live_streams};
    {
      absl::MutexLock lock(&g_streams_mu);
      Streams().erase(this);
    }
    std::shared_ptr<AuditFollowStream> self;
    {
      absl::MutexLock lock(&mu_);
      done_ = true;
      if (stream_ != nullptr) {
        if (!status.ok()) {
          nlohmann::json error = {{"code", wire::StatusCodeName(status.error_code())},
                                  {"message", status.error_message()}};
          const std::string text =
              error.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
          stream_->Write(json_lines_ ? absl::StrCat("{\"error\":", text, "}\n")
                                     : absl::StrCat("event: end\ndata: ", text, "\n\n"));
        }
        stream_->End();
      }
      self = std::move(self_);
    }
    context_->metrics->ApiRequest("audit_follow",
                                  static_cast<int>(HttpStatusFor(status.error_code())));
    // The last reference goes with the lambda: the stream is destroyed on the connection's
    // strand (or with the I/O context, if it has stopped), never on this gRPC thread.
    boost::asio::any_io_executor executor = timer_->get_executor();
    boost::asio::post(executor, [self = std::move(self)] { self->timer_->cancel(); });
  }

 private:
  // Takes the read's message to the client and starts the next read, or leaves the read paused
  // until the client takes more (OnWritable). False when no read can start again: the hold is
  // dropped, and the caller removes it.
  bool ReadNext(bool ok) {
    absl::MutexLock lock(&mu_);
    if (!ok) {
      return !DropHoldLocked();  // the call is ending
    }
    std::string chunk;
    if (response_.has_record()) {
      const std::string json = ProtoJson(response_.record());
      chunk = json_lines_ ? absl::StrCat(json, "\n")
                          : absl::StrCat("event: record\ndata: ", json, "\n\n");
    } else if (response_.has_page_end() && !json_lines_) {
      chunk = "event: ready\ndata: {}\n\n";
    }
    response_.Clear();
    if (stream_ == nullptr) {
      return !DropHoldLocked();  // the client left; the cancel ends the call
    }
    if (!chunk.empty() && !stream_->Write(std::move(chunk))) {
      read_paused_ = true;  // OnWritable resumes
      return true;
    }
    StartRead(&response_);
    return true;
  }

  // True once: the caller removes the call's hold (outside mu_), after which no read starts.
  bool DropHoldLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    read_paused_ = false;
    return std::exchange(hold_, false);
  }

  void ArmKeepalive() {
    timer_->expires_after(std::chrono::seconds(kAuditKeepaliveSeconds));
    timer_->async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      auto self = weak.lock();
      if (ec || self == nullptr) {
        return;
      }
      std::shared_ptr<http::ResponseStream> stream;
      {
        absl::MutexLock lock(&self->mu_);
        if (self->stream_ == nullptr || self->done_) {
          return;
        }
        stream = self->stream_;
      }
      // Outside the lock: on the strand, a write over the hard limit closes the stream at once
      // and OnClose takes the lock.
      stream->Write(self->json_lines_ ? "\n" : ": keepalive\n\n");
      self->ArmKeepalive();
    });
  }

  LiveCount::Member live_{g_live_streams};  // first: destroyed last
  EdgeContext* const context_;
  podgate::audit::v1::QueryRequest request_;
  const std::string user_;
  const bool json_lines_;
  grpc::ClientContext grpc_context_;
  podgate::audit::v1::QueryResponse response_;
  std::unique_ptr<boost::asio::steady_timer> timer_;  // on the connection's strand

  absl::Mutex mu_;
  std::shared_ptr<http::ResponseStream> stream_ ABSL_GUARDED_BY(mu_);
  std::shared_ptr<AuditFollowStream> self_ ABSL_GUARDED_BY(mu_);
  bool read_paused_ ABSL_GUARDED_BY(mu_) = false;
  // The call's hold (taken before StartCall): a read may still start from outside the reactions.
  bool hold_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

void CancelAuditFollowStreams() {
  absl::MutexLock lock(&g_streams_mu);
  g_draining = true;
  for (AuditFollowStream* stream : Streams()) {
    stream->Cancel();
  }
}

bool WaitAuditFollowStreamsEnded(absl::Time deadline) { return g_live_streams.WaitNone(deadline); }

std::shared_ptr<http::StreamProducer> NewAuditFollowStream(EdgeContext* context,
                                                           podgate::audit::v1::QueryRequest request,
                                                           std::string user, bool json_lines) {
  return std::make_shared<AuditFollowStream>(context, std::move(request), std::move(user),
                                             json_lines);
}

}  // namespace podgate::edge
