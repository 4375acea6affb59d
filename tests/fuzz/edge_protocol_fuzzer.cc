// Fuzzes what edge reads from a browser's WebSocket (services/edge/protocol.h): v1 text control
// messages (JSON) and binary frames, the offered sub-protocols (with the bearer entry), cookies,
// origins, the seed protocol's auth line, and the Python-compatible JSON strings edge writes.
// Boost.Beast does the WebSocket framing itself; this is podgate's code on top of it. Checks,
// besides crashes and undefined behaviour:
//  - an accepted v1 text message, written back as JSON, parses to the same message, and its
//    fields respect the documented bounds (id <= 64 bytes, resize 1..10000, a token for auth);
//  - ParseV1Binary(V1Binary(stdin, x)) is x, and only kind 0 is accepted from a browser;
//  - PythonJsonString is ASCII, is a JSON string, and reads back as the input when the input
//    is valid UTF-8;
//  - a bearer entry re-encoded from the token reads back as the same token; a cookie and an
//    origin written from the input are found.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "auth/base64url.h"
#include "edge/protocol.h"
#include "nlohmann/json.hpp"
#include "require.h"

using podgate::fuzz::Require;

namespace edge = podgate::edge;
using nlohmann::json;

namespace {

bool ValidUtf8(std::string_view s) {
  // nlohmann's own check: dump() throws on invalid UTF-8 with the default handler.
  try {
    (void)json(std::string(s)).dump();
    return true;
  } catch (const json::exception&) {
    return false;
  }
}

json ToJson(const edge::V1ClientMessage& m) {
  using Type = edge::V1ClientMessage::Type;
  switch (m.type) {
    case Type::kAuth:
      return {{"type", "auth"}, {"token", m.token}};
    case Type::kCommand:
      return {{"type", "command"}, {"id", m.id}, {"line", m.line}};
    case Type::kStdin:
      return {{"type", "stdin"}, {"data", m.data}, {"eof", m.eof}};
    case Type::kResize:
      return {{"type", "resize"}, {"cols", m.cols}, {"rows", m.rows}};
    case Type::kInterrupt:
      return {{"type", "interrupt"}};
    case Type::kClose:
      return {{"type", "close"}};
    case Type::kRenew:
      return m.token.empty() ? json{{"type", "renew"}, {"ticket", m.ticket}}
                             : json{{"type", "renew"}, {"token", m.token}};
  }
  return {};
}

bool Same(const edge::V1ClientMessage& a, const edge::V1ClientMessage& b) {
  return a.type == b.type && a.token == b.token && a.ticket == b.ticket && a.id == b.id &&
         a.line == b.line && a.data == b.data && a.eof == b.eof && a.cols == b.cols &&
         a.rows == b.rows;
}

bool Trimmed(std::string_view s) {
  auto space = [](char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
  };
  return !s.empty() && !space(s.front()) && !space(s.back());
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);

  // v1 text control messages.
  if (absl::StatusOr<edge::V1ClientMessage> m = edge::ParseV1Text(input); m.ok()) {
    using Type = edge::V1ClientMessage::Type;
    Require(m->type != Type::kAuth || !m->token.empty(), "auth has a token", input);
    Require(m->type != Type::kRenew || m->token.empty() != m->ticket.empty(),
            "renew has a token or a ticket, not both", input);
    Require(m->id.size() <= 64, "command id size", input);
    Require(m->type != Type::kResize ||
                (m->cols >= 1 && m->cols <= 10000 && m->rows >= 1 && m->rows <= 10000),
            "resize bounds", input);
    // Strings came from parsed JSON, so they are valid UTF-8 and dump() cannot throw.
    absl::StatusOr<edge::V1ClientMessage> again = edge::ParseV1Text(ToJson(*m).dump());
    Require(again.ok() && Same(*again, *m), "v1 text round trip", input);
  } else {
    Require(!m.status().message().empty(), "a refused text message says why", input);
  }

  // v1 binary messages.
  if (absl::StatusOr<edge::V1ClientMessage> m = edge::ParseV1Binary(input); m.ok()) {
    Require(!input.empty() && input[0] == 0, "only stdin comes from a browser", input);
    Require(edge::V1Binary(edge::BinaryKind::kStdin, m->data) == input, "binary round trip", input);
  }
  absl::StatusOr<edge::V1ClientMessage> stdin_message =
      edge::ParseV1Binary(edge::V1Binary(edge::BinaryKind::kStdin, input));
  Require(stdin_message.ok() && stdin_message->data == input, "stdin frame decodes", input);

  // The JSON strings of the seed protocol.
  const std::string quoted = edge::PythonJsonString(input);
  for (char c : quoted) {
    Require(static_cast<unsigned char>(c) < 0x80, "PythonJsonString is ASCII", input);
  }
  const json parsed = json::parse(quoted, nullptr, /*allow_exceptions=*/false);
  Require(parsed.is_string(), "PythonJsonString is a JSON string", input);
  if (ValidUtf8(input)) {
    Require(parsed.get<std::string>() == input, "PythonJsonString reads back", input);
  }
  const json reply = json::parse(edge::SeedReply("stdout", input), nullptr, false);
  Require(reply.is_object() && reply.size() == 1 && reply.contains("stdout"),
          "a seed reply is one key", input);
  Require(json::parse(edge::SeedDenial(input), nullptr, false).is_object(),
          "a seed denial is an object", input);
  (void)edge::ParseSeedAuth(input);

  // The Sec-WebSocket-Protocol offer.
  if (absl::StatusOr<edge::OfferedProtocols> offered = edge::ParseOfferedProtocols(input);
      offered.ok() && offered->token.has_value()) {
    Require(!offered->token->empty(), "a bearer token is not empty", input);
    const std::string entry = std::string(edge::kBearerSubprotocolPrefix) +
                              podgate::auth::Base64UrlEncode(*offered->token);
    absl::StatusOr<edge::OfferedProtocols> again =
        edge::ParseOfferedProtocols(std::string(edge::kV1Subprotocol) + ", " + entry);
    Require(again.ok() && again->v1 && again->token == offered->token, "bearer entry round trip",
            input);
  }

  // Cookies and origins written from the input are found.
  if (input.find(';') == std::string_view::npos && input.find('=') == std::string_view::npos &&
      Trimmed(input)) {
    std::optional<std::string> cookie =
        edge::FindCookie(std::string(input) + "=v; a=b; c=d", input);
    Require(cookie.has_value() && *cookie == "v", "a cookie is found", input);
  }
  if (input.find(',') == std::string_view::npos && Trimmed(input)) {
    Require(edge::OriginAllowed(input, "https://a.example, " + std::string(input)),
            "an allowlisted origin is allowed", input);
  }
  (void)edge::FindCookie(input, edge::kTokenCookie);
  (void)edge::OriginAllowed(input, "https://podgate.example,http://127.0.0.1:8080");
  return 0;
}
