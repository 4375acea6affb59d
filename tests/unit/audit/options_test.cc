// podgate-audit's flags → AuditOptions: the values given, the defaults, and one clear error a
// bad flag (the texts the process tests and operators see).
#include "audit/options.h"

#include <cstdlib>
#include <functional>
#include <string>

#include "absl/flags/declare.h"
#include "absl/flags/flag.h"
#include "absl/flags/reflection.h"
#include "gtest/gtest.h"
#include "support/test_pki.h"

ABSL_DECLARE_FLAG(std::string, store);
ABSL_DECLARE_FLAG(std::string, chain_id);
ABSL_DECLARE_FLAG(int64_t, queue_capacity);
ABSL_DECLARE_FLAG(int64_t, max_batch);
ABSL_DECLARE_FLAG(absl::Duration, store_recheck_interval);
ABSL_DECLARE_FLAG(absl::Duration, retention);
ABSL_DECLARE_FLAG(absl::Duration, retention_interval);
ABSL_DECLARE_FLAG(std::string, export_config);
ABSL_DECLARE_FLAG(absl::Duration, export_lease_ttl);
ABSL_DECLARE_FLAG(absl::Duration, export_poll_interval);
ABSL_DECLARE_FLAG(int64_t, max_followers);
ABSL_DECLARE_FLAG(int64_t, follower_queue);
ABSL_DECLARE_FLAG(absl::Duration, follow_poll_interval);
ABSL_DECLARE_FLAG(std::string, grpc_address);
ABSL_DECLARE_FLAG(absl::Duration, drain_timeout);
ABSL_DECLARE_FLAG(std::string, checkpoint_key);
ABSL_DECLARE_FLAG(absl::Duration, checkpoint_interval);
ABSL_DECLARE_FLAG(std::string, checkpoint_state);

