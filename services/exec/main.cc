// podgate-exec: holds the Kubernetes exec streams. Verifies each user's JWT, asks policy before
// every command, records to audit before anything reaches a pod.
#include <cstdlib>
#include <string>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "auth/auth_flags.h"
#include "clients/audit_client.h"
#include "exec/exec_service.h"
#include "exec/kube_client.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

ABSL_FLAG(std::string, kubeconfig, "",
          "Kubeconfig file (current context). Empty: in-cluster service account. Default: "
          "empty.");
ABSL_FLAG(bool, kube_allow_insecure, false,
          "Accept a kubeconfig with insecure-skip-tls-verify. Default false.");
ABSL_FLAG(bool, audit_strict, true,
          "Strict audit: run nothing until its audit event is acknowledged. Default true.");
ABSL_FLAG(absl::Duration, audit_ack_timeout, absl::Seconds(10),
          "How long an audit event may wait for its ack. Default 10s.");
ABSL_FLAG(absl::Duration, policy_timeout, absl::Seconds(2),
          "How long policy may take per decision before the command is denied. Default 2s.");
ABSL_FLAG(absl::Duration, idle_timeout, absl::Minutes(15),
          "Close a session after this long without input. Default 15m.");
ABSL_FLAG(absl::Duration, max_session, absl::Hours(8), "Longest session. Default 8h.");
ABSL_FLAG(int, max_sessions_per_user, 10, "Concurrent sessions per user. Default 10.");
ABSL_FLAG(int, max_sessions, 2000, "Concurrent sessions per replica. Default 2000.");
ABSL_FLAG(absl::Duration, default_time_limit, absl::Minutes(5),
          "Command time limit when the rule sets none. Default 5m.");
ABSL_FLAG(int64_t, default_output_limit_bytes, 64 << 20,
          "Command output cap when the rule sets none, in bytes. Default 67108864 (64 MiB).");
ABSL_FLAG(int, audit_excerpt_bytes, 4096,
          "Output bytes kept verbatim in each command's audit record. Default 4096.");
ABSL_FLAG(std::string, shell_command, "/bin/sh",
          "argv of the shell in shell mode, space separated. Default /bin/sh.");
ABSL_FLAG(absl::Duration, interrupt_grace, absl::Seconds(3),
          "After an interrupt, how long before SIGKILL. Default 3s.");
ABSL_FLAG(absl::Duration, launch_timeout, absl::Seconds(10),
          "A command whose launch is not confirmed (its process's pid reported from the "
          "container) this long after its exec stream was asked for ends as not run, with an "
          "error, instead of at its time limit. Default 10s.");
ABSL_FLAG(std::string, journal_dir, "",
          "Directory of the journal of running commands (one small file per command whose "
          "process may run): at start-up, commands an exec that died without a drain left "
          "running are stopped and recorded before exec serves. Empty: no journal. Default "
          "empty.");
ABSL_FLAG(int, journal_max_entries, 4096,
          "Most commands journaled at once; past it, a command is not run. Default 4096.");
ABSL_FLAG(absl::Duration, journal_recovery_timeout, absl::Seconds(30),
          "How long start-up may spend stopping and recording journaled commands; what is "
          "left stays journaled for the next start. Default 30s.");
ABSL_FLAG(std::string, service_account_dir, "/var/run/secrets/kubernetes.io/serviceaccount",
          "Where the in-cluster token and CA are. Default the standard path.");

