#include "runtime/timer.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace podgate::runtime {
namespace {

TEST(TimerQueueTest, RunsCallbacksInDeadlineOrder) {
  TimerQueue timers;
  std::mutex mu;
  std::vector<int> order;
  absl::Notification done;
  const absl::Time base = absl::Now();
  timers.Schedule(base + absl::Milliseconds(60), [&] {
    std::lock_guard<std::mutex> l(mu);
    order.push_back(3);
    done.Notify();
  });
  timers.Schedule(base + absl::Milliseconds(20), [&] {
    std::lock_guard<std::mutex> l(mu);
    order.push_back(1);
  });
  timers.Schedule(base + absl::Milliseconds(40), [&] {
    std::lock_guard<std::mutex> l(mu);
    order.push_back(2);
  });
  ASSERT_TRUE(done.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_EQ(order, (std::vector<int>{1, 2, 3}));
  EXPECT_GE(absl::Now() - base, absl::Milliseconds(60));
  EXPECT_EQ(timers.pending(), 0u);
}

TEST(TimerQueueTest, CancelledCallbackNeverRuns) {
  TimerQueue timers;
  std::atomic<bool> ran{false};
  const TimerQueue::Id id = timers.After(absl::Milliseconds(50), [&] { ran = true; });
  EXPECT_TRUE(timers.Cancel(id));
  EXPECT_FALSE(timers.Cancel(id));
  absl::Notification later;
  timers.After(absl::Milliseconds(100), [&] { later.Notify(); });
  ASSERT_TRUE(later.WaitForNotificationWithTimeout(absl::Seconds(5)));
  EXPECT_FALSE(ran);
}

TEST(TimerQueueTest, PastDeadlineRunsAtOnceAndEarlierTimerPreemptsALaterOne) {
  TimerQueue timers;
  absl::Notification slow_ran;
  timers.After(absl::Hours(1), [&] { slow_ran.Notify(); });
  absl::Notification fast;
  timers.Schedule(absl::Now() - absl::Seconds(1), [&] { fast.Notify(); });
  EXPECT_TRUE(fast.WaitForNotificationWithTimeout(absl::Seconds(2)));
  EXPECT_FALSE(slow_ran.HasBeenNotified());
  EXPECT_EQ(timers.pending(), 1u);
}

}  // namespace
}  // namespace podgate::runtime
