// Copyright 2026 The Cairn Authors.

#include "tools/cairn/client.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/strip.h"
#include "grpcpp/grpcpp.h"
#include "store/paths.h"
#include "store/unique_fd.h"
#include "tools/cairn/digest_cache.h"
#include "tools/cleanup/remove_on_signal.h"
#include "tools/rpc/status.h"

namespace cairn {
namespace {

// Pull: buffers (1 MiB messages) in flight between receiving, writing and
// hashing; and how much is written before write-back of it is started.
constexpr size_t kPullBuffers = 8;
constexpr uint64_t kPullWritebackBytes = 8 << 20;

absl::Status Errno(absl::string_view what) {
  return absl::ErrnoToStatus(errno, what);
}

// Reads until `size` bytes or end of file. Returns the bytes read.
absl::StatusOr<size_t> ReadFull(int fd, char* data, size_t size,
                                const std::string& path) {
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, data + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(absl::StrCat("read ", path));
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  return got;
}

absl::Status WriteFull(int fd, const std::string& data,
                       const std::string& path) {
  const char* p = data.data();
  size_t left = data.size();
  while (left > 0) {
    ssize_t n = write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Errno(absl::StrCat("write ", path));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

absl::StatusOr<int> OpenRegular(const std::string& path, uint64_t* size) {
  // O_NONBLOCK: opening a FIFO without a writer would wait for one; the
  // type is checked below, and regular files ignore the flag.
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (fd < 0) return Errno(path);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    absl::Status status = Errno(absl::StrCat("stat ", path));
    close(fd);
    return status;
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return absl::InvalidArgumentError(
        absl::StrCat(path, " is not a regular file"));
  }
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  *size = static_cast<uint64_t>(st.st_size);
  return fd;
}

absl::StatusOr<std::pair<Digest, uint64_t>> HashFd(int fd,
                                                   const std::string& path) {
  absl::StatusOr<FileDigest> hashed = Sha256OfFd(fd);
  if (!hashed.ok()) {
    return absl::Status(
        hashed.status().code(),
        absl::StrCat("read ", path, ": ", hashed.status().message()));
  }
  return std::make_pair(hashed->digest, hashed->size);
}

}  // namespace

absl::StatusOr<std::pair<Digest, uint64_t>> HashFile(const std::string& path,
                                                     struct stat* stamps) {
  uint64_t size = 0;
  absl::StatusOr<int> fd = OpenRegular(path, &size);
  if (!fd.ok()) return fd.status();
  UniqueFd owner(*fd);
  if (stamps != nullptr && fstat(owner.get(), stamps) != 0) {
    return Errno(absl::StrCat("stat ", path));
  }
  return HashFd(owner.get(), path);
}

// ---------------------------------------------------------------------------
// ChunkPipeline.

struct ChunkPipeline::State {
  State(std::vector<Stage> s, size_t max)
      : stages(std::move(s)),
        max_buffers(std::max<size_t>(max, 1)),
        ready(stages.size()),
        queues(stages.size()),
        exited(stages.size(), false) {}

  // Keeps `buffer` (emptied, capacity kept) for Acquire() unless the pool
  // is full. Requires mu.
  void Recycle(std::string buffer) {
    if (buffer.capacity() == 0 || pool.size() >= max_buffers) return;
    buffer.clear();
    pool.push_back(std::move(buffer));
  }

  // Stage `i`'s thread: until its input is closed (by Finish() for the
  // first stage, by the previous stage's exit for the others) and drained.
  void Loop(size_t i) {
    const bool last = i + 1 == stages.size();
    std::unique_lock<std::mutex> lock(mu);
    for (;;) {
      ready[i].wait(lock, [&] {
        return !queues[i].empty() || (i == 0 ? closed : exited[i - 1]);
      });
      if (queues[i].empty()) break;
      std::string chunk = std::move(queues[i].front());
      queues[i].pop_front();
      const bool skip = !error.ok();
      lock.unlock();
      absl::Status status = skip ? absl::OkStatus() : stages[i](chunk);
      lock.lock();
      if (!status.ok() && error.ok()) error = std::move(status);
      if (last) {
        Recycle(std::move(chunk));
        --queued;
        space.notify_one();
      } else {
        queues[i + 1].push_back(std::move(chunk));
        ready[i + 1].notify_one();
      }
    }
    exited[i] = true;
    if (!last) ready[i + 1].notify_one();
  }

