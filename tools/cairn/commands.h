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

#include <ostream>
#include <string>

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

struct GlobalFlags {
  std::string server = "127.0.0.1:8470";
  bool json = false;   // Machine-readable output on `out`.
  bool quiet = false;  // Only the essential result; no progress.
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

// `cairn pull DIGEST -o FILE`: prints "<digest> <bytes> <FILE>" (quiet: the
// digest; JSON: {"digest","size","path"}).
int RunPull(const GlobalFlags& flags, const std::string& digest,
            const std::string& output, const Io& io);

// `cairn stat DIGEST`: FormatStat, or StatToJson.
int RunStat(const GlobalFlags& flags, const std::string& digest, const Io& io);

// `cairn inspect DIGEST`: one FormatFileEntry line per entry, or a JSON
// array of FileEntryToJson.
int RunInspect(const GlobalFlags& flags, const std::string& digest,
               const Io& io);

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_COMMANDS_H_
