// Labels of proto enum values, derived from the descriptors so that every service speaks the same
// words: the value's name without the enum's prefix, in lower case (TERMINATION_TIME_LIMIT of
// enum Termination is "time_limit"; KIND_JVM_PID of nested enum Kind is "jvm_pid"). The prefix
// is the enum's name in UPPER_SNAKE_CASE followed by '_', as the proto style guide writes it.
// Metrics, logs, the v1 browser protocol and the audit CLI use these labels.
#pragma once

#include <optional>
#include <string>
#include <type_traits>

#include "absl/strings/string_view.h"
#include "google/protobuf/descriptor.h"
#include "google/protobuf/generated_enum_reflection.h"

namespace podgate::wire {

// The prefix of `type`'s value names: "TERMINATION_" for Termination.
std::string EnumValuePrefix(const google::protobuf::EnumDescriptor& type);

// The label of a value name of `type` ("TERMINATION_TIME_LIMIT" -> "time_limit"); a name without
// the prefix is only lower-cased.
std::string EnumLabelOfName(const google::protobuf::EnumDescriptor& type, absl::string_view name);

// The label of `value`; `fallback` for 0 (UNSPECIFIED) and for numbers `type` does not name.
std::string EnumLabel(const google::protobuf::EnumDescriptor& type, int value,
                      absl::string_view fallback = "unknown");

template <class E>
requires google::protobuf::is_proto_enum<E>::value std::string EnumLabel(
    E value, absl::string_view fallback = "unknown") {
  return EnumLabel(*google::protobuf::GetEnumDescriptor<E>(), static_cast<int>(value), fallback);
}

// The number of the value whose label or full name is `text` ("decision",
// "EVENT_KIND_DECISION"), in any case when `ignore_case`; 0 (UNSPECIFIED) never matches.
std::optional<int> EnumFromLabel(const google::protobuf::EnumDescriptor& type,
                                 absl::string_view text, bool ignore_case = false);

}  // namespace podgate::wire
