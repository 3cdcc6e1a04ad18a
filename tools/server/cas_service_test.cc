// Copyright 2026 The Cairn Authors.
//
// Drives CasService through real gRPC stubs against an in-process server on
// 127.0.0.1:0 and a real Store in TEST_TMPDIR.

#include "tools/server/cas_service.h"

#include <archive.h>
#include <archive_entry.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/notification.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/cas.grpc.pb.h"
#include "store/digest.h"
#include "store/store.h"
#include "store/testing/test_dirs.h"
#include "tools/server/testing/health.grpc.pb.h"

namespace cairn {
namespace {

using ::cairn::testing::CountRegularFiles;
using ::cairn::testing::FreshTestDir;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

// ---------------------------------------------------------------------------
// Tarballs, written with libarchive.

struct Entry {
  enum Type { kFile, kDir, kSymlink, kHardlink };
  std::string path;
  Type type = kFile;
  int mode = 0644;
  // File contents, or the symlink / hardlink target.
  std::string data;
};

la_ssize_t AppendToString(struct archive*, void* client, const void* buffer,
                          size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer),
                                            length);
  return static_cast<la_ssize_t>(length);
}

// A gzip-compressed pax tarball of `entries`, in order.
std::string TarGz(const std::vector<Entry>& entries) {
  std::string out;
  struct archive* a = archive_write_new();
  EXPECT_EQ(archive_write_add_filter_gzip(a), ARCHIVE_OK);
  EXPECT_EQ(archive_write_set_format_pax_restricted(a), ARCHIVE_OK);
  // Names as bytes, whatever the locale (those that are not UTF-8 too).
  EXPECT_EQ(archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY"),
            ARCHIVE_OK);
  EXPECT_EQ(archive_write_open(a, &out, nullptr, AppendToString, nullptr),
            ARCHIVE_OK)
      << archive_error_string(a);
  for (const Entry& e : entries) {
    struct archive_entry* ae = archive_entry_new();
    archive_entry_set_pathname(ae, e.path.c_str());
    archive_entry_set_perm(ae, e.mode);
    archive_entry_set_mtime(ae, 0, 0);
    switch (e.type) {
      case Entry::kFile:
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_size(ae, e.data.size());
        break;
      case Entry::kDir:
        archive_entry_set_filetype(ae, AE_IFDIR);
        break;
      case Entry::kSymlink:
        archive_entry_set_filetype(ae, AE_IFLNK);
        archive_entry_set_symlink(ae, e.data.c_str());
        break;
      case Entry::kHardlink:
        archive_entry_set_filetype(ae, AE_IFREG);
        archive_entry_set_hardlink(ae, e.data.c_str());
        archive_entry_set_size(ae, 0);
        break;
    }
    EXPECT_EQ(archive_write_header(a, ae), ARCHIVE_OK)
        << e.path << ": " << archive_error_string(a);
    if (e.type == Entry::kFile && !e.data.empty()) {
      EXPECT_EQ(archive_write_data(a, e.data.data(), e.data.size()),
                static_cast<la_ssize_t>(e.data.size()));
    }
    archive_entry_free(ae);
  }
  EXPECT_EQ(archive_write_close(a), ARCHIVE_OK);
  archive_write_free(a);
  return out;
}

// `n` bytes that gzip cannot shrink, from a fixed seed.
std::string Noise(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  std::string s(n, '\0');
  for (char& c : s) c = static_cast<char>(rng());
  return s;
}

// ---------------------------------------------------------------------------
// Fixture: a real store and server, and stubs over a loopback channel.

class CasServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("cas_service_test");
    ASSERT_NO_FATAL_FAILURE(Start(StoreOptions()));
  }

  // Opens the store in dir_ with `store_options` and serves it.
  void Start(StoreOptions store_options) {
    store_options.data_dir = dir_;
    absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(store_options);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
    service_ = std::make_unique<CasService>(*store_);

    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartServer(options, service_.get(), &port_);
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    ASSERT_GT(port_, 0);

    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(8 << 20);
    channel_ =
        grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port_),
                                  grpc::InsecureChannelCredentials(), args);
    stub_ = v1::Cas::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    service_.reset();
    store_.reset();
  }

  // Restarts the store with its background indexes held back
  // (StoreOptions::testing_indexer_gate, returned in *gate) and stores a
  // small artefact acknowledged before its index: it stays INDEXING until
  // *gate is notified.
  void PushHeldInIndexing(std::shared_ptr<absl::Notification>* gate,
                          Digest* digest) {
    TearDown();
    StoreOptions options;
    options.testing_indexer_gate = std::make_shared<absl::Notification>();
    *gate = options.testing_indexer_gate;
    ASSERT_NO_FATAL_FAILURE(Start(options));
    UploadOptions early;
    early.acknowledge_before_index = true;
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        store_->BeginUpload(early);
    ASSERT_TRUE(up.ok()) << up.status();
    ASSERT_TRUE(
        (*up)->Append(TarGz({{"bin/t", Entry::kFile, 0755, "t"}})).ok());
    absl::StatusOr<UploadResult> pushed = (*up)->Finish();
    ASSERT_TRUE(pushed.ok()) << pushed.status();
    *digest = pushed->digest;
  }

  grpc::Status StatWaitingForIndex(const std::string& digest,
                                   absl::Duration timeout,
                                   v1::StatResponse* response) {
    grpc::ClientContext context;
    context.set_deadline(absl::ToChronoTime(absl::Now() + timeout));
    v1::StatRequest request;
    request.set_digest(digest);
    request.set_wait_for_index(true);
    return stub_->Stat(&context, request, response);
  }

  // Uploads `bytes` in `chunk`-byte messages, the header in the first.
  grpc::Status Push(const std::string& bytes, v1::WriteResponse* response,
                    const std::string& expected_digest = "",
                    uint64_t expected_size = 0, size_t chunk = 64 << 10) {
    grpc::ClientContext context;
    std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> writer =
        stub_->Write(&context, response);
    v1::WriteRequest request;
    request.mutable_header()->set_expected_digest(expected_digest);
    request.mutable_header()->set_expected_size(expected_size);
    size_t offset = 0;
    do {
      const size_t n = std::min(chunk, bytes.size() - offset);
      request.set_data(bytes.substr(offset, n));
      offset += n;
      if (!writer->Write(request)) break;  // The server failed the call.
      request.clear_header();
    } while (offset < bytes.size());
    writer->WritesDone();
    return writer->Finish();
  }

  // Reads a blob range; `chunks` receives each message's size.
  grpc::Status Read(const std::string& digest, uint64_t offset, uint64_t limit,
                    std::string* out, std::vector<size_t>* chunks = nullptr) {
    grpc::ClientContext context;
    v1::ReadRequest request;
    request.set_digest(digest);
    request.set_offset(offset);
    request.set_limit(limit);
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
        stub_->Read(&context, request);
    v1::ReadResponse response;
    out->clear();
    while (reader->Read(&response)) {
      out->append(response.data());
      if (chunks != nullptr) chunks->push_back(response.data().size());
    }
    return reader->Finish();
  }

  grpc::Status ListFiles(const std::string& digest,
                         std::vector<v1::FileEntry>* entries,
                         int* messages = nullptr,
                         uint64_t* first_total = nullptr) {
    grpc::ClientContext context;
    v1::ListFilesRequest request;
    request.set_digest(digest);
    std::unique_ptr<grpc::ClientReader<v1::ListFilesResponse>> reader =
        stub_->ListFiles(&context, request);
    v1::ListFilesResponse response;
    entries->clear();
    if (messages != nullptr) *messages = 0;
    bool first = true;
    while (reader->Read(&response)) {
      if (first && first_total != nullptr) {
        *first_total = response.total_entries();
      }
      first = false;
      if (messages != nullptr) ++*messages;
      for (const v1::FileEntry& e : response.entries()) entries->push_back(e);
    }
    return reader->Finish();
  }

  std::vector<std::string> FindMissing(const std::vector<std::string>& ds) {
    grpc::ClientContext context;
    v1::FindMissingRequest request;
    for (const std::string& d : ds) request.add_digests(d);
    v1::FindMissingResponse response;
    grpc::Status s = stub_->FindMissing(&context, request, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return {response.missing_digests().begin(),
            response.missing_digests().end()};
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<CasService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Cas::Stub> stub_;
};

const std::string kTool = Noise(3 << 20, 1);  // Three 1 MiB read chunks.

std::vector<Entry> ToolEntries() {
  return {
      {"bin/", Entry::kDir, 0755, ""},
      {"bin/tool", Entry::kFile, 0755, kTool},
      {"bin/tool-link", Entry::kSymlink, 0777, "tool"},
      {"bin/tool-hard", Entry::kHardlink, 0755, "bin/tool"},
      {"share/doc/readme.txt", Entry::kFile, 0644, "hello\n"},
      {"cairn.json", Entry::kFile, 0644,
       R"({"name":"tool","version":"1.0.0","licence":"MIT",)"
       R"("entrypoint":"bin/tool"})"},
  };
}

TEST_F(CasServiceTest, PushStatReadListRoundTrip) {
  const std::string tarball = TarGz(ToolEntries());
  const std::string digest = Sha256Of(tarball).ToString();
  EXPECT_THAT(FindMissing({digest}), ElementsAre(digest));

  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w, digest, tarball.size());
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(w.digest(), digest);
  EXPECT_EQ(w.size(), tarball.size());
  EXPECT_FALSE(w.already_present());
  EXPECT_EQ(w.summary().compression(), "gzip");
  EXPECT_EQ(w.summary().regular_files(), 3);  // tool, readme, cairn.json
  EXPECT_GE(w.summary().file_count(), 6);
  EXPECT_EQ(w.summary().metadata().name(), "tool");
  EXPECT_EQ(w.summary().metadata().version(), "1.0.0");
  EXPECT_EQ(w.summary().metadata().licence(), "MIT");
  EXPECT_EQ(w.summary().metadata().entrypoint(), "bin/tool");
  EXPECT_GT(w.summary().bytes_newly_stored(), kTool.size());
  EXPECT_TRUE(FindMissing({digest}).empty());

  // Pushing the same bytes again is answered from the store.
  v1::WriteResponse again;
  s = Push(tarball, &again, digest);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(again.already_present());
  EXPECT_EQ(again.digest(), digest);
  EXPECT_EQ(again.summary().bytes_newly_stored(), 0);

  // Stat.
  ASSERT_TRUE(store_->WaitDurable().ok());
  {
    grpc::ClientContext context;
    v1::StatRequest request;
    request.set_digest(digest);
    v1::StatResponse stat;
    s = stub_->Stat(&context, request, &stat);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(stat.digest(), digest);
    EXPECT_EQ(stat.size(), tarball.size());
    EXPECT_EQ(stat.kind(), "artefact");
    EXPECT_TRUE(stat.index_durable());
    EXPECT_GT(stat.created_unix_seconds(), 0);
    EXPECT_EQ(stat.summary().compression(), "gzip");
    EXPECT_EQ(stat.summary().metadata().name(), "tool");
  }

  // Read: whole, in 1 MiB chunks; with offset and limit; empty at the end.
  std::string got;
  std::vector<size_t> chunks;
  s = Read(digest, 0, 0, &got, &chunks);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, tarball);
  ASSERT_GE(chunks.size(), 3);
  for (size_t i = 0; i + 1 < chunks.size(); ++i) {
    EXPECT_EQ(chunks[i], CasService::kReadChunkBytes);
  }
  s = Read(digest, 1000, 5000, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, tarball.substr(1000, 5000));
  s = Read(digest, (1 << 20) - 7, (2 << 20) + 11, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, tarball.substr((1 << 20) - 7, (2 << 20) + 11));
  s = Read(digest, tarball.size() - 10, 1 << 30, &got);  // Limit past end.
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, tarball.substr(tarball.size() - 10));
  s = Read(digest, tarball.size(), 0, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, "");
  s = Read(digest, tarball.size() + 1, 0, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::OUT_OF_RANGE);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("offset ", tarball.size() + 1)));
  EXPECT_THAT(s.error_message(), HasSubstr(absl::StrCat(tarball.size())));
  EXPECT_THAT(s.error_message(), HasSubstr(digest));

  // ListFiles.
  std::vector<v1::FileEntry> entries;
  uint64_t total = 0;
  s = ListFiles(digest, &entries, nullptr, &total);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::map<std::string, v1::FileEntry> by_path;
  for (const v1::FileEntry& e : entries) by_path[e.path()] = e;
  EXPECT_EQ(entries.size(), w.summary().file_count());
  EXPECT_EQ(total, w.summary().file_count());
  ASSERT_TRUE(by_path.count("bin/tool"));
  const v1::FileEntry& tool = by_path["bin/tool"];
  EXPECT_EQ(tool.type(), v1::FileEntry::REGULAR);
  EXPECT_EQ(tool.mode(), 0755);
  EXPECT_EQ(tool.size(), kTool.size());
  EXPECT_EQ(tool.content_digest(), Sha256Of(kTool).ToString());
  ASSERT_TRUE(by_path.count("bin/tool-link"));
  EXPECT_EQ(by_path["bin/tool-link"].type(), v1::FileEntry::SYMLINK);
  EXPECT_EQ(by_path["bin/tool-link"].link_target(), "tool");
  EXPECT_EQ(by_path["bin/tool-link"].content_digest(), "");
  ASSERT_TRUE(by_path.count("bin/tool-hard"));
  EXPECT_EQ(by_path["bin/tool-hard"].type(), v1::FileEntry::HARDLINK);
  EXPECT_EQ(by_path["bin/tool-hard"].link_target(), "bin/tool");
  EXPECT_EQ(by_path["bin/tool-hard"].content_digest(), tool.content_digest());
  ASSERT_TRUE(by_path.count("share/doc"));  // Implicit parent, added.
  EXPECT_EQ(by_path["share/doc"].type(), v1::FileEntry::DIRECTORY);
  ASSERT_TRUE(by_path.count("share/doc/readme.txt"));
  EXPECT_EQ(by_path["share/doc/readme.txt"].content_digest(),
            Sha256Of("hello\n").ToString());

  // File blobs are blobs too: Stat says "file", Read serves their bytes.
  {
    grpc::ClientContext context;
    v1::StatRequest request;
    request.set_digest(tool.content_digest());
    v1::StatResponse stat;
    s = stub_->Stat(&context, request, &stat);
    ASSERT_TRUE(s.ok()) << s.error_message();
    EXPECT_EQ(stat.kind(), "file");
    EXPECT_EQ(stat.size(), kTool.size());
    EXPECT_FALSE(stat.has_summary());
  }
  s = Read(tool.content_digest(), 0, 0, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, kTool);
  s = Read(Sha256Of("hello\n").ToString(), 1, 3, &got);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(got, "ell");

  // A file blob is not an artefact.
  s = ListFiles(tool.content_digest(), &entries);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(tool.content_digest()));
}

