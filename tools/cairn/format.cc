// Copyright 2026 The Cairn Authors.

#include "tools/cairn/format.h"

#include <algorithm>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "absl/time/time.h"

namespace cairn {
namespace cli {

std::string FormatError(const absl::Status& status) {
  return absl::StrCat("cairn: error: ", absl::StatusCodeToString(status.code()),
                      ": ", status.message());
}

std::string FormatMode(uint32_t mode) {
  return absl::StrFormat("%04o", mode & 07777);
}

std::string HumanBytes(uint64_t bytes) {
  static const char* const kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB"};
  if (bytes < 1024) return absl::StrCat(bytes, " B");
  double value = static_cast<double>(bytes) / 1024;
  size_t unit = 0;
  while (value >= 1024 && unit + 1 < sizeof(kUnits) / sizeof(kUnits[0])) {
    value /= 1024;
    ++unit;
  }
  return absl::StrFormat("%.1f %s", value, kUnits[unit]);
}

std::string FileTypeName(v1::FileEntry::Type type) {
  switch (type) {
    case v1::FileEntry::REGULAR:
      return "regular";
    case v1::FileEntry::DIRECTORY:
      return "directory";
    case v1::FileEntry::SYMLINK:
      return "symlink";
    case v1::FileEntry::HARDLINK:
      return "hardlink";
    default:
      return "unspecified";
  }
}

std::string FormatFileEntry(const v1::FileEntry& entry) {
  std::string path = entry.path();
  switch (entry.type()) {
    case v1::FileEntry::DIRECTORY:
      if (path.empty() || path.back() != '/') path += '/';
      break;
    case v1::FileEntry::SYMLINK:
      absl::StrAppend(&path, " -> ", entry.link_target());
      break;
    case v1::FileEntry::HARDLINK:
      absl::StrAppend(&path, " => ", entry.link_target());
      break;
    default:
      break;
  }
  return absl::StrCat(FormatMode(entry.mode()), " ", entry.size(), " ", path);
}

nlohmann::ordered_json FileEntryToJson(const v1::FileEntry& entry) {
  nlohmann::ordered_json j = {
      {"path", entry.path()},
      {"type", FileTypeName(entry.type())},
      {"mode", FormatMode(entry.mode())},
      {"size", entry.size()},
  };
  if (!entry.content_digest().empty()) {
    j["content_digest"] = entry.content_digest();
  }
  if (!entry.link_target().empty()) j["link_target"] = entry.link_target();
  return j;
}

nlohmann::ordered_json SummaryToJson(const v1::ArtefactSummary& summary) {
  const v1::ArtefactMetadata& m = summary.metadata();
  return {
      {"compression", summary.compression()},
      {"file_count", summary.file_count()},
      {"regular_files", summary.regular_files()},
      {"unpacked_bytes", summary.unpacked_bytes()},
      {"bytes_newly_stored", summary.bytes_newly_stored()},
      {"metadata",
       {{"name", m.name()},
        {"version", m.version()},
        {"licence", m.licence()},
        {"entrypoint", m.entrypoint()}}},
      {"stripped_setid_paths",
       std::vector<std::string>(summary.stripped_setid_paths().begin(),
                                summary.stripped_setid_paths().end())},
      {"stripped_setid_count", summary.stripped_setid_count()},
  };
}

nlohmann::ordered_json WriteResponseToJson(const v1::WriteResponse& response) {
  return {
      {"digest", response.digest()},
      {"size", response.size()},
      {"already_present", response.already_present()},
      {"index_state", response.index_state()},
      {"summary", SummaryToJson(response.summary())},
  };
}

nlohmann::ordered_json StatToJson(const v1::StatResponse& response) {
  nlohmann::ordered_json j = {
      {"digest", response.digest()},
      {"size", response.size()},
      {"kind", response.kind()},
      {"created_unix_seconds", response.created_unix_seconds()},
      {"created", FormatUnixTime(response.created_unix_seconds())},
      {"index_durable", response.index_durable()},
  };
  if (!response.index_state().empty()) {
    j["index_state"] = response.index_state();
  }
  if (response.has_summary()) j["summary"] = SummaryToJson(response.summary());
  return j;
}

nlohmann::ordered_json CheckResultToJson(const std::string& path,
                                         const CheckResult& result) {
  return {
      {"path", path},
      {"ok", result.ok()},
      {"compression", result.compression},
      {"entries", result.entries},
      {"problems", result.problems},
      {"reasons", result.reasons},
  };
}

std::string FormatUnixTime(int64_t seconds) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixSeconds(seconds),
                          absl::UTCTimeZone());
}

