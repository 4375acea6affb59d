// A browser session's state tables: every path the session takes is allowed, nothing leads
// back, and the end states are final.
#include "edge/session_state.h"

#include <set>
#include <string>
#include <utility>
#include <vector>

#include "gtest/gtest.h"

namespace podgate::edge {
namespace {

using S = SessionState;
using P = ExecPhase;

constexpr S kStates[] = {S::kUpgrading, S::kOpening, S::kAuthenticating, S::kOpen,
                         S::kDraining,  S::kClosing, S::kBrowserGone,    S::kClosed};
constexpr P kPhases[] = {P::kNone,       P::kStreaming, P::kEnding,
                         P::kHalfClosed, P::kFinished,  P::kDone};

TEST(SessionStateTest, TheSessionsPathsAreAllowed) {
  const std::vector<std::vector<S>> paths = {
      // Handshake credential, a command, the browser closes.
      {S::kUpgrading, S::kOpening, S::kOpen, S::kBrowserGone, S::kClosed},
      // First-message credential, then exec ends the session.
      {S::kUpgrading, S::kAuthenticating, S::kOpening, S::kOpen, S::kClosing, S::kBrowserGone,
       S::kClosed},
      // A refused or late credential.
      {S::kUpgrading, S::kAuthenticating, S::kClosing, S::kClosed},
      // The browser leaves before authenticating.
      {S::kUpgrading, S::kAuthenticating, S::kClosed},
      // Shutdown while a command runs: closed after its result.
      {S::kUpgrading, S::kOpening, S::kOpen, S::kDraining, S::kClosing, S::kBrowserGone,
       S::kClosed},
      // Shutdown before exec is ready, with a v1 command already sent.
      {S::kUpgrading, S::kOpening, S::kDraining, S::kClosing, S::kClosed},
      // The browser leaves while draining, exec still finishing.
      {S::kUpgrading, S::kOpening, S::kOpen, S::kDraining, S::kBrowserGone, S::kClosed},
  };
  for (const std::vector<S>& path : paths) {
    for (size_t i = 1; i < path.size(); ++i) {
      EXPECT_TRUE(TransitionAllowed(path[i - 1], path[i]))
          << StateName(path[i - 1]) << " -> " << StateName(path[i]);
    }
  }
}

TEST(SessionStateTest, NothingLeadsBackAndClosedIsFinal) {
  for (S from : kStates) {
    for (S to : kStates) {
      if (to <= from) {
        EXPECT_FALSE(TransitionAllowed(from, to)) << StateName(from) << " -> " << StateName(to);
      }
    }
    EXPECT_FALSE(TransitionAllowed(S::kClosed, from)) << StateName(from);
  }
}

TEST(SessionStateTest, WhatASessionCannotSkip) {
  // No exec stream without a credential, no draining without a command (only once exec may
  // run one), no leaving "upgrading" except through OnOpen.
  EXPECT_FALSE(TransitionAllowed(S::kUpgrading, S::kOpen));
  EXPECT_FALSE(TransitionAllowed(S::kUpgrading, S::kClosing));
  EXPECT_FALSE(TransitionAllowed(S::kUpgrading, S::kClosed));
  EXPECT_FALSE(TransitionAllowed(S::kAuthenticating, S::kOpen));
  EXPECT_FALSE(TransitionAllowed(S::kAuthenticating, S::kDraining));
  // Before authentication there is no exec stream to wait for once the browser is gone.
  EXPECT_FALSE(TransitionAllowed(S::kAuthenticating, S::kBrowserGone));
}

TEST(SessionStateTest, TheExecStreamEndsOneWay) {
  const std::vector<std::vector<P>> paths = {
      {P::kNone, P::kStreaming, P::kEnding, P::kHalfClosed, P::kFinished, P::kDone},
      {P::kNone, P::kStreaming, P::kFinished, P::kDone},  // exec ended it (or it broke)
      {P::kNone, P::kStreaming, P::kEnding, P::kFinished, P::kDone},
  };
  for (const std::vector<P>& path : paths) {
    for (size_t i = 1; i < path.size(); ++i) {
      EXPECT_TRUE(TransitionAllowed(path[i - 1], path[i]))
          << StateName(path[i - 1]) << " -> " << StateName(path[i]);
    }
  }
  for (P from : kPhases) {
    for (P to : kPhases) {
      if (to <= from) {
        EXPECT_FALSE(TransitionAllowed(from, to)) << StateName(from) << " -> " << StateName(to);
      }
    }
  }
  // The RPC is only over once the stream has finished; the half-close follows `close`.
  EXPECT_FALSE(TransitionAllowed(P::kStreaming, P::kDone));
  EXPECT_FALSE(TransitionAllowed(P::kStreaming, P::kHalfClosed));
  EXPECT_FALSE(TransitionAllowed(P::kNone, P::kFinished));
}

TEST(SessionStateTest, AConnectionSlotMovesToTheReplicasPoolOnceAndIsReleasedOnce) {
  EXPECT_TRUE(TransitionAllowed(SlotPool::kUnauthenticated, SlotPool::kConnections));
  EXPECT_TRUE(TransitionAllowed(SlotPool::kUnauthenticated, SlotPool::kReleased));
  EXPECT_TRUE(TransitionAllowed(SlotPool::kConnections, SlotPool::kReleased));
  EXPECT_FALSE(TransitionAllowed(SlotPool::kConnections, SlotPool::kUnauthenticated));
  EXPECT_FALSE(TransitionAllowed(SlotPool::kReleased, SlotPool::kConnections));
  EXPECT_FALSE(TransitionAllowed(SlotPool::kReleased, SlotPool::kUnauthenticated));
}

TEST(SessionStateTest, EveryStateHasItsOwnName) {
  std::set<std::string> names;
  for (S s : kStates) {
    names.insert(StateName(s));
  }
  EXPECT_EQ(names.size(), std::size(kStates));
  EXPECT_EQ(names.count("unknown"), 0u);
  std::set<std::string> phases;
  for (P p : kPhases) {
    phases.insert(StateName(p));
  }
  EXPECT_EQ(phases.size(), std::size(kPhases));
  EXPECT_EQ(phases.count("unknown"), 0u);
}

}  // namespace
}  // namespace podgate::edge
