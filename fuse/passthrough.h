// Copyright 2026 The Cairn Authors.
//
// FusePassthrough: FUSE passthrough (Linux >= 6.9 with
// CONFIG_FUSE_PASSTHROUGH; protocol 7.40) under a libfuse that predates it.
// libfuse supports passthrough from 3.16; Debian 12 ships 3.14, whose
// custom I/O hooks (fuse_session_custom_io) let this class add the three
// protocol pieces it lacks, as the kernel documents them
// (Documentation/filesystems/fuse-passthrough.rst and
// include/uapi/linux/fuse.h, protocol 7.40):
//
//  1. INIT: when the kernel offers FUSE_PASSTHROUGH (flags2 bit 5 of an
//     FUSE_INIT_EXT request), the reply asks for it, with
//     max_stack_depth 1 (backing files on a file system that stacks on
//     nothing, such as ext4 or xfs).
//  2. FUSE_DEV_IOC_BACKING_OPEN / _CLOSE on /dev/fuse register a blob's
//     open file with the connection as a "backing id" (root only).
//  3. OPEN replies carrying a backing id set FOPEN_PASSTHROUGH and
//     fuse_open_out.backing_id: the kernel then serves read, mmap and
//     splice of that open file from the backing file itself (its page
//     cache), without READ requests.
//
// Use: the session's custom read hook passes every request to OnRequest,
// the writev hook every reply to OnReply before writing it. An OPEN
// handler calls Acquire and puts the id in fuse_file_info::fh (libfuse
// copies fh into fuse_open_out, and OnReply turns it into the backing id);
// RELEASE calls Release(fh). Ids are shared per blob digest and closed
// when their last open file is released.
//
// Thread-safe: the hooks and Acquire/Release run on any worker thread.

#ifndef CAIRN_FUSE_PASSTHROUGH_H_
#define CAIRN_FUSE_PASSTHROUGH_H_

#include <sys/uio.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "store/digest.h"

namespace cairn {

class FusePassthrough {
 public:
  // `dev_fd`: the session's /dev/fuse descriptor (not owned; must outlive
  // this object or the ioctls fail with EBADF).
  explicit FusePassthrough(int dev_fd);

  FusePassthrough(const FusePassthrough&) = delete;
  FusePassthrough& operator=(const FusePassthrough&) = delete;

  // Inspects request `buf` (`len` bytes, as read from /dev/fuse): notes
  // whether INIT offers passthrough and which requests are OPENs.
  void OnRequest(const void* buf, size_t len);

  // Patches reply `iov[0..count)` (iov[0]: the fuse_out_header) in place:
  // the INIT reply asks for passthrough if it was offered, a successful
  // OPEN reply whose fh is a backing id gets FOPEN_PASSTHROUGH. Returns
  // the backing id the reply hands out, 0 for none; if writing the reply
  // then fails (the opener was interrupted: ENOENT), the caller must
  // Release that id, since no RELEASE will come for it.
  uint32_t OnReply(struct iovec* iov, int count);

  // Whether INIT asked the kernel for passthrough (set while INIT is
  // processed, before any OPEN). The kernel may still refuse backing ids
  // (Acquire fails): then files are opened without passthrough.
  bool active() const { return active_.load(std::memory_order_acquire); }

  // The backing id of blob `digest`, registering open blob `fd` (not
  // owned; only used when the digest has no live id) if needed, plus one
  // reference. Errors: the ioctl's errno as a Status (PermissionDenied
  // without CAP_SYS_ADMIN, Unimplemented when the connection has no
  // passthrough, ResourceExhausted for ENOMEM, ENOSPC (ids), EMFILE,
  // ENFILE; Unavailable for EAGAIN), naming the digest. Live ids keep
  // being handed out after any failure, but the kernel fails an open whose
  // inode already has a passthrough file open unless it uses the same
  // backing file, and one whose inode has cached opens if it uses one. So
  // a blob that failed is never registered again (FailedPrecondition): for
  // good after a transient failure (memory, ids, file table), and after
  // any other (a refusal: refused()) no new blob is.
  absl::StatusOr<uint32_t> Acquire(const Digest& digest, int fd);

  // Whether the kernel refused a backing file for a reason other than a
  // transient shortage: no new blob gets one from then on.
  bool refused() const;

  // Drops one reference to backing id `id` (an OPEN's fh); the last one
  // closes the id. Unknown ids are ignored.
  void Release(uint32_t id);

  // Backing ids currently registered (one per blob with open files).
  size_t live() const;

 private:
  const int dev_fd_;
  std::atomic<bool> active_{false};
  std::atomic<uint64_t> init_unique_{0};  // 0: no INIT seen (or answered).

  // OPEN requests read and not yet answered; checked by OnReply only
  // while non-empty (open_count_).
  std::atomic<size_t> open_count_{0};
  mutable absl::Mutex open_mu_;
  absl::flat_hash_set<uint64_t> open_uniques_ ABSL_GUARDED_BY(open_mu_);

  struct Backing {
    uint32_t id = 0;
    uint64_t refs = 0;
  };
  mutable absl::Mutex backing_mu_;
  bool refused_ ABSL_GUARDED_BY(backing_mu_) = false;
  // Blobs whose registration failed for a transient reason: served
  // without passthrough in this connection from then on.
  absl::flat_hash_set<Digest> fallen_back_ ABSL_GUARDED_BY(backing_mu_);
  absl::flat_hash_map<Digest, Backing> by_digest_ ABSL_GUARDED_BY(backing_mu_);
  absl::flat_hash_map<uint32_t, Digest> by_id_ ABSL_GUARDED_BY(backing_mu_);
};

}  // namespace cairn

#endif  // CAIRN_FUSE_PASSTHROUGH_H_
