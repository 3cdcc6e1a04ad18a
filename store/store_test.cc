// Copyright 2026 The Cairn Authors.

#include "store/store.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"

namespace cairn {
namespace {

using ::cairn::testing::BuildTar;
using ::cairn::testing::CountRegularFiles;
using ::cairn::testing::FreshTestDir;
using ::cairn::testing::TarCompression;
using ::cairn::testing::TarEntry;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

std::vector<TarEntry> ToolEntries(const std::string& tool_bytes) {
  return {
      {"bin/", TarEntry::kDir, 0755, ""},
      {"bin/tool", TarEntry::kFile, 0755, tool_bytes},
      {"bin/tool-link", TarEntry::kSymlink, 0777, "tool"},
      {"bin/tool-hard", TarEntry::kHardlink, 0755, "bin/tool"},
      {"share/doc/readme.txt", TarEntry::kFile, 0644, "hello\n"},
      {"cairn.json", TarEntry::kFile, 0644,
       R"({"name":"tool","version":"1.0.0","entrypoint":"bin/tool"})"},
  };
}

// How many of this process's open files have a path containing `text`
// (/proc/self/fd; a deleted file's path ends in " (deleted)").
int OpenFilesNaming(const std::string& text) {
  int n = 0;
  for (const auto& fd : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const std::filesystem::path target =
        std::filesystem::read_symlink(fd.path(), ec);
    if (!ec && target.string().find(text) != std::string::npos) ++n;
  }
  return n;
}

// An unsafe archive: one safe file, then one escaping the root.
std::string EscapingTarball() {
  return BuildTar({
      {"ok.txt", TarEntry::kFile, 0644, "fine"},
      {"../escape", TarEntry::kFile, 0644, "evil"},
  });
}

// An archive whose only regular file is `tarball` (a test fixture, say).
std::string ShippingAsAFile(const std::string& tarball) {
  return BuildTar({
      {"fixtures/", TarEntry::kDir, 0755, ""},
      {"fixtures/evil.tar.gz", TarEntry::kFile, 0644, tarball},
  });
}

absl::StatusOr<UploadResult> Push(Store& store, const std::string& bytes,
                                  UploadOptions options = {},
                                  size_t chunk = 1000) {
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      store.BeginUpload(options);
  if (!up.ok()) return up.status();
  for (size_t off = 0; off < bytes.size(); off += chunk) {
    absl::Status s = (*up)->Append(absl::string_view(bytes).substr(off, chunk));
    if (!s.ok()) return s;
  }
  return (*up)->Finish();
}

// `bytes` (digest `d`) are kept as a FILE blob: an index can open them,
// and they read back whole.
void ExpectKeptAsFileBlob(Store& store, const Digest& d,
                          const std::string& bytes) {
  absl::StatusOr<BlobInfo> info = store.Stat(d);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->blob.kind(), store::BlobRecord::FILE);
  absl::StatusOr<int> fd = store.OpenIndexedFileFd(d);
  ASSERT_TRUE(fd.ok()) << fd.status();
  close(*fd);
  std::string out;
  ASSERT_TRUE(store.ReadBlob(d, 0, bytes.size(), &out).ok());
  EXPECT_EQ(out, bytes);
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("store_test");
    Reopen();
  }

  // (Re)opens store_ on dir_ with `options` (data_dir is set here).
  void Reopen(StoreOptions options = {}) {
    store_.reset();
    options.data_dir = dir_;
    absl::StatusOr<std::unique_ptr<Store>> s = Store::Open(options);
    ASSERT_TRUE(s.ok()) << s.status();
    store_ = *std::move(s);
  }

  // Nothing but committed blobs: no temp files and no blob files beyond
  // `expected`.
  void ExpectBlobFiles(int expected) {
    EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
    EXPECT_EQ(CountRegularFiles(dir_ + "/blobs"), expected);
  }

  // A 48 MiB tmpfs on dir_ (closed first), unmounted when destroyed.
  struct SmallTmpfs {
    std::string dir;
    ~SmallTmpfs() { umount2(dir.c_str(), MNT_DETACH); }
  };
  // Null, with errno set, where no tmpfs can be mounted (not root).
  std::unique_ptr<SmallTmpfs> OnSmallTmpfs() {
    store_.reset();
    std::filesystem::create_directories(dir_);
    if (mount("cairn-store-test", dir_.c_str(), "tmpfs", 0, "size=48m") != 0) {
      return nullptr;
    }
    auto tmpfs = std::make_unique<SmallTmpfs>();  // No temporary to unmount.
    tmpfs->dir = dir_;
    return tmpfs;
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, PushIndexesAndServesBytes) {
  std::string tool(3 << 20, 'x');
  for (size_t i = 0; i < tool.size(); ++i) tool[i] = static_cast<char>(i % 251);
  const std::string tarball = BuildTar(ToolEntries(tool));
  const Digest digest = Sha256Of(tarball);

  absl::StatusOr<UploadResult> r = Push(*store_, tarball);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest, digest);
  EXPECT_EQ(r->size, tarball.size());
  EXPECT_FALSE(r->already_present);
  EXPECT_EQ(r->artefact.compression(), store::ArtefactRecord::GZIP);
  EXPECT_EQ(r->artefact.regular_files(), 3);  // tool, readme, cairn.json
  EXPECT_EQ(r->artefact.metadata().name(), "tool");
  EXPECT_EQ(r->artefact.metadata().entrypoint(), "bin/tool");
  // The tarball and 3 distinct file blobs (the hardlink adds nothing).
  EXPECT_EQ(r->artefact.unpacked_bytes(),
            tool.size() + 6 + ToolEntries("")[5].content.size());
  EXPECT_EQ(r->artefact.bytes_newly_stored(),
            tarball.size() + r->artefact.unpacked_bytes());

