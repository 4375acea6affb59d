// edge's HTTP front in pieces: the route table's dispatch (which handler answers which method
// and path), and edge's own table served through the real HTTP server on a socket.
#include "edge/router.h"

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "absl/strings/match.h"
#include "edge/edge_context.h"
#include "edge/edge_metrics.h"
#include "edge/edge_server.h"
#include "edge/http_reply.h"
#include "edge/session_registry.h"
#include "edge/static_files.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "http/client.h"
#include "http/server.h"
#include "nlohmann/json.hpp"
#include "prometheus/registry.h"
#include "runtime/trace.h"
#include "support/test_pki.h"

namespace podgate::edge {
namespace {

namespace bhttp = boost::beast::http;
using ::testing::HasSubstr;

// Each handler answers with its name (and what it was given) in an X-Handler header.
RouteHandler Named(const std::string& name) {
  return [name](const RouteRequest& r) {
    http::Response res = http::MakeResponse(r.request, bhttp::status::ok, "text/plain", name);
    res.set("X-Handler", name);
    res.set("X-Path", std::string(r.path));
    res.set("X-Query", std::string(r.query));
    return Answer(std::move(res));
  };
}

// An accepted WebSocket that does nothing (the route table only hands it over).
class NoopSocket : public http::WebSocketHandler {
 public:
  void OnOpen(std::shared_ptr<http::WebSocketConnection>) override {}
  void OnMessage(std::string_view, bool) override {}
  void OnClose(std::string) override {}
};

class RouteTableTest : public ::testing::Test {
 protected:
  RouteTableTest() {
    table_.Add("/get", RouteTable::Methods::kGet, Named("get"));
    table_.Add("/post", RouteTable::Methods::kPost, Named("post"));
    table_.Add("/api/any", RouteTable::Methods::kAny, Named("any"));
    table_.Add("/api/get", RouteTable::Methods::kGet, Named("api-get"));
    table_.SetWebSocket(Named("websocket"));
    table_.SetStatic(Named("static"));
  }

  // The status and the handler that answered ("" for the table's own answers).
  std::pair<int, std::string> Dispatch(bhttp::verb verb, const std::string& target,
                                       bool upgrade = false) {
    http::Request request(verb, target, 11);
    last_ = table_.Route(request, peer_, upgrade);
    if (!last_.response.has_value()) {
      return {0, ""};
    }
    auto it = last_.response->find("X-Handler");
    return {static_cast<int>(last_.response->result_int()),
            it == last_.response->end() ? "" : std::string(it->value())};
  }
  std::string LastHeader(const std::string& name) {
    auto it = last_.response->find(name);
    return it == last_.response->end() ? "" : std::string(it->value());
  }
  std::string LastErrorMessage() {
    return nlohmann::json::parse(last_.response->body())["error"]["message"];
  }

