// Copyright 2026 The Cairn Authors.

#include "store/blob_store.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>  // renameat2, RENAME_NOREPLACE
#include <sys/random.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cstring>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "store/errno_status.h"
#include "store/paths.h"

namespace cairn {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kTempSuffix[] = ".partial";
constexpr int kShards = 256;

// strerror(3) text of `err`, thread-safe.
std::string ErrnoText(int err) {
  char buf[256];
  // GNU strerror_r: returns a pointer to the text (maybe not into buf).
  return absl::StrCat(strerror_r(err, buf, sizeof(buf)), " (errno ", err, ")");
}

// The status code for an errno from a file operation. ENOENT is deliberately
// Internal here: only the callers that look a blob up turn it into NotFound.
absl::StatusCode CodeForErrno(int err) {
  switch (err) {
    case ENOSPC:
    case EDQUOT:
    case EMFILE:
    case ENFILE:
    case ENOMEM:
      return absl::StatusCode::kResourceExhausted;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case EROFS:
      return absl::StatusCode::kFailedPrecondition;
    default:
      return absl::StatusCode::kInternal;
  }
}

// "<what> <path>: <strerror>" with the code CodeForErrno(err).
absl::Status ErrnoError(int err, absl::string_view what,
                        absl::string_view path) {
  return WithErrno(
      absl::Status(CodeForErrno(err),
                   absl::StrCat(what, " ", path, ": ", ErrnoText(err))),
      err);
}

// Creates `path` as a directory unless it exists. Sets *created when this
// call made it.
absl::Status MakeDir(const std::string& path, bool* created) {
  *created = false;
  if (mkdir(path.c_str(), 0755) == 0) {
    *created = true;
    return absl::OkStatus();
  }
  int err = errno;
  if (err == EEXIST) {
    struct stat st;
    if (stat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode)) {
      return absl::OkStatus();
    }
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot create directory ", path, ": exists and is not a directory"));
  }
  return ErrnoError(err, "cannot create directory", path);
}

// fsyncs the directory at `path`, making its entries durable.
absl::Status SyncDir(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open directory", path);
  absl::Status status;
  if (fsync(fd) != 0)
    status = ErrnoError(errno, "cannot fsync directory", path);
  close(fd);
  return status;
}

// fdatasync(2) of the file at `path`.
absl::Status SyncFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoError(errno, "cannot open", path);
  absl::Status status;
  if (fdatasync(fd) != 0) status = ErrnoError(errno, "cannot fdatasync", path);
  close(fd);
  return status;
}

// Whether the file at `path` holds bytes with `digest` (false if it is
// gone). Errors: those of open and read, naming the path: the caller cannot
// tell, so it must not replace the file.
absl::StatusOr<bool> HoldsBytesOf(const std::string& path,
                                  const Digest& digest) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return false;
    return ErrnoError(errno, "cannot open", path);
  }
  absl::StatusOr<FileDigest> hashed = Sha256OfFd(fd);
  close(fd);
  if (!hashed.ok()) {
    return absl::Status(
        hashed.status().code(),
        absl::StrCat("cannot read ", path, ": ", hashed.status().message()));
  }
  return hashed->digest == digest;
}

// Moves `from` to `to` unless a file is there already: 0, EEXIST, or the
// errno of the failure. RENAME_NOREPLACE, or where the file system or
// kernel lacks it (EINVAL, ENOSYS: ZFS before 2.2, NFS, many FUSE file
// systems) link(2) and unlink(2), which refuse an existing name the same
// way; where links are refused too, a check for the name, then rename(2)
// (callers hold the shard's place_mu, so no writer of the same shard
// comes between).
int PlaceNoReplace(const std::string& from, const std::string& to) {
  if (renameat2(AT_FDCWD, from.c_str(), AT_FDCWD, to.c_str(),
                RENAME_NOREPLACE) == 0) {
    return 0;
  }
  if (errno != EINVAL && errno != ENOSYS) return errno;
  if (link(from.c_str(), to.c_str()) == 0) {
    unlink(from.c_str());  // A leftover is removed by the next Open.
    return 0;
  }
  if (errno == EEXIST) return EEXIST;
  struct stat st;
  if (lstat(to.c_str(), &st) == 0) return EEXIST;
  if (errno != ENOENT) return errno;  // Cannot tell: leave it alone.
  return rename(from.c_str(), to.c_str()) == 0 ? 0 : errno;
}

