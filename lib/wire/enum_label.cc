#include "wire/enum_label.h"

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/strip.h"

namespace podgate::wire {

std::string EnumValuePrefix(const google::protobuf::EnumDescriptor& type) {
  std::string prefix;
  const std::string& name = type.name();
  for (size_t i = 0; i < name.size(); ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (i > 0 && absl::ascii_isupper(c)) {
      prefix.push_back('_');
    }
    prefix.push_back(absl::ascii_toupper(c));
  }
  prefix.push_back('_');
  return prefix;
}

std::string EnumLabelOfName(const google::protobuf::EnumDescriptor& type, absl::string_view name) {
  const std::string prefix = EnumValuePrefix(type);
  return absl::AsciiStrToLower(absl::StripPrefix(name, prefix));
}

std::string EnumLabel(const google::protobuf::EnumDescriptor& type, int value,
                      absl::string_view fallback) {
  const google::protobuf::EnumValueDescriptor* v = type.FindValueByNumber(value);
  if (value == 0 || v == nullptr) {
    return std::string(fallback);
  }
  return EnumLabelOfName(type, v->name());
}

std::optional<int> EnumFromLabel(const google::protobuf::EnumDescriptor& type,
                                 absl::string_view text, bool ignore_case) {
  const auto same = [ignore_case](absl::string_view a, absl::string_view b) {
    return ignore_case ? absl::EqualsIgnoreCase(a, b) : a == b;
  };
  for (int i = 0; i < type.value_count(); ++i) {
    const google::protobuf::EnumValueDescriptor& value = *type.value(i);
    if (value.number() != 0 &&
        (same(text, value.name()) || same(text, EnumLabelOfName(type, value.name())))) {
      return value.number();
    }
  }
  return std::nullopt;
}

}  // namespace podgate::wire