// Stat with wait_for_index waits (in slices of 1 s, checking for a client
// that went away) until the index commits or the call's deadline passes.
TEST_F(CasServiceTest, StatWaitsForTheIndexUntilItsDeadline) {
  std::shared_ptr<absl::Notification> gate;
  Digest pushed;
  ASSERT_NO_FATAL_FAILURE(PushHeldInIndexing(&gate, &pushed));
  const std::string digest = pushed.ToString();

  v1::StatResponse response;
  const absl::Time start = absl::Now();
  grpc::Status s =
      StatWaitingForIndex(digest, absl::Milliseconds(1500), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DEADLINE_EXCEEDED)
      << s.error_message();
  EXPECT_GE(absl::Now() - start, absl::Milliseconds(1400));  // 2 slices.

  gate->Notify();
  s = StatWaitingForIndex(digest, absl::Seconds(60), &response);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(response.kind(), "artefact");
  EXPECT_NE(response.index_state(), "INDEXING");
}

// A Store that forwards to another and notifies `waiting` when a
// WaitIndexed call starts: a test then knows a Stat is waiting in the
// server.
class WaitSignallingStore : public Store {
 public:
  explicit WaitSignallingStore(Store& inner) : inner_(inner) {}
  absl::StatusOr<std::vector<Digest>> FindMissing(
      absl::Span<const Digest> digests) const override {
    return inner_.FindMissing(digests);
  }
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> BeginUpload(
      const UploadOptions& options) override {
    return inner_.BeginUpload(options);
  }
  absl::StatusOr<BlobInfo> Stat(const Digest& digest) const override {
    return inner_.Stat(digest);
  }
  absl::Status ReadBlob(const Digest& digest, uint64_t offset, size_t length,
                        std::string* out) const override {
    return inner_.ReadBlob(digest, offset, length, out);
  }
  absl::StatusOr<int> OpenBlobFd(const Digest& digest) const override {
    return inner_.OpenBlobFd(digest);
  }
  absl::StatusOr<int> OpenIndexedFileFd(const Digest& digest) const override {
    return inner_.OpenIndexedFileFd(digest);
  }
  const MetadataDb& metadata() const override { return inner_.metadata(); }
  MetadataDb& mutable_metadata() override { return inner_.mutable_metadata(); }
  absl::StatusOr<store::ArtefactRecord> WaitIndexed(
      const Digest& digest, absl::Time deadline) override {
    if (!waiting.HasBeenNotified()) waiting.Notify();
    return inner_.WaitIndexed(digest, deadline);
  }
  absl::Status WaitDurable() override { return inner_.WaitDurable(); }
  int recovered_artefacts() const override {
    return inner_.recovered_artefacts();
  }
  uint64_t AddArtefactListener(ArtefactListener listener) override {
    return inner_.AddArtefactListener(std::move(listener));
  }
  void RemoveArtefactListener(uint64_t id) override {
    inner_.RemoveArtefactListener(id);
  }