  // Byte-exact read back, with offsets.
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(digest, 0, tarball.size() + 10, &out).ok());
  EXPECT_EQ(out, tarball);
  ASSERT_TRUE(store_->ReadBlob(digest, 5, 7, &out).ok());
  EXPECT_EQ(out, tarball.substr(5, 7));
  EXPECT_EQ(store_->ReadBlob(digest, tarball.size() + 1, 1, &out).code(),
            absl::StatusCode::kOutOfRange);

  // The index serves each file's content by digest.
  absl::StatusOr<store::FileRecord> f =
      store_->metadata().GetFile(digest, "bin/tool");
  ASSERT_TRUE(f.ok()) << f.status();
  EXPECT_EQ(f->type(), store::FileRecord::REGULAR);
  EXPECT_EQ(f->mode(), 0755);
  absl::StatusOr<Digest> content = Digest::FromRaw(f->content_digest());
  ASSERT_TRUE(content.ok());
  EXPECT_EQ(*content, Sha256Of(tool));

  ASSERT_TRUE(store_->WaitDurable().ok());
  absl::StatusOr<BlobInfo> info = store_->Stat(digest);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->blob.kind(), store::BlobRecord::ARTEFACT);
  ASSERT_TRUE(info->artefact.has_value());
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
  // Once durable, file blobs are records of their own.
  ASSERT_TRUE(store_->ReadBlob(*content, 0, tool.size(), &out).ok());
  EXPECT_EQ(out, tool);
  absl::StatusOr<std::vector<Digest>> missing =
      store_->FindMissing({digest, *content, Sha256Of("absent")});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, ::testing::ElementsAre(Sha256Of("absent")));
  ExpectBlobFiles(4);
}

TEST_F(StoreTest, RepushAndSharedFilesAreDeduplicated) {
  const std::string a = BuildTar(ToolEntries("tool v1"));
  ASSERT_TRUE(Push(*store_, a).ok());
  absl::StatusOr<UploadResult> again = Push(*store_, a);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->artefact.bytes_newly_stored(), 0);

  // Same readme and cairn.json, new tool: only the tool and tarball are new.
  const std::string b = BuildTar(ToolEntries("tool v2!"));
  absl::StatusOr<UploadResult> rb = Push(*store_, b);
  ASSERT_TRUE(rb.ok()) << rb.status();
  EXPECT_EQ(rb->artefact.bytes_newly_stored(), b.size() + 8);
  ExpectBlobFiles(2 + 3 + 1);
}

TEST_F(StoreTest, ExpectedDigestAlreadyStoredSkipsIndexing) {
  const std::string a = BuildTar(ToolEntries("tool"));
  ASSERT_TRUE(Push(*store_, a).ok());
  UploadOptions options;
  options.expected_digest = Sha256Of(a);
  absl::StatusOr<UploadResult> r = Push(*store_, a, options);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_TRUE(r->already_present);
  EXPECT_EQ(r->artefact.regular_files(), 3);
}

TEST_F(StoreTest, DigestMismatchStoresNothing) {
  const std::string a = BuildTar(ToolEntries("tool"));
  UploadOptions options;
  options.expected_digest = Sha256Of("something else");
  absl::StatusOr<UploadResult> r = Push(*store_, a, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr(Sha256Of(a).ToString()));
  absl::StatusOr<std::vector<Digest>> missing =
      store_->FindMissing({Sha256Of(a)});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 1);
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
  EXPECT_FALSE(store_->metadata().GetArtefact(Sha256Of(a)).ok());
}

TEST_F(StoreTest, DamagedBytesWithExpectedDigestReportDataLoss) {
  const std::string a = BuildTar(ToolEntries(std::string(100000, 'q')));
  std::string damaged = a;
  for (size_t i = 100; i < 200; ++i) damaged[i] ^= 0x5a;
  UploadOptions options;
  options.expected_digest = Sha256Of(a);
  absl::StatusOr<UploadResult> r = Push(*store_, damaged, options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
}

TEST_F(StoreTest, SizeMismatchIsDataLoss) {
  const std::string a = BuildTar(ToolEntries("tool"));
  UploadOptions options;
  options.expected_size = a.size() - 1;
  EXPECT_EQ(Push(*store_, a, options).status().code(),
            absl::StatusCode::kDataLoss);
  options.expected_size = a.size() + 1;
  EXPECT_EQ(Push(*store_, a, options).status().code(),
            absl::StatusCode::kDataLoss);
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
}

TEST_F(StoreTest, UnsafeArchiveIsRejectedAndStoresNothing) {
  const std::string good = BuildTar(ToolEntries("tool"));
  ASSERT_TRUE(Push(*store_, good).ok());
  ASSERT_TRUE(store_->WaitDurable().ok());
  const int before = CountRegularFiles(dir_ + "/blobs");

  const std::string bad = EscapingTarball();
  absl::StatusOr<UploadResult> r = Push(*store_, bad);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("../escape"));
  EXPECT_THAT(r.status().message(), HasSubstr("nothing stored"));
  EXPECT_FALSE(store_->Stat(Sha256Of(bad)).ok());
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
  // Earlier content is untouched.
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(Sha256Of(good), 0, good.size(), &out).ok());
  EXPECT_EQ(out, good);
  // "ok.txt" may have been written as a file blob before the bad entry was
  // seen, but it has no record: only the blob files of the good artefact
  // count as stored.
  EXPECT_LE(CountRegularFiles(dir_ + "/blobs"), before + 1);
  absl::StatusOr<std::vector<Digest>> missing =
      store_->FindMissing({Sha256Of("fine")});
  ASSERT_TRUE(missing.ok());
  EXPECT_EQ(missing->size(), 1);
}

TEST_F(StoreTest, NotATarballIsRejected) {
  absl::StatusOr<UploadResult> r = Push(*store_, std::string(10000, 'z'));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument)
      << r.status();
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
}

TEST_F(StoreTest, AbandonedUploadLeavesNothing) {
  const std::string a = BuildTar(ToolEntries(std::string(2 << 20, 'a')));
  {
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        store_->BeginUpload({});
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE(
        (*up)->Append(absl::string_view(a).substr(0, a.size() / 2)).ok());
  }
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
  EXPECT_FALSE(store_->Stat(Sha256Of(a)).ok());
  // A retry succeeds.
  EXPECT_TRUE(Push(*store_, a).ok());
}

TEST_F(StoreTest, ConcurrentPushesOfTheSameArtefact) {
  const std::string a = BuildTar(ToolEntries(std::string(1 << 20, 'c')));
  const std::string b = BuildTar(ToolEntries(std::string(1 << 20, 'd')));
  constexpr int kThreads = 6;
  std::vector<absl::StatusOr<UploadResult>> results(
      kThreads, absl::UnknownError("not run"));
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back(
        [&, i] { results[i] = Push(*store_, i % 2 ? a : b, {}, 64 << 10); });
  }
  for (std::thread& t : threads) t.join();
  int fresh_a = 0, fresh_b = 0;
  for (int i = 0; i < kThreads; ++i) {
    ASSERT_TRUE(results[i].ok()) << results[i].status();
    if (!results[i]->already_present) ++(i % 2 ? fresh_a : fresh_b);
  }
  EXPECT_EQ(fresh_a, 1);
  EXPECT_EQ(fresh_b, 1);
  ASSERT_TRUE(store_->WaitDurable().ok());
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(Sha256Of(a), 0, a.size(), &out).ok());
  EXPECT_EQ(out, a);
  // Two tarballs; shared readme and cairn.json; two different tools.
  ExpectBlobFiles(2 + 2 + 2);
}

