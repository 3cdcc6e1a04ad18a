// Copyright 2026 The Cairn Authors.
//
// Temporary files a command line tool removes if it is killed by SIGINT,
// SIGTERM or SIGHUP (Ctrl-C, kill, a closed terminal) while writing them,
// so that an interrupted `cairn pull` or `cairn pack` leaves no partial
// file behind (on errors the tools remove them themselves).
//
// Use: main() calls InstallRemoveOnSignal() once; code that creates a
// temporary file keeps a RemoveOnSignal for it while the file may exist.
// The handler unlink(2)s the registered paths, restores the default
// action and re-raises the signal, so the exit status still tells the
// signal. Without InstallRemoveOnSignal() registering does nothing.
//
// Thread-safe; the handler is async-signal-safe (it only reads lock-free
// atomics and fixed buffers, and calls unlink, signal and raise). At most
// kMaxPaths paths (each under PATH_MAX bytes) are registered at once;
// further ones are not removed on a signal.

#ifndef CAIRN_TOOLS_CLEANUP_REMOVE_ON_SIGNAL_H_
#define CAIRN_TOOLS_CLEANUP_REMOVE_ON_SIGNAL_H_

#include <string>

namespace cairn {

// Installs the handler for SIGINT, SIGTERM and SIGHUP, except for those
// the process inherited as ignored (nohup, background jobs): they stay
// ignored. Call once, before any thread starts.
void InstallRemoveOnSignal();

class RemoveOnSignal {
 public:
  static constexpr int kMaxPaths = 16;

  // Registers `path` (copied).
  explicit RemoveOnSignal(const std::string& path);
  // Unregisters it (does not remove the file).
  ~RemoveOnSignal();

  RemoveOnSignal(const RemoveOnSignal&) = delete;
  RemoveOnSignal& operator=(const RemoveOnSignal&) = delete;

 private:
  int slot_;  // -1 if none was free.
};

}  // namespace cairn

#endif  // CAIRN_TOOLS_CLEANUP_REMOVE_ON_SIGNAL_H_
