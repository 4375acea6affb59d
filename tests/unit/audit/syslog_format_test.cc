// The syslog sink's RFC 5424 messages, parsed back with the tests' own strict parser
// (tests/support/rsyslog.h), and MakeSyslogSink's checks of every setting.
#include "audit/export/syslog_format.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "audit/export/sink.h"
#include "nlohmann/json.hpp"
#include "support/rsyslog.h"
#include "support/test_pki.h"

namespace podgate::audit::exporting {
namespace {

using ::podgate::testing::ParseRfc5424;
using ::podgate::testing::SyslogMessage;
using ::testing::HasSubstr;

ExportItem Record() {
  ExportItem item;
  auto& r = item.record;
  r.set_chain_id("chain-a");
  r.set_sequence(42);
  r.mutable_stored_time()->set_seconds(1764559277);  // 2025-12-01T03:21:17Z
  r.mutable_stored_time()->set_nanos(123456789);
  auto* e = r.mutable_event();
  e->set_id("ev-1");
  e->set_kind(podgate::common::v1::EVENT_KIND_COMMAND_RESULT);
  e->set_session_id("sess-1");
  e->set_command_id("cmd-1");
  e->mutable_principal()->set_user("alice@example.com");
  e->mutable_target()->set_cluster("prod");
  e->mutable_target()->set_namespace_("shop");
  e->mutable_target()->set_pod("web-0");
  e->mutable_target()->set_container("app");
  e->mutable_decision()->set_verdict(podgate::common::v1::VERDICT_ALLOW);
  e->mutable_decision()->set_rule("ops-read");
  e->mutable_command_request()->set_line("echo \"a]b\\c\"\nline2 ü");
  return item;
}

SyslogFormatOptions Options() {
  SyslogFormatOptions o;
  o.facility = 13;
  o.app_name = "podgate-audit";
  o.hostname = "audit-0";
  o.pid = 4711;
  return o;
}

SyslogMessage Parse(const std::string& raw) {
  absl::StatusOr<SyslogMessage> m = ParseRfc5424(raw);
  EXPECT_TRUE(m.ok()) << m.status() << "\n" << raw;
  return m.ok() ? *m : SyslogMessage{};
}

TEST(SyslogFormatTest, EveryHeaderFieldAndIdParsesBack) {
  ExportItem item = Record();
  SyslogMessage m = Parse(FormatSyslogMessage(item, Options()));
  EXPECT_EQ(m.pri, 13 * 8 + 5);  // log audit, notice
  EXPECT_EQ(m.version, 1);
  EXPECT_EQ(m.timestamp, "2025-12-01T03:21:17.123456Z");
  EXPECT_EQ(m.hostname, "audit-0");
  EXPECT_EQ(m.app_name, "podgate-audit");
  EXPECT_EQ(m.procid, "4711");
  EXPECT_EQ(m.msgid, "command_result");
  ASSERT_EQ(m.structured_data.size(), 1u);
  EXPECT_EQ(m.structured_data[0].id, "podgate@32473");
  const std::string sd(kSyslogSdId);
  EXPECT_EQ(m.Param(sd, "chainId"), "chain-a");
  EXPECT_EQ(m.Param(sd, "sequence"), "42");
  EXPECT_EQ(m.Param(sd, "eventId"), "ev-1");
  EXPECT_EQ(m.Param(sd, "kind"), "command_result");
  EXPECT_EQ(m.Param(sd, "sessionId"), "sess-1");
  EXPECT_EQ(m.Param(sd, "commandId"), "cmd-1");
  EXPECT_EQ(m.Param(sd, "user"), "alice@example.com");
  EXPECT_EQ(m.Param(sd, "cluster"), "prod");
  EXPECT_EQ(m.Param(sd, "namespace"), "shop");
  EXPECT_EQ(m.Param(sd, "pod"), "web-0");
  EXPECT_EQ(m.Param(sd, "container"), "app");
  EXPECT_EQ(m.Param(sd, "verdict"), "allow");
  EXPECT_EQ(m.Param(sd, "rule"), "ops-read");
  EXPECT_FALSE(m.HasParam(sd, "truncated"));
  EXPECT_TRUE(m.bom);
  EXPECT_EQ(m.msg, ItemJson(item));
  nlohmann::json body = nlohmann::json::parse(m.msg);
  EXPECT_EQ(body["type"], "record");
  EXPECT_EQ(body["event"]["commandRequest"]["line"], "echo \"a]b\\c\"\nline2 ü");
}

TEST(SyslogFormatTest, SeverityFollowsTheVerdictAndFacilityIsConfigured) {
  ExportItem item = Record();
  item.record.mutable_event()->mutable_decision()->set_verdict(podgate::common::v1::VERDICT_DENY);
  SyslogFormatOptions o = Options();
  o.facility = 23;
  SyslogMessage m = Parse(FormatSyslogMessage(item, o));
  EXPECT_EQ(m.pri, 23 * 8 + 4);  // local7, warning
  EXPECT_EQ(m.Param(kSyslogSdId, "verdict"), "deny");

  item.record.mutable_event()->clear_decision();
  m = Parse(FormatSyslogMessage(item, o));
  EXPECT_EQ(m.pri, 23 * 8 + 5);
  EXPECT_FALSE(m.HasParam(kSyslogSdId, "verdict"));
  EXPECT_FALSE(m.HasParam(kSyslogSdId, "rule"));
}

TEST(SyslogFormatTest, CheckpointIsInformationalWithItsIds) {
  ExportItem item;
  item.kind = ExportItem::Kind::kCheckpoint;
  item.checkpoint.set_chain_id("chain-b");
  item.checkpoint.set_sequence(9);
  item.checkpoint.set_key_id("k1");
  item.checkpoint.mutable_time()->set_seconds(0);
  SyslogMessage m = Parse(FormatSyslogMessage(item, Options()));
  EXPECT_EQ(m.pri, 13 * 8 + 6);
  EXPECT_EQ(m.msgid, "checkpoint");
  EXPECT_EQ(m.timestamp, "1970-01-01T00:00:00.000000Z");
  EXPECT_EQ(m.Param(kSyslogSdId, "chainId"), "chain-b");
  EXPECT_EQ(m.Param(kSyslogSdId, "sequence"), "9");
  EXPECT_EQ(m.Param(kSyslogSdId, "keyId"), "k1");
  EXPECT_EQ(nlohmann::json::parse(m.msg)["type"], "checkpoint");
}

TEST(SyslogFormatTest, EmptyFieldsAreNilOrLeftOut) {
  ExportItem item;
  item.record.set_chain_id("c");
  SyslogFormatOptions o = Options();
  o.hostname = "";
  o.pid = 0;
  SyslogMessage m = Parse(FormatSyslogMessage(item, o));
  EXPECT_EQ(m.timestamp, "-");
  EXPECT_EQ(m.hostname, "-");
  EXPECT_EQ(m.procid, "-");
  EXPECT_EQ(m.msgid, "unspecified");
  EXPECT_FALSE(m.HasParam(kSyslogSdId, "user"));
  EXPECT_EQ(m.Param(kSyslogSdId, "sequence"), "0");
}

TEST(SyslogFormatTest, HeaderFieldsAreSanitized) {
  SyslogFormatOptions o = Options();
  o.hostname = "host with space\n" + std::string(300, 'h');
  SyslogMessage m = Parse(FormatSyslogMessage(Record(), o));
  EXPECT_EQ(m.hostname.size(), 255u);
  EXPECT_EQ(m.hostname.substr(0, 17), "host_with_space_h");
  EXPECT_EQ(HeaderField("", 10), "-");
  EXPECT_EQ(HeaderField("äb", 10), "__b");
}

TEST(SyslogFormatTest, SdValuesAreEscapedAndParseBackExactly) {
  EXPECT_EQ(EscapeSdParamValue(R"(a"b\c]d)"), R"(a\"b\\c\]d)");
  EXPECT_EQ(EscapeSdParamValue("plain [x] ü\n"), "plain [x\\] ü\n");
  ExportItem item = Record();
  const std::string nasty = "ev\"il]\\ user\n[x=\"y\"] ü";
  item.record.mutable_event()->mutable_principal()->set_user(nasty);
  item.record.mutable_event()->mutable_target()->set_pod("p]");
  SyslogMessage m = Parse(FormatSyslogMessage(item, Options()));
  EXPECT_EQ(m.Param(kSyslogSdId, "user"), nasty);
  EXPECT_EQ(m.Param(kSyslogSdId, "pod"), "p]");
  EXPECT_EQ(m.Param(kSyslogSdId, "chainId"), "chain-a");
  EXPECT_EQ(m.structured_data.size(), 1u);
}

TEST(SyslogFormatTest, SdNameRules) {
  EXPECT_TRUE(IsSdName("chainId"));
  EXPECT_TRUE(IsSdName("podgate@32473"));
  EXPECT_TRUE(IsSdName(std::string(32, 'a')));
  EXPECT_FALSE(IsSdName(std::string(33, 'a')));
  EXPECT_FALSE(IsSdName(""));
  EXPECT_FALSE(IsSdName("a=b"));
  EXPECT_FALSE(IsSdName("a b"));
  EXPECT_FALSE(IsSdName("a]"));
  EXPECT_FALSE(IsSdName("a\""));
  EXPECT_FALSE(IsSdName("ä"));
  // Every parameter name the formatter writes is one.
  SyslogMessage m = Parse(FormatSyslogMessage(Record(), Options()));
  for (const auto& [name, value] : m.structured_data[0].params) {
    EXPECT_TRUE(IsSdName(name)) << name;
  }
  EXPECT_TRUE(IsSdName(kSyslogSdId));
}

TEST(SyslogFormatTest, LongSdValuesAreCutAtCharacterBoundariesAndNamed) {
  ExportItem item = Record();
  // 'ü' is two bytes: 511 'a' + 'ü' straddles the 512-byte limit.
  item.record.mutable_event()->mutable_principal()->set_user(std::string(511, 'a') + "üzz");
  SyslogMessage m = Parse(FormatSyslogMessage(item, Options()));
  EXPECT_EQ(m.Param(kSyslogSdId, "user"), std::string(511, 'a'));
  EXPECT_EQ(m.Param(kSyslogSdId, "cut"), "user");
  EXPECT_EQ(CutUtf8("aü", 2), "a");
  EXPECT_EQ(CutUtf8("aü", 3), "aü");
  EXPECT_EQ(CutUtf8("abc", 5), "abc");
}

TEST(SyslogFormatTest, OversizedJsonIsReplacedNotCut) {
  ExportItem item = Record();
  item.record.mutable_event()->mutable_command_request()->set_line(std::string(100000, 'x'));
  const size_t json_bytes = ItemJson(item).size();
  SyslogFormatOptions o = Options();
  bool replaced = false;
  const std::string raw = FormatSyslogMessage(item, o, &replaced);
  EXPECT_TRUE(replaced);
  EXPECT_LE(raw.size(), o.max_message_bytes);
  SyslogMessage m = Parse(raw);
  EXPECT_EQ(m.Param(kSyslogSdId, "truncated"), "json");
  EXPECT_EQ(m.Param(kSyslogSdId, "jsonBytes"), absl::StrCat(json_bytes));
  EXPECT_EQ(m.Param(kSyslogSdId, "chainId"), "chain-a");
  EXPECT_EQ(m.Param(kSyslogSdId, "eventId"), "ev-1");
  nlohmann::json body = nlohmann::json::parse(m.msg);  // still a whole JSON document
  EXPECT_EQ(body["truncated"], true);
  EXPECT_EQ(body["type"], "record");
  EXPECT_EQ(body["jsonBytes"], json_bytes);
  EXPECT_EQ(body["chainId"], "chain-a");
  EXPECT_EQ(body["sequence"], "42");
  EXPECT_EQ(body["eventId"], "ev-1");

  // Just below the limit the whole JSON goes.
  o.max_message_bytes = FormatSyslogMessage(Record(), o).size();
  m = Parse(FormatSyslogMessage(Record(), o, &replaced));
  EXPECT_FALSE(replaced);
  EXPECT_FALSE(m.HasParam(kSyslogSdId, "truncated"));
  o.max_message_bytes -= 1;
  m = Parse(FormatSyslogMessage(Record(), o));
  EXPECT_EQ(m.Param(kSyslogSdId, "truncated"), "json");
}

TEST(SyslogParserTest, RejectsMalformedMessages) {
  EXPECT_FALSE(ParseRfc5424("no pri").ok());
  EXPECT_FALSE(ParseRfc5424("<192>1 - - - - - -").ok());
  EXPECT_FALSE(ParseRfc5424("<13>1 yesterday h a p m -").ok());
  EXPECT_FALSE(ParseRfc5424("<13>1 - h a p m [x a=\"b]\"]").ok());
  EXPECT_FALSE(ParseRfc5424("<13>1 - h a p m [x a=\"b\"").ok());
  EXPECT_FALSE(ParseRfc5424("<13>1 - h a p m x").ok());
  EXPECT_TRUE(ParseRfc5424("<13>1 - h a p m -").ok());
  EXPECT_TRUE(ParseRfc5424("<13>1 2026-01-01T00:00:00+01:00 h a p m [x a=\"\\]\"][y] msg").ok());
}

// MakeSyslogSink: each bad setting is a start-up error naming the sink and the problem.
class SyslogSinkConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("syslog-config");
    absl::StatusOr<podgate::testing::TestPki> pki = podgate::testing::MakeTestPki(dir_);
    ASSERT_TRUE(pki.ok()) << pki.status();
    pki_ = *pki;
  }

