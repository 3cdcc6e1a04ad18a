// Copyright 2026 The Cairn Authors.
//
// End-to-end tests: a real cairnd (child process, fresh data directory per
// test) driven through the cairn CLI and the cairn.v1.Cas gRPC API.

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "absl/synchronization/notification.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/cas.pb.h"
#include "store/testing/tar_builder.h"
#include "tests/daemon.h"
#include "tests/e2e_util.h"

namespace cairn::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::UnorderedElementsAre;
using Json = nlohmann::json;

// The ELF binaries copied into the test tree.
const char* const kElfBinaries[] = {"ls", "cat", "true"};

// ---------------------------------------------------------------------------
// Trees on disk.

void CopyFile(const std::string& from, const std::string& to, mode_t mode) {
  absl::StatusOr<std::string> bytes = ReadFile(from);
  ASSERT_TRUE(bytes.ok()) << bytes.status();
  ASSERT_TRUE(WriteFile(to, *bytes).ok()) << to;
  ASSERT_EQ(::chmod(to.c_str(), mode), 0) << to;
}

void MakeDir(const std::string& path, mode_t mode = 0755) {
  ASSERT_EQ(::mkdir(path.c_str(), mode), 0) << path;
  ASSERT_EQ(::chmod(path.c_str(), mode), 0) << path;  // Ignore the umask.
}

void SetMtime(const std::string& path, time_t seconds) {
  timespec times[2] = {{seconds, 0}, {seconds, 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path;
}

constexpr char kReadme[] = "Cairn end-to-end test tree.\n";

// Builds `dir` (must not exist):
//   bin/{ls,cat,true}  copies of /usr/bin ELF files, 0755
//   bin/list           symlink to "ls"
//   share/doc/README.txt  0644
// `variant` builds the same content in another order, with other modes
// (which normalise to the same ones) and other mtimes.
void MakeTree(const std::string& dir, bool variant = false) {
  if (!variant) {
    MakeDir(dir);
    MakeDir(dir + "/bin");
    for (const char* name : kElfBinaries) {
      CopyFile(absl::StrCat("/usr/bin/", name),
               absl::StrCat(dir, "/bin/", name), 0755);
    }
    ASSERT_EQ(::symlink("ls", (dir + "/bin/list").c_str()), 0);
    MakeDir(dir + "/share");
    MakeDir(dir + "/share/doc");
    ASSERT_TRUE(WriteFile(dir + "/share/doc/README.txt", kReadme).ok());
    ASSERT_EQ(::chmod((dir + "/share/doc/README.txt").c_str(), 0644), 0);
    return;
  }
  MakeDir(dir, 0700);
  MakeDir(dir + "/share", 0750);
  MakeDir(dir + "/share/doc", 0700);
  ASSERT_TRUE(WriteFile(dir + "/share/doc/README.txt", kReadme).ok());
  ASSERT_EQ(::chmod((dir + "/share/doc/README.txt").c_str(), 0600), 0);
  MakeDir(dir + "/bin", 0700);
  ASSERT_EQ(::symlink("ls", (dir + "/bin/list").c_str()), 0);
  for (int i = static_cast<int>(std::size(kElfBinaries)) - 1; i >= 0; --i) {
    // Any execute bit normalises to 0755.
    CopyFile(absl::StrCat("/usr/bin/", kElfBinaries[i]),
             absl::StrCat(dir, "/bin/", kElfBinaries[i]), i == 0 ? 0700 : 0711);
  }
  time_t t = 1'600'000'000;
  for (const char* rel :
       {"/share/doc/README.txt", "/bin/ls", "/bin/cat", "/bin/true",
        "/bin/list", "/share/doc", "/share", "/bin", ""}) {
    SetMtime(dir + rel, t);
    t += 86'400 * 37;
  }
}

// ---------------------------------------------------------------------------
// CLI output.

struct InspectLine {
  int mode = -1;
  uint64_t size = 0;
};

// Parses `cairn inspect` output: lines "mode size path" (mode in octal; a
// link's path may be followed by " -> target" or " => target"; a
// directory's path may carry a trailing "/").
std::map<std::string, InspectLine> ParseInspect(const std::string& text) {
  std::map<std::string, InspectLine> out;
  for (absl::string_view line : absl::StrSplit(text, '\n')) {
    line = absl::StripAsciiWhitespace(line);
    if (line.empty()) continue;
    std::vector<absl::string_view> f =
        absl::StrSplit(line, absl::MaxSplits(' ', 2), absl::SkipEmpty());
    if (f.size() != 3) {
      ADD_FAILURE() << "inspect line '" << line << "' is not 'mode size path'";
      continue;
    }
    InspectLine l;
    char* end = nullptr;
    const std::string mode(f[0]);
    l.mode = static_cast<int>(std::strtol(mode.c_str(), &end, 8));
    if (end == mode.c_str() || *end != '\0') {
      ADD_FAILURE() << "inspect line '" << line << "': mode is not octal";
    }
    if (!absl::SimpleAtoi(f[1], &l.size)) {
      ADD_FAILURE() << "inspect line '" << line << "': size is not a number";
    }
    std::string path(absl::StripLeadingAsciiWhitespace(f[2]));
    // Symlinks: "path -> target"; hardlinks: "path => target".
    for (const char* arrow : {" -> ", " => "}) {
      if (size_t at = path.find(arrow); at != std::string::npos) {
        path.resize(at);
      }
    }
    if (path.size() > 1 && path.back() == '/') path.pop_back();
    out[path] = l;
  }
  return out;
}

// A uint64 JSON field given as a number or (proto3 JSON) a string.
absl::StatusOr<uint64_t> JsonU64(const Json& object, const char* key) {
  if (!object.is_object() || !object.contains(key)) {
    return absl::NotFoundError(
        absl::StrCat("no field '", key, "' in ", object.dump()));
  }
  const Json& v = object.at(key);
  uint64_t n = 0;
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_string() && absl::SimpleAtoi(v.get<std::string>(), &n)) return n;
  return absl::InvalidArgumentError(
      absl::StrCat("field '", key, "' is not a uint64: ", v.dump()));
}

absl::StatusOr<Json> ParseJson(const std::string& text) {
  Json j = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a JSON object: [", text, "]"));
  }
  return j;
}

