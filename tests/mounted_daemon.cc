// Copyright 2026 The Cairn Authors.

#include "tests/mounted_daemon.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <utility>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "tests/e2e_util.h"

namespace cairn::testing {

void MountedDaemonTest::SetUp() {
  if (access("/dev/fuse", R_OK | W_OK) != 0) {
    GTEST_SKIP() << "/dev/fuse is not usable here";
  }
  // Mount points are compared after realpath.
  work_ = std::filesystem::canonical(NewTempDir(name_)).string();
  mnt_ = work_ + "/mnt";
  ASSERT_EQ(mkdir(mnt_.c_str(), 0755), 0) << mnt_ << ": " << strerror(errno);
  DaemonOptions options;
  options.extra_args = {"--mount", mnt_};
  for (std::string& a : ExtraDaemonArgs()) {
    options.extra_args.push_back(std::move(a));
  }
  absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
  ASSERT_TRUE(daemon.ok()) << daemon.status();
  daemon_ = *std::move(daemon);
}

void MountedDaemonTest::TearDown() {
  if (daemon_ != nullptr && daemon_->running()) {
    absl::Status stopped = daemon_->Stop();
    EXPECT_TRUE(stopped.ok()) << stopped;
    EXPECT_THAT(daemon_->Logs(),
                ::testing::HasSubstr("fuse: unmounted " + mnt_));
  }
  if (HasFailure() && daemon_ != nullptr) {
    const std::string logs = daemon_->AllLogs();
    constexpr size_t kTail = 20000;
    std::fprintf(
        stderr, "cairnd logs (last %zu bytes):\n%s\n", kTail,
        logs.substr(logs.size() > kTail ? logs.size() - kTail : 0).c_str());
  }
}

CommandResult MountedDaemonTest::Cli(std::vector<std::string> args,
                                     const Daemon* daemon) {
  if (daemon == nullptr) daemon = daemon_.get();
  std::vector<std::string> argv = {"--server", daemon->address(), "--actor",
                                   name_};
  argv.insert(argv.end(), args.begin(), args.end());
  absl::StatusOr<CommandResult> r = RunCli(argv, absl::Seconds(120));
  if (!r.ok()) {
    ADD_FAILURE() << "running cairn: " << r.status();
    return CommandResult{};
  }
  return *std::move(r);
}

std::string MountedDaemonTest::PackAndPush(const std::string& tree,
                                           const std::string& ref,
                                           const std::string& arch,
                                           const Daemon* daemon) {
  const std::string tarball = absl::StrCat(tree, "-", ++packs_, ".tar.gz");
  CommandResult r = Cli({"pack", tree, "-o", tarball}, daemon);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  absl::StatusOr<std::string> bytes = ReadFile(tarball);
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  const std::string digest = bytes.ok() ? DigestOf(*bytes) : "";
  std::vector<std::string> push = {"-q", "push", tarball, "--ref", ref};
  if (!arch.empty()) push.insert(push.end(), {"--arch", arch});
  r = Cli(push, daemon);
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, digest + "\n");
  return digest;
}

}  // namespace cairn::testing
