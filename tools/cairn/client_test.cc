// Copyright 2026 The Cairn Authors.
//
// Tests of the cairn client library and subcommands. RPCs go to an
// in-process fake of cairn.v1.Cas (in-memory blobs, fixed summaries and
// file lists); end-to-end tests against cairnd live elsewhere.

#include "tools/cairn/client.h"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "proto/cas.grpc.pb.h"
#include "store/digest.h"
#include "store/testing/test_dirs.h"
#include "tools/cairn/commands.h"
#include "tools/cairn/format.h"

namespace cairn {
namespace {

using ::cairn::testing::ReadDirNames;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::StartsWith;

std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::string cmd = absl::StrCat("rm -rf '", dir, "' && mkdir -p '", dir, "'");
  EXPECT_EQ(system(cmd.c_str()), 0);
  return dir;
}

void WriteFile(const std::string& path, const std::string& content) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << content;
  ASSERT_TRUE(out.good()) << path;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

std::string Pseudorandom(size_t size, uint32_t seed) {
  std::string s(size, '\0');
  for (char& c : s) {
    seed = seed * 1103515245 + 12345;
    c = static_cast<char>(seed >> 24);
  }
  return s;
}

const char kMissingDigest[] =
    "sha256:0000000000000000000000000000000000000000000000000000000000000000";

// ---------------------------------------------------------------------------
// A fake server.

v1::ArtefactSummary FakeSummary() {
  v1::ArtefactSummary summary;
  summary.set_compression("gzip");
  summary.set_file_count(4);
  summary.set_regular_files(2);
  summary.set_unpacked_bytes(12345);
  summary.mutable_metadata()->set_name("demo");
  summary.mutable_metadata()->set_version("1.2.3");
  summary.add_stripped_setid_paths("bin/su");
  return summary;
}

class FakeCas final : public v1::Cas::Service {
 public:
  grpc::Status FindMissing(grpc::ServerContext*,
                           const v1::FindMissingRequest* request,
                           v1::FindMissingResponse* response) override {
    ++find_missing_calls;
    std::lock_guard<std::mutex> lock(mu);
    for (const std::string& d : request->digests()) {
      if (blobs.count(d) == 0) response->add_missing_digests(d);
    }
    return grpc::Status::OK;
  }

