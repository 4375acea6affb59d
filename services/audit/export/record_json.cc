#include "audit/export/record_json.h"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/util/json_util.h"

namespace podgate::audit::exporting {

namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;

constexpr char kHex[] = "0123456789abcdef";

// A JSON string literal as protobuf's printer writes it: ", \ and control characters escaped,
// and <, > escaped as \u003c, \u003e; everything else (UTF-8) as is.
void AppendString(const std::string& text, std::string* out) {
  out->push_back('"');
  for (unsigned char c : text) {
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      case '<':
      case '>':
        out->append("\\u00");
        out->push_back(kHex[c >> 4]);
        out->push_back(kHex[c & 0xf]);
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          out->append("\\u00");
          out->push_back(kHex[c >> 4]);
          out->push_back(kHex[c & 0xf]);
        } else {
          out->push_back(static_cast<char>(c));
        }
    }
  }
  out->push_back('"');
}

// Whether this encoder writes `descriptor` (and everything it contains) itself.
bool Supported(const Descriptor* descriptor, int depth = 0) {
  if (depth > 32) {
    return false;
  }
  const std::string& name = descriptor->full_name();
  if (name == "google.protobuf.Timestamp" || name == "google.protobuf.Duration") {
    return true;
  }
  if (absl::StartsWith(name, "google.protobuf.")) {
    return false;  // Any, Struct, Value, wrappers, FieldMask, ...: protobuf's printer
  }
  for (int i = 0; i < descriptor->field_count(); ++i) {
    const FieldDescriptor* field = descriptor->field(i);
    switch (field->cpp_type()) {
      case FieldDescriptor::CPPTYPE_FLOAT:
      case FieldDescriptor::CPPTYPE_DOUBLE:
        return false;
      case FieldDescriptor::CPPTYPE_MESSAGE:
        if (field->message_type() != descriptor && !Supported(field->message_type(), depth + 1)) {
          return false;
        }
        break;
      default:
        break;
    }
  }
  return true;
}

// "2026-12-01T03:11:07Z", or with 3, 6 or 9 fraction digits, as protobuf writes Timestamps.
void AppendFraction(int32_t nanos, std::string* out) {
  if (nanos == 0) {
    return;
  }
  if (nanos % 1000000 == 0) {
    absl::StrAppend(out, ".", absl::Dec(nanos / 1000000, absl::kZeroPad3));
  } else if (nanos % 1000 == 0) {
    absl::StrAppend(out, ".", absl::Dec(nanos / 1000, absl::kZeroPad6));
  } else {
    absl::StrAppend(out, ".", absl::Dec(nanos, absl::kZeroPad9));
  }
}

void AppendTimestamp(int64_t seconds, int32_t nanos, std::string* out) {
  out->push_back('"');
  absl::StrAppend(out, absl::FormatTime("%Y-%m-%dT%H:%M:%S", absl::FromUnixSeconds(seconds),
                                        absl::UTCTimeZone()));
  AppendFraction(nanos, out);
  out->append("Z\"");
}

void AppendDuration(int64_t seconds, int32_t nanos, std::string* out) {
  out->push_back('"');
  if (seconds < 0 || nanos < 0) {
    out->push_back('-');
    seconds = -seconds;
    nanos = -nanos;
  }
  absl::StrAppend(out, seconds);
  AppendFraction(nanos, out);
  out->append("s\"");
}

void AppendMessage(const Message& message, std::string* out);