// The fields of `cairn --json push` this suite checks.
struct PushJson {
  std::string digest;
  uint64_t size = 0;
  bool already_present = false;
  uint64_t unpacked_bytes = 0;
  uint64_t bytes_newly_stored = 0;
  uint64_t file_count = 0;
  uint64_t regular_files = 0;
  std::vector<std::string> stripped_setid_paths;
};

absl::StatusOr<PushJson> ParsePushJson(const std::string& text) {
  absl::StatusOr<Json> j = ParseJson(text);
  if (!j.ok()) return j.status();
  PushJson p;
  if (!j->contains("digest") || !(*j)["digest"].is_string()) {
    return absl::InvalidArgumentError("no string 'digest' in " + text);
  }
  p.digest = (*j)["digest"].get<std::string>();
  absl::StatusOr<uint64_t> size = JsonU64(*j, "size");
  if (!size.ok()) return size.status();
  p.size = *size;
  if (j->contains("already_present")) {
    if (!(*j)["already_present"].is_boolean()) {
      return absl::InvalidArgumentError("already_present not a bool: " + text);
    }
    p.already_present = (*j)["already_present"].get<bool>();
  } else {
    return absl::InvalidArgumentError("no 'already_present' in " + text);
  }
  if (!j->contains("summary")) {
    return absl::InvalidArgumentError("no 'summary' in " + text);
  }
  const Json& s = (*j)["summary"];
  for (auto [key, out] :
       {std::pair<const char*, uint64_t*>{"unpacked_bytes", &p.unpacked_bytes},
        {"bytes_newly_stored", &p.bytes_newly_stored},
        {"file_count", &p.file_count},
        {"regular_files", &p.regular_files}}) {
    absl::StatusOr<uint64_t> v = JsonU64(s, key);
    if (!v.ok()) return v.status();
    *out = *v;
  }
  if (s.contains("stripped_setid_paths")) {
    for (const Json& path : s["stripped_setid_paths"]) {
      p.stripped_setid_paths.push_back(path.get<std::string>());
    }
  }
  return p;
}

// ---------------------------------------------------------------------------
// Fixture: one daemon per test.

