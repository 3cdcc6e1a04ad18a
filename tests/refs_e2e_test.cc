// Copyright 2026 The Cairn Authors.
//
// End-to-end tests of refs: a real cairnd (child process, fresh data
// directory per test) driven through the cairn CLI only, with tarballs
// packed by `cairn pack` from real trees that differ per architecture.
// Covers docs/refs.md's flows: branch -> promote -> release for
// linux-amd64, linux-arm64 and noarch with the noarch fallback; promotion
// refused after the branch moved; concurrent pushers to one branch;
// immutable releases; yank; compare-and-swap; a restart keeping everything.

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/synchronization/mutex.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/daemon.h"
#include "tests/e2e_util.h"

namespace cairn::testing {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using Json = nlohmann::json;

constexpr char kAmd64[] = "linux-amd64";
constexpr char kArm64[] = "linux-arm64";
constexpr char kNoarch[] = "noarch";

void MakeDir(const std::string& path) {
  ASSERT_EQ(::mkdir(path.c_str(), 0755), 0) << path;
}

void CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  absl::StatusOr<std::string> bytes = ReadFile(from);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(WriteFile(to, *bytes).ok()) << to;
  ASSERT_EQ(::chmod(to.c_str(), mode), 0) << to;
}

// A small real tree for `slot` at `version`:
//   bin/tool         a real ELF binary (/usr/bin/true for linux-amd64,
//                    /usr/bin/false for linux-arm64) or, for noarch, a
//                    shell script
//   share/tool/SLOT  the slot's name
//   cairn.json       name "tool", `version`, entrypoint bin/tool
// so that every (slot, version) packs to a different tarball.
void MakeArchTree(const std::string& dir, const std::string& slot,
                  const std::string& version) {
  MakeDir(dir);
  MakeDir(dir + "/bin");
  if (slot == kAmd64) {
    ASSERT_NO_FATAL_FAILURE(CopyFile("/usr/bin/true", dir + "/bin/tool", 0755));
  } else if (slot == kArm64) {
    ASSERT_NO_FATAL_FAILURE(
        CopyFile("/usr/bin/false", dir + "/bin/tool", 0755));
  } else {
    ASSERT_TRUE(WriteFile(dir + "/bin/tool",
                          absl::StrCat("#!/bin/sh\necho tool ", version, "\n"))
                    .ok());
    ASSERT_EQ(::chmod((dir + "/bin/tool").c_str(), 0755), 0);
  }
  MakeDir(dir + "/share");
  MakeDir(dir + "/share/tool");
  ASSERT_TRUE(WriteFile(dir + "/share/tool/SLOT", slot + "\n").ok());
  ASSERT_TRUE(WriteFile(dir + "/cairn.json",
                        absl::StrCat(R"({"name":"tool","version":")", version,
                                     R"(","licence":"MIT",)",
                                     R"("entrypoint":"bin/tool"})"))
                  .ok());
}

// Writes a gzipped pax tarball of regular files (path, content), mode
// 0755, mtime 0, to `path`.
void WriteTarGz(const std::string& path,
                const std::vector<std::pair<std::string, std::string>>& files) {
  archive* a = archive_write_new();
  ASSERT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK)
      << archive_error_string(a);
  for (const auto& [name, content] : files) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, AE_IFREG);
    archive_entry_set_perm(e, 0755);
    archive_entry_set_mtime(e, 0, 0);
    archive_entry_set_size(e, static_cast<la_int64_t>(content.size()));
    EXPECT_EQ(archive_write_header(a, e), ARCHIVE_OK)
        << archive_error_string(a);
    EXPECT_EQ(archive_write_data(a, content.data(), content.size()),
              static_cast<la_ssize_t>(content.size()));
    archive_entry_free(e);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK) << archive_error_string(a);
  archive_write_free(a);
}

// A packed artefact on disk.
struct Tarball {
  std::string path;
  std::string bytes;
  std::string digest;  // Computed here (OpenSSL), not by cairn.
};

absl::StatusOr<Json> ParseJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(absl::StrCat("not JSON: [", text, "]"));
  }
  return j;
}