TEST_F(StoreTest, ReopenKeepsEverything) {
  const std::string a = BuildTar(ToolEntries("persist"));
  ASSERT_TRUE(Push(*store_, a).ok());
  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 0);
  absl::StatusOr<BlobInfo> info = store_->Stat(Sha256Of(a));
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
  EXPECT_TRUE(store_->metadata().GetFile(Sha256Of(a), "bin/tool-hard").ok());
}

// A crash after the index commit but before the flush leaves the artefact
// COMMITTED, its file blobs possibly lost or torn. Open re-derives them.
TEST_F(StoreTest, RecoveryRederivesIndexAfterUncleanStop) {
  const std::string tool = "tool bytes that a crash tore";
  const std::string a = BuildTar(ToolEntries(tool));
  const Digest digest = Sha256Of(a);
  ASSERT_TRUE(Push(*store_, a).ok());
  store_.reset();

  // Simulate the crash's leftovers: the artefact not DURABLE, the tool's
  // blob record gone and its file torn, and a stale index entry.
  const Digest tool_digest = Sha256Of(tool);
  {
    absl::StatusOr<std::unique_ptr<MetadataDb>> db =
        MetadataDb::Open(dir_ + "/meta");
    ASSERT_TRUE(db.ok()) << db.status();
    absl::StatusOr<store::ArtefactRecord> rec = (*db)->GetArtefact(digest);
    ASSERT_TRUE(rec.ok());
    rec->set_index_state(store::ArtefactRecord::COMMITTED);
    MetadataBatch batch;
    batch.PutArtefact(digest, *rec);
    store::FileRecord stale;
    stale.set_type(store::FileRecord::REGULAR);
    batch.PutFile(digest, "stale/entry", stale);
    batch.DeleteBlob(tool_digest);
    ASSERT_TRUE((*db)->Commit(std::move(batch), true).ok());
  }
  const std::string blob_path = dir_ + "/blobs/sha256/" +
                                tool_digest.Hex().substr(0, 2) + "/" +
                                tool_digest.Hex();
  ASSERT_TRUE(std::filesystem::exists(blob_path));
  std::filesystem::resize_file(blob_path, 0);
  // Also leave a temp file, as a crash mid-write would.
  { std::ofstream(dir_ + "/tmp/left.partial") << "partial"; }

  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 1);
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
  EXPECT_FALSE(store_->metadata().GetFile(digest, "stale/entry").ok());
  EXPECT_TRUE(store_->metadata().GetFile(digest, "bin/tool").ok());
  ASSERT_TRUE(store_->WaitDurable().ok());
  absl::StatusOr<BlobInfo> info = store_->Stat(digest);
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(tool_digest, 0, 1 << 20, &out).ok());
  EXPECT_EQ(out, tool);
}

// Simulates a crash after an early acknowledgement: the tarball is stored
// and recorded with an ArtefactRecord in state INDEXING, and no file records.
void LeaveIndexing(const std::string& dir, const std::string& tarball) {
  const Digest digest = Sha256Of(tarball);
  absl::StatusOr<std::unique_ptr<BlobStore>> blobs = BlobStore::Open(dir);
  ASSERT_TRUE(blobs.ok()) << blobs.status();
  absl::StatusOr<std::unique_ptr<BlobWriter>> w = (*blobs)->NewWriter();
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->Append(tarball).ok());
  ASSERT_TRUE((*w)->Commit(Durability::kDurable, digest).ok());
  absl::StatusOr<std::unique_ptr<MetadataDb>> db =
      MetadataDb::Open(dir + "/meta");
  ASSERT_TRUE(db.ok()) << db.status();
  MetadataBatch batch;
  store::BlobRecord blob;
  blob.set_size(tarball.size());
  blob.set_kind(store::BlobRecord::ARTEFACT);
  batch.PutBlob(digest, blob);
  store::ArtefactRecord record;
  record.set_index_state(store::ArtefactRecord::INDEXING);
  batch.PutArtefact(digest, record);
  ASSERT_TRUE((*db)->Commit(std::move(batch), true).ok());
}

TEST_F(StoreTest, AcknowledgedBeforeIndexThenIndexedInTheBackground) {
  std::string tool(3 << 20, 'x');
  for (size_t i = 0; i < tool.size(); ++i) tool[i] = static_cast<char>(i % 253);
  const std::string tarball = BuildTar(ToolEntries(tool));
  const Digest digest = Sha256Of(tarball);
  UploadOptions early;
  early.acknowledge_before_index = true;

  absl::StatusOr<UploadResult> r = Push(*store_, tarball, early, 64 << 10);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest, digest);
  EXPECT_FALSE(r->already_present);
  EXPECT_EQ(r->artefact.index_state(), store::ArtefactRecord::INDEXING);
  // The tarball's bytes are stored (and durable) at once.
  absl::StatusOr<std::vector<Digest>> missing = store_->FindMissing({digest});
  ASSERT_TRUE(missing.ok());
  EXPECT_TRUE(missing->empty());

  absl::StatusOr<store::ArtefactRecord> indexed = store_->WaitIndexed(digest);
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_NE(indexed->index_state(), store::ArtefactRecord::INDEXING);
  EXPECT_EQ(indexed->regular_files(), 3);
  EXPECT_EQ(indexed->metadata().entrypoint(), "bin/tool");
  EXPECT_EQ(indexed->bytes_newly_stored(),
            tarball.size() + indexed->unpacked_bytes());
  absl::StatusOr<store::FileRecord> f =
      store_->metadata().GetFile(digest, "bin/tool");
  ASSERT_TRUE(f.ok()) << f.status();
  ASSERT_TRUE(store_->WaitDurable().ok());
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(Sha256Of(tool), 0, tool.size(), &out).ok());
  EXPECT_EQ(out, tool);

  // A plain push of the same bytes reports it present with its full index.
  absl::StatusOr<UploadResult> again = Push(*store_, tarball);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->artefact.regular_files(), 3);
  ASSERT_TRUE(store_->WaitDurable().ok());
  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 0);
}

