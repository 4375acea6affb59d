// podgate-bench-stream-floor: what one idle exec.v1 Session stream costs gRPC itself, with no
// podgate code on either side: the measured limit beside the idle-memory goals of
// `podgate-bench-chain --sections=sessions` (docs/performance.md, "Sessions").
//
//   podgate-bench-stream-floor --role=server
//       Serves ExecService/Session on 127.0.0.1 (a free port, printed on stderr as
//       "listening <port>"): each stream's first message is answered with `ready`, then the
//       stream waits for the next message; a half-close ends it with OK.
//   podgate-bench-stream-floor --role=client --address=127.0.0.1:<port> --streams=N
//       On one channel (edge's Session-stream settings: keepalive, no retries), opens --warmup
//       streams that each send `open`, get `ready` and close; prints "warm"; waits for SIGUSR1;
//       opens N streams that each send `open`, get `ready` and stay open; prints "held N"; then
//       waits to be killed.
//
// The parent reads each side's VmRSS after "warm" and after "held": their difference over N is
// the memory gRPC keeps per idle stream on the client (edge's side) and the server (exec's).
#include <signal.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "runtime/flags.h"

ABSL_FLAG(std::string, role, "", "server or client.");
ABSL_FLAG(std::string, address, "", "Client: the server's host:port.");
ABSL_FLAG(int, streams, 1000, "Client: streams held open. Default 1000.");
ABSL_FLAG(int, warmup, 16, "Client: streams opened and closed first. Default 16.");
ABSL_FLAG(int, token_bytes, 400,
          "Client: size of the credential in each `open` (a signed JWT's size). Default 400.");

namespace podgate {
namespace {

namespace pb = podgate::exec::v1;

// --- server --------------------------------------------------------------------------------

class ServerStream final : public grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse> {
 public:
  ServerStream() { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::OK);
      return;
    }
    if (request_.has_open() && !answered_) {
      answered_ = true;
      response_.mutable_ready()->set_session_id(std::string(32, 'a'));
      StartWrite(&response_);
      return;  // the next read starts once `ready` is written
    }
    StartRead(&request_);
  }
  void OnWriteDone(bool ok) override {
    if (!ok) {
      Finish(grpc::Status::CANCELLED);
      return;
    }
    StartRead(&request_);
  }
  void OnDone() override { delete this; }

 private:
  pb::SessionRequest request_;
  pb::SessionResponse response_;
  bool answered_ = false;
};

class Service final : public pb::ExecService::CallbackService {
  grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* Session(
      grpc::CallbackServerContext*) override {
    return new ServerStream();
  }
};

int Serve() {
  Service service;
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  // exec's server settings that shape a call (lib/runtime/server.cc), without its interceptors.
  builder.SetMaxReceiveMessageSize(4 * 1024 * 1024);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS, 30000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    std::fprintf(stderr, "podgate-bench-stream-floor: the server did not start on 127.0.0.1\n");
    return 1;
  }
  std::fprintf(stderr, "listening %d\n", port);
  server->Wait();  // until killed
  return 0;
}

// --- client --------------------------------------------------------------------------------

class ClientStream final : public grpc::ClientBidiReactor<pb::SessionRequest, pb::SessionResponse> {
 public:
  // Sends `open`; `ready` is counted in `readied` (and the stream closed when `close`).
  ClientStream(pb::ExecService::Stub* stub, const pb::SessionRequest& open, bool close,
               std::atomic<int>* readied, std::atomic<int>* ended)
      : request_(open), close_(close), readied_(readied), ended_(ended) {
    stub->async()->Session(&context_, this);
    StartWrite(&request_);
    StartRead(&response_);
    StartCall();
  }

  void OnReadDone(bool ok) override {
    if (ok && response_.has_ready()) {
      ++*readied_;
      if (close_) {
        StartWritesDone();
      }
      // An idle stream keeps one read pending, as edge's does.
      StartRead(&response_);
    }
  }
  void OnWriteDone(bool) override {}
  void OnDone(const grpc::Status&) override { ++*ended_; }

