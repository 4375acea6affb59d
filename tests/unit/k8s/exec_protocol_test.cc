#include "k8s/exec_protocol.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace podgate::k8s {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(Protocol, NamesRoundTrip) {
  for (ExecProtocol p : {ExecProtocol::kV1, ExecProtocol::kV4, ExecProtocol::kV5}) {
    EXPECT_EQ(ProtocolFromName(ProtocolName(p)), p);
  }
  EXPECT_EQ(ProtocolFromName("v3.channel.k8s.io"), std::nullopt);
  EXPECT_EQ(ProtocolFromName("base64.channel.k8s.io"), std::nullopt);
  EXPECT_EQ(ProtocolFromName(""), std::nullopt);
}

TEST(Protocol, SplitsHeader) {
  EXPECT_THAT(SplitProtocolHeader(" v5.channel.k8s.io,v4.channel.k8s.io ,, x "),
              ElementsAre("v5.channel.k8s.io", "v4.channel.k8s.io", "x"));
  EXPECT_TRUE(SplitProtocolHeader("").empty());
  EXPECT_TRUE(SplitProtocolHeader(" , ").empty());
}

TEST(Protocol, NegotiatesClientPreferenceAmongSupported) {
  std::vector<std::string> offer = SplitProtocolHeader(ClientProtocolOffer());
  EXPECT_EQ(NegotiateProtocol(offer, {ExecProtocol::kV1, ExecProtocol::kV4, ExecProtocol::kV5}),
            ExecProtocol::kV5);
  // An older cluster: only v4.
  EXPECT_EQ(NegotiateProtocol(offer, {ExecProtocol::kV4}), ExecProtocol::kV4);
  // Legacy only: the offer has nothing in common.
  EXPECT_EQ(NegotiateProtocol(offer, {ExecProtocol::kV1}), std::nullopt);
  EXPECT_EQ(NegotiateProtocol({"bogus", "channel.k8s.io"}, {ExecProtocol::kV1}), ExecProtocol::kV1);
  EXPECT_EQ(NegotiateProtocol({}, {ExecProtocol::kV5}), std::nullopt);
}

TEST(Frame, EncodesChannelThenPayload) {
  EXPECT_EQ(EncodeFrame(kStdout, "hi"), std::string("\x01hi", 3));
  EXPECT_EQ(EncodeFrame(kStdin, ""), std::string("\x00", 1));
  EXPECT_EQ(EncodeFrame(kClose, std::string("\x00", 1)), std::string("\xff\x00", 2));
}

TEST(Frame, DecodesEveryDataChannel) {
  for (uint8_t ch = 0; ch <= kResize; ++ch) {
    const std::string message = EncodeFrame(ch, "x");
    absl::StatusOr<Frame> f = DecodeFrame(message, ExecProtocol::kV4);
    ASSERT_TRUE(f.ok()) << f.status();
    EXPECT_EQ(f->channel, ch);
    EXPECT_EQ(f->payload, "x");
    // The payload is the message's own bytes, not a copy.
    EXPECT_EQ(f->payload.data(), message.data() + 1);
  }
  absl::StatusOr<Frame> empty_payload = DecodeFrame(std::string_view("\x01", 1), ExecProtocol::kV5);
  ASSERT_TRUE(empty_payload.ok());
  EXPECT_EQ(empty_payload->payload, "");
}

// The payload is a view of the message, so decoding a temporary string (which would leave it
// pointing into freed memory) does not compile; a named string, a view or a literal does.
template <typename Message>
constexpr bool kDecodes = requires(Message&& message) {
  DecodeFrame(std::forward<Message>(message), ExecProtocol::kV5);
};
static_assert(!kDecodes<std::string>, "a temporary string must not decode");
static_assert(kDecodes<const std::string&> && kDecodes<std::string&>);
static_assert(kDecodes<std::string_view> && kDecodes<const char (&)[3]>);