// Artefact listeners hear of each index commit, inline or in the
// background, before the push (or WaitIndexed) returns; not of re-pushes.
TEST_F(StoreTest, ArtefactListenersHearOfEveryIndexCommit) {
  absl::Mutex mu;
  std::vector<Digest> heard;
  const uint64_t id = store_->AddArtefactListener([&](const Digest& d) {
    // The index is committed when the listener runs.
    absl::StatusOr<store::ArtefactRecord> a = store_->metadata().GetArtefact(d);
    EXPECT_TRUE(a.ok() && a->index_state() == store::ArtefactRecord::COMMITTED);
    absl::MutexLock lock(&mu);
    heard.push_back(d);
  });
  auto heard_now = [&] {
    absl::MutexLock lock(&mu);
    return heard;
  };
  const std::string one = BuildTar(ToolEntries("one"));
  const std::string two = BuildTar(ToolEntries("two"));
  ASSERT_TRUE(Push(*store_, one).ok());
  EXPECT_THAT(heard_now(), ElementsAre(Sha256Of(one)));
  ASSERT_TRUE(Push(*store_, one).ok());  // Already present: nothing new.
  EXPECT_THAT(heard_now(), ElementsAre(Sha256Of(one)));

  UploadOptions early;
  early.acknowledge_before_index = true;
  ASSERT_TRUE(Push(*store_, two, early).ok());
  ASSERT_TRUE(store_->WaitIndexed(Sha256Of(two)).ok());
  EXPECT_THAT(heard_now(), ElementsAre(Sha256Of(one), Sha256Of(two)));

  store_->RemoveArtefactListener(id);
  ASSERT_TRUE(Push(*store_, BuildTar(ToolEntries("three"))).ok());
  EXPECT_EQ(heard_now().size(), 2u);
}

TEST_F(StoreTest, PlainPushWaitsForAnIndexBeingBuilt) {
  const std::string tarball = BuildTar(ToolEntries(std::string(4 << 20, 'w')));
  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> first = Push(*store_, tarball, early, 1 << 20);
  ASSERT_TRUE(first.ok()) << first.status();
  // Whatever the background job's progress, the plain push answers with the
  // complete index.
  UploadOptions plain;
  plain.expected_digest = first->digest;
  absl::StatusOr<UploadResult> second = Push(*store_, tarball, plain);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->already_present);
  EXPECT_NE(second->artefact.index_state(), store::ArtefactRecord::INDEXING);
  EXPECT_EQ(second->artefact.regular_files(), 3);
}

TEST_F(StoreTest, UnsafeArchiveAcknowledgedEarlyIsRejectedAndDeleted) {
  const std::string good = BuildTar(ToolEntries("tool"));
  ASSERT_TRUE(Push(*store_, good).ok());
  ASSERT_TRUE(store_->WaitDurable().ok());
  const int before = CountRegularFiles(dir_ + "/blobs");

  // Hold the indexer until the upload is acknowledged.
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  ASSERT_NO_FATAL_FAILURE(Reopen(options));

  const std::string bad = EscapingTarball();
  const Digest digest = Sha256Of(bad);
  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> r = Push(*store_, bad, early);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->artefact.index_state(), store::ArtefactRecord::INDEXING);
  EXPECT_TRUE(store_->Stat(digest).ok());  // Stored, until indexed.

  options.testing_indexer_gate->Notify();
  absl::Status outcome = store_->WaitIndexed(digest).status();
  EXPECT_EQ(outcome.code(), absl::StatusCode::kInvalidArgument) << outcome;
  EXPECT_THAT(outcome.message(), HasSubstr("../escape"));
  EXPECT_THAT(outcome.message(), HasSubstr("nothing stored"));
  EXPECT_EQ(store_->Stat(digest).status().code(), absl::StatusCode::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/blobs/sha256/" +
                                       digest.Hex().substr(0, 2) + "/" +
                                       digest.Hex()));
  // Its index job gave the tarball's fd back with the outcome (the deleted
  // file's space is free now), not when the next upload reaps the job.
  EXPECT_EQ(OpenFilesNaming(digest.Hex()), 0);
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
  // ok.txt may be left as an unrecorded file blob; nothing else.
  EXPECT_LE(CountRegularFiles(dir_ + "/blobs"), before + 1);
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(Sha256Of(good), 0, good.size(), &out).ok());
  EXPECT_EQ(out, good);
}

// A full disk while an acknowledged upload is indexed is no reason to
// delete it (ENOSPC is ResourceExhausted, as an archive over its limits
// is): it stays INDEXING and is indexed at the next start with room.
TEST_F(StoreTest, FullDiskDuringBackgroundIndexKeepsTheArtefact) {
  std::unique_ptr<SmallTmpfs> tmpfs = OnSmallTmpfs();
  if (tmpfs == nullptr) {
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << strerror(errno);
  }
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  options.remembered_rejections = 1;
  ASSERT_NO_FATAL_FAILURE(Reopen(options));

  // 96 MiB of zeros gzip to ~100 KiB: the tarball fits, its file does not.
  const std::string big(96 << 20, '\0');
  const std::string tarball = BuildTar(ToolEntries(big));
  ASSERT_LT(tarball.size(), 1u << 20);
  const Digest digest = Sha256Of(tarball);
  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> r = Push(*store_, tarball, early, 64 << 10);
  ASSERT_TRUE(r.ok()) << r.status();

  options.testing_indexer_gate->Notify();
  absl::Status outcome = store_->WaitIndexed(digest).status();
  EXPECT_EQ(outcome.code(), absl::StatusCode::kResourceExhausted) << outcome;
  EXPECT_THAT(outcome.message(), Not(HasSubstr("rejected")));
  absl::StatusOr<store::ArtefactRecord> kept =
      store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(kept.ok()) << kept.status();
  EXPECT_EQ(kept->index_state(), store::ArtefactRecord::INDEXING);
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(digest, 0, tarball.size(), &out).ok());
  EXPECT_EQ(out, tarball);
  // Remembered even after more rejections than the store keeps: a push of
  // the same bytes answers at once instead of waiting for a job that ended.
  // Two unsafe archives rejected in the background (an early push whose
  // indexer failed before Finish is refused inline instead, and counts for
  // nothing here, so a few more are tried).
  int rejected_in_background = 0;
  for (int i = 0; i < 64 && rejected_in_background < 2; ++i) {
    const std::string bad =
        BuildTar({{absl::StrCat("../evil", i), TarEntry::kFile, 0644, "x"}});
    absl::StatusOr<UploadResult> pushed = Push(*store_, bad, early);
    if (!pushed.ok()) {
      ASSERT_EQ(pushed.status().code(), absl::StatusCode::kInvalidArgument)
          << pushed.status();
      continue;
    }
    EXPECT_EQ(store_->WaitIndexed(Sha256Of(bad)).status().code(),
              absl::StatusCode::kInvalidArgument);
    ++rejected_in_background;
  }
  ASSERT_EQ(rejected_in_background, 2);
  absl::StatusOr<store::ArtefactRecord> waited =
      store_->WaitIndexed(digest, absl::Now() + absl::Seconds(60));
  EXPECT_EQ(waited.status().code(), absl::StatusCode::kResourceExhausted)
      << waited.status();
  absl::StatusOr<UploadResult> again = Push(*store_, tarball);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kResourceExhausted)
      << again.status();

  // With room, the next start indexes it.
  store_.reset();
  ASSERT_EQ(mount(nullptr, dir_.c_str(), nullptr, MS_REMOUNT, "size=256m"), 0)
      << strerror(errno);
  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 1);
  absl::StatusOr<store::ArtefactRecord> indexed =
      store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_NE(indexed->index_state(), store::ArtefactRecord::INDEXING);
  ASSERT_TRUE(store_->ReadBlob(Sha256Of(big), 0, 4096, &out).ok());
  EXPECT_EQ(out, big.substr(0, 4096));
  store_.reset();
}

