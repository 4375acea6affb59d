#include "audit/export/sink.h"

#include <string>

#include "absl/strings/str_cat.h"
#include "audit/export/record_json.h"

namespace podgate::audit::exporting {

namespace {

// `{"type":"<type>",` followed by the rest of the message's JSON object.
std::string Tagged(const google::protobuf::Message& message, const char* type) {
  std::string json;
  AppendMessageJson(message, &json);
  if (json.size() < 2 || json.front() != '{' || json == "{}") {
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
