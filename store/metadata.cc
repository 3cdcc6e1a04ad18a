// Copyright 2026 The Cairn Authors.
//
// RocksDB tuning, kept deliberately small (docs/storage.md):
//   - One 64 MiB LRU block cache shared by every column family; index and
//     filter blocks live in it too (L0's pinned), so memory stays bounded
//     however large the database grows.
//   - Bloom filters (10 bits/key, ~1% false positives) on every column
//     family: `blobs` and `artefacts` are point lookups (FindMissing, Stat);
//     `files` gets point lookups (GetFile) and prefix scans (ListDir), so it
//     also has a fixed 32-byte prefix extractor (the artefact digest), whose
//     prefix bloom lets a directory listing skip SST files that hold nothing
//     of that artefact. OptimizeForPointLookup would drop the ordered index
//     that `files` scans need, so it is not used.
//   - `refs` is a point lookup (Resolve) with a whole-key bloom plus
//     ordered scans (List); `ref_history` is only ever scanned per ref (its
//     keys are variable-length, so no fixed prefix extractor applies).
//   - max_background_jobs = 2 (the daemon shares a small machine with FUSE
//     and uploads); dynamic level sizing; default compression.

#include "store/metadata.h"

#include <rocksdb/cache.h>
#include <rocksdb/db.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/options.h>
#include <rocksdb/slice_transform.h>
#include <rocksdb/table.h>
#include <rocksdb/write_batch.h>

#include <climits>
#include <optional>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"

namespace cairn {
namespace {

constexpr char kBlobsCf[] = "blobs";
constexpr char kArtefactsCf[] = "artefacts";
constexpr char kFilesCf[] = "files";
constexpr char kRefsCf[] = "refs";
constexpr char kRefHistoryCf[] = "ref_history";
constexpr size_t kBlockCacheBytes = 64 << 20;
// 16 shards of 4 MiB: fewer, larger shards than RocksDB's default for this
// size (64 of 1 MiB), so large blocks are not evicted on release.
constexpr int kBlockCacheShardBits = 4;
constexpr int kBloomBitsPerKey = 10;

// Maps a RocksDB status to the most specific absl code; the message is
// "<context>: <RocksDB's text>".
absl::Status FromRocks(const rocksdb::Status& s, absl::string_view context) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = absl::StrCat(context, ": ", s.ToString());
  if (s.IsNotFound()) return absl::NotFoundError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  if (s.IsNoSpace() || s.IsMemoryLimit()) {
    return absl::ResourceExhaustedError(msg);
  }
  if (s.IsInvalidArgument()) return absl::InvalidArgumentError(msg);
  if (s.IsNotSupported()) return absl::UnimplementedError(msg);
  if (s.IsBusy() || s.IsTryAgain() || s.IsTimedOut() ||
      s.IsShutdownInProgress()) {
    return absl::UnavailableError(msg);
  }
  if (s.IsAborted()) return absl::AbortedError(msg);
  // IOError (including the LOCK held by another process) and the rest.
  return absl::InternalError(msg);
}

absl::string_view ToView(const rocksdb::Slice& s) {
  return absl::string_view(s.data(), s.size());
}

// The smallest string greater than every string starting with `prefix`, or
// nullopt if there is none (prefix is empty or all 0xff).
std::optional<std::string> PrefixSuccessor(absl::string_view prefix) {
  std::string out(prefix);
  while (!out.empty() && static_cast<unsigned char>(out.back()) == 0xff) {
    out.pop_back();
  }
  if (out.empty()) return std::nullopt;
  out.back() = static_cast<char>(static_cast<unsigned char>(out.back()) + 1);
  return out;
}

// Parses a stored value. `what` (a callable returning the record's name for
// messages) is only called on failure, keeping the hot path allocation-free.
template <typename Proto, typename WhatFn>
absl::Status ParseRecord(absl::string_view value, const WhatFn& what,
                         Proto* record) {
  if (value.size() > static_cast<size_t>(INT_MAX) ||
      !record->ParseFromArray(value.data(), static_cast<int>(value.size()))) {
    return absl::DataLossError(absl::StrCat("corrupt ", record->GetTypeName(),
                                            " for ", what(), " (", value.size(),
                                            " bytes)"));
  }
  return absl::OkStatus();
}

// "file \"a/b\" of artefact sha256:..." for messages.
std::string FileName(const Digest& artefact, absl::string_view path) {
  return absl::StrCat("file \"", absl::CHexEscape(path), "\" of artefact ",
                      artefact.ToString());
}

// Splits a `files` key after its 32-byte digest into dir and name.
bool SplitFileKey(absl::string_view key, absl::string_view* dir,
                  absl::string_view* name) {
  if (key.size() < Digest::kSize) return false;
  absl::string_view rest = key.substr(Digest::kSize);
  size_t nul = rest.find('\0');
  if (nul == absl::string_view::npos) return false;
  *dir = rest.substr(0, nul);
  *name = rest.substr(nul + 1);
  return true;
}

// "ref \"a@b\"" for messages.
std::string RefWhat(absl::string_view ref) {
  return absl::StrCat("ref \"", absl::CHexEscape(ref), "\"");
}

absl::Status CheckRefKey(absl::string_view ref) {
  if (ref.empty() || ref.find('\0') != absl::string_view::npos) {
    return absl::InvalidArgumentError(
        absl::StrCat("invalid ref key \"", absl::CHexEscape(ref),
                     "\": empty or contains NUL"));
  }
  return absl::OkStatus();
}

void AppendBigEndian64(uint64_t v, std::string* out) {
  for (int shift = 56; shift >= 0; shift -= 8) {
    out->push_back(static_cast<char>((v >> shift) & 0xff));
  }
}

uint64_t ReadBigEndian64(absl::string_view in) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<unsigned char>(in[i]);
  return v;
}

