// Copyright 2026 The Cairn Authors.
//
// End-to-end test of `cairn run` (execute an artefact's entrypoint in place
// from the FUSE mount) and of `cairn mount` / `umount` / `mounts`: a real
// cairnd started with --mount and --mount-root, trees holding real ELF
// binaries and a shell script packed and pushed with the real CLI, then run
// through the mount. Needs /dev/fuse and root (CI); skips without
// /dev/fuse. No sleeps: ref resolution and exec are synchronous.

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/daemon.h"
#include "tests/e2e_util.h"
#include "tests/mounted_daemon.h"

namespace cairn::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

// Prints "$0" and then each argument in brackets, and exits 7, so the test
// sees which file ran, that arguments keep their boundaries, and that the
// exit code comes through.
constexpr char kScript[] =
    "#!/bin/sh\n"
    "echo \"$0\"\n"
    "echo \"VERSION\"\n"
    "for a in \"$@\"; do echo \"[$a]\"; done\n"
    "exit 7\n";

class RunE2eTest : public MountedDaemonTest {
 protected:
  RunE2eTest() : MountedDaemonTest("run-e2e") {}

  std::vector<std::string> ExtraDaemonArgs() override {
    root_ = work_ + "/mounts";
    EXPECT_EQ(mkdir(root_.c_str(), 0755), 0)
        << root_ << ": " << strerror(errno);
    return {"--mount-root", root_};
  }

  void SetUp() override {
    MountedDaemonTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    digest_ = PackAndPush(MakeTree("one", /*entrypoint=*/"bin/tool.sh"),
                          "tool@main", "");
  }

  // A tree with two real ELF binaries (bin/true, bin/echo) and the script
  // (printing `version`), plus a cairn.json naming `entrypoint` if not
  // empty. Returns its directory.
  std::string MakeTree(const std::string& version,
                       const std::string& entrypoint) {
    const std::string tree = absl::StrCat(work_, "/tree-", ++trees_);
    fs::create_directories(tree + "/bin");
    fs::copy_file("/usr/bin/true", tree + "/bin/true");
    fs::copy_file("/bin/echo", tree + "/bin/echo");
    std::string script = kScript;
    script.replace(script.find("VERSION"), 7, version);
    EXPECT_TRUE(WriteFile(tree + "/bin/tool.sh", script).ok());
    EXPECT_TRUE(WriteFile(tree + "/README", "not a program\n").ok());
    for (const char* f : {"/bin/true", "/bin/echo", "/bin/tool.sh"}) {
      fs::permissions(tree + f, fs::perms(0755));
    }
    fs::permissions(tree + "/README", fs::perms(0644));
    std::string json =
        absl::StrCat(R"({"name":"tool","version":")", version, R"(")");
    if (!entrypoint.empty()) {
      absl::StrAppend(&json, R"(,"entrypoint":")", entrypoint, R"(")");
    }
    EXPECT_TRUE(WriteFile(tree + "/cairn.json", json + "}\n").ok());
    return tree;
  }

  std::string PinnedPath(const std::string& digest, const std::string& entry) {
    return absl::StrCat(mnt_, "/by-digest/", digest, "/", entry);
  }

  std::string root_, digest_;
  int trees_ = 0;
};

TEST_F(RunE2eTest, RunsTheEntrypointFromTheMountWithArgsAndExitCode) {
  // No --mount: the daemon's own mount is found through cairn.v1.Mounts.
  CommandResult r = Cli({"run", "tool@main", "--", "a", "b c", "--json"});
  EXPECT_EQ(r.exit_code, 7) << r.Describe();
  EXPECT_EQ(r.stdout_text, absl::StrCat(PinnedPath(digest_, "bin/tool.sh"),
                                        "\none\n[a]\n[b c]\n[--json]\n"));
  EXPECT_THAT(r.stderr_text, IsEmpty());

  // --mount names it explicitly; the program's arguments may be empty.
  r = Cli({"run", "--mount", mnt_, "tool@main"});
  EXPECT_EQ(r.exit_code, 7) << r.Describe();
  EXPECT_EQ(r.stdout_text,
            absl::StrCat(PinnedPath(digest_, "bin/tool.sh"), "\none\n"));
}

