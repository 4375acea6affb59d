// Other users in a session, through real podgate-exec, podgate-policy and podgate-audit
// processes against kubesim: a user with an `observe` rule lists live sessions and joins one
// read-only, seeing the commands and their output as they happen, never typing into it; a
// moderated shell (`moderated: true`) starts only when a moderator joins and ends when the last
// one leaves; joins without a rule, as a moderator with only an observe rule, to one's own or an
// unknown session are refused; a watcher who reads slower than the output is dropped without
// slowing the session; every join, leave and refusal is audited.
#include <algorithm>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "podgate/exec/v1/exec.grpc.pb.h"
#include "support/audit_records.h"
#include "support/exec_session.h"
#include "support/prometheus_text.h"
#include "support/stack.h"

namespace podgate {
namespace {

using ::testing::HasSubstr;
namespace common = podgate::common::v1;
namespace pb = podgate::exec::v1;
using SessionClient = testing::ExecSession;

constexpr char kCluster[] = R"(namespaces:
  - name: team
  - name: prod
pods:
  - name: app-1
    namespace: team
    containers:
      - name: main
        image: demo/app:1
  - name: api-0
    namespace: prod
    containers:
      - name: main
        image: demo/api:1
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec, namespaces]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
defaults: {timeLimit: 30s}
rules:
  - id: devs-anything
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [team]}
    superuser: true
    allowProgramRunners: true  # the tests drive the pod with sh -c
  - id: devs-shell-prod
    effect: allow
    subjects: {groups: [devs]}
    targets: {namespaces: [prod]}
    shell: true
    moderated: true
  - id: auditors-watch
    effect: allow
    subjects: {groups: [auditors]}
    targets: {namespaces: ["*"]}
    join: observe
  - id: sre-moderate
    effect: allow
    subjects: {groups: [sre]}
    targets: {namespaces: ["*"]}
    join: moderate
)";

// What a stream has received, message by message.
struct Seen {
  std::vector<pb::SessionResponse> messages;
  std::string output;

  void Take(const pb::SessionResponse& m) {
    messages.push_back(m);
    if (m.has_stdout()) {
      output += m.stdout().data();
    } else if (m.has_stderr()) {
      output += m.stderr().data();
    }
  }
  // Reads until `done` holds or the stream ends; false when it ended first.
  template <typename Done>
  bool ReadUntil(SessionClient& s, Done done) {
    pb::SessionResponse m;
    while (!done(*this)) {
      if (!s.stream()->Read(&m)) {
        return false;
      }
      Take(m);
    }
    return true;
  }
  std::optional<pb::Participants> LastParticipants() const {
    for (auto it = messages.rbegin(); it != messages.rend(); ++it) {
      if (it->has_participants()) {
        return it->participants();
      }
    }
    return std::nullopt;
  }
  bool Has(pb::SessionResponse::KindCase kind) const {
    return std::any_of(messages.begin(), messages.end(),
                       [kind](const pb::SessionResponse& m) { return m.kind_case() == kind; });
  }
  std::optional<pb::SessionClosed> Closed() const {
    for (const pb::SessionResponse& m : messages) {
      if (m.has_closed()) {
        return m.closed();
      }
    }
    return std::nullopt;
  }
};

std::vector<std::string> Users(const pb::Participants& p) {
  std::vector<std::string> out;
  for (const pb::Participant& one : p.participants()) {
    out.push_back(
        absl::StrCat(one.user(), ":", common::ParticipantRole_Name(one.role()).substr(17)));
  }
  return out;
}

class ExecJoinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {PODGATE_KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN,
                        PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    options.exec_flags = {"--observer_buffer_bytes=65536", "--interrupt_grace=1s"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
  }
  static void TearDownTestSuite() {
    delete stack_;
    stack_ = nullptr;
  }
  static double Sample(const std::string& sample) {
    return std::max(0.0, testing::MetricSample(stack_->exec_metrics_port(), sample));
  }
  static absl::StatusOr<pb::ListSessionsResponse> List(const std::string& token) {
    auto stub = pb::ExecService::NewStub(testing::LoopbackChannel(stack_->exec_port()));
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    pb::ListSessionsRequest req;
    req.mutable_credential()->set_bearer_token(token);
    pb::ListSessionsResponse res;
    grpc::Status s = stub->ListSessions(&ctx, req, &res);
    if (!s.ok()) {
      return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
    }
    return res;
  }
  // The session's records of `kind`, once audit has `want` of them (up to 10 s).
  static std::vector<common::AuditEvent> EventsOf(const std::string& session_id,
                                                  common::EventKind kind, size_t want) {
    return testing::AuditEventsOf(stack_->audit_port(), session_id, kind, want);
  }

