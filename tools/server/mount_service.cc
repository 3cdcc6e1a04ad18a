// Copyright 2026 The Cairn Authors.

#include "tools/server/mount_service.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "store/ref_name.h"
#include "tools/rpc/status.h"

extern char** environ;

namespace cairn {
namespace {

// realpath(3) as a StatusOr. Errors: the errno's code (NotFound for
// ENOENT, ...) naming `path`.
absl::StatusOr<std::string> RealPath(const std::string& path) {
  char buf[PATH_MAX];
  if (realpath(path.c_str(), buf) == nullptr) {
    const int err = errno;
    if (err == ENOENT) {
      return absl::NotFoundError(
          absl::StrCat(path,
                       " does not exist (create an empty directory "
                       "there first)"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("realpath ", path));
  }
  return std::string(buf);
}

// `path` made lexically normal, without a trailing slash ("/" stays).
std::string Normalise(const std::string& path) {
  std::string s = std::filesystem::path(path).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

absl::Status CheckAbsolute(const std::string& path) {
  if (path.empty() || path[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("path must be absolute, got \"", path, "\""));
  }
  return absl::OkStatus();
}

// Whether `path` (a realpath) lies strictly below `root` (a realpath).
bool StrictlyInside(const std::string& path, const std::string& root) {
  if (root == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > root.size() + 1 && absl::StartsWith(path, root) &&
         path[root.size()] == '/';
}

// A directory that only root or this process's user can change.
absl::Status CheckTrustedDirectory(const std::string& dir) {
  struct stat st;
  if (lstat(dir.c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", dir));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not a directory"));
  }
  if (st.st_uid != 0 && st.st_uid != geteuid()) {
    return absl::PermissionDeniedError(absl::StrCat(
        dir, " is owned by uid ", st.st_uid, ", not by root or cairnd's user"));
  }
  if ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        dir, " is writable by group or others (mode ",
        absl::StrFormat("%04o", st.st_mode & 07777),
        "); mounts need every directory from "
        "the mount root down to the mount point's parent to be writable by "
        "root or cairnd's user only (chmod go-w)"));
  }
  return absl::OkStatus();
}

// Whether `path` is the root of a mount: statx's STATX_ATTR_MOUNT_ROOT,
// else a device differing from its parent's.
absl::StatusOr<bool> IsMountPoint(const std::string& path) {
  struct statx stx;
  if (statx(AT_FDCWD, path.c_str(), AT_SYMLINK_NOFOLLOW, STATX_BASIC_STATS,
            &stx) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("statx ", path));
  }
  if ((stx.stx_attributes_mask & STATX_ATTR_MOUNT_ROOT) != 0) {
    return (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0;
  }
  struct stat self, parent;
  const std::string up = std::filesystem::path(path).parent_path().string();
  if (stat(path.c_str(), &self) != 0 || stat(up.c_str(), &parent) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  return self.st_dev != parent.st_dev;
}

// Errors: FailedPrecondition naming the first entry when `dir` is not
// empty; the errno's code when it cannot be read.
absl::Status CheckEmptyDirectory(const std::string& dir) {
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    return absl::ErrnoToStatus(errno, absl::StrCat("opendir ", dir));
  }
  std::string first;
  errno = 0;
  while (dirent* e = readdir(d)) {
    const absl::string_view name = e->d_name;
    if (name != "." && name != "..") {
      first = std::string(name);
      break;
    }
  }
  const int err = errno;
  closedir(d);
  if (!first.empty()) {
    return absl::FailedPreconditionError(
        absl::StrCat(dir, " is not empty (it holds \"", first,
                     "\"); mounts go on empty directories only"));
  }
  if (err != 0) return absl::ErrnoToStatus(err, absl::StrCat("readdir ", dir));
  return absl::OkStatus();
}

const char* OriginName(v1::MountOrigin origin) {
  return origin == v1::MOUNT_ORIGIN_FLAG ? "--mount" : "RPC";
}

// `status` with "<rpc>: " in front of its message, as a grpc::Status.
grpc::Status RpcError(absl::string_view rpc, const absl::Status& status) {
  return ToGrpcStatus(
      absl::Status(status.code(), absl::StrCat(rpc, ": ", status.message())));
}

}  // namespace

absl::Status ClearStaleMount(const std::string& dir) {
  struct stat st;
  if (stat(dir.c_str(), &st) == 0 || errno != ENOTCONN) return absl::OkStatus();
  spdlog::warn("{} is a stale FUSE mount (ENOTCONN); unmounting it", dir);
  // UMOUNT_NOFOLLOW: a symlink swapped in after the stat above is not
  // followed to some other mount.
  if (umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) == 0) {
    return absl::OkStatus();
  }
  spdlog::warn("umount2({}) failed: {}; trying fusermount3 -u -z", dir,
               strerror(errno));
  std::string prog = "fusermount3", u = "-u", z = "-z", d = dir;
  char* argv[] = {prog.data(), u.data(), z.data(), d.data(), nullptr};
  pid_t pid = 0;
  if (int err =
          posix_spawnp(&pid, "fusermount3", nullptr, nullptr, argv, environ);
      err != 0) {
    return absl::ErrnoToStatus(
        err, absl::StrCat("cannot unmount the stale mount ", dir,
                          ": cannot run fusermount3"));
  }
  int wstatus = 0;
  while (waitpid(pid, &wstatus, 0) < 0 && errno == EINTR) {
  }
  if (!WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return absl::InternalError(
        absl::StrCat("cannot unmount the stale mount ", dir,
                     ": fusermount3 -u -z failed (wait status ", wstatus, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> ValidateMountRoot(const std::string& dir) {
  absl::StatusOr<std::string> real = RealPath(dir);
  if (!real.ok()) {
    if (absl::IsNotFound(real.status())) {
      return absl::NotFoundError(
          absl::StrCat("mount root ", dir, " does not exist"));
    }
    return real.status();
  }
  if (*real == "/") {
    return absl::InvalidArgumentError(absl::StrCat(
        "mount root ", dir,
        " is /, which would allow mounts on any empty directory root owns "
        "(/etc/cron.d, ...); give a directory kept for mounts"));
  }
  if (absl::Status s = CheckTrustedDirectory(*real); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat("mount root: ", s.message()));
  }
  return real;
}

absl::StatusOr<std::unique_ptr<MountService>> MountService::Create(
    Store* store, RefStore* refs, MountServiceOptions options) {
  if (store == nullptr || refs == nullptr) {
    return absl::InvalidArgumentError("MountService: null store or refs");
  }
  if (!options.mount_root.empty() && options.mount_root[0] != '/') {
    return absl::InvalidArgumentError(
        absl::StrCat("MountService: mount root \"", options.mount_root,
                     "\" is not absolute"));
  }
  return std::unique_ptr<MountService>(
      new MountService(store, refs, std::move(options)));
}

MountService::MountService(Store* store, RefStore* refs,
                           MountServiceOptions options)
    : store_(store), refs_(refs), options_(std::move(options)) {}

MountService::~MountService() { UnmountAll(); }

absl::StatusOr<v1::MountInfo> MountService::MountLocked(
    const std::string& real, bool allow_other, v1::MountOrigin origin,
    const std::string& peer) {
  CairnFsOptions fs_options = options_.fs;
  fs_options.allow_other = allow_other;
  absl::StatusOr<std::unique_ptr<CairnFs>> fs =
      CairnFs::Mount(store_, refs_, real, fs_options);
  if (!fs.ok()) return fs.status();
  Entry entry;
  entry.info.set_path(real);
  entry.info.set_origin(origin);
  entry.info.set_allow_other(allow_other);
  entry.info.set_slot(fs_options.slot.empty() ? HostSlot() : fs_options.slot);
  entry.info.set_mounted_at_micros(absl::ToUnixMicros(absl::Now()));
  entry.info.set_requested_by(peer);
  entry.info.set_passthrough((*fs)->stats().passthrough);
  entry.fs = *std::move(fs);
  v1::MountInfo info = entry.info;
  mounts_.emplace(real, std::move(entry));
  spdlog::info("mount: {} mounted ({}{}{}{})", real, OriginName(origin),
               peer.empty() ? "" : " from ", peer,
               allow_other ? ", allow_other" : "");
  return info;
}

absl::StatusOr<v1::MountInfo> MountService::MountLocal(const std::string& dir,
                                                       bool allow_other) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("cairnd is shutting down");
  if (absl::Status s = ClearStaleMount(dir); !s.ok()) return s;
  absl::StatusOr<std::string> real = RealPath(dir);
  if (!real.ok()) return real.status();
  if (mounts_.count(*real) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(*real, " is already mounted by this cairnd"));
  }
  return MountLocked(*real, allow_other, v1::MOUNT_ORIGIN_FLAG, "");
}

absl::Status MountService::CheckTrustedChain(const std::string& dir) const {
  const std::string& root = options_.mount_root;
  if (dir != root && !StrictlyInside(dir, root)) {
    return absl::PermissionDeniedError(
        absl::StrCat(dir, " is not inside the mount root ", root));
  }
  struct stat root_st;
  if (lstat(root.c_str(), &root_st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", root));
  }
  std::string at = root;
  if (absl::Status s = CheckTrustedDirectory(at); !s.ok()) return s;
  for (const auto& part : std::filesystem::path(dir).lexically_relative(root)) {
    if (part == ".") continue;
    at = (std::filesystem::path(at) / part).string();
    if (absl::Status s = CheckTrustedDirectory(at); !s.ok()) return s;
    // Another file system (a user's FUSE mount, say) can show any owner
    // and mode and answer later lookups with symlinks.
    struct stat st;
    if (lstat(at.c_str(), &st) != 0) {
      return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", at));
    }
    if (st.st_dev != root_st.st_dev) {
      return absl::PermissionDeniedError(absl::StrCat(
          at, " is on another file system than the mount root ", root,
          "; mounts need every directory down to the mount point's parent "
          "on the root's file system"));
    }
  }
  return absl::OkStatus();
}

absl::StatusOr<std::string> MountService::CheckRemotePath(
    const std::string& path) {
  const std::string& root = options_.mount_root;
  if (absl::Status s = CheckAbsolute(path); !s.ok()) return s;
  // Lexically first, so that callers cannot probe the file system outside
  // the root (NOT_FOUND against PERMISSION_DENIED).
  const std::string normal = Normalise(path);
  if (!StrictlyInside(normal, root)) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not strictly inside the mount root ", root));
  }
  // The parent resolved, the last component as given: where a stale mount
  // of an earlier daemon would be. Cleared (as root) only below trusted
  // directories, which no one else can swap a symlink into.
  const std::filesystem::path p(normal);
  absl::StatusOr<std::string> parent = RealPath(p.parent_path().string());
  if (!parent.ok()) return parent.status();
  const std::string candidate =
      (std::filesystem::path(*parent) / p.filename()).string();
  struct stat st;
  if (lstat(candidate.c_str(), &st) != 0 && errno == ENOTCONN &&
      StrictlyInside(candidate, root) && mounts_.count(candidate) == 0) {
    if (absl::Status s = CheckTrustedChain(*parent); !s.ok()) return s;
    if (absl::Status s = ClearStaleMount(candidate); !s.ok()) return s;
  }

  absl::StatusOr<std::string> real = RealPath(candidate);
  if (!real.ok()) return real.status();
  if (!StrictlyInside(*real, root)) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " resolves to ", *real,
                     ", which is not strictly inside the mount root ", root));
  }
  if (mounts_.count(*real) > 0) {
    return absl::AlreadyExistsError(
        absl::StrCat(*real, " is already mounted by this cairnd"));
  }
  for (const auto& [mounted, entry] : mounts_) {
    if (StrictlyInside(*real, mounted)) {
      return absl::FailedPreconditionError(
          absl::StrCat(*real, " is inside this cairnd's mount ", mounted));
    }
  }
  if (absl::Status s =
          CheckTrustedChain(std::filesystem::path(*real).parent_path());
      !s.ok()) {
    return s;
  }
  if (lstat(real->c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("lstat ", *real));
  }
  if (!S_ISDIR(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(*real, " is not a directory"));
  }
  absl::StatusOr<bool> mount_point = IsMountPoint(*real);
  if (!mount_point.ok()) return mount_point.status();
  if (*mount_point) {
    return absl::FailedPreconditionError(
        absl::StrCat(*real, " is already a mount point"));
  }
  if (absl::Status s = CheckEmptyDirectory(*real); !s.ok()) return s;
  return real;
}

