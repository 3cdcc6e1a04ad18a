// Copyright 2026 The Cairn Authors.
//
// cairn.v1.Mounts (proto/mount.proto): the read-only FUSE mounts
// (fuse/cairn_fs.h) one cairnd serves, as a map from mount point to CairnFs
// guarded by a mutex. cairnd registers its `--mount DIR` here (MountLocal)
// and clients add and remove mounts over gRPC (`cairn mount`, `cairn
// umount`, `cairn mounts`; docs/cairnd.md, "Mounts").
//
// Security. cairnd usually runs as root and its port has no
// authentication, so a Mount RPC could otherwise make it mount
// attacker-pushed content over, say, an empty /etc/sudoers.d. Mount over
// RPC is therefore refused (PERMISSION_DENIED) unless the daemon was given a
// mount root, and then only allowed on
//   * an existing, empty directory,
//   * strictly inside the mount root after realpath (symlinks resolved),
//   * where every directory from the mount root down to its parent is
//     owned by root or cairnd's user and not writable by group or others
//     (so nobody else can swap a path component for a symlink between the
//     checks and mount(2)),
//   * that is not already a mount point and not inside one of this
//     daemon's mounts.
// Unmount only ever unmounts mounts this daemon made (NOT_FOUND
// otherwise). List is always allowed.
//
// Errors leave through ToGrpcStatus (tools/rpc/status.h) with the RPC's
// name in front of the message. Each mount and unmount logs one spdlog line
// (info) on the default logger.

#ifndef CAIRN_TOOLS_SERVER_MOUNT_SERVICE_H_
#define CAIRN_TOOLS_SERVER_MOUNT_SERVICE_H_

#include <map>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "fuse/cairn_fs.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "proto/mount.grpc.pb.h"
#include "proto/mount.pb.h"
#include "store/refs.h"
#include "store/store.h"

namespace cairn {

// If `dir` is a stale FUSE mount (stat(2) fails with ENOTCONN, as after a
// crashed daemon), detaches it: umount2(MNT_DETACH), else `fusermount3 -u
// -z`. Does nothing otherwise. Logs a warning when it detaches. Errors:
// Internal when both ways fail. Thread-safe.
absl::Status ClearStaleMount(const std::string& dir);

// Checks a mount root (cairnd --mount-root) and returns its realpath.
// Errors: NotFound (does not exist), FailedPrecondition (not a directory),
// PermissionDenied (owned by someone other than root or this process's
// user, or writable by group or others).
absl::StatusOr<std::string> ValidateMountRoot(const std::string& dir);

struct MountServiceOptions {
  // Realpath of the directory Mount RPCs may mount strictly inside (see
  // ValidateMountRoot); empty: Mount over RPC is refused.
  std::string mount_root;
  // FUSE settings of every mount (allow_other is per mount).
  CairnFsOptions fs;
};

// Serves cairn.v1.Mounts and owns the daemon's mounts. Thread-safe.
class MountService final : public v1::Mounts::Service {
 public:
  // `store` and `refs` are not owned and must outlive the service.
  // Errors: InvalidArgument for a null store or refs, or a mount root that
  // is not an absolute path.
  static absl::StatusOr<std::unique_ptr<MountService>> Create(
      Store* store, RefStore* refs, MountServiceOptions options);

  // Unmounts everything (UnmountAll).
  ~MountService() override;
  MountService(const MountService&) = delete;
  MountService& operator=(const MountService&) = delete;

  // The trusted local mount of cairnd --mount DIR: clears a stale mount at
  // `dir` (ClearStaleMount), mounts there and registers the mount with
  // origin MOUNT_ORIGIN_FLAG. The mount-root rules do not apply. Errors:
  // NotFound (no such directory); AlreadyExists (already mounted here);
  // Unavailable after UnmountAll; Internal (the mount failed).
  absl::StatusOr<v1::MountInfo> MountLocal(const std::string& dir,
                                           bool allow_other);

  // The checks and the mount of a Mount RPC from `peer` (recorded as
  // requested_by). Errors: as proto/mount.proto lists, without the RPC
  // name.
  absl::StatusOr<v1::MountInfo> MountRemote(const v1::MountRequest& request,
                                            const std::string& peer);

  // Unmounts this daemon's mount at `path` (as listed, or any path that
  // resolves to it). Blocks until the FUSE loop ended (at once with
  // fusectl; else once no process uses the mount any more). Errors:
  // InvalidArgument (not absolute); NotFound (no mount of this daemon
  // there).
  absl::StatusOr<v1::MountInfo> UnmountPath(const std::string& path);

  // Every mount, in path order, and the mount root.
  v1::ListMountsResponse ListMounts() const;

  // Unmounts every mount (at SIGTERM); afterwards MountLocal and Mount
  // RPCs fail with Unavailable. Idempotent.
  void UnmountAll();

  grpc::Status List(grpc::ServerContext* context,
                    const v1::ListMountsRequest* request,
                    v1::ListMountsResponse* response) override;
  grpc::Status Mount(grpc::ServerContext* context,
                     const v1::MountRequest* request,
                     v1::MountResponse* response) override;
  grpc::Status Unmount(grpc::ServerContext* context,
                       const v1::UnmountRequest* request,
                       v1::UnmountResponse* response) override;

 private:
  struct Entry {
    v1::MountInfo info;
    std::unique_ptr<CairnFs> fs;
  };

  MountService(Store* store, RefStore* refs, MountServiceOptions options);

  // Mounts at `real` (a realpath) and records it. Caller holds mu_.
  absl::StatusOr<v1::MountInfo> MountLocked(const std::string& real,
                                            bool allow_other,
                                            v1::MountOrigin origin,
                                            const std::string& peer)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Checks `dir` (a realpath: the mount root or inside it) and every
  // directory from the mount root down to it: each owned by root or
  // cairnd's user, writable by its owner only, and on the root's file
  // system. Errors: PermissionDenied naming the directory; FailedPrecondition
  // (not a directory); the errno of lstat.
  absl::Status CheckTrustedChain(const std::string& dir) const;
  // The RPC checks of `path`; returns its realpath. Caller holds mu_.
  absl::StatusOr<std::string> CheckRemotePath(const std::string& path)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  Store* const store_;
  RefStore* const refs_;
  const MountServiceOptions options_;

  mutable absl::Mutex mu_;
  // Keyed by realpath of the mount point.
  std::map<std::string, Entry> mounts_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;  // After UnmountAll.
};

}  // namespace cairn

#endif  // CAIRN_TOOLS_SERVER_MOUNT_SERVICE_H_
