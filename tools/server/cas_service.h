// Copyright 2026 The Cairn Authors.
//
// The gRPC face of the store: cairn.v1.Cas (proto/cas.proto) served over a
// cairn::Store with gRPC's synchronous API, plus StartServer(), which builds
// and starts the gRPC server cairnd and the tests use.
//
// Every RPC parses its digests first (InvalidArgument naming the bad one),
// then calls the store; every error leaves through ToGrpcStatus
// (tools/rpc/status.h), and its message names the offending input.
//
// Streaming shapes:
//   Write     client stream of WriteRequest, at most kMaxChunkBytes of data
//             per message (InvalidArgument above that). The header is read
//             from the first message only.
//   Read      server stream of ReadResponse, kReadChunkBytes per message
//             (the last one may be shorter; an empty range sends none).
//   ListFiles server stream of ListFilesResponse, at most
//             kListBatchEntries entries or about kListBatchBytes of paths
//             per message, in the store's key order.
//
// Logging: each Write logs one spdlog line on the default logger (digest,
// bytes, files, duration) on success, and a warning with the error
// otherwise.

#ifndef CAIRN_TOOLS_SERVER_CAS_SERVICE_H_
#define CAIRN_TOOLS_SERVER_CAS_SERVICE_H_

#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/server.h"
#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "grpcpp/support/sync_stream.h"
#include "proto/cas.grpc.pb.h"
#include "proto/cas.pb.h"
#include "store/store.h"

namespace cairn {

// Serves cairn.v1.Cas from a Store. Thread-safe (gRPC calls the handlers
// from its thread pool concurrently); holds no state of its own beyond the
// store reference, which must outlive the service and the server using it.
class CasService final : public cairn::v1::Cas::Service {
 public:
  // Largest data field accepted in one WriteRequest, bytes (1 MiB).
  static constexpr size_t kMaxChunkBytes = 1 << 20;
  // Data bytes per ReadResponse, bytes (1 MiB).
  static constexpr size_t kReadChunkBytes = 1 << 20;
  // Upper bounds on one ListFilesResponse: entries, and bytes of paths and
  // link targets (the latter keeps messages far below the 8 MiB limit even
  // with long paths).
  static constexpr size_t kListBatchEntries = 1000;
  static constexpr size_t kListBatchBytes = 1 << 20;

  explicit CasService(Store& store) : store_(store) {}
  CasService(const CasService&) = delete;
  CasService& operator=(const CasService&) = delete;

  // Errors: InvalidArgument naming the index and text of a bad digest.
  grpc::Status FindMissing(grpc::ServerContext* context,
                           const cairn::v1::FindMissingRequest* request,
                           cairn::v1::FindMissingResponse* response) override;

  // Errors: InvalidArgument (bad expected_digest, empty stream, chunk over
  // kMaxChunkBytes, unsafe archive); DataLoss (digest or size mismatch);
  // ResourceExhausted (archive over limits); Cancelled when the client
  // goes away, in which case the upload is abandoned and nothing is stored.
  grpc::Status Write(grpc::ServerContext* context,
                     grpc::ServerReader<cairn::v1::WriteRequest>* reader,
                     cairn::v1::WriteResponse* response) override;

  // Errors: InvalidArgument; NotFound; OutOfRange naming offset and size
  // when offset > size; DataLoss if the blob file is shorter than its
  // record; Cancelled when the client goes away.
  grpc::Status Read(
      grpc::ServerContext* context, const cairn::v1::ReadRequest* request,
      grpc::ServerWriter<cairn::v1::ReadResponse>* writer) override;

  // Errors: InvalidArgument; NotFound naming the digest.
  grpc::Status Stat(grpc::ServerContext* context,
                    const cairn::v1::StatRequest* request,
                    cairn::v1::StatResponse* response) override;