rocksdb::ColumnFamilyOptions CfOptions(
    const std::shared_ptr<rocksdb::Cache>& cache, size_t prefix_len) {
  rocksdb::BlockBasedTableOptions table;
  table.block_cache = cache;
  table.cache_index_and_filter_blocks = true;
  table.cache_index_and_filter_blocks_with_high_priority = true;
  table.pin_l0_filter_and_index_blocks_in_cache = true;
  // Partitioned index and filters: a large SST's index and filter are split
  // into ~4 KiB blocks behind a small pinned top level, so a point lookup
  // touches a few small cached blocks. Whole index/filter blocks of a
  // million-key file (over 1 MiB each) do not fit a cache shard, and were
  // re-read and re-checksummed on every lookup (~1 ms per Resolve).
  table.index_type = rocksdb::BlockBasedTableOptions::kTwoLevelIndexSearch;
  table.partition_filters = true;
  table.pin_top_level_index_and_filter = true;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(kBloomBitsPerKey));
  rocksdb::ColumnFamilyOptions cf;
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.level_compaction_dynamic_level_bytes = true;
  if (prefix_len > 0) {
    cf.prefix_extractor.reset(rocksdb::NewFixedPrefixTransform(prefix_len));
  }
  return cf;
}

}  // namespace

void SplitPath(absl::string_view path, absl::string_view* dir,
               absl::string_view* name) {
  size_t slash = path.rfind('/');
  if (slash == absl::string_view::npos) {
    *dir = absl::string_view();
    *name = path;
  } else {
    *dir = path.substr(0, slash);
    *name = path.substr(slash + 1);
  }
}

std::string FileKey(const Digest& artefact, absl::string_view path) {
  absl::string_view dir, name;
  SplitPath(path, &dir, &name);
  std::string key;
  key.reserve(Digest::kSize + dir.size() + 1 + name.size());
  key.append(artefact.raw().data(), artefact.raw().size());
  key.append(dir.data(), dir.size());
  key.push_back('\0');
  key.append(name.data(), name.size());
  return key;
}

