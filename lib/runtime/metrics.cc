#include "runtime/metrics.h"

#include <dirent.h>
#include <netdb.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>
#include <exception>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "prometheus/gauge.h"

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

MetricsServer::~MetricsServer() {
  if (exposer_ == nullptr || port_ == 0) {
    return;
  }
  absl::Notification stopped;
  std::thread waker([this, &stopped] {
    const std::string port = std::to_string(port_);
    while (!stopped.WaitForNotificationWithTimeout(absl::Milliseconds(20))) {
      addrinfo hints{};
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
      addrinfo* found = nullptr;
      if (getaddrinfo(wake_host_.c_str(), port.c_str(), &hints, &found) != 0) {
        return;
      }
      const int fd = socket(found->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (fd >= 0) {
        (void)connect(fd, found->ai_addr, found->ai_addrlen);
        close(fd);
      }
      freeaddrinfo(found);
    }
  });
  exposer_.reset();
  stopped.Notify();
  waker.join();
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, const std::string& service,
    std::shared_ptr<prometheus::Registry> registry) {
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  try {
    // Two threads are plenty for scrapes; civetweb's default is 50.
    server->exposer_ = std::make_unique<prometheus::Exposer>(address, 2);
  } catch (const std::exception& e) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_address: cannot listen on '", address, "': ", e.what()));
  }
  const std::vector<int> ports = server->exposer_->GetListeningPorts();
  if (ports.empty()) {
    return absl::UnavailableError(
        absl::StrCat("--metrics_address: cannot listen on '", address, "'"));
  }
  server->port_ = ports.front();
  // The host part of "host:port" ("[::1]:0" included); a wildcard is reached on loopback.
  std::string host = address.substr(0, address.rfind(':'));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  server->wake_host_ = host.empty() || host == "0.0.0.0" ? "127.0.0.1"
                       : host == "::"                    ? "::1"
                                                         : host;
  prometheus::BuildGauge()
      .Name("podgate_build_info")
      .Help("Always 1; labels name the service and its version.")
      .Register(*registry)
      .Add({{"service", service}, {"version", PODGATE_VERSION}})
      .Set(1);
  server->process_ = std::make_shared<ProcessCollector>();
  server->exposer_->RegisterCollectable(server->process_);
  server->exposer_->RegisterCollectable(registry);
  return server;
}

}  // namespace podgate::runtime
