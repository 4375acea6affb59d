// Prometheus exposition on its own HTTP port, with the standard process_* metrics.
//
// Every component registers its metrics on the shared prometheus::Registry the server owns;
// names follow `podgate_<service>_<thing>_<unit>`. The port is served by podgate's one HTTP layer
// (lib/http), so its answers carry the same security headers and limits as every other
// podgate HTTP answer.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "prometheus/collectable.h"
#include "prometheus/registry.h"

namespace podgate::runtime {

// process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds, read from /proc at each
// scrape, named as the Prometheus client libraries name them.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// podgate_tls_certificate_expiry_timestamp_seconds{usage,path}: the notAfter of every certificate
// file the process loaded (runtime/tls.h LoadedCertificates), read at each scrape.
class CertificateCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// The log's buffer (runtime/log_writer.h), read at each scrape: podgate_log_lines_written_total,
// podgate_log_lines_dropped_total (lines that did not fit while stderr's reader was stalled, or
// whose write failed), podgate_log_buffer_bytes and podgate_log_buffer_limit_bytes.
class LogCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

// The headers every answer of the metrics port carries (200, 404, 405 and the HTTP layer's own
// 400/413/431 and refusals): nosniff, no caching, no framing, no referrer, and a
// Content-Security-Policy that lets the text load nothing.
const std::vector<std::pair<std::string, std::string>>& MetricsResponseHeaders();

// Serves GET /metrics for a registry (the text exposition format, version 0.0.4) on one thread;
// any other path is 404, any other method on /metrics 405.
class MetricsServer {
 public:
  // At most this many connections at once (Prometheus holds one per scraper).
  static constexpr size_t kMaxConnections = 64;

  // Listens on `address` ("host:port"; port 0 picks a free one). Also serves the process,
  // certificate and log collectors and podgate_build_info{service,version}.
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(
      const std::string& address, const std::string& service,
      std::shared_ptr<prometheus::Registry> registry);

  // Stops accepting and joins the serving thread.
  ~MetricsServer();

  // The port actually bound.
  int port() const { return port_; }

  struct Impl;

 private:
  MetricsServer() = default;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace podgate::runtime