std::string RefHistoryKey(absl::string_view ref, uint64_t generation) {
  std::string key;
  key.reserve(ref.size() + 1 + 8);
  key.append(ref.data(), ref.size());
  key.push_back('\0');
  AppendBigEndian64(generation, &key);
  return key;
}

namespace metadata_internal {

// A batch's operations, recorded by MetadataBatch and turned into a
// rocksdb::WriteBatch by MetadataDb::Commit, which owns the column family
// handles.
struct BatchOps {
  enum class Cf { kBlobs, kArtefacts, kFiles, kRefs, kRefHistory };
  enum class Kind {
    kPut,          // key -> value
    kDelete,       // key
    kDeleteRange,  // [key, value)
    kDeleteFrom,   // every key >= key (the prefix has no successor)
  };
  struct Op {
    Cf cf;
    Kind kind;
    std::string key;
    std::string value;
  };
  std::vector<Op> ops;
};

}  // namespace metadata_internal

using metadata_internal::BatchOps;

struct MetadataBatch::Rep : BatchOps {};

MetadataBatch::MetadataBatch() : rep_(std::make_unique<Rep>()) {}
MetadataBatch::~MetadataBatch() = default;
MetadataBatch::MetadataBatch(MetadataBatch&&) noexcept = default;

void MetadataBatch::PutBlob(const Digest& digest,
                            const store::BlobRecord& record) {
  rep_->ops.push_back({BatchOps::Cf::kBlobs, BatchOps::Kind::kPut,
                       std::string(digest.raw()), record.SerializeAsString()});
}

void MetadataBatch::DeleteBlob(const Digest& digest) {
  rep_->ops.push_back({BatchOps::Cf::kBlobs, BatchOps::Kind::kDelete,
                       std::string(digest.raw()), ""});
}

void MetadataBatch::DeleteArtefact(const Digest& digest) {
  rep_->ops.push_back({BatchOps::Cf::kArtefacts, BatchOps::Kind::kDelete,
                       std::string(digest.raw()), ""});
}

void MetadataBatch::PutArtefact(const Digest& digest,
                                const store::ArtefactRecord& record) {
  rep_->ops.push_back({BatchOps::Cf::kArtefacts, BatchOps::Kind::kPut,
                       std::string(digest.raw()), record.SerializeAsString()});
}

void MetadataBatch::PutFile(const Digest& artefact, absl::string_view path,
                            const store::FileRecord& record) {
  rep_->ops.push_back({BatchOps::Cf::kFiles, BatchOps::Kind::kPut,
                       FileKey(artefact, path), record.SerializeAsString()});
}

void MetadataBatch::DeleteFiles(const Digest& artefact) {
  std::string begin(artefact.raw());
  std::optional<std::string> end = PrefixSuccessor(begin);
  if (end.has_value()) {
    rep_->ops.push_back({BatchOps::Cf::kFiles, BatchOps::Kind::kDeleteRange,
                         std::move(begin), std::move(*end)});
  } else {
    rep_->ops.push_back({BatchOps::Cf::kFiles, BatchOps::Kind::kDeleteFrom,
                         std::move(begin), ""});
  }
}

void MetadataBatch::PutRef(absl::string_view ref,
                           const store::RefRecord& record) {
  rep_->ops.push_back({BatchOps::Cf::kRefs, BatchOps::Kind::kPut,
                       std::string(ref), record.SerializeAsString()});
}

void MetadataBatch::DeleteRef(absl::string_view ref) {
  rep_->ops.push_back(
      {BatchOps::Cf::kRefs, BatchOps::Kind::kDelete, std::string(ref), ""});
}

void MetadataBatch::PutRefHistory(absl::string_view ref,
                                  const store::RefHistoryRecord& record) {
  rep_->ops.push_back({BatchOps::Cf::kRefHistory, BatchOps::Kind::kPut,
                       RefHistoryKey(ref, record.generation()),
                       record.SerializeAsString()});
}

