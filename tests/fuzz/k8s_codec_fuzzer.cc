// Fuzzes the Kubernetes exec channel codec (lib/k8s/exec_protocol.h): what the API server (or a
// hostile or broken one) sends exec, and what kubesim reads from clients. Checks, besides
// crashes and undefined behaviour:
//  - frames: an accepted message re-encodes to itself (EncodeFrame(DecodeFrame(x)) == x), a
//    channel 255 frame only under v5, and every channel 0..4 frame decodes under every protocol;
//  - resize: an accepted message re-encodes to one that parses to the same size;
//  - status: an accepted exit status is 0..255 and re-encodes (SuccessStatusJson or
//    ExitCodeStatusJson) to one that parses to the same code; an ApiStatus re-encodes to one
//    that parses the same;
//  - query: UrlDecode(UrlEncode(x)) == x, an accepted exec query re-encodes to one that parses
//    to the same options; the protocol header splits into trimmed tokens without commas.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "k8s/exec_protocol.h"
#include "require.h"

using podgate::fuzz::Require;

namespace k8s = podgate::k8s;

namespace {

bool SameOptions(const k8s::ExecOptions& a, const k8s::ExecOptions& b) {
  return a.command == b.command && a.container == b.container && a.stdin == b.stdin &&
         a.stdout == b.stdout && a.stderr == b.stderr && a.tty == b.tty;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // Frames, under each protocol.
  for (k8s::ExecProtocol protocol :
       {k8s::ExecProtocol::kV1, k8s::ExecProtocol::kV4, k8s::ExecProtocol::kV5}) {
    absl::StatusOr<k8s::Frame> frame = k8s::DecodeFrame(input, protocol);
    if (frame.ok()) {
      Require(k8s::EncodeFrame(frame->channel, frame->payload) == input, "frame round trip", input);
      Require(frame->channel <= k8s::kResize ||
                  (frame->channel == k8s::kClose && protocol == k8s::ExecProtocol::kV5),
              "frame channel", input);
    } else {
      Require(input.empty() || static_cast<uint8_t>(input[0]) > k8s::kResize,
              "channels 0..4 always decode", input);
    }
  }
  if (!input.empty()) {
    const auto channel = static_cast<uint8_t>(input[0]);
    const std::string encoded = k8s::EncodeFrame(channel % 5, input.substr(1));
    absl::StatusOr<k8s::Frame> frame = k8s::DecodeFrame(encoded, k8s::ExecProtocol::kV4);
    Require(frame.ok() && frame->channel == channel % 5 && frame->payload == input.substr(1),
            "an encoded frame decodes", input);
  }

  // Resize.
  if (absl::StatusOr<k8s::TerminalSize> resize = k8s::ParseResize(input); resize.ok()) {
    Require(resize->width >= 1 && resize->height >= 1, "resize range", input);
    absl::StatusOr<k8s::TerminalSize> again = k8s::ParseResize(k8s::EncodeResize(*resize));
    Require(again.ok() && again->width == resize->width && again->height == resize->height,
            "resize round trip", input);
  }

  // The channel-3 status.
  absl::StatusOr<int> code = k8s::ParseExitStatus(input);
  if (code.ok()) {
    Require(*code >= 0 && *code <= 255, "exit code range", input);
    const std::string encoded =
        *code == 0 ? k8s::SuccessStatusJson() : k8s::ExitCodeStatusJson(*code);
    absl::StatusOr<int> again = k8s::ParseExitStatus(encoded);
    Require(again.ok() && *again == *code, "exit status round trip", input);
  } else {
    Require(!code.status().message().empty(), "a refused status says why", input);
  }
  absl::StatusOr<int> error = k8s::ParseExitStatus(k8s::ErrorStatusJson(input, "Fuzz"));
  Require(!error.ok() && error.status().code() == absl::StatusCode::kFailedPrecondition,
          "an error status is an error", input);

  if (absl::StatusOr<k8s::ApiStatus> status = k8s::ParseApiStatus(input); status.ok()) {
    absl::StatusOr<k8s::ApiStatus> again = k8s::ParseApiStatus(k8s::ApiStatusJson(*status));
    Require(again.ok() && again->code == status->code && again->reason == status->reason &&
                again->message == status->message && again->details_name == status->details_name &&
                again->details_kind == status->details_kind,
            "ApiStatus round trip", input);
  }

  // The exec query.
  absl::StatusOr<std::string> decoded = k8s::UrlDecode(k8s::UrlEncode(input));
  Require(decoded.ok() && *decoded == input, "UrlDecode(UrlEncode(x)) == x", input);
  if (absl::StatusOr<k8s::ExecOptions> options = k8s::ParseExecQuery(input); options.ok()) {
    Require(!options->command.empty(), "a query names a command", input);
    absl::StatusOr<k8s::ExecOptions> again = k8s::ParseExecQuery(k8s::EncodeExecQuery(*options));
    Require(again.ok() && SameOptions(*again, *options), "exec query round trip", input);
  }

  // The Sec-WebSocket-Protocol header.
  for (const std::string& token : k8s::SplitProtocolHeader(input)) {
    Require(!token.empty() && token.find(',') == std::string::npos && token.front() != ' ' &&
                token.back() != ' ' && token.front() != '\t' && token.back() != '\t',
            "protocol tokens are trimmed", input);
  }
  std::optional<k8s::ExecProtocol> chosen = k8s::NegotiateProtocol(
      k8s::SplitProtocolHeader(input), {k8s::ExecProtocol::kV5, k8s::ExecProtocol::kV4});
  Require(!chosen.has_value() || *chosen != k8s::ExecProtocol::kV1,
          "negotiation picks a supported protocol", input);
  return 0;
}
