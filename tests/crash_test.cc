// Copyright 2026 The Cairn Authors.
//
// Crash safety of a real cairnd: SIGKILL in the middle of an upload, and
// the daemon's own debug crash points (StoreOptions::debug_crash_point).
// After each crash the daemon restarts on the same data directory and the
// store must be consistent: an artefact is either fully there or fully
// absent, tmp/ is empty, and no blob file holds other bytes than its name
// says.

#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <functional>
#include <map>
#include <memory>
#include <ostream>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/client_context.h"
#include "gtest/gtest.h"
#include "proto/cas.pb.h"
#include "store/testing/tar_builder.h"
#include "tests/daemon.h"
#include "tests/e2e_util.h"

namespace cairn::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;

constexpr size_t kChunk = 1 << 20;

// A ~40 MiB .tar.gz of incompressible files, built once.
const std::string& LargeArtefact() {
  static const std::string* const bytes = [] {
    std::vector<TarEntry> entries = {{"data/", TarEntry::kDir, 0755, ""}};
    for (int i = 0; i < 40; ++i) {
      entries.push_back({absl::StrCat("data/part-", i, ".bin"), TarEntry::kFile,
                         0644, RandomBytes(1 << 20, 5000 + i)});
    }
    entries.push_back({"cairn.json", TarEntry::kFile, 0644,
                       R"({"name":"large","version":"1.0.0"})"});
    return new std::string(BuildTar(entries, TarCompression::kGzip));
  }();
  return *bytes;
}

// A small artefact with several regular files (so "file_blob_written" is
// reached before the end), a symlink and a hardlink.
std::vector<TarEntry> SmallEntries(uint64_t seed) {
  std::vector<TarEntry> entries = {{"bin/", TarEntry::kDir, 0755, ""},
                                   {"lib/", TarEntry::kDir, 0755, ""}};
  for (int i = 0; i < 12; ++i) {
    entries.push_back({absl::StrCat("lib/lib", i, ".so"), TarEntry::kFile, 0755,
                       RandomBytes(64 << 10, seed * 100 + i)});
  }
  entries.push_back({"bin/tool", TarEntry::kFile, 0755,
                     RandomBytes(100 << 10, seed * 100 + 99)});
  entries.push_back({"bin/tool-link", TarEntry::kSymlink, 0777, "tool"});
  entries.push_back({"bin/tool-hard", TarEntry::kHardlink, 0755, "bin/tool"});
  entries.push_back({"cairn.json", TarEntry::kFile, 0644,
                     R"({"name":"crashy","version":"0.1.0"})"});
  return entries;
}

std::string DescribeWait(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return absl::StrCat("signal ", WTERMSIG(status));
  return absl::StrCat("wait status ", status);
}

class CrashTest : public ::testing::Test {
 protected:
  void StartDaemon(std::vector<std::string> extra_args) {
    DaemonOptions options;
    options.extra_args = std::move(extra_args);
    absl::StatusOr<std::unique_ptr<Daemon>> daemon = Daemon::Start(options);
    ASSERT_TRUE(daemon.ok()) << daemon.status();
    daemon_ = *std::move(daemon);
    client_ = std::make_unique<CasClient>(daemon_->address());
  }

  void RestartDaemon() {
    absl::Status s = daemon_->Restart({"--log-level", "info"});
    ASSERT_TRUE(s.ok()) << s;
    client_ = std::make_unique<CasClient>(daemon_->address());
  }

  // SIGTERM, asserting exit 0. Our own channel is closed first: cairnd's
  // shutdown otherwise waits out its whole grace period (~5 s) while any
  // client holds an idle connection.
  absl::Status StopDaemon() {
    client_.reset();
    return daemon_->Stop();
  }

  void TearDown() override {
    if (daemon_ != nullptr && daemon_->running()) {
      absl::Status stopped = StopDaemon();
      EXPECT_TRUE(stopped.ok()) << stopped;
    }
    if (HasFailure() && daemon_ != nullptr) {
      std::string logs = daemon_->AllLogs();
      if (logs.size() > 20000) logs = "..." + logs.substr(logs.size() - 20000);
      std::fprintf(stderr, "cairnd logs:\n%s\n", logs.c_str());
    }
  }

