// Copyright 2026 The Cairn Authors.
//
// CairnFs: the read-only FUSE mount of a Store (libfuse3 low-level API).
// See docs/fuse.md for the layout:
//
//   /by-digest/sha256:<hex>/...   any artefact's tree (immutable)
//   /<package>@<name>             symlink to by-digest/sha256:<hex> of the
//                                 host slot (noarch fallback)
//   /team/tool@main               namespaced packages as directories
//
// Extended attributes tell what is served: user.cairn.digest of every
// regular file and artefact root, cairn.{ref,slot,digest,generation} of a
// ref symlink. Artefacts whose index is not built yet (INDEXING) are absent.
//
// All state hangs off the session's userdata (no globals). Thread-safe.

#ifndef CAIRN_FUSE_CAIRN_FS_H_
#define CAIRN_FUSE_CAIRN_FS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "store/refs.h"
#include "store/store.h"

namespace cairn {

struct CairnFsOptions {
  // Threads serving READ requests and first verifications; the session
  // loop's own thread answers everything else.
  int workers = 4;
  // Adds the allow_other mount option (root, or user_allow_other).
  bool allow_other = false;
  // Slot used to resolve refs; empty: HostSlot().
  std::string slot;
  // FUSE passthrough (docs/fuse.md, "Passthrough"): every open of a file
  // hands the kernel the file's blob, which then serves read, mmap and
  // exec from the blob's own page cache at native speed, without READ
  // requests. Costs one OPEN (and one RELEASE) request per open instead
  // of none. Needs Linux >= 6.9 with CONFIG_FUSE_PASSTHROUGH, root, and a
  // data directory on a file system that stacks on nothing (ext4, xfs);
  // where the kernel does not offer it the mount works as without it.
  bool passthrough = false;
  // Testing only: called on a worker just before a blob's first
  // verification hash (EnsureVerified), with the blob's digest.
  std::function<void(const Digest&)> testing_before_hash;
};

// Counters of one mount since it was mounted (for tests and benchmarks).
struct CairnFsStats {
  uint64_t lookups = 0;  // LOOKUP requests, whatever their outcome.
  // Entries READDIRPLUS returned with their attributes: each spares the
  // kernel a LOOKUP (and counts as one for FORGET).
  uint64_t readdirplus_entries = 0;
  uint64_t getxattrs = 0;  // GETXATTR requests, any name.
  // OPENDIR requests (one per mount where the kernel supports zero-message
  // opendir: the first, answered ENOSYS) and READDIR(PLUS) requests.
  uint64_t opendirs = 0;
  uint64_t readdirs = 0;
  uint64_t reads = 0;  // READ requests (none for passthrough files).
  // READs of two pages or more: libfuse splices their replies when it can
  // (smaller ones it copies).
  uint64_t large_reads = 0;
  // Replies libfuse sent by splice: READs whose bytes went from the blob's
  // page cache to the kernel without a copy through cairnd's memory.
  uint64_t spliced_replies = 0;
  // Blob files opened for READs (each verified on its first use), and
  // those kept open for the READs of files bigger than one READ (at most
  // 64, the most recently used).
  uint64_t blob_opens = 0;
  uint64_t open_blob_files = 0;
  // Whether files are opened with passthrough: asked for, offered by the
  // kernel at INIT, and no backing file refused since.
  bool passthrough = false;
  uint64_t passthrough_opens = 0;  // Opens handed a backing file.
  // Blobs registered as backing files now (those with passthrough opens
  // not yet released).
  uint64_t backing_files = 0;
  // Inodes in the mount's table: those the kernel holds (looked up and not
  // yet forgotten), "/", /by-digest, and one per namespace and ref name
  // listed (docs/fuse.md, "Inodes").
  uint64_t inodes = 0;
  // READs and passthrough opens that came while another worker hashed
  // their blob for its first verification, and were queued behind that
  // hash rather than holding a worker of their own.
  uint64_t verification_waits = 0;
};

class CairnFs {
 public:
  // Creates the FUSE session, mounts it on `mountpoint` (ro, nosuid, nodev)
  // and runs the session loop on its own thread (one thread; READs and
  // passthrough opens on CairnFsOptions::workers threads). `store` and `refs`
  // are not owned and must outlive the CairnFs. Errors: InvalidArgument for
  // a null store/refs; Internal when the session or the mount fails.
  static absl::StatusOr<std::unique_ptr<CairnFs>> Mount(
      Store* store, RefStore* refs, const std::string& mountpoint,
      const CairnFsOptions& options = {});

  // Stops the loop, aborts the connection (as root: through fusectl, a
  // detached instance of its own if it is not mounted, else a forced
  // unmount), joins
  // the loop and detaches the mount (a process still using the mount then
  // gets ENOTCONN). Acts on the path only while this mount is the one on
  // top there, and on the connection only while it lives. Idempotent (OK
  // once unmounted). Errors: FailedPrecondition when the mount is covered
  // by another file system and its connection cannot be aborted (not
  // root): the session is then left running, and logged.
  absl::Status Unmount();

  ~CairnFs();
  CairnFs(const CairnFs&) = delete;
  CairnFs& operator=(const CairnFs&) = delete;

  const std::string& mountpoint() const;

  // Whether the FUSE connection has ended while mounted: unmounted from
  // outside (umount, fusermount3 -u) or aborted. Thread-safe, but not
  // concurrently with Unmount (callers serialise the two, as MountService
  // does under its lock).
  bool connection_ended() const;

  // A snapshot of the counters. Thread-safe.
  CairnFsStats stats() const;

  struct State;  // The session's userdata; defined in cairn_fs.cc.

 private:
  explicit CairnFs(std::unique_ptr<State> state);
  std::unique_ptr<State> state_;
};

}  // namespace cairn

#endif  // CAIRN_FUSE_CAIRN_FS_H_
