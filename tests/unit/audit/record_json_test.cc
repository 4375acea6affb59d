// The export sinks' JSON encoder against protobuf's own printer: every document parses back to
// the original message, and without maps it is byte for byte what MessageToJsonString writes.
#include "audit/export/record_json.h"

#include <random>
#include <string>

#include "audit/export/sink.h"
#include "google/protobuf/util/json_util.h"
#include "google/protobuf/util/message_differencer.h"
#include "gtest/gtest.h"
#include "podgate/audit/v1/audit.pb.h"
#include "podgate/common/v1/common.pb.h"

namespace podgate::audit::exporting {
namespace {

using podgate::audit::v1::AuditRecord;
using podgate::audit::v1::SignedCheckpoint;

std::string Encode(const google::protobuf::Message& message) {
  std::string out;
  AppendMessageJson(message, &out);
  return out;
}

std::string Reference(const google::protobuf::Message& message) {
  std::string out;
  EXPECT_TRUE(google::protobuf::util::MessageToJsonString(message, &out).ok());
  return out;
}

template <typename M>
void ExpectParsesBack(const M& original, const std::string& json) {
  M parsed;
  auto status = google::protobuf::util::JsonStringToMessage(json, &parsed);
  ASSERT_TRUE(status.ok()) << status << "\n" << json;
  EXPECT_TRUE(google::protobuf::util::MessageDifferencer::Equals(original, parsed))
      << "original: " << original.ShortDebugString() << "\nparsed: " << parsed.ShortDebugString()
      << "\njson: " << json;
}

// Text with every character class the escaper must handle.
std::string Nasty(std::mt19937& rng) {
  static const char* const kPieces[] = {
      "a", "\"", "\\",   "\n", "\r", "\t", "\x01", "\x1f", "<", ">", "&",
      "]", "é",  "日本", "😀",  " ",  "\b", "\f",   "\x7f", "'", "/", "GC.heap_info"};
  std::uniform_int_distribution<int> len(0, 12);
  std::uniform_int_distribution<size_t> pick(0, std::size(kPieces) - 1);
  std::string s;
  for (int i = len(rng); i > 0; --i) {
    s += kPieces[pick(rng)];
  }
  return s;
}

AuditRecord RandomRecord(std::mt19937& rng, bool with_labels) {
  std::uniform_int_distribution<int> coin(0, 1);
  std::uniform_int_distribution<int> kind(0, 5);
  std::uniform_int_distribution<int64_t> big(-(int64_t{1} << 62), int64_t{1} << 62);
  std::uniform_int_distribution<int32_t> nanos(0, 999999999);
  AuditRecord r;
  r.set_chain_id(Nasty(rng));
  r.set_sequence(big(rng));
  r.set_hash(std::string(32, static_cast<char>(rng())));
  if (coin(rng)) {
    r.set_previous_hash(Nasty(rng));
  }
  r.mutable_stored_time()->set_seconds(1700000000 + (rng() % 100000000));
  // Whole seconds, milliseconds, microseconds and nanoseconds.
  const int32_t n = nanos(rng);
  const int32_t choices[] = {0, n / 1000000 * 1000000, n / 1000 * 1000, n};
  r.mutable_stored_time()->set_nanos(choices[rng() % 4]);
  auto* e = r.mutable_event();
  e->set_id(Nasty(rng));
  if (coin(rng)) {
    e->mutable_time()->set_seconds(rng() % 4000000000);
    e->mutable_time()->set_nanos(choices[rng() % 4]);
  }
  e->set_kind(static_cast<podgate::common::v1::EventKind>(rng() % 8));
  e->set_source_service(coin(rng) ? "exec" : "");
  e->set_session_id(Nasty(rng));
  e->set_command_id(Nasty(rng));
  if (coin(rng)) {
    e->mutable_principal()->set_user(Nasty(rng));
    for (int i = rng() % 4; i > 0; --i) {
      e->mutable_principal()->add_groups(Nasty(rng));
    }
  }
  if (coin(rng)) {
    e->mutable_target()->set_namespace_(Nasty(rng));
    e->mutable_target()->set_pod(Nasty(rng));
    e->mutable_target()->set_cluster(coin(rng) ? "eu-prod" : "");
    if (with_labels) {
      for (int i = rng() % 4; i > 0; --i) {
        (*e->mutable_target()->mutable_pod_labels())[Nasty(rng)] = Nasty(rng);
      }
    }
  }
  switch (kind(rng)) {
    case 0:
      e->mutable_command_request()->set_line(Nasty(rng));
      for (int i = rng() % 5; i > 0; --i) {
        e->mutable_command_request()->add_argv(Nasty(rng));
      }
      break;
    case 1: {
      auto* result = e->mutable_command_result();
      result->set_exit_code(static_cast<int32_t>(rng()));
      result->set_stdout_bytes(big(rng));
      result->mutable_duration()->set_seconds(rng() % 1000);
      result->mutable_duration()->set_nanos(choices[rng() % 4]);
      result->set_output_sha256(Nasty(rng));
      break;
    }
    case 2:
      e->mutable_decision()->set_reason(Nasty(rng));
      break;
    case 3:
      e->mutable_command_result();  // present but empty: {}
      break;
    default:
      break;
  }
  return r;
}

TEST(RecordJsonTest, MatchesProtobufByteForByteWithoutMaps) {
  std::mt19937 rng(17);
  for (int i = 0; i < 3000; ++i) {
    const AuditRecord r = RandomRecord(rng, /*with_labels=*/false);
    const std::string ours = Encode(r);
    ASSERT_EQ(ours, Reference(r)) << r.ShortDebugString();
    ExpectParsesBack(r, ours);
  }
}

TEST(RecordJsonTest, MapsParseBackAndAreSortedByKey) {
  std::mt19937 rng(23);
  for (int i = 0; i < 2000; ++i) {
    const AuditRecord r = RandomRecord(rng, /*with_labels=*/true);
    ExpectParsesBack(r, Encode(r));
  }
  AuditRecord r;
  auto& labels = *r.mutable_event()->mutable_target()->mutable_pod_labels();
  labels["zeta"] = "1";
  labels["alpha"] = "2";
  labels["mid"] = "3";
  EXPECT_EQ(Encode(r), R"({"event":{"target":{"podLabels":{"alpha":"2","mid":"3","zeta":"1"}}}})");
}

TEST(RecordJsonTest, DefaultsAreOmittedAndEmptyMessagesKept) {
  AuditRecord r;
  EXPECT_EQ(Encode(r), "{}");
  r.mutable_event();
  EXPECT_EQ(Encode(r), R"({"event":{}})");
  r.set_sequence(-5);
  EXPECT_EQ(Encode(r), R"({"event":{},"sequence":"-5"})");
}

TEST(RecordJsonTest, UnknownEnumValuesAreNumbers) {
  AuditRecord r;
  r.mutable_event()->set_kind(static_cast<podgate::common::v1::EventKind>(999));
  EXPECT_EQ(Encode(r), R"({"event":{"kind":999}})");
  EXPECT_EQ(Encode(r), Reference(r));
}

TEST(RecordJsonTest, TimestampsAtTheEdgesOfTheirRange) {
  AuditRecord r;
  r.mutable_stored_time()->set_seconds(0);
  r.mutable_stored_time()->set_nanos(1);
  EXPECT_EQ(Encode(r), Reference(r));
  r.mutable_stored_time()->set_seconds(253402300799);  // 9999-12-31T23:59:59
  r.mutable_stored_time()->set_nanos(999999999);
  EXPECT_EQ(Encode(r), Reference(r));
}

TEST(RecordJsonTest, ItemJsonTagsRecordsAndCheckpoints) {
  ExportItem item;
  item.record.set_chain_id("audit-0");
  item.record.set_sequence(7);
  EXPECT_EQ(ItemJson(item), R"({"type":"record","chainId":"audit-0","sequence":"7"})");
  ExportItem empty;
  EXPECT_EQ(ItemJson(empty), R"({"type":"record"})");
  ExportItem checkpoint;
  checkpoint.kind = ExportItem::Kind::kCheckpoint;
  checkpoint.checkpoint.set_chain_id("audit-0");
  checkpoint.checkpoint.set_sequence(9);
  checkpoint.checkpoint.set_signature("\x01\x02");
  EXPECT_EQ(ItemJson(checkpoint),
            R"({"type":"checkpoint","chainId":"audit-0","sequence":"9","signature":"AQI="})");
}

}  // namespace
}  // namespace podgate::audit::exporting
