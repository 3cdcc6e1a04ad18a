// Copyright 2026 The Cairn Authors.

#include "tools/cairn/commands.h"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "proto/refs.pb.h"
#include "store/digest.h"
#include "store/ref_name.h"
#include "tools/cairn/client.h"
#include "tools/cairn/digest_cache.h"
#include "tools/cairn/format.h"
#include "tools/pack/packer.h"

namespace cairn {
namespace cli {
namespace {

// A digest given on the command line; malformed ones are usage errors.
absl::StatusOr<Digest> ParseDigestArg(absl::string_view what,
                                      const std::string& text) {
  absl::StatusOr<Digest> digest = Digest::Parse(text);
  if (!digest.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", digest.status().message()));
  }
  return digest;
}

absl::StatusOr<std::unique_ptr<CasClient>> Connect(const GlobalFlags& flags) {
  ClientOptions options;
  options.server = flags.server;
  if (absl::Status s = ApplyGrpcEnvironment(&options); !s.ok()) return s;
  return CasClient::Create(options);
}

// -o FILE: required, and "-" (standard output) is not supported: refused
// rather than written as a file named "-".
absl::Status CheckOutputArg(absl::string_view command,
                            const std::string& output) {
  if (output.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(command, ": -o FILE is required"));
  }
  if (output == "-") {
    return absl::InvalidArgumentError(
        absl::StrCat(command,
                     ": -o - (standard output) is not supported; name a file "
                     "(./- for one called \"-\")"));
  }
  return absl::OkStatus();
}

void PrintJson(const Io& io, const nlohmann::ordered_json& j) {
  // Invalid UTF-8 (e.g. raw file names) is replaced, never thrown on.
  *io.out << j.dump(2, ' ', false,
                    nlohmann::ordered_json::error_handler_t::replace)
          << "\n";
}

// A ref given on the command line; malformed ones are usage errors. The
// message (RefName::Parse's) quotes the input and shows the grammar.
absl::StatusOr<std::string> ParseRefArg(absl::string_view what,
                                        const std::string& text) {
  absl::StatusOr<RefName> ref = RefName::Parse(text);
  if (!ref.ok()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, ": ", ref.status().message()));
  }
  return text;
}

// --arch: empty means this host's slot.
absl::StatusOr<std::string> ParseSlotArg(const std::string& slot) {
  if (slot.empty()) return HostSlot();
  if (absl::Status s = ValidateSlot(slot); !s.ok()) {
    return absl::InvalidArgumentError(absl::StrCat("--arch: ", s.message()));
  }
  return slot;
}

// Repeated "SLOT=DIGEST" arguments of `flag`, in slot order.
absl::StatusOr<std::map<std::string, std::string>> ParseSlotDigestArgs(
    absl::string_view flag, const std::vector<std::string>& args) {
  std::map<std::string, std::string> out;
  if (args.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(flag, " SLOT=DIGEST is required (at least once)"));
  }
  for (const std::string& arg : args) {
    const size_t eq = arg.find('=');
    if (eq == std::string::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " \"", arg,
                       "\": want SLOT=DIGEST, e.g. linux-amd64=sha256:..."));
    }
    const std::string slot = arg.substr(0, eq);
    if (absl::Status s = ValidateSlot(slot); !s.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " \"", arg, "\": ", s.message()));
    }
    absl::StatusOr<Digest> digest = Digest::Parse(arg.substr(eq + 1));
    if (!digest.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, " \"", arg, "\": ", digest.status().message()));
    }
    if (!out.emplace(slot, digest->ToString()).second) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": slot ", slot, " is given more than once"));
    }
  }
  return out;
}

// One channel, both services.
struct Connection {
  std::unique_ptr<CasClient> cas;
  std::unique_ptr<RefsClient> refs;
};

absl::StatusOr<Connection> ConnectRefs(const GlobalFlags& flags) {
  absl::StatusOr<std::unique_ptr<CasClient>> cas = Connect(flags);
  if (!cas.ok()) return cas.status();
  Connection c;
  c.refs = std::make_unique<RefsClient>(**cas);
  c.cas = *std::move(cas);
  return c;
}

