// Copyright 2026 The Cairn Authors.
//
// The content-addressed store: blob files (BlobStore) plus metadata in
// RocksDB (MetadataDb), and artefact ingest (ArchiveIndex) tying them
// together. This is what the gRPC service and the FUSE mount use.
//
// Data directory layout:
//   <data>/blobs/sha256/xx/<hex>   blob files (tarballs and file contents)
//   <data>/tmp/                    blobs being written; emptied at Open
//   <data>/meta/                   RocksDB
//
// Upload and durability:
//   1. ArtefactUpload::Append streams the tarball to a temp file, hashing it.
//      An indexer thread reads the same bytes back from that file (page
//      cache) as they land, so the upload never waits for it and memory
//      stays bounded: it inflates the archive, checks it (archive_index.h)
//      and hands each regular file to a writer thread that hashes it and
//      writes it as its own blob (deferred durability; content the store
//      already holds is not written again).
//   2. Finish() waits for the indexer, checks the digest, fsyncs and renames
//      the tarball blob into place and fsyncs its directory, then commits in
//      one synced RocksDB batch: the tarball's BlobRecord, its
//      ArtefactRecord (index_state COMMITTED) and every FileRecord.
//      With UploadOptions::acknowledge_before_index, Finish() instead makes
//      the tarball durable and commits its BlobRecord with an ArtefactRecord
//      in state INDEXING, and returns; the indexer thread goes on in the
//      background and commits the index (COMMITTED) when done, or, for an
//      unsafe archive, deletes the artefact (records, then the tarball
//      file) and remembers why (WaitIndexed).
//   3. A background flusher then syncfs()es the file system, writes the
//      BlobRecords of the new file blobs and marks the artefact DURABLE.
//   After a crash, Open() re-derives every artefact not DURABLE from its
//   tarball before serving (an INDEXING one that proves unsafe is deleted).
//   So no index ever points at missing or wrong bytes, and a half-written
//   blob is never visible.

#ifndef CAIRN_STORE_STORE_H_
#define CAIRN_STORE_STORE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "proto/store_records.pb.h"
#include "store/archive_index.h"
#include "store/blob_store.h"
#include "store/digest.h"
#include "store/metadata.h"

namespace cairn {

struct StoreOptions {
  std::string data_dir;
  ArchiveLimits limits;
  // Testing only: when set, the process kills itself with SIGKILL on
  // reaching this step of an upload, to check crash safety at exact points:
  //   "file_blob_written"  after the first file blob is renamed into place
  //   "tarball_committed"  after the tarball blob is durable, before its
  //                        records are committed
  //   "indexing_committed" an upload acknowledged before its index: after
  //                        its tarball and INDEXING record are durable,
  //                        before the acknowledgement and the index
  //   "index_committed"    after the records commit, before the flush
  //   "flush_records_written"  in the flush, after the syncfs and the
  //                        file blobs' records (unsynced), before the
  //                        synced DURABLE commit
  //   "reject_committed"   rejecting an acknowledged artefact (found unsafe
  //                        in the background or at a restart's re-derivation
  //                        under today's limits): after the records' deletion
  //                        is durable, before the tarball file is removed
  std::string debug_crash_point;
  // Testing only: called with the name of every crash point above as it is
  // passed (on the thread passing it, with the locks it holds: it must not
  // call the store), e.g. to wait deterministically until an upload's file
  // blob is written and claimed ("file_blob_written").
  std::function<void(absl::string_view)> testing_at_crash_point;
  // Testing only: when set, the indexer thread of every upload acknowledged
  // before its index (UploadOptions::acknowledge_before_index) waits for
  // this notification before reading the tarball, to reach its background
  // outcome deterministically. Other uploads are indexed as usual.
  std::shared_ptr<absl::Notification> testing_indexer_gate;
  // Testing only: called by the flusher in each flush attempt (on its
  // thread, no lock held), after it read which file blobs lack a record
  // and before it commits anything; an error fails the attempt as a
  // failed syncfs would. May block, to hold artefacts COMMITTED and not
  // yet DURABLE.
  std::function<absl::Status()> testing_before_flush;
  // How many reasons for rejecting an acknowledged upload (deleted after its
  // background index found it unsafe) WaitIndexed remembers, oldest
  // forgotten first (then NotFound). Background indexes that failed for
  // other reasons (the artefact stays INDEXING until the next start) are
  // always remembered.
  size_t remembered_rejections = 1024;
};

struct UploadOptions {
  std::optional<Digest> expected_digest;
  std::optional<uint64_t> expected_size;  // Bytes.
  // Finish() returns once the tarball is durable, before its index is
  // complete (step 2 above): UploadResult.artefact then has index_state
  // INDEXING and no summary, and an unsafe archive is rejected (and
  // deleted) after Finish() returned; Store::WaitIndexed tells the outcome.
  bool acknowledge_before_index = false;
  // Asked about once a second while Finish() waits for another upload's
  // index of the same digest (a push of bytes stored moments ago with an
  // early acknowledgement): true makes Finish() give up with Cancelled, so
  // that a client gone away frees its caller's thread. Null: wait.
  std::function<bool()> cancelled;
};

struct UploadResult {
  Digest digest;
  uint64_t size = 0;  // Bytes.
  bool already_present = false;
  store::ArtefactRecord artefact;
};

struct BlobInfo {
  Digest digest;
  store::BlobRecord blob;
  // Set when the blob is an artefact.
  std::optional<store::ArtefactRecord> artefact;
};

// One artefact upload. Not thread-safe: one caller streams into it. The
// destructor abandons an unfinished upload and removes everything it wrote
// that is not referenced by a committed record.
class ArtefactUpload {
 public:
  virtual ~ArtefactUpload() = default;

