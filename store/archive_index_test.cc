// Copyright 2026 The Cairn Authors.

#include "store/archive_index.h"

#include <archive.h>
#include <archive_entry.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "proto/store_records.pb.h"
#include "store/digest.h"

namespace cairn {
namespace {

using store::ArtefactRecord;
using store::FileRecord;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// Building archives with libarchive's write API.

struct TestEntry {
  std::string path;
  unsigned type = AE_IFREG;  // AE_IF* file type.
  unsigned mode = 0644;
  std::string content;   // Regular files.
  std::string link;      // Symlink target.
  std::string hardlink;  // Hardlink target (makes this a hardlink).
};

TestEntry File(std::string path, std::string content, unsigned mode = 0644) {
  TestEntry e;
  e.path = std::move(path);
  e.content = std::move(content);
  e.mode = mode;
  return e;
}

TestEntry Dir(std::string path, unsigned mode = 0755) {
  TestEntry e;
  e.path = std::move(path);
  e.type = AE_IFDIR;
  e.mode = mode;
  return e;
}

TestEntry Symlink(std::string path, std::string target) {
  TestEntry e;
  e.path = std::move(path);
  e.type = AE_IFLNK;
  e.mode = 0777;
  e.link = std::move(target);
  return e;
}

TestEntry Hardlink(std::string path, std::string target) {
  TestEntry e;
  e.path = std::move(path);
  e.hardlink = std::move(target);
  return e;
}

TestEntry Special(std::string path, unsigned type) {
  TestEntry e;
  e.path = std::move(path);
  e.type = type;
  return e;
}

enum class Filter { kNone, kGzip, kZstd };

la_ssize_t AppendToString(struct archive*, void* client, const void* buf,
                          size_t len) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buf), len);
  return static_cast<la_ssize_t>(len);
}

void AddFilter(struct archive* a, Filter filter) {
  switch (filter) {
    case Filter::kNone:
      ASSERT_EQ(archive_write_add_filter_none(a), ARCHIVE_OK);
      break;
    case Filter::kGzip:
      ASSERT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
      break;
    case Filter::kZstd:
      ASSERT_EQ(archive_write_add_filter_zstd(a), ARCHIVE_OK);
      break;
  }
}

std::string MakeTar(const std::vector<TestEntry>& entries,
                    Filter filter = Filter::kNone) {
  std::string out;
  struct archive* a = archive_write_new();
  EXPECT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  AddFilter(a, filter);
  EXPECT_EQ(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr),
            ARCHIVE_OK)
      << archive_error_string(a);
  for (const TestEntry& t : entries) {
    struct archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, t.path.c_str());
    archive_entry_set_mtime(e, 1700000000, 0);
    if (!t.hardlink.empty()) {
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, t.mode);
      archive_entry_set_hardlink(e, t.hardlink.c_str());
      archive_entry_set_size(e, 0);
    } else {
      archive_entry_set_filetype(e, t.type);
      archive_entry_set_perm(e, t.mode);
      if (t.type == AE_IFLNK) archive_entry_set_symlink(e, t.link.c_str());
      if (t.type == AE_IFCHR || t.type == AE_IFBLK) {
        archive_entry_set_rdevmajor(e, 1);
        archive_entry_set_rdevminor(e, 3);
      }
      archive_entry_set_size(e, t.type == AE_IFREG ? t.content.size() : 0);
    }
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK)
        << t.path << ": " << archive_error_string(a);
    if (t.type == AE_IFREG && t.hardlink.empty() && !t.content.empty()) {
      EXPECT_EQ(archive_write_data(a, t.content.data(), t.content.size()),
                static_cast<la_ssize_t>(t.content.size()));
    }
    archive_entry_free(e);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK) << archive_error_string(a);
  archive_write_free(a);
  return out;
}

// Compresses arbitrary bytes (libarchive's "raw" format writes one file's
// data through the filter).
std::string Compress(absl::string_view data, Filter filter) {
  std::string out;
  struct archive* a = archive_write_new();
  EXPECT_EQ(archive_write_set_format_raw(a), ARCHIVE_OK);
  AddFilter(a, filter);
  EXPECT_EQ(archive_write_set_bytes_in_last_block(a, 1), ARCHIVE_OK);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr),
            ARCHIVE_OK);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "data");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_size(e, data.size());
  EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK) << archive_error_string(a);
  EXPECT_EQ(archive_write_data(a, data.data(), data.size()),
            static_cast<la_ssize_t>(data.size()));
  archive_entry_free(e);
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

std::string RandomBytes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng() & 0xff);
  return s;
}

// ---------------------------------------------------------------------------
// Sources and sinks.

class StringSource : public ByteSource {
 public:
  explicit StringSource(std::string data, size_t chunk = 1 << 16)
      : data_(std::move(data)), chunk_(chunk) {}

  // Fails with `error` once `offset` bytes have been returned.
  void FailAt(size_t offset, absl::Status error) {
    fail_at_ = offset;
    error_ = std::move(error);
  }

  absl::StatusOr<absl::string_view> Next() override {
    if (pos_ >= fail_at_) return error_;
    size_t n = std::min({chunk_, data_.size() - pos_, fail_at_ - pos_});
    absl::string_view v(data_.data() + pos_, n);
    pos_ += n;
    return v;
  }

  size_t consumed() const { return pos_; }

 private:
  std::string data_;
  size_t chunk_;
  size_t pos_ = 0;
  size_t fail_at_ = SIZE_MAX;
  absl::Status error_;
};