class E2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = NewTempDir("e2e");
    DaemonOptions options;
    options.extra_args = {"--log-level", "info"};
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    client_ = std::make_unique<CasClient>(daemon_->address());
  }

  void TearDown() override {
    if (daemon_ != nullptr && daemon_->running()) {
      // Every test also checks a clean SIGTERM shutdown.
      absl::Status stopped = StopDaemon();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
    if (HasFailure() && daemon_ != nullptr) {
      std::string logs = daemon_->AllLogs();
      if (logs.size() > 20000) logs = "..." + logs.substr(logs.size() - 20000);
      std::fprintf(stderr, "cairnd logs:\n%s\n", logs.c_str());
    }
  }

  // SIGTERM, asserting exit 0. Our own channel is closed first: cairnd's
  // shutdown otherwise waits out its whole grace period (~5 s) while any
  // client holds an idle connection.
  absl::Status StopDaemon() {
    client_.reset();
    return daemon_->Stop();
  }

  // Runs `cairn --server ADDR [--json] args...`.
  CommandResult Cli(std::vector<std::string> args, bool json = false) {
    std::vector<std::string> argv = {"--server", daemon_->address()};
    if (json) argv.push_back("--json");
    argv.insert(argv.end(), args.begin(), args.end());
    absl::StatusOr<CommandResult> r = RunCli(argv);
    if (!r.ok()) {
      ADD_FAILURE() << "running cairn: " << r.status();
      return CommandResult{};
    }
    return *std::move(r);
  }

  // `cairn push FILE`: the digest it prints (first word of its output).
  std::string CliPush(const std::string& file) {
    CommandResult r = Cli({"push", file});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    std::vector<std::string> words = absl::StrSplit(
        r.stdout_text, absl::ByAnyChar(" \t\n"), absl::SkipEmpty());
    return words.empty() ? "" : words[0];
  }

  absl::StatusOr<PushJson> CliPushJson(const std::string& file) {
    CommandResult r = Cli({"push", file}, /*json=*/true);
    if (r.exit_code != 0) {
      return absl::InternalError("cairn --json push: " + r.Describe());
    }
    return ParsePushJson(r.stdout_text);
  }

  // Pulls with the CLI into a new file and returns its bytes.
  std::string CliPull(const std::string& digest) {
    const std::string out = absl::StrCat(work_, "/pulled-", ++pulls_);
    CommandResult r = Cli({"pull", digest, "-o", out});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    absl::StatusOr<std::string> bytes = ReadFile(out);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }

  void ExpectMissing(const std::string& digest) {
    absl::StatusOr<std::vector<std::string>> missing =
        client_->FindMissing({digest});
    ASSERT_TRUE(missing.ok()) << missing.status();
    EXPECT_THAT(*missing, ::testing::ElementsAre(digest));
    absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(digest);
    EXPECT_EQ(stat.status().code(), absl::StatusCode::kNotFound)
        << stat.status();
  }

  // Packs `tree` with the CLI into `out` and returns its bytes.
  std::string Pack(const std::string& tree, const std::string& out) {
    CommandResult r = Cli({"pack", tree, "-o", out});
    EXPECT_EQ(r.exit_code, 0) << r.Describe();
    absl::StatusOr<std::string> bytes = ReadFile(out);
    EXPECT_TRUE(bytes.ok()) << bytes.status();
    return bytes.ok() ? *bytes : "";
  }

  std::string WriteTar(const std::string& name,
                       const std::vector<TarEntry>& entries,
                       TarCompression compression = TarCompression::kGzip) {
    const std::string path = absl::StrCat(work_, "/", name);
    EXPECT_TRUE(WriteFile(path, BuildTar(entries, compression)).ok());
    return path;
  }

  std::string work_;
  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<CasClient> client_;
  int pulls_ = 0;
};

// ---------------------------------------------------------------------------

TEST_F(E2eTest, RealTreeRoundTripsByteForByte) {
  const std::string tree = work_ + "/tree";
  ASSERT_NO_FATAL_FAILURE(MakeTree(tree));
  const std::string tarball = work_ + "/tree.tar.gz";
  const std::string bytes = Pack(tree, tarball);
  ASSERT_FALSE(bytes.empty());
  // gzip magic: the convention is one gzip member.
  ASSERT_GE(bytes.size(), 2u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);

  CommandResult check = Cli({"pack", "--check", tarball});
  EXPECT_EQ(check.exit_code, 0) << check.Describe();

  const std::string digest = DigestOf(bytes);
  EXPECT_EQ(CliPush(tarball), digest);

  EXPECT_EQ(CliPull(digest), bytes);

  // The file index, through the CLI.
  CommandResult inspect = Cli({"inspect", digest});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.Describe();
  std::map<std::string, InspectLine> lines = ParseInspect(inspect.stdout_text);
  for (const char* name : kElfBinaries) {
    const std::string path = absl::StrCat("bin/", name);
    ASSERT_TRUE(lines.count(path)) << path << " not in\n"
                                   << inspect.stdout_text;
    EXPECT_EQ(lines[path].mode, 0755) << path;
    absl::StatusOr<std::string> original =
        ReadFile(absl::StrCat("/usr/bin/", name));
    ASSERT_TRUE(original.ok());
    EXPECT_EQ(lines[path].size, original->size()) << path;
  }
  ASSERT_TRUE(lines.count("share/doc/README.txt")) << inspect.stdout_text;
  EXPECT_EQ(lines["share/doc/README.txt"].mode, 0644);
  EXPECT_EQ(lines["share/doc/README.txt"].size, sizeof(kReadme) - 1);
  EXPECT_TRUE(lines.count("bin/list")) << inspect.stdout_text;
  for (const char* dir : {"bin", "share", "share/doc"}) {
    ASSERT_TRUE(lines.count(dir)) << dir << " not in\n" << inspect.stdout_text;
    EXPECT_EQ(lines[dir].mode, 0755) << dir;
  }
  EXPECT_EQ(lines.size(), 8u) << inspect.stdout_text;

  // The same index through the API, with content digests.
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> entries =
      client_->ListFiles(digest);
  ASSERT_TRUE(entries.ok()) << entries.status();
  std::map<std::string, cairn::v1::FileEntry> by_path;
  for (const cairn::v1::FileEntry& e : *entries) by_path[e.path()] = e;
  EXPECT_EQ(by_path.size(), 8u);
  for (const char* name : kElfBinaries) {
    const cairn::v1::FileEntry& e = by_path[absl::StrCat("bin/", name)];
    EXPECT_EQ(e.type(), cairn::v1::FileEntry::REGULAR) << name;
    absl::StatusOr<std::string> original =
        ReadFile(absl::StrCat("/usr/bin/", name));
    ASSERT_TRUE(original.ok());
    EXPECT_EQ(e.content_digest(), DigestOf(*original)) << name;
  }
  EXPECT_EQ(by_path["bin/list"].type(), cairn::v1::FileEntry::SYMLINK);
  EXPECT_EQ(by_path["bin/list"].link_target(), "ls");

  // stat shows the size.
  CommandResult stat = Cli({"stat", digest});
  ASSERT_EQ(stat.exit_code, 0) << stat.Describe();
  EXPECT_THAT(stat.stdout_text, HasSubstr(std::to_string(bytes.size())));
  absl::StatusOr<cairn::v1::StatResponse> api_stat = client_->Stat(digest);
  ASSERT_TRUE(api_stat.ok()) << api_stat.status();
  EXPECT_EQ(api_stat->size(), bytes.size());
  EXPECT_EQ(api_stat->kind(), "artefact");
  EXPECT_EQ(api_stat->summary().regular_files(), 4u);
}

