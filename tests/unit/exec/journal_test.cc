// The journal of running commands on a real directory: entries round-trip, the bound holds,
// nothing half-written or damaged is ever returned as an entry, and the effective
// securityContext the root guard reads.
#include "exec/journal.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <mutex>
#include <thread>

#include "absl/synchronization/notification.h"
#include "exec/kube.h"
#include "gtest/gtest.h"

namespace podgate::exec {
namespace {

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "/journal-test-XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  static JournalEntry Entry(const std::string& id) {
    JournalEntry e;
    e.result_event_id = id;
    e.close_event_id = "c" + id;
    e.session_id = "s1";
    e.command_id = "cmd \"1\"";
    e.principal.set_user("alice");
    e.principal.add_groups("admins");
    e.target.set_namespace_("team");
    e.target.set_pod("app-1");
    e.target.set_container("main");
    e.target.set_cluster("eu-prod");
    e.source_address = "ipv4:127.0.0.1:5555";
    e.pid = "4242";
    e.start_ticks = "123456";
    e.started = absl::FromUnixMillis(1700000000123);
    e.session_opened = absl::FromUnixMillis(1700000000000);
    e.line = "sleep 'a b' \xc3\xa9";
    e.trace_id = "0af7651916cd43dd8448eb211c80319c";
    return e;
  }

  std::string dir_;
};

TEST_F(JournalTest, AnEntryRoundTripsThroughTheDirectory) {
  auto journal = Journal::Open(dir_, 10);
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_TRUE((*journal)->Add(Entry("ab01")).ok());
  EXPECT_EQ((*journal)->size(), 1);
  std::vector<JournalEntry> loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(EncodeJournalEntry(loaded[0]), EncodeJournalEntry(Entry("ab01")));
  EXPECT_EQ(loaded[0].line, "sleep 'a b' \xc3\xa9");
  EXPECT_EQ(loaded[0].started, absl::FromUnixMillis(1700000000123));
  struct stat st;
  ASSERT_EQ(stat((dir_ + "/ab01.json").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  (*journal)->Remove("ab01");
  EXPECT_EQ((*journal)->size(), 0);
  EXPECT_TRUE((*journal)->Load().empty());
}

// The two steps of a command's entry: created "not launched" (no pid) while the command is
// launched, then its launch line rewritten in place with the pid before "go" — same file, same
// size, only the first line changed. A pid or start time that is not a number is refused before
// anything is written; a launch line for an entry that does not exist fails and creates none.
TEST_F(JournalTest, TheLaunchLineIsRecordedInPlaceInAnEntryWrittenBeforeTheLaunch) {
  auto journal = Journal::Open(dir_, 10);
  ASSERT_TRUE(journal.ok()) << journal.status();
  JournalEntry entry = Entry("ab02");
  entry.pid.clear();
  entry.start_ticks.clear();
  ASSERT_TRUE((*journal)->Add(entry).ok());
  const std::string path = dir_ + "/ab02.json";
  std::vector<JournalEntry> loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].pid, "");
  EXPECT_EQ(loaded[0].start_ticks, "");
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0);
  std::ifstream in(path, std::ios::binary);
  const std::string text_before((std::istreambuf_iterator<char>(in)), {});
  EXPECT_TRUE(text_before.starts_with("podgate-launch -  ")) << text_before;

  ASSERT_TRUE((*journal)->RecordLaunch("ab02", "4242", "123456").ok());
  loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(EncodeJournalEntry(loaded[0]), EncodeJournalEntry(Entry("ab02")));
  struct stat after;
  ASSERT_EQ(stat(path.c_str(), &after), 0);
  EXPECT_EQ(after.st_ino, before.st_ino) << "the same file, not a new one";
  EXPECT_EQ(after.st_size, before.st_size);
  std::ifstream in2(path, std::ios::binary);
  const std::string text_after((std::istreambuf_iterator<char>(in2)), {});
  EXPECT_EQ(text_after.substr(Journal::kLaunchLineBytes),
            text_before.substr(Journal::kLaunchLineBytes));
  EXPECT_EQ(text_after.substr(0, Journal::kLaunchLineBytes), JournalLaunchLine("4242", "123456"));
  EXPECT_EQ((*journal)->size(), 1) << "a launch line is not an entry";

  const std::string too_long(21, '1');
  for (auto [pid, start] : {std::pair{"-1", "1"}, std::pair{"42; rm", "1"}, std::pair{"", ""},
                            std::pair{"42", ""}, std::pair{"42", too_long.c_str()}}) {
    EXPECT_EQ((*journal)->RecordLaunch("ab02", pid, start).code(),
              absl::StatusCode::kInvalidArgument)
        << pid << " " << start;
  }
  EXPECT_EQ((*journal)->RecordLaunch("../ab02", "1", "1").code(),
            absl::StatusCode::kInvalidArgument);
  loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].pid, "4242") << "a refused launch line changes nothing";
  EXPECT_FALSE((*journal)->RecordLaunch("ab03", "1", "1").ok());
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/ab03.json"));
}

