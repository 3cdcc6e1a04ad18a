// Copyright 2026 The Cairn Authors.

#include "store/store.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <thread>
#include <utility>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "store/unique_fd.h"

namespace cairn {
namespace {

// Files up to this size are hashed in memory before anything is written, so
// content the store already holds costs no file I/O at all.
constexpr size_t kFileSpillBytes = 1 << 20;
// Chunk size when re-reading a stored tarball (recovery).
constexpr size_t kReadChunkBytes = 1 << 20;
// Limits for re-deriving an index that was accepted before (recovery).
constexpr ArchiveLimits kNoLimits = {
    .max_entries = UINT64_MAX,
    .max_path_bytes = UINT64_MAX,
    .max_total_path_bytes = UINT64_MAX,
    .max_unpacked_bytes = UINT64_MAX,
    .max_metadata_field_bytes = UINT64_MAX,
};
// Write-back of an uploading tarball starts every this many bytes
// (BlobStore::NewWriter).
constexpr uint64_t kTarballWriteBackBytes = 8 << 20;

int64_t NowUnixSeconds() { return absl::ToUnixSeconds(absl::Now()); }

// Reads a stored blob file from its start.
class FdSource : public ByteSource {
 public:
  explicit FdSource(int fd) : fd_(fd) {}
  ~FdSource() override { close(fd_); }
  absl::StatusOr<absl::string_view> Next() override {
    absl::Status s = PreadFully(fd_, offset_, kReadChunkBytes, &buf_);
    if (!s.ok()) return s;
    offset_ += buf_.size();
    return absl::string_view(buf_);
  }

 private:
  int fd_;
  uint64_t offset_ = 0;
  std::string buf_;
};

}  // namespace

class StoreImpl;
class IndexJob;

// Writes each regular file of an artefact as its own blob, skipping content
// the store already holds. The archive indexer calls it on its thread; the
// dedup check and the writes run on a writer thread of the sink's own, so
// inflating and hashing overlap with writing. Ops pass through a queue
// bounded to kSinkQueueBytes. Files up to kFileSpillBytes are buffered and
// handed over whole (and cost no I/O when already stored); larger ones are
// streamed to a temp blob and dropped at the end if already stored.
class FileBlobSink : public FileContentSink {
 public:
  // With `replace_unrecorded` (recovery), a file blob without a record is
  // written anew even where a file with the right bytes is in place: those
  // bytes may be cached but never have reached the disk (a write-back error
  // reported to a syncfs before a crash), so nothing may keep them unsynced.
  explicit FileBlobSink(StoreImpl* store, bool replace_unrecorded = false);
  // Stops the writer thread, discarding queued work.
  ~FileBlobSink() override;

  absl::Status BeginFile(absl::string_view path, uint64_t size) override;
  absl::Status Append(absl::string_view data) override;
  absl::Status EndFile(const Digest& digest) override;

  // Waits until every file handed over is written (or found stored) and
  // stops the writer. Returns the writer's first error. Call once, after
  // the indexer finished; files() and bytes_newly_stored() are valid after.
  absl::Status Drain();

  // Stops the writer after the file it is on, discarding queued work and
  // the temp file of a file written in part, and releases the sink's claims
  // on file blobs (StoreImpl::Claim) unless HandOverClaims took them. For
  // an index that failed: called before the failure is reported, so that
  // the upload has nothing left in tmp/ by then. Call after the indexer
  // finished.
  void Abandon();

  // For an index just committed: its claims are the flusher's now, which
  // releases them once the file blobs' records are written (one claim per
  // digest of files()). Call after Drain.
  void HandOverClaims();

  // Frees what files() and digests() hold. Call after Abandon or
  // HandOverClaims, once nothing reads them.
  void ReleaseMemory();

  // Hashing happens on the writer thread, off the indexer's critical path.
  bool HashesContent() const override { return true; }

  // Digest of every regular file, in the order the indexer handed them over
  // (for FillContentDigests). Valid after Drain.
  const std::vector<Digest>& digests() const { return digests_; }

  // Digest and size of every distinct regular file seen.
  const absl::flat_hash_map<Digest, uint64_t>& files() const { return files_; }
  uint64_t bytes_newly_stored() const { return bytes_newly_stored_; }

 private:
  static constexpr size_t kSinkQueueBytes = 8 << 20;
  static constexpr size_t kDataOpBytes = 1 << 20;

  struct Op {
    enum Kind { kWholeFile, kBegin, kData, kEnd } kind;
    std::string data;   // kWholeFile, kData.
    uint64_t size = 0;  // kWholeFile, kBegin: the file's size in bytes.
  };

  // Indexer side.
  absl::Status Push(Op op);
  absl::Status FlushPending();
  // Writer side.
  void Run();
  absl::Status Process(Op& op);
  absl::Status Store(const Digest& digest, uint64_t size,
                     std::unique_ptr<BlobWriter> writer,
                     absl::string_view whole);

  StoreImpl* const store_;
  const bool replace_unrecorded_;

  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<Op> ops_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closing_ ABSL_GUARDED_BY(mu_) = false;
  bool abort_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  std::thread writer_thread_;

  // Indexer thread only.
  std::string buffer_;  // A small file's bytes, or a large file's pending.
  bool streaming_ = false;
  uint64_t size_ = 0;

  // Writer thread only (read by others after Drain).
  std::unique_ptr<BlobWriter> writer_;
  uint64_t writer_size_ = 0;
  Sha256 hasher_;
  std::vector<Digest> digests_;
  absl::flat_hash_map<Digest, uint64_t> files_;
  uint64_t bytes_newly_stored_ = 0;
  // The digests this sink holds a claim on (one each).
  std::vector<Digest> claimed_;
};

// A committed artefact waiting for its file blobs to be flushed.
struct PendingFlush {
  Digest artefact;
  store::ArtefactRecord record;
  std::vector<std::pair<Digest, uint64_t>> files;
  uint64_t seq = 0;
};

class StoreImpl : public Store {
 public:
  StoreImpl(StoreOptions options, std::unique_ptr<BlobStore> blobs,
            std::unique_ptr<MetadataDb> meta)
      : options_(std::move(options)),
        blobs_(std::move(blobs)),
        meta_(std::move(meta)) {}

  // Finishes adopted index jobs, then the flusher.
  ~StoreImpl() override;

