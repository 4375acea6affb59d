// podgate-exec: holds the Kubernetes exec streams. Verifies each user's JWT, asks policy before
// every command, records to audit before anything reaches a pod.
#include <cstdio>
#include <cstdlib>
#include <string>

#include "absl/strings/str_cat.h"
#include "auth/auth_flags.h"
#include "clients/audit_client.h"
#include "exec/exec_service.h"
#include "exec/impersonation.h"
#include "exec/kube_client.h"
#include "exec/options.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

int main(int argc, char** argv) {
  namespace rt = podgate::runtime;
  rt::BlockShutdownSignals();
  rt::ParseFlags(argc, argv,
                 "podgate-exec: runs authorized commands in Kubernetes pods.\n"
                 "Every flag may also be set as PODGATE_<FLAG>.");
  rt::InitLoggingFromFlags("exec");
  const rt::ServiceDefaults defaults{"exec", "[::]:7102", "[::]:9102"};
  // The shared flags are checked first, so that a bad flag stays one line.
  if (auto server_options = rt::ServerOptionsFromFlags(defaults); !server_options.ok()) {
    rt::ExitWithError(std::string(server_options.status().message()));
  }
  absl::StatusOr<podgate::exec::ExecServiceOptions> flags =
      podgate::exec::ExecServiceOptionsFromFlags();
  if (!flags.ok()) {
    rt::ExitWithError(std::string(flags.status().message()));
  }
  // The JWKS URL source (if any) registers its metrics here.
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<podgate::auth::Verifier> verifier = podgate::auth::VerifierFromFlags(registry);
  if (!verifier.ok()) {
    rt::ExitWithError(std::string(verifier.status().message()));
  }

  absl::StatusOr<podgate::exec::KubeConfig> kube_config;
  if (flags->kubeconfig.empty()) {
    kube_config = podgate::exec::InClusterConfig(flags->service_account_dir);
  } else {
    kube_config = podgate::exec::LoadKubeconfig(flags->kubeconfig, flags->kube_allow_insecure);
  }
  if (!kube_config.ok()) {
    rt::ExitWithError(absl::StrCat("--kubeconfig: ", kube_config.status().message()));
  }

  absl::StatusOr<std::shared_ptr<grpc::Channel>> policy_channel =
      rt::CreatePeerChannel(rt::PolicyPeerFlags());
  if (!policy_channel.ok()) {
    rt::ExitWithError(std::string(policy_channel.status().message()));
  }
  absl::StatusOr<std::shared_ptr<grpc::Channel>> audit_channel =
      rt::CreatePeerChannel(rt::AuditPeerFlags());
  if (!audit_channel.ok()) {
    rt::ExitWithError(std::string(audit_channel.status().message()));
  }

  podgate::exec::ExecMetrics metrics(*registry);
  auto policy_stub = podgate::policy::v1::PolicyService::NewStub(*policy_channel);
  podgate::clients::AuditClientOptions audit_options;
  audit_options.source_service = "exec";
  audit_options.ack_timeout = flags->audit_ack_timeout;
  podgate::clients::AuditClient audit(*audit_channel, audit_options);
  podgate::exec::KubeClient kube(*kube_config);
  // Impersonation on: make sure the cluster lets exec impersonate before serving anyone.
  if (absl::Status s = podgate::exec::CheckImpersonationGrant(&kube, flags->sessions.impersonation,
                                                              absl::Seconds(15));
      s.code() == absl::StatusCode::kFailedPrecondition) {
    rt::ExitWithError(std::string(s.message()));
  } else if (!s.ok()) {
    podgate::log::Warn("impersonation grant not confirmed at start-up",
                       {{"reason", std::string(s.message())}});
  }

  const podgate::exec::ExecOptions& options = flags->sessions;
  podgate::exec::SessionHub hub(options, &*verifier, policy_stub.get(), &audit, &kube, &metrics);
  std::unique_ptr<podgate::exec::Journal> journal;
  if (!flags->journal_dir.empty()) {
    auto opened = podgate::exec::Journal::Open(flags->journal_dir, flags->journal_max_entries);
    if (!opened.ok()) {
      rt::ExitWithError(absl::StrCat("--journal_dir: ", opened.status().message()));
    }
    journal = *std::move(opened);
    // Before serving (and so before ready): what a dead exec left running is stopped first.
    podgate::exec::RecoveryOptions recovery;
    recovery.interrupt_grace = options.interrupt_grace;
    recovery.probe_timeout = options.probe_timeout;
    recovery.deadline = flags->journal_recovery_timeout;
    podgate::exec::RecoverJournal(journal.get(), &kube, &audit, hub.timers(), recovery);
    hub.set_journal(journal.get());
  }
  podgate::exec::ExecServiceImpl service(&hub);
  const int code = rt::RunServer(defaults, {&service}, registry, [&](rt::Server& server) {
    server.AddDrainHook([&hub] { hub.CloseAll(); });
    // Then every stopped command's process is gone and every record acknowledged (bounded by
    // --drain_timeout), before the server stops and audit's stream is closed.
    server.AddDrainWait([&hub](absl::Time deadline) { hub.Drain(deadline); });
    // Logged once serving, so that a start-up failure stays a single line.
    podgate::log::Info("kubernetes", {{"source", kube_config->source},
                                      {"host", kube_config->host},
                                      {"port", static_cast<int>(kube_config->port)}});
  });
  // A stop step still in flight when the drain ended (a process that ignored SIGINT) holds its
  // Session; it is let finish (its SIGKILL a grace period on, its probe bounded by the probe
  // timeout) before the hub, the Kubernetes client and audit it uses are destroyed. Past that
  // bound exec exits without destroying them: a callback never runs on freed memory.
  // The Kubernetes streams end after the sessions that started them (a stop step's probe, a
  // command's stream closing): they are let end too, within the same bound, since the client's
  // destructor stops its I/O threads wherever the streams are.
  const absl::Duration settle = 2 * options.interrupt_grace + options.probe_timeout;
  const absl::Time settle_deadline = absl::Now() + settle;
  if (!hub.WaitForSessionObjects(settle_deadline) || !kube.WaitForStreams(settle_deadline)) {
    podgate::log::Warn(
        "exiting with stop steps still running",
        {{"settle_ms", absl::ToInt64Milliseconds(settle)}, {"open_streams", kube.open_streams()}});
    std::fflush(stderr);
    std::_Exit(code);
  }
  // Events still waiting for an ack fail now, while the hub their callbacks use is alive (the
  // destructor would run them after the hub is gone: ASan, stack-use-after-scope).
  audit.Close();
  return code;
}