// Prints the outcome of CreateRelease or Promote.
void PrintRefUpdate(const GlobalFlags& flags, const Io& io,
                    const v1::RefUpdateResponse& response) {
  if (flags.json) {
    PrintJson(io, RefUpdateToJson(response));
  } else if (!flags.quiet) {
    *io.out << FormatRef(response.ref());
  }
}

}  // namespace

std::string DefaultActor() {
  const char* env = std::getenv("CAIRN_ACTOR");
  if (env != nullptr && env[0] != '\0') return env;
  std::string user;
  if (const char* u = std::getenv("USER"); u != nullptr && u[0] != '\0') {
    user = u;
  } else {
    struct passwd pw;
    struct passwd* found = nullptr;
    char buffer[4096];
    if (getpwuid_r(getuid(), &pw, buffer, sizeof(buffer), &found) == 0 &&
        found != nullptr && found->pw_name[0] != '\0') {
      user = found->pw_name;
    } else {
      user = absl::StrCat("uid", getuid());
    }
  }
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') {
    return user;
  }
  return absl::StrCat(user, "@", host);
}

std::string DefaultServer() {
  const char* env = std::getenv("CAIRN_SERVER");
  if (env != nullptr && env[0] != '\0') return env;
  return "127.0.0.1:8470";
}

int ReportError(const Io& io, const absl::Status& status, int exit_code) {
  *io.err << FormatError(status) << "\n";
  return exit_code;
}

int RunPack(const GlobalFlags& flags, const std::string& dir,
            const std::string& output, const Io& io) {
  if (absl::Status s = CheckOutputArg("pack", output); !s.ok()) {
    return ReportError(io, s, kExitUsage);
  }
  absl::StatusOr<PackResult> result = PackDirectoryWithResult(dir, output);
  if (!result.ok()) return ReportError(io, result.status());
  const std::string digest = result->digest.ToString();
  if (flags.json) {
    PrintJson(io, {{"digest", digest},
                   {"size", result->archive_bytes},
                   {"path", output},
                   {"entries", result->entries},
                   {"regular_files", result->regular_files},
                   {"file_bytes", result->file_bytes}});
  } else if (flags.quiet) {
    *io.out << digest << "\n";
  } else {
    *io.out << digest << " " << result->archive_bytes << " " << output << "\n";
  }
  return kExitOk;
}

int RunPackCheck(const GlobalFlags& flags, const std::string& file,
                 const Io& io) {
  absl::StatusOr<CheckResult> result = CheckArchive(file);
  if (!result.ok()) return ReportError(io, result.status());
  if (flags.json) {
    PrintJson(io, CheckResultToJson(file, *result));
  } else if (result->ok()) {
    if (!flags.quiet) {
      *io.out << "ok: " << file << " is normalised (" << result->entries
              << " entries, " << result->compression << ")\n";
    }
  } else {
    if (!flags.quiet) *io.out << file << ": not normalised\n";
    for (const std::string& reason : result->reasons) {
      *io.out << "  - " << reason << "\n";
    }
    if (result->problems > result->reasons.size()) {
      *io.out << "  ... and " << result->problems - result->reasons.size()
              << " more\n";
    }
  }
  return result->ok() ? kExitOk : kExitFailure;
}

int RunPush(const GlobalFlags& flags, const std::string& file,
            const std::string& expect, const Io& io) {
  return RunPush(flags, file, expect, std::nullopt, /*no_wait=*/false, io);
}