  absl::Notification waiting;

 private:
  Store& inner_;
};

// A Stat waiting for an index that does not come ends when its call is
// cancelled: here by a server shutting down, whose Shutdown(deadline)
// cancels the calls still running at the deadline and then waits for
// their handlers to return. Without the 1 s slices it would wait for the
// index (never, here).
TEST_F(CasServiceTest, StatWaitingForAnIndexEndsWhenCancelled) {
  std::shared_ptr<absl::Notification> gate;
  Digest pushed;
  ASSERT_NO_FATAL_FAILURE(PushHeldInIndexing(&gate, &pushed));

  server_->Shutdown();
  server_.reset();
  WaitSignallingStore signalling(*store_);
  CasService service(signalling);
  ServerOptions server_options;
  server_options.listen_address = "127.0.0.1:0";
  int port = 0;
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartServer(server_options, &service, &port);
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<v1::Cas::Stub> stub = v1::Cas::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  grpc::Status status;
  std::thread client([&] {
    grpc::ClientContext context;  // No deadline.
    v1::StatRequest request;
    request.set_digest(pushed.ToString());
    request.set_wait_for_index(true);
    v1::StatResponse response;
    status = stub->Stat(&context, request, &response);
  });
  signalling.waiting.WaitForNotification();
  (*server)->Shutdown(
      absl::ToChronoTime(absl::Now() + absl::Milliseconds(100)));
  client.join();
  EXPECT_FALSE(status.ok());
  gate->Notify();
}