  bool IsMissing(const std::string& digest) {
    absl::StatusOr<std::vector<std::string>> missing =
        client_->FindMissing({digest});
    EXPECT_TRUE(missing.ok()) << missing.status();
    return missing.ok() && missing->size() == 1 && (*missing)[0] == digest;
  }

  // Starts cairnd with --debug-crash-point=`point`, pushes the tarball at
  // `path` (with --no-wait if `no_wait`; *push: the CLI's result) and
  // checks that cairnd killed itself there (SIGKILL, the point in its
  // log).
  void PushCrashingAt(const std::string& point, const std::string& path,
                      CommandResult* push, bool no_wait = false) {
    ASSERT_NO_FATAL_FAILURE(StartDaemon(
        {"--log-level", "info", absl::StrCat("--debug-crash-point=", point)}));
    std::vector<std::string> args = {"--server", daemon_->address(), "push",
                                     path};
    if (no_wait) args.push_back("--no-wait");
    absl::StatusOr<CommandResult> pushed = RunCli(args);
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    *push = *std::move(pushed);
    absl::StatusOr<int> exit = daemon_->WaitForExit();
    ASSERT_TRUE(exit.ok()) << exit.status();
    ASSERT_TRUE(WIFSIGNALED(*exit) && WTERMSIG(*exit) == SIGKILL)
        << "cairnd " << DescribeWait(*exit) << ", want SIGKILL at " << point
        << "; logs: " << daemon_->Logs();
    EXPECT_THAT(daemon_->Logs(), HasSubstr(point));
  }

  // tmp/ is empty and every blob file's bytes hash to its name; also, by
  // FindMissing, every blob the store reports present has a correct file.
  void ExpectConsistentBlobs() {
    EXPECT_THAT(ListDir(daemon_->data_dir() + "/tmp"), IsEmpty());
    absl::StatusOr<std::map<std::string, std::string>> blobs =
        ListBlobFiles(daemon_->data_dir());
    ASSERT_TRUE(blobs.ok()) << blobs.status();
    std::vector<std::string> all;
    for (const auto& [digest, path] : *blobs) all.push_back(digest);
    absl::StatusOr<std::vector<std::string>> missing =
        client_->FindMissing(all);
    ASSERT_TRUE(missing.ok()) << missing.status();
    std::set<std::string> missing_set(missing->begin(), missing->end());
    std::vector<std::string> present;
    for (const std::string& d : all) {
      if (!missing_set.count(d)) present.push_back(d);
    }
    absl::Status s = CheckBlobFiles(daemon_->data_dir(), &present);
    EXPECT_TRUE(s.ok()) << s;
    s = CheckBlobFiles(daemon_->data_dir());
    EXPECT_TRUE(s.ok()) << s;
  }

  // The artefact is fully present: stat, byte-exact pull, full index.
  void ExpectFullyPresent(const std::string& bytes,
                          const std::vector<TarEntry>& entries) {
    const std::string digest = DigestOf(bytes);
    absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(digest);
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_EQ(stat->size(), bytes.size());
    EXPECT_EQ(stat->kind(), "artefact");
    absl::StatusOr<std::string> pulled = client_->Pull(digest);
    ASSERT_TRUE(pulled.ok()) << pulled.status();
    EXPECT_TRUE(*pulled == bytes)
        << "pulled " << pulled->size() << " bytes, want " << bytes.size();

    std::set<std::string> want;
    for (const TarEntry& e : entries) {
      std::string p = e.path;
      if (!p.empty() && p.back() == '/') p.pop_back();
      want.insert(p);
    }
    absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
        client_->ListFiles(digest);
    ASSERT_TRUE(files.ok()) << files.status();
    std::set<std::string> got;
    for (const cairn::v1::FileEntry& f : *files) got.insert(f.path());
    EXPECT_EQ(got, want);

    // And through the CLI.
    absl::StatusOr<CommandResult> inspect =
        RunCli({"--server", daemon_->address(), "inspect", digest});
    ASSERT_TRUE(inspect.ok()) << inspect.status();
    ASSERT_EQ(inspect->exit_code, 0) << inspect->Describe();
    for (const std::string& p : want) {
      EXPECT_THAT(inspect->stdout_text, HasSubstr(p));
    }
  }

