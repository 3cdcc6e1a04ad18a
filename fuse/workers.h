// Copyright 2026 The Cairn Authors.
//
// Workers: a fixed set of threads running queued tasks in FIFO order. The
// FUSE session loop (cairn_fs.cc) answers most requests on its own thread
// and hands those that may take long (READ, a blob's first verification)
// to Workers, which reply when done.
//
// Thread-safe: Run may be called from any thread until Stop, and by a task
// (on a worker thread) even while Stop runs: what it queues runs before
// Stop returns (that worker drains the queue before it exits).

#ifndef CAIRN_FUSE_WORKERS_H_
#define CAIRN_FUSE_WORKERS_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace cairn {

class Workers {
 public:
  // Starts `threads` threads (at least one).
  explicit Workers(int threads);
  // Stop().
  ~Workers();

  Workers(const Workers&) = delete;
  Workers& operator=(const Workers&) = delete;

  // Queues `task`; one of the threads runs it, tasks starting in the order
  // they were queued. Must not be called after Stop() began, except from
  // a task.
  void Run(std::function<void()> task);

  // Runs every task still queued, then joins the threads. Idempotent.
  void Stop();

 private:
  void Work();
  bool Ready() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  absl::Mutex mu_;
  std::deque<std::function<void()>> tasks_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
};

}  // namespace cairn

#endif  // CAIRN_FUSE_WORKERS_H_
