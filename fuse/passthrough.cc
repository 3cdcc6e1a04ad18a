// Copyright 2026 The Cairn Authors.

#include "fuse/passthrough.h"

#include <errno.h>
#include <linux/fuse.h>
#include <sys/ioctl.h>

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

// Protocol 7.40 additions (include/uapi/linux/fuse.h), absent from the
// 7.38 header Debian 12 ships. Same sizes as the 7.38 structs, whose
// padding they fill.
constexpr uint64_t kFusePassthrough = 1ULL << 37;  // INIT flag.
constexpr uint32_t kFopenPassthrough = 1u << 7;    // fuse_open_out.open_flags.
// FUSE_DEV_IOC_BACKING_OPEN / _CLOSE.
struct BackingMap {
  int32_t fd;
  uint32_t flags;
  uint64_t padding;
};
constexpr uint32_t kDevIocMagic = 229;
constexpr unsigned long kBackingOpen = _IOW(kDevIocMagic, 1, BackingMap);
constexpr unsigned long kBackingClose = _IOW(kDevIocMagic, 2, uint32_t);

struct InitOut {  // fuse_init_out, 7.40.
  uint32_t major;
  uint32_t minor;
  uint32_t max_readahead;
  uint32_t flags;
  uint16_t max_background;
  uint16_t congestion_threshold;
  uint32_t max_write;
  uint32_t time_gran;
  uint16_t max_pages;
  uint16_t map_alignment;
  uint32_t flags2;
  uint32_t max_stack_depth;
  uint32_t unused[6];
};
static_assert(sizeof(InitOut) == sizeof(fuse_init_out));
static_assert(offsetof(InitOut, max_stack_depth) ==
              offsetof(fuse_init_out, unused));

struct OpenOut {  // fuse_open_out, 7.40.
  uint64_t fh;
  uint32_t open_flags;
  int32_t backing_id;
};
static_assert(sizeof(OpenOut) == sizeof(fuse_open_out));

// Backing files on a file system that stacks on nothing (ext4, xfs, ...).
// Passthrough raises the FUSE mount's own stack depth to this.
constexpr uint32_t kMaxStackDepth = 1;

}  // namespace

FusePassthrough::FusePassthrough(int dev_fd) : dev_fd_(dev_fd) {}

void FusePassthrough::OnRequest(const void* buf, size_t len) {
  if (len < sizeof(fuse_in_header)) return;
  fuse_in_header in;
  std::memcpy(&in, buf, sizeof(in));
  if (in.opcode == FUSE_OPEN) {
    absl::MutexLock lock(&open_mu_);
    if (open_uniques_.insert(in.unique).second) {
      open_count_.fetch_add(1, std::memory_order_release);
    }
  } else if (in.opcode == FUSE_INIT &&
             len >= sizeof(fuse_in_header) + sizeof(fuse_init_in)) {
    fuse_init_in init;
    std::memcpy(&init, static_cast<const char*>(buf) + sizeof(in),
                sizeof(init));
    const uint64_t flags =
        init.flags |
        ((init.flags & FUSE_INIT_EXT) != 0 ? uint64_t{init.flags2} << 32 : 0);
    if ((flags & kFusePassthrough) != 0) {
      init_unique_.store(in.unique, std::memory_order_relaxed);
      // Before the INIT handler runs (on this thread), so it keeps OPEN.
      active_.store(true, std::memory_order_release);
    }
  }
}

uint32_t FusePassthrough::OnReply(struct iovec* iov, int count) {
  if (count < 1 || iov[0].iov_len < sizeof(fuse_out_header)) return 0;
  auto* out = static_cast<fuse_out_header*>(iov[0].iov_base);
  if (out->unique == 0) return 0;  // A notification.
  const uint64_t init_unique = init_unique_.load(std::memory_order_relaxed);
  if (init_unique != 0 && out->unique == init_unique) {
    init_unique_.store(0, std::memory_order_relaxed);
    // libfuse builds the whole 7.3x fuse_init_out in one iovec.
    if (out->error == 0 && count == 2 && iov[1].iov_len == sizeof(InitOut)) {
      auto* init = static_cast<InitOut*>(iov[1].iov_base);
      init->flags |= FUSE_INIT_EXT;
      init->flags2 |= static_cast<uint32_t>(kFusePassthrough >> 32);
      init->max_stack_depth = kMaxStackDepth;
    } else {
      active_.store(false, std::memory_order_release);
    }
    return 0;
  }
  if (open_count_.load(std::memory_order_acquire) == 0) return 0;
  {
    absl::MutexLock lock(&open_mu_);
    if (open_uniques_.erase(out->unique) == 0) return 0;
    open_count_.fetch_sub(1, std::memory_order_release);
  }
  if (out->error != 0 || count != 2 || iov[1].iov_len != sizeof(OpenOut)) {
    return 0;
  }
  auto* open = static_cast<OpenOut*>(iov[1].iov_base);
  if (open->fh == 0 || open->fh > UINT32_MAX) return 0;  // Not a backing id.
  open->open_flags |= kFopenPassthrough;
  open->backing_id = static_cast<int32_t>(open->fh);
  return static_cast<uint32_t>(open->fh);
}

absl::StatusOr<uint32_t> FusePassthrough::Acquire(const Digest& digest,
                                                  int fd) {
  absl::MutexLock lock(&backing_mu_);
  auto it = by_digest_.find(digest);
  if (it != by_digest_.end()) {
    ++it->second.refs;
    return it->second.id;
  }
  if (refused_) {
    return absl::FailedPreconditionError(
        absl::StrCat("FUSE passthrough for blob ", digest.ToString(),
                     ": the kernel refused an earlier backing file"));
  }
  if (fallen_back_.contains(digest)) {
    return absl::FailedPreconditionError(
        absl::StrCat("FUSE passthrough for blob ", digest.ToString(),
                     ": its backing file failed before; it is served "
                     "without passthrough in this mount"));
  }
  BackingMap map;
  std::memset(&map, 0, sizeof(map));
  map.fd = fd;
  const int id = ioctl(dev_fd_, kBackingOpen, &map);
  if (id <= 0) {
    const int err = id < 0 ? errno : EPROTO;
    if (err == ENOMEM || err == ENOSPC || err == EMFILE || err == ENFILE ||
        err == EAGAIN) {
      fallen_back_.insert(digest);
    } else {
      refused_ = true;
    }
    return absl::ErrnoToStatus(
        err, absl::StrCat("FUSE_DEV_IOC_BACKING_OPEN of blob ",
                          digest.ToString(), " (FUSE passthrough)"));
  }
  by_digest_.emplace(digest, Backing{static_cast<uint32_t>(id), 1});
  by_id_.emplace(static_cast<uint32_t>(id), digest);
  return static_cast<uint32_t>(id);
}

bool FusePassthrough::refused() const {
  absl::MutexLock lock(&backing_mu_);
  return refused_;
}

void FusePassthrough::Release(uint32_t id) {
  absl::MutexLock lock(&backing_mu_);
  auto it = by_id_.find(id);
  if (it == by_id_.end()) return;
  auto b = by_digest_.find(it->second);
  if (--b->second.refs > 0) return;
  // The kernel keeps its own reference for files still using the id;
  // closing it only stops new opens from naming it.
  uint32_t arg = id;
  ioctl(dev_fd_, kBackingClose, &arg);
  by_digest_.erase(b);
  by_id_.erase(it);
}

size_t FusePassthrough::live() const {
  absl::MutexLock lock(&backing_mu_);
  return by_id_.size();
}

}  // namespace cairn