class RefsE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = NewTempDir("refs_e2e");
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start();
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
  }

  void TearDown() override {
    if (daemon_ != nullptr && daemon_->running()) {
      absl::Status stopped = daemon_->Stop();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
    if (HasFailure() && daemon_ != nullptr) {
      std::string logs = daemon_->AllLogs();
      if (logs.size() > 20000) logs = "..." + logs.substr(logs.size() - 20000);
      std::fprintf(stderr, "cairnd logs:\n%s\n", logs.c_str());
    }
  }

  // Runs `cairn --server ADDR --actor ACTOR [--json] args...`.
  CommandResult Cli(std::vector<std::string> args, bool json = false,
                    const std::string& actor = "e2e-bot") {
    std::vector<std::string> argv = {"--server", daemon_->address()};
    if (!actor.empty()) {
      argv.push_back("--actor");
      argv.push_back(actor);
    }
    if (json) argv.push_back("--json");
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> r = RunCli(argv);
    if (!r.ok()) {
      ADD_FAILURE() << "running cairn: " << r.status();
      return CommandResult{};
    }
    return *std::move(r);
  }

  // Runs a --json command that must succeed; returns its parsed output.
  Json CliJson(std::vector<std::string> args) {
    CommandResult r = Cli(args, /*json=*/true);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    absl::StatusOr<Json> j = ParseJson(r.stdout_text);
    EXPECT_TRUE(j.ok()) << j.status();
    return j.ok() ? *j : Json();
  }

  // Runs a command that must fail with exit 1 and `code`; returns stderr.
  std::string CliFails(std::vector<std::string> args, const std::string& code) {
    CommandResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 1) << r.Describe();
    EXPECT_THAT(r.stderr_text, StartsWith("cairn: error: " + code + ": "))
        << r.Describe();
    return r.stderr_text;
  }

  // Packs a new tree for (slot, version) with `cairn pack`.
  Tarball Pack(const std::string& slot, const std::string& version) {
    const std::string name = absl::StrCat(slot, "-", version, "-", ++packs_);
    const std::string tree = absl::StrCat(work_, "/", name);
    Tarball t;
    MakeArchTree(tree, slot, version);
    if (::testing::Test::HasFatalFailure()) return t;
    t.path = tree + ".tar.gz";
    CommandResult r = Cli({"pack", tree, "-o", t.path});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    absl::StatusOr<std::string> bytes = ReadFile(t.path);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    if (bytes.ok()) t.bytes = *bytes;
    t.digest = DigestOf(t.bytes);
    EXPECT_THAT(r.stdout_text, StartsWith(t.digest));
    return t;
  }

  // `cairn --json push FILE --ref REF --arch SLOT`: the ref_update object.
  Json PushRef(const Tarball& t, const std::string& ref,
               const std::string& slot) {
    Json j = CliJson({"push", t.path, "--ref", ref, "--arch", slot});
    EXPECT_EQ(j.value("digest", ""), t.digest) << j.dump();
    return j.contains("ref_update") ? j["ref_update"] : Json();
  }

  // `cairn --json resolve REF --arch SLOT`.
  Json Resolve(const std::string& ref, const std::string& slot) {
    return CliJson({"resolve", ref, "--arch", slot});
  }

  // `cairn pull REF --arch SLOT -o FILE`: the bytes written.
  std::string PullRef(const std::string& ref, const std::string& slot,
                      std::vector<std::string> extra = {}) {
    const std::string out = absl::StrCat(work_, "/pulled-", ++pulls_);
    std::vector<std::string> args = {"pull", ref, "--arch", slot, "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    CommandResult r = Cli(args);
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    absl::StatusOr<std::string> bytes = ReadFile(out);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }

  std::string work_;
  std::unique_ptr<Daemon> daemon_;
  int packs_ = 0;
  int pulls_ = 0;
};

// ---------------------------------------------------------------------------

