#include "audit/export/syslog_format.h"

#include <string>
#include <utility>
#include <vector>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/time.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit::exporting {

namespace {

using podgate::common::v1::EventKind;
using podgate::common::v1::EventKind_Name;
using podgate::common::v1::Verdict;
using podgate::common::v1::Verdict_Name;

constexpr absl::string_view kBom = "\xEF\xBB\xBF";

bool IsPrintUsAscii(char c) { return c >= 33 && c <= 126; }

// "EVENT_KIND_COMMAND_RESULT" → "command_result".
std::string KindName(EventKind kind) {
  std::string name = EventKind_Name(kind);
  if (name.empty()) {
    return absl::StrCat("kind_", static_cast<int>(kind));
  }
  return absl::AsciiStrToLower(absl::StripPrefix(name, "EVENT_KIND_"));
}

std::string VerdictName(Verdict verdict) {
  std::string name = Verdict_Name(verdict);
  if (name.empty()) {
    return absl::StrCat("verdict_", static_cast<int>(verdict));
  }
  return absl::AsciiStrToLower(absl::StripPrefix(name, "VERDICT_"));
}

using Params = std::vector<std::pair<std::string, std::string>>;

void Add(Params& params, absl::string_view name, absl::string_view value) {
  if (!value.empty()) {
    params.emplace_back(std::string(name), std::string(value));
  }
}

// [podgate@32473 name="value" ...], each value cut to kSyslogMaxSdValueBytes (the cut ones
// listed in cut="a,b").
std::string SdElement(const Params& params) {
  std::string out = absl::StrCat("[", kSyslogSdId);
  std::vector<std::string> cut;
  for (const auto& [name, value] : params) {
    std::string kept = CutUtf8(value, kSyslogMaxSdValueBytes);
    if (kept.size() != value.size()) {
      cut.push_back(name);
    }
    absl::StrAppend(&out, " ", name, "=\"", EscapeSdParamValue(kept), "\"");
  }
  if (!cut.empty()) {
    absl::StrAppend(&out, " cut=\"", absl::StrJoin(cut, ","), "\"");
  }
  out += "]";
  return out;
}

std::string JsonString(absl::string_view s) {
  // Only ASCII ids go here (chain ids are UUID-like, kinds are enum names); escape anyway.
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      absl::StrAppend(&out, "\\u00", absl::Hex(static_cast<unsigned char>(c), absl::kZeroPad2));
    } else {
      out += c;
    }
  }
  out += "\"";
  return out;
}

}  // namespace

std::string EscapeSdParamValue(absl::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (char c : value) {
    if (c == '"' || c == '\\' || c == ']') {
      out += '\\';
    }
    out += c;
  }
  return out;
}

bool IsSdName(absl::string_view name) {
  if (name.empty() || name.size() > 32) {
    return false;
  }
  for (char c : name) {
    if (!IsPrintUsAscii(c) || c == '=' || c == ']' || c == '"') {
      return false;
    }
  }
  return true;
}

std::string SyslogTimestamp(const google::protobuf::Timestamp& time) {
  absl::Time t = absl::FromUnixSeconds(time.seconds()) + absl::Nanoseconds(time.nanos());
  return absl::FormatTime("%Y-%m-%dT%H:%M:%E6SZ", t, absl::UTCTimeZone());
}

std::string CutUtf8(absl::string_view value, size_t max_bytes) {
  if (value.size() <= max_bytes) {
    return std::string(value);
  }
  size_t end = max_bytes;
  // Back up over continuation bytes (10xxxxxx) so the cut falls before a lead byte.
  while (end > 0 && (static_cast<unsigned char>(value[end]) & 0xC0) == 0x80) {
    --end;
  }
  return std::string(value.substr(0, end));
}

std::string HeaderField(absl::string_view value, size_t max_bytes) {
  std::string out;
  for (char c : value.substr(0, max_bytes)) {
    out += IsPrintUsAscii(c) ? c : '_';
  }
  return out.empty() ? "-" : out;
}

