// Copyright 2026 The Cairn Authors.
//
// `cairn run PKG@NAME [--entry PATH] [--mount DIR] [-- ARGS...]`: executes
// an artefact's entrypoint in place from a Cairn FUSE mount (docs/fuse.md,
// docs/cli.md "cairn run"):
//
//   1. resolves PKG@NAME for this host's slot, with the noarch fallback
//      (cairn.v1.Refs Resolve, as `cairn resolve`);
//   2. takes the entry from --entry, else from the resolved artefact's
//      metadata (the "entrypoint" of its cairn.json, docs/packing.md);
//   3. finds the mount: --mount DIR, else $CAIRN_MOUNT, else the daemon's
//      own mounts (cairn.v1.Mounts List: its --mount one first);
//   4. execv()s <mount>/by-digest/sha256:<hex>/<entry> with ARGS. The path
//      names the digest that was resolved, not the ref's symlink, so a
//      branch moving between steps 1 and 4 cannot mix versions.
//
// On success this process becomes the program (its exit code is the
// program's); nothing is printed. Before that, errors are printed as
// "cairn: error: ..." and exit 2 (usage: bad ref, unsafe --entry) or 1.

#ifndef CAIRN_TOOLS_CAIRN_RUN_H_
#define CAIRN_TOOLS_CAIRN_RUN_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "proto/mount.pb.h"
#include "tools/cairn/commands.h"

namespace cairn {
namespace cli {

struct RunArgs {
  std::string ref;    // PKG@NAME.
  std::string entry;  // --entry; empty: the artefact's entrypoint.
  std::string mount;  // --mount; empty: $CAIRN_MOUNT, else the daemon's.
  std::vector<std::string> args;  // After "--": the program's arguments.
};

// `entry` as a clean relative path inside an artefact: "." and empty
// components dropped ("./bin//tool" -> "bin/tool"). Errors:
// InvalidArgument for an empty or absolute path, a ".." component or a NUL
// byte.
absl::StatusOr<std::string> CleanEntryPath(absl::string_view entry);

// The mount `cairn run` uses from the daemon's list: its --mount mount if
// any, else the first. Errors: FailedPrecondition (none) saying how to get
// one.
absl::StatusOr<std::string> PickMount(const v1::ListMountsResponse& mounts);

// The file to execute for <mount>/by-digest/<digest>/<entry>, with
// symlinks resolved (realpath(3)), checked: the artefact's directory exists
// in the mount, the entry resolves inside it, and to an executable regular
// file. Errors: NotFound naming the missing path; FailedPrecondition (it
// resolves outside the artefact, naming where; not a regular file);
// PermissionDenied (not executable, naming the path and mode); other errors
// naming the path.
absl::StatusOr<std::string> EntryInMount(const std::string& mount,
                                         const std::string& digest,
                                         const std::string& entry);

// `cairn run`. Returns only on failure (the exit code); on success the
// process image is replaced.
int RunRun(const GlobalFlags& flags, const RunArgs& args, const Io& io);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_RUN_H_