size_t MetadataBatch::count() const { return rep_ ? rep_->ops.size() : 0; }

namespace {

// Returns a batch's operations (nullptr for a moved-from batch). Only
// MetadataDb, MetadataBatch's friend, can reach them, so MetadataDb::Open
// hands this accessor to the implementation.
using BatchOpsFn = const BatchOps* (*)(const MetadataBatch&);

class MetadataDbImpl : public MetadataDb {
 public:
  MetadataDbImpl(BatchOpsFn batch_ops, std::string path,
                 std::unique_ptr<rocksdb::DB> db,
                 std::vector<rocksdb::ColumnFamilyHandle*> handles,
                 rocksdb::ColumnFamilyHandle* blobs,
                 rocksdb::ColumnFamilyHandle* artefacts,
                 rocksdb::ColumnFamilyHandle* files,
                 rocksdb::ColumnFamilyHandle* refs,
                 rocksdb::ColumnFamilyHandle* ref_history)
      : batch_ops_(batch_ops),
        path_(std::move(path)),
        db_(std::move(db)),
        handles_(std::move(handles)),
        blobs_(blobs),
        artefacts_(artefacts),
        files_(files),
        refs_(refs),
        ref_history_(ref_history) {}

  ~MetadataDbImpl() override {
    for (rocksdb::ColumnFamilyHandle* h : handles_) {
      db_->DestroyColumnFamilyHandle(h);
    }
    db_->Close().PermitUncheckedError();
  }

  absl::Status Commit(MetadataBatch batch, bool sync) override {
    if (batch.count() == 0) return absl::OkStatus();
    const BatchOps& rep = *batch_ops_(batch);
    bool unbounded = false;
    for (const auto& op : rep.ops) {
      unbounded |= op.kind == BatchOps::Kind::kDeleteFrom;
    }
    // A kDeleteFrom range is bounded by the largest key present when the
    // batch is built; holding commit_mu_ exclusively keeps every other commit
    // from adding a larger key in between. Ordinary commits share the lock,
    // so RocksDB still groups their WAL writes.
    if (unbounded) {
      absl::WriterMutexLock lock(&commit_mu_);
      return Apply(rep, sync);
    }
    absl::ReaderMutexLock lock(&commit_mu_);
    return Apply(rep, sync);
  }

  absl::StatusOr<store::BlobRecord> GetBlob(
      const Digest& digest) const override {
    store::BlobRecord record;
    absl::Status s = GetRecord(
        blobs_, digest.raw(),
        [&] { return absl::StrCat("blob ", digest.ToString()); }, &record);
    if (!s.ok()) return s;
    return record;
  }

  absl::StatusOr<bool> HasBlob(const Digest& digest) const override {
    rocksdb::PinnableSlice value;
    rocksdb::Status s = db_->Get(
        rocksdb::ReadOptions(), blobs_,
        rocksdb::Slice(digest.raw().data(), digest.raw().size()), &value);
    if (s.IsNotFound()) return false;
    if (!s.ok()) {
      return FromRocks(s, absl::StrCat("cannot read blob ", digest.ToString()));
    }
    return true;
  }

  absl::StatusOr<store::ArtefactRecord> GetArtefact(
      const Digest& digest) const override {
    store::ArtefactRecord record;
    absl::Status s = GetRecord(
        artefacts_, digest.raw(),
        [&] { return absl::StrCat("artefact ", digest.ToString()); }, &record);
    if (!s.ok()) return s;
    return record;
  }

  absl::StatusOr<store::FileRecord> GetFile(
      const Digest& artefact, absl::string_view path) const override {
    if (path.empty()) {
      return absl::NotFoundError(absl::StrCat(
          "\"\" is not an entry of artefact ", artefact.ToString()));
    }
    store::FileRecord record;
    absl::Status s = GetRecord(
        files_, FileKey(artefact, path),
        [&] { return FileName(artefact, path); }, &record);
    if (!s.ok()) return s;
    return record;
  }