TEST_F(E2eTest, PackingIsDeterministic) {
  const std::string tree = work_ + "/tree";
  ASSERT_NO_FATAL_FAILURE(MakeTree(tree));
  const std::string first = Pack(tree, work_ + "/first.tar.gz");
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(Pack(tree, work_ + "/second.tar.gz"), first);

  // Same content, other creation order, modes and mtimes.
  const std::string copy = work_ + "/copy";
  ASSERT_NO_FATAL_FAILURE(MakeTree(copy, /*variant=*/true));
  const std::string third = Pack(copy, work_ + "/third.tar.gz");
  EXPECT_EQ(third.size(), first.size());
  EXPECT_TRUE(third == first) << "a copy with other mtimes/modes/order packs "
                                 "to different bytes";

  // A changed byte does change the bytes (the comparison is meaningful).
  ASSERT_TRUE(WriteFile(copy + "/share/doc/README.txt", "changed\n").ok());
  EXPECT_NE(Pack(copy, work_ + "/fourth.tar.gz"), first);
}

TEST_F(E2eTest, PackCheckRejectsNonNormalisedTarball) {
  // Not normalised: mode 0600, entries out of order, no directory entries.
  const std::string path =
      WriteTar("messy.tar.gz", {{"z.txt", TarEntry::kFile, 0600, "z"},
                                {"a/b.txt", TarEntry::kFile, 0644, "b"}});
  CommandResult check = Cli({"pack", "--check", path});
  EXPECT_EQ(check.exit_code, 1) << check.Describe();
  EXPECT_THAT(check.stdout_text + check.stderr_text, HasSubstr("z.txt"));
}

TEST_F(E2eTest, RepushIsDeduplicated) {
  const std::string tree = work_ + "/tree";
  ASSERT_NO_FATAL_FAILURE(MakeTree(tree));
  const std::string tarball = work_ + "/tree.tar.gz";
  const std::string bytes = Pack(tree, tarball);

  uint64_t unique_file_bytes = sizeof(kReadme) - 1;
  for (const char* name : kElfBinaries) {
    absl::StatusOr<std::string> b = ReadFile(absl::StrCat("/usr/bin/", name));
    ASSERT_TRUE(b.ok());
    unique_file_bytes += b->size();
  }

  absl::StatusOr<PushJson> first = CliPushJson(tarball);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->digest, DigestOf(bytes));
  EXPECT_EQ(first->size, bytes.size());
  EXPECT_FALSE(first->already_present);
  EXPECT_EQ(first->unpacked_bytes, unique_file_bytes);
  EXPECT_EQ(first->file_count, 8u);  // 3 dirs, 4 files, 1 symlink.
  EXPECT_EQ(first->regular_files, 4u);
  // The tarball plus every distinct file content.
  EXPECT_EQ(first->bytes_newly_stored, bytes.size() + unique_file_bytes);

  absl::StatusOr<PushJson> again = CliPushJson(tarball);
  ASSERT_TRUE(again.ok()) << again.status();
  EXPECT_EQ(again->digest, first->digest);
  EXPECT_TRUE(again->already_present);
  EXPECT_EQ(again->bytes_newly_stored, 0u);
  EXPECT_EQ(again->unpacked_bytes, first->unpacked_bytes);

  // The plain output says it was already stored.
  CommandResult plain = Cli({"push", tarball});
  EXPECT_EQ(plain.exit_code, 0) << plain.Describe();
  EXPECT_THAT(plain.stdout_text, HasSubstr(first->digest));
  EXPECT_THAT(plain.stdout_text, HasSubstr("already stored"));

  // A second artefact sharing the binaries: only its new file and its
  // tarball are new.
  const std::string extra = "only in the second artefact\n";
  ASSERT_TRUE(WriteFile(tree + "/share/doc/NEW.txt", extra).ok());
  const std::string tarball2 = work_ + "/tree2.tar.gz";
  const std::string bytes2 = Pack(tree, tarball2);
  absl::StatusOr<PushJson> second = CliPushJson(tarball2);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_EQ(second->digest, DigestOf(bytes2));
  EXPECT_FALSE(second->already_present);
  EXPECT_EQ(second->unpacked_bytes, unique_file_bytes + extra.size());
  EXPECT_LT(second->bytes_newly_stored, second->unpacked_bytes);
  EXPECT_EQ(second->bytes_newly_stored, bytes2.size() + extra.size());

  EXPECT_EQ(CliPull(first->digest), bytes);
  EXPECT_EQ(CliPull(second->digest), bytes2);
}

