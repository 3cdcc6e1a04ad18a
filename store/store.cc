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

namespace cairn {
namespace {

// Files up to this size are hashed in memory before anything is written, so
// content the store already holds costs no file I/O at all.
constexpr size_t kFileSpillBytes = 1 << 20;
// Chunk size when re-reading a stored tarball (recovery).
constexpr size_t kReadChunkBytes = 1 << 20;

int64_t NowUnixSeconds() { return absl::ToUnixSeconds(absl::Now()); }

// Chunks handed from the upload thread to the indexer thread. The producer
// blocks while more than `capacity` bytes are queued. Thread-safe.
class ChunkQueue {
 public:
  explicit ChunkQueue(size_t capacity) : capacity_(capacity) {}

  // Queues a copy of `data`. Returns false (and drops it) if the consumer
  // has stopped.
  bool Push(std::string data) {
    absl::MutexLock lock(&mu_);
    while (!consumer_done_ && queued_bytes_ > 0 &&
           queued_bytes_ + data.size() > capacity_) {
      cv_.Wait(&mu_);
    }
    if (consumer_done_) return false;
    queued_bytes_ += data.size();
    chunks_.push_back(std::move(data));
    cv_.SignalAll();
    return true;
  }

  // No more data will come; with `abandon`, the consumer sees Cancelled.
  void Close(bool abandon) {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    abandoned_ = abandon;
    cv_.SignalAll();
  }

  // Consumer: the next chunk, empty at end. The string stays valid until the
  // next call.
  absl::StatusOr<absl::string_view> Next() {
    absl::MutexLock lock(&mu_);
    if (current_size_ > 0) {
      queued_bytes_ -= current_size_;
      current_size_ = 0;
      cv_.SignalAll();
    }
    while (chunks_.empty() && !closed_) cv_.Wait(&mu_);
    if (abandoned_) return absl::CancelledError("upload abandoned");
    if (chunks_.empty()) return absl::string_view();
    current_ = std::move(chunks_.front());
    chunks_.pop_front();
    current_size_ = current_.size();
    return absl::string_view(current_);
  }

  // Consumer: stops; producers no longer block.
  void ConsumerDone() {
    absl::MutexLock lock(&mu_);
    consumer_done_ = true;
    chunks_.clear();
    cv_.SignalAll();
  }

 private:
  const size_t capacity_;
  absl::Mutex mu_;
  absl::CondVar cv_;
  std::deque<std::string> chunks_ ABSL_GUARDED_BY(mu_);
  size_t queued_bytes_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;
  bool consumer_done_ ABSL_GUARDED_BY(mu_) = false;
  // Consumer-owned.
  std::string current_;
  size_t current_size_ ABSL_GUARDED_BY(mu_) = 0;
};

class QueueSource : public ByteSource {
 public:
  explicit QueueSource(ChunkQueue* queue) : queue_(queue) {}
  absl::StatusOr<absl::string_view> Next() override { return queue_->Next(); }

 private:
  ChunkQueue* queue_;
};

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

// Writes each regular file of an artefact as its own blob, skipping content
// the store already holds. The archive indexer calls it on its thread; the
// dedup check and the writes run on a writer thread of the sink's own, so
// inflating and hashing overlap with writing. Ops pass through a queue
// bounded to kSinkQueueBytes. Files up to kFileSpillBytes are buffered and
// handed over whole (and cost no I/O when already stored); larger ones are
// streamed to a temp blob and dropped at the end if already stored.
class FileBlobSink : public FileContentSink {
 public:
  explicit FileBlobSink(StoreImpl* store);
  // Stops the writer thread, discarding queued work.
  ~FileBlobSink() override;

  absl::Status BeginFile(absl::string_view path, uint64_t size) override;
  absl::Status Append(absl::string_view data) override;
  absl::Status EndFile(const Digest& digest) override;

