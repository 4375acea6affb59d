#include "k8s/exec_protocol.h"

#include <nlohmann/json.hpp>

#include "absl/strings/str_cat.h"

namespace podgate::k8s {
namespace {

using nlohmann::json;

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) {
    s.remove_prefix(1);
  }
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) {
    s.remove_suffix(1);
  }
  return s;
}

// Go's strconv.ParseBool, which the API server's query decoder uses.
std::optional<bool> ParseGoBool(std::string_view v) {
  if (v == "1" || v == "t" || v == "T" || v == "TRUE" || v == "true" || v == "True") {
    return true;
  }
  if (v == "0" || v == "f" || v == "F" || v == "FALSE" || v == "false" || v == "False") {
    return false;
  }
  return std::nullopt;
}

// A member's string value; "" when absent or not a string. (json::value() throws type_error
// when the member has another type, and these parsers read what a server sent.)
std::string StringField(const json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

// Serializes without throwing: invalid UTF-8 in a message (a file name, a process error) becomes
// U+FFFD instead of a type_error exception.
std::string Dump(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

}  // namespace

std::string_view ProtocolName(ExecProtocol protocol) {
  switch (protocol) {
    case ExecProtocol::kV5:
      return kProtocolV5;
    case ExecProtocol::kV4:
      return kProtocolV4;
    case ExecProtocol::kV1:
      return kProtocolV1;
  }
  return kProtocolV1;
}

std::optional<ExecProtocol> ProtocolFromName(std::string_view name) {
  if (name == kProtocolV5) {
    return ExecProtocol::kV5;
  }
  if (name == kProtocolV4) {
    return ExecProtocol::kV4;
  }
  if (name == kProtocolV1) {
    return ExecProtocol::kV1;
  }
  return std::nullopt;
}

std::vector<std::string> SplitProtocolHeader(std::string_view header) {
  std::vector<std::string> out;
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view token = Trim(header.substr(0, comma));
    if (!token.empty()) {
      out.emplace_back(token);
    }
    if (comma == std::string_view::npos) {
      break;
    }
    header.remove_prefix(comma + 1);
  }
  return out;
}

std::optional<ExecProtocol> NegotiateProtocol(const std::vector<std::string>& offered,
                                              const std::vector<ExecProtocol>& supported) {
  for (const std::string& name : offered) {
    std::optional<ExecProtocol> p = ProtocolFromName(name);
    if (!p.has_value()) {
      continue;
    }
    for (ExecProtocol s : supported) {
      if (s == *p) {
        return p;
      }
    }
  }
  return std::nullopt;
}

std::string ClientProtocolOffer() {
  return absl::StrCat(std::string(kProtocolV5), ", ", std::string(kProtocolV4));
}

std::string EncodeFrame(uint8_t channel, std::string_view payload) {
  std::string out;
  out.reserve(payload.size() + 1);
  out.push_back(static_cast<char>(channel));
  out.append(payload);
  return out;
}

absl::StatusOr<Frame> DecodeFrame(std::string_view message, ExecProtocol protocol) {
  if (message.empty()) {
    return absl::InvalidArgumentError("empty exec frame: no channel byte");
  }
  auto channel = static_cast<uint8_t>(message[0]);
  Frame frame{channel, message.substr(1)};
  if (channel <= kResize) {
    return frame;
  }
  if (channel == kClose) {
    if (protocol != ExecProtocol::kV5) {
      return absl::InvalidArgumentError(
          absl::StrCat("close frame (channel 255) is only valid under ", std::string(kProtocolV5)));
    }
    if (frame.payload.size() != 1 || static_cast<uint8_t>(frame.payload[0]) > kResize) {
      return absl::InvalidArgumentError("close frame must name exactly one channel in 0..4");
    }
    return frame;
  }
  return absl::InvalidArgumentError(absl::StrCat("unknown exec channel ", channel));
}

absl::StatusOr<TerminalSize> ParseResize(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("resize message is not a JSON object");
  }
  TerminalSize size;
  for (auto [key, field] : {std::pair{"Width", &size.width}, std::pair{"Height", &size.height}}) {
    auto it = j.find(key);
    if (it == j.end() || !it->is_number_integer()) {
      return absl::InvalidArgumentError(absl::StrCat("resize message needs integer ", key));
    }
    int64_t v = it->get<int64_t>();
    if (v < 1 || v > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("resize ", key, " out of range 1..65535"));
    }
    *field = static_cast<uint16_t>(v);
  }
  return size;
}

std::string EncodeResize(TerminalSize size) {
  return Dump(json{{"Width", size.width}, {"Height", size.height}});
}

std::string SuccessStatusJson() { return R"({"metadata":{},"status":"Success"})"; }

std::string ExitCodeStatusJson(int exit_code) {
  json j = {{"metadata", json::object()},
            {"status", "Failure"},
            {"message",
             absl::StrCat("command terminated with non-zero exit code: exit status ", exit_code)},
            {"reason", "NonZeroExitCode"},
            {"details",
             {{"causes",
               json::array({{{"reason", "ExitCode"}, {"message", std::to_string(exit_code)}}})}}}};
  return Dump(j);
}

