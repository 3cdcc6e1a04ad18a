// Copyright 2026 The Cairn Authors.
//
// The client side of cairn.v1.Cas (proto/cas.proto) used by the `cairn`
// CLI: push a tarball (dedup through FindMissing, then a streamed Write),
// pull a blob to a file with end-to-end digest verification, stat, and list
// an artefact's files; and of cairn.v1.Refs (proto/refs.proto, RefsClient
// below) over the same channel. All calls are synchronous gRPC on the caller's
// thread (Pull also writes and hashes on two helper threads). Errors are
// absl::Status: gRPC failures are converted by FromGrpcStatus
// (tools/rpc/status.h), so their codes are the server's (NOT_FOUND, DATA_LOSS,
// UNAVAILABLE, ...).
//
// Sizes are bytes; digests are cairn::Digest ("sha256:<hex>" on the wire).

#ifndef CAIRN_TOOLS_CAIRN_CLIENT_H_
#define CAIRN_TOOLS_CAIRN_CLIENT_H_

#include <sys/stat.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "grpcpp/channel.h"
#include "grpcpp/support/status.h"
#include "proto/cas.grpc.pb.h"
#include "proto/cas.pb.h"
#include "proto/refs.grpc.pb.h"
#include "proto/refs.pb.h"
#include "store/digest.h"

namespace cairn {

// Bytes of file data per Write message and per read() while hashing.
inline constexpr size_t kUploadChunkBytes = 1 << 20;
// gRPC message size limit, both directions (a 1 MiB chunk plus framing
// fits with room to spare).
inline constexpr int kMaxMessageBytes = 8 << 20;
// Default fixed HTTP/2 stream window of the client channel (see
// ClientOptions::bdp_probe).
inline constexpr int kDefaultStreamWindowBytes = 8 << 20;

// Receives (bytes done, bytes total) while data moves. Called on the
// calling thread; must not block for long.
using ProgressFn = std::function<void(uint64_t done, uint64_t total)>;

struct ClientOptions {
  // gRPC target, e.g. "127.0.0.1:8470" or "dns:///cairn.example:8470".
  std::string server;
  // Deadline of unary calls (FindMissing, Stat, every Refs call). Streams
  // have none.
  std::chrono::milliseconds unary_timeout = std::chrono::seconds(60);
  // HTTP/2 receive window of the channel (what limits Read, i.e. pull).
  // false: a fixed per-stream window of stream_window_bytes, which on
  // loopback and LANs reads about twice as fast as gRPC's adaptive window
  // (docs/cairnd.md, "Throughput"), but caps a stream at
  // stream_window_bytes / RTT. true: gRPC's bandwidth-delay-product probing
  // sizes the window (grows past 8 MiB on long fat links);
  // stream_window_bytes is then ignored.
  bool bdp_probe = false;
  int stream_window_bytes = kDefaultStreamWindowBytes;
};

// Applies the environment's overrides of the gRPC channel settings:
// CAIRN_GRPC_BDP_PROBE ("1" or "0": options->bdp_probe) and
// CAIRN_GRPC_WINDOW_BYTES (options->stream_window_bytes, 65536 to
// 1073741824; a K, M or G suffix multiplies by 1024^n). Unset or empty
// variables change nothing. Errors: InvalidArgument naming the variable
// for any other value (options is then unchanged).
absl::Status ApplyGrpcEnvironment(ClientOptions* options);

// `status` as an absl::Status (FromGrpcStatus), with " (server <server>)"
// appended to connection-level failures (UNAVAILABLE, DEADLINE_EXCEEDED).
absl::Status RpcStatus(const grpc::Status& status, const std::string& server);

struct PushOptions {
  // If set, the local digest must equal it or Push fails with DataLoss
  // before anything is sent.
  std::optional<Digest> expect;
  ProgressFn progress;  // Upload progress; may be empty.
  // Return once the server holds the bytes durably, before their file index
  // is complete (WriteHeader.acknowledge_before_index); the response's
  // index_state is then "indexing" (unless the artefact was already
  // stored). Without it, Push returns the complete index's summary.
  bool no_wait = false;
};

struct PullResult {
  Digest digest;       // Verified digest of the bytes written.
  uint64_t bytes = 0;  // Bytes written to the output file.
};

// Hashes a file in one streaming pass (kUploadChunkBytes reads). Returns
// its digest and size; `stamps` (if set) gets the fstat of the very file
// hashed, taken before hashing. Errors: NotFound / PermissionDenied etc.
// from open and read, InvalidArgument if `path` is not a regular file.
absl::StatusOr<std::pair<Digest, uint64_t>> HashFile(
    const std::string& path, struct stat* stamps = nullptr);

// Passes chunks of a byte stream through a fixed sequence of stages, each
// on its own thread, so that the stages overlap with each other and with
// the producer (Pull receives on the caller's thread, writes on one helper
// and hashes on another). Every stage sees every chunk, in order.
//
// Buffers are recycled, so that a long stream allocates (and page-faults
// in) only `max_buffers` buffers: Acquire() hands out an empty string that
// keeps the capacity of an earlier chunk, Submit() queues a filled one, and
// after the last stage it is cleared and goes back to the pool. Memory is
// bounded: Acquire() blocks while all `max_buffers` are in flight.
//
// After a stage fails, later chunks are dropped unseen (their buffers still
// recycled) and Submit() and Finish() return that first error.
// Thread-compatible: one producer thread calls Acquire(), Submit() and
// Finish().
class ChunkPipeline {
 public:
  // Called with each chunk in order, on the stage's thread. A non-OK status
  // stops the pipeline.
  using Stage = std::function<absl::Status(const std::string& chunk)>;

