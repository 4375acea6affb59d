#include "runtime/metrics.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "http/server.h"
#include "prometheus/gauge.h"
#include "prometheus/text_serializer.h"
#include "runtime/log.h"
#include "runtime/tls.h"

#ifndef PODGATE_VERSION
#define PODGATE_VERSION "dev"
#endif

namespace podgate::runtime {
namespace {

prometheus::MetricFamily Single(const std::string& name, const std::string& help,
                                prometheus::MetricType type, double value) {
  prometheus::MetricFamily family;
  family.name = name;
  family.help = help;
  family.type = type;
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  family.metric.push_back(std::move(metric));
  return family;
}

int CountOpenFds() {
  DIR* dir = opendir("/proc/self/fd");
  if (dir == nullptr) {
    return -1;
  }
  int count = 0;
  while (readdir(dir) != nullptr) {
    ++count;
  }
  closedir(dir);
  // ".", ".." and the descriptor opendir itself holds.
  return count - 3;
}

double BootTimeSeconds() {
  std::ifstream in("/proc/stat");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("btime ", 0) == 0) {
      double value = 0;
      if (absl::SimpleAtod(line.substr(6), &value)) {
        return value;
      }
    }
  }
  return 0;
}

}  // namespace

std::vector<prometheus::MetricFamily> CertificateCollector::Collect() const {
  std::vector<LoadedCertificate> loaded = LoadedCertificates();
  if (loaded.empty()) {
    return {};
  }
  prometheus::MetricFamily family;
  family.name = "podgate_tls_certificate_expiry_timestamp_seconds";
  family.help =
      "notAfter of each certificate file the process loaded (the earliest in a chain or bundle), "
      "as Unix seconds; usage is server, client_ca, client or ca.";
  family.type = prometheus::MetricType::Gauge;
  for (const LoadedCertificate& cert : loaded) {
    prometheus::ClientMetric metric;
    metric.label = {{"path", cert.path}, {"usage", cert.usage}};
    metric.gauge.value = cert.not_after_seconds;
    family.metric.push_back(std::move(metric));
  }
  return {std::move(family)};
}

std::vector<prometheus::MetricFamily> LogCollector::Collect() const {
  const log::WriterStats stats = log::Stats();
  std::vector<prometheus::MetricFamily> out;
  out.push_back(Single("podgate_log_lines_written_total", "Log lines written to stderr.",
                       prometheus::MetricType::Counter, static_cast<double>(stats.lines_written)));
  out.push_back(Single("podgate_log_lines_dropped_total",
                       "Log lines dropped: they did not fit the log buffer while stderr's reader "
                       "was stalled, or stderr refused them.",
                       prometheus::MetricType::Counter, static_cast<double>(stats.lines_dropped)));
  out.push_back(Single("podgate_log_buffer_bytes",
                       "Bytes of log lines waiting for stderr or being written now.",
                       prometheus::MetricType::Gauge, static_cast<double>(stats.buffer_bytes)));
  out.push_back(Single("podgate_log_buffer_limit_bytes",
                       "The most podgate_log_buffer_bytes may reach (--log_buffer_bytes).",
                       prometheus::MetricType::Gauge,
                       static_cast<double>(stats.buffer_limit_bytes)));
  return out;
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  std::vector<prometheus::MetricFamily> out;
  std::ifstream in("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // The command name (field 2) may hold spaces and parentheses: split after the last ')'.
  const size_t close = stat.rfind(')');
  if (close == std::string::npos) {
    return out;
  }
  std::vector<std::string> fields =
      absl::StrSplit(stat.substr(close + 2), ' ', absl::SkipEmpty());
  // fields[0] is field 3 (state); utime is field 14, stime 15, starttime 22, vsize 23, rss 24.
  auto field = [&](size_t n) -> double {
    double v = 0;
    if (n - 3 < fields.size() && !absl::SimpleAtod(fields[n - 3], &v)) {
      v = 0;
    }
    return v;
  };
  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  out.push_back(Single("process_cpu_seconds_total", "Total user and system CPU time in seconds.",
                       prometheus::MetricType::Counter, (field(14) + field(15)) / ticks));
  out.push_back(Single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       prometheus::MetricType::Gauge, field(23)));
  out.push_back(Single("process_resident_memory_bytes", "Resident memory size in bytes.",
                       prometheus::MetricType::Gauge, field(24) * page));
  out.push_back(Single("process_start_time_seconds",
                       "Start time of the process since the Unix epoch in seconds.",
                       prometheus::MetricType::Gauge, BootTimeSeconds() + field(22) / ticks));
  out.push_back(Single("process_open_fds", "Number of open file descriptors.",
                       prometheus::MetricType::Gauge, CountOpenFds()));
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0) {
    out.push_back(Single("process_max_fds", "Maximum number of open file descriptors.",
                         prometheus::MetricType::Gauge, static_cast<double>(limit.rlim_cur)));
  }
  return out;
}