  // After a clean stop and start: the index is durable, every regular
  // file's content is recorded, and the blob files are right.
  void ExpectDurableAfterCleanRestart(const std::string& digest) {
    absl::Status stopped = StopDaemon();
    ASSERT_TRUE(stopped.ok()) << stopped;
    ASSERT_NO_FATAL_FAILURE(RestartDaemon());
    EXPECT_THAT(daemon_->Logs(), ::testing::Not(HasSubstr("re-deriving")));
    absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(digest);
    ASSERT_TRUE(stat.ok()) << stat.status();
    EXPECT_TRUE(stat->index_durable());
    absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
        client_->ListFiles(digest);
    ASSERT_TRUE(files.ok()) << files.status();
    std::vector<std::string> contents;
    for (const cairn::v1::FileEntry& f : *files) {
      if (f.type() == cairn::v1::FileEntry::REGULAR) {
        contents.push_back(f.content_digest());
      }
    }
    ASSERT_FALSE(contents.empty());
    absl::StatusOr<std::vector<std::string>> missing =
        client_->FindMissing(contents);
    ASSERT_TRUE(missing.ok()) << missing.status();
    EXPECT_THAT(*missing, IsEmpty());
    ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());
  }

  std::unique_ptr<Daemon> daemon_;
  std::unique_ptr<CasClient> client_;
};

TEST_F(CrashTest, SigkillMidPushLeavesNothingBehind) {
  const std::string& bytes = LargeArtefact();
  ASSERT_GT(bytes.size(), 38u << 20);
  const std::string digest = DigestOf(bytes);
  const size_t chunks = (bytes.size() + kChunk - 1) / kChunk;
  const size_t kill_after = chunks / 2;
  ASSERT_NO_FATAL_FAILURE(StartDaemon({"--log-level", "info"}));

  {
    grpc::ClientContext context;
    cairn::v1::WriteResponse response;
    std::unique_ptr<grpc::ClientWriter<cairn::v1::WriteRequest>> writer =
        client_->stub().Write(&context, &response);
    size_t sent = 0;
    for (size_t i = 0; i < chunks; ++i) {
      cairn::v1::WriteRequest request;
      if (i == 0) request.mutable_header()->set_expected_digest(digest);
      request.set_data(bytes.substr(i * kChunk, kChunk));
      if (!writer->Write(request)) break;
      if (++sent == kill_after) {
        absl::Status killed = daemon_->Kill();
        ASSERT_TRUE(killed.ok()) << killed;
      }
    }
    ASSERT_GE(sent, kill_after) << "the stream broke before the kill";
    writer->WritesDone();
    grpc::Status status = writer->Finish();
    EXPECT_FALSE(status.ok()) << "the push succeeded although the daemon "
                                 "was killed mid-stream";
  }
  // What the kill left (informational: how much reached the daemon).
  std::fprintf(stderr, "after SIGKILL: %zu file(s) in tmp/\n",
               ListDir(daemon_->data_dir() + "/tmp").size());

  ASSERT_NO_FATAL_FAILURE(RestartDaemon());
  EXPECT_TRUE(IsMissing(digest));
  ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());

  // Retrying succeeds and reads back byte-exact.
  absl::StatusOr<cairn::v1::WriteResponse> pushed =
      client_->Push(bytes, digest, kChunk);
  ASSERT_TRUE(pushed.ok()) << pushed.status();
  EXPECT_EQ(pushed->digest(), digest);
  EXPECT_FALSE(pushed->already_present());
  EXPECT_EQ(pushed->summary().regular_files(), 41u);
  absl::StatusOr<std::string> pulled = client_->Pull(digest);
  ASSERT_TRUE(pulled.ok()) << pulled.status();
  EXPECT_EQ(pulled->size(), bytes.size());
  EXPECT_TRUE(*pulled == bytes);
  ASSERT_NO_FATAL_FAILURE(ExpectDurableAfterCleanRestart(digest));
}

struct CrashPointCase {
  const char* point;
  // Whether the records were committed before the crash, so the artefact
  // must be present after the restart (store/store.h).
  bool present_after;
  // Whether the crash may come after the push was answered (the flush
  // runs after it).
  bool push_may_succeed = false;
  // Push with --no-wait (acknowledged before the index).
  bool no_wait = false;
};

void PrintTo(const CrashPointCase& c, std::ostream* os) { *os << c.point; }

class CrashPointTest : public CrashTest,
                       public ::testing::WithParamInterface<CrashPointCase> {};