  grpc::Status Write(grpc::ServerContext*,
                     grpc::ServerReader<v1::WriteRequest>* reader,
                     v1::WriteResponse* response) override {
    ++write_calls;
    v1::WriteRequest request;
    std::string data;
    bool first = true;
    v1::WriteHeader header;
    int messages = 0;
    while (reader->Read(&request)) {
      if (first) header = request.header();
      first = false;
      ++messages;
      if (request.data().size() > (1u << 20)) {
        return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                            "chunk over 1 MiB");
      }
      data += request.data();
    }
    const std::string digest = Sha256Of(data).ToString();
    if (!header.expected_digest().empty() &&
        header.expected_digest() != digest) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "digest mismatch");
    }
    if (header.expected_size() != 0 && header.expected_size() != data.size()) {
      return grpc::Status(grpc::StatusCode::DATA_LOSS, "size mismatch");
    }
    std::lock_guard<std::mutex> lock(mu);
    last_header = header;
    last_messages = messages;
    const bool present = blobs.count(digest) != 0;
    blobs[digest] = data;
    response->set_digest(digest);
    response->set_size(data.size());
    response->set_already_present(present);
    *response->mutable_summary() = FakeSummary();
    response->mutable_summary()->set_bytes_newly_stored(present ? 0
                                                                : data.size());
    return grpc::Status::OK;
  }

  grpc::Status Read(grpc::ServerContext*, const v1::ReadRequest* request,
                    grpc::ServerWriter<v1::ReadResponse>* writer) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu);
      auto it = blobs.find(request->digest());
      if (it == blobs.end()) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            request->digest() + " not found");
      }
      data = it->second;
    }
    if (corrupt_reads && !data.empty()) data[data.size() / 2] ^= 1;
    if (truncate_reads && !data.empty()) data.pop_back();
    for (size_t pos = 0; pos < data.size(); pos += 100000) {
      v1::ReadResponse response;
      response.set_data(data.substr(pos, 100000));
      if (!writer->Write(response)) break;
    }
    return grpc::Status::OK;
  }

  grpc::Status Stat(grpc::ServerContext*, const v1::StatRequest* request,
                    v1::StatResponse* response) override {
    std::lock_guard<std::mutex> lock(mu);
    auto it = blobs.find(request->digest());
    if (it == blobs.end()) {
      return grpc::Status(grpc::StatusCode::NOT_FOUND,
                          request->digest() + " not found");
    }
    response->set_digest(it->first);
    response->set_size(it->second.size());
    response->set_created_unix_seconds(1700000000);
    response->set_kind(file_blobs.count(it->first) != 0 ? "file" : "artefact");
    response->set_index_durable(true);
    *response->mutable_summary() = FakeSummary();
    response->mutable_summary()->set_bytes_newly_stored(it->second.size());
    return grpc::Status::OK;
  }

  grpc::Status ListFiles(
      grpc::ServerContext*, const v1::ListFilesRequest* request,
      grpc::ServerWriter<v1::ListFilesResponse>* writer) override {
    {
      std::lock_guard<std::mutex> lock(mu);
      if (blobs.count(request->digest()) == 0) {
        return grpc::Status(grpc::StatusCode::NOT_FOUND,
                            request->digest() + " is not an artefact");
      }
    }
    v1::ListFilesResponse first;
    if (!older_server) first.set_total_entries(4);
    v1::FileEntry* e = first.add_entries();
    e->set_path("bin");
    e->set_type(v1::FileEntry::DIRECTORY);
    e->set_mode(0755);
    e = first.add_entries();
    e->set_path("bin/tool");
    e->set_type(v1::FileEntry::REGULAR);
    e->set_mode(0755);
    e->set_size(12345);
    e->set_content_digest(kMissingDigest);
    writer->Write(first);
    v1::ListFilesResponse second;
    e = second.add_entries();
    e->set_path("bin/tool2");
    e->set_type(v1::FileEntry::HARDLINK);
    e->set_mode(0755);
    e->set_size(12345);
    e->set_link_target("bin/tool");
    e = second.add_entries();
    e->set_path("run");
    e->set_type(v1::FileEntry::SYMLINK);
    e->set_mode(0777);
    e->set_link_target("bin/tool");
    // A stream cut short without an error status, as gRPC ends one whose
    // message failed to parse.
    if (!cut_listing) writer->Write(second);
    return grpc::Status::OK;
  }

  std::mutex mu;
  std::map<std::string, std::string> blobs;  // Guarded by mu.
  // Digests in `blobs` that Stat reports as file content, not artefacts.
  std::set<std::string> file_blobs;  // Guarded by mu.
  v1::WriteHeader last_header;       // Guarded by mu.
  int last_messages = 0;             // Guarded by mu.
  std::atomic<int> find_missing_calls{0};
  std::atomic<int> write_calls{0};
  std::atomic<bool> corrupt_reads{false};
  std::atomic<bool> truncate_reads{false};
  std::atomic<bool> cut_listing{false};
  // Sends no total_entries, as servers before it did.
  std::atomic<bool> older_server{false};
};

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    grpc::ServerBuilder builder;
    int port = 0;
    builder.AddListeningPort("127.0.0.1:0", grpc::InsecureServerCredentials(),
                             &port);
    builder.SetMaxReceiveMessageSize(kMaxMessageBytes);
    builder.RegisterService(&service_);
    server_ = builder.BuildAndStart();
    ASSERT_NE(server_, nullptr);
    ASSERT_GT(port, 0);
    flags_.server = absl::StrCat("127.0.0.1:", port);
    ClientOptions options;
    options.server = flags_.server;
    absl::StatusOr<std::unique_ptr<CasClient>> client =
        CasClient::Create(options);
    ASSERT_TRUE(client.ok()) << client.status();
    client_ = std::move(*client);
  }

  void TearDown() override { server_->Shutdown(); }

  // Runs a command with captured output.
  template <typename F>
  int Run(F command) {
    out_.str("");
    err_.str("");
    cli::Io io{&out_, &err_, false};
    return command(io);
  }

  FakeCas service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<CasClient> client_;
  cli::GlobalFlags flags_;
  std::ostringstream out_, err_;
};

// ---------------------------------------------------------------------------
// Client.

TEST_F(ServerTest, PushUploadsInChunksThenDedups) {
  const std::string dir = TestDir("push");
  const std::string content = Pseudorandom((5 << 19) + 7, 1);  // 2.5 MiB.
  WriteFile(dir + "/a.tar.gz", content);
  const std::string digest = Sha256Of(content).ToString();

  std::vector<uint64_t> progress;
  PushOptions options;
  options.progress = [&](uint64_t done, uint64_t total) {
    EXPECT_EQ(total, content.size());
    progress.push_back(done);
  };
  absl::StatusOr<v1::WriteResponse> first =
      client_->Push(dir + "/a.tar.gz", options);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(first->digest(), digest);
  EXPECT_EQ(first->size(), content.size());
  EXPECT_FALSE(first->already_present());
  EXPECT_EQ(service_.write_calls, 1);
  EXPECT_EQ(service_.last_messages, 3);
  EXPECT_EQ(service_.last_header.expected_digest(), digest);
  EXPECT_EQ(service_.last_header.expected_size(), content.size());
  EXPECT_EQ(service_.blobs[digest], content);
  EXPECT_THAT(progress, ElementsAre(1u << 20, 2u << 20, content.size()));

  absl::StatusOr<v1::WriteResponse> second =
      client_->Push(dir + "/a.tar.gz", PushOptions());
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_TRUE(second->already_present());
  EXPECT_EQ(second->digest(), digest);
  EXPECT_EQ(second->size(), content.size());
  EXPECT_EQ(second->summary().bytes_newly_stored(), 0u);
  EXPECT_EQ(second->summary().metadata().name(), "demo");
  EXPECT_EQ(service_.write_calls, 1);  // No second upload.
  EXPECT_EQ(service_.find_missing_calls, 2);
}

