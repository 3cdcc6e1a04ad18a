// Copyright 2026 The Cairn Authors.
//
// Deterministic ("normalised") tarballs: the same directory tree always
// packs to the same bytes, whatever the umask, mtimes, owners, creation
// order or locale of the machine that packs it. docs/packing.md is the
// reference for the convention. It is close to what
//
//   tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner
//       --format=ustar -cf - -C DIR . | gzip -n -6
//
// produces, but not byte-equal to it (no "./" entry or prefix, git's entry
// order, normalised modes, pax headers for long names). The rules:
//
//   Format    POSIX ustar headers (libarchive's "restricted pax"): a pax
//             extended header ('x') is written only for an entry that ustar
//             cannot hold (long or non-ASCII name or link target, size of
//             8 GiB or more), and then only with the keys path, linkpath,
//             size, and hdrcharset=BINARY for names that are not valid
//             UTF-8. Names are stored byte for byte; packing converts them
//             as under C.UTF-8 whatever the process locale. No global
//             headers, no GNU extensions.
//   Paths     Relative to DIR, "/"-separated, no "./" prefix, no root entry.
//             Directories carry a trailing "/" ("bin/"). Every directory in
//             the tree has its own entry.
//   Order     Entries in strictly increasing bytewise (memcmp) order of
//             their stored path, directories compared with their trailing
//             "/" (git's tree order). So parents precede children.
//   Metadata  mtime 0, uid 0, gid 0, empty uname and gname; no atime,
//             ctime, xattrs, ACLs or file flags.
//   Modes     As git normalises them: regular files 0644, or 0755 if any
//             execute bit is set; directories 0755; symlinks 0777 with the
//             target kept byte for byte. setuid/setgid/sticky are dropped.
//   Links     Symlinks are never followed (inside DIR). Files sharing an
//             inode (st_dev, st_ino) are stored once, as a regular file at
//             the first path in entry order; later paths are hardlink
//             entries (size 0) naming that first path.
//   Special   Devices, FIFOs and sockets are an error naming the path.
//   gzip      One gzip member written by libarchive's zlib-backed filter at
//             level 6: no file name, no comment, no extra field, mtime 0,
//             OS byte 3 (Unix). The tar stream is not padded to a record
//             size and the gzip output is not padded to a block size.
//
// The bytes are stable for a given zlib deflate implementation; a different
// zlib could compress differently (the tar stream inside would still be
// identical).

#ifndef CAIRN_TOOLS_PACK_PACKER_H_
#define CAIRN_TOOLS_PACK_PACKER_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "store/digest.h"

namespace cairn {

struct PackOptions {
  // gzip level, 1..9. The convention is 6; any other level still gives a
  // deterministic (and CheckArchive-clean) tarball but different bytes.
  int gzip_level = 6;
  // Testing only: called with the path (relative to the root) of each
  // regular file once it is open and before its bytes are read, and of
  // each directory below the root before it is opened, so that tests can
  // change the tree at exactly those points.
  std::function<void(const std::string& rel)> testing_before_read;
};

// What PackDirectoryWithResult wrote.
struct PackResult {
  Digest digest;               // SHA-256 of the whole .tar.gz file.
  uint64_t archive_bytes = 0;  // Size of the .tar.gz file in bytes.
  uint64_t entries = 0;        // Tar entries of every type.
  uint64_t regular_files = 0;  // Regular file entries (not hardlinks).
  uint64_t file_bytes = 0;     // Sum of regular file sizes in bytes.
};

// Packs the tree rooted at `dir` (a directory, or a symlink to one) into a
// normalised .tar.gz at `out_path`, following the convention above.
//
// File content is streamed in 1 MiB reads; memory use is bounded by the
// widest directory (names of one directory level are sorted in memory) and
// the number of multiply-linked files. The archive is written to a
// temporary file next to `out_path` and renamed over it only on success;
// on error nothing is left behind. If `out_path` (or the temporary file)
// lies inside `dir` it is not packed. Not fsynced.
//
// Thread-safety: independent calls may run concurrently. The calling
// thread's locale is switched to C.UTF-8 (uselocale) during the call.
//
// Errors (messages name the path):
//   NotFound / PermissionDenied / Internal  from the file system (errno);
//   InvalidArgument  `dir` is not a directory, a special file was found, or
//                    options are out of range;
//   Aborted          a file changed (size, mtime or ctime) while it was
//                    being read, or a file or directory was replaced
//                    (another inode, e.g. a symlink) between being listed
//                    and opened;
//   FailedPrecondition  the C.UTF-8 locale is missing (glibc has it built
//                    in since 2.35);
//   Internal         libarchive failures.
absl::Status PackDirectory(const std::string& dir, const std::string& out_path,
                           const PackOptions& options = {});

// As PackDirectory, and also returns the output's digest and size (hashed
// while writing, so without a second read) and entry counts.
absl::StatusOr<PackResult> PackDirectoryWithResult(
    const std::string& dir, const std::string& out_path,
    const PackOptions& options = {});

// The verdict of CheckArchive.
struct CheckResult {
  static constexpr size_t kMaxReasons = 20;

  // True iff no deviation from the convention was found.
  bool ok() const { return problems == 0; }

  // Human-readable deviations in archive order, at most kMaxReasons, e.g.
  // "entry 'bin/tool': mtime is 1700000000, want 0".
  std::vector<std::string> reasons;
  uint64_t problems = 0;    // All deviations found (>= reasons.size()).
  std::string compression;  // "gzip", "none", or libarchive's filter name.
  uint64_t entries = 0;     // Real entries (pax/GNU extension headers
                            // not counted).
};

// Reads the tarball at `path` (gzip or plain, detected from its bytes;
// other libarchive filters are read but reported as deviations) in one
// streaming pass and reports whether it follows the convention above. The
// tar headers are parsed directly (after libarchive decompresses them) so
// that header-level deviations are visible: extension headers and their
// keys, GNU or v7 headers, uname/gname fields, header order. Checks: gzip
// header (name, comment, extra field, mtime), format, entry order,
// duplicates, missing parent directory entries, path form ("./", "/",
// "..", trailing "/"), mtime/uid/gid/uname/gname of every header, modes,
// sizes of non-regular entries, hardlink targets, special files.
// File contents and the gzip level are not checked.
//
// Thread-safety: independent calls may run concurrently.
//
// Errors: NotFound / PermissionDenied opening `path`; InvalidArgument when
// it is not a tar archive (bad header checksum); DataLoss when it is
// truncated or its compression is corrupt.
absl::StatusOr<CheckResult> CheckArchive(const std::string& path);

}  // namespace cairn

#endif  // CAIRN_TOOLS_PACK_PACKER_H_
