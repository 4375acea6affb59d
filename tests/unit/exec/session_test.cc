// The exec service in process, without spawning anything: the real Session reactor and hub on an
// in-process gRPC server, the real policy service (in process, over a local socket), the real
// audit service (in process, SQLite in a temporary folder), the real token verifier, and an
// in-memory KubeApi (fake_kube.h) that counts every Kubernetes call. Covers the opening steps
// (a target without a rule is refused before any Kubernetes call, the credential and names
// before anything, admission limits), the root guard before a command, and one command through
// the launch wrapper.
#include <sqlite3.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "audit/audit_metrics.h"
#include "audit/audit_service.h"
#include "audit/store.h"
#include "audit/writer.h"
#include "auth/jwt.h"
#include "auth/keys.h"
#include "clients/audit_client.h"
#include "exec/container_probe.h"
#include "exec/exec_metrics.h"
#include "exec/exec_service.h"
#include "exec/journal.h"
#include "exec/session_open.h"
#include "fake_kube.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/policy_metrics.h"
#include "policy/policy_service.h"
#include "policy/policy_store.h"
#include "runtime/server.h"
#include "support/exec_session.h"
#include "support/grpc_health.h"
#include "support/stack.h"
#include "support/test_pki.h"

namespace podgate::exec {
namespace {

namespace common = podgate::common::v1;
using ::testing::ElementsAre;
using testing::FakeKube;
using ::testing::HasSubstr;

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: dev-hostname
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    command: {program: hostname}
  - id: dev-sleep
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app]}
    limits: {timeLimit: 300ms}
    command: {program: sleep}
  - id: dev-shell
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [app], pods: ["shell-*"]}
    shell: true
  - id: dev-labelled
    effect: allow
    subjects: {groups: [dev]}
    targets: {namespaces: [lab], podLabels: {team: a}}
    command: {program: hostname}
)";

constexpr char kSecret[] = "an HS256 secret of at least thirty-two bytes";

PodView Pod(const std::string& ns, const std::string& name,
            std::map<std::string, std::string> labels = {}) {
  PodView pod;
  pod.namespace_name = ns;
  pod.name = name;
  pod.uid = absl::StrCat("uid-", ns, "-", name);
  pod.phase = "Running";
  pod.labels = std::move(labels);
  pod.containers.push_back({"main", "busybox", {}});
  return pod;
}

class SessionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("exec-session");
    kube_.AddPod(Pod("app", "api-0"));
    PodView root = Pod("app", "root-0");
    root.security.run_as_user = 0;
    kube_.AddPod(root);
    kube_.AddPod(Pod("app", "shell-0"));
    PodView shell_root = Pod("app", "shell-root");
    shell_root.security.run_as_user = 0;
    kube_.AddPod(shell_root);
    kube_.AddPod(Pod("lab", "b-0", {{"team", "b"}}));
    kube_.AddPod(Pod("lab", "a-0", {{"team", "a"}}));
    kube_.SetProgram([](const std::vector<std::string>& argv) {
      FakeKube::Run run;
      if (argv == UidProbeArgv()) {
        run.stdout_text = "1000\n";
      } else if (argv == std::vector<std::string>{"hostname"}) {
        run.stdout_text = "api-0\n";
      } else if (argv == std::vector<std::string>{"sleep"} ||
                 argv == std::vector<std::string>{"/bin/sh"}) {
        run.hang = true;  // until a signal or the stream's close
      }
      return run;
    });

    // Policy, in process.
    { std::ofstream(dir_ + "/policy.yaml") << kPolicy; }
    ASSERT_TRUE(policy_store_.LoadFile(dir_ + "/policy.yaml").ok());
    policy_server_ = StartServer("policy", &policy_service_);
    // Audit, in process, on SQLite.
    auto store = audit::OpenSqliteStore(dir_ + "/audit.db");
    ASSERT_TRUE(store.ok()) << store.status();
    audit_store_ = *std::move(store);
    audit::WriterOptions writer_options;
    writer_options.chain_id = "test";
    auto writer = audit::Writer::Start(audit_store_.get(), writer_options, &audit_metrics_);
    ASSERT_TRUE(writer.ok()) << writer.status();
    audit_writer_ = *std::move(writer);
    audit_service_ = std::make_unique<audit::AuditServiceImpl>(
        audit_store_.get(), audit_writer_.get(), &audit_metrics_);
    audit_server_ = StartServer("audit", audit_service_.get());

    // The verifier exec uses, and the key that signs the tests' tokens.
    { std::ofstream(dir_ + "/secret") << kSecret; }
    auto keys = auth::KeySet::FromHmacSecretFile(dir_ + "/secret", "");
    ASSERT_TRUE(keys.ok()) << keys.status();
    auth::VerifierOptions verifier_options;
    verifier_options.issuer = "test";
    auto verifier = auth::Verifier::Create(*std::move(keys), verifier_options);
    ASSERT_TRUE(verifier.ok()) << verifier.status();
    verifier_ = std::make_unique<auth::Verifier>(*std::move(verifier));
  }

  // Starts exec with `options` (each test may set its limits first).
  void StartExec(ExecOptions options = {}) {
    policy_stub_ = podgate::policy::v1::PolicyService::NewStub(
        podgate::testing::LocalChannel(policy_server_->grpc_port()));
    clients::AuditClientOptions audit_options;
    audit_options.source_service = "exec";
    audit_client_ = std::make_unique<clients::AuditClient>(
        podgate::testing::LocalChannel(audit_server_->grpc_port()), audit_options);
    hub_ = std::make_unique<SessionHub>(options, verifier_.get(), policy_stub_.get(),
                                        audit_client_.get(), &kube_, &exec_metrics_);
    exec_service_ = std::make_unique<ExecServiceImpl>(hub_.get());
    exec_server_ = StartServer("exec", exec_service_.get());
    exec_server_->AddDrainHook([this] { hub_->CloseAll(); });
    channel_ = podgate::testing::LocalChannel(exec_server_->grpc_port());
  }

  void TearDown() override {
    exec_server_.reset();  // closes every session
    // A closed session lives on while a timer still holds it (a stop's next step, at most a few
    // grace periods): every Session and Command is freed before the hub it refers to goes.
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    while ((exec_metrics_.live_sessions.Value() > 0 || exec_metrics_.live_commands.Value() > 0) &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(10));
    }
    EXPECT_EQ(exec_metrics_.live_sessions.Value(), 0);
    EXPECT_EQ(exec_metrics_.live_commands.Value(), 0);
    if (hub_ != nullptr) {
      // The gauge drops before a Session's destructor is done with the hub; the hub's own count
      // is the one to wait for (TSan saw the hub destroyed under a destructor's notify).
      EXPECT_TRUE(hub_->WaitForSessionObjects(deadline));
    }
    if (audit_client_ != nullptr) {
      audit_client_->Close();
    }
    hub_.reset();
    audit_server_.reset();
    policy_server_.reset();
    std::filesystem::remove_all(dir_);
  }

  std::unique_ptr<runtime::Server> StartServer(const std::string& name, grpc::Service* service) {
    runtime::ServerOptions options;
    options.service_name = name;
    options.grpc_address = "127.0.0.1:0";
    options.drain_timeout = absl::Seconds(2);
    auto server = runtime::Server::Start(options, {service}, registry_);
    EXPECT_TRUE(server.ok()) << server.status();
    return server.ok() ? *std::move(server) : nullptr;
  }

  std::string Token(const std::string& user, std::vector<std::string> groups = {"dev"}) {
    auth::Key key;
    key.alg = auth::Algorithm::kHS256;
    key.secret = kSecret;
    const int64_t now = absl::ToUnixSeconds(absl::Now());
    nlohmann::json claims = {
        {"iss", "test"}, {"sub", user}, {"groups", groups}, {"iat", now - 1}, {"exp", now + 3600}};
    return *auth::Sign(claims, key);
  }

  std::unique_ptr<podgate::testing::ExecSession> NewSession() {
    return std::make_unique<podgate::testing::ExecSession>(channel_, absl::Seconds(15));
  }

  // Gives exec a journal (journal_) in the test's folder.
  void UseJournal() {
    auto journal = Journal::Open(dir_ + "/journal", 10);
    ASSERT_TRUE(journal.ok()) << journal.status();
    journal_ = *std::move(journal);
    hub_->set_journal(journal_.get());
  }
  // Released at the latest when the test ends, so that a failed assertion cannot leave the
  // journal's thread blocked on a notification that is gone.
  struct Release {
    absl::Notification n;
    void Notify() { n.Notify(); }
    ~Release() {
      if (!n.HasBeenNotified()) {
        n.Notify();
      }
    }
  };
  // Blocks the journal's thread in the completion of an entry of its own, `id`, until
  // `release`: every later write waits behind it, as behind a disk that does not answer.
  void HoldJournal(const std::string& id, absl::Notification* release) {
    JournalEntry decoy;
    decoy.result_event_id = id;
    decoy.close_event_id = id + "c";
    decoy.target.set_namespace_("app");
    decoy.target.set_pod("api-0");
    decoy.target.set_container("main");
    auto holding = std::make_shared<absl::Notification>();
    ASSERT_TRUE(journal_
                    ->AddAsync(decoy,
                               [holding, release](absl::Status) {
                                 holding->Notify();
                                 release->WaitForNotification();
                               })
                    .ok());
    holding->WaitForNotification();
  }
  static bool WaitFor(const std::function<bool()>& done) {
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    while (!done() && absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(5));
    }
    return done();
  }

  // The audit events recorded so far of `kind`, waiting up to 5 s for at least `at_least`.
  std::vector<common::AuditEvent> Events(common::EventKind kind, size_t at_least = 1) {
    std::vector<common::AuditEvent> found;
    const absl::Time deadline = absl::Now() + absl::Seconds(5);
    do {
      found.clear();
      podgate::audit::v1::QueryRequest q;
      q.add_kinds(kind);
      q.set_page_size(1000);
      auto page = audit_store_->Query(q);
      if (page.ok()) {
        for (const auto& r : page->records) {
          found.push_back(r.event());
        }
      }
      if (found.size() >= at_least) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(20));
    } while (absl::Now() < deadline);
    return found;
  }

  std::string dir_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  FakeKube kube_;
  podgate::policy::PolicyMetrics policy_metrics_{*registry_};
  podgate::policy::PolicyStore policy_store_{&policy_metrics_, nullptr};
  podgate::policy::PolicyServiceImpl policy_service_{&policy_store_, &policy_metrics_};
  std::unique_ptr<runtime::Server> policy_server_;
  audit::AuditMetrics audit_metrics_{*registry_};
  std::unique_ptr<audit::Store> audit_store_;
  std::unique_ptr<audit::Writer> audit_writer_;
  std::unique_ptr<audit::AuditServiceImpl> audit_service_;
  std::unique_ptr<runtime::Server> audit_server_;
  std::unique_ptr<auth::Verifier> verifier_;
  ExecMetrics exec_metrics_{*registry_};
  std::unique_ptr<podgate::policy::v1::PolicyService::Stub> policy_stub_;
  std::unique_ptr<clients::AuditClient> audit_client_;
  // Declared before hub_: outlives it (TearDown resets hub_ first).
  std::unique_ptr<Journal> journal_;
  std::unique_ptr<SessionHub> hub_;
  std::unique_ptr<ExecServiceImpl> exec_service_;
  std::unique_ptr<runtime::Server> exec_server_;
  std::shared_ptr<grpc::Channel> channel_;
};

