#include "clients/audit_client.h"

#include <algorithm>
#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "clients/correlated_stream.h"
#include "runtime/ids.h"
#include "runtime/log.h"
#include "wire/time.h"

namespace podgate::clients {
namespace {

// audit.v1.Record as a correlated stream: events wait under their id until an ack or a
// rejection settles them, and an event whose stream broke is sent again (ids make resends
// idempotent).
class RecordProtocol {
 public:
  // The initial metadata by which audit says how many events one message may carry.
  static constexpr char kBatchMetadata[] = "podgate-record-batch-max";
  // At most this many events, and about this many bytes (the events' own sizes: a batch adds a
  // few bytes of framing per event), per message; audit takes 1,024 events and 4 MiB.
  static constexpr size_t kMaxBatchEvents = 256;
  static constexpr size_t kMaxBatchBytes = 1 << 20;

  using Request = audit::v1::RecordRequest;
  using Response = audit::v1::RecordResponse;
  using Result = absl::Status;

  // `stub` is the AuditClient's: the stream's state outlives it (see AuditClient::Core).
  explicit RecordProtocol(audit::v1::AuditService::Stub* stub)
      : stub_(stub), last_end_(std::make_shared<LastEnd>()) {}

  void Open(grpc::ClientContext* context,
            grpc::ClientBidiReactor<Request, Response>* reactor) const {
    stub_->async()->Record(context, reactor);
  }
  std::string IdOf(const Request& request) const { return request.event().id(); }
  bool Settle(const Response& response,
              std::vector<std::pair<std::string, absl::Status>>* settled) const {
    if (response.has_ack()) {
      last_end_->Set("");  // audit acks again: an older refusal is no longer the reason
      for (const std::string& id : response.ack().ids()) {
        settled->emplace_back(id, absl::OkStatus());
      }
      return true;
    }
    if (response.has_rejection()) {
      settled->emplace_back(response.rejection().id(),
                            absl::InvalidArgumentError(absl::StrCat(
                                "audit rejected the event: ", response.rejection().reason())));
    }
    return false;
  }
  // Events that queued while the previous message was being written go out as one batch, on a
  // stream whose server said it takes batches (an older audit does not: one event per message).
  size_t BatchLimit(const std::multimap<grpc::string_ref, grpc::string_ref>& metadata) const {
    auto it = metadata.find(kBatchMetadata);
    size_t limit = 0;
    if (it == metadata.end() ||
        !absl::SimpleAtoi(absl::string_view(it->second.data(), it->second.size()), &limit)) {
      return 1;
    }
    return std::min(limit, kMaxBatchEvents);
  }
  size_t max_batch_bytes() const { return kMaxBatchBytes; }
  void Append(Request* batch, const Request& next) const {
    if (batch->has_event()) {
      common::v1::AuditEvent first;
      first.Swap(batch->mutable_event());
      batch->mutable_batch()->add_events()->Swap(&first);
    }
    *batch->mutable_batch()->add_events() = next.event();
  }
  std::optional<absl::Status> OnBreak(const Request& /*request*/) const { return std::nullopt; }
  absl::Status Closing() const { return absl::CancelledError("audit client is shutting down"); }
  // Why audit last ended a stream (e.g. "export sink siem lags 1200 records (bound 1000)"), so
  // that a caller who times out hears the reason and not only the silence.
  void OnStreamEnded(const grpc::Status& status) const {
    if (!status.ok() && status.error_code() != grpc::StatusCode::CANCELLED) {
      last_end_->Set(status.error_message().substr(0, 300));
    }
  }
  absl::Status TimedOut(absl::Duration timeout) const {
    const std::string reason = last_end_->Get();
    return absl::DeadlineExceededError(
        absl::StrCat("audit did not acknowledge the event within ", absl::FormatDuration(timeout),
                     reason.empty() ? "" : absl::StrCat(" (audit said: ", reason, ")")));
  }
  absl::Status Full(size_t waiting, size_t limit) const {
    return absl::ResourceExhaustedError(
        absl::StrCat("audit: ", waiting, " events already wait for an ack (limit ", limit, ")"));
  }
  absl::Status AlreadyWaiting(const std::string& id) const {
    return absl::InvalidArgumentError(
        absl::StrCat("audit: event id ", id, " is already waiting for an ack"));
  }