class CollectingSink : public FileContentSink {
 public:
  absl::Status BeginFile(absl::string_view path, uint64_t size) override {
    EXPECT_FALSE(open_) << "BeginFile inside " << current_;
    open_ = true;
    current_ = std::string(path);
    declared_[current_] = size;
    files_[current_].clear();
    order_.push_back(current_);
    return absl::OkStatus();
  }
  absl::Status Append(absl::string_view data) override {
    EXPECT_TRUE(open_);
    if (current_ == fail_path_) return fail_with_;
    files_[current_].append(data.data(), data.size());
    return absl::OkStatus();
  }
  absl::Status EndFile(const Digest& digest) override {
    EXPECT_TRUE(open_);
    open_ = false;
    digests_[current_] = digest;
    return absl::OkStatus();
  }

  // Append fails with `error` from file `path` on.
  void FailOn(std::string path, absl::Status error) {
    fail_path_ = std::move(path);
    fail_with_ = std::move(error);
  }

  std::map<std::string, std::string> files_;
  std::map<std::string, uint64_t> declared_;
  std::map<std::string, Digest> digests_;
  std::vector<std::string> order_;

 private:
  bool open_ = false;
  std::string current_;
  std::string fail_path_;
  absl::Status fail_with_;
};

absl::StatusOr<ArchiveIndex> Index(std::string data, size_t chunk = 1 << 16,
                                   FileContentSink* sink = nullptr,
                                   const ArchiveLimits& limits = {}) {
  StringSource source(std::move(data), chunk);
  return IndexArchive(source, limits, sink);
}

const IndexedEntry* Find(const ArchiveIndex& index, absl::string_view path) {
  for (const IndexedEntry& e : index.entries) {
    if (e.path == path) return &e;
  }
  return nullptr;
}

std::vector<std::string> Paths(const ArchiveIndex& index) {
  std::vector<std::string> paths;
  for (const IndexedEntry& e : index.entries) paths.push_back(e.path);
  return paths;
}

std::string Raw(absl::string_view content) {
  return std::string(Sha256Of(content).raw());
}

// Entries and records, for comparing indexes.
std::vector<std::pair<std::string, std::string>> Flatten(
    const ArchiveIndex& index) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const IndexedEntry& e : index.entries) {
    out.emplace_back(e.path, e.record.SerializeAsString());
  }
  return out;
}

void ExpectRejected(const std::vector<TestEntry>& entries,
                    absl::StatusCode code, absl::string_view needle,
                    const ArchiveLimits& limits = {}) {
  absl::StatusOr<ArchiveIndex> index =
      Index(MakeTar(entries), 1 << 16, nullptr, limits);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), code) << index.status();
  EXPECT_THAT(index.status().message(), HasSubstr(needle));
  EXPECT_TRUE(IsArchiveRejection(index.status())) << index.status();
}

// A tree exercising every entry type.
std::vector<TestEntry> SampleTree() {
  return {
      Dir("bin", 0755),
      File("bin/tool", "#!/bin/sh\necho hi\n", 0755),
      File("./share/doc/README", "read me\n"),  // Implicit share, share/doc.
      Symlink("bin/t", "tool"),
      Symlink("abs", "/etc/passwd"),  // Served as-is, never followed.
      Hardlink("bin/tool2", "bin/tool"),
      File("empty", ""),
      Dir("share/", 0700),  // Explicit entry for a synthesised directory.
  };
}

// ---------------------------------------------------------------------------
// Tests.

TEST(ArchiveIndexTest, IndexesAllEntryTypes) {
  CollectingSink sink;
  absl::StatusOr<ArchiveIndex> index =
      Index(MakeTar(SampleTree(), Filter::kGzip), 1 << 16, &sink);
  ASSERT_TRUE(index.ok()) << index.status();

  EXPECT_EQ(index->compression, ArtefactRecord::GZIP);
  EXPECT_THAT(Paths(*index), ElementsAre("bin", "bin/tool", "share",
                                         "share/doc", "share/doc/README",
                                         "bin/t", "abs", "bin/tool2", "empty"));
  for (size_t i = 0; i < index->entries.size(); ++i) {
    const FileRecord& r = index->entries[i].record;
    if (r.type() != FileRecord::HARDLINK) {
      EXPECT_EQ(r.entry_id(), i + 1) << index->entries[i].path;
    }
  }

  const FileRecord& bin = Find(*index, "bin")->record;
  EXPECT_EQ(bin.type(), FileRecord::DIRECTORY);
  EXPECT_EQ(bin.mode(), 0755u);

  const FileRecord& tool = Find(*index, "bin/tool")->record;
  EXPECT_EQ(tool.type(), FileRecord::REGULAR);
  EXPECT_EQ(tool.mode(), 0755u);
  EXPECT_EQ(tool.size(), 18u);
  EXPECT_EQ(tool.content_digest(), Raw("#!/bin/sh\necho hi\n"));

  // Synthesised parents, then the explicit "share/" updating the mode.
  const FileRecord& share = Find(*index, "share")->record;
  EXPECT_EQ(share.type(), FileRecord::DIRECTORY);
  EXPECT_EQ(share.mode(), 0700u);
  EXPECT_EQ(share.entry_id(), 3u);
  const FileRecord& doc = Find(*index, "share/doc")->record;
  EXPECT_EQ(doc.type(), FileRecord::DIRECTORY);
  EXPECT_EQ(doc.mode(), 0755u);

  const FileRecord& t = Find(*index, "bin/t")->record;
  EXPECT_EQ(t.type(), FileRecord::SYMLINK);
  EXPECT_EQ(t.link_target(), "tool");
  EXPECT_EQ(Find(*index, "abs")->record.link_target(), "/etc/passwd");

  const FileRecord& tool2 = Find(*index, "bin/tool2")->record;
  EXPECT_EQ(tool2.type(), FileRecord::HARDLINK);
  EXPECT_EQ(tool2.link_target(), "bin/tool");
  EXPECT_EQ(tool2.entry_id(), tool.entry_id());
  EXPECT_EQ(tool2.size(), tool.size());
  EXPECT_EQ(tool2.content_digest(), tool.content_digest());
  // bin/tool and bin/tool2 are one inode with two names.
  EXPECT_EQ(tool.nlink(), 2u);
  EXPECT_EQ(Find(*index, "share/doc/README")->record.nlink(), 1u);

  const FileRecord& empty = Find(*index, "empty")->record;
  EXPECT_EQ(empty.size(), 0u);
  EXPECT_EQ(empty.content_digest(), Raw(""));

  EXPECT_EQ(index->regular_files, 3u);
  EXPECT_EQ(index->unpacked_bytes, 18u + 8u);
  EXPECT_TRUE(index->stripped_setid_paths.empty());

  // The sink saw each regular file once, hardlinks not at all.
  EXPECT_THAT(sink.order_,
              ElementsAre("bin/tool", "share/doc/README", "empty"));
  EXPECT_EQ(sink.files_["bin/tool"], "#!/bin/sh\necho hi\n");
  EXPECT_EQ(sink.files_["share/doc/README"], "read me\n");
  EXPECT_EQ(sink.declared_["bin/tool"], 18u);
  EXPECT_EQ(sink.digests_["share/doc/README"], Sha256Of("read me\n"));
}