TEST_F(E2eTest, DigestMismatchStoresNothing) {
  const std::string path = WriteTar(
      "a.tar.gz", {{"hello.txt", TarEntry::kFile, 0644, "hello, mismatch\n"}});
  absl::StatusOr<std::string> bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  const std::string actual = DigestOf(*bytes);
  const std::string wrong = DigestOf("something else entirely");

  CommandResult r = Cli({"push", path, "--expect", wrong});
  EXPECT_NE(r.exit_code, 0) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("cairn: error: DATA_LOSS"));
  EXPECT_THAT(r.stderr_text, HasSubstr(wrong));
  ASSERT_NO_FATAL_FAILURE(ExpectMissing(actual));
  ASSERT_NO_FATAL_FAILURE(ExpectMissing(wrong));

  // Directly through the API.
  absl::StatusOr<cairn::v1::WriteResponse> w = client_->Push(*bytes, wrong);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kDataLoss) << w.status();
  EXPECT_THAT(std::string(w.status().message()), HasSubstr(wrong));
  absl::StatusOr<std::vector<std::string>> missing =
      client_->FindMissing({actual, wrong});
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_THAT(*missing, ::testing::ElementsAre(actual, wrong));

  // A matching --expect works.
  CommandResult ok = Cli({"push", path, "--expect", actual});
  EXPECT_EQ(ok.exit_code, 0) << ok.Describe();
  EXPECT_THAT(ok.stdout_text, HasSubstr(actual));
  absl::StatusOr<std::vector<std::string>> after =
      client_->FindMissing({actual});
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_THAT(*after, IsEmpty());
}

struct UnsafeCase {
  const char* name;
  std::vector<TarEntry> entries;
  // The entry the error must name.
  const char* entry;
};

std::vector<UnsafeCase> UnsafeCases(const std::string& good_content) {
  // Each archive starts with a good regular file (written as a blob before
  // the bad entry is met) so that "nothing stored" covers file blobs too.
  auto with_good = [&](std::vector<TarEntry> bad) {
    std::vector<TarEntry> e = {
        {"good.bin", TarEntry::kFile, 0644, good_content}};
    e.insert(e.end(), bad.begin(), bad.end());
    return e;
  };
  return {
      {"absolute path",
       with_good({{"/abs-evil.txt", TarEntry::kFile, 0644, "x"}}),
       "/abs-evil.txt"},
      {"dot-dot component",
       with_good({{"sub/", TarEntry::kDir, 0755, ""},
                  {"sub/../../dotdot-evil.txt", TarEntry::kFile, 0644, "x"}}),
       "dotdot-evil.txt"},
      {"duplicate path",
       with_good({{"dup-twice.txt", TarEntry::kFile, 0644, "one"},
                  {"dup-twice.txt", TarEntry::kFile, 0644, "two"}}),
       "dup-twice.txt"},
      {"hardlink outside the archive",
       with_good(
           {{"orphan-link", TarEntry::kHardlink, 0644, "not-in-archive.txt"}}),
       "orphan-link"},
      {"character device",
       with_good({{"dev/", TarEntry::kDir, 0755, ""},
                  {"dev/evil-null", TarEntry::kCharDevice, 0666, ""}}),
       "dev/evil-null"},
      {"fifo", with_good({{"evil-fifo", TarEntry::kFifo, 0644, ""}}),
       "evil-fifo"},
  };
}

