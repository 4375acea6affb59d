// Measures kubesim's exec throughput: a C++ WebSocket client (lib/http) streams a large file out
// of a direct exec (`cat FILE`, stdout) and into one (stdin → `wc -c`), over TLS on loopback,
// against an in-process kubesim. Prints MB/s; the numbers are recorded in docs/kubesim.md.
//   kubesim_exec_bench [size_mib=256]
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "api_server.h"
#include "cluster.h"
#include "http/client.h"
#include "http/server.h"
#include "k8s/exec_protocol.h"
#include "pki.h"

namespace {

using namespace podgate;  // NOLINT: a small benchmark program

int Fail(const std::string& what) {
  std::fprintf(stderr, "kubesim_exec_bench: %s\n", what.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  size_t mib = argc > 1 ? static_cast<size_t>(std::atoi(argv[1])) : 256;
  if (mib == 0) {
    return Fail("size must be a positive number of MiB");
  }
  char tmpl[] = "/tmp/kubesim-bench-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  kubesim::PkiFiles pki;
  if (absl::Status s = kubesim::EnsurePki(dir + "/pki", &pki); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  // The file to stream, readable by the container's unprivileged uid.
  std::string file = dir + "/payload";
  {
    std::ofstream out(file, std::ios::binary);
    std::string block(1 << 20, '\0');
    for (size_t i = 0; i < block.size(); ++i) {
      block[i] = static_cast<char>((i * 131) ^ (i >> 7));
    }
    for (size_t i = 0; i < mib; ++i) {
      out.write(block.data(), static_cast<std::streamsize>(block.size()));
    }
  }
  chmod(dir.c_str(), 0755);
  chmod(file.c_str(), 0644);
  absl::StatusOr<kubesim::Cluster> cluster = kubesim::ParseCluster(R"(
namespaces: [{name: bench}]
pods: [{name: p, namespace: bench, containers: [{name: c}]}]
access: [{user: bench, verbs: ["*"], resources: ["*"], namespaces: ["*"]}]
)");
  if (!cluster.ok()) {
    return Fail(std::string(cluster.status().message()));
  }
  kubesim::ApiServerOptions options;
  options.state_dir = dir + "/state";
  auto api = std::make_shared<kubesim::ApiServer>(
      *cluster, std::vector<kubesim::TokenUser>{{"bench-token", "bench", "1", {}}}, options);
  if (absl::Status s = api->PrepareContainers(); !s.ok()) {
    return Fail(std::string(s.message()));
  }
  boost::asio::io_context io;
  http::ServerOptions so;
  so.cert_file = pki.server_cert;
  so.key_file = pki.server_key;
  so.websocket_message_limit_bytes = 4 << 20;
  auto server = http::Server::Start(
      io, so, [api](const http::Request& r, const http::RequestContext& c, bool u) {
        return api->Route(r, c, u);
      });
  if (!server.ok()) {
    return Fail(std::string(server.status().message()));
  }
  std::vector<std::thread> threads;
  for (int i = 0; i < 2; ++i) {
    threads.emplace_back([&io] { io.run(); });
  }
  http::ClientOptions co;
  co.port = (*server)->port();
  co.tls = true;
  co.ca_file = pki.ca_cert;
  co.server_name = "localhost";
  co.headers.emplace_back("Authorization", "Bearer bench-token");

  auto run = [&](const std::vector<std::string>& argv, bool send_stdin,
                 std::string* out) -> absl::StatusOr<double> {
    k8s::ExecOptions o;
    o.command = argv;
    o.stdout = true;
    o.stderr = true;
    o.stdin = send_stdin;
    absl::Time start = absl::Now();
    auto ws = http::WebSocketClient::Connect(
        co, "/api/v1/namespaces/bench/pods/p/exec?" + k8s::EncodeExecQuery(o),
        {std::string(k8s::kProtocolV5)});
    if (!ws.ok()) {
      return ws.status();
    }
    size_t received = 0;
    if (send_stdin) {
      std::ifstream in(file, std::ios::binary);
      std::string chunk(256 * 1024, '\0');
      while (in.read(chunk.data() + 0, static_cast<std::streamsize>(chunk.size())) ||
             in.gcount() > 0) {
        if (absl::Status s = (*ws)->Write(k8s::EncodeFrame(
                k8s::kStdin, std::string_view(chunk.data(), static_cast<size_t>(in.gcount()))));
            !s.ok()) {
          return s;
        }
      }
      if (absl::Status s = (*ws)->Write(std::string("\xff\x00", 2)); !s.ok()) {
        return s;
      }
    }
    while (true) {
      absl::StatusOr<http::Message> m = (*ws)->Read(absl::Seconds(60));
      if (!m.ok()) {
        break;
      }
      if (m->data.size() > 1 && m->data[0] == k8s::kStdout) {
        received += m->data.size() - 1;
        if (out != nullptr && out->size() < 64) {
          out->append(m->data.substr(1));
        }
      }
    }
    double secs = absl::ToDoubleSeconds(absl::Now() - start);
    if (!send_stdin && received != mib << 20) {
      return absl::DataLossError(absl::StrCat("received ", received, " bytes"));
    }
    return static_cast<double>(mib) / secs;
  };

  absl::StatusOr<double> down = run({"cat", file}, false, nullptr);
  if (!down.ok()) {
    return Fail(absl::StrCat("stdout: ", down.status().message()));
  }
  std::string count;
  absl::StatusOr<double> up = run({"wc", "-c"}, true, &count);
  if (!up.ok()) {
    return Fail(absl::StrCat("stdin: ", up.status().message()));
  }
  if (std::stoull(count) != mib << 20) {
    return Fail("stdin: wc counted " + count);
  }
  std::printf(
      "kubesim exec, TLS loopback, %zu MiB: stdout (cat) %.1f MiB/s, stdin (wc -c) "
      "%.1f MiB/s\n",
      mib, *down, *up);
  (*server)->Stop();
  io.stop();
  for (auto& t : threads) {
    t.join();
  }
  std::filesystem::remove_all(dir);
  return 0;
}