TEST(Frame, RejectsBadFrames) {
  EXPECT_THAT(DecodeFrame("", ExecProtocol::kV5).status().message(), HasSubstr("no channel"));
  EXPECT_THAT(DecodeFrame("\x05x", ExecProtocol::kV5).status().message(),
              HasSubstr("unknown exec channel 5"));
  // Close is v5 only and names exactly one valid channel.
  EXPECT_THAT(DecodeFrame(std::string_view("\xff\x00", 2), ExecProtocol::kV4).status().message(),
              HasSubstr("only valid under v5"));
  EXPECT_FALSE(DecodeFrame(std::string_view("\xff", 1), ExecProtocol::kV5).ok());
  EXPECT_FALSE(DecodeFrame(std::string_view("\xff\x00\x01", 3), ExecProtocol::kV5).ok());
  EXPECT_FALSE(DecodeFrame(std::string_view("\xff\x09", 2), ExecProtocol::kV5).ok());
  absl::StatusOr<Frame> close = DecodeFrame(std::string_view("\xff\x00", 2), ExecProtocol::kV5);
  ASSERT_TRUE(close.ok());
  EXPECT_EQ(close->channel, kClose);
}

TEST(Resize, ParsesAndRejects) {
  absl::StatusOr<TerminalSize> s = ParseResize(R"({"Width":120,"Height":40})");
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->width, 120);
  EXPECT_EQ(s->height, 40);
  EXPECT_EQ(ParseResize(EncodeResize({80, 24}))->width, 80);
  EXPECT_FALSE(ParseResize("not json").ok());
  EXPECT_FALSE(ParseResize("[1,2]").ok());
  EXPECT_FALSE(ParseResize(R"({"Width":120})").ok());
  EXPECT_FALSE(ParseResize(R"({"Width":"120","Height":40})").ok());
  EXPECT_FALSE(ParseResize(R"({"Width":0,"Height":40})").ok());
  EXPECT_FALSE(ParseResize(R"({"Width":70000,"Height":40})").ok());
  EXPECT_FALSE(ParseResize(R"({"Width":-1,"Height":40})").ok());
}

TEST(ExitStatus, SuccessIsZero) { EXPECT_EQ(*ParseExitStatus(SuccessStatusJson()), 0); }

TEST(ExitStatus, NonZeroExitCodeCarriesCode) {
  EXPECT_EQ(*ParseExitStatus(ExitCodeStatusJson(3)), 3);
  EXPECT_EQ(*ParseExitStatus(ExitCodeStatusJson(127)), 127);
  // The exact text the API server sends.
  EXPECT_EQ(
      *ParseExitStatus(
          R"({"metadata":{},"status":"Failure","message":"command terminated with non-zero exit code: error executing command [sh -c exit 3], exit code 3","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"3"}]}})"),
      3);
}

TEST(ExitStatus, FailureWithoutNonZeroExitCodeIsAnError) {
  absl::StatusOr<int> r = ParseExitStatus(ErrorStatusJson("container not found", "NotFound"));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("container not found"));
  EXPECT_EQ(ParseExitStatus(R"({"status":"Failure"})").status().code(),
            absl::StatusCode::kFailedPrecondition);
}

TEST(ExitStatus, RejectsMalformed) {
  for (
      const char* bad : {
          "",
          "{",
          "[]",
          R"({"status":1})",
          R"({"status":"Weird"})",
          R"({"status":"Failure","reason":"NonZeroExitCode"})",
          R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"x"}]}})",
          R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"0"}]}})",
          R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"256"}]}})",
          R"({"status":"Failure","reason":"NonZeroExitCode","details":{"causes":[{"reason":"ExitCode","message":"99999999999"}]}})",
      }) {
    absl::StatusOr<int> r = ParseExitStatus(bad);
    EXPECT_FALSE(r.ok()) << bad;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ApiStatus, RoundTripsWithDetails) {
  std::string json = ApiStatusJson({404, "NotFound", "pods \"x\" not found", "x", "pods"});
  EXPECT_THAT(json, HasSubstr(R"("kind":"Status")"));
  EXPECT_THAT(json, HasSubstr(R"("status":"Failure")"));
  absl::StatusOr<ApiStatus> s = ParseApiStatus(json);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->code, 404);
  EXPECT_EQ(s->reason, "NotFound");
  EXPECT_EQ(s->details_name, "x");
  EXPECT_EQ(s->details_kind, "pods");
  EXPECT_FALSE(ParseApiStatus("{}").ok());
  EXPECT_FALSE(ParseApiStatus(R"({"kind":"Status"})").ok());
  EXPECT_FALSE(ParseApiStatus("<html>").ok());
}

