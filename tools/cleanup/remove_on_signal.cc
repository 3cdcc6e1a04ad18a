// Copyright 2026 The Cairn Authors.

#include "tools/cleanup/remove_on_signal.h"

#include <limits.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <cstring>

namespace cairn {
namespace {

// A slot is free (kFree), being filled or emptied by its owner (kBusy), or
// holds a path the handler removes (kSet).
enum SlotState : int { kFree = 0, kBusy = 1, kSet = 2 };

struct Slot {
  std::atomic<int> state{kFree};
  char path[PATH_MAX];
};

// Process-wide by nature: a signal handler has no other way to find them.
Slot slots[RemoveOnSignal::kMaxPaths];
std::atomic<bool> installed{false};

static_assert(std::atomic<int>::is_always_lock_free,
              "the handler needs lock-free atomics");

void Handle(int sig) {
  for (Slot& s : slots) {
    if (s.state.load(std::memory_order_acquire) == kSet) unlink(s.path);
  }
  signal(sig, SIG_DFL);
  raise(sig);
}

}  // namespace

void InstallRemoveOnSignal() {
  struct sigaction sa;
  std::memset(&sa, 0, sizeof(sa));
  sa.sa_handler = Handle;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    // A signal the parent ignores (nohup; SIGINT in background jobs) stays
    // ignored, here and in programs `cairn run` execs.
    struct sigaction old;
    if (sigaction(sig, nullptr, &old) == 0 && old.sa_handler == SIG_IGN) {
      continue;
    }
    sigaction(sig, &sa, nullptr);
  }
  installed.store(true, std::memory_order_release);
}

RemoveOnSignal::RemoveOnSignal(const std::string& path) : slot_(-1) {
  if (!installed.load(std::memory_order_acquire) || path.size() >= PATH_MAX) {
    return;
  }
  for (int i = 0; i < kMaxPaths; ++i) {
    int expected = kFree;
    if (slots[i].state.compare_exchange_strong(expected, kBusy,
                                               std::memory_order_acq_rel)) {
      std::memcpy(slots[i].path, path.c_str(), path.size() + 1);
      slots[i].state.store(kSet, std::memory_order_release);
      slot_ = i;
      return;
    }
  }
}

RemoveOnSignal::~RemoveOnSignal() {
  if (slot_ >= 0) slots[slot_].state.store(kFree, std::memory_order_release);
}

}  // namespace cairn
