// Copyright 2026 The Cairn Authors.
//
// Whole trees through the read-only FUSE mount (docs/fuse.md): a real
// cairnd started with --mount, artefacts pushed with the real CLI, and the
// mount walked completely, by this test (readdir + lstat of every entry)
// and by the real find, cat and sha256sum, against the original tree.
// Needs /dev/fuse and root (CI); skips without /dev/fuse.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/testing/tar_builder.h"
#include "tests/daemon.h"
#include "tests/e2e_util.h"
#include "tests/mounted_daemon.h"

namespace cairn::testing {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// What lstat (and readlink) tell of one entry.
struct EntryInfo {
  char type = '?';     // 'f', 'd' or 'l'.
  int mode = 0;        // Permission bits.
  uint64_t size = 0;   // Regular files and symlinks.
  std::string target;  // Symlinks.

  friend bool operator==(const EntryInfo& a, const EntryInfo& b) {
    return a.type == b.type && a.mode == b.mode && a.size == b.size &&
           a.target == b.target;
  }
  friend std::ostream& operator<<(std::ostream& os, const EntryInfo& e) {
    return os << e.type << " " << absl::StrFormat("%04o", e.mode) << " "
              << e.size << " " << e.target;
  }
};

// Walks `dir` recursively with opendir/readdir, lstat()ing every entry (and
// readlink()ing symlinks), as find(1) does. Keys are paths relative to
// `dir`.
void Walk(const std::string& dir, const std::string& rel,
          std::map<std::string, EntryInfo>* out) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << dir << ": " << strerror(errno);
    return;
  }
  std::vector<std::pair<std::string, std::string>> subdirs;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    const std::string path = rel.empty() ? name : rel + "/" + name;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ADD_FAILURE() << "lstat " << path << ": " << strerror(errno);
      continue;
    }
    EntryInfo info;
    info.mode = st.st_mode & 07777;
    if (S_ISDIR(st.st_mode)) {
      info.type = 'd';
      subdirs.emplace_back(dir + "/" + name, path);
    } else if (S_ISLNK(st.st_mode)) {
      info.type = 'l';
      info.size = st.st_size;
      char buf[4096];
      const ssize_t n = readlinkat(dirfd(d), e->d_name, buf, sizeof(buf));
      if (n < 0) {
        ADD_FAILURE() << "readlink " << path << ": " << strerror(errno);
      } else {
        info.target.assign(buf, n);
      }
    } else if (S_ISREG(st.st_mode)) {
      info.type = 'f';
      info.size = st.st_size;
    }
    // d_type must agree with lstat.
    EXPECT_EQ(e->d_type, S_ISDIR(st.st_mode)   ? DT_DIR
                         : S_ISLNK(st.st_mode) ? DT_LNK
                                               : DT_REG)
        << path;
    out->emplace(path, std::move(info));
  }
  closedir(d);
  for (const auto& [sub, sub_rel] : subdirs) Walk(sub, sub_rel, out);
}

// Reports the first few differences between two listings (the listings are
// far too long for one EXPECT_EQ message).
void ExpectSameListing(const std::map<std::string, EntryInfo>& want,
                       const std::map<std::string, EntryInfo>& got) {
  EXPECT_EQ(got.size(), want.size());
  int reported = 0;
  for (const auto& [path, info] : want) {
    if (reported >= 10) break;
    auto it = got.find(path);
    if (it == got.end()) {
      ADD_FAILURE() << "missing from the mount: " << path;
      ++reported;
    } else if (!(it->second == info)) {
      ADD_FAILURE() << path << ": mount has " << it->second << ", want "
                    << info;
      ++reported;
    }
  }
  for (const auto& [path, info] : got) {
    if (reported >= 10) break;
    if (want.count(path) == 0) {
      ADD_FAILURE() << "not expected in the mount: " << path;
      ++reported;
    }
  }
}

// Single-quotes `s` for /bin/sh.
std::string Quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) {
    if (c == '\'') {
      q += "'\\''";
    } else {
      q += c;
    }
  }
  return q + "'";
}

class FuseTreeTest : public MountedDaemonTest {
 protected:
  FuseTreeTest() : MountedDaemonTest("fuse-tree-test") {}

  // Pushes the tarball at `path` to `ref` (noarch).
  void Push(const std::string& path, const std::string& ref) {
    CommandResult r = Cli({"push", path, "--ref", ref, "--arch", "noarch"});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }

  // Runs `script` with bash -o pipefail; fails the test unless every
  // command of it succeeds, silently. Returns its stdout.
  std::string Shell(const std::string& script) {
    absl::StatusOr<CommandResult> r = RunCommand(
        {"/bin/bash", "-o", "pipefail", "-c", script}, absl::Seconds(120));
    if (!r.ok()) {
      ADD_FAILURE() << script << ": " << r.status();
      return "";
    }
    EXPECT_EQ(r->exit_code, 0) << script << ": " << r->Describe();
    EXPECT_EQ(r->stderr_text, "") << script;
    return r->stdout_text;
  }
};