TEST_P(CrashPointTest, StoreIsConsistentAfterCrash) {
  const CrashPointCase& c = GetParam();
  const std::vector<TarEntry> entries =
      SmallEntries(std::hash<std::string>()(c.point));
  const std::string bytes = BuildTar(entries);
  const std::string digest = DigestOf(bytes);
  const std::string path =
      absl::StrCat(NewTempDir("crash-point"), "/artefact.tar.gz");
  ASSERT_TRUE(WriteFile(path, bytes).ok());

  CommandResult push;
  ASSERT_NO_FATAL_FAILURE(PushCrashingAt(c.point, path, &push, c.no_wait));
  if (!c.push_may_succeed) {
    EXPECT_NE(push.exit_code, 0) << "push succeeded although the daemon "
                                    "should have died: "
                                 << push.Describe();
  }

  // What the crash left on disk shows it happened where it should have.
  absl::StatusOr<std::map<std::string, std::string>> left =
      ListBlobFiles(daemon_->data_dir());
  ASSERT_TRUE(left.ok()) << left.status();
  std::set<std::string> contents;
  for (const TarEntry& e : entries) {
    if (e.type == TarEntry::kFile) contents.insert(DigestOf(e.content));
  }
  const std::string point = c.point;
  if (point == "file_blob_written") {
    EXPECT_FALSE(left->empty()) << "no file blob was written";
    for (const auto& [d, path] : *left) {
      EXPECT_TRUE(contents.count(d)) << path << " is not a file of the "
                                     << "artefact";
    }
  } else {
    // The tarball was made durable before the crash.
    EXPECT_TRUE(left->count(digest)) << "no tarball blob file for " << digest;
  }

  ASSERT_NO_FATAL_FAILURE(RestartDaemon());
  EXPECT_THAT(ListDir(daemon_->data_dir() + "/tmp"), IsEmpty());
  const bool missing = IsMissing(digest);
  EXPECT_EQ(!missing, c.present_after)
      << "after a crash at " << c.point << " the artefact is "
      << (missing ? "absent" : "present");
  if (!missing) {
    ASSERT_NO_FATAL_FAILURE(ExpectFullyPresent(bytes, entries));
    // Committed but not yet flushed: the restart re-derived the index.
    EXPECT_THAT(daemon_->Logs(), HasSubstr("re-deriving"));
    EXPECT_THAT(daemon_->Logs(), HasSubstr(digest));
    ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());
  } else {
    absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(digest);
    EXPECT_EQ(stat.status().code(), absl::StatusCode::kNotFound)
        << stat.status();
    absl::StatusOr<std::vector<cairn::v1::FileEntry>> files =
        client_->ListFiles(digest);
    EXPECT_EQ(files.status().code(), absl::StatusCode::kNotFound)
        << files.status();
    ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());

    // Retrying succeeds.
    absl::StatusOr<CommandResult> retry =
        RunCli({"--server", daemon_->address(), "push", path});
    ASSERT_TRUE(retry.ok()) << retry.status();
    ASSERT_EQ(retry->exit_code, 0) << retry->Describe();
    EXPECT_THAT(retry->stdout_text, HasSubstr(digest));
    ASSERT_NO_FATAL_FAILURE(ExpectFullyPresent(bytes, entries));
    ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());
  }
  ASSERT_NO_FATAL_FAILURE(ExpectDurableAfterCleanRestart(digest));
}

// A SIGKILL keeps the page cache; a power loss does not. File blobs are
// written kDeferred and made durable only by the flush, so a machine that
// fails after the index commit (before the flush) can lose them or keep
// them torn. Here the crash is followed by exactly that: half of the
// artefact's file blobs are deleted and the other half cut in two. The
// restart re-derives the index from the durable tarball and writes them
// again.
TEST_F(CrashTest, UnsyncedFileBlobsLostWithTheMachineAreWrittenAgain) {
  const std::vector<TarEntry> entries = SmallEntries(7);
  const std::string bytes = BuildTar(entries);
  const std::string digest = DigestOf(bytes);
  const std::string path =
      absl::StrCat(NewTempDir("lost-blobs"), "/artefact.tar.gz");
  ASSERT_TRUE(WriteFile(path, bytes).ok());
  CommandResult push;
  ASSERT_NO_FATAL_FAILURE(PushCrashingAt("index_committed", path, &push));

  absl::StatusOr<std::map<std::string, std::string>> left =
      ListBlobFiles(daemon_->data_dir());
  ASSERT_TRUE(left.ok()) << left.status();
  int deleted = 0, torn = 0;
  for (const auto& [d, file] : *left) {
    if (d == digest) continue;  // The tarball was synced before its ack.
    struct stat st;
    ASSERT_EQ(stat(file.c_str(), &st), 0) << file;
    if ((deleted + torn) % 2 == 0) {
      ASSERT_EQ(unlink(file.c_str()), 0) << file;
      ++deleted;
    } else {
      ASSERT_EQ(truncate(file.c_str(), st.st_size / 2), 0) << file;
      ++torn;
    }
  }
  ASSERT_GE(deleted, 1);
  ASSERT_GE(torn, 1);

  ASSERT_NO_FATAL_FAILURE(RestartDaemon());
  EXPECT_THAT(daemon_->Logs(), HasSubstr("re-deriving"));
  ASSERT_NO_FATAL_FAILURE(ExpectFullyPresent(bytes, entries));
  ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());
  ASSERT_NO_FATAL_FAILURE(ExpectDurableAfterCleanRestart(digest));
}