  // Appends the next bytes of the tarball. Errors: those of the indexer as
  // soon as it fails (InvalidArgument for an unsafe archive, naming the
  // entry), DataLoss when expected_size is exceeded, Internal on I/O.
  virtual absl::Status Append(absl::string_view data) = 0;

  // Ends the upload: see the file comment. Errors: DataLoss naming expected
  // and actual digest (or size) on mismatch; the indexer's error; Internal
  // on I/O. Nothing is stored on error.
  virtual absl::StatusOr<UploadResult> Finish() = 0;
};

// Thread-safe.
class Store {
 public:
  // Opens or creates the store in options.data_dir: cleans temp files,
  // re-derives non-durable indexes, starts the flusher. Errors: Internal or
  // PermissionDenied naming the path; the RocksDB lock error when another
  // process has the store open.
  static absl::StatusOr<std::unique_ptr<Store>> Open(
      const StoreOptions& options);

  // Flushes pending indexes (waits for the flusher) and closes.
  virtual ~Store() = default;

  // The digests of `digests` that have no record, in request order.
  virtual absl::StatusOr<std::vector<Digest>> FindMissing(
      absl::Span<const Digest> digests) const = 0;

  // Starts an artefact upload. If expected_digest is already stored as an
  // artefact the upload still consumes its bytes but does no indexing and
  // Finish() reports already_present. Bytes stored only as some artefact's
  // file content (FindMissing reports them present) are indexed as an
  // artefact of their own.
  virtual absl::StatusOr<std::unique_ptr<ArtefactUpload>> BeginUpload(
      const UploadOptions& options) = 0;

  // Errors: NotFound naming the digest.
  virtual absl::StatusOr<BlobInfo> Stat(const Digest& digest) const = 0;

  // Reads [offset, offset + length) of a stored blob into `out` (fewer bytes
  // only at its end). Errors: NotFound; OutOfRange when offset > size.
  virtual absl::Status ReadBlob(const Digest& digest, uint64_t offset,
                                size_t length, std::string* out) const = 0;

  // Opens a stored blob's file read-only (owned fd), for zero-copy serving.
  // Errors: NotFound.
  virtual absl::StatusOr<int> OpenBlobFd(const Digest& digest) const = 0;

  // Opens, read-only (owned fd), the blob holding a regular file of a
  // committed artefact index. Unlike OpenBlobFd it does not need the blob's
  // record, which the flusher writes only once the file blob is durable: a
  // committed index guarantees its file blobs are in place (step 1 above),
  // and after a crash Open() re-derives them before serving. Errors:
  // NotFound when the blob file is missing.
  virtual absl::StatusOr<int> OpenIndexedFileFd(const Digest& digest) const = 0;

  // The artefact's file index. Errors: NotFound if not an artefact.
  virtual const MetadataDb& metadata() const = 0;
  // The same database, writable: for layers kept beside the store's own
  // records, such as the refs (store/refs.h). Owned by the store.
  virtual MetadataDb& mutable_metadata() = 0;

  // Blocks until the artefact's index is complete (index_state COMMITTED or
  // DURABLE) and returns its record, or until `deadline`. Errors: NotFound
  // for a digest that is not an artefact; the rejection (InvalidArgument,
  // ResourceExhausted, ... with "artefact rejected, nothing stored: ...")
  // of an upload acknowledged before its index that proved unsafe, while
  // this process remembers it (the last 1024); DeadlineExceeded.
  virtual absl::StatusOr<store::ArtefactRecord> WaitIndexed(
      const Digest& digest, absl::Time deadline = absl::InfiniteFuture()) = 0;

  // Blocks until every artefact committed so far is DURABLE (for tests and
  // orderly shutdown). A flush that failed (its artefacts stay COMMITTED,
  // served as before) is retried by the flusher, first after 1 s, then
  // backing off to every 60 s, and at once when WaitDurable is called.
  // Errors: that retry's error (Internal, ResourceExhausted, ... from the
  // file system or RocksDB) if it fails too.
  virtual absl::Status WaitDurable() = 0;

  // Number of artefacts re-derived at Open (for logs and tests).
  virtual int recovered_artefacts() const = 0;

  // Called with an artefact's digest each time its index is committed
  // (index_state COMMITTED: from now on its files are served), on the
  // committing thread, once the commit is durable and before the upload or
  // background index job reports it (so before Write returns, and before
  // WaitIndexed wakes). Not called for artefacts re-derived at Open. A
  // listener must be quick and must not upload.
  using ArtefactListener = std::function<void(const Digest& artefact)>;

  // Registers `listener`; returns the id RemoveArtefactListener takes.
  // Thread-safe.
  virtual uint64_t AddArtefactListener(ArtefactListener listener) = 0;

  // Unregisters listener `id` (unknown ids are ignored). Once this returns,
  // that listener is not running and is never called again. Must not be
  // called from a listener. Thread-safe.
  virtual void RemoveArtefactListener(uint64_t id) = 0;
};

}  // namespace cairn

#endif  // CAIRN_STORE_STORE_H_
