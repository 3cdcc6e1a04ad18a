// Copyright 2026 The Cairn Authors.
//
// Store under a failing syncfs(2). This binary interposes syncfs (a plain
// pass-through unless armed), so it is a target of its own.
//
// Linux reports a write-back error to syncfs once per open file
// description (the superblock's errseq, sampled at open), and the pages
// whose write-back failed are marked clean: the next syncfs on the same fd
// returns 0 whether or not the bytes reached the disk. The fake does the
// same: the armed number of calls fail with EIO, the following ones succeed.

#include <errno.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "gtest/gtest.h"
#include "store/store.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"

namespace {
std::atomic<int> syncfs_eio{0};
}  // namespace

extern "C" int syncfs(int fd) {
  if (syncfs_eio.load() > 0) {
    syncfs_eio.fetch_sub(1);
    errno = EIO;
    return -1;
  }
  return static_cast<int>(syscall(SYS_syncfs, fd));
}

namespace cairn {
namespace {

using ::cairn::testing::BuildTar;
using ::cairn::testing::FreshTestDir;
using ::cairn::testing::TarEntry;

std::string BlobPath(const std::string& dir, const Digest& d) {
  return dir + "/blobs/sha256/" + d.Hex().substr(0, 2) + "/" + d.Hex();
}

ino_t InodeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// After a failed syncfs the flush's retry cannot trust a syncfs again: the
// file blobs written before the failure are rewritten (a new file,
// fdatasync, renamed over the old one) before their records are written
// and the artefact is marked DURABLE. Before, the retry's syncfs "passed"
// and recorded bytes never shown to be on disk.
TEST(StoreFaultTest, FileBlobsWrittenBeforeAFailedSyncfsAreRewrittenDurably) {
  StoreOptions options;
  options.data_dir = FreshTestDir("store_fault_test");
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();

  const std::string tool = "tool bytes whose write-back failed";
  const Digest tool_digest = Sha256Of(tool);
  const std::string tarball = BuildTar({
      {"bin/tool", TarEntry::kFile, 0755, tool},
  });
  syncfs_eio = 1;  // The flush of this push meets a write-back error.
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      (*store)->BeginUpload(UploadOptions());
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE((*up)->Append(tarball).ok());
  absl::StatusOr<UploadResult> r = (*up)->Finish();
  ASSERT_TRUE(r.ok()) << r.status();
  const std::string path = BlobPath(options.data_dir, tool_digest);
  const ino_t written = InodeOf(path);
  ASSERT_NE(written, 0u);

  // Retries at once, after the failed attempt.
  const absl::Status durable = (*store)->WaitDurable();
  EXPECT_TRUE(durable.ok()) << durable;
  EXPECT_EQ(syncfs_eio.load(), 0) << "the failing syncfs was not reached";

  absl::StatusOr<BlobInfo> info = (*store)->Stat(r->digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
  EXPECT_TRUE((*store)->Stat(tool_digest).ok());
  // A new file took the name, with the same bytes.
  EXPECT_NE(InodeOf(path), written);
  std::string out;
  ASSERT_TRUE((*store)->ReadBlob(tool_digest, 0, tool.size(), &out).ok());
  EXPECT_EQ(out, tool);
}

}  // namespace
}  // namespace cairn