// Bytes the server holds only as some artefact's file content are
// uploaded, to be indexed as an artefact of their own.
TEST_F(ServerTest, PushUploadsBytesStoredOnlyAsAFile) {
  const std::string dir = TestDir("push-file");
  const std::string content = Pseudorandom(3000, 2);
  WriteFile(dir + "/dep.tar.gz", content);
  const std::string digest = Sha256Of(content).ToString();
  {
    std::lock_guard<std::mutex> lock(service_.mu);
    service_.blobs[digest] = content;
    service_.file_blobs.insert(digest);
  }
  absl::StatusOr<v1::WriteResponse> r =
      client_->Push(dir + "/dep.tar.gz", PushOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest(), digest);
  EXPECT_EQ(service_.find_missing_calls, 1);
  EXPECT_EQ(service_.write_calls, 1);
}

TEST_F(ServerTest, PushEmptyFile) {
  const std::string dir = TestDir("push_empty");
  WriteFile(dir + "/empty", "");
  absl::StatusOr<v1::WriteResponse> r =
      client_->Push(dir + "/empty", PushOptions());
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest(), Sha256Of("").ToString());
  EXPECT_EQ(service_.last_messages, 1);
}

TEST_F(ServerTest, PushExpectMismatchSendsNothing) {
  const std::string dir = TestDir("push_expect");
  WriteFile(dir + "/a", "content");
  PushOptions options;
  options.expect = Sha256Of("other");
  absl::StatusOr<v1::WriteResponse> r = client_->Push(dir + "/a", options);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr(Sha256Of("content").ToString()));
  EXPECT_EQ(service_.find_missing_calls, 0);
  EXPECT_EQ(service_.write_calls, 0);

  options.expect = Sha256Of("content");
  EXPECT_TRUE(client_->Push(dir + "/a", options).ok());
}