TEST_F(RefsE2eTest, BranchPromoteReleaseForTwoArchesAndNoarch) {
  const Tarball amd = Pack(kAmd64, "1.4.0");
  const Tarball arm = Pack(kArm64, "1.4.0");
  const Tarball any = Pack(kNoarch, "1.4.0");
  ASSERT_FALSE(HasFailure());
  EXPECT_EQ(std::set<std::string>({amd.digest, arm.digest, any.digest}).size(),
            3u);

  // CI pushes each architecture to the branch.
  Json u1 = PushRef(amd, "mytool@main", kAmd64);
  EXPECT_TRUE(u1.value("changed", false)) << u1.dump();
  EXPECT_EQ(u1["ref"]["generation"], 1);
  EXPECT_EQ(u1["ref"]["kind"], "branch");
  EXPECT_EQ(u1["entry"]["actor"], "e2e-bot");
  EXPECT_EQ(PushRef(arm, "mytool@main", kArm64)["ref"]["generation"], 2);
  // The plain output names digest, ref, slot and generation.
  CommandResult plain =
      Cli({"push", any.path, "--ref", "mytool@main", "--arch", kNoarch});
  ASSERT_EQ(plain.exit_code, 0) << plain.Describe();
  EXPECT_THAT(plain.stdout_text,
              HasSubstr(absl::StrCat(any.digest, " ", any.bytes.size())));
  EXPECT_THAT(plain.stdout_text,
              HasSubstr(absl::StrCat("mytool@main noarch ", any.digest,
                                     " generation 3")));

  // Each architecture resolves to its own artefact.
  for (const auto& [slot, t] : std::vector<std::pair<std::string, Tarball>>{
           {kAmd64, amd}, {kArm64, arm}, {kNoarch, any}}) {
    Json r = Resolve("mytool@main", slot);
    EXPECT_EQ(r["digest"], t.digest) << slot;
    EXPECT_EQ(r["slot_used"], slot);
    EXPECT_EQ(r["fallback"], false);
    EXPECT_EQ(r["generation"], 3);
    EXPECT_EQ(r["metadata"]["version"], "1.4.0");
    EXPECT_EQ(r["metadata"]["entrypoint"], "bin/tool");
  }
  // An architecture without a slot falls back to noarch, and says so.
  Json fallback = Resolve("mytool@main", "darwin-arm64");
  EXPECT_EQ(fallback["digest"], any.digest);
  EXPECT_EQ(fallback["slot_requested"], "darwin-arm64");
  EXPECT_EQ(fallback["slot_used"], "noarch");
  EXPECT_EQ(fallback["fallback"], true);
  CommandResult text =
      Cli({"resolve", "mytool@main", "--arch", "darwin-arm64"});
  ASSERT_EQ(text.exit_code, 0) << text.Describe();
  EXPECT_THAT(text.stdout_text,
              HasSubstr("noarch (no darwin-arm64 slot: noarch fallback)"));
  EXPECT_THAT(text.stdout_text, HasSubstr(any.digest));
  CommandResult quiet = Cli({"-q", "resolve", "mytool@main", "--arch", kArm64});
  EXPECT_EQ(quiet.stdout_text, arm.digest + "\n");

  // Promote exactly what was tested.
  Json promoted = CliJson({"promote", "mytool@main", "mytool@v1.4.0",
                           "--expect", absl::StrCat(kAmd64, "=", amd.digest),
                           "--expect", absl::StrCat(kArm64, "=", arm.digest),
                           "--expect", absl::StrCat(kNoarch, "=", any.digest)});
  EXPECT_EQ(promoted["ref"]["kind"], "release");
  EXPECT_EQ(promoted["ref"]["source_ref"], "mytool@main");
  EXPECT_EQ(promoted["ref"]["source_generation"], 3);
  EXPECT_EQ(promoted["ref"]["slots"].size(), 3u);
  EXPECT_EQ(promoted["entry"]["action"], "promote");

  // CI moves on; the release does not.
  const Tarball amd2 = Pack(kAmd64, "1.5.0-dev");
  EXPECT_EQ(PushRef(amd2, "mytool@main", kAmd64)["ref"]["generation"], 4);
  EXPECT_EQ(Resolve("mytool@main", kAmd64)["digest"], amd2.digest);
  EXPECT_EQ(Resolve("mytool@v1.4.0", kAmd64)["digest"], amd.digest);
  EXPECT_EQ(Resolve("mytool@v1.4.0", kArm64)["digest"], arm.digest);
  EXPECT_EQ(Resolve("mytool@v1.4.0", kNoarch)["digest"], any.digest);
  EXPECT_EQ(Resolve("mytool@v1.4.0", "linux-riscv64")["slot_used"], "noarch");

  // Hosts pull by name: the bytes of the right artefact, verified.
  EXPECT_TRUE(PullRef("mytool@v1.4.0", kArm64) == arm.bytes);
  EXPECT_TRUE(PullRef("mytool@v1.4.0", kAmd64) == amd.bytes);
  EXPECT_TRUE(PullRef("mytool@v1.4.0", "darwin-arm64") == any.bytes);
  // Pull by digest still works.
  const std::string by_digest = work_ + "/by-digest";
  CommandResult pulled = Cli({"pull", amd2.digest, "-o", by_digest});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.Describe();
  absl::StatusOr<std::string> bytes = ReadFile(by_digest);
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == amd2.bytes);

  // Listings.
  Json all = CliJson({"ls"});
  ASSERT_TRUE(all.is_array()) << all.dump();
  ASSERT_EQ(all.size(), 2u);
  EXPECT_EQ(all[0]["ref"], "mytool@main");
  EXPECT_EQ(all[1]["ref"], "mytool@v1.4.0");
  Json releases = CliJson({"ls", "mytool@", "--kind", "release"});
  ASSERT_EQ(releases.size(), 1u);
  EXPECT_EQ(releases[0]["ref"], "mytool@v1.4.0");
  CommandResult ls = Cli({"ls", "--kind", "branch"});
  EXPECT_THAT(
      ls.stdout_text,
      StartsWith("mytool@main branch 4 linux-amd64,linux-arm64,noarch "));

  Json history = CliJson({"history", "mytool@v1.4.0"});
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0]["action"], "promote");
  EXPECT_EQ(history[0]["source_ref"], "mytool@main");
  EXPECT_EQ(history[0]["actor"], "e2e-bot");
}