absl::StatusOr<v1::MountInfo> MountService::MountRemote(
    const v1::MountRequest& request, const std::string& peer) {
  absl::MutexLock lock(&mu_);
  if (closed_) return absl::UnavailableError("cairnd is shutting down");
  if (options_.mount_root.empty()) {
    return absl::PermissionDeniedError(
        "mounting over RPC is disabled on this cairnd; start it with "
        "--mount-root DIR (or mount_root in its config) to allow mounts on "
        "empty directories strictly inside DIR, or mount at start with "
        "cairnd --mount DIR");
  }
  absl::StatusOr<std::string> real = CheckRemotePath(request.path());
  if (!real.ok()) {
    // Escaped: the path is any client's text, and must not forge lines.
    spdlog::warn("mount: refused {} from {}: {}",
                 absl::CHexEscape(request.path()), peer,
                 absl::CHexEscape(real.status().ToString()));
    return real.status();
  }
  return MountLocked(*real, request.allow_other(), v1::MOUNT_ORIGIN_RPC, peer);
}

absl::StatusOr<v1::MountInfo> MountService::UnmountPath(
    const std::string& path) {
  if (absl::Status s = CheckAbsolute(path); !s.ok()) return s;
  const std::string normal = Normalise(path);
  // Outside the lock: resolving may walk through a slow file system.
  absl::StatusOr<std::string> real = RealPath(normal);
  Entry entry;
  {
    absl::MutexLock lock(&mu_);
    auto it = mounts_.find(normal);
    if (it == mounts_.end() && real.ok()) it = mounts_.find(*real);
    if (it == mounts_.end()) {
      return absl::NotFoundError(absl::StrCat(
          "no mount of this cairnd at ", path,
          " (only its own mounts can be unmounted; `cairn mounts` lists "
          "them)"));
    }
    entry = std::move(it->second);
    mounts_.erase(it);
  }
  if (absl::Status s = entry.fs->Unmount(); !s.ok()) return s;
  spdlog::info("mount: {} unmounted ({} mount)", entry.info.path(),
               OriginName(entry.info.origin()));
  return entry.info;
}

