// Copyright 2026 The Cairn Authors.

#include "tools/pack/packer.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <locale.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "store/unique_fd.h"
#include "tools/cleanup/remove_on_signal.h"

namespace cairn {
namespace {

constexpr size_t kReadBufferBytes = 1 << 20;  // File reads while packing.
constexpr size_t kTarBlock = 512;
constexpr uint64_t kMaxExtensionHeaderBytes = 1 << 20;

#define CAIRN_RETURN_IF_ERROR(expr)    \
  do {                                 \
    absl::Status _status = (expr);     \
    if (!_status.ok()) return _status; \
  } while (0)

// ---------------------------------------------------------------------------
// Small RAII helpers.

struct WriteArchiveFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct ReadArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
struct DirClose {
  void operator()(DIR* d) const { closedir(d); }
};

using FileId = std::pair<dev_t, ino_t>;

std::string Quote(absl::string_view s) { return absl::StrCat("'", s, "'"); }

absl::Status ErrnoError(int err, absl::string_view what) {
  return absl::ErrnoToStatus(err, what);
}

// libarchive's error as a status: its errno decides the code when it is a
// real one (our write callback sets it, e.g. ENOSPC), else Internal.
absl::Status ArchiveError(archive* a, absl::string_view what) {
  const char* msg = archive_error_string(a);
  const std::string message =
      absl::StrCat(what, ": ", msg != nullptr ? msg : "libarchive error");
  const int err = archive_errno(a);
  if (err > 0) return absl::Status(absl::ErrnoToStatusCode(err), message);
  return absl::InternalError(message);
}

// Git's mode normalisation (see packer.h).
int NormalisedFileMode(mode_t mode) {
  return (mode & (S_IXUSR | S_IXGRP | S_IXOTH)) != 0 ? 0755 : 0644;
}

const char* SpecialTypeName(mode_t mode) {
  if (S_ISFIFO(mode)) return "a FIFO";
  if (S_ISSOCK(mode)) return "a socket";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  return "of an unknown file type";
}

// ---------------------------------------------------------------------------
// Packing.

// Where libarchive's compressed output goes: the temporary file, hashed on
// the way.
struct OutputSink {
  int fd = -1;
  Sha256 hasher;
  uint64_t bytes = 0;
};

la_ssize_t WriteToSink(archive* a, void* client_data, const void* buffer,
                       size_t length) {
  auto* sink = static_cast<OutputSink*>(client_data);
  const char* p = static_cast<const char*>(buffer);
  size_t left = length;
  while (left > 0) {
    ssize_t n = write(sink->fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      archive_set_error(a, errno, "write: %s", strerror(errno));
      return -1;
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  sink->hasher.Update(buffer, length);
  sink->bytes += length;
  return static_cast<la_ssize_t>(length);
}

absl::Status ConfigureWriter(archive* a, int gzip_level, OutputSink* sink) {
  if (archive_write_set_format_pax_restricted(a) != ARCHIVE_OK) {
    return ArchiveError(a, "pack: tar format");
  }
  if (archive_write_add_filter_gzip(a) != ARCHIVE_OK) {
    return ArchiveError(a, "pack: gzip filter");
  }
  const std::string level = std::to_string(gzip_level);
  if (archive_write_set_filter_option(a, "gzip", "compression-level",
                                      level.c_str()) != ARCHIVE_OK) {
    return ArchiveError(a, "pack: gzip level");
  }
  // libarchive stores the current time in the gzip header unless told
  // "!timestamp" (a NULL value). It never stores a file name.
  if (archive_write_set_filter_option(a, "gzip", "timestamp", nullptr) !=
      ARCHIVE_OK) {
    return ArchiveError(a, "pack: gzip timestamp");
  }
  if (archive_write_set_bytes_in_last_block(a, 1) != ARCHIVE_OK) {
    return ArchiveError(a, "pack: block size");
  }
  if (archive_write_open(a, sink, nullptr, WriteToSink, nullptr) !=
      ARCHIVE_OK) {
    return ArchiveError(a, "pack: open output");
  }
  return absl::OkStatus();
}

// Walks one tree and writes its entries. Not thread-safe.
class TreePacker {
 public:
  TreePacker(std::string root, archive* a, std::vector<FileId> skip,
             std::function<void(const std::string&)> before_read)
      : root_(std::move(root)),
        a_(a),
        entry_(archive_entry_new()),
        skip_(std::move(skip)),
        before_read_(std::move(before_read)),
        buffer_(kReadBufferBytes) {}

  absl::Status Run() { return PackDir("", "", nullptr, AT_FDCWD); }
  const PackResult& result() const { return result_; }

 private:
  struct Child {
    std::string key;   // Name, plus "/" for directories: the sort key.
    std::string name;  // In its directory.
    std::string rel;   // Path relative to the root, without trailing "/".
    struct stat st;
  };

  std::string FullPath(const std::string& rel) const {
    return rel.empty() ? root_ : absl::StrCat(root_, "/", rel);
  }

  bool Skipped(const struct stat& st) const {
    if (!S_ISREG(st.st_mode)) return false;
    return std::find(skip_.begin(), skip_.end(),
                     FileId(st.st_dev, st.st_ino)) != skip_.end();
  }

  // Lists `rel_dir` (sorted in entry order) and packs each child, recursing
  // into directories right after their own entry. `listed`: the directory
  // as its parent's listing stat'ed it (null for the root, which may be a
  // symlink to a directory); the one opened must be that very directory,
  // never a symlink swapped in since, which would pack files from outside
  // the tree. Children are opened relative to their directory's fd (`name`
  // in `parent_fd`; the root by its path), so no path is longer than a
  // name and trees deeper than PATH_MAX pack.
  absl::Status PackDir(const std::string& rel_dir, const std::string& name,
                       const struct stat* listed, int parent_fd) {
    const std::string full = FullPath(rel_dir);
    std::vector<Child> children;
    std::unique_ptr<DIR, DirClose> dir;
    {
      if (listed != nullptr && before_read_) before_read_(rel_dir);
      UniqueFd opened(
          listed == nullptr
              ? open(full.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC)
              : openat(parent_fd, name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW));
      if (opened.get() < 0) {
        // Listed as a directory, now something else (a symlink: ELOOP or
        // ENOTDIR with O_NOFOLLOW | O_DIRECTORY).
        if (listed != nullptr && (errno == ENOTDIR || errno == ELOOP)) {
          return absl::AbortedError(
              absl::StrCat("pack: ", full, " was replaced while being packed"));
        }
        return ErrnoError(errno, absl::StrCat("pack: open directory ", full));
      }
      struct stat now;
      if (fstat(opened.get(), &now) != 0) {
        return ErrnoError(errno, absl::StrCat("pack: stat ", full));
      }
      if (listed != nullptr &&
          (now.st_dev != listed->st_dev || now.st_ino != listed->st_ino)) {
        return absl::AbortedError(
            absl::StrCat("pack: ", full, " was replaced while being packed"));
      }
      dir.reset(fdopendir(opened.get()));
      if (dir == nullptr) {
        return ErrnoError(errno, absl::StrCat("pack: open directory ", full));
      }
      opened.Release();  // Owned by `dir` now.
      const int dfd = dirfd(dir.get());
      for (;;) {
        errno = 0;
        const dirent* de = readdir(dir.get());
        if (de == nullptr) {
          if (errno != 0) {
            return ErrnoError(errno,
                              absl::StrCat("pack: read directory ", full));
          }
          break;
        }
        const absl::string_view name = de->d_name;
        if (name == "." || name == "..") continue;
        Child child;
        child.name = std::string(name);
        child.rel = rel_dir.empty() ? std::string(name)
                                    : absl::StrCat(rel_dir, "/", name);
        if (fstatat(dfd, de->d_name, &child.st, AT_SYMLINK_NOFOLLOW) != 0) {
          return ErrnoError(errno,
                            absl::StrCat("pack: stat ", FullPath(child.rel)));
        }
        child.key = S_ISDIR(child.st.st_mode) ? absl::StrCat(name, "/")
                                              : std::string(name);
        children.push_back(std::move(child));
      }
    }
    // std::string compares through char_traits<char>, i.e. as memcmp does
    // (unsigned bytes): the bytewise order of the convention.
    std::sort(children.begin(), children.end(),
              [](const Child& x, const Child& y) { return x.key < y.key; });
    // The directory stays open while its children are packed: they are
    // opened relative to it.
    const int dfd = dirfd(dir.get());
    for (const Child& child : children) {
      if (Skipped(child.st)) continue;
      CAIRN_RETURN_IF_ERROR(PackEntry(dfd, child));
      if (S_ISDIR(child.st.st_mode)) {
        CAIRN_RETURN_IF_ERROR(PackDir(child.rel, child.name, &child.st, dfd));
      }
    }
    return absl::OkStatus();
  }

  // Sets the fields every entry shares; the caller sets type, mode, size.
  void StartEntry(const std::string& path) {
    archive_entry* e = entry_.get();
    archive_entry_clear(e);
    archive_entry_copy_pathname(e, path.c_str());
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_uid(e, 0);
    archive_entry_set_gid(e, 0);
  }

  absl::Status WriteHeader(const std::string& rel) {
    // ARCHIVE_WARN: a name or link target that is not valid UTF-8 was
    // written with a pax "hdrcharset=BINARY" record. Deterministic; fine.
    const int r = archive_write_header(a_, entry_.get());
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      return ArchiveError(a_, absl::StrCat("pack: ", FullPath(rel)));
    }
    ++result_.entries;
    return absl::OkStatus();
  }

  // Packs `child` of the directory open as `dfd`.
  absl::Status PackEntry(int dfd, const Child& child) {
    const std::string& rel = child.rel;
    const struct stat& st = child.st;
    archive_entry* e = entry_.get();
    if (S_ISDIR(st.st_mode)) {
      StartEntry(absl::StrCat(rel, "/"));
      archive_entry_set_filetype(e, AE_IFDIR);
      archive_entry_set_perm(e, 0755);
      archive_entry_set_size(e, 0);
      return WriteHeader(rel);
    }
    if (S_ISLNK(st.st_mode)) {
      absl::StatusOr<std::string> target = ReadLink(dfd, child);
      if (!target.ok()) return target.status();
      StartEntry(rel);
      archive_entry_set_filetype(e, AE_IFLNK);
      archive_entry_set_perm(e, 0777);
      archive_entry_set_size(e, 0);
      archive_entry_copy_symlink(e, target->c_str());
      return WriteHeader(rel);
    }
    if (S_ISREG(st.st_mode)) return PackRegular(dfd, child);
    return absl::InvalidArgumentError(absl::StrCat(
        "pack: ", FullPath(rel), " is ", SpecialTypeName(st.st_mode),
        "; only regular files, directories and symlinks can be packed"));
  }

  absl::StatusOr<std::string> ReadLink(int dfd, const Child& child) {
    const std::string full = FullPath(child.rel);
    std::string target(std::max<size_t>(child.st.st_size, 64) + 1, '\0');
    for (;;) {
      ssize_t n =
          readlinkat(dfd, child.name.c_str(), target.data(), target.size());
      if (n < 0)
        return ErrnoError(errno, absl::StrCat("pack: readlink ", full));
      if (static_cast<size_t>(n) < target.size()) {
        target.resize(n);
        return target;
      }
      target.resize(target.size() * 2);  // Grew since lstat: retry.
    }
  }

  absl::Status PackRegular(int dfd, const Child& child) {
    const std::string& rel = child.rel;
    const struct stat& st = child.st;
    archive_entry* e = entry_.get();
    const int mode = NormalisedFileMode(st.st_mode);
    if (st.st_nlink > 1) {
      auto [it, inserted] =
          first_link_.try_emplace(FileId(st.st_dev, st.st_ino), rel);
      if (!inserted) {
        StartEntry(rel);
        archive_entry_set_filetype(e, AE_IFREG);
        archive_entry_set_perm(e, mode);
        archive_entry_set_size(e, 0);
        archive_entry_copy_hardlink(e, it->second.c_str());
        return WriteHeader(rel);
      }
    }
    const std::string full = FullPath(rel);
    UniqueFd fd(
        openat(dfd, child.name.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
    if (fd.get() < 0)
      return ErrnoError(errno, absl::StrCat("pack: open ", full));
    struct stat now;
    if (fstat(fd.get(), &now) != 0) {
      return ErrnoError(errno, absl::StrCat("pack: stat ", full));
    }
    if (now.st_dev != st.st_dev || now.st_ino != st.st_ino) {
      return absl::AbortedError(
          absl::StrCat("pack: ", full, " was replaced while being packed"));
    }
    posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
    if (before_read_) before_read_(rel);
    const uint64_t size = static_cast<uint64_t>(now.st_size);
    StartEntry(rel);
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, mode);
    archive_entry_set_size(e, static_cast<la_int64_t>(size));
    CAIRN_RETURN_IF_ERROR(WriteHeader(rel));
    uint64_t remaining = size;
    while (remaining > 0) {
      const size_t want =
          static_cast<size_t>(std::min<uint64_t>(remaining, buffer_.size()));
      ssize_t n = read(fd.get(), buffer_.data(), want);
      if (n < 0) {
        if (errno == EINTR) continue;
        return ErrnoError(errno, absl::StrCat("pack: read ", full));
      }
      if (n == 0) {
        return absl::AbortedError(
            absl::StrCat("pack: ", full, " shrank while being packed (",
                         size - remaining, " of ", size, " bytes read)"));
      }
      la_ssize_t w = archive_write_data(a_, buffer_.data(), n);
      if (w != n) return ArchiveError(a_, absl::StrCat("pack: ", full));
      remaining -= static_cast<uint64_t>(n);
    }
    char extra;
    ssize_t n;
    do {
      n = read(fd.get(), &extra, 1);
    } while (n < 0 && errno == EINTR);
    if (n > 0) {
      return absl::AbortedError(
          absl::StrCat("pack: ", full, " grew while being packed"));
    }
    // Rewritten in place at the same size (as GNU tar's "file changed as
    // we read it"): the bytes read may mix old and new.
    struct stat after;
    if (fstat(fd.get(), &after) != 0) {
      return ErrnoError(errno, absl::StrCat("pack: stat ", full));
    }
    if (after.st_size != now.st_size ||
        after.st_mtim.tv_sec != now.st_mtim.tv_sec ||
        after.st_mtim.tv_nsec != now.st_mtim.tv_nsec ||
        after.st_ctim.tv_sec != now.st_ctim.tv_sec ||
        after.st_ctim.tv_nsec != now.st_ctim.tv_nsec) {
      return absl::AbortedError(
          absl::StrCat("pack: ", full, " changed while being packed"));
    }
    ++result_.regular_files;
    result_.file_bytes += size;
    return absl::OkStatus();
  }

  const std::string root_;
  archive* const a_;
  std::unique_ptr<archive_entry, EntryFree> entry_;
  const std::vector<FileId> skip_;
  const std::function<void(const std::string&)> before_read_;  // Testing.
  // First path (in entry order) of each multiply-linked regular file.
  absl::flat_hash_map<FileId, std::string> first_link_;
  std::vector<char> buffer_;
  PackResult result_;
};

// Makes the calling thread use the C.UTF-8 locale while it lives.
// libarchive's pax writer converts names from the locale's charset to
// UTF-8, so without this the headers would depend on LANG/LC_ALL and
// setlocale(): under "C", every non-ASCII name would get a
// hdrcharset=BINARY record; under a UTF-8 locale, only invalid UTF-8 does.
// uselocale() is per thread, so concurrent packs and the rest of the
// process are unaffected.
class ScopedUtf8Locale {
 public:
  ScopedUtf8Locale()
      : locale_(newlocale(LC_ALL_MASK, "C.UTF-8", static_cast<locale_t>(0))),
        previous_(locale_ != static_cast<locale_t>(0) ? uselocale(locale_)
                                                      : nullptr) {}
  ~ScopedUtf8Locale() {
    if (locale_ == static_cast<locale_t>(0)) return;
    uselocale(previous_);
    freelocale(locale_);
  }
  ScopedUtf8Locale(const ScopedUtf8Locale&) = delete;
  ScopedUtf8Locale& operator=(const ScopedUtf8Locale&) = delete;

  bool ok() const { return locale_ != static_cast<locale_t>(0); }

 private:
  const locale_t locale_;
  const locale_t previous_;
};

std::string StripTrailingSlashes(std::string path) {
  while (path.size() > 1 && path.back() == '/') path.pop_back();
  return path;
}

// ---------------------------------------------------------------------------
// Checking.

// Hands out the decompressed tar stream (libarchive "raw" format) in exact
// sizes. Not thread-safe.
class TarStream {
 public:
  explicit TarStream(archive* a) : a_(a) {}

  // Reads up to `n` bytes into `out`; fewer only at end of stream.
  absl::StatusOr<size_t> Read(char* out, size_t n) {
    size_t got = 0;
    while (got < n) {
      if (pos_ == size_) {
        if (eof_) break;
        CAIRN_RETURN_IF_ERROR(Fill());
        continue;
      }
      const size_t take = std::min(n - got, size_ - pos_);
      if (out != nullptr) memcpy(out + got, data_ + pos_, take);
      pos_ += take;
      got += take;
    }
    offset_ += got;
    return got;
  }

  // Discards exactly `n` bytes. Errors: DataLoss if the stream ends first.
  absl::Status Skip(uint64_t n) {
    while (n > 0) {
      const size_t chunk = static_cast<size_t>(std::min<uint64_t>(n, 1 << 20));
      absl::StatusOr<size_t> got = Read(nullptr, chunk);
      if (!got.ok()) return got.status();
      if (*got != chunk) return Truncated();
      n -= chunk;
    }
    return absl::OkStatus();
  }

  absl::Status Truncated() const {
    return absl::DataLossError(
        absl::StrCat("archive is truncated at tar offset ", offset_));
  }

  uint64_t offset() const { return offset_; }

 private:
  absl::Status Fill() {
    const void* block = nullptr;
    size_t size = 0;
    la_int64_t offset = 0;
    const int r = archive_read_data_block(a_, &block, &size, &offset);
    if (r == ARCHIVE_EOF) {
      eof_ = true;
      size = 0;
    } else if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
      const char* msg = archive_error_string(a_);
      return absl::DataLossError(absl::StrCat("cannot decompress archive: ",
                                              msg != nullptr ? msg : "error"));
    }
    data_ = static_cast<const char*>(block);
    size_ = size;
    pos_ = 0;
    return absl::OkStatus();
  }

  archive* const a_;
  const char* data_ = nullptr;
  size_t size_ = 0;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t offset_ = 0;
};

// A NUL-terminated (or full-width) header field.
std::string Field(const char* block, size_t offset, size_t width) {
  const char* p = block + offset;
  return std::string(p, strnlen(p, width));
}

// Octal (optionally space/NUL padded) or GNU base-256 numeric field.
bool ParseNumber(const char* block, size_t offset, size_t width,
                 uint64_t* out) {
  const unsigned char* p =
      reinterpret_cast<const unsigned char*>(block + offset);
  uint64_t value = 0;
  if (p[0] & 0x80) {
    if (p[0] & 0x40) return false;  // Negative.
    value = p[0] & 0x3f;
    for (size_t i = 1; i < width; ++i) {
      if (value >> 56) return false;
      value = (value << 8) | p[i];
    }
    *out = value;
    return true;
  }
  size_t i = 0;
  while (i < width && p[i] == ' ') ++i;
  for (; i < width && p[i] >= '0' && p[i] <= '7'; ++i) {
    if (value >> 61) return false;
    value = value * 8 + (p[i] - '0');
  }
  for (; i < width; ++i) {
    if (p[i] != ' ' && p[i] != '\0') return false;
  }
  *out = value;
  return true;
}

bool ValidChecksum(const char* block) {
  uint64_t stored;
  if (!ParseNumber(block, 148, 8, &stored)) return false;
  uint64_t unsigned_sum = 0;
  int64_t signed_sum = 0;
  for (size_t i = 0; i < kTarBlock; ++i) {
    const bool in_field = i >= 148 && i < 156;
    unsigned_sum += in_field ? ' ' : static_cast<unsigned char>(block[i]);
    signed_sum += in_field ? ' ' : static_cast<signed char>(block[i]);
  }
  return stored == unsigned_sum || static_cast<int64_t>(stored) == signed_sum;
}

bool AllZero(const char* block) {
  for (size_t i = 0; i < kTarBlock; ++i) {
    if (block[i] != 0) return false;
  }
  return true;
}

std::string Octal(uint64_t mode) { return absl::StrFormat("%04o", mode); }

// The header fields common to every tar header (real or extension).
struct Header {
  char typeflag = '0';
  std::string name;
  std::string linkname;
  std::string prefix;
  std::string uname;
  std::string gname;
  uint64_t mode = 0, uid = 0, gid = 0, size = 0, mtime = 0;
  enum Magic { kUstar, kGnu, kV7 } magic = kUstar;
};

// Collects deviations and checks entries against the convention. Not
// thread-safe.
class Checker {
 public:
  explicit Checker(CheckResult* result) : result_(result) {}

  void Report(std::string reason) {
    ++result_->problems;
    if (result_->reasons.size() < CheckResult::kMaxReasons) {
      result_->reasons.push_back(std::move(reason));
    }
  }

  // Reports `reason` only the first time `key` is seen.
  void ReportOnce(absl::string_view key, std::string reason) {
    if (once_.insert(std::string(key)).second) Report(std::move(reason));
  }

  absl::Status Run(TarStream& tar);

 private:
  // cairn pack ends the tar stream with the end-of-archive marker: record
  // padding (tar's 10240-byte records) is another digest for the same
  // tree, anything else is refused by cairnd.
  absl::Status CheckAfterTheEnd(TarStream& tar) {
    const uint64_t end = tar.offset();
    char block[kTarBlock];
    bool data = false;
    for (;;) {
      absl::StatusOr<size_t> got = tar.Read(block, kTarBlock);
      if (!got.ok()) return got.status();
      if (*got == 0) break;
      std::memset(block + *got, 0, kTarBlock - *got);
      data = data || !AllZero(block);
    }
    if (data) {
      Report(absl::StrCat("data after the end-of-archive marker at tar offset ",
                          end, " (cairnd refuses such archives)"));
    } else if (tar.offset() > end) {
      Report(absl::StrCat(tar.offset() - end,
                          " bytes of zero padding after the end-of-archive "
                          "marker, want none"));
    }
    return absl::OkStatus();
  }

  // Owner, time and format fields every header must have, as issues.
  void CheckCommonFields(const Header& h, absl::string_view what,
                         std::vector<std::string>* issues) {
    if (h.mtime != 0) {
      issues->push_back(absl::StrCat(what, "mtime ", h.mtime, ", want 0"));
    }
    if (h.uid != 0) {
      issues->push_back(absl::StrCat(what, "uid ", h.uid, ", want 0"));
    }
    if (h.gid != 0) {
      issues->push_back(absl::StrCat(what, "gid ", h.gid, ", want 0"));
    }
    if (!h.uname.empty()) {
      issues->push_back(
          absl::StrCat(what, "uname ", Quote(h.uname), ", want empty"));
    }
    if (!h.gname.empty()) {
      issues->push_back(
          absl::StrCat(what, "gname ", Quote(h.gname), ", want empty"));
    }
    if (h.magic == Header::kGnu) {
      ReportOnce("gnu", "archive uses GNU tar headers, want POSIX ustar");
    } else if (h.magic == Header::kV7) {
      ReportOnce("v7", "archive uses pre-POSIX (v7) tar headers, want ustar");
    }
  }

  void ParsePax(const std::string& data, std::vector<std::string>* issues);
  void CheckEntry(const Header& h, std::vector<std::string> issues);

  CheckResult* const result_;
  absl::flat_hash_set<std::string> once_;
  // Overrides from extension headers for the next real entry.
  std::optional<std::string> next_path_, next_linkpath_;
  std::optional<uint64_t> next_size_;
  std::string previous_;  // Path of the previous entry.
  bool have_previous_ = false;
  absl::flat_hash_set<std::string> directories_;    // With trailing "/".
  absl::flat_hash_set<std::string> regular_files_;  // Hardlink targets.
};

void Checker::ParsePax(const std::string& data,
                       std::vector<std::string>* issues) {
  std::vector<std::string> disallowed;  // Keys, quoted.
  size_t pos = 0;
  while (pos < data.size()) {
    // Record: "<decimal length> <key>=<value>\n", length counting itself.
    size_t space = data.find(' ', pos);
    uint64_t length = 0;
    bool ok = space != std::string::npos && space > pos;
    for (size_t i = pos; ok && i < space; ++i) {
      ok = data[i] >= '0' && data[i] <= '9' && length < (1ull << 40);
      length = length * 10 + (data[i] - '0');
    }
    ok = ok && length > space - pos + 1 && pos + length <= data.size() &&
         data[pos + length - 1] == '\n';
    const size_t equals = ok ? data.find('=', space + 1) : std::string::npos;
    if (!ok || equals == std::string::npos || equals >= pos + length - 1) {
      issues->push_back("malformed pax extended header");
      break;
    }
    const std::string key = data.substr(space + 1, equals - space - 1);
    const std::string value =
        data.substr(equals + 1, pos + length - 1 - equals - 1);
    pos += length;
    if (key == "path") {
      next_path_ = value;
    } else if (key == "linkpath") {
      next_linkpath_ = value;
    } else if (key == "size") {
      uint64_t size = 0;
      bool digits = !value.empty();
      for (char c : value) {
        digits = digits && c >= '0' && c <= '9';
        size = size * 10 + (c - '0');
      }
      if (!digits) {
        issues->push_back(absl::StrCat("pax size ", Quote(value), " invalid"));
      } else {
        next_size_ = size;
      }
    } else if (key == "hdrcharset" && value == "BINARY") {
      // Allowed: names are raw bytes.
    } else {
      disallowed.push_back(
          Quote(key == "hdrcharset" ? absl::StrCat(key, "=", value) : key));
    }
  }
  if (!disallowed.empty()) {
    issues->push_back(absl::StrCat("pax header sets ",
                                   absl::StrJoin(disallowed, ", "),
                                   " (allowed: path, linkpath, size, "
                                   "hdrcharset=BINARY)"));
  }
}

absl::Status Checker::Run(TarStream& tar) {
  char block[kTarBlock];
  // Issues found in extension headers, reported with the entry they
  // describe.
  std::vector<std::string> pending_issues;
  bool pending_extension = false;
  for (;;) {
    const uint64_t header_offset = tar.offset();
    absl::StatusOr<size_t> got = tar.Read(block, kTarBlock);
    if (!got.ok()) return got.status();
    if (*got == 0) {
      Report("archive lacks the end-of-archive marker (two zero blocks)");
      break;
    }
    if (*got != kTarBlock) return tar.Truncated();
    if (AllZero(block)) {
      got = tar.Read(block, kTarBlock);
      if (!got.ok()) return got.status();
      if (*got == kTarBlock && !AllZero(block)) {
        Report(absl::StrCat("zero block inside the archive at tar offset ",
                            header_offset));
      } else if (*got != kTarBlock) {
        Report("archive ends after one zero block, want two");
      } else {
        CAIRN_RETURN_IF_ERROR(CheckAfterTheEnd(tar));
      }
      break;
    }
    if (!ValidChecksum(block)) {
      return absl::InvalidArgumentError(
          absl::StrCat("not a tar archive: bad header checksum at tar offset ",
                       header_offset));
    }
    Header h;
    h.name = Field(block, 0, 100);
    h.typeflag = block[156];
    h.linkname = Field(block, 157, 100);
    if (memcmp(block + 257,
               "ustar\0"
               "00",
               8) == 0) {
      h.magic = Header::kUstar;
    } else if (memcmp(block + 257, "ustar  \0", 8) == 0) {
      h.magic = Header::kGnu;
    } else {
      h.magic = Header::kV7;
    }
    if (h.magic != Header::kV7) {
      h.uname = Field(block, 265, 32);
      h.gname = Field(block, 297, 32);
    }
    if (h.magic == Header::kUstar) h.prefix = Field(block, 345, 155);
    if (!ParseNumber(block, 100, 8, &h.mode) ||
        !ParseNumber(block, 108, 8, &h.uid) ||
        !ParseNumber(block, 116, 8, &h.gid) ||
        !ParseNumber(block, 124, 12, &h.size) ||
        !ParseNumber(block, 136, 12, &h.mtime)) {
      return absl::InvalidArgumentError(
          absl::StrCat("malformed numeric field in tar header at tar offset ",
                       header_offset));
    }

    switch (h.typeflag) {
      case 'x':
      case 'L':
      case 'K': {
        if (h.size > kMaxExtensionHeaderBytes) {
          return absl::InvalidArgumentError(
              absl::StrCat("extension header of ", h.size,
                           " bytes at tar offset ", header_offset));
        }
        std::string data(h.size, '\0');
        got = tar.Read(data.data(), data.size());
        if (!got.ok()) return got.status();
        if (*got != data.size()) return tar.Truncated();
        CAIRN_RETURN_IF_ERROR(
            tar.Skip((kTarBlock - h.size % kTarBlock) % kTarBlock));
        const char* what = h.typeflag == 'x' ? "pax header: " : "GNU header: ";
        CheckCommonFields(h, what, &pending_issues);
        if (h.typeflag == 'x') {
          ParsePax(data, &pending_issues);
        } else {
          ReportOnce("gnu-long",
                     "archive uses GNU long-name headers ('L'/'K'), want "
                     "pax path/linkpath");
          std::string value(data.c_str());  // NUL-terminated.
          (h.typeflag == 'L' ? next_path_ : next_linkpath_) = value;
        }
        pending_extension = true;
        continue;
      }
      case 'g': {
        ReportOnce("pax-global", "archive has pax global headers ('g')");
        CAIRN_RETURN_IF_ERROR(
            tar.Skip((h.size + kTarBlock - 1) / kTarBlock * kTarBlock));
        continue;
      }
      default:
        break;
    }

    if (next_size_.has_value()) h.size = *next_size_;
    // Data follows regular files (and unknown types); none follows links,
    // directories and special files.
    const bool has_data =
        !(h.typeflag == '1' || h.typeflag == '2' || h.typeflag == '3' ||
          h.typeflag == '4' || h.typeflag == '5' || h.typeflag == '6');
    ++result_->entries;
    CheckEntry(h, std::move(pending_issues));
    pending_issues.clear();
    pending_extension = false;
    if (has_data) {
      CAIRN_RETURN_IF_ERROR(
          tar.Skip((h.size + kTarBlock - 1) / kTarBlock * kTarBlock));
    }
  }
  if (pending_extension) {
    Report("archive ends with an extension header and no entry");
  }
  return absl::OkStatus();
}

void Checker::CheckEntry(const Header& h, std::vector<std::string> issues) {
  std::string path = h.name;
  if (!h.prefix.empty()) path = absl::StrCat(h.prefix, "/", h.name);
  if (next_path_.has_value()) path = *next_path_;
  const std::string link =
      next_linkpath_.has_value() ? *next_linkpath_ : h.linkname;
  next_path_.reset();
  next_linkpath_.reset();
  next_size_.reset();

  CheckCommonFields(h, "", &issues);
  const uint64_t perm = h.mode & 07777;
  if ((h.mode & ~uint64_t{07777}) != 0) {
    issues.push_back(absl::StrCat("mode field ", absl::StrFormat("%o", h.mode),
                                  " carries file-type bits"));
  }
  auto want_mode = [&](std::initializer_list<uint64_t> allowed,
                       absl::string_view text) {
    if (std::find(allowed.begin(), allowed.end(), perm) == allowed.end()) {
      issues.push_back(absl::StrCat("mode ", Octal(perm), ", want ", text));
    }
  };
  auto want_no_size = [&](absl::string_view kind) {
    if (h.size != 0) {
      issues.push_back(
          absl::StrCat("size ", h.size, " for a ", kind, ", want 0"));
    }
  };
  const bool is_dir = h.typeflag == '5';
  switch (h.typeflag) {
    case '0':
      want_mode({0644, 0755}, "0644 or 0755");
      break;
    case '\0':
    case '7':
      issues.push_back(absl::StrCat(
          "type flag ", h.typeflag == '\0' ? "NUL" : "'7'", ", want '0'"));
      want_mode({0644, 0755}, "0644 or 0755");
      break;
    case '1':
      want_mode({0644, 0755}, "0644 or 0755");
      want_no_size("hardlink");
      if (!regular_files_.contains(link)) {
        issues.push_back(absl::StrCat("hardlink target ", Quote(link),
                                      " is not an earlier regular file"));
      }
      break;
    case '2':
      want_mode({0777}, "0777");
      want_no_size("symlink");
      if (link.empty()) issues.push_back("symlink has an empty target");
      break;
    case '5':
      want_mode({0755}, "0755");
      want_no_size("directory");
      break;
    case '3':
      issues.push_back("character device, not allowed");
      break;
    case '4':
      issues.push_back("block device, not allowed");
      break;
    case '6':
      issues.push_back("FIFO, not allowed");
      break;
    default:
      issues.push_back(absl::StrCat("unsupported type flag ",
                                    Quote(std::string(1, h.typeflag))));
      break;
  }

  // Path form.
  if (path.empty()) {
    issues.push_back("empty path");
  } else if (path[0] == '/') {
    issues.push_back("absolute path");
  } else if (path == "." || path == "./" || absl::StartsWith(path, "./")) {
    issues.push_back("path has a './' prefix, want none");
  } else {
    absl::string_view body = path;
    if (is_dir && !body.empty() && body.back() == '/') body.remove_suffix(1);
    for (absl::string_view part : absl::StrSplit(body, '/')) {
      if (part.empty() || part == "." || part == "..") {
        issues.push_back("path has an empty, '.' or '..' component");
        break;
      }
    }
  }
  const bool trailing_slash = !path.empty() && path.back() == '/';
  if (is_dir && !trailing_slash) {
    issues.push_back("directory path lacks the trailing '/'");
  } else if (!is_dir && trailing_slash) {
    issues.push_back("non-directory path ends with '/'");
  }

  // Order and parents.
  if (have_previous_) {
    if (path == previous_) {
      issues.push_back("duplicate entry");
    } else if (path < previous_) {
      issues.push_back(absl::StrCat("out of order: comes after ",
                                    Quote(previous_),
                                    ", want bytewise path order"));
    }
  }
  {
    absl::string_view body = path;
    if (trailing_slash) body.remove_suffix(1);
    const size_t slash = body.rfind('/');
    if (slash != absl::string_view::npos && slash != 0) {
      const std::string parent(body.substr(0, slash + 1));
      if (!directories_.contains(parent)) {
        issues.push_back(absl::StrCat("parent directory ", Quote(parent),
                                      " has no earlier entry"));
      }
    }
  }
  previous_ = path;
  have_previous_ = true;
  if (is_dir) {
    directories_.insert(trailing_slash ? path : absl::StrCat(path, "/"));
  } else if (h.typeflag == '0' || h.typeflag == '\0' || h.typeflag == '7') {
    regular_files_.insert(path);
  }

  if (!issues.empty()) {
    Report(
        absl::StrCat("entry ", Quote(path), ": ", absl::StrJoin(issues, "; ")));
  }
}

// Checks the gzip member header (RFC 1952) in the first bytes of the file.
void CheckGzipHeader(const unsigned char* h, size_t n, Checker* checker) {
  if (n < 10) return;  // libarchive reports the truncation.
  const unsigned flags = h[3];
  if (flags & 0x08) {
    checker->Report("gzip header stores a file name, want none (gzip -n)");
  }
  if (flags & 0x10) checker->Report("gzip header has a comment, want none");
  if (flags & 0x04) {
    checker->Report("gzip header has an extra field, want none");
  }
  if (flags & 0x02) checker->Report("gzip header has a header CRC, want none");
  const uint32_t mtime =
      h[4] | (h[5] << 8) | (h[6] << 16) | (static_cast<uint32_t>(h[7]) << 24);
  if (mtime != 0) {
    checker->Report(
        absl::StrCat("gzip header has mtime ", mtime, ", want 0 (gzip -n)"));
  }
}

}  // namespace

absl::StatusOr<PackResult> PackDirectoryWithResult(const std::string& dir,
                                                   const std::string& out_path,
                                                   const PackOptions& options) {
  if (options.gzip_level < 1 || options.gzip_level > 9) {
    return absl::InvalidArgumentError(absl::StrCat(
        "pack: gzip level ", options.gzip_level, " is not in 1..9"));
  }
  if (out_path.empty()) {
    return absl::InvalidArgumentError("pack: empty output path");
  }
  const std::string root = StripTrailingSlashes(dir);
  struct stat root_st;
  if (stat(root.c_str(), &root_st) != 0) {
    return ErrnoError(errno, absl::StrCat("pack: ", dir));
  }
  if (!S_ISDIR(root_st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat("pack: ", dir, " is not a directory"));
  }

  static std::atomic<uint64_t> counter{0};
  const std::string tmp =
      absl::StrCat(out_path, ".tmp-", getpid(), "-", counter++);
  OutputSink sink;
  UniqueFd fd(open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666));
  if (fd.get() < 0) {
    return ErrnoError(errno, absl::StrCat("pack: create ", tmp));
  }
  // Removed also if the process is killed (Ctrl-C) before it ends.
  RemoveOnSignal remove_on_signal(tmp);
  sink.fd = fd.get();