  static testing::Stack* stack_;
};
testing::Stack* ExecJoinTest::stack_ = nullptr;

TEST_F(ExecJoinTest, AnObserverListsJoinsAndSeesCommandsAndOutputLiveButCannotType) {
  const std::string alice = stack_->Token("alice", {"devs"});
  const std::string ann = stack_->Token("ann", {"auditors"});
  SessionClient owner(stack_->exec_port());
  auto ready = owner.Open(alice, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_EQ(ready->role(), common::PARTICIPANT_ROLE_OWNER);
  EXPECT_FALSE(ready->moderator_required());

  // Listed for the auditor (observe, not moderate), not for alice herself.
  auto listed = List(ann);
  ASSERT_TRUE(listed.ok()) << listed.status();
  const pb::LiveSession* mine = nullptr;
  for (const pb::LiveSession& s : listed->sessions()) {
    if (s.session_id() == ready->session_id()) {
      mine = &s;
    }
  }
  ASSERT_NE(mine, nullptr);
  EXPECT_EQ(mine->principal().user(), "alice");
  EXPECT_EQ(mine->target().pod(), "app-1");
  EXPECT_FALSE(mine->may_moderate());
  ASSERT_EQ(mine->participants_size(), 1);
  auto own = List(alice);
  ASSERT_TRUE(own.ok()) << own.status();
  for (const pb::LiveSession& s : own->sessions()) {
    EXPECT_NE(s.session_id(), ready->session_id());
  }

  SessionClient watcher(stack_->exec_port());
  auto joined = watcher.Join(ann, ready->session_id());
  ASSERT_TRUE(joined.ok()) << joined.status();
  EXPECT_EQ(joined->session_id(), ready->session_id());
  EXPECT_EQ(joined->principal().user(), "alice");
  EXPECT_EQ(joined->role(), common::PARTICIPANT_ROLE_OBSERVER);
  EXPECT_TRUE(joined->resume_token().empty());
  Seen w;
  ASSERT_TRUE(w.ReadUntil(watcher, [](const Seen& s) { return s.LastParticipants().has_value(); }));
  EXPECT_THAT(Users(*w.LastParticipants()), ::testing::ElementsAre("alice:OWNER", "ann:OBSERVER"));

  // The owner hears who joined, runs a command; the watcher sees the line, the output, the exit.
  Seen o;
  ASSERT_TRUE(o.ReadUntil(owner, [](const Seen& s) { return s.LastParticipants().has_value(); }));
  EXPECT_THAT(Users(*o.LastParticipants()), ::testing::ElementsAre("alice:OWNER", "ann:OBSERVER"));
  testing::CommandOutcome run = owner.Run("sh -c 'echo one; echo two >&2'", "c1");
  ASSERT_TRUE(run.exit.has_value());
  ASSERT_TRUE(
      w.ReadUntil(watcher, [](const Seen& s) { return s.Has(pb::SessionResponse::kExit); }));
  ASSERT_TRUE(w.Has(pb::SessionResponse::kCommand));
  for (const pb::SessionResponse& m : w.messages) {
    if (m.has_command()) {
      EXPECT_EQ(m.command().command_id(), "c1");
      EXPECT_EQ(m.command().line(), "sh -c 'echo one; echo two >&2'");
    }
    EXPECT_EQ(m.seq(), 0u);  // a watcher's stream is not resumable
  }
  EXPECT_THAT(w.output, HasSubstr("one\n"));
  EXPECT_THAT(w.output, HasSubstr("two\n"));

  // The watcher's input is refused and reaches nothing.
  watcher.Command("touch /tmp/from-watcher", "w1");
  ASSERT_TRUE(
      w.ReadUntil(watcher, [](const Seen& s) { return s.Has(pb::SessionResponse::kError); }));
  for (const pb::SessionResponse& m : w.messages) {
    if (m.has_error()) {
      EXPECT_EQ(m.error().command_id(), "w1");
      EXPECT_EQ(m.error().status().code(), grpc::StatusCode::PERMISSION_DENIED);
      EXPECT_THAT(m.error().status().message(), HasSubstr("only its owner can type in it"));
    }
  }
  testing::CommandOutcome check =
      owner.Run("sh -c 'test -e /tmp/from-watcher && echo yes || echo no'");
  EXPECT_EQ(check.stdout_text, "no\n");

  // The watcher leaves; the session goes on, and the owner is told.
  EXPECT_EQ(watcher.Close(), common::CLOSE_REASON_CLIENT);
  pb::SessionResponse m;
  std::optional<pb::Participants> after;
  for (int i = 0; i < 20 && !after.has_value(); ++i) {
    ASSERT_TRUE(owner.stream()->Read(&m));
    if (m.has_participants() && m.participants().participants_size() == 1) {
      after = m.participants();
    }
  }
  ASSERT_TRUE(after.has_value());
  testing::CommandOutcome still = owner.Run("echo still");
  EXPECT_EQ(still.stdout_text, "still\n");
  EXPECT_EQ(owner.Close(), common::CLOSE_REASON_CLIENT);

  const auto joins = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_JOIN, 1);
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_EQ(joins[0].principal().user(), "ann");
  EXPECT_EQ(joins[0].session_join().role(), common::PARTICIPANT_ROLE_OBSERVER);
  EXPECT_EQ(joins[0].session_join().session_user(), "alice");
  EXPECT_EQ(joins[0].session_join().rule(), "auditors-watch");
  EXPECT_EQ(joins[0].target().pod(), "app-1");
  const auto leaves = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_LEAVE, 1);
  ASSERT_EQ(leaves.size(), 1u);
  EXPECT_EQ(leaves[0].principal().user(), "ann");
  EXPECT_EQ(leaves[0].session_leave().reason(), "client");
}

