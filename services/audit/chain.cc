#include "audit/chain.h"

#include "absl/strings/str_cat.h"
#include "crypto/sha256.h"
#include "google/protobuf/io/coded_stream.h"
#include "google/protobuf/io/zero_copy_stream_impl_lite.h"
#include "google/protobuf/util/time_util.h"

namespace podgate::audit {
namespace {

using podgate::common::v1::AuditEvent;
using podgate::common::v1::EventKind;

void PutU32(uint32_t v, std::string* out) {
  for (int shift = 24; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

void PutU64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

// Into a buffer sized once (ByteSizeLong fills the cached sizes the serializer relies on).
std::string SerializeDeterministic(const AuditEvent& event) {
  std::string out(event.ByteSizeLong(), '\0');
  {
    google::protobuf::io::ArrayOutputStream stream(out.data(), static_cast<int>(out.size()));
    google::protobuf::io::CodedOutputStream coded(&stream);
    coded.SetSerializationDeterministic(true);
    event.SerializeWithCachedSizes(&coded);
  }
  return out;
}

void AppendCanonical(const std::string& chain_id, int64_t sequence, int64_t stored_time_us,
                     const std::string& event_bytes, std::string* out) {
  out->append("podgate.audit.v1\n");
  PutU32(static_cast<uint32_t>(chain_id.size()), out);
  out->append(chain_id);
  PutU64(static_cast<uint64_t>(sequence), out);
  PutU64(static_cast<uint64_t>(stored_time_us), out);
  PutU32(static_cast<uint32_t>(event_bytes.size()), out);
  out->append(event_bytes);
}

constexpr size_t kCanonicalFixedBytes = 17 + 4 + 8 + 8 + 4;

// Ids travel in logs, cursors and SQL; keep them short and printable.
constexpr size_t kMaxIdBytes = 128;

}  // namespace

EventColumns ColumnsOf(const AuditEvent& event) {
  EventColumns c;
  c.event_time_us = event.time().seconds() * 1000000 + event.time().nanos() / 1000;
  c.kind = event.kind();
  c.user = event.principal().user();
  c.groups.push_back('\n');
  for (const std::string& group : event.principal().groups()) {
    absl::StrAppend(&c.groups, group, "\n");
  }
  c.cluster = event.target().cluster();
  c.namespace_name = event.target().namespace_();
  c.pod = event.target().pod();
  c.container = event.target().container();
  c.verdict = event.has_decision() ? event.decision().verdict() : 0;
  c.rule = event.has_decision() ? event.decision().rule() : "";
  c.session_id = event.session_id();
  c.trace_id = event.trace_id();
  if (event.has_command_request()) {
    const auto& request = event.command_request();
    c.argv_text = request.line();
    for (const std::string& arg : request.argv()) {
      absl::StrAppend(&c.argv_text, c.argv_text.empty() ? "" : " ", arg);
    }
  } else if (event.has_command_result()) {
    // A result names its command line (and the argv exec ran, when another): searching for
    // `jstack` finds the request, the decision and the result with its exit code together.
    const auto& result = event.command_result();
    c.argv_text = result.line();
    for (const std::string& arg : result.argv()) {
      absl::StrAppend(&c.argv_text, c.argv_text.empty() ? "" : " ", arg);
    }
  }
  return c;
}

std::string CanonicalContent(const std::string& chain_id, int64_t sequence, int64_t stored_time_us,
                             const std::string& event_bytes) {
  std::string out;
  out.reserve(kCanonicalFixedBytes + chain_id.size() + event_bytes.size());
  AppendCanonical(chain_id, sequence, stored_time_us, event_bytes, &out);
  return out;
}

std::string LinkHash(const std::string& previous_hash, const std::string& canonical) {
  std::string input;
  input.reserve(previous_hash.size() + canonical.size());
  input.append(previous_hash).append(canonical);
  return crypto::Sha256(input);
}

StoredRow LinkNext(ChainHead* head, const AuditEvent& event, int64_t stored_time_us) {
  StoredRow row;
  row.event_id = event.id();
  row.chain_id = head->chain_id;
  row.sequence = head->sequence + 1;
  row.stored_time_us = stored_time_us;
  row.event_bytes = SerializeDeterministic(event);
  row.previous_hash = head->hash;
  // LinkHash(previous_hash, CanonicalContent(...)), in one buffer.
  std::string input;
  input.reserve(row.previous_hash.size() + kCanonicalFixedBytes + row.chain_id.size() +
                row.event_bytes.size());
  input.append(row.previous_hash);
  AppendCanonical(row.chain_id, row.sequence, row.stored_time_us, row.event_bytes, &input);
  row.hash = crypto::Sha256(input);
  row.columns = ColumnsOf(event);
  head->sequence = row.sequence;
  head->hash = row.hash;
  return row;
}

absl::Status ValidateEvent(const AuditEvent& event) {
  if (event.id().empty()) {
    return absl::InvalidArgumentError("event has no id");
  }
  if (event.id().size() > kMaxIdBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("event id is ", event.id().size(), " bytes; the limit is ", kMaxIdBytes));
  }
  for (char ch : event.id()) {
    if (static_cast<unsigned char>(ch) < 0x21 || static_cast<unsigned char>(ch) > 0x7e) {
      return absl::InvalidArgumentError("event id must be printable ASCII without spaces");
    }
  }
  if (event.kind() == podgate::common::v1::EVENT_KIND_UNSPECIFIED ||
      !podgate::common::v1::EventKind_IsValid(event.kind())) {
    return absl::InvalidArgumentError(
        absl::StrCat("event ", event.id(), " has no known kind (", event.kind(), ")"));
  }
  if (!event.has_time()) {
    return absl::InvalidArgumentError(absl::StrCat("event ", event.id(), " has no time"));
  }
  if (event.time().seconds() < 0 || event.time().seconds() > 253402300799 ||
      event.time().nanos() < 0 || event.time().nanos() > 999999999) {
    return absl::InvalidArgumentError(absl::StrCat("event ", event.id(), " has a bad time"));
  }
  return absl::OkStatus();
}

absl::StatusOr<podgate::audit::v1::AuditRecord> ToRecord(const StoredRow& row) {
  podgate::audit::v1::AuditRecord record;
  if (!record.mutable_event()->ParseFromString(row.event_bytes)) {
    return absl::DataLossError(absl::StrCat("record ", row.chain_id, "/", row.sequence,
                                            ": the stored event does not parse"));
  }
  record.set_chain_id(row.chain_id);
  record.set_sequence(row.sequence);
  record.set_hash(row.hash);
  record.set_previous_hash(row.previous_hash);
  *record.mutable_stored_time() =
      google::protobuf::util::TimeUtil::MicrosecondsToTimestamp(row.stored_time_us);
  return record;
}

}  // namespace podgate::audit
