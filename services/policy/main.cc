// podgate-policy: decides whether a principal may run an exact argv (or a shell) in a container,
// from a YAML policy document that is hot-reloaded. `--check FILE` validates a document and
// exits, for CI and editors.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "clients/audit_client.h"
#include "policy/options.h"
#include "policy/policy_loader.h"
#include "policy/policy_metrics.h"
#include "policy/policy_service.h"
#include "policy/policy_store.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

namespace {

// Records every policy version loaded or refused as a POLICY_CHANGE audit event.
class AuditSink final : public podgate::policy::PolicyChangeSink {
 public:
  explicit AuditSink(podgate::clients::AuditClient* audit) : audit_(audit) {}
  void OnPolicyChange(const podgate::common::v1::PolicyChangeDetail& change) override {
    podgate::common::v1::AuditEvent event;
    event.set_kind(podgate::common::v1::EVENT_KIND_POLICY_CHANGE);
    *event.mutable_policy_change() = change;
    const std::string version = change.version();
    audit_->Record(std::move(event), [version](absl::Status s) {
      if (!s.ok()) {
        podgate::log::Error("policy change not recorded in audit",
                            {{"version", version}, {"error", s.ToString()}});
      }
    });
  }

 private:
  podgate::clients::AuditClient* const audit_;
};

int Check(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::fprintf(stderr, "%s: cannot read the file\n", path.c_str());
    return 2;
  }
  std::stringstream text;
  text << in.rdbuf();
  const podgate::policy::LoadResult result = podgate::policy::LoadPolicy(text.str(), path);
  for (const podgate::policy::LoadIssue& issue : result.issues) {
    std::printf("%s:%s\n", path.c_str(), issue.ToString().c_str());
  }
  if (!result.ok()) {
    std::printf("%s: invalid\n", path.c_str());
    return 1;
  }
  std::printf("%s: valid, %d rules, version %s\n", path.c_str(), result.rule_count,
              result.version.c_str());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  podgate::runtime::PrepareServiceProcess();
  podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-policy: decides commands against the policy document (Authorize, "
      "AuthorizeStream, ListAllowed, GetPolicy, ValidatePolicy).\n"
      "  podgate-policy --policy_file=FILE [server flags]   serve\n"
      "  podgate-policy --check=FILE                          validate a document and exit\n"
      "Every flag may also be set as PODGATE_<FLAG>.");
  absl::StatusOr<podgate::policy::PolicyOptions> options =
      podgate::policy::PolicyOptionsFromFlags();
  if (!options.ok()) {
    podgate::runtime::ExitWithError(std::string(options.status().message()));
  }
  if (!options->check_file.empty()) {
    return Check(options->check_file);
  }
  podgate::runtime::InitLoggingFromFlags("policy");
  auto registry = std::make_shared<prometheus::Registry>();
  podgate::policy::PolicyMetrics metrics(*registry);
  // Policy changes reach audit through the shared recorder when an audit service is named.
  std::unique_ptr<podgate::clients::AuditClient> audit;
  std::unique_ptr<AuditSink> sink;
  if (!options->audit.address.empty()) {
    auto channel = podgate::runtime::CreatePeerChannel(options->audit);
    if (!channel.ok()) {
      podgate::runtime::ExitWithError(std::string(channel.status().message()));
    }
    podgate::clients::AuditClientOptions audit_options;
    audit_options.source_service = "policy";
    audit = std::make_unique<podgate::clients::AuditClient>(*channel, audit_options);
    sink = std::make_unique<AuditSink>(audit.get());
  }
  podgate::policy::PolicyStore store(&metrics, sink.get());
  const std::string& policy_file = options->policy_file;
  if (!policy_file.empty()) {
    if (absl::Status s = store.LoadFile(policy_file); !s.ok()) {
      podgate::runtime::ExitWithError(absl::StrCat("--policy_file: ", s.message()));
    }
    if (absl::Status s = store.StartWatching(options->poll_interval); !s.ok()) {
      podgate::runtime::ExitWithError(absl::StrCat("--policy_poll_interval: ", s.message()));
    }
  }
  podgate::policy::PolicyServiceImpl service(&store, &metrics,
                                             options->log_level == podgate::log::Level::kDebug);
  return podgate::runtime::RunServer(
      options->server, {&service}, registry,
      [&policy_file, &service](podgate::runtime::Server& server) {
        server.AddDrainHook([&service] { service.Drain(); });
        // Logged once serving, so that a start-up failure stays a single line.
        if (policy_file.empty()) {
          podgate::log::Warn("no --policy_file: serving an empty policy that denies everything");
        }
      });
}
