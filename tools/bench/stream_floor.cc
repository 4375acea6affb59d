// podgate-bench-stream-floor: what gRPC streams cost by themselves: exec.v1 Session streams
// with no podgate code on either side, and AuthorizeStream through podgate-policy's stream
// reactor, and unary Authorize, with no decision. The measured limits beside the idle-memory
// and bulk goals of `podgate-bench-chain` and the policy goals of `podgate-bench-policy`
// (docs/performance.md, "Sessions", "The limit of a relay", "Policy").
//
//   podgate-bench-stream-floor --role=server
//       Serves ExecService/Session on 127.0.0.1 (a free port, printed on stderr as
//       "listening <port>"): each stream's first message is answered with `ready`, then the
//       stream waits for the next message; a half-close ends it with OK. SIGINT or SIGTERM
//       stops the server (as it does --role=policy-server): open streams get a second.
//   podgate-bench-stream-floor --role=client --address=127.0.0.1:<port> --streams=N
//       On one channel (edge's Session-stream settings: keepalive, no retries), opens --warmup
//       streams that each send `open`, get `ready` and close; prints "warm"; waits for SIGUSR1;
//       opens N streams that each send `open`, get `ready` and stay open; prints "held N"; then
//       waits to be killed.
//
// The parent reads each side's VmRSS after "warm" and after "held": their difference over N is
// the memory gRPC keeps per idle stream on the client (edge's side) and the server (exec's).
//
//   podgate-bench-stream-floor --role=bulk-client --address=127.0.0.1:<port> --bytes=N
//       What one hop of gRPC costs bulk output (the measured limit beside the bulk goals of
//       `podgate-bench-chain --sections=bulk`): like podgate-run, on podgate-run's channel
//       settings and gRPC's synchronous API, sends `open`, waits for `ready`, sends the command
//       `head -c N /dev/zero` and writes every `stdout` message to its stdout until `exit`;
//       the server answers the command with N zero bytes in `stdout` messages of --chunk_kib
//       (exec's largest output message, 256 KiB), then `exit` 0. Exits 0 when N bytes came.
//
//   podgate-bench-stream-floor --role=policy-server [--answer_bytes=N]
//       Serves PolicyService/AuthorizeStream on 127.0.0.1 ("listening <port>" on stderr)
//       through podgate-policy's own stream reactor with no decision: every question is
//       answered, in order, with one fixed allow of N serialized bytes (the size of
//       podgate-policy's answers, which podgate-bench-policy measures and passes) carrying the
//       question's correlation id. What podgate-bench-policy measures against it is the most
//       AuthorizeStream can carry on the machine. PolicyService/Authorize (unary) answers every
//       call with the same fixed allow, unread, through the callback API's default reactor as
//       podgate-policy does: the most unary Authorize can carry with questions and answers of
//       podgate-policy's sizes.
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "podgate/policy/v1/policy.grpc.pb.h"
#include "policy/authorize_stream_reactor.h"
#include "run/stream_io.h"
#include "runtime/flags.h"
#include "runtime/server.h"
#include "runtime/tls.h"

ABSL_FLAG(std::string, role, "",
          "server, client (idle streams), bulk-client (bulk output) or policy-server "
          "(AuthorizeStream).");
ABSL_FLAG(std::string, address, "", "Client and bulk client: the server's host:port.");
ABSL_FLAG(int, streams, 1000, "Client: streams held open. Default 1000.");
ABSL_FLAG(int, warmup, 16, "Client: streams opened and closed first. Default 16.");
ABSL_FLAG(int, token_bytes, 400,
          "Client: size of the credential in each `open` (a signed JWT's size). Default 400.");
ABSL_FLAG(int64_t, bytes, 64 << 20, "Bulk client: output bytes asked for. Default 64 MiB.");
ABSL_FLAG(int, chunk_kib, 256,
          "Server: KiB of output per `stdout` message (exec's largest is 256). Default 256.");
ABSL_FLAG(int, answer_bytes, 160,
          "Policy server: serialized bytes of each answer (an AuthorizeResponse). Default 160.");

