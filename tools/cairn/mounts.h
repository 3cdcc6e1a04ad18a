// Copyright 2026 The Cairn Authors.
//
// The client of cairn.v1.Mounts (proto/mount.proto) and the `cairn mount`,
// `cairn umount` and `cairn mounts` subcommands (docs/cli.md, "Mounts").
// Mount points are paths on the daemon's host: the daemon mounts, the CLI
// only asks. Output and exit codes follow tools/cairn/commands.h.

#ifndef CAIRN_TOOLS_CAIRN_MOUNTS_H_
#define CAIRN_TOOLS_CAIRN_MOUNTS_H_

#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "nlohmann/json.hpp"
#include "proto/mount.grpc.pb.h"
#include "proto/mount.pb.h"
#include "tools/cairn/client.h"
#include "tools/cairn/commands.h"

namespace cairn {

// The client of cairn.v1.Mounts. One unary RPC per call, with
// options.unary_timeout. Errors are the server's (proto/mount.proto)
// converted by RpcStatus; a server without the service (UNIMPLEMENTED)
// gets a message saying so. Thread-safe.
class MountsClient {
 public:
  // A client on `cas`'s channel. `cas` need not outlive it.
  explicit MountsClient(const CasClient& cas);

  absl::StatusOr<v1::ListMountsResponse> List();
  // `path` must be absolute (a path on the daemon's host).
  absl::StatusOr<v1::MountInfo> Mount(const std::string& path,
                                      bool allow_other);
  absl::StatusOr<v1::MountInfo> Unmount(const std::string& path);

 private:
  void SetUnaryDeadline(grpc::ClientContext* context) const;
  absl::Status Error(const grpc::Status& status) const;

  const ClientOptions options_;
  std::unique_ptr<v1::Mounts::Stub> stub_;
};

namespace cli {

// "flag" (cairnd --mount), "rpc" (cairn mount) or "unspecified".
std::string MountOriginName(v1::MountOrigin origin);

// {"path", "origin", "allow_other", "slot", "mounted_at_micros",
// "mounted_at", "requested_by"?} (requested_by only when set).
nlohmann::ordered_json MountInfoToJson(const v1::MountInfo& info);

// "<path> <origin> <slot> <mounted at>[ allow_other][ by <peer>]".
std::string FormatMountLine(const v1::MountInfo& info);

// `cairn mount DIR [--allow-other]`: asks the daemon to mount its store on
// DIR (made absolute against the current directory, so the daemon should
// run on this host). Prints "mounted <path>" (quiet: nothing; JSON:
// MountInfoToJson). Errors: the server's, e.g. PERMISSION_DENIED when the
// daemon has no --mount-root.
int RunMount(const GlobalFlags& flags, const std::string& dir, bool allow_other,
             const Io& io);

// `cairn umount DIR`: asks the daemon to unmount one of its mounts. Prints
// "unmounted <path>" (quiet: nothing; JSON: MountInfoToJson). NOT_FOUND
// when the daemon has no mount there.
int RunUmount(const GlobalFlags& flags, const std::string& dir, const Io& io);

// `cairn mounts`: one FormatMountLine per mount of the daemon (quiet: the
// paths; JSON: {"mount_root", "mounts": [MountInfoToJson...]}). No mounts:
// no output, exit 0.
int RunMounts(const GlobalFlags& flags, const Io& io);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_MOUNTS_H_