TEST_F(ExecJoinTest, AModeratedShellStartsWithItsModeratorAndEndsWhenTheLastOneLeaves) {
  const std::string alice = stack_->Token("alice", {"devs"});
  const std::string sam = stack_->Token("sam", {"sre"});
  const std::string ann = stack_->Token("ann", {"auditors"});
  const double waiting_before = Sample("podgate_exec_sessions_waiting_for_moderator");
  SessionClient owner(stack_->exec_port());
  auto ready = owner.Open(alice, "prod", "api-0", "", common::SESSION_MODE_SHELL);
  ASSERT_TRUE(ready.ok()) << ready.status();
  EXPECT_TRUE(ready->moderator_required());
  Seen o;
  ASSERT_TRUE(o.ReadUntil(owner, [](const Seen& s) { return s.LastParticipants().has_value(); }));
  EXPECT_TRUE(o.LastParticipants()->waiting_for_moderator());
  EXPECT_EQ(Sample("podgate_exec_sessions_waiting_for_moderator"), waiting_before + 1);

  // Typed before a moderator is there: refused, and never reaches the shell.
  pb::SessionRequest keys;
  keys.mutable_stdin()->set_data("echo typed-blind > /tmp/blind\n");
  owner.Send(keys);
  ASSERT_TRUE(o.ReadUntil(owner, [](const Seen& s) { return s.Has(pb::SessionResponse::kError); }));

  // An observer does not start it, and may not join as a moderator.
  SessionClient auditor(stack_->exec_port());
  auto watching = auditor.Join(ann, ready->session_id());
  ASSERT_TRUE(watching.ok()) << watching.status();
  EXPECT_TRUE(watching->moderator_required());
  SessionClient pretender(stack_->exec_port());
  auto refused = pretender.Join(ann, ready->session_id(), /*moderator=*/true);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("not moderate it"));

  // The moderator joins: the shell starts, and both see what alice types.
  SessionClient moderator(stack_->exec_port());
  auto moderating = moderator.Join(sam, ready->session_id(), /*moderator=*/true);
  ASSERT_TRUE(moderating.ok()) << moderating.status();
  EXPECT_EQ(moderating->role(), common::PARTICIPANT_ROLE_MODERATOR);
  Seen m;
  ASSERT_TRUE(m.ReadUntil(moderator, [](const Seen& s) {
    return s.LastParticipants().has_value() && !s.LastParticipants()->waiting_for_moderator();
  }));
  EXPECT_THAT(Users(*m.LastParticipants()),
              ::testing::ElementsAre("alice:OWNER", "ann:OBSERVER", "sam:MODERATOR"));
  EXPECT_EQ(Sample("podgate_exec_sessions_waiting_for_moderator"), waiting_before);
  keys.mutable_stdin()->set_data("echo hello-$((6*7)); test -e /tmp/blind && echo blind\n");
  owner.Send(keys);
  ASSERT_TRUE(m.ReadUntil(
      moderator, [](const Seen& s) { return s.output.find("hello-42") != std::string::npos; }));
  ASSERT_TRUE(o.ReadUntil(
      owner, [](const Seen& s) { return s.output.find("hello-42") != std::string::npos; }));
  EXPECT_THAT(o.output, ::testing::Not(HasSubstr("\nblind")));

  // The moderator leaves: the session ends for everyone, with the reason.
  EXPECT_EQ(moderator.Close(), common::CLOSE_REASON_CLIENT);
  ASSERT_TRUE(o.ReadUntil(owner, [](const Seen& s) { return s.Closed().has_value(); }));
  EXPECT_EQ(o.Closed()->reason(), common::CLOSE_REASON_MODERATOR_LEFT);
  EXPECT_THAT(o.Closed()->message(), HasSubstr("the last moderator (sam) left"));
  Seen a;
  ASSERT_TRUE(a.ReadUntil(auditor, [](const Seen& s) { return s.Closed().has_value(); }));
  EXPECT_EQ(a.Closed()->reason(), common::CLOSE_REASON_MODERATOR_LEFT);
  EXPECT_TRUE(owner.Finish().ok());
  EXPECT_TRUE(auditor.Finish().ok());

  const auto joins = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_JOIN, 2);
  ASSERT_EQ(joins.size(), 2u);
  const auto leaves = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_LEAVE, 2);
  ASSERT_EQ(leaves.size(), 2u);
  const auto closes = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_CLOSE, 1);
  ASSERT_EQ(closes.size(), 1u);
  EXPECT_EQ(closes[0].session_close().reason(), common::CLOSE_REASON_MODERATOR_LEFT);
  // The refused moderator join is recorded as a denial.
  bool denial = false;
  for (const auto& r : testing::AuditRecords(stack_->audit_port(), ready->session_id())) {
    denial = denial || (r.event().kind() == common::EVENT_KIND_DECISION &&
                        r.event().principal().user() == "ann" &&
                        r.event().decision().verdict() == common::VERDICT_DENY);
  }
  EXPECT_TRUE(denial);
}