 private:
  grpc::ClientContext context_;
  pb::SessionRequest request_;
  pb::SessionResponse response_;
  const bool close_;
  std::atomic<int>* readied_;
  std::atomic<int>* ended_;
};

bool WaitFor(const std::atomic<int>& count, int target, absl::Duration timeout) {
  const absl::Time deadline = absl::Now() + timeout;
  while (count.load() < target) {
    if (absl::Now() > deadline) {
      return false;
    }
    absl::SleepFor(absl::Milliseconds(10));
  }
  return true;
}

int Client() {
  const std::string address = absl::GetFlag(FLAGS_address);
  const int streams = absl::GetFlag(FLAGS_streams);
  const int warmup = absl::GetFlag(FLAGS_warmup);
  if (address.empty() || streams < 1 || warmup < 0) {
    std::fprintf(stderr,
                 "podgate-bench-stream-floor: --role=client needs --address, --streams >= 1 and "
                 "--warmup >= 0 (see --help)\n");
    return 2;
  }
  // SIGUSR1 starts the measured streams: blocked before gRPC starts its threads, taken by
  // sigwait below.
  sigset_t go;
  sigemptyset(&go);
  sigaddset(&go, SIGUSR1);
  pthread_sigmask(SIG_BLOCK, &go, nullptr);

  // Edge's channel for Session streams (lib/runtime/tls.cc, ChannelCalls::kSessionStreams).
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_KEEPALIVE_TIME_MS, 20000);
  args.SetInt(GRPC_ARG_KEEPALIVE_TIMEOUT_MS, 10000);
  args.SetInt(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  args.SetMaxReceiveMessageSize(4 * 1024 * 1024);
  auto channel = grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args);
  auto stub = pb::ExecService::NewStub(channel);

  pb::SessionRequest open;
  open.mutable_open()->mutable_credential()->set_bearer_token(
      std::string(static_cast<size_t>(absl::GetFlag(FLAGS_token_bytes)), 'x'));
  open.mutable_open()->mutable_target()->set_namespace_("app-shop");
  open.mutable_open()->mutable_target()->set_pod("orders-7d4b9c");
  open.mutable_open()->set_source_address("127.0.0.1:40000");

  std::atomic<int> readied{0};
  std::atomic<int> ended{0};
  std::vector<std::unique_ptr<ClientStream>> warm;
  for (int i = 0; i < warmup; ++i) {
    warm.push_back(std::make_unique<ClientStream>(stub.get(), open, true, &readied, &ended));
  }
  if (!WaitFor(ended, warmup, absl::Seconds(30))) {
    std::fprintf(stderr, "podgate-bench-stream-floor: %d of %d warm-up streams ended\n",
                 ended.load(), warmup);
    return 1;
  }
  std::fprintf(stderr, "warm\n");
  int sig = 0;
  sigwait(&go, &sig);

  readied = 0;
  std::vector<std::unique_ptr<ClientStream>> held;
  held.reserve(static_cast<size_t>(streams));
  for (int i = 0; i < streams; ++i) {
    held.push_back(std::make_unique<ClientStream>(stub.get(), open, false, &readied, &ended));
  }
  if (!WaitFor(readied, streams, absl::Seconds(120))) {
    std::fprintf(stderr, "podgate-bench-stream-floor: %d of %d streams got ready\n", readied.load(),
                 streams);
    return 1;
  }
  std::fprintf(stderr, "held %d\n", streams);
  sigwait(&go, &sig);  // held until killed (or a second SIGUSR1)
  std::_Exit(0);       // the streams are not torn down: only their memory mattered
}

}  // namespace
}  // namespace podgate

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(argc, argv,
                               "podgate-bench-stream-floor --role=server|client [flags]: idle "
                               "exec.v1 Session streams with no podgate code, for their memory");
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "server") {
    return podgate::Serve();
  }
  if (role == "client") {
    return podgate::Client();
  }
  std::fprintf(stderr,
               "podgate-bench-stream-floor: --role must be server or client (see --help)\n");
  return 2;
}