const std::vector<std::pair<std::string, std::string>>& MetricsResponseHeaders() {
  static const auto* const kHeaders = new std::vector<std::pair<std::string, std::string>>{
      {"Cache-Control", "no-store"},
      {"X-Content-Type-Options", "nosniff"},
      {"X-Frame-Options", "DENY"},
      {"Referrer-Policy", "no-referrer"},
      {"Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'"}};
  return *kHeaders;
}

struct MetricsServer::Impl {
  boost::asio::io_context io{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work =
      boost::asio::make_work_guard(io);
  std::shared_ptr<prometheus::Registry> registry;
  ProcessCollector process;
  CertificateCollector certificates;
  LogCollector logs;
  std::unique_ptr<http::Server> server;
  std::thread thread;

  http::RouteResult Route(const http::Request& request) const {
    namespace bhttp = boost::beast::http;
    http::RouteResult result;
    const std::string_view target = request.target();
    if (target.substr(0, target.find('?')) != "/metrics") {
      result.response =
          http::MakeResponse(request, bhttp::status::not_found, "text/plain", "not found\n");
      return result;
    }
    if (request.method() != bhttp::verb::get) {
      result.response = http::MakeResponse(request, bhttp::status::method_not_allowed, "text/plain",
                                           "only GET\n");
      result.response->set(bhttp::field::allow, "GET");
      return result;
    }
    std::vector<prometheus::MetricFamily> families = process.Collect();
    std::vector<prometheus::MetricFamily> tls = certificates.Collect();
    families.insert(families.end(), std::make_move_iterator(tls.begin()),
                    std::make_move_iterator(tls.end()));
    std::vector<prometheus::MetricFamily> log_families = logs.Collect();
    families.insert(families.end(), std::make_move_iterator(log_families.begin()),
                    std::make_move_iterator(log_families.end()));
    std::vector<prometheus::MetricFamily> more = registry->Collect();
    families.insert(families.end(), std::make_move_iterator(more.begin()),
                    std::make_move_iterator(more.end()));
    result.response =
        http::MakeResponse(request, bhttp::status::ok, "text/plain; version=0.0.4; charset=utf-8",
                           prometheus::TextSerializer().Serialize(families));
    return result;
  }
};

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, const std::string& service,
    std::shared_ptr<prometheus::Registry> registry) {
  absl::StatusOr<http::ListenAddress> listen = http::ParseListenAddress(address);
  if (!listen.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat("--metrics_address: '", address, "': ", listen.status().message()));
  }
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->impl_ = std::make_unique<Impl>();
  Impl* impl = server->impl_.get();
  impl->registry = registry;
  http::ServerOptions options;
  options.address = listen->host;
  options.port = listen->port;
  // A scrape is a GET: no body, small headers; scrapers are few.
  options.body_limit_bytes = 4 * 1024;
  options.header_limit_bytes = 8 * 1024;
  options.max_connections = kMaxConnections;
  options.response_headers = MetricsResponseHeaders();
  absl::StatusOr<std::unique_ptr<http::Server>> http_server =
      http::Server::Start(impl->io, std::move(options),
                          [impl](const http::Request& request, const http::RequestContext&, bool) {
                            return impl->Route(request);
                          });
  if (!http_server.ok()) {
    return absl::UnavailableError(absl::StrCat("--metrics_address: cannot listen on '", address,
                                               "': ", http_server.status().message()));
  }
  impl->server = *std::move(http_server);
  server->port_ = impl->server->port();
  prometheus::BuildGauge()
      .Name("podgate_build_info")
      .Help("Always 1; labels name the service and its version.")
      .Register(*registry)
      .Add({{"service", service}, {"version", PODGATE_VERSION}})
      .Set(1);
  impl->thread = std::thread([impl] { impl->io.run(); });
  return server;
}

MetricsServer::~MetricsServer() {
  if (impl_ == nullptr) {
    return;
  }
  if (impl_->server != nullptr) {
    impl_->server->Stop();
  }
  impl_->work.reset();
  impl_->io.stop();
  if (impl_->thread.joinable()) {
    impl_->thread.join();
  }
  impl_->server.reset();
}

}  // namespace podgate::runtime
