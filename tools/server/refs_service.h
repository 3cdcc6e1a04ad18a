// Copyright 2026 The Cairn Authors.
//
// The gRPC face of the refs layer: cairn.v1.Refs (proto/refs.proto) served
// over a cairn::RefStore (store/refs.h): Resolve with gRPC's callback API,
// every other method with its synchronous API.
//
// Every RPC first parses its ref names and digests; a malformed one fails
// with INVALID_ARGUMENT naming the RPC, the request field and the input,
// and showing the grammar. Then it makes exactly one RefStore call and maps
// the result to the proto. Every error leaves through ToGrpcStatus
// (tools/rpc/status.h) with the code RefStore chose (docs/refs.md) and its
// message, prefixed with the RPC's name.
//
// Actor: the request's `actor` if non-empty, else the caller's gRPC peer
// string (e.g. "ipv4:127.0.0.1:50412"), so history never lacks one.
//
// Resolve is the hot path (every `mytool@v1` run): it parses the ref and
// calls RefStore::Resolve (one point lookup, no lock), nothing else, and
// logs nothing. It runs inline on the gRPC thread that read the request,
// which saves the synchronous server's hand-off to a handler thread (most
// of a small call's cost; docs/cairnd.md, "Refs: Resolve throughput").
// Updates wait for a WAL fsync, so they stay on synchronous handler
// threads; each logs one spdlog line (info) on the default logger.

#ifndef CAIRN_TOOLS_SERVER_REFS_SERVICE_H_
#define CAIRN_TOOLS_SERVER_REFS_SERVICE_H_

#include "grpcpp/server_context.h"
#include "grpcpp/support/status.h"
#include "proto/refs.grpc.pb.h"
#include "proto/refs.pb.h"
#include "store/refs.h"

namespace cairn {

// Serves cairn.v1.Refs from a RefStore. Thread-safe (RefStore is); holds no
// state beyond the reference, which must outlive the service and the server
// using it.
class RefsService final : public cairn::v1::Refs::WithCallbackMethod_Resolve<
                              cairn::v1::Refs::Service> {
 public:
  // ListRefs and History pages end early (with a continuation token) once
  // their entries pass this many bytes: well under gRPC's default 4 MiB
  // limit on received messages, which clients other than cairn keep, and
  // cairnd's 8 MiB on sent ones. A ref carries its artefacts' metadata
  // once per slot (up to 64), so a count limit alone does not bound a page.
  static constexpr size_t kDefaultMaxPageBytes = 2 << 20;

  explicit RefsService(RefStore& refs,
                       size_t max_page_bytes = kDefaultMaxPageBytes)
      : refs_(refs), max_page_bytes_(max_page_bytes) {}
  RefsService(const RefsService&) = delete;
  RefsService& operator=(const RefsService&) = delete;

  // Errors: INVALID_ARGUMENT (ref, slot, digest, actor); NOT_FOUND (digest
  // not an artefact); FAILED_PRECONDITION (a release has the name);
  // ABORTED (if_generation differs); RESOURCE_EXHAUSTED (too many slots).
  grpc::Status SetSlot(grpc::ServerContext* context,
                       const cairn::v1::SetSlotRequest* request,
                       cairn::v1::RefUpdateResponse* response) override;

  // Errors: INVALID_ARGUMENT (also no slots, or a slot given twice, naming
  // it); NOT_FOUND (a digest); ALREADY_EXISTS (the release exists);
  // FAILED_PRECONDITION (a branch has the name).
  grpc::Status CreateRelease(grpc::ServerContext* context,
                             const cairn::v1::CreateReleaseRequest* request,
                             cairn::v1::RefUpdateResponse* response) override;

  // Errors: INVALID_ARGUMENT (also an expected slot given twice); NOT_FOUND
  // (no such branch); ABORTED naming the slot whose digest differs from
  // `expected` (the branch moved) or is unexpected; ALREADY_EXISTS (the
  // release exists); FAILED_PRECONDITION (the source is a release).
  // Nothing changes on error.
  grpc::Status Promote(grpc::ServerContext* context,
                       const cairn::v1::PromoteRequest* request,
                       cairn::v1::RefUpdateResponse* response) override;

  // Errors: NOT_FOUND; FAILED_PRECONDITION (a branch).
  grpc::Status Yank(grpc::ServerContext* context,
                    const cairn::v1::YankRequest* request,
                    cairn::v1::RefUpdateResponse* response) override;

  // Errors: NOT_FOUND; FAILED_PRECONDITION (a release); ABORTED.
  grpc::Status DeleteBranch(grpc::ServerContext* context,
                            const cairn::v1::DeleteBranchRequest* request,
                            cairn::v1::RefHistoryEntry* response) override;

  // `slot` is required (the client's own, never the server's). Errors:
  // INVALID_ARGUMENT; NOT_FOUND (no ref, or neither slot nor noarch);
  // FAILED_PRECONDITION (yanked, unless allow_yanked). Callback API: the
  // call finishes inline, before this returns.
  grpc::ServerUnaryReactor* Resolve(
      grpc::CallbackServerContext* context,
      const cairn::v1::ResolveRequest* request,
      cairn::v1::ResolveResponse* response) override;

  // Errors: INVALID_ARGUMENT; NOT_FOUND.
  grpc::Status GetRef(grpc::ServerContext* context,
                      const cairn::v1::GetRefRequest* request,
                      cairn::v1::Ref* response) override;

  // Errors: INVALID_ARGUMENT for an unknown kind value.
  grpc::Status ListRefs(grpc::ServerContext* context,
                        const cairn::v1::ListRefsRequest* request,
                        cairn::v1::ListRefsResponse* response) override;

  // Errors: INVALID_ARGUMENT; NOT_FOUND (the name has no history).
  grpc::Status History(grpc::ServerContext* context,
                       const cairn::v1::HistoryRequest* request,
                       cairn::v1::HistoryResponse* response) override;

 private:
  // Resolve's work; the status the reactor finishes with.
  grpc::Status ResolveInline(const cairn::v1::ResolveRequest* request,
                             cairn::v1::ResolveResponse* response);

  RefStore& refs_;
  const size_t max_page_bytes_;
};

// Conversions to the API messages. Digests are "sha256:<hex>", times Unix
// microseconds; absent digests and sources are empty strings.
void ToProto(const RefInfo& info, cairn::v1::Ref* out);
// `ref` fills RefHistoryEntry.ref (the struct does not carry it).
void ToProto(const RefName& ref, const RefHistoryEntry& entry,
             cairn::v1::RefHistoryEntry* out);
void ToProto(const RefUpdate& update, cairn::v1::RefUpdateResponse* out);

}  // namespace cairn

#endif  // CAIRN_TOOLS_SERVER_REFS_SERVICE_H_
