#include "exec/policy_stream.h"

#include <atomic>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "clients/correlated_stream.h"
#include "runtime/trace_metadata.h"

namespace podgate::exec {
namespace {

using podgate::policy::v1::AuthorizeResponse;
using podgate::policy::v1::AuthorizeStreamRequest;
using podgate::policy::v1::AuthorizeStreamResponse;

// policy.v1.AuthorizeStream as a correlated stream: questions wait under their correlation id
// until the answer carrying it. Fail closed: a question waiting when the stream breaks is
// answered with an error at once, never asked again.
class AuthorizeProtocol {
 public:
  using Request = AuthorizeStreamRequest;
  using Response = AuthorizeStreamResponse;
  using Result = absl::StatusOr<AuthorizeResponse>;

  AuthorizeProtocol(podgate::policy::v1::PolicyService::StubInterface* stub,
                    runtime::TraceContext trace)
      : stub_(stub), trace_(std::move(trace)) {}

  void Open(
      grpc::ClientContext* context,
      grpc::ClientBidiReactor<AuthorizeStreamRequest, AuthorizeStreamResponse>* reactor) const {
    runtime::AddTraceMetadata(context, trace_);
    stub_->async()->AuthorizeStream(context, reactor);
  }
  std::string IdOf(const AuthorizeStreamRequest& request) const { return request.correlation_id(); }
  bool Settle(const AuthorizeStreamResponse& response,
              std::vector<std::pair<std::string, Result>>* settled) const {
    settled->emplace_back(response.correlation_id(), response.response());
    return true;
  }
  std::optional<absl::Status> OnBreak(const AuthorizeStreamRequest& /*request*/) const {
    return absl::UnavailableError("the policy stream broke");
  }
  absl::Status Closing() const { return absl::CancelledError("session closing"); }
  absl::Status TimedOut(absl::Duration timeout) const {
    return absl::DeadlineExceededError(
        absl::StrCat("policy did not answer within ", absl::FormatDuration(timeout)));
  }

 private:
  podgate::policy::v1::PolicyService::StubInterface* const stub_;
  const runtime::TraceContext trace_;
};

}  // namespace

class PolicyStream::Core {
 public:
  Core(podgate::policy::v1::PolicyService::StubInterface* stub, runtime::TraceContext trace,
       runtime::TimerQueue* timers)
      : stream(AuthorizeProtocol(stub, std::move(trace)), clients::CorrelatedStreamOptions{},
               timers) {}

  std::atomic<uint64_t> next_id{1};
  clients::CorrelatedStream<AuthorizeProtocol> stream;
};

PolicyStream::PolicyStream(podgate::policy::v1::PolicyService::StubInterface* stub,
                           runtime::TraceContext trace, runtime::TimerQueue* timers)
    : core_(std::make_unique<Core>(stub, std::move(trace), timers)) {}

// No waiting for the stream to end (this may run inside a reaction): the stream keeps what it
// touches alive until its end, and the stub outlives every session. Pending questions are
// answered on the timer thread: the owner may be destroying this stream under its own lock.
PolicyStream::~PolicyStream() { core_->stream.Close(); }

void PolicyStream::Ask(podgate::policy::v1::AuthorizeRequest request, absl::Duration timeout,
                       Callback done) {
  AuthorizeStreamRequest question;
  question.set_correlation_id(absl::StrCat(core_->next_id.fetch_add(1)));
  *question.mutable_request() = std::move(request);
  core_->stream.Submit(std::move(question), timeout, std::move(done));
}

}  // namespace podgate::exec
