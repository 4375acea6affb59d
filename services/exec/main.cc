// podgate-exec: holds the Kubernetes exec streams. Verifies each user's JWT, asks policy before
// every command, records to audit before anything reaches a pod.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

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
  rt::PrepareServiceProcess();
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

  absl::StatusOr<podgate::exec::ClusterConfigs> cluster_configs =
      podgate::exec::LoadClusterConfigs(flags->clusters);
  if (!cluster_configs.ok()) {
    rt::ExitWithError(std::string(cluster_configs.status().message()));
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
  // One client per cluster. A cluster that does not answer now is served all the same (its
  // targets fail until it answers; the others are not held up).
  std::vector<std::unique_ptr<podgate::exec::KubeClient>> kubes;
  std::vector<std::pair<std::string, podgate::exec::KubeApi*>> clusters;
  for (const podgate::exec::NamedKubeConfig& c : cluster_configs->clusters) {
    podgate::exec::KubeClientOptions kube_options;
    kube_options.spare_connections = flags->spare_connections;
    kube_options.spare_idle = flags->spare_idle;
    using SpareEvent = podgate::http::SpareConnections::Event;
    std::vector<prometheus::Counter*> spare_counters;
    for (SpareEvent e :
         {SpareEvent::kUsed, SpareEvent::kMissed, SpareEvent::kExpired, SpareEvent::kClosed,
          SpareEvent::kStale, SpareEvent::kDialFailed, SpareEvent::kRetried}) {
      spare_counters.push_back(&metrics.kube_spare_connections_total.Add(
          {{"cluster", c.name}, {"event", podgate::http::SpareConnections::EventName(e)}}));
    }
    kube_options.on_spare_event = [spare_counters](SpareEvent e) {
      spare_counters[static_cast<size_t>(e)]->Increment();
    };
    kubes.push_back(std::make_unique<podgate::exec::KubeClient>(c.config, kube_options));
    clusters.emplace_back(c.name, kubes.back().get());
    // Impersonation on: make sure the cluster lets exec impersonate before serving anyone.
    if (absl::Status s = podgate::exec::CheckImpersonationGrant(
            kubes.back().get(), flags->sessions.impersonation, absl::Seconds(15));
        s.code() == absl::StatusCode::kFailedPrecondition) {
      rt::ExitWithError(absl::StrCat("cluster ", c.name, ": ", s.message()));
    } else if (!s.ok()) {
      podgate::log::Warn("impersonation grant not confirmed at start-up",
                         {{"cluster", c.name}, {"reason", std::string(s.message())}});
    }
  }

  const podgate::exec::ExecOptions& options = flags->sessions;
  podgate::exec::SessionHub hub(options, &*verifier, policy_stub.get(), &audit, clusters,
                                cluster_configs->default_name, &metrics);
  podgate::exec::ClusterHealth health(hub.clusters(), &metrics, hub.timers(),
                                      flags->cluster_health_interval);
  std::unique_ptr<podgate::exec::Journal> journal;
  if (!flags->journal_dir.empty()) {
    auto opened = podgate::exec::Journal::Open(flags->journal_dir, flags->journal_max_entries);
    if (!opened.ok()) {
      rt::ExitWithError(absl::StrCat("--journal_dir: ", opened.status().message()));
    }
    journal = *std::move(opened);
    journal->set_size_gauge(&metrics.journal_entries);
    metrics.journal_entries_limit.Set(flags->journal_max_entries);
    // Before serving (and so before ready): what a dead exec left running is stopped first.
    podgate::exec::RecoveryOptions recovery;
    recovery.interrupt_grace = options.interrupt_grace;
    recovery.probe_timeout = options.probe_timeout;
    recovery.deadline = flags->journal_recovery_timeout;
    podgate::exec::RecoverJournal(
        journal.get(),
        [&hub](const std::string& cluster) -> podgate::exec::KubeApi* {
          absl::StatusOr<podgate::exec::Cluster*> c = hub.ResolveCluster(cluster);
          return c.ok() ? (*c)->kube() : nullptr;
        },
        &audit, hub.timers(), recovery);
    hub.set_journal(journal.get());
  }
  podgate::exec::ExecServiceImpl service(&hub);
  const int code = rt::RunServer(defaults, {&service}, registry, [&](rt::Server& server) {
    server.AddDrainHook([&hub, &health] {
      health.Stop();  // its observer uses the server, which is gone after the drain
      hub.CloseAll();
    });
    // Then every stopped command's process is gone and every record acknowledged (bounded by
    // --drain_timeout), before the server stops and audit's stream is closed.
    server.AddDrainWait([&hub](absl::Time deadline) { hub.Drain(deadline); });
    // Logged once serving, so that a start-up failure stays a single line.
    for (const podgate::exec::NamedKubeConfig& c : cluster_configs->clusters) {
      podgate::log::Info("kubernetes", {{"cluster", c.name},
                                        {"default", c.name == cluster_configs->default_name},
                                        {"source", c.config.source},
                                        {"context", c.config.context},
                                        {"host", c.config.host},
                                        {"port", static_cast<int>(c.config.port)}});
    }
    // Each cluster's health also answers in grpc.health.v1 as "exec/cluster/<name>"; exec's
    // own readiness does not follow any cluster.
    health.set_observer([&server](const std::string& cluster, bool up) {
      server.SetPartServing(absl::StrCat("cluster/", cluster), up);
    });
    health.Start();
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
  bool settled = hub.WaitForSessionObjects(settle_deadline);
  int open_streams = 0;
  for (const auto& kube : kubes) {
    settled = settled && kube->WaitForStreams(settle_deadline);
    open_streams += kube->open_streams();
  }
  if (!settled) {
    podgate::log::Warn(
        "exiting with stop steps still running",
        {{"settle_ms", absl::ToInt64Milliseconds(settle)}, {"open_streams", open_streams}});
    std::fflush(stderr);
    std::_Exit(code);
  }
  // Every REST call's callback has returned before the hub (its clusters' caches) is destroyed:
  // a ListTargets answered from one review can still be unwinding another on a REST thread.
  for (const auto& kube : kubes) {
    kube->FinishRest();
  }
  // Events still waiting for an ack fail now, while the hub their callbacks use is alive (the
  // destructor would run them after the hub is gone: ASan, stack-use-after-scope).
  audit.Close();
  return code;
}