TEST_F(ServerTest, PushLocalErrors) {
  const std::string dir = TestDir("push_errors");
  EXPECT_EQ(client_->Push(dir + "/missing", PushOptions()).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(client_->Push(dir, PushOptions()).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST_F(ServerTest, PullVerifiesAndRenames) {
  const std::string dir = TestDir("pull");
  const std::string content = Pseudorandom(777777, 2);
  const Digest digest = Sha256Of(content);
  service_.blobs[digest.ToString()] = content;
  uint64_t last = 0;
  absl::StatusOr<PullResult> r =
      client_->Pull(digest, dir + "/out", [&](uint64_t done, uint64_t total) {
        EXPECT_EQ(total, content.size());
        EXPECT_GT(done, last);
        last = done;
      });
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->digest, digest);
  EXPECT_EQ(r->bytes, content.size());
  EXPECT_EQ(last, content.size());
  EXPECT_TRUE(ReadBytes(dir + "/out") == content);
  EXPECT_THAT(ReadDirNames(dir), ElementsAre("out"));  // No partial file left.

  // --fsync: the same bytes (made durable first; 20 MB crosses the 8 MiB
  // write-back steps), replacing the file.
  const std::string big = Pseudorandom(20 << 20, 5);
  const Digest big_digest = Sha256Of(big);
  service_.blobs[big_digest.ToString()] = big;
  r = client_->Pull(big_digest, dir + "/out", nullptr, /*fsync_output=*/true);
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->bytes, big.size());
  EXPECT_TRUE(ReadBytes(dir + "/out") == big);
  EXPECT_THAT(ReadDirNames(dir), ElementsAre("out"));
}

TEST_F(ServerTest, PullRejectsCorruptOrShortData) {
  const std::string dir = TestDir("pull_corrupt");
  const std::string content = Pseudorandom(300000, 3);
  const Digest digest = Sha256Of(content);
  service_.blobs[digest.ToString()] = content;
  service_.corrupt_reads = true;
  absl::StatusOr<PullResult> r = client_->Pull(digest, dir + "/out", nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(r.status().message(), HasSubstr(digest.ToString()));
  EXPECT_THAT(ReadDirNames(dir), IsEmpty());

  service_.corrupt_reads = false;
  service_.truncate_reads = true;
  r = client_->Pull(digest, dir + "/out", nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(ReadDirNames(dir), IsEmpty());
}

TEST_F(ServerTest, PullNotFound) {
  const std::string dir = TestDir("pull_missing");
  absl::StatusOr<PullResult> r =
      client_->Pull(*Digest::Parse(kMissingDigest), dir + "/out", nullptr);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(ReadDirNames(dir), IsEmpty());
}

TEST(ClientTest, UnreachableServerIsUnavailable) {
  ClientOptions options;
  options.server = "127.0.0.1:1";
  absl::StatusOr<std::unique_ptr<CasClient>> client =
      CasClient::Create(options);
  ASSERT_TRUE(client.ok());
  absl::StatusOr<v1::StatResponse> r =
      (*client)->Stat(*Digest::Parse(kMissingDigest));
  EXPECT_EQ(r.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("(server 127.0.0.1:1)"));
  options.server = "";
  EXPECT_EQ(CasClient::Create(options).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ClientTest, HashFile) {
  const std::string dir = TestDir("hash");
  const std::string content = Pseudorandom(3 << 20, 4);
  WriteFile(dir + "/f", content);
  absl::StatusOr<std::pair<Digest, uint64_t>> r = HashFile(dir + "/f");
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(r->first, Sha256Of(content));
  EXPECT_EQ(r->second, content.size());
  EXPECT_EQ(HashFile(dir + "/nope").status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(HashFile(dir).status().code(), absl::StatusCode::kInvalidArgument);
  // A FIFO nobody writes to is refused, not waited on.
  ASSERT_EQ(mkfifo((dir + "/fifo").c_str(), 0600), 0) << strerror(errno);
  r = HashFile(dir + "/fifo");
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("is not a regular file"));
}

// Two stages: one collects, one hashes (the shape Pull uses).
TEST(ClientTest, ChunkPipelinePassesEveryChunkInOrder) {
  const std::string content = Pseudorandom(1 << 20, 5);
  for (size_t buffers : {size_t{1}, size_t{3}, size_t{16}}) {
    std::string copy;
    Sha256 hasher;
    ChunkPipeline pipeline({[&copy](const std::string& chunk) {
                              copy += chunk;
                              return absl::OkStatus();
                            },
                            [&hasher](const std::string& chunk) {
                              hasher.Update(chunk);
                              return absl::OkStatus();
                            }},
                           buffers);
    for (size_t pos = 0; pos < content.size(); pos += 4099) {
      std::string buffer = pipeline.Acquire();
      EXPECT_TRUE(buffer.empty());
      buffer.assign(content, pos, 4099);
      ASSERT_TRUE(pipeline.Submit(std::move(buffer)).ok());
    }
    ASSERT_TRUE(pipeline.Finish().ok());
    EXPECT_EQ(copy, content);
    EXPECT_EQ(hasher.Finish(), Sha256Of(content));
  }
  ChunkPipeline empty({[](const std::string&) { return absl::OkStatus(); }});
  EXPECT_TRUE(empty.Finish().ok());
  int seen = 0;
  {
    ChunkPipeline abandoned({[&seen](const std::string&) {
      ++seen;
      return absl::OkStatus();
    }});
    ASSERT_TRUE(abandoned.Submit("x").ok());
  }  // The destructor finishes: the chunk is still processed.
  EXPECT_EQ(seen, 1);
}

TEST(ClientTest, ChunkPipelineRecyclesBuffers) {
  // One buffer: Acquire blocks until the submitted one comes back.
  ChunkPipeline pipeline({[](const std::string&) { return absl::OkStatus(); }},
                         1);
  std::string first = pipeline.Acquire();
  first.assign(100000, 'a');
  const char* storage = first.data();
  ASSERT_TRUE(pipeline.Submit(std::move(first)).ok());
  // The one buffer comes back, emptied, with its storage.
  std::string b = pipeline.Acquire();
  EXPECT_TRUE(b.empty());
  EXPECT_GE(b.capacity(), 100000);
  EXPECT_EQ(b.data(), storage);
  EXPECT_TRUE(pipeline.Finish().ok());
}

TEST(ClientTest, ChunkPipelineStopsAtFirstError) {
  std::atomic<int> first_stage_calls{0};
  std::atomic<int> second_stage_calls{0};
  ChunkPipeline pipeline({[&](const std::string& chunk) {
                            ++first_stage_calls;
                            if (chunk == "bad") {
                              return absl::DataLossError("bad chunk");
                            }
                            return absl::OkStatus();
                          },
                          [&](const std::string&) {
                            ++second_stage_calls;
                            return absl::OkStatus();
                          }},
                         2);
  ASSERT_TRUE(pipeline.Submit("good").ok());
  ASSERT_TRUE(pipeline.Submit("bad").ok());
  // Later chunks are refused once the failure is seen; keep going until
  // then (Acquire never blocks for good: dropped chunks are recycled).
  absl::Status status;
  for (int i = 0; i < 10000 && status.ok(); ++i) {
    std::string b = pipeline.Acquire();
    b = "more";
    status = pipeline.Submit(std::move(b));
  }
  EXPECT_EQ(status.code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(pipeline.Finish().code(), absl::StatusCode::kDataLoss);
  // The failed stage sees nothing after "bad"; the next one at most "good"
  // (which it may also skip if the error came first).
  EXPECT_EQ(first_stage_calls.load(), 2);
  EXPECT_LE(second_stage_calls.load(), 1);
}

TEST(ClientTest, ApplyGrpcEnvironment) {
  unsetenv("CAIRN_GRPC_BDP_PROBE");
  unsetenv("CAIRN_GRPC_WINDOW_BYTES");
  ClientOptions options;
  ASSERT_TRUE(ApplyGrpcEnvironment(&options).ok());
  EXPECT_FALSE(options.bdp_probe);
  EXPECT_EQ(options.stream_window_bytes, 8 << 20);

  setenv("CAIRN_GRPC_BDP_PROBE", "1", 1);
  setenv("CAIRN_GRPC_WINDOW_BYTES", "16M", 1);
  ASSERT_TRUE(ApplyGrpcEnvironment(&options).ok());
  EXPECT_TRUE(options.bdp_probe);
  EXPECT_EQ(options.stream_window_bytes, 16 << 20);
  setenv("CAIRN_GRPC_BDP_PROBE", "0", 1);
  setenv("CAIRN_GRPC_WINDOW_BYTES", "65536", 1);
  ASSERT_TRUE(ApplyGrpcEnvironment(&options).ok());
  EXPECT_FALSE(options.bdp_probe);
  EXPECT_EQ(options.stream_window_bytes, 65536);
  setenv("CAIRN_GRPC_WINDOW_BYTES", "1G", 1);
  ASSERT_TRUE(ApplyGrpcEnvironment(&options).ok());
  EXPECT_EQ(options.stream_window_bytes, 1 << 30);

  ClientOptions before = options;
  for (const char* bad : {"yes", "2", " 1"}) {
    setenv("CAIRN_GRPC_BDP_PROBE", bad, 1);
    absl::Status s = ApplyGrpcEnvironment(&options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("CAIRN_GRPC_BDP_PROBE"));
  }
  unsetenv("CAIRN_GRPC_BDP_PROBE");
  for (const char* bad : {"1000", "2G", "8X", "M", "-8M", "99999999999999G"}) {
    setenv("CAIRN_GRPC_WINDOW_BYTES", bad, 1);
    absl::Status s = ApplyGrpcEnvironment(&options);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("CAIRN_GRPC_WINDOW_BYTES"));
  }
  EXPECT_EQ(options.stream_window_bytes, before.stream_window_bytes);
  unsetenv("CAIRN_GRPC_WINDOW_BYTES");
}

// ---------------------------------------------------------------------------
// Commands.

TEST_F(ServerTest, PushCommandOutputs) {
  const std::string dir = TestDir("cmd_push");
  WriteFile(dir + "/a.tar.gz", "tarball bytes");
  const std::string digest = Sha256Of("tarball bytes").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(flags_, dir + "/a.tar.gz", "", io);
            }),
            0);
  EXPECT_EQ(out_.str(), digest + " 13 stored\n");
  EXPECT_EQ(err_.str(), "");
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(flags_, dir + "/a.tar.gz", digest, io);
            }),
            0);
  EXPECT_EQ(out_.str(), digest + " 13 already stored\n");

  cli::GlobalFlags json = flags_;
  json.json = true;
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(json, dir + "/a.tar.gz", "", io);
            }),
            0);
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["digest"], digest);
  EXPECT_EQ(j["size"], 13);
  EXPECT_EQ(j["already_present"], true);
  EXPECT_EQ(j["summary"]["compression"], "gzip");
  EXPECT_EQ(j["summary"]["bytes_newly_stored"], 0);
  EXPECT_EQ(j["summary"]["metadata"]["name"], "demo");
  EXPECT_EQ(j["summary"]["stripped_setid_paths"][0], "bin/su");

  cli::GlobalFlags quiet = flags_;
  quiet.quiet = true;
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(quiet, dir + "/a.tar.gz", "", io);
            }),
            0);
  EXPECT_EQ(out_.str(), digest + "\n");
}

