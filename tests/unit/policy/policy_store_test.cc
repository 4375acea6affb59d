// The store's reloads on real files in a temporary directory: inotify on an atomic rename, an
// in-place write, a Kubernetes ConfigMap symlink swap, the stat fallback, refused documents
// (kept out, logged once, counted, reported) and decisions under concurrent reloads.
#include "policy/policy_store.h"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "policy/policy_loader.h"
#include "support/test_pki.h"

namespace podgate::policy {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

// A policy allowing exactly `program` to group dev in namespace app, under rule `rule`.
std::string Doc(const std::string& rule, const std::string& program) {
  return absl::StrCat("apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n  - id: ", rule,
                      "\n    effect: allow\n    subjects: {groups: [dev]}\n"
                      "    targets: {namespaces: [app]}\n    command: {program: ",
                      program, "}\n");
}

constexpr char kBroken[] =
    "apiVersion: podgate.io/v1\nkind: CommandPolicy\nrules:\n  - id: x\n    efect: allow\n";

void WriteFile(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// Writes to a temporary name and renames over `path`, as editors and kubectl cp do.
void ReplaceFile(const std::string& path, const std::string& text) {
  WriteFile(path + ".tmp", text);
  fs::rename(path + ".tmp", path);
}

podgate::policy::v1::AuthorizeRequest Request(const std::string& program) {
  podgate::policy::v1::AuthorizeRequest r;
  r.mutable_principal()->set_user("u");
  r.mutable_principal()->add_groups("dev");
  r.mutable_target()->set_namespace_("app");
  r.mutable_target()->set_pod("p");
  r.mutable_target()->set_container("c");
  r.mutable_command()->add_argv(program);
  return r;
}

class RecordingSink : public PolicyChangeSink {
 public:
  void OnPolicyChange(const podgate::common::v1::PolicyChangeDetail& change) override {
    absl::MutexLock lock(&mu_);
    changes_.push_back(change);
  }
  std::vector<podgate::common::v1::PolicyChangeDetail> changes() {
    absl::MutexLock lock(&mu_);
    return changes_;
  }

 private:
  absl::Mutex mu_;
  std::vector<podgate::common::v1::PolicyChangeDetail> changes_;
};

double MetricValue(prometheus::Registry& registry, const std::string& name) {
  for (const auto& family : registry.Collect()) {
    if (family.name == name && !family.metric.empty()) {
      const auto& m = family.metric[0];
      return family.type == prometheus::MetricType::Counter ? m.counter.value : m.gauge.value;
    }
  }
  return -1;
}

// The store publishes a version or a refusal before it counts it in the metrics, so a test that
// has seen the store change waits (up to 3 s) for the metric to follow; returns the last value.
double WaitForMetric(prometheus::Registry& registry, const std::string& name, double want) {
  const absl::Time start = absl::Now();
  double value = MetricValue(registry, name);
  while (value != want && absl::Now() - start < absl::Seconds(3)) {
    absl::SleepFor(absl::Milliseconds(5));
    value = MetricValue(registry, name);
  }
  return value;
}

// Waits until the store's version is `version`; returns how long it took, or nullopt.
std::optional<absl::Duration> WaitForVersion(const PolicyStore& store, const std::string& version,
                                             absl::Duration timeout = absl::Seconds(3)) {
  const absl::Time start = absl::Now();
  while (absl::Now() - start < timeout) {
    if (store.Current()->version() == version) {
      return absl::Now() - start;
    }
    absl::SleepFor(absl::Milliseconds(5));
  }
  return std::nullopt;
}

class PolicyStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = podgate::testing::MakeTempDir("policy-store");
    path_ = dir_ + "/policy.yaml";
  }
  void TearDown() override { fs::remove_all(dir_); }

  prometheus::Registry registry_;
  PolicyMetrics metrics_{registry_};
  RecordingSink sink_;
  std::string dir_;
  std::string path_;
};

TEST_F(PolicyStoreTest, BeforeLoadingEverythingIsDenied) {
  PolicyStore store(&metrics_, &sink_);
  auto d = store.Current()->Evaluate(Request("free"));
  EXPECT_EQ(d.verdict(), podgate::common::v1::VERDICT_DENY);
  EXPECT_EQ(d.rule(), "default-deny");
  EXPECT_EQ(d.policy_version(), "none");
  EXPECT_FALSE(store.StartWatching(absl::Seconds(1)).ok());
  EXPECT_EQ(store.Reload().code(), absl::StatusCode::kFailedPrecondition);
}

