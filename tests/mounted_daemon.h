// Copyright 2026 The Cairn Authors.
//
// MountedDaemonTest: the fixture of the end-to-end FUSE tests
// (//tests:fuse_test, fuse_tree_test, run_e2e_test): a real cairnd child
// with `--mount`, driven through the `cairn` CLI.

#ifndef CAIRN_TESTS_MOUNTED_DAEMON_H_
#define CAIRN_TESTS_MOUNTED_DAEMON_H_

#include <memory>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"

namespace cairn::testing {

class MountedDaemonTest : public ::testing::Test {
 protected:
  // `name`: the prefix of the test's temp directory and the CLI's --actor.
  explicit MountedDaemonTest(std::string name) : name_(std::move(name)) {}

  // Skips the test without a usable /dev/fuse. Makes work_ (a fresh temp
  // directory, after realpath) and mnt_ (work_/mnt), then starts cairnd
  // with `--mount mnt_` and ExtraDaemonArgs(). Subclasses that override it
  // call it first and return if IsSkipped() or HasFatalFailure().
  void SetUp() override;

  // Stops a running cairnd (SIGTERM), expecting a clean exit that unmounted
  // mnt_; prints the end of its logs if the test failed.
  void TearDown() override;

  // Flags for cairnd beyond `--mount mnt_`; called once work_ exists.
  virtual std::vector<std::string> ExtraDaemonArgs() { return {}; }

  // Runs `cairn --server ADDR --actor NAME ARGS...` against `daemon`
  // (daemon_ when null). A failure to run it is a test failure (and an
  // empty result).
  CommandResult Cli(std::vector<std::string> args,
                    const Daemon* daemon = nullptr);

  // Packs `tree` (to "<tree>-N.tar.gz") and pushes it to `ref`, to slot
  // `arch` (this host's when empty), on `daemon` (daemon_ when null).
  // Expects both to succeed and the push to print the tarball's digest,
  // which it returns ("" if the tarball could not be read).
  std::string PackAndPush(const std::string& tree, const std::string& ref,
                          const std::string& arch,
                          const Daemon* daemon = nullptr);

  std::string work_, mnt_;
  std::unique_ptr<Daemon> daemon_;

 private:
  const std::string name_;
  int packs_ = 0;
};

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_MOUNTED_DAEMON_H_
