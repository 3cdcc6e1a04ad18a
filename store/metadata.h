// Copyright 2026 The Cairn Authors.
//
// Cairn's metadata database: RocksDB under <root>/meta with one column
// family per record type. Key formats (docs/storage.md):
//
//   blobs      <32 raw digest>                      -> BlobRecord
//   artefacts  <32 raw digest>                      -> ArtefactRecord
//   files      <32 raw artefact digest><dir>\0<name> -> FileRecord
//   refs       <ref>                                -> RefRecord
//   ref_history <ref>\0<8-byte big-endian generation> -> RefHistoryRecord
//
// <ref> is a ref's text "<package>@<name>" (store/ref_name.h); it never
// contains NUL, so one ref's history is the contiguous key range
// [<ref>\0, <ref>\x01), ordered by generation.
//
// In `files`, <dir> is the entry's parent directory path ("" at the root,
// "bin", "usr/lib", ...; no leading or trailing "/"), so a directory's
// entries are one contiguous, name-sorted key range and lookup of
// (dir, name) is one point read. Values are serialized protobufs from
// proto/store_records.proto.
//
// Invariant kept by the store: a BlobRecord exists only once the blob's
// bytes are durable on disk.

#ifndef CAIRN_STORE_METADATA_H_
#define CAIRN_STORE_METADATA_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/store_records.pb.h"
#include "store/digest.h"

namespace cairn {

// Splits "a/b/c" into dir "a/b" and name "c"; "c" into "" and "c".
void SplitPath(absl::string_view path, absl::string_view* dir,
               absl::string_view* name);

// The `files` key of (artefact, path).
std::string FileKey(const Digest& artefact, absl::string_view path);

// The `ref_history` key of (ref, generation): the ref's bytes, a NUL, then
// the generation as 8 big-endian bytes (so keys sort by generation).
std::string RefHistoryKey(absl::string_view ref, uint64_t generation);

// A set of writes applied atomically by MetadataDb::Commit. Not thread-safe.
class MetadataBatch {
 public:
  MetadataBatch();
  ~MetadataBatch();
  MetadataBatch(MetadataBatch&&) noexcept;

  void PutBlob(const Digest& digest, const store::BlobRecord& record);
  // Removes a blob's record (the blob is then missing to clients).
  void DeleteBlob(const Digest& digest);
  void PutArtefact(const Digest& digest, const store::ArtefactRecord& record);
  void DeleteArtefact(const Digest& digest);
  // `path` is the entry's full relative path ("bin/tool").
  void PutFile(const Digest& artefact, absl::string_view path,
               const store::FileRecord& record);
  // Deletes every `files` entry of the artefact.
  void DeleteFiles(const Digest& artefact);

  // Refs. `ref` is a ref's text "<package>@<name>", already validated by the
  // caller (RefName); it must not be empty or contain NUL.
  void PutRef(absl::string_view ref, const store::RefRecord& record);
  // Removes a ref's current record; its history stays.
  void DeleteRef(absl::string_view ref);
  // Appends one history record under (ref, record.generation()).
  void PutRefHistory(absl::string_view ref,
                     const store::RefHistoryRecord& record);

  size_t count() const;

 private:
  friend class MetadataDb;
  struct Rep;
  std::unique_ptr<Rep> rep_;
};

// Thread-safe.
class MetadataDb {
 public:
  // Opens (creating if missing) the database at `path`. Errors: Internal
  // with RocksDB's message (e.g. the lock held by another cairnd).
  static absl::StatusOr<std::unique_ptr<MetadataDb>> Open(
      const std::string& path);
  virtual ~MetadataDb() = default;

  // Applies the batch atomically. With sync = true the write-ahead log is
  // fsynced before returning.
  virtual absl::Status Commit(MetadataBatch batch, bool sync) = 0;

  // Errors: NotFound naming the digest; DataLoss if the record is corrupt.
  virtual absl::StatusOr<store::BlobRecord> GetBlob(
      const Digest& digest) const = 0;
  virtual absl::StatusOr<bool> HasBlob(const Digest& digest) const = 0;
  virtual absl::StatusOr<store::ArtefactRecord> GetArtefact(
      const Digest& digest) const = 0;
  // The entry at `path` ("" is not an entry). Errors: NotFound.
  virtual absl::StatusOr<store::FileRecord> GetFile(
      const Digest& artefact, absl::string_view path) const = 0;

  // Calls fn(name, record) for each entry directly inside `dir` of the
  // artefact, in bytewise name order, starting after `start_after` (""
  // = from the first). Stops early when fn returns false.
  virtual absl::Status ListDir(
      const Digest& artefact, absl::string_view dir,
      absl::string_view start_after,
      const std::function<bool(absl::string_view name,
                               const store::FileRecord&)>& fn) const = 0;

  // Calls fn(path, record) for every entry of the artefact, grouped by
  // directory (key order), starting after the entry at path `start_after`
  // ("" = from the first; the listing resumes there even if that entry is
  // gone). Stops early when fn returns false. The RocksDB iterator lives
  // for this call only: callers that pause between pages (a slow client)
  // list a page per call and pin nothing meanwhile.
  virtual absl::Status ListAllFiles(
      const Digest& artefact, absl::string_view start_after,
      const std::function<bool(absl::string_view path,
                               const store::FileRecord&)>& fn) const = 0;

  // Calls fn(digest, record) for every artefact. Stops when fn is false.
  virtual absl::Status ListArtefacts(
      const std::function<bool(const Digest&, const store::ArtefactRecord&)>&
          fn) const = 0;

  // --- Refs (store/refs.h). `ref` is "<package>@<name>". ---

  // One point read (bloom-filtered). Errors: NotFound naming the ref;
  // DataLoss if the record is corrupt.
  virtual absl::StatusOr<store::RefRecord> GetRef(
      absl::string_view ref) const = 0;

  // Calls fn(ref, record) for each ref whose text starts with `prefix` (""
  // = every ref), in bytewise order of the ref text, starting after
  // `start_after` ("" = from the first). Stops early when fn returns false.
  virtual absl::Status ListRefs(
      absl::string_view prefix, absl::string_view start_after,
      const std::function<bool(absl::string_view ref, const store::RefRecord&)>&
          fn) const = 0;

  // Calls fn(record) for each history record of `ref` with generation >
  // after_generation, oldest first. Stops early when fn returns false.
  // History outlives the ref's record (a deleted branch keeps it). Errors:
  // InvalidArgument if ref is empty or holds NUL; DataLoss on a malformed
  // key or record.
  virtual absl::Status ListRefHistory(
      absl::string_view ref, uint64_t after_generation,
      const std::function<bool(const store::RefHistoryRecord&)>& fn) const = 0;

  // The generation of the ref's newest history record, 0 if it has none.
  // One seek. Errors: as ListRefHistory.
  virtual absl::StatusOr<uint64_t> LastRefHistoryGeneration(
      absl::string_view ref) const = 0;
};

}  // namespace cairn

#endif  // CAIRN_STORE_METADATA_H_