  absl::Status ListDir(
      const Digest& artefact, absl::string_view dir,
      absl::string_view start_after,
      const std::function<bool(absl::string_view name,
                               const store::FileRecord&)>& fn) const override {
    // Entries of `dir` are exactly the keys starting with <digest><dir>\0
    // (names hold no '/' or '\0'), so the range ends at <digest><dir>\1.
    std::string prefix(artefact.raw());
    prefix.append(dir.data(), dir.size());
    prefix.push_back('\0');
    std::string upper = prefix;
    upper.back() = '\x01';
    std::string start = prefix;
    if (!start_after.empty()) {
      // The smallest key after <prefix><start_after>.
      start.append(start_after.data(), start_after.size());
      start.push_back('\0');
    }
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper_slice;
    options.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, files_));
    for (it->Seek(start); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      if (key.substr(0, prefix.size()) != prefix) break;
      absl::string_view name = key.substr(prefix.size());
      store::FileRecord record;
      absl::Status s = ParseRecord(
          ToView(it->value()),
          [&] {
            return FileName(artefact, dir.empty()
                                          ? std::string(name)
                                          : absl::StrCat(dir, "/", name));
          },
          &record);
      if (!s.ok()) return s;
      if (!fn(name, record)) return absl::OkStatus();
    }
    return FromRocks(
        it->status(),
        absl::StrCat("cannot list directory \"", absl::CHexEscape(dir),
                     "\" of artefact ", artefact.ToString()));
  }

  absl::Status ListAllFiles(
      const Digest& artefact, absl::string_view start_after,
      const std::function<bool(absl::string_view path,
                               const store::FileRecord&)>& fn) const override {
    std::string prefix(artefact.raw());
    std::string start = prefix;
    if (!start_after.empty()) {
      // The smallest key after the entry's (no name holds a NUL).
      start = FileKey(artefact, start_after);
      start.push_back('\0');
    }
    std::optional<std::string> upper = PrefixSuccessor(prefix);
    rocksdb::Slice upper_slice;
    rocksdb::ReadOptions options;
    if (upper.has_value()) {
      upper_slice = rocksdb::Slice(*upper);
      options.iterate_upper_bound = &upper_slice;
    }
    options.prefix_same_as_start = true;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, files_));
    std::string path;
    for (it->Seek(start); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      if (key.substr(0, prefix.size()) != prefix) break;
      absl::string_view dir, name;
      if (!SplitFileKey(key, &dir, &name)) {
        return absl::DataLossError(
            absl::StrCat("malformed files key \"", absl::CHexEscape(key),
                         "\" of artefact ", artefact.ToString()));
      }
      path.assign(dir.data(), dir.size());
      if (!path.empty()) path.push_back('/');
      path.append(name.data(), name.size());
      store::FileRecord record;
      absl::Status s = ParseRecord(
          ToView(it->value()), [&] { return FileName(artefact, path); },
          &record);
      if (!s.ok()) return s;
      if (!fn(path, record)) return absl::OkStatus();
    }
    return FromRocks(
        it->status(),
        absl::StrCat("cannot list files of artefact ", artefact.ToString()));
  }

  absl::Status ListArtefacts(
      const std::function<bool(const Digest&, const store::ArtefactRecord&)>&
          fn) const override {
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(rocksdb::ReadOptions(), artefacts_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      absl::StatusOr<Digest> digest = Digest::FromRaw(key);
      if (!digest.ok()) {
        return absl::DataLossError(
            absl::StrCat("malformed artefacts key \"", absl::CHexEscape(key),
                         "\": ", digest.status().message()));
      }
      store::ArtefactRecord record;
      absl::Status s = ParseRecord(
          ToView(it->value()),
          [&] { return absl::StrCat("artefact ", digest->ToString()); },
          &record);
      if (!s.ok()) return s;
      if (!fn(*digest, record)) return absl::OkStatus();
    }
    return FromRocks(it->status(), "cannot list artefacts");
  }

  absl::StatusOr<store::RefRecord> GetRef(
      absl::string_view ref) const override {
    if (absl::Status s = CheckRefKey(ref); !s.ok()) return s;
    store::RefRecord record;
    absl::Status s = GetRecord(
        refs_, ref, [&] { return RefWhat(ref); }, &record);
    if (!s.ok()) return s;
    return record;
  }

  absl::Status ListRefs(
      absl::string_view prefix, absl::string_view start_after,
      const std::function<bool(absl::string_view ref, const store::RefRecord&)>&
          fn) const override {
    // The smallest key after start_after is start_after + "\0".
    std::string start(prefix);
    if (!start_after.empty()) {
      std::string after = absl::StrCat(start_after, absl::string_view("\0", 1));
      if (after > start) start = std::move(after);
    }
    std::optional<std::string> upper = PrefixSuccessor(prefix);
    rocksdb::Slice upper_slice;
    rocksdb::ReadOptions options;
    if (upper.has_value()) {
      upper_slice = rocksdb::Slice(*upper);
      options.iterate_upper_bound = &upper_slice;
    }
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, refs_));
    for (it->Seek(start); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      if (key.substr(0, prefix.size()) != prefix) break;
      store::RefRecord record;
      absl::Status s = ParseRecord(
          ToView(it->value()), [&] { return RefWhat(key); }, &record);
      if (!s.ok()) return s;
      if (!fn(key, record)) return absl::OkStatus();
    }
    return FromRocks(it->status(),
                     absl::StrCat("cannot list refs with prefix \"",
                                  absl::CHexEscape(prefix), "\""));
  }

  absl::Status ListRefHistory(
      absl::string_view ref, uint64_t after_generation,
      const std::function<bool(const store::RefHistoryRecord&)>& fn)
      const override {
    if (absl::Status s = CheckRefKey(ref); !s.ok()) return s;
    if (after_generation == UINT64_MAX) return absl::OkStatus();
    const std::string start = RefHistoryKey(ref, after_generation + 1);
    const std::string upper = absl::StrCat(ref, "\x01");
    rocksdb::Slice upper_slice(upper);
    rocksdb::ReadOptions options;
    options.iterate_upper_bound = &upper_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(options, ref_history_));
    for (it->Seek(start); it->Valid(); it->Next()) {
      absl::string_view key = ToView(it->key());
      absl::StatusOr<uint64_t> generation = HistoryKeyGeneration(ref, key);
      if (!generation.ok()) return generation.status();
      store::RefHistoryRecord record;
      auto what = [&] {
        return absl::StrCat("history of ", RefWhat(ref), " at generation ",
                            *generation);
      };
      absl::Status s = ParseRecord(ToView(it->value()), what, &record);
      if (!s.ok()) return s;
      if (record.generation() != *generation) {
        return absl::DataLossError(
            absl::StrCat(what(), " holds generation ", record.generation()));
      }
      if (!fn(record)) return absl::OkStatus();
    }
    return FromRocks(it->status(),
                     absl::StrCat("cannot list history of ", RefWhat(ref)));
  }

  absl::StatusOr<uint64_t> LastRefHistoryGeneration(
      absl::string_view ref) const override {
    if (absl::Status s = CheckRefKey(ref); !s.ok()) return s;
    const std::string lower = absl::StrCat(ref, absl::string_view("\0", 1));
    rocksdb::Slice lower_slice(lower);
    rocksdb::ReadOptions options;
    options.iterate_lower_bound = &lower_slice;
    std::unique_ptr<rocksdb::Iterator> it(
        db_->NewIterator(options, ref_history_));
    it->SeekForPrev(RefHistoryKey(ref, UINT64_MAX));
    if (it->Valid()) {
      absl::string_view key = ToView(it->key());
      if (key.substr(0, lower.size()) == lower) {
        return HistoryKeyGeneration(ref, key);
      }
    }
    absl::Status s =
        FromRocks(it->status(),
                  absl::StrCat("cannot read the history of ", RefWhat(ref)));
    if (!s.ok()) return s;
    return 0;
  }

 private:
  // Reads and parses one record; `what` names it in messages (see
  // ParseRecord).
  template <typename Proto, typename WhatFn>
  absl::Status GetRecord(rocksdb::ColumnFamilyHandle* cf, absl::string_view key,
                         const WhatFn& what, Proto* record) const {
    rocksdb::PinnableSlice value;
    rocksdb::Status s =
        db_->Get(rocksdb::ReadOptions(), cf,
                 rocksdb::Slice(key.data(), key.size()), &value);
    if (s.IsNotFound()) {
      return absl::NotFoundError(absl::StrCat(what(), " not found"));
    }
    if (!s.ok()) return FromRocks(s, absl::StrCat("cannot read ", what()));
    return ParseRecord(ToView(value), what, record);
  }

  // The generation in a `ref_history` key of `ref`. Errors: DataLoss if the
  // key is not <ref>\0<8 bytes>.
  static absl::StatusOr<uint64_t> HistoryKeyGeneration(absl::string_view ref,
                                                       absl::string_view key) {
    if (key.size() != ref.size() + 9 || key.substr(0, ref.size()) != ref ||
        key[ref.size()] != '\0') {
      return absl::DataLossError(absl::StrCat("malformed ref_history key \"",
                                              absl::CHexEscape(key), "\" for ",
                                              RefWhat(ref)));
    }
    return ReadBigEndian64(key.substr(ref.size() + 1));
  }

  rocksdb::ColumnFamilyHandle* Handle(BatchOps::Cf cf) const {
    switch (cf) {
      case BatchOps::Cf::kBlobs:
        return blobs_;
      case BatchOps::Cf::kArtefacts:
        return artefacts_;
      case BatchOps::Cf::kFiles:
        return files_;
      case BatchOps::Cf::kRefs:
        return refs_;
      case BatchOps::Cf::kRefHistory:
        return ref_history_;
    }
    return nullptr;
  }

  // The end of a kDeleteFrom range starting at `begin`: just past the largest
  // key >= begin in the database or among the batch's own puts, or nullopt if
  // there is none. Every such key starts with `begin`.
  absl::StatusOr<std::optional<std::string>> DeleteFromEnd(
      const BatchOps& rep, rocksdb::ColumnFamilyHandle* cf,
      const std::string& begin) const {
    std::optional<std::string> last;
    rocksdb::ReadOptions options;
    options.total_order_seek = true;  // Ignore the prefix extractor.
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(options, cf));
    it->SeekToLast();
    if (it->Valid() && ToView(it->key()) >= begin) {
      last = std::string(ToView(it->key()));
    }
    absl::Status s = FromRocks(it->status(), "cannot find the last files key");
    if (!s.ok()) return s;
    for (const auto& op : rep.ops) {
      if (Handle(op.cf) == cf && op.kind == BatchOps::Kind::kPut &&
          op.key >= begin && (!last.has_value() || op.key > *last)) {
        last = op.key;
      }
    }
    if (last.has_value()) last->push_back('\0');
    return last;
  }

  absl::Status Apply(const BatchOps& rep, bool sync)
      ABSL_SHARED_LOCKS_REQUIRED(commit_mu_) {
    rocksdb::WriteBatch wb;
    for (const auto& op : rep.ops) {
      rocksdb::ColumnFamilyHandle* cf = Handle(op.cf);
      rocksdb::Status s;
      switch (op.kind) {
        case BatchOps::Kind::kPut:
          s = wb.Put(cf, op.key, op.value);
          break;
        case BatchOps::Kind::kDelete:
          s = wb.Delete(cf, op.key);
          break;
        case BatchOps::Kind::kDeleteRange:
          s = wb.DeleteRange(cf, op.key, op.value);
          break;
        case BatchOps::Kind::kDeleteFrom: {
          absl::StatusOr<std::optional<std::string>> end =
              DeleteFromEnd(rep, cf, op.key);
          if (!end.ok()) return end.status();
          if (end->has_value()) s = wb.DeleteRange(cf, op.key, **end);
          break;
        }
      }
      if (!s.ok()) return FromRocks(s, "cannot build metadata batch");
    }
    rocksdb::WriteOptions options;
    options.sync = sync;
    return FromRocks(db_->Write(options, &wb),
                     absl::StrCat("cannot commit ", rep.ops.size(),
                                  " metadata updates to ", path_));
  }

  const BatchOpsFn batch_ops_;
  const std::string path_;
  const std::unique_ptr<rocksdb::DB> db_;
  // Every open handle, including column families this version does not use.
  const std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  rocksdb::ColumnFamilyHandle* const blobs_;
  rocksdb::ColumnFamilyHandle* const artefacts_;
  rocksdb::ColumnFamilyHandle* const files_;
  rocksdb::ColumnFamilyHandle* const refs_;
  rocksdb::ColumnFamilyHandle* const ref_history_;
  // Orders commits, guarding no data: shared by ordinary commits, exclusive
  // for a batch with a kDeleteFrom (see Commit).
  mutable absl::Mutex commit_mu_;
};

}  // namespace