  absl::Status Init() {
    if (absl::Status s = Recover(); !s.ok()) return s;
    flusher_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "cairn-flush");
      FlushLoop();
    });
    return absl::OkStatus();
  }

  absl::StatusOr<std::vector<Digest>> FindMissing(
      absl::Span<const Digest> digests) const override {
    std::vector<Digest> missing;
    for (const Digest& d : digests) {
      absl::StatusOr<bool> has = meta_->HasBlob(d);
      if (!has.ok()) return has.status();
      if (!*has) missing.push_back(d);
    }
    return missing;
  }

  absl::StatusOr<std::unique_ptr<ArtefactUpload>> BeginUpload(
      const UploadOptions& options) override;

  absl::StatusOr<BlobInfo> Stat(const Digest& digest) const override {
    BlobInfo info;
    info.digest = digest;
    absl::StatusOr<store::BlobRecord> blob = meta_->GetBlob(digest);
    if (!blob.ok()) return blob.status();
    info.blob = *std::move(blob);
    if (info.blob.kind() == store::BlobRecord::ARTEFACT) {
      absl::StatusOr<store::ArtefactRecord> art = meta_->GetArtefact(digest);
      if (!art.ok()) return art.status();
      info.artefact = *std::move(art);
    }
    return info;
  }

  absl::Status ReadBlob(const Digest& digest, uint64_t offset, size_t length,
                        std::string* out) const override {
    absl::StatusOr<store::BlobRecord> blob = meta_->GetBlob(digest);
    if (!blob.ok()) return blob.status();
    if (offset > blob->size()) {
      return absl::OutOfRangeError(
          absl::StrCat("offset ", offset, " is past the end of ",
                       digest.ToString(), " (", blob->size(), " bytes)"));
    }
    absl::StatusOr<int> fd = blobs_->OpenFd(digest);
    if (!fd.ok()) return fd.status();
    absl::Status s = PreadFully(*fd, offset, length, out);
    close(*fd);
    return s;
  }

  absl::StatusOr<int> OpenBlobFd(const Digest& digest) const override {
    absl::StatusOr<bool> has = meta_->HasBlob(digest);
    if (!has.ok()) return has.status();
    if (!*has) {
      return absl::NotFoundError(
          absl::StrCat("blob ", digest.ToString(), " is not in the store"));
    }
    return blobs_->OpenFd(digest);
  }

  absl::StatusOr<int> OpenIndexedFileFd(const Digest& digest) const override {
    return blobs_->OpenFd(digest);
  }

  const MetadataDb& metadata() const override { return *meta_; }
  MetadataDb& mutable_metadata() override { return *meta_; }

  absl::Status WaitDurable() override {
    absl::MutexLock lock(&flush_mu_);
    const uint64_t target = committed_seq_;
    // A failed flush is retried now, not at its backoff: the answer is
    // the outcome of an attempt made after this call (an attempt under way
    // may have started before it, so the retry after that one counts).
    uint64_t attempts = flush_attempts_;
    if (flushing_) ++attempts;
    if (!failed_.empty() || flushing_) {
      retry_now_ = true;
      flush_cv_.SignalAll();
    }
    while (durable_seq_ < target) {
      if (!flush_error_.ok() && flush_attempts_ > attempts) break;
      if (stop_ && !flusher_running_) break;
      flush_cv_.Wait(&flush_mu_);
    }
    return durable_seq_ >= target ? absl::OkStatus() : flush_error_;
  }

  int recovered_artefacts() const override { return recovered_; }

  uint64_t AddArtefactListener(ArtefactListener listener) override {
    absl::MutexLock lock(&listeners_mu_);
    const uint64_t id = next_listener_id_++;
    listeners_.emplace(id, std::move(listener));
    return id;
  }

  void RemoveArtefactListener(uint64_t id) override {
    absl::MutexLock lock(&listeners_mu_);  // Waits for running listeners.
    listeners_.erase(id);
  }

  // --- Used by uploads and sinks. ---

  BlobStore& blobs() { return *blobs_; }

  // See StoreOptions::debug_crash_point.
  void CrashPoint(absl::string_view point) const {
    if (options_.testing_at_crash_point) options_.testing_at_crash_point(point);
    if (options_.debug_crash_point == point) {
      spdlog::warn("debug crash point {} reached: killing this process",
                   std::string(point));
      spdlog::default_logger()->flush();
      kill(getpid(), SIGKILL);
    }
  }
  const StoreOptions& options() const { return options_; }

  // Whether `digest` is stored as an artefact (it has an ArtefactRecord, in
  // any index state). A blob that is only some artefact's file content is
  // not one: pushing it as a tarball indexes it.
  absl::StatusOr<bool> HasArtefact(const Digest& digest) const {
    absl::StatusOr<store::ArtefactRecord> a = meta_->GetArtefact(digest);
    if (a.ok()) return true;
    if (absl::IsNotFound(a.status())) return false;
    return a.status();
  }

  // Whether a file blob with this digest is already on disk, recorded or
  // written (renamed into place) by this process; if so, the caller holds
  // a claim on it (Claim), to be released. Recorded bytes found here are
  // claimed under the digest's commit lock, as Reject checks claims: a
  // rejected tarball whose bytes some index is about to name as a file
  // keeps them, even before that index is flushed (BlobRecord.file_use).
  absl::StatusOr<bool> HaveFileBlob(const Digest& digest) {
    if (ClaimIfClaimed(digest)) return true;
    absl::StatusOr<bool> has = meta_->HasBlob(digest);
    if (!has.ok() || !*has) return has;  // Not there: written anew.
    absl::MutexLock commit_lock(&CommitMutex(digest));
    has = meta_->HasBlob(digest);  // Reject may have won.
    if (has.ok() && *has) Claim(digest);
    return has;
  }

  // Whether some index not yet flushed (an upload under way, or committed
  // and waiting for the flusher) names `digest` as a file: it holds a
  // claim.
  bool ClaimedAsFile(const Digest& digest) {
    absl::MutexLock lock(&claims_mu_);
    return claims_.contains(digest);
  }

  // Claims: per digest, how many indexes not yet flushed name it as a file.
  // A FileBlobSink takes one per distinct file it writes or finds stored,
  // and releases them when its upload does not commit (Abandon); a
  // committed index's claims are released by the flusher once the blobs'
  // records are written. Thread-safe.
  void Claim(const Digest& digest) {
    absl::MutexLock lock(&claims_mu_);
    ++claims_[digest];
  }
  // Claim, but only if `digest` is claimed already; returns whether it was.
  bool ClaimIfClaimed(const Digest& digest) {
    absl::MutexLock lock(&claims_mu_);
    auto it = claims_.find(digest);
    if (it == claims_.end()) return false;
    ++it->second;
    return true;
  }
  void ReleaseClaim(const Digest& digest) {
    absl::MutexLock lock(&claims_mu_);
    ReleaseClaimLocked(digest);
  }
  // A file blob is about to be renamed into place without a sync.
  void NoteUnsynced(const Digest& digest) {
    absl::MutexLock lock(&unsynced_mu_);
    unsynced_.insert_or_assign(digest, ++unsynced_renames_);
  }
  void ReleaseClaimLocked(const Digest& digest)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(claims_mu_) {
    auto it = claims_.find(digest);
    if (it != claims_.end() && --it->second <= 0) claims_.erase(it);
  }

  // Serialises commits of one digest.
  absl::Mutex& CommitMutex(const Digest& d) {
    return commit_mu_[CommitStripe(d)];
  }
  static int CommitStripe(const Digest& d) {
    return static_cast<uint8_t>(d.raw()[0]) % kCommitStripes;
  }

  // Commits a verified artefact: the tarball's writer (or null when the
  // tarball blob is already on disk and durable), its index, and queues the
  // flush of its file blobs. Caller holds CommitMutex(digest).
  // `tarball_newly_stored`: count the tarball's size in bytes_newly_stored
  // even though `tarball` is null (committed earlier by CommitTarball).
  absl::StatusOr<store::ArtefactRecord> CommitArtefact(
      const Digest& digest, uint64_t size, BlobWriter* tarball,
      const ArchiveIndex& index, FileBlobSink& sink,
      bool tarball_newly_stored = false);

  // For a file blob whose write-back may have failed (resync_): copies it
  // into a new file, fdatasyncs it and renames it over the old one
  // (Durability::kDurableReplace), checking the bytes against the digest.
  // A blob no index claims and no record names is removed instead (a later
  // upload writes it again); a missing one is OK. Errors: DataLoss (the
  // bytes read back are not the digest's: the file is removed); I/O errors.
  absl::Status RewriteFileBlobDurably(const Digest& digest);

  // Makes an acknowledged-before-index upload's tarball durable and commits
  // its BlobRecord with an ArtefactRecord in state INDEXING; returns that.
  // Caller holds CommitMutex(digest).
  absl::StatusOr<store::ArtefactRecord> CommitTarball(const Digest& digest,
                                                      uint64_t size,
                                                      BlobWriter& tarball);

  // Takes over `job`, whose tarball CommitTarball committed: its thread
  // finishes the index in the background (CompleteIndex). Joined by
  // ReapJobs once done, at the latest when the store closes.
  void Adopt(std::shared_ptr<IndexJob> job, const Digest& digest,
             uint64_t size);
  // Joins adopted jobs that are done, so the list stays short. Never with
  // a lock held: a job's destructor waits for its sink's writer thread,
  // which may be waiting for a CommitMutex stripe.
  void ReapJobs() ABSL_LOCKS_EXCLUDED(jobs_mu_);

  // On an adopted job's thread, once it indexed: commits the index, or
  // deletes the artefact when its archive was rejected.
  void CompleteIndex(const Digest& digest, uint64_t size, IndexJob& job);

  // Reads and indexes a stored tarball (recovery).
  // Re-derives the index of stored tarball `digest` under `limits`.
  absl::StatusOr<store::ArtefactRecord> Reindex(const Digest& digest,
                                                const ArchiveLimits& limits);

  absl::StatusOr<store::ArtefactRecord> WaitIndexed(
      const Digest& digest, absl::Time deadline) override;

 private:
  static constexpr int kCommitStripes = 64;

  absl::Status Recover();
  // The flusher thread: makes committed artefacts DURABLE (FlushBatch),
  // batching whatever was committed meanwhile, and retries failed batches
  // (WaitDurable).
  void FlushLoop();
  // One flush attempt: syncfs, then the file blobs' BlobRecords and the
  // artefacts' DURABLE state in one RocksDB commit. Idempotent.
  absl::Status FlushBatch(std::vector<PendingFlush>& work);
  // Adds the durable tarball's BlobRecord to `batch` after committing its
  // file (fsync, rename, fsync dir).
  absl::Status CommitTarballFile(const Digest& digest, uint64_t size,
                                 BlobWriter& tarball, MetadataBatch& batch);
  // Deletes an INDEXING artefact whose archive proved unsafe (records, then
  // its tarball file, unless its bytes are also some artefact's file
  // content: BlobRecord.file_use) and remembers why for WaitIndexed.
  void Reject(const Digest& digest, const absl::Status& why);
  // Wakes WaitIndexed callers; `failure` is remembered for `digest`: a
  // rejection (`rejected`) among the last options_.remembered_rejections,
  // any other failure for the store's life (its artefact stays INDEXING, and
  // WaitIndexed must not wait for a job that ended).
  void NoteIndexOutcome(const Digest& digest, const absl::Status& failure,
                        bool rejected = false);
  void NoteIndexOutcomeLocked(const Digest& digest, const absl::Status& failure,
                              bool rejected)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(index_mu_);

  const StoreOptions options_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<MetadataDb> meta_;
  int recovered_ = 0;

  absl::Mutex claims_mu_;
  // Claims on file blobs (Claim): digest -> count, entries > 0.
  absl::flat_hash_map<Digest, int> claims_ ABSL_GUARDED_BY(claims_mu_);

  // File blobs renamed into place (kDeferred) since the last syncfs that
  // succeeded after their rename, with the number of their last rename
  // (from unsynced_renames_): what a failing syncfs may concern.
  absl::Mutex unsynced_mu_;
  absl::flat_hash_map<Digest, uint64_t> unsynced_ ABSL_GUARDED_BY(unsynced_mu_);
  uint64_t unsynced_renames_ ABSL_GUARDED_BY(unsynced_mu_) = 0;

  // Flusher thread only. The file blobs in unsynced_ when a syncfs failed:
  // Linux reports a write-back error to syncfs once (the failed pages are
  // marked clean), so a later syncfs succeeds whether or not their bytes
  // reached the disk. Each is rewritten durably, or removed if nothing
  // names it (RewriteFileBlobDurably), before a flush trusts a syncfs
  // again.
  absl::flat_hash_set<Digest> resync_;
  // Flusher thread only. Blobs whose bytes read back wrong while being
  // rewritten (removed then): no flush commits until the next start, whose
  // re-derivation of the artefacts still COMMITTED writes them again.
  absl::flat_hash_set<Digest> lost_;

  absl::Mutex commit_mu_[kCommitStripes];

  // Adopted index jobs (acknowledged before their index), joined when done.
  absl::Mutex jobs_mu_;
  std::vector<std::shared_ptr<IndexJob>> jobs_ ABSL_GUARDED_BY(jobs_mu_);

  // Index outcomes of background jobs, for WaitIndexed.
  absl::Mutex index_mu_;
  absl::CondVar index_cv_;
  // Failures remembered; `index_rejection_order_` lists the rejections
  // among them (oldest first), at most options_.remembered_rejections.
  absl::flat_hash_map<Digest, absl::Status> index_failures_
      ABSL_GUARDED_BY(index_mu_);
  std::deque<Digest> index_rejection_order_ ABSL_GUARDED_BY(index_mu_);

  absl::Mutex flush_mu_;
  absl::CondVar flush_cv_;
  std::vector<PendingFlush> pending_ ABSL_GUARDED_BY(flush_mu_);
  uint64_t committed_seq_ ABSL_GUARDED_BY(flush_mu_) = 0;
  uint64_t durable_seq_ ABSL_GUARDED_BY(flush_mu_) = 0;
  // Artefacts of the last failed attempt, in seq order, retried before
  // pending_; flush_error_ is that attempt's error (OK once a retry
  // succeeded).
  std::vector<PendingFlush> failed_ ABSL_GUARDED_BY(flush_mu_);
  absl::Status flush_error_ ABSL_GUARDED_BY(flush_mu_);
  uint64_t flush_attempts_ ABSL_GUARDED_BY(flush_mu_) = 0;  // Finished.
  bool flushing_ ABSL_GUARDED_BY(flush_mu_) = false;        // An attempt runs.
  bool retry_now_ ABSL_GUARDED_BY(flush_mu_) = false;
  bool flusher_running_ ABSL_GUARDED_BY(flush_mu_) = true;
  bool stop_ ABSL_GUARDED_BY(flush_mu_) = false;
  std::thread flusher_;

  // Held shared while artefact listeners run, exclusively to change them.
  absl::Mutex listeners_mu_;
  uint64_t next_listener_id_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  std::map<uint64_t, ArtefactListener> listeners_
      ABSL_GUARDED_BY(listeners_mu_);
};