int RunPush(const GlobalFlags& flags, const std::string& file,
            const std::string& expect, const std::optional<PushRef>& ref,
            bool no_wait, const Io& io) {
  // The ref and slot are checked before anything is uploaded.
  v1::SetSlotRequest set_slot;
  if (ref.has_value() && no_wait) {
    return ReportError(
        io,
        absl::InvalidArgumentError("--no-wait cannot be used with --ref: a "
                                   "ref needs the artefact's complete index"),
        kExitUsage);
  }
  if (ref.has_value()) {
    absl::StatusOr<std::string> name = ParseRefArg("--ref", ref->ref);
    if (!name.ok()) return ReportError(io, name.status(), kExitUsage);
    absl::StatusOr<std::string> slot = ParseSlotArg(ref->slot);
    if (!slot.ok()) return ReportError(io, slot.status(), kExitUsage);
    set_slot.set_ref(*name);
    set_slot.set_slot(*slot);
    set_slot.set_actor(flags.actor);
    if (ref->if_generation.has_value()) {
      set_slot.set_if_generation(*ref->if_generation);
    }
  }
  PushOptions options;
  options.no_wait = no_wait;
  if (!expect.empty()) {
    absl::StatusOr<Digest> digest = ParseDigestArg("--expect", expect);
    if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
    options.expect = *digest;
  }
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  ProgressMeter meter(io.err, io.progress && !flags.quiet);
  options.progress = [&meter](uint64_t done, uint64_t total) {
    meter.Update(done, total);
  };
  absl::StatusOr<v1::WriteResponse> response = (*client)->Push(file, options);
  meter.Finish();
  if (!response.ok()) return ReportError(io, response.status());

  std::optional<v1::RefUpdateResponse> update;
  if (ref.has_value()) {
    set_slot.set_digest(response->digest());
    absl::StatusOr<v1::RefUpdateResponse> updated =
        RefsClient(**client).SetSlot(set_slot);
    if (!updated.ok()) {
      return ReportError(
          io, absl::Status(
                  updated.status().code(),
                  absl::StrCat(updated.status().message(), " (the artefact ",
                               response->digest(), " is stored; ",
                               set_slot.ref(), " was not changed)")));
    }
    update = *std::move(updated);
  }

  if (flags.json) {
    nlohmann::ordered_json j = WriteResponseToJson(*response);
    if (update.has_value()) j["ref_update"] = RefUpdateToJson(*update);
    PrintJson(io, j);
  } else if (flags.quiet) {
    *io.out << response->digest() << "\n";
  } else {
    *io.out << response->digest() << " " << response->size() << " "
            << (response->already_present() ? "already stored" : "stored")
            << (response->index_state() == "indexing" ? " (index being built)"
                                                      : "")
            << "\n";
    if (update.has_value()) {
      *io.out << set_slot.ref() << " " << set_slot.slot() << " "
              << response->digest() << " generation "
              << update->ref().generation()
              << (update->changed() ? "" : " (unchanged)") << "\n";
    }
  }
  return kExitOk;
}