// An entry an older exec wrote (JSON version 1, no launch line, its pid inside) is still read,
// so an upgrade in the middle of a command still stops it; without its pid it is damaged.
TEST_F(JournalTest, AnOlderExecsEntryIsRead) {
  const std::string v1 =
      R"({"version":1,"result_event_id":"ab04","close_event_id":"cab04","session_id":"s1",)"
      R"("trace_id":"0af7651916cd43dd8448eb211c80319c","command_id":"c1","user":"alice",)"
      R"("groups":["admins"],"namespace":"team","pod":"app-1","container":"main",)"
      R"("cluster":"eu-prod","source_address":"ipv4:127.0.0.1:5555","pid":"4242",)"
      R"("start_ticks":"123456","started_unix_ms":1700000000123,)"
      R"("session_opened_unix_ms":1700000000000,"line":"sleep 1"})"
      "\n";
  absl::StatusOr<JournalEntry> e = DecodeJournalEntry(v1);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->pid, "4242");
  EXPECT_EQ(e->start_ticks, "123456");
  EXPECT_EQ(e->target.pod(), "app-1");
  EXPECT_EQ(e->line, "sleep 1");
  std::string no_pid = v1;
  no_pid.replace(no_pid.find(R"("pid":"4242",)"), 13, "");
  EXPECT_EQ(DecodeJournalEntry(no_pid).status().message(), "\"pid\" is missing or not a string");
  std::ofstream(dir_ + "/ab04.json") << v1;
  auto journal = Journal::Open(dir_, 10);
  ASSERT_TRUE(journal.ok());
  std::vector<JournalEntry> loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].pid, "4242");
}

// An entry is written in place (no temporary file and rename): a file already there under its
// name is never overwritten or removed, the write fails and its place in the bound is freed.
// What a crash in the middle of a write leaves, the same file cut off, is skipped and removed
// at the next start (its command never ran: "go" waits for Add).
TEST_F(JournalTest, AnEntryIsWrittenInPlaceAndNeverOverwritesAFile) {
  auto journal = Journal::Open(dir_, 10);
  ASSERT_TRUE(journal.ok()) << journal.status();
  ASSERT_TRUE((*journal)->Add(Entry("cd01")).ok());
  std::vector<std::string> names;
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    names.push_back(f.path().filename().string());
  }
  EXPECT_EQ(names, std::vector<std::string>{"cd01.json"}) << "no temporary file left";

  std::ofstream(dir_ + "/cd02.json") << "someone else's";
  ASSERT_EQ((*journal)->size(), 1);
  const absl::Status s = (*journal)->Add(Entry("cd02"));
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("cd02.json"), std::string::npos) << s;
  EXPECT_EQ((*journal)->size(), 1);
  std::ifstream in(dir_ + "/cd02.json");
  std::string kept((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  EXPECT_EQ(kept, "someone else's");

  const std::string whole = EncodeJournalEntry(Entry("cd03"));
  std::ofstream(dir_ + "/cd03.json") << whole.substr(0, whole.size() / 2);
  auto reopened = Journal::Open(dir_, 10);
  ASSERT_TRUE(reopened.ok());
  std::vector<JournalEntry> loaded = (*reopened)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].result_event_id, "cd01");
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/cd03.json"));
}