// Creates `path` and every missing parent (mkdir -p). Each directory created
// is made durable by fsyncing its parent.
absl::Status MakeDirs(const std::string& path) {
  std::vector<std::string> prefixes;
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      if (path[i - 1] != '/') prefixes.push_back(path.substr(0, i));
    }
  }
  for (const std::string& dir : prefixes) {
    bool created = false;
    absl::Status status = MakeDir(dir, &created);
    if (!status.ok()) return status;
    if (created) {
      status = SyncDir(ParentDirectory(dir));
      if (!status.ok()) return status;
    }
  }
  return absl::OkStatus();
}

// 32 random hex characters from getrandom(2).
absl::StatusOr<std::string> RandomHex() {
  unsigned char bytes[16];
  size_t got = 0;
  while (got < sizeof(bytes)) {
    ssize_t n = getrandom(bytes + got, sizeof(bytes) - got, 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(absl::StrCat("getrandom: ", ErrnoText(errno)));
    }
    got += static_cast<size_t>(n);
  }
  std::string out(2 * sizeof(bytes), '0');
  for (size_t i = 0; i < sizeof(bytes); ++i) {
    out[2 * i] = kHex[bytes[i] >> 4];
    out[2 * i + 1] = kHex[bytes[i] & 0xf];
  }
  return out;
}

