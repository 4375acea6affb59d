// Prometheus exposition on its own HTTP port, with the standard process_* metrics.
//
// Every component registers its metrics on the shared prometheus::Registry the server owns;
// names follow `podgate_<service>_<thing>_<unit>`.
#pragma once

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/exposer.h"
#include "prometheus/registry.h"

namespace podgate::runtime {

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds, read from /proc at each
// scrape, named as the Prometheus client libraries name them.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// Serves /metrics for a registry.
class MetricsServer {
 public:
  // Listens on `address` ("host:port"; port 0 picks a free one). Also registers the process
  // collector and podgate_build_info{service,version}.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, const std::string& service,
      std::shared_ptr<prometheus::Registry> registry);

  // The port actually bound.
  int port() const { return port_; }

  // Stops serving at once: civetweb's stop waits for its accept loop, which polls in 2 s steps,
  // so a connection made once the stop has begun wakes it.
  ~MetricsServer();

 private:
  MetricsServer() = default;
  std::string wake_host_;  // where a connection reaches the listening socket
  std::unique_ptr<prometheus::Exposer> exposer_;
  std::shared_ptr<ProcessCollector> process_;
  int port_ = 0;
};

}  // namespace podgate::runtime