TEST(ArchiveIndexTest, CompressionsGiveIdenticalIndexes) {
  std::vector<TestEntry> tree = SampleTree();
  const std::string big = RandomBytes(3 << 20, 1);  // Spans output buffers.
  tree.push_back(File("big.bin", big));
  tree.push_back(File("zeros", std::string(5 << 20, '\0')));

  std::map<Filter, ArchiveIndex> indexes;
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    CollectingSink sink;
    absl::StatusOr<ArchiveIndex> index =
        Index(MakeTar(tree, f), 1 << 16, &sink);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_EQ(Find(*index, "big.bin")->record.content_digest(), Raw(big));
    EXPECT_EQ(Find(*index, "zeros")->record.size(), 5u << 20);
    EXPECT_EQ(sink.files_["big.bin"], big);
    for (const auto& [path, content] : sink.files_) {
      EXPECT_EQ(Find(*index, path)->record.content_digest(), Raw(content))
          << path;
      EXPECT_EQ(sink.digests_[path], Sha256Of(content)) << path;
    }
    indexes[f] = *std::move(index);
  }
  EXPECT_EQ(indexes[Filter::kNone].compression, ArtefactRecord::NONE);
  EXPECT_EQ(indexes[Filter::kGzip].compression, ArtefactRecord::GZIP);
  EXPECT_EQ(indexes[Filter::kZstd].compression, ArtefactRecord::ZSTD);
  EXPECT_EQ(Flatten(indexes[Filter::kNone]), Flatten(indexes[Filter::kGzip]));
  EXPECT_EQ(Flatten(indexes[Filter::kNone]), Flatten(indexes[Filter::kZstd]));
  EXPECT_EQ(indexes[Filter::kZstd].unpacked_bytes,
            indexes[Filter::kNone].unpacked_bytes);
}

// A sink that hashes for itself: the index leaves digests out, and
// FillContentDigests restores exactly the index the default mode makes,
// hardlinks included.
class HashingSink : public CollectingSink {
 public:
  bool HashesContent() const override { return true; }
};

TEST(ArchiveIndexTest, SinkHashingThenFillGivesTheSameIndex) {
  const std::string tar = MakeTar(SampleTree(), Filter::kGzip);
  CollectingSink plain_sink;
  absl::StatusOr<ArchiveIndex> plain = Index(tar, 1 << 16, &plain_sink);
  ASSERT_TRUE(plain.ok()) << plain.status();

  HashingSink sink;
  absl::StatusOr<ArchiveIndex> index = Index(tar, 1 << 16, &sink);
  ASSERT_TRUE(index.ok()) << index.status();
  std::vector<Digest> digests;
  for (const IndexedEntry& e : index->entries) {
    if (e.record.type() == FileRecord::REGULAR) {
      EXPECT_TRUE(e.record.content_digest().empty()) << e.path;
      digests.push_back(Sha256Of(sink.files_[e.path]));
    }
  }
  EXPECT_FALSE(FillContentDigests({}, &*index).ok());
  ASSERT_TRUE(FillContentDigests(digests, &*index).ok());
  EXPECT_EQ(Flatten(*index), Flatten(*plain));
}

TEST(ArchiveIndexTest, TinyChunksWork) {
  std::vector<TestEntry> tree = SampleTree();
  tree.push_back(File("mid.bin", RandomBytes(40000, 2)));
  const std::string plain = MakeTar(tree);
  absl::StatusOr<ArchiveIndex> want = Index(plain);
  ASSERT_TRUE(want.ok()) << want.status();
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    const std::string data = MakeTar(tree, f);
    for (size_t chunk : {1, 7}) {
      CollectingSink sink;
      absl::StatusOr<ArchiveIndex> index = Index(data, chunk, &sink);
      ASSERT_TRUE(index.ok()) << "filter " << static_cast<int>(f) << " chunk "
                              << chunk << ": " << index.status();
      EXPECT_EQ(Flatten(*index), Flatten(*want));
      EXPECT_EQ(sink.files_["mid.bin"], tree.back().content);
    }
  }
}