// An artefact acknowledged before its index is rejected when its archive
// proves unsafe; here at the restart's re-derivation, under limits lowered
// meanwhile (today's limits apply to an archive never accepted), with a
// crash after the rejection's records are durable and before its tarball
// file is removed. The next start finds the artefact gone for good (no
// INDEXING record is left to re-derive); the orphaned file harms nothing
// and the same bytes can be pushed again.
TEST_F(CrashTest, CrashInsideARejectLeavesTheArtefactGone) {
  const std::vector<TarEntry> entries = SmallEntries(11);
  const std::string bytes = BuildTar(entries);
  const std::string digest = DigestOf(bytes);
  const std::string dir = NewTempDir("reject");
  const std::string path = absl::StrCat(dir, "/artefact.tar.gz");
  ASSERT_TRUE(WriteFile(path, bytes).ok());
  const std::string low_limits = absl::StrCat(dir, "/low-limits.toml");
  ASSERT_TRUE(WriteFile(low_limits, "[limits]\nmax_entries = 5\n").ok());

  CommandResult push;
  ASSERT_NO_FATAL_FAILURE(
      PushCrashingAt("indexing_committed", path, &push, /*no_wait=*/true));
  absl::Status started =
      daemon_->Restart({"--log-level", "info", "--config", low_limits,
                        "--debug-crash-point=reject_committed"});
  ASSERT_FALSE(started.ok()) << "cairnd started; want a crash in Reject";
  EXPECT_THAT(started.message(), HasSubstr("signal 9")) << started;
  EXPECT_THAT(daemon_->Logs(), HasSubstr("rejected after it was acknowledged"));
  EXPECT_THAT(daemon_->Logs(), HasSubstr("reject_committed"));

  ASSERT_NO_FATAL_FAILURE(RestartDaemon());
  EXPECT_THAT(daemon_->Logs(), ::testing::Not(HasSubstr("re-deriving")));
  EXPECT_TRUE(IsMissing(digest));
  absl::StatusOr<cairn::v1::StatResponse> stat = client_->Stat(digest);
  EXPECT_EQ(stat.status().code(), absl::StatusCode::kNotFound) << stat.status();
  ASSERT_NO_FATAL_FAILURE(ExpectConsistentBlobs());

  absl::StatusOr<CommandResult> retry =
      RunCli({"--server", daemon_->address(), "push", path});
  ASSERT_TRUE(retry.ok()) << retry.status();
  ASSERT_EQ(retry->exit_code, 0) << retry->Describe();
  ASSERT_NO_FATAL_FAILURE(ExpectFullyPresent(bytes, entries));
  ASSERT_NO_FATAL_FAILURE(ExpectDurableAfterCleanRestart(digest));
}

INSTANTIATE_TEST_SUITE_P(
    AllCrashPoints, CrashPointTest,
    ::testing::Values(CrashPointCase{"file_blob_written", false},
                      CrashPointCase{"tarball_committed", false},
                      CrashPointCase{"indexing_committed", true, false,
                                     /*no_wait=*/true},
                      CrashPointCase{"index_committed", true},
                      CrashPointCase{"flush_records_written", true, true}),
    [](const ::testing::TestParamInfo<CrashPointCase>& info) {
      return std::string(info.param.point);
    });

}  // namespace
}  // namespace cairn::testing