  podgate::audit::v1::SinkConfig Config() const {
    podgate::audit::v1::SinkConfig c;
    c.set_name("siem");
    c.mutable_syslog()->set_address("127.0.0.1:6514");
    c.mutable_syslog()->set_transport("tcp");
    return c;
  }

  std::string Error(const podgate::audit::v1::SinkConfig& c) {
    absl::StatusOr<std::unique_ptr<Sink>> sink = MakeSyslogSink(c);
    if (sink.ok()) {
      return "OK";
    }
    EXPECT_EQ(sink.status().code(), absl::StatusCode::kInvalidArgument);
    return std::string(sink.status().message());
  }

  std::string dir_;
  podgate::testing::TestPki pki_;
};

TEST_F(SyslogSinkConfigTest, ValidSettingsWithoutAReceiverAreAccepted) {
  // Nothing listens on the port: not an error at start.
  EXPECT_EQ(Error(Config()), "OK");
  auto c = Config();
  c.mutable_syslog()->set_address("localhost:1");
  c.mutable_syslog()->set_transport("tls");
  c.mutable_syslog()->mutable_tls()->set_ca_file(pki_.ca_cert);
  c.mutable_syslog()->mutable_tls()->set_cert_file(pki_.client_cert);
  c.mutable_syslog()->mutable_tls()->set_key_file(pki_.client_key);
  c.mutable_syslog()->set_facility(23);
  c.mutable_syslog()->set_app_name("audit");
  c.mutable_syslog()->set_timeout("2s");
  EXPECT_EQ(Error(c), "OK");
  c.mutable_syslog()->set_address("[::1]:6514");
  EXPECT_EQ(Error(c), "OK");
}