TEST(ArchiveIndexTest, MultiMemberGzip) {
  std::vector<TestEntry> tree = SampleTree();
  tree.push_back(File("mid.bin", RandomBytes(100000, 3)));
  tree.push_back(File("text", std::string(200000, 'x')));
  const std::string plain = MakeTar(tree);
  absl::StatusOr<ArchiveIndex> want = Index(plain);
  ASSERT_TRUE(want.ok()) << want.status();

  const size_t a = plain.size() / 3, b = 2 * plain.size() / 3 + 11;
  const std::string gz = Compress(plain.substr(0, a), Filter::kGzip) +
                         Compress(plain.substr(a, b - a), Filter::kGzip) +
                         Compress(plain.substr(b), Filter::kGzip);
  ASSERT_EQ(static_cast<unsigned char>(gz[0]), 0x1f);
  for (size_t chunk : {size_t{1}, size_t{7}, size_t{4096}, gz.size()}) {
    absl::StatusOr<ArchiveIndex> index = Index(gz, chunk);
    ASSERT_TRUE(index.ok()) << "chunk " << chunk << ": " << index.status();
    EXPECT_EQ(index->compression, ArtefactRecord::GZIP);
    EXPECT_EQ(Flatten(*index), Flatten(*want));
  }
}

TEST(ArchiveIndexTest, GzipZeroPaddingAcceptedGarbageRejected) {
  const std::string gz = MakeTar(SampleTree(), Filter::kGzip);
  EXPECT_TRUE(Index(gz + std::string(1000, '\0'), 7).ok());
  absl::StatusOr<ArchiveIndex> index = Index(gz + "junk");
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("corrupt gzip stream"));
}

// libarchive's writer (and tar's) pads the compressed stream to a full
// 10240-byte block with zeros.
TEST(ArchiveIndexTest, ZstdZeroPaddingAcceptedGarbageRejected) {
  const std::string zst = MakeTar(SampleTree(), Filter::kZstd);
  EXPECT_TRUE(Index(zst + std::string(10000, '\0'), 7).ok());
  EXPECT_TRUE(Index(zst + std::string(10000, '\0')).ok());
  absl::StatusOr<ArchiveIndex> index = Index(zst + std::string(10, '\0') + "x");
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("trailing garbage"));
}

TEST(ArchiveIndexTest, ReadsUstarAndGnuTar) {
  const std::string long_path = std::string(150, 'd') + "/f";
  const std::string utf8 = "r\xc3\xa9sum\xc3\xa9.txt";
  for (int format : {ARCHIVE_FORMAT_TAR_USTAR, ARCHIVE_FORMAT_TAR_GNUTAR}) {
    std::string out;
    struct archive* a = archive_write_new();
    ASSERT_EQ(archive_write_set_format(a, format), ARCHIVE_OK);
    ASSERT_EQ(archive_write_add_filter_none(a), ARCHIVE_OK);
    ASSERT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr),
              ARCHIVE_OK);
    for (const std::string& p : {utf8, long_path}) {
      struct archive_entry* e = archive_entry_new();
      archive_entry_set_pathname(e, p.c_str());
      archive_entry_set_filetype(e, AE_IFREG);
      archive_entry_set_perm(e, 0644);
      archive_entry_set_size(e, 3);
      ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
      ASSERT_EQ(archive_write_data(a, "abc", 3), 3);
      archive_entry_free(e);
    }
    ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
    archive_write_free(a);
    absl::StatusOr<ArchiveIndex> index = Index(out);
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_THAT(Paths(*index),
                ElementsAre(utf8, std::string(150, 'd'), long_path));
    EXPECT_EQ(Find(*index, long_path)->record.content_digest(), Raw("abc"));
  }
}

TEST(ArchiveIndexTest, SparseFileHolesReadAsZeros) {
  std::string want(1 << 20, '\0');
  want.replace(0, 4096, std::string(4096, 'a'));
  want.replace(512 << 10, 4096, std::string(4096, 'b'));
  std::string out;
  struct archive* a = archive_write_new();
  ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_add_filter_none(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr),
            ARCHIVE_OK);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, "sparse");
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, want.size());
  archive_entry_sparse_add_entry(e, 0, 4096);
  archive_entry_sparse_add_entry(e, 512 << 10, 4096);  // Ends in a hole.
  ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
  ASSERT_EQ(archive_write_data(a, want.data(), want.size()),
            static_cast<la_ssize_t>(want.size()));
  archive_entry_free(e);
  ASSERT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  ASSERT_LT(out.size(), want.size() / 4);  // Really sparse.

  CollectingSink sink;
  absl::StatusOr<ArchiveIndex> index = Index(out, 1 << 16, &sink);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Find(*index, "sparse")->record.size(), want.size());
  EXPECT_EQ(Find(*index, "sparse")->record.content_digest(), Raw(want));
  EXPECT_TRUE(sink.files_["sparse"] == want);
}

TEST(ArchiveIndexTest, EmptyTarIsValid) {
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    absl::StatusOr<ArchiveIndex> index = Index(MakeTar({}, f));
    ASSERT_TRUE(index.ok()) << index.status();
    EXPECT_TRUE(index->entries.empty());
    EXPECT_EQ(index->regular_files, 0u);
  }
}

TEST(ArchiveIndexTest, NullSinkValidatesOnly) {
  absl::StatusOr<ArchiveIndex> index =
      Index(MakeTar(SampleTree(), Filter::kZstd), 1 << 16, nullptr);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->regular_files, 3u);
}

TEST(ArchiveIndexTest, RootEntryIsNotAnEntry) {
  absl::StatusOr<ArchiveIndex> index =
      Index(MakeTar({Dir("./"), File("./a", "x"), Dir("./d/")}));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_THAT(Paths(*index), ElementsAre("a", "d"));
  EXPECT_EQ(index->entries[0].record.entry_id(), 1u);
}