TEST_F(ServerTest, PushCommandErrors) {
  const std::string dir = TestDir("cmd_push_errors");
  WriteFile(dir + "/a", "x");
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(flags_, dir + "/a", "sha256:nothex", io);
            }),
            cli::kExitUsage);
  EXPECT_THAT(err_.str(), StartsWith("cairn: error: INVALID_ARGUMENT: "));
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPush(flags_, dir + "/a", kMissingDigest, io);
            }),
            cli::kExitFailure);
  EXPECT_THAT(err_.str(), StartsWith("cairn: error: DATA_LOSS: "));
  EXPECT_EQ(out_.str(), "");
  EXPECT_EQ(service_.write_calls, 0);
}

TEST_F(ServerTest, PullCommand) {
  const std::string dir = TestDir("cmd_pull");
  service_.blobs[Sha256Of("abc").ToString()] = "abc";
  const std::string digest = Sha256Of("abc").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPull(flags_, digest, dir + "/o", io);
            }),
            0);
  EXPECT_EQ(out_.str(), absl::StrCat(digest, " 3 ", dir, "/o\n"));
  EXPECT_EQ(ReadBytes(dir + "/o"), "abc");

  service_.corrupt_reads = true;
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPull(flags_, digest, dir + "/p", io);
            }),
            cli::kExitFailure);
  EXPECT_THAT(err_.str(), StartsWith("cairn: error: DATA_LOSS: "));
  EXPECT_FALSE(Exists(dir + "/p"));

  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPull(flags_, kMissingDigest, dir + "/q", io);
            }),
            cli::kExitFailure);
  EXPECT_THAT(err_.str(), StartsWith("cairn: error: NOT_FOUND: "));
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunPull(flags_, "abc", dir + "/q", io);
            }),
            cli::kExitUsage);
}

