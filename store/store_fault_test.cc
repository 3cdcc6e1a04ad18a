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
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <string>

#include "absl/strings/match.h"
#include "absl/synchronization/notification.h"
#include "gtest/gtest.h"
#include "store/store.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"

namespace {
std::atomic<int> syncfs_eio{0};
// When set, the failing syncfs also overwrites the first byte of this file:
// as if its cached pages were gone and the disk held other bytes.
std::string damage_path;  // Set before arming; read by the flusher.
}  // namespace

extern "C" int syncfs(int fd) {
  if (syncfs_eio.load() > 0) {
    if (!damage_path.empty()) {
      const int file = open(damage_path.c_str(), O_WRONLY | O_CLOEXEC);
      if (file >= 0) {
        (void)!pwrite(file, "X", 1, 0);
        close(file);
      }
    }
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

// Store::WaitDurable answers with the outcome of a flush attempt made after
// the call: that can be the attempt meeting the injected syncfs failure;
// a second call then waits for the retry.
absl::Status WaitDurableAfterTheFailure(Store& store) {
  absl::Status s = store.WaitDurable();
  if (absl::IsInternal(s) && absl::StrContains(s.message(), "syncfs failed")) {
    s = store.WaitDurable();
  }
  return s;
}

ino_t InodeOf(const std::string& path) {
  struct stat st;
  return stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
}

// Pushes `tarball` (inline); returns its digest.
absl::StatusOr<Digest> Push(Store& store, const std::string& tarball) {
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      store.BeginUpload(UploadOptions());
  if (!up.ok()) return up.status();
  if (absl::Status s = (*up)->Append(tarball); !s.ok()) return s;
  absl::StatusOr<UploadResult> r = (*up)->Finish();
  if (!r.ok()) return r.status();
  return r->digest;
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
  absl::StatusOr<Digest> d = Push(**store, tarball);
  ASSERT_TRUE(d.ok()) << d.status();
  const std::string path = BlobPath(options.data_dir, tool_digest);
  const ino_t written = InodeOf(path);
  ASSERT_NE(written, 0u);

  const absl::Status durable = WaitDurableAfterTheFailure(**store);
  EXPECT_TRUE(durable.ok()) << durable;
  EXPECT_EQ(syncfs_eio.load(), 0) << "the failing syncfs was not reached";

  absl::StatusOr<BlobInfo> info = (*store)->Stat(*d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
  EXPECT_TRUE((*store)->Stat(tool_digest).ok());
  // A new file took the name, with the same bytes.
  EXPECT_NE(InodeOf(path), written);
  std::string out;
  ASSERT_TRUE((*store)->ReadBlob(tool_digest, 0, tool.size(), &out).ok());
  EXPECT_EQ(out, tool);
}

// A file blob left by an upload that gave up (no claim, no record) when a
// syncfs fails may be what failed: it is removed rather than kept, so a
// later upload of the same content writes it anew instead of keeping bytes
// that may not be on disk.
TEST(StoreFaultTest, OrphanBlobsWrittenBeforeAFailedSyncfsAreRemoved) {
  auto written = std::make_shared<absl::Notification>();
  StoreOptions options;
  options.data_dir = FreshTestDir("store_fault_test");
  options.testing_at_crash_point = [written](absl::string_view point) {
    if (point == "file_blob_written" && !written->HasBeenNotified()) {
      written->Notify();
    }
  };
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string orphan = "bytes of an upload that gave up";
  {
    UploadOptions wrong;
    wrong.expected_digest = Sha256Of("not this upload");
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        (*store)->BeginUpload(wrong);
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE(
        (*up)->Append(BuildTar({{"f", TarEntry::kFile, 0644, orphan}})).ok());
    written->WaitForNotification();
    ASSERT_EQ((*up)->Finish().status().code(), absl::StatusCode::kDataLoss);
  }
  const std::string orphan_path = BlobPath(options.data_dir, Sha256Of(orphan));
  ASSERT_NE(InodeOf(orphan_path), 0u);

  syncfs_eio = 1;
  const std::string tool = "the tool";
  const absl::StatusOr<Digest> d =
      Push(**store, BuildTar({{"t", TarEntry::kFile, 0755, tool}}));
  ASSERT_TRUE(d.ok()) << d.status();
  const absl::Status durable = WaitDurableAfterTheFailure(**store);
  EXPECT_TRUE(durable.ok()) << durable;
  EXPECT_EQ(InodeOf(orphan_path), 0u) << "the orphan blob was kept";
  absl::StatusOr<BlobInfo> info = (*store)->Stat(*d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
}

// A blob whose bytes read back wrong when it is rewritten after a failed
// syncfs (its cached pages gone, the disk holding something else) is
// removed, and no flush commits: its artefact stays COMMITTED, WaitDurable
// says why, and the next start re-derives it from the tarball, writing the
// blob again.
TEST(StoreFaultTest, BlobsReadingBackWrongAfterAFailedSyncfsAreWrittenAgain) {
  StoreOptions options;
  options.data_dir = FreshTestDir("store_fault_test");
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(options);
  ASSERT_TRUE(store.ok()) << store.status();
  const std::string tool = "the tool's real bytes";
  const Digest tool_digest = Sha256Of(tool);
  const std::string path = BlobPath(options.data_dir, tool_digest);

  // The flush's syncfs fails, and the blob's bytes are then wrong.
  damage_path = path;
  syncfs_eio = 1;
  const absl::StatusOr<Digest> d =
      Push(**store, BuildTar({{"bin/t", TarEntry::kFile, 0755, tool}}));
  ASSERT_TRUE(d.ok()) << d.status();
  const absl::Status again = WaitDurableAfterTheFailure(**store);
  damage_path.clear();
  EXPECT_TRUE(absl::IsDataLoss(again)) << again;
  EXPECT_EQ(InodeOf(path), 0u) << "the damaged blob was kept";
  absl::StatusOr<BlobInfo> info = (*store)->Stat(*d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::COMMITTED);
  store->reset();

  absl::StatusOr<std::unique_ptr<Store>> reopened = Store::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  ASSERT_TRUE((*reopened)->WaitDurable().ok());
  std::string out;
  ASSERT_TRUE((*reopened)->ReadBlob(tool_digest, 0, 64, &out).ok());
  EXPECT_EQ(out, tool);
  info = (*reopened)->Stat(*d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
}

}  // namespace
}  // namespace cairn