  RouteTable table_;
  http::RequestContext peer_{"127.0.0.1:1234", false, "", {}, "", ""};
  http::RouteResult last_;
};

// Every request gets a trace before its handler runs: the client's traceparent continued (same
// trace id, edge's own span), or a new trace when there is none or it does not parse. The
// handler finds it in the peer context; the answer carries it as traceresponse, deferred
// answers and upgrades included.
TEST_F(RouteTableTest, EveryRequestGetsATraceTheAnswerNames) {
  std::string seen;
  table_.Add("/traced", RouteTable::Methods::kGet, [&seen](const RouteRequest& r) {
    seen = r.peer.traceparent;
    return Answer(http::MakeResponse(r.request, bhttp::status::ok, "text/plain", "ok"));
  });
  const std::string parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
  http::Request request(bhttp::verb::get, "/traced", 11);
  request.set("traceparent", parent);
  http::RouteResult r = table_.Route(request, peer_, false);
  ASSERT_TRUE(r.response.has_value());
  const std::string answered(r.response->at("traceresponse"));
  EXPECT_EQ(answered, seen);
  absl::StatusOr<runtime::TraceContext> edge_span = runtime::ParseTraceparent(answered);
  ASSERT_TRUE(edge_span.ok()) << answered;
  EXPECT_EQ(edge_span->trace_id, "0af7651916cd43dd8448eb211c80319c");
  EXPECT_NE(edge_span->span_id, "b7ad6b7169203331");
  EXPECT_EQ(edge_span->flags, 1);
  http::RequestContext traced = peer_;
  traced.traceparent = answered;
  EXPECT_EQ(TraceOf(traced), *edge_span);

  for (const char* bad : {"", "00-00000000000000000000000000000000-b7ad6b7169203331-01",
                          "00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01", "garbage"}) {
    http::Request other(bhttp::verb::get, "/traced", 11);
    if (*bad != '\0') {
      other.set("traceparent", bad);
    }
    http::RouteResult replaced = table_.Route(other, peer_, false);
    ASSERT_TRUE(replaced.response.has_value()) << bad;
    EXPECT_EQ(replaced.response->result_int(), 200) << bad;  // replaced, never refused
    absl::StatusOr<runtime::TraceContext> fresh =
        runtime::ParseTraceparent(std::string(replaced.response->at("traceresponse")));
    ASSERT_TRUE(fresh.ok()) << bad;
    EXPECT_NE(fresh->trace_id, "0af7651916cd43dd8448eb211c80319c");
    EXPECT_NE(fresh->trace_id, std::string(32, '0'));
  }

  // The table's own refusals and upgrades carry it too.
  Dispatch(bhttp::verb::get, "/api/nothing");
  EXPECT_EQ(last_.response->result_int(), 404);
  EXPECT_FALSE(LastHeader("traceresponse").empty());
  table_.SetWebSocket([](const RouteRequest&) {
    http::RouteResult accepted;
    accepted.websocket = std::make_shared<NoopSocket>();
    return accepted;
  });
  http::Request upgrade(bhttp::verb::get, "/ws/v1/a/b", 11);
  upgrade.set("traceparent", parent);
  http::RouteResult ws = table_.Route(upgrade, peer_, true);
  ASSERT_EQ(ws.upgrade_headers.size(), 1u);
  EXPECT_EQ(ws.upgrade_headers[0].first, "traceresponse");
  EXPECT_THAT(ws.upgrade_headers[0].second,
              ::testing::StartsWith("00-0af7651916cd43dd8448eb211c80319c-"));

  // A deferred answer gets the header when it is produced.
  table_.Add("/deferred", RouteTable::Methods::kGet, [](const RouteRequest& r) {
    http::RouteResult later;
    http::Request copy = r.request;
    later.deferred = [copy](std::function<void(http::Response)> reply) {
      reply(http::MakeResponse(copy, bhttp::status::ok, "text/plain", "later"));
    };
    return later;
  });
  http::Request deferred(bhttp::verb::get, "/deferred", 11);
  deferred.set("traceparent", parent);
  http::RouteResult d = table_.Route(deferred, peer_, false);
  ASSERT_TRUE(d.deferred);
  std::string header;
  d.deferred([&header](http::Response res) { header = std::string(res.at("traceresponse")); });
  EXPECT_THAT(header, ::testing::StartsWith("00-0af7651916cd43dd8448eb211c80319c-"));
}

TEST_F(RouteTableTest, ExactRoutesAnswerTheirMethodsOnly) {
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/get"), std::make_pair(200, std::string("get")));
  EXPECT_EQ(Dispatch(bhttp::verb::head, "/get"), std::make_pair(200, std::string("get")));
  EXPECT_EQ(Dispatch(bhttp::verb::post, "/post"), std::make_pair(200, std::string("post")));
  EXPECT_EQ(Dispatch(bhttp::verb::delete_, "/api/any"), std::make_pair(200, std::string("any")));
  EXPECT_EQ(Dispatch(bhttp::verb::post, "/api/any"), std::make_pair(200, std::string("any")));
  // A method the route does not take, outside /api/: 405 from the table, not the handler.
  EXPECT_EQ(Dispatch(bhttp::verb::post, "/get"), std::make_pair(405, std::string("")));
  // GET of a POST-only path outside /api/ is a static file request.
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/post"), std::make_pair(200, std::string("static")));
}

TEST_F(RouteTableTest, TheTargetIsSplitAtTheFirstQuestionMark) {
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/get?a=1?b=2").second, "get");
  EXPECT_EQ(LastHeader("X-Path"), "/get");
  EXPECT_EQ(LastHeader("X-Query"), "a=1?b=2");
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/get").second, "get");
  EXPECT_EQ(LastHeader("X-Query"), "");
}

TEST_F(RouteTableTest, UnknownApiPathsAndApiMethodsAre404NeverStatic) {
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/api/nope"), std::make_pair(404, std::string("")));
  EXPECT_EQ(LastErrorMessage(), "no such API");
  EXPECT_EQ(Dispatch(bhttp::verb::post, "/api/get"), std::make_pair(404, std::string("")));
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/api/"), std::make_pair(404, std::string("")));
  // No normalisation: a dotted path under /api/ is not the route it resolves to.
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/api/x/../get"), std::make_pair(404, std::string("")));
  // /api without the slash is not the API.
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/api").second, "static");
}

TEST_F(RouteTableTest, WebSocketPathsTakeUpgradesOnlyAndUpgradesGoNowhereElse) {
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/ws/v1/ns/pod", /*upgrade=*/true).second, "websocket");
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/ws/v1/ns/pod"), std::make_pair(426, std::string("")));
  EXPECT_EQ(LastErrorMessage(), "this path takes a WebSocket upgrade");
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/get", /*upgrade=*/true),
            std::make_pair(404, std::string("")));
  EXPECT_EQ(LastErrorMessage(), "no such WebSocket");
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/ws", /*upgrade=*/true),
            std::make_pair(404, std::string("")));
}

