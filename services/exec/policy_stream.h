// One `policy.v1.AuthorizeStream` per session: exec asks before every command, and each
// question gets its own deadline. Fail closed: a question that is not answered in time, or
// that is pending when the stream breaks, is answered with an error, which the session turns
// into a denial. A broken stream is reopened for the next question.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "runtime/timer.h"
#include "runtime/trace.h"

namespace podgate::exec {

class PolicyStream {
 public:
  using Callback = std::function<void(absl::StatusOr<podgate::policy::v1::AuthorizeResponse>)>;

  // `stub` must outlive every stream (it is the exec service's, for the process lifetime).
  // Each stream it opens carries `trace` (the session's) as its traceparent.
  PolicyStream(podgate::policy::v1::PolicyService::StubInterface* stub,
               runtime::TraceContext trace = {},
               runtime::TimerQueue* timers = &runtime::TimerQueue::Default());
  // Cancels the stream without waiting; pending questions are answered CANCELLED.
  ~PolicyStream();

  PolicyStream(const PolicyStream&) = delete;
  PolicyStream& operator=(const PolicyStream&) = delete;

  // Asks; `done` runs once, on a gRPC or timer thread (never inside Ask or the destructor),
  // with the answer or an error (DEADLINE_EXCEEDED, UNAVAILABLE, CANCELLED).
  void Ask(podgate::policy::v1::AuthorizeRequest request, absl::Duration timeout, Callback done);

 private:
  // The AuthorizeStream (a clients::CorrelatedStream) and the next correlation id.
  class Core;
  std::unique_ptr<Core> core_;
};

}  // namespace podgate::exec