TEST_F(SessionTest, ATargetWithoutARuleIsRefusedBeforeAnyKubernetesCall) {
  StartExec();
  auto s = NewSession();
  auto ready = s->Open(Token("alice"), "secret", "vault-0");
  ASSERT_FALSE(ready.ok());
  EXPECT_EQ(ready.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(ready.status().message()), HasSubstr(kTargetUnavailable));
  EXPECT_EQ(kube_.calls(), 0);
  // Audited with the real reason, which the user is not told.
  std::vector<common::AuditEvent> decisions = Events(common::EVENT_KIND_DECISION);
  ASSERT_EQ(decisions.size(), 1u);
  EXPECT_EQ(decisions[0].decision().verdict(), common::VERDICT_DENY);
  EXPECT_EQ(decisions[0].decision().rule(), "target");
  EXPECT_THAT(
      decisions[0].decision().reason(),
      HasSubstr("no rule lets alice use secret/vault-0 (asked before any Kubernetes call)"));
  EXPECT_EQ(decisions[0].principal().user(), "alice");
}

TEST_F(SessionTest, AMissingPodAndAPodNoRuleSelectsGetTheSameAnswer) {
  StartExec();
  for (const auto& [ns, pod] : {std::pair{"app", "nope-0"}, std::pair{"lab", "b-0"}}) {
    auto s = NewSession();
    auto ready = s->Open(Token("alice"), ns, pod);
    ASSERT_FALSE(ready.ok()) << ns << "/" << pod;
    EXPECT_EQ(ready.status().code(), absl::StatusCode::kNotFound);
    EXPECT_THAT(std::string(ready.status().message()), HasSubstr(kTargetUnavailable));
  }
  // One pod lookup each (the labels are asked about once the pod is known), nothing run.
  EXPECT_EQ(kube_.get_pod_calls(), 2);
  EXPECT_TRUE(kube_.execs().empty());
  std::vector<common::AuditEvent> decisions = Events(common::EVENT_KIND_DECISION, 2);
  ASSERT_EQ(decisions.size(), 2u);
  for (const common::AuditEvent& e : decisions) {
    EXPECT_EQ(e.decision().rule(), "target");
  }
  // The pod whose labels a rule selects opens.
  auto s = NewSession();
  EXPECT_TRUE(s->Open(Token("alice"), "lab", "a-0").ok());
}

