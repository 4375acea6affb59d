#include "edge/session_registry.h"

#include <vector>

#include "edge/browser_session.h"

namespace podgate::edge {

bool SessionRegistry::Reserve() {
  absl::MutexLock lock(&mu_);
  // Under the lock BeginDrain sets the flag under: a place reserved here is either refused or
  // counted by the drain's WaitEmpty.
  if (draining_.load()) {
    return false;
  }
  ++reserved_;
  return true;
}

void SessionRegistry::Unreserve() {
  absl::MutexLock lock(&mu_);
  --reserved_;
}

uint64_t SessionRegistry::Add(std::weak_ptr<BrowserSession> session) {
  uint64_t key = 0;
  bool drain = false;
  {
    absl::MutexLock lock(&mu_);
    --reserved_;
    key = ++next_key_;
    sessions_.emplace(key, session);
    // Read under the lock BeginDrain sets it under: a session is either in BeginDrain's
    // snapshot or sees the flag here, never neither (a handshake routed just before the drain
    // opens after it).
    drain = draining_.load();
  }
  if (drain) {
    if (std::shared_ptr<BrowserSession> s = session.lock()) {
      s->Drain();
    }
  }
  return key;
}

void SessionRegistry::Remove(uint64_t key) {
  absl::MutexLock lock(&mu_);
  sessions_.erase(key);
}

std::vector<std::shared_ptr<BrowserSession>> SessionRegistry::LiveLocked() const {
  std::vector<std::shared_ptr<BrowserSession>> live;
  live.reserve(sessions_.size());
  for (const auto& [key, weak] : sessions_) {
    if (std::shared_ptr<BrowserSession> s = weak.lock()) {
      live.push_back(std::move(s));
    }
  }
  return live;
}

void SessionRegistry::BeginDrain() {
  std::vector<std::shared_ptr<BrowserSession>> live;
  {
    absl::MutexLock lock(&mu_);
    if (draining_.exchange(true)) {
      return;
    }
    live = LiveLocked();
  }
  // Outside the lock: a session released here may leave the registry from its destructor.
  for (const std::shared_ptr<BrowserSession>& s : live) {
    s->Drain();
  }
}

void SessionRegistry::CloseAll() {
  std::vector<std::shared_ptr<BrowserSession>> live;
  {
    absl::MutexLock lock(&mu_);
    live = LiveLocked();
  }
  for (const std::shared_ptr<BrowserSession>& s : live) {
    s->CloseNow();
  }
}

bool SessionRegistry::WaitEmpty(absl::Time deadline) {
  absl::MutexLock lock(&mu_);
  return mu_.AwaitWithDeadline(absl::Condition(this, &SessionRegistry::EmptyLocked), deadline);
}

size_t SessionRegistry::size() const {
  absl::MutexLock lock(&mu_);
  return sessions_.size() + reserved_;
}

}  // namespace podgate::edge
