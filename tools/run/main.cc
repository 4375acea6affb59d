// podgate-run: runs one command in a pod through the exec service, as any backend can — the
// credential is the end user's JWT, and policy and audit apply as for the web terminal. Its
// command line follows kubectl exec's (docs/cli.md):
//
//   podgate-run -n shop -c app api-7d9 -- jmap -histo 1
//   echo hi | podgate-run -i -n shop api-7d9 -- wc -c
//
// stdout and stderr stay apart; the exit status is the command's, 126 when the command was
// refused (the reason is printed), 125 when it could not run, 130 when it was stopped, 2 for a
// usage error.
//
// The token comes from --token_file (or PODGATE_TOKEN_FILE), PODGATE_TOKEN, or the sign-in
// `podgate-run login` cached (the OAuth 2.0 device flow against the company's OpenID provider),
// refreshed when it is about to expire:
//
//   podgate-run login --oidc_issuer=https://sso.example.com --oidc_client_id=podgate-cli
//   podgate-run -n app-shop orders-7d4b9c -- jcmd 1 VM.flags
//   podgate-run logout
//
// --token=JWT still works but warns: the process list shows it to every user of the machine.
#include <unistd.h>

#include <algorithm>
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
#include "run/run_args.h"
#include "run/run_session.h"
#include "run/token_cache.h"
#include "run/token_file.h"
#include "runtime/flags.h"
#include "runtime/tls.h"

ABSL_FLAG(std::string, exec_address, "127.0.0.1:7102", "The exec service. Default 127.0.0.1:7102.");
ABSL_FLAG(std::string, exec_tls_ca, "", "PEM CA of the exec service (TLS). Default: plaintext.");
ABSL_FLAG(std::string, exec_tls_cert, "", "PEM client certificate (mTLS). Default: none.");
ABSL_FLAG(std::string, exec_tls_key, "", "PEM client key (mTLS). Default: none.");
ABSL_FLAG(std::string, token, "",
          "The user's JWT. Prefer PODGATE_TOKEN or --token_file: on the command line it is "
          "visible in the process list (a warning says so). Default: none (the sign-in "
          "`podgate-run login` cached).");
ABSL_FLAG(std::string, token_file, "",
          "A file holding the user's JWT (read once at start; surrounding whitespace dropped; "
          "or PODGATE_TOKEN_FILE). Default: none (PODGATE_TOKEN, else the cached sign-in).");
ABSL_FLAG(std::string, namespace, "", "-n: the pod's namespace. Required.");
ABSL_FLAG(std::string, pod, "",
          "The pod; usually given as the positional POD before `--`. Required (one of the two).");
ABSL_FLAG(std::string, container, "", "-c: the container. Default: the pod's default container.");
ABSL_FLAG(bool, stdin, false,
          "-i: forward podgate-run's standard input to the command and close the command's "
          "stdin at its end. Default false: the command's stdin is closed at once.");
ABSL_FLAG(std::string, cluster, "",
          "The cluster, by the name exec serves it under (or PODGATE_CLUSTER). Default: exec's "
          "default cluster.");
ABSL_FLAG(absl::Duration, timeout, absl::Minutes(10), "Give up after this long. Default 10m.");
ABSL_FLAG(absl::Duration, connect_timeout, absl::Seconds(10),
          "How long to wait for a connection to exec, trying again after a refused or broken "
          "attempt, before giving up with the last attempt's reason (0: one attempt); counts "
          "toward --timeout. Default 10s.");
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
    return absl::NotFoundError(
        absl::StrCat("no token (--token_file, PODGATE_TOKEN) and no sign-in cached at ", *path,
                     ": run podgate-run login, or give --token_file=PATH or PODGATE_TOKEN"));
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

// The token, first found wins: --token_file or --token on the command line (not both; --token
// warns), then PODGATE_TOKEN_FILE or PODGATE_TOKEN (not both), then the cached sign-in. The
// status's code picks the exit status: InvalidArgument for a usage error.
absl::StatusOr<std::string> ChooseToken(const podgate::run::RunArgs& args) {
  const std::string token = absl::GetFlag(FLAGS_token);
  const std::string file = absl::GetFlag(FLAGS_token_file);
  const bool token_argv = args.given.count("token") > 0;
  const bool file_argv = args.given.count("token_file") > 0;
  if (token_argv && file_argv) {
    return absl::InvalidArgumentError("give --token_file or --token, not both");
  }
  bool use_file = file_argv;
  bool use_token = token_argv;
  if (!token_argv && !file_argv) {
    if (!token.empty() && !file.empty()) {
      return absl::InvalidArgumentError(
          "PODGATE_TOKEN and PODGATE_TOKEN_FILE are both set; unset one (or give --token_file)");
    }
    use_file = !file.empty();
    use_token = !token.empty();
  }
  if (use_file) {
    absl::StatusOr<std::string> read = podgate::run::ReadTokenFile(file);
    if (!read.ok()) {
      return absl::UnauthenticatedError(read.status().message());
    }
    return read;
  }
  if (use_token) {
    if (token.empty()) {
      return absl::InvalidArgumentError("--token is empty");
    }
    if (token_argv) {
      Say("podgate-run: warning: a token on the command line is visible to every user of this "
          "machine in the process list (ps, /proc); give it with --token_file=PATH or "
          "PODGATE_TOKEN instead");
    }
    return token;
  }
  absl::StatusOr<std::string> cached = CachedIdToken();
  if (!cached.ok() && absl::IsInvalidArgument(cached.status())) {
    return absl::FailedPreconditionError(cached.status().message());  // a bad cache, not usage
  }
  return cached;
}