TEST_F(FuseTreeTest, FiftyThousandFilesListAndStatCompletely) {
  // 50 top directories x 10 subdirectories x 100 files, each subdirectory
  // with a symlink, each top directory with a hardlink. Contents are mostly
  // small and repeated (1,000 distinct short texts, some empty) so the
  // store keeps few blobs, plus 100 distinct random ones.
  constexpr int kTop = 50, kSub = 10, kFiles = 100;
  std::vector<TarEntry> entries;
  std::map<std::string, EntryInfo> want;
  std::map<std::string, std::string> contents;  // Sampled paths -> bytes.
  int i = 0;
  for (int t = 0; t < kTop; ++t) {
    const std::string top = absl::StrFormat("d%02d", t);
    entries.push_back({top + "/", TarEntry::kDir, 0755, ""});
    want[top] = {'d', 0755, 0, ""};
    for (int s = 0; s < kSub; ++s) {
      const std::string sub = absl::StrFormat("%s/s%d", top, s);
      const int dir_mode = s % 2 == 0 ? 0755 : 0750;
      entries.push_back({sub + "/", TarEntry::kDir, dir_mode, ""});
      want[sub] = {'d', dir_mode, 0, ""};
      for (int f = 0; f < kFiles; ++f, ++i) {
        const std::string path = absl::StrFormat("%s/f%03d%s", sub, f,
                                                 f % 4 == 0   ? ".txt"
                                                 : f % 4 == 1 ? ".so"
                                                              : "");
        std::string bytes;
        if (i % 500 == 0) {
          bytes = RandomBytes(2000 + i % 3000, i);
        } else if (i % 97 != 0) {
          bytes = absl::StrCat("content ", i % 1000, "\n");
        }
        const int mode = i % 3 == 0 ? 0755 : i % 3 == 1 ? 0644 : 0600;
        want[path] = {'f', mode, bytes.size(), ""};
        if (i % 500 == 0 || i % 4999 == 1) contents[path] = bytes;
        entries.push_back({path, TarEntry::kFile, mode, std::move(bytes)});
      }
      entries.push_back(
          {sub + "/latest", TarEntry::kSymlink, 0777, "f000.txt"});
      want[sub + "/latest"] = {'l', 0777, 8, "f000.txt"};
    }
    const std::string target = top + "/s0/f001.so";
    entries.push_back({top + "/hard", TarEntry::kHardlink, 0, target});
    want[top + "/hard"] = want[target];
  }
  ASSERT_EQ(i, 50000);

  const absl::Time start = absl::Now();
  const std::string tarball = work_ + "/big.tar.gz";
  ASSERT_TRUE(WriteFile(tarball, BuildTar(entries)).ok());
  entries.clear();
  Push(tarball, "big@main");
  const absl::Time pushed = absl::Now();

  std::map<std::string, EntryInfo> got;
  const std::string root = mnt_ + "/big@main";
  Walk(root, "", &got);
  const absl::Time walked = absl::Now();
  std::fprintf(stderr,
               "%zu entries (50,000 files): build+push %.1f s, walk %.1f s\n",
               got.size(), absl::ToDoubleSeconds(pushed - start),
               absl::ToDoubleSeconds(walked - pushed));
  ExpectSameListing(want, got);
  int regular = 0;
  for (const auto& [path, info] : got) regular += info.type == 'f';
  EXPECT_EQ(regular, kTop * kSub * kFiles + kTop);  // Hardlinks included.

  // A second walk (kernel caches) sees the same.
  std::map<std::string, EntryInfo> again;
  Walk(root, "", &again);
  EXPECT_TRUE(again == got);

  // Sampled contents (every distinct random one among them) read back
  // byte for byte and carry their digest.
  ASSERT_GE(contents.size(), 100u);
  for (const auto& [path, bytes] : contents) {
    absl::StatusOr<std::string> read = ReadFile(root + "/" + path);
    ASSERT_TRUE(read.ok()) << path << ": " << read.status();
    EXPECT_TRUE(*read == bytes) << path;
    char digest[128];
    const ssize_t n = getxattr((root + "/" + path).c_str(), "user.cairn.digest",
                               digest, sizeof(digest));
    ASSERT_GT(n, 0) << path << ": " << strerror(errno);
    EXPECT_EQ(std::string(digest, n), DigestOf(bytes)) << path;
  }
  // A hardlink is its target's inode.
  struct stat a, b;
  ASSERT_EQ(lstat((root + "/d07/hard").c_str(), &a), 0) << strerror(errno);
  ASSERT_EQ(lstat((root + "/d07/s0/f001.so").c_str(), &b), 0);
  EXPECT_EQ(a.st_ino, b.st_ino);
}

