// Copyright 2026 The Cairn Authors.
//
// CairnFs mounted in this process over a Store and RefStore opened here, so
// the test can reach what the gRPC API cannot: artefact records in states
// no upload writes yet (INDEXING) and the mount's request counters
// (READDIRPLUS). Needs /dev/fuse and root; skips without /dev/fuse. The
// end-to-end tests through `cairnd --mount` are //tests:fuse_test and
// //tests:fuse_tree_test.

#include "fuse/cairn_fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/cleanup/cleanup.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/store_records.pb.h"
#include "store/digest.h"
#include "store/metadata.h"
#include "store/ref_name.h"
#include "store/refs.h"
#include "store/store.h"
#include "store/testing/opened_store.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"

namespace cairn {
namespace {

using ::cairn::testing::BuildTar;
using ::cairn::testing::FreshTestDir;
using ::cairn::testing::OpenedStore;
using ::cairn::testing::OpenStoreWithRefs;
using ::cairn::testing::PatternBytes;
using ::cairn::testing::ReadDirNames;
using ::cairn::testing::TarEntry;
using ::testing::ElementsAre;

// The target of symlink `path`; "<errno name>" if readlink fails.
std::string ReadLinkText(const std::string& path) {
  char buf[512];
  const ssize_t n = readlink(path.c_str(), buf, sizeof(buf));
  return n < 0 ? absl::StrCat("<", strerrorname_np(errno), ">")
               : std::string(buf, n);
}

// The first 4 KiB of file `path`; "<errno name>" if it cannot be read.
std::string ReadFileText(const std::string& path) {
  const int fd = open(path.c_str(), O_RDONLY);
  if (fd < 0) return absl::StrCat("<", strerrorname_np(errno), ">");
  char buf[4096];
  const ssize_t n = read(fd, buf, sizeof(buf));
  const int err = errno;
  close(fd);
  if (n < 0) return absl::StrCat("<", strerrorname_np(err), ">");
  return std::string(buf, n);
}

// Lists `dir` recursively and lstat()s every entry, as find(1) does, and
// calls `visit` (if set) with each entry's path relative to `dir`, the
// d_ino its listing gave and its stat. Returns the number of entries.
using Visit = std::function<void(const std::string& rel, ino_t d_ino,
                                 const struct stat&)>;
int WalkAndStat(const std::string& dir, const Visit& visit = nullptr,
                const std::string& prefix = "") {
  int n = 0;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << dir << ": " << strerror(errno);
    return 0;
  }
  std::vector<std::string> subdirs;
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    struct stat st;
    if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      ADD_FAILURE() << "lstat " << dir << "/" << name << ": "
                    << strerror(errno);
      continue;
    }
    ++n;
    if (visit) visit(prefix + name, e->d_ino, st);
    if (S_ISDIR(st.st_mode)) subdirs.push_back(name);
  }
  closedir(d);
  for (const std::string& sub : subdirs) {
    n += WalkAndStat(dir + "/" + sub, visit, prefix + sub + "/");
  }
  return n;
}

// Drops the kernel's caches (`what`: "1" the page cache, "2" dentries and
// inodes), as `echo what > /proc/sys/vm/drop_caches`. False if that file
// cannot be opened (not root); a failed write fails the test.
bool DropCaches(const char* what) {
  const int fd = open("/proc/sys/vm/drop_caches", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  EXPECT_EQ(write(fd, what, 1), 1) << strerror(errno);
  close(fd);
  return true;
}

// Inode number of every entry below `dir` by relative path, after checking
// each listing's d_ino agrees with it.
std::map<std::string, ino_t> CollectInodes(const std::string& dir) {
  std::map<std::string, ino_t> inodes;
  WalkAndStat(dir,
              [&](const std::string& rel, ino_t d_ino, const struct stat& st) {
                EXPECT_EQ(d_ino, st.st_ino) << rel;
                inodes[rel] = st.st_ino;
              });
  return inodes;
}

// One getdents64 call on directory `fd` with room for about two entries;
// appends the names but "." and "..". Returns false at the end.
bool ReadSomeEntries(int fd, std::vector<std::string>* seen) {
  alignas(8) char buf[200];
  const long n = syscall(SYS_getdents64, fd, buf, sizeof(buf));
  EXPECT_GE(n, 0) << strerror(errno);
  for (long off = 0; off < n;) {
    const auto* d = reinterpret_cast<const struct dirent64*>(buf + off);
    const std::string name = d->d_name;
    if (name != "." && name != "..") seen->push_back(name);
    off += d->d_reclen;
  }
  return n > 0;
}

// How often each of `names` (those read `read`) was seen, expecting once.
std::map<std::string, int> CountEachOnce(const std::vector<std::string>& names,
                                         int read) {
  std::map<std::string, int> count;
  for (const std::string& name : names) ++count[name];
  for (const auto& [name, n] : count) {
    EXPECT_EQ(n, 1) << "read " << read << " saw " << name << " " << n
                    << " times";
  }
  return count;
}

class CairnFsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (access("/dev/fuse", R_OK | W_OK) != 0) {
      GTEST_SKIP() << "/dev/fuse is not usable here";
    }
    dir_ = FreshTestDir("cairn_fs_test");
    mnt_ = dir_ + "/mnt";
    std::filesystem::create_directories(mnt_);
    OpenStore(dir_ + "/data");
  }

  // (Re)opens store_ and refs_ on `data_dir`, closing the ones open.
  void OpenStore(const std::string& data_dir) {
    refs_.reset();
    store_.reset();
    absl::StatusOr<OpenedStore> opened = OpenStoreWithRefs(data_dir);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(opened->store);
    refs_ = std::move(opened->refs);
  }

  // The blob file of content `bytes` in the store.
  std::string BlobPath(const std::string& bytes) const {
    const std::string hex = Sha256Of(bytes).Hex();
    return absl::StrCat(dir_, "/data/blobs/sha256/", hex.substr(0, 2), "/",
                        hex);
  }

  void Mount(const CairnFsOptions& options = {}) {
    absl::StatusOr<std::unique_ptr<CairnFs>> fs =
        CairnFs::Mount(store_.get(), refs_.get(), mnt_, options);
    ASSERT_TRUE(fs.ok()) << fs.status();
    fs_ = *std::move(fs);
  }

  // Mounts with CairnFsOptions::passthrough and waits for INIT (a STATFS
  // answered); *offered: whether the kernel offered passthrough.
  void MountWithPassthrough(bool* offered) {
    CairnFsOptions options;
    options.passthrough = true;
    Mount(options);
    ASSERT_NE(fs_, nullptr);
    struct statvfs vfs;
    ASSERT_EQ(statvfs(mnt_.c_str(), &vfs), 0) << strerror(errno);
    *offered = fs_->stats().passthrough;
  }

  void TearDown() override {
    if (fs_ != nullptr) {
      EXPECT_TRUE(fs_->Unmount().ok());
    }
    fs_.reset();
    refs_.reset();
    store_.reset();
  }

  Digest Push(const std::vector<TarEntry>& entries) {
    const std::string bytes = BuildTar(entries);
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        store_->BeginUpload({});
    EXPECT_TRUE(up.ok()) << up.status();
    if (!up.ok()) return Digest();
    constexpr size_t kChunk = 1 << 20;
    for (size_t off = 0; off < bytes.size(); off += kChunk) {
      absl::Status st =
          (*up)->Append(absl::string_view(bytes).substr(off, kChunk));
      EXPECT_TRUE(st.ok()) << st;
    }
    absl::StatusOr<UploadResult> r = (*up)->Finish();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->digest : Digest();
  }

  void SetSlot(const std::string& ref, const std::string& slot,
               const Digest& d) {
    absl::StatusOr<RefUpdate> u =
        refs_->SetSlot(*RefName::Parse(ref), slot, d, "cairn-fs-test");
    ASSERT_TRUE(u.ok()) << u.status();
  }

  // Rewrites the artefact's record with `state`, as an upload acknowledged
  // before its index is built will write it (INDEXING). Call after
  // WaitDurable(): the flusher would otherwise overwrite it.
  void SetIndexState(const Digest& d, store::ArtefactRecord::IndexState state) {
    absl::StatusOr<store::ArtefactRecord> a = store_->metadata().GetArtefact(d);
    ASSERT_TRUE(a.ok()) << a.status();
    a->set_index_state(state);
    MetadataBatch batch;
    batch.PutArtefact(d, *a);
    absl::Status st = store_->mutable_metadata().Commit(std::move(batch), true);
    ASSERT_TRUE(st.ok()) << st;
  }

  std::string ByDigest(const Digest& d) const {
    return absl::StrCat(mnt_, "/by-digest/", d.ToString());
  }

  // Pushes `n` one-file artefacts (their digests in *pushed) and returns
  // the entries of one more, not pushed, whose digest sorts before them.
  std::vector<TarEntry> PushThenOneSortingFirst(int n,
                                                std::set<std::string>* pushed) {
    for (int i = 0; i < n; ++i) {
      pushed->insert(Push({{"f", TarEntry::kFile, 0644, absl::StrCat(i, "\n")}})
                         .ToString());
    }
    std::vector<TarEntry> first;
    for (int i = 0;; ++i) {
      first = {{"f", TarEntry::kFile, 0644, absl::StrCat("first ", i, "\n")}};
      if (Sha256Of(BuildTar(first)).ToString() < *pushed->begin()) break;
    }
    return first;
  }

  std::string dir_, mnt_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RefStore> refs_;
  std::unique_ptr<CairnFs> fs_;
};