// Writes all of `data` to `fd`, retrying partial writes and EINTR.
absl::Status WriteFully(int fd, absl::string_view data,
                        const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return ErrnoError(errno, "cannot write", path);
    }
    if (n == 0) {
      return absl::InternalError(
          absl::StrCat("cannot write ", path, ": write returned 0"));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

// State shared by a BlobStore and its writers, so a writer stays valid even
// if it outlives the store.
struct Layout {
  std::string root;
  std::string blobs_dir;  // <root>/blobs/sha256
  std::string tmp_dir;    // <root>/tmp
  // shard_dir_synced[i]: <blobs_dir>/<i as 2 hex> exists and its entry in
  // blobs_dir has been fsynced in this process. Set only after that fsync,
  // so a durable commit that sees true need not fsync blobs_dir again.
  std::array<std::atomic<bool>, kShards> shard_dir_synced{};
  // Held by a commit while it places its file in shard i (see Commit).
  std::array<absl::Mutex, kShards> place_mu;

  std::string ShardDir(const Digest& digest) const {
    return absl::StrCat(blobs_dir, "/", digest.Hex().substr(0, 2));
  }
  std::string PathFor(const Digest& digest) const {
    std::string hex = digest.Hex();
    return absl::StrCat(blobs_dir, "/", hex.substr(0, 2), "/", hex);
  }
};

class BlobWriterImpl : public BlobWriter {
 public:
  BlobWriterImpl(std::shared_ptr<Layout> layout, int fd, std::string temp_path,
                 WriterHashing hashing, uint64_t write_back_bytes)
      : layout_(std::move(layout)),
        fd_(fd),
        temp_path_(std::move(temp_path)),
        hashing_(hashing),
        write_back_bytes_(write_back_bytes) {}

  ~BlobWriterImpl() override {
    CloseFd();
    if (!committed_) RemoveTemp();
  }

  absl::Status Append(absl::string_view data) override {
    if (!error_.ok()) return error_;
    if (finished_) {
      return absl::FailedPreconditionError(
          absl::StrCat("Append to finished blob writer ", temp_path_));
    }
    if (data.empty()) return absl::OkStatus();
    absl::Status status = WriteFully(fd_, data, temp_path_);
    if (!status.ok()) return Fail(std::move(status));
    if (hashing_ == WriterHashing::kHash) hasher_.Update(data);
    size_ += data.size();
    if (write_back_bytes_ > 0 && size_ - written_back_ >= write_back_bytes_) {
      // Best effort: a failure here shows again at Commit's fdatasync.
      sync_file_range(fd_, static_cast<off64_t>(written_back_),
                      static_cast<off64_t>(size_ - written_back_),
                      SYNC_FILE_RANGE_WRITE);
      written_back_ = size_;
    }
    return absl::OkStatus();
  }

  uint64_t size() const override { return size_; }

  absl::StatusOr<int> OpenReader() const override {
    if (committed_ || !error_.ok()) {
      return absl::FailedPreconditionError(
          absl::StrCat("blob writer ", temp_path_, " is committed or failed"));
    }
    int fd;
    do {
      fd = open(temp_path_.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return ErrnoError(errno, "cannot open", temp_path_);
    return fd;
  }

  absl::StatusOr<Digest> Finish() override {
    if (!error_.ok()) return error_;
    if (hashing_ == WriterHashing::kCallerHashes) {
      return absl::FailedPreconditionError(
          absl::StrCat("blob writer ", temp_path_,
                       " does not hash: pass the digest to "
                       "Commit"));
    }
    if (!finished_) {
      digest_ = hasher_.Finish();
      finished_ = true;
    }
    return digest_;
  }

  absl::StatusOr<Digest> Commit(
      Durability durability, const std::optional<Digest>& expected) override {
    // A writer that failed (an Append cut short, a failed fdatasync, whose
    // retry Linux would report as success) never commits: its temp file
    // may be a part of the blob. Checked first, so that a retry after a
    // failure late in Commit reports that failure.
    if (!error_.ok()) return error_;
    if (committed_) {
      return absl::FailedPreconditionError(
          absl::StrCat("blob ", digest_.ToString(), " already committed"));
    }
    absl::StatusOr<Digest> digest;
    if (hashing_ == WriterHashing::kCallerHashes) {
      if (!expected.has_value()) {
        return absl::FailedPreconditionError(absl::StrCat(
            "blob writer ", temp_path_, " needs the caller's digest"));
      }
      finished_ = true;
      digest_ = *expected;
      digest = digest_;
    } else {
      digest = Finish();
    }
    if (!digest.ok()) return digest.status();
    if (expected.has_value() && *expected != *digest) {
      CloseFd();
      RemoveTemp();
      return Fail(absl::DataLossError(
          absl::StrCat("blob digest mismatch: expected ", expected->ToString(),
                       ", got ", digest->ToString(), " (", size_, " bytes)")));
    }
    // Blobs are immutable: read-only for everyone whatever the umask (the
    // temp file was created 0644 less the umask).
    if (fchmod(fd_, 0444) != 0) {
      return Fail(ErrnoError(errno, "cannot chmod", temp_path_));
    }
    const bool durable = durability == Durability::kDurable ||
                         durability == Durability::kDurableReplace;
    const bool replace = durability == Durability::kDurableReplace ||
                         durability == Durability::kDeferredReplace;
    if (durable && fdatasync(fd_) != 0) {
      return Fail(ErrnoError(errno, "cannot fdatasync", temp_path_));
    }
    int fd = fd_;
    fd_ = -1;
    if (close(fd) != 0) {
      return Fail(ErrnoError(errno, "cannot close", temp_path_));
    }

    const int shard = static_cast<unsigned char>(digest->raw()[0]);
    const std::string shard_dir = layout_->ShardDir(*digest);
    bool created = false;
    absl::Status status = MakeDir(shard_dir, &created);
    if (!status.ok()) return Fail(std::move(status));

    const std::string final_path = layout_->PathFor(*digest);
    // A blob file already in place with these bytes stays: it may be durable
    // while this one is not yet (kDeferred), and renaming over it would let
    // a crash leave unsynced bytes under a name whose record says durable.
    // One with other bytes (what a crash leaves of an unsynced file) is
    // replaced.
    // A file that cannot be checked (open or read failing) stays too, and
    // the commit fails.
    // Under the shard's lock: two writers of one digest must not both find
    // a torn file and replace each other's (a kDeferred one could then
    // replace a kDurable one's synced file).
    int err = 0;
    bool keep_existing = false;
    {
      absl::MutexLock place_lock(&layout_->place_mu[shard]);
      err = replace
                ? (rename(temp_path_.c_str(), final_path.c_str()) == 0 ? 0
                                                                       : errno)
                : PlaceNoReplace(temp_path_, final_path);
      if (err == EEXIST) {
        absl::StatusOr<bool> holds = HoldsBytesOf(final_path, *digest);
        if (!holds.ok()) return Fail(holds.status());
        keep_existing = *holds;
        if (keep_existing && durable) {
          // Synced before our own synced copy goes: if this fails (a
          // write-back error Linux reports once), our copy takes the name.
          if (!SyncFile(final_path).ok()) keep_existing = false;
        }
        if (!keep_existing) {
          err = rename(temp_path_.c_str(), final_path.c_str()) == 0 ? 0 : errno;
        }
      }
    }
    if (keep_existing) {
      RemoveTemp();
      committed_ = true;
    } else if (err != 0) {
      return Fail(ErrnoError(
          err, absl::StrCat("cannot rename ", temp_path_, " to"), final_path));
    } else {
      // The temp name is gone; nothing is left to clean up.
      committed_ = true;
    }

    if (durable) {
      status = SyncDir(shard_dir);
      if (!status.ok()) return Fail(std::move(status));
      if (!layout_->shard_dir_synced[shard].load(std::memory_order_acquire)) {
        status = SyncDir(layout_->blobs_dir);
        if (!status.ok()) return Fail(std::move(status));
        layout_->shard_dir_synced[shard].store(true, std::memory_order_release);
      }
    }
    return *digest;
  }

 private:
  absl::Status Fail(absl::Status status) {
    error_ = status;
    return status;
  }

  void CloseFd() {
    if (fd_ >= 0) {
      close(fd_);
      fd_ = -1;
    }
  }

  void RemoveTemp() {
    if (!temp_removed_) {
      unlink(temp_path_.c_str());
      temp_removed_ = true;
    }
  }

  const std::shared_ptr<Layout> layout_;
  int fd_;
  const std::string temp_path_;
  const WriterHashing hashing_;
  const uint64_t write_back_bytes_;  // 0: no early write-back.
  uint64_t written_back_ = 0;        // Bytes whose write-back was started.
  Sha256 hasher_;
  uint64_t size_ = 0;
  bool finished_ = false;
  Digest digest_;
  bool committed_ = false;
  bool temp_removed_ = false;
  absl::Status error_;  // First failure; the writer is dead afterwards.
};

class BlobStoreImpl : public BlobStore {
 public:
  BlobStoreImpl(std::shared_ptr<Layout> layout, int root_fd,
                int removed_temp_files)
      : layout_(std::move(layout)),
        root_fd_(root_fd),
        removed_temp_files_(removed_temp_files) {}

  ~BlobStoreImpl() override { close(root_fd_); }

  std::string PathFor(const Digest& digest) const override {
    return layout_->PathFor(digest);
  }

  absl::StatusOr<std::unique_ptr<BlobWriter>> NewWriter(
      WriterHashing hashing, uint64_t write_back_bytes) override {
    // A 128-bit random name practically never collides; O_EXCL makes sure.
    for (int attempt = 0;; ++attempt) {
      absl::StatusOr<std::string> name = RandomHex();
      if (!name.ok()) return name.status();
      std::string path =
          absl::StrCat(layout_->tmp_dir, "/", *name, kTempSuffix);
      int fd =
          open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
      if (fd >= 0) {
        return std::unique_ptr<BlobWriter>(new BlobWriterImpl(
            layout_, fd, std::move(path), hashing, write_back_bytes));
      }
      if (errno != EEXIST || attempt >= 3) {
        return ErrnoError(errno, "cannot create temp file", path);
      }
    }
  }

  absl::StatusOr<int> OpenFd(const Digest& digest) const override {
    std::string path = PathFor(digest);
    int fd;
    do {
      fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    } while (fd < 0 && errno == EINTR);
    if (fd < 0) return BlobError(errno, "cannot open blob", digest, path);
    return fd;
  }

  absl::Status Remove(const Digest& digest) override {
    std::string path = PathFor(digest);
    if (unlink(path.c_str()) != 0) {
      return BlobError(errno, "cannot remove blob", digest, path);
    }
    return absl::OkStatus();
  }

  absl::StatusOr<uint64_t> FileSize(const Digest& digest) const override {
    std::string path = PathFor(digest);
    struct stat st;
    if (stat(path.c_str(), &st) != 0) {
      return BlobError(errno, "cannot stat blob", digest, path);
    }
    return static_cast<uint64_t>(st.st_size);
  }

  absl::Status SyncFilesystem() override {
    if (syncfs(root_fd_) != 0) {
      return ErrnoError(errno, "syncfs failed on", layout_->root);
    }
    return absl::OkStatus();
  }

  int removed_temp_files() const override { return removed_temp_files_; }

 private:
  static absl::Status BlobError(int err, absl::string_view what,
                                const Digest& digest, const std::string& path) {
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat("blob ", digest.ToString(), " not found (", path, ")"));
    }
    return ErrnoError(err, absl::StrCat(what, " ", digest.ToString(), " at"),
                      path);
  }

  const std::shared_ptr<Layout> layout_;
  const int root_fd_;
  const int removed_temp_files_;
};

// Removes every non-directory entry of `dir`; returns how many.
absl::StatusOr<int> EmptyTempDir(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return ErrnoError(errno, "cannot open directory", dir);
  // Collect first: unlinking while readdir() walks is unspecified by POSIX.
  std::vector<std::string> names;
  errno = 0;
  while (struct dirent* e = readdir(d)) {
    if (std::strcmp(e->d_name, ".") != 0 && std::strcmp(e->d_name, "..") != 0) {
      names.emplace_back(e->d_name);
    }
    errno = 0;
  }
  int err = errno;
  closedir(d);
  if (err != 0) return ErrnoError(err, "cannot read directory", dir);
  int removed = 0;
  for (const std::string& name : names) {
    std::string path = absl::StrCat(dir, "/", name);
    if (unlink(path.c_str()) == 0) {
      ++removed;
    } else if (errno != ENOENT && errno != EISDIR) {
      // A directory in tmp/ is not ours (writers only make files): leave it.
      return ErrnoError(errno, "cannot remove temp file", path);
    }
  }
  return removed;
}

}  // namespace

