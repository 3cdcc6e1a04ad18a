// Copyright 2026 The Cairn Authors.

#include "fuse/workers.h"

#include <algorithm>
#include <utility>

namespace cairn {

Workers::Workers(int threads) {
  for (int i = 0; i < std::max(1, threads); ++i) {
    threads_.emplace_back([this] { Work(); });
  }
}

Workers::~Workers() { Stop(); }

void Workers::Run(std::function<void()> task) {
  absl::MutexLock lock(&mu_);
  tasks_.push_back(std::move(task));
}

void Workers::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

bool Workers::Ready() const { return stopping_ || !tasks_.empty(); }

void Workers::Work() {
  for (;;) {
    std::function<void()> task;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(this, &Workers::Ready));
      if (tasks_.empty()) return;  // Stopping, and nothing left.
      task = std::move(tasks_.front());
      tasks_.pop_front();
    }
    task();
  }
}

}  // namespace cairn
