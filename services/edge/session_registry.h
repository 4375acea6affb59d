// The live browser sessions of an edge replica, so that a shutdown can end each one with a
// close frame instead of dropping its TCP connection (docs/protocol.md, "Shutdown").
//
// A session is expected from its accepted handshake, registers when its WebSocket opens and
// leaves when the session object is gone (browser connection and exec stream both over), so
// the registry holds no more entries than the connection limits admit, plus sessions whose
// exec stream is still winding down after the browser left (a few seconds each at most).
// Thread-safe: sessions come and go on their own strands, the drain runs on the thread that
// handles the shutdown signal.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"

namespace podgate::edge {

class BrowserSession;

class SessionRegistry {
 public:
  // Reserves a place for the session of a handshake about to be accepted; false once the drain
  // has begun (the handshake is refused). The session registers once its WebSocket is open
  // (Add), or gives the place back when the upgrade fails (Unreserve). The drain waits for
  // reserved places too, so a session opening as the drain begins is closed, not dropped.
  bool Reserve();
  void Unreserve();

  // Registers `session` in place of its reservation and returns its key for Remove. During a
  // drain the session is told to end right away.
  uint64_t Add(std::weak_ptr<BrowserSession> session);
  void Remove(uint64_t key);

  // Starts the drain: every registered session, and every one registered later, is told to
  // end (BrowserSession::Drain). Idempotent.
  void BeginDrain();
  bool draining() const { return draining_.load(); }

  // The drain deadline passed: every session still registered is closed at once
  // (BrowserSession::CloseNow).
  void CloseAll();

  // Waits until no session is registered or reserved, or until `deadline`; true when none is.
  bool WaitEmpty(absl::Time deadline);

  // Sessions registered or reserved.
  size_t size() const;

 private:
  std::vector<std::shared_ptr<BrowserSession>> LiveLocked() const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool EmptyLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return sessions_.empty() && reserved_ == 0;
  }

  mutable absl::Mutex mu_;
  uint64_t next_key_ ABSL_GUARDED_BY(mu_) = 0;
  size_t reserved_ ABSL_GUARDED_BY(mu_) = 0;
  std::map<uint64_t, std::weak_ptr<BrowserSession>> sessions_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> draining_{false};
};

}  // namespace podgate::edge
