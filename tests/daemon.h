// Copyright 2026 The Cairn Authors.
//
// Test harness for end-to-end tests: starts a real `cairnd` as a child
// process and runs the `cairn` CLI, both taken from the test's runfiles
// (a cc_test with data = ["//tools/cairnd", "//tools/cairn"]).
//
// Synchronisation never sleeps: the daemon's port is learnt by reading its
// stdout pipe up to the "cairnd listening on 127.0.0.1:PORT" line, and its
// exit is awaited through a pidfd, each with a deadline.
//
// Children are started with posix_spawn (no fork handlers run, safe while
// gRPC threads exist), and every pipe is created close-on-exec so that
// concurrently spawned children never hold each other's pipe ends.

#ifndef CAIRN_TESTS_DAEMON_H_
#define CAIRN_TESTS_DAEMON_H_

#include <sys/types.h>

#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace cairn::testing {

// $TEST_TMPDIR, or /tmp outside Bazel.
std::string TestTmpDir();

// A new empty directory under TestTmpDir() whose name starts with `prefix`.
std::string NewTempDir(absl::string_view prefix);

// The absolute path of a file in this test's runfiles, e.g.
// RunfilePath("tools/cairnd/cairnd"). Errors: NotFound naming the places
// looked at.
absl::StatusOr<std::string> RunfilePath(absl::string_view workspace_relative);

// What a finished child process did.
struct CommandResult {
  int exit_code = -1;  // Exit status, or 128 + signal if killed.
  std::string stdout_text;
  std::string stderr_text;

  // "exit N; stdout: ...; stderr: ..." for assertion messages.
  std::string Describe() const;
};

// Runs argv[0] (an absolute path) with the given arguments, stdin from
// /dev/null, collecting stdout and stderr through pipes. The child is
// SIGKILLed when `timeout` passes (and DeadlineExceeded returned).
// Thread-safe. Errors: Internal when the process cannot be started.
absl::StatusOr<CommandResult> RunCommand(
    const std::vector<std::string>& argv,
    absl::Duration timeout = absl::Seconds(60));

// Runs the `cairn` CLI from the runfiles with `args`. Thread-safe.
absl::StatusOr<CommandResult> RunCli(
    const std::vector<std::string>& args,
    absl::Duration timeout = absl::Seconds(60));

struct DaemonOptions {
  // Empty: a fresh directory under TestTmpDir().
  std::string data_dir;
  // Appended to "--data-dir DIR --listen 127.0.0.1:0".
  std::vector<std::string> extra_args;
  // How long to wait for the "listening on" line.
  absl::Duration start_timeout = absl::Seconds(30);
};

// One cairnd child process (restartable on the same data directory). Not
// thread-safe: one test thread drives it; port()/address() may be read
// concurrently while it runs.
class Daemon {
 public:
  // Starts cairnd and waits until it listens. Errors: NotFound for a
  // missing binary; Internal naming the daemon's exit and stderr when it
  // exits early; DeadlineExceeded when it does not listen in time.
  static absl::StatusOr<std::unique_ptr<Daemon>> Start(
      DaemonOptions options = {});

  // SIGKILLs a still running daemon.
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  int port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  // "127.0.0.1:PORT".
  std::string address() const;
  const std::string& data_dir() const { return data_dir_; }
  // Everything the current run wrote on stderr so far (its logs).
  std::string Logs() const;
  // Everything every run wrote on stderr.
  std::string AllLogs() const;

  // SIGTERM, then waits for the exit. Errors: FailedPrecondition when not
  // running; Internal naming the wait status unless it exited 0;
  // DeadlineExceeded (after SIGKILLing it) when it did not exit in time.
  absl::Status Stop(absl::Duration timeout = absl::Seconds(30));

  // SIGKILL, then waits for it (reaping). Errors: FailedPrecondition when
  // not running.
  absl::Status Kill();

  // Waits for a daemon that is expected to exit by itself (e.g. at a debug
  // crash point) and returns its raw wait status. Errors: FailedPrecondition
  // when not running; DeadlineExceeded (after SIGKILLing it) on timeout.
  absl::StatusOr<int> WaitForExit(absl::Duration timeout = absl::Seconds(30));

  // Starts the daemon again on the same data directory with `extra_args`
  // replacing the previous ones. Must not be running.
  absl::Status Restart(std::vector<std::string> extra_args = {});

 private:
  Daemon(std::string binary, DaemonOptions options);
  absl::Status Launch();
  absl::StatusOr<int> Reap(absl::Duration timeout);

  const std::string binary_;
  DaemonOptions options_;
  std::string data_dir_;
  int runs_ = 0;
  std::string stderr_path_;  // Of the current run.
  std::vector<std::string> stderr_paths_;
  pid_t pid_ = -1;
  int pidfd_ = -1;
  int port_ = 0;
  int stdout_fd_ = -1;
  // Drains the daemon's stdout after the "listening" line so it can never
  // block on a full pipe.
  std::thread stdout_drainer_;
};

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_DAEMON_H_
