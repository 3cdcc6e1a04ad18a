// Copyright 2026 The Cairn Authors.
//
// `cairn`: the command-line client of the Cairn artefact store. Parses
// arguments with CLI11 and runs one subcommand (tools/cairn/commands.h).
// CLI11 reports parse errors by throwing; that is caught here, around
// app.parse only, as CLI11 documents. See docs/cli.md.

#include <malloc.h>
#include <unistd.h>

#include <cstdint>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/numbers.h"
#include "tools/cairn/commands.h"
#include "tools/cairn/mounts.h"
#include "tools/cairn/run.h"
#include "tools/cleanup/remove_on_signal.h"

namespace {

// A generation: decimal digits only. CLI11's own conversion takes "010" as
// octal, "0x9" as hex and "-1" as 2^64-1.
CLI::Validator DecimalUint64() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        uint64_t value = 0;
        if (text.empty() ||
            text.find_first_not_of("0123456789") != std::string::npos ||
            !absl::SimpleAtoi(text, &value)) {
          return "want a decimal number from 0 to 18446744073709551615, got "
                 "\"" +
                 text + "\"";
        }
        text = std::to_string(value);  // No leading zero left for CLI11.
        return std::string();
      },
      "", "decimal");
}

// A value that must not be empty when given (an empty --entry would
// otherwise mean "the artefact's entrypoint", like no --entry at all).
CLI::Validator NonEmpty() {
  return CLI::Validator(
      [](std::string& text) -> std::string {
        return text.empty() ? "must not be empty" : std::string();
      },
      "", "non-empty");
}

}  // namespace