TEST_F(CasServiceTest, FindMissingKeepsRequestOrder) {
  const std::string a = TarGz({{"a.txt", Entry::kFile, 0644, "a"}});
  const std::string b = TarGz({{"b.txt", Entry::kFile, 0644, "b"}});
  const std::string c = TarGz({{"c.txt", Entry::kFile, 0644, "c"}});
  const std::string da = Sha256Of(a).ToString();
  const std::string db = Sha256Of(b).ToString();
  const std::string dc = Sha256Of(c).ToString();
  v1::WriteResponse w;
  ASSERT_TRUE(Push(b, &w).ok());
  EXPECT_EQ(w.digest(), db);
  EXPECT_THAT(FindMissing({dc, db, da}), ElementsAre(dc, da));
  EXPECT_THAT(FindMissing({da, dc}), ElementsAre(da, dc));
  EXPECT_TRUE(FindMissing({}).empty());
}

TEST_F(CasServiceTest, BadDigestsAreInvalidArgumentNamingThem) {
  const std::string good = Sha256Of("x").ToString();
  const std::string bad = "sha256:NOTHEX";
  {
    grpc::ClientContext context;
    v1::FindMissingRequest request;
    request.add_digests(good);
    request.add_digests(bad);
    v1::FindMissingResponse response;
    grpc::Status s = stub_->FindMissing(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("digests[1]"));
    EXPECT_THAT(s.error_message(), HasSubstr(bad));
  }
  {
    grpc::ClientContext context;
    v1::StatRequest request;
    request.set_digest("md5:abc");
    v1::StatResponse response;
    grpc::Status s = stub_->Stat(&context, request, &response);
    EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
    EXPECT_THAT(s.error_message(), HasSubstr("md5:abc"));
  }
  std::string got;
  grpc::Status s = Read("sha256:", 0, 0, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  std::vector<v1::FileEntry> entries;
  s = ListFiles("", &entries);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  v1::WriteResponse w;
  s = Push(TarGz({{"a", Entry::kFile, 0644, "a"}}), &w, bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("expected_digest"));
  EXPECT_THAT(s.error_message(), HasSubstr(bad));
}

TEST_F(CasServiceTest, UnknownDigestIsNotFound) {
  const std::string d = Sha256Of("never stored").ToString();
  grpc::ClientContext context;
  v1::StatRequest request;
  request.set_digest(d);
  v1::StatResponse response;
  grpc::Status s = stub_->Stat(&context, request, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(d));
  std::string got;
  s = Read(d, 0, 0, &got);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(d));
  std::vector<v1::FileEntry> entries;
  s = ListFiles(d, &entries);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr(d));
}