  const std::vector<Stage> stages;
  const size_t max_buffers;
  std::mutex mu;
  std::vector<std::condition_variable> ready;   // Chunk queued for stage i,
                                                // or its input closed.
  std::condition_variable space;                // `queued` went down.
  std::vector<std::deque<std::string>> queues;  // Guarded by mu.
  std::vector<bool> exited;                     // Guarded by mu.
  std::vector<std::string> pool;                // Guarded by mu.
  size_t queued = 0;      // Submitted, not through every stage. Guarded by mu.
  bool closed = false;    // Guarded by mu.
  absl::Status error;     // The first stage error. Guarded by mu.
  bool finished = false;  // Producer thread only.
  std::vector<std::thread> threads;  // Started last.
};

ChunkPipeline::ChunkPipeline(std::vector<Stage> stages, size_t max_buffers)
    : state_(std::make_unique<State>(std::move(stages), max_buffers)) {
  for (size_t i = 0; i < state_->stages.size(); ++i) {
    state_->threads.emplace_back([s = state_.get(), i] { s->Loop(i); });
  }
}

ChunkPipeline::~ChunkPipeline() {
  if (!state_->finished) Finish().IgnoreError();
}

std::string ChunkPipeline::Acquire() {
  std::unique_lock<std::mutex> lock(state_->mu);
  state_->space.wait(lock,
                     [this] { return state_->queued < state_->max_buffers; });
  if (state_->pool.empty()) return std::string();
  std::string buffer = std::move(state_->pool.back());
  state_->pool.pop_back();
  return buffer;
}

absl::Status ChunkPipeline::Submit(std::string chunk) {
  std::lock_guard<std::mutex> lock(state_->mu);
  if (!state_->error.ok() || chunk.empty()) {
    state_->Recycle(std::move(chunk));
    return state_->error;
  }
  ++state_->queued;
  state_->queues[0].push_back(std::move(chunk));
  state_->ready[0].notify_one();
  return absl::OkStatus();
}

absl::Status ChunkPipeline::Finish() {
  {
    std::lock_guard<std::mutex> lock(state_->mu);
    state_->closed = true;
  }
  state_->ready[0].notify_one();
  for (std::thread& t : state_->threads) t.join();
  state_->finished = true;
  std::lock_guard<std::mutex> lock(state_->mu);
  return state_->error;
}

// ---------------------------------------------------------------------------
// Channel settings.

absl::Status ApplyGrpcEnvironment(ClientOptions* options) {
  bool bdp_probe = options->bdp_probe;
  int window = options->stream_window_bytes;
  if (const char* v = std::getenv("CAIRN_GRPC_BDP_PROBE"); v && *v) {
    const absl::string_view value(v);
    if (value == "1") {
      bdp_probe = true;
    } else if (value == "0") {
      bdp_probe = false;
    } else {
      return absl::InvalidArgumentError(absl::StrCat(
          "CAIRN_GRPC_BDP_PROBE must be 0 or 1, not \"", value, "\""));
    }
  }
  if (const char* v = std::getenv("CAIRN_GRPC_WINDOW_BYTES"); v && *v) {
    absl::string_view value(v);
    uint64_t scale = 1;
    if (absl::ConsumeSuffix(&value, "K")) {
      scale = uint64_t{1} << 10;
    } else if (absl::ConsumeSuffix(&value, "M")) {
      scale = uint64_t{1} << 20;
    } else if (absl::ConsumeSuffix(&value, "G")) {
      scale = uint64_t{1} << 30;
    }
    uint64_t n = 0;
    if (!absl::SimpleAtoi(value, &n) || n > (uint64_t{1} << 30) ||
        n * scale < (uint64_t{64} << 10) || n * scale > (uint64_t{1} << 30)) {
      return absl::InvalidArgumentError(
          absl::StrCat("CAIRN_GRPC_WINDOW_BYTES must be 65536 to 1073741824 "
                       "bytes (or 64K to 1G), not \"",
                       v, "\""));
    }
    window = static_cast<int>(n * scale);
  }
  options->bdp_probe = bdp_probe;
  options->stream_window_bytes = window;
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// CasClient.

absl::StatusOr<std::unique_ptr<CasClient>> CasClient::Create(
    const ClientOptions& options) {
  if (options.server.empty()) {
    return absl::InvalidArgumentError("empty server address");
  }
  grpc::ChannelArguments args;
  args.SetMaxSendMessageSize(kMaxMessageBytes);
  args.SetMaxReceiveMessageSize(kMaxMessageBytes);
  // The receive window (see ClientOptions::bdp_probe). BDP probing
  // overrides the lookahead from the first SETTINGS on, so it is set only
  // when probing is off.
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, options.bdp_probe ? 1 : 0);
  if (!options.bdp_probe) {
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                options.stream_window_bytes);
  }
  std::shared_ptr<grpc::Channel> channel = grpc::CreateCustomChannel(
      options.server, grpc::InsecureChannelCredentials(), args);
  return std::unique_ptr<CasClient>(new CasClient(options, std::move(channel)));
}

CasClient::CasClient(const ClientOptions& options,
                     std::shared_ptr<grpc::Channel> channel)
    : options_(options),
      channel_(std::move(channel)),
      stub_(v1::Cas::NewStub(channel_)) {}

absl::Status RpcStatus(const grpc::Status& status, const std::string& server) {
  absl::Status converted = FromGrpcStatus(status);
  if (converted.code() == absl::StatusCode::kUnavailable ||
      converted.code() == absl::StatusCode::kDeadlineExceeded) {
    return absl::Status(
        converted.code(),
        absl::StrCat(converted.message(), " (server ", server, ")"));
  }
  return converted;
}

absl::Status CasClient::RpcError(const grpc::Status& status) const {
  return RpcStatus(status, options_.server);
}

void CasClient::SetUnaryDeadline(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        options_.unary_timeout);
}