absl::StatusOr<std::unique_ptr<BlobStore>> BlobStore::Open(
    const std::string& root) {
  if (root.empty()) {
    return absl::InvalidArgumentError("blob store root is empty");
  }
  auto layout = std::make_shared<Layout>();
  layout->root = root;
  while (layout->root.size() > 1 && layout->root.back() == '/') {
    layout->root.pop_back();
  }
  layout->blobs_dir = absl::StrCat(layout->root, "/blobs/sha256");
  layout->tmp_dir = absl::StrCat(layout->root, "/tmp");

  absl::Status status = MakeDirs(layout->blobs_dir);
  if (!status.ok()) return status;
  status = MakeDirs(layout->tmp_dir);
  if (!status.ok()) return status;
  // MakeDirs syncs the parents of directories it creates; these may have
  // been created by a process that died before its sync (or, for the root,
  // by Store::Open's mkdir), so their entries are synced at every start.
  // The parent's sync is best effort: it may be a directory this process
  // cannot open, or on a file system without directory fsync (a data
  // directory mounted over a read-only root image).
  (void)SyncDir(absl::StrCat(layout->root, "/.."));
  for (const std::string& dir :
       {layout->root, absl::StrCat(layout->root, "/blobs")}) {
    status = SyncDir(dir);
    if (!status.ok()) return status;
  }

  absl::StatusOr<int> removed = EmptyTempDir(layout->tmp_dir);
  if (!removed.ok()) return removed.status();

  int root_fd = open(layout->root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (root_fd < 0) {
    return ErrnoError(errno, "cannot open directory", layout->root);
  }
  return std::unique_ptr<BlobStore>(
      new BlobStoreImpl(std::move(layout), root_fd, *removed));
}

absl::Status PreadFully(int fd, uint64_t offset, size_t length,
                        std::string* out) {
  out->resize(length);
  size_t done = 0;
  while (done < length) {
    ssize_t n = pread(fd, &(*out)[done], length - done,
                      static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      out->resize(done);
      // EIO: the device lost stored bytes.
      return WithErrno(
          absl::Status(
              err == EIO ? absl::StatusCode::kDataLoss : CodeForErrno(err),
              absl::StrCat("pread of fd ", fd, " at offset ", offset + done,
                           ": ", ErrnoText(err))),
          err);
    }
    if (n == 0) break;  // End of file.
    done += static_cast<size_t>(n);
  }
  out->resize(done);
  return absl::OkStatus();
}

}  // namespace cairn