  // Never pack the output (old or new) into itself.
  std::vector<FileId> skip;
  struct stat st;
  if (fstat(fd.get(), &st) == 0) skip.emplace_back(st.st_dev, st.st_ino);
  if (stat(out_path.c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
    skip.emplace_back(st.st_dev, st.st_ino);
  }

  absl::StatusOr<PackResult> result;
  {
    ScopedUtf8Locale locale;
    if (!locale.ok()) {
      unlink(tmp.c_str());
      return absl::FailedPreconditionError(
          "pack: the C.UTF-8 locale is not available; it is needed to write "
          "names independently of the environment");
    }
    std::unique_ptr<archive, WriteArchiveFree> a(archive_write_new());
    absl::Status status = ConfigureWriter(a.get(), options.gzip_level, &sink);
    TreePacker packer(root, a.get(), std::move(skip),
                      options.testing_before_read);
    if (status.ok()) status = packer.Run();
    if (status.ok() && archive_write_close(a.get()) != ARCHIVE_OK) {
      status = ArchiveError(a.get(), absl::StrCat("pack: write ", tmp));
    }
    if (status.ok()) {
      result = packer.result();
    } else {
      result = status;
    }
  }
  if (const int err = fd.Reset(); err != 0 && result.ok()) {
    result = ErrnoError(err, absl::StrCat("pack: close ", tmp));
  }
  if (result.ok() && rename(tmp.c_str(), out_path.c_str()) != 0) {
    result = ErrnoError(errno, absl::StrCat("pack: rename to ", out_path));
  }
  if (!result.ok()) {
    unlink(tmp.c_str());
    return result;
  }
  result->digest = sink.hasher.Finish();
  result->archive_bytes = sink.bytes;
  return result;
}

absl::Status PackDirectory(const std::string& dir, const std::string& out_path,
                           const PackOptions& options) {
  return PackDirectoryWithResult(dir, out_path, options).status();
}

// Reports bytes after the first gzip member of file `fd` (RFC 1952): a
// second member (gzip -d and cairnd read it on) or other trailing bytes
// (cairnd refuses them); cairn pack writes one member ending the file.
// zlib's inflate stops at the member's end, which libarchive's gzip reader
// would read past. Read errors and corrupt or truncated data are left to
// the tar pass, which reports them.
void CheckGzipMembers(int fd, Checker* checker) {
  z_stream zs;
  std::memset(&zs, 0, sizeof(zs));
  if (inflateInit2(&zs, 16 + MAX_WBITS) != Z_OK) return;
  std::vector<unsigned char> in(1 << 18), out(1 << 18);
  uint64_t read_to = 0;  // File offset read up to.
  bool member_end = false;
  while (!member_end) {
    if (zs.avail_in == 0) {
      ssize_t n;
      do {
        n = pread(fd, in.data(), in.size(), static_cast<off_t>(read_to));
      } while (n < 0 && errno == EINTR);
      if (n <= 0) break;
      read_to += static_cast<uint64_t>(n);
      zs.next_in = in.data();
      zs.avail_in = static_cast<uInt>(n);
    }
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    const int r = inflate(&zs, Z_NO_FLUSH);
    if (r == Z_STREAM_END) {
      member_end = true;
    } else if (r != Z_OK && r != Z_BUF_ERROR) {
      break;
    }
  }
  const uint64_t end = read_to - zs.avail_in;
  inflateEnd(&zs);
  struct stat st;
  if (!member_end || fstat(fd, &st) != 0) return;
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size > end) {
    checker->Report(absl::StrCat(
        size - end, " bytes after the gzip member ending at file offset ", end,
        " (another member or trailing data), want one member ending the "
        "file"));
  }
}

absl::StatusOr<CheckResult> CheckArchive(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoError(errno, absl::StrCat("check: ", path));
  unsigned char magic[10];
  ssize_t n;
  do {
    n = pread(fd.get(), magic, sizeof(magic), 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return ErrnoError(errno, absl::StrCat("check: read ", path));
  if (n == 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("check: ", path, " is empty, not a tar archive"));
  }

  CheckResult result;
  Checker checker(&result);
  const bool gzip = n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b;
  if (gzip) CheckGzipHeader(magic, static_cast<size_t>(n), &checker);

  std::unique_ptr<archive, ReadArchiveFree> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  archive_read_support_format_raw(a.get());
  // Failures here are the compression layer's (e.g. truncated gzip).
  int r = archive_read_open_fd(a.get(), fd.get(), kReadBufferBytes);
  archive_entry* entry = nullptr;
  if (r == ARCHIVE_OK || r == ARCHIVE_WARN) {
    r = archive_read_next_header(a.get(), &entry);
  }
  if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
    const char* msg = archive_error_string(a.get());
    return absl::DataLossError(absl::StrCat(
        "check: ", path, ": ", msg != nullptr ? msg : "cannot read"));
  }
  // Filter 0 is the one nearest the tar stream; the last is the file.
  const int filters = archive_filter_count(a.get());
  result.compression = filters <= 1 ? "none" : archive_filter_name(a.get(), 0);
  if (filters > 2) {
    checker.Report(absl::StrCat("archive is compressed ", filters - 1,
                                " times, want gzip once"));
  } else if (result.compression == "none") {
    checker.Report("archive is not compressed, want gzip");
  } else if (!gzip || archive_filter_code(a.get(), 0) != ARCHIVE_FILTER_GZIP) {
    checker.Report(absl::StrCat("archive is compressed with ",
                                result.compression, ", want gzip"));
  }

  if (gzip) CheckGzipMembers(fd.get(), &checker);

  TarStream tar(a.get());
  absl::Status status = checker.Run(tar);
  if (!status.ok()) {
    return absl::Status(status.code(),
                        absl::StrCat("check: ", path, ": ", status.message()));
  }
  return result;
}

}  // namespace cairn