FileBlobSink::FileBlobSink(StoreImpl* store, bool replace_unrecorded)
    : store_(store), replace_unrecorded_(replace_unrecorded) {
  writer_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cairn-files");
    Run();
  });
}

FileBlobSink::~FileBlobSink() { Abandon(); }

void FileBlobSink::Abandon() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    abort_ = true;
    cv_.SignalAll();
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  writer_.reset();  // A file written in part: its temp file goes.
  for (const Digest& d : claimed_) store_->ReleaseClaim(d);
  claimed_.clear();
}

void FileBlobSink::HandOverClaims() { claimed_.clear(); }

void FileBlobSink::ReleaseMemory() {
  absl::flat_hash_map<Digest, uint64_t>().swap(files_);
  std::vector<Digest>().swap(digests_);
  std::vector<Digest>().swap(claimed_);
}

absl::Status FileBlobSink::Push(Op op) {
  absl::MutexLock lock(&mu_);
  const size_t bytes = op.data.size();
  while (error_.ok() && queued_bytes_ > 0 &&
         queued_bytes_ + bytes > kSinkQueueBytes) {
    cv_.Wait(&mu_);
  }
  if (!error_.ok()) return error_;
  queued_bytes_ += bytes;
  ops_.push_back(std::move(op));
  cv_.SignalAll();
  return absl::OkStatus();
}

absl::Status FileBlobSink::FlushPending() {
  if (buffer_.empty()) return absl::OkStatus();
  Op op{Op::kData};
  op.data.swap(buffer_);
  return Push(std::move(op));
}

absl::Status FileBlobSink::BeginFile(absl::string_view path, uint64_t size) {
  buffer_.clear();
  size_ = size;
  streaming_ = size > kFileSpillBytes;
  if (!streaming_) return absl::OkStatus();
  Op op{Op::kBegin};
  op.size = size;
  return Push(std::move(op));
}

absl::Status FileBlobSink::Append(absl::string_view data) {
  buffer_.append(data.data(), data.size());
  if (streaming_ && buffer_.size() >= kDataOpBytes) return FlushPending();
  return absl::OkStatus();
}

absl::Status FileBlobSink::EndFile(const Digest& /*unused: HashesContent*/) {
  if (streaming_) {
    if (absl::Status s = FlushPending(); !s.ok()) return s;
    return Push(Op{Op::kEnd});
  }
  Op op{Op::kWholeFile};
  op.data.swap(buffer_);
  op.size = size_;
  return Push(std::move(op));
}

absl::Status FileBlobSink::Drain() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    cv_.SignalAll();
  }
  if (writer_thread_.joinable()) writer_thread_.join();
  absl::MutexLock lock(&mu_);
  return error_;
}