absl::StatusOr<std::vector<std::string>> CasClient::FindMissing(
    const std::vector<Digest>& digests) {
  v1::FindMissingRequest request;
  for (const Digest& d : digests) request.add_digests(d.ToString());
  v1::FindMissingResponse response;
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  grpc::Status status = stub_->FindMissing(&context, request, &response);
  if (!status.ok()) return RpcError(status);
  return std::vector<std::string>(response.missing_digests().begin(),
                                  response.missing_digests().end());
}

absl::StatusOr<v1::StatResponse> CasClient::Stat(const Digest& digest,
                                                 bool wait_for_index) {
  v1::StatRequest request;
  request.set_digest(digest.ToString());
  request.set_wait_for_index(wait_for_index);
  v1::StatResponse response;
  grpc::ClientContext context;
  if (!wait_for_index) SetUnaryDeadline(&context);
  grpc::Status status = stub_->Stat(&context, request, &response);
  if (!status.ok()) return RpcError(status);
  return response;
}

absl::StatusOr<v1::WriteResponse> CasClient::Push(const std::string& path,
                                                  const PushOptions& options) {
  uint64_t size = 0;
  absl::StatusOr<int> opened = OpenRegular(path, &size);
  if (!opened.ok()) return opened.status();
  UniqueFd fd(*opened);

  // The digest, which FindMissing needs: from the digest cache when the
  // file is unchanged since it was last hashed, else a first pass over the
  // file (the upload's second read is then served from the page cache).
  const int64_t stat_time = DigestCache::NowNanos();
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return Errno(absl::StrCat("stat ", path));
  const DigestCache cache = DigestCache::Default();
  Digest digest;
  if (std::optional<Digest> cached = cache.Lookup(st); cached.has_value()) {
    digest = *cached;
  } else {
    absl::StatusOr<std::pair<Digest, uint64_t>> hashed = HashFd(fd.get(), path);
    if (!hashed.ok()) return hashed.status();
    digest = hashed->first;
    size = hashed->second;
    cache.Store(st, stat_time, digest);
  }
  if (options.expect.has_value() && *options.expect != digest) {
    return absl::DataLossError(absl::StrCat(
        path, " has digest ", digest.ToString(), " but --expect is ",
        options.expect->ToString(), "; nothing uploaded"));
  }

  absl::StatusOr<std::vector<std::string>> missing = FindMissing({digest});
  if (!missing.ok()) return missing.status();
  if (missing->empty()) {
    absl::StatusOr<v1::StatResponse> stat =
        Stat(digest, /*wait_for_index=*/!options.no_wait);
    // Stored only as some artefact's file content: upload it to be indexed
    // as an artefact of its own.
    if (stat.ok() && stat->kind() == "artefact") {
      v1::WriteResponse response;
      response.set_digest(stat->digest());
      response.set_size(stat->size());
      response.set_already_present(true);
      response.set_index_state(stat->index_state());
      *response.mutable_summary() = stat->summary();
      response.mutable_summary()->set_bytes_newly_stored(0);
      if (options.progress) options.progress(size, size);
      return response;
    }
    // Deleted in between: upload after all.
    if (!stat.ok() && stat.status().code() != absl::StatusCode::kNotFound) {
      return stat.status();
    }
  }

  if (lseek(fd.get(), 0, SEEK_SET) != 0) {
    return Errno(absl::StrCat("seek ", path));
  }
  return Upload(fd.get(), digest, options.no_wait, size, options.progress);
}