TEST_F(SyslogSinkConfigTest, Address) {
  for (const auto& [address, problem] : std::vector<std::pair<std::string, std::string>>{
           {"", "sink siem: syslog address: missing (host:port)"},
           {"localhost", "has no port"},
           {":514", "has no host"},
           {"h:0", "is not 1 to 65535"},
           {"h:65536", "is not 1 to 65535"},
           {"h:+5", "is not 1 to 65535"},
           {"h:514x", "is not 1 to 65535"},
           {"::1:514", "an IPv6 address goes in brackets"},
           {"[::1]", "is not [ipv6]:port"},
           {"no-such-host.invalid:514", "cannot resolve \"no-such-host.invalid\""}}) {
    auto c = Config();
    c.mutable_syslog()->set_address(address);
    std::string error = Error(c);
    EXPECT_THAT(error, HasSubstr(problem)) << address;
    EXPECT_THAT(error, HasSubstr("sink siem: syslog address: ")) << address;
  }
}

TEST_F(SyslogSinkConfigTest, TransportFacilityAppNameTimeout) {
  auto c = Config();
  c.mutable_syslog()->set_transport("udp");
  EXPECT_EQ(Error(c), "sink siem: syslog transport: \"udp\" is not \"tcp\" or \"tls\"");
  c = Config();
  c.mutable_syslog()->set_transport("");
  EXPECT_THAT(Error(c), HasSubstr("syslog transport"));
  c = Config();
  c.mutable_syslog()->set_facility(24);
  EXPECT_EQ(Error(c), "sink siem: syslog facility: 24 is not 0 to 23");
  c.mutable_syslog()->set_facility(-1);
  EXPECT_EQ(Error(c), "sink siem: syslog facility: -1 is not 0 to 23");
  c = Config();
  c.mutable_syslog()->set_app_name("my app");
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog app_name: \"my app\" has a character"));
  c.mutable_syslog()->set_app_name(std::string(49, 'a'));
  EXPECT_EQ(Error(c), "sink siem: syslog app_name: longer than 48 characters");
  c = Config();
  c.mutable_syslog()->set_timeout("soon");
  EXPECT_EQ(Error(c), "sink siem: syslog timeout: \"soon\" is not a duration");
  c.mutable_syslog()->set_timeout("10ms");
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog timeout: 10ms is not between"));
  c.mutable_syslog()->set_timeout("1h");
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog timeout: 1h is not between"));
}

