// podgate-policy: decides whether a principal may run an exact argv (or a shell) in a container,
// from a YAML policy document that is hot-reloaded. `--check FILE` validates a document and
// exits, for CI and editors.
#include <cstdio>
#include <fstream>
#include <iostream>
#include <sstream>

#include "absl/flags/flag.h"
#include "absl/strings/str_cat.h"
#include "clients/audit_client.h"
#include "policy/policy_loader.h"
#include "policy/policy_metrics.h"
#include "policy/policy_service.h"
#include "policy/policy_store.h"
#include "runtime/flags.h"
#include "runtime/log.h"
#include "runtime/peer_flags.h"
#include "runtime/server.h"
#include "runtime/server_flags.h"

ABSL_FLAG(std::string, policy_file, "",
          "Path of the policy document (YAML, docs/policy.md), reloaded when it changes. Empty "
          "(default) serves an empty policy that denies everything.");
ABSL_FLAG(absl::Duration, policy_poll_interval, absl::Seconds(1),
          "How often the policy file is also stat()ed for changes, besides inotify, e.g. 1s. "
          "Default 1s.");
ABSL_FLAG(std::string, check, "",
          "Validate this policy document, print its issues as FILE:LINE:COLUMN: SEVERITY: "
          "MESSAGE and exit: 0 valid, 1 invalid, 2 unreadable. Default: empty (serve).");

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
  podgate::runtime::BlockShutdownSignals();
  podgate::runtime::ParseFlags(
      argc, argv,
      "podgate-policy: decides commands against the policy document (Authorize, "
      "AuthorizeStream, ListAllowed, GetPolicy, ValidatePolicy).\n"
      "  podgate-policy --policy_file=FILE [server flags]   serve\n"
      "  podgate-policy --check=FILE                          validate a document and exit\n"
      "Every flag may also be set as PODGATE_<FLAG>.");
  if (const std::string check = absl::GetFlag(FLAGS_check); !check.empty()) {
    return Check(check);
  }
  podgate::runtime::InitLoggingFromFlags("policy");
  const podgate::runtime::ServiceDefaults defaults{"policy", "[::]:7101", "[::]:9101"};
  // The shared flags are checked before the policy loads, so a bad flag stays one line.
  if (auto options = podgate::runtime::ServerOptionsFromFlags(defaults); !options.ok()) {
    podgate::runtime::ExitWithError(std::string(options.status().message()));
  }
  auto registry = std::make_shared<prometheus::Registry>();
  podgate::policy::PolicyMetrics metrics(*registry);
  // Policy changes reach audit through the shared recorder when an audit service is named.
  std::unique_ptr<podgate::clients::AuditClient> audit;
  std::unique_ptr<AuditSink> sink;
  if (const podgate::runtime::PeerFlags peer = podgate::runtime::AuditPeerFlags();
      !peer.address.empty()) {
    auto channel = podgate::runtime::CreatePeerChannel(peer);
    if (!channel.ok()) {
      podgate::runtime::ExitWithError(std::string(channel.status().message()));
    }
    podgate::clients::AuditClientOptions options;
    options.source_service = "policy";
    audit = std::make_unique<podgate::clients::AuditClient>(*channel, options);
    sink = std::make_unique<AuditSink>(audit.get());
  }
  podgate::policy::PolicyStore store(&metrics, sink.get());
  const std::string policy_file = absl::GetFlag(FLAGS_policy_file);
  if (!policy_file.empty()) {
    if (absl::Status s = store.LoadFile(policy_file); !s.ok()) {
      podgate::runtime::ExitWithError(absl::StrCat("--policy_file: ", s.message()));
    }
    if (absl::Status s = store.StartWatching(absl::GetFlag(FLAGS_policy_poll_interval)); !s.ok()) {
      podgate::runtime::ExitWithError(absl::StrCat("--policy_poll_interval: ", s.message()));
    }
  }
  podgate::policy::PolicyServiceImpl service(&store, &metrics);
  return podgate::runtime::RunServer(
      defaults, {&service}, registry, [&policy_file, &service](podgate::runtime::Server& server) {
        server.AddDrainHook([&service] { service.Drain(); });
        // Logged once serving, so that a start-up failure stays a single line.
        if (policy_file.empty()) {
          podgate::log::Warn("no --policy_file: serving an empty policy that denies everything");
        }
      });
}