absl::StatusOr<v1::WriteResponse> CasClient::Upload(
    int fd, const Digest& digest, bool no_wait, uint64_t size,
    const ProgressFn& progress) {
  v1::WriteResponse response;
  grpc::ClientContext context;
  std::unique_ptr<grpc::ClientWriter<v1::WriteRequest>> writer =
      stub_->Write(&context, &response);
  uint64_t sent = 0;
  bool first = true;
  bool stream_ok = true;
  absl::Status local_error;
  v1::WriteRequest request;
  while (stream_ok) {
    request.Clear();
    if (first) {
      request.mutable_header()->set_expected_digest(digest.ToString());
      request.mutable_header()->set_expected_size(size);
      request.mutable_header()->set_acknowledge_before_index(no_wait);
    }
    std::string* data = request.mutable_data();
    data->resize(kUploadChunkBytes);
    absl::StatusOr<size_t> n =
        ReadFull(fd, data->data(), data->size(), "upload file");
    if (!n.ok()) {
      local_error = n.status();
      break;
    }
    data->resize(*n);
    if (*n == 0 && !first) break;
    sent += *n;
    if (sent > size) {
      local_error = absl::AbortedError("file grew since it was hashed");
      break;
    }
    stream_ok = writer->Write(request);
    first = false;
    if (progress) progress(sent, size);
    if (*n < kUploadChunkBytes) break;
  }
  if (local_error.ok() && stream_ok && sent != size) {
    local_error =
        absl::AbortedError(absl::StrCat("file changed since it was hashed (",
                                        size, " bytes then, ", sent, " now)"));
  }
  if (!local_error.ok()) {
    context.TryCancel();
    writer->Finish();
    return local_error;
  }
  if (stream_ok) writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return RpcError(status);
  if (response.digest() != digest.ToString()) {
    return absl::DataLossError(absl::StrCat("server stored ", response.digest(),
                                            " for ", digest.ToString()));
  }
  return response;
}