std::string FormatStat(const v1::StatResponse& response) {
  std::string out;
  auto line = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(
        &out, absl::StrFormat("%-15s %s\n", absl::StrCat(key, ":"), value));
  };
  line("digest", response.digest());
  line("kind", response.kind());
  line("size",
       absl::StrCat(response.size(), " (", HumanBytes(response.size()), ")"));
  line("created", FormatUnixTime(response.created_unix_seconds()));
  if (!response.has_summary()) return out;
  const v1::ArtefactSummary& s = response.summary();
  if (response.index_state() == "indexing") {
    line("index", "being built (cairn stat --wait waits for it)");
    return out;
  }
  line("index", response.index_durable() ? "durable" : "not yet durable");
  line("compression", s.compression());
  line("files", absl::StrCat(s.file_count(), " entries, ", s.regular_files(),
                             " regular files"));
  line("unpacked", absl::StrCat(s.unpacked_bytes(), " (",
                                HumanBytes(s.unpacked_bytes()), ")"));
  const v1::ArtefactMetadata& m = s.metadata();
  if (!m.name().empty()) line("name", m.name());
  if (!m.version().empty()) line("version", m.version());
  if (!m.licence().empty()) line("licence", m.licence());
  if (!m.entrypoint().empty()) line("entrypoint", m.entrypoint());
  if (!s.stripped_setid_paths().empty()) {
    std::string paths = absl::StrJoin(s.stripped_setid_paths(), ", ");
    if (s.stripped_setid_count() >
        static_cast<uint64_t>(s.stripped_setid_paths_size())) {
      absl::StrAppend(&paths, ", ... (", s.stripped_setid_count(), " in all)");
    }
    line("setid stripped", paths);
  }
  return out;
}

std::string FormatProgress(uint64_t done, uint64_t total, double seconds) {
  std::string line = absl::StrCat("  ", HumanBytes(done));
  if (total > 0) {
    const uint64_t percent = std::min<uint64_t>(
        100, static_cast<uint64_t>(100.0 * static_cast<double>(done) /
                                   static_cast<double>(total)));
    absl::StrAppend(&line, " / ", HumanBytes(total), "  ", percent, "%");
  }
  if (seconds > 0) {
    absl::StrAppend(&line,
                    absl::StrFormat("  %.1f MB/s",
                                    static_cast<double>(done) / 1e6 / seconds));
  }
  return line;
}

ProgressMeter::ProgressMeter(std::ostream* err, bool enabled)
    : err_(err),
      enabled_(enabled),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

void ProgressMeter::Update(uint64_t done, uint64_t total) {
  done_ = done;
  total_ = total;
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  Draw();
}

void ProgressMeter::Finish() {
  if (!enabled_ || !drawn_) return;
  Draw();
  *err_ << "\n" << std::flush;
}

void ProgressMeter::Draw() {
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start_)
          .count();
  std::string line = FormatProgress(done_, total_, seconds);
  const size_t width = line.size();
  // Blank out what a longer previous line left behind.
  if (width < last_width_) line.append(last_width_ - width, ' ');
  last_width_ = width;
  *err_ << "\r" << line << std::flush;
  drawn_ = true;
}

// ---------------------------------------------------------------------------
// Refs.

std::string RefKindName(v1::RefKind kind) {
  switch (kind) {
    case v1::BRANCH:
      return "branch";
    case v1::RELEASE:
      return "release";
    default:
      return "unspecified";
  }
}

