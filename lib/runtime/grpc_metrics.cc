#include "runtime/grpc_metrics.h"

#include <algorithm>
#include <string_view>
#include <utility>

#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "grpc/support/log.h"
#include "wire/status.h"

namespace podgate::runtime {
namespace {

const char* TypeLabel(grpc::experimental::ServerRpcInfo::Type type) {
  switch (type) {
    case grpc::experimental::ServerRpcInfo::Type::UNARY:
      return "unary";
    case grpc::experimental::ServerRpcInfo::Type::CLIENT_STREAMING:
      return "client_stream";
    case grpc::experimental::ServerRpcInfo::Type::SERVER_STREAMING:
      return "server_stream";
    case grpc::experimental::ServerRpcInfo::Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

// The code's name (wire::StatusCodeName); a code outside gRPC's range is "UNKNOWN", so the
// label's values stay bounded.
std::string CodeLabel(int code) {
  std::string name = wire::StatusCodeName(code);
  return name.empty() ? "UNKNOWN" : name;
}

// One per call: started at creation, handled at PRE_SEND_STATUS (or, without a status, when
// the call is destroyed).
class MetricsInterceptor final : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(std::shared_ptr<GrpcServerMetrics> metrics,
                     grpc::experimental::ServerRpcInfo* info)
      : metrics_(std::move(metrics)),
        method_(metrics_->ForMethod(info->method(), info->type())),
        start_(absl::Now()) {
    method_.Started();
  }

  ~MetricsInterceptor() override {
    if (!done_) {
      Handled(static_cast<int>(grpc::StatusCode::CANCELLED));
    }
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (methods->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS) &&
        !done_) {
      Handled(static_cast<int>(methods->GetSendStatus().error_code()));
    }
    methods->Proceed();
  }

 private:
  void Handled(int code) {
    done_ = true;
    method_.Handled(code, absl::ToDoubleSeconds(absl::Now() - start_));
  }

  const std::shared_ptr<GrpcServerMetrics> metrics_;  // keeps method_ alive
  GrpcServerMetrics::Method& method_;
  const absl::Time start_;
  bool done_ = false;
};

class MetricsInterceptorFactory final
    : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(std::shared_ptr<GrpcServerMetrics> metrics)
      : metrics_(std::move(metrics)) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  const std::shared_ptr<GrpcServerMetrics> metrics_;
};

}  // namespace

GrpcServerMetrics::GrpcServerMetrics(std::shared_ptr<prometheus::Registry> registry_in)
    : registry(std::move(registry_in)),
      started(prometheus::BuildCounter()
                  .Name("podgate_grpc_server_started_total")
                  .Help("gRPC calls started on the server, per method and call type.")
                  .Register(*registry)),
      handled(prometheus::BuildCounter()
                  .Name("podgate_grpc_server_handled_total")
                  .Help("gRPC calls completed on the server, per method and status code "
                        "(a stream when it ends; no status sent counts as CANCELLED).")
                  .Register(*registry)),
      handling_seconds(prometheus::BuildHistogram()
                           .Name("podgate_grpc_server_handling_seconds")
                           .Help("Time from a gRPC call's start to its status, per method, in "
                                 "seconds.")
                           .Register(*registry)) {}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcServerMetrics::InterceptorFactory(std::shared_ptr<GrpcServerMetrics> metrics) {
  return std::make_unique<MetricsInterceptorFactory>(std::move(metrics));
}

GrpcServerMetrics::Method::Method(GrpcServerMetrics* metrics, std::string service,
                                  std::string method, grpc::experimental::ServerRpcInfo::Type type)
    : metrics_(metrics),
      service_(std::move(service)),
      method_(std::move(method)),
      started_(&metrics->started.Add(
          {{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_type", TypeLabel(type)}})),
      seconds_(&metrics->handling_seconds.Add(
          {{"grpc_service", service_}, {"grpc_method", method_}}, Buckets())) {}

void GrpcServerMetrics::Method::Handled(int code, double seconds) {
  const size_t last = handled_.size() - 1;
  std::atomic<prometheus::Counter*>& slot =
      handled_[code >= 0 && static_cast<size_t>(code) < last ? static_cast<size_t>(code) : last];
  prometheus::Counter* counter = slot.load(std::memory_order_acquire);
  if (counter == nullptr) {
    // Family::Add returns the one counter of a label set, so a race here stores the same one.
    counter = &metrics_->handled.Add(
        {{"grpc_service", service_}, {"grpc_method", method_}, {"grpc_code", CodeLabel(code)}});
    slot.store(counter, std::memory_order_release);
  }
  counter->Increment();
  seconds_->Observe(seconds);
}

GrpcServerMetrics::Method& GrpcServerMetrics::ForMethod(
    const char* full_name, grpc::experimental::ServerRpcInfo::Type type) {
  // absl::string_view: Debian's Abseil keeps its own, and only it is a heterogeneous key.
  const absl::string_view name = full_name == nullptr ? "" : full_name;
  const size_t t = std::min<size_t>(static_cast<size_t>(type), methods_.size() - 1);
  {
    absl::ReaderMutexLock lock(&mu_);
    if (auto it = methods_[t].find(name); it != methods_[t].end()) {
      return *it->second;
    }
  }
  auto [service, method] = SplitMethod(full_name);
  // Every unknown name shares one entry: names a client makes up must not grow the map.
  const std::string key = service == "unknown" ? "" : std::string(name);
  absl::MutexLock lock(&mu_);
  std::unique_ptr<Method>& entry = methods_[t][key];
  if (entry == nullptr) {
    entry = std::make_unique<Method>(this, std::move(service), std::move(method), type);
  }
  return *entry;
}

std::pair<std::string, std::string> GrpcServerMetrics::SplitMethod(const char* full_name) {
  const std::string_view name = full_name == nullptr ? "" : full_name;
  const size_t slash = name.rfind('/');
  if (name.size() < 4 || name[0] != '/' || slash == 0 || slash == std::string_view::npos ||
      slash + 1 == name.size()) {
    return {"unknown", "unknown"};
  }
  std::string service(name.substr(1, slash - 1));
  std::string method(name.substr(slash + 1));
  // gRPC's own health service is not built from protobuf's generated code, so its descriptor
  // is in the pool only when something else links health.pb.cc.
  if (service == "grpc.health.v1.Health" && (method == "Check" || method == "Watch")) {
    return {std::move(service), std::move(method)};
  }
  const google::protobuf::ServiceDescriptor* descriptor =
      google::protobuf::DescriptorPool::generated_pool()->FindServiceByName(service);
  if (descriptor == nullptr || descriptor->FindMethodByName(method) == nullptr) {
    return {"unknown", "unknown"};
  }
  return {std::move(service), std::move(method)};
}

const prometheus::Histogram::BucketBoundaries& GrpcServerMetrics::Buckets() {
  static const auto* const kBuckets = new prometheus::Histogram::BucketBoundaries{
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60};
  return *kBuckets;
}

}  // namespace podgate::runtime