TEST(ArchiveIndexTest, MetadataFromCairnJson) {
  absl::StatusOr<ArchiveIndex> index = Index(MakeTar({
      File("package/package.json", R"({"name":"npm-name","version":"9"})"),
      File("cairn.json", R"({"name":"tool","version":"1.2.3",
                             "licence":"MIT","entrypoint":"bin/tool",
                             "extra":[1,2]})"),
  }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.name(), "tool");
  EXPECT_EQ(index->metadata.version(), "1.2.3");
  EXPECT_EQ(index->metadata.licence(), "MIT");
  EXPECT_EQ(index->metadata.entrypoint(), "bin/tool");
}

// Refs copy metadata into every slot of every ref response: each field is
// bounded (ResourceExhausted naming it), in cairn.json and package.json.
TEST(ArchiveIndexTest, MetadataFieldsAreBounded) {
  ArchiveLimits limits;
  limits.max_metadata_field_bytes = 16;
  const std::string fits(16, 'L'), over(17, 'L');
  absl::StatusOr<ArchiveIndex> index = Index(
      MakeTar(
          {File("cairn.json", absl::StrCat(R"({"licence":")", fits, R"("})"))}),
      1 << 16, nullptr, limits);
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.licence(), fits);
  index = Index(MakeTar({File("cairn.json",
                              absl::StrCat(R"({"licence":")", over, R"("})"))}),
                1 << 16, nullptr, limits);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kResourceExhausted);
  EXPECT_TRUE(IsArchiveRejection(index.status()));
  EXPECT_THAT(index.status().message(),
              HasSubstr("cairn.json: licence is 17 bytes, over "
                        "max_metadata_field_bytes (16)"));
  index = Index(MakeTar({File("package/package.json",
                              absl::StrCat(R"({"bin":")", over, R"("})"))}),
                1 << 16, nullptr, limits);
  ASSERT_FALSE(index.ok());
  EXPECT_THAT(index.status().message(),
              HasSubstr("package/package.json: entrypoint is 25 bytes"));
  // The default allows 4 KiB.
  EXPECT_TRUE(
      Index(MakeTar({File("cairn.json",
                          absl::StrCat(R"({"name":")", std::string(4096, 'n'),
                                       R"("})"))}))
          .ok());
}

TEST(ArchiveIndexTest, MetadataLicenseSpellingAndNonStrings) {
  absl::StatusOr<ArchiveIndex> index = Index(MakeTar({
      File("cairn.json", R"({"name":"t","version":3,"license":"Apache-2.0",
                             "entrypoint":{"x":1}})"),
  }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.name(), "t");
  EXPECT_EQ(index->metadata.version(), "");
  EXPECT_EQ(index->metadata.licence(), "Apache-2.0");
  EXPECT_EQ(index->metadata.entrypoint(), "");
}

TEST(ArchiveIndexTest, MetadataFromPackageJson) {
  // "bin" as an object: its first value in document order.
  absl::StatusOr<ArchiveIndex> index = Index(MakeTar({
      File("package/package.json",
           R"({"name":"left-pad","version":"1.3.0","license":"WTFPL",
               "bin":{"zz":"./cli.js","aa":"other.js"}})"),
      File("package/cli.js", "console.log(1)"),
      File("package/nested/cairn.json", R"({"name":"not-root"})"),
  }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.name(), "left-pad");
  EXPECT_EQ(index->metadata.version(), "1.3.0");
  EXPECT_EQ(index->metadata.licence(), "WTFPL");
  EXPECT_EQ(index->metadata.entrypoint(), "package/cli.js");

  index = Index(MakeTar({
      File("package/package.json", R"({"name":"x","bin":"bin/x"})"),
  }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.entrypoint(), "package/bin/x");

  index = Index(MakeTar({File("a", "b")}));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.name(), "");
}

TEST(ArchiveIndexTest, MalformedMetadataRejected) {
  ExpectRejected({File("cairn.json", "{\"name\": ")},
                 absl::StatusCode::kInvalidArgument, "\"cairn.json\"");
  ExpectRejected({File("cairn.json", "[1, 2]")},
                 absl::StatusCode::kInvalidArgument, "\"cairn.json\"");
  ExpectRejected({File("package/package.json", "nope")},
                 absl::StatusCode::kInvalidArgument,
                 "\"package/package.json\"");
  std::string huge = "{\"name\": \"" + std::string(1 << 20, 'a') + "\"}";
  ExpectRejected({File("cairn.json", huge)}, absl::StatusCode::kInvalidArgument,
                 "larger than");
  // A package.json that is not used (cairn.json wins) is not parsed.
  absl::StatusOr<ArchiveIndex> index =
      Index(MakeTar({File("package/package.json", "nope"),
                     File("cairn.json", R"({"name":"ok"})")}));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(index->metadata.name(), "ok");
}

TEST(ArchiveIndexTest, SetIdBitsStripped) {
  absl::StatusOr<ArchiveIndex> index = Index(MakeTar({
      File("suid", "x", 04755),
      Dir("sgid", 02775),
      File("sticky", "y", 01777),
  }));
  ASSERT_TRUE(index.ok()) << index.status();
  EXPECT_EQ(Find(*index, "suid")->record.mode(), 0755u);
  EXPECT_EQ(Find(*index, "sgid")->record.mode(), 0775u);
  EXPECT_EQ(Find(*index, "sticky")->record.mode(), 01777u);
  EXPECT_THAT(index->stripped_setid_paths, ElementsAre("suid", "sgid"));
  EXPECT_EQ(index->stripped_setid_count, 2u);
}

// The list of stripped paths stops at kMaxListedSetidPaths (it goes into
// the artefact's record and every push's summary); the count does not.
TEST(ArchiveIndexTest, StrippedSetIdListIsBounded) {
  std::vector<TestEntry> entries;
  for (size_t i = 0; i < kMaxListedSetidPaths + 50; ++i) {
    entries.push_back(File(absl::StrCat("bin/s", i), "x", 04755));
  }
  absl::StatusOr<ArchiveIndex> index = Index(MakeTar(entries));
  ASSERT_TRUE(index.ok()) << index.status();
  ASSERT_EQ(index->stripped_setid_paths.size(), kMaxListedSetidPaths);
  EXPECT_EQ(index->stripped_setid_paths.front(), "bin/s0");
  EXPECT_EQ(index->stripped_setid_count, kMaxListedSetidPaths + 50);
}

TEST(ArchiveIndexTest, RejectsUnsafePaths) {
  ExpectRejected({File("/etc/passwd", "x")}, absl::StatusCode::kInvalidArgument,
                 "entry \"/etc/passwd\" is an absolute path");
  ExpectRejected({File("../etc/passwd", "x")},
                 absl::StatusCode::kInvalidArgument,
                 "unsafe archive: entry \"../etc/passwd\" has a \"..\" "
                 "component");
  ExpectRejected({File("a/b/../../../c", "x")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"a/b/../../../c\" has a \"..\" component");
  ExpectRejected({File("a//b", "x")}, absl::StatusCode::kInvalidArgument,
                 "entry \"a//b\" has an empty path component");
  ExpectRejected({File("a/./b", "x")}, absl::StatusCode::kInvalidArgument,
                 "entry \"a/./b\" has a \".\" component");
}

TEST(ArchiveIndexTest, RejectsDuplicates) {
  ExpectRejected({File("a", "1"), File("./a", "2")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"./a\" appears more than once");
  ExpectRejected({Dir("d"), Dir("d/")}, absl::StatusCode::kInvalidArgument,
                 "entry \"d/\" appears more than once");
  // A file where a directory was implied by an earlier child.
  ExpectRejected({File("d/x", "1"), File("d", "2")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"d\" appears more than once");
}

TEST(ArchiveIndexTest, RejectsBadHardlinks) {
  ExpectRejected({Hardlink("link", "missing")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"link\" is a hardlink to \"missing\", which is not "
                 "an earlier entry");
  ExpectRejected({Hardlink("link", "later"), File("later", "x")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"link\" is a hardlink to \"later\"");
  ExpectRejected({Dir("d"), Hardlink("link", "d")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"link\" is a hardlink to \"d\", which is not a "
                 "regular file");
  ExpectRejected({File("a", "x"), Hardlink("l1", "a"), Hardlink("l2", "l1")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"l2\" is a hardlink to \"l1\", which is not a "
                 "regular file");
  ExpectRejected({File("a", "x"), Hardlink("link", "../a")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"link\" is a hardlink to unsafe path \"../a\"");
}

TEST(ArchiveIndexTest, RejectsSpecialFiles) {
  ExpectRejected({Special("dev/null", AE_IFCHR)},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"dev/null\" is a character device");
  ExpectRejected({Special("dev/sda", AE_IFBLK)},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"dev/sda\" is a block device");
  ExpectRejected({Special("pipe", AE_IFIFO)},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"pipe\" is a FIFO");
}

TEST(ArchiveIndexTest, RejectsPathUnderNonDirectory) {
  ExpectRejected({File("f", "x"), File("f/x", "y")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"f/x\" is under non-directory entry \"f\"");
  ExpectRejected({Symlink("l", "/etc"), File("l/passwd", "y")},
                 absl::StatusCode::kInvalidArgument,
                 "entry \"l/passwd\" is under non-directory entry \"l\"");
}

TEST(ArchiveIndexTest, EnforcesLimits) {
  ArchiveLimits limits;
  limits.max_entries = 3;
  // a, a/b (synthesised), a/b/c, then d is the 4th.
  ExpectRejected({File("a/b/c", "1"), File("d", "2")},
                 absl::StatusCode::kResourceExhausted,
                 "max_entries (3) at entry \"d\"", limits);
  EXPECT_TRUE(
      Index(MakeTar({File("a/b/c", "1")}), 1 << 16, nullptr, limits).ok());

  limits = ArchiveLimits();
  limits.max_path_bytes = 10;
  ExpectRejected({File("0123456789", "ok"), File("dir/0123456789", "x")},
                 absl::StatusCode::kResourceExhausted,
                 "max_path_bytes (10): entry \"dir/0123456789\"", limits);

  limits = ArchiveLimits();
  limits.max_total_path_bytes = 20;
  // "a" 1 + "a/l" 3 + its target "longtarget" 10 = 14; "a/b234" makes 20;
  // "a/c" is over.
  ExpectRejected(
      {Symlink("a/l", "longtarget"), File("a/b234", "x"), File("a/c", "y")},
      absl::StatusCode::kResourceExhausted,
      "max_total_path_bytes (20) of paths and link targets at "
      "entry \"a/c\"",
      limits);
  EXPECT_TRUE(
      Index(MakeTar({Symlink("a/l", "longtarget"), File("a/b234", "x")}),
            1 << 16, nullptr, limits)
          .ok());

  limits = ArchiveLimits();
  limits.max_unpacked_bytes = 100;
  ExpectRejected({File("a", std::string(60, 'a')),
                  File("b", std::string(40, 'b')), File("c", "c")},
                 absl::StatusCode::kResourceExhausted,
                 "max_unpacked_bytes (100) at entry \"c\"", limits);
}

TEST(ArchiveIndexTest, CorruptGzipRejected) {
  // Random content is stored, not compressed, so the flipped bytes land in
  // file data and only the CRC can tell.
  std::string gz =
      MakeTar({File("r.bin", RandomBytes(256 << 10, 4))}, Filter::kGzip);
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 4; ++i) gz[i] ^= 0x5a;
  absl::StatusOr<ArchiveIndex> index = Index(gz);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("corrupt gzip stream"));

  // Compressed data with flipped bytes: some error, never a crash.
  gz = MakeTar({File("t.txt", std::string(100000, 'q') + "tail")},
               Filter::kGzip);
  for (size_t i = gz.size() / 2; i < gz.size() / 2 + 4; ++i) gz[i] ^= 0xff;
  index = Index(gz);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);

  // An unsupported method in the gzip header.
  gz = MakeTar(SampleTree(), Filter::kGzip);
  gz[2] = 7;
  index = Index(gz);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("corrupt gzip stream"));
}

TEST(ArchiveIndexTest, TruncatedArchivesRejected) {
  std::vector<TestEntry> tree = SampleTree();
  tree.push_back(File("r.bin", RandomBytes(100000, 5)));

  std::string gz = MakeTar(tree, Filter::kGzip);
  absl::StatusOr<ArchiveIndex> index = Index(gz.substr(0, gz.size() / 2), 7);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("truncated gzip stream"));
  // Cut inside the 8-byte trailer: the data is all there, the CRC is not.
  index = Index(gz.substr(0, gz.size() - 3));
  ASSERT_FALSE(index.ok());
  EXPECT_THAT(index.status().message(), HasSubstr("truncated gzip stream"));

  std::string zst = MakeTar(tree, Filter::kZstd);
  index = Index(zst.substr(0, zst.size() / 2), 7);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("truncated zstd stream"));

  std::string tar = MakeTar(tree);
  index = Index(tar.substr(0, tar.size() / 2));
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("corrupt tar archive"));
  EXPECT_THAT(index.status().message(), HasSubstr("\"r.bin\""));
}

// One ustar entry written by hand (POSIX.1-1988 header: name, mode, uid,
// gid, size, mtime, checksum, typeflag, linkname, magic), its data padded
// to 512 bytes: for archives libarchive's writer would not produce.
std::string UstarEntry(const std::string& name, char typeflag,
                       const std::string& data, const std::string& link = "") {
  std::string h(512, '\0');
  auto put = [&h](size_t at, const std::string& v) {
    std::memcpy(&h[at], v.data(), v.size());
  };
  put(0, name.substr(0, 100));
  put(100, "0000644");
  put(108, "0000000");
  put(116, "0000000");
  char octal[16];
  std::snprintf(octal, sizeof(octal), "%011llo",
                static_cast<unsigned long long>(data.size()));
  put(124, octal);
  put(136, "00000000000");
  h[156] = typeflag;
  put(157, link.substr(0, 100));
  put(257, std::string("ustar", 6) + "00");  // Magic with its NUL, version.
  put(148, "        ");
  unsigned sum = 0;
  for (unsigned char c : h) sum += c;
  std::snprintf(octal, sizeof(octal), "%06o", sum);
  put(148, std::string(octal, 7));
  return h + data + std::string((512 - data.size() % 512) % 512, '\0');
}

// A pax extended header record: "<length> <key>=<value>\n", the length
// counting itself.
std::string PaxRecord(const std::string& key_value) {
  size_t len = key_value.size() + 3;
  while (std::to_string(len).size() + key_value.size() + 2 != len) {
    len = std::to_string(len).size() + key_value.size() + 2;
  }
  return std::to_string(len) + " " + key_value + "\n";
}

const std::string kEndOfArchive(1024, '\0');

// `plain` compressed with `f` (as it is for Filter::kNone).
std::string Filtered(const std::string& plain, Filter f) {
  return f == Filter::kNone ? plain : Compress(plain, f);
}

// A corrupt header (libarchive: ARCHIVE_RETRY) is a corrupt archive, not
// an entry without a name.
TEST(ArchiveIndexTest, BadHeaderChecksumIsCorrupt) {
  std::string tar =
      UstarEntry("a", '0', "hello") + UstarEntry("b", '0', "x") + kEndOfArchive;
  ASSERT_TRUE(Index(tar).ok());
  tar[1024 + 1] ^= 0x01;  // In "b"'s header.
  absl::StatusOr<ArchiveIndex> index = Index(tar);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(),
              HasSubstr("corrupt tar archive after entry \"a\""));
}

// A pax hardlink with data: libarchive's extraction writes that data into
// the target, so the index would name bytes the archive does not give.
TEST(ArchiveIndexTest, HardlinkCarryingDataRejected) {
  const std::string tar =
      UstarEntry("a", '0', "AAAA") +
      UstarEntry("PaxHeaders/b", 'x', PaxRecord("mtime=0")) +
      UstarEntry("b", '1', "EVIL-PAYLOAD", "a") + kEndOfArchive;
  absl::StatusOr<ArchiveIndex> index = Index(tar);
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(IsArchiveRejection(index.status()));
  EXPECT_THAT(index.status().message(),
              HasSubstr("\"b\" is a hardlink to \"a\" that carries 12 bytes"));
}

// A tar that ends at an entry boundary without its end-of-archive marker
// is the front of a cut upload: libarchive ends it cleanly, the index must
// not.
TEST(ArchiveIndexTest, TarWithoutItsEndMarkerIsTruncated) {
  const std::string entries =
      UstarEntry("a", '0', "hello") + UstarEntry("b", '0', std::string(512, 0));
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    auto as = [f](const std::string& plain) { return Filtered(plain, f); };
    for (size_t chunk : {size_t{7}, size_t{512}, size_t{1} << 16}) {
      SCOPED_TRACE(
          absl::StrCat("filter ", static_cast<int>(f), " chunk ", chunk));
      EXPECT_TRUE(Index(as(entries + kEndOfArchive), chunk).ok());
      // One zero block, as GNU tar and libarchive accept.
      EXPECT_TRUE(Index(as(entries + std::string(512, 0)), chunk).ok());
      // "b" ends in a zero block of data: not taken for the marker.
      absl::StatusOr<ArchiveIndex> index = Index(as(entries), chunk);
      ASSERT_FALSE(index.ok());
      EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(IsArchiveRejection(index.status()));
      EXPECT_THAT(index.status().message(),
                  HasSubstr("truncated tar archive: it ends after entry "
                            "\"b\" without the end-of-archive marker"));
      index = Index(as(UstarEntry("a", '0', "hello")), chunk);
      ASSERT_FALSE(index.ok());
      EXPECT_THAT(index.status().message(), HasSubstr("after entry \"a\""));
    }
  }
}

// After the end-of-archive marker only zero padding is accepted, and,
// compressed, only up to 4 MiB: not hidden entries, not a decompression
// bomb.
TEST(ArchiveIndexTest, OnlyZeroPaddingAfterTheEnd) {
  const std::string tar = UstarEntry("a", '0', "hello") + kEndOfArchive;
  ArchiveLimits limits;
  limits.max_unpacked_bytes = 1 << 20;
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    auto as = [f](const std::string& plain) { return Filtered(plain, f); };
    // Small chunks: libarchive reads ahead across them.
    for (size_t chunk : {size_t{7}, size_t{512}, size_t{1} << 16}) {
      SCOPED_TRACE(
          absl::StrCat("filter ", static_cast<int>(f), " chunk ", chunk));
      EXPECT_TRUE(Index(as(tar + std::string(20480, '\0')), chunk).ok());
      absl::StatusOr<ArchiveIndex> index = Index(
          as(tar + UstarEntry("hidden", '0', "evil") + kEndOfArchive), chunk);
      ASSERT_FALSE(index.ok());
      EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
      EXPECT_TRUE(IsArchiveRejection(index.status()));
      EXPECT_THAT(index.status().message(),
                  HasSubstr("data after its end-of-archive marker"));
      // One stray byte right after the marker.
      index = Index(as(tar + "x"), chunk);
      ASSERT_FALSE(index.ok());
      EXPECT_THAT(index.status().message(),
                  HasSubstr("data after its end-of-archive marker"));
    }
    // Compressed, over 4 MiB of zeros inflate from a few bytes; plain, they
    // were uploaded (GNU tar -b 16384 pads to 8 MiB records).
    absl::StatusOr<ArchiveIndex> index =
        Index(as(tar + std::string(5 << 20, '\0')), 1 << 16, nullptr, limits);
    if (f == Filter::kNone) {
      EXPECT_TRUE(index.ok()) << index.status();
    } else {
      ASSERT_FALSE(index.ok());
      EXPECT_THAT(index.status().message(), HasSubstr("bytes of zeros after"));
    }
  }
}

