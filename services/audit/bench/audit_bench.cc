// podgate-audit-bench: durable records per second through the real Record RPC with group
// commit, on SQLite and on PostgreSQL, at 1, 16 and 256 concurrent writers.
//
// Each writer is one Record stream that sends an event and waits for its ack before sending
// the next (strict mode: exec runs nothing before audit acks), so throughput comes only from
// group commit merging concurrent writers into one transaction. The service runs in process
// over a loopback socket; PostgreSQL is a temporary server started by the benchmark (initdb +
// pg_ctl, as the tests do) unless --postgres_url names one.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "audit_testing.h"
#include "grpcpp/grpcpp.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/server.h"

ABSL_FLAG(std::string, writers, "1,16,256", "Concurrent writer counts, comma separated.");
ABSL_FLAG(absl::Duration, duration, absl::Seconds(3), "How long each run lasts. Default 3s.");
ABSL_FLAG(std::string, stores, "sqlite,postgresql", "Stores to measure: sqlite, postgresql.");
ABSL_FLAG(int, window, 1,
          "Events each writer sends before waiting for acks: 1 is strict mode (one event per "
          "round trip); larger windows show the pipelined ingest rate. Default 1.");
ABSL_FLAG(std::string, postgres_url, "",
          "An existing PostgreSQL database to use (it must be empty); empty starts a "
          "temporary server.");