void FileBlobSink::Run() {
  while (true) {
    Op op;
    {
      absl::MutexLock lock(&mu_);
      while (ops_.empty() && !closing_) cv_.Wait(&mu_);
      if (abort_ || ops_.empty()) return;
      op = std::move(ops_.front());
      ops_.pop_front();
      queued_bytes_ -= op.data.size();
      cv_.SignalAll();
      if (!error_.ok()) continue;  // Discard work after a failure.
    }
    absl::Status s = Process(op);
    if (!s.ok()) {
      // The failed file's temp file goes now, not when the sink does (a
      // background job's sink lives until the job is reaped): after ENOSPC
      // it is what fills the disk.
      writer_.reset();
      absl::MutexLock lock(&mu_);
      error_ = s;
      cv_.SignalAll();
    }
  }
}

absl::Status FileBlobSink::Process(Op& op) {
  switch (op.kind) {
    case Op::kWholeFile: {
      const Digest digest = Sha256Of(op.data);
      digests_.push_back(digest);
      return Store(digest, op.size, nullptr, op.data);
    }
    case Op::kBegin: {
      absl::StatusOr<std::unique_ptr<BlobWriter>> w =
          store_->blobs().NewWriter(WriterHashing::kCallerHashes);
      if (!w.ok()) return w.status();
      writer_ = *std::move(w);
      writer_size_ = op.size;
      hasher_.Reset();
      return absl::OkStatus();
    }
    case Op::kData:
      hasher_.Update(op.data);
      return writer_->Append(op.data);
    case Op::kEnd: {
      const Digest digest = hasher_.Finish();
      digests_.push_back(digest);
      return Store(digest, writer_size_, std::move(writer_), "");
    }
  }
  return absl::InternalError("unknown file sink op");
}

absl::Status FileBlobSink::Store(const Digest& digest, uint64_t size,
                                 std::unique_ptr<BlobWriter> writer,
                                 absl::string_view whole) {
  auto [it, inserted] = files_.emplace(digest, size);
  // Same content earlier in this artefact, or already in the store:
  // dropping `writer` removes its temp file.
  if (!inserted) return absl::OkStatus();
  absl::StatusOr<bool> have = store_->HaveFileBlob(digest);
  if (!have.ok()) return have.status();
  if (*have) {
    claimed_.push_back(digest);  // HaveFileBlob took a claim.
    return absl::OkStatus();
  }
  if (writer == nullptr) {
    absl::StatusOr<std::unique_ptr<BlobWriter>> w =
        store_->blobs().NewWriter(WriterHashing::kCallerHashes);
    if (!w.ok()) return w.status();
    writer = *std::move(w);
    if (absl::Status s = writer->Append(whole); !s.ok()) return s;
  }
  {
    // Renamed into place and noted under the digest's commit lock: a
    // Reject of a tarball with these very bytes either removed its file
    // before, or finds them claimed (ClaimedAsFile) and keeps them.
    absl::MutexLock lock(&store_->CommitMutex(digest));
    // Noted before the rename: a syncfs failing from now on may concern it.
    store_->NoteUnsynced(digest);
    // The archive indexer hashed exactly these bytes.
    absl::StatusOr<Digest> committed =
        writer->Commit(replace_unrecorded_ ? Durability::kDeferredReplace
                                           : Durability::kDeferred,
                       digest);
    if (!committed.ok()) return committed.status();
    store_->Claim(digest);
    claimed_.push_back(digest);
  }
  store_->CrashPoint("file_blob_written");
  bytes_newly_stored_ += size;
  return absl::OkStatus();
}

// The indexer side of one upload (store.h, step 1). Its thread reads the
// tarball back from the blob's temp file as the upload appends to it
// (Advance), indexes it, and hands regular files to a FileBlobSink. Once
// indexed, the thread waits for the upload's Decide: the upload then commits
// the result itself (kInline), drops it (kAbandon), or leaves it to this
// thread (kBackground, an upload acknowledged before its index), which calls
// StoreImpl::CompleteIndex. Thread-safe.
class IndexJob : public ByteSource {
 public:
  enum class Decision { kUndecided, kInline, kAbandon, kBackground };

  // Takes ownership of `read_fd`, open on the tarball's temp file. With
  // `after_last_byte` the thread reads nothing before the upload is closed:
  // an upload acknowledged before its index then has both cores for
  // receiving, hashing and writing the tarball, which is all its client
  // waits for (the index follows in the background either way).
  IndexJob(StoreImpl* store, int read_fd, bool after_last_byte)
      : store_(store),
        fd_(read_fd),
        after_last_byte_(after_last_byte),
        sink_(store) {}
  ~IndexJob() override {
    if (thread_.joinable()) thread_.join();
    if (fd_ >= 0) close(fd_);
  }

  // After a background outcome, on the job's thread: the tarball's fd (a
  // rejected tarball's disk space) and the index's memory go now rather
  // than when the next upload reaps the job (StoreImpl::ReapJobs).
  void ReleaseResources() {
    close(fd_);
    fd_ = -1;
    index_ = absl::CancelledError("released after its background outcome");
    sink_.ReleaseMemory();
  }

  void Start() {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "cairn-index");
      Run();
    });
  }

  // Upload side: `bytes` more bytes of the tarball are in the file.
  void Advance(uint64_t bytes) {
    absl::MutexLock lock(&mu_);
    available_ += bytes;
    cv_.SignalAll();
  }

  // Upload side: no more bytes will come; with `abandon`, the indexer stops
  // (Cancelled).
  void Close(bool abandon) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    abandoned_ = abandon;
    cv_.SignalAll();
  }

  // Whether indexing already failed (an unsafe archive can be refused before
  // its last byte arrives; never for an after_last_byte job, which has not
  // started reading by then).
  bool failed() const { return failed_.load(); }

  // Waits until the archive is indexed; returns the indexer's result.
  absl::StatusOr<ArchiveIndex>& WaitIndexed() {
    absl::MutexLock lock(&mu_);
    while (!indexed_) cv_.Wait(&mu_);
    return index_;
  }

  // Tells the thread what follows indexing (once). kInline and kAbandon wait
  // for the thread to end; kBackground returns at once.
  void Decide(Decision decision, const Digest& digest = Digest(),
              uint64_t size = 0) {
    {
      absl::MutexLock lock(&mu_);
      decision_ = decision;
      digest_ = digest;
      size_ = size;
      cv_.SignalAll();
    }
    if (decision != Decision::kBackground && thread_.joinable()) {
      thread_.join();
    }
  }

  bool decided() {
    absl::MutexLock lock(&mu_);
    return decision_ != Decision::kUndecided;
  }

  // Whether the thread has nothing left to do (adopted jobs are reaped).
  bool done() {
    absl::MutexLock lock(&mu_);
    return done_;
  }

  FileBlobSink& sink() { return sink_; }

  // ByteSource, on the indexer thread: the next bytes of the tarball as they
  // land in its file; empty at the end.
  absl::StatusOr<absl::string_view> Next() override {
    uint64_t n;
    {
      absl::MutexLock lock(&mu_);
      while (!closed_ && (offset_ == available_ || after_last_byte_)) {
        cv_.Wait(&mu_);
      }
      if (abandoned_) return absl::CancelledError("upload abandoned");
      if (offset_ == available_) return absl::string_view();
      n = std::min<uint64_t>(available_ - offset_, kReadChunkBytes);
    }
    absl::Status s = PreadFully(fd_, offset_, n, &buf_);
    if (!s.ok()) return s;
    if (buf_.size() != n) {
      return absl::InternalError(
          "the upload's temp file is shorter than written");
    }
    offset_ += n;
    return absl::string_view(buf_);
  }

 private:
  void Run() {
    // after_last_byte_: the upload is acknowledged before its index.
    if (after_last_byte_ && store_->options().testing_indexer_gate != nullptr) {
      store_->options().testing_indexer_gate->WaitForNotification();
    }
    absl::StatusOr<ArchiveIndex> index =
        IndexArchive(*this, store_->options().limits, &sink_);
    failed_.store(!index.ok());
    Decision decision;
    Digest digest;
    uint64_t size;
    {
      absl::MutexLock lock(&mu_);
      index_ = std::move(index);
      indexed_ = true;
      cv_.SignalAll();
      while (decision_ == Decision::kUndecided) cv_.Wait(&mu_);
      decision = decision_;
      digest = digest_;
      size = size_;
    }
    if (decision == Decision::kBackground) {
      store_->CompleteIndex(digest, size, *this);
    }
    absl::MutexLock lock(&mu_);
    done_ = true;
  }

  StoreImpl* const store_;
  int fd_;  // -1 once released.
  const bool after_last_byte_;
  FileBlobSink sink_;
  std::thread thread_;
  std::atomic<bool> failed_{false};

  absl::Mutex mu_;
  absl::CondVar cv_;
  uint64_t available_ ABSL_GUARDED_BY(mu_) = 0;  // Bytes in the file.
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  bool indexed_ ABSL_GUARDED_BY(mu_) = false;
  // Written by the thread before indexed_ is set; read by others after.
  absl::StatusOr<ArchiveIndex> index_ = absl::UnknownError("not indexed");
  Decision decision_ ABSL_GUARDED_BY(mu_) = Decision::kUndecided;
  Digest digest_ ABSL_GUARDED_BY(mu_);
  uint64_t size_ ABSL_GUARDED_BY(mu_) = 0;
  bool done_ ABSL_GUARDED_BY(mu_) = false;

  // Indexer thread only.
  uint64_t offset_ = 0;
  std::string buf_;
};

