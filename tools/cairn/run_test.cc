// Copyright 2026 The Cairn Authors.
//
// The pure parts of `cairn run`: entry path checks, the choice of mount and
// the checks of the entry inside a mount (on a plain directory laid out
// like one). The exec itself is tested end to end (tests/run_e2e_test.cc).

#include "tools/cairn/run.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/mount.pb.h"

namespace cairn::cli {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

TEST(CleanEntryPathTest, NormalisesHarmlessForms) {
  EXPECT_EQ(*CleanEntryPath("bin/tool"), "bin/tool");
  EXPECT_EQ(*CleanEntryPath("./bin//tool/"), "bin/tool");
  EXPECT_EQ(*CleanEntryPath("tool"), "tool");
}

TEST(CleanEntryPathTest, RejectsUnsafePaths) {
  for (const char* bad : {"", "/bin/sh", "../x", "bin/../../x", "bin/..", ".",
                          "./", "//etc/passwd"}) {
    absl::StatusOr<std::string> r = CleanEntryPath(bad);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
  EXPECT_THAT(CleanEntryPath("/bin/sh").status().message(),
              HasSubstr("is absolute"));
  EXPECT_THAT(CleanEntryPath("a/../b").status().message(), HasSubstr("\"..\""));
  EXPECT_FALSE(CleanEntryPath(std::string("a\0b", 3)).ok());
}

TEST(PickMountTest, PrefersTheFlagMountAndExplainsNone) {
  v1::ListMountsResponse list;
  absl::StatusOr<std::string> none = PickMount(list);
  EXPECT_EQ(none.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(none.status().message(), HasSubstr("--mount DIR"));
  EXPECT_THAT(none.status().message(), HasSubstr("CAIRN_MOUNT"));

  v1::MountInfo* rpc = list.add_mounts();
  rpc->set_path("/srv/m/a");
  rpc->set_origin(v1::MOUNT_ORIGIN_RPC);
  EXPECT_EQ(*PickMount(list), "/srv/m/a");
  v1::MountInfo* flag = list.add_mounts();
  flag->set_path("/mnt/cairn");
  flag->set_origin(v1::MOUNT_ORIGIN_FLAG);
  EXPECT_EQ(*PickMount(list), "/mnt/cairn");
  // Mounts whose connection ended serve nothing.
  flag->set_ended(true);
  EXPECT_EQ(*PickMount(list), "/srv/m/a");
  rpc->set_ended(true);
  EXPECT_EQ(PickMount(list).status().code(),
            absl::StatusCode::kFailedPrecondition);
}

class EntryInMountTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TEST_TMPDIR");
    mount_ = std::string(tmp != nullptr ? tmp : "/tmp") + "/entry_in_mount";
    fs::remove_all(mount_);
    art_ = mount_ + "/by-digest/" + kDigest;
    fs::create_directories(art_ + "/bin");
    std::ofstream(art_ + "/bin/tool") << "#!/bin/sh\n";
    fs::permissions(art_ + "/bin/tool", fs::perms(0755));
    std::ofstream(art_ + "/data.txt") << "x";
    fs::permissions(art_ + "/data.txt", fs::perms(0644));
  }

  static constexpr char kDigest[] =
      "sha256:0000000000000000000000000000000000000000000000000000000000000000";
  std::string mount_, art_;
};

TEST_F(EntryInMountTest, FindsAnExecutable) {
  absl::StatusOr<std::string> path = EntryInMount(mount_, kDigest, "bin/tool");
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, fs::canonical(art_ + "/bin/tool").string());
  // A symlink inside the artefact is followed.
  fs::create_symlink("tool", art_ + "/bin/alias");
  path = EntryInMount(mount_, kDigest, "bin/alias");
  ASSERT_TRUE(path.ok()) << path.status();
  EXPECT_EQ(*path, fs::canonical(art_ + "/bin/tool").string());
}

// Symlinks leading out of the artefact (to the host's files, or through the
// mount's top level into another artefact) are refused: the digest the ref
// resolved to would not pin what runs.
TEST_F(EntryInMountTest, RefusesEntriesResolvingOutsideTheArtefact) {
  const std::string other =
      mount_ + "/by-digest/sha256:" + std::string(64, '1');
  fs::create_directories(other + "/bin");
  std::ofstream(other + "/bin/x") << "#!/bin/sh\n";
  fs::permissions(other + "/bin/x", fs::perms(0755));
  fs::create_symlink("/bin/sh", art_ + "/bin/host");
  fs::create_symlink("../../" + fs::path(other).filename().string() + "/bin/x",
                     art_ + "/bin/rel");
  fs::create_symlink(other + "/bin", art_ + "/sbin");
  for (const char* entry : {"bin/host", "bin/rel", "sbin/x"}) {
    absl::StatusOr<std::string> r = EntryInMount(mount_, kDigest, entry);
    EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition)
        << entry << ": " << r.status();
    EXPECT_THAT(r.status().message(),
                HasSubstr(absl::StrCat("entry ", entry, " of artefact ",
                                       kDigest, " resolves to ")));
    EXPECT_THAT(r.status().message(), HasSubstr("outside the artefact"));
  }
}

TEST_F(EntryInMountTest, NamesWhatIsWrong) {
  absl::StatusOr<std::string> r = EntryInMount(mount_, kDigest, "bin/nope");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr(art_ + "/bin/nope"));

  r = EntryInMount(mount_, kDigest, "bin");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("not a regular file"));

  // Root passes access(X_OK) for any file with an exec bit, so this checks
  // a file with none.
  r = EntryInMount(mount_, kDigest, "data.txt");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_THAT(r.status().message(),
              HasSubstr(art_ + "/data.txt is not executable (mode 0644)"));

  const std::string other =
      "sha256:1111111111111111111111111111111111111111111111111111111111111111";
  r = EntryInMount(mount_, other, "bin/tool");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(r.status().message(), HasSubstr("is " + mount_ +
                                              " a Cairn "
                                              "mount"));
}

}  // namespace
}  // namespace cairn::cli
