// W3C trace context through the whole chain (docs/architecture.md, "Trace context"), through the
// real edge binary in front of the real back end (kubesim, podgate-policy, podgate-audit,
// podgate-exec). A WebSocket session's trace id — the client's traceparent continued, or one
// edge starts when the client sends none or a malformed one — is handed back to the client
// (traceresponse on the 101, trace_id in `ready`), and appears in the JSON log lines edge, exec,
// policy and audit write about the session and on every audit record of its command, which the
// trace_id filter finds.
#include "runtime/trace.h"

#include <iostream>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "auth/base64url.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "nlohmann/json.hpp"
#include "support/stack.h"
#include "support/subprocess.h"

namespace podgate {
namespace {

using ::podgate::testing::Subprocess;
using ::testing::HasSubstr;

constexpr char kOrigin[] = "https://podgate.test";

constexpr char kCluster[] = R"(namespaces:
  - name: demo
pods:
  - name: web-1
    namespace: demo
    containers:
      - {name: app, image: demo/web:1}
access:
  - user: podgate-exec
    verbs: [get, list, create]
    resources: [pods, pods/exec]
    namespaces: ["*"]
)";

constexpr char kPolicy[] = R"(apiVersion: podgate.io/v1
kind: CommandPolicy
rules:
  - id: echo
    effect: allow
    subjects: {groups: [developers]}
    targets: {namespaces: [demo]}
    command:
      program: echo
      args:
        - {name: word, type: regex, pattern: "[a-z-]+", optional: true, repeat: true}
)";

std::optional<std::string> HeaderOf(const std::vector<std::pair<std::string, std::string>>& headers,
                                    const std::string& name) {
  for (const auto& [k, v] : headers) {
    if (absl::EqualsIgnoreCase(k, name)) {
      return v;
    }
  }
  return std::nullopt;
}

// What a traced session left behind.
struct TracedSession {
  std::string trace_id;        // from traceresponse
  std::string edge_span_id;    // edge's span, from traceresponse
  std::string ready_trace_id;  // from `ready`
  std::string session_id;
};

class EdgeTraceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    testing::StackOptions options;
    options.binaries = {KUBESIM_BIN, PODGATE_POLICY_BIN, PODGATE_AUDIT_BIN, PODGATE_EXEC_BIN};
    options.cluster_yaml = kCluster;
    options.policy_yaml = kPolicy;
    // Allowed decisions and received audit events are logged at debug level.
    options.policy_flags = {"--log_level=debug"};
    options.audit_flags = {"--log_level=debug"};
    auto stack = testing::Stack::Start(options);
    ASSERT_TRUE(stack.ok()) << stack.status();
    stack_ = stack->release();
    auto edge = Subprocess::Start(
        PODGATE_EDGE_BIN,
        {"--grpc_address=127.0.0.1:0", "--metrics_address=", "--http_address=127.0.0.1:0",
         absl::StrCat("--exec_address=127.0.0.1:", stack_->exec_port()),
         absl::StrCat("--policy_address=127.0.0.1:", stack_->policy_port()),
         absl::StrCat("--audit_address=127.0.0.1:", stack_->audit_port()), "--backend_timeout=10s",
         std::string("--allowed_origins=") + kOrigin, "--jwt_key_file=" + stack_->jwt_secret_file(),
         "--jwt_algorithm=HS256", std::string("--jwt_issuer=") + testing::Stack::kIssuer,
         "--jwt_audience=podgate"});
    ASSERT_TRUE(edge.ok()) << edge.status();
    edge_ = edge->release();
    auto line = edge_->WaitForLine("\"msg\":\"http serving\"", absl::Seconds(20));
    ASSERT_TRUE(line.ok()) << line.status();
    http_port_ = nlohmann::json::parse(*line)["http_port"].get<int>();
  }

  static void TearDownTestSuite() {
    if (::testing::UnitTest::GetInstance()->current_test_suite()->Failed()) {
      for (auto [name, p] : std::vector<std::pair<const char*, Subprocess*>>{
               {"edge", edge_},
               {"exec", stack_ != nullptr ? stack_->exec() : nullptr},
               {"policy", stack_ != nullptr ? stack_->policy() : nullptr},
               {"audit", stack_ != nullptr ? stack_->audit() : nullptr}}) {
        if (p == nullptr) {
          continue;
        }
        for (const std::string& l : p->Lines()) {
          std::cerr << name << ": " << l << "\n";
        }
      }
    }
    delete edge_;
    edge_ = nullptr;
    delete stack_;
    stack_ = nullptr;
  }

  static std::string Dana() { return stack_->Token("dana", {"developers"}); }
  static std::string Ann() { return stack_->Token("ann", {"podgate-auditors"}); }

  static http::ClientOptions Options() {
    http::ClientOptions o;
    o.port = static_cast<uint16_t>(http_port_);
    o.timeout = absl::Seconds(20);
    return o;
  }

  static http::ClientResponse Get(const std::string& target, const std::string& token,
                                  const std::optional<std::string>& traceparent = std::nullopt) {
    http::ClientOptions o = Options();
    o.headers.push_back({"Authorization", "Bearer " + token});
    if (traceparent.has_value()) {
      o.headers.push_back({"traceparent", *traceparent});
    }
    auto r = http::Fetch(o, "GET", target);
    EXPECT_TRUE(r.ok()) << target << ": " << r.status();
    return r.ok() ? *std::move(r) : http::ClientResponse{};
  }

  // Opens a v1 session (with `traceparent` as a header when given), runs `echo traced`, reads
  // its output and exit, and closes.
  static TracedSession RunSession(const std::optional<std::string>& traceparent) {
    TracedSession out;
    http::ClientOptions o = Options();
    o.headers.push_back({"Origin", kOrigin});
    if (traceparent.has_value()) {
      o.headers.push_back({"traceparent", *traceparent});
    }
    auto ws = http::WebSocketClient::Connect(
        o, "/ws/v1/demo/web-1?container=app",
        {"podgate.v1", "base64url.bearer.podgate.v1." + auth::Base64UrlEncode(Dana())});
    EXPECT_TRUE(ws.ok()) << ws.status();
    if (!ws.ok()) {
      return out;
    }
    std::optional<std::string> response = HeaderOf((*ws)->upgrade_headers(), "traceresponse");
    EXPECT_TRUE(response.has_value()) << "no traceresponse on the 101";
    if (response.has_value()) {
      absl::StatusOr<runtime::TraceContext> edge_span = runtime::ParseTraceparent(*response);
      EXPECT_TRUE(edge_span.ok()) << *response;
      if (edge_span.ok()) {
        out.trace_id = edge_span->trace_id;
        out.edge_span_id = edge_span->span_id;
      }
    }
    auto ready = (*ws)->Read(absl::Seconds(20));
    EXPECT_TRUE(ready.ok()) << ready.status();
    if (!ready.ok()) {
      return out;
    }
    nlohmann::json r = nlohmann::json::parse(ready->data);
    EXPECT_EQ(r["type"], "ready") << ready->data;
    out.ready_trace_id = r.value("trace_id", "");
    out.session_id = r.value("session_id", "");
    EXPECT_TRUE((*ws)->Write(R"({"type":"command","id":"t1","line":"echo traced"})", false).ok());
    bool exited = false;
    for (int i = 0; i < 10 && !exited; ++i) {
      auto m = (*ws)->Read(absl::Seconds(10));
      EXPECT_TRUE(m.ok()) << m.status();
      if (!m.ok()) {
        break;
      }
      if (m->binary) {
        EXPECT_EQ(m->data, std::string("\x01", 1) + "traced\n");
      } else {
        nlohmann::json e = nlohmann::json::parse(m->data);
        EXPECT_EQ(e["type"], "exit") << m->data;
        EXPECT_EQ(e["code"], 0) << m->data;
        exited = true;
      }
    }
    EXPECT_TRUE(exited);
    (*ws)->Write(R"({"type":"close"})", false).IgnoreError();
    for (int i = 0; i < 20; ++i) {  // until edge closes (the session's close is recorded)
      if (!(*ws)->Read(absl::Seconds(2)).ok()) {
        break;
      }
    }
    return out;
  }

  // The audit records of `query` through edge's API.
  static nlohmann::json Records(const std::string& query) {
    http::ClientResponse r = Get("/api/v1/audit?" + query, Ann());
    EXPECT_EQ(r.status, 200) << r.body;
    return r.status == 200 ? nlohmann::json::parse(r.body).value("records", nlohmann::json::array())
                           : nlohmann::json::array();
  }

  // A JSON log line of `p` that carries trace_id `trace_id` (and message `msg` when given),
  // waiting up to 10 s for it to be written.
  static std::optional<nlohmann::json> LogLineWithTrace(Subprocess* p, const std::string& trace_id,
                                                        const std::string& msg = "") {
    const std::string needle = absl::StrCat("\"trace_id\":\"", trace_id, "\"");
    const absl::Time deadline = absl::Now() + absl::Seconds(10);
    do {
      for (const std::string& l : p->Lines()) {
        if (absl::StrContains(l, needle)) {
          nlohmann::json j = nlohmann::json::parse(l, nullptr, /*allow_exceptions=*/false);
          if (!j.is_discarded() && j.value("trace_id", "") == trace_id &&
              (msg.empty() || j.value("msg", "") == msg)) {
            return j;
          }
        }
      }
      absl::SleepFor(absl::Milliseconds(50));
    } while (absl::Now() < deadline);
    return std::nullopt;
  }

  // The trace id is on the session's log lines in every service and on every audit record of
  // the session (its command's request, decision and result included), and the trace_id
  // filter finds exactly those records.
  static void ExpectEverywhere(const TracedSession& s) {
    ASSERT_TRUE(runtime::IsTraceId(s.trace_id)) << s.trace_id;
    EXPECT_EQ(s.ready_trace_id, s.trace_id);
    ASSERT_FALSE(s.session_id.empty());

    // edge: the session's lines; exec: the session's and the command's (with the command's own
    // span); policy: the decision; audit: each received event.
    std::optional<nlohmann::json> edge_line = LogLineWithTrace(edge_, s.trace_id, "session open");
    ASSERT_TRUE(edge_line.has_value()) << "edge logged nothing with trace " << s.trace_id;
    std::optional<nlohmann::json> exec_line =
        LogLineWithTrace(stack_->exec(), s.trace_id, "session open");
    ASSERT_TRUE(exec_line.has_value()) << "exec logged nothing with trace " << s.trace_id;
    EXPECT_EQ(exec_line->value("session_id", ""), s.session_id);
    // Services write their log lines from a thread of their own (lib/runtime/log_writer.h): a
    // line may reach stderr just after the client saw what it reports.
    std::optional<nlohmann::json> command_end =
        LogLineWithTrace(stack_->exec(), s.trace_id, "command end");
    ASSERT_TRUE(command_end.has_value()) << "exec's command end line";
    EXPECT_EQ(command_end->value("session_id", ""), s.session_id);
    EXPECT_EQ(command_end->value("span_id", "").size(), 16u);
    EXPECT_NE(command_end->value("span_id", ""), s.edge_span_id);
    std::optional<nlohmann::json> policy_line =
        LogLineWithTrace(stack_->policy(), s.trace_id, "decision");
    ASSERT_TRUE(policy_line.has_value()) << "policy logged no decision with trace " << s.trace_id;
    EXPECT_EQ(policy_line->value("program", ""), "echo");
    EXPECT_NE(policy_line->value("span_id", ""), s.edge_span_id);  // a span of its own
    std::optional<nlohmann::json> audit_line =
        LogLineWithTrace(stack_->audit(), s.trace_id, "event received");
    ASSERT_TRUE(audit_line.has_value()) << "audit logged nothing with trace " << s.trace_id;
    EXPECT_EQ(audit_line->value("session_id", ""), s.session_id);

    // Every record of the session (open, the command's request/decision/result, close) carries
    // the trace id; wait for the close, recorded after the WebSocket ends.
    nlohmann::json by_session;
    for (int i = 0; i < 50; ++i) {
      by_session = Records("session_id=" + s.session_id + "&kind=session_close");
      if (!by_session.empty()) {
        break;
      }
      absl::SleepFor(absl::Milliseconds(100));
    }
    ASSERT_FALSE(by_session.empty()) << "the session's close was not recorded";
    by_session = Records("session_id=" + s.session_id);
    std::set<std::string> kinds;
    std::set<std::string> ids;
    for (const nlohmann::json& r : by_session) {
      const nlohmann::json& e = r["event"];
      EXPECT_EQ(e.value("trace_id", ""), s.trace_id) << r.dump();
      kinds.insert(e.value("kind", ""));
      ids.insert(e.value("id", ""));
    }
    for (const char* kind :
         {"EVENT_KIND_SESSION_OPEN", "EVENT_KIND_COMMAND_REQUEST", "EVENT_KIND_DECISION",
          "EVENT_KIND_COMMAND_RESULT", "EVENT_KIND_SESSION_CLOSE"}) {
      EXPECT_TRUE(kinds.count(kind)) << kind << " missing from " << by_session.dump();
    }
    // The trace_id filter finds the same records, and only them.
    nlohmann::json by_trace = Records("trace_id=" + s.trace_id);
    std::set<std::string> trace_ids;
    for (const nlohmann::json& r : by_trace) {
      trace_ids.insert(r["event"].value("id", ""));
    }
    EXPECT_EQ(trace_ids, ids);
  }

  static testing::Stack* stack_;
  static Subprocess* edge_;
  static int http_port_;
};