TEST_F(RefsE2eTest, PromotionRefusedWhenTheBranchMoved) {
  const Tarball tested = Pack(kAmd64, "2.0.0");
  const Tarball any = Pack(kNoarch, "2.0.0");
  const Tarball later = Pack(kAmd64, "2.0.1-dev");
  ASSERT_FALSE(HasFailure());
  PushRef(tested, "tool@main", kAmd64);
  PushRef(any, "tool@main", kNoarch);
  // The tester reads the branch, tests, and meanwhile CI pushes again.
  Json seen = Resolve("tool@main", kAmd64);
  ASSERT_EQ(seen["digest"], tested.digest);
  PushRef(later, "tool@main", kAmd64);

  const std::string err =
      CliFails({"promote", "tool@main", "tool@v2.0.0", "--expect",
                absl::StrCat(kAmd64, "=", tested.digest), "--expect",
                absl::StrCat(kNoarch, "=", any.digest)},
               "ABORTED");
  EXPECT_THAT(err, HasSubstr(kAmd64));
  EXPECT_THAT(err, HasSubstr(tested.digest));
  EXPECT_THAT(err, HasSubstr(later.digest));
  // No release was created, nor any history for it.
  CliFails({"resolve", "tool@v2.0.0", "--arch", kAmd64}, "NOT_FOUND");
  CliFails({"history", "tool@v2.0.0"}, "NOT_FOUND");
  EXPECT_THAT(CliJson({"ls", "tool@v"}), IsEmpty());

  // Promoting what the branch holds now works.
  Json ok = CliJson({"promote", "tool@main", "tool@v2.0.0", "--expect",
                     absl::StrCat(kAmd64, "=", later.digest), "--expect",
                     absl::StrCat(kNoarch, "=", any.digest)});
  EXPECT_EQ(ok["ref"]["source_generation"], 3);
}