// A second store on a data dir in use fails to open, and leaves the
// running one's uploads alone (their temp files in tmp/).
TEST_F(StoreTest, SecondOpenOfADataDirInUseHarmsNothing) {
  const std::string tarball = BuildTar(ToolEntries("in flight"));
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      store_->BeginUpload(UploadOptions());
  ASSERT_TRUE(up.ok()) << up.status();
  ASSERT_TRUE((*up)->Append(tarball.substr(0, 100)).ok());
  ASSERT_GT(CountRegularFiles(dir_ + "/tmp"), 0);

  StoreOptions options;
  options.data_dir = dir_;
  absl::StatusOr<std::unique_ptr<Store>> second = Store::Open(options);
  EXPECT_FALSE(second.ok());
  EXPECT_THAT(second.status().message(), HasSubstr("LOCK")) << second.status();
  EXPECT_GT(CountRegularFiles(dir_ + "/tmp"), 0);

  ASSERT_TRUE((*up)->Append(tarball.substr(100)).ok());
  absl::StatusOr<UploadResult> r = (*up)->Finish();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest, Sha256Of(tarball));
  EXPECT_TRUE(store_->Stat(r->digest).ok());
}

// A tarball that is already stored as a file of another artefact (a
// bundled dependency) can be pushed as an artefact itself.
TEST_F(StoreTest, TarballStoredAsAFileCanBePushedAsAnArtefact) {
  const std::string dep = BuildTar(ToolEntries("dependency"));
  const std::string bundle = BuildTar({
      {"vendor/", TarEntry::kDir, 0755, ""},
      {"vendor/dep.tar.gz", TarEntry::kFile, 0644, dep},
  });
  ASSERT_TRUE(Push(*store_, bundle).ok());
  ASSERT_TRUE(store_->WaitDurable().ok());
  const Digest d = Sha256Of(dep);
  absl::StatusOr<BlobInfo> before = store_->Stat(d);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->blob.kind(), store::BlobRecord::FILE);

  for (bool expect_digest : {false, true}) {
    UploadOptions options;
    if (expect_digest) options.expected_digest = d;
    absl::StatusOr<UploadResult> r = Push(*store_, dep, options);
    ASSERT_TRUE(r.ok()) << r.status();
    EXPECT_EQ(r->digest, d);
    EXPECT_EQ(r->artefact.regular_files(), 3);
    EXPECT_EQ(r->already_present, expect_digest);  // The second is a re-push.
  }
  absl::StatusOr<store::FileRecord> f =
      store_->metadata().GetFile(d, "bin/tool");
  ASSERT_TRUE(f.ok()) << f.status();
  // The bundle's file still reads back.
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(d, 0, dep.size(), &out).ok());
  EXPECT_EQ(out, dep);
  ASSERT_TRUE(store_->WaitDurable().ok());
  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 0);
  EXPECT_EQ(store_->Stat(d)->blob.kind(), store::BlobRecord::ARTEFACT);
}

// An unsafe tarball that another artefact ships as a file (a test fixture)
// and is pushed with an early acknowledgement is rejected, but its bytes
// stay: they are the other artefact's file.
TEST_F(StoreTest, RejectingATarballKeepsItsBytesWhenTheyAreAlsoAFile) {
  const std::string evil = EscapingTarball();
  const Digest digest = Sha256Of(evil);
  const std::string bundle = ShippingAsAFile(evil);
  absl::StatusOr<UploadResult> b = Push(*store_, bundle);
  ASSERT_TRUE(b.ok()) << b.status();
  ASSERT_TRUE(store_->WaitDurable().ok());

  // Hold the indexer until the upload is acknowledged (else it may find the
  // archive unsafe before Finish, which then refuses it inline).
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> pushed = Push(*store_, evil, early);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  options.testing_indexer_gate->Notify();
  absl::Status outcome = store_->WaitIndexed(digest).status();
  EXPECT_EQ(outcome.code(), absl::StatusCode::kInvalidArgument) << outcome;
  EXPECT_EQ(store_->metadata().GetArtefact(digest).status().code(),
            absl::StatusCode::kNotFound);
  ExpectKeptAsFileBlob(*store_, digest, evil);
}

