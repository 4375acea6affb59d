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

#include <array>
#include <atomic>
#include <memory>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
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

  // One method's series. A call looks its method up once (a hash of the name under a reader
  // lock); the label maps, their hashing and each family's lock are paid on the method's first
  // call (and on its first call ending with each code), not on every call.
  class Method {
   public:
    Method(GrpcServerMetrics* metrics, std::string service, std::string method,
           grpc::experimental::ServerRpcInfo::Type type);
    void Started() { started_->Increment(); }
    // `code` is the status code as its wire number (a grpc::StatusCode cast to int), so a
    // number outside the enum never has to be held in the enum type.
    void Handled(int code, double seconds);

   private:
    GrpcServerMetrics* const metrics_;
    const std::string service_;
    const std::string method_;
    prometheus::Counter* const started_;
    prometheus::Histogram* const seconds_;
    // By code; codes outside gRPC's range share the last slot ("UNKNOWN").
    std::array<std::atomic<prometheus::Counter*>, 18> handled_{};
  };

  // The series of `full_name` ("/pkg.Service/Method") called as `type`; every name that is not
  // a known method shares the "unknown" entry, so the entries are bounded by the binary's
  // services. The entry lives as long as this object.
  Method& ForMethod(const char* full_name, grpc::experimental::ServerRpcInfo::Type type);

  const std::shared_ptr<prometheus::Registry> registry;
  prometheus::Family<prometheus::Counter>& started;
  prometheus::Family<prometheus::Counter>& handled;
  prometheus::Family<prometheus::Histogram>& handling_seconds;

 private:
  absl::Mutex mu_;
  // By call type, then by full name ("" for every unknown name). A name is registered with one
  // type; the type keys the maps so that an entry's grpc_type label is always the call's own.
  std::array<absl::flat_hash_map<std::string, std::unique_ptr<Method>>, 4> methods_
      ABSL_GUARDED_BY(mu_);
};

}  // namespace podgate::runtime