namespace {

absl::Status CheckFlags() {
  auto positive = [](absl::Duration d, const char* name) -> absl::Status {
    if (d <= absl::ZeroDuration()) {
      return absl::InvalidArgumentError(absl::StrCat("--", name, " must be positive"));
    }
    return absl::OkStatus();
  };
  for (auto [d, name] : {std::pair{absl::GetFlag(FLAGS_policy_timeout), "policy_timeout"},
                         std::pair{absl::GetFlag(FLAGS_idle_timeout), "idle_timeout"},
                         std::pair{absl::GetFlag(FLAGS_max_session), "max_session"},
                         std::pair{absl::GetFlag(FLAGS_default_time_limit), "default_time_limit"},
                         std::pair{absl::GetFlag(FLAGS_interrupt_grace), "interrupt_grace"},
                         std::pair{absl::GetFlag(FLAGS_launch_timeout), "launch_timeout"},
                         std::pair{absl::GetFlag(FLAGS_audit_ack_timeout), "audit_ack_timeout"}}) {
    if (absl::Status s = positive(d, name); !s.ok()) {
      return s;
    }
  }
  if (absl::GetFlag(FLAGS_max_sessions_per_user) < 1 || absl::GetFlag(FLAGS_max_sessions) < 1) {
    return absl::InvalidArgumentError("--max_sessions and --max_sessions_per_user must be >= 1");
  }
  if (absl::GetFlag(FLAGS_default_output_limit_bytes) < 1) {
    return absl::InvalidArgumentError("--default_output_limit_bytes must be >= 1");
  }
  if (absl::GetFlag(FLAGS_journal_max_entries) < 1 ||
      absl::GetFlag(FLAGS_journal_max_entries) > 100000) {
    return absl::InvalidArgumentError("--journal_max_entries must be 1 to 100000");
  }
  if (absl::GetFlag(FLAGS_journal_recovery_timeout) <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("--journal_recovery_timeout must be positive");
  }
  if (absl::GetFlag(FLAGS_audit_excerpt_bytes) < 0 ||
      absl::GetFlag(FLAGS_audit_excerpt_bytes) > 1 << 20) {
    return absl::InvalidArgumentError("--audit_excerpt_bytes must be 0 to 1048576");
  }
  return absl::OkStatus();
}

}  // namespace

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
  if (absl::Status s = CheckFlags(); !s.ok()) {
    rt::ExitWithError(std::string(s.message()));
  }
  // The JWKS URL source (if any) registers its metrics here.
  auto registry = std::make_shared<prometheus::Registry>();
  absl::StatusOr<podgate::auth::Verifier> verifier = podgate::auth::VerifierFromFlags(registry);
  if (!verifier.ok()) {
    rt::ExitWithError(std::string(verifier.status().message()));
  }

  absl::StatusOr<podgate::exec::KubeConfig> kube_config;
  if (absl::GetFlag(FLAGS_kubeconfig).empty()) {
    kube_config = podgate::exec::InClusterConfig(absl::GetFlag(FLAGS_service_account_dir));
  } else {
    kube_config = podgate::exec::LoadKubeconfig(absl::GetFlag(FLAGS_kubeconfig),
                                                absl::GetFlag(FLAGS_kube_allow_insecure));
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
  audit_options.ack_timeout = absl::GetFlag(FLAGS_audit_ack_timeout);
  podgate::clients::AuditClient audit(*audit_channel, audit_options);
  podgate::exec::KubeClient kube(*kube_config);

  podgate::exec::ExecOptions options;
  options.policy_timeout = absl::GetFlag(FLAGS_policy_timeout);
  options.idle_timeout = absl::GetFlag(FLAGS_idle_timeout);
  options.max_session = absl::GetFlag(FLAGS_max_session);
  options.max_sessions_per_user = absl::GetFlag(FLAGS_max_sessions_per_user);
  options.max_sessions = absl::GetFlag(FLAGS_max_sessions);
  options.default_time_limit = absl::GetFlag(FLAGS_default_time_limit);
  options.default_output_limit_bytes = absl::GetFlag(FLAGS_default_output_limit_bytes);
  options.excerpt_bytes = static_cast<size_t>(absl::GetFlag(FLAGS_audit_excerpt_bytes));
  options.strict_audit = absl::GetFlag(FLAGS_audit_strict);
  options.shell_argv =
      absl::StrSplit(absl::GetFlag(FLAGS_shell_command), ' ', absl::SkipEmpty());
  options.interrupt_grace = absl::GetFlag(FLAGS_interrupt_grace);
  options.launch_timeout = absl::GetFlag(FLAGS_launch_timeout);
  podgate::exec::SessionHub hub(options, &*verifier, policy_stub.get(), &audit, &kube, &metrics);
  std::unique_ptr<podgate::exec::Journal> journal;
  if (!absl::GetFlag(FLAGS_journal_dir).empty()) {
    auto opened = podgate::exec::Journal::Open(absl::GetFlag(FLAGS_journal_dir),
                                               absl::GetFlag(FLAGS_journal_max_entries));
    if (!opened.ok()) {
      rt::ExitWithError(absl::StrCat("--journal_dir: ", opened.status().message()));
    }
    journal = *std::move(opened);
    // Before serving (and so before ready): what a dead exec left running is stopped first.
    podgate::exec::RecoveryOptions recovery;
    recovery.interrupt_grace = options.interrupt_grace;
    recovery.probe_timeout = options.probe_timeout;
    recovery.deadline = absl::GetFlag(FLAGS_journal_recovery_timeout);
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
  // Events still waiting for an ack fail now, while the hub their callbacks use is alive (the
  // destructor would run them after the hub is gone: ASan, stack-use-after-scope).
  audit.Close();
  return code;
}