// An upload whose file content is the very bytes of a tarball still being
// indexed in the background: if that tarball is then rejected, the bytes
// stay, even though the upload's flush (which marks them file_use) has not
// happened yet.
TEST_F(StoreTest, RejectingATarballKeepsBytesAnUnflushedIndexNames) {
  const std::string evil = EscapingTarball();
  const Digest digest = Sha256Of(evil);
  auto release_flusher = std::make_shared<absl::Notification>();
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  options.testing_before_flush = [release_flusher] {
    release_flusher->WaitForNotification();
    return absl::OkStatus();
  };
  ASSERT_NO_FATAL_FAILURE(Reopen(options));

  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> pushed = Push(*store_, evil, early);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  // Indexed inline, finding `evil`'s bytes stored: its index names them.
  const std::string bundle = ShippingAsAFile(evil);
  absl::StatusOr<UploadResult> b = Push(*store_, bundle);
  ASSERT_TRUE(b.ok()) << b.status();
  // Not flushed yet: nothing marks the bytes as file content.
  absl::StatusOr<BlobInfo> before = store_->Stat(digest);
  ASSERT_TRUE(before.ok()) << before.status();
  EXPECT_EQ(before->blob.kind(), store::BlobRecord::ARTEFACT);
  EXPECT_FALSE(before->blob.file_use());

  options.testing_indexer_gate->Notify();
  absl::Status outcome = store_->WaitIndexed(digest).status();
  EXPECT_EQ(outcome.code(), absl::StatusCode::kInvalidArgument) << outcome;
  release_flusher->Notify();
  ASSERT_TRUE(store_->WaitDurable().ok());

  ExpectKeptAsFileBlob(*store_, digest, evil);
  absl::StatusOr<BlobInfo> info = store_->Stat(digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_TRUE(info->blob.file_use());
}

// A tarball pushed while the flush of an index that names its bytes as a
// file is under way: the flush marks the tarball's record (file_use), and
// does not replace it with a FILE record it prepared before the push.
TEST_F(StoreTest, TarballCommittedDuringAFlushKeepsItsRecord) {
  const std::string inner = BuildTar(ToolEntries("inner tool"));
  const Digest digest = Sha256Of(inner);
  auto flusher_scanned = std::make_shared<absl::Notification>();
  auto release_flusher = std::make_shared<absl::Notification>();
  StoreOptions options;
  options.testing_before_flush = [flusher_scanned, release_flusher] {
    if (!flusher_scanned->HasBeenNotified()) flusher_scanned->Notify();
    release_flusher->WaitForNotification();
    return absl::OkStatus();
  };
  ASSERT_NO_FATAL_FAILURE(Reopen(options));

  const std::string bundle = BuildTar({
      {"fixtures/", TarEntry::kDir, 0755, ""},
      {"fixtures/inner.tar", TarEntry::kFile, 0644, inner},
  });
  ASSERT_TRUE(Push(*store_, bundle).ok());
  // The flusher found `inner`'s bytes without a record; now they become an
  // artefact too.
  flusher_scanned->WaitForNotification();
  absl::StatusOr<UploadResult> pushed = Push(*store_, inner);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  release_flusher->Notify();
  ASSERT_TRUE(store_->WaitDurable().ok());

  absl::StatusOr<BlobInfo> info = store_->Stat(digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->blob.kind(), store::BlobRecord::ARTEFACT);
  EXPECT_TRUE(info->blob.file_use());
  absl::StatusOr<store::ArtefactRecord> a =
      store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->index_state(), store::ArtefactRecord::DURABLE);
}

// A failed flush leaves its artefacts COMMITTED (served) and is retried:
// WaitDurable reports the failure while it lasts, and success after.
TEST_F(StoreTest, AFailedFlushIsRetried) {
  auto fail = std::make_shared<std::atomic<bool>>(true);
  StoreOptions options;
  options.testing_before_flush = [fail] {
    return fail->load() ? absl::UnavailableError("injected flush failure")
                        : absl::OkStatus();
  };
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  const std::string tarball = BuildTar(ToolEntries("tool"));
  const Digest digest = Sha256Of(tarball);
  absl::StatusOr<UploadResult> r = Push(*store_, tarball);
  ASSERT_TRUE(r.ok()) << r.status();

  absl::Status s = store_->WaitDurable();
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  EXPECT_THAT(s.message(), HasSubstr("injected"));
  s = store_->WaitDurable();  // Retried, failing again.
  EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
  absl::StatusOr<store::ArtefactRecord> a =
      store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->index_state(), store::ArtefactRecord::COMMITTED);

  fail->store(false);
  s = store_->WaitDurable();
  EXPECT_TRUE(s.ok()) << s;
  a = store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->index_state(), store::ArtefactRecord::DURABLE);
  // Later artefacts flush as usual.
  ASSERT_TRUE(Push(*store_, BuildTar(ToolEntries("other tool"))).ok());
  EXPECT_TRUE(store_->WaitDurable().ok());
}

TEST_F(StoreTest, WaitIndexedReportsUnknownAndDeadline) {
  const Digest unknown = Sha256Of("no such artefact");
  EXPECT_EQ(store_->WaitIndexed(unknown).status().code(),
            absl::StatusCode::kNotFound);
  // An INDEXING record with no job behind it (what a crash leaves until the
  // next Open) never completes: the deadline ends the wait.
  const Digest stuck = Sha256Of("stuck");
  store::ArtefactRecord record;
  record.set_index_state(store::ArtefactRecord::INDEXING);
  MetadataBatch batch;
  batch.PutArtefact(stuck, record);
  ASSERT_TRUE(store_->mutable_metadata().Commit(std::move(batch), true).ok());
  EXPECT_EQ(store_->WaitIndexed(stuck, absl::Now() + absl::Milliseconds(20))
                .status()
                .code(),
            absl::StatusCode::kDeadlineExceeded);
}

TEST_F(StoreTest, RecoveryIndexesOrRejectsArtefactsLeftIndexing) {
  store_.reset();
  const std::string good = BuildTar(ToolEntries("recovered tool"));
  const std::string bad = BuildTar({
      {"ok.txt", TarEntry::kFile, 0644, "fine"},
      {"/etc/evil", TarEntry::kFile, 0644, "evil"},
  });
  LeaveIndexing(dir_, good);
  LeaveIndexing(dir_, bad);

  Reopen();
  EXPECT_EQ(store_->recovered_artefacts(), 1);
  absl::StatusOr<store::ArtefactRecord> indexed =
      store_->WaitIndexed(Sha256Of(good), absl::Now());
  ASSERT_TRUE(indexed.ok()) << indexed.status();
  EXPECT_EQ(indexed->regular_files(), 3);
  EXPECT_TRUE(store_->metadata().GetFile(Sha256Of(good), "bin/tool").ok());

  absl::Status rejected =
      store_->WaitIndexed(Sha256Of(bad), absl::Now()).status();
  EXPECT_EQ(rejected.code(), absl::StatusCode::kInvalidArgument) << rejected;
  EXPECT_THAT(rejected.message(), HasSubstr("/etc/evil"));
  EXPECT_EQ(store_->Stat(Sha256Of(bad)).status().code(),
            absl::StatusCode::kNotFound);
  const Digest bad_digest = Sha256Of(bad);
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/blobs/sha256/" +
                                       bad_digest.Hex().substr(0, 2) + "/" +
                                       bad_digest.Hex()));
}

