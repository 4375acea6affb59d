#include "audit/follow_hub.h"

#include <algorithm>
#include <optional>
#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "google/protobuf/util/time_util.h"
#include "runtime/log.h"

namespace podgate::audit {
namespace {

using google::protobuf::util::TimeUtil;

// Rows read per chain and statement; a poll reads at most kMaxRowsPerPoll per chain and
// goes on right away with the rest.
constexpr int kReadBatch = 500;
constexpr int kMaxRowsPerPoll = 5000;

template <typename Values, typename Value>
bool AnyOrEmpty(const Values& values, const Value& value) {
  return values.empty() || std::find(values.begin(), values.end(), value) != values.end();
}

}  // namespace

bool RowMatches(const podgate::audit::v1::QueryRequest& r, const StoredRow& row) {
  const EventColumns& c = row.columns;
  const bool any_user = r.users().empty() && r.user_prefixes().empty();
  if (!any_user && std::find(r.users().begin(), r.users().end(), c.user) == r.users().end() &&
      std::none_of(r.user_prefixes().begin(), r.user_prefixes().end(),
                   [&](const std::string& p) { return absl::StartsWith(c.user, p); })) {
    return false;
  }
  if (!AnyOrEmpty(r.clusters(), c.cluster) || !AnyOrEmpty(r.namespaces(), c.namespace_name) ||
      !AnyOrEmpty(r.pods(), c.pod) || !AnyOrEmpty(r.containers(), c.container) ||
      !AnyOrEmpty(r.kinds(), c.kind) || !AnyOrEmpty(r.verdicts(), c.verdict) ||
      !AnyOrEmpty(r.rules(), c.rule) || !AnyOrEmpty(r.session_ids(), c.session_id)) {
    return false;
  }
  if (!r.groups().empty() &&
      std::none_of(r.groups().begin(), r.groups().end(), [&](const std::string& g) {
        return absl::StrContains(c.groups, absl::StrCat("\n", g, "\n"));
      })) {
    return false;
  }
  if (r.has_start_time() && c.event_time_us < TimeUtil::TimestampToMicroseconds(r.start_time())) {
    return false;
  }
  if (r.has_end_time() && c.event_time_us >= TimeUtil::TimestampToMicroseconds(r.end_time())) {
    return false;
  }
  return r.argv_contains().empty() || absl::StrContains(c.argv_text, r.argv_contains());
}

FollowHub::FollowHub(Store* store, AuditMetrics* metrics, std::string local_chain_id,
                     FollowOptions options)
    : store_(store),
      metrics_(metrics),
      local_chain_id_(std::move(local_chain_id)),
      options_(options) {
  thread_ = std::thread([this] { Run(); });
}

FollowHub::~FollowHub() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  thread_.join();
}

absl::Status FollowHub::Reserve() {
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return absl::UnavailableError("the audit server is shutting down; follow again");
  }
  if (reserved_ >= options_.max_followers) {
    return absl::ResourceExhaustedError(
        absl::StrCat("too many followers: this audit server serves at most ",
                     options_.max_followers, " following queries at once; retry later"));
  }
  ++reserved_;
  metrics_->followers().Set(static_cast<double>(reserved_));
  return absl::OkStatus();
}

void FollowHub::Release() {
  absl::MutexLock lock(&mu_);
  --reserved_;
  metrics_->followers().Set(static_cast<double>(reserved_));
}

absl::StatusOr<ChainCursors> FollowHub::Register(Follower* follower) {
  absl::MutexLock poll_lock(&poll_mu_);
  if (!cursors_valid_) {
    if (absl::Status s = InitCursors(); !s.ok()) {
      return s;
    }
  }
  absl::MutexLock lock(&mu_);
  if (draining_) {
    return absl::UnavailableError("the audit server is shutting down; follow again");
  }
  followers_.push_back(follower);
  return cursors_;
}

void FollowHub::Unregister(Follower* follower) {
  absl::MutexLock lock(&mu_);
  followers_.erase(std::remove(followers_.begin(), followers_.end(), follower), followers_.end());
}