TEST(Query, DecodesPercentAndPlus) {
  EXPECT_EQ(*UrlDecode("a%20b+c%2Fd"), "a b c/d");
  EXPECT_FALSE(UrlDecode("%").ok());
  EXPECT_FALSE(UrlDecode("%4").ok());
  EXPECT_FALSE(UrlDecode("%zz").ok());
  EXPECT_EQ(*UrlDecode(UrlEncode("echo 'a&b=c' %;\n")), "echo 'a&b=c' %;\n");
}

TEST(ExecQuery, ParsesRepeatedCommandAndBooleansAsTheApiServer) {
  absl::StatusOr<ExecOptions> o = ParseExecQuery(
      "command=sh&command=-c&command=echo%20out%3B%20exit%203&container=app&stdin=1&stdout=true"
      "&stderr=True&tty=false&unknown=zzz");
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_THAT(o->command, ElementsAre("sh", "-c", "echo out; exit 3"));
  EXPECT_EQ(o->container, "app");
  EXPECT_TRUE(o->stdin);
  EXPECT_TRUE(o->stdout);
  EXPECT_TRUE(o->stderr);
  EXPECT_FALSE(o->tty);
  for (const char* t : {"1", "t", "T", "TRUE", "true", "True"}) {
    EXPECT_TRUE(ParseExecQuery(std::string("command=x&tty=") + t)->tty) << t;
  }
  for (const char* f : {"0", "f", "F", "FALSE", "false", "False"}) {
    EXPECT_FALSE(ParseExecQuery(std::string("command=x&tty=") + f)->tty) << f;
  }
}

TEST(ExecQuery, RejectsBadInput) {
  EXPECT_THAT(ParseExecQuery("stdout=true").status().message(), HasSubstr("at least one command"));
  EXPECT_THAT(ParseExecQuery("command=x&stdout=yes").status().message(),
              HasSubstr("invalid boolean for query parameter stdout"));
  EXPECT_FALSE(ParseExecQuery("command=x&stdin=").ok());
  EXPECT_FALSE(ParseExecQuery("command=%zz").ok());
}

TEST(ExecQuery, EncodeRoundTrips) {
  ExecOptions o;
  o.command = {"sh", "-c", "echo a&b; exit 3"};
  o.container = "app";
  o.stdout = true;
  o.stderr = true;
  absl::StatusOr<ExecOptions> back = ParseExecQuery(EncodeExecQuery(o));
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->command, o.command);
  EXPECT_EQ(back->container, "app");
  EXPECT_FALSE(back->stdin);
  EXPECT_TRUE(back->stdout);
  EXPECT_TRUE(back->stderr);
}

// Found by tests/fuzz/k8s_codec_fuzzer.cc: members of another type than expected, and messages
// that are not UTF-8, must be errors or replacements, never exceptions.
TEST(Status, MembersOfAnotherTypeAreErrorsNotExceptions) {
  EXPECT_FALSE(ParseExitStatus(R"({"status":"Failure","message":5})").ok());
  EXPECT_FALSE(
      ParseExitStatus(R"({"status":"Failure","reason":"NonZeroExitCode",)"
                      R"("details":{"causes":[{"reason":1},{"reason":"ExitCode","message":[]}]}})")
          .ok());
  EXPECT_FALSE(ParseApiStatus(R"({"kind":1,"code":404})").ok());
  absl::StatusOr<ApiStatus> status =
      ParseApiStatus(R"({"kind":"Status","code":404,"reason":{},"message":2,"details":[]})");
  ASSERT_TRUE(status.ok());
  EXPECT_EQ(status->code, 404);
  EXPECT_EQ(status->reason, "");
  EXPECT_EQ(status->message, "");
}

TEST(Status, MessagesThatAreNotUtf8AreReplaced) {
  absl::StatusOr<int> code = ParseExitStatus(ErrorStatusJson("bad \xff name"));
  EXPECT_EQ(code.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(code.status().message(), HasSubstr("bad \xEF\xBF\xBD name"));
  ApiStatus api;
  api.message = "\xc3";
  absl::StatusOr<ApiStatus> parsed = ParseApiStatus(ApiStatusJson(api));
  ASSERT_TRUE(parsed.ok());
  EXPECT_EQ(parsed->message, "\xEF\xBF\xBD");
}

}  // namespace
}  // namespace podgate::k8s