TEST_F(RunE2eTest, EntryOverridesTheEntrypointAndRunsRealElfBinaries) {
  CommandResult r =
      Cli({"run", "tool@main", "--entry", "bin/echo", "--", "hello", "world"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, "hello world\n");

  r = Cli({"run", "tool@main", "--entry", "./bin//true"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.stdout_text, IsEmpty());
}

TEST_F(RunE2eTest, MissingEntrypointSaysWhatToDo) {
  PackAndPush(MakeTree("bare", /*entrypoint=*/""), "bare@main", "noarch");
  CommandResult r = Cli({"run", "bare@main", "--", "x"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, StartsWith("cairn: error: FAILED_PRECONDITION: "
                                        "bare@main (noarch slot, sha256:"));
  EXPECT_THAT(r.stderr_text, HasSubstr("declares no entrypoint: pass --entry "
                                       "PATH, or add \"entrypoint\""));
  EXPECT_THAT(r.stdout_text, IsEmpty());
  // With --entry it runs (noarch fallback for this host's slot).
  r = Cli({"run", "bare@main", "--entry", "bin/tool.sh", "--", "x"});
  EXPECT_EQ(r.exit_code, 7) << r.Describe();
  EXPECT_THAT(r.stdout_text, HasSubstr("bare\n[x]\n"));
}

TEST_F(RunE2eTest, BadEntriesAreRefusedNamingThePath) {
  CommandResult r = Cli({"run", "tool@main", "--entry", "../../etc/passwd"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("\"..\" component"));
  r = Cli({"run", "tool@main", "--entry", "/bin/sh"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("is absolute"));
  // Given but empty: not the artefact's entrypoint, a usage error.
  r = Cli({"run", "tool@main", "--entry", ""});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("--entry"));
  EXPECT_THAT(r.stderr_text, HasSubstr("must not be empty"));

  r = Cli({"run", "tool@main", "--entry", "bin/nope"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text,
              HasSubstr("NOT_FOUND: entry bin/nope is not in artefact " +
                        digest_ + ": " + PinnedPath(digest_, "bin/nope")));
  r = Cli({"run", "tool@main", "--entry", "README"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text,
              HasSubstr("PERMISSION_DENIED: " + PinnedPath(digest_, "README") +
                        " is not executable (mode 0644)"));
  r = Cli({"run", "nosuch@main"});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("NOT_FOUND"));
  r = Cli({"run", "Not A Ref"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();
}

TEST_F(RunE2eTest, RunFollowsTheBranchToItsNewDigest) {
  CommandResult r = Cli({"run", "tool@main"});
  ASSERT_EQ(r.exit_code, 7) << r.Describe();
  EXPECT_THAT(r.stdout_text, HasSubstr("\none\n"));

  const std::string two =
      PackAndPush(MakeTree("two", "bin/tool.sh"), "tool@main", "");
  ASSERT_NE(two, digest_);
  r = Cli({"run", "tool@main", "--", "z"});
  EXPECT_EQ(r.exit_code, 7) << r.Describe();
  EXPECT_EQ(r.stdout_text,
            absl::StrCat(PinnedPath(two, "bin/tool.sh"), "\ntwo\n[z]\n"));
  // The old version stays runnable by its pinned path.
  absl::StatusOr<CommandResult> old =
      RunCommand({PinnedPath(digest_, "bin/tool.sh")});
  ASSERT_TRUE(old.ok()) << old.status();
  EXPECT_THAT(old->stdout_text, HasSubstr("\none\n"));
}

TEST_F(RunE2eTest, MountCommandsMountInsideTheRootOnly) {
  const std::string m = root_ + "/extra";
  ASSERT_EQ(mkdir(m.c_str(), 0755), 0) << strerror(errno);
  CommandResult r = Cli({"mount", m});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, "mounted " + m + "\n");

  r = Cli({"-q", "mounts"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, mnt_ + "\n" + m + "\n");
  r = Cli({"mounts"});
  EXPECT_THAT(r.stdout_text, HasSubstr(mnt_ + " flag "));
  EXPECT_THAT(r.stdout_text, HasSubstr(m + " rpc "));

  // The new mount serves the same store.
  r = Cli({"run", "--mount", m, "tool@main", "--entry", "bin/echo", "--",
           "via extra"});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, "via extra\n");

  r = Cli({"mount", work_});  // Outside the mount root.
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("PERMISSION_DENIED: Mount: "));
  EXPECT_THAT(r.stderr_text, HasSubstr("not strictly inside the mount root"));

  r = Cli({"umount", m});
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, "unmounted " + m + "\n");
  EXPECT_TRUE(fs::is_empty(m));
  r = Cli({"umount", m});
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("NOT_FOUND: Unmount: "));
}

TEST_F(RunE2eTest, WithoutMountsRunAndMountSayHowToGetOne) {
  // A second daemon with neither --mount nor --mount-root.
  absl::StatusOr<std::unique_ptr<Daemon>> bare = Daemon::Start();
  ASSERT_TRUE(bare.ok()) << bare.status();
  PackAndPush(MakeTree("b", "bin/tool.sh"), "tool@main", "", bare->get());

  CommandResult r = Cli({"run", "tool@main"}, bare->get());
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("FAILED_PRECONDITION: no Cairn mount "
                                       "known"));
  EXPECT_THAT(r.stderr_text, HasSubstr("--mount DIR"));

  const std::string m = root_ + "/refused";
  ASSERT_EQ(mkdir(m.c_str(), 0755), 0) << strerror(errno);
  r = Cli({"mount", m}, bare->get());
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("PERMISSION_DENIED: Mount: mounting "
                                       "over RPC is disabled"));
  EXPECT_THAT(r.stderr_text, HasSubstr("--mount-root DIR"));
  EXPECT_TRUE(fs::is_empty(m));
  r = Cli({"mounts"}, bare->get());
  EXPECT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.stdout_text, IsEmpty());
  EXPECT_TRUE((*bare)->Stop().ok());
}

}  // namespace
}  // namespace cairn::testing