namespace podgate {
namespace {

namespace pb = podgate::exec::v1;

// --- server --------------------------------------------------------------------------------

// Answers `open` with `ready`; answers a command `head -c N /dev/zero` with N zero bytes in
// `stdout` messages of --chunk_kib, one write at a time as exec writes them, then `exit` 0.
class ServerStream final : public grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse> {
 public:
  explicit ServerStream(const std::string* zeros) : zeros_(zeros) { StartRead(&request_); }

  void OnReadDone(bool ok) override {
    if (!ok) {
      End(grpc::Status::OK);
      return;
    }
    if (request_.has_open() && !answered_) {
      answered_ = true;
      response_.mutable_ready()->set_session_id(std::string(32, 'a'));
      StartWrite(&response_);
      return;  // the next read starts once `ready` is written
    }
    if (request_.has_command() && !bulk_) {
      const std::vector<std::string> words = absl::StrSplit(request_.command().line(), ' ');
      int64_t bytes = 0;
      if (words.size() != 4 || words[0] != "head" || words[1] != "-c" ||
          !absl::SimpleAtoi(words[2], &bytes) || bytes < 0 || words[3] != "/dev/zero") {
        End(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                         "only `head -c N /dev/zero` is answered"));
        return;
      }
      bulk_ = true;
      command_id_ = request_.command().command_id();
      left_ = bytes;
      StartRead(&request_);  // a read stays pending (stdin end of file, the half-close)
      WriteNext();
      return;
    }
    StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      End(grpc::Status::CANCELLED);
      return;
    }
    if (!bulk_) {
      StartRead(&request_);  // `ready` is written
      return;
    }
    if (!exited_) {
      WriteNext();
    }
  }

  void OnDone() override { delete this; }

 private:
  void WriteNext() {
    response_.Clear();
    response_.set_seq(++seq_);
    if (left_ == 0) {
      exited_ = true;
      response_.mutable_exit()->set_command_id(command_id_);
      response_.mutable_exit()->set_exit_code(0);
      StartWrite(&response_);
      return;
    }
    const int64_t n = std::min<int64_t>(left_, static_cast<int64_t>(zeros_->size()));
    left_ -= n;
    offset_ += static_cast<uint64_t>(n);
    response_.set_output_offset(offset_);
    response_.mutable_stdout()->set_command_id(command_id_);
    response_.mutable_stdout()->set_data(zeros_->data(), static_cast<size_t>(n));
    StartWrite(&response_);
  }

  void End(const grpc::Status& status) {
    if (!finished_.exchange(true)) {
      Finish(status);
    }
  }

  const std::string* const zeros_;
  pb::SessionRequest request_;
  pb::SessionResponse response_;
  bool answered_ = false;
  // Set by the command's read before the first write; the writes' own from then on.
  bool bulk_ = false;
  bool exited_ = false;
  std::string command_id_;
  int64_t left_ = 0;
  uint64_t offset_ = 0;
  uint64_t seq_ = 0;
  std::atomic<bool> finished_{false};
};

class Service final : public pb::ExecService::CallbackService {
 public:
  explicit Service(size_t chunk_bytes) : zeros_(chunk_bytes, '\0') {}

  grpc::ServerBidiReactor<pb::SessionRequest, pb::SessionResponse>* Session(
      grpc::CallbackServerContext*) override {
    return new ServerStream(&zeros_);
  }

 private:
  const std::string zeros_;  // one output message's bytes
};

// Serves `service` on a free port of 127.0.0.1 until SIGINT or SIGTERM, which the caller has
// blocked (runtime::BlockShutdownSignals) before any thread started.
int ServeUntilSignal(grpc::Service* service) {
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service);
  // The services' settings that shape a call (lib/runtime/server.cc), without their
  // interceptors.
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
  runtime::WaitForShutdownSignal();
  // Open streams get a second, then are cancelled.
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(1));
  return 0;
}

int Serve() {
  const int chunk_kib = absl::GetFlag(FLAGS_chunk_kib);
  if (chunk_kib < 1 || chunk_kib > 4095) {
    std::fprintf(stderr,
                 "podgate-bench-stream-floor: --chunk_kib must be 1 to 4095 (see --help)\n");
    return 2;
  }
  runtime::BlockShutdownSignals();
  Service service(static_cast<size_t>(chunk_kib) << 10);
  return ServeUntilSignal(&service);
}

