#include "edge/protocol.h"

#include <algorithm>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "auth/base64url.h"
#include "auth/jwt.h"
#include "nlohmann/json.hpp"
#include "text/utf8.h"

namespace podgate::edge {

namespace {

absl::string_view AV(std::string_view s) { return absl::string_view(s.data(), s.size()); }

// Decodes one UTF-8 code point at `i` (lib/text/utf8.h); returns 0xFFFD and advances one byte
// when invalid.
uint32_t NextCodePoint(std::string_view s, size_t& i) {
  const text::Utf8CodePoint d = text::DecodeUtf8(s.substr(i));
  if (d.length == 0) {
    ++i;
    return 0xFFFD;
  }
  i += d.length;
  return d.code_point;
}

void AppendU16(std::string& out, uint32_t unit) {
  static constexpr char kHex[] = "0123456789abcdef";
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) {
    out += kHex[(unit >> shift) & 0xF];
  }
}

std::string JsonString(const nlohmann::json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end() || !it->is_string()) {
    return "";
  }
  return it->get<std::string>();
}

bool IsIdText(absl::string_view s) {
  return !s.empty() && s.size() <= 128 && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
  });
}

bool ParseCount(absl::string_view s, uint64_t* out) {
  return !s.empty() && s.size() <= 20 && std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isdigit(static_cast<unsigned char>(c));
  }) && absl::SimpleAtoi(s, out);
}

absl::StatusOr<ResumeOffer> ParseResumeEntry(absl::string_view entry) {
  const std::vector<absl::string_view> parts = absl::StrSplit(entry, '.');
  ResumeOffer offer;
  if (parts.size() != 4 || !IsIdText(parts[0]) || !IsIdText(parts[1]) ||
      !ParseCount(parts[2], &offer.last_seq) || !ParseCount(parts[3], &offer.output_offset)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the resume sub-protocol entry is not ", kResumeSubprotocolPrefix,
        "<session_id>.<token>.<seq>.<offset> (ids of 1 to 128 letters, digits, - or _; decimal "
        "numbers)"));
  }
  offer.session_id = std::string(parts[0]);
  offer.token = std::string(parts[1]);
  return offer;
}

}  // namespace

absl::Status ValidateSessionId(std::string_view id) {
  if (!IsIdText(AV(id))) {
    return absl::InvalidArgumentError(
        "the session id is 1 to 128 letters, digits, - or _ (as ListSessions names it)");
  }
  return absl::OkStatus();
}

absl::StatusOr<OfferedProtocols> ParseOfferedProtocols(std::string_view header) {
  OfferedProtocols offered;
  for (absl::string_view part : absl::StrSplit(AV(header), ',')) {
    absl::string_view entry = absl::StripAsciiWhitespace(part);
    if (entry == kV1Subprotocol) {
      offered.v1 = true;
    } else if (absl::ConsumePrefix(&entry, kBearerSubprotocolPrefix)) {
      if (offered.token.has_value()) {
        return absl::InvalidArgumentError("more than one bearer sub-protocol entry");
      }
      std::optional<std::string> token = auth::Base64UrlDecode(entry);
      if (!token.has_value() || token->empty()) {
        return absl::InvalidArgumentError("the bearer sub-protocol entry is not base64url");
      }
      offered.token = std::move(token);
    } else if (absl::ConsumePrefix(&entry, kResumeSubprotocolPrefix)) {
      if (offered.resume.has_value() || !offered.resume_error.ok()) {
        offered.resume.reset();
        offered.resume_error =
            absl::InvalidArgumentError("more than one resume sub-protocol entry");
        continue;
      }
      absl::StatusOr<ResumeOffer> resume = ParseResumeEntry(entry);
      if (resume.ok()) {
        offered.resume = *std::move(resume);
      } else {
        offered.resume_error = resume.status();
      }
    }
  }
  return offered;
}