std::string RefActionName(v1::RefHistoryEntry::Action action) {
  switch (action) {
    case v1::RefHistoryEntry::SET_SLOT:
      return "set-slot";
    case v1::RefHistoryEntry::CREATE_RELEASE:
      return "create-release";
    case v1::RefHistoryEntry::PROMOTE:
      return "promote";
    case v1::RefHistoryEntry::YANK:
      return "yank";
    case v1::RefHistoryEntry::DELETE:
      return "delete";
    default:
      return "unspecified";
  }
}

std::string FormatMicros(int64_t micros) {
  return absl::FormatTime("%Y-%m-%dT%H:%M:%SZ", absl::FromUnixMicros(micros),
                          absl::UTCTimeZone());
}

nlohmann::ordered_json ArtefactMetadataToJson(const v1::ArtefactMetadata& m) {
  return {{"name", m.name()},
          {"version", m.version()},
          {"licence", m.licence()},
          {"entrypoint", m.entrypoint()}};
}

nlohmann::ordered_json RefToJson(const v1::Ref& ref) {
  nlohmann::ordered_json slots = nlohmann::ordered_json::array();
  for (const v1::Slot& s : ref.slots()) {
    slots.push_back({{"slot", s.slot()},
                     {"digest", s.digest()},
                     {"metadata", ArtefactMetadataToJson(s.metadata())}});
  }
  nlohmann::ordered_json j = {
      {"ref", ref.ref()},
      {"kind", RefKindName(ref.kind())},
      {"slots", std::move(slots)},
      {"generation", ref.generation()},
      {"created_at_micros", ref.created_at_micros()},
      {"created_at", FormatMicros(ref.created_at_micros())},
      {"updated_at_micros", ref.updated_at_micros()},
      {"updated_at", FormatMicros(ref.updated_at_micros())},
      {"updated_by", ref.updated_by()},
      {"metadata", ArtefactMetadataToJson(ref.metadata())},
      {"metadata_slot", ref.metadata_slot()},
  };
  if (!ref.source_ref().empty()) {
    j["source_ref"] = ref.source_ref();
    j["source_generation"] = ref.source_generation();
  }
  j["yanked"] = ref.yanked();
  if (ref.yanked()) {
    j["yank_reason"] = ref.yank_reason();
    j["yanked_at_micros"] = ref.yanked_at_micros();
    j["yanked_at"] = FormatMicros(ref.yanked_at_micros());
  }
  return j;
}

nlohmann::ordered_json RefHistoryEntryToJson(const v1::RefHistoryEntry& entry) {
  nlohmann::ordered_json changes = nlohmann::ordered_json::array();
  for (const v1::SlotChange& c : entry.changes()) {
    nlohmann::ordered_json change = {{"slot", c.slot()}};
    if (!c.old_digest().empty()) change["old_digest"] = c.old_digest();
    if (!c.new_digest().empty()) change["new_digest"] = c.new_digest();
    changes.push_back(std::move(change));
  }
  nlohmann::ordered_json j = {
      {"ref", entry.ref()},
      {"generation", entry.generation()},
      {"at_micros", entry.at_micros()},
      {"at", FormatMicros(entry.at_micros())},
      {"actor", entry.actor()},
      {"action", RefActionName(entry.action())},
      {"kind", RefKindName(entry.kind())},
      {"changes", std::move(changes)},
  };
  if (!entry.source_ref().empty()) {
    j["source_ref"] = entry.source_ref();
    j["source_generation"] = entry.source_generation();
  }
  if (entry.action() == v1::RefHistoryEntry::YANK) {
    j["reason"] = entry.reason();
  }
  return j;
}

nlohmann::ordered_json RefUpdateToJson(const v1::RefUpdateResponse& response) {
  nlohmann::ordered_json j = {{"ref", RefToJson(response.ref())},
                              {"changed", response.changed()}};
  if (response.has_entry())
    j["entry"] = RefHistoryEntryToJson(response.entry());
  return j;
}

