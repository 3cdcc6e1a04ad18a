// Copyright 2026 The Cairn Authors.

#include "store/blob_store.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;

// A fresh, empty directory per call.
std::string NewTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr ? base : "/tmp", "/blob_store_test.XXXXXX");
  char* dir = mkdtemp(&templ[0]);
  EXPECT_NE(dir, nullptr) << strerror(errno);
  return templ;
}

// Names in `dir` other than "." and "..", recursively as relative paths
// for directories' regular files.
std::vector<std::string> FilesUnder(const std::string& dir,
                                    const std::string& prefix = "") {
  std::vector<std::string> out;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return out;
  while (struct dirent* e = readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string path = absl::StrCat(dir, "/", name);
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      for (std::string& f : FilesUnder(path, prefix + name + "/")) {
        out.push_back(std::move(f));
      }
    } else {
      out.push_back(prefix + name);
    }
  }
  closedir(d);
  return out;
}

std::string ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<missing>";
  std::string out;
  EXPECT_TRUE(PreadFully(fd, 0, 1 << 26, &out).ok());
  close(fd);
  return out;
}

std::unique_ptr<BlobStore> OpenStore(const std::string& root) {
  auto store = BlobStore::Open(root);
  EXPECT_TRUE(store.ok()) << store.status();
  return store.ok() ? std::move(*store) : nullptr;
}

std::string Pattern(size_t size, int seed) {
  std::string data(size, '\0');
  for (size_t i = 0; i < size; ++i) {
    data[i] = static_cast<char>((i * 131 + seed * 7 + (i >> 9)) & 0xff);
  }
  return data;
}

TEST(BlobStoreTest, OpenCreatesLayout) {
  std::string root = NewTempDir() + "/nested/data";
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  struct stat st;
  ASSERT_EQ(stat((root + "/blobs/sha256").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  ASSERT_EQ(stat((root + "/tmp").c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(store->removed_temp_files(), 0);
}

TEST(BlobStoreTest, RoundTrip) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  // Several ~1 MiB chunks plus an odd tail.
  std::string data = Pattern((3 << 20) + 12345, 1);

  // Blob files are read-only whatever the umask.
  const mode_t umask_was = umask(0);
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok()) << writer.status();
  for (size_t off = 0; off < data.size(); off += 1 << 20) {
    ASSERT_TRUE(
        (*writer)->Append(absl::string_view(data).substr(off, 1 << 20)).ok());
  }
  EXPECT_EQ((*writer)->size(), data.size());
  auto finished = (*writer)->Finish();
  ASSERT_TRUE(finished.ok());
  EXPECT_EQ(*finished, Sha256Of(data));
  // Finish is idempotent.
  EXPECT_EQ(*(*writer)->Finish(), Sha256Of(data));

  auto digest = (*writer)->Commit(Durability::kDurable, Sha256Of(data));
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Of(data));
  writer->reset();

  std::string hex = digest->Hex();
  EXPECT_EQ(store->PathFor(*digest),
            absl::StrCat(root, "/blobs/sha256/", hex.substr(0, 2), "/", hex));
  EXPECT_EQ(ReadFile(store->PathFor(*digest)), data);
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  umask(umask_was);
  struct stat st;
  ASSERT_EQ(stat(store->PathFor(*digest).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0444u);

  auto size = store->FileSize(*digest);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, data.size());

  auto fd = store->OpenFd(*digest);
  ASSERT_TRUE(fd.ok()) << fd.status();
  std::string read;
  ASSERT_TRUE(PreadFully(*fd, 0, data.size(), &read).ok());
  EXPECT_EQ(read, data);
  close(*fd);

  EXPECT_TRUE(store->SyncFilesystem().ok());
}

TEST(BlobStoreTest, DeferredCommitAndEmptyBlob) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok());
  auto digest = (*writer)->Commit(Durability::kDeferred);
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Of(""));
  EXPECT_EQ(ReadFile(store->PathFor(*digest)), "");
  EXPECT_TRUE(store->SyncFilesystem().ok());
  // A committed writer refuses a second commit.
  EXPECT_FALSE((*writer)->Commit(Durability::kDeferred).ok());
}

TEST(BlobStoreTest, EarlyWriteBackKeepsEveryByte) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  // Write-back starts every 4 KiB; appends of 3,000 bytes cross that
  // boundary at different offsets.
  auto writer = store->NewWriter(WriterHashing::kHash, 4096);
  ASSERT_TRUE(writer.ok());
  std::string all;
  for (int i = 0; i < 40; ++i) {
    const std::string chunk(3000, static_cast<char>('a' + i % 26));
    ASSERT_TRUE((*writer)->Append(chunk).ok());
    all += chunk;
  }
  auto digest = (*writer)->Commit(Durability::kDurable, Sha256Of(all));
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(ReadFile(store->PathFor(*digest)), all);
}