void FollowHub::Notify() {
  absl::MutexLock lock(&mu_);
  notified_ = true;
}

void FollowHub::Drain() {
  absl::MutexLock lock(&mu_);
  draining_ = true;
  for (Follower* follower : followers_) {
    follower->EndForDrain();
  }
}

absl::Status FollowHub::InitCursors() {
  absl::StatusOr<std::vector<std::string>> chains = store_->ListChains();
  if (!chains.ok()) {
    return chains.status();
  }
  if (std::find(chains->begin(), chains->end(), local_chain_id_) == chains->end()) {
    chains->push_back(local_chain_id_);
  }
  ChainCursors cursors;
  for (const std::string& chain : *chains) {
    absl::StatusOr<ChainHead> head = store_->LoadHead(chain);
    if (!head.ok()) {
      return head.status();
    }
    cursors[chain] = head->sequence;
  }
  cursors_ = std::move(cursors);
  cursors_valid_ = true;
  last_discovery_ = absl::Now();
  return absl::OkStatus();
}

void FollowHub::Run() {
  while (true) {
    bool idle = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.AwaitWithTimeout(absl::Condition(
                               +[](FollowHub* h) ABSL_EXCLUSIVE_LOCKS_REQUIRED(h->mu_) {
                                 return h->stopping_ || (h->notified_ && !h->followers_.empty());
                               },
                               this),
                           options_.poll_interval);
      if (stopping_) {
        return;
      }
      notified_ = false;
      idle = followers_.empty();
    }
    if (idle) {
      // Nobody follows: the cursors would go stale; the next follower sets them afresh.
      // A Register may have come in meanwhile (it holds poll_mu_ while it sets the cursors).
      absl::MutexLock poll_lock(&poll_mu_);
      absl::MutexLock lock(&mu_);
      if (followers_.empty()) {
        cursors_valid_ = false;
      }
      continue;
    }
    Poll();
  }
}

void FollowHub::Poll() {
  absl::MutexLock poll_lock(&poll_mu_);
  if (!cursors_valid_) {
    return;  // set by the next Register
  }
  if (absl::Now() - last_discovery_ >= options_.chain_discovery_interval) {
    absl::StatusOr<std::vector<std::string>> chains = store_->ListChains();
    if (chains.ok()) {
      last_discovery_ = absl::Now();
      for (const std::string& chain : *chains) {
        // A chain unknown at the cursors' start is new: every record of it is news.
        cursors_.emplace(chain, 0);
      }
    } else {
      log::Warn("audit follow: listing chains failed",
                {{"error", std::string(chains.status().message())}});
    }
  }
  bool more = false;
  for (auto& [chain, cursor] : cursors_) {
    int read = 0;
    while (read < kMaxRowsPerPoll) {
      absl::StatusOr<std::vector<StoredRow>> rows =
          store_->ReadChainAfter(chain, cursor, kReadBatch);
      if (!rows.ok()) {
        log::Warn("audit follow: reading new records failed",
                  {{"chain_id", chain}, {"error", std::string(rows.status().message())}});
        break;  // the next poll retries from the same cursor
      }
      absl::MutexLock lock(&mu_);
      for (const StoredRow& row : *rows) {
        cursor = row.sequence;
        std::optional<podgate::audit::v1::AuditRecord> record;
        for (Follower* follower : followers_) {
          if (!RowMatches(follower->filter(), row)) {
            continue;
          }
          if (!record.has_value()) {
            absl::StatusOr<podgate::audit::v1::AuditRecord> parsed = ToRecord(row);
            if (!parsed.ok()) {
              metrics_->Error("query_failed").Increment();
              break;  // Verify reports the corrupt row; followers skip it
            }
            record = *std::move(parsed);
          }
          follower->Deliver(*record);
        }
      }
      read += static_cast<int>(rows->size());
      if (static_cast<int>(rows->size()) < kReadBatch) {
        break;
      }
    }
    more = more || read >= kMaxRowsPerPoll;
  }
  if (more) {
    Notify();
  }
}

}  // namespace podgate::audit
