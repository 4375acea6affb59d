#include "wire/enum_label.h"

#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::wire {
namespace {

namespace common = podgate::common::v1;

TEST(EnumLabelTest, LabelsAreTheNamesWithoutThePrefixInLowerCase) {
  EXPECT_EQ(EnumLabel(common::TERMINATION_EXITED), "exited");
  EXPECT_EQ(EnumLabel(common::TERMINATION_TIME_LIMIT), "time_limit");
  EXPECT_EQ(EnumLabel(common::TERMINATION_OUTPUT_LIMIT), "output_limit");
  EXPECT_EQ(EnumLabel(common::TERMINATION_ERROR), "error");
  EXPECT_EQ(EnumLabel(common::CLOSE_REASON_IDLE_TIMEOUT), "idle_timeout");
  EXPECT_EQ(EnumLabel(common::CLOSE_REASON_CREDENTIAL_EXPIRED), "credential_expired");
  EXPECT_EQ(EnumLabel(common::CLOSE_REASON_ERROR), "error");
  EXPECT_EQ(EnumLabel(common::CLOSE_REASON_REMOTE_EXIT), "remote_exit");
  EXPECT_EQ(EnumLabel(common::EVENT_KIND_COMMAND_RESULT), "command_result");
  EXPECT_EQ(EnumLabel(common::VERDICT_DENY), "deny");
  EXPECT_EQ(EnumLabel(common::SESSION_MODE_SHELL), "shell");
  EXPECT_EQ(EnumLabel(common::ContainerCheck::KIND_JVM_PID), "jvm_pid");
}

TEST(EnumLabelTest, UnspecifiedAndUnknownNumbersGiveTheFallback) {
  EXPECT_EQ(EnumLabel(common::TERMINATION_UNSPECIFIED), "unknown");
  EXPECT_EQ(EnumLabel(common::TERMINATION_UNSPECIFIED, "error"), "error");
  EXPECT_EQ(EnumLabel(static_cast<common::CloseReason>(99)), "unknown");
}

// Every value of every podgate enum carries its enum's prefix, so no label keeps a stray prefix
// and no two values share a label.
TEST(EnumLabelTest, EveryValueOfTheCommonEnumsHasItsPrefix) {
  const google::protobuf::FileDescriptor* file = common::Termination_descriptor()->file();
  std::vector<const google::protobuf::EnumDescriptor*> enums;
  for (int i = 0; i < file->enum_type_count(); ++i) {
    enums.push_back(file->enum_type(i));
  }
  for (int i = 0; i < file->message_type_count(); ++i) {
    for (int j = 0; j < file->message_type(i)->enum_type_count(); ++j) {
      enums.push_back(file->message_type(i)->enum_type(j));
    }
  }
  ASSERT_GE(enums.size(), 6u);
  for (const google::protobuf::EnumDescriptor* type : enums) {
    const std::string prefix = EnumValuePrefix(*type);
    for (int i = 0; i < type->value_count(); ++i) {
      EXPECT_TRUE(absl::StartsWith(type->value(i)->name(), prefix))
          << type->full_name() << " " << type->value(i)->name();
    }
  }
}

TEST(EnumLabelTest, FromLabelTakesTheLabelOrTheFullName) {
  const auto& kind = *common::EventKind_descriptor();
  EXPECT_EQ(EnumFromLabel(kind, "decision"), common::EVENT_KIND_DECISION);
  EXPECT_EQ(EnumFromLabel(kind, "EVENT_KIND_DECISION"), common::EVENT_KIND_DECISION);
  EXPECT_EQ(EnumFromLabel(kind, "COMMAND_RESULT"), std::nullopt);
  EXPECT_EQ(EnumFromLabel(kind, "COMMAND_RESULT", true), common::EVENT_KIND_COMMAND_RESULT);
  EXPECT_EQ(EnumFromLabel(kind, "event_kind_decision", true), common::EVENT_KIND_DECISION);
  EXPECT_EQ(EnumFromLabel(kind, "unspecified"), std::nullopt);
  EXPECT_EQ(EnumFromLabel(kind, "EVENT_KIND_UNSPECIFIED"), std::nullopt);
  EXPECT_EQ(EnumFromLabel(kind, "bogus"), std::nullopt);
  EXPECT_EQ(EnumFromLabel(kind, ""), std::nullopt);
}

}  // namespace
}  // namespace podgate::wire
