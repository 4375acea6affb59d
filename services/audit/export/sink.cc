#include "audit/export/sink.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "google/protobuf/util/json_util.h"

namespace podgate::audit::exporting {

namespace {

// `{"type":"<type>",` followed by the rest of the message's JSON object.
std::string Tagged(const google::protobuf::Message& message, const char* type) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = false;
  std::string json;
  if (!google::protobuf::util::MessageToJsonString(message, &json, options).ok() ||
      json.size() < 2 || json.front() != '{') {
    return absl::StrCat("{\"type\":\"", type, "\"}");
  }
  if (json == "{}") {
    return absl::StrCat("{\"type\":\"", type, "\"}");
  }
  return absl::StrCat("{\"type\":\"", type, "\",", json.substr(1));
}

}  // namespace

std::string ItemJson(const ExportItem& item) {
  return item.kind == ExportItem::Kind::kRecord ? Tagged(item.record, "record")
                                                : Tagged(item.checkpoint, "checkpoint");
}

}  // namespace podgate::audit::exporting