std::string FormatSyslogMessage(const ExportItem& item, const SyslogFormatOptions& options,
                                bool* json_replaced) {
  if (json_replaced != nullptr) {
    *json_replaced = false;
  }
  int severity = kSeverityNotice;
  std::string msgid;
  std::string timestamp = "-";
  Params params;
  std::string json_type;
  if (item.kind == ExportItem::Kind::kRecord) {
    const auto& record = item.record;
    const auto& event = record.event();
    json_type = "record";
    msgid = KindName(event.kind());
    if (record.has_stored_time()) {
      timestamp = SyslogTimestamp(record.stored_time());
    }
    if (event.has_decision() && event.decision().verdict() == podgate::common::v1::VERDICT_DENY) {
      severity = kSeverityWarning;
    }
    Add(params, "chainId", record.chain_id());
    params.emplace_back("sequence", absl::StrCat(record.sequence()));
    Add(params, "eventId", event.id());
    params.emplace_back("kind", msgid);
    Add(params, "sessionId", event.session_id());
    Add(params, "commandId", event.command_id());
    Add(params, "user", event.principal().user());
    Add(params, "cluster", event.target().cluster());
    Add(params, "namespace", event.target().namespace_());
    Add(params, "pod", event.target().pod());
    Add(params, "container", event.target().container());
    if (event.has_decision() &&
        event.decision().verdict() != podgate::common::v1::VERDICT_UNSPECIFIED) {
      params.emplace_back("verdict", VerdictName(event.decision().verdict()));
      Add(params, "rule", event.decision().rule());
    }
  } else {
    const auto& checkpoint = item.checkpoint;
    json_type = "checkpoint";
    severity = kSeverityInformational;
    msgid = "checkpoint";
    if (checkpoint.has_time()) {
      timestamp = SyslogTimestamp(checkpoint.time());
    }
    Add(params, "chainId", checkpoint.chain_id());
    params.emplace_back("sequence", absl::StrCat(checkpoint.sequence()));
    params.emplace_back("kind", "checkpoint");
    Add(params, "keyId", checkpoint.key_id());
  }

  const std::string header =
      absl::StrCat("<", options.facility * 8 + severity, ">1 ", timestamp, " ",
                   HeaderField(options.hostname, 255), " ", HeaderField(options.app_name, 48), " ",
                   options.pid > 0 ? absl::StrCat(options.pid) : std::string("-"), " ",
                   HeaderField(msgid, 32), " ");
  std::string json = ItemJson(item);
  std::string sd = SdElement(params);
  if (header.size() + sd.size() + 1 + kBom.size() + json.size() <= options.max_message_bytes) {
    return absl::StrCat(header, sd, " ", kBom, json);
  }
  // Too long: never a cut JSON document. The ids stay (SD and a small JSON body); the size says
  // how much was left out.
  if (json_replaced != nullptr) {
    *json_replaced = true;
  }
  const size_t json_bytes = json.size();
  params.emplace_back("truncated", "json");
  params.emplace_back("jsonBytes", absl::StrCat(json_bytes));
  sd = SdElement(params);
  std::string stub =
      absl::StrCat("{\"type\":\"", json_type, "\",\"truncated\":true,\"jsonBytes\":", json_bytes);
  const std::string& chain_id =
      item.kind == ExportItem::Kind::kRecord ? item.record.chain_id() : item.checkpoint.chain_id();
  const int64_t sequence =
      item.kind == ExportItem::Kind::kRecord ? item.record.sequence() : item.checkpoint.sequence();
  absl::StrAppend(&stub, ",\"chainId\":", JsonString(chain_id), ",\"sequence\":\"", sequence, "\"");
  if (item.kind == ExportItem::Kind::kRecord) {
    absl::StrAppend(&stub, ",\"eventId\":", JsonString(item.record.event().id()));
  }
  stub += "}";
  return absl::StrCat(header, sd, " ", kBom, stub);
}

}  // namespace podgate::audit::exporting
