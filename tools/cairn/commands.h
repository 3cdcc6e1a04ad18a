// Copyright 2026 The Cairn Authors.
//
// The `cairn` subcommands, after argument parsing: each Run* function does
// one command, prints its result on `out` (human text, or JSON with
// --json), prints errors as "cairn: error: <CODE>: <message>" on `err`,
// and returns the process exit code. main.cc parses arguments (CLI11) and
// calls these; tests call them directly. docs/cli.md is the user-facing
// reference.
//
// Thread-safety: each call is independent; `io` must not be shared by
// concurrent calls.

#ifndef CAIRN_TOOLS_CAIRN_COMMANDS_H_
#define CAIRN_TOOLS_CAIRN_COMMANDS_H_

#include <cstdint>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace cairn {
namespace cli {

// Exit codes.
inline constexpr int kExitOk = 0;
inline constexpr int kExitFailure = 1;  // Operation failed, or check found
                                        // deviations.
inline constexpr int kExitUsage = 2;    // Bad arguments (incl. digests).

// The default server: $CAIRN_SERVER if set and non-empty, else
// "127.0.0.1:8470".
std::string DefaultServer();

// Who ref updates are recorded as: $CAIRN_ACTOR if set and non-empty, else
// "<user>@<host>" with $USER (else the uid's passwd name, else "uid<N>")
// and gethostname().
std::string DefaultActor();

struct GlobalFlags {
  std::string server = "127.0.0.1:8470";
  bool json = false;   // Machine-readable output on `out`.
  bool quiet = false;  // Only the essential result; no progress.
  // Recorded in ref history by updates (--actor). Empty: the server
  // records the connection's peer address instead.
  std::string actor;
};

struct Io {
  std::ostream* out;  // Results.
  std::ostream* err;  // Errors and the progress line.
  // Draw a progress line on `err` during push and pull (main sets it when
  // stderr is a TTY and --quiet is off).
  bool progress = false;
};

// Prints FormatError(status) on io.err and returns `exit_code`.
int ReportError(const Io& io, const absl::Status& status,
                int exit_code = kExitFailure);

// `cairn pack DIR -o FILE`: prints "<digest> <size> <FILE>" (quiet: the
// digest only; JSON: {"digest","size","path","entries","regular_files",
// "file_bytes"}).
int RunPack(const GlobalFlags& flags, const std::string& dir,
            const std::string& output, const Io& io);

// `cairn pack --check FILE`: exit 0 and "ok: FILE ..." if it follows the
// convention; else exit 1 and "FILE: not normalised" plus one "  - reason"
// line each (quiet: reasons only). JSON: CheckResultToJson.
int RunPackCheck(const GlobalFlags& flags, const std::string& file,
                 const Io& io);

// `cairn push FILE [--expect DIGEST]`: prints "<digest> <size> stored" or
// "<digest> <size> already stored" (quiet: the digest; JSON: the
// WriteResponse).
int RunPush(const GlobalFlags& flags, const std::string& file,
            const std::string& expect, const Io& io);

// Where `cairn push --ref` puts the artefact.
struct PushRef {
  std::string ref;   // A branch, "<package>@<name>".
  std::string slot;  // --arch; empty: HostSlot().
  // --if-generation: compare-and-swap on the branch's generation (0: the
  // branch must not exist yet).
  std::optional<uint64_t> if_generation;
};

// `cairn push FILE --ref PKG@NAME [--arch SLOT] [--if-generation N]`: checks
// the ref and slot (usage errors, before uploading), pushes as above, then
// SetSlot. Prints the push line and "<ref> <slot> <digest> generation <N>"
// (" (unchanged)" appended when the slot already held the digest); quiet:
// the digest; JSON: the WriteResponse with "ref_update" (RefUpdateToJson).
// A failed SetSlot (e.g. ABORTED: the branch moved) exits 1 and says that
// the artefact itself is stored.
// With `no_wait` (no ref allowed), returns once the server holds the bytes
// durably, before their index is complete, printing "<digest> <size> stored
// (index being built)"; `cairn stat --wait` then tells the outcome.
int RunPush(const GlobalFlags& flags, const std::string& file,
            const std::string& expect, const std::optional<PushRef>& ref,
            bool no_wait, const Io& io);

// `cairn release PKG@NAME --slot SLOT=DIGEST ...`: CreateRelease. Prints
// FormatRef (quiet: nothing; JSON: RefUpdateToJson).
int RunRelease(const GlobalFlags& flags, const std::string& ref,
               const std::vector<std::string>& slots, const Io& io);

// `cairn promote PKG@BRANCH PKG@RELEASE --expect SLOT=DIGEST ...`: Promote.
// Output as RunRelease.
int RunPromote(const GlobalFlags& flags, const std::string& branch,
               const std::string& release,
               const std::vector<std::string>& expected, const Io& io);

// How a ref is resolved by `resolve` and `pull`.
struct ResolveArgs {
  std::string slot;           // --arch; empty: HostSlot().
  bool allow_yanked = false;  // --allow-yanked.
};

// `cairn resolve PKG@NAME [--arch SLOT] [--allow-yanked]`: FormatResolve
// (quiet: the digest; JSON: ResolveToJson).
int RunResolve(const GlobalFlags& flags, const std::string& ref,
               const ResolveArgs& args, const Io& io);

// `cairn ls [PREFIX] [--kind branch|release]`: every matching ref (all
// pages), one FormatRefLine each (quiet: the names; JSON: an array of
// RefToJson). `kind` is "", "branch" or "release".
int RunList(const GlobalFlags& flags, const std::string& prefix,
            const std::string& kind, const Io& io);

// `cairn history PKG@NAME`: every entry, oldest first, FormatHistoryEntry
// each (JSON: an array of RefHistoryEntryToJson).
int RunHistory(const GlobalFlags& flags, const std::string& ref, const Io& io);

// `cairn yank PKG@RELEASE [--reason TEXT]`: prints "<ref> yanked at
// generation <N>: <reason>" or, if it already was, "<ref> was already
// yanked: <first reason>" (quiet: nothing; JSON: RefUpdateToJson).
int RunYank(const GlobalFlags& flags, const std::string& ref,
            const std::string& reason, const Io& io);

// `cairn rm PKG@BRANCH [--if-generation N]`: DeleteBranch. Prints "deleted
// branch <ref> at generation <N>" (quiet: nothing; JSON:
// RefHistoryEntryToJson).
int RunDelete(const GlobalFlags& flags, const std::string& ref,
              std::optional<uint64_t> if_generation, const Io& io);

// `cairn pull TARGET -o FILE`: TARGET starting with "sha256:" is a digest
// (RunPull; --arch and --allow-yanked are then usage errors); anything
// else is a ref, resolved with `args` and then pulled and verified against
// the digest it resolved to. For a ref, prints FormatResolvedLine before
// the pull line (quiet: the digest; JSON: the pull object with "resolved":
// ResolveToJson).
// `fsync_output`: `--fsync` (CasClient::Pull).
int RunPullTarget(const GlobalFlags& flags, const std::string& target,
                  const ResolveArgs& args, const std::string& output,
                  const Io& io, bool fsync_output = false);

// `cairn pull DIGEST -o FILE [--fsync]`: prints "<digest> <bytes> <FILE>"
// (quiet: the digest; JSON: {"digest","size","path"}).
int RunPull(const GlobalFlags& flags, const std::string& digest,
            const std::string& output, const Io& io, bool fsync_output = false);

// `cairn stat DIGEST`: FormatStat, or StatToJson.
// `cairn digest FILE`: prints the file's digest and size, and records the
// digest in the local digest cache (digest_cache.h), so a later push of the
// unchanged file skips hashing. No server needed.
int RunDigest(const GlobalFlags& flags, const std::string& path, const Io& io);

// With `wait`, an artefact's answer waits until its file index is complete
// (or it is rejected: exit 1 with the reason).
int RunStat(const GlobalFlags& flags, const std::string& digest, bool wait,
            const Io& io);

// `cairn inspect DIGEST`: one FormatFileEntry line per entry, or a JSON
// array of FileEntryToJson.
int RunInspect(const GlobalFlags& flags, const std::string& digest,
               const Io& io);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_COMMANDS_H_
