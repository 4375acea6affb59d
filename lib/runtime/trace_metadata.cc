#include "runtime/trace_metadata.h"

#include <string_view>

namespace podgate::runtime {

void AddTraceMetadata(grpc::ClientContext* context, const TraceContext& trace) {
  if (trace.valid()) {
    context->AddMetadata(kTraceparentHeader, trace.Header());
  }
}

TraceContext TraceOfCall(const grpc::ServerContextBase& context) {
  const auto& metadata = context.client_metadata();
  auto it = metadata.find(kTraceparentHeader);
  if (it == metadata.end()) {
    return NewTrace();
  }
  return ContinueOrStart(std::string_view(it->second.data(), it->second.size()));
}

}  // namespace podgate::runtime