TEST(ArchiveIndexTest, GarbageRejected) {
  for (const std::string& data :
       {std::string("this is definitely not a tar archive, just text\n"),
        RandomBytes(10000, 6), std::string(), std::string("\x1f")}) {
    absl::StatusOr<ArchiveIndex> index = Index(data);
    ASSERT_FALSE(index.ok()) << data.size();
    EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(index.status().message(), HasSubstr("not a tar archive"))
        << data.size();
  }
  // Compressed garbage.
  absl::StatusOr<ArchiveIndex> index =
      Index(Compress(RandomBytes(5000, 7), Filter::kZstd));
  ASSERT_FALSE(index.ok());
  EXPECT_EQ(index.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(index.status().message(), HasSubstr("not a tar archive"));
}

// The sink's and the source's errors come back as they are, and are not
// the archive's rejection, even with a rejection's code (a full disk is
// ResourceExhausted, as an archive over its limits is).
TEST(ArchiveIndexTest, SinkErrorPropagates) {
  for (const absl::Status& error :
       {absl::DataLossError("disk on fire"),
        absl::ResourceExhaustedError("No space left on device")}) {
    CollectingSink sink;
    sink.FailOn("share/doc/README", error);
    absl::StatusOr<ArchiveIndex> index =
        Index(MakeTar(SampleTree(), Filter::kGzip), 1 << 16, &sink);
    ASSERT_FALSE(index.ok());
    EXPECT_EQ(index.status(), error);
    EXPECT_FALSE(IsArchiveRejection(index.status()));
  }
}

TEST(ArchiveIndexTest, SourceErrorPropagates) {
  for (Filter f : {Filter::kNone, Filter::kGzip, Filter::kZstd}) {
    std::string data = MakeTar({File("r.bin", RandomBytes(200000, 8))}, f);
    for (size_t at : {size_t{0}, size_t{2}, data.size() / 2}) {
      StringSource source(data, 100);
      source.FailAt(at, absl::ResourceExhaustedError("out of memory"));
      absl::StatusOr<ArchiveIndex> index =
          IndexArchive(source, ArchiveLimits(), nullptr);
      ASSERT_FALSE(index.ok());
      EXPECT_EQ(index.status(), absl::ResourceExhaustedError("out of memory"))
          << static_cast<int>(f) << " at " << at;
      EXPECT_FALSE(IsArchiveRejection(index.status()));
    }
  }
}

TEST(ArchiveIndexTest, ReadsWholeInput) {
  std::string data = MakeTar(SampleTree(), Filter::kGzip);
  StringSource source(data, 100);
  ASSERT_TRUE(IndexArchive(source, ArchiveLimits(), nullptr).ok());
  EXPECT_EQ(source.consumed(), data.size());
}

}  // namespace
}  // namespace cairn