TEST_F(PolicyStoreTest, LoadFileRefusesMissingAndInvalidDocuments) {
  PolicyStore store(&metrics_, &sink_);
  absl::Status missing = store.LoadFile(dir_ + "/nope.yaml");
  EXPECT_EQ(missing.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(missing.message()), HasSubstr("cannot read"));
  WriteFile(path_, kBroken);
  absl::Status invalid = store.LoadFile(path_);
  EXPECT_EQ(invalid.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(invalid.message()), HasSubstr("policy.yaml:4:5: rule x: effect"));
  EXPECT_EQ(store.Current()->version(), "none");
}

TEST_F(PolicyStoreTest, LoadFileSetsMetricsAndTellsTheSink) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  EXPECT_EQ(store.Current()->version(), DocumentVersion(Doc("a", "free")));
  EXPECT_EQ(MetricValue(registry_, "podgate_policy_reloads_total"), 1);
  EXPECT_EQ(MetricValue(registry_, "podgate_policy_rules"), 1);
  EXPECT_EQ(MetricValue(registry_, "podgate_policy_version_info"), 1);
  ASSERT_EQ(sink_.changes().size(), 1u);
  EXPECT_TRUE(sink_.changes()[0].accepted());
  EXPECT_EQ(sink_.changes()[0].previous_version(), "none");
  EXPECT_EQ(sink_.changes()[0].source(), path_);
}

TEST_F(PolicyStoreTest, RenameIntoPlaceReloadsWithinASecondViaInotify) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  // A long poll interval: only inotify can be this fast.
  ASSERT_TRUE(store.StartWatching(absl::Seconds(30)).ok());
  ReplaceFile(path_, Doc("b", "df"));
  auto took = WaitForVersion(store, DocumentVersion(Doc("b", "df")));
  ASSERT_TRUE(took.has_value());
  EXPECT_LT(*took, absl::Seconds(1));
  EXPECT_EQ(store.Current()->Evaluate(Request("df")).rule(), "b");
  EXPECT_EQ(store.Current()->Evaluate(Request("free")).rule(), "default-deny");
}

TEST_F(PolicyStoreTest, InPlaceWriteReloadsViaInotify) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  ASSERT_TRUE(store.StartWatching(absl::Seconds(30)).ok());
  WriteFile(path_, Doc("b", "df"));
  auto took = WaitForVersion(store, DocumentVersion(Doc("b", "df")));
  ASSERT_TRUE(took.has_value());
  EXPECT_LT(*took, absl::Seconds(1));
}

TEST_F(PolicyStoreTest, ConfigMapSymlinkSwapReloads) {
  // The layout kubelet gives a ConfigMap volume: policy.yaml -> ..data/policy.yaml,
  // ..data -> ..<timestamp>; an update writes a new timestamped directory and renames a new
  // ..data symlink over the old one.
  fs::create_directory(dir_ + "/..2026_11_28_01");
  WriteFile(dir_ + "/..2026_11_28_01/policy.yaml", Doc("a", "free"));
  fs::create_directory_symlink("..2026_11_28_01", dir_ + "/..data");
  fs::create_symlink("..data/policy.yaml", path_);
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  ASSERT_TRUE(store.StartWatching(absl::Seconds(30)).ok());

  fs::create_directory(dir_ + "/..2026_11_28_02");
  WriteFile(dir_ + "/..2026_11_28_02/policy.yaml", Doc("b", "df"));
  fs::create_directory_symlink("..2026_11_28_02", dir_ + "/..data_tmp");
  fs::rename(dir_ + "/..data_tmp", dir_ + "/..data");
  fs::remove_all(dir_ + "/..2026_11_28_01");
  auto took = WaitForVersion(store, DocumentVersion(Doc("b", "df")));
  ASSERT_TRUE(took.has_value());
  EXPECT_LT(*took, absl::Seconds(1));
  EXPECT_EQ(store.rejected_reloads(), 0);
}

TEST_F(PolicyStoreTest, StatFallbackReloadsWithoutInotify) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  ASSERT_TRUE(store.StartWatching(absl::Milliseconds(50), /*use_inotify=*/false).ok());
  ReplaceFile(path_, Doc("b", "df"));
  auto took = WaitForVersion(store, DocumentVersion(Doc("b", "df")));
  ASSERT_TRUE(took.has_value()) << store.Current()->version() << " "
                                << DocumentVersion(Doc("b", "df"));
  EXPECT_LT(*took, absl::Seconds(1));
}