std::string ErrorStatusJson(std::string_view message, std::string_view reason) {
  json j = {{"metadata", json::object()},
            {"status", "Failure"},
            {"message", std::string(message)},
            {"reason", std::string(reason)}};
  return Dump(j);
}

absl::StatusOr<int> ParseExitStatus(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError("exec status is not a JSON object");
  }
  auto status = j.find("status");
  if (status == j.end() || !status->is_string()) {
    return absl::InvalidArgumentError("exec status has no \"status\" string");
  }
  if (*status == "Success") {
    return 0;
  }
  if (*status != "Failure") {
    return absl::InvalidArgumentError(
        absl::StrCat("exec status has unknown status ", status->get<std::string>()));
  }
  std::string message = StringField(j, "message");
  auto reason = j.find("reason");
  if (reason == j.end() || *reason != "NonZeroExitCode") {
    return absl::FailedPreconditionError(
        absl::StrCat("exec failed: ", message.empty() ? "(no message)" : message));
  }
  auto details = j.find("details");
  if (details != j.end() && details->is_object()) {
    auto causes = details->find("causes");
    if (causes != details->end() && causes->is_array()) {
      for (const json& cause : *causes) {
        if (!cause.is_object() || StringField(cause, "reason") != "ExitCode") {
          continue;
        }
        std::string code = StringField(cause, "message");
        if (code.empty() || code.size() > 4 ||
            code.find_first_not_of("0123456789") != std::string::npos) {
          return absl::InvalidArgumentError(
              absl::StrCat("exec status has a malformed ExitCode cause: \"", code, "\""));
        }
        int value = std::stoi(code);
        if (value < 1 || value > 255) {
          return absl::InvalidArgumentError(
              absl::StrCat("exec status has an ExitCode out of range: ", value));
        }
        return value;
      }
    }
  }
  return absl::InvalidArgumentError("NonZeroExitCode status without an ExitCode cause");
}

std::string ApiStatusJson(const ApiStatus& status) {
  json j = {{"kind", "Status"},    {"apiVersion", "v1"},        {"metadata", json::object()},
            {"status", "Failure"}, {"message", status.message}, {"reason", status.reason},
            {"code", status.code}};
  if (!status.details_name.empty() || !status.details_kind.empty()) {
    json details = json::object();
    if (!status.details_name.empty()) {
      details["name"] = status.details_name;
    }
    if (!status.details_kind.empty()) {
      details["kind"] = status.details_kind;
    }
    j["details"] = details;
  }
  return Dump(j);
}

absl::StatusOr<ApiStatus> ParseApiStatus(std::string_view text) {
  json j = json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object() || StringField(j, "kind") != "Status") {
    return absl::InvalidArgumentError("not a Kubernetes Status object");
  }
  ApiStatus s;
  auto code = j.find("code");
  if (code == j.end() || !code->is_number_integer()) {
    return absl::InvalidArgumentError("Status object without an integer code");
  }
  s.code = code->get<int>();
  s.reason = StringField(j, "reason");
  s.message = StringField(j, "message");
  if (auto d = j.find("details"); d != j.end() && d->is_object()) {
    s.details_name = StringField(*d, "name");
    s.details_kind = StringField(*d, "kind");
  }
  return s;
}

absl::StatusOr<ExecOptions> ParseExecQuery(std::string_view query) {
  absl::StatusOr<std::vector<std::pair<std::string, std::string>>> params = ParseQuery(query);
  if (!params.ok()) {
    return params.status();
  }
  ExecOptions opts;
  for (const auto& [name, value] : *params) {
    bool* flag = nullptr;
    if (name == "command") {
      opts.command.push_back(value);
      continue;
    }
    if (name == "container") {
      opts.container = value;
      continue;
    }
    if (name == "stdin") {
      flag = &opts.stdin;
    } else if (name == "stdout") {
      flag = &opts.stdout;
    } else if (name == "stderr") {
      flag = &opts.stderr;
    } else if (name == "tty") {
      flag = &opts.tty;
    } else {
      continue;  // the API server ignores parameters it does not know
    }
    std::optional<bool> b = ParseGoBool(value);
    if (!b.has_value()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid boolean for query parameter ", name, ": \"", value, "\""));
    }
    *flag = *b;
  }
  if (opts.command.empty()) {
    return absl::InvalidArgumentError("you must specify at least one command for the container");
  }
  return opts;
}

std::string EncodeExecQuery(const ExecOptions& options) {
  std::string out;
  for (const std::string& arg : options.command) {
    absl::StrAppend(&out, out.empty() ? "" : "&", "command=", UrlEncode(arg));
  }
  if (!options.container.empty()) {
    absl::StrAppend(&out, "&container=", UrlEncode(options.container));
  }
  auto flag = [&](const char* name, bool v) {
    if (v) {
      absl::StrAppend(&out, "&", name, "=true");
    }
  };
  flag("stdin", options.stdin);
  flag("stdout", options.stdout);
  flag("stderr", options.stderr);
  flag("tty", options.tty);
  return out;
}

}  // namespace podgate::k8s