TEST_F(SessionTest, TheCredentialAndTheNamesAreCheckedBeforeAnything) {
  StartExec();
  {
    auto s = NewSession();
    auto ready = s->Open("not.a.token", "app", "api-0");
    ASSERT_FALSE(ready.ok());
    EXPECT_EQ(ready.status().code(), absl::StatusCode::kUnauthenticated);
    EXPECT_THAT(std::string(ready.status().message()), HasSubstr("credential refused"));
  }
  {
    auto s = NewSession();
    auto ready = s->Open(Token("alice"), "App_1", "api-0");
    ASSERT_FALSE(ready.ok());
    EXPECT_EQ(ready.status().code(), absl::StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(kube_.calls(), 0);
  std::vector<common::AuditEvent> failures = Events(common::EVENT_KIND_AUTH_FAILURE);
  ASSERT_EQ(failures.size(), 1u);
  EXPECT_EQ(failures[0].auth_failure().reason(), "malformed");
}

TEST_F(SessionTest, AdmissionLimitsSessionsPerUserAndPerReplica) {
  ExecOptions options;
  options.max_sessions_per_user = 1;
  options.max_sessions = 2;
  StartExec(options);
  auto a = NewSession();
  ASSERT_TRUE(a->Open(Token("alice"), "app", "api-0").ok());
  const int lookups = kube_.get_pod_calls();

  auto again = NewSession();
  auto refused = again->Open(Token("alice"), "app", "api-0");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("user alice already has 1 sessions, the limit per user"));

  auto b = NewSession();
  ASSERT_TRUE(b->Open(Token("bob"), "app", "api-0").ok());
  auto c = NewSession();
  auto full = c->Open(Token("carol"), "app", "api-0");
  ASSERT_FALSE(full.ok());
  EXPECT_EQ(full.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(full.status().message()),
              HasSubstr("this exec replica has 2 sessions, its limit"));
  // Refused sessions never reached Kubernetes.
  EXPECT_EQ(kube_.get_pod_calls(), lookups + 1);
  EXPECT_EQ(hub_->active(), 2);

  // A closed session frees its place.
  EXPECT_EQ(a->Close(), common::CLOSE_REASON_CLIENT);
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (hub_->active() > 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  auto d = NewSession();
  EXPECT_TRUE(d->Open(Token("alice"), "app", "api-0").ok());
}

TEST_F(SessionTest, ACommandRunsThroughTheLaunchWrapperAfterTheRootGuard) {
  StartExec();
  auto s = NewSession();
  auto ready = s->Open(Token("alice"), "app", "api-0");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->target().container(), "main");
  podgate::testing::CommandOutcome out = s->Run("hostname", "c1");
  ASSERT_TRUE(out.exit.has_value()) << out.stderr_text;
  EXPECT_EQ(out.exit->exit_code(), 0);
  EXPECT_EQ(out.exit->termination(), common::TERMINATION_EXITED);
  // The wrapper's report is not output.
  EXPECT_EQ(out.stdout_text, "api-0\n");
  EXPECT_EQ(out.stderr_text, "");
  // First the root guard's probe, then the command inside the wrapper; it ran after "go".
  std::vector<ExecSpec> execs = kube_.execs();
  ASSERT_EQ(execs.size(), 2u);
  EXPECT_EQ(execs[0].argv, UidProbeArgv());
  EXPECT_EQ(execs[1].argv, LaunchWrapperArgv({"hostname"}));
  EXPECT_TRUE(execs[1].stdin);
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}));
  std::vector<common::AuditEvent> results = Events(common::EVENT_KIND_COMMAND_RESULT);
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].command_id(), "c1");
  EXPECT_EQ(results[0].command_result().termination(), common::TERMINATION_EXITED);
  EXPECT_EQ(results[0].command_result().stdout_bytes(), 6);
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
}

// With a journal, a command's entry is written while it is launched and its pid before "go":
// while the journal's thread is held (here by another entry's completion, which blocks it), the
// wrapper is launched and reports, but nothing of the user's runs; once the thread is free the
// command runs, and its entry goes once its result is acknowledged. A command stopped while its
// entry was still being written never runs, and the write's completion removes its entry; so
// does one whose entry is not durable within the launch timeout, with the reason.
TEST_F(SessionTest, GoWaitsForTheJournalAndACommandEndedMeanwhileLeavesNoEntry) {
  ExecOptions options;
  options.interrupt_grace = absl::Milliseconds(200);
  options.launch_timeout = absl::Seconds(2);
  StartExec(options);
  UseJournal();
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "api-0").ok());

  Release release1;
  HoldJournal("d1", &release1.n);
  s->Command("hostname", "c1");
  ASSERT_TRUE(WaitFor([&] { return kube_.execs().size() == 2; })) << "the wrapper never started";
  absl::SleepFor(absl::Milliseconds(200));
  EXPECT_THAT(kube_.ran(), ::testing::IsEmpty()) << "it ran before its entry was durable";
  release1.Notify();
  podgate::testing::CommandOutcome out = s->Wait();
  ASSERT_TRUE(out.exit.has_value()) << out.stderr_text;
  EXPECT_EQ(out.stdout_text, "api-0\n");
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}));
  EXPECT_TRUE(WaitFor([&] { return journal_->size() == 1; })) << "c1's entry stayed";

  Release release2;
  HoldJournal("d2", &release2.n);
  s->Command("sleep", "c2");
  ASSERT_TRUE(WaitFor([&] { return kube_.execs().size() == 3; }));
  s->Interrupt();
  podgate::testing::CommandOutcome stopped = s->Wait();
  EXPECT_TRUE(stopped.exit.has_value() || stopped.error.has_value());
  EXPECT_EQ(journal_->size(), 3) << "d1, d2 and c2's entry, still queued";
  release2.Notify();
  EXPECT_TRUE(WaitFor([&] { return journal_->size() == 2; })) << "c2's entry stayed";
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}));
  std::vector<std::string> left;
  for (const JournalEntry& e : journal_->Load()) {
    left.push_back(e.result_event_id);
  }
  std::sort(left.begin(), left.end());
  EXPECT_THAT(left, ElementsAre("d1", "d2"));

  // A disk that does not keep up for the whole launch timeout: the command is not run, and the
  // error says why; its entry goes once the write completes.
  Release release3;
  HoldJournal("d3", &release3.n);
  s->Command("hostname", "c3");
  podgate::testing::CommandOutcome slow = s->Wait();
  ASSERT_TRUE(slow.error.has_value());
  EXPECT_THAT(slow.error->status().message(),
              HasSubstr("exec's journal did not make it durable within 2s"));
  release3.Notify();
  EXPECT_TRUE(WaitFor([&] { return journal_->size() == 3; })) << "c3's entry stayed";
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}));
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
}

