// Copyright 2026 The Cairn Authors.
//
// Output formatting for the `cairn` CLI: human-readable lines, JSON
// objects (nlohmann-json, keys named after the proto fields) and the
// progress line. Pure functions of their inputs except ProgressMeter, which
// reads the clock. docs/cli.md documents every format shown here.

#ifndef CAIRN_TOOLS_CAIRN_FORMAT_H_
#define CAIRN_TOOLS_CAIRN_FORMAT_H_

#include <chrono>
#include <cstdint>
#include <ostream>
#include <string>

#include "absl/status/status.h"
#include "nlohmann/json.hpp"
#include "proto/cas.pb.h"
#include "proto/refs.pb.h"
#include "tools/pack/packer.h"

namespace cairn {
namespace cli {

// "cairn: error: <CODE>: <message>", e.g.
// "cairn: error: DATA_LOSS: digest mismatch". No trailing newline.
std::string FormatError(const absl::Status& status);

// Permission bits as 4 octal digits: 0755 -> "0755".
std::string FormatMode(uint32_t mode);

// 1536 -> "1.5 KiB"; below 1 KiB: "512 B". Binary units.
std::string HumanBytes(uint64_t bytes);

// One `cairn inspect` line: "0755 12345 bin/tool"; directories end in "/",
// symlinks "0777 0 run -> bin/tool", hardlinks "0644 3 b => a" (size of
// the target).
std::string FormatFileEntry(const v1::FileEntry& entry);

// "regular", "directory", "symlink", "hardlink" or "unspecified".
std::string FileTypeName(v1::FileEntry::Type type);

// JSON forms. Sizes and counts are numbers; modes are octal strings
// ("0755"); empty optional fields are omitted for entries.
nlohmann::ordered_json FileEntryToJson(const v1::FileEntry& entry);
nlohmann::ordered_json SummaryToJson(const v1::ArtefactSummary& summary);
nlohmann::ordered_json WriteResponseToJson(const v1::WriteResponse& response);
nlohmann::ordered_json StatToJson(const v1::StatResponse& response);
nlohmann::ordered_json CheckResultToJson(const std::string& path,
                                         const CheckResult& result);

// `cairn stat` human output: "key: value" lines, each ending in "\n".
std::string FormatStat(const v1::StatResponse& response);

// --- Refs (docs/cli.md, "Refs"). ---

// "branch", "release" or "unspecified".
std::string RefKindName(v1::RefKind kind);
// "set-slot", "create-release", "promote", "yank", "delete" (as
// store/refs.h) or "unspecified".
std::string RefActionName(v1::RefHistoryEntry::Action action);
// Unix microseconds -> "2026-01-02T03:04:05Z" (UTC, whole seconds).
std::string FormatMicros(int64_t micros);

// JSON forms: keys named after the proto fields, numbers as numbers, plus
// an RFC 3339 string next to each *_micros field (same name without
// "_micros"). Empty optional fields (source_ref, yank_reason, digests of
// absent slots, ...) are omitted.
nlohmann::ordered_json ArtefactMetadataToJson(const v1::ArtefactMetadata& m);
nlohmann::ordered_json RefToJson(const v1::Ref& ref);
nlohmann::ordered_json RefHistoryEntryToJson(const v1::RefHistoryEntry& entry);
nlohmann::ordered_json RefUpdateToJson(const v1::RefUpdateResponse& response);
nlohmann::ordered_json ResolveToJson(const v1::ResolveResponse& response);

// A ref and its slots, each line ending in "\n":
//   tool@v1.2.0 release generation 7
//     linux-amd64 sha256:...
//     noarch sha256:...
//     promoted from tool@main generation 5      (releases made by Promote)
//     yanked: <reason>                          (yanked releases)
std::string FormatRef(const v1::Ref& ref);

// One `cairn ls` line, without "\n":
//   "<ref> <kind> <generation> <slot,slot,...> <updated> <updated_by>"
// where <kind> is "branch", "release" or "yanked" (a yanked release).
std::string FormatRefLine(const v1::Ref& ref);

// One `cairn history` entry, each line ending in "\n":
//   "<generation> <time> <action> <actor>" then one line per slot change,
//   "  <slot> <old|-> -> <new|->", then for a promotion
//   "  from <ref> generation <N>", for a yank "  reason: <text>".
std::string FormatHistoryEntry(const v1::RefHistoryEntry& entry);

// `cairn resolve` human output: "key: value" lines (ref, slot, digest,
// generation, then yanked and the artefact's metadata when set). A noarch
// fallback says so on the slot line.
std::string FormatResolve(const v1::ResolveResponse& response);

// "<ref> <slot_used> generation <N>", plus " (no <slot> slot: noarch
// fallback)" when the requested slot was absent. No "\n".
std::string FormatResolvedLine(const v1::ResolveResponse& response);

// seconds since the Unix epoch -> "2026-01-02T03:04:05Z" (UTC).
std::string FormatUnixTime(int64_t seconds);

// The progress line, without "\r": "  1.5 MiB / 10.0 MiB  15%  3.2 MB/s".
// total == 0 means unknown (no percentage). MB/s is decimal (1e6 B/s);
// `seconds` <= 0 omits the rate.
std::string FormatProgress(uint64_t done, uint64_t total, double seconds);

// Draws FormatProgress on `err` as a self-overwriting line ("\r"), at most
// 10 times a second. Disabled meters draw nothing. Not thread-safe.
class ProgressMeter {
 public:
  ProgressMeter(std::ostream* err, bool enabled);

  // Records progress; redraws if 100 ms passed since the last draw.
  void Update(uint64_t done, uint64_t total);
  // Draws the final state and ends the line (only if anything was drawn).
  void Finish();

 private:
  void Draw();

  std::ostream* const err_;
  const bool enabled_;
  const std::chrono::steady_clock::time_point start_;
  std::chrono::steady_clock::time_point last_draw_;
  bool drawn_ = false;
  size_t last_width_ = 0;
  uint64_t done_ = 0;
  uint64_t total_ = 0;
};

}  // namespace cli
}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_FORMAT_H_