// A file index that lost entries (or a record that lost its count) is not
// listed as if complete: the stream ends DATA_LOSS after what it sent.
TEST_F(CasServiceTest, ListingDisagreeingWithTheRecordIsDataLoss) {
  v1::WriteResponse w;
  grpc::Status s = Push(TarGz(ToolEntries()), &w);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string digest = w.digest();
  absl::StatusOr<Digest> d = Digest::Parse(digest);
  ASSERT_TRUE(d.ok());
  absl::StatusOr<store::ArtefactRecord> record =
      store_->metadata().GetArtefact(*d);
  ASSERT_TRUE(record.ok()) << record.status();
  record->set_file_count(record->file_count() + 1);
  MetadataBatch batch;
  batch.PutArtefact(*d, *record);
  ASSERT_TRUE(
      store_->mutable_metadata().Commit(std::move(batch), /*sync=*/true).ok());

  std::vector<v1::FileEntry> entries;
  uint64_t total = 0;
  s = ListFiles(digest, &entries, nullptr, &total);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS) << s.error_message();
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("the file index holds ", entries.size(),
                                     " entries, the artefact record says ",
                                     entries.size() + 1)));
  EXPECT_EQ(total, entries.size() + 1);
}

TEST_F(CasServiceTest, DigestMismatchIsDataLossAndStoresNothing) {
  const std::string tarball = TarGz(ToolEntries());
  const std::string actual = Sha256Of(tarball).ToString();
  const std::string claimed = Sha256Of("something else").ToString();
  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w, claimed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(s.error_message(), HasSubstr(claimed));
  EXPECT_THAT(s.error_message(), HasSubstr(actual));
  EXPECT_THAT(FindMissing({actual, claimed}), ElementsAre(actual, claimed));

  s = Push(tarball, &w, "", tarball.size() + 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  s = Push(tarball, &w, "", tarball.size() - 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::DATA_LOSS);
  EXPECT_THAT(FindMissing({actual}), ElementsAre(actual));
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
}

TEST_F(CasServiceTest, ChunkOverOneMebibyteIsRejected) {
  const std::string big = Noise(CasService::kMaxChunkBytes + 1, 2);
  const std::string tarball = TarGz({{"big.bin", Entry::kFile, 0644, big}});
  ASSERT_GT(tarball.size(), CasService::kMaxChunkBytes);
  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w, "", 0, CasService::kMaxChunkBytes + 1);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat(CasService::kMaxChunkBytes + 1)));
  const std::string digest = Sha256Of(tarball).ToString();
  EXPECT_THAT(FindMissing({digest}), ElementsAre(digest));

  // Exactly 1 MiB per message is fine.
  s = Push(tarball, &w, digest, 0, CasService::kMaxChunkBytes);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(w.digest(), digest);
}