// --- policy server -------------------------------------------------------------------------

namespace ppb = podgate::policy::v1;

// AuthorizeStream through podgate-policy's own stream reactor (the same reads, queue, writes
// and drain), every question answered with the fixed answer instead of a decision; unary
// Authorize answered with it too.
class PolicyFloorService final : public ppb::PolicyService::CallbackService {
 public:
  explicit PolicyFloorService(ppb::AuthorizeResponse answer) : answer_(std::move(answer)) {}

  grpc::ServerUnaryReactor* Authorize(grpc::CallbackServerContext* context,
                                      const ppb::AuthorizeRequest* /*request*/,
                                      ppb::AuthorizeResponse* response) override {
    *response = answer_;
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

  grpc::ServerBidiReactor<ppb::AuthorizeStreamRequest, ppb::AuthorizeStreamResponse>*
  AuthorizeStream(grpc::CallbackServerContext*) override {
    return new policy::AuthorizeStreamReactor(
        [this](const ppb::AuthorizeRequest&, const runtime::TraceContext&) { return answer_; },
        &streams_);
  }

 private:
  const ppb::AuthorizeResponse answer_;
  policy::StreamRegistry streams_;
};

// The fixed answer: an allow by rule "stream-floor" of a policy version of `version_chars`
// characters, with `reason_chars` of reason and, with `filler`, one empty explanation line
// (two bytes beside the decision).
ppb::AuthorizeResponse FloorAnswer(size_t version_chars, size_t reason_chars, bool filler) {
  ppb::AuthorizeResponse answer;
  podgate::common::v1::Decision* d = answer.mutable_decision();
  d->set_verdict(podgate::common::v1::VERDICT_ALLOW);
  d->set_rule("stream-floor");
  d->set_policy_version(std::string(version_chars, '0'));
  d->set_reason(std::string(reason_chars, 'x'));
  if (filler) {
    answer.add_explanation();
  }
  return answer;
}

constexpr size_t kVersionChars = 64;  // a content hash's hex digits

// The fixed answer of exactly `bytes` serialized bytes, or nullopt when `bytes` is below the
// smallest. The reason's text fills it. Its length prefix, and the decision's, grow by a byte
// at 128 and 16384 bytes, which leaves sizes no reason length gives: a policy version one or
// two characters longer, or the empty explanation line, fills those.
std::optional<ppb::AuthorizeResponse> FixedAnswer(size_t bytes) {
  for (bool filler : {false, true}) {
    for (size_t version = kVersionChars; version <= kVersionChars + 2; ++version) {
      const size_t base = FloorAnswer(version, 0, filler).ByteSizeLong();
      // A reason adds its text and 2 to 4 bytes of tag and length, and may lengthen the
      // decision's length prefix by up to 2.
      for (size_t overhead = 0; overhead <= 6 && base + overhead <= bytes; ++overhead) {
        ppb::AuthorizeResponse answer = FloorAnswer(version, bytes - base - overhead, filler);
        if (answer.ByteSizeLong() == bytes) {
          return answer;
        }
      }
    }
  }
  return std::nullopt;
}

int ServePolicy() {
  const int bytes = absl::GetFlag(FLAGS_answer_bytes);
  std::optional<ppb::AuthorizeResponse> answer =
      bytes >= 0 && bytes <= (1 << 20) ? FixedAnswer(static_cast<size_t>(bytes)) : std::nullopt;
  if (!answer) {
    std::fprintf(stderr,
                 "podgate-bench-stream-floor: --answer_bytes=%d cannot be made: an answer is "
                 "%zu to 1048576 bytes (see --help)\n",
                 bytes, FloorAnswer(kVersionChars, 0, false).ByteSizeLong());
    return 2;
  }
  // podgate-policy's process settings (glibc malloc's thresholds and arenas, Abseil's lock-order
  // checks off: gRPC's own locks are absl::Mutex), which shape gRPC's own cost per message; the
  // shutdown signals blocked for ServeUntilSignal.
  runtime::PrepareServiceProcess();
  PolicyFloorService service(*std::move(answer));
  return ServeUntilSignal(&service);
}

// --- client --------------------------------------------------------------------------------

// Each client stream's `open`: a credential of --token_bytes (a signed JWT's size) and a target.
pb::SessionRequest OpenRequest() {
  pb::SessionRequest open;
  open.mutable_open()->mutable_credential()->set_bearer_token(
      std::string(static_cast<size_t>(absl::GetFlag(FLAGS_token_bytes)), 'x'));
  open.mutable_open()->mutable_target()->set_namespace_("app-shop");
  open.mutable_open()->mutable_target()->set_pod("orders-7d4b9c");
  open.mutable_open()->set_source_address("127.0.0.1:40000");
  return open;
}

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

