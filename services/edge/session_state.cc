#include "edge/session_state.h"

namespace podgate::edge {

const char* StateName(SessionState state) {
  switch (state) {
    case SessionState::kUpgrading:
      return "upgrading";
    case SessionState::kAuthenticating:
      return "authenticating";
    case SessionState::kLoginRefused:
      return "login_refused";
    case SessionState::kOpening:
      return "opening";
    case SessionState::kOpen:
      return "open";
    case SessionState::kDraining:
      return "draining";
    case SessionState::kClosing:
      return "closing";
    case SessionState::kBrowserGone:
      return "browser_gone";
    case SessionState::kClosed:
      return "closed";
  }
  return "unknown";
}

const char* StateName(ExecPhase phase) {
  switch (phase) {
    case ExecPhase::kNone:
      return "none";
    case ExecPhase::kStreaming:
      return "streaming";
    case ExecPhase::kEnding:
      return "ending";
    case ExecPhase::kHalfClosed:
      return "half_closed";
    case ExecPhase::kFinished:
      return "finished";
    case ExecPhase::kDone:
      return "done";
  }
  return "unknown";
}

const char* StateName(SlotPool pool) {
  switch (pool) {
    case SlotPool::kUnauthenticated:
      return "unauthenticated";
    case SlotPool::kConnections:
      return "connections";
    case SlotPool::kReleased:
      return "released";
  }
  return "unknown";
}

bool TransitionAllowed(SessionState from, SessionState to) {
  using S = SessionState;
  switch (from) {
    case S::kUpgrading:
      // OnOpen; OnClose never comes before it.
      return to == S::kAuthenticating || to == S::kOpening;
    case S::kAuthenticating:
      return to == S::kOpening || to == S::kLoginRefused || to == S::kClosing || to == S::kClosed;
    case S::kLoginRefused:
      return to == S::kClosing || to == S::kClosed;
    case S::kOpening:
      return to == S::kOpen || to == S::kDraining || to == S::kClosing || to == S::kBrowserGone ||
             to == S::kClosed;
    case S::kOpen:
      return to == S::kDraining || to == S::kClosing || to == S::kBrowserGone || to == S::kClosed;
    case S::kDraining:
      return to == S::kClosing || to == S::kBrowserGone || to == S::kClosed;
    case S::kClosing:
      return to == S::kBrowserGone || to == S::kClosed;
    case S::kBrowserGone:
      return to == S::kClosed;
    case S::kClosed:
      return false;
  }
  return false;
}

bool TransitionAllowed(ExecPhase from, ExecPhase to) {
  using P = ExecPhase;
  switch (from) {
    case P::kNone:
      return to == P::kStreaming;
    case P::kStreaming:
      return to == P::kEnding || to == P::kFinished;
    case P::kEnding:
      return to == P::kHalfClosed || to == P::kFinished;
    case P::kHalfClosed:
      return to == P::kFinished;
    case P::kFinished:
      return to == P::kDone;
    case P::kDone:
      return false;
  }
  return false;
}

bool TransitionAllowed(SlotPool from, SlotPool to) {
  switch (from) {
    case SlotPool::kUnauthenticated:
      return to == SlotPool::kConnections || to == SlotPool::kReleased;
    case SlotPool::kConnections:
      return to == SlotPool::kReleased;
    case SlotPool::kReleased:
      return false;
  }
  return false;
}

}  // namespace podgate::edge
