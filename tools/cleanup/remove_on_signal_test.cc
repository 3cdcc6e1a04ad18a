// Copyright 2026 The Cairn Authors.

#include "tools/cleanup/remove_on_signal.h"

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "gtest/gtest.h"

namespace cairn {
namespace {

std::string TestPath(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  return std::string(tmp != nullptr ? tmp : "/tmp") + "/" + name;
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

// In a child: registers `kept` and then unregisters it, registers
// `removed`, and kills itself with `sig`. Returns the child's wait status.
int RunChild(int sig, const std::string& removed, const std::string& kept) {
  const pid_t pid = fork();
  if (pid == 0) {
    InstallRemoveOnSignal();
    std::ofstream(removed) << "partial";
    std::ofstream(kept) << "done";
    { RemoveOnSignal unregistered(kept); }
    RemoveOnSignal registered(removed);
    raise(sig);
    _exit(0);  // Not reached: the signal's default action ends the child.
  }
  int status = 0;
  waitpid(pid, &status, 0);
  return status;
}

TEST(RemoveOnSignalTest, RegisteredFilesGoAndTheSignalStillKills) {
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) {
    const std::string removed = TestPath("removed");
    const std::string kept = TestPath("kept");
    const int status = RunChild(sig, removed, kept);
    ASSERT_TRUE(WIFSIGNALED(status)) << "signal " << sig;
    EXPECT_EQ(WTERMSIG(status), sig);
    EXPECT_FALSE(Exists(removed)) << "signal " << sig;
    EXPECT_TRUE(Exists(kept)) << "signal " << sig;
    unlink(kept.c_str());
  }
}

// A signal inherited as ignored (nohup) stays ignored: the file stays and
// the process lives on, and an exec'd program inherits the SIG_IGN.
TEST(RemoveOnSignalTest, InheritedIgnoredSignalsStayIgnored) {
  const std::string path = TestPath("nohup");
  const pid_t pid = fork();
  if (pid == 0) {
    signal(SIGHUP, SIG_IGN);
    InstallRemoveOnSignal();
    std::ofstream(path) << "partial";
    RemoveOnSignal registered(path);
    raise(SIGHUP);
    struct sigaction now;
    sigaction(SIGHUP, nullptr, &now);
    _exit(now.sa_handler == SIG_IGN ? 0 : 3);
  }
  int status = 0;
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << "status " << status;
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_TRUE(Exists(path));
  unlink(path.c_str());
}

TEST(RemoveOnSignalTest, WithoutInstallNothingIsRegistered) {
  // Only the parent runs this: no handler here, so registering is a no-op
  // that must not crash or touch the file.
  const std::string path = TestPath("untouched");
  std::ofstream(path) << "x";
  { RemoveOnSignal r(path); }
  EXPECT_TRUE(Exists(path));
}

}  // namespace
}  // namespace cairn