TEST(BlobStoreTest, CallerHashingWriterTrustsTheGivenDigest) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  auto writer = store->NewWriter(WriterHashing::kCallerHashes);
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("content").ok());
  // It cannot name the digest itself, and will not commit without one.
  EXPECT_EQ((*writer)->Finish().status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ((*writer)->Commit(Durability::kDeferred).status().code(),
            absl::StatusCode::kFailedPrecondition);
  auto digest = (*writer)->Commit(Durability::kDeferred, Sha256Of("content"));
  ASSERT_TRUE(digest.ok()) << digest.status();
  EXPECT_EQ(*digest, Sha256Of("content"));
  EXPECT_EQ(ReadFile(store->PathFor(*digest)), "content");
}

TEST(BlobStoreTest, DigestMismatchIsDataLossAndLeavesNothing) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("actual bytes").ok());
  EXPECT_THAT(FilesUnder(root + "/tmp"), testing::SizeIs(1));

  Digest expected = Sha256Of("other bytes");
  auto result = (*writer)->Commit(Durability::kDurable, expected);
  ASSERT_FALSE(result.ok());
  EXPECT_EQ(result.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(result.status().message(), HasSubstr(expected.ToString()));
  EXPECT_THAT(result.status().message(),
              HasSubstr(Sha256Of("actual bytes").ToString()));
  // Removed at once, not only by the destructor.
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  writer->reset();
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  EXPECT_THAT(FilesUnder(root + "/blobs"), IsEmpty());
}

TEST(BlobStoreTest, DestructorWithoutCommitLeavesNothing) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  {
    auto writer = store->NewWriter();
    ASSERT_TRUE(writer.ok());
    ASSERT_TRUE((*writer)->Append(Pattern(100000, 2)).ok());
    EXPECT_THAT(FilesUnder(root + "/tmp"), testing::SizeIs(1));
    ASSERT_TRUE((*writer)->Finish().ok());
  }
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  EXPECT_THAT(FilesUnder(root + "/blobs"), IsEmpty());
}

TEST(BlobStoreTest, OpenRemovesLeftoverTempFiles) {
  std::string root = NewTempDir();
  ASSERT_EQ(mkdir((root + "/tmp").c_str(), 0755), 0);
  for (const char* name : {"a.partial", "b.partial", "stray"}) {
    std::string path = absl::StrCat(root, "/tmp/", name);
    int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL, 0644);
    ASSERT_GE(fd, 0) << path;
    ASSERT_EQ(write(fd, "junk", 4), 4);
    close(fd);
  }
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->removed_temp_files(), 3);
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());

  // A committed blob survives reopening; tmp stays clean.
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append("kept").ok());
  auto digest = (*writer)->Commit(Durability::kDurable);
  ASSERT_TRUE(digest.ok());
  writer->reset();
  store.reset();
  store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  EXPECT_EQ(store->removed_temp_files(), 0);
  EXPECT_EQ(ReadFile(store->PathFor(*digest)), "kept");
}

TEST(BlobStoreTest, ConcurrentWritersOfSameContent) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  const std::string data = Pattern((2 << 20) + 7, 3);
  const Digest want = Sha256Of(data);
  constexpr int kThreads = 8;
  std::vector<absl::Status> results(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      auto writer = store->NewWriter();
      if (!writer.ok()) {
        results[t] = writer.status();
        return;
      }
      for (size_t off = 0; off < data.size(); off += 65536) {
        absl::Status s =
            (*writer)->Append(absl::string_view(data).substr(off, 65536));
        if (!s.ok()) {
          results[t] = s;
          return;
        }
      }
      auto digest = (*writer)->Commit(
          t % 2 == 0 ? Durability::kDurable : Durability::kDeferred, want);
      results[t] = digest.status();
    });
  }
  for (std::thread& t : threads) t.join();
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_TRUE(results[t].ok()) << "thread " << t << ": " << results[t];
  }
  EXPECT_EQ(ReadFile(store->PathFor(want)), data);
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  std::string hex = want.Hex();
  EXPECT_THAT(FilesUnder(root + "/blobs/sha256"),
              UnorderedElementsAre(hex.substr(0, 2) + "/" + hex));
}