TEST_F(E2eTest, UnsafeArchivesAreRejectedAndStoreNothing) {
  // An artefact pushed before the bad ones.
  const std::string earlier_path =
      WriteTar("earlier.tar.gz",
               {{"bin/", TarEntry::kDir, 0755, ""},
                {"bin/tool", TarEntry::kFile, 0755, RandomBytes(200'000, 1)},
                {"README", TarEntry::kFile, 0644, "earlier\n"}});
  absl::StatusOr<std::string> earlier = ReadFile(earlier_path);
  ASSERT_TRUE(earlier.ok());
  ASSERT_EQ(CliPush(earlier_path), DigestOf(*earlier));

  int n = 0;
  for (const UnsafeCase& c : UnsafeCases(RandomBytes(100'000, 2))) {
    SCOPED_TRACE(c.name);
    // Unique good content per case, so no file blob is shared.
    std::vector<TarEntry> entries = c.entries;
    entries[0].content = RandomBytes(100'000, 100 + n);
    const std::string good_digest = DigestOf(entries[0].content);
    const std::string path =
        WriteTar(absl::StrCat("unsafe-", n++, ".tar.gz"), entries);
    absl::StatusOr<std::string> bytes = ReadFile(path);
    ASSERT_TRUE(bytes.ok());
    const std::string digest = DigestOf(*bytes);

    CommandResult r = Cli({"push", path});
    EXPECT_NE(r.exit_code, 0) << r.Describe();
    EXPECT_THAT(r.stderr_text, HasSubstr("cairn: error: INVALID_ARGUMENT"));
    EXPECT_THAT(r.stderr_text, HasSubstr(c.entry));
    ASSERT_NO_FATAL_FAILURE(ExpectMissing(digest));
    ASSERT_NO_FATAL_FAILURE(ExpectMissing(good_digest));
    CommandResult stat = Cli({"stat", digest});
    EXPECT_NE(stat.exit_code, 0) << stat.Describe();
    EXPECT_THAT(stat.stderr_text, HasSubstr("NOT_FOUND"));

    // The daemon itself rejects it (not only the CLI).
    absl::StatusOr<cairn::v1::WriteResponse> w = client_->Push(*bytes);
    EXPECT_EQ(w.status().code(), absl::StatusCode::kInvalidArgument)
        << w.status();
    EXPECT_THAT(std::string(w.status().message()), HasSubstr(c.entry));
    ASSERT_NO_FATAL_FAILURE(ExpectMissing(digest));
  }

  // The earlier artefact is intact.
  EXPECT_EQ(CliPull(DigestOf(*earlier)), *earlier);
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
      client_->ListFiles(DigestOf(*earlier));
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ(files->size(), 3u);
}

// `cairn push --no-wait` returns once the bytes are durable; `cairn stat
// --wait` then gives the complete index, or the rejection of an unsafe
// archive, which leaves nothing stored.
TEST_F(E2eTest, PushNoWaitAcknowledgesBeforeTheIndex) {
  const std::string tree = work_ + "/tree";
  MakeTree(tree);
  const std::string tarball = Pack(tree, work_ + "/tree.tar.gz");
  const std::string digest = DigestOf(tarball);

  CommandResult r = Cli({"push", "--no-wait", work_ + "/tree.tar.gz"});
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  EXPECT_EQ(r.stdout_text, absl::StrCat(digest, " ", tarball.size(),
                                        " stored (index being built)\n"));
  r = Cli({"stat", "--wait", digest}, /*json=*/true);
  ASSERT_EQ(r.exit_code, 0) << r.Describe();
  absl::StatusOr<Json> stat = ParseJson(r.stdout_text);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_NE((*stat)["index_state"], "indexing");
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
      client_->ListFiles(digest);
  ASSERT_TRUE(files.ok()) << files.status();
  EXPECT_EQ((*stat)["summary"]["file_count"], files->size());
  EXPECT_GT(files->size(), 3u);
  EXPECT_EQ(CliPull(digest), tarball);

  // A ref needs the complete index: the two flags do not mix.
  r = Cli({"push", "--no-wait", "--ref", "tool@main", work_ + "/tree.tar.gz"});
  EXPECT_EQ(r.exit_code, 2) << r.Describe();

  // An unsafe archive: refused at once, or acknowledged and then rejected.
  const std::string bad = WriteTar(
      "bad.tar.gz", {{"big", TarEntry::kFile, 0644, std::string(8 << 20, 0)},
                     {"../escape", TarEntry::kFile, 0644, "evil"}});
  absl::StatusOr<std::string> bad_bytes = ReadFile(bad);
  ASSERT_TRUE(bad_bytes.ok());
  r = Cli({"push", "--no-wait", bad});
  if (r.exit_code == 0) {
    EXPECT_THAT(r.stdout_text, HasSubstr("(index being built)"));
    r = Cli({"stat", "--wait", DigestOf(*bad_bytes)});
  }
  EXPECT_EQ(r.exit_code, 1) << r.Describe();
  EXPECT_THAT(r.stderr_text, HasSubstr("artefact rejected, nothing stored"));
  EXPECT_THAT(r.stderr_text, HasSubstr("../escape"));
  ASSERT_NO_FATAL_FAILURE(ExpectMissing(DigestOf(*bad_bytes)));
}

TEST_F(E2eTest, SetidBitsAreStrippedAndReported) {
  const std::string path = WriteTar(
      "setid.tar.gz", {{"bin/", TarEntry::kDir, 0755, ""},
                       {"bin/plain", TarEntry::kFile, 0755, "plain\n"},
                       {"bin/sgid-tool", TarEntry::kFile, 02755, "sgid\n"},
                       {"bin/suid-tool", TarEntry::kFile, 04755, "suid\n"}});
  absl::StatusOr<std::string> bytes = ReadFile(path);
  ASSERT_TRUE(bytes.ok());
  absl::StatusOr<PushJson> pushed = CliPushJson(path);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->digest, DigestOf(*bytes));
  EXPECT_THAT(pushed->stripped_setid_paths,
              UnorderedElementsAre("bin/sgid-tool", "bin/suid-tool"));

  CommandResult inspect = Cli({"inspect", pushed->digest});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.Describe();
  std::map<std::string, InspectLine> lines = ParseInspect(inspect.stdout_text);
  for (const char* p : {"bin/plain", "bin/sgid-tool", "bin/suid-tool"}) {
    ASSERT_TRUE(lines.count(p)) << p << " not in\n" << inspect.stdout_text;
    EXPECT_EQ(lines[p].mode, 0755) << p;
  }
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
      client_->ListFiles(pushed->digest);
  ASSERT_TRUE(files.ok()) << files.status();
  for (const cairn::v1::FileEntry& e : *files) {
    EXPECT_EQ(e.mode() & 06000, 0u) << e.path();
  }
  absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(pushed->digest);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_THAT(stat->summary().stripped_setid_paths(),
              UnorderedElementsAre("bin/sgid-tool", "bin/suid-tool"));
  // The stored bytes are still the original archive's.
  EXPECT_EQ(CliPull(pushed->digest), *bytes);
}

TEST_F(E2eTest, ConcurrentPushesAllSucceed) {
  // A shared file in every artefact, so concurrent uploads race on the same
  // file blob too.
  const std::string shared = RandomBytes(512 << 10, 7);
  auto artefact = [&](int i) {
    return BuildTar({{"lib/", TarEntry::kDir, 0755, ""},
                     {"lib/shared.so", TarEntry::kFile, 0755, shared},
                     {"lib/own.bin", TarEntry::kFile, 0644,
                      RandomBytes(256 << 10, 1000 + i)},
                     {"VERSION", TarEntry::kFile, 0644, std::to_string(i)}});
  };
  // 0: pushed 4 times; 1..4: once each.
  std::vector<std::string> bytes;
  std::vector<std::string> paths;
  for (int i = 0; i < 5; ++i) {
    bytes.push_back(artefact(i));
    paths.push_back(absl::StrCat(work_, "/concurrent-", i, ".tar.gz"));
    ASSERT_TRUE(WriteFile(paths.back(), bytes.back()).ok());
  }

  struct Outcome {
    int artefact = 0;
    bool via_cli = false;
    absl::Status status;
    std::string digest;
    bool already_present = false;
  };
  std::vector<Outcome> outcomes(8);
  absl::Notification go;
  std::vector<std::thread> threads;
  const std::string address = daemon_->address();
  for (int t = 0; t < 8; ++t) {
    outcomes[t].artefact = t < 4 ? 0 : t - 3;
    outcomes[t].via_cli = t % 2 == 0;
    threads.emplace_back([&, t] {
      Outcome& o = outcomes[t];
      go.WaitForNotification();
      if (o.via_cli) {
        absl::StatusOr<CommandResult> r =
            RunCli({"--server", address, "--json", "push", paths[o.artefact]});
        if (!r.ok()) {
          o.status = r.status();
        } else if (r->exit_code != 0) {
          o.status = absl::InternalError(r->Describe());
        } else {
          absl::StatusOr<PushJson> p = ParsePushJson(r->stdout_text);
          o.status = p.status();
          if (p.ok()) {
            o.digest = p->digest;
            o.already_present = p->already_present;
          }
        }
      } else {
        CasClient client(address);
        absl::StatusOr<cairn::v1::WriteResponse> w =
            client.Push(bytes[o.artefact], "", 64 << 10);
        o.status = w.status();
        if (w.ok()) {
          o.digest = w->digest();
          o.already_present = w->already_present();
        }
      }
    });
  }
  go.Notify();
  for (std::thread& t : threads) t.join();

  int committed_same = 0;
  for (const Outcome& o : outcomes) {
    SCOPED_TRACE(absl::StrCat("artefact ", o.artefact,
                              o.via_cli ? " via CLI" : " via gRPC"));
    ASSERT_TRUE(o.status.ok()) << o.status;
    EXPECT_EQ(o.digest, DigestOf(bytes[o.artefact]));
    if (o.artefact == 0) {
      if (!o.already_present) ++committed_same;
    } else {
      EXPECT_FALSE(o.already_present);
    }
  }
  // Exactly one of the four identical pushes stored it.
  EXPECT_EQ(committed_same, 1);

  for (int i = 0; i < 5; ++i) {
    SCOPED_TRACE(absl::StrCat("artefact ", i));
    const std::string digest = DigestOf(bytes[i]);
    if (i % 2 == 0) {
      EXPECT_TRUE(CliPull(digest) == bytes[i]);
    } else {
      absl::StatusOr<std::string> pulled = client_->Pull(digest);
      ASSERT_TRUE(pulled.ok()) << pulled.status();
      EXPECT_TRUE(*pulled == bytes[i]);
    }
    absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
        client_->ListFiles(digest);
    ASSERT_TRUE(files.ok()) << files.status();
    EXPECT_EQ(files->size(), 4u);
  }
  // Racing uploads of the same file blob left no torn blob file.
  absl::Status blobs = CheckBlobFiles(daemon_->data_dir());
  EXPECT_TRUE(blobs.ok()) << blobs;
}

TEST_F(E2eTest, EverythingSurvivesACleanRestart) {
  const std::string tree = work_ + "/tree";
  ASSERT_NO_FATAL_FAILURE(MakeTree(tree));
  const std::string tarball = work_ + "/tree.tar.gz";
  const std::string a = Pack(tree, tarball);
  ASSERT_EQ(CliPush(tarball), DigestOf(a));
  const std::string b =
      BuildTar({{"data.bin", TarEntry::kFile, 0644, RandomBytes(3 << 20, 9)},
                {"link", TarEntry::kSymlink, 0777, "data.bin"},
                {"hard", TarEntry::kHardlink, 0644, "data.bin"}},
               TarCompression::kZstd);
  absl::StatusOr<cairn::v1::WriteResponse> pushed = client_->Push(b);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  ASSERT_EQ(pushed->digest(), DigestOf(b));
  EXPECT_EQ(pushed->summary().compression(), "zstd");

  absl::Status stopped = StopDaemon();  // Asserts exit 0.
  ASSERT_TRUE(stopped.ok()) << stopped;
  ASSERT_TRUE(daemon_->Restart({"--log-level", "info"}).ok());
  client_ = std::make_unique<CasClient>(daemon_->address());

  EXPECT_EQ(CliPull(DigestOf(a)), a);
  absl::StatusOr<std::string> pulled = client_->Pull(DigestOf(b));
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_TRUE(*pulled == b);

  for (const std::string* artefact : {&a, &b}) {
    absl::StatusOr<cairn::v1::StatResponse> stat =
        client_->Stat(DigestOf(*artefact));
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_EQ(stat->size(), artefact->size());
    // A clean stop flushed every index: nothing to re-derive.
    EXPECT_TRUE(stat->index_durable());
  }
  EXPECT_THAT(daemon_->Logs(), ::testing::Not(HasSubstr("re-deriving")));

  CommandResult inspect = Cli({"inspect", DigestOf(a)});
  ASSERT_EQ(inspect.exit_code, 0) << inspect.Describe();
  EXPECT_EQ(ParseInspect(inspect.stdout_text).size(), 8u);
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
      client_->ListFiles(DigestOf(b));
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 3u);

  // Every file blob is recorded after the clean stop, and every blob file
  // holds the bytes its name says.
  std::vector<std::string> contents;
  for (const cairn::v1::FileEntry& e : *files) {
    if (e.type() == cairn::v1::FileEntry::REGULAR) {
      contents.push_back(e.content_digest());
    }
  }
  ASSERT_EQ(contents.size(), 1u);
  absl::StatusOr<std::vector<std::string>> missing =
      client_->FindMissing(contents);
  ASSERT_TRUE(missing.ok()) << missing.status();
  EXPECT_THAT(*missing, IsEmpty());
  absl::Status blobs = CheckBlobFiles(daemon_->data_dir());
  EXPECT_TRUE(blobs.ok()) << blobs;
}

TEST_F(E2eTest, CliErrorsNameTheCode) {
  CommandResult r = Cli({"stat", DigestOf("never pushed")});
  EXPECT_NE(r.exit_code, 0);
  EXPECT_THAT(r.stderr_text, HasSubstr("cairn: error: NOT_FOUND"));
  EXPECT_THAT(r.stderr_text, HasSubstr(DigestOf("never pushed")));

  CommandResult bad = Cli({"pull", "sha256:NOTHEX", "-o", work_ + "/x"});
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_THAT(bad.stderr_text, HasSubstr("cairn: error: INVALID_ARGUMENT"));

  // In a shell: "-o -" from the work directory, and stdout on /dev/full.
  absl::StatusOr<std::string> cairn = RunfilePath("tools/cairn/cairn");
  ASSERT_TRUE(cairn.ok()) << cairn.status();
  auto sh = [&](const std::string& command) {
    absl::StatusOr<CommandResult> r =
        RunCommand({"/bin/sh", "-c",
                    absl::StrCat("cd ", work_, " && ", *cairn, " --server ",
                                 daemon_->address(), " ", command)});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : CommandResult{};
  };
  // "-o -" is refused, not written as a file named "-".
  CommandResult dash = sh(absl::StrCat("pull ", DigestOf("x"), " -o -"));
  EXPECT_EQ(dash.exit_code, 2) << dash.Describe();
  EXPECT_THAT(dash.stderr_text,
              HasSubstr("-o - (standard output) is not supported"));
  struct stat st;
  EXPECT_NE(lstat((work_ + "/-").c_str(), &st), 0);
  // Output the shell cannot take fails the command.
  CommandResult full = sh("digest /proc/self/exe > /dev/full");
  EXPECT_EQ(full.exit_code, 1) << full.Describe();
  EXPECT_THAT(full.stderr_text, HasSubstr("cannot write standard output"));
}

}  // namespace
}  // namespace cairn::testing