// AddAsync: the bound is checked at once (no callback then); otherwise the callback runs on the
// journal's thread, never inline, once the entry is durable; many entries queued together are
// all written (one directory fsync per batch); a failed write frees its place.
TEST_F(JournalTest, AsyncAddsAreWrittenOnTheJournalsThreadAndReportEachOutcome) {
  auto journal = Journal::Open(dir_, 64);
  ASSERT_TRUE(journal.ok()) << journal.status();
  std::mutex mu;
  std::condition_variable cv;
  int done = 0;
  int failed = 0;
  bool inline_call = false;
  const std::thread::id caller = std::this_thread::get_id();
  for (int i = 0; i < 50; ++i) {
    char id[8];
    std::snprintf(id, sizeof(id), "e%02d", i);
    ASSERT_TRUE((*journal)
                    ->AddAsync(Entry(id),
                               [&](absl::Status s) {
                                 std::lock_guard<std::mutex> lock(mu);
                                 inline_call = inline_call || std::this_thread::get_id() == caller;
                                 failed += s.ok() ? 0 : 1;
                                 ++done;
                                 cv.notify_all();
                               })
                    .ok());
  }
  {
    std::unique_lock<std::mutex> lock(mu);
    ASSERT_TRUE(cv.wait_for(lock, std::chrono::seconds(20), [&] { return done == 50; }));
  }
  EXPECT_FALSE(inline_call);
  EXPECT_EQ(failed, 0);
  EXPECT_EQ((*journal)->size(), 50);
  EXPECT_EQ((*journal)->Load().size(), 50u);

  // A write that fails on the thread (the file's name is taken) reports its error and frees
  // its place.
  std::ofstream(dir_ + "/f00.json") << "taken";
  absl::Status result;
  absl::Notification written;
  ASSERT_TRUE((*journal)
                  ->AddAsync(Entry("f00"),
                             [&](absl::Status s) {
                               result = s;
                               written.Notify();
                             })
                  .ok());
  written.WaitForNotification();
  EXPECT_FALSE(result.ok());
  EXPECT_EQ((*journal)->size(), 50);
}

TEST_F(JournalTest, TheBoundRefusesAnEntryAndFreesItsPlaceOnRemove) {
  auto journal = Journal::Open(dir_, 2);
  ASSERT_TRUE(journal.ok());
  ASSERT_TRUE((*journal)->Add(Entry("01")).ok());
  ASSERT_TRUE((*journal)->Add(Entry("02")).ok());
  absl::Status full = (*journal)->Add(Entry("03"));
  EXPECT_EQ(full.code(), absl::StatusCode::kResourceExhausted) << full;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/03.json"));
  (*journal)->Remove("01");
  EXPECT_TRUE((*journal)->Add(Entry("03")).ok());
  // A reopened journal counts what is on disk.
  auto again = Journal::Open(dir_, 2);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->size(), 2);
  EXPECT_EQ((*again)->Add(Entry("04")).code(), absl::StatusCode::kResourceExhausted);
}

TEST_F(JournalTest, DamagedOrForeignFilesAreSkippedAndRemoved) {
  {
    auto journal = Journal::Open(dir_, 10);
    ASSERT_TRUE(journal.ok());
    ASSERT_TRUE((*journal)->Add(Entry("0a")).ok());
  }
  std::ofstream(dir_ + "/0b.json") << "{\"version\": 1, \"pid\": ";  // cut off
  std::ofstream(dir_ + "/0c.json") << "[1, 2]";
  std::string wrong_pid = EncodeJournalEntry(Entry("0d"));
  wrong_pid.replace(wrong_pid.find(" 4242 "), 6, " -1;r ");
  std::ofstream(dir_ + "/0d.json") << wrong_pid;
  // A launch line cut off, and one missing (the JSON of a version with a launch line alone).
  std::ofstream(dir_ + "/0h.json") << EncodeJournalEntry(Entry("0h")).substr(0, 30);
  std::ofstream(dir_ + "/0i.json")
      << EncodeJournalEntry(Entry("0i")).substr(Journal::kLaunchLineBytes);
  std::ofstream(dir_ + "/0e.json") << EncodeJournalEntry(Entry("0f"));      // name and id differ
  std::ofstream(dir_ + "/0g.json.tmp") << EncodeJournalEntry(Entry("0g"));  // never renamed
  std::ofstream(dir_ + "/notes.txt") << "hello";
  std::ofstream(dir_ + "/big.json") << std::string(Journal::kMaxEntryBytes + 1, ' ');
  auto journal = Journal::Open(dir_, 10);
  ASSERT_TRUE(journal.ok());
  std::vector<JournalEntry> loaded = (*journal)->Load();
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].result_event_id, "0a");
  std::vector<std::string> left;
  for (const auto& f : std::filesystem::directory_iterator(dir_)) {
    left.push_back(f.path().filename().string());
  }
  EXPECT_EQ(left, std::vector<std::string>{"0a.json"});
}