TEST_F(CairnFsTest, IndexingArtefactsAndRefsToThemAreAbsent) {
  const Digest indexing = Push({{"bin/tool", TarEntry::kFile, 0755, "one\n"}});
  const Digest ready = Push({{"bin/tool", TarEntry::kFile, 0755, "two\n"}});
  SetSlot("tool@main", "noarch", indexing);
  SetSlot("other@main", "noarch", ready);
  // The host slot wins over noarch even while its artefact is not served:
  // the ref is absent, it does not fall back.
  SetSlot("host@main", "noarch", ready);
  SetSlot("host@main", HostSlot(), indexing);
  ASSERT_TRUE(store_->WaitDurable().ok());
  SetIndexState(indexing, store::ArtefactRecord::INDEXING);
  Mount();

  EXPECT_THAT(ReadDirNames(mnt_ + "/by-digest"), ElementsAre(ready.ToString()));
  struct stat st;
  EXPECT_EQ(lstat(ByDigest(indexing).c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_EQ(lstat((ByDigest(indexing) + "/bin/tool").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  for (const char* ref : {"tool@main", "host@main"}) {
    const std::string link = absl::StrCat(mnt_, "/", ref);
    EXPECT_EQ(lstat(link.c_str(), &st), -1) << ref;
    EXPECT_EQ(errno, ENOENT) << ref;
    char buf[256];
    EXPECT_EQ(readlink(link.c_str(), buf, sizeof(buf)), -1) << ref;
    EXPECT_EQ(errno, ENOENT) << ref;
  }
  // Names that are no ref at all are absent too (not EINVAL).
  for (const char* name : {"Tool@main", "a@b@c", "tool@", "@main"}) {
    EXPECT_EQ(lstat(absl::StrCat(mnt_, "/", name).c_str(), &st), -1) << name;
    EXPECT_EQ(errno, ENOENT) << name;
  }
  ASSERT_EQ(lstat((mnt_ + "/other@main/bin/tool").c_str(), &st), 0)
      << strerror(errno);
  // Refs are listed without being resolved, as yanked releases are.
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "host@main", "other@main", "tool@main"));

  // Once the index is committed the artefact and its refs appear, in the
  // /by-digest listing too. The kernel caches that listing until the store
  // reports an index commit (Store::AddArtefactListener); this test flips
  // the state in the database behind the store's back, so a real push
  // follows to report one.
  SetIndexState(indexing, store::ArtefactRecord::COMMITTED);
  const Digest third = Push({{"bin/tool", TarEntry::kFile, 0755, "three\n"}});
  std::vector<std::string> all = {indexing.ToString(), ready.ToString(),
                                  third.ToString()};
  std::sort(all.begin(), all.end());
  EXPECT_EQ(ReadDirNames(mnt_ + "/by-digest"), all);
  ASSERT_EQ(lstat((mnt_ + "/tool@main/bin/tool").c_str(), &st), 0)
      << strerror(errno);
  EXPECT_EQ(st.st_size, 4);
  char buf[256];
  const ssize_t n = readlink((mnt_ + "/host@main").c_str(), buf, sizeof(buf));
  ASSERT_GT(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "by-digest/" + indexing.ToString());
}

TEST_F(CairnFsTest, NewArtefactsAppearInByDigestListing) {
  const Digest a = Push({{"a", TarEntry::kFile, 0644, "a\n"}});
  Mount();
  EXPECT_THAT(ReadDirNames(mnt_ + "/by-digest"), ElementsAre(a.ToString()));
  const Digest b = Push({{"b", TarEntry::kFile, 0644, "b\n"}});
  std::vector<std::string> both = {a.ToString(), b.ToString()};
  std::sort(both.begin(), both.end());
  EXPECT_EQ(ReadDirNames(mnt_ + "/by-digest"), both);
}

// A read of a listing that changes (/by-digest, "/", namespaces) sees one
// snapshot from its first chunk to its last: an artefact pushed in the
// middle of it (here one that sorts first, shifting every entry) is neither
// shown twice nor makes another entry vanish. The next read shows it.
TEST_F(CairnFsTest, AListingReadInChunksIsOneSnapshot) {
  std::set<std::string> before;
  // Content whose artefact digest sorts before all of them.
  const std::vector<TarEntry> first = PushThenOneSortingFirst(60, &before);
  Mount();

  const int fd =
      open((mnt_ + "/by-digest").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::vector<std::string> seen;
  auto read_some = [&]() { return ReadSomeEntries(fd, &seen); };
  ASSERT_TRUE(read_some());
  const std::string pushed = Push(first).ToString();
  while (read_some()) {
  }
  close(fd);

  EXPECT_EQ(seen.size(), before.size());
  EXPECT_EQ(std::set<std::string>(seen.begin(), seen.end()), before);
  std::vector<std::string> now = ReadDirNames(mnt_ + "/by-digest");
  EXPECT_EQ(now.size(), before.size() + 1);
  EXPECT_THAT(now, ::testing::Contains(pushed));
}

TEST_F(CairnFsTest, TreeWalkNeedsNoLookupPerEntry) {
  std::vector<TarEntry> entries;
  constexpr int kDirs = 20, kFilesPerDir = 100;
  for (int d = 0; d < kDirs; ++d) {
    const std::string dir = absl::StrCat("d", d);
    entries.push_back({dir + "/", TarEntry::kDir, 0755, ""});
    for (int f = 0; f < kFilesPerDir; ++f) {
      entries.push_back({absl::StrCat(dir, "/f", f), TarEntry::kFile, 0644,
                         absl::StrCat(f % 7, "\n")});
    }
    entries.push_back({dir + "/link", TarEntry::kSymlink, 0777, "f0"});
  }
  const Digest d = Push(entries);
  Mount();
  const CairnFsStats before = fs_->stats();
  EXPECT_EQ(WalkAndStat(ByDigest(d)), kDirs * (kFilesPerDir + 2));
  const CairnFsStats after = fs_->stats();
  // One LOOKUP for by-digest/<digest>, perhaps by-digest itself; every
  // other entry came with its attributes from READDIRPLUS.
  EXPECT_LE(after.lookups - before.lookups, 2u);
  EXPECT_GE(after.readdirplus_entries - before.readdirplus_entries,
            static_cast<uint64_t>(kDirs * (kFilesPerDir + 2)));

  // A second walk is served from the kernel's caches: no LOOKUP, no
  // OPENDIR, no READDIR (zero-message opendir, cached listings).
  const CairnFsStats again = fs_->stats();
  EXPECT_EQ(WalkAndStat(ByDigest(d)), kDirs * (kFilesPerDir + 2));
  const CairnFsStats warm = fs_->stats();
  EXPECT_EQ(warm.lookups, again.lookups);
  EXPECT_EQ(warm.opendirs, again.opendirs);
  EXPECT_EQ(warm.readdirs, again.readdirs);
  // The first walk listed each directory once (one read, a few chunks).
  EXPECT_GE(again.readdirs - before.readdirs, static_cast<uint64_t>(kDirs));
}

// More concurrent reads of a changing directory than it keeps snapshots of
// (4): the reads whose snapshot was dropped resume after the last name
// they were handed, in a listing built anew, and still see every entry
// once (before, they resumed at a position of the new listing, and the
// entry pushed meanwhile made each repeat one).
TEST_F(CairnFsTest, ManyConcurrentChunkedListingsEachSeeEveryEntryOnce) {
  std::set<std::string> before;
  const std::vector<TarEntry> first = PushThenOneSortingFirst(40, &before);
  Mount();
  constexpr int kReads = 7;
  std::vector<int> fds;
  std::vector<std::vector<std::string>> seen(kReads);
  for (int r = 0; r < kReads; ++r) {
    fds.push_back(open((mnt_ + "/by-digest").c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_GE(fds.back(), 0) << strerror(errno);
  }
  auto read_some = [&](int r) { return ReadSomeEntries(fds[r], &seen[r]); };
  // Every read under way, a few chunks in.
  for (int round = 0; round < 3; ++round) {
    for (int r = 0; r < kReads; ++r) ASSERT_TRUE(read_some(r));
  }
  Push(first);
  for (int r = 0; r < kReads; ++r) {
    while (read_some(r)) {
    }
    close(fds[r]);
    const std::map<std::string, int> count = CountEachOnce(seen[r], r);
    for (const std::string& name : before) {
      EXPECT_EQ(count.count(name), 1u) << "read " << r << " missed " << name;
    }
  }
}

// Chunked reads of the root whose snapshot was dropped resume in a listing
// rebuilt after most refs were deleted: far shorter than the offsets they
// hold. They end without an entry twice (and without reading past the new
// listing: run with -D_GLIBCXX_ASSERTIONS, the old resume aborted).
TEST_F(CairnFsTest, ChunkedListingsSurviveTheDirectoryShrinking) {
  const Digest a = Push({{"f", TarEntry::kFile, 0644, "a\n"}});
  for (int i = 0; i < 60; ++i) {
    SetSlot(absl::StrFormat("r%02d@main", i), "noarch", a);
  }
  Mount();
  constexpr int kReads = 6;
  std::vector<int> fds;
  std::vector<std::vector<std::string>> seen(kReads);
  for (int r = 0; r < kReads; ++r) {
    fds.push_back(open(mnt_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    ASSERT_GE(fds.back(), 0) << strerror(errno);
  }
  for (int r = 0; r < kReads; ++r) {
    while (seen[r].size() < 45) ASSERT_TRUE(ReadSomeEntries(fds[r], &seen[r]));
  }
  for (int i = 5; i < 60; ++i) {
    ASSERT_TRUE(refs_
                    ->DeleteBranch(
                        *RefName::Parse(absl::StrFormat("r%02d@main", i)), "t")
                    .ok());
  }
  for (int r = 0; r < kReads; ++r) {
    while (ReadSomeEntries(fds[r], &seen[r])) {
    }
    close(fds[r]);
    CountEachOnce(seen[r], r);
  }
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "r00@main", "r01@main", "r02@main",
                          "r03@main", "r04@main"));
}

// Names and symlink targets that are not UTF-8 are served as the archive
// has them.
TEST_F(CairnFsTest, NamesThatAreNotUtf8AreServedAsTheyAre) {
  const Digest d = Push({{"bad\xff", TarEntry::kFile, 0644, "x\n"},
                         {"link", TarEntry::kSymlink, 0777, "tgt\xfe"}});
  Mount();
  EXPECT_EQ(ReadFileText(ByDigest(d) + "/bad\xff"), "x\n");
  char buf[64];
  const ssize_t n = readlink((ByDigest(d) + "/link").c_str(), buf, sizeof(buf));
  ASSERT_GE(n, 0) << strerror(errno);
  EXPECT_EQ(std::string(buf, n), "tgt\xfe");
}

// A mount unmounted from outside (umount, fusermount3 -u) has no
// connection any more, and its fusectl number and its path may belong to
// other mounts by the time Unmount runs: Unmount must touch neither. Here
// a tmpfs takes the path, and another Cairn mount (most likely) the
// connection number; fusectl is mounted for the test if it is not and can
// be (as systemd does), so that the number is used.
TEST_F(CairnFsTest, UnmountAfterAnOutsideUnmountHarmsNoOtherMount) {
  const Digest d = Push({{"f", TarEntry::kFile, 0644, "still here\n"}});
  const std::string fusectl = "/sys/fs/fuse/connections";
  struct statfs sfs;
  const bool had_fusectl = statfs(fusectl.c_str(), &sfs) == 0 &&
                           sfs.f_type == 0x65735543;  // FUSECTL_SUPER_MAGIC
  // Where it cannot be mounted (a container's sysfs), the path half of the
  // test still runs.
  const bool mounted_fusectl =
      !had_fusectl &&
      mount("fusectl", fusectl.c_str(), "fusectl", 0, nullptr) == 0;
  Mount();
  struct stat st;
  ASSERT_EQ(stat(mnt_.c_str(), &st), 0) << strerror(errno);
  ASSERT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0) << strerror(errno);

  // The path: a tmpfs with a file. The number: a second mount.
  ASSERT_EQ(mount("victim", mnt_.c_str(), "tmpfs", 0, nullptr), 0)
      << strerror(errno);
  std::ofstream(mnt_ + "/precious") << "data";
  const std::string mnt2 = dir_ + "/mnt2";
  std::filesystem::create_directories(mnt2);
  absl::StatusOr<std::unique_ptr<CairnFs>> second =
      CairnFs::Mount(store_.get(), refs_.get(), mnt2);
  ASSERT_TRUE(second.ok()) << second.status();
  const std::string in_second =
      absl::StrCat(mnt2, "/by-digest/", d.ToString(), "/f");
  EXPECT_EQ(ReadFileText(in_second), "still here\n");

  EXPECT_TRUE(fs_->Unmount().ok());
  EXPECT_EQ(ReadFileText(mnt_ + "/precious"), "data");
  EXPECT_EQ(ReadFileText(in_second), "still here\n");

  EXPECT_TRUE((*second)->Unmount().ok());
  EXPECT_EQ(umount2(mnt_.c_str(), 0), 0) << strerror(errno);
  // Lazily: another test's unmount may be writing an abort file in it.
  if (mounted_fusectl) {
    EXPECT_EQ(umount2(fusectl.c_str(), MNT_DETACH), 0);
  }
}

// A mount that another file system covers is still unmounted: its
// connection is aborted through fusectl, created as a detached mount
// where it is not mounted (here, as in most containers), and the covering
// file system is left alone. Before, without fusectl, Unmount gave up and
// left the session running.
TEST_F(CairnFsTest, CoveredMountIsEndedThroughItsConnection) {
  const Digest d = Push({{"f", TarEntry::kFile, 0644, "x\n"}});
  Mount();
  EXPECT_EQ(ReadFileText(ByDigest(d) + "/f"), "x\n");
  ASSERT_EQ(mount("cover", mnt_.c_str(), "tmpfs", 0, nullptr), 0)
      << strerror(errno);
  std::ofstream(mnt_ + "/precious") << "data";

  const absl::Status unmounted = fs_->Unmount();
  EXPECT_EQ(ReadFileText(mnt_ + "/precious"), "data");
  ASSERT_EQ(umount2(mnt_.c_str(), 0), 0) << strerror(errno);
  // Else the session was left running: a request below would wait on it.
  ASSERT_TRUE(unmounted.ok()) << unmounted;
  // Under the tmpfs: the aborted mount, left for whoever uncovers it. A
  // name never looked up needs a request, which the aborted connection
  // fails (the root's attributes may still come from the kernel's cache).
  struct stat st;
  EXPECT_NE(stat((mnt_ + "/never-looked-up").c_str(), &st), 0);
  EXPECT_EQ(errno, ENOTCONN);
  EXPECT_EQ(umount2(mnt_.c_str(), MNT_DETACH), 0) << strerror(errno);
}

// The mount keeps an entry's node only while the kernel holds its inode:
// once the kernel drops its caches (and sends FORGET), the table shrinks
// back, and a new walk finds the same inode numbers (a hardlink still its
// target's), as `ls -i` of the listings does.
TEST_F(CairnFsTest, ForgottenInodesAreDroppedAndKeepTheirNumbers) {
  std::vector<TarEntry> entries;
  constexpr int kDirs = 10, kFilesPerDir = 50;
  for (int d = 0; d < kDirs; ++d) {
    const std::string dir = absl::StrCat("d", d);
    entries.push_back({dir + "/", TarEntry::kDir, 0755, ""});
    for (int f = 0; f < kFilesPerDir; ++f) {
      entries.push_back({absl::StrCat(dir, "/f", f), TarEntry::kFile, 0644,
                         absl::StrCat(d, "/", f, "\n")});
    }
  }
  entries.push_back({"d0/hard", TarEntry::kHardlink, 0644, "d0/f1"});
  entries.push_back({"d0/soft", TarEntry::kSymlink, 0777, "f1"});
  const Digest d = Push(entries);
  Mount();
  const uint64_t idle = fs_->stats().inodes;

  const std::map<std::string, ino_t> first = CollectInodes(ByDigest(d));
  ASSERT_EQ(first.size(), static_cast<size_t>(kDirs * (kFilesPerDir + 1) + 2));
  EXPECT_EQ(first.at("d0/hard"), first.at("d0/f1"));
  struct stat st;
  ASSERT_EQ(stat((ByDigest(d) + "/d0/hard").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 2u);  // As du, tar and rsync -H expect.
  ASSERT_EQ(stat((ByDigest(d) + "/d0/f2").c_str(), &st), 0);
  EXPECT_EQ(st.st_nlink, 1u);
  EXPECT_NE(first.at("d0/soft"), first.at("d0/f1"));
  EXPECT_GE(fs_->stats().inodes, idle + first.size() - 1);

  if (!DropCaches("2")) {  // Dentries and inodes.
    GTEST_SKIP() << "cannot drop the kernel's caches (needs root)";
  }
  // The kernel queued its FORGETs; the session loop reads them between
  // requests, so a few round trips (GETXATTR is never cached) see them
  // through.
  for (int i = 0; i < 1000 && fs_->stats().inodes > idle + 2; ++i) {
    char value[8];
    getxattr(mnt_.c_str(), "user.cairn.nothing", value, sizeof(value));
  }
  EXPECT_LE(fs_->stats().inodes, idle + 2);

  EXPECT_EQ(CollectInodes(ByDigest(d)), first);
  std::ifstream in(ByDigest(d) + "/d3/f7");
  std::string line;
  std::getline(in, line);
  EXPECT_EQ(line, "3/7");
}

// stat and listings show inode numbers below 2^32 (32-bit programs without
// large-file support get EOVERFLOW otherwise), distinct across artefacts
// and ref-level nodes, with hardlinks sharing their target's.
TEST_F(CairnFsTest, InodeNumbersFitIn32Bits) {
  const Digest a = Push({
      {"bin/", TarEntry::kDir, 0755, ""},
      {"bin/tool", TarEntry::kFile, 0755, "a tool"},
      {"bin/same", TarEntry::kHardlink, 0755, "bin/tool"},
      {"lib", TarEntry::kSymlink, 0777, "bin"},
  });
  const Digest b = Push({
      {"x/", TarEntry::kDir, 0755, ""},
      {"x/y", TarEntry::kFile, 0644, "why"},
  });
  SetSlot("team/tool@main", "noarch", a);
  Mount();

  std::map<ino_t, std::string> owner;  // Inode number -> first path.
  auto note = [&](const std::string& path, ino_t ino) {
    EXPECT_GT(ino, 0u) << path;
    EXPECT_LT(ino, ino_t{1} << 32) << path;
    auto [it, inserted] = owner.emplace(ino, path);
    const bool hardlink =
        (path == "a/bin/same" && it->second == "a/bin/tool") ||
        (path == "a/bin/tool" && it->second == "a/bin/same");
    if (!inserted && !hardlink) {
      ADD_FAILURE() << path << " has the inode of " << it->second;
    }
  };
  for (const auto& [name, d] :
       {std::pair<std::string, Digest>{"a", a}, {"b", b}}) {
    struct stat st;
    ASSERT_EQ(stat(ByDigest(d).c_str(), &st), 0) << strerror(errno);
    note(name, st.st_ino);
    for (const auto& [rel, ino] : CollectInodes(ByDigest(d))) {
      note(name + "/" + rel, ino);
    }
  }
  struct stat st;
  ASSERT_EQ(lstat((mnt_ + "/team").c_str(), &st), 0) << strerror(errno);
  note("team", st.st_ino);
  ASSERT_EQ(lstat((mnt_ + "/team/tool@main").c_str(), &st), 0)
      << strerror(errno);
  note("team/tool@main", st.st_ino);
  // a: root, bin, bin/tool = bin/same, lib; b: root, x, x/y; team and
  // its ref symlink.
  EXPECT_EQ(owner.size(), 4u + 3u + 2u);
}

// Sequential reads arrive as 1 MiB requests with several in flight only if
// the mount's BDI readahead is raised (the kernel caps it at read_ahead_kb);
// READ replies are spliced from the blob's fd: the bytes must come back
// whole, at any offset, and short at the end of the file.
TEST_F(CairnFsTest, LargeFileReadsBackWithRaisedReadahead) {
  const std::string content = PatternBytes(5 * (1 << 20) + 123, 12345);
  const Digest d = Push({{"big", TarEntry::kFile, 0644, content}});
  Mount();
  struct stat mst;
  ASSERT_EQ(stat(mnt_.c_str(), &mst), 0) << strerror(errno);
  const std::string ra = absl::StrCat("/sys/class/bdi/", major(mst.st_dev), ":",
                                      minor(mst.st_dev), "/read_ahead_kb");
  char ra_buf[32] = {};
  const int ra_fd = open(ra.c_str(), O_RDONLY);
  ASSERT_GE(ra_fd, 0) << ra << ": " << strerror(errno);
  ASSERT_GT(read(ra_fd, ra_buf, sizeof(ra_buf) - 1), 0);
  close(ra_fd);
  // 4 READs of max_read: 4096 KiB, or 4032 if READs are 1 MiB - 16 KiB.
  const std::string ra_kb(ra_buf);
  EXPECT_TRUE(ra_kb == "4096\n" || ra_kb == "4032\n") << ra_kb;

  const int fd = open((ByDigest(d) + "/big").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  std::string got;
  std::vector<char> buf(1 << 20);
  for (;;) {
    const ssize_t n = read(fd, buf.data(), buf.size());
    ASSERT_GE(n, 0) << strerror(errno);
    if (n == 0) break;
    got.append(buf.data(), n);
  }
  EXPECT_TRUE(got == content) << "read back " << got.size() << " bytes";
  const off_t tail = content.size() - 100;
  EXPECT_EQ(pread(fd, buf.data(), 4096, tail), 100);
  EXPECT_EQ(std::string(buf.data(), 100), content.substr(tail));
  EXPECT_EQ(pread(fd, buf.data(), 4096, content.size()), 0);
  close(fd);
  // READs are sized so that libfuse can splice them (MaxReadBytes): every
  // READ of two pages or more is spliced (5 MiB take at least 5). With
  // 1 MiB READs, a cairnd without CAP_SYS_RESOURCE had them copied.
  const CairnFsStats st = fs_->stats();
  EXPECT_GE(st.large_reads, 5u) << st.reads << " READs";
  EXPECT_EQ(st.spliced_replies, st.large_reads) << st.reads << " READs";
}

// While a worker hashes a large blob for its first verification, READs of
// that blob at other offsets queue behind the hash instead of taking the
// other workers, which stay free for every other file. Here the hash is
// held (testing_before_hash) with two workers: one hashes, the READ at
// another offset is queued, and a small file's READ is still answered.
TEST_F(CairnFsTest, ReadsWaitingForAHashLeaveWorkersFree) {
  const std::string big = PatternBytes(16 << 20, 21);
  const Digest d = Push({{"big", TarEntry::kFile, 0644, big},
                         {"small", TarEntry::kFile, 0644, "small\n"}});
  absl::Notification hashing, release;
  CairnFsOptions options;
  options.workers = 2;
  const Digest big_digest = Sha256Of(big);
  options.testing_before_hash = [&](const Digest& blob) {
    if (blob != big_digest) return;
    if (!hashing.HasBeenNotified()) hashing.Notify();
    release.WaitForNotification();
  };
  Mount(options);
  const std::string path = ByDigest(d) + "/big";
  auto read_at = [&](off_t off) {
    const int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::string("<open failed>");
    std::string buf(4096, '\0');
    const ssize_t n = pread(fd, buf.data(), buf.size(), off);
    close(fd);
    return n < 0 ? std::string("<read failed>") : buf.substr(0, n);
  };
  std::future<std::string> first =
      std::async(std::launch::async, read_at, off_t{0});
  hashing.WaitForNotification();
  std::future<std::string> second =
      std::async(std::launch::async, read_at, off_t{12 << 20});
  // The second READ is queued behind the hash (not holding a worker).
  const absl::Time deadline = absl::Now() + absl::Seconds(10);
  while (fs_->stats().verification_waits == 0 && absl::Now() < deadline) {
    std::this_thread::yield();
  }
  EXPECT_EQ(fs_->stats().verification_waits, 1u);
  // A worker is free: the small file is read while the hash is held.
  std::future<std::string> small = std::async(
      std::launch::async, [&] { return ReadFileText(ByDigest(d) + "/small"); });
  const bool small_done =
      small.wait_for(std::chrono::seconds(10)) == std::future_status::ready;
  EXPECT_TRUE(small_done) << "a READ of another file waited for the hash";
  release.Notify();
  if (small_done) {
    EXPECT_EQ(small.get(), "small\n");
  }
  EXPECT_EQ(first.get(), big.substr(0, 4096));
  EXPECT_EQ(second.get(), big.substr(12 << 20, 4096));
}

// The READs of a file bigger than one READ share one open file of its blob
// (for the blob's readahead), and at most 64 such files stay open, the
// most recently used; a small file's blob is opened per READ.
TEST_F(CairnFsTest, BlobFilesKeptOpenForReadsAreShared) {
  constexpr int kBig = 70;
  constexpr size_t kBigBytes = (1 << 20) + 1;  // Over any max_read.
  std::vector<TarEntry> entries;
  for (int i = 0; i < kBig; ++i) {
    std::string content(kBigBytes, '\0');
    const std::string head = absl::StrCat("file ", i, "\n");
    content.replace(0, head.size(), head);
    entries.push_back({absl::StrCat("f", i), TarEntry::kFile, 0644, content});
  }
  entries.push_back({"small", TarEntry::kFile, 0644, "small\n"});
  const Digest d = Push(entries);
  Mount();
  auto path = [&](int i) { return absl::StrCat(ByDigest(d), "/f", i); };
  // Whether file i starts as it should (ReadFileText reads 4 KiB of it).
  auto starts_right = [&](int i) {
    const std::string head = absl::StrCat("file ", i, "\n");
    return ReadFileText(path(i)).substr(0, head.size()) == head;
  };

  for (int i = 0; i < kBig; ++i) EXPECT_TRUE(starts_right(i)) << path(i);
  CairnFsStats st = fs_->stats();
  EXPECT_EQ(st.blob_opens, static_cast<uint64_t>(kBig));
  EXPECT_EQ(st.open_blob_files, 64u);

  // All of the last file, in several READs: no new open.
  std::ifstream in(path(kBig - 1), std::ios::binary);
  const std::string whole((std::istreambuf_iterator<char>(in)),
                          std::istreambuf_iterator<char>());
  EXPECT_EQ(whole.size(), kBigBytes);
  EXPECT_EQ(whole.substr(0, 8), "file 69\n");
  EXPECT_GT(fs_->stats().reads, st.reads);
  EXPECT_EQ(fs_->stats().blob_opens, st.blob_opens);

  // A small file: opened for its READ, not kept.
  EXPECT_EQ(ReadFileText(ByDigest(d) + "/small"), "small\n");
  EXPECT_EQ(fs_->stats().blob_opens, st.blob_opens + 1);
  EXPECT_EQ(fs_->stats().open_blob_files, 64u);

  // After the page cache is dropped, the first file (evicted) is opened
  // anew; the last one (kept) is not.
  if (!DropCaches("1"))
    GTEST_SKIP() << "cannot drop the page cache (needs root)";
  st = fs_->stats();
  EXPECT_TRUE(starts_right(kBig - 1));
  EXPECT_EQ(fs_->stats().blob_opens, st.blob_opens);
  EXPECT_TRUE(starts_right(0));
  EXPECT_EQ(fs_->stats().blob_opens, st.blob_opens + 1);
  EXPECT_EQ(fs_->stats().open_blob_files, 64u);
}

// "/" and namespace directories keep their attributes, entries and
// listings cached, and the refs' changes invalidate them: new refs, new
// namespaces, moved and deleted refs show at once.
TEST_F(CairnFsTest, RootAndNamespacesShowRefChangesAtOnce) {
  const Digest a = Push({{"f", TarEntry::kFile, 0644, "a\n"}});
  const Digest b = Push({{"f", TarEntry::kFile, 0644, "b\n"}});
  SetSlot("tool@main", "noarch", a);
  SetSlot("team/x@main", "noarch", a);
  Mount();
  struct stat st;
  ASSERT_EQ(stat(mnt_.c_str(), &st), 0);
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "team", "tool@main"));
  EXPECT_THAT(ReadDirNames(mnt_ + "/team"), ElementsAre("x@main"));
  EXPECT_EQ(ReadLinkText(mnt_ + "/tool@main"), "by-digest/" + a.ToString());
  EXPECT_EQ(ReadLinkText(mnt_ + "/team/x@main"),
            "../by-digest/" + a.ToString());

  SetSlot("new@main", "noarch", b);
  SetSlot("team/y@main", "noarch", b);
  SetSlot("ops/z@main", "noarch", b);
  SetSlot("tool@main", "noarch", b);
  SetSlot("team/x@main", "noarch", b);
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "new@main", "ops", "team", "tool@main"));
  EXPECT_THAT(ReadDirNames(mnt_ + "/team"), ElementsAre("x@main", "y@main"));
  EXPECT_EQ(ReadLinkText(mnt_ + "/tool@main"), "by-digest/" + b.ToString());
  EXPECT_EQ(ReadLinkText(mnt_ + "/team/x@main"),
            "../by-digest/" + b.ToString());
  EXPECT_EQ(ReadLinkText(mnt_ + "/ops/z@main"), "../by-digest/" + b.ToString());
  ASSERT_EQ(lstat((mnt_ + "/tool@main/f").c_str(), &st), 0) << strerror(errno);
  const int fd = open((mnt_ + "/tool@main/f").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[8];
  EXPECT_EQ(read(fd, buf, sizeof(buf)), 2);
  EXPECT_EQ(std::string(buf, 2), "b\n");
  close(fd);

  // A deleted branch is gone at once, and so is a namespace left empty.
  ASSERT_TRUE(refs_->DeleteBranch(*RefName::Parse("ops/z@main"), "t").ok());
  ASSERT_TRUE(refs_->DeleteBranch(*RefName::Parse("new@main"), "t").ok());
  EXPECT_EQ(ReadLinkText(mnt_ + "/new@main"), "<ENOENT>");
  EXPECT_EQ(lstat((mnt_ + "/ops").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
  EXPECT_THAT(ReadDirNames(mnt_),
              ElementsAre("by-digest", "team", "tool@main"));

  // A namespace that keeps refs keeps its entry: a process working in it
  // (here an open directory) does not see it unlinked.
  const int team = open((mnt_ + "/team").c_str(), O_RDONLY | O_DIRECTORY);
  ASSERT_GE(team, 0) << strerror(errno);
  const std::string team_fd = absl::StrCat("/proc/self/fd/", team);
  ASSERT_TRUE(refs_->DeleteBranch(*RefName::Parse("team/y@main"), "t").ok());
  EXPECT_EQ(ReadLinkText(team_fd), mnt_ + "/team");
  EXPECT_THAT(ReadDirNames(mnt_ + "/team"), ElementsAre("x@main"));
  // Its last ref gone, it goes.
  ASSERT_TRUE(refs_->DeleteBranch(*RefName::Parse("team/x@main"), "t").ok());
  EXPECT_EQ(ReadLinkText(team_fd), mnt_ + "/team (deleted)");
  close(team);
}

// A ref's entry is cached (repeated walks through it cost no LOOKUP) and
// dropped the moment the ref changes (RefStore change listener), for
// top-level and namespaced refs alike.
TEST_F(CairnFsTest, RefEntriesAreCachedUntilTheRefChanges) {
  const Digest a = Push({{"f", TarEntry::kFile, 0644, "a\n"}});
  const Digest b = Push({{"f", TarEntry::kFile, 0644, "b\n"}});
  SetSlot("tool@main", "noarch", a);
  SetSlot("team/x@main", "noarch", a);
  Mount();
  for (const std::string ref : {"tool@main", "team/x@main"}) {
    SCOPED_TRACE(ref);
    const std::string link = mnt_ + "/" + ref;
    const std::string up = ref == "tool@main" ? "" : "../";
    EXPECT_EQ(ReadLinkText(link), up + "by-digest/" + a.ToString());
    struct stat before;
    ASSERT_EQ(lstat(link.c_str(), &before), 0);
    // Both trees looked up once (by-digest entries are cached for a day).
    struct stat st;
    ASSERT_EQ(stat((link + "/f").c_str(), &st), 0) << strerror(errno);
    ASSERT_EQ(
        stat(absl::StrCat(mnt_, "/by-digest/", b.ToString(), "/f").c_str(),
             &st),
        0);

    // Warm: path walks through the ref (and its namespace), its READLINK
    // included, cost no request.
    const uint64_t lookups = fs_->stats().lookups;
    for (int i = 0; i < 20; ++i) {
      ASSERT_EQ(stat((link + "/f").c_str(), &st), 0) << strerror(errno);
      ASSERT_EQ(ReadLinkText(link), up + "by-digest/" + a.ToString());
    }
    EXPECT_EQ(fs_->stats().lookups, lookups);

    // Moved: seen at once, through a new inode; one LOOKUP to learn it (the
    // namespace's entry stays cached).
    SetSlot(ref, "noarch", b);
    EXPECT_EQ(ReadLinkText(link), up + "by-digest/" + b.ToString());
    EXPECT_EQ(ReadFileText(link + "/f"), "b\n");
    struct stat after;
    ASSERT_EQ(lstat(link.c_str(), &after), 0);
    EXPECT_NE(after.st_ino, before.st_ino);
    EXPECT_EQ(fs_->stats().lookups, lookups + 1);
    SetSlot(ref, "noarch", a);  // Back, for the next ref's round.
  }
  // A deleted namespaced ref takes its (now empty) namespace with it.
  ASSERT_TRUE(refs_->DeleteBranch(*RefName::Parse("team/x@main"), "t").ok());
  struct stat st;
  EXPECT_EQ(lstat((mnt_ + "/team").c_str(), &st), -1);
  EXPECT_EQ(errno, ENOENT);
}

// The size protocol, ERANGE and every node kind: //tests:fuse_test.
TEST_F(CairnFsTest, RefXattrsTellTheSlotServed) {
  const Digest any = Push({{"f", TarEntry::kFile, 0644, "noarch\n"}});
  const Digest host = Push({{"f", TarEntry::kFile, 0644, "host\n"}});
  SetSlot("tool@main", "noarch", any);
  SetSlot("tool@main", "other-slot", host);
  Mount();
  const std::string link = mnt_ + "/tool@main";
  auto xattr = [&](const char* name) {
    char buf[256];
    const ssize_t n = lgetxattr(link.c_str(), name, buf, sizeof(buf));
    return n < 0 ? absl::StrCat("<", strerrorname_np(errno), ">")
                 : std::string(buf, n);
  };
  EXPECT_EQ(xattr("cairn.slot"), "noarch");
  EXPECT_EQ(xattr("cairn.digest"), any.ToString());
  EXPECT_EQ(xattr("cairn.generation"), "2");

  SetSlot("tool@main", HostSlot(), host);
  EXPECT_EQ(xattr("cairn.slot"), HostSlot());
  EXPECT_EQ(xattr("cairn.digest"), host.ToString());
  EXPECT_EQ(xattr("cairn.generation"), "3");
  EXPECT_EQ(xattr("cairn.ref"), "tool@main");
  EXPECT_GE(fs_->stats().getxattrs, 4u);
}

// All of file `fd` from offset 0 by read(2) in 1 MiB calls.
std::string ReadAll(int fd) {
  std::string got;
  std::vector<char> buf(1 << 20);
  for (off_t off = 0;;) {
    const ssize_t n = pread(fd, buf.data(), buf.size(), off);
    if (n <= 0) {
      EXPECT_EQ(n, 0) << strerror(errno);
      return got;
    }
    got.append(buf.data(), n);
    off += n;
  }
}

// With CairnFsOptions::passthrough, files of 1 MiB and more are read,
// mmap'ed and spliced by the kernel from their blob: no READ reaches the
// daemon. One backing file per blob while any of its files is open, gone
// once the last is released; smaller files are read through the daemon.
TEST_F(CairnFsTest, PassthroughServesLargeFilesFromTheirBlobs) {
  const std::string big = PatternBytes((1 << 20) + 4097, 7);
  const Digest d = Push({{"big", TarEntry::kFile, 0644, big},
                         {"copy", TarEntry::kFile, 0644, big},
                         {"small", TarEntry::kFile, 0644, "small\n"}});
  bool offered = false;
  ASSERT_NO_FATAL_FAILURE(MountWithPassthrough(&offered));
  if (!offered) GTEST_SKIP() << "this kernel does not offer FUSE passthrough";

  const int fd = open((ByDigest(d) + "/big").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  EXPECT_TRUE(ReadAll(fd) == big);
  void* map = mmap(nullptr, big.size(), PROT_READ, MAP_PRIVATE, fd, 0);
  ASSERT_NE(map, MAP_FAILED) << strerror(errno);
  EXPECT_EQ(std::memcmp(map, big.data(), big.size()), 0);
  munmap(map, big.size());
  // A second open of the same file and one of another file with the same
  // content share the backing file.
  const int again = open((ByDigest(d) + "/big").c_str(), O_RDONLY);
  const int copy = open((ByDigest(d) + "/copy").c_str(), O_RDONLY);
  ASSERT_GE(again, 0) << strerror(errno);
  ASSERT_GE(copy, 0) << strerror(errno);
  char tail[8192];
  EXPECT_EQ(pread(copy, tail, sizeof(tail), big.size() - 100), 100);
  EXPECT_EQ(std::string(tail, 100), big.substr(big.size() - 100));
  CairnFsStats st = fs_->stats();
  EXPECT_EQ(st.reads, 0u);
  EXPECT_EQ(st.passthrough_opens, 3u);
  EXPECT_EQ(st.backing_files, 1u);

  EXPECT_EQ(ReadFileText(ByDigest(d) + "/small"), "small\n");
  EXPECT_GE(fs_->stats().reads, 1u);

  close(fd);
  close(again);
  close(copy);
  // RELEASE is sent in the background at close; the session loop handles
  // requests in order on one thread, so once STATFS (never cached) is
  // answered, the RELEASEs queued before it were.
  struct statvfs vfs;
  ASSERT_EQ(statvfs(mnt_.c_str(), &vfs), 0);
  EXPECT_EQ(fs_->stats().backing_files, 0u);
  // Opened again: a new backing file, same bytes.
  const int reopened = open((ByDigest(d) + "/big").c_str(), O_RDONLY);
  ASSERT_GE(reopened, 0) << strerror(errno);
  EXPECT_TRUE(ReadAll(reopened) == big);
  EXPECT_EQ(fs_->stats().backing_files, 1u);
  close(reopened);
}

// A large file whose blob does not match its digest fails to open (EIO)
// in passthrough mode: its bytes are checked before the kernel is handed
// the blob.
TEST_F(CairnFsTest, PassthroughOpenOfACorruptBlobFailsWithEio) {
  const std::string big = PatternBytes((1 << 20) + 1, 11);
  const Digest d = Push({{"big", TarEntry::kFile, 0644, big}});
  const std::string blob = BlobPath(big);
  ASSERT_EQ(chmod(blob.c_str(), 0644), 0) << blob << ": " << strerror(errno);
  const int w = open(blob.c_str(), O_WRONLY);
  ASSERT_GE(w, 0) << strerror(errno);
  ASSERT_EQ(pwrite(w, "X", 1, 4096), 1);
  close(w);
  bool offered = false;
  ASSERT_NO_FATAL_FAILURE(MountWithPassthrough(&offered));
  if (!offered) GTEST_SKIP() << "this kernel does not offer FUSE passthrough";
  for (int i = 0; i < 2; ++i) {
    errno = 0;
    EXPECT_EQ(open((ByDigest(d) + "/big").c_str(), O_RDONLY), -1);
    EXPECT_EQ(errno, EIO);
  }
  EXPECT_EQ(fs_->stats().backing_files, 0u);
}

// A file whose blob is gone from the store is still listed and stat'ed
// (its index is intact) but cannot be read: EIO, as for wrong bytes.
// Verification is tied to the blob file that was hashed: a blob file
// replaced after its first read (here by one with wrong bytes) is hashed
// again when opened, and fails with EIO instead of serving them.
TEST_F(CairnFsTest, ReplacedBlobFileIsVerifiedAgain) {
  const Digest d = Push({{"f", TarEntry::kFile, 0644, "right\n"}});
  ASSERT_TRUE(store_->WaitDurable().ok());
  Mount();
  EXPECT_EQ(ReadFileText(ByDigest(d) + "/f"), "right\n");
  const std::string blob = BlobPath("right\n");
  const std::string tmp = blob + ".new";
  {
    std::ofstream out(tmp, std::ios::binary);
    out << "wrong\n";
  }
  ASSERT_EQ(rename(tmp.c_str(), blob.c_str()), 0) << strerror(errno);
  if (!DropCaches("1"))
    GTEST_SKIP() << "cannot drop the page cache (needs root)";
  EXPECT_EQ(ReadFileText(ByDigest(d) + "/f"), "<EIO>");
}

TEST_F(CairnFsTest, FileWithAMissingBlobFailsToReadWithEio) {
  const Digest d = Push({{"lost", TarEntry::kFile, 0644, "gone\n"}});
  ASSERT_TRUE(store_->WaitDurable().ok());
  ASSERT_EQ(unlink(BlobPath("gone\n").c_str()), 0) << strerror(errno);
  Mount();
  struct stat st;
  ASSERT_EQ(stat((ByDigest(d) + "/lost").c_str(), &st), 0) << strerror(errno);
  EXPECT_EQ(st.st_size, 5);
  const int fd = open((ByDigest(d) + "/lost").c_str(), O_RDONLY);
  ASSERT_GE(fd, 0) << strerror(errno);
  char buf[16];
  errno = 0;
  EXPECT_EQ(read(fd, buf, sizeof(buf)), -1);
  EXPECT_EQ(errno, EIO);
  close(fd);
}

// Where the kernel refuses a blob as backing file (here: blobs on
// overlayfs, which stacks on another file system, so the blob's stack depth
// reaches the mount's max_stack_depth of 1: ELOOP), passthrough mounts fall
// back to serving the file through the daemon, and stop asking.
TEST_F(CairnFsTest, RefusedPassthroughFallsBackToReadsThroughTheDaemon) {
  const std::string ovl = dir_ + "/ovl";
  for (const char* d : {"/lower", "/upper", "/work", "/merged"}) {
    std::filesystem::create_directories(ovl + d);
  }
  const std::string merged = ovl + "/merged";
  const std::string opts =
      absl::StrCat("lowerdir=", ovl, "/lower,upperdir=", ovl,
                   "/upper,workdir=", ovl, "/work");
  if (mount("overlay", merged.c_str(), "overlay", 0, opts.c_str()) != 0) {
    GTEST_SKIP() << "cannot mount overlayfs: " << strerror(errno);
  }
  // The store on the overlay; closed (mount first) before the overlay goes.
  auto unmount_all = absl::MakeCleanup([&] {
    if (fs_ != nullptr) {
      EXPECT_TRUE(fs_->Unmount().ok());
    }
    fs_.reset();
    refs_.reset();
    store_.reset();
    EXPECT_EQ(umount2(merged.c_str(), MNT_DETACH), 0) << strerror(errno);
  });
  ASSERT_NO_FATAL_FAILURE(OpenStore(merged + "/data"));

  const std::string big = PatternBytes((1 << 20) + 3, 5);
  const Digest d = Push({{"big", TarEntry::kFile, 0644, big}});
  bool offered = false;
  ASSERT_NO_FATAL_FAILURE(MountWithPassthrough(&offered));
  if (!offered) GTEST_SKIP() << "this kernel does not offer FUSE passthrough";
  for (int i = 0; i < 2; ++i) {
    const int fd = open((ByDigest(d) + "/big").c_str(), O_RDONLY);
    ASSERT_GE(fd, 0) << strerror(errno);
    EXPECT_TRUE(ReadAll(fd) == big);
    close(fd);
  }
  const CairnFsStats st = fs_->stats();
  EXPECT_FALSE(st.passthrough);
  EXPECT_EQ(st.passthrough_opens, 0u);
  EXPECT_EQ(st.backing_files, 0u);
  EXPECT_GE(st.reads, 2u);
}

}  // namespace
}  // namespace cairn