namespace podgate::audit {
namespace {

class AuditOptionsTest : public ::testing::Test {
 protected:
  absl::FlagSaver saver_;  // every test starts from the defaults
};

TEST_F(AuditOptionsTest, DefaultsAreTheDocumentedOnes) {
  absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->server.service_name, "audit");
  EXPECT_EQ(o->server.grpc_address, "[::]:7103");
  EXPECT_EQ(o->server.metrics_address, "[::]:9103");
  EXPECT_EQ(o->store_url, "sqlite:///var/lib/podgate/audit.db");
  EXPECT_EQ(o->chain_id, DefaultChainId());
  EXPECT_FALSE(o->chain_id.empty());
  EXPECT_EQ(o->queue_capacity, 8192u);
  EXPECT_EQ(o->max_batch, 1024u);
  EXPECT_EQ(o->store_recheck_interval, absl::Seconds(5));
  EXPECT_EQ(o->retention, absl::ZeroDuration());
  EXPECT_EQ(o->retention_interval, absl::Hours(1));
  EXPECT_EQ(o->max_followers, 256u);
  EXPECT_EQ(o->follower_queue, 1024u);
  EXPECT_EQ(o->follow_poll_interval, absl::Seconds(1));
  EXPECT_EQ(o->checkpoint_key, nullptr);
  EXPECT_EQ(o->checkpoint_interval, absl::Minutes(1));
  EXPECT_EQ(o->checkpoint_state, "");
}

// The checkpoint flags: a real Ed25519 key from the openssl CLI, the interval's bounds, the
// state file required with a key, and one clear line a bad key.
TEST_F(AuditOptionsTest, CheckpointFlags) {
  // A directory of its own: the key files are gone when the test ends.
  const std::string dir = podgate::testing::MakeTempDir("audit-options");
  const std::string key = dir + "/audit-options-ckpt.pem";
  const std::string pub = dir + "/audit-options-ckpt.pub.pem";
  ASSERT_EQ(std::system(("openssl genpkey -algorithm ed25519 -out " + key +
                         " && openssl pkey -in " + key + " -pubout -out " + pub)
                            .c_str()),
            0);
  absl::SetFlag(&FLAGS_checkpoint_key, key);
  absl::SetFlag(&FLAGS_checkpoint_state, dir + "/state.jsonl");
  absl::SetFlag(&FLAGS_checkpoint_interval, absl::Seconds(1));
  absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  ASSERT_NE(o->checkpoint_key, nullptr);
  EXPECT_TRUE(o->checkpoint_key->has_private());
  EXPECT_EQ(o->checkpoint_interval, absl::Seconds(1));

  auto error = [] { return std::string(AuditOptionsFromFlags().status().message()); };
  absl::SetFlag(&FLAGS_checkpoint_interval, absl::Milliseconds(999));
  EXPECT_NE(error().find("--checkpoint_interval: 999ms is out of range (1s to 24h)"),
            std::string::npos);
  absl::SetFlag(&FLAGS_checkpoint_interval, absl::Hours(25));
  EXPECT_NE(error().find("--checkpoint_interval"), std::string::npos);
  absl::SetFlag(&FLAGS_checkpoint_interval, absl::Minutes(1));
  absl::SetFlag(&FLAGS_checkpoint_state, "");
  EXPECT_NE(error().find("--checkpoint_state: required with --checkpoint_key"), std::string::npos);
  absl::SetFlag(&FLAGS_checkpoint_state, dir + "/state.jsonl");
  absl::SetFlag(&FLAGS_checkpoint_key, pub);
  EXPECT_NE(error().find("--checkpoint_key: " + pub + ": holds a public key"), std::string::npos);
  absl::SetFlag(&FLAGS_checkpoint_key, dir + "/missing.pem");
  EXPECT_NE(
      error().find("--checkpoint_key: checkpoint key " + dir + "/missing.pem: cannot be read"),
      std::string::npos)
      << error();
  absl::SetFlag(&FLAGS_checkpoint_key, "");
  EXPECT_NE(error().find("--checkpoint_state: needs --checkpoint_key"), std::string::npos);
}

TEST_F(AuditOptionsTest, GoodFlagsBecomeTheOptions) {
  absl::SetFlag(&FLAGS_store, "postgresql://podgate@db:5432/audit");
  absl::SetFlag(&FLAGS_chain_id, std::string(kMaxChainIdBytes, 'c'));
  absl::SetFlag(&FLAGS_queue_capacity, 1);
  absl::SetFlag(&FLAGS_max_batch, 10000);
  absl::SetFlag(&FLAGS_store_recheck_interval, absl::Milliseconds(100));
  absl::SetFlag(&FLAGS_retention, absl::Hours(2160));
  absl::SetFlag(&FLAGS_retention_interval, absl::Seconds(1));
  absl::SetFlag(&FLAGS_grpc_address, "127.0.0.1:0");
  absl::SetFlag(&FLAGS_max_followers, 0);
  absl::SetFlag(&FLAGS_follower_queue, 100000);
  absl::SetFlag(&FLAGS_follow_poll_interval, absl::Milliseconds(10));
  absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->store_url, "postgresql://podgate@db:5432/audit");
  EXPECT_EQ(o->chain_id, std::string(kMaxChainIdBytes, 'c'));
  EXPECT_EQ(o->queue_capacity, 1u);
  EXPECT_EQ(o->max_batch, 10000u);
  EXPECT_EQ(o->store_recheck_interval, absl::Milliseconds(100));
  EXPECT_EQ(o->retention, absl::Hours(2160));
  EXPECT_EQ(o->retention_interval, absl::Seconds(1));
  EXPECT_EQ(o->server.grpc_address, "127.0.0.1:0");
  EXPECT_EQ(o->max_followers, 0u);
  EXPECT_EQ(o->follower_queue, 100000u);
  EXPECT_EQ(o->follow_poll_interval, absl::Milliseconds(10));
}

