// Copyright 2026 The Cairn Authors.
//
// Reads a pushed tarball (gzip, zstd or plain tar; detected from its first
// bytes) in one streaming pass, checks that it is safe to serve, and turns
// it into a file index. Tar entries are parsed by libarchive; gzip is
// inflated with ISA-L (isal_inflate) and zstd with libzstd before libarchive
// sees the tar stream, since those inflaters are faster than the ones
// libarchive links.
//
// Safety rules (any violation fails the whole archive with InvalidArgument,
// or ResourceExhausted for limits, and a message naming the entry):
//   - absolute paths, ".." components, empty or NUL-containing names;
//   - the same path twice (after normalising "./" and trailing "/");
//   - a path whose parent is a non-directory entry;
//   - hardlinks whose target is not an earlier regular file of the archive,
//     or that carry data (pax allows it; extraction would write that data
//     into the target);
//   - anything but zeros after the end-of-archive marker, or, compressed,
//     more than 4 MiB of them (hidden entries, decompression bombs); a
//     header failing its checksum ("corrupt tar archive"); a tar ending at
//     an entry boundary without its end-of-archive marker ("truncated tar
//     archive": the front of a cut upload; one zero block is accepted).
//   - device files, FIFOs and sockets;
//   - more than max_entries entries, a path longer than max_path_bytes,
//     more than max_total_path_bytes of paths and link targets in all, or
//     more than max_unpacked_bytes of regular-file content, a metadata
//     field (below) longer than max_metadata_field_bytes.
// setuid/setgid bits are stripped from modes and the paths recorded (the
// first kMaxListedSetidPaths, and their count).
// Parent directories an archive leaves implicit are added (mode 0755).
//
// Metadata: a root "cairn.json" ({"name","version","licence" or "license",
// "entrypoint"}), else "package/package.json" (npm: name, version, license,
// and "bin" (a string, or the first value of an object) as entrypoint,
// prefixed with "package/"). Parsed with nlohmann-json; a malformed file is
// an InvalidArgument naming it.

#ifndef CAIRN_STORE_ARCHIVE_INDEX_H_
#define CAIRN_STORE_ARCHIVE_INDEX_H_

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

struct ArchiveLimits {
  uint64_t max_entries = 1'000'000;
  uint64_t max_path_bytes = 4096;
  // Sum of every entry's path and link target: what an index holds in
  // memory while it is built and committed (a few times over).
  uint64_t max_total_path_bytes = 64ull << 20;  // 64 MiB.
  uint64_t max_unpacked_bytes = 64ull << 30;    // 64 GiB.
  // Each metadata field (name, version, licence, entrypoint): refs copy an
  // artefact's metadata once per slot, into every ref response.
  uint64_t max_metadata_field_bytes = 4096;
};

// ArchiveIndex::stripped_setid_paths keeps at most this many paths.
inline constexpr size_t kMaxListedSetidPaths = 100;

// Supplies the compressed tarball as a sequence of chunks.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  // Returns the next chunk, or an empty view at end of input. The view stays
  // valid until the next call. Errors end the read (e.g. Cancelled when the
  // upload was abandoned).
  virtual absl::StatusOr<absl::string_view> Next() = 0;
};

// Receives each regular file's content while the archive is read.
class FileContentSink {
 public:
  virtual ~FileContentSink() = default;
  // Called once per regular file (not for hardlinks) before its bytes.
  // `size` is the tar header's size in bytes.
  virtual absl::Status BeginFile(absl::string_view path, uint64_t size) = 0;
  virtual absl::Status Append(absl::string_view data) = 0;
  // `digest` is the SHA-256 of the bytes passed to Append (all zero when
  // HashesContent()).
  virtual absl::Status EndFile(const Digest& digest) = 0;
  // True if the sink hashes file contents itself (e.g. on another thread):
  // IndexArchive then skips its own SHA-256 and leaves content_digest empty
  // in the index; the caller fills it in with FillContentDigests.
  virtual bool HashesContent() const { return false; }
};

struct IndexedEntry {
  std::string path;  // Normalised relative path ("bin/tool").
  store::FileRecord record;
};

struct ArchiveIndex {
  store::ArtefactRecord::Compression compression = store::ArtefactRecord::NONE;
  // Every entry including synthesised parent directories, in archive order
  // (parents before children). record.entry_id is 1-based in this order;
  // hardlinks carry their target's entry_id. Digests are raw 32 bytes.
  std::vector<IndexedEntry> entries;
  uint64_t regular_files = 0;
  uint64_t unpacked_bytes = 0;  // Sum of regular file sizes.
  store::ArtefactMetadata metadata;
  // Paths whose setuid/setgid bits were stripped, the first
  // kMaxListedSetidPaths in archive order, and how many there were.
  std::vector<std::string> stripped_setid_paths;
  uint64_t stripped_setid_count = 0;
};

// Reads the whole archive from `source`, sends file contents to `sink`
// (which may be null to only validate) and returns its index. Not
// thread-safe; runs on the caller's thread.
absl::StatusOr<ArchiveIndex> IndexArchive(ByteSource& source,
                                          const ArchiveLimits& limits,
                                          FileContentSink* sink);

// Whether `status`, an error IndexArchive returned, refuses the archive
// itself: unsafe, malformed or over `limits` (InvalidArgument,
// ResourceExhausted or OutOfRange, marked with a status payload). False for
// every other status, including failures of the ByteSource, of the
// FileContentSink (a full disk is ResourceExhausted too) and of memory,
// which say nothing about the archive. Statuses rebuilt from IndexArchive's
// keep the mark only if they copy its payloads.
bool IsArchiveRejection(const absl::Status& status);

// Sets content_digest of the index's regular files from `digests` (one per
// regular file, in entry order) and of each hardlink from its target. For
// indexes made with a sink that HashesContent(). Errors: InvalidArgument
// if digests.size() != index->regular_files.
absl::Status FillContentDigests(const std::vector<Digest>& digests,
                                ArchiveIndex* index);

}  // namespace cairn

#endif  // CAIRN_STORE_ARCHIVE_INDEX_H_
