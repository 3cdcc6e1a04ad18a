// Copyright 2026 The Cairn Authors.

#include "store/metadata.h"

#include <rocksdb/db.h>
#include <stdlib.h>

#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

std::string NewTempDir() {
  const char* base = getenv("TEST_TMPDIR");
  std::string templ =
      absl::StrCat(base != nullptr ? base : "/tmp", "/metadata_test.XXXXXX");
  char* dir = mkdtemp(&templ[0]);
  EXPECT_NE(dir, nullptr) << strerror(errno);
  return templ;
}

Digest DigestOfBytes(unsigned char fill, unsigned char last) {
  std::string raw(Digest::kSize, static_cast<char>(fill));
  raw.back() = static_cast<char>(last);
  return *Digest::FromRaw(raw);
}

store::FileRecord FileRec(uint64_t entry_id, store::FileRecord::Type type =
                                                 store::FileRecord::REGULAR) {
  store::FileRecord r;
  r.set_type(type);
  r.set_entry_id(entry_id);
  r.set_mode(0644);
  r.set_size(entry_id * 10);
  return r;
}

class MetadataTest : public ::testing::Test {
 protected:
  void SetUp() override {
    path_ = NewTempDir() + "/meta";
    Reopen();
  }

  void Reopen() {
    db_.reset();
    auto db = MetadataDb::Open(path_);
    ASSERT_TRUE(db.ok()) << db.status();
    db_ = std::move(*db);
  }

  void Commit(MetadataBatch batch, bool sync = false) {
    absl::Status s = db_->Commit(std::move(batch), sync);
    ASSERT_TRUE(s.ok()) << s;
  }

  void PutFiles(const Digest& artefact, const std::vector<std::string>& paths) {
    MetadataBatch batch;
    uint64_t id = 1;
    for (const std::string& p : paths)
      batch.PutFile(artefact, p, FileRec(id++));
    Commit(std::move(batch));
  }

  std::vector<std::string> ListDir(const Digest& artefact,
                                   absl::string_view dir,
                                   absl::string_view start_after = "",
                                   int limit = 1 << 30) {
    std::vector<std::string> names;
    absl::Status s =
        db_->ListDir(artefact, dir, start_after,
                     [&](absl::string_view name, const store::FileRecord&) {
                       names.emplace_back(name);
                       return static_cast<int>(names.size()) < limit;
                     });
    EXPECT_TRUE(s.ok()) << s;
    return names;
  }

  std::vector<std::string> ListAll(const Digest& artefact, int limit = 1 << 30,
                                   const std::string& start_after = "") {
    std::vector<std::string> paths;
    absl::Status s = db_->ListAllFiles(
        artefact, start_after,
        [&](absl::string_view path, const store::FileRecord&) {
          paths.emplace_back(path);
          return static_cast<int>(paths.size()) < limit;
        });
    EXPECT_TRUE(s.ok()) << s;
    return paths;
  }

  std::string path_;
  std::unique_ptr<MetadataDb> db_;
};

TEST(MetadataKeysTest, SplitPath) {
  absl::string_view dir, name;
  SplitPath("a/b/c", &dir, &name);
  EXPECT_EQ(dir, "a/b");
  EXPECT_EQ(name, "c");
  SplitPath("c", &dir, &name);
  EXPECT_EQ(dir, "");
  EXPECT_EQ(name, "c");
}

TEST(MetadataKeysTest, FileKey) {
  Digest d = Sha256Of("artefact");
  EXPECT_EQ(FileKey(d, "usr/lib/x.so"),
            absl::StrCat(d.raw(), "usr/lib", std::string(1, '\0'), "x.so"));
  EXPECT_EQ(FileKey(d, "top"),
            absl::StrCat(d.raw(), std::string(1, '\0'), "top"));
}