TEST_F(ExecJoinTest, JoinsWithoutARuleToOnesOwnOrAnUnknownSessionAreRefused) {
  const std::string alice = stack_->Token("alice", {"devs"});
  const std::string bob = stack_->Token("bob", {"devs"});
  SessionClient owner(stack_->exec_port());
  auto ready = owner.Open(alice, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // bob has no observe rule: the session is not listed, and the join is refused by policy.
  auto listed = List(bob);
  ASSERT_TRUE(listed.ok()) << listed.status();
  EXPECT_EQ(listed->sessions_size(), 0);
  SessionClient b(stack_->exec_port());
  auto refused = b.Join(bob, ready->session_id());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(std::string(refused.status().message()),
              HasSubstr("no rule lets bob join sessions on team/app-1/main"));
  SessionClient self(stack_->exec_port());
  auto own = self.Join(alice, ready->session_id());
  EXPECT_EQ(own.status().code(), absl::StatusCode::kFailedPrecondition);
  SessionClient nobody(stack_->exec_port());
  auto unknown = nobody.Join(stack_->Token("sam", {"sre"}), "no-such-session");
  EXPECT_EQ(unknown.status().code(), absl::StatusCode::kNotFound);
  SessionClient forged(stack_->exec_port());
  auto bad = forged.Join("not-a-token", ready->session_id());
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kUnauthenticated);
  auto unlisted = List("not-a-token");
  EXPECT_EQ(unlisted.status().code(), absl::StatusCode::kUnauthenticated);
  EXPECT_EQ(owner.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecJoinTest, JoinedStreamsCountAgainstTheUsersSessionLimit) {
  const std::string alice = stack_->Token("alice", {"devs"});
  const std::string ann = stack_->Token("ann", {"auditors"});
  SessionClient owner(stack_->exec_port());
  auto ready = owner.Open(alice, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  // --max_sessions_per_user is 10 (the default): ten joins, then a refusal naming the limit.
  std::vector<std::unique_ptr<SessionClient>> watchers;
  for (int i = 0; i < 10; ++i) {
    watchers.push_back(std::make_unique<SessionClient>(stack_->exec_port()));
    auto joined = watchers.back()->Join(ann, ready->session_id());
    ASSERT_TRUE(joined.ok()) << i << ": " << joined.status();
  }
  SessionClient one_more(stack_->exec_port());
  auto refused = one_more.Join(ann, ready->session_id());
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_THAT(std::string(refused.status().message()), HasSubstr("the limit per user"));
  // Leaving gives the place back.
  EXPECT_EQ(watchers.back()->Close(), common::CLOSE_REASON_CLIENT);
  watchers.pop_back();
  absl::StatusOr<pb::SessionReady> again = absl::UnknownError("not tried");
  for (int i = 0; i < 50 && !again.ok(); ++i) {
    SessionClient retry(stack_->exec_port());
    again = retry.Join(ann, ready->session_id());
    if (again.ok()) {
      EXPECT_EQ(retry.Close(), common::CLOSE_REASON_CLIENT);
    } else {
      absl::SleepFor(absl::Milliseconds(50));
    }
  }
  EXPECT_TRUE(again.ok()) << again.status();
  watchers.clear();
  EXPECT_EQ(owner.Close(), common::CLOSE_REASON_CLIENT);
}

TEST_F(ExecJoinTest, AWatcherWhoStopsReadingIsDroppedAndTheSessionGoesOnAtItsPace) {
  const std::string alice = stack_->Token("alice", {"devs"});
  const std::string ann = stack_->Token("ann", {"auditors"});
  const double dropped_before = Sample("podgate_exec_session_leaves_total{reason=\"fell_behind\"}");
  SessionClient owner(stack_->exec_port());
  auto ready = owner.Open(alice, "team", "app-1");
  ASSERT_TRUE(ready.ok()) << ready.status();
  SessionClient watcher(stack_->exec_port());
  auto joined = watcher.Join(ann, ready->session_id());
  ASSERT_TRUE(joined.ok()) << joined.status();
  // The watcher reads nothing more; alice's command writes 8 MiB, far past the watcher's
  // 64 KiB and what gRPC's windows hold. Alice gets all of it.
  int64_t bytes = 0;
  owner.Command("sh -c 'head -c 8388608 /dev/zero'", "big");
  testing::CommandOutcome big = owner.Wait(&bytes);
  ASSERT_TRUE(big.exit.has_value());
  EXPECT_EQ(bytes, 8388608);
  for (int i = 0; i < 100 && Sample("podgate_exec_session_leaves_total{reason=\"fell_behind\"}") ==
                                 dropped_before;
       ++i) {
    absl::SleepFor(absl::Milliseconds(50));
  }
  EXPECT_EQ(Sample("podgate_exec_session_leaves_total{reason=\"fell_behind\"}"),
            dropped_before + 1);
  // What the watcher gets when it reads again: some output, then `closed` saying why.
  Seen w;
  ASSERT_TRUE(w.ReadUntil(watcher, [](const Seen& s) { return s.Closed().has_value(); }));
  EXPECT_EQ(w.Closed()->reason(), common::CLOSE_REASON_ERROR);
  EXPECT_THAT(w.Closed()->message(), HasSubstr("you fell behind"));
  EXPECT_LT(w.output.size(), 8388608u);
  EXPECT_EQ(owner.Close(), common::CLOSE_REASON_CLIENT);
  const auto leaves = EventsOf(ready->session_id(), common::EVENT_KIND_SESSION_LEAVE, 1);
  ASSERT_EQ(leaves.size(), 1u);
  EXPECT_EQ(leaves[0].session_leave().reason(), "fell_behind");
}

}  // namespace
}  // namespace podgate
