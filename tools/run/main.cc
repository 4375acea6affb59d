// podgate-run: runs one command in a pod through the exec service, as any backend can — the
// credential is the end user's JWT, and policy and audit apply as for the web terminal.
//
//   podgate-run --token="$DEV_TOKEN" --namespace=app-shop --pod=orders-7d4b9c -- jcmd 1 VM.flags
//
// stdout and stderr stay apart; the exit status is the command's, 126 when the command was
// refused (the reason is printed), 125 when it could not run.
//
// Without --token it uses the sign-in `podgate-run login` cached (the OAuth 2.0 device flow
// against the company's OpenID provider), refreshing the ID token when it is about to expire:
//
//   podgate-run login --oidc_issuer=https://sso.example.com --oidc_client_id=podgate-cli
//   podgate-run --namespace=app-shop --pod=orders-7d4b9c -- jcmd 1 VM.flags
//   podgate-run logout
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "grpcpp/grpcpp.h"
#include "k8s/names.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "run/oidc_login.h"
#include "run/token_cache.h"
#include "runtime/flags.h"
#include "runtime/tls.h"

ABSL_FLAG(std::string, exec_address, "127.0.0.1:7102", "The exec service. Default 127.0.0.1:7102.");
ABSL_FLAG(std::string, exec_tls_ca, "", "PEM CA of the exec service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, exec_tls_cert, "", "PEM client certificate (mTLS). Default: none.");
ABSL_FLAG(std::string, exec_tls_key, "", "PEM client key (mTLS). Default: none.");
ABSL_FLAG(std::string, token, "",
          "The user's JWT (or PODGATE_TOKEN). Default: the token `podgate-run login` cached. "
          "Takes precedence over the cache.");
ABSL_FLAG(std::string, namespace, "", "The pod's namespace. Required.");
ABSL_FLAG(std::string, pod, "", "The pod. Required.");
ABSL_FLAG(std::string, container, "", "The container; default: the pod's default container.");
ABSL_FLAG(std::string, cluster, "",
          "The cluster, by the name exec serves it under (or PODGATE_CLUSTER). Default: exec's "
          "default cluster.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "Give up after this long. Default 10m.");
ABSL_FLAG(std::string, oidc_issuer, "",
          "login: the OpenID provider's issuer URL (https; http only to loopback). Required for "
          "login. On a run, the cached sign-in must be from this issuer when it is given.");
ABSL_FLAG(std::string, oidc_client_id, "",
          "login: the provider's client id for podgate-run (a public client allowed the device "
          "flow). Required for login. On a run, the cached sign-in must be for it when given.");
ABSL_FLAG(std::string, oidc_scopes, "openid profile email groups offline_access",
          "login: the scopes asked for, space-separated; must include openid (offline_access "
          "asks for a refresh token). Default: openid profile email groups offline_access.");
ABSL_FLAG(std::string, oidc_ca_file, "",
          "PEM CA bundle to verify an https provider with (login, refresh, the revocation at "
          "logout). Default: the system's roots.");
ABSL_FLAG(std::string, token_cache, "",
          "Where login keeps the sign-in (mode 0600) and runs without --token read it. Default: "
          "$XDG_CONFIG_HOME/podgate/token.json, else ~/.config/podgate/token.json.");

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

void Say(const std::string& line) { Write(2, line + "\n"); }

absl::StatusOr<std::string> CachePath() {
  if (std::string path = absl::GetFlag(FLAGS_token_cache); !path.empty()) {
    return path;
  }
  return podgate::run::DefaultTokenCachePath(podgate::runtime::ProcessEnv());
}

podgate::run::ProviderOptions Provider() {
  podgate::run::ProviderOptions options;
  options.issuer = absl::GetFlag(FLAGS_oidc_issuer);
  options.client_id = absl::GetFlag(FLAGS_oidc_client_id);
  options.scopes = absl::GetFlag(FLAGS_oidc_scopes);
  options.ca_file = absl::GetFlag(FLAGS_oidc_ca_file);
  return options;
}

// podgate-run login: the device flow, then the cache written.
int Login() {
  podgate::run::ProviderOptions options = Provider();
  if (options.issuer.empty() || options.client_id.empty()) {
    Say("podgate-run login: --oidc_issuer and --oidc_client_id are required");
    return 2;
  }
  absl::StatusOr<std::string> path = CachePath();
  if (!path.ok()) {
    Say(absl::StrCat("podgate-run login: ", path.status().message()));
    return 2;
  }
  absl::StatusOr<podgate::run::CachedToken> token = podgate::run::DeviceLogin(options, Say);
  if (!token.ok()) {
    Say(absl::StrCat("podgate-run login: ", token.status().message()));
    return 1;
  }
  if (absl::Status s = podgate::run::WriteTokenCache(*path, *token); !s.ok()) {
    Say(absl::StrCat("podgate-run login: ", s.message()));
    return 1;
  }
  Say(absl::StrCat("The sign-in is cached in ", *path, "."));
  return 0;
}

// podgate-run logout: the refresh token revoked at the provider, the cache deleted.
int Logout() {
  absl::StatusOr<std::string> path = CachePath();
  if (!path.ok()) {
    Say(absl::StrCat("podgate-run logout: ", path.status().message()));
    return 2;
  }
  // The provider's grant ends too when it can (best effort: the cache goes either way).
  std::string revoked;
  if (absl::StatusOr<podgate::run::CachedToken> cached = podgate::run::ReadTokenCache(*path);
      cached.ok() && !cached->refresh_token.empty()) {
    absl::Status s = podgate::run::RevokeRefreshToken(*cached, Provider());
    revoked = s.ok() ? " The refresh token was revoked at the identity provider."
                     : absl::StrCat(
                           " The refresh token could not be revoked at the identity "
                           "provider (",
                           s.message(), "); it ends when it expires there.");
  }
  absl::Status removed = podgate::run::RemoveTokenCache(*path);
  if (absl::IsNotFound(removed)) {
    Say(absl::StrCat("podgate-run logout: not signed in (no token cache at ", *path, ")"));
    return 0;
  }
  if (!removed.ok()) {
    Say(absl::StrCat("podgate-run logout: ", removed.message()));
    return 1;
  }
  Say(absl::StrCat("Signed out: removed ", *path, ".", revoked));
  return 0;
}

// The cached sign-in's ID token, refreshed (and the cache rewritten) when it expires within a
// minute.
absl::StatusOr<std::string> CachedIdToken() {
  absl::StatusOr<std::string> path = CachePath();
  if (!path.ok()) {
    return path.status();
  }
  absl::StatusOr<podgate::run::CachedToken> cached = podgate::run::ReadTokenCache(*path);
  if (absl::IsNotFound(cached.status())) {
    return absl::NotFoundError(absl::StrCat("no --token and no sign-in cached at ", *path,
                                            ": run podgate-run login (or give --token)"));
  }
  if (!cached.ok()) {
    return cached.status();
  }
  const podgate::run::ProviderOptions options = Provider();
  if ((!options.issuer.empty() && options.issuer != cached->issuer) ||
      (!options.client_id.empty() && options.client_id != cached->client_id)) {
    return absl::FailedPreconditionError(
        absl::StrCat("the sign-in cached at ", *path, " is for issuer ", cached->issuer,
                     " and client ", cached->client_id,
                     ", not for --oidc_issuer/--oidc_client_id: run podgate-run login again"));
  }
  // Without a refresh token, the ID token is used until it expires (exec then refuses it).
  if (!podgate::run::NeedsRefresh(*cached, absl::Now()) ||
      (cached->refresh_token.empty() && cached->expiry > absl::Now())) {
    return cached->id_token;
  }
  // One refresh for runs started together: the others wait, then read what it wrote.
  absl::StatusOr<podgate::run::TokenCacheLock> lock =
      podgate::run::TokenCacheLock::Acquire(*path, absl::Minutes(1));
  if (!lock.ok()) {
    return lock.status();
  }
  cached = podgate::run::ReadTokenCache(*path);
  if (!cached.ok()) {
    return cached.status();
  }
  if (!podgate::run::NeedsRefresh(*cached, absl::Now())) {
    return cached->id_token;
  }
  absl::StatusOr<podgate::run::CachedToken> fresh = podgate::run::RefreshToken(*cached, options);
  if (!fresh.ok()) {
    return absl::UnauthenticatedError(
        absl::StrCat("the cached sign-in has expired and could not be refreshed (",
                     fresh.status().message(), "): run podgate-run login again"));
  }
  if (absl::Status s = podgate::run::WriteTokenCache(*path, *fresh); !s.ok()) {
    Say(absl::StrCat("podgate-run: warning: the refreshed sign-in was not saved: ", s.message()));
  }
  return fresh->id_token;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<char*> rest = podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-run: run one command in a pod through podgate.\n"
      "  podgate-run [--token=JWT] --namespace=NS --pod=POD [--container=C] -- ARGV...\n"
      "  podgate-run login --oidc_issuer=URL --oidc_client_id=ID [--token_cache=PATH]\n"
      "  podgate-run logout [--token_cache=PATH]");
  // `login` and `logout` come first; a command of that name in a pod goes after `--`.
  const std::string verb = argc > 1 ? argv[1] : "";
  if (verb == "login" || verb == "logout") {
    if (rest.size() != 2) {
      Say(absl::StrCat("podgate-run ", verb, ": takes no arguments besides flags"));
      return 2;
    }
    return verb == "login" ? Login() : Logout();
  }
  std::vector<std::string> command(rest.begin() + 1, rest.end());
  if (absl::GetFlag(FLAGS_namespace).empty() || absl::GetFlag(FLAGS_pod).empty() ||
      command.empty()) {
    std::fprintf(stderr, "podgate-run: --namespace, --pod and a command are required\n");
    return 2;
  }
  if (absl::Status s = podgate::k8s::ValidateTargetCluster(absl::GetFlag(FLAGS_cluster)); !s.ok()) {
    Say(absl::StrCat("podgate-run: --cluster: ", s.message()));
    return 2;
  }
  std::string token = absl::GetFlag(FLAGS_token);
  if (token.empty()) {
    absl::StatusOr<std::string> cached = CachedIdToken();
    if (!cached.ok()) {
      Say(absl::StrCat("podgate-run: ", cached.status().message()));
      return 125;
    }
    token = *std::move(cached);
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
  open->mutable_target()->set_cluster(absl::GetFlag(FLAGS_cluster));
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