TEST_F(MetadataTest, PutAndGetEachRecordType) {
  Digest blob = Sha256Of("blob");
  Digest artefact = Sha256Of("artefact");
  store::BlobRecord b;
  b.set_size(1234);
  b.set_kind(store::BlobRecord::FILE);
  b.set_created_unix_seconds(1700000000);
  store::ArtefactRecord a;
  a.set_compression(store::ArtefactRecord::ZSTD);
  a.set_file_count(3);
  a.mutable_metadata()->set_name("tool");
  a.set_index_state(store::ArtefactRecord::COMMITTED);
  store::FileRecord f = FileRec(7, store::FileRecord::SYMLINK);
  f.set_link_target("../lib/x");

  MetadataBatch batch;
  batch.PutBlob(blob, b);
  batch.PutArtefact(artefact, a);
  batch.PutFile(artefact, "bin/tool", f);
  EXPECT_EQ(batch.count(), 3u);
  Commit(std::move(batch), /*sync=*/true);

  auto got_b = db_->GetBlob(blob);
  ASSERT_TRUE(got_b.ok()) << got_b.status();
  EXPECT_EQ(got_b->SerializeAsString(), b.SerializeAsString());
  auto has = db_->HasBlob(blob);
  ASSERT_TRUE(has.ok());
  EXPECT_TRUE(*has);
  has = db_->HasBlob(artefact);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);

  auto got_a = db_->GetArtefact(artefact);
  ASSERT_TRUE(got_a.ok()) << got_a.status();
  EXPECT_EQ(got_a->SerializeAsString(), a.SerializeAsString());

  auto got_f = db_->GetFile(artefact, "bin/tool");
  ASSERT_TRUE(got_f.ok()) << got_f.status();
  EXPECT_EQ(got_f->SerializeAsString(), f.SerializeAsString());

  // Overwrite.
  b.set_size(99);
  MetadataBatch again;
  again.PutBlob(blob, b);
  Commit(std::move(again));
  EXPECT_EQ(db_->GetBlob(blob)->size(), 99u);
}