 private:
  struct LastEnd {
    void Set(std::string text) {
      absl::MutexLock lock(&mu);
      message = std::move(text);
    }
    std::string Get() {
      absl::MutexLock lock(&mu);
      return message;
    }
    absl::Mutex mu;
    std::string message ABSL_GUARDED_BY(mu);
  };

  audit::v1::AuditService::Stub* const stub_;
  // Shared by copies of the protocol; the stream's callbacks reach it through a const protocol.
  const std::shared_ptr<LastEnd> last_end_;
};

CorrelatedStreamOptions StreamOptions(const AuditClientOptions& options) {
  CorrelatedStreamOptions stream;
  stream.max_pending = options.max_pending;
  // An audit record is never given up because its caller stopped waiting.
  stream.keep_until_settled = true;
  stream.initial_backoff = options.initial_backoff;
  stream.max_backoff = options.max_backoff;
  return stream;
}

}  // namespace

class AuditClient::Core {
 public:
  Core(std::shared_ptr<grpc::Channel> channel, AuditClientOptions options,
       runtime::TimerQueue* timers)
      : options(std::move(options)),
        stub(audit::v1::AuditService::NewStub(channel)),
        stream(RecordProtocol(stub.get()), StreamOptions(this->options), timers) {}

  const AuditClientOptions options;
  // The stub (and with it the channel) belongs here, not to the stream's state: a stream
  // reactor keeps that state alive until its OnDone returns, on a gRPC callback thread, after
  // CloseAndWait has seen it end. Dropping the last channel there tore down gRPC's shared
  // callback completion queue under that very thread (exec's double free in
  // grpc_cq_internal_unref at exit). Here it goes on the thread that destroys the client, after
  // the stream has ended; the stream opens no new call once closed.
  const std::unique_ptr<audit::v1::AuditService::Stub> stub;
  CorrelatedStream<RecordProtocol> stream;
  // The last "backlog full" log line, so that a long outage logs every 10 s, not per event.
  std::atomic<int64_t> last_full_log_ns{0};
};

AuditClient::AuditClient(std::shared_ptr<grpc::Channel> channel, AuditClientOptions options,
                         runtime::TimerQueue* timers)
    : core_(std::make_unique<Core>(std::move(channel), std::move(options), timers)) {}

AuditClient::~AuditClient() {
  core_->stream.CloseAndWait();
  if (const int64_t lost = core_->stream.unsettled_at_close(); lost > 0) {
    log::Error("audit events never acknowledged at shutdown",
               {{"events", lost}, {"source_service", core_->options.source_service}});
  }
}

void AuditClient::Close() { core_->stream.CloseAndWait(); }

void AuditClient::Record(podgate::common::v1::AuditEvent event, Callback done) {
  if (event.id().empty()) {
    event.set_id(runtime::EventId());
  }
  if (!event.has_time()) {
    *event.mutable_time() = wire::ToProtoTimestamp(absl::Now());
  }
  if (event.source_service().empty()) {
    event.set_source_service(core_->options.source_service);
  }
  if (saturated()) {
    const int64_t now = absl::GetCurrentTimeNanos();
    int64_t last = core_->last_full_log_ns.load();
    if (now - last > absl::ToInt64Nanoseconds(absl::Seconds(10)) &&
        core_->last_full_log_ns.compare_exchange_strong(last, now)) {
      log::Error("audit backlog full: events are refused until audit acknowledges",
                 {{"waiting", static_cast<int64_t>(pending())},
                  {"limit", static_cast<int64_t>(core_->options.max_pending)}});
    }
  }
  audit::v1::RecordRequest request;
  *request.mutable_event() = std::move(event);
  core_->stream.Submit(std::move(request), core_->options.ack_timeout, std::move(done));
}

size_t AuditClient::pending() const { return core_->stream.pending(); }

bool AuditClient::saturated() const {
  return core_->options.max_pending != 0 && core_->stream.pending() >= core_->options.max_pending;
}

int64_t AuditClient::acked_late() const { return core_->stream.settled_late(); }

int64_t AuditClient::streams_opened() const { return core_->stream.streams_opened(); }

}  // namespace podgate::clients
