// podgate-run: runs one command in a pod through the exec service, as any backend can — the
// credential is the end user's JWT, and policy and audit apply as for the web terminal.
//
//   podgate-run --token="$DEV_TOKEN" --namespace=app-shop --pod=orders-7d4b9c -- jcmd 1 VM.flags
//
// stdout and stderr stay apart; the exit status is the command's, 126 when the command was
// refused (the reason is printed), 125 when it could not run.
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/grpcpp.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "runtime/flags.h"
#include "runtime/tls.h"

ABSL_FLAG(std::string, exec_address, "127.0.0.1:7102", "The exec service. Default 127.0.0.1:7102.");
ABSL_FLAG(std::string, exec_tls_ca, "", "PEM CA of the exec service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, exec_tls_cert, "", "PEM client certificate (mTLS). Default: none.");
ABSL_FLAG(std::string, exec_tls_key, "", "PEM client key (mTLS). Default: none.");
ABSL_FLAG(std::string, token, "", "The user's JWT (or PODGATE_TOKEN). Required.");
ABSL_FLAG(std::string, namespace, "", "The pod's namespace. Required.");
ABSL_FLAG(std::string, pod, "", "The pod. Required.");
ABSL_FLAG(std::string, container, "", "The container; default: the pod's default container.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "Give up after this long. Default 10m.");

namespace {

// Quotes each argument for exec's POSIX word splitting, so argv arrives unchanged.
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

void Write(int fd, const std::string& data) {
  size_t off = 0;
  while (off < data.size()) {
    const ssize_t n = write(fd, data.data() + off, data.size() - off);
    if (n <= 0) {
      return;
    }
    off += static_cast<size_t>(n);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-run: run one command in a pod through podgate.\n"
      "  podgate-run --token=JWT --namespace=NS --pod=POD [--container=C] -- ARGV...");
  std::vector<std::string> command(rest.begin() + 1, rest.end());
  const std::string token = absl::GetFlag(FLAGS_token);
  if (token.empty() || absl::GetFlag(FLAGS_namespace).empty() || absl::GetFlag(FLAGS_pod).empty() ||
      command.empty()) {
    std::fprintf(stderr, "podgate-run: --token, --namespace, --pod and a command are required\n");
    return 2;
  }
  podgate::runtime::ChannelTlsOptions tls{absl::GetFlag(FLAGS_exec_tls_ca),
                                          absl::GetFlag(FLAGS_exec_tls_cert),
                                          absl::GetFlag(FLAGS_exec_tls_key), "", "exec"};
  auto channel = podgate::runtime::CreateServiceChannel(absl::GetFlag(FLAGS_exec_address), tls);
  if (!channel.ok()) {
    std::fprintf(stderr, "podgate-run: %s\n", std::string(channel.status().message()).c_str());
    return 2;
  }
  auto stub = podgate::exec::v1::ExecService::NewStub(*channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(absl::ToChronoTime(absl::Now() + absl::GetFlag(FLAGS_timeout)));
  auto stream = stub->Session(&ctx);
  podgate::exec::v1::SessionRequest req;
  auto* open = req.mutable_open();
  open->mutable_credential()->set_bearer_token(token);
  open->mutable_target()->set_namespace_(absl::GetFlag(FLAGS_namespace));
  open->mutable_target()->set_pod(absl::GetFlag(FLAGS_pod));
  open->mutable_target()->set_container(absl::GetFlag(FLAGS_container));
  open->set_client("podgate-run");
  stream->Write(req);
  podgate::exec::v1::SessionResponse res;
  // The conversation: wait for `ready` before the command.
  if (!stream->Read(&res) || !res.has_ready()) {
    grpc::Status final = stream->Finish();
    std::fprintf(stderr, "podgate-run: %s\n", final.error_message().c_str());
    return 125;
  }
  req.Clear();
  req.mutable_command()->set_line(QuoteLine(command));
  stream->Write(req);
  int status = 125;
  bool done = false;
  while (!done && stream->Read(&res)) {
    switch (res.kind_case()) {
      case podgate::exec::v1::SessionResponse::kStdout:
        Write(1, res.stdout().data());
        break;
      case podgate::exec::v1::SessionResponse::kStderr:
        Write(2, res.stderr().data());
        break;
      case podgate::exec::v1::SessionResponse::kExit:
        status = res.exit().termination() == podgate::common::v1::TERMINATION_EXITED
                     ? res.exit().exit_code()
                     : 130;
        if (res.exit().termination() != podgate::common::v1::TERMINATION_EXITED) {
          std::fprintf(stderr, "podgate-run: stopped (%s)\n",
                       podgate::common::v1::Termination_Name(res.exit().termination()).c_str());
        }
        done = true;
        break;
      case podgate::exec::v1::SessionResponse::kDenied:
        std::fprintf(stderr, "podgate-run: refused by rule %s: %s\n", res.denied().rule().c_str(),
                     res.denied().reason().c_str());
        status = 126;
        done = true;
        break;
      case podgate::exec::v1::SessionResponse::kError:
        std::fprintf(stderr, "podgate-run: %s\n", res.error().status().message().c_str());
        done = true;
        break;
      default:
        break;
    }
  }
  req.Clear();
  req.mutable_close();
  stream->Write(req);
  stream->WritesDone();
  while (stream->Read(&res)) {
  }
  grpc::Status final = stream->Finish();
  if (!done && !final.ok()) {
    std::fprintf(stderr, "podgate-run: %s\n", final.error_message().c_str());
  }
  return status;
}