// A write lock on audit's SQLite file while it lives (or until Release): audit commits nothing
// meanwhile, so no ack comes. Released at the latest when the test ends, so that a failed
// assertion cannot leave audit blocked.
class AuditWriteLock {
 public:
  explicit AuditWriteLock(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) {
      return;
    }
    sqlite3_busy_timeout(db_, 5000);  // audit may be writing earlier records
    held_ = sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) == SQLITE_OK;
  }
  ~AuditWriteLock() { Release(); }
  AuditWriteLock(const AuditWriteLock&) = delete;
  AuditWriteLock& operator=(const AuditWriteLock&) = delete;

  bool held() const { return held_; }
  void Release() {
    if (held_) {
      EXPECT_EQ(sqlite3_exec(db_, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
      held_ = false;
    }
    if (db_ != nullptr) {
      sqlite3_close(db_);
      db_ = nullptr;
    }
  }

 private:
  sqlite3* db_ = nullptr;
  bool held_ = false;
};

// The command's pid is journaled while audit has not yet acknowledged the decision, so the
// journal's fdatasync and audit's overlap; "go" waits for both. The wait for audit is not bounded
// by the launch timeout (audit's own deadline governs it): a wrapper that reported, whose pid is
// durable, waits past the launch timeout and runs once audit acks. Audit's ack is held by a
// write lock on its SQLite file.
TEST_F(SessionTest, ThePidIsJournaledWhileAuditsAckIsAwaitedAndThatWaitOutlastsTheLaunchTimeout) {
  ExecOptions options;
  options.launch_timeout = absl::Seconds(1);
  StartExec(options);
  UseJournal();
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "api-0").ok());
  ASSERT_TRUE(s->Run("hostname", "warm").exit.has_value());  // the root guard's probe cached
  const size_t execs = kube_.execs().size();
  ASSERT_TRUE(WaitFor([&] { return journal_->size() == 0; })) << "the warm-up's entry stayed";
  prometheus::Histogram& audit_wait = hub_->metrics()->CommandStart(ExecMetrics::Stage::kAuditWait);
  const auto waited_before = audit_wait.Collect().histogram;
  EXPECT_EQ(waited_before.sample_count, 1u) << "the warm-up got \"go\" once";

  AuditWriteLock audit_lock(dir_ + "/audit.db");
  ASSERT_TRUE(audit_lock.held());
  s->Command("hostname", "c1");
  ASSERT_TRUE(WaitFor([&] { return kube_.execs().size() == execs + 1; }));
  // Its pid durable before audit's ack: the entry on disk holds it.
  EXPECT_TRUE(WaitFor([&] {
    std::vector<JournalEntry> entries = journal_->Load();
    return entries.size() == 1 && !entries[0].pid.empty();
  })) << "the pid was not journaled while audit's ack was awaited";
  // Longer than the launch timeout: the wait for audit is not the launch's.
  absl::SleepFor(absl::Milliseconds(1500));
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}))
      << "c1 ran before audit acknowledged its decision";
  audit_lock.Release();
  podgate::testing::CommandOutcome out = s->Wait();
  ASSERT_TRUE(out.exit.has_value())
      << (out.error.has_value() ? out.error->status().message() : out.stderr_text);
  EXPECT_EQ(out.stdout_text, "api-0\n");
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"},
                                       std::vector<std::string>{"hostname"}));
  EXPECT_TRUE(WaitFor([&] { return journal_->size() == 0; })) << "c1's entry stayed";
  // The stage audit_wait holds c1's wait for audit alone: the 1.5 s at least.
  const auto waited = audit_wait.Collect().histogram;
  EXPECT_EQ(waited.sample_count, 2u);
  EXPECT_GE(waited.sample_sum - waited_before.sample_sum, 1.4);
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
}

// The journal's write stays bounded by the launch timeout while audit's ack is awaited too: a
// journal that does not make the pid durable within it ends the command as not run, with the
// journal as the reason, although audit has not answered yet. Audit is held by a write lock on
// its SQLite file, the journal by a completion that blocks its thread.
TEST_F(SessionTest, TheJournalsWriteIsBoundedByTheLaunchTimeoutWhileAuditsAckIsAwaited) {
  ExecOptions options;
  options.launch_timeout = absl::Seconds(1);
  StartExec(options);
  UseJournal();
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "api-0").ok());
  ASSERT_TRUE(s->Run("hostname", "warm").exit.has_value());  // the root guard's probe cached
  const size_t execs = kube_.execs().size();

  AuditWriteLock audit_lock(dir_ + "/audit.db");
  ASSERT_TRUE(audit_lock.held());
  Release release;
  HoldJournal("d1", &release.n);
  const absl::Time asked = absl::Now();
  s->Command("hostname", "c1");
  ASSERT_TRUE(WaitFor([&] { return kube_.execs().size() == execs + 1; }));
  podgate::testing::CommandOutcome out = s->Wait();
  ASSERT_TRUE(out.error.has_value()) << "no error: it ran with its journal held, or never ended";
  EXPECT_THAT(out.error->status().message(),
              HasSubstr("exec's journal did not make it durable within 1s"));
  EXPECT_LT(absl::Now() - asked, absl::Seconds(4)) << "it waited for audit, not the launch";
  audit_lock.Release();
  release.Notify();
  EXPECT_TRUE(WaitFor([&] { return journal_->size() == 1; })) << "c1's entry stayed";
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"}));
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
}