std::optional<std::string> FindCookie(std::string_view header, std::string_view name) {
  for (absl::string_view part : absl::StrSplit(AV(header), ';')) {
    absl::string_view kv = absl::StripAsciiWhitespace(part);
    size_t eq = kv.find('=');
    if (eq != absl::string_view::npos && kv.substr(0, eq) == AV(name)) {
      return std::string(kv.substr(eq + 1));
    }
  }
  return std::nullopt;
}

bool OriginAllowed(std::string_view origin, std::string_view allowlist) {
  if (origin.empty()) {
    return false;
  }
  for (absl::string_view entry : absl::StrSplit(AV(allowlist), ',', absl::SkipWhitespace())) {
    if (absl::StripAsciiWhitespace(entry) == AV(origin)) {
      return true;
    }
  }
  return false;
}

absl::StatusOr<V1ClientMessage> ParseV1Text(std::string_view text) {
  nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("a text message must be a JSON object");
  }
  auto type = j.find("type");
  if (type == j.end() || !type->is_string()) {
    return absl::InvalidArgumentError("a text message needs a string \"type\"");
  }
  const std::string t = type->get<std::string>();
  V1ClientMessage m;
  if (t == "auth") {
    m.type = V1ClientMessage::Type::kAuth;
    m.token = JsonString(j, "token");
    if (m.token.empty()) {
      return absl::InvalidArgumentError("auth needs a \"token\"");
    }
  } else if (t == "renew") {
    m.type = V1ClientMessage::Type::kRenew;
    m.token = JsonString(j, "token");
    m.ticket = JsonString(j, "ticket");
    if (m.token.empty() == m.ticket.empty()) {
      return absl::InvalidArgumentError("renew needs a \"token\" or a \"ticket\"");
    }
  } else if (t == "command") {
    m.type = V1ClientMessage::Type::kCommand;
    m.id = JsonString(j, "id");
    if (m.id.size() > 64) {
      return absl::InvalidArgumentError("a command id is at most 64 bytes");
    }
    auto line = j.find("line");
    if (line == j.end() || !line->is_string()) {
      return absl::InvalidArgumentError("command needs a string \"line\"");
    }
    m.line = line->get<std::string>();
  } else if (t == "stdin") {
    m.type = V1ClientMessage::Type::kStdin;
    m.data = JsonString(j, "data");
    auto eof = j.find("eof");
    m.eof = eof != j.end() && eof->is_boolean() && eof->get<bool>();
  } else if (t == "resize") {
    m.type = V1ClientMessage::Type::kResize;
    auto cols = j.find("cols");
    auto rows = j.find("rows");
    if (cols == j.end() || rows == j.end() || !cols->is_number_unsigned() ||
        !rows->is_number_unsigned() || cols->get<uint64_t>() == 0 || rows->get<uint64_t>() == 0 ||
        cols->get<uint64_t>() > 10000 || rows->get<uint64_t>() > 10000) {
      return absl::InvalidArgumentError("resize needs \"cols\" and \"rows\" from 1 to 10000");
    }
    m.cols = static_cast<uint32_t>(cols->get<uint64_t>());
    m.rows = static_cast<uint32_t>(rows->get<uint64_t>());
  } else if (t == "interrupt") {
    m.type = V1ClientMessage::Type::kInterrupt;
  } else if (t == "close") {
    m.type = V1ClientMessage::Type::kClose;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown message type \"", t.substr(0, 32), "\""));
  }
  return m;
}

absl::StatusOr<V1ClientMessage> ParseV1Binary(std::string_view data) {
  if (data.empty() || static_cast<uint8_t>(data[0]) != static_cast<uint8_t>(BinaryKind::kStdin)) {
    return absl::InvalidArgumentError(
        "a binary message from the browser must start with 0 "
        "(stdin)");
  }
  V1ClientMessage m;
  m.type = V1ClientMessage::Type::kStdin;
  m.data = std::string(data.substr(1));
  return m;
}

