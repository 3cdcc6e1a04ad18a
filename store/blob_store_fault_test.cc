// Copyright 2026 The Cairn Authors.
//
// BlobWriter::Commit under faults the file system or the process can give:
// no RENAME_NOREPLACE, a failed open of the blob already in place, an
// Append cut short, a read the device fails. This binary interposes
// renameat2(2), open(2) and pread(2) (plain pass-throughs unless a test arms
// them), so it is a target of its own.

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/blob_store.h"

namespace {
// Armed: renameat2 with flags fails with EINVAL, as on a file system
// without RENAME_NOREPLACE (ZFS before 2.2, NFS, many FUSE file systems).
std::atomic<bool> no_rename_noreplace{false};
// Armed: open(2) of this path fails with EMFILE (a full fd table).
std::atomic<const char*> emfile_path{nullptr};
// Armed: pread(2) of this fd fails with EIO (a failing device).
std::atomic<int> eio_fd{-1};
}  // namespace

extern "C" ssize_t pread(int fd, void* buf, size_t count, off_t offset) {
  if (fd == eio_fd.load()) {
    errno = EIO;
    return -1;
  }
  return static_cast<ssize_t>(syscall(SYS_pread64, fd, buf, count, offset));
}

extern "C" int renameat2(int olddirfd, const char* oldpath, int newdirfd,
                         const char* newpath, unsigned int flags) {
  if (flags != 0 && no_rename_noreplace.load()) {
    errno = EINVAL;
    return -1;
  }
  return static_cast<int>(
      syscall(SYS_renameat2, olddirfd, oldpath, newdirfd, newpath, flags));
}

extern "C" int open(const char* path, int flags, ...) {
  mode_t mode = 0;
  if ((flags & (O_CREAT | O_TMPFILE)) != 0) {
    va_list ap;
    va_start(ap, flags);
    mode = va_arg(ap, mode_t);
    va_end(ap);
  }
  const char* fail = emfile_path.load();
  if (fail != nullptr && std::string(fail) == path) {
    errno = EMFILE;
    return -1;
  }
  return static_cast<int>(syscall(SYS_openat, AT_FDCWD, path, flags, mode));
}

