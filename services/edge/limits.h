// Per-connection and per-user limits: message rates (token buckets) and connection counts.
// Shared by every connection of an edge replica; thread-safe; time is injected for tests.
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace podgate::edge {

using Clock = std::function<absl::Time()>;

// A token bucket: `rate` tokens per second, at most `burst` saved up. Not thread-safe.
class TokenBucket {
 public:
  TokenBucket(double rate, double burst, absl::Time now)
      : rate_(rate), burst_(burst), tokens_(burst), last_(now) {}
  // Takes one token; false when none is left.
  bool Take(absl::Time now);

 private:
  double rate_;
  double burst_;
  double tokens_;
  absl::Time last_;
};

struct LimitOptions {
  double messages_per_second = 50;  // per connection
  double message_burst = 200;
  double user_messages_per_second = 100;  // per user, over all their connections
  double user_message_burst = 400;
  int max_connections = 10000;  // per replica
  int max_connections_per_user = 20;
  // WebSockets still waiting for their first-message credential, per replica: a pool of their
  // own, so a flood of them never takes a place from an authenticated session.
  int max_unauthenticated_connections = 1000;
  // GET /api/v1/audit?follow=1 streams (the live tail), per replica and per user.
  int max_audit_follows = 64;
  int max_audit_follows_per_user = 4;
};

class Limits {
 public:
  explicit Limits(LimitOptions options, Clock clock = &absl::Now)
      : options_(options), clock_(std::move(clock)) {}

  const LimitOptions& options() const { return options_; }
  absl::Time Now() const { return clock_(); }

  // Counts a connection before the user is known; false over the replica's cap.
  bool AcquireConnection();
  void ReleaseConnection();
  // Counts a WebSocket that has not authenticated yet; false over its own pool's cap.
  bool AcquireUnauthenticated();
  void ReleaseUnauthenticated();
  // Counts an authenticated connection of `user`; false over the per-user cap.
  bool AcquireUser(const std::string& user);
  void ReleaseUser(const std::string& user);
  // Counts an audit follow stream of `user`: the replica's or the user's cap (the message
  // names which) when refused.
  absl::Status AcquireAuditFollow(const std::string& user);
  void ReleaseAuditFollow(const std::string& user);
  // Takes a token from `user`'s shared bucket.
  bool TakeUserMessage(const std::string& user);

  int connections() const;
  int unauthenticated_connections() const;

 private:
  struct User {
    int connections = 0;
    std::unique_ptr<TokenBucket> bucket;
  };

  const LimitOptions options_;
  const Clock clock_;
  mutable absl::Mutex mu_;
  int connections_ ABSL_GUARDED_BY(mu_) = 0;
  int unauthenticated_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, User> users_ ABSL_GUARDED_BY(mu_);
  int audit_follows_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<std::string, int> audit_follows_per_user_ ABSL_GUARDED_BY(mu_);
};

}  // namespace podgate::edge