  // Errors: InvalidArgument; NotFound when the digest is not an artefact;
  // DataLoss for a corrupt file record; Cancelled when the client goes
  // away.
  grpc::Status ListFiles(
      grpc::ServerContext* context, const cairn::v1::ListFilesRequest* request,
      grpc::ServerWriter<cairn::v1::ListFilesResponse>* writer) override;

 private:
  Store& store_;
};

// The API name of an index state: "indexing", "committed" or "durable".
std::string IndexStateName(store::ArtefactRecord::IndexState state);

// Fills an API summary from a stored artefact record. Compression is
// "gzip", "zstd" or "none" ("" if unspecified).
void ToSummary(const store::ArtefactRecord& record,
               cairn::v1::ArtefactSummary* summary);

struct ServerOptions {
  // "host:port"; port 0 picks a free port (see StartServer's bound_port).
  std::string listen_address = "127.0.0.1:8470";

  // Largest gRPC message received or sent, bytes. Write chunks are capped
  // at 1 MiB by the service; this only bounds protocol overhead.
  int max_message_bytes = 8 << 20;

  // HTTP/2 flow control and concurrency, as measured with gRPC 1.51
  // (docs/cairnd.md, "Throughput"; tools/server/cas_throughput_bench).
  // These settings govern what this server *receives* (Write uploads);
  // Read throughput is governed by the client channel's own settings.
  //
  // BDP probing: chttp2 pings to estimate the bandwidth-delay product and
  // sizes the receive window (and max frame size) from it, scaled down
  // under memory pressure. With it on, the first SETTINGS already carry
  // its own target (4 MiB) and stream_lookahead_bytes is ignored.
  bool bdp_probe = true;
  // Fixed per-stream receive window (HTTP/2 SETTINGS_INITIAL_WINDOW_SIZE),
  // bytes; takes effect only with bdp_probe = false, and then for the
  // connection's lifetime. The HTTP/2 default is 64 KiB. <= 0 leaves
  // gRPC's default.
  int stream_lookahead_bytes = 8 << 20;
  // Concurrent streams one client connection may open (HTTP/2
  // SETTINGS_MAX_CONCURRENT_STREAMS); further calls wait in the client.
  // Bounds per-connection buffering (streams x window) and handler
  // threads. <= 0 leaves gRPC's default (unlimited).
  int max_concurrent_streams = 64;
  // Upper bound on gRPC's sync handler threads (a ResourceQuota); <= 0
  // leaves gRPC's default (unbounded).
  int max_threads = 0;
};

// Checks that `address` is "host:port" with a decimal port in 0..65535
// ("[::1]:8470" included), or "unix:PATH" / "unix-abstract:NAME". Does not
// resolve or bind. Errors: InvalidArgument naming the address.
absl::Status ValidateListenAddress(absl::string_view address);

// A service served next to cairn.v1.Cas (e.g. RefsService,
// tools/server/refs_service.h).
struct ExtraService {
  grpc::Service* service = nullptr;  // Not owned.
  // Its full name, e.g. v1::Refs::service_full_name(): reported by the
  // health service.
  std::string name;
};

// Builds and starts a gRPC server on options.listen_address serving
// `service` and every one of `extra`, the standard grpc.health.v1.Health
// service (overall, "cairn.v1.Cas" and each extra service's name SERVING)
// and server reflection. The services must outlive the returned server. If
// `bound_port` is non-null it receives the port actually bound (the chosen
// one when the address asks for port 0). The port is bound without
// SO_REUSEPORT, so a port in use is an error. Errors: InvalidArgument
// naming the address when it is not host:port (port 0..65535) or
// unix:PATH, for bad options, and when `service` or an extra service is
// null; Unavailable naming the address when it cannot be bound (in use,
// unknown host, permission).
absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const ServerOptions& options, CasService* service, int* bound_port,
    const std::vector<ExtraService>& extra = {});

}  // namespace cairn

#endif  // CAIRN_TOOLS_SERVER_CAS_SERVICE_H_
