#include "edge/backend_calls.h"

#include <set>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace podgate::edge {
namespace {

// Process-wide: one edge per process.
absl::Mutex g_calls_mu(absl::kConstInit);
std::set<grpc::ClientContext*>& Calls() ABSL_EXCLUSIVE_LOCKS_REQUIRED(g_calls_mu) {
  static auto* const calls = new std::set<grpc::ClientContext*>();
  return *calls;
}

}  // namespace

void RegisterBackendCall(grpc::ClientContext* context) {
  absl::MutexLock lock(&g_calls_mu);
  Calls().insert(context);
}

void UnregisterBackendCall(grpc::ClientContext* context) {
  absl::MutexLock lock(&g_calls_mu);
  Calls().erase(context);
}

void CancelBackendCalls() {
  // Under the lock: a call unregisters (under it) before its context is destroyed.
  absl::MutexLock lock(&g_calls_mu);
  for (grpc::ClientContext* context : Calls()) {
    context->TryCancel();
  }
}

bool WaitBackendCallsDone(absl::Time deadline) {
  absl::MutexLock lock(&g_calls_mu);
  auto none = [] { return Calls().empty(); };
  return g_calls_mu.AwaitWithDeadline(absl::Condition(&none), deadline);
}

int LiveBackendCalls() {
  absl::MutexLock lock(&g_calls_mu);
  return static_cast<int>(Calls().size());
}

}  // namespace podgate::edge