  // Waits until every file handed over is written (or found stored) and
  // stops the writer. Returns the writer's first error. Call once, after
  // the indexer finished; files() and bytes_newly_stored() are valid after.
  absl::Status Drain();

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

  ~StoreImpl() override {
    {
      absl::MutexLock lock(&flush_mu_);
      stop_ = true;
      flush_cv_.SignalAll();
    }
    if (flusher_.joinable()) flusher_.join();
  }

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
    while (durable_seq_ < target && flush_error_.ok())
      flush_cv_.Wait(&flush_mu_);
    return flush_error_;
  }

  int recovered_artefacts() const override { return recovered_; }

  // --- Used by uploads and sinks. ---

  BlobStore& blobs() { return *blobs_; }

  // See StoreOptions::debug_crash_point.
  void CrashPoint(absl::string_view point) const {
    if (options_.debug_crash_point == point) {
      spdlog::warn("debug crash point {} reached: killing this process",
                   std::string(point));
      spdlog::default_logger()->flush();
      kill(getpid(), SIGKILL);
    }
  }
  const StoreOptions& options() const { return options_; }

  // Whether a file blob with this digest is already on disk, recorded or
  // written (renamed into place) by this process.
  absl::StatusOr<bool> HaveFileBlob(const Digest& digest) {
    {
      absl::MutexLock lock(&written_mu_);
      if (written_.contains(digest)) return true;
    }
    return meta_->HasBlob(digest);
  }

  void NoteWritten(const Digest& digest) {
    absl::MutexLock lock(&written_mu_);
    written_.insert(digest);
  }

  // Serialises commits of one digest.
  absl::Mutex& CommitMutex(const Digest& d) {
    return commit_mu_[static_cast<uint8_t>(d.raw()[0]) % kCommitStripes];
  }

  // Commits a verified artefact: the tarball's writer (or null when the
  // tarball blob is already on disk and durable), its index, and queues the
  // flush of its file blobs. Caller holds CommitMutex(digest).
  absl::StatusOr<store::ArtefactRecord> CommitArtefact(
      const Digest& digest, uint64_t size, BlobWriter* tarball,
      const ArchiveIndex& index, const FileBlobSink& sink);

  // Reads and indexes a stored tarball (recovery).
  absl::StatusOr<store::ArtefactRecord> Reindex(const Digest& digest);

 private:
  static constexpr int kCommitStripes = 64;

  absl::Status Recover();
  void FlushLoop();

  const StoreOptions options_;
  std::unique_ptr<BlobStore> blobs_;
  std::unique_ptr<MetadataDb> meta_;
  int recovered_ = 0;

  absl::Mutex written_mu_;
  absl::flat_hash_set<Digest> written_ ABSL_GUARDED_BY(written_mu_);

  absl::Mutex commit_mu_[kCommitStripes];

  absl::Mutex flush_mu_;
  absl::CondVar flush_cv_;
  std::vector<PendingFlush> pending_ ABSL_GUARDED_BY(flush_mu_);
  uint64_t committed_seq_ ABSL_GUARDED_BY(flush_mu_) = 0;
  uint64_t durable_seq_ ABSL_GUARDED_BY(flush_mu_) = 0;
  absl::Status flush_error_ ABSL_GUARDED_BY(flush_mu_);
  bool stop_ ABSL_GUARDED_BY(flush_mu_) = false;
  std::thread flusher_;
};

FileBlobSink::FileBlobSink(StoreImpl* store) : store_(store) {
  writer_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "cairn-files");
    Run();
  });
}

