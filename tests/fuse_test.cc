// Copyright 2026 The Cairn Authors.
//
// End-to-end test of the read-only FUSE mount (docs/fuse.md): a real
// cairnd started with --mount, artefacts pushed with the real CLI, and the
// mount inspected with plain system calls. Needs /dev/fuse and root (CI).
// No sleeps: ref symlinks have a 0 s entry/attr timeout, so every path walk
// resolves the ref afresh. Every test runs twice: on a default mount and on
// one with --fuse-passthrough (skipped where the kernel lacks it), whose
// files of 1 MiB and more (bin/ls-big, share/big.bin) the kernel reads from
// their blobs. Extended attributes are read with getxattr,
// lgetxattr and listxattr (docs/fuse.md, "Extended attributes").

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"
#include "tests/daemon.h"
#include "tests/e2e_util.h"
#include "tests/mounted_daemon.h"

namespace cairn::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::string ReadLink(const std::string& path) {
  char buf[4096];
  const ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  if (n < 0) {
    ADD_FAILURE() << "readlink " << path << ": " << strerror(errno);
    return "";
  }
  return std::string(buf, n);
}

// The value of extended attribute `name` of `path` (of a symlink itself
// when !follow), or "<ERRNO>" (e.g. "<ENODATA>") when the call fails.
std::string Xattr(const std::string& path, const char* name,
                  bool follow = true) {
  char buf[1024];
  const ssize_t n = follow ? getxattr(path.c_str(), name, buf, sizeof(buf))
                           : lgetxattr(path.c_str(), name, buf, sizeof(buf));
  if (n < 0) return absl::StrCat("<", strerrorname_np(errno), ">");
  return std::string(buf, n);
}

// The extended attribute names of `path` (of a symlink itself when !follow).
std::vector<std::string> XattrNames(const std::string& path,
                                    bool follow = true) {
  char buf[1024];
  const ssize_t n = follow ? listxattr(path.c_str(), buf, sizeof(buf))
                           : llistxattr(path.c_str(), buf, sizeof(buf));
  std::vector<std::string> names;
  if (n < 0) {
    ADD_FAILURE() << "listxattr " << path << ": " << strerror(errno);
    return names;
  }
  for (ssize_t i = 0; i < n; i += names.back().size() + 1) {
    names.emplace_back(buf + i);
  }
  return names;
}

// The content of share/big.bin.
std::string BigBin() { return PatternBytes((1 << 20) + 4097, 2026); }

// Param: whether cairnd runs with --fuse-passthrough.
class FuseTest : public MountedDaemonTest,
                 public ::testing::WithParamInterface<bool> {
 protected:
  FuseTest() : MountedDaemonTest("fuse-test") {}

  std::vector<std::string> ExtraDaemonArgs() override {
    if (!GetParam()) return {};
    return {"--fuse-passthrough"};
  }

  void SetUp() override {
    MountedDaemonTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    if (GetParam() &&
        daemon_->Logs().find("passthrough: files read by the kernel") ==
            std::string::npos) {
      GTEST_SKIP() << "this kernel does not offer FUSE passthrough: "
                   << daemon_->Logs();
    }
    // The tree: two real ELF binaries, a symlink, a hardlink, a nested dir.
    tree_ = work_ + "/tree";
    fs::create_directories(tree_ + "/bin");
    fs::create_directories(tree_ + "/share/doc");
    fs::copy_file("/usr/bin/true", tree_ + "/bin/true");
    fs::copy_file("/bin/ls", tree_ + "/bin/ls");
    fs::permissions(tree_ + "/bin/true", fs::perms(0755));
    fs::permissions(tree_ + "/bin/ls", fs::perms(0755));
    fs::create_symlink("true", tree_ + "/bin/t");
    fs::create_hard_link(tree_ + "/bin/ls", tree_ + "/bin/ls-hard");
    // ls padded past 1 MiB (the loader ignores bytes after the segments):
    // executed through passthrough in that mode.
    absl::StatusOr<std::string> ls = ReadFile("/bin/ls");
    ASSERT_TRUE(ls.ok()) << ls.status();
    ASSERT_TRUE(
        WriteFile(tree_ + "/bin/ls-big", *ls + std::string((1 << 20) + 1, '\0'))
            .ok());
    fs::permissions(tree_ + "/bin/ls-big", fs::perms(0755));
    ASSERT_TRUE(WriteFile(tree_ + "/share/a.txt", "version one\n").ok());
    ASSERT_TRUE(WriteFile(tree_ + "/share/doc/b.txt", "b\n").ok());
    ASSERT_TRUE(WriteFile(tree_ + "/share/big.bin", BigBin()).ok());
    fs::permissions(tree_ + "/share/a.txt", fs::perms(0644));
    digest_ = PackAndPush(tree_, "tool@main", "noarch");
  }

  std::string Tool() const { return mnt_ + "/tool@main"; }

  std::string tree_, digest_;
};