TEST_F(ServerTest, StatCommand) {
  service_.blobs[Sha256Of("abc").ToString()] = "abc";
  const std::string digest = Sha256Of("abc").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunStat(flags_, digest, false, io);
            }),
            0);
  EXPECT_THAT(out_.str(), HasSubstr("digest:         " + digest + "\n"));
  EXPECT_THAT(out_.str(), HasSubstr("kind:           artefact\n"));
  EXPECT_THAT(out_.str(), HasSubstr("size:           3 (3 B)\n"));
  EXPECT_THAT(out_.str(), HasSubstr("created:        2023-11-14T22:13:20Z\n"));
  EXPECT_THAT(out_.str(), HasSubstr("name:           demo\n"));
  EXPECT_THAT(out_.str(), HasSubstr("setid stripped: bin/su\n"));

  cli::GlobalFlags json = flags_;
  json.json = true;
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunStat(json, digest, false, io);
            }),
            0);
  nlohmann::json j = nlohmann::json::parse(out_.str());
  EXPECT_EQ(j["digest"], digest);
  EXPECT_EQ(j["size"], 3);
  EXPECT_EQ(j["kind"], "artefact");
  EXPECT_EQ(j["created_unix_seconds"], 1700000000);
  EXPECT_EQ(j["index_durable"], true);
  EXPECT_EQ(j["summary"]["file_count"], 4);

  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunStat(flags_, kMissingDigest, false, io);
            }),
            cli::kExitFailure);
  EXPECT_EQ(err_.str(), absl::StrCat("cairn: error: NOT_FOUND: ",
                                     kMissingDigest, " not found\n"));
}

TEST_F(ServerTest, InspectCommand) {
  service_.blobs[Sha256Of("abc").ToString()] = "abc";
  const std::string digest = Sha256Of("abc").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunInspect(flags_, digest, io);
            }),
            0);
  EXPECT_EQ(out_.str(),
            "0755 0 bin/\n"
            "0755 12345 bin/tool\n"
            "0755 12345 bin/tool2 => bin/tool\n"
            "0777 0 run -> bin/tool\n");

  cli::GlobalFlags json = flags_;
  json.json = true;
  EXPECT_EQ(
      Run([&](const cli::Io& io) { return cli::RunInspect(json, digest, io); }),
      0);
  nlohmann::json j = nlohmann::json::parse(out_.str());
  ASSERT_TRUE(j.is_array());
  ASSERT_EQ(j.size(), 4u);
  EXPECT_EQ(j[0]["type"], "directory");
  EXPECT_EQ(j[1]["path"], "bin/tool");
  EXPECT_EQ(j[1]["mode"], "0755");
  EXPECT_EQ(j[1]["size"], 12345);
  EXPECT_EQ(j[1]["content_digest"], kMissingDigest);
  EXPECT_EQ(j[3]["type"], "symlink");
  EXPECT_EQ(j[3]["link_target"], "bin/tool");

  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunInspect(json, kMissingDigest, io);
            }),
            cli::kExitFailure);
  EXPECT_EQ(out_.str(), "");
  EXPECT_THAT(err_.str(), StartsWith("cairn: error: NOT_FOUND: "));
}

TEST_F(ServerTest, InspectOfACutListingFails) {
  service_.blobs[Sha256Of("abc").ToString()] = "abc";
  service_.cut_listing = true;
  const std::string digest = Sha256Of("abc").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunInspect(flags_, digest, io);
            }),
            cli::kExitFailure);
  EXPECT_EQ(err_.str(),
            absl::StrCat("cairn: error: DATA_LOSS: the listing of ", digest,
                         " ended after 2 of its 4 entries\n"));
}

// A server that does not announce the count (older ones) is listed as it
// streams: nothing to compare with.
TEST_F(ServerTest, InspectOfAnOlderServerTakesTheListingAsItComes) {
  service_.blobs[Sha256Of("abc").ToString()] = "abc";
  service_.older_server = true;
  service_.cut_listing = true;
  const std::string digest = Sha256Of("abc").ToString();
  EXPECT_EQ(Run([&](const cli::Io& io) {
              return cli::RunInspect(flags_, digest, io);
            }),
            0);
  EXPECT_EQ(out_.str(), "0755 0 bin/\n0755 12345 bin/tool\n");
}

TEST(CommandsTest, UnreachableServer) {
  cli::GlobalFlags flags;
  flags.server = "127.0.0.1:1";
  std::ostringstream out, err;
  cli::Io io{&out, &err, false};
  EXPECT_EQ(cli::RunStat(flags, kMissingDigest, false, io), cli::kExitFailure);
  EXPECT_THAT(err.str(), StartsWith("cairn: error: UNAVAILABLE: "));
  EXPECT_EQ(out.str(), "");
}

TEST(CommandsTest, DigestPrintsAndRecordsTheDigest) {
  const std::string dir = TestDir("cmd_digest");
  WriteFile(dir + "/f", "some bytes");
  setenv("CAIRN_CACHE_DIR", (dir + "/cache").c_str(), 1);
  cli::GlobalFlags flags;
  std::ostringstream out, err;
  cli::Io io{&out, &err, false};
  ASSERT_EQ(cli::RunDigest(flags, dir + "/f", io), 0) << err.str();
  EXPECT_EQ(out.str(), absl::StrCat(Sha256Of("some bytes").ToString(), " 10 ",
                                    dir, "/f\n"));
  // One cache entry was recorded.
  int entries = 0;
  for (const auto& e :
       std::filesystem::directory_iterator(dir + "/cache/digests")) {
    (void)e;
    ++entries;
  }
  EXPECT_EQ(entries, 1);
  unsetenv("CAIRN_CACHE_DIR");
  EXPECT_EQ(cli::RunDigest(flags, dir + "/missing", io), 1);
}