TEST_F(RefsE2eTest, ConcurrentPushersToOneBranch) {
  constexpr int kThreads = 8;
  constexpr int kPushesPerThread = 10;
  // Distinct small tarballs (one file differs), written up front with
  // libarchive: 80 more `cairn pack` processes would double the test's time
  // without covering anything new (packing is covered above and in
  // e2e_test).
  std::vector<std::vector<Tarball>> tarballs(kThreads);
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPushesPerThread; ++i) {
      Tarball tb;
      tb.path = absl::StrCat(work_, "/c-", t, "-", i, ".tar.gz");
      ASSERT_NO_FATAL_FAILURE(WriteTarGz(
          tb.path,
          {{"bin/tool",
            absl::StrCat("#!/bin/sh\necho build ", t, "-", i, "\n")},
           {"cairn.json", absl::StrCat(R"({"name":"tool","version":"0.0.)",
                                       t * 100 + i, R"("})")}}));
      absl::StatusOr<std::string> bytes = ReadFile(tb.path);
      ASSERT_TRUE(bytes.ok()) << bytes.status();
      tb.bytes = *std::move(bytes);
      tb.digest = DigestOf(tb.bytes);
      tarballs[t].push_back(std::move(tb));
    }
  }

  struct Ack {
    uint64_t generation;
    std::string digest;
  };
  absl::Mutex mu;
  std::vector<Ack> acks;            // Guarded by mu.
  std::vector<std::string> errors;  // Guarded by mu.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (const Tarball& tb : tarballs[t]) {
        absl::StatusOr<CommandResult> r =
            RunCli({"--server", daemon_->address(), "--actor",
                    absl::StrCat("pusher-", t), "--json", "push", tb.path,
                    "--ref", "tool@main", "--arch", kAmd64});
        absl::MutexLock lock(&mu);
        if (!r.ok() || r->exit_code != 0) {
          errors.push_back(r.ok() ? r->Describe() : r.status().ToString());
          continue;
        }
        absl::StatusOr<Json> j = ParseJson(r->stdout_text);
        if (!j.ok() || !j->contains("ref_update") ||
            !(*j)["ref_update"].value("changed", false)) {
          errors.push_back("unexpected output: " + r->stdout_text);
          continue;
        }
        acks.push_back({(*j)["ref_update"]["ref"]["generation"].get<uint64_t>(),
                        tb.digest});
      }
    });
  }
  for (std::thread& th : threads) th.join();
  ASSERT_THAT(errors, IsEmpty());
  ASSERT_EQ(acks.size(), static_cast<size_t>(kThreads * kPushesPerThread));

  // Every acknowledged push got its own generation: 1..80, no gaps.
  std::sort(acks.begin(), acks.end(), [](const Ack& a, const Ack& b) {
    return a.generation < b.generation;
  });
  for (size_t i = 0; i < acks.size(); ++i) {
    ASSERT_EQ(acks[i].generation, i + 1);
  }
  // The final state is the last acknowledged push.
  Json final_state = Resolve("tool@main", kAmd64);
  EXPECT_EQ(final_state["generation"], acks.back().generation);
  EXPECT_EQ(final_state["digest"], acks.back().digest);

  // History holds every acknowledged push, in order, chained.
  Json history = CliJson({"history", "tool@main"});
  ASSERT_TRUE(history.is_array());
  ASSERT_EQ(history.size(), acks.size());
  std::string previous;
  for (size_t i = 0; i < acks.size(); ++i) {
    const Json& e = history[i];
    EXPECT_EQ(e["generation"], acks[i].generation);
    EXPECT_EQ(e["action"], "set-slot");
    ASSERT_EQ(e["changes"].size(), 1u);
    EXPECT_EQ(e["changes"][0]["new_digest"], acks[i].digest) << i;
    EXPECT_EQ(e["changes"][0].value("old_digest", ""), previous) << i;
    EXPECT_THAT(e["actor"].get<std::string>(), StartsWith("pusher-"));
    previous = acks[i].digest;
  }
}

