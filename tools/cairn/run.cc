// Copyright 2026 The Cairn Authors.

#include "tools/cairn/run.h"

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "proto/refs.pb.h"
#include "store/digest.h"
#include "store/ref_name.h"
#include "tools/cairn/client.h"
#include "tools/cairn/mounts.h"

namespace cairn {
namespace cli {
namespace {

constexpr char kHowToGetAMount[] =
    "pass --mount DIR or set CAIRN_MOUNT to the directory of a Cairn mount, "
    "or have the daemon mount one (start cairnd with --mount DIR, or run "
    "`cairn mount DIR` against a cairnd started with --mount-root)";

// The mount to use: --mount, $CAIRN_MOUNT, else the daemon's.
absl::StatusOr<std::string> FindMount(const RunArgs& args,
                                      MountsClient& mounts) {
  if (!args.mount.empty()) return args.mount;
  if (const char* env = std::getenv("CAIRN_MOUNT");
      env != nullptr && *env != '\0') {
    return std::string(env);
  }
  absl::StatusOr<v1::ListMountsResponse> list = mounts.List();
  if (!list.ok()) {
    if (absl::IsUnimplemented(list.status())) {
      return absl::FailedPreconditionError(
          absl::StrCat("no Cairn mount known (", list.status().message(),
                       "): ", kHowToGetAMount));
    }
    return list.status();
  }
  return PickMount(*list);
}

// Replaces the process with `path` and `args`. Returns only on failure.
// `argv0` is the name the program is run under (multi-call binaries such
// as busybox choose by it).
absl::Status Exec(const std::string& path, const std::string& argv0,
                  const std::vector<std::string>& args, const Io& io) {
  std::vector<std::string> owned;
  owned.reserve(args.size() + 1);
  owned.push_back(argv0);
  owned.insert(owned.end(), args.begin(), args.end());
  std::vector<char*> argv;
  argv.reserve(owned.size() + 1);
  for (std::string& a : owned) argv.push_back(a.data());
  argv.push_back(nullptr);
  io.out->flush();
  io.err->flush();
  execv(path.c_str(), argv.data());
  const int err = errno;
  std::string hint;
  if (err == ENOEXEC) {
    hint =
        " (neither an ELF binary for this machine nor a script with a "
        "#! line)";
  } else if (err == ENOENT) {
    hint = " (its #! interpreter or ELF loader does not exist here)";
  }
  return absl::ErrnoToStatus(err, absl::StrCat("cannot execute ", path, hint));
}

}  // namespace

absl::StatusOr<std::string> CleanEntryPath(absl::string_view entry) {
  auto bad = [&](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat(
        "entry \"", entry, "\" ", why,
        "; want a relative path inside the artefact, e.g. bin/tool"));
  };
  if (entry.empty()) return bad("is empty");
  if (entry.find('\0') != absl::string_view::npos) {
    return bad("contains a NUL byte");
  }
  if (entry[0] == '/') return bad("is absolute");
  std::vector<absl::string_view> parts;
  for (absl::string_view part : absl::StrSplit(entry, '/')) {
    if (part.empty() || part == ".") continue;
    if (part == "..") return bad("has a \"..\" component");
    parts.push_back(part);
  }
  if (parts.empty()) return bad("names no file");
  return absl::StrJoin(parts, "/");
}

absl::StatusOr<std::string> PickMount(const v1::ListMountsResponse& mounts) {
  for (const v1::MountInfo& m : mounts.mounts()) {
    if (m.origin() == v1::MOUNT_ORIGIN_FLAG && !m.ended()) return m.path();
  }
  for (const v1::MountInfo& m : mounts.mounts()) {
    if (!m.ended()) return m.path();
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "no Cairn mount known (the daemon serves none): ", kHowToGetAMount));
}

namespace {

// realpath(3) of `path`, or the errno as a Status naming it; NotFound for
// ENOENT and ENOTDIR (a component missing or not a directory).
absl::StatusOr<std::string> RealPath(const std::string& path) {
  std::unique_ptr<char, decltype(&free)> real(realpath(path.c_str(), nullptr),
                                              &free);
  if (real == nullptr) {
    const int err = errno;
    if (err == ENOENT || err == ENOTDIR) {
      return absl::NotFoundError(absl::StrCat(path, " does not exist"));
    }
    return absl::ErrnoToStatus(err, absl::StrCat("realpath ", path));
  }
  return std::string(real.get());
}

}  // namespace