PageClose PageCloseFor(podgate::common::v1::CloseReason reason) {
  namespace c = podgate::common::v1;
  // No default: a value added to the enum is a compile error (-Wswitch) until it is mapped.
  switch (reason) {
    case c::CLOSE_REASON_CLIENT:
      return {"client", kCloseNormal};
    case c::CLOSE_REASON_IDLE_TIMEOUT:
      return {"idle_timeout", kCloseGoingAway};
    case c::CLOSE_REASON_SESSION_LIMIT:
      return {"session_limit", kCloseNormal};
    case c::CLOSE_REASON_CREDENTIAL_EXPIRED:
      return {"credential_expired", kClosePolicy};
    case c::CLOSE_REASON_SHUTDOWN:
      return {"shutdown", kCloseGoingAway};
    case c::CLOSE_REASON_DISCONNECTED:
      return {"disconnected", kCloseNormal};
    case c::CLOSE_REASON_ERROR:
      return {"error", kCloseInternal};
    case c::CLOSE_REASON_REMOTE_EXIT:
      return {"remote_exit", kCloseNormal};
    case c::CLOSE_REASON_MODERATOR_LEFT:
      return {"moderator_left", kCloseNormal};
    case c::CLOSE_REASON_UNSPECIFIED:
    case c::CloseReason_INT_MIN_SENTINEL_DO_NOT_USE_:
    case c::CloseReason_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return {"unknown", kCloseInternal};
}

std::string_view TerminationLabel(podgate::common::v1::Termination termination) {
  namespace c = podgate::common::v1;
  switch (termination) {
    case c::TERMINATION_EXITED:
      return "exited";
    case c::TERMINATION_INTERRUPTED:
      return "interrupted";
    case c::TERMINATION_TIME_LIMIT:
      return "time_limit";
    case c::TERMINATION_OUTPUT_LIMIT:
      return "output_limit";
    case c::TERMINATION_ERROR:
      return "error";
    case c::TERMINATION_UNSPECIFIED:
    case c::Termination_INT_MIN_SENTINEL_DO_NOT_USE_:
    case c::Termination_INT_MAX_SENTINEL_DO_NOT_USE_:
      break;
  }
  return "unknown";
}

std::string V1Binary(BinaryKind kind, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 1);
  out += static_cast<char>(kind);
  out.append(payload);
  return out;
}

std::string PythonJsonString(std::string_view text) {
  std::string out;
  out.reserve(text.size() + 2);
  out += '"';
  size_t i = 0;
  while (i < text.size()) {
    uint32_t cp = NextCodePoint(text, i);
    switch (cp) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      case '\b':
        out += "\\b";
        continue;
      case '\f':
        out += "\\f";
        continue;
      default:
        break;
    }
    // json.dumps (ensure_ascii) escapes everything outside ' '..'~', DEL included.
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0xFFFF)) {
      AppendU16(out, cp);
    } else if (cp > 0xFFFF) {
      uint32_t v = cp - 0x10000;
      AppendU16(out, 0xD800 + (v >> 10));
      AppendU16(out, 0xDC00 + (v & 0x3FF));
    } else {
      out += static_cast<char>(cp);
    }
  }
  out += '"';
  return out;
}

std::string SeedReply(std::string_view key, std::string_view text) {
  return absl::StrCat("{", PythonJsonString(key), ": ", PythonJsonString(text), "}");
}

std::string SeedDenial(std::string_view line) {
  return SeedReply("stderr", absl::StrCat("Command `", AV(line),
                                          "` is not allowed, please contact the administrator"));
}

std::optional<std::string> ParseSeedAuth(std::string_view text) {
  absl::string_view rest = AV(text);
  if (!absl::ConsumePrefix(&rest, "Authorization:")) {
    return std::nullopt;
  }
  return auth::BearerToken(absl::StripAsciiWhitespace(rest));
}

}  // namespace podgate::edge
