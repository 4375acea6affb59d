#include "edge/limits.h"

#include <algorithm>

#include "absl/strings/str_cat.h"

namespace podgate::edge {

bool TokenBucket::Take(absl::Time now) {
  if (now > last_) {
    tokens_ = std::min(burst_, tokens_ + absl::ToDoubleSeconds(now - last_) * rate_);
    last_ = now;
  }
  if (tokens_ < 1) {
    return false;
  }
  tokens_ -= 1;
  return true;
}

bool Limits::AcquireConnection() {
  absl::MutexLock lock(&mu_);
  if (connections_ >= options_.max_connections) {
    return false;
  }
  ++connections_;
  return true;
}

void Limits::ReleaseConnection() {
  absl::MutexLock lock(&mu_);
  --connections_;
}

bool Limits::AcquireUnauthenticated() {
  absl::MutexLock lock(&mu_);
  if (unauthenticated_ >= options_.max_unauthenticated_connections) {
    return false;
  }
  ++unauthenticated_;
  return true;
}

void Limits::ReleaseUnauthenticated() {
  absl::MutexLock lock(&mu_);
  --unauthenticated_;
}

int Limits::unauthenticated_connections() const {
  absl::MutexLock lock(&mu_);
  return unauthenticated_;
}

bool Limits::AcquireUser(const std::string& user) {
  absl::MutexLock lock(&mu_);
  User& u = users_[user];
  if (u.connections >= options_.max_connections_per_user) {
    if (u.connections == 0) {
      users_.erase(user);
    }
    return false;
  }
  ++u.connections;
  if (u.bucket == nullptr) {
    u.bucket = std::make_unique<TokenBucket>(options_.user_messages_per_second,
                                             options_.user_message_burst, clock_());
  }
  return true;
}

absl::Status Limits::AcquireAuditFollow(const std::string& user) {
  absl::MutexLock lock(&mu_);
  if (audit_follows_ >= options_.max_audit_follows) {
    return absl::ResourceExhaustedError(absl::StrCat("this edge serves at most ",
                                                     options_.max_audit_follows,
                                                     " live audit streams at once; retry later"));
  }
  int& mine = audit_follows_per_user_[user];
  if (mine >= options_.max_audit_follows_per_user) {
    if (mine == 0) {
      audit_follows_per_user_.erase(user);
    }
    return absl::ResourceExhaustedError(
        absl::StrCat("you have ", mine, " live audit streams open, the most allowed; close one"));
  }
  ++mine;
  ++audit_follows_;
  return absl::OkStatus();
}

void Limits::ReleaseAuditFollow(const std::string& user) {
  absl::MutexLock lock(&mu_);
  --audit_follows_;
  auto it = audit_follows_per_user_.find(user);
  if (it != audit_follows_per_user_.end() && --it->second <= 0) {
    audit_follows_per_user_.erase(it);
  }
}

void Limits::ReleaseUser(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  if (it != users_.end() && --it->second.connections <= 0) {
    users_.erase(it);  // the bucket goes with the last connection: memory stays bounded
  }
}

bool Limits::TakeUserMessage(const std::string& user) {
  absl::MutexLock lock(&mu_);
  auto it = users_.find(user);
  if (it == users_.end() || it->second.bucket == nullptr) {
    return false;
  }
  return it->second.bucket->Take(clock_());
}

int Limits::connections() const {
  absl::MutexLock lock(&mu_);
  return connections_;
}

}  // namespace podgate::edge