TEST_P(FuseTest, ExecutesBinariesFromTheMount) {
  absl::StatusOr<CommandResult> r = RunCommand({Tool() + "/bin/true"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->Describe();

  for (const char* ls : {"/bin/ls", "/bin/ls-big"}) {
    r = RunCommand({Tool() + ls, "--version"});
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->exit_code, 0) << r->Describe();
    EXPECT_THAT(r->stdout_text, HasSubstr("ls"));
  }

  // Through the symlink, and by digest.
  r = RunCommand({absl::StrCat(mnt_, "/by-digest/", digest_, "/bin/t")});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->Describe();
}

TEST_P(FuseTest, ShowsTypesModesLinksAndSortedListings) {
  EXPECT_EQ(ReadLink(Tool()), "by-digest/" + digest_);
  EXPECT_THAT(ReadDirNames(mnt_), ElementsAre("by-digest", "tool@main"));

  struct stat st;
  ASSERT_EQ(stat((Tool() + "/bin/true").c_str(), &st), 0) << strerror(errno);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0755u);
  EXPECT_EQ(st.st_size, static_cast<off_t>(fs::file_size("/usr/bin/true")));
  ASSERT_EQ(stat((Tool() + "/share/a.txt").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0644u);
  ASSERT_EQ(stat((Tool() + "/share").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));

  ASSERT_EQ(lstat((Tool() + "/bin/t").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
  EXPECT_EQ(ReadLink(Tool() + "/bin/t"), "true");

  struct stat a, b;
  ASSERT_EQ(stat((Tool() + "/bin/ls").c_str(), &a), 0);
  ASSERT_EQ(stat((Tool() + "/bin/ls-hard").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
  ASSERT_EQ(stat((Tool() + "/bin/true").c_str(), &b), 0);
  EXPECT_NE(a.st_ino, b.st_ino);

  const std::string root = absl::StrCat(mnt_, "/by-digest/", digest_);
  EXPECT_THAT(ReadDirNames(root), ElementsAre("bin", "share"));
  EXPECT_THAT(ReadDirNames(root + "/bin"),
              ElementsAre("ls", "ls-big", "ls-hard", "t", "true"));
  EXPECT_THAT(ReadDirNames(root + "/share"),
              ElementsAre("a.txt", "big.bin", "doc"));
  EXPECT_THAT(ReadDirNames(mnt_ + "/by-digest"), ElementsAre(digest_));

  // Mounted read-only, nosuid, nodev.
  struct statvfs vfs;
  ASSERT_EQ(statvfs(mnt_.c_str(), &vfs), 0) << strerror(errno);
  EXPECT_NE(vfs.f_flag & ST_RDONLY, 0u);
  EXPECT_NE(vfs.f_flag & ST_NOSUID, 0u);
  EXPECT_NE(vfs.f_flag & ST_NODEV, 0u);

  // An unknown digest is not there.
  EXPECT_EQ(
      stat((mnt_ + "/by-digest/sha256:" + std::string(64, '0')).c_str(), &st),
      -1);
  EXPECT_EQ(errno, ENOENT);
}

TEST_P(FuseTest, WritesFailWithErofs) {
  const std::string file = Tool() + "/share/a.txt";
  EXPECT_EQ(open(file.c_str(), O_WRONLY), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open(file.c_str(), O_RDWR), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(open((Tool() + "/share/new").c_str(), O_WRONLY | O_CREAT, 0644),
            -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(mkdir((Tool() + "/x").c_str(), 0755), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(unlink(file.c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(rename(file.c_str(), (Tool() + "/share/b").c_str()), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(chmod(file.c_str(), 0777), -1);
  EXPECT_EQ(errno, EROFS);
}

TEST_P(FuseTest, EveryFileReadsBackItsOriginalBytes) {
  int files = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(tree_)) {
    if (!e.is_regular_file() || e.is_symlink()) continue;
    const std::string rel = fs::relative(e.path(), tree_).string();
    absl::StatusOr<std::string> original = ReadFile(e.path().string());
    absl::StatusOr<std::string> mounted = ReadFile(Tool() + "/" + rel);
    ASSERT_TRUE(original.ok()) << original.status();
    ASSERT_TRUE(mounted.ok()) << rel << ": " << mounted.status();
    EXPECT_EQ(Sha256Hex(*mounted), Sha256Hex(*original)) << rel;
    ++files;
  }
  EXPECT_EQ(files, 7);
}

TEST_P(FuseTest, MovedRefShowsNewDigestWhileOpenFilesKeepOldContent) {
  const int old_fd = open((Tool() + "/share/a.txt").c_str(), O_RDONLY);
  ASSERT_GE(old_fd, 0) << strerror(errno);

  ASSERT_TRUE(WriteFile(tree_ + "/share/a.txt", "version two, longer\n").ok());
  const std::string next = PackAndPush(tree_, "tool@main", "noarch");
  ASSERT_NE(next, digest_);

  EXPECT_EQ(ReadLink(Tool()), "by-digest/" + next);
  absl::StatusOr<std::string> now = ReadFile(Tool() + "/share/a.txt");
  ASSERT_TRUE(now.ok()) << now.status();
  EXPECT_EQ(*now, "version two, longer\n");

  char buf[256];
  const ssize_t n = pread(old_fd, buf, sizeof(buf), 0);
  ASSERT_GE(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "version one\n");
  close(old_fd);

  // Both artefacts stay reachable by digest, listed in sorted order.
  std::vector<std::string> expected = {digest_, next};
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(ReadDirNames(mnt_ + "/by-digest"), expected);
}

TEST_P(FuseTest, CorruptBlobFailsReadsWithEio) {
  // Damage the stored blob of share/doc/b.txt ("b\n") before its first read.
  const std::string hex = Sha256Hex("b\n");
  const std::string blob = absl::StrCat(daemon_->data_dir(), "/blobs/sha256/",
                                        hex.substr(0, 2), "/", hex);
  ASSERT_TRUE(fs::exists(blob)) << blob;
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  ASSERT_TRUE(WriteFile(blob, "X\n").ok());

  // Opening costs no request (the kernel opens files itself); every read
  // of the wrong bytes fails, the first and any later one.
  const int fd = open((Tool() + "/share/doc/b.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[16];
  for (int i = 0; i < 2; ++i) {
    errno = 0;
    EXPECT_EQ(pread(fd, buf, sizeof(buf), 0), -1);
    EXPECT_EQ(errno, EIO);
  }
  close(fd);
  absl::StatusOr<CommandResult> cat =
      RunCommand({"/bin/cat", Tool() + "/share/doc/b.txt"});
  ASSERT_TRUE(cat.ok()) << cat.status();
  EXPECT_NE(cat->exit_code, 0);
  EXPECT_EQ(cat->stdout_text, "");
  EXPECT_THAT(cat->stderr_text, HasSubstr("Input/output error"));
  // Found (hashed, logged) once; later reads fail without hashing again.
  const std::string logs = daemon_->Logs();
  size_t found = 0;
  for (size_t at = logs.find("do not match their digest");
       at != std::string::npos;
       at = logs.find("do not match their digest", at + 1)) {
    ++found;
  }
  EXPECT_EQ(found, 1u) << logs;
  // Other files are unaffected.
  absl::StatusOr<std::string> a = ReadFile(Tool() + "/share/a.txt");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "version one\n");
}

TEST_P(FuseTest, CorruptLargeBlobIsNeverServed) {
  const std::string hex = Sha256Hex(BigBin());
  const std::string blob = absl::StrCat(daemon_->data_dir(), "/blobs/sha256/",
                                        hex.substr(0, 2), "/", hex);
  ASSERT_TRUE(fs::exists(blob)) << blob;
  fs::permissions(blob, fs::perms::owner_write, fs::perm_options::add);
  absl::StatusOr<std::string> bytes = ReadFile(blob);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  (*bytes)[(1 << 20) + 5] ^= 1;
  ASSERT_TRUE(WriteFile(blob, *bytes).ok());

  const std::string path = Tool() + "/share/big.bin";
  const int fd = open(path.c_str(), O_RDONLY);
  char buf[16];
  if (GetParam()) {
    // Checked before the kernel is handed the blob: the open fails.
    EXPECT_EQ(fd, -1);
    EXPECT_EQ(errno, EIO);
  } else {
    // Checked at the first READ: the open succeeds, reads fail.
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_EQ(pread(fd, buf, sizeof(buf), 0), -1);
    EXPECT_EQ(errno, EIO);
    close(fd);
  }
  absl::StatusOr<CommandResult> cat = RunCommand({"/bin/cat", path});
  ASSERT_TRUE(cat.ok()) << cat.status();
  EXPECT_NE(cat->exit_code, 0);
  EXPECT_THAT(cat->stderr_text, HasSubstr("Input/output error"));
}

TEST_P(FuseTest, SigtermUnmountsWhileFilesAreOpen) {
  // A file held open in the mount (by this process, which also waits for
  // cairnd to exit) must not keep cairnd from stopping: the connection is
  // aborted and the mount detached.
  const int fd = open((Tool() + "/share/a.txt").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[64];
  ASSERT_EQ(pread(fd, buf, sizeof(buf), 0), 12);
  // And one with a passthrough backing file, in that mode.
  const int big = open((Tool() + "/share/big.bin").c_str(), O_RDONLY);
  ASSERT_GE(big, 0) << strerror(errno);
  ASSERT_EQ(pread(big, buf, sizeof(buf), 0), 64);
  absl::Status stopped = daemon_->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped;
  EXPECT_THAT(daemon_->Logs(), HasSubstr("fuse: unmounted"));
  // Not mounted any more: the mount point is the empty directory again.
  EXPECT_THAT(ReadDirNames(mnt_), ::testing::IsEmpty());
  close(fd);
  close(big);
}

TEST_P(FuseTest, StaleMountOfAKilledDaemonIsClearedAtRestart) {
  // SIGKILL: nothing unmounts, the kernel keeps a dead mount (ENOTCONN).
  ASSERT_TRUE(daemon_->Kill().ok());
  struct stat st;
  EXPECT_EQ(stat(mnt_.c_str(), &st), -1);
  EXPECT_EQ(errno, ENOTCONN);

  // The next start on the same directory detaches it and mounts afresh.
  std::vector<std::string> args = {"--mount", mnt_};
  for (std::string& a : ExtraDaemonArgs()) args.push_back(std::move(a));
  absl::Status restarted = daemon_->Restart(args);
  ASSERT_TRUE(restarted.ok()) << restarted;
  EXPECT_THAT(daemon_->Logs(), HasSubstr("stale FUSE mount"));
  absl::StatusOr<std::string> a = ReadFile(Tool() + "/share/a.txt");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(*a, "version one\n");
  absl::StatusOr<CommandResult> r = RunCommand({Tool() + "/bin/true"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->Describe();
}

TEST_P(FuseTest, NamespacedRefsAreDirectories) {
  PackAndPush(tree_, "team/tool@x", "noarch");
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "team", "tool@main"));
  EXPECT_THAT(ReadDirNames(mnt_ + "/team"), ElementsAre("tool@x"));
  EXPECT_EQ(ReadLink(mnt_ + "/team/tool@x"), "../by-digest/" + digest_);
  absl::StatusOr<CommandResult> r =
      RunCommand({mnt_ + "/team/tool@x/bin/true"});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->exit_code, 0) << r->Describe();
}

TEST_P(FuseTest, RefSymlinkTellsRefSlotDigestAndGeneration) {
  // A ref symlink's attributes are in the cairn.* namespace: Linux refuses
  // user.* on symlinks (ENODATA) without asking the file system.
  EXPECT_THAT(XattrNames(Tool(), /*follow=*/false),
              ElementsAre("cairn.ref", "cairn.slot", "cairn.digest",
                          "cairn.generation"));
  EXPECT_EQ(Xattr(Tool(), "cairn.ref", false), "tool@main");
  EXPECT_EQ(Xattr(Tool(), "cairn.slot", false), "noarch");
  EXPECT_EQ(Xattr(Tool(), "cairn.digest", false), digest_);
  EXPECT_EQ(Xattr(Tool(), "cairn.generation", false), "1");
  EXPECT_EQ(Xattr(Tool(), "user.cairn.digest", false), "<ENODATA>");
  EXPECT_EQ(Xattr(Tool(), "cairn.artefact", false), "<ENODATA>");
  // Followed, the ref leads to the artefact's root directory.
  EXPECT_EQ(Xattr(Tool(), "user.cairn.digest"), digest_);
  EXPECT_EQ(Xattr(Tool(), "cairn.slot"), "<ENODATA>");

  // The attributes follow the ref when it moves.
  ASSERT_TRUE(WriteFile(tree_ + "/share/a.txt", "version two\n").ok());
  const std::string next = PackAndPush(tree_, "tool@main", "noarch");
  ASSERT_NE(next, digest_);
  EXPECT_EQ(Xattr(Tool(), "cairn.digest", false), next);
  EXPECT_EQ(Xattr(Tool(), "cairn.generation", false), "2");
  EXPECT_EQ(Xattr(Tool(), "user.cairn.digest"), next);

  PackAndPush(tree_, "team/tool@x", "noarch");
  EXPECT_EQ(Xattr(mnt_ + "/team/tool@x", "cairn.ref", false), "team/tool@x");
  EXPECT_EQ(Xattr(mnt_ + "/team/tool@x", "cairn.digest", false), next);
  // A ref that does not exist has no attributes to read.
  EXPECT_EQ(Xattr(mnt_ + "/tool@nope", "cairn.ref", false), "<ENOENT>");
}

TEST_P(FuseTest, EveryFileIsTracedToItsContentDigest) {
  int regular = 0, dirs = 0, links = 0;
  for (const fs::directory_entry& e : fs::recursive_directory_iterator(tree_)) {
    // Lexically: fs::relative would resolve the symlink bin/t.
    const std::string rel = e.path().lexically_relative(tree_).string();
    const std::string path = Tool() + "/" + rel;
    if (e.is_symlink()) {
      EXPECT_THAT(XattrNames(path, false), ElementsAre("cairn.artefact"))
          << rel;
      EXPECT_EQ(Xattr(path, "cairn.artefact", false), digest_) << rel;
      ++links;
    } else if (e.is_directory()) {
      EXPECT_THAT(XattrNames(path), ElementsAre("user.cairn.artefact")) << rel;
      EXPECT_EQ(Xattr(path, "user.cairn.artefact"), digest_) << rel;
      EXPECT_EQ(Xattr(path, "user.cairn.digest"), "<ENODATA>") << rel;
      ++dirs;
    } else {
      absl::StatusOr<std::string> bytes = ReadFile(e.path().string());
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      EXPECT_THAT(XattrNames(path),
                  ElementsAre("user.cairn.artefact", "user.cairn.digest"))
          << rel;
      EXPECT_EQ(Xattr(path, "user.cairn.digest"), DigestOf(*bytes)) << rel;
      EXPECT_EQ(Xattr(path, "user.cairn.artefact"), digest_) << rel;
      ++regular;
    }
  }
  EXPECT_EQ(regular, 7);  // The hardlink included.
  EXPECT_EQ(dirs, 3);
  EXPECT_EQ(links, 1);

  // The artefact's root, by digest.
  const std::string root = absl::StrCat(mnt_, "/by-digest/", digest_);
  EXPECT_THAT(XattrNames(root),
              ElementsAre("user.cairn.artefact", "user.cairn.digest"));
  EXPECT_EQ(Xattr(root, "user.cairn.digest"), digest_);
  // Directories outside artefacts have none.
  EXPECT_THAT(XattrNames(mnt_), ::testing::IsEmpty());
  EXPECT_THAT(XattrNames(mnt_ + "/by-digest"), ::testing::IsEmpty());

  // Absent names, including those the kernel asks for by itself.
  const std::string file = Tool() + "/bin/true";
  EXPECT_EQ(Xattr(file, "user.cairn.nope"), "<ENODATA>");
  EXPECT_EQ(Xattr(file, "user.other"), "<ENODATA>");
  EXPECT_EQ(Xattr(file, "security.capability"), "<ENODATA>");
  EXPECT_EQ(Xattr(file, "trusted.cairn.digest"), "<ENODATA>");
}

TEST_P(FuseTest, XattrSizeProbeErangeAndErofs) {
  const std::string file = Tool() + "/share/a.txt";
  const std::string want = DigestOf("version one\n");
  // Size 0 asks for the value's length.
  EXPECT_EQ(getxattr(file.c_str(), "user.cairn.digest", nullptr, 0),
            static_cast<ssize_t>(want.size()));
  char small[16];
  EXPECT_EQ(getxattr(file.c_str(), "user.cairn.digest", small, sizeof(small)),
            -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(lgetxattr(Tool().c_str(), "cairn.digest", nullptr, 0),
            static_cast<ssize_t>(digest_.size()));
  EXPECT_EQ(lgetxattr(Tool().c_str(), "cairn.digest", small, sizeof(small)),
            -1);
  EXPECT_EQ(errno, ERANGE);

  const std::string names("user.cairn.artefact\0user.cairn.digest\0", 38);
  EXPECT_EQ(listxattr(file.c_str(), nullptr, 0),
            static_cast<ssize_t>(names.size()));
  EXPECT_EQ(listxattr(file.c_str(), small, sizeof(small)), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(llistxattr(Tool().c_str(), small, sizeof(small)), -1);
  EXPECT_EQ(errno, ERANGE);
  EXPECT_EQ(listxattr(mnt_.c_str(), nullptr, 0), 0);

  // Read-only.
  EXPECT_EQ(setxattr(file.c_str(), "user.cairn.digest", "x", 1, 0), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(setxattr(file.c_str(), "user.new", "x", 1, XATTR_CREATE), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(removexattr(file.c_str(), "user.cairn.digest"), -1);
  EXPECT_EQ(errno, EROFS);
  EXPECT_EQ(lremovexattr(Tool().c_str(), "cairn.ref"), -1);
  EXPECT_EQ(errno, EROFS);
}

TEST_P(FuseTest, ByDigestListingShowsEveryPush) {
  EXPECT_THAT(ReadDirNames(mnt_ + "/by-digest"), ElementsAre(digest_));
  ASSERT_TRUE(WriteFile(tree_ + "/share/a.txt", "version three\n").ok());
  const std::string next = PackAndPush(tree_, "tool@next", "noarch");
  std::vector<std::string> expected = {digest_, next};
  std::sort(expected.begin(), expected.end());
  // Not a stale listing cached by the kernel.
  EXPECT_EQ(ReadDirNames(mnt_ + "/by-digest"), expected);
}

TEST_P(FuseTest, MountListTellsWhetherFilesUsePassthrough) {
  const CommandResult r = Cli({"mounts"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.stdout_text, HasSubstr(mnt_ + " flag "));
  if (GetParam()) {
    EXPECT_THAT(r.stdout_text, HasSubstr(" passthrough"));
  } else {
    EXPECT_THAT(r.stdout_text, ::testing::Not(HasSubstr("passthrough")));
  }
}

INSTANTIATE_TEST_SUITE_P(Modes, FuseTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& info) {
                           return info.param ? "Passthrough" : "Default";
                         });

}  // namespace
}  // namespace cairn::testing