TEST_F(CasServiceTest, UnsafeArchiveIsInvalidArgument) {
  const std::string tarball =
      TarGz({{"ok.txt", Entry::kFile, 0644, "fine"},
             {"/etc/evil", Entry::kFile, 0644, "pwned"}});
  const std::string digest = Sha256Of(tarball).ToString();
  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("/etc/evil"));
  // With the digest announced, the store reads everything first, then
  // reports the archive.
  s = Push(tarball, &w, digest);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(FindMissing({digest}), ElementsAre(digest));
}

TEST_F(CasServiceTest, EmptyWriteStreamIsInvalidArgument) {
  grpc::ClientContext context;
  v1::WriteResponse response;
  std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> writer =
      stub_->Write(&context, &response);
  writer->WritesDone();
  grpc::Status s = writer->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(CasServiceTest, CancelledWriteStoresNothing) {
  const std::string tarball = TarGz(ToolEntries());
  const std::string digest = Sha256Of(tarball).ToString();
  {
    grpc::ClientContext context;
    v1::WriteResponse response;
    std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> writer =
        stub_->Write(&context, &response);
    v1::WriteRequest request;
    request.set_data(tarball.substr(0, 256 << 10));
    ASSERT_TRUE(writer->Write(request));
    context.TryCancel();
    grpc::Status s = writer->Finish();
    EXPECT_EQ(s.error_code(), grpc::StatusCode::CANCELLED);
  }
  EXPECT_THAT(FindMissing({digest}), ElementsAre(digest));
  // The handler abandons the upload once it sees the cancellation; Shutdown
  // returns only after every handler has returned.
  server_->Shutdown();
  EXPECT_EQ(CountRegularFiles(dir_ + "/tmp"), 0);
}

TEST_F(CasServiceTest, ListFilesStreamsInBatches) {
  std::vector<Entry> entries;
  for (int i = 0; i < 2500; ++i) {
    entries.push_back(
        {absl::StrCat("d/f", i), Entry::kFile, 0600, absl::StrCat(i)});
  }
  const std::string tarball = TarGz(entries);
  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w);
  ASSERT_TRUE(s.ok()) << s.error_message();
  std::vector<v1::FileEntry> listed;
  int messages = 0;
  s = ListFiles(w.digest(), &listed, &messages);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(listed.size(), w.summary().file_count());
  EXPECT_GE(listed.size(), 2501);  // The files and "d".
  EXPECT_EQ(messages, (listed.size() + CasService::kListBatchEntries - 1) /
                          CasService::kListBatchEntries);
  int files = 0;
  for (const v1::FileEntry& e : listed) {
    if (e.type() != v1::FileEntry::REGULAR) continue;
    ++files;
    EXPECT_EQ(e.mode(), 0600);
    EXPECT_THAT(e.content_digest(), ::testing::StartsWith("sha256:"));
  }
  EXPECT_EQ(files, 2500);
}