TEST_F(RouteTableTest, EverythingElseIsStaticForGetAnd405Otherwise) {
  EXPECT_EQ(Dispatch(bhttp::verb::get, "/").second, "static");
  EXPECT_EQ(Dispatch(bhttp::verb::head, "/assets/x.js").second, "static");
  EXPECT_EQ(Dispatch(bhttp::verb::put, "/index.html"), std::make_pair(405, std::string("")));
  EXPECT_EQ(LastErrorMessage(), "method not allowed");
  EXPECT_EQ(Dispatch(bhttp::verb::post, "/"), std::make_pair(405, std::string("")));
}

TEST_F(RouteTableTest, ATableWithoutStaticOrWebSocketHandlersAnswers404) {
  RouteTable bare;
  http::Request get(bhttp::verb::get, "/index.html", 11);
  EXPECT_EQ(bare.Route(get, peer_, false).response->result_int(), 404u);
  http::Request ws(bhttp::verb::get, "/ws/v1/a/b", 11);
  EXPECT_EQ(bare.Route(ws, peer_, true).response->result_int(), 404u);
}

// edge's own route table, through the real HTTP server on a socket: what a browser meets.
class EdgeRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    base_ = testing::MakeTempDir("edge-router");
    root_ = base_ + "/web";
    std::filesystem::create_directories(root_ + "/assets");
    std::ofstream(root_ + "/index.html") << "<!doctype html><title>podgate</title>";
    std::ofstream(root_ + "/assets/app-1234.js") << "console.log(1);";
    absl::StatusOr<StaticFiles> files = StaticFiles::Load(root_);
    ASSERT_TRUE(files.ok()) << files.status();
    context_.metrics = &metrics_;
    context_.sessions = &sessions_;
    router_ = std::make_shared<EdgeRouter>(&context_, *std::move(files));
    http::ServerOptions options;
    options.response_headers = SecurityHeaderList();
    auto server = http::Server::Start(
        io_, options,
        [router = router_](const http::Request& request, const http::RequestContext& peer,
                           bool upgrade) { return router->Route(request, peer, upgrade); });
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    thread_ = std::thread([this] { io_.run(); });
  }
  void TearDown() override {
    if (server_ != nullptr) {
      server_->Stop();
    }
    io_.stop();
    if (thread_.joinable()) {
      thread_.join();
    }
    std::error_code ignored;
    std::filesystem::remove_all(base_, ignored);
  }

  http::ClientResponse Fetch(const std::string& method, const std::string& target) {
    http::ClientOptions o;
    o.port = server_->port();
    o.timeout = absl::Seconds(5);
    absl::StatusOr<http::ClientResponse> res = http::Fetch(o, method, target);
    EXPECT_TRUE(res.ok()) << res.status();
    return res.ok() ? *res : http::ClientResponse{};
  }
  static std::string HeaderOf(const http::ClientResponse& res, const std::string& name) {
    for (const auto& [k, v] : res.headers) {
      if (absl::EqualsIgnoreCase(k, name)) {
        return v;
      }
    }
    return "";
  }

  std::string base_;
  std::string root_;
  prometheus::Registry registry_;
  EdgeMetrics metrics_{registry_};
  SessionRegistry sessions_;
  EdgeContext context_;
  std::shared_ptr<EdgeRouter> router_;
  boost::asio::io_context io_;
  std::unique_ptr<http::Server> server_;
  std::thread thread_;
};