int RunPull(const GlobalFlags& flags, const std::string& digest_text,
            const std::string& output, const Io& io, bool fsync_output) {
  absl::StatusOr<Digest> digest = ParseDigestArg("DIGEST", digest_text);
  if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
  if (absl::Status s = CheckOutputArg("pull", output); !s.ok()) {
    return ReportError(io, s, kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  ProgressMeter meter(io.err, io.progress && !flags.quiet);
  absl::StatusOr<PullResult> result = (*client)->Pull(
      *digest, output,
      [&meter](uint64_t done, uint64_t total) { meter.Update(done, total); },
      fsync_output);
  meter.Finish();
  if (!result.ok()) return ReportError(io, result.status());
  const std::string text = result->digest.ToString();
  if (flags.json) {
    PrintJson(io,
              {{"digest", text}, {"size", result->bytes}, {"path", output}});
  } else if (flags.quiet) {
    *io.out << text << "\n";
  } else {
    *io.out << text << " " << result->bytes << " " << output << "\n";
  }
  return kExitOk;
}

int RunDigest(const GlobalFlags& flags, const std::string& path, const Io& io) {
  // Stamps of the file hashed, taken before hashing: a change while hashing
  // alters ctime, so the cache entry recorded here never matches the
  // changed file (nor another file renamed over the path meanwhile).
  const int64_t stat_time = DigestCache::NowNanos();
  struct stat st;
  absl::StatusOr<std::pair<Digest, uint64_t>> hashed = HashFile(path, &st);
  if (!hashed.ok()) return ReportError(io, hashed.status());
  DigestCache::Default().Store(st, stat_time, hashed->first);
  if (flags.json) {
    PrintJson(io, {{"digest", hashed->first.ToString()},
                   {"size", hashed->second},
                   {"file", path}});
  } else if (flags.quiet) {
    *io.out << hashed->first.ToString() << "\n";
  } else {
    *io.out << hashed->first.ToString() << " " << hashed->second << " " << path
            << "\n";
  }
  return kExitOk;
}

int RunStat(const GlobalFlags& flags, const std::string& digest_text, bool wait,
            const Io& io) {
  absl::StatusOr<Digest> digest = ParseDigestArg("DIGEST", digest_text);
  if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  absl::StatusOr<v1::StatResponse> response = (*client)->Stat(*digest, wait);
  if (!response.ok()) return ReportError(io, response.status());
  if (flags.json) {
    PrintJson(io, StatToJson(*response));
  } else {
    *io.out << FormatStat(*response);
  }
  return kExitOk;
}

int RunInspect(const GlobalFlags& flags, const std::string& digest_text,
               const Io& io) {
  absl::StatusOr<Digest> digest = ParseDigestArg("DIGEST", digest_text);
  if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  // JSON is streamed as an array, one entry per line, so memory does not
  // grow with the index. Human lines are printed as they arrive.
  bool first = true;
  absl::Status status = (*client)->ListFiles(
      *digest, [&](const v1::FileEntry& entry) -> absl::Status {
        if (flags.json) {
          *io.out << (first ? "[\n  " : ",\n  ")
                  << FileEntryToJson(entry).dump(
                         -1, ' ', false,
                         nlohmann::ordered_json::error_handler_t::replace);
        } else {
          *io.out << FormatFileEntry(entry) << "\n";
        }
        first = false;
        return absl::OkStatus();
      });
  if (flags.json && status.ok()) *io.out << (first ? "[]\n" : "\n]\n");
  if (flags.json && !status.ok() && !first) *io.out << "\n";
  if (!status.ok()) return ReportError(io, status);
  return kExitOk;
}

int RunRelease(const GlobalFlags& flags, const std::string& ref,
               const std::vector<std::string>& slots, const Io& io) {
  absl::StatusOr<std::string> name = ParseRefArg("PKG@NAME", ref);
  if (!name.ok()) return ReportError(io, name.status(), kExitUsage);
  absl::StatusOr<std::map<std::string, std::string>> parsed =
      ParseSlotDigestArgs("--slot", slots);
  if (!parsed.ok()) return ReportError(io, parsed.status(), kExitUsage);
  v1::CreateReleaseRequest request;
  request.set_ref(*name);
  request.set_actor(flags.actor);
  for (const auto& [slot, digest] : *parsed) {
    v1::SlotDigest* s = request.add_slots();
    s->set_slot(slot);
    s->set_digest(digest);
  }
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::RefUpdateResponse> response =
      c->refs->CreateRelease(request);
  if (!response.ok()) return ReportError(io, response.status());
  PrintRefUpdate(flags, io, *response);
  return kExitOk;
}

int RunPromote(const GlobalFlags& flags, const std::string& branch,
               const std::string& release,
               const std::vector<std::string>& expected, const Io& io) {
  absl::StatusOr<std::string> from = ParseRefArg("PKG@BRANCH", branch);
  if (!from.ok()) return ReportError(io, from.status(), kExitUsage);
  absl::StatusOr<std::string> to = ParseRefArg("PKG@RELEASE", release);
  if (!to.ok()) return ReportError(io, to.status(), kExitUsage);
  absl::StatusOr<std::map<std::string, std::string>> parsed =
      ParseSlotDigestArgs("--expect", expected);
  if (!parsed.ok()) return ReportError(io, parsed.status(), kExitUsage);
  v1::PromoteRequest request;
  request.set_branch(*from);
  request.set_release(*to);
  request.set_actor(flags.actor);
  for (const auto& [slot, digest] : *parsed) {
    v1::SlotDigest* s = request.add_expected();
    s->set_slot(slot);
    s->set_digest(digest);
  }
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::RefUpdateResponse> response = c->refs->Promote(request);
  if (!response.ok()) return ReportError(io, response.status());
  PrintRefUpdate(flags, io, *response);
  return kExitOk;
}

namespace {

// Builds the ResolveRequest for `ref` and `args`, or a usage error.
absl::StatusOr<v1::ResolveRequest> ResolveRequestFor(const std::string& ref,
                                                     const ResolveArgs& args) {
  absl::StatusOr<std::string> name = ParseRefArg("PKG@NAME", ref);
  if (!name.ok()) return name.status();
  absl::StatusOr<std::string> slot = ParseSlotArg(args.slot);
  if (!slot.ok()) return slot.status();
  v1::ResolveRequest request;
  request.set_ref(*name);
  request.set_slot(*slot);
  request.set_allow_yanked(args.allow_yanked);
  return request;
}

}  // namespace

int RunResolve(const GlobalFlags& flags, const std::string& ref,
               const ResolveArgs& args, const Io& io) {
  absl::StatusOr<v1::ResolveRequest> request = ResolveRequestFor(ref, args);
  if (!request.ok()) return ReportError(io, request.status(), kExitUsage);
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::ResolveResponse> response = c->refs->Resolve(*request);
  if (!response.ok()) return ReportError(io, response.status());
  if (flags.json) {
    PrintJson(io, ResolveToJson(*response));
  } else if (flags.quiet) {
    *io.out << response->digest() << "\n";
  } else {
    *io.out << FormatResolve(*response);
  }
  return kExitOk;
}

int RunList(const GlobalFlags& flags, const std::string& prefix,
            const std::string& kind, const Io& io) {
  v1::ListRefsRequest request;
  request.set_prefix(prefix);
  if (kind == "branch") {
    request.set_kind(v1::BRANCH);
  } else if (kind == "release") {
    request.set_kind(v1::RELEASE);
  } else if (!kind.empty()) {
    return ReportError(io,
                       absl::InvalidArgumentError(absl::StrCat(
                           "--kind \"", kind, "\": want branch or release")),
                       kExitUsage);
  }
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  absl::Status status =
      c->refs->ListRefs(request, [&](const v1::Ref& ref) -> absl::Status {
        if (flags.json) {
          all.push_back(RefToJson(ref));
        } else if (flags.quiet) {
          *io.out << ref.ref() << "\n";
        } else {
          *io.out << FormatRefLine(ref) << "\n";
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return ReportError(io, status);
  if (flags.json) PrintJson(io, all);
  return kExitOk;
}

int RunHistory(const GlobalFlags& flags, const std::string& ref, const Io& io) {
  absl::StatusOr<std::string> name = ParseRefArg("PKG@NAME", ref);
  if (!name.ok()) return ReportError(io, name.status(), kExitUsage);
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  nlohmann::ordered_json all = nlohmann::ordered_json::array();
  absl::Status status = c->refs->History(
      *name, [&](const v1::RefHistoryEntry& entry) -> absl::Status {
        if (flags.json) {
          all.push_back(RefHistoryEntryToJson(entry));
        } else {
          *io.out << FormatHistoryEntry(entry);
        }
        return absl::OkStatus();
      });
  if (!status.ok()) return ReportError(io, status);
  if (flags.json) PrintJson(io, all);
  return kExitOk;
}

int RunYank(const GlobalFlags& flags, const std::string& ref,
            const std::string& reason, const Io& io) {
  absl::StatusOr<std::string> name = ParseRefArg("PKG@RELEASE", ref);
  if (!name.ok()) return ReportError(io, name.status(), kExitUsage);
  v1::YankRequest request;
  request.set_ref(*name);
  request.set_reason(reason);
  request.set_actor(flags.actor);
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::RefUpdateResponse> response = c->refs->Yank(request);
  if (!response.ok()) return ReportError(io, response.status());
  if (flags.json) {
    PrintJson(io, RefUpdateToJson(*response));
  } else if (!flags.quiet) {
    if (response->changed()) {
      *io.out << *name << " yanked at generation "
              << response->ref().generation() << ": "
              << response->ref().yank_reason() << "\n";
    } else {
      *io.out << *name
              << " was already yanked: " << response->ref().yank_reason()
              << "\n";
    }
  }
  return kExitOk;
}

int RunDelete(const GlobalFlags& flags, const std::string& ref,
              std::optional<uint64_t> if_generation, const Io& io) {
  absl::StatusOr<std::string> name = ParseRefArg("PKG@BRANCH", ref);
  if (!name.ok()) return ReportError(io, name.status(), kExitUsage);
  v1::DeleteBranchRequest request;
  request.set_ref(*name);
  request.set_actor(flags.actor);
  if (if_generation.has_value()) request.set_if_generation(*if_generation);
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::RefHistoryEntry> entry = c->refs->DeleteBranch(request);
  if (!entry.ok()) return ReportError(io, entry.status());
  if (flags.json) {
    PrintJson(io, RefHistoryEntryToJson(*entry));
  } else if (!flags.quiet) {
    *io.out << "deleted branch " << *name << " at generation "
            << entry->generation() << "\n";
  }
  return kExitOk;
}

int RunPullTarget(const GlobalFlags& flags, const std::string& target,
                  const ResolveArgs& args, const std::string& output,
                  const Io& io, bool fsync_output) {
  if (absl::StartsWith(target, Digest::kPrefix)) {
    if (!args.slot.empty() || args.allow_yanked) {
      return ReportError(
          io,
          absl::InvalidArgumentError(
              "pull: --arch and --allow-yanked apply to a ref, not a digest"),
          kExitUsage);
    }
    return RunPull(flags, target, output, io, fsync_output);
  }
  if (target.find('@') == std::string::npos) {
    return ReportError(io,
                       absl::InvalidArgumentError(absl::StrCat(
                           "pull: \"", target,
                           "\" is neither a digest (sha256:<64 hex>) nor a ref "
                           "(<package>@<name>, e.g. mytool@v1.4.0)")),
                       kExitUsage);
  }
  absl::StatusOr<v1::ResolveRequest> request = ResolveRequestFor(target, args);
  if (!request.ok()) return ReportError(io, request.status(), kExitUsage);
  if (absl::Status s = CheckOutputArg("pull", output); !s.ok()) {
    return ReportError(io, s, kExitUsage);
  }
  absl::StatusOr<Connection> c = ConnectRefs(flags);
  if (!c.ok()) return ReportError(io, c.status(), kExitUsage);
  absl::StatusOr<v1::ResolveResponse> resolved = c->refs->Resolve(*request);
  if (!resolved.ok()) return ReportError(io, resolved.status());
  absl::StatusOr<Digest> digest = Digest::Parse(resolved->digest());
  if (!digest.ok()) {
    return ReportError(
        io, absl::DataLossError(absl::StrCat(
                "server resolved ", target,
                " to a malformed digest: ", digest.status().message())));
  }
  // Pull verifies the bytes against the digest the ref resolved to.
  ProgressMeter meter(io.err, io.progress && !flags.quiet);
  absl::StatusOr<PullResult> result = c->cas->Pull(
      *digest, output,
      [&meter](uint64_t done, uint64_t total) { meter.Update(done, total); },
      fsync_output);
  meter.Finish();
  if (!result.ok()) return ReportError(io, result.status());
  const std::string text = result->digest.ToString();
  if (flags.json) {
    PrintJson(io, {{"digest", text},
                   {"size", result->bytes},
                   {"path", output},
                   {"resolved", ResolveToJson(*resolved)}});
  } else if (flags.quiet) {
    *io.out << text << "\n";
  } else {
    *io.out << FormatResolvedLine(*resolved) << "\n"
            << text << " " << result->bytes << " " << output << "\n";
  }
  return kExitOk;
}

}  // namespace cli
}  // namespace cairn