TEST(CommandsTest, PackAndCheck) {
  const std::string dir = TestDir("cmd_pack");
  ASSERT_EQ(mkdir((dir + "/tree").c_str(), 0755), 0);
  WriteFile(dir + "/tree/hello", "hi\n");
  cli::GlobalFlags flags;
  std::ostringstream out, err;
  cli::Io io{&out, &err, false};
  ASSERT_EQ(cli::RunPack(flags, dir + "/tree", dir + "/t.tar.gz", io), 0)
      << err.str();
  const std::string bytes = ReadBytes(dir + "/t.tar.gz");
  EXPECT_EQ(out.str(), absl::StrCat(Sha256Of(bytes).ToString(), " ",
                                    bytes.size(), " ", dir, "/t.tar.gz\n"));

  out.str("");
  EXPECT_EQ(cli::RunPackCheck(flags, dir + "/t.tar.gz", io), 0);
  EXPECT_EQ(out.str(), absl::StrCat("ok: ", dir,
                                    "/t.tar.gz is normalised (1 entries, "
                                    "gzip)\n"));

  ASSERT_EQ(
      system(("tar czf " + dir + "/sys.tar.gz -C " + dir + "/tree .").c_str()),
      0);
  out.str("");
  EXPECT_EQ(cli::RunPackCheck(flags, dir + "/sys.tar.gz", io),
            cli::kExitFailure);
  EXPECT_THAT(out.str(), StartsWith(dir + "/sys.tar.gz: not normalised\n  - "));

  cli::GlobalFlags json;
  json.json = true;
  out.str("");
  EXPECT_EQ(cli::RunPackCheck(json, dir + "/sys.tar.gz", io),
            cli::kExitFailure);
  nlohmann::json j = nlohmann::json::parse(out.str());
  EXPECT_EQ(j["ok"], false);
  EXPECT_FALSE(j["reasons"].empty());

  err.str("");
  EXPECT_EQ(cli::RunPack(flags, dir + "/tree", "", io), cli::kExitUsage);
  EXPECT_EQ(cli::RunPack(flags, dir + "/nope", dir + "/x.tar.gz", io),
            cli::kExitFailure);
  EXPECT_THAT(err.str(), HasSubstr("cairn: error: NOT_FOUND: "));
  EXPECT_EQ(cli::RunPackCheck(flags, dir + "/nope", io), cli::kExitFailure);
}

TEST(CommandsTest, DefaultServer) {
  unsetenv("CAIRN_SERVER");
  EXPECT_EQ(cli::DefaultServer(), "127.0.0.1:8470");
  setenv("CAIRN_SERVER", "cairn.example:9000", 1);
  EXPECT_EQ(cli::DefaultServer(), "cairn.example:9000");
  setenv("CAIRN_SERVER", "", 1);
  EXPECT_EQ(cli::DefaultServer(), "127.0.0.1:8470");
  unsetenv("CAIRN_SERVER");
}

TEST(CommandsTest, DefaultActor) {
  setenv("CAIRN_ACTOR", "ci@build-17", 1);
  EXPECT_EQ(cli::DefaultActor(), "ci@build-17");
  unsetenv("CAIRN_ACTOR");
  setenv("USER", "alice", 1);
  EXPECT_THAT(cli::DefaultActor(), StartsWith("alice@"));
  unsetenv("USER");
  EXPECT_FALSE(cli::DefaultActor().empty());
}

// ---------------------------------------------------------------------------
// Formatting.