namespace podgate::audit {
namespace {

struct Result {
  int64_t records = 0;
  double seconds = 0;
  double p50_ms = 0;
  double p99_ms = 0;
  double mean_batch = 0;
};

Result Run(std::unique_ptr<Store> store, int writers, int window, absl::Duration duration) {
  prometheus::Registry registry;
  AuditMetrics metrics(registry);
  WriterOptions options;
  options.chain_id = "bench";
  auto writer = Writer::Start(store.get(), options, &metrics);
  if (!writer.ok()) {
    std::fprintf(stderr, "writer: %s\n", std::string(writer.status().message()).c_str());
    std::exit(2);
  }
  AuditServiceImpl service(store.get(), writer->get(), &metrics);
  runtime::ServerOptions server_options;
  server_options.service_name = "audit";
  server_options.grpc_address = "127.0.0.1:0";
  server_options.drain_timeout = absl::Seconds(1);
  auto server =
      runtime::Server::Start(server_options, {&service}, std::make_shared<prometheus::Registry>());
  if (!server.ok()) {
    std::fprintf(stderr, "server: %s\n", std::string(server.status().message()).c_str());
    std::exit(2);
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", (*server)->grpc_port()),
                                     grpc::InsecureChannelCredentials());
  auto stub = v1::AuditService::NewStub(channel);

  std::atomic<int64_t> total{0};
  std::vector<std::vector<double>> latencies(writers);
  const absl::Time start = absl::Now();
  const absl::Time end = start + duration;
  std::vector<std::thread> threads;
  for (int w = 0; w < writers; ++w) {
    threads.emplace_back([&, w] {
      grpc::ClientContext ctx;
      auto stream = stub->Record(&ctx);
      absl::Mutex mu;
      int64_t acked = 0;
      std::vector<absl::Time> sent_at;
      std::thread reader([&] {
        v1::RecordResponse response;
        while (stream->Read(&response)) {
          const absl::Time now = absl::Now();
          absl::MutexLock lock(&mu);
          for (int k = 0; k < response.ack().ids_size(); ++k) {
            latencies[w].push_back(absl::ToDoubleMilliseconds(now - sent_at[acked]));
            ++acked;
          }
          total.fetch_add(response.ack().ids_size());
        }
      });
      v1::RecordRequest request;
      for (int64_t i = 0; absl::Now() < end; ++i) {
        {
          absl::MutexLock lock(&mu);
          auto room = [&] { return i - acked < window || absl::Now() >= end; };
          while (!room()) {
            mu.AwaitWithTimeout(absl::Condition(&room), absl::Milliseconds(50));
          }
          sent_at.push_back(absl::Now());
        }
        *request.mutable_event() = testing::MakeEvent(absl::StrCat("w", w, "-", i));
        if (!stream->Write(request)) {
          break;
        }
      }
      stream->WritesDone();
      reader.join();
      stream->Finish().IgnoreError();
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  Result result;
  result.seconds = absl::ToDoubleSeconds(absl::Now() - start);
  result.records = total.load();
  std::vector<double> all;
  for (auto& l : latencies) {
    all.insert(all.end(), l.begin(), l.end());
  }
  std::sort(all.begin(), all.end());
  if (!all.empty()) {
    result.p50_ms = all[all.size() / 2];
    result.p99_ms = all[std::min(all.size() - 1, all.size() * 99 / 100)];
  }
  const auto batches = metrics.batch_size().Collect().histogram;
  if (batches.sample_count > 0) {
    result.mean_batch = batches.sample_sum / static_cast<double>(batches.sample_count);
  }
  (*server)->Shutdown();
  return result;
}

}  // namespace
}  // namespace podgate::audit

int main(int argc, char** argv) {
  namespace audit = podgate::audit;
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-audit-bench: durable audit records per second with "
                               "group commit, per store and number of concurrent writers.");
  podgate::log::Init("audit-bench", podgate::log::Level::kWarn);
  std::vector<int> writer_counts;
  for (absl::string_view part : absl::StrSplit(absl::GetFlag(FLAGS_writers), ',')) {
    int n = 0;
    if (!absl::SimpleAtoi(part, &n) || n < 1 || n > 4096) {
      std::fprintf(stderr, "podgate-audit-bench: --writers: bad count \"%s\"\n",
                   std::string(part).c_str());
      return 2;
    }
    writer_counts.push_back(n);
  }
  const absl::Duration duration = absl::GetFlag(FLAGS_duration);
  if (absl::GetFlag(FLAGS_window) < 1 || absl::GetFlag(FLAGS_window) > 100000) {
    std::fprintf(stderr, "podgate-audit-bench: --window: must be 1 to 100000\n");
    return 2;
  }
  std::printf("window %d, %s per run\n", absl::GetFlag(FLAGS_window),
              absl::FormatDuration(duration).c_str());
  std::printf("%-11s %8s %12s %10s %10s %10s\n", "store", "writers", "records/s", "p50 ms",
              "p99 ms", "batch");
  for (absl::string_view kind : absl::StrSplit(absl::GetFlag(FLAGS_stores), ',')) {
    std::unique_ptr<audit::testing::PostgresServer> pg;
    int run = 0;
    for (int writers : writer_counts) {
      audit::testing::TempDir tmp("podgate-audit-bench");
      std::string url;
      if (kind == "sqlite") {
        url = absl::StrCat("sqlite://", tmp.path(), "/audit.db");
      } else if (kind == "postgresql") {
        if (!absl::GetFlag(FLAGS_postgres_url).empty()) {
          url = absl::GetFlag(FLAGS_postgres_url);
        } else {
          if (pg == nullptr) {
            auto started = audit::testing::PostgresServer::Start();
            if (!started.ok()) {
              std::fprintf(stderr, "postgresql: %s\n",
                           std::string(started.status().message()).c_str());
              return 2;
            }
            pg = *std::move(started);
          }
          auto created = pg->CreateDatabase(absl::StrCat("bench", run++));
          if (!created.ok()) {
            std::fprintf(stderr, "postgresql: %s\n",
                         std::string(created.status().message()).c_str());
            return 2;
          }
          url = *created;
        }
      } else {
        std::fprintf(stderr, "podgate-audit-bench: --stores: unknown store \"%s\"\n",
                     std::string(kind).c_str());
        return 2;
      }
      auto store = audit::OpenStore(url);
      if (!store.ok()) {
        std::fprintf(stderr, "%s\n", std::string(store.status().message()).c_str());
        return 2;
      }
      const audit::Result r =
          audit::Run(*std::move(store), writers, absl::GetFlag(FLAGS_window), duration);
      std::printf("%-11s %8d %12.0f %10.2f %10.2f %10.1f\n", std::string(kind).c_str(), writers,
                  static_cast<double>(r.records) / r.seconds, r.p50_ms, r.p99_ms, r.mean_batch);
      std::fflush(stdout);
    }
  }
  return 0;
}