// Overwrites the token's characters in the process's own argv, so `ps` stops showing them (it
// showed them from exec until now: hence the warning).
void ScrubSecrets(const podgate::run::RunArgs& args, int argc, char** argv) {
  for (const auto& [index, offset] : args.secrets) {
    if (index < static_cast<size_t>(argc)) {
      char* word = argv[index];
      for (size_t i = offset; word[i] != '\0'; ++i) {
        word[i] = '*';
      }
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  absl::StatusOr<podgate::run::RunArgs> args = podgate::run::NormaliseArgs(
      std::vector<std::string>(argv, argv + argc), podgate::run::RegisteredFlagKind);
  if (!args.ok()) {
    Say(absl::StrCat("podgate-run: ", args.status().message()));
    return podgate::run::kExitUsage;
  }
  std::vector<char*> flag_argv;
  for (std::string& flag : args->flags) {
    flag_argv.push_back(flag.data());
  }
  ScrubSecrets(*args, argc, argv);
  flag_argv.push_back(nullptr);
  std::vector<char*> rest = podgate::runtime::ParseFlags(
      static_cast<int>(flag_argv.size() - 1), flag_argv.data(),
      "runs one command in a pod through podgate, as kubectl exec does.\n"
      "  podgate-run [-n NAMESPACE] [-c CONTAINER] [-i] POD -- COMMAND [ARGS...]\n"
      "  podgate-run login --oidc_issuer=URL --oidc_client_id=ID [--token_cache=PATH]\n"
      "  podgate-run logout [--token_cache=PATH]\n"
      "The token: --token_file=PATH or PODGATE_TOKEN, else the sign-in login cached.\n"
      "Exit status: the command's; 126 refused by policy, 125 could not run, 130 stopped, "
      "2 usage.");
  if (rest.size() != 1) {
    Say("podgate-run: unexpected words among the flags");  // NormaliseArgs passes none
    return podgate::run::kExitUsage;
  }
  if (!args->verb.empty()) {
    return args->verb == "login" ? Login() : Logout();
  }
  podgate::run::RunOptions options;
  options.namespace_name = absl::GetFlag(FLAGS_namespace);
  options.pod = absl::GetFlag(FLAGS_pod);
  options.container = absl::GetFlag(FLAGS_container);
  options.cluster = absl::GetFlag(FLAGS_cluster);
  options.forward_stdin = absl::GetFlag(FLAGS_stdin);
  options.timeout = absl::GetFlag(FLAGS_timeout);
  if (options.timeout <= absl::ZeroDuration()) {
    Say("podgate-run: --timeout: must be more than 0");
    return podgate::run::kExitUsage;
  }
  if (absl::GetFlag(FLAGS_connect_timeout) < absl::ZeroDuration()) {
    Say("podgate-run: --connect_timeout: must be 0 or more");
    return podgate::run::kExitUsage;
  }
  options.command = args->command;
  if (!args->pod.empty()) {
    if (args->given.count("pod") > 0 && options.pod != args->pod) {
      Say(absl::StrCat("podgate-run: two pods: --pod=", options.pod, " and ", args->pod,
                       "; name one"));
      return podgate::run::kExitUsage;
    }
    options.pod = args->pod;  // the command line's over PODGATE_POD
  }
  if (options.namespace_name.empty() || options.pod.empty() || options.command.empty()) {
    Say(absl::StrCat("podgate-run: ",
                     options.namespace_name.empty() ? "a namespace (-n NAMESPACE)"
                     : options.pod.empty()
                         ? "a pod (podgate-run [flags] POD -- COMMAND)"
                         : "a command after -- (podgate-run [flags] POD -- COMMAND)",
                     " is required"));
    return podgate::run::kExitUsage;
  }
  if (absl::Status s =
          podgate::k8s::ValidateTarget(options.namespace_name, options.pod, options.container);
      !s.ok()) {
    Say(absl::StrCat("podgate-run: ", s.message()));
    return podgate::run::kExitUsage;
  }
  if (absl::Status s = podgate::k8s::ValidateTargetCluster(options.cluster); !s.ok()) {
    Say(absl::StrCat("podgate-run: --cluster: ", s.message()));
    return podgate::run::kExitUsage;
  }
  absl::StatusOr<std::string> token = ChooseToken(*args);
  if (!token.ok()) {
    Say(absl::StrCat("podgate-run: ", token.status().message()));
    return absl::IsInvalidArgument(token.status()) ? podgate::run::kExitUsage
                                                   : podgate::run::kExitCouldNotRun;
  }
  options.token = *std::move(token);
  podgate::runtime::ChannelTlsOptions tls{absl::GetFlag(FLAGS_exec_tls_ca),
                                          absl::GetFlag(FLAGS_exec_tls_cert),
                                          absl::GetFlag(FLAGS_exec_tls_key), "", "exec"};
  auto channel = podgate::runtime::CreateServiceChannel(absl::GetFlag(FLAGS_exec_address), tls);
  if (!channel.ok()) {
    Say(absl::StrCat("podgate-run: ", channel.status().message()));
    return podgate::run::kExitUsage;
  }
  auto stub = podgate::exec::v1::ExecService::NewStub(*channel);
  // Not ready by then: the session's call fails and says why.
  const absl::Time start = absl::Now();
  podgate::runtime::WaitForChannelReady(
      **channel, start + std::min(absl::GetFlag(FLAGS_connect_timeout), options.timeout));
  options.timeout = std::max(absl::ZeroDuration(), options.timeout - (absl::Now() - start));
  return podgate::run::RunInPod(*stub, options);
}