TEST_F(RefsE2eTest, ReleasesAreNeverOverwritten) {
  const Tarball v1 = Pack(kNoarch, "1.0.0");
  const Tarball v1b = Pack(kNoarch, "1.0.0-rebuilt");
  ASSERT_FALSE(HasFailure());
  // The artefacts must be stored before a release can name them.
  for (const Tarball* t : {&v1, &v1b}) {
    CommandResult r = Cli({"push", t->path});
    ASSERT_EQ(r.exit_code, 0) << r.Describe();
  }
  // A digest that is not stored is refused.
  CliFails({"release", "tool@v0", "--slot",
            absl::StrCat(kNoarch, "=", DigestOf("not stored"))},
           "NOT_FOUND");

  Json created = CliJson(
      {"release", "tool@v1", "--slot", absl::StrCat(kNoarch, "=", v1.digest)});
  EXPECT_EQ(created["ref"]["kind"], "release");
  EXPECT_EQ(created["ref"]["generation"], 1);

  // Not even with identical content, nor with other content.
  CliFails(
      {"release", "tool@v1", "--slot", absl::StrCat(kNoarch, "=", v1.digest)},
      "ALREADY_EXISTS");
  CliFails(
      {"release", "tool@v1", "--slot", absl::StrCat(kNoarch, "=", v1b.digest)},
      "ALREADY_EXISTS");
  // Pushing into a release is refused (after the upload, which is kept).
  const std::string err =
      CliFails({"push", v1b.path, "--ref", "tool@v1", "--arch", kNoarch},
               "FAILED_PRECONDITION");
  EXPECT_THAT(err, HasSubstr("tool@v1 was not changed"));
  // Deleting a release is refused.
  CliFails({"rm", "tool@v1"}, "FAILED_PRECONDITION");
  // Promoting onto it is refused.
  PushRef(v1b, "tool@main", kNoarch);
  CliFails({"promote", "tool@main", "tool@v1", "--expect",
            absl::StrCat(kNoarch, "=", v1b.digest)},
           "ALREADY_EXISTS");

  Json r = Resolve("tool@v1", kAmd64);
  EXPECT_EQ(r["digest"], v1.digest);
  EXPECT_EQ(r["generation"], 1);
  EXPECT_EQ(CliJson({"history", "tool@v1"}).size(), 1u);
}

TEST_F(RefsE2eTest, YankedReleaseResolvesOnlyWhenAllowed) {
  const Tarball bad = Pack(kAmd64, "3.1.0");
  ASSERT_FALSE(HasFailure());
  PushRef(bad, "tool@main", kAmd64);
  CliJson({"promote", "tool@main", "tool@v3.1.0", "--expect",
           absl::StrCat(kAmd64, "=", bad.digest)});

  CommandResult yank = Cli(
      {"yank", "tool@v3.1.0", "--reason", "CVE-2026-1234: bad TLS defaults"});
  ASSERT_EQ(yank.exit_code, 0) << yank.Describe();
  EXPECT_THAT(yank.stdout_text,
              HasSubstr("tool@v3.1.0 yanked at generation 2"));

  std::string err = CliFails({"resolve", "tool@v3.1.0", "--arch", kAmd64},
                             "FAILED_PRECONDITION");
  EXPECT_THAT(err, HasSubstr("CVE-2026-1234"));
  CliFails({"pull", "tool@v3.1.0", "--arch", kAmd64, "-o", work_ + "/no"},
           "FAILED_PRECONDITION");
  EXPECT_NE(::access((work_ + "/no").c_str(), F_OK), 0);

  Json allowed =
      CliJson({"resolve", "tool@v3.1.0", "--arch", kAmd64, "--allow-yanked"});
  EXPECT_EQ(allowed["digest"], bad.digest);
  EXPECT_EQ(allowed["yanked"], true);
  EXPECT_EQ(allowed["yank_reason"], "CVE-2026-1234: bad TLS defaults");
  EXPECT_TRUE(PullRef("tool@v3.1.0", kAmd64, {"--allow-yanked"}) == bad.bytes);

  // The bytes stay readable by digest.
  const std::string out = work_ + "/by-digest";
  CommandResult pulled = Cli({"pull", bad.digest, "-o", out});
  ASSERT_EQ(pulled.exit_code, 0) << pulled.Describe();
  absl::StatusOr<std::string> bytes = ReadFile(out);
  ASSERT_TRUE(bytes.ok());
  EXPECT_TRUE(*bytes == bad.bytes);

  // Listed as yanked; history records who and why. Yanking a branch is
  // refused; yanking again changes nothing.
  CommandResult ls = Cli({"ls", "tool@v"});
  EXPECT_THAT(ls.stdout_text, StartsWith("tool@v3.1.0 yanked 2 "));
  Json history = CliJson({"history", "tool@v3.1.0"});
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1]["action"], "yank");
  EXPECT_EQ(history[1]["reason"], "CVE-2026-1234: bad TLS defaults");
  EXPECT_EQ(history[1]["actor"], "e2e-bot");
  CliFails({"yank", "tool@main", "--reason", "x"}, "FAILED_PRECONDITION");
  Json again = CliJson({"yank", "tool@v3.1.0", "--reason", "other"});
  EXPECT_EQ(again["changed"], false);
  EXPECT_EQ(again["ref"]["yank_reason"], "CVE-2026-1234: bad TLS defaults");
}