// File names and link targets are bytes, as in the tar: names that are not
// UTF-8 are stored, listed and summarised as they are (protobuf refuses
// such `string` fields when it parses them).
TEST_F(CasServiceTest, NamesThatAreNotUtf8RoundTrip) {
  const std::string bad = "d/bad\xff";
  const std::string target = "tgt\xfe";
  const std::string tarball =
      TarGz({{"d", Entry::kDir, 0755, ""},
             {bad, Entry::kFile, 04755, "x"},
             {"d/link", Entry::kSymlink, 0777, target}});
  v1::WriteResponse w;
  grpc::Status s = Push(tarball, &w);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(w.summary().stripped_setid_paths(), ElementsAre(bad));

  std::vector<v1::FileEntry> listed;
  s = ListFiles(w.digest(), &listed);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(listed.size(), 3);
  std::map<std::string, v1::FileEntry> by_path;
  for (const v1::FileEntry& e : listed) by_path[e.path()] = e;
  ASSERT_TRUE(by_path.count(bad));
  EXPECT_EQ(by_path[bad].mode(), 0755);
  ASSERT_TRUE(by_path.count("d/link"));
  EXPECT_EQ(by_path["d/link"].link_target(), target);

  // The stored records parse back.
  ASSERT_TRUE(store_->WaitDurable().ok());
  grpc::ClientContext context;
  v1::StatRequest request;
  request.set_digest(w.digest());
  v1::StatResponse stat;
  s = stub_->Stat(&context, request, &stat);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(stat.summary().stripped_setid_paths(), ElementsAre(bad));
}

TEST_F(CasServiceTest, HealthCheckIsServing) {
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "cairn.v1.Cas"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = health->Check(&context, request, &response);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING)
        << service;
  }
  grpc::ClientContext context;
  grpc::health::v1::HealthCheckRequest request;
  request.set_service("no.such.Service");
  grpc::health::v1::HealthCheckResponse response;
  EXPECT_EQ(health->Check(&context, request, &response).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(CasServiceTest, PortInUseIsUnavailableNamingIt) {
  ServerOptions options;
  options.listen_address = absl::StrCat("127.0.0.1:", port_);
  int port = -1;
  CasService service(*store_);
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartServer(options, &service, &port);
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(server.status().message(), HasSubstr(options.listen_address));
  EXPECT_EQ(port, -1);
}

TEST(ValidateListenAddressTest, AcceptsHostPortAndUnix) {
  for (const char* ok :
       {"127.0.0.1:0", "127.0.0.1:8470", "0.0.0.0:65535", "[::1]:8470",
        "localhost:1", "unix:/tmp/x.sock", "unix-abstract:cairn"}) {
    EXPECT_TRUE(ValidateListenAddress(ok).ok()) << ok;
  }
  for (const char* bad :
       {"", "127.0.0.1", "127.0.0.1:", ":8470", "127.0.0.1:65536",
        "127.0.0.1:http", "127.0.0.1:-1", "[::1]", "::1", "::1:8470",
        "127.0.0.1:+80", "127.0.0.1: 80", "127.0.0.1:000080"}) {
    absl::Status s = ValidateListenAddress(bad);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr(absl::StrCat("\"", bad, "\"")));
  }
}

TEST_F(CasServiceTest, MalformedListenAddressIsInvalidArgument) {
  CasService service(*store_);
  for (const char* address :
       {"127.0.0.1:99999", "127.0.0.1", "host:http", "127.0.0.1:-1"}) {
    ServerOptions options;
    options.listen_address = address;
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartServer(options, &service, nullptr);
    ASSERT_FALSE(server.ok()) << address;
    EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument)
        << address;
    EXPECT_THAT(server.status().message(), HasSubstr(address));
  }
}

}  // namespace
}  // namespace cairn