// An artefact whose index was committed is re-derived after a crash even
// if the limits were lowered below it since; one left INDEXING (never
// accepted) is held to today's limits.
TEST_F(StoreTest, RecoveryOfACommittedIndexIgnoresLoweredLimits) {
  const std::string committed = BuildTar(ToolEntries("accepted yesterday"));
  const Digest digest = Sha256Of(committed);
  ASSERT_TRUE(Push(*store_, committed).ok());
  store_.reset();
  {
    absl::StatusOr<std::unique_ptr<MetadataDb>> db =
        MetadataDb::Open(dir_ + "/meta");
    ASSERT_TRUE(db.ok()) << db.status();
    absl::StatusOr<store::ArtefactRecord> rec = (*db)->GetArtefact(digest);
    ASSERT_TRUE(rec.ok());
    rec->set_index_state(store::ArtefactRecord::COMMITTED);  // Crash.
    MetadataBatch batch;
    batch.PutArtefact(digest, *rec);
    ASSERT_TRUE((*db)->Commit(std::move(batch), true).ok());
  }
  const std::string indexing = BuildTar(ToolEntries("never accepted"));
  LeaveIndexing(dir_, indexing);

  StoreOptions options;
  options.limits.max_entries = 2;  // Both archives have 7 entries.
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  EXPECT_EQ(store_->recovered_artefacts(), 1);
  absl::StatusOr<store::ArtefactRecord> rec =
      store_->metadata().GetArtefact(digest);
  ASSERT_TRUE(rec.ok()) << rec.status();
  EXPECT_NE(rec->index_state(), store::ArtefactRecord::INDEXING);
  EXPECT_TRUE(store_->metadata().GetFile(digest, "bin/tool").ok());
  absl::Status rejected =
      store_->WaitIndexed(Sha256Of(indexing), absl::Now()).status();
  EXPECT_EQ(rejected.code(), absl::StatusCode::kResourceExhausted) << rejected;
  EXPECT_THAT(rejected.message(), HasSubstr("max_entries (2)"));
}

// A data dir that cannot be created fails Open with the code of the cause.
TEST_F(StoreTest, OpenReportsWhyTheDataDirCannotBeCreated) {
  StoreOptions options;
  options.data_dir = dir_ + "/no/such/parent";
  absl::StatusOr<std::unique_ptr<Store>> s = Store::Open(options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kNotFound) << s.status();
  EXPECT_THAT(s.status().message(), HasSubstr(options.data_dir));
  std::ofstream(dir_ + "/file") << "x";
  options.data_dir = dir_ + "/file/data";
  s = Store::Open(options);
  EXPECT_EQ(s.status().code(), absl::StatusCode::kFailedPrecondition)
      << s.status();  // ENOTDIR
}

TEST_F(StoreTest, AllCompressionsGiveTheSameIndex) {
  const auto entries = ToolEntries("same");
  std::vector<std::vector<std::string>> listings;
  for (TarCompression c :
       {TarCompression::kNone, TarCompression::kGzip, TarCompression::kZstd}) {
    const std::string t = BuildTar(entries, c);
    absl::StatusOr<UploadResult> r = Push(*store_, t);
    ASSERT_TRUE(r.ok()) << r.status();
    std::vector<std::string> listing;
    ASSERT_TRUE(store_->metadata()
                    .ListAllFiles(r->digest, "",
                                  [&](absl::string_view path,
                                      const store::FileRecord& rec) {
                                    listing.push_back(std::string(path) + " " +
                                                      rec.DebugString());
                                    return true;
                                  })
                    .ok());
    listings.push_back(listing);
  }
  EXPECT_EQ(listings[0], listings[1]);
  EXPECT_EQ(listings[0], listings[2]);
  EXPECT_GE(listings[0].size(), 7);  // 6 entries + synthesised share/doc dirs
}

// An upload that never commits (here: its digest is not the expected one,
// "nothing was stored") gives up its claims on the file blobs it wrote. A
// claim left behind made a later rejection keep a tarball with those bytes,
// as a FILE blob no index names (FindMissing said present).
TEST_F(StoreTest, AFailedUploadLeavesNoClaimToKeepARejectedTarball) {
  auto written = std::make_shared<absl::Notification>();
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  options.testing_at_crash_point = [written](absl::string_view point) {
    if (point == "file_blob_written" && !written->HasBeenNotified()) {
      written->Notify();
    }
  };
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  const std::string evil = EscapingTarball();
  const Digest digest = Sha256Of(evil);
  // The bundle's only regular file is `evil`, so the first file blob
  // written is evil's bytes.
  const std::string bundle = ShippingAsAFile(evil);
  {
    UploadOptions wrong;
    wrong.expected_digest = Sha256Of("not the bundle");
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        store_->BeginUpload(wrong);
    ASSERT_TRUE(up.ok());
    ASSERT_TRUE((*up)->Append(bundle).ok());
    written->WaitForNotification();  // Written and claimed.
    absl::StatusOr<UploadResult> r = (*up)->Finish();
    ASSERT_EQ(r.status().code(), absl::StatusCode::kDataLoss) << r.status();
  }
  UploadOptions early;
  early.acknowledge_before_index = true;
  ASSERT_TRUE(Push(*store_, evil, early).ok());
  options.testing_indexer_gate->Notify();
  EXPECT_EQ(store_->WaitIndexed(digest).status().code(),
            absl::StatusCode::kInvalidArgument);
  // Nothing names these bytes: gone, as when no failed upload preceded
  // (UnsafeArchiveAcknowledgedEarlyIsRejectedAndDeleted).
  absl::StatusOr<std::vector<Digest>> missing = store_->FindMissing({digest});
  ASSERT_TRUE(missing.ok());
  EXPECT_THAT(*missing, ElementsAre(digest));
}