TEST_F(RefsE2eTest, IfGenerationIsCompareAndSwap) {
  const Tarball a = Pack(kAmd64, "1");
  const Tarball b = Pack(kAmd64, "2");
  const Tarball c = Pack(kAmd64, "3");
  ASSERT_FALSE(HasFailure());
  // 0: only if the branch does not exist yet.
  CommandResult first = Cli({"push", a.path, "--ref", "tool@ci", "--arch",
                             kAmd64, "--if-generation", "0"});
  ASSERT_EQ(first.exit_code, 0) << first.Describe();
  std::string err = CliFails({"push", b.path, "--ref", "tool@ci", "--arch",
                              kAmd64, "--if-generation", "0"},
                             "ABORTED");
  EXPECT_THAT(err, HasSubstr("tool@ci"));
  // The upload happened; the branch did not move.
  EXPECT_THAT(err,
              HasSubstr(absl::StrCat("the artefact ", b.digest, " is stored")));
  EXPECT_EQ(Resolve("tool@ci", kAmd64)["digest"], a.digest);

  Json moved = CliJson({"push", b.path, "--ref", "tool@ci", "--arch", kAmd64,
                        "--if-generation", "1"});
  EXPECT_EQ(moved["ref_update"]["ref"]["generation"], 2);
  CliFails({"push", c.path, "--ref", "tool@ci", "--arch", kAmd64,
            "--if-generation", "1"},
           "ABORTED");
  EXPECT_EQ(Resolve("tool@ci", kAmd64)["digest"], b.digest);

  // Generations are decimal: not octal, hex, signed or out of range
  // (usage errors, exit 2, before any request).
  for (const char* bad : {"-1", "0x3", "1e3", "18446744073709551616", ""}) {
    CommandResult r = Cli({"rm", "tool@ci", "--if-generation", bad});
    EXPECT_EQ(r.exit_code, 2) << bad << ": " << r.Describe();
    EXPECT_THAT(r.stderr_text, HasSubstr("want a decimal number")) << bad;
  }
  // A leading zero is decimal too: 010 is 10, not 8.
  EXPECT_THAT(CliFails({"rm", "tool@ci", "--if-generation", "010"}, "ABORTED"),
              HasSubstr("if_generation 10"));

  // Deleting a branch takes the same guard.
  CliFails({"rm", "tool@ci", "--if-generation", "1"}, "ABORTED");
  CommandResult rm = Cli({"rm", "tool@ci", "--if-generation", "2"});
  ASSERT_EQ(rm.exit_code, 0) << rm.Describe();
  EXPECT_THAT(rm.stdout_text,
              HasSubstr("deleted branch tool@ci at generation 3"));
  CliFails({"resolve", "tool@ci", "--arch", kAmd64}, "NOT_FOUND");
  // Re-created from nothing, continuing the generations.
  Json again = CliJson({"push", c.path, "--ref", "tool@ci", "--arch", kAmd64,
                        "--if-generation", "0"});
  EXPECT_EQ(again["ref_update"]["ref"]["generation"], 4);
  EXPECT_EQ(CliJson({"history", "tool@ci"}).size(), 4u);
}

