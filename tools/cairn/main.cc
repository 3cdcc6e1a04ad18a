// Copyright 2026 The Cairn Authors.
//
// `cairn`: the command-line client of the Cairn artefact store. Parses
// arguments with CLI11 and runs one subcommand (tools/cairn/commands.h).
// CLI11 reports parse errors by throwing; that is caught here, around
// app.parse only, as CLI11 documents. See docs/cli.md.

#include <unistd.h>

#include <iostream>
#include <string>

#include "CLI/CLI.hpp"
#include "tools/cairn/commands.h"

int main(int argc, char** argv) {
  using cairn::cli::GlobalFlags;
  using cairn::cli::kExitUsage;

  GlobalFlags flags;
  flags.server = cairn::cli::DefaultServer();

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

  std::string push_file, push_expect;
  CLI::App* push =
      app.add_subcommand("push", "Upload a tarball (skipped if stored)");
  push->add_option("file", push_file, "Tarball to upload")
      ->required()
      ->type_name("FILE");
  push->add_option("--expect", push_expect,
                   "Fail before uploading unless FILE has this digest")
      ->type_name("DIGEST");

  std::string pull_digest, pull_output;
  CLI::App* pull = app.add_subcommand("pull", "Download a blob, verified");
  pull->add_option("digest", pull_digest, "sha256:<hex>")
      ->required()
      ->type_name("DIGEST");
  pull->add_option("-o,--output", pull_output, "Where to write the blob")
      ->required()
      ->type_name("FILE");

  std::string stat_digest;
  CLI::App* stat = app.add_subcommand("stat", "Describe a stored blob");
  stat->add_option("digest", stat_digest, "sha256:<hex>")
      ->required()
      ->type_name("DIGEST");

  std::string inspect_digest;
  CLI::App* inspect =
      app.add_subcommand("inspect", "List the files of a stored artefact");
  inspect->add_option("digest", inspect_digest, "sha256:<hex>")
      ->required()
      ->type_name("DIGEST");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    const int code = app.exit(e);  // Prints help, version or the error.
    return code == 0 ? 0 : kExitUsage;
  }

  cairn::cli::Io io{&std::cout, &std::cerr,
                    /*progress=*/isatty(STDERR_FILENO) == 1 && !flags.quiet};
  if (*pack) {
    if (pack_check) return cairn::cli::RunPackCheck(flags, pack_path, io);
    return cairn::cli::RunPack(flags, pack_path, pack_output, io);
  }
  if (*push) return cairn::cli::RunPush(flags, push_file, push_expect, io);
  if (*pull) return cairn::cli::RunPull(flags, pull_digest, pull_output, io);
  if (*stat) return cairn::cli::RunStat(flags, stat_digest, io);
  if (*inspect) return cairn::cli::RunInspect(flags, inspect_digest, io);
  return kExitUsage;  // Unreachable: require_subcommand(1).
}