namespace cairn {
namespace {

std::unique_ptr<BlobStore> OpenStore() {
  const char* base = getenv("TEST_TMPDIR");
  std::string dir =
      absl::StrCat(base != nullptr ? base : "/tmp", "/blobs.XXXXXX");
  EXPECT_NE(mkdtemp(&dir[0]), nullptr);
  absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(dir);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? *std::move(store) : nullptr;
}

ino_t Inode(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

absl::Status Store(BlobStore& store, const std::string& data,
                   Durability durability) {
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = store.NewWriter();
  if (!w.ok()) return w.status();
  if (absl::Status s = (*w)->Append(data); !s.ok()) return s;
  return (*w)->Commit(durability, Sha256Of(data)).status();
}

// docs/storage.md: a durable blob is never replaced by one not yet synced.
// Without RENAME_NOREPLACE, link(2) keeps the blob in place as well.
TEST(BlobStoreFaultTest, WithoutRenameNoreplaceADurableBlobStays) {
  std::unique_ptr<BlobStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string data(100000, 'x');
  ASSERT_TRUE(Store(*store, data, Durability::kDurable).ok());
  const std::string path = store->PathFor(Sha256Of(data));
  const ino_t durable = Inode(path);
  const int pin = open(path.c_str(), O_RDONLY);  // The inode stays allocated.
  no_rename_noreplace = true;
  EXPECT_TRUE(Store(*store, data, Durability::kDeferred).ok());
  // A new blob is still placed, through link(2).
  const std::string other(1000, 'o');
  EXPECT_TRUE(Store(*store, other, Durability::kDeferred).ok());
  no_rename_noreplace = false;
  EXPECT_EQ(Inode(path), durable);
  struct stat st;
  EXPECT_EQ(stat(store->PathFor(Sha256Of(other)).c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 1000);
  // link(2) left no second name behind.
  EXPECT_EQ(st.st_nlink, 1u);
  const std::string tmp =
      absl::StrCat(path.substr(0, path.find("/blobs/sha256/")), "/tmp");
  DIR* dir = opendir(tmp.c_str());
  ASSERT_NE(dir, nullptr) << tmp;
  int entries = 0;
  while (struct dirent* e = readdir(dir)) {
    if (std::string(e->d_name) != "." && std::string(e->d_name) != "..") {
      ++entries;
    }
  }
  closedir(dir);
  EXPECT_EQ(entries, 0) << tmp << " is not empty";
  close(pin);
}

// A blob in place that cannot be checked (open fails) is kept, and the
// commit fails naming it, rather than being taken for wrong bytes.
TEST(BlobStoreFaultTest, ABlobThatCannotBeCheckedIsKept) {
  std::unique_ptr<BlobStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string data(100000, 'z');
  ASSERT_TRUE(Store(*store, data, Durability::kDurable).ok());
  const std::string path = store->PathFor(Sha256Of(data));
  const ino_t durable = Inode(path);
  const int pin = open(path.c_str(), O_RDONLY);
  emfile_path = path.c_str();
  absl::Status s = Store(*store, data, Durability::kDeferred);
  emfile_path = nullptr;
  EXPECT_EQ(s.code(), absl::StatusCode::kResourceExhausted) << s;
  EXPECT_NE(s.message().find(path), absl::string_view::npos) << s;
  EXPECT_EQ(Inode(path), durable);
  close(pin);
}

// A caller-hashed writer whose Append failed partway never commits: its
// temp file holds only part of the blob.
TEST(BlobStoreFaultTest, AWriterWhoseAppendFailedDoesNotCommit) {
  std::unique_ptr<BlobStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  const std::string data(64 << 10, 'y');
  absl::StatusOr<std::unique_ptr<BlobWriter>> w =
      store->NewWriter(WriterHashing::kCallerHashes);
  ASSERT_TRUE(w.ok()) << w.status();
  signal(SIGXFSZ, SIG_IGN);
  struct rlimit old;
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old), 0);
  struct rlimit small = old;
  small.rlim_cur = 4096;  // A short write, then EFBIG.
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  const absl::Status appended = (*w)->Append(data);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old), 0);
  ASSERT_FALSE(appended.ok());
  absl::StatusOr<Digest> committed =
      (*w)->Commit(Durability::kDeferred, Sha256Of(data));
  EXPECT_FALSE(committed.ok());
  EXPECT_EQ(committed.status(), appended);
  struct stat st;
  EXPECT_NE(stat(store->PathFor(Sha256Of(data)).c_str(), &st), 0)
      << st.st_size << " bytes of a " << data.size()
      << "-byte blob are visible under its name";
}

// A blob the device cannot read is lost data (DATA_LOSS, EIO at the
// mount), not an internal error.
TEST(BlobStoreFaultTest, ReadErrorOfTheDeviceIsDataLoss) {
  std::unique_ptr<BlobStore> store = OpenStore();
  ASSERT_NE(store, nullptr);
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append("stored bytes").ok());
  absl::StatusOr<Digest> digest = (*writer)->Commit(Durability::kDurable);
  ASSERT_TRUE(digest.ok()) << digest.status();
  absl::StatusOr<int> fd = store->OpenFd(*digest);
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::string out;
  ASSERT_TRUE(PreadFully(*fd, 0, 100, &out).ok());
  EXPECT_EQ(out, "stored bytes");
  eio_fd.store(*fd);
  const absl::Status s = PreadFully(*fd, 0, 100, &out);
  eio_fd.store(-1);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss) << s;
  EXPECT_NE(s.message().find("Input/output error"), std::string::npos) << s;
  close(*fd);
}

}  // namespace
}  // namespace cairn