// Output is read from the pod ahead of the client within exec's output window (the writes to
// the client overlap the reads from the API server), never further: a client that reads nothing
// holds the pod back. Chunks of one stream still queued leave as one message, bounded in size,
// in order.
TEST_F(SessionTest, OutputIsReadAheadWithinABoundedWindowAndCoalesced) {
  constexpr size_t kChunk = 32 * 1024;
  constexpr size_t kChunks = 2048;  // 64 MiB
  kube_.SetProgram([](const std::vector<std::string>& argv) {
    FakeKube::Run run;
    if (argv == UidProbeArgv()) {
      run.stdout_text = "1000\n";
    } else {
      for (size_t i = 0; i < kChunks; ++i) {
        run.stdout_chunks.push_back(std::string(kChunk, static_cast<char>('a' + i % 26)));
      }
    }
    return run;
  });
  ExecOptions options;
  options.default_output_limit_bytes = 1LL << 30;
  StartExec(options);
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "api-0").ok());
  const size_t before = kube_.output_offered();
  s->Command("hostname", "c1");
  // The client reads nothing: the pod may get ahead by exec's window and what the transport
  // buffers (HTTP/2 windows, socket buffers), not by the whole output.
  absl::SleepFor(absl::Seconds(2));
  const size_t ahead = kube_.output_offered() - before;
  EXPECT_GT(ahead, 0u);
  EXPECT_LT(ahead, kChunks * kChunk / 2) << "exec read the pod's output far ahead of its client";
  size_t received = 0;
  size_t messages = 0;
  size_t largest = 0;
  bool in_order = true;
  std::optional<v1::CommandExit> exit;
  v1::SessionResponse res;
  while (!exit.has_value() && s->stream()->Read(&res)) {
    if (res.has_stdout()) {
      const std::string& data = res.stdout().data();
      for (size_t i = 0; i < data.size(); ++i) {
        in_order = in_order && data[i] == static_cast<char>('a' + ((received + i) / kChunk) % 26);
      }
      received += data.size();
      largest = std::max(largest, data.size());
      ++messages;
    } else if (res.has_exit()) {
      exit = res.exit();
    }
  }
  ASSERT_TRUE(exit.has_value());
  EXPECT_EQ(exit->exit_code(), 0);
  EXPECT_EQ(received, kChunks * kChunk);
  EXPECT_TRUE(in_order);
  EXPECT_LE(largest, 256u * 1024);
  EXPECT_LT(messages, kChunks) << "no chunk was coalesced";
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
}

