// A fast proto3 JSON encoder for what the export sinks send: the same document as protobuf's
// MessageToJsonString (lowerCamel names, enums by name, 64-bit integers as strings, bytes as
// base64, Timestamp and Duration as strings, default values omitted), written directly from
// reflection instead of through protobuf's generic binary-to-JSON converter, which costs most of
// an export's CPU. A message with a type this encoder does not handle (float, double, Any,
// Struct, wrappers) is encoded by MessageToJsonString instead, so the output is always valid.
// record_json_test parses every output back and compares it with the original message.
#pragma once

#include <string>

#include "google/protobuf/message.h"

namespace podgate::audit::exporting {

// Appends `message`'s JSON object to `*out`.
void AppendMessageJson(const google::protobuf::Message& message, std::string* out);

}  // namespace podgate::audit::exporting