nlohmann::ordered_json ResolveToJson(const v1::ResolveResponse& response) {
  nlohmann::ordered_json j = {
      {"ref", response.ref()},
      {"slot_requested", response.slot_requested()},
      {"slot_used", response.slot_used()},
      {"fallback", response.slot_used() != response.slot_requested()},
      {"digest", response.digest()},
      {"generation", response.generation()},
      {"kind", RefKindName(response.kind())},
      {"yanked", response.yanked()},
  };
  if (response.yanked()) j["yank_reason"] = response.yank_reason();
  j["metadata"] = ArtefactMetadataToJson(response.metadata());
  return j;
}

std::string FormatRef(const v1::Ref& ref) {
  std::string out = absl::StrCat(ref.ref(), " ", RefKindName(ref.kind()),
                                 " generation ", ref.generation(), "\n");
  for (const v1::Slot& s : ref.slots()) {
    absl::StrAppend(&out, "  ", s.slot(), " ", s.digest(), "\n");
  }
  if (!ref.source_ref().empty()) {
    absl::StrAppend(&out, "  promoted from ", ref.source_ref(), " generation ",
                    ref.source_generation(), "\n");
  }
  if (ref.yanked())
    absl::StrAppend(&out, "  yanked: ", ref.yank_reason(), "\n");
  return out;
}

std::string FormatRefLine(const v1::Ref& ref) {
  std::vector<std::string> slots;
  for (const v1::Slot& s : ref.slots()) slots.push_back(s.slot());
  return absl::StrCat(
      ref.ref(), " ", ref.yanked() ? "yanked" : RefKindName(ref.kind()), " ",
      ref.generation(), " ", absl::StrJoin(slots, ","), " ",
      FormatMicros(ref.updated_at_micros()), " ", ref.updated_by());
}

std::string FormatHistoryEntry(const v1::RefHistoryEntry& entry) {
  std::string out = absl::StrCat(
      entry.generation(), " ", FormatMicros(entry.at_micros()), " ",
      RefActionName(entry.action()), " ", entry.actor(), "\n");
  for (const v1::SlotChange& c : entry.changes()) {
    absl::StrAppend(&out, "  ", c.slot(), " ",
                    c.old_digest().empty() ? "-" : c.old_digest(), " -> ",
                    c.new_digest().empty() ? "-" : c.new_digest(), "\n");
  }
  if (!entry.source_ref().empty()) {
    absl::StrAppend(&out, "  from ", entry.source_ref(), " generation ",
                    entry.source_generation(), "\n");
  }
  if (entry.action() == v1::RefHistoryEntry::YANK) {
    absl::StrAppend(&out, "  reason: ", entry.reason(), "\n");
  }
  return out;
}

namespace {

bool IsFallback(const v1::ResolveResponse& response) {
  return response.slot_used() != response.slot_requested();
}

}  // namespace

std::string FormatResolve(const v1::ResolveResponse& response) {
  std::string out;
  auto line = [&out](absl::string_view key, absl::string_view value) {
    absl::StrAppend(
        &out, absl::StrFormat("%-11s %s\n", absl::StrCat(key, ":"), value));
  };
  line("ref",
       absl::StrCat(response.ref(), " (", RefKindName(response.kind()), ")"));
  line("slot",
       IsFallback(response)
           ? absl::StrCat(response.slot_used(), " (no ",
                          response.slot_requested(), " slot: noarch fallback)")
           : response.slot_used());
  line("digest", response.digest());
  line("generation", absl::StrCat(response.generation()));
  if (response.yanked()) line("yanked", response.yank_reason());
  const v1::ArtefactMetadata& m = response.metadata();
  if (!m.name().empty()) line("name", m.name());
  if (!m.version().empty()) line("version", m.version());
  if (!m.licence().empty()) line("licence", m.licence());
  if (!m.entrypoint().empty()) line("entrypoint", m.entrypoint());
  return out;
}

std::string FormatResolvedLine(const v1::ResolveResponse& response) {
  std::string out = absl::StrCat(response.ref(), " ", response.slot_used(),
                                 " generation ", response.generation());
  if (IsFallback(response)) {
    absl::StrAppend(&out, " (no ", response.slot_requested(),
                    " slot: noarch fallback)");
  }
  return out;
}

}  // namespace cli
}  // namespace cairn