TEST_F(FuseTreeTest, FindCatAndSha256sumAgreeWithTheOriginalTree) {
  // A real tree: time zone data (hundreds of relative symlinks) and kernel
  // headers, plus what those lack.
  const std::vector<std::string> sources = {"/usr/share/zoneinfo",
                                            "/usr/include/linux"};
  const std::string tree = work_ + "/tree";
  ASSERT_TRUE(fs::create_directories(tree));
  for (const std::string& src : sources) {
    if (!fs::is_directory(src)) GTEST_SKIP() << src << " is not here";
    Shell(absl::StrCat("cp -a ", Quote(src), " ", Quote(tree)));
  }
  const std::string extra = tree + "/extra";
  fs::create_directories(extra + "/empty dir");
  fs::create_directories(extra + "/bin");
  ASSERT_TRUE(WriteFile(extra + "/bin/run.sh", "#!/bin/sh\necho hi\n").ok());
  fs::permissions(extra + "/bin/run.sh", fs::perms(0755));
  ASSERT_TRUE(WriteFile(extra + "/empty", "").ok());
  ASSERT_TRUE(WriteFile(extra + "/name with spaces", "spaces\n").ok());
  // 5 MiB + 1: reads cross the 1 MiB request size.
  ASSERT_TRUE(
      WriteFile(extra + "/big.bin", RandomBytes((5 << 20) + 1, 42)).ok());
  fs::create_hard_link(extra + "/big.bin", extra + "/big-hardlink.bin");
  fs::create_symlink("bin", extra + "/bin-link");
  fs::create_symlink("does/not/exist", extra + "/dangling");
  fs::create_symlink("/usr/share/zoneinfo/UTC", extra + "/absolute");
  // Packing normalises modes (files 0644 or 0755, directories 0755:
  // docs/packing.md); normalise the original the same way.
  Shell(absl::StrCat("chmod -R u+rwX,go=rX ", Quote(tree)));

  const std::string tarball = work_ + "/tree.tar.gz";
  CommandResult r = Cli({"pack", tree, "-o", tarball});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  Push(tarball, "tree@main");
  const std::string mounted = mnt_ + "/tree@main";

  // Directories' sizes differ by nature (0 in the mount), so list them apart.
  const std::string find_script =
      "find . -mindepth 1 -type d -printf '%y %m %P\\n' | LC_ALL=C sort && "
      "find . -mindepth 1 ! -type d -printf '%y %m %s %P -> %l\\n' "
      "| LC_ALL=C sort";
  const std::string sums_script =
      "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum";
  const std::string cat_script =
      "find . -type f -print0 | LC_ALL=C sort -z | xargs -0 cat | sha256sum";
  for (const std::string& script : {find_script, sums_script, cat_script}) {
    const absl::Time t0 = absl::Now();
    const std::string original =
        Shell(absl::StrCat("cd ", Quote(tree), " && ", script));
    const absl::Time t1 = absl::Now();
    const std::string through_mount =
        Shell(absl::StrCat("cd ", Quote(mounted), " && ", script));
    const absl::Time t2 = absl::Now();
    std::fprintf(stderr, "%s: disk %.2f s, mount %.2f s\n", script.c_str(),
                 absl::ToDoubleSeconds(t1 - t0),
                 absl::ToDoubleSeconds(t2 - t1));
    EXPECT_FALSE(original.empty());
    // Compared as a whole; on a mismatch gtest prints a line diff.
    EXPECT_EQ(through_mount, original) << script;
  }

  // Not vacuous: the tree has what the comparison is meant to cover.
  const std::string listing =
      Shell(absl::StrCat("cd ", Quote(tree), " && ", find_script));
  int files = 0, links = 0, dirs = 0;
  for (size_t pos = 0; pos < listing.size();) {
    const size_t end = listing.find('\n', pos);
    files += listing[pos] == 'f';
    links += listing[pos] == 'l';
    dirs += listing[pos] == 'd';
    pos = end == std::string::npos ? listing.size() : end + 1;
  }
  EXPECT_GT(files, 1000);
  EXPECT_GT(links, 100);
  EXPECT_GT(dirs, 50);
  EXPECT_THAT(listing, HasSubstr("f 755 18 extra/bin/run.sh -> \n"));
  EXPECT_THAT(listing, HasSubstr("l 777 14 extra/dangling -> does/not/exist"));
  EXPECT_THAT(listing, HasSubstr("d 755 extra/empty dir\n"));
}

}  // namespace
}  // namespace cairn::testing
