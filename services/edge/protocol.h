// The browser protocols' wire formats (docs/protocol.md), as pure functions so that every
// parser and encoder is tested on its own:
//
// - v1: JSON text messages for control, binary messages `[kind byte][payload]` for bulk data
//   (stdin from the browser, stdout/stderr to it) so output costs no JSON escaping;
// - seed: the design note's protocol, byte for byte as its Django Channels backend wrote it
//   (Python's json.dumps: `{"stdout": "..."}` with ASCII escapes).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::edge {

// The sub-protocol a v1 client offers and edge echoes.
inline constexpr char kV1Subprotocol[] = "podgate.v1";
// The prefix of the sub-protocol entry carrying a base64url-encoded bearer token, as Kubernetes
// does with `base64url.bearer.authorization.k8s.io.`. Never echoed.
inline constexpr char kBearerSubprotocolPrefix[] = "base64url.bearer.podgate.v1.";
// The cookie a login sets (HttpOnly).
inline constexpr char kTokenCookie[] = "podgate_token";

// Binary message kinds (the first byte).
enum class BinaryKind : uint8_t { kStdin = 0, kStdout = 1, kStderr = 2 };

// The WebSocket close codes edge uses (RFC 6455 §7.4.1).
inline constexpr uint16_t kCloseNormal = 1000;
inline constexpr uint16_t kCloseGoingAway = 1001;
inline constexpr uint16_t kCloseUnsupportedData = 1003;
inline constexpr uint16_t kCloseInvalidPayload = 1007;
inline constexpr uint16_t kClosePolicy = 1008;
inline constexpr uint16_t kCloseTooBig = 1009;
inline constexpr uint16_t kCloseInternal = 1011;
inline constexpr uint16_t kCloseTryAgainLater = 1013;

// What the page learns when exec closes a session: the v1 `closed` reason and the WebSocket
// close code (docs/protocol.md, "Close codes"). Every CloseReason has its own label, the enum
// value's name without `CLOSE_REASON_` in lower case; only CLOSE_REASON_UNSPECIFIED (and a
// number this build does not know) is "unknown", closed with 1011.
struct PageClose {
  std::string_view reason;
  uint16_t code = kCloseInternal;
};
PageClose PageCloseFor(podgate::common::v1::CloseReason reason);

// The v1 `exit` message's `termination` label: the enum value's name without `TERMINATION_` in
// lower case; "unknown" for TERMINATION_UNSPECIFIED and numbers this build does not know.
std::string_view TerminationLabel(podgate::common::v1::Termination termination);

// The v1 `closed` reason and close code of a session whose exec stream broke (the exec replica
// died or the connection to it was lost): the page is told, and may reconnect (1013).
inline constexpr char kExecLostReason[] = "exec_lost";

// The prefix of the sub-protocol entry that asks to resume a session (docs/protocol.md,
// "Resuming a session"): `podgate.resume.<session_id>.<token>.<seq>.<offset>`. In a header, not
// the URL, because the token is a credential and URLs are logged. Never echoed.
inline constexpr char kResumeSubprotocolPrefix[] = "podgate.resume.";

// A resume entry, parsed.
struct ResumeOffer {
  std::string session_id;
  std::string token;
  uint64_t last_seq = 0;
  uint64_t output_offset = 0;
};

// What the Sec-WebSocket-Protocol header offered.
struct OfferedProtocols {
  bool v1 = false;                    // "podgate.v1" was offered
  std::optional<std::string> token;   // decoded bearer entry
  std::optional<ResumeOffer> resume;  // a resume entry
  // Not OK (InvalidArgument, and no `resume`) when a resume entry is not
  // `<session_id>.<token>.<seq>.<offset>` (id and token of 1 to 128 letters, digits, `-` or `_`;
  // decimal numbers) or there are two: a bad request, not a bad credential.
  absl::Status resume_error;
};

// Parses the comma-separated offer. A bearer entry that does not decode, or two of them, is an
// InvalidArgument error.
absl::StatusOr<OfferedProtocols> ParseOfferedProtocols(std::string_view header);

// A session id in a join path (/ws/join/{session_id}): 1 to 128 letters, digits, - or _, as
// exec's ids are; INVALID_ARGUMENT otherwise.
absl::Status ValidateSessionId(std::string_view id);

// Finds `name` in a Cookie header; nullopt when absent.
std::optional<std::string> FindCookie(std::string_view header, std::string_view name);

// Whether `origin` is in the comma-separated exact-match allowlist.
bool OriginAllowed(std::string_view origin, std::string_view allowlist);

// A message from a v1 browser.
struct V1ClientMessage {
  enum class Type { kAuth, kCommand, kStdin, kResize, kInterrupt, kClose, kRenew };
  Type type = Type::kCommand;
  std::string token;   // auth, renew
  std::string ticket;  // renew (single sign-on's sealed ID token, from POST /auth/refresh)
  std::string id;     // command (optional)
  std::string line;   // command
  std::string data;   // stdin
  bool eof = false;   // stdin
  uint32_t cols = 0;  // resize
  uint32_t rows = 0;  // resize
};

// Parses a v1 text message (a JSON object with a "type"); errors say what is wrong.
absl::StatusOr<V1ClientMessage> ParseV1Text(std::string_view text);
// Parses a v1 binary message; only kind 0 (stdin) comes from a browser.
absl::StatusOr<V1ClientMessage> ParseV1Binary(std::string_view data);

// `[kind][payload]`.
std::string V1Binary(BinaryKind kind, std::string_view payload);

// JSON string literal the way Python's json.dumps writes it (ensure_ascii): non-ASCII as
// \uXXXX (surrogate pairs above U+FFFF), invalid UTF-8 bytes as U+FFFD.
std::string PythonJsonString(std::string_view text);
// `{"<key>": "<text>"}`, the seed protocol's only reply shape.
std::string SeedReply(std::string_view key, std::string_view text);
// The seed protocol's refusal, byte for byte.
std::string SeedDenial(std::string_view line);

// Parses the seed protocol's first message "Authorization: Bearer <token>".
std::optional<std::string> ParseSeedAuth(std::string_view text);

// The seed consumer's own words (the design note's consumer.py), byte for byte, its typo
// included; docs/protocol.md compares every situation.
// A message starting with exactly this (case and the one space included) is a login.
inline constexpr char kSeedAuthPrefix[] = "Authorization: Bearer ";
inline constexpr char kSeedWelcome[] = "welcom!";                // stdout, after a good login
inline constexpr char kSeedLoginFirst[] = "Please login first";  // stderr, then the close
inline constexpr char kSeedEmptyLine[] = "\n";                   // stdout, for an empty line
inline constexpr char kSeedBye[] = "bye!";                       // stdout, on `exit`
inline constexpr char kSeedExit[] = "exit";                      // the whole line, exactly
inline constexpr char kSeedDenyRoot[] = "deny root user\n";      // stderr, a root container
// The rule exec names in a `denied` from its root guard (the container runs as root, or its uid
// is unknown); the seed protocol answers it with kSeedDenyRoot.
inline constexpr char kRootGuardRule[] = "root-guard";

}  // namespace podgate::edge