StoreImpl::~StoreImpl() {
  std::vector<std::shared_ptr<IndexJob>> jobs;
  {
    absl::MutexLock lock(&jobs_mu_);
    jobs.swap(jobs_);
  }
  jobs.clear();  // Each destructor joins its thread (which commits first).
  {
    absl::MutexLock lock(&flush_mu_);
    stop_ = true;
    flush_cv_.SignalAll();
  }
  if (flusher_.joinable()) flusher_.join();
}

absl::Status StoreImpl::CommitTarballFile(const Digest& digest, uint64_t size,
                                          BlobWriter& tarball,
                                          MetadataBatch& batch) {
  absl::StatusOr<Digest> c = tarball.Commit(Durability::kDurable, digest);
  if (!c.ok()) return c.status();
  CrashPoint("tarball_committed");
  store::BlobRecord blob;
  // The same bytes may be stored already as some artefact's file content
  // (the caller holds this digest's commit lock): keep knowing that.
  absl::StatusOr<store::BlobRecord> existing = meta_->GetBlob(digest);
  if (existing.ok()) {
    blob = *existing;
    blob.set_file_use(existing->file_use() ||
                      existing->kind() == store::BlobRecord::FILE);
  } else if (!absl::IsNotFound(existing.status())) {
    return existing.status();
  } else {
    blob.set_created_unix_seconds(NowUnixSeconds());
  }
  blob.set_size(size);
  blob.set_kind(store::BlobRecord::ARTEFACT);
  batch.PutBlob(digest, blob);
  return absl::OkStatus();
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::CommitTarball(
    const Digest& digest, uint64_t size, BlobWriter& tarball) {
  MetadataBatch batch;
  if (absl::Status s = CommitTarballFile(digest, size, tarball, batch);
      !s.ok()) {
    return s;
  }
  store::ArtefactRecord record;
  record.set_index_state(store::ArtefactRecord::INDEXING);
  batch.PutArtefact(digest, record);
  if (absl::Status s = meta_->Commit(std::move(batch), /*sync=*/true);
      !s.ok()) {
    return s;
  }
  CrashPoint("indexing_committed");
  return record;
}

void StoreImpl::Adopt(std::shared_ptr<IndexJob> job, const Digest& digest,
                      uint64_t size) {
  job->Decide(IndexJob::Decision::kBackground, digest, size);
  absl::MutexLock lock(&jobs_mu_);
  jobs_.push_back(std::move(job));
}

void StoreImpl::ReapJobs() {
  std::vector<std::shared_ptr<IndexJob>> done;
  {
    absl::MutexLock lock(&jobs_mu_);
    auto running = std::partition(
        jobs_.begin(), jobs_.end(),
        [](const std::shared_ptr<IndexJob>& j) { return !j->done(); });
    done.assign(std::make_move_iterator(running),
                std::make_move_iterator(jobs_.end()));
    jobs_.erase(running, jobs_.end());
  }
  done.clear();  // Joins their threads, with no lock held.
}

namespace {
absl::Status Rejected(const absl::Status& why) {
  return absl::Status(why.code(), absl::StrCat("artefact rejected, nothing "
                                               "stored: ",
                                               why.message()));
}
}  // namespace

void StoreImpl::CompleteIndex(const Digest& digest, uint64_t size,
                              IndexJob& job) {
  absl::StatusOr<ArchiveIndex>& index = job.WaitIndexed();
  absl::Status s = index.status();
  if (s.ok()) s = job.sink().Drain();
  if (s.ok()) s = FillContentDigests(job.sink().digests(), &*index);
  if (s.ok()) {
    absl::MutexLock lock(&CommitMutex(digest));
    s = CommitArtefact(digest, size, /*tarball=*/nullptr, *index, job.sink(),
                       /*tarball_newly_stored=*/true)
            .status();
  }
  if (!s.ok()) job.sink().Abandon();
  // Before the outcome is noted: a waiter then finds them released.
  job.ReleaseResources();
  if (s.ok()) {
    spdlog::info("indexed {} in the background", digest.ToString());
    NoteIndexOutcome(digest, absl::OkStatus());
  } else if (IsArchiveRejection(s)) {
    Reject(digest, s);
  } else {
    // Left INDEXING: re-derived from the tarball at the next start.
    spdlog::error("indexing {} failed: {}", digest.ToString(), s.ToString());
    NoteIndexOutcome(digest, s);
  }
}

void StoreImpl::Reject(const Digest& digest, const absl::Status& why) {
  spdlog::warn(
      "artefact {} rejected after it was acknowledged: {}; deleting it",
      digest.ToString(),
      why.ToString(absl::StatusToStringMode::kWithNoExtraData));
  absl::Status s;
  {
    absl::MutexLock lock(&CommitMutex(digest));
    // Bytes that are also some artefact's file content stay, as a FILE
    // blob (and so do they if the record cannot be read).
    absl::StatusOr<store::BlobRecord> blob = meta_->GetBlob(digest);
    const bool unused =
        absl::IsNotFound(blob.status()) ||
        (blob.ok() && !blob->file_use() &&
         blob->kind() != store::BlobRecord::FILE && !ClaimedAsFile(digest));
    MetadataBatch batch;
    batch.DeleteFiles(digest);
    batch.DeleteArtefact(digest);
    if (unused) {
      batch.DeleteBlob(digest);
    } else if (blob.ok()) {
      blob->set_kind(store::BlobRecord::FILE);
      batch.PutBlob(digest, *blob);
    }
    // WaitIndexed sees the artefact INDEXING, or gone with its reason:
    // never gone without one.
    absl::MutexLock index_lock(&index_mu_);
    s = meta_->Commit(std::move(batch), /*sync=*/true);
    if (s.ok()) CrashPoint("reject_committed");
    if (s.ok() && unused) s = blobs_->Remove(digest);
    NoteIndexOutcomeLocked(digest, Rejected(why), /*rejected=*/true);
  }
  if (!s.ok()) {
    spdlog::error("deleting rejected artefact {}: {}", digest.ToString(),
                  s.ToString());
  }
}

void StoreImpl::NoteIndexOutcome(const Digest& digest,
                                 const absl::Status& failure, bool rejected) {
  absl::MutexLock lock(&index_mu_);
  NoteIndexOutcomeLocked(digest, failure, rejected);
}

void StoreImpl::NoteIndexOutcomeLocked(const Digest& digest,
                                       const absl::Status& failure,
                                       bool rejected) {
  // The digest's place among the rejections, if it had one, goes: only a
  // new rejection puts it back (at the end).
  auto it = std::find(index_rejection_order_.begin(),
                      index_rejection_order_.end(), digest);
  if (it != index_rejection_order_.end()) index_rejection_order_.erase(it);
  if (!failure.ok()) {
    index_failures_.insert_or_assign(digest, failure);
    if (rejected) index_rejection_order_.push_back(digest);
    while (index_rejection_order_.size() > options_.remembered_rejections) {
      index_failures_.erase(index_rejection_order_.front());
      index_rejection_order_.pop_front();
    }
  } else {
    index_failures_.erase(digest);
  }
  index_cv_.SignalAll();
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::WaitIndexed(
    const Digest& digest, absl::Time deadline) {
  absl::MutexLock lock(&index_mu_);
  while (true) {
    absl::StatusOr<store::ArtefactRecord> record = meta_->GetArtefact(digest);
    if (record.ok() &&
        record->index_state() != store::ArtefactRecord::INDEXING) {
      return record;
    }
    if (auto it = index_failures_.find(digest); it != index_failures_.end()) {
      return it->second;
    }
    if (absl::IsNotFound(record.status())) {
      return absl::NotFoundError(
          absl::StrCat(digest.ToString(), " is not an artefact in the store"));
    }
    if (!record.ok()) return record.status();
    if (index_cv_.WaitWithDeadline(&index_mu_, deadline)) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the index of ", digest.ToString(), " is still being built"));
    }
  }
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::CommitArtefact(
    const Digest& digest, uint64_t size, BlobWriter* tarball,
    const ArchiveIndex& index, FileBlobSink& sink, bool tarball_newly_stored) {
  MetadataBatch batch;
  uint64_t newly = sink.bytes_newly_stored();
  if (tarball != nullptr) {
    if (absl::Status s = CommitTarballFile(digest, size, *tarball, batch);
        !s.ok()) {
      return s;
    }
  } else {
    // Recovery, or an index finished in the background: replace whatever
    // index a crash left behind.
    batch.DeleteFiles(digest);
  }
  if (tarball != nullptr || tarball_newly_stored) newly += size;
  store::ArtefactRecord record;
  record.set_compression(index.compression);
  record.set_file_count(index.entries.size());
  record.set_regular_files(index.regular_files);
  record.set_unpacked_bytes(index.unpacked_bytes);
  *record.mutable_metadata() = index.metadata;
  for (const std::string& p : index.stripped_setid_paths) {
    record.add_stripped_setid_paths(p);
  }
  record.set_stripped_setid_count(index.stripped_setid_count);
  record.set_index_state(store::ArtefactRecord::COMMITTED);
  record.set_bytes_newly_stored(newly);

  batch.PutArtefact(digest, record);
  for (const IndexedEntry& e : index.entries) {
    batch.PutFile(digest, e.path, e.record);
  }
  if (absl::Status s = meta_->Commit(std::move(batch), /*sync=*/true);
      !s.ok()) {
    return s;
  }
  CrashPoint("index_committed");
  {
    absl::ReaderMutexLock lock(&listeners_mu_);
    for (const auto& [id, listener] : listeners_) listener(digest);
  }

  PendingFlush flush;
  flush.artefact = digest;
  flush.record = record;
  flush.files.assign(sink.files().begin(), sink.files().end());
  sink.HandOverClaims();  // One per digest of flush.files.
  {
    absl::MutexLock lock(&flush_mu_);
    flush.seq = ++committed_seq_;
    pending_.push_back(std::move(flush));
    flush_cv_.SignalAll();
  }
  return record;
}

void StoreImpl::FlushLoop() {
  constexpr absl::Duration kFirstRetry = absl::Seconds(1);
  constexpr absl::Duration kMaxRetry = absl::Seconds(60);
  absl::Duration delay = kFirstRetry;  // Before the next retry.
  absl::Time retry_at = absl::InfinitePast();
  while (true) {
    std::vector<PendingFlush> work;
    bool last;  // Stopping: a failure is left to the next start.
    {
      absl::MutexLock lock(&flush_mu_);
      // New work waits too while a failed attempt backs off: it would
      // fail the same way, and each attempt costs a syncfs.
      while (true) {
        if (failed_.empty()) {
          retry_now_ = false;  // Nothing to retry.
          if (!pending_.empty()) break;
          if (stop_) {
            flusher_running_ = false;
            flush_cv_.SignalAll();
            return;
          }
          flush_cv_.Wait(&flush_mu_);
        } else if (retry_now_ || stop_ || absl::Now() >= retry_at) {
          break;
        } else {
          flush_cv_.WaitWithDeadline(&flush_mu_, retry_at);
        }
      }
      last = stop_;
      retry_now_ = false;
      flushing_ = true;
      work.swap(failed_);
      for (PendingFlush& p : pending_) work.push_back(std::move(p));
      pending_.clear();
    }
    absl::Status s = FlushBatch(work);
    absl::MutexLock lock(&flush_mu_);
    flushing_ = false;
    ++flush_attempts_;
    if (!s.ok()) {
      // The artefacts stay COMMITTED (and are served); retried below, or
      // re-derived at the next start.
      spdlog::error(
          "flushing {} indexed artefacts failed{}: {}", work.size(),
          last ? ""
               : absl::StrCat("; retrying in ", absl::FormatDuration(delay)),
          s.ToString());
      flush_error_ = s;
      failed_ = std::move(work);
      retry_at = absl::Now() + delay;
      delay = std::min(delay * 2, kMaxRetry);
      flush_cv_.SignalAll();
      if (last) {
        flusher_running_ = false;
        return;
      }
      continue;
    }
    if (!flush_error_.ok()) {
      spdlog::info("flush retry succeeded: {} indexed artefacts durable",
                   work.size());
    }
    flush_error_ = absl::OkStatus();
    delay = kFirstRetry;
    durable_seq_ = std::max(durable_seq_, work.back().seq);
    flush_cv_.SignalAll();
    // Their BlobRecords are committed: the indexes' claims go (claims_
    // would otherwise grow with every file blob this process ever wrote).
    absl::MutexLock claims_lock(&claims_mu_);
    for (const PendingFlush& f : work) {
      for (const auto& [d, size] : f.files) ReleaseClaimLocked(d);
    }
  }
}

absl::Status StoreImpl::FlushBatch(std::vector<PendingFlush>& work) {
  if (!lost_.empty()) {
    return absl::DataLossError(absl::StrCat(
        "file blob ", lost_.begin()->ToString(),
        " read back wrong after a failed syncfs and was removed; no flush "
        "commits until cairnd restarts and re-derives the artefacts naming "
        "it from their tarballs"));
  }
  // After a failed syncfs, no later one proves the bytes written before it
  // durable (resync_): those are rewritten, each synced on its own.
  for (auto it = resync_.begin(); it != resync_.end();) {
    const Digest d = *it;
    absl::Status s = RewriteFileBlobDurably(d);
    if (absl::IsDataLoss(s)) {
      lost_.insert(d);
      resync_.erase(it++);
      spdlog::error("{}", std::string(s.message()));
      return s;
    }
    if (!s.ok()) {
      return absl::Status(
          s.code(), absl::StrCat("rewriting file blob ", d.ToString(),
                                 " after a failed syncfs: ", s.message()));
    }
    resync_.erase(it++);
    absl::MutexLock lock(&unsynced_mu_);
    unsynced_.erase(d);  // Synced on its own now.
  }
  // Every file blob these artefacts reference was renamed into place
  // before their index commit, so one syncfs makes all of them durable.
  uint64_t synced_up_to = 0;  // Renames before this syncfs.
  {
    absl::MutexLock lock(&unsynced_mu_);
    synced_up_to = unsynced_renames_;
  }
  if (absl::Status s = blobs_->SyncFilesystem(); !s.ok()) {
    // Any blob renamed unsynced so far may be what failed (those renamed
    // later are covered by the next syncfs all the same).
    absl::MutexLock lock(&unsynced_mu_);
    for (const auto& [d, rename] : unsynced_) resync_.insert(d);
    return s;
  }
  {
    // Not those renamed (again) during the syncfs.
    absl::MutexLock lock(&unsynced_mu_);
    absl::erase_if(unsynced_, [&](const auto& entry) {
      return entry.second <= synced_up_to;
    });
  }
  // The file blobs whose record is missing, or lacks file_use (a
  // tarball's bytes that are also this file's content: marked, so that
  // rejecting that tarball keeps them), by commit-lock stripe.
  std::vector<std::vector<std::pair<Digest, uint64_t>>> stripes(kCommitStripes);
  for (const PendingFlush& f : work) {
    for (const auto& [d, size] : f.files) {
      absl::StatusOr<store::BlobRecord> has = meta_->GetBlob(d);
      if (has.ok() && has->file_use()) continue;
      if (!has.ok() && !absl::IsNotFound(has.status())) return has.status();
      stripes[CommitStripe(d)].emplace_back(d, size);
    }
  }
  if (options_.testing_before_flush) {
    if (absl::Status s = options_.testing_before_flush(); !s.ok()) return s;
  }
  // Read again and written under each digest's commit lock: a tarball with
  // the same bytes may have been committed since (its record is then
  // marked, not replaced by a FILE one), or Reject may have rewritten the
  // record. Unsynced: the synced commit below syncs the WAL before it.
  const int64_t now = NowUnixSeconds();
  for (int i = 0; i < kCommitStripes; ++i) {
    if (stripes[i].empty()) continue;
    absl::MutexLock lock(&commit_mu_[i]);
    MetadataBatch batch;
    for (const auto& [d, size] : stripes[i]) {
      absl::StatusOr<store::BlobRecord> has = meta_->GetBlob(d);
      if (has.ok()) {
        if (has->file_use()) continue;
        has->set_file_use(true);
        batch.PutBlob(d, *has);
      } else if (absl::IsNotFound(has.status())) {
        store::BlobRecord blob;
        blob.set_size(size);
        blob.set_created_unix_seconds(now);
        blob.set_kind(store::BlobRecord::FILE);
        blob.set_file_use(true);
        batch.PutBlob(d, blob);
      } else {
        return has.status();
      }
    }
    if (absl::Status s = meta_->Commit(std::move(batch), /*sync=*/false);
        !s.ok()) {
      return s;
    }
  }
  CrashPoint("flush_records_written");
  MetadataBatch batch;
  for (PendingFlush& f : work) {
    f.record.set_index_state(store::ArtefactRecord::DURABLE);
    batch.PutArtefact(f.artefact, f.record);
  }
  return meta_->Commit(std::move(batch), /*sync=*/true);
}

absl::Status StoreImpl::RewriteFileBlobDurably(const Digest& digest) {
  // Whether an index claims the blob or a record names it. Else it is an
  // orphan (its upload gave up), and its file goes rather than being kept
  // with bytes that may not be on disk. Caller holds CommitMutex(digest).
  const auto named_or_remove = [&]() -> absl::StatusOr<bool> {
    if (ClaimedAsFile(digest)) return true;
    absl::StatusOr<bool> recorded = meta_->HasBlob(digest);
    if (!recorded.ok() || *recorded) return recorded;
    absl::Status removed = blobs_->Remove(digest);
    if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
    return false;
  };
  {
    absl::MutexLock lock(&CommitMutex(digest));
    absl::StatusOr<bool> named = named_or_remove();
    if (!named.ok() || !*named) return named.status();
  }
  absl::StatusOr<int> fd = blobs_->OpenFd(digest);
  if (absl::IsNotFound(fd.status())) return absl::OkStatus();
  if (!fd.ok()) return fd.status();
  UniqueFd owned(*fd);
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer = blobs_->NewWriter();
  if (!writer.ok()) return writer.status();
  std::string chunk;
  absl::Status read;
  for (uint64_t offset = 0;; offset += chunk.size()) {
    read = PreadFully(owned.get(), offset, 1 << 20, &chunk);
    if (!read.ok() || chunk.empty()) break;
    if (absl::Status s = (*writer)->Append(chunk); !s.ok()) return s;
  }
  // Under the commit lock, as every rename of a file blob into place.
  absl::MutexLock lock(&CommitMutex(digest));
  absl::StatusOr<bool> named = named_or_remove();
  if (!named.ok() || !*named) return named.status();
  absl::Status s =
      read.ok()
          ? (*writer)->Commit(Durability::kDurableReplace, digest).status()
          : read;
  if (absl::IsDataLoss(s)) {
    // Wrong bytes (or EIO reading them): nothing may keep this file.
    absl::Status removed = blobs_->Remove(digest);
    if (!removed.ok() && !absl::IsNotFound(removed)) return removed;
    return absl::DataLossError(absl::StrCat(
        "file blob ", digest.ToString(),
        " read back wrong after a failed syncfs and was removed (", s.message(),
        "); the artefacts naming it are re-derived from their tarballs at the "
        "next start"));
  }
  return s;
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::Reindex(
    const Digest& digest, const ArchiveLimits& limits) {
  absl::StatusOr<int> fd = blobs_->OpenFd(digest);
  if (!fd.ok()) return fd.status();
  FdSource source(*fd);
  FileBlobSink sink(this, /*replace_unrecorded=*/true);
  absl::StatusOr<ArchiveIndex> index = IndexArchive(source, limits, &sink);
  if (!index.ok()) return index.status();
  if (absl::Status s = sink.Drain(); !s.ok()) return s;
  if (absl::Status s = FillContentDigests(sink.digests(), &*index); !s.ok()) {
    return s;
  }
  absl::MutexLock lock(&CommitMutex(digest));
  absl::StatusOr<uint64_t> size = blobs_->FileSize(digest);
  if (!size.ok()) return size.status();
  return CommitArtefact(digest, *size, /*tarball=*/nullptr, *index, sink);
}

absl::Status StoreImpl::Recover() {
  std::vector<std::pair<Digest, store::ArtefactRecord::IndexState>> stale;
  absl::Status s = meta_->ListArtefacts(
      [&](const Digest& d, const store::ArtefactRecord& r) {
        if (r.index_state() != store::ArtefactRecord::DURABLE) {
          stale.emplace_back(d, r.index_state());
        }
        return true;
      });
  if (!s.ok()) return s;
  for (const auto& [d, state] : stale) {
    spdlog::info("re-deriving the file index of {} after an unclean stop",
                 d.ToString());
    // A crash may have left file blobs that were renamed but never flushed:
    // they have no record, so Reindex writes them again.
    // An artefact whose index was committed was accepted under the limits
    // of its day: limits lowered since must not keep the store from
    // opening. One still INDEXING was never accepted: today's apply.
    const ArchiveLimits limits =
        state == store::ArtefactRecord::INDEXING ? options_.limits : kNoLimits;
    absl::StatusOr<store::ArtefactRecord> r = Reindex(d, limits);
    if (!r.ok() && state == store::ArtefactRecord::INDEXING &&
        IsArchiveRejection(r.status())) {
      // Acknowledged before its index, and the archive proves unsafe.
      Reject(d, r.status());
      continue;
    }
    if (!r.ok() && state == store::ArtefactRecord::INDEXING) {
      // Never served (no file records): it stays INDEXING with its
      // failure remembered, as when a background index fails, and is
      // tried again at the next start. The rest of the store opens.
      spdlog::error(
          "re-deriving the index of {} failed: {}; it stays "
          "unindexed until the next start",
          d.ToString(), r.status().ToString());
      NoteIndexOutcome(d, r.status());
      continue;
    }
    if (!r.ok()) {
      return absl::Status(
          r.status().code(),
          absl::StrCat("re-deriving the index of ", d.ToString(),
                       " failed: ", r.status().message()));
    }
    ++recovered_;
  }
  return absl::OkStatus();
}

namespace {

class UploadImpl : public ArtefactUpload {
 public:
  // `job` is null when the expected digest is already stored (the bytes are
  // then only hashed); else `writer` receives the tarball and `job` indexes
  // it.
  UploadImpl(StoreImpl* store, UploadOptions options,
             std::unique_ptr<BlobWriter> writer, std::shared_ptr<IndexJob> job)
      : store_(store),
        options_(std::move(options)),
        writer_(std::move(writer)),
        job_(std::move(job)) {}

  ~UploadImpl() override {
    if (job_ != nullptr && !job_->decided()) {
      job_->Close(/*abandon=*/true);
      job_->Decide(IndexJob::Decision::kAbandon);
    }
    // writer_'s destructor removes the tarball's temp file if not committed.
    // File blobs already renamed into place stay: other artefacts may
    // reference the same content, and they are harmless unreferenced.
  }

  absl::Status Append(absl::string_view data) override {
    if (finished_) return absl::FailedPreconditionError("upload finished");
    if (options_.expected_size.has_value() &&
        size_ + data.size() > *options_.expected_size) {
      return absl::DataLossError(
          absl::StrCat("upload is larger than its expected size of ",
                       *options_.expected_size, " bytes"));
    }
    size_ += data.size();
    if (job_ == nullptr) {
      hasher_.Update(data);
      return absl::OkStatus();
    }
    if (absl::Status s = writer_->Append(data); !s.ok()) return s;
    job_->Advance(data.size());
    if (job_->failed() && !options_.expected_digest.has_value()) {
      // Fail fast on an unsafe or malformed archive (uploads acknowledged
      // before their index never do: their indexer starts after the last
      // byte). With an expected digest, keep reading: a digest mismatch
      // (DataLoss) is the better diagnosis if the bytes were damaged in
      // transit.
      return IndexError();
    }
    return absl::OkStatus();
  }

  absl::StatusOr<UploadResult> Finish() override {
    if (finished_) return absl::FailedPreconditionError("upload finished");
    finished_ = true;
    UploadResult result;
    result.size = size_;

    if (job_ == nullptr) {
      result.digest = hasher_.Finish();
    } else {
      job_->Close(/*abandon=*/false);
      absl::StatusOr<Digest> d = writer_->Finish();
      if (!d.ok()) return d.status();
      result.digest = *d;
    }
    if (options_.expected_size.has_value() &&
        size_ != *options_.expected_size) {
      return absl::DataLossError(absl::StrCat(
          "upload has ", size_, " bytes, expected ", *options_.expected_size));
    }
    if (options_.expected_digest.has_value() &&
        *options_.expected_digest != result.digest) {
      return absl::DataLossError(absl::StrCat(
          "upload hashes to ", result.digest.ToString(), ", expected ",
          options_.expected_digest->ToString(), "; nothing was stored"));
    }
    if (job_ == nullptr) return Existing(std::move(result));
    if (options_.acknowledge_before_index) {
      return AcknowledgeBeforeIndex(std::move(result));
    }

    if (absl::Status s = IndexError(); !s.ok()) return s;
    absl::StatusOr<ArchiveIndex>& index = job_->WaitIndexed();
    FileBlobSink& sink = job_->sink();
    if (absl::Status s = sink.Drain(); !s.ok()) return s;
    if (absl::Status s = FillContentDigests(sink.digests(), &*index); !s.ok()) {
      return s;
    }
    {
      absl::MutexLock lock(&store_->CommitMutex(result.digest));
      absl::StatusOr<bool> have = store_->HasArtefact(result.digest);
      if (!have.ok()) return have.status();
      if (!*have) {
        absl::StatusOr<store::ArtefactRecord> record = store_->CommitArtefact(
            result.digest, size_, writer_.get(), *index, sink);
        if (!record.ok()) return record.status();
        result.artefact = *std::move(record);
        job_->Decide(IndexJob::Decision::kInline);
        return result;
      }
    }
    // A concurrent upload won.
    return Existing(std::move(result));
  }

 private:
  // The indexer's error once it finished (waits for it): the archive's
  // rejection, or the failure (I/O, memory) that stopped it; OK otherwise.
  // Nothing is stored either way.
  absl::Status IndexError() {
    absl::StatusOr<ArchiveIndex>& index = job_->WaitIndexed();
    if (index.ok()) return absl::OkStatus();
    if (IsArchiveRejection(index.status())) return Rejected(index.status());
    return absl::Status(index.status().code(),
                        absl::StrCat("indexing the archive failed, nothing "
                                     "stored: ",
                                     index.status().message()));
  }

  // Commits the durable tarball with an INDEXING record and leaves the
  // index to the job's thread.
  absl::StatusOr<UploadResult> AcknowledgeBeforeIndex(UploadResult result) {
    if (job_->failed()) return IndexError();
    {
      absl::MutexLock lock(&store_->CommitMutex(result.digest));
      absl::StatusOr<bool> have = store_->HasArtefact(result.digest);
      if (!have.ok()) return have.status();
      if (!*have) {
        absl::StatusOr<store::ArtefactRecord> record =
            store_->CommitTarball(result.digest, size_, *writer_);
        if (!record.ok()) return record.status();
        store_->Adopt(std::move(job_), result.digest, size_);
        result.artefact = *std::move(record);
        return result;
      }
    }
    return Existing(std::move(result));
  }

  // The digest is stored already. Unless the caller asked for an early
  // acknowledgement, waits for an index still being built.
  absl::StatusOr<UploadResult> Existing(UploadResult result) {
    absl::StatusOr<store::ArtefactRecord> record =
        options_.acknowledge_before_index
            ? store_->metadata().GetArtefact(result.digest)
            : WaitForTheIndex(result.digest);
    if (options_.acknowledge_before_index &&
        absl::IsNotFound(record.status())) {
      // Rejected (and deleted) since BeginUpload found it: its rejection,
      // as a push that waits gets it.
      record = store_->WaitIndexed(result.digest, absl::Now());
    }
    if (!record.ok()) return record.status();
    result.already_present = true;
    result.artefact = *std::move(record);
    result.artefact.set_bytes_newly_stored(0);
    return result;
  }

  // Store::WaitIndexed, in slices of 1 s between which
  // UploadOptions::cancelled is asked.
  absl::StatusOr<store::ArtefactRecord> WaitForTheIndex(const Digest& digest) {
    for (;;) {
      absl::StatusOr<store::ArtefactRecord> record = store_->WaitIndexed(
          digest, options_.cancelled ? absl::Now() + absl::Seconds(1)
                                     : absl::InfiniteFuture());
      if (!absl::IsDeadlineExceeded(record.status())) return record;
      if (options_.cancelled()) {
        return absl::CancelledError(
            absl::StrCat("gave up waiting for the index of ", digest.ToString(),
                         " (another upload's): the caller cancelled"));
      }
    }
  }

  StoreImpl* store_;
  const UploadOptions options_;
  std::unique_ptr<BlobWriter> writer_;
  std::shared_ptr<IndexJob> job_;
  Sha256 hasher_;  // Only when job_ is null.
  uint64_t size_ = 0;
  bool finished_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ArtefactUpload>> StoreImpl::BeginUpload(
    const UploadOptions& options) {
  ReapJobs();
  bool already_present = false;
  if (options.expected_digest.has_value()) {
    absl::StatusOr<bool> has = HasArtefact(*options.expected_digest);
    if (!has.ok()) return has.status();
    already_present = *has;
  }
  if (already_present) {
    return std::make_unique<UploadImpl>(this, options, nullptr, nullptr);
  }
  // The tarball is committed durably before Write returns: writing it back
  // while it streams in leaves little for that fdatasync.
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer =
      blobs_->NewWriter(WriterHashing::kHash, kTarballWriteBackBytes);
  if (!writer.ok()) return writer.status();
  absl::StatusOr<int> reader = (*writer)->OpenReader();
  if (!reader.ok()) return reader.status();
  auto job = std::make_shared<IndexJob>(this, *reader,
                                        options.acknowledge_before_index);
  job->Start();
  return std::make_unique<UploadImpl>(this, options, *std::move(writer),
                                      std::move(job));
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(
    const StoreOptions& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("store data directory is empty");
  }
  if (mkdir(options.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    // ENOENT (no parent), EACCES, EROFS, ENOSPC...: each its own code.
    return absl::ErrnoToStatus(
        errno, absl::StrCat("cannot create data directory ", options.data_dir));
  }
  // The metadata first: its lock keeps a second store (another cairnd on
  // the same data dir) from getting as far as BlobStore::Open, which empties
  // tmp/ of the running one's uploads.
  absl::StatusOr<std::unique_ptr<MetadataDb>> meta =
      MetadataDb::Open(options.data_dir + "/meta");
  if (!meta.ok()) return meta.status();
  absl::StatusOr<std::unique_ptr<BlobStore>> blobs =
      BlobStore::Open(options.data_dir);
  if (!blobs.ok()) return blobs.status();
  auto store =
      std::make_unique<StoreImpl>(options, *std::move(blobs), *std::move(meta));
  if (absl::Status s = store->Init(); !s.ok()) return s;
  return store;
}

}  // namespace cairn
