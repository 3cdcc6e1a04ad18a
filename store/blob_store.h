// Copyright 2026 The Cairn Authors.
//
// Immutable blob files, sharded by digest under a data directory:
//
//   <root>/blobs/sha256/<first 2 hex>/<64 hex>   committed blobs
//   <root>/tmp/<random>.partial                    blobs being written
//
// A blob is written through a BlobWriter, which hashes while it writes to a
// temp file. Commit renames the temp file into place; with
// Durability::kDurable it first fsyncs the file and afterwards fsyncs the
// shard directory, so after Commit returns the blob survives a crash. A
// crash before Commit leaves only a temp file, which Open() removes.
//
// BlobStore does not decide whether a blob "exists" for clients: that is
// the metadata database's job (a record there is written only once the bytes
// are durable). BlobStore only moves bytes.

#ifndef CAIRN_STORE_BLOB_STORE_H_
#define CAIRN_STORE_BLOB_STORE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "store/digest.h"

namespace cairn {

enum class Durability {
  // fsync the file, rename, fsync the shard directory.
  kDurable,
  // rename only; the caller flushes later (BlobStore::SyncFilesystem).
  kDeferred,
  // As kDurable, but a file already in place is replaced even when it holds
  // the right bytes: for a blob whose write-back may have failed unreported
  // (after a failed syncfs, Linux reports the error once and marks the
  // pages clean, so a later fsync of the kept file proves nothing).
  kDurableReplace,
  // As kDeferred, but a file already in place is replaced (recovery: an
  // unrecorded file's bytes may be cached without being on disk).
  kDeferredReplace,
};

// Whether a BlobWriter hashes what it writes.
enum class WriterHashing {
  // The writer hashes; Commit checks `expected` against it.
  kHash,
  // The caller hashed the same bytes itself (e.g. the archive indexer) and
  // passes the digest to Commit as `expected`, which is then trusted. Saves
  // a second SHA-256 pass. Finish() returns FailedPrecondition.
  kCallerHashes,
};

// Streams one blob to a temp file while hashing it. Not thread-safe. The
// destructor removes the temp file unless Commit succeeded.
class BlobWriter {
 public:
  virtual ~BlobWriter() = default;

  // Appends bytes. Errors: Internal/ResourceExhausted on I/O failure
  // (message names the temp path and errno text).
  virtual absl::Status Append(absl::string_view data) = 0;

  // Bytes appended so far.
  virtual uint64_t size() const = 0;

  // Opens the temp file read-only (owned fd, close-on-exec). Bytes Append()
  // returned for are visible through it at once; the fd stays valid after
  // Commit renames the file. Errors: FailedPrecondition once committed or
  // failed; Internal naming the path.
  virtual absl::StatusOr<int> OpenReader() const = 0;

  // Stops accepting data and returns the digest of what was appended.
  // Idempotent. No file is moved yet.
  virtual absl::StatusOr<Digest> Finish() = 0;

  // Finish()es if needed, then, if `expected` is set and differs from the
  // actual digest, returns DataLoss naming both digests and removes the temp
  // file. Otherwise moves the temp file to its final path, with the given
  // durability, and returns the digest. A file already at the final path
  // that holds the right bytes (hashed to check) is kept and the temp file
  // removed (kDurable then fdatasyncs the kept file); one with other bytes
  // (what a crash can leave of an unsynced blob) is replaced.
  virtual absl::StatusOr<Digest> Commit(
      Durability durability, const std::optional<Digest>& expected = {}) = 0;
};

// Thread-safe.
class BlobStore {
 public:
  // Creates <root>/blobs/sha256 and <root>/tmp if needed, and removes every
  // file left in <root>/tmp (a crashed writer's). Errors: Internal or
  // PermissionDenied naming the path.
  static absl::StatusOr<std::unique_ptr<BlobStore>> Open(
      const std::string& root);

  virtual ~BlobStore() = default;

  // Path of a committed blob file, whether or not it exists.
  virtual std::string PathFor(const Digest& digest) const = 0;

  // Starts writing a new blob. With `write_back_bytes` > 0 the writer
  // starts the kernel's write-back of the temp file every time that many
  // bytes (or more) were appended since the last start
  // (sync_file_range(SYNC_FILE_RANGE_WRITE), which does not wait for the
  // disk), so a kDurable Commit's fdatasync only waits for the tail, as
  // RocksDB's bytes_per_sync does. Meant for large blobs committed
  // durably; errors of the early write-back surface at that fdatasync.
  virtual absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter(
      WriterHashing hashing = WriterHashing::kHash,
      uint64_t write_back_bytes = 0) = 0;

  // Opens a committed blob file read-only; returns an owned fd.
  // Errors: NotFound naming the digest.
  virtual absl::StatusOr<int> OpenFd(const Digest& digest) const = 0;

  // Removes a committed blob file (its record must already be gone: readers
  // holding it open keep their bytes). Not fsynced: a crash may bring the
  // file back, unreferenced and harmless. Errors: NotFound; Internal.
  virtual absl::Status Remove(const Digest& digest) = 0;

  // Size in bytes of the committed blob file. Errors: NotFound.
  virtual absl::StatusOr<uint64_t> FileSize(const Digest& digest) const = 0;

  // Flushes every pending write of the file system holding the store
  // (syncfs(2)), making kDeferred commits durable.
  virtual absl::Status SyncFilesystem() = 0;

  // Number of temp files Open() removed (for logs and tests).
  virtual int removed_temp_files() const = 0;
};

// Reads [offset, offset + length) of a blob file into `out` (resized to the
// bytes read; fewer only at end of file). Errors: DataLoss on EIO (the
// device lost stored bytes), ResourceExhausted on ENOMEM, else Internal.
absl::Status PreadFully(int fd, uint64_t offset, size_t length,
                        std::string* out);

}  // namespace cairn

#endif  // CAIRN_STORE_BLOB_STORE_H_