// A committed blob file is never renamed over by a later writer of the same
// bytes (it stays the same inode), whatever the durability; a file at the
// final path with other bytes (a crash's unsynced leftover) is replaced.
TEST(BlobStoreTest, CommitKeepsAnExistingBlobAndReplacesADamagedOne) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  const std::string data = Pattern(300000, 4);
  const Digest digest = Sha256Of(data);
  auto commit = [&](Durability durability) {
    auto writer = store->NewWriter();
    ASSERT_TRUE(writer.ok()) << writer.status();
    ASSERT_TRUE((*writer)->Append(data).ok());
    auto committed = (*writer)->Commit(durability, digest);
    ASSERT_TRUE(committed.ok()) << committed.status();
    EXPECT_EQ(*committed, digest);
  };
  auto inode = [&] {
    struct stat st;
    EXPECT_EQ(stat(store->PathFor(digest).c_str(), &st), 0);
    return st.st_ino;
  };
  commit(Durability::kDurable);
  const ino_t first = inode();
  // Held open, the first file's inode number cannot be reused by another.
  const int held = open(store->PathFor(digest).c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(held, 0) << strerror(errno);
  commit(Durability::kDeferred);
  EXPECT_EQ(inode(), first);
  commit(Durability::kDurable);
  EXPECT_EQ(inode(), first);
  EXPECT_EQ(ReadFile(store->PathFor(digest)), data);
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());

  // Damaged in place: same size, one byte off.
  std::string damaged = data;
  damaged[1000] ^= 1;
  {
    int fd = open(store->PathFor(digest).c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0) << strerror(errno);
    ASSERT_EQ(pwrite(fd, damaged.data(), damaged.size(), 0),
              static_cast<ssize_t>(damaged.size()));
    close(fd);
  }
  commit(Durability::kDeferred);
  EXPECT_NE(inode(), first);
  EXPECT_EQ(ReadFile(store->PathFor(digest)), data);
  EXPECT_THAT(FilesUnder(root + "/tmp"), IsEmpty());
  close(held);
}

TEST(BlobStoreTest, PreadFullyOffsetsAndEof) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  const std::string data = Pattern(10000, 4);
  auto writer = store->NewWriter();
  ASSERT_TRUE(writer.ok());
  ASSERT_TRUE((*writer)->Append(data).ok());
  auto digest = (*writer)->Commit(Durability::kDeferred);
  ASSERT_TRUE(digest.ok());
  auto fd = store->OpenFd(*digest);
  ASSERT_TRUE(fd.ok());
  EXPECT_NE(fcntl(*fd, F_GETFD) & FD_CLOEXEC, 0);

  std::string out = "garbage";
  ASSERT_TRUE(PreadFully(*fd, 100, 50, &out).ok());
  EXPECT_EQ(out, data.substr(100, 50));
  // Crossing end of file: short read.
  ASSERT_TRUE(PreadFully(*fd, 9990, 100, &out).ok());
  EXPECT_EQ(out, data.substr(9990));
  // Exactly at and past end of file: empty.
  ASSERT_TRUE(PreadFully(*fd, 10000, 10, &out).ok());
  EXPECT_EQ(out, "");
  ASSERT_TRUE(PreadFully(*fd, 1 << 20, 10, &out).ok());
  EXPECT_EQ(out, "");
  // Zero length.
  ASSERT_TRUE(PreadFully(*fd, 0, 0, &out).ok());
  EXPECT_EQ(out, "");
  close(*fd);

  // A bad fd is an error, not an empty read.
  absl::Status bad = PreadFully(-1, 0, 10, &out);
  EXPECT_EQ(bad.code(), absl::StatusCode::kInternal);
}

TEST(BlobStoreTest, MissingBlobIsNotFound) {
  std::string root = NewTempDir();
  auto store = OpenStore(root);
  ASSERT_NE(store, nullptr);
  Digest missing = Sha256Of("never stored");
  auto fd = store->OpenFd(missing);
  ASSERT_FALSE(fd.ok());
  EXPECT_EQ(fd.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(fd.status().message(), HasSubstr(missing.ToString()));
  auto size = store->FileSize(missing);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(size.status().message(), HasSubstr(missing.ToString()));
}

TEST(BlobStoreTest, OpenFailsWhenRootIsAFile) {
  std::string root = NewTempDir() + "/file";
  int fd = open(root.c_str(), O_WRONLY | O_CREAT, 0644);
  ASSERT_GE(fd, 0);
  close(fd);
  auto store = BlobStore::Open(root);
  ASSERT_FALSE(store.ok());
  EXPECT_THAT(store.status().message(), HasSubstr(root));
}

}  // namespace
}  // namespace cairn