absl::StatusOr<PullResult> CasClient::Pull(const Digest& digest,
                                           const std::string& out_path,
                                           const ProgressFn& progress,
                                           bool fsync_output) {
  absl::StatusOr<v1::StatResponse> stat = Stat(digest);
  if (!stat.ok()) return stat.status();
  const uint64_t expected_size = stat->size();

  // A name of this pull's own (O_EXCL, never a symlink's target): two
  // pulls to the same FILE must not write into one partial file.
  static std::atomic<uint64_t> counter{0};
  const std::string partial =
      absl::StrCat(out_path, ".partial-", getpid(), "-", counter++);
  UniqueFd fd(open(partial.c_str(),
                   O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0666));
  if (fd.get() < 0) return Errno(absl::StrCat("create ", partial));
  // Removed also if the command is killed (Ctrl-C) before it ends.
  RemoveOnSignal remove_on_signal(partial);

  // Receive on this thread; write and hash on the pipeline's two threads.
  // Each message is parsed into `response`, whose data buffer is then
  // swapped with an empty one from the pipeline's pool: after the first
  // few messages nothing is allocated (a fresh 1 MiB buffer per message
  // costs an mmap/munmap pair and its page faults in glibc).
  absl::Status result;
  uint64_t received = 0;
  Digest actual;
  {
    const int out = fd.get();
    uint64_t written = 0;
    uint64_t writeback_from = 0;
    Sha256 hasher;
    ChunkPipeline pipeline(
        {[&](const std::string& chunk) -> absl::Status {
           if (absl::Status s = WriteFull(out, chunk, partial); !s.ok()) {
             return s;
           }
           written += chunk.size();
           if (fsync_output &&
               written - writeback_from >= kPullWritebackBytes) {
             // Start write-back now, so that the fsync at the end waits
             // for the tail only. Errors surface in that fsync.
             sync_file_range(out, static_cast<off_t>(writeback_from),
                             static_cast<off_t>(written - writeback_from),
                             SYNC_FILE_RANGE_WRITE);
             writeback_from = written;
           }
           return absl::OkStatus();
         },
         [&hasher](const std::string& chunk) {
           hasher.Update(chunk);
           return absl::OkStatus();
         }},
        kPullBuffers);
    grpc::ClientContext context;
    v1::ReadRequest request;
    request.set_digest(digest.ToString());
    std::unique_ptr<grpc::ClientReader<v1::ReadResponse>> reader =
        stub_->Read(&context, request);
    v1::ReadResponse response;
    while (reader->Read(&response)) {
      std::string* data = response.mutable_data();
      received += data->size();
      if (received > expected_size) {
        result = absl::DataLossError(absl::StrCat("server sent more than the ",
                                                  expected_size, " bytes of ",
                                                  digest.ToString()));
        break;
      }
      std::string chunk = pipeline.Acquire();
      chunk.swap(*data);
      result = pipeline.Submit(std::move(chunk));
      if (!result.ok()) break;
      if (progress) progress(received, expected_size);
    }
    if (!result.ok()) context.TryCancel();
    grpc::Status status = reader->Finish();
    if (result.ok() && !status.ok()) result = RpcError(status);
    absl::Status stages = pipeline.Finish();
    if (result.ok()) result = stages;
    actual = hasher.Finish();
  }
  if (result.ok() && (received != expected_size || actual != digest)) {
    result = absl::DataLossError(absl::StrCat(
        "received ", received, " bytes hashing to ", actual.ToString(),
        ", expected ", expected_size, " bytes of ", digest.ToString()));
  }
  if (result.ok() && fsync_output && fsync(fd.get()) != 0) {
    result = Errno(absl::StrCat("fsync ", partial));
  }
  if (const int err = fd.Reset(); err != 0 && result.ok()) {
    result = absl::ErrnoToStatus(err, absl::StrCat("close ", partial));
  }
  if (result.ok() && rename(partial.c_str(), out_path.c_str()) != 0) {
    result = Errno(absl::StrCat("rename ", partial, " to ", out_path));
  }
  if (!result.ok()) {
    unlink(partial.c_str());
    return result;
  }
  if (fsync_output) {
    // The rename itself is durable once the directory is.
    const std::string dir = ParentDirectory(out_path);
    UniqueFd dfd(open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (dfd.get() < 0 || fsync(dfd.get()) != 0) {
      return Errno(absl::StrCat("fsync directory ", dir, " of ", out_path));
    }
  }
  return PullResult{actual, received};
}

absl::Status CasClient::ListFiles(
    const Digest& digest,
    const std::function<absl::Status(const v1::FileEntry&)>& visit) {
  grpc::ClientContext context;
  v1::ListFilesRequest request;
  request.set_digest(digest.ToString());
  std::unique_ptr<grpc::ClientReader<v1::ListFilesResponse>> reader =
      stub_->ListFiles(&context, request);
  v1::ListFilesResponse response;
  absl::Status result;
  bool first = true;
  std::optional<uint64_t> total;  // From the first message.
  uint64_t received = 0;          // Entries.
  while (result.ok() && reader->Read(&response)) {
    if (first && response.has_total_entries()) {
      total = response.total_entries();
    }
    first = false;
    for (const v1::FileEntry& entry : response.entries()) {
      ++received;
      result = visit(entry);
      if (!result.ok()) break;
    }
  }
  if (!result.ok()) context.TryCancel();
  grpc::Status status = reader->Finish();
  if (result.ok() && !status.ok()) result = RpcError(status);
  if (result.ok() && total.has_value() && received != *total) {
    result = absl::DataLossError(
        absl::StrCat("the listing of ", digest.ToString(), " ended after ",
                     received, " of its ", *total, " entries"));
  }
  return result;
}

// ---------------------------------------------------------------------------
// RefsClient.

RefsClient::RefsClient(const CasClient& cas)
    : options_(cas.options()), stub_(v1::Refs::NewStub(cas.channel())) {}

void RefsClient::SetUnaryDeadline(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        options_.unary_timeout);
}