TEST(FormatTest, Refs) {
  const std::string d1 = Sha256Of("one").ToString();
  const std::string d2 = Sha256Of("two").ToString();
  v1::Ref ref;
  ref.set_ref("tool@v1.0.0");
  ref.set_kind(v1::RELEASE);
  ref.set_generation(7);
  ref.set_updated_at_micros(1'000'000);
  ref.set_updated_by("alice");
  v1::Slot* s = ref.add_slots();
  s->set_slot("linux-amd64");
  s->set_digest(d1);
  s = ref.add_slots();
  s->set_slot("noarch");
  s->set_digest(d2);
  ref.set_source_ref("tool@main");
  ref.set_source_generation(5);
  EXPECT_EQ(cli::FormatRefLine(ref),
            "tool@v1.0.0 release 7 linux-amd64,noarch 1970-01-01T00:00:01Z "
            "alice");
  EXPECT_EQ(cli::FormatRef(ref),
            absl::StrCat("tool@v1.0.0 release generation 7\n  linux-amd64 ", d1,
                         "\n  noarch ", d2,
                         "\n  promoted from tool@main generation 5\n"));
  ref.set_yanked(true);
  ref.set_yank_reason("broken");
  EXPECT_THAT(cli::FormatRefLine(ref), StartsWith("tool@v1.0.0 yanked 7 "));
  nlohmann::ordered_json j = cli::RefToJson(ref);
  EXPECT_EQ(j["kind"], "release");
  EXPECT_EQ(j["generation"], 7);
  EXPECT_EQ(j["updated_at"], "1970-01-01T00:00:01Z");
  EXPECT_EQ(j["slots"][1]["digest"], d2);
  EXPECT_EQ(j["source_ref"], "tool@main");
  EXPECT_EQ(j["yank_reason"], "broken");

  v1::RefHistoryEntry e;
  e.set_generation(3);
  e.set_action(v1::RefHistoryEntry::SET_SLOT);
  e.set_actor("ci");
  v1::SlotChange* c = e.add_changes();
  c->set_slot("linux-amd64");
  c->set_new_digest(d1);
  EXPECT_EQ(cli::FormatHistoryEntry(e),
            absl::StrCat("3 1970-01-01T00:00:00Z set-slot ci\n  linux-amd64 "
                         "- -> ",
                         d1, "\n"));
  j = cli::RefHistoryEntryToJson(e);
  EXPECT_EQ(j["action"], "set-slot");
  EXPECT_FALSE(j["changes"][0].contains("old_digest"));
  EXPECT_FALSE(j.contains("reason"));

  v1::ResolveResponse r;
  r.set_ref("tool@main");
  r.set_slot_requested("linux-arm64");
  r.set_slot_used("noarch");
  r.set_digest(d2);
  r.set_generation(4);
  r.set_kind(v1::BRANCH);
  EXPECT_EQ(cli::FormatResolvedLine(r),
            "tool@main noarch generation 4 (no linux-arm64 slot: noarch "
            "fallback)");
  EXPECT_THAT(cli::FormatResolve(r),
              HasSubstr("slot:       noarch (no linux-arm64 slot: noarch "
                        "fallback)\n"));
  EXPECT_EQ(cli::ResolveToJson(r)["fallback"], true);
  r.set_slot_used("linux-arm64");
  EXPECT_EQ(cli::FormatResolvedLine(r), "tool@main linux-arm64 generation 4");
  EXPECT_EQ(cli::ResolveToJson(r)["fallback"], false);
}

TEST(FormatTest, ErrorModeAndBytes) {
  EXPECT_EQ(cli::FormatError(absl::DataLossError("bad bytes")),
            "cairn: error: DATA_LOSS: bad bytes");
  EXPECT_EQ(cli::FormatMode(0755), "0755");
  EXPECT_EQ(cli::FormatMode(0644), "0644");
  EXPECT_EQ(cli::FormatMode(0100644), "0644");
  EXPECT_EQ(cli::HumanBytes(0), "0 B");
  EXPECT_EQ(cli::HumanBytes(1023), "1023 B");
  EXPECT_EQ(cli::HumanBytes(1536), "1.5 KiB");
  EXPECT_EQ(cli::HumanBytes(10ull << 20), "10.0 MiB");
  EXPECT_EQ(cli::HumanBytes(3ull << 40), "3.0 TiB");
  EXPECT_EQ(cli::FormatUnixTime(0), "1970-01-01T00:00:00Z");
}

TEST(FormatTest, FileEntries) {
  v1::FileEntry e;
  e.set_path("bin/tool");
  e.set_type(v1::FileEntry::REGULAR);
  e.set_mode(0755);
  e.set_size(12345);
  EXPECT_EQ(cli::FormatFileEntry(e), "0755 12345 bin/tool");
  e.set_type(v1::FileEntry::DIRECTORY);
  e.set_size(0);
  e.set_path("bin");
  EXPECT_EQ(cli::FormatFileEntry(e), "0755 0 bin/");
  e.set_path("bin/");
  EXPECT_EQ(cli::FormatFileEntry(e), "0755 0 bin/");
  e.set_type(v1::FileEntry::SYMLINK);
  e.set_mode(0777);
  e.set_path("run");
  e.set_link_target("bin/tool");
  EXPECT_EQ(cli::FormatFileEntry(e), "0777 0 run -> bin/tool");
  nlohmann::ordered_json j = cli::FileEntryToJson(e);
  EXPECT_EQ(j.dump(),
            R"({"path":"run","type":"symlink","mode":"0777","size":0,)"
            R"("link_target":"bin/tool"})");
}

TEST(FormatTest, Progress) {
  EXPECT_EQ(cli::FormatProgress(1 << 20, 4 << 20, 0.5),
            "  1.0 MiB / 4.0 MiB  25%  2.1 MB/s");
  EXPECT_EQ(cli::FormatProgress(512, 0, 0), "  512 B");
  EXPECT_EQ(cli::FormatProgress(5, 4, 0), "  5 B / 4 B  100%");

  std::ostringstream err;
  cli::ProgressMeter off(&err, false);
  off.Update(1, 2);
  off.Finish();
  EXPECT_EQ(err.str(), "");
  cli::ProgressMeter on(&err, true);
  for (int i = 0; i < 1000; ++i) on.Update(i, 1000);  // Throttled.
  on.Finish();
  const std::string drawn = err.str();
  EXPECT_THAT(drawn, StartsWith("\r  0 B / 1000 B  0%"));
  EXPECT_EQ(drawn.back(), '\n');
  EXPECT_LE(std::count(drawn.begin(), drawn.end(), '\r'), 3);
}

}  // namespace
}  // namespace cairn