void AppendValue(const Message& message, const FieldDescriptor* field, int index,
                 std::string* out) {
  const Reflection* r = message.GetReflection();
  const bool rep = field->is_repeated();
  switch (field->cpp_type()) {
    case FieldDescriptor::CPPTYPE_INT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedInt32(message, field, index) : r->GetInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_UINT32:
      absl::StrAppend(
          out, rep ? r->GetRepeatedUInt32(message, field, index) : r->GetUInt32(message, field));
      break;
    case FieldDescriptor::CPPTYPE_INT64:
      absl::StrAppend(
          out, "\"", rep ? r->GetRepeatedInt64(message, field, index) : r->GetInt64(message, field),
          "\"");
      break;
    case FieldDescriptor::CPPTYPE_UINT64:
      absl::StrAppend(
          out, "\"",
          rep ? r->GetRepeatedUInt64(message, field, index) : r->GetUInt64(message, field), "\"");
      break;
    case FieldDescriptor::CPPTYPE_BOOL:
      out->append((rep ? r->GetRepeatedBool(message, field, index) : r->GetBool(message, field))
                      ? "true"
                      : "false");
      break;
    case FieldDescriptor::CPPTYPE_ENUM: {
      const int number =
          rep ? r->GetRepeatedEnumValue(message, field, index) : r->GetEnumValue(message, field);
      const auto* value = field->enum_type()->FindValueByNumber(number);
      if (value != nullptr) {
        AppendString(value->name(), out);
      } else {
        absl::StrAppend(out, number);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_STRING: {
      std::string scratch;
      const std::string& text = rep ? r->GetRepeatedStringReference(message, field, index, &scratch)
                                    : r->GetStringReference(message, field, &scratch);
      if (field->type() == FieldDescriptor::TYPE_BYTES) {
        out->push_back('"');
        out->append(absl::Base64Escape(text));
        out->push_back('"');
      } else {
        AppendString(text, out);
      }
      break;
    }
    case FieldDescriptor::CPPTYPE_MESSAGE:
      AppendMessage(
          rep ? r->GetRepeatedMessage(message, field, index) : r->GetMessage(message, field), out);
      break;
    default:
      out->append("null");  // float/double: excluded by Supported
  }
}

void AppendMessage(const Message& message, std::string* out) {
  const Descriptor* d = message.GetDescriptor();
  const Reflection* r = message.GetReflection();
  if (d->well_known_type() == Descriptor::WELLKNOWNTYPE_TIMESTAMP ||
      d->well_known_type() == Descriptor::WELLKNOWNTYPE_DURATION) {
    const int64_t seconds = r->GetInt64(message, d->FindFieldByNumber(1));
    const int32_t nanos = r->GetInt32(message, d->FindFieldByNumber(2));
    if (d->well_known_type() == Descriptor::WELLKNOWNTYPE_TIMESTAMP) {
      AppendTimestamp(seconds, nanos, out);
    } else {
      AppendDuration(seconds, nanos, out);
    }
    return;
  }
  std::vector<const FieldDescriptor*> fields;
  r->ListFields(message, &fields);  // set fields, by number; proto3 defaults are not "set"
  out->push_back('{');
  bool first = true;
  for (const FieldDescriptor* field : fields) {
    if (!first) {
      out->push_back(',');
    }
    first = false;
    AppendString(field->json_name(), out);
    out->push_back(':');
    if (field->is_map()) {
      // Entries sorted by key, so that the document does not depend on hash order.
      const Descriptor* entry = field->message_type();
      const FieldDescriptor* key = entry->FindFieldByNumber(1);
      const FieldDescriptor* value = entry->FindFieldByNumber(2);
      std::vector<const Message*> entries;
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        entries.push_back(&r->GetRepeatedMessage(message, field, i));
      }
      std::string a_scratch;
      std::string b_scratch;
      std::sort(entries.begin(), entries.end(), [&](const Message* a, const Message* b) {
        return a->GetReflection()->GetStringReference(*a, key, &a_scratch) <
               b->GetReflection()->GetStringReference(*b, key, &b_scratch);
      });
      out->push_back('{');
      for (size_t i = 0; i < entries.size(); ++i) {
        if (i > 0) {
          out->push_back(',');
        }
        std::string scratch;
        if (key->cpp_type() == FieldDescriptor::CPPTYPE_STRING) {
          AppendString(entries[i]->GetReflection()->GetStringReference(*entries[i], key, &scratch),
                       out);
        } else {
          out->push_back('"');
          std::string k;
          AppendValue(*entries[i], key, 0, &k);
          if (!k.empty() && k.front() == '"') {
            k = k.substr(1, k.size() - 2);
          }
          out->append(k);
          out->push_back('"');
        }
        out->push_back(':');
        AppendValue(*entries[i], value, 0, out);
      }
      out->push_back('}');
    } else if (field->is_repeated()) {
      out->push_back('[');
      for (int i = 0; i < r->FieldSize(message, field); ++i) {
        if (i > 0) {
          out->push_back(',');
        }
        AppendValue(message, field, i, out);
      }
      out->push_back(']');
    } else {
      AppendValue(message, field, 0, out);
    }
  }
  out->push_back('}');
}

// Which message types this encoder writes itself, checked once per type and thread (records
// and checkpoints in practice): each sink's exporter thread asks for every record, so the
// answer is kept without a lock on that path.
bool SupportedCached(const Descriptor* d) {
  thread_local std::vector<std::pair<const Descriptor*, bool>> seen;
  for (const auto& [descriptor, supported] : seen) {
    if (descriptor == d) {
      return supported;
    }
  }
  seen.emplace_back(d, Supported(d));
  return seen.back().second;
}

}  // namespace

void AppendMessageJson(const Message& message, std::string* out) {
  const bool supported = SupportedCached(message.GetDescriptor());
  if (supported) {
    AppendMessage(message, out);
    return;
  }
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json).ok()) {
    json = "{}";
  }
  out->append(json);
}

}  // namespace podgate::audit::exporting
