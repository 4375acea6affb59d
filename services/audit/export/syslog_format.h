// RFC 5424 messages for the syslog export sink: one message per exported record or checkpoint,
// its ids in a structured-data element under the documentation PEN (podgate@32473), its body the
// same JSON document every sink sends (ItemJson) after a UTF-8 BOM. Pure functions, no I/O, so
// every field and limit is unit tested by parsing the result back.
#pragma once

#include <cstddef>
#include <string>

#include "absl/strings/string_view.h"
#include "audit/export/sink.h"
#include "google/protobuf/timestamp.pb.h"

namespace podgate::audit::exporting {

// The SD-ID of the element carrying a record's ids (32473 is the IANA "example" enterprise
// number, RFC 5612; an operator with a PEN of their own maps the name at the receiver).
inline constexpr absl::string_view kSyslogSdId = "podgate@32473";

// Severities (RFC 5424 6.2.1).
inline constexpr int kSeverityWarning = 4;
inline constexpr int kSeverityNotice = 5;
inline constexpr int kSeverityInformational = 6;

// The whole message (header, structured data, BOM and JSON) is kept within this many bytes
// unless the ids alone exceed it; rsyslog's default limit is 8 KiB, receivers of audit data are
// told to raise it (docs/audit.md, "Syslog sink").
inline constexpr size_t kDefaultSyslogMaxMessageBytes = 64 * 1024;
// Each SD-PARAM value is cut (at a UTF-8 character boundary) to this many bytes, and the names of
// the cut parameters are listed in the "cut" parameter.
inline constexpr size_t kSyslogMaxSdValueBytes = 512;

struct SyslogFormatOptions {
  int facility = 13;                       // 0..23
  std::string app_name = "podgate-audit";  // 1..48 printable US-ASCII (checked by the sink)
  std::string hostname;                    // "" → "-"; sanitized to printable US-ASCII, 255 bytes
  int pid = 0;                             // 0 → "-"
  size_t max_message_bytes = kDefaultSyslogMaxMessageBytes;
};

// The RFC 5424 message for `item` (no framing, no trailing newline).
//
// PRI: facility*8 + severity: warning for a record whose decision denied, informational for a
// checkpoint, notice for every other record. MSGID: the event kind in lower case without the
// EVENT_KIND_ prefix ("command_result"), "checkpoint" for a checkpoint. TIMESTAMP: the record's
// stored time (a checkpoint's time), RFC 3339 in UTC with microseconds ("-" when unset).
//
// When BOM + JSON would make the message longer than max_message_bytes, the JSON is not cut:
// MSG becomes a small JSON document {"type":...,"truncated":true,"jsonBytes":N, the ids} and the
// SD element gets truncated="json" and jsonBytes="N"; the full record stays in the audit store
// (Query by chain and sequence).
// `json_replaced` (optional) tells whether that happened.
std::string FormatSyslogMessage(const ExportItem& item, const SyslogFormatOptions& options,
                                bool* json_replaced = nullptr);

// An SD-PARAM value with '"', '\' and ']' escaped by a backslash (RFC 5424 6.3.3); other bytes
// (including control characters and UTF-8) are kept as they are.
std::string EscapeSdParamValue(absl::string_view value);

// Whether `name` is a valid SD-NAME (PARAM-NAME or SD-ID name part): 1 to 32 printable US-ASCII
// characters other than '=', ' ', ']' and '"'.
bool IsSdName(absl::string_view name);

// RFC 3339 with microseconds in UTC ("2026-12-01T03:21:17.123456Z").
std::string SyslogTimestamp(const google::protobuf::Timestamp& time);

// `value` cut to at most `max_bytes` bytes without splitting a UTF-8 sequence.
std::string CutUtf8(absl::string_view value, size_t max_bytes);

// A header field (HOSTNAME, APP-NAME, PROCID, MSGID): printable US-ASCII only (others become
// '_'), at most `max_bytes`, "-" when empty.
std::string HeaderField(absl::string_view value, size_t max_bytes);

}  // namespace podgate::audit::exporting