TEST_F(RefsE2eTest, RefsAndHistorySurviveARestart) {
  const Tarball amd = Pack(kAmd64, "5.0.0");
  const Tarball arm = Pack(kArm64, "5.0.0");
  const Tarball any = Pack(kNoarch, "5.0.0");
  ASSERT_FALSE(HasFailure());
  PushRef(amd, "team/tool@main", kAmd64);
  PushRef(arm, "team/tool@main", kArm64);
  PushRef(any, "team/tool@main", kNoarch);
  CliJson({"promote", "team/tool@main", "team/tool@v5.0.0", "--expect",
           absl::StrCat(kAmd64, "=", amd.digest), "--expect",
           absl::StrCat(kArm64, "=", arm.digest), "--expect",
           absl::StrCat(kNoarch, "=", any.digest)});
  CliJson({"release", "team/tool@v4.9.0", "--slot",
           absl::StrCat(kNoarch, "=", any.digest)});
  CliJson({"yank", "team/tool@v4.9.0", "--reason", "superseded"});
  PushRef(amd, "team/tool@feature", kAmd64);
  CliJson({"rm", "team/tool@feature"});

  const std::vector<std::string> names = {"team/tool@main", "team/tool@v5.0.0",
                                          "team/tool@v4.9.0",
                                          "team/tool@feature"};
  const Json listed = CliJson({"ls"});
  ASSERT_EQ(listed.size(), 3u) << listed.dump();
  std::map<std::string, Json> histories;
  for (const std::string& name : names) {
    histories[name] = CliJson({"history", name});
  }
  EXPECT_EQ(histories["team/tool@main"].size(), 3u);
  EXPECT_EQ(histories["team/tool@feature"].size(), 2u);

  // SIGTERM (exit 0), then a new cairnd on the same data directory.
  ASSERT_TRUE(daemon_->Stop().ok());
  ASSERT_TRUE(daemon_->Restart().ok());

  EXPECT_EQ(CliJson({"ls"}), listed);
  for (const std::string& name : names) {
    EXPECT_EQ(CliJson({"history", name}), histories[name]) << name;
  }
  EXPECT_EQ(Resolve("team/tool@v5.0.0", kArm64)["digest"], arm.digest);
  EXPECT_EQ(Resolve("team/tool@main", "darwin-arm64")["digest"], any.digest);
  CliFails({"resolve", "team/tool@v4.9.0", "--arch", kAmd64},
           "FAILED_PRECONDITION");
  EXPECT_TRUE(PullRef("team/tool@v5.0.0", kAmd64) == amd.bytes);
  // Updates continue from the persisted generations.
  const Tarball amd2 = Pack(kAmd64, "5.1.0-dev");
  EXPECT_EQ(PushRef(amd2, "team/tool@main", kAmd64)["ref"]["generation"], 4);
  EXPECT_EQ(PushRef(amd2, "team/tool@feature", kAmd64)["ref"]["generation"], 3);
}

TEST_F(RefsE2eTest, BadArgumentsAreUsageErrors) {
  const Tarball t = Pack(kNoarch, "1");
  ASSERT_FALSE(HasFailure());
  struct Case {
    std::vector<std::string> args;
    const char* says;
  };
  const std::vector<Case> cases = {
      {{"resolve", "Tool@main"}, "uppercase"},
      {{"resolve", "tool@main", "--arch", "amd64"}, "slot"},
      {{"push", t.path, "--ref", "tool@a/b"}, "<package>@<name>"},
      {{"push", t.path, "--arch", kAmd64}, "--ref"},
      {{"release", "tool@v1", "--slot", "noarch"}, "SLOT=DIGEST"},
      {{"release", "tool@v1", "--slot", "noarch=sha256:00"}, "sha256:00"},
      {{"promote", "tool@main", "tool@v1"}, "--expect"},
      {{"pull", "mytool", "-o", work_ + "/x"}, "neither a digest"},
      {{"pull", t.digest, "--arch", kAmd64, "-o", work_ + "/x"}, "--arch"},
      {{"ls", "--kind", "tag"}, "tag"},
  };
  for (const Case& c : cases) {
    CommandResult r = Cli(c.args);
    EXPECT_EQ(r.exit_code, 2) << r.Describe();
    EXPECT_THAT(r.stderr_text,
                AllOf(StartsWith("cairn: error: "), HasSubstr(c.says)))
        << r.Describe();
  }
  // Nothing was uploaded by the refused push.
  CommandResult stat = Cli({"stat", t.digest});
  EXPECT_EQ(stat.exit_code, 1) << stat.Describe();

  // Without --actor, history records $USER@host (or the passwd name).
  const Tarball u = Pack(kNoarch, "2");
  CommandResult pushed =
      Cli({"push", u.path, "--ref", "tool@main", "--arch", kNoarch},
          /*json=*/false, /*actor=*/"");
  ASSERT_EQ(pushed.exit_code, 0) << pushed.Describe();
  Json history = CliJson({"history", "tool@main"});
  ASSERT_EQ(history.size(), 1u);
  const std::string actor = history[0]["actor"].get<std::string>();
  EXPECT_THAT(actor, AllOf(HasSubstr("@"), Not(StartsWith("ipv"))));
}

}  // namespace
}  // namespace cairn::testing
