// Per-method gRPC server metrics for every podgate service, recorded by a server interceptor:
//
//   podgate_grpc_server_started_total{grpc_service,grpc_method,grpc_type}
//   podgate_grpc_server_handled_total{grpc_service,grpc_method,grpc_code}
//   podgate_grpc_server_handling_seconds{grpc_service,grpc_method}   (histogram)
//
// A call is handled when its status is sent (a streaming call when it ends); a call that ends
// without a status (cancelled by the client or by shutdown) counts as CANCELLED. Labels are
// bounded: a method that is not a known protobuf service method is "unknown".
#pragma once

#include <memory>
#include <string>

#include "grpcpp/support/server_interceptor.h"
#include "prometheus/counter.h"
#include "prometheus/family.h"
#include "prometheus/histogram.h"
#include "prometheus/registry.h"

namespace podgate::runtime {

class GrpcServerMetrics {
 public:
  // Holds `registry`: the families live in it, and a caller may drop its own reference while
  // the server (and so the calls) go on.
  explicit GrpcServerMetrics(std::shared_ptr<prometheus::Registry> registry);

  // The interceptor factory to add to a grpc::ServerBuilder; `metrics` outlives every call.
  static std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory(
      std::shared_ptr<GrpcServerMetrics> metrics);

  // "/pkg.Service/Method" → ("pkg.Service", "Method") when the method is one of a protobuf
  // service linked into the binary; ("unknown", "unknown") otherwise.
  static std::pair<std::string, std::string> SplitMethod(const char* full_name);

  // The histogram's upper bounds: 0.5 ms to 60 s.
  static const prometheus::Histogram::BucketBoundaries& Buckets();

  const std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;
};

}  // namespace podgate::runtime