// An early-acknowledged push of a digest that BeginUpload found stored,
// rejected before the push finished, gets the rejection (as a push that
// waits does), not NotFound.
TEST_F(StoreTest, EarlyRepushOfAnArtefactRejectedMeanwhileGetsTheRejection) {
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  const std::string bad = BuildTar({{"../evil", TarEntry::kFile, 0644, "x"}});
  const Digest digest = Sha256Of(bad);
  UploadOptions early;
  early.acknowledge_before_index = true;
  ASSERT_TRUE(Push(*store_, bad, early).ok());
  UploadOptions again = early;
  again.expected_digest = digest;
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      store_->BeginUpload(again);  // Present (INDEXING): only hashed.
  ASSERT_TRUE(up.ok());
  options.testing_indexer_gate->Notify();
  ASSERT_EQ(store_->WaitIndexed(digest).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE((*up)->Append(bad).ok());
  absl::Status s = (*up)->Finish().status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_THAT(s.message(), HasSubstr("rejected"));
}

// An artefact acknowledged before its index whose index cannot be built
// for want of space stays INDEXING at the next start too, with its failure
// remembered; the rest of the store opens and serves. Before, the failed
// re-derivation kept the whole store from opening.
TEST_F(StoreTest, IndexFailingAtRestartLeavesTheRestOfTheStoreServing) {
  std::unique_ptr<SmallTmpfs> tmpfs = OnSmallTmpfs();
  if (tmpfs == nullptr) {
    GTEST_SKIP() << "cannot mount a tmpfs (needs root): " << strerror(errno);
  }
  ASSERT_NO_FATAL_FAILURE(Reopen());
  const std::string good = BuildTar(ToolEntries("served before"));
  absl::StatusOr<UploadResult> served = Push(*store_, good);
  ASSERT_TRUE(served.ok()) << served.status();
  // 96 MiB of zeros: the tarball fits (48 MiB of tmpfs), its file does not.
  const std::string big = BuildTar(ToolEntries(std::string(96 << 20, '\0')));
  const Digest big_digest = Sha256Of(big);
  UploadOptions early;
  early.acknowledge_before_index = true;
  ASSERT_TRUE(Push(*store_, big, early, 64 << 10).ok());
  EXPECT_EQ(store_->WaitIndexed(big_digest).status().code(),
            absl::StatusCode::kResourceExhausted);
  ASSERT_TRUE(store_->WaitDurable().ok());
  store_.reset();

  StoreOptions options;
  options.data_dir = dir_;
  absl::StatusOr<std::unique_ptr<Store>> reopened = Store::Open(options);
  ASSERT_TRUE(reopened.ok()) << reopened.status();
  absl::StatusOr<store::ArtefactRecord> record =
      (*reopened)->WaitIndexed(served->digest);
  ASSERT_TRUE(record.ok()) << record.status();
  std::string out;
  ASSERT_TRUE((*reopened)->ReadBlob(served->digest, 0, 16, &out).ok());
  EXPECT_EQ(out, good.substr(0, 16));
  absl::StatusOr<store::ArtefactRecord> failed =
      (*reopened)->WaitIndexed(big_digest, absl::Now());
  EXPECT_EQ(failed.status().code(), absl::StatusCode::kResourceExhausted)
      << failed.status();
  absl::StatusOr<store::ArtefactRecord> still =
      (*reopened)->metadata().GetArtefact(big_digest);
  ASSERT_TRUE(still.ok()) << still.status();
  EXPECT_EQ(still->index_state(), store::ArtefactRecord::INDEXING);
}

// A restart re-derives an artefact not yet DURABLE and writes its file
// blobs that have no record anew, even where a file with the right bytes is
// in place: those bytes may be cached without being on disk (a write-back
// error a syncfs reported before the stop), and a kept file would then be
// recorded durable by a syncfs that proves nothing.
TEST_F(StoreTest, ReDerivationReplacesUnrecordedFileBlobs) {
  StoreOptions held;
  held.testing_before_flush = [] {
    return absl::UnavailableError("flush held by the test");
  };
  ASSERT_NO_FATAL_FAILURE(Reopen(held));
  const std::string tool = "tool bytes";
  absl::StatusOr<UploadResult> pushed =
      Push(*store_, BuildTar(ToolEntries(tool)));
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  const Digest tool_digest = Sha256Of(tool);
  const std::string path = dir_ + "/blobs/sha256/" +
                           tool_digest.Hex().substr(0, 2) + "/" +
                           tool_digest.Hex();
  struct stat before;
  ASSERT_EQ(stat(path.c_str(), &before), 0) << strerror(errno);

  ASSERT_NO_FATAL_FAILURE(Reopen());  // Re-derives: COMMITTED, not DURABLE.
  ASSERT_TRUE(store_->WaitDurable().ok());
  struct stat after;
  ASSERT_EQ(stat(path.c_str(), &after), 0) << strerror(errno);
  EXPECT_NE(after.st_ino, before.st_ino);
  std::string out;
  ASSERT_TRUE(store_->ReadBlob(tool_digest, 0, 64, &out).ok());
  EXPECT_EQ(out, tool);
  absl::StatusOr<BlobInfo> info = store_->Stat(pushed->digest);
  ASSERT_TRUE(info.ok()) << info.status();
  EXPECT_EQ(info->artefact->index_state(), store::ArtefactRecord::DURABLE);
}

// A push of bytes another upload acknowledged early (its index still being
// built) waits for that index, but gives up once its caller says it was
// cancelled (a gRPC client gone away), instead of holding the caller's
// thread until the index is done.
TEST_F(StoreTest, APushWaitingForAnotherUploadsIndexGivesUpWhenCancelled) {
  StoreOptions options;
  options.testing_indexer_gate = std::make_shared<absl::Notification>();
  ASSERT_NO_FATAL_FAILURE(Reopen(options));
  const std::string tarball = BuildTar(ToolEntries("indexed later"));
  UploadOptions early;
  early.acknowledge_before_index = true;
  absl::StatusOr<UploadResult> first = Push(*store_, tarball, early);
  ASSERT_TRUE(first.ok()) << first.status();

  UploadOptions again;
  again.expected_digest = first->digest;
  int asked = 0;
  again.cancelled = [&asked] { return ++asked >= 2; };
  absl::StatusOr<UploadResult> second = Push(*store_, tarball, again);
  EXPECT_TRUE(absl::IsCancelled(second.status())) << second.status();
  EXPECT_EQ(asked, 2);

  options.testing_indexer_gate->Notify();
  EXPECT_TRUE(store_->WaitIndexed(first->digest).ok());
}

}  // namespace
}  // namespace cairn