  // `stages` must not be empty; `max_buffers` >= 1.
  explicit ChunkPipeline(std::vector<Stage> stages, size_t max_buffers = 8);
  // Finishes (joins the threads) if Finish() was not called.
  ~ChunkPipeline();
  ChunkPipeline(const ChunkPipeline&) = delete;
  ChunkPipeline& operator=(const ChunkPipeline&) = delete;

  // An empty buffer, recycled if one is free (blocks while every buffer is
  // in flight).
  std::string Acquire();
  // Queues `chunk` (typically from Acquire(), but any string will do; an
  // empty one is recycled at once). Returns the first stage error so far.
  absl::Status Submit(std::string chunk);
  // Waits until every queued chunk went through every stage, stops the
  // threads and returns the first stage error. Call once.
  absl::Status Finish();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

// A connection to one Cairn server. Construction does not connect: gRPC
// connects on the first call. Thread-safe (gRPC stubs are), but each
// operation runs on the calling thread.
class CasClient {
 public:
  // Errors: InvalidArgument if options.server is empty.
  static absl::StatusOr<std::unique_ptr<CasClient>> Create(
      const ClientOptions& options);

  // Uploads the file at `path` unless the server already has it:
  //   1. hashes it locally (one pass);
  //   2. fails with DataLoss if options.expect differs (nothing sent);
  //   3. FindMissing: if stored, returns a response built from Stat (which
  //      waits for an index still being built, unless options.no_wait) with
  //      already_present = true and summary.bytes_newly_stored = 0;
  //   4. else streams Write in kUploadChunkBytes messages, the first
  //      carrying expected_digest (the local digest) and expected_size.
  // Errors: local I/O errors; Aborted if the file's size changed between
  // hashing and upload; DataLoss if the server's digest differs; the
  // server's errors (e.g. InvalidArgument for an unsafe archive).
  absl::StatusOr<v1::WriteResponse> Push(const std::string& path,
                                         const PushOptions& options);

  // Streams blob `digest` into `out_path`: receives on the calling thread
  // while one helper thread writes "<out_path>.partial" and another hashes,
  // and renames into place only if size and digest match what Stat
  // reported and what was asked for, so `out_path` never holds unverified
  // bytes. With `fsync_output` the file is also made durable before the
  // rename (write-back started as it is written, fsync at the end); without
  // it, as curl or docker leave a download, it is in the page cache and a
  // crash of the machine may lose it. The partial file is removed on any
  // error. Errors: NotFound; DataLoss on a size or digest mismatch; local
  // I/O errors; the server's errors.
  absl::StatusOr<PullResult> Pull(const Digest& digest,
                                  const std::string& out_path,
                                  const ProgressFn& progress,
                                  bool fsync_output = false);