TEST_F(PolicyStoreTest, BrokenEditKeepsTheLastGoodVersionAndIsCountedOnce) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  const std::string good = store.Current()->version();
  ASSERT_TRUE(store.StartWatching(absl::Milliseconds(50)).ok());

  ReplaceFile(path_, kBroken);
  const absl::Time start = absl::Now();
  while (store.rejected_reloads() == 0 && absl::Now() - start < absl::Seconds(3)) {
    absl::SleepFor(absl::Milliseconds(5));
  }
  EXPECT_EQ(store.rejected_reloads(), 1);
  EXPECT_EQ(store.Current()->version(), good);
  EXPECT_EQ(store.Current()->Evaluate(Request("free")).rule(), "a");
  EXPECT_THAT(store.last_rejection(), HasSubstr("policy.yaml:4:5: rule x: effect must be"));
  EXPECT_EQ(WaitForMetric(registry_, "podgate_policy_reload_failures_total", 1), 1);
  // The same broken bytes seen again (another event, a poll) are not counted again.
  ReplaceFile(path_, kBroken);
  absl::SleepFor(absl::Milliseconds(300));
  EXPECT_FALSE(store.Reload().ok());
  EXPECT_EQ(store.rejected_reloads(), 1);
  EXPECT_EQ(MetricValue(registry_, "podgate_policy_reload_failures_total"), 1);
  const auto changes = sink_.changes();
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_FALSE(changes[1].accepted());
  EXPECT_EQ(changes[1].version(), good);
  EXPECT_THAT(changes[1].message(), HasSubstr("effect must be allow or deny"));

  // A fixed document goes in.
  ReplaceFile(path_, Doc("b", "df"));
  ASSERT_TRUE(WaitForVersion(store, DocumentVersion(Doc("b", "df"))).has_value());
  EXPECT_EQ(WaitForMetric(registry_, "podgate_policy_reloads_total", 2), 2);
}

TEST_F(PolicyStoreTest, DeletedFileKeepsTheVersion) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  const std::string good = store.Current()->version();
  fs::remove(path_);
  absl::Status s = store.Reload();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store.Current()->version(), good);
  EXPECT_EQ(store.rejected_reloads(), 1);
}

TEST_F(PolicyStoreTest, UnchangedDocumentIsANoOp) {
  WriteFile(path_, Doc("a", "free"));
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());
  auto before = store.Current();
  ASSERT_TRUE(store.Reload().ok());
  EXPECT_EQ(store.Current().get(), before.get());
  EXPECT_EQ(sink_.changes().size(), 1u);
}

TEST_F(PolicyStoreTest, ConcurrentDecisionsSeeOldOrNewNeverAMix) {
  // Version A allows free (rule a) and not df; version B allows df (rule b) and not free. Each
  // decision reports the version that made it; the verdicts must be that version's.
  const std::string doc_a = Doc("a", "free");
  const std::string doc_b = absl::StrCat(Doc("b", "df"), "# b\n");
  const std::string va = DocumentVersion(doc_a);
  const std::string vb = DocumentVersion(doc_b);
  WriteFile(path_, doc_a);
  PolicyStore store(&metrics_, &sink_);
  ASSERT_TRUE(store.LoadFile(path_).ok());

  std::atomic<bool> stop{false};
  std::atomic<int64_t> seen_a{0}, seen_b{0}, mixed{0};
  std::vector<std::thread> workers;
  for (int t = 0; t < 4; ++t) {
    workers.emplace_back([&] {
      const auto free_req = Request("free");
      const auto df_req = Request("df");
      while (!stop.load()) {
        const auto policy = store.Current();
        const auto d1 = policy->Evaluate(free_req);
        const auto d2 = policy->Evaluate(df_req);
        const bool a = d1.policy_version() == va && d1.rule() == "a" && d2.rule() == "default-deny";
        const bool b = d1.policy_version() == vb && d1.rule() == "default-deny" && d2.rule() == "b";
        if (d1.policy_version() != d2.policy_version() || !(a || b)) {
          ++mixed;
        }
        (a ? seen_a : seen_b)++;
        // A decision through the store alone must match its own version too.
        const auto d = store.Current()->Evaluate(free_req);
        if ((d.policy_version() == va) != (d.rule() == "a")) {
          ++mixed;
        }
      }
    });
  }
  for (int i = 0; i < 100; ++i) {
    ReplaceFile(path_, i % 2 == 0 ? doc_b : doc_a);
    ASSERT_TRUE(store.Reload().ok());
    absl::SleepFor(absl::Milliseconds(1));
  }
  stop = true;
  for (auto& w : workers) {
    w.join();
  }
  EXPECT_EQ(mixed.load(), 0);
  EXPECT_GT(seen_a.load(), 0);
  EXPECT_GT(seen_b.load(), 0);
  EXPECT_EQ(store.rejected_reloads(), 0);
}

}  // namespace
}  // namespace podgate::policy