absl::StatusOr<std::unique_ptr<MetadataDb>> MetadataDb::Open(
    const std::string& path) {
  std::shared_ptr<rocksdb::Cache> cache =
      rocksdb::NewLRUCache(kBlockCacheBytes, kBlockCacheShardBits);

  rocksdb::DBOptions db_options;
  db_options.create_if_missing = true;
  db_options.create_missing_column_families = true;
  db_options.max_background_jobs = 2;
  db_options.keep_log_file_num = 10;

  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, CfOptions(cache, 0)},
      {kBlobsCf, CfOptions(cache, 0)},
      {kArtefactsCf, CfOptions(cache, 0)},
      {kFilesCf, CfOptions(cache, Digest::kSize)},
      {kRefsCf, CfOptions(cache, 0)},
      {kRefHistoryCf, CfOptions(cache, 0)},
  };
  // RocksDB refuses to open a database without naming all its column
  // families; open any this version does not know with default options.
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_options, path, &existing).ok()) {
    for (const std::string& name : existing) {
      bool known = false;
      for (const auto& cf : cfs) known |= cf.name == name;
      if (!known) cfs.emplace_back(name, rocksdb::ColumnFamilyOptions());
    }
  }

  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw_db = nullptr;
  rocksdb::Status s =
      rocksdb::DB::Open(db_options, path, cfs, &handles, &raw_db);
  if (!s.ok()) {
    return FromRocks(s, absl::StrCat("cannot open metadata database ", path));
  }
  std::unique_ptr<rocksdb::DB> db(raw_db);
  // DB::Open returns the handles in the order of `cfs`.
  rocksdb::ColumnFamilyHandle* blobs = handles[1];
  rocksdb::ColumnFamilyHandle* artefacts = handles[2];
  rocksdb::ColumnFamilyHandle* files = handles[3];
  rocksdb::ColumnFamilyHandle* refs = handles[4];
  rocksdb::ColumnFamilyHandle* ref_history = handles[5];
  BatchOpsFn batch_ops = [](const MetadataBatch& batch) -> const BatchOps* {
    return batch.rep_.get();
  };
  return std::unique_ptr<MetadataDb>(
      new MetadataDbImpl(batch_ops, path, std::move(db), std::move(handles),
                         blobs, artefacts, files, refs, ref_history));
}

}  // namespace cairn
