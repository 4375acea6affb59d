#include "run/run_session.h"

#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "run/signal_forwarder.h"
#include "run/stdin_forwarder.h"
#include "run/stream_io.h"

namespace podgate::run {
namespace {

namespace pb = podgate::exec::v1;
namespace common = podgate::common::v1;

std::string Stopped(const pb::CommandExit& exit) {
  std::string why;
  switch (exit.termination()) {
    case common::TERMINATION_INTERRUPTED:
      why = "interrupted";
      break;
    case common::TERMINATION_TIME_LIMIT:
      why = "the rule's time limit";
      break;
    case common::TERMINATION_OUTPUT_LIMIT:
      why = "the rule's output limit";
      break;
    default:
      why = "the stream to the container failed; the command's exit status is unknown";
      break;
  }
  std::string line =
      absl::StrCat("stopped (", common::Termination_Name(exit.termination()), "): ", why);
  if (!exit.error().empty()) {
    absl::StrAppend(&line, ": ", exit.error());
  }
  return line;
}

}  // namespace

std::string QuoteLine(const std::vector<std::string>& argv) {
  std::string line;
  for (const std::string& arg : argv) {
    if (!line.empty()) {
      line += ' ';
    }
    line += "'" + absl::StrReplaceAll(arg, {{"'", "'\\''"}}) + "'";
  }
  return line;
}

int RunInPod(pb::ExecService::StubInterface& stub, const RunOptions& options) {
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + options.timeout));
  std::unique_ptr<SessionStream> stream = stub.Session(&ctx);
  Sender sender(stream.get());
  std::unique_ptr<SignalForwarder> signals;
  if (options.interrupt_on_signals) {
    signals = std::make_unique<SignalForwarder>(&sender, &ctx, options.stderr_fd);
  }
  pb::SessionRequest req;
  auto* open = req.mutable_open();
  open->mutable_credential()->set_bearer_token(options.token);
  open->mutable_target()->set_namespace_(options.namespace_name);
  open->mutable_target()->set_pod(options.pod);
  open->mutable_target()->set_container(options.container);
  open->mutable_target()->set_cluster(options.cluster);
  open->set_client("podgate-run");
  (void)sender.Send(req);
  pb::SessionResponse res;
  // The conversation: wait for `ready` before the command.
  if (!stream->Read(&res) || !res.has_ready()) {
    const grpc::Status final = stream->Finish();
    Say(options.stderr_fd,
        final.ok() ? "exec ended the session before it was ready" : final.error_message());
    return kExitCouldNotRun;
  }
  req.Clear();
  req.mutable_command()->set_line(QuoteLine(options.command));
  (void)sender.Send(req);
  if (signals != nullptr) {
    signals->CommandSent();
  }
  std::unique_ptr<StdinForwarder> forwarder;
  if (options.forward_stdin) {
    forwarder = std::make_unique<StdinForwarder>(&sender, options.stdin_fd, options.stderr_fd);
  } else {
    // Without -i the command reads end of file at once, as with kubectl exec without -i: `wc`
    // or `cat` ends instead of waiting for its time limit.
    req.Clear();
    req.mutable_stdin()->set_eof(true);
    (void)sender.Send(req);
  }
  int status = kExitCouldNotRun;
  bool done = false;
  while (!done && stream->Read(&res)) {
    switch (res.kind_case()) {
      case pb::SessionResponse::kStdout:
        WriteAll(options.stdout_fd, res.stdout().data());
        break;
      case pb::SessionResponse::kStderr:
        WriteAll(options.stderr_fd, res.stderr().data());
        break;
      case pb::SessionResponse::kExit:
        if (res.exit().termination() == common::TERMINATION_EXITED) {
          status = res.exit().exit_code();
        } else {
          status = kExitStopped;
          Say(options.stderr_fd, Stopped(res.exit()));
        }
        done = true;
        break;
      case pb::SessionResponse::kDenied:
        Say(options.stderr_fd,
            absl::StrCat("refused by rule ", res.denied().rule(), ": ", res.denied().reason()));
        status = kExitRefused;
        done = true;
        break;
      case pb::SessionResponse::kError:
        Say(options.stderr_fd, res.error().status().message());
        done = true;
        break;
      case pb::SessionResponse::kClosed:
        Say(options.stderr_fd, absl::StrCat("exec closed the session (",
                                            common::CloseReason_Name(res.closed().reason()),
                                            "): ", res.closed().message()));
        done = true;
        break;
      default:
        break;
    }
  }
  if (forwarder != nullptr && !forwarder->Stop(options.stdin_stop_grace)) {
    ctx.TryCancel();  // ends the Write flow control holds; the outcome is known already
  }
  forwarder.reset();
  signals.reset();
  req.Clear();
  req.mutable_close();
  (void)sender.Send(req);
  (void)stream->WritesDone();
  while (stream->Read(&res)) {
  }
  const grpc::Status final = stream->Finish();
  if (!done) {
    Say(options.stderr_fd,
        final.ok() ? "exec ended the session before the command ended" : final.error_message());
  }
  return status;
}

}  // namespace podgate::run