namespace {

// One unary call of `stub` with a deadline.
template <typename Request, typename Response, typename Method>
absl::StatusOr<Response> Unary(const ClientOptions& options,
                               const Request& request, Method method) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() +
                       options.unary_timeout);
  Response response;
  grpc::Status status = method(&context, request, &response);
  if (!status.ok()) return RpcStatus(status, options.server);
  return response;
}

}  // namespace

absl::StatusOr<v1::RefUpdateResponse> RefsClient::SetSlot(
    const v1::SetSlotRequest& request) {
  return Unary<v1::SetSlotRequest, v1::RefUpdateResponse>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->SetSlot(c, q, r);
      });
}

absl::StatusOr<v1::RefUpdateResponse> RefsClient::CreateRelease(
    const v1::CreateReleaseRequest& request) {
  return Unary<v1::CreateReleaseRequest, v1::RefUpdateResponse>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->CreateRelease(c, q, r);
      });
}

absl::StatusOr<v1::RefUpdateResponse> RefsClient::Promote(
    const v1::PromoteRequest& request) {
  return Unary<v1::PromoteRequest, v1::RefUpdateResponse>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->Promote(c, q, r);
      });
}

absl::StatusOr<v1::RefUpdateResponse> RefsClient::Yank(
    const v1::YankRequest& request) {
  return Unary<v1::YankRequest, v1::RefUpdateResponse>(
      options_, request,
      [this](auto* c, const auto& q, auto* r) { return stub_->Yank(c, q, r); });
}

absl::StatusOr<v1::RefHistoryEntry> RefsClient::DeleteBranch(
    const v1::DeleteBranchRequest& request) {
  return Unary<v1::DeleteBranchRequest, v1::RefHistoryEntry>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->DeleteBranch(c, q, r);
      });
}

absl::StatusOr<v1::ResolveResponse> RefsClient::Resolve(
    const v1::ResolveRequest& request) {
  return Unary<v1::ResolveRequest, v1::ResolveResponse>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->Resolve(c, q, r);
      });
}

absl::StatusOr<v1::Ref> RefsClient::GetRef(const std::string& ref) {
  v1::GetRefRequest request;
  request.set_ref(ref);
  return Unary<v1::GetRefRequest, v1::Ref>(
      options_, request, [this](auto* c, const auto& q, auto* r) {
        return stub_->GetRef(c, q, r);
      });
}

absl::Status RefsClient::ListRefs(
    v1::ListRefsRequest request,
    const std::function<absl::Status(const v1::Ref&)>& visit) {
  for (;;) {
    v1::ListRefsResponse page;
    grpc::ClientContext context;
    SetUnaryDeadline(&context);
    grpc::Status status = stub_->ListRefs(&context, request, &page);
    if (!status.ok()) return RpcStatus(status, options_.server);
    for (const v1::Ref& ref : page.refs()) {
      if (absl::Status s = visit(ref); !s.ok()) return s;
    }
    if (page.next_start_after().empty()) return absl::OkStatus();
    request.set_start_after(page.next_start_after());
  }
}

absl::Status RefsClient::History(
    const std::string& ref,
    const std::function<absl::Status(const v1::RefHistoryEntry&)>& visit) {
  v1::HistoryRequest request;
  request.set_ref(ref);
  for (;;) {
    v1::HistoryResponse page;
    grpc::ClientContext context;
    SetUnaryDeadline(&context);
    grpc::Status status = stub_->History(&context, request, &page);
    if (!status.ok()) return RpcStatus(status, options_.server);
    for (const v1::RefHistoryEntry& entry : page.entries()) {
      if (absl::Status s = visit(entry); !s.ok()) return s;
    }
    if (page.next_after_generation() == 0) return absl::OkStatus();
    request.set_after_generation(page.next_after_generation());
  }
}

}  // namespace cairn