TEST_F(EdgeRouterTest, ServesThePageHealthAndTheTablesOwnAnswers) {
  http::ClientResponse page = Fetch("GET", "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_EQ(page.content_type, "text/html; charset=utf-8");
  EXPECT_THAT(page.body, HasSubstr("<title>podgate</title>"));
  EXPECT_EQ(HeaderOf(page, "Cache-Control"), "no-cache");
  EXPECT_THAT(HeaderOf(page, "Content-Security-Policy"), HasSubstr("default-src 'self'"));

  http::ClientResponse asset = Fetch("GET", "/assets/app-1234.js");
  EXPECT_EQ(asset.status, 200);
  EXPECT_EQ(asset.content_type, "text/javascript; charset=utf-8");
  EXPECT_EQ(HeaderOf(asset, "Cache-Control"), "public, max-age=31536000, immutable");

  http::ClientResponse health = Fetch("GET", "/healthz");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "ok\n");
  EXPECT_EQ(HeaderOf(health, "X-Content-Type-Options"), "nosniff");

  EXPECT_EQ(Fetch("GET", "/api/v1/nope").status, 404);
  EXPECT_EQ(Fetch("DELETE", "/index.html").status, 405);
  EXPECT_EQ(Fetch("GET", "/ws/v1/default/web").status, 426);
  // Without a credential the session route answers 401 (and says how to get one).
  http::ClientResponse session = Fetch("GET", "/api/v1/session");
  EXPECT_EQ(session.status, 401);
  EXPECT_THAT(session.body, HasSubstr("podgate_token cookie"));
}

TEST_F(EdgeRouterTest, TraversalAndUnknownPathsFindNothingOutsideTheLoadedFiles) {
  // A file beside the web root that a traversal would reach.
  std::ofstream(base_ + "/edge-router-secret.txt") << "secret";
  for (const char* target :
       {"/../edge-router-secret.txt", "/assets/../../edge-router-secret.txt",
        "/%2e%2e/edge-router-secret.txt", "/..%2fedge-router-secret.txt", "//etc/passwd",
        "/etc/passwd", "/assets/", "/assets", "/index.html/", "/missing.js"}) {
    SCOPED_TRACE(target);
    http::ClientResponse res = Fetch("GET", target);
    EXPECT_EQ(res.status, 404);
    EXPECT_THAT(res.body, ::testing::Not(HasSubstr("secret")));
    EXPECT_THAT(res.body, ::testing::Not(HasSubstr("root:")));
    EXPECT_EQ(HeaderOf(res, "X-Frame-Options"), "DENY");
  }
  // A file added after start is not served: the set is fixed at load.
  std::ofstream(root_ + "/late.txt") << "late";
  EXPECT_EQ(Fetch("GET", "/late.txt").status, 404);
}

TEST_F(EdgeRouterTest, ReadinessAndHandshakesTurn503WhileDraining) {
  // No backend channel to wait for: ready at once.
  http::ClientResponse ready = Fetch("GET", "/readyz");
  EXPECT_EQ(ready.status, 200);
  EXPECT_EQ(nlohmann::json::parse(ready.body), nlohmann::json::object());

  http::ClientOptions o;
  o.port = server_->port();
  o.timeout = absl::Seconds(5);
  o.headers = {{"Origin", "https://evil.example"}};
  http::ClientResponse refusal;
  EXPECT_FALSE(
      http::WebSocketClient::Connect(o, "/ws/v1/default/web", {"podgate.v1"}, &refusal).ok());
  EXPECT_EQ(refusal.status, 403);  // no Origin is allowed here
  EXPECT_EQ(sessions_.size(), 0u);

  sessions_.BeginDrain();
  ready = Fetch("GET", "/readyz");
  EXPECT_EQ(ready.status, 503);
  EXPECT_EQ(nlohmann::json::parse(ready.body)["edge"], "shutting down");
  refusal = {};
  EXPECT_FALSE(
      http::WebSocketClient::Connect(o, "/ws/v1/default/web", {"podgate.v1"}, &refusal).ok());
  EXPECT_EQ(refusal.status, 503);
  EXPECT_THAT(refusal.body, HasSubstr("edge is shutting down"));
  // Liveness is not readiness: still 200.
  EXPECT_EQ(Fetch("GET", "/healthz").status, 200);
}

}  // namespace
}  // namespace podgate::edge