// A session remembers every command id it has seen, so that none is reused: what it remembers
// is bounded by a command budget (run, denied or refused alike count; a duplicate id does not
// add one). Past it each command is refused, audited, and a new session goes on.
TEST_F(SessionTest, ASessionsCommandBudgetBoundsWhatItRemembers) {
  ExecOptions options;
  options.max_commands_per_session = 3;
  StartExec(options);
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "api-0").ok());
  EXPECT_TRUE(s->Run("hostname", "c1").exit.has_value());
  EXPECT_TRUE(s->Run("rm -rf /", "c2").denied.has_value());
  podgate::testing::CommandOutcome reused = s->Run("hostname", "c1");
  ASSERT_TRUE(reused.error.has_value());
  EXPECT_EQ(reused.error->status().code(), static_cast<int>(grpc::StatusCode::ALREADY_EXISTS));
  EXPECT_TRUE(s->Run("hostname", "c3").exit.has_value());
  podgate::testing::CommandOutcome over = s->Run("hostname", "c4");
  ASSERT_TRUE(over.error.has_value()) << "a command past the budget ran";
  EXPECT_EQ(over.error->command_id(), "c4");
  EXPECT_EQ(over.error->status().code(), static_cast<int>(grpc::StatusCode::RESOURCE_EXHAUSTED));
  EXPECT_THAT(over.error->status().message(),
              HasSubstr("its limit of 3 commands (--max_commands_per_session)"));
  // Still refused (not run) however it is asked, and the session stays open.
  EXPECT_TRUE(s->Run("hostname").error.has_value());
  EXPECT_THAT(kube_.ran(), ElementsAre(std::vector<std::string>{"hostname"},
                                       std::vector<std::string>{"hostname"}));
  int limited = 0;
  for (const common::AuditEvent& e :
       Events(common::EVENT_KIND_DECISION, 6)) {  // 2 allowed, 4 refused
    if (e.decision().rule() == "command-limit") {
      ++limited;
      EXPECT_EQ(e.decision().verdict(), common::VERDICT_DENY);
      EXPECT_EQ(e.command_request().line(), "hostname");
    }
  }
  EXPECT_EQ(limited, 2);
  EXPECT_EQ(s->Close(), common::CLOSE_REASON_CLIENT);
  auto next = NewSession();
  ASSERT_TRUE(next->Open(Token("alice"), "app", "api-0").ok());
  EXPECT_TRUE(next->Run("hostname", "c4").exit.has_value());
  EXPECT_EQ(next->Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(SessionTest, TheRootGuardRefusesACommandInADeclaredRootContainer) {
  StartExec();
  auto s = NewSession();
  ASSERT_TRUE(s->Open(Token("alice"), "app", "root-0").ok());
  podgate::testing::CommandOutcome out = s->Run("hostname", "c1");
  ASSERT_TRUE(out.denied.has_value());
  EXPECT_EQ(out.denied->rule(), "root-guard");
  EXPECT_THAT(out.denied->reason(), HasSubstr("is declared to run as root"));
  // Nothing ran in the pod, not even a probe.
  EXPECT_TRUE(kube_.execs().empty());
  std::vector<common::AuditEvent> decisions = Events(common::EVENT_KIND_DECISION, 2);
  ASSERT_EQ(decisions.size(), 2u);  // policy's allow, then the root guard's deny
  EXPECT_EQ(decisions[1].decision().rule(), "root-guard");
  EXPECT_EQ(decisions[1].decision().verdict(), common::VERDICT_DENY);
}

TEST_F(SessionTest, TheTimeLimitStopsExactlyTheCommandsProcess) {
  ExecOptions options;
  options.interrupt_grace = absl::Milliseconds(200);
  StartExec(options);
  auto first = NewSession();
  ASSERT_TRUE(first->Open(Token("alice"), "app", "api-0").ok());
  // Another command runs in the same container first (pid 4242); the time limit of this one
  // (pid 4243) must signal 4243 only.
  podgate::testing::CommandOutcome done = first->Run("hostname", "h1");
  ASSERT_TRUE(done.exit.has_value());
  const absl::Time start = absl::Now();
  podgate::testing::CommandOutcome out = first->Run("sleep", "s1");
  ASSERT_TRUE(out.exit.has_value());
  EXPECT_EQ(out.exit->termination(), common::TERMINATION_TIME_LIMIT);
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(300));
  EXPECT_THAT(kube_.signals(), ElementsAre("INT 4243"));
  std::vector<common::AuditEvent> results = Events(common::EVENT_KIND_COMMAND_RESULT, 2);
  ASSERT_EQ(results.size(), 2u);
  EXPECT_EQ(results[1].command_id(), "s1");
  EXPECT_EQ(results[1].command_result().termination(), common::TERMINATION_TIME_LIMIT);
  // Counted when the stop helper's own answer arrives, which may come after the command's exit
  // (the signal ends the command first).
  prometheus::Counter& signalled =
      exec_metrics_.stops_total.Add({{"signal", "INT"}, {"result", "signalled"}});
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (signalled.Value() < 1 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  EXPECT_EQ(signalled.Value(), 1);
}

// Opens a shell session on `pod`, returns the first answer (ready, or the stream's end).
struct ShellStream {
  explicit ShellStream(const std::shared_ptr<grpc::Channel>& channel)
      : stub(podgate::exec::v1::ExecService::NewStub(channel)) {
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(15));
    stream = stub->Session(&ctx);
  }
  grpc::Status Open(const std::string& token, const std::string& pod) {
    podgate::exec::v1::SessionRequest req;
    req.mutable_open()->mutable_credential()->set_bearer_token(token);
    req.mutable_open()->mutable_target()->set_namespace_("app");
    req.mutable_open()->mutable_target()->set_pod(pod);
    req.mutable_open()->set_mode(common::SESSION_MODE_SHELL);
    req.mutable_open()->mutable_size()->set_width(100);
    req.mutable_open()->mutable_size()->set_height(30);
    stream->Write(req);
    podgate::exec::v1::SessionResponse res;
    if (stream->Read(&res) && res.has_ready()) {
      return grpc::Status::OK;
    }
    return stream->Finish();
  }
  void Send(const std::string& data) {
    podgate::exec::v1::SessionRequest req;
    req.mutable_stdin()->set_data(data);
    stream->Write(req);
  }
  common::CloseReason Close() {
    podgate::exec::v1::SessionRequest req;
    req.mutable_close();
    stream->Write(req);
    stream->WritesDone();
    common::CloseReason reason = common::CLOSE_REASON_UNSPECIFIED;
    podgate::exec::v1::SessionResponse res;
    while (stream->Read(&res)) {
      if (res.has_closed()) {
        reason = res.closed().reason();
      }
    }
    stream->Finish();
    return reason;
  }
  std::unique_ptr<podgate::exec::v1::ExecService::Stub> stub;
  grpc::ClientContext ctx;
  std::unique_ptr<grpc::ClientReaderWriter<podgate::exec::v1::SessionRequest,
                                           podgate::exec::v1::SessionResponse>>
      stream;
};

