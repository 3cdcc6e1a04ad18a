// Copyright 2026 The Cairn Authors.

#include "tools/cairn/commands.h"

#include <cstdlib>
#include <memory>
#include <optional>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "store/digest.h"
#include "tools/cairn/client.h"
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
  return CasClient::Create(options);
}

void PrintJson(const Io& io, const nlohmann::ordered_json& j) {
  // Invalid UTF-8 (e.g. raw file names) is replaced, never thrown on.
  *io.out << j.dump(2, ' ', false,
                    nlohmann::ordered_json::error_handler_t::replace)
          << "\n";
}

}  // namespace

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
  if (output.empty()) {
    return ReportError(io,
                       absl::InvalidArgumentError("pack: -o FILE is required"),
                       kExitUsage);
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
  PushOptions options;
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
  if (flags.json) {
    PrintJson(io, WriteResponseToJson(*response));
  } else if (flags.quiet) {
    *io.out << response->digest() << "\n";
  } else {
    *io.out << response->digest() << " " << response->size() << " "
            << (response->already_present() ? "already stored" : "stored")
            << "\n";
  }
  return kExitOk;
}

int RunPull(const GlobalFlags& flags, const std::string& digest_text,
            const std::string& output, const Io& io) {
  absl::StatusOr<Digest> digest = ParseDigestArg("DIGEST", digest_text);
  if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
  if (output.empty()) {
    return ReportError(io,
                       absl::InvalidArgumentError("pull: -o FILE is required"),
                       kExitUsage);
  }
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  ProgressMeter meter(io.err, io.progress && !flags.quiet);
  absl::StatusOr<PullResult> result = (*client)->Pull(
      *digest, output,
      [&meter](uint64_t done, uint64_t total) { meter.Update(done, total); });
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

int RunStat(const GlobalFlags& flags, const std::string& digest_text,
            const Io& io) {
  absl::StatusOr<Digest> digest = ParseDigestArg("DIGEST", digest_text);
  if (!digest.ok()) return ReportError(io, digest.status(), kExitUsage);
  absl::StatusOr<std::unique_ptr<CasClient>> client = Connect(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  absl::StatusOr<v1::StatResponse> response = (*client)->Stat(*digest);
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

}  // namespace cli
}  // namespace cairn