FileBlobSink::~FileBlobSink() {
  {
    absl::MutexLock lock(&mu_);
    closing_ = true;
    abort_ = true;
    cv_.SignalAll();
  }
  if (writer_thread_.joinable()) writer_thread_.join();
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
  if (*have) return absl::OkStatus();
  if (writer == nullptr) {
    absl::StatusOr<std::unique_ptr<BlobWriter>> w =
        store_->blobs().NewWriter(WriterHashing::kCallerHashes);
    if (!w.ok()) return w.status();
    writer = *std::move(w);
    if (absl::Status s = writer->Append(whole); !s.ok()) return s;
  }
  // The archive indexer hashed exactly these bytes.
  absl::StatusOr<Digest> committed =
      writer->Commit(Durability::kDeferred, digest);
  if (!committed.ok()) return committed.status();
  store_->NoteWritten(digest);
  store_->CrashPoint("file_blob_written");
  bytes_newly_stored_ += size;
  return absl::OkStatus();
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::CommitArtefact(
    const Digest& digest, uint64_t size, BlobWriter* tarball,
    const ArchiveIndex& index, const FileBlobSink& sink) {
  uint64_t newly = sink.bytes_newly_stored();
  if (tarball != nullptr) {
    absl::StatusOr<Digest> c = tarball->Commit(Durability::kDurable, digest);
    if (!c.ok()) return c.status();
    newly += size;
    CrashPoint("tarball_committed");
  }
  store::ArtefactRecord record;
  record.set_compression(index.compression);
  record.set_file_count(index.entries.size());
  record.set_regular_files(index.regular_files);
  record.set_unpacked_bytes(index.unpacked_bytes);
  *record.mutable_metadata() = index.metadata;
  for (const std::string& p : index.stripped_setid_paths) {
    record.add_stripped_setid_paths(p);
  }
  record.set_index_state(store::ArtefactRecord::COMMITTED);
  record.set_bytes_newly_stored(newly);

  MetadataBatch batch;
  if (tarball != nullptr) {
    store::BlobRecord blob;
    blob.set_size(size);
    blob.set_created_unix_seconds(NowUnixSeconds());
    blob.set_kind(store::BlobRecord::ARTEFACT);
    batch.PutBlob(digest, blob);
  } else {
    // Recovery: replace whatever index a crash left behind.
    batch.DeleteFiles(digest);
  }
  batch.PutArtefact(digest, record);
  for (const IndexedEntry& e : index.entries) {
    batch.PutFile(digest, e.path, e.record);
  }
  if (absl::Status s = meta_->Commit(std::move(batch), /*sync=*/true);
      !s.ok()) {
    return s;
  }
  CrashPoint("index_committed");

  PendingFlush flush;
  flush.artefact = digest;
  flush.record = record;
  flush.files.assign(sink.files().begin(), sink.files().end());
  {
    absl::MutexLock lock(&flush_mu_);
    flush.seq = ++committed_seq_;
    pending_.push_back(std::move(flush));
    flush_cv_.SignalAll();
  }
  return record;
}

void StoreImpl::FlushLoop() {
  while (true) {
    std::vector<PendingFlush> work;
    {
      absl::MutexLock lock(&flush_mu_);
      while (pending_.empty() && !stop_) flush_cv_.Wait(&flush_mu_);
      if (pending_.empty()) return;  // stop_ and nothing left.
      work.swap(pending_);
    }
    // Every file blob these artefacts reference was renamed into place
    // before their index commit, so one syncfs makes all of them durable.
    absl::Status s = blobs_->SyncFilesystem();
    MetadataBatch batch;
    if (s.ok()) {
      const int64_t now = NowUnixSeconds();
      for (PendingFlush& f : work) {
        for (const auto& [d, size] : f.files) {
          absl::StatusOr<bool> has = meta_->HasBlob(d);
          if (!has.ok()) {
            s = has.status();
            break;
          }
          if (*has) continue;
          store::BlobRecord blob;
          blob.set_size(size);
          blob.set_created_unix_seconds(now);
          blob.set_kind(store::BlobRecord::FILE);
          batch.PutBlob(d, blob);
        }
        f.record.set_index_state(store::ArtefactRecord::DURABLE);
        batch.PutArtefact(f.artefact, f.record);
      }
    }
    if (s.ok()) s = meta_->Commit(std::move(batch), /*sync=*/true);
    absl::MutexLock lock(&flush_mu_);
    if (!s.ok()) {
      // The artefacts stay COMMITTED and are re-derived at the next start.
      spdlog::error("flushing file blobs failed: {}", s.ToString());
      flush_error_ = s;
      flush_cv_.SignalAll();
      continue;
    }
    durable_seq_ = std::max(durable_seq_, work.back().seq);
    flush_cv_.SignalAll();
  }
}

absl::StatusOr<store::ArtefactRecord> StoreImpl::Reindex(const Digest& digest) {
  absl::StatusOr<int> fd = blobs_->OpenFd(digest);
  if (!fd.ok()) return fd.status();
  FdSource source(*fd);
  FileBlobSink sink(this);
  absl::StatusOr<ArchiveIndex> index =
      IndexArchive(source, options_.limits, &sink);
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
  std::vector<Digest> stale;
  absl::Status s = meta_->ListArtefacts(
      [&](const Digest& d, const store::ArtefactRecord& r) {
        if (r.index_state() != store::ArtefactRecord::DURABLE) {
          stale.push_back(d);
        }
        return true;
      });
  if (!s.ok()) return s;
  for (const Digest& d : stale) {
    spdlog::info("re-deriving the file index of {} after an unclean stop",
                 d.ToString());
    // A crash may have left file blobs that were renamed but never flushed:
    // they have no record, so Reindex writes them again.
    absl::StatusOr<store::ArtefactRecord> r = Reindex(d);
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
  UploadImpl(StoreImpl* store, UploadOptions options,
             std::unique_ptr<BlobWriter> writer, bool already_present)
      : store_(store),
        options_(std::move(options)),
        writer_(std::move(writer)),
        already_present_(already_present),
        queue_(store->options().index_queue_bytes),
        sink_(store) {
    if (!already_present_) {
      indexer_ = std::thread([this] {
        pthread_setname_np(pthread_self(), "cairn-index");
        QueueSource source(&queue_);
        index_ = IndexArchive(source, store_->options().limits, &sink_);
        queue_.ConsumerDone();
        indexer_failed_.store(!index_.ok());
      });
    }
  }

  ~UploadImpl() override {
    queue_.Close(/*abandon=*/true);
    if (indexer_.joinable()) indexer_.join();
    // writer_'s destructor removes the tarball's temp file if not committed.
    // File blobs already renamed into place stay: other artefacts may
    // reference the same content, and they are harmless unreferenced.
  }

  absl::Status Append(absl::string_view data) override {
    return AppendImpl(data, nullptr);
  }

  absl::Status AppendOwned(std::string data) override {
    return AppendImpl(data, &data);
  }

  absl::StatusOr<UploadResult> Finish() override {
    if (finished_) return absl::FailedPreconditionError("upload finished");
    finished_ = true;
    UploadResult result;
    result.size = size_;

    if (already_present_) {
      result.digest = hasher_.Finish();
    } else {
      queue_.Close(/*abandon=*/false);
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
    if (already_present_) return Existing(std::move(result));

    if (absl::Status s = JoinIndexer(); !s.ok()) return s;
    if (absl::Status s = sink_.Drain(); !s.ok()) return s;
    if (absl::Status s = FillContentDigests(sink_.digests(), &*index_);
        !s.ok()) {
      return s;
    }

    absl::MutexLock lock(&store_->CommitMutex(result.digest));
    absl::StatusOr<bool> have = store_->metadata().HasBlob(result.digest);
    if (!have.ok()) return have.status();
    if (*have) return Existing(std::move(result));  // A concurrent upload won.
    absl::StatusOr<store::ArtefactRecord> record = store_->CommitArtefact(
        result.digest, size_, writer_.get(), *index_, sink_);
    if (!record.ok()) return record.status();
    result.artefact = *std::move(record);
    return result;
  }

 private:
  // Appends `data`; when `owned` is set it holds the same bytes and is
  // moved to the indexer instead of copied.
  absl::Status AppendImpl(absl::string_view data, std::string* owned) {
    if (finished_) return absl::FailedPreconditionError("upload finished");
    if (options_.expected_size.has_value() &&
        size_ + data.size() > *options_.expected_size) {
      return absl::DataLossError(
          absl::StrCat("upload is larger than its expected size of ",
                       *options_.expected_size, " bytes"));
    }
    size_ += data.size();
    if (already_present_) {
      hasher_.Update(data);
      return absl::OkStatus();
    }
    if (absl::Status s = writer_->Append(data); !s.ok()) return s;
    if (!indexer_failed_.load()) {
      queue_.Push(owned != nullptr ? std::move(*owned) : std::string(data));
    } else if (!options_.expected_digest.has_value()) {
      // Fail fast on an unsafe or malformed archive. With an expected
      // digest, keep reading: a digest mismatch (DataLoss) is the better
      // diagnosis if the bytes were damaged in transit.
      return JoinIndexer();
    }
    return absl::OkStatus();
  }

  absl::Status JoinIndexer() {
    if (indexer_.joinable()) indexer_.join();
    if (!index_.ok()) {
      return absl::Status(index_.status().code(),
                          absl::StrCat("artefact rejected, nothing stored: ",
                                       index_.status().message()));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<UploadResult> Existing(UploadResult result) {
    absl::StatusOr<store::ArtefactRecord> record =
        store_->metadata().GetArtefact(result.digest);
    if (!record.ok()) return record.status();
    result.already_present = true;
    result.artefact = *std::move(record);
    result.artefact.set_bytes_newly_stored(0);
    return result;
  }

  StoreImpl* store_;
  const UploadOptions options_;
  std::unique_ptr<BlobWriter> writer_;
  const bool already_present_;
  ChunkQueue queue_;
  FileBlobSink sink_;
  std::thread indexer_;
  absl::StatusOr<ArchiveIndex> index_ = absl::UnknownError("not indexed");
  std::atomic<bool> indexer_failed_{false};
  Sha256 hasher_;  // Only when already_present_.
  uint64_t size_ = 0;
  bool finished_ = false;
};

}  // namespace

absl::StatusOr<std::unique_ptr<ArtefactUpload>> StoreImpl::BeginUpload(
    const UploadOptions& options) {
  bool already_present = false;
  if (options.expected_digest.has_value()) {
    absl::StatusOr<bool> has = meta_->HasBlob(*options.expected_digest);
    if (!has.ok()) return has.status();
    already_present = *has;
  }
  std::unique_ptr<BlobWriter> writer;
  if (!already_present) {
    absl::StatusOr<std::unique_ptr<BlobWriter>> w = blobs_->NewWriter();
    if (!w.ok()) return w.status();
    writer = *std::move(w);
  }
  return std::make_unique<UploadImpl>(this, options, std::move(writer),
                                      already_present);
}

absl::StatusOr<std::unique_ptr<Store>> Store::Open(
    const StoreOptions& options) {
  if (options.data_dir.empty()) {
    return absl::InvalidArgumentError("store data directory is empty");
  }
  if (mkdir(options.data_dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::PermissionDeniedError(
        absl::StrCat("cannot create data directory ", options.data_dir, ": ",
                     strerror(errno)));
  }
  absl::StatusOr<std::unique_ptr<BlobStore>> blobs =
      BlobStore::Open(options.data_dir);
  if (!blobs.ok()) return blobs.status();
  absl::StatusOr<std::unique_ptr<MetadataDb>> meta =
      MetadataDb::Open(options.data_dir + "/meta");
  if (!meta.ok()) return meta.status();
  auto store =
      std::make_unique<StoreImpl>(options, *std::move(blobs), *std::move(meta));
  if (absl::Status s = store->Init(); !s.ok()) return s;
  return store;
}

}  // namespace cairn