v1::ListMountsResponse MountService::ListMounts() const {
  v1::ListMountsResponse response;
  response.set_mount_root(options_.mount_root);
  absl::MutexLock lock(&mu_);
  for (const auto& [path, entry] : mounts_) {
    v1::MountInfo* info = response.add_mounts();
    *info = entry.info;
    // A refused backing file turns passthrough off after the mount.
    info->set_passthrough(entry.fs->stats().passthrough);
    info->set_ended(entry.fs->connection_ended());
  }
  return response;
}

void MountService::UnmountAll() {
  std::map<std::string, Entry> mounts;
  {
    absl::MutexLock lock(&mu_);
    closed_ = true;
    mounts.swap(mounts_);
  }
  for (auto& [path, entry] : mounts) {
    if (absl::Status s = entry.fs->Unmount(); s.ok()) {
      spdlog::info("mount: {} unmounted at shutdown", path);
    }
  }
}

grpc::Status MountService::List(grpc::ServerContext* /*context*/,
                                const v1::ListMountsRequest* /*request*/,
                                v1::ListMountsResponse* response) {
  *response = ListMounts();
  return grpc::Status::OK;
}

grpc::Status MountService::Mount(grpc::ServerContext* context,
                                 const v1::MountRequest* request,
                                 v1::MountResponse* response) {
  absl::StatusOr<v1::MountInfo> info = MountRemote(*request, context->peer());
  if (!info.ok()) return RpcError("Mount", info.status());
  *response->mutable_mount() = *std::move(info);
  return grpc::Status::OK;
}

grpc::Status MountService::Unmount(grpc::ServerContext* /*context*/,
                                   const v1::UnmountRequest* request,
                                   v1::UnmountResponse* response) {
  absl::StatusOr<v1::MountInfo> info = UnmountPath(request->path());
  if (!info.ok()) return RpcError("Unmount", info.status());
  *response->mutable_mount() = *std::move(info);
  return grpc::Status::OK;
}

}  // namespace cairn