  const pb::SessionRequest open = OpenRequest();

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

// --- bulk client ---------------------------------------------------------------------------

int BulkClient() {
  const std::string address = absl::GetFlag(FLAGS_address);
  const int64_t bytes = absl::GetFlag(FLAGS_bytes);
  if (address.empty() || bytes < 0) {
    std::fprintf(stderr,
                 "podgate-bench-stream-floor: --role=bulk-client needs --address and --bytes >= 0 "
                 "(see --help)\n");
    return 2;
  }
  // podgate-run's channel (runtime::CreateServiceChannel, plaintext as in the benchmark).
  auto channel = runtime::CreateServiceChannel(address, runtime::ChannelTlsOptions{},
                                               runtime::ChannelCalls::kSessionStreams);
  if (!channel.ok()) {
    std::fprintf(stderr, "podgate-bench-stream-floor: %s\n",
                 std::string(channel.status().message()).c_str());
    return 2;
  }
  auto stub = pb::ExecService::NewStub(*channel);
  grpc::ClientContext context;
  auto stream = stub->Session(&context);
  pb::SessionRequest request = OpenRequest();
  pb::SessionResponse response;
  if (!stream->Write(request) || !stream->Read(&response) || !response.has_ready()) {
    std::fprintf(stderr, "podgate-bench-stream-floor: no `ready`: %s\n",
                 stream->Finish().error_message().c_str());
    return 1;
  }
  request.Clear();
  request.mutable_command()->set_command_id("bulk");
  request.mutable_command()->set_line(absl::StrCat("head -c ", bytes, " /dev/zero"));
  stream->Write(request);
  int64_t received = 0;
  bool exited = false;
  while (!exited && stream->Read(&response)) {
    if (response.has_stdout()) {
      received += static_cast<int64_t>(response.stdout().data().size());
      // podgate-run's own write; one that fails shows in the stdout bytes the parent counts.
      run::WriteAll(STDOUT_FILENO, response.stdout().data());
    }
    exited = response.has_exit();
  }
  stream->WritesDone();
  const grpc::Status status = stream->Finish();
  if (!exited || !status.ok() || received != bytes) {
    std::fprintf(stderr,
                 "podgate-bench-stream-floor: %lld of %lld bytes, %s, stream status %d %s\n",
                 static_cast<long long>(received), static_cast<long long>(bytes),
                 exited ? "exited" : "no exit", static_cast<int>(status.error_code()),
                 status.error_message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace podgate

int main(int argc, char** argv) {
  podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-bench-stream-floor --role=server|client|bulk-client|policy-server [flags]: "
      "gRPC streams alone: exec.v1 Session streams with no podgate code for the memory of idle "
      "ones and the CPU of bulk output, policy.v1 AuthorizeStream and unary Authorize with no "
      "decision for the most answers/s");
  const std::string role = absl::GetFlag(FLAGS_role);
  if (role == "server") {
    return podgate::Serve();
  }
  if (role == "client") {
    return podgate::Client();
  }
  if (role == "bulk-client") {
    return podgate::BulkClient();
  }
  if (role == "policy-server") {
    return podgate::ServePolicy();
  }
  std::fprintf(stderr,
               "podgate-bench-stream-floor: --role must be server, client, bulk-client or "
               "policy-server (see --help)\n");
  return 2;
}