absl::StatusOr<std::string> EntryInMount(const std::string& mount,
                                         const std::string& digest,
                                         const std::string& entry) {
  const std::string dir = absl::StrCat(mount, "/by-digest/", digest);
  absl::StatusOr<std::string> root = RealPath(dir);
  if (!root.ok()) {
    if (absl::IsNotFound(root.status())) {
      return absl::NotFoundError(absl::StrCat(
          dir, " does not exist: is ", mount,
          " a Cairn mount of the daemon the ref was resolved on?"));
    }
    return root.status();
  }
  const std::string path = absl::StrCat(dir, "/", entry);
  // Symlinks (the entry's, or a directory's on the way) are followed, but
  // only within the artefact: a target outside it (the host's files, or
  // another artefact through a ref symlink at the top of the mount) would
  // run something the resolved digest does not pin.
  absl::StatusOr<std::string> real = RealPath(path);
  if (!real.ok()) {
    if (absl::IsNotFound(real.status())) {
      return absl::NotFoundError(absl::StrCat("entry ", entry,
                                              " is not in artefact ", digest,
                                              ": ", path, " does not exist"));
    }
    return real.status();
  }
  if (!absl::StartsWith(*real, absl::StrCat(*root, "/"))) {
    return absl::FailedPreconditionError(absl::StrCat(
        "entry ", entry, " of artefact ", digest, " resolves to ", *real,
        ", outside the artefact: cairn run executes only files the resolved "
        "digest pins"));
  }
  struct stat st;
  if (stat(real->c_str(), &st) != 0) {
    return absl::ErrnoToStatus(errno, absl::StrCat("stat ", path));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::FailedPreconditionError(
        absl::StrCat(path, " is not a regular file"));
  }
  if (access(real->c_str(), X_OK) != 0) {
    return absl::PermissionDeniedError(
        absl::StrCat(path, " is not executable (mode ",
                     absl::StrFormat("%04o", st.st_mode & 07777), ")"));
  }
  return *real;
}

int RunRun(const GlobalFlags& flags, const RunArgs& args, const Io& io) {
  if (absl::StatusOr<RefName> ref = RefName::Parse(args.ref); !ref.ok()) {
    return ReportError(io,
                       absl::InvalidArgumentError(
                           absl::StrCat("PKG@NAME: ", ref.status().message())),
                       kExitUsage);
  }
  std::string entry;
  if (!args.entry.empty()) {
    absl::StatusOr<std::string> clean = CleanEntryPath(args.entry);
    if (!clean.ok()) {
      return ReportError(io,
                         absl::InvalidArgumentError(absl::StrCat(
                             "--entry: ", clean.status().message())),
                         kExitUsage);
    }
    entry = *std::move(clean);
  }

  ClientOptions options;
  options.server = flags.server;
  if (absl::Status s = ApplyGrpcEnvironment(&options); !s.ok()) {
    return ReportError(io, s, kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<CasClient>> cas = CasClient::Create(options);
  if (!cas.ok()) return ReportError(io, cas.status(), kExitUsage);
  RefsClient refs(**cas);
  MountsClient mounts(**cas);

  v1::ResolveRequest request;
  request.set_ref(args.ref);
  request.set_slot(HostSlot());
  absl::StatusOr<v1::ResolveResponse> resolved = refs.Resolve(request);
  if (!resolved.ok()) return ReportError(io, resolved.status());
  // It becomes a path in the mount: only a well-formed digest will do.
  if (absl::StatusOr<Digest> d = Digest::Parse(resolved->digest()); !d.ok()) {
    return ReportError(io,
                       absl::InternalError(absl::StrCat(
                           "the server resolved ", args.ref,
                           " to a malformed digest: ", d.status().message())));
  }

  if (entry.empty()) {
    const std::string& declared = resolved->metadata().entrypoint();
    if (declared.empty()) {
      return ReportError(
          io, absl::FailedPreconditionError(absl::StrCat(
                  args.ref, " (", resolved->slot_used(), " slot, ",
                  resolved->digest(),
                  ") declares no entrypoint: pass --entry PATH, or add "
                  "\"entrypoint\": \"PATH\" to the artefact's cairn.json "
                  "(docs/packing.md)")));
    }
    absl::StatusOr<std::string> clean = CleanEntryPath(declared);
    if (!clean.ok()) {
      return ReportError(
          io, absl::FailedPreconditionError(absl::StrCat(
                  "the entrypoint of ", args.ref, " (", resolved->digest(),
                  ") is unsafe: ", clean.status().message(),
                  "; pass --entry PATH")));
    }
    entry = *std::move(clean);
  }

  absl::StatusOr<std::string> mount = FindMount(args, mounts);
  if (!mount.ok()) return ReportError(io, mount.status());
  absl::StatusOr<std::string> path =
      EntryInMount(*mount, resolved->digest(), entry);
  if (!path.ok()) return ReportError(io, path.status());
  return ReportError(io, Exec(*path,
                              absl::StrCat(*mount, "/by-digest/",
                                           resolved->digest(), "/", entry),
                              args.args, io));
}

}  // namespace cli
}  // namespace cairn