TEST_F(SessionTest, AShellRunsOnATtyAndIsRecorded) {
  StartExec();
  ShellStream shell(channel_);
  ASSERT_TRUE(shell.Open(Token("alice"), "shell-0").ok());
  // The root guard's probe, then the shell on a TTY of the size the client asked for.
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (kube_.execs().size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  std::vector<ExecSpec> execs = kube_.execs();
  ASSERT_EQ(execs.size(), 2u);
  EXPECT_EQ(execs[0].argv, UidProbeArgv());
  EXPECT_EQ(execs[1].argv, std::vector<std::string>{"/bin/sh"});
  EXPECT_TRUE(execs[1].tty);
  EXPECT_TRUE(execs[1].stdin);
  EXPECT_EQ(execs[1].width, 100u);
  EXPECT_EQ(execs[1].height, 30u);
  shell.Send("ls\r");
  EXPECT_EQ(shell.Close(), common::CLOSE_REASON_CLIENT);
  // The recording reaches audit at close: the header, then the keystrokes.
  std::vector<common::AuditEvent> chunks = Events(common::EVENT_KIND_SHELL_RECORDING);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_EQ(chunks[0].shell_recording().sequence(), 0);
  const std::string& cast = chunks[0].shell_recording().asciicast();
  EXPECT_THAT(cast, HasSubstr("\"title\":\"app/shell-0/main\""));
  EXPECT_THAT(cast, HasSubstr("\"width\":100"));
  EXPECT_THAT(cast, HasSubstr("\"i\",\"ls\\r\"]"));
}

// The client closes while the shell's stream is still being opened: the keystrokes it sent
// meanwhile are recorded, and nothing reaches the pod after the close.
TEST_F(SessionTest, AShellClosedWhileItsStreamOpensKeepsItsRecording) {
  StartExec();
  kube_.HoldExecs([](const ExecSpec& spec) { return spec.tty; });
  ShellStream shell(channel_);
  ASSERT_TRUE(shell.Open(Token("alice"), "shell-0").ok());
  const absl::Time deadline = absl::Now() + absl::Seconds(5);
  while (kube_.execs().size() < 2 && absl::Now() < deadline) {
    absl::SleepFor(absl::Milliseconds(10));
  }
  ASSERT_EQ(kube_.execs().size(), 2u);  // the shell's Exec is in progress, held
  shell.Send("id\r");
  EXPECT_EQ(shell.Close(), common::CLOSE_REASON_CLIENT);
  kube_.ReleaseExecs();
  std::vector<common::AuditEvent> chunks = Events(common::EVENT_KIND_SHELL_RECORDING);
  ASSERT_EQ(chunks.size(), 1u);
  EXPECT_THAT(chunks[0].shell_recording().asciicast(), HasSubstr("\"i\",\"id\\r\"]"));
  EXPECT_TRUE(kube_.stdin_written().empty());
}

TEST_F(SessionTest, AShellInADeclaredRootContainerIsRefusedAtOpen) {
  StartExec();
  ShellStream shell(channel_);
  grpc::Status status = shell.Open(Token("alice"), "shell-root");
  EXPECT_EQ(status.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(status.error_message(), HasSubstr("is declared to run as root"));
  EXPECT_TRUE(kube_.execs().empty());
}

TEST_F(SessionTest, AskScopeCountsPodLabelsOnlyOnceThePodIsKnown) {
  StartExec();
  auto ask = [&](podgate::policy::v1::PolicyService::StubInterface* stub, const std::string& ns,
                 std::map<std::string, std::string> labels,
                 bool labels_known) -> absl::StatusOr<ScopeAnswer> {
    common::Principal principal;
    principal.set_user("alice");
    principal.add_groups("dev");
    common::Target target;
    target.set_namespace_(ns);
    target.set_pod("x-0");
    for (const auto& [k, v] : labels) {
      (*target.mutable_pod_labels())[k] = v;
    }
    std::promise<absl::StatusOr<ScopeAnswer>> answer;
    AskScope(stub, principal, target, labels_known, absl::Seconds(2),
             [&answer](absl::StatusOr<ScopeAnswer> in) { answer.set_value(std::move(in)); });
    return answer.get_future().get();
  };
  // lab's only rule selects pods by label: yes before the labels are known (it may select the
  // pod), then the labels decide, and the answer says they matter.
  absl::StatusOr<ScopeAnswer> lab = ask(policy_stub_.get(), "lab", {}, false);
  ASSERT_TRUE(lab.ok()) << lab.status();
  EXPECT_TRUE(lab->in_scope);
  EXPECT_FALSE(lab->labels_irrelevant);
  EXPECT_FALSE(ask(policy_stub_.get(), "lab", {{"team", "b"}}, true)->in_scope);
  EXPECT_TRUE(ask(policy_stub_.get(), "lab", {{"team", "a"}}, true)->in_scope);
  // app's rules select no pods by label: the first answer is final.
  absl::StatusOr<ScopeAnswer> app = ask(policy_stub_.get(), "app", {}, false);
  ASSERT_TRUE(app.ok()) << app.status();
  EXPECT_TRUE(app->in_scope);
  EXPECT_TRUE(app->labels_irrelevant);
  EXPECT_FALSE(ask(policy_stub_.get(), "secret", {}, false)->in_scope);
  // Policy unreachable: an error (the session then refuses, fail closed), not a yes.
  podgate::testing::ReservedPort closed;
  auto down =
      podgate::policy::v1::PolicyService::NewStub(podgate::testing::LocalChannel(closed.port()));
  absl::StatusOr<ScopeAnswer> error = ask(down.get(), "app", {}, false);
  EXPECT_FALSE(error.ok());
}

}  // namespace
}  // namespace podgate::exec
