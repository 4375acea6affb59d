// The Kubernetes exec channel protocol, shared by the exec client (podgate exec against the API
// server) and kubesim (the server side): sub-protocol names and negotiation, frame encoding
// `[channel][payload]`, resize messages, the channel-3 status JSON that carries the exit code,
// and the `pods/exec` query parameters parsed the way the real API server parses them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "http/url.h"

namespace podgate::k8s {

inline constexpr std::string_view kProtocolV5 = "v5.channel.k8s.io";
inline constexpr std::string_view kProtocolV4 = "v4.channel.k8s.io";
inline constexpr std::string_view kProtocolV1 = "channel.k8s.io";

enum class ExecProtocol { kV1, kV4, kV5 };

std::string_view ProtocolName(ExecProtocol protocol);
std::optional<ExecProtocol> ProtocolFromName(std::string_view name);

// Splits a Sec-WebSocket-Protocol header value ("a, b,c") into its trimmed, non-empty tokens.
std::vector<std::string> SplitProtocolHeader(std::string_view header);

// The server's choice, as the API server makes it: the first protocol the client offered that
// the server supports. nullopt when none matches (the server then refuses the upgrade).
std::optional<ExecProtocol> NegotiateProtocol(const std::vector<std::string>& offered,
                                              const std::vector<ExecProtocol>& supported);

// The client's offer, most preferred first: "v5.channel.k8s.io, v4.channel.k8s.io".
std::string ClientProtocolOffer();

enum Channel : uint8_t {
  kStdin = 0,
  kStdout = 1,
  kStderr = 2,
  kStatus = 3,
  kResize = 4,
  kClose = 255,  // v5 only: payload is the channel being closed (FF 00 half-closes stdin)
};

// A decoded message: the payload points into the message it was decoded from (no copy; a
// bulk output frame is copied once, into what the receiver passes on).
struct Frame {
  uint8_t channel = 0;
  std::string_view payload;
};

std::string EncodeFrame(uint8_t channel, std::string_view payload);

// Decodes one binary WebSocket message. Empty messages carry no channel and are an error;
// channels other than 0-4 are an error, except 255 under v5, whose payload must be exactly one
// valid channel byte. The frame is valid as long as `message`; a temporary string does not
// compile.
absl::StatusOr<Frame> DecodeFrame(std::string_view message, ExecProtocol protocol);
template <typename String, typename = std::enable_if_t<std::is_same_v<String, std::string>>>
absl::StatusOr<Frame> DecodeFrame(String&& message, ExecProtocol protocol) = delete;

struct TerminalSize {
  uint16_t width = 0;
  uint16_t height = 0;
};

// {"Width":120,"Height":40}: both present, integers in 1..65535.
absl::StatusOr<TerminalSize> ParseResize(std::string_view json);
std::string EncodeResize(TerminalSize size);

// The channel-3 status message.
std::string SuccessStatusJson();
std::string ExitCodeStatusJson(int exit_code);  // NonZeroExitCode; exit_code != 0
std::string ErrorStatusJson(std::string_view message, std::string_view reason = "InternalError");

// What a status message means: exit code 0 for Success, N for a NonZeroExitCode Failure with an
// ExitCode cause. A Failure without NonZeroExitCode is returned as an error (FailedPrecondition
// carrying the server's message); malformed JSON is InvalidArgument.
absl::StatusOr<int> ParseExitStatus(std::string_view json);

// A metav1.Status object as the API server sends it for REST errors.
struct ApiStatus {
  int code = 500;
  std::string reason;  // NotFound, Forbidden, Unauthorized, BadRequest, ...
  std::string message;
  std::string details_name;
  std::string details_kind;
};
std::string ApiStatusJson(const ApiStatus& status);
absl::StatusOr<ApiStatus> ParseApiStatus(std::string_view json);

// The query of GET/POST /api/v1/namespaces/{ns}/pods/{pod}/exec.
struct ExecOptions {
  std::vector<std::string> command;
  std::string container;
  bool stdin = false;
  bool stdout = false;
  bool stderr = false;
  bool tty = false;
};

// The query codec is lib/http's (http/url.h), shared with the OIDC client.
using ::podgate::http::ParseQuery;
using ::podgate::http::UrlDecode;
using ::podgate::http::UrlEncode;

// Parses the exec query like the API server: `command` repeated (one per argv element),
// booleans accept what Go's strconv.ParseBool accepts (1, t, T, TRUE, true, True and the false
// forms); unknown parameters are ignored; at least one command element is required. Whether a
// stream was requested is checked by the caller (the error text differs by server).
absl::StatusOr<ExecOptions> ParseExecQuery(std::string_view query);
std::string EncodeExecQuery(const ExecOptions& options);

}  // namespace podgate::k8s