  // With wait_for_index, an artefact's answer waits (without deadline)
  // until its file index is complete or it is rejected. Errors: NotFound;
  // the rejection (InvalidArgument, ResourceExhausted); the server's errors.
  absl::StatusOr<v1::StatResponse> Stat(const Digest& digest,
                                        bool wait_for_index = false);

  // The subset of `digests` the server lacks, in request order.
  absl::StatusOr<std::vector<std::string>> FindMissing(
      const std::vector<Digest>& digests);

  // Calls `visit` for each file entry of artefact `digest`, in path order.
  // A non-OK status from `visit` stops the stream and is returned.
  // Errors: NotFound (not an artefact); DataLoss when a stream ending OK
  // brought fewer (or more) entries than its first message announced
  // (ListFilesResponse.total_entries; not checked with older servers,
  // which do not announce it); the server's errors.
  absl::Status ListFiles(
      const Digest& digest,
      const std::function<absl::Status(const v1::FileEntry&)>& visit);

  const std::string& server() const { return options_.server; }
  const ClientOptions& options() const { return options_; }
  // The channel, for other services' stubs (RefsClient).
  const std::shared_ptr<grpc::Channel>& channel() const { return channel_; }

 private:
  CasClient(const ClientOptions& options,
            std::shared_ptr<grpc::Channel> channel);

  // Adds " (server <target>)" to connection-level failures.
  absl::Status RpcError(const grpc::Status& status) const;
  void SetUnaryDeadline(grpc::ClientContext* context) const;

  absl::StatusOr<v1::WriteResponse> Upload(int fd, const Digest& digest,
                                           bool no_wait, uint64_t size,
                                           const ProgressFn& progress);

  const ClientOptions options_;
  const std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Cas::Stub> stub_;
};

// The client of cairn.v1.Refs. Each call is one unary RPC with
// options.unary_timeout (List and History page through several). Errors
// are the server's (docs/refs.md): INVALID_ARGUMENT, NOT_FOUND,
// FAILED_PRECONDITION, ABORTED, ... converted by RpcStatus. Thread-safe.
class RefsClient {
 public:
  // A client on `cas`'s channel (one connection for both services). `cas`
  // need not outlive it.
  explicit RefsClient(const CasClient& cas);

  absl::StatusOr<v1::RefUpdateResponse> SetSlot(
      const v1::SetSlotRequest& request);
  absl::StatusOr<v1::RefUpdateResponse> CreateRelease(
      const v1::CreateReleaseRequest& request);
  absl::StatusOr<v1::RefUpdateResponse> Promote(
      const v1::PromoteRequest& request);
  absl::StatusOr<v1::RefUpdateResponse> Yank(const v1::YankRequest& request);
  absl::StatusOr<v1::RefHistoryEntry> DeleteBranch(
      const v1::DeleteBranchRequest& request);
  absl::StatusOr<v1::ResolveResponse> Resolve(
      const v1::ResolveRequest& request);
  absl::StatusOr<v1::Ref> GetRef(const std::string& ref);

  // Calls `visit` for every ref matching `request` (prefix, kind), in the
  // server's order, fetching page after page from request.start_after on.
  // A non-OK status from `visit` stops and is returned.
  absl::Status ListRefs(
      v1::ListRefsRequest request,
      const std::function<absl::Status(const v1::Ref&)>& visit);

  // Calls `visit` for every history entry of `ref`, oldest first, page
  // after page. Errors: NOT_FOUND if the name has no history.
  absl::Status History(
      const std::string& ref,
      const std::function<absl::Status(const v1::RefHistoryEntry&)>& visit);

 private:
  void SetUnaryDeadline(grpc::ClientContext* context) const;

  const ClientOptions options_;
  std::unique_ptr<v1::Refs::Stub> stub_;
};

}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_CLIENT_H_
