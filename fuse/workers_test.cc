// Copyright 2026 The Cairn Authors.

#include "fuse/workers.h"

#include <atomic>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(WorkersTest, OneThreadRunsTasksInOrder) {
  absl::Mutex mu;
  std::vector<int> order;
  {
    Workers workers(1);
    for (int i = 0; i < 100; ++i) {
      workers.Run([&, i] {
        absl::MutexLock lock(&mu);
        order.push_back(i);
      });
    }
  }  // Stop(): runs what is queued.
  ASSERT_EQ(order.size(), 100u);
  for (int i = 0; i < 100; ++i) EXPECT_EQ(order[i], i);
}

TEST(WorkersTest, StopRunsEveryQueuedTask) {
  std::atomic<int> ran{0};
  Workers workers(3);
  for (int i = 0; i < 1000; ++i) workers.Run([&] { ran.fetch_add(1); });
  workers.Stop();
  EXPECT_EQ(ran.load(), 1000);
  workers.Stop();  // Idempotent.
}

// A task blocked on one thread does not hold up the others: what the
// session loop relies on when a READ waits for a long verification.
TEST(WorkersTest, ABlockedTaskLeavesTheOtherThreadsWorking) {
  Workers workers(2);
  absl::Notification release, blocked_started, other_done;
  workers.Run([&] {
    blocked_started.Notify();
    release.WaitForNotification();
  });
  blocked_started.WaitForNotification();
  workers.Run([&] { other_done.Notify(); });
  other_done.WaitForNotification();  // Would hang with one thread.
  release.Notify();
  workers.Stop();
}

}  // namespace
}  // namespace cairn