testing::Stack* EdgeTraceTest::stack_ = nullptr;
Subprocess* EdgeTraceTest::edge_ = nullptr;
int EdgeTraceTest::http_port_ = 0;

constexpr char kClientTraceId[] = "0af7651916cd43dd8448eb211c80319c";
constexpr char kClientParent[] = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

TEST_F(EdgeTraceTest, AClientsTraceparentReachesEveryServiceAndEveryRecord) {
  TracedSession s = RunSession(kClientParent);
  EXPECT_EQ(s.trace_id, kClientTraceId);
  EXPECT_NE(s.edge_span_id, "b7ad6b7169203331");  // edge's own span, child of the client's
  ExpectEverywhere(s);
}

TEST_F(EdgeTraceTest, ASessionWithoutTraceparentGetsAGeneratedOneEverywhere) {
  TracedSession s = RunSession(std::nullopt);
  EXPECT_NE(s.trace_id, kClientTraceId);
  ExpectEverywhere(s);
  // Another session, another trace.
  TracedSession other = RunSession(std::nullopt);
  EXPECT_NE(other.trace_id, s.trace_id);
}

TEST_F(EdgeTraceTest, AMalformedTraceparentIsReplacedNotRefused) {
  for (const std::string& bad :
       {std::string("00-00000000000000000000000000000000-b7ad6b7169203331-01"),
        std::string("00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01"),
        std::string("ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
        std::string(300, 'a')}) {
    TracedSession s = RunSession(bad);
    EXPECT_TRUE(runtime::IsTraceId(s.trace_id)) << bad;
    EXPECT_NE(s.trace_id, kClientTraceId) << bad;
    if (bad.size() == 55) {
      ExpectEverywhere(s);
    }
  }
}

TEST_F(EdgeTraceTest, HttpApiAnswersCarryTraceresponse) {
  http::ClientResponse traced = Get("/api/v1/session", Dana(), kClientParent);
  EXPECT_EQ(traced.status, 200) << traced.body;
  std::optional<std::string> response = HeaderOf(traced.headers, "traceresponse");
  ASSERT_TRUE(response.has_value());
  EXPECT_THAT(*response, ::testing::StartsWith(absl::StrCat("00-", kClientTraceId, "-")));
  EXPECT_NE(*response, kClientParent);

  // A deferred answer (a backend call) too; a malformed traceparent is replaced.
  http::ClientResponse replaced =
      Get("/api/v1/allowed?namespace=demo&pod=web-1&container=app", Dana(), "00-zz-not-a-trace");
  EXPECT_EQ(replaced.status, 200) << replaced.body;
  response = HeaderOf(replaced.headers, "traceresponse");
  ASSERT_TRUE(response.has_value());
  absl::StatusOr<runtime::TraceContext> parsed = runtime::ParseTraceparent(*response);
  ASSERT_TRUE(parsed.ok()) << *response;
  // policy logged the ListAllowed call under that trace.
  std::optional<nlohmann::json> line =
      LogLineWithTrace(stack_->policy(), parsed->trace_id, "allowed commands listed");
  ASSERT_TRUE(line.has_value());
  EXPECT_EQ(line->value("pod", ""), "web-1");

  // The audit filter takes only well-formed trace ids.
  http::ClientResponse bad = Get("/api/v1/audit?trace_id=0AF7651916CD43DD8448EB211C80319C", Ann());
  EXPECT_EQ(bad.status, 400) << bad.body;
  EXPECT_THAT(bad.body, HasSubstr("trace_id must be 32 lowercase hex digits"));
  EXPECT_TRUE(HeaderOf(bad.headers, "traceresponse").has_value());
}

}  // namespace
}  // namespace podgate