TEST_F(SyslogSinkConfigTest, TlsSettings) {
  auto c = Config();
  c.mutable_syslog()->mutable_tls()->set_ca_file(pki_.ca_cert);
  EXPECT_EQ(Error(c),
            "sink siem: syslog tls: settings given but transport is \"tcp\" (use \"tls\")");
  c.mutable_syslog()->set_transport("tls");
  EXPECT_EQ(Error(c), "OK");
  c.mutable_syslog()->mutable_tls()->set_cert_file(pki_.client_cert);
  EXPECT_EQ(Error(c), "sink siem: syslog tls: cert_file given without key_file");
  c.mutable_syslog()->mutable_tls()->clear_cert_file();
  c.mutable_syslog()->mutable_tls()->set_key_file(pki_.client_key);
  EXPECT_EQ(Error(c), "sink siem: syslog tls: key_file given without cert_file");

  c = Config();
  c.mutable_syslog()->set_transport("tls");
  c.mutable_syslog()->mutable_tls()->set_ca_file(dir_ + "/missing.pem");
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog tls ca_file: cannot read \"" + dir_ +
                                  "/missing.pem\": No such file"));

  const std::string garbage = dir_ + "/garbage.pem";
  std::ofstream(garbage) << "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
  c.mutable_syslog()->mutable_tls()->set_ca_file(garbage);
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog tls: TLS client setup failed"));

  c.mutable_syslog()->mutable_tls()->set_ca_file(pki_.ca_cert);
  c.mutable_syslog()->mutable_tls()->set_cert_file(garbage);
  c.mutable_syslog()->mutable_tls()->set_key_file(pki_.client_key);
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog tls: TLS client setup failed"));

  // A key that does not match the certificate.
  c.mutable_syslog()->mutable_tls()->set_cert_file(pki_.client_cert);
  c.mutable_syslog()->mutable_tls()->set_key_file(pki_.other_key);
  EXPECT_THAT(Error(c), HasSubstr("sink siem: syslog tls: TLS client setup failed"));
}

TEST_F(SyslogSinkConfigTest, NotASyslogSink) {
  podgate::audit::v1::SinkConfig c;
  c.set_name("siem");
  EXPECT_EQ(Error(c), "sink siem: not a syslog sink");
}

}  // namespace
}  // namespace podgate::audit::exporting