TEST_F(MetadataTest, DeleteBlobRemovesOnlyThatRecord) {
  Digest a = Sha256Of("a"), b = Sha256Of("b");
  store::BlobRecord rec;
  rec.set_size(1);
  MetadataBatch put;
  put.PutBlob(a, rec);
  put.PutBlob(b, rec);
  Commit(std::move(put));
  MetadataBatch del;
  del.DeleteBlob(a);
  Commit(std::move(del));
  EXPECT_EQ(db_->GetBlob(a).status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(db_->GetBlob(b).ok());
  absl::StatusOr<bool> has = db_->HasBlob(a);
  ASSERT_TRUE(has.ok());
  EXPECT_FALSE(*has);
}

TEST_F(MetadataTest, NotFoundNamesDigestAndPath) {
  Digest d = Sha256Of("missing");
  auto blob = db_->GetBlob(d);
  EXPECT_EQ(blob.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(blob.status().message(), HasSubstr(d.ToString()));
  auto artefact = db_->GetArtefact(d);
  EXPECT_EQ(artefact.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(artefact.status().message(), HasSubstr(d.ToString()));

  PutFiles(d, {"bin", "bin/tool"});
  auto file = db_->GetFile(d, "bin/other");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(file.status().message(), HasSubstr(d.ToString()));
  EXPECT_THAT(file.status().message(), HasSubstr("bin/other"));
  // Same path, other artefact.
  EXPECT_EQ(db_->GetFile(Sha256Of("x"), "bin/tool").status().code(),
            absl::StatusCode::kNotFound);
  // The root is not an entry.
  EXPECT_EQ(db_->GetFile(d, "").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(MetadataTest, ListDirBoundariesAndOrder) {
  Digest d = Sha256Of("artefact");
  Digest other = Sha256Of("other");
  PutFiles(d, {"a", "a/y", "a/x", "a/b", "a/b/c", "ab", "ab/x", "b", "a.txt",
               "a-", "z", "z/deep", "z/deep/er"});
  PutFiles(other, {"a", "a/other"});

  EXPECT_THAT(ListDir(d, ""), ElementsAre("a", "a-", "a.txt", "ab", "b", "z"));
  // Entries of "a" only: not "a/b/c" (a subdirectory's) nor "ab/x".
  EXPECT_THAT(ListDir(d, "a"), ElementsAre("b", "x", "y"));
  EXPECT_THAT(ListDir(d, "a/b"), ElementsAre("c"));
  EXPECT_THAT(ListDir(d, "ab"), ElementsAre("x"));
  EXPECT_THAT(ListDir(d, "z"), ElementsAre("deep"));
  EXPECT_THAT(ListDir(d, "z/deep"), ElementsAre("er"));
  EXPECT_THAT(ListDir(d, "nope"), IsEmpty());
  EXPECT_THAT(ListDir(d, "a/x"), IsEmpty());
  EXPECT_THAT(ListDir(other, "a"), ElementsAre("other"));
  EXPECT_THAT(ListDir(Sha256Of("none"), ""), IsEmpty());

  // start_after skips up to and including that name, present or not.
  EXPECT_THAT(ListDir(d, "a", "b"), ElementsAre("x", "y"));
  EXPECT_THAT(ListDir(d, "a", "x"), ElementsAre("y"));
  EXPECT_THAT(ListDir(d, "a", "y"), IsEmpty());
  EXPECT_THAT(ListDir(d, "a", "a"), ElementsAre("b", "x", "y"));
  EXPECT_THAT(ListDir(d, "a", "w"), ElementsAre("x", "y"));
  EXPECT_THAT(ListDir(d, "", "a"), ElementsAre("a-", "a.txt", "ab", "b", "z"));
  EXPECT_THAT(ListDir(d, "", "zz"), IsEmpty());

  // Early stop.
  EXPECT_THAT(ListDir(d, "a", "", 1), ElementsAre("b"));
  EXPECT_THAT(ListDir(d, "", "a", 2), ElementsAre("a-", "a.txt"));

  // Records come with the names.
  std::vector<uint64_t> ids;
  ASSERT_TRUE(db_->ListDir(d, "a", "",
                           [&](absl::string_view, const store::FileRecord& r) {
                             ids.push_back(r.entry_id());
                             return true;
                           })
                  .ok());
  EXPECT_THAT(ids, ElementsAre(4, 3, 2));  // b, x, y as put.
}

TEST_F(MetadataTest, ListAllFiles) {
  Digest d = Sha256Of("artefact");
  Digest next = DigestOfBytes(0, 0);  // Sorts before d: must not show up.
  PutFiles(d, {"a", "a/x", "a/b", "a/b/c", "b"});
  PutFiles(next, {"a", "zzz"});
  // Root entries first, then each directory's (key order).
  EXPECT_THAT(ListAll(d), ElementsAre("a", "b", "a/b", "a/x", "a/b/c"));
  EXPECT_THAT(ListAll(d, 2), ElementsAre("a", "b"));
  EXPECT_THAT(ListAll(next), ElementsAre("a", "zzz"));
  EXPECT_THAT(ListAll(Sha256Of("none")), IsEmpty());
  // Resumed after an entry, page by page: every entry once, in order.
  EXPECT_THAT(ListAll(d, 2, "b"), ElementsAre("a/b", "a/x"));
  EXPECT_THAT(ListAll(d, 2, "a/x"), ElementsAre("a/b/c"));
  EXPECT_THAT(ListAll(d, 2, "a/b/c"), IsEmpty());
  EXPECT_THAT(ListAll(d, 9, "a/a"), ElementsAre("a/b", "a/x", "a/b/c"));
  EXPECT_THAT(ListAll(next, 9, "a"), ElementsAre("zzz"));
}

TEST_F(MetadataTest, DeleteFilesOnlyTouchesThatArtefact) {
  const Digest all_ff = DigestOfBytes(0xff, 0xff);
  const Digest below_ff = DigestOfBytes(0xff, 0xfe);
  const Digest mid = DigestOfBytes(0x12, 0x34);
  const Digest mid_next = DigestOfBytes(0x12, 0x35);
  // Paths whose bytes sort after 0xff... prefixes test the unbounded range.
  const std::string high = "\xff\xff/\xff\xff";
  PutFiles(all_ff, {"a", "a/b", high.substr(0, 2), high});
  PutFiles(below_ff, {"a", "a/b", "z"});
  PutFiles(mid, {"x", "x/y"});
  PutFiles(mid_next, {"x"});

  MetadataBatch del_mid;
  del_mid.DeleteFiles(mid);
  Commit(std::move(del_mid));
  EXPECT_THAT(ListAll(mid), IsEmpty());
  EXPECT_THAT(ListAll(mid_next), ElementsAre("x"));
  EXPECT_THAT(ListAll(below_ff), ElementsAre("a", "z", "a/b"));
  EXPECT_EQ(ListAll(all_ff).size(), 4u);

  MetadataBatch del_ff;
  del_ff.DeleteFiles(all_ff);
  Commit(std::move(del_ff));
  EXPECT_THAT(ListAll(all_ff), IsEmpty());
  EXPECT_EQ(db_->GetFile(all_ff, high).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_THAT(ListAll(below_ff), ElementsAre("a", "z", "a/b"));
  EXPECT_THAT(ListAll(mid_next), ElementsAre("x"));

  // Deleting the neighbour below all-0xff leaves all-0xff's entries.
  PutFiles(all_ff, {"kept"});
  MetadataBatch del_below;
  del_below.DeleteFiles(below_ff);
  Commit(std::move(del_below));
  EXPECT_THAT(ListAll(below_ff), IsEmpty());
  EXPECT_THAT(ListAll(all_ff), ElementsAre("kept"));

  // Deleting with nothing stored is fine.
  MetadataBatch del_none;
  del_none.DeleteFiles(Sha256Of("none"));
  Commit(std::move(del_none));
  EXPECT_THAT(ListAll(all_ff), ElementsAre("kept"));
}

TEST_F(MetadataTest, DeleteFilesOrderWithinBatch) {
  for (const Digest& d : {DigestOfBytes(0xff, 0xff), Sha256Of("artefact")}) {
    SCOPED_TRACE(d.ToString());
    PutFiles(d, {"old", "old/x"});
    // Delete then put: a re-index replaces the entries.
    MetadataBatch reindex;
    reindex.DeleteFiles(d);
    reindex.PutFile(d, "new", FileRec(1));
    Commit(std::move(reindex));
    EXPECT_THAT(ListAll(d), ElementsAre("new"));
    // Put then delete: the delete covers the batch's own earlier puts, even
    // those sorting after every stored key.
    MetadataBatch drop;
    drop.PutFile(d, "\xff\xff\xff", FileRec(2));
    drop.PutFile(d, "more", FileRec(3));
    drop.DeleteFiles(d);
    Commit(std::move(drop));
    EXPECT_THAT(ListAll(d), IsEmpty());
  }
}

TEST_F(MetadataTest, ListArtefacts) {
  Digest a = DigestOfBytes(0x01, 0x00);
  Digest b = DigestOfBytes(0x80, 0x00);
  Digest c = DigestOfBytes(0xff, 0xff);
  MetadataBatch batch;
  store::ArtefactRecord r;
  for (const Digest& d : {c, a, b}) {
    r.set_file_count(d.raw()[0] & 0xff);
    batch.PutArtefact(d, r);
  }
  // Blobs and files are not artefacts.
  batch.PutBlob(Sha256Of("blob"), store::BlobRecord());
  batch.PutFile(a, "f", FileRec(1));
  Commit(std::move(batch));

  std::vector<Digest> seen;
  std::vector<uint64_t> counts;
  ASSERT_TRUE(db_->ListArtefacts(
                     [&](const Digest& d, const store::ArtefactRecord& rec) {
                       seen.push_back(d);
                       counts.push_back(rec.file_count());
                       return true;
                     })
                  .ok());
  EXPECT_THAT(seen, ElementsAre(a, b, c));
  EXPECT_THAT(counts, ElementsAre(0x01, 0x80, 0xff));

  seen.clear();
  ASSERT_TRUE(
      db_->ListArtefacts([&](const Digest& d, const store::ArtefactRecord&) {
           seen.push_back(d);
           return false;
         })
          .ok());
  EXPECT_THAT(seen, ElementsAre(a));
}

TEST_F(MetadataTest, EmptyBatchCommits) {
  MetadataBatch batch;
  EXPECT_EQ(batch.count(), 0u);
  EXPECT_TRUE(db_->Commit(std::move(batch), true).ok());
}

TEST_F(MetadataTest, DataPersistsAcrossReopen) {
  Digest d = Sha256Of("artefact");
  MetadataBatch batch;
  store::BlobRecord b;
  b.set_size(5);
  batch.PutBlob(d, b);
  batch.PutArtefact(d, store::ArtefactRecord());
  batch.PutFile(d, "dir/file", FileRec(9));
  Commit(std::move(batch), /*sync=*/true);
  Reopen();
  auto got = db_->GetBlob(d);
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->size(), 5u);
  EXPECT_TRUE(db_->GetArtefact(d).ok());
  EXPECT_EQ(db_->GetFile(d, "dir/file")->entry_id(), 9u);
  EXPECT_THAT(ListDir(d, "dir"), ElementsAre("file"));
}

TEST_F(MetadataTest, SecondOpenOfSamePathFails) {
  auto second = MetadataDb::Open(path_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kInternal);
  EXPECT_THAT(second.status().message(), HasSubstr(path_));
  EXPECT_THAT(second.status().message(), HasSubstr("lock"));
  // The first handle still works.
  EXPECT_FALSE(*db_->HasBlob(Sha256Of("x")));
}

TEST_F(MetadataTest, CorruptRecordIsDataLoss) {
  Digest d = Sha256Of("artefact");
  PutFiles(d, {"f"});
  db_.reset();
  {
    // Write undecodable values behind MetadataDb's back.
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path_, &names)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& n : names) {
      cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::Options(), path_, cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    const std::string truncated = "\x08";  // Tag of field 1, no value.
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "blobs" || names[i] == "artefacts") {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i],
                            std::string(d.raw()), truncated)
                        .ok());
      } else if (names[i] == "files") {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i],
                            FileKey(d, "f"), truncated)
                        .ok());
      }
    }
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  Reopen();
  auto blob = db_->GetBlob(d);
  EXPECT_EQ(blob.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(blob.status().message(), HasSubstr(d.ToString()));
  EXPECT_EQ(db_->GetArtefact(d).status().code(), absl::StatusCode::kDataLoss);
  auto file = db_->GetFile(d, "f");
  EXPECT_EQ(file.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(file.status().message(), HasSubstr(d.ToString()));
  absl::Status list = db_->ListDir(
      d, "", "",
      [](absl::string_view, const store::FileRecord&) { return true; });
  EXPECT_EQ(list.code(), absl::StatusCode::kDataLoss);
  absl::Status arts = db_->ListArtefacts(
      [](const Digest&, const store::ArtefactRecord&) { return true; });
  EXPECT_EQ(arts.code(), absl::StatusCode::kDataLoss);
}

store::RefRecord RefRec(uint64_t generation, store::RefRecord::Kind kind =
                                                 store::RefRecord::BRANCH) {
  store::RefRecord r;
  r.set_kind(kind);
  r.set_generation(generation);
  (*r.mutable_slots())["linux-amd64"].set_digest(
      std::string(Sha256Of(absl::StrCat("g", generation)).raw()));
  return r;
}

store::RefHistoryRecord HistRec(uint64_t generation, absl::string_view actor) {
  store::RefHistoryRecord r;
  r.set_generation(generation);
  r.set_actor(std::string(actor));
  r.set_action(store::RefHistoryRecord::SET_SLOT);
  return r;
}

TEST(MetadataKeysTest, RefHistoryKey) {
  EXPECT_EQ(RefHistoryKey("a@b", 0x0102),
            std::string("a@b\0\0\0\0\0\0\0\x01\x02", 12));
  // Big-endian: keys sort by generation.
  EXPECT_LT(RefHistoryKey("a@b", 255), RefHistoryKey("a@b", 256));
  EXPECT_LT(RefHistoryKey("a@b", UINT64_MAX), RefHistoryKey("a@b.c", 0));
}

TEST_F(MetadataTest, RefsPutGetDeleteAndReopen) {
  EXPECT_EQ(db_->GetRef("tool@main").status().code(),
            absl::StatusCode::kNotFound);
  MetadataBatch batch;
  batch.PutRef("tool@main", RefRec(1));
  batch.PutRefHistory("tool@main", HistRec(1, "alice"));
  Commit(std::move(batch), /*sync=*/true);
  Reopen();
  auto got = db_->GetRef("tool@main");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->generation(), 1u);
  EXPECT_EQ(got->kind(), store::RefRecord::BRANCH);
  EXPECT_EQ(got->slots().at("linux-amd64").digest(),
            std::string(Sha256Of("g1").raw()));

  MetadataBatch del;
  del.DeleteRef("tool@main");
  Commit(std::move(del));
  auto gone = db_->GetRef("tool@main");
  EXPECT_EQ(gone.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(std::string(gone.status().message()), HasSubstr("tool@main"));
  // History outlives the record.
  EXPECT_EQ(*db_->LastRefHistoryGeneration("tool@main"), 1u);

  EXPECT_EQ(db_->GetRef("").status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_->GetRef(absl::string_view("a\0b", 3)).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MetadataTest, ListRefsByPrefixAndStartAfter) {
  MetadataBatch batch;
  uint64_t g = 1;
  for (const char* ref : {"tool@main", "tool@dev", "tool-x@main", "tools@a",
                          "team/a@x", "team/b@x"}) {
    batch.PutRef(ref, RefRec(g++));
  }
  Commit(std::move(batch));
  auto list = [&](absl::string_view prefix, absl::string_view start_after,
                  int limit = 1 << 30) {
    std::vector<std::string> out;
    absl::Status s =
        db_->ListRefs(prefix, start_after,
                      [&](absl::string_view ref, const store::RefRecord& r) {
                        EXPECT_GT(r.generation(), 0u);
                        out.emplace_back(ref);
                        return static_cast<int>(out.size()) < limit;
                      });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  };
  EXPECT_THAT(list("", ""), ElementsAre("team/a@x", "team/b@x", "tool-x@main",
                                        "tool@dev", "tool@main", "tools@a"));
  EXPECT_THAT(list("tool@", ""), ElementsAre("tool@dev", "tool@main"));
  EXPECT_THAT(list("tool", ""),
              ElementsAre("tool-x@main", "tool@dev", "tool@main", "tools@a"));
  EXPECT_THAT(list("team/", ""), ElementsAre("team/a@x", "team/b@x"));
  EXPECT_THAT(list("tool@", "tool@dev"), ElementsAre("tool@main"));
  EXPECT_THAT(list("tool@", "tool@main"), IsEmpty());
  // start_after before the prefix range starts at the prefix.
  EXPECT_THAT(list("tool@", "a"), ElementsAre("tool@dev", "tool@main"));
  EXPECT_THAT(list("", "tool-x@main", 2), ElementsAre("tool@dev", "tool@main"));
  EXPECT_THAT(list("zzz", ""), IsEmpty());
  EXPECT_THAT(list("\xff", ""), IsEmpty());
}

TEST_F(MetadataTest, RefHistoryIsPerRefAndOrderedByGeneration) {
  MetadataBatch batch;
  // Written out of order; generations that differ in every byte position.
  for (uint64_t g : {257u, 1u, 256u, 2u}) {
    batch.PutRefHistory("a@b", HistRec(g, absl::StrCat("actor", g)));
  }
  // Neighbours whose keys share the prefix "a@b".
  batch.PutRefHistory("a@b.c", HistRec(1, "other"));
  batch.PutRefHistory("a@bc", HistRec(9, "other"));
  batch.PutRefHistory("a@a", HistRec(1000, "other"));
  Commit(std::move(batch));

  auto history = [&](absl::string_view ref, uint64_t after, int limit = 100) {
    std::vector<uint64_t> out;
    absl::Status s =
        db_->ListRefHistory(ref, after, [&](const store::RefHistoryRecord& r) {
          EXPECT_EQ(r.actor(), r.actor() == "other"
                                   ? "other"
                                   : absl::StrCat("actor", r.generation()));
          out.push_back(r.generation());
          return static_cast<int>(out.size()) < limit;
        });
    EXPECT_TRUE(s.ok()) << s;
    return out;
  };
  EXPECT_THAT(history("a@b", 0), ElementsAre(1u, 2u, 256u, 257u));
  EXPECT_THAT(history("a@b", 2), ElementsAre(256u, 257u));
  EXPECT_THAT(history("a@b", 0, 2), ElementsAre(1u, 2u));
  EXPECT_THAT(history("a@b", 257), IsEmpty());
  EXPECT_THAT(history("a@b", UINT64_MAX), IsEmpty());
  EXPECT_THAT(history("a@b.c", 0), ElementsAre(1u));
  EXPECT_THAT(history("a@x", 0), IsEmpty());
  EXPECT_EQ(*db_->LastRefHistoryGeneration("a@b"), 257u);
  EXPECT_EQ(*db_->LastRefHistoryGeneration("a@bc"), 9u);
  EXPECT_EQ(*db_->LastRefHistoryGeneration("a@a"), 1000u);
  EXPECT_EQ(*db_->LastRefHistoryGeneration("a@"), 0u);
  EXPECT_EQ(*db_->LastRefHistoryGeneration("a@c"), 0u);
  EXPECT_EQ(*db_->LastRefHistoryGeneration("zz@z"), 0u);
  EXPECT_EQ(db_->ListRefHistory(
                   "", 0, [](const store::RefHistoryRecord&) { return true; })
                .code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(db_->LastRefHistoryGeneration("").status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(MetadataTest, CorruptRefRecordsAreDataLoss) {
  MetadataBatch batch;
  batch.PutRef("ok@x", RefRec(1));
  // A history record whose generation disagrees with its key.
  store::RefHistoryRecord wrong = HistRec(5, "x");
  batch.PutRefHistory("mis@x", wrong);
  Commit(std::move(batch));
  db_.reset();
  {
    std::vector<std::string> names;
    ASSERT_TRUE(
        rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), path_, &names)
            .ok());
    std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
    for (const std::string& n : names) {
      cfs.emplace_back(n, rocksdb::ColumnFamilyOptions());
    }
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* raw = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(rocksdb::Options(), path_, cfs, &handles, &raw).ok());
    std::unique_ptr<rocksdb::DB> db(raw);
    const std::string truncated = "\x08";  // Tag of field 1, no value.
    for (size_t i = 0; i < names.size(); ++i) {
      if (names[i] == "refs") {
        ASSERT_TRUE(
            db->Put(rocksdb::WriteOptions(), handles[i], "bad@x", truncated)
                .ok());
      } else if (names[i] == "ref_history") {
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i],
                            RefHistoryKey("bad@x", 1), truncated)
                        .ok());
        // Too short to hold a generation.
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i],
                            std::string("short@x\0\x01", 9),
                            HistRec(1, "x").SerializeAsString())
                        .ok());
        // The record of generation 5 stored under generation 6.
        ASSERT_TRUE(db->Delete(rocksdb::WriteOptions(), handles[i],
                               RefHistoryKey("mis@x", 5))
                        .ok());
        ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), handles[i],
                            RefHistoryKey("mis@x", 6),
                            wrong.SerializeAsString())
                        .ok());
      }
    }
    for (auto* h : handles) ASSERT_TRUE(db->DestroyColumnFamilyHandle(h).ok());
  }
  Reopen();
  auto ref = db_->GetRef("bad@x");
  EXPECT_EQ(ref.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(ref.status().message()), HasSubstr("bad@x"));
  EXPECT_TRUE(db_->GetRef("ok@x").ok());
  auto all = [](absl::string_view, const store::RefRecord&) { return true; };
  EXPECT_EQ(db_->ListRefs("", "", all).code(), absl::StatusCode::kDataLoss);
  EXPECT_TRUE(db_->ListRefs("ok@", "", all).ok());
  auto any = [](const store::RefHistoryRecord&) { return true; };
  absl::Status s = db_->ListRefHistory("bad@x", 0, any);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("bad@x"));
  s = db_->ListRefHistory("short@x", 0, any);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("malformed ref_history key"));
  EXPECT_EQ(db_->LastRefHistoryGeneration("short@x").status().code(),
            absl::StatusCode::kDataLoss);
  s = db_->ListRefHistory("mis@x", 0, any);
  EXPECT_EQ(s.code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(std::string(s.message()), HasSubstr("holds generation 5"));
}

}  // namespace
}  // namespace cairn