int main(int argc, char** argv) {
  using cairn::cli::GlobalFlags;
  using cairn::cli::kExitUsage;

  // Serve large blocks from the heap rather than an mmap each, and keep
  // freed memory rather than trimming the heap at every free. gRPC
  // allocates and frees its receive buffers per read; with glibc's defaults
  // each came as fresh pages: pulling 198 MB cost ~20,000 page faults and
  // 0.3-0.9 s of system time, against ~3,700 and 0.1 s with this. A
  // short-lived process can afford to keep the memory.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 128 << 20);
  // Partial files of pull and pack go if the command is interrupted.
  cairn::InstallRemoveOnSignal();

  GlobalFlags flags;
  flags.server = cairn::cli::DefaultServer();
  flags.actor = cairn::cli::DefaultActor();

  CLI::App app{"cairn: client for the Cairn content-addressed artefact store",
               "cairn"};
  // Global flags are accepted after the subcommand too.
  app.fallthrough();
  app.require_subcommand(1);
  app.set_version_flag("--version", "cairn 0.1.0");
  app.failure_message([](const CLI::App*, const CLI::Error& e) {
    return std::string("cairn: error: ") + e.what() +
           "\nRun with --help for more information.\n";
  });
  app.add_option("--server", flags.server,
                 "Server address (default: $CAIRN_SERVER, else "
                 "127.0.0.1:8470)")
      ->type_name("ADDR");
  app.add_flag("--json", flags.json, "Machine-readable JSON output");
  app.add_flag("-q,--quiet", flags.quiet,
               "Print only the essential result; no progress");
  app.add_option("--actor", flags.actor,
                 "Who ref updates are recorded as (default: $CAIRN_ACTOR, "
                 "else $USER@hostname)")
      ->type_name("NAME");

  std::string pack_path, pack_output;
  bool pack_check = false;
  CLI::App* pack = app.add_subcommand(
      "pack", "Pack DIR into a deterministic .tar.gz, or --check a tarball");
  pack->add_option("path", pack_path, "Directory to pack (FILE with --check)")
      ->required()
      ->type_name("DIR|FILE");
  CLI::Option* output_opt =
      pack->add_option("-o,--output", pack_output, "Output .tar.gz")
          ->type_name("FILE");
  CLI::Option* check_opt = pack->add_flag(
      "--check", pack_check, "Check that FILE follows the packing convention");
  output_opt->excludes(check_opt);

  std::string push_file, push_expect, push_ref, push_arch;
  uint64_t push_if_generation = 0;
  CLI::App* push = app.add_subcommand(
      "push", "Upload a tarball (skipped if stored), optionally into a branch");
  push->add_option("file", push_file, "Tarball to upload")
      ->required()
      ->type_name("FILE");
  push->add_option("--expect", push_expect,
                   "Fail before uploading unless FILE has this digest")
      ->type_name("DIGEST");
  CLI::Option* push_ref_opt =
      push->add_option("--ref", push_ref,
                       "Then set this branch's slot to the artefact")
          ->type_name("PKG@NAME");
  push->add_option("--arch", push_arch,
                   "Slot to set (default: this host's, e.g. linux-amd64; "
                   "or noarch)")
      ->type_name("SLOT")
      ->needs(push_ref_opt);
  CLI::Option* push_if_generation_opt =
      push->add_option("--if-generation", push_if_generation,
                       "Only if the branch is at this generation (0: it "
                       "must not exist); else ABORTED")
          ->type_name("N")
          ->transform(DecimalUint64())
          ->needs(push_ref_opt);
  bool push_no_wait = false;
  push->add_flag("--no-wait", push_no_wait,
                 "Return once the bytes are durable, before the file index is "
                 "complete (see cairn stat --wait)")
      ->excludes(push_ref_opt);

  std::string pull_target, pull_output, pull_arch;
  bool pull_allow_yanked = false;
  bool pull_fsync = false;
  CLI::App* pull = app.add_subcommand(
      "pull", "Download a blob or a ref's artefact, verified");
  pull->add_option("target", pull_target,
                   "sha256:<hex>, or a ref <package>@<name>")
      ->required()
      ->type_name("DIGEST|PKG@NAME");
  pull->add_option("-o,--output", pull_output, "Where to write the blob")
      ->required()
      ->type_name("FILE");
  pull->add_option("--arch", pull_arch,
                   "Slot to resolve a ref for (default: this host's)")
      ->type_name("SLOT");
  pull->add_flag("--allow-yanked", pull_allow_yanked,
                 "Resolve a yanked release anyway");
  pull->add_flag("--fsync", pull_fsync,
                 "Make FILE durable (fsync) before it takes its name");

  std::string release_ref;
  std::vector<std::string> release_slots;
  CLI::App* release = app.add_subcommand(
      "release", "Create an immutable release from stored artefacts");
  release->add_option("ref", release_ref, "The release to create")
      ->required()
      ->type_name("PKG@NAME");
  release->add_option("--slot", release_slots, "A slot (repeatable)")
      ->required()
      ->allow_extra_args(false)
      ->type_name("SLOT=DIGEST");

  std::string promote_branch, promote_release;
  std::vector<std::string> promote_expected;
  CLI::App* promote = app.add_subcommand(
      "promote", "Create a release from exactly what a branch holds");
  promote->add_option("branch", promote_branch, "The branch")
      ->required()
      ->type_name("PKG@BRANCH");
  promote->add_option("release", promote_release, "The release to create")
      ->required()
      ->type_name("PKG@RELEASE");
  promote
      ->add_option("--expect", promote_expected,
                   "Every slot of the branch with the digest you tested "
                   "(repeatable)")
      ->required()
      ->allow_extra_args(false)
      ->type_name("SLOT=DIGEST");

  std::string resolve_ref, resolve_arch;
  bool resolve_allow_yanked = false;
  CLI::App* resolve =
      app.add_subcommand("resolve", "Show the digest a ref gives a slot");
  resolve->add_option("ref", resolve_ref, "The ref")
      ->required()
      ->type_name("PKG@NAME");
  resolve
      ->add_option("--arch", resolve_arch,
                   "Slot (default: this host's, e.g. linux-amd64)")
      ->type_name("SLOT");
  resolve->add_flag("--allow-yanked", resolve_allow_yanked,
                    "Resolve a yanked release anyway");

  std::string ls_prefix, ls_kind;
  CLI::App* ls = app.add_subcommand("ls", "List refs");
  ls->add_option("prefix", ls_prefix,
                 "Only refs starting with this (team/, tool@, tool@v1.)")
      ->type_name("PREFIX");
  ls->add_option("--kind", ls_kind, "Only branches or only releases")
      ->check(CLI::IsMember({"branch", "release"}))
      ->type_name("branch|release");

  std::string history_ref;
  CLI::App* history =
      app.add_subcommand("history", "Show a ref's audit history");
  history->add_option("ref", history_ref, "The ref")
      ->required()
      ->type_name("PKG@NAME");

  std::string yank_ref, yank_reason;
  CLI::App* yank = app.add_subcommand(
      "yank", "Stop a release from resolving by name (its bytes stay)");
  yank->add_option("ref", yank_ref, "The release")
      ->required()
      ->type_name("PKG@RELEASE");
  yank->add_option("--reason", yank_reason, "Why (recorded in history)")
      ->type_name("TEXT");

  std::string rm_ref;
  uint64_t rm_if_generation = 0;
  CLI::App* rm = app.add_subcommand("rm", "Delete a branch (not a release)");
  rm->add_option("ref", rm_ref, "The branch")
      ->required()
      ->type_name("PKG@BRANCH");
  CLI::Option* rm_if_generation_opt =
      rm->add_option("--if-generation", rm_if_generation,
                     "Only if the branch is at this generation; else ABORTED")
          ->type_name("N")
          ->transform(DecimalUint64());

  std::string digest_file;
  CLI::App* digest = app.add_subcommand(
      "digest", "Print a file's digest and remember it for later pushes");
  digest->add_option("file", digest_file, "Any file")
      ->required()
      ->type_name("FILE");

  std::string stat_digest;
  bool stat_wait = false;
  CLI::App* stat = app.add_subcommand("stat", "Describe a stored blob");
  stat->add_option("digest", stat_digest, "sha256:<hex>")
      ->required()
      ->type_name("DIGEST");
  stat->add_flag("--wait", stat_wait,
                 "Wait until an artefact's file index is complete (exit 1 "
                 "if it was rejected)");

  std::string inspect_digest;
  CLI::App* inspect =
      app.add_subcommand("inspect", "List the files of a stored artefact");
  inspect->add_option("digest", inspect_digest, "sha256:<hex>")
      ->required()
      ->type_name("DIGEST");

  cairn::cli::RunArgs run_args;
  CLI::App* run = app.add_subcommand(
      "run", "Execute an artefact's entrypoint in place from the FUSE mount");
  run->add_option("ref", run_args.ref,
                  "The ref (this host's slot, else "
                  "noarch)")
      ->required()
      ->type_name("PKG@NAME");
  run->add_option("args", run_args.args,
                  "The program's arguments (put them after --)")
      ->type_name("ARGS");
  run->add_option("--entry", run_args.entry,
                  "Path inside the artefact to execute (default: the "
                  "entrypoint of its cairn.json)")
      ->check(NonEmpty())
      ->type_name("PATH");
  run->add_option("--mount", run_args.mount,
                  "Directory of a Cairn mount (default: $CAIRN_MOUNT, else "
                  "the daemon's)")
      ->type_name("DIR");

  std::string mount_dir;
  bool mount_allow_other = false;
  CLI::App* mount =
      app.add_subcommand("mount",
                         "Have the daemon mount its store on DIR (needs cairnd "
                         "--mount-root)");
  mount
      ->add_option("dir", mount_dir,
                   "An empty directory on the daemon's "
                   "host")
      ->required()
      ->type_name("DIR");
  mount->add_flag("--allow-other", mount_allow_other,
                  "Let every user see the mount (FUSE allow_other)");

  std::string umount_dir;
  CLI::App* umount =
      app.add_subcommand("umount", "Have the daemon unmount one of its mounts");
  umount->add_option("dir", umount_dir, "The mount point")
      ->required()
      ->type_name("DIR");

  CLI::App* mounts =
      app.add_subcommand("mounts", "List the daemon's FUSE mounts");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // Prints help, version or the error.
    return code == 0 ? 0 : kExitUsage;
  }

  cairn::cli::Io io{&std::cout, &std::cerr,
                    /*progress=*/isatty(STDERR_FILENO) == 1 && !flags.quiet};
  auto dispatch = [&]() -> int {
    if (*pack) {
      if (pack_check) return cairn::cli::RunPackCheck(flags, pack_path, io);
      return cairn::cli::RunPack(flags, pack_path, pack_output, io);
    }
    if (*push) {
      std::optional<cairn::cli::PushRef> ref;
      if (push_ref_opt->count() > 0) {
        ref = cairn::cli::PushRef{push_ref, push_arch, std::nullopt};
        if (push_if_generation_opt->count() > 0) {
          ref->if_generation = push_if_generation;
        }
      }
      return cairn::cli::RunPush(flags, push_file, push_expect, ref,
                                 push_no_wait, io);
    }
    if (*pull) {
      return cairn::cli::RunPullTarget(flags, pull_target,
                                       {pull_arch, pull_allow_yanked},
                                       pull_output, io, pull_fsync);
    }
    if (*release) {
      return cairn::cli::RunRelease(flags, release_ref, release_slots, io);
    }
    if (*promote) {
      return cairn::cli::RunPromote(flags, promote_branch, promote_release,
                                    promote_expected, io);
    }
    if (*resolve) {
      return cairn::cli::RunResolve(flags, resolve_ref,
                                    {resolve_arch, resolve_allow_yanked}, io);
    }
    if (*ls) return cairn::cli::RunList(flags, ls_prefix, ls_kind, io);
    if (*history) return cairn::cli::RunHistory(flags, history_ref, io);
    if (*yank) return cairn::cli::RunYank(flags, yank_ref, yank_reason, io);
    if (*rm) {
      std::optional<uint64_t> if_generation;
      if (rm_if_generation_opt->count() > 0) if_generation = rm_if_generation;
      return cairn::cli::RunDelete(flags, rm_ref, if_generation, io);
    }
    if (*digest) return cairn::cli::RunDigest(flags, digest_file, io);
    if (*stat) return cairn::cli::RunStat(flags, stat_digest, stat_wait, io);
    if (*inspect) return cairn::cli::RunInspect(flags, inspect_digest, io);
    if (*run) return cairn::cli::RunRun(flags, run_args, io);
    if (*mount) {
      return cairn::cli::RunMount(flags, mount_dir, mount_allow_other, io);
    }
    if (*umount) return cairn::cli::RunUmount(flags, umount_dir, io);
    if (*mounts) return cairn::cli::RunMounts(flags, io);
    return kExitUsage;  // Unreachable: require_subcommand(1).
  };
  const int code = dispatch();
  // Output the shell could not take (a full disk, a closed pipe) is a
  // failure, not a success with nothing printed.
  std::cout.flush();
  if (code == cairn::cli::kExitOk && !std::cout.good()) {
    std::cerr << "cairn: error: cannot write standard output\n";
    return cairn::cli::kExitFailure;
  }
  return code;
}