// The cluster survives the round trip; an entry an exec from before clusters wrote (no
// "cluster") reads as the default cluster (""); a cluster of the wrong type is an error.
TEST_F(JournalTest, TheClusterIsKeptAndAnOldEntryMeansTheDefault) {
  absl::StatusOr<JournalEntry> e = DecodeJournalEntry(EncodeJournalEntry(Entry("01")));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->target.cluster(), "eu-prod");
  std::string old = EncodeJournalEntry(Entry("01"));
  const std::string field = "\"cluster\":\"eu-prod\",";
  old.replace(old.find(field), field.size(), "");
  ASSERT_EQ(old.find("cluster"), std::string::npos) << old;
  e = DecodeJournalEntry(old);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->target.cluster(), "");
  EXPECT_EQ(e->target.pod(), "app-1");
  std::string wrong = EncodeJournalEntry(Entry("01"));
  wrong.replace(wrong.find(field), field.size(), "\"cluster\":1,");
  EXPECT_EQ(DecodeJournalEntry(wrong).status().message(), "\"cluster\" is not a string");
}

// The session's trace id survives the round trip (recovery's records carry it); an entry an exec
// from before trace context wrote reads as none; a trace id of the wrong type is an error.
TEST_F(JournalTest, TheTraceIdIsKeptAndAnOldEntryHasNone) {
  absl::StatusOr<JournalEntry> e = DecodeJournalEntry(EncodeJournalEntry(Entry("01")));
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->trace_id, "0af7651916cd43dd8448eb211c80319c");
  const std::string field = ",\"trace_id\":\"0af7651916cd43dd8448eb211c80319c\"";
  std::string old = EncodeJournalEntry(Entry("01"));
  ASSERT_NE(old.find(field), std::string::npos) << old;
  old.replace(old.find(field), field.size(), "");
  e = DecodeJournalEntry(old);
  ASSERT_TRUE(e.ok()) << e.status();
  EXPECT_EQ(e->trace_id, "");
  std::string wrong = EncodeJournalEntry(Entry("01"));
  wrong.replace(wrong.find(field), field.size(), ",\"trace_id\":7");
  EXPECT_EQ(DecodeJournalEntry(wrong).status().message(), "\"trace_id\" is not a string");
}

TEST_F(JournalTest, DecodeSaysWhichFieldIsWrong) {
  EXPECT_EQ(DecodeJournalEntry("nope").status().code(), absl::StatusCode::kInvalidArgument);
  std::string text = EncodeJournalEntry(Entry("01"));
  text.replace(text.find("\"version\":2"), 11, "\"version\":1");
  EXPECT_NE(DecodeJournalEntry(text).status().message().find("version"), std::string::npos);
  text = EncodeJournalEntry(Entry("01"));
  text.replace(0, 14, "podgate-lunch ");
  EXPECT_EQ(DecodeJournalEntry(text).status().message(),
            "the launch line does not start with \"podgate-launch \"");
  text = EncodeJournalEntry(Entry("01"));
  text.replace(text.find(" 123456"), 7, "       ");
  EXPECT_EQ(DecodeJournalEntry(text).status().message(), "the launch line holds no start time");
  text = EncodeJournalEntry(Entry("01"));
  text[Journal::kLaunchLineBytes - 1] = ' ';
  EXPECT_EQ(DecodeJournalEntry(text).status().message(), "the launch line is cut off");
  text = EncodeJournalEntry(Entry("01"));
  text.replace(text.find("\"pod\":\"app-1\""), 13, "\"pod\":7");
  EXPECT_NE(DecodeJournalEntry(text).status().message().find("pod"), std::string::npos);
}

TEST_F(JournalTest, AJournalIsADirectory) {
  const std::string file = dir_ + "/file";
  std::ofstream(file) << "x";
  EXPECT_FALSE(Journal::Open(file, 10).ok());
  EXPECT_FALSE(Journal::Open("", 10).ok());
}

// The root guard's reading of the spec: each field of the container's securityContext
// overrides the pod's.
TEST(EffectiveSecurityContextTest, TheContainerOverridesThePodFieldByField) {
  PodView pod;
  pod.security.run_as_user = 0;
  pod.security.run_as_non_root = false;
  pod.containers.push_back({"a", "img", {}});
  pod.containers.push_back({"b", "img", {1000, std::nullopt}});
  pod.containers.push_back({"c", "img", {std::nullopt, true}});
  EXPECT_EQ(EffectiveSecurityContext(pod, "a").run_as_user, 0);
  EXPECT_EQ(EffectiveSecurityContext(pod, "b").run_as_user, 1000);
  EXPECT_EQ(EffectiveSecurityContext(pod, "b").run_as_non_root, false);
  EXPECT_EQ(EffectiveSecurityContext(pod, "c").run_as_user, 0);
  EXPECT_EQ(EffectiveSecurityContext(pod, "c").run_as_non_root, true);
  PodView bare;
  bare.containers.push_back({"a", "img", {}});
  EXPECT_FALSE(EffectiveSecurityContext(bare, "a").run_as_user.has_value());
}

}  // namespace
}  // namespace podgate::exec