TEST_F(AuditOptionsTest, EachBadFlagIsOneLineNamingIt) {
  struct Case {
    std::function<void()> set;
    std::string message;
  };
  const std::vector<Case> cases = {
      {[] { absl::SetFlag(&FLAGS_queue_capacity, 0); },
       "--queue_capacity: 0 is out of range (1 to 1000000)"},
      {[] { absl::SetFlag(&FLAGS_queue_capacity, 1000001); },
       "--queue_capacity: 1000001 is out of range (1 to 1000000)"},
      {[] { absl::SetFlag(&FLAGS_max_batch, 0); }, "--max_batch: 0 is out of range (1 to 10000)"},
      {[] { absl::SetFlag(&FLAGS_max_batch, 10001); },
       "--max_batch: 10001 is out of range (1 to 10000)"},
      {[] { absl::SetFlag(&FLAGS_retention, absl::Seconds(-1)); },
       "--retention must be >= 0 and --retention_interval >= 1s"},
      {[] { absl::SetFlag(&FLAGS_retention_interval, absl::Milliseconds(999)); },
       "--retention must be >= 0 and --retention_interval >= 1s"},
      {[] { absl::SetFlag(&FLAGS_chain_id, std::string(kMaxChainIdBytes + 1, 'c')); },
       "--chain_id: longer than 128 bytes"},
      {[] { absl::SetFlag(&FLAGS_max_followers, -1); },
       "--max_followers: -1 is out of range (0 to 100000)"},
      {[] { absl::SetFlag(&FLAGS_follower_queue, 0); },
       "--follower_queue: 0 is out of range (1 to 100000)"},
      {[] { absl::SetFlag(&FLAGS_follow_poll_interval, absl::Milliseconds(9)); },
       "--follow_poll_interval: out of range (10ms to 1m)"},
      {[] { absl::SetFlag(&FLAGS_store_recheck_interval, absl::ZeroDuration()); },
       "--store_recheck_interval: 0 is out of range (100ms to 10m)"},
      {[] { absl::SetFlag(&FLAGS_store_recheck_interval, absl::Milliseconds(99)); },
       "--store_recheck_interval: 99ms is out of range (100ms to 10m)"},
      {[] { absl::SetFlag(&FLAGS_store_recheck_interval, absl::Minutes(10) + absl::Seconds(1)); },
       "--store_recheck_interval: 10m1s is out of range (100ms to 10m)"},
      {[] { absl::SetFlag(&FLAGS_drain_timeout, absl::Seconds(-1)); },
       "--drain_timeout: -1s is out of range (0s to 10m)"},
  };
  for (const Case& c : cases) {
    absl::FlagSaver one;
    c.set();
    absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
    ASSERT_FALSE(o.ok()) << c.message;
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument) << c.message;
    EXPECT_EQ(o.status().message(), c.message);
  }
}

TEST_F(AuditOptionsTest, ExportFlags) {
  absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->export_config, "");
  EXPECT_EQ(o->export_lease_ttl, absl::Seconds(15));
  EXPECT_EQ(o->export_poll_interval, absl::Milliseconds(500));
  absl::SetFlag(&FLAGS_export_config, "/etc/podgate/export.json");
  absl::SetFlag(&FLAGS_export_lease_ttl, absl::Seconds(1));
  absl::SetFlag(&FLAGS_export_poll_interval, absl::Minutes(1));
  o = AuditOptionsFromFlags();
  ASSERT_TRUE(o.ok()) << o.status();
  EXPECT_EQ(o->export_config, "/etc/podgate/export.json");
  EXPECT_EQ(o->export_lease_ttl, absl::Seconds(1));
  EXPECT_EQ(o->export_poll_interval, absl::Minutes(1));
}

TEST_F(AuditOptionsTest, ExportFlagsOutOfRangeAreNamed) {
  for (absl::Duration ttl : {absl::Milliseconds(999), absl::Minutes(11)}) {
    absl::FlagSaver saver;
    absl::SetFlag(&FLAGS_export_lease_ttl, ttl);
    absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
    ASSERT_FALSE(o.ok());
    EXPECT_EQ(o.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_NE(o.status().message().find("--export_lease_ttl"), absl::string_view::npos);
    EXPECT_NE(o.status().message().find("out of range (1s to 10m)"), absl::string_view::npos);
  }
  for (absl::Duration poll : {absl::Milliseconds(9), absl::Seconds(61)}) {
    absl::FlagSaver saver;
    absl::SetFlag(&FLAGS_export_poll_interval, poll);
    absl::StatusOr<AuditOptions> o = AuditOptionsFromFlags();
    ASSERT_FALSE(o.ok());
    EXPECT_NE(o.status().message().find("--export_poll_interval"), absl::string_view::npos);
  }
}

}  // namespace
}  // namespace podgate::audit
