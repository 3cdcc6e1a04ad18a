// Copyright 2026 The Cairn Authors.

#include "tools/server/cas_service.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/grpc.h"
#include "grpcpp/ext/proto_server_reflection_plugin.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/resource_quota.h"
#include "grpcpp/security/server_credentials.h"
#include "grpcpp/server_builder.h"
#include "spdlog/spdlog.h"
#include "tools/rpc/status.h"

namespace cairn {
namespace {

// Returns `status` with `context` and ": " in front of its message, same
// code. OK stays OK.
absl::Status WithContext(const absl::Status& status,
                         absl::string_view context) {
  if (status.ok()) return status;
  return absl::Status(status.code(),
                      absl::StrCat(context, ": ", status.message()));
}

grpc::Status Fail(const absl::Status& status) { return ToGrpcStatus(status); }

// Closes an owned file descriptor on scope exit.
class FdCloser {
 public:
  explicit FdCloser(int fd) : fd_(fd) {}
  ~FdCloser() {
    if (fd_ >= 0) ::close(fd_);
  }
  FdCloser(const FdCloser&) = delete;
  FdCloser& operator=(const FdCloser&) = delete;

 private:
  int fd_;
};

// Reads exactly `length` bytes at `offset` of `fd` into `out`, retrying short
// reads and EINTR. Errors: DataLoss if the file ends early, Internal on I/O.
absl::Status PreadFully(int fd, uint64_t offset, char* out, size_t length,
                        const Digest& digest) {
  size_t done = 0;
  while (done < length) {
    const ssize_t n = ::pread(fd, out + done, length - done,
                              static_cast<off_t>(offset + done));
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::InternalError(
          absl::StrCat("reading blob ", digest.ToString(), " at byte ",
                       offset + done, ": ", std::strerror(errno)));
    }
    if (n == 0) {
      return absl::DataLossError(
          absl::StrCat("blob file of ", digest.ToString(), " ends at byte ",
                       offset + done, ", before the size its record gives"));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

const char* CompressionName(store::ArtefactRecord::Compression c) {
  switch (c) {
    case store::ArtefactRecord::GZIP:
      return "gzip";
    case store::ArtefactRecord::ZSTD:
      return "zstd";
    case store::ArtefactRecord::NONE:
      return "none";
    default:
      return "";
  }
}

v1::FileEntry::Type ToApiType(store::FileRecord::Type type) {
  switch (type) {
    case store::FileRecord::REGULAR:
      return v1::FileEntry::REGULAR;
    case store::FileRecord::DIRECTORY:
      return v1::FileEntry::DIRECTORY;
    case store::FileRecord::SYMLINK:
      return v1::FileEntry::SYMLINK;
    case store::FileRecord::HARDLINK:
      return v1::FileEntry::HARDLINK;
    default:
      return v1::FileEntry::TYPE_UNSPECIFIED;
  }
}

}  // namespace

std::string IndexStateName(store::ArtefactRecord::IndexState state) {
  switch (state) {
    case store::ArtefactRecord::INDEXING:
      return "indexing";
    case store::ArtefactRecord::COMMITTED:
      return "committed";
    case store::ArtefactRecord::DURABLE:
      return "durable";
    default:
      return "unspecified";
  }
}

void ToSummary(const store::ArtefactRecord& record,
               v1::ArtefactSummary* summary) {
  summary->set_compression(CompressionName(record.compression()));
  summary->set_file_count(record.file_count());
  summary->set_regular_files(record.regular_files());
  summary->set_unpacked_bytes(record.unpacked_bytes());
  summary->set_bytes_newly_stored(record.bytes_newly_stored());
  v1::ArtefactMetadata* md = summary->mutable_metadata();
  md->set_name(record.metadata().name());
  md->set_version(record.metadata().version());
  md->set_licence(record.metadata().licence());
  md->set_entrypoint(record.metadata().entrypoint());
  summary->mutable_stripped_setid_paths()->CopyFrom(
      record.stripped_setid_paths());
  // Records written before the count existed list every path.
  summary->set_stripped_setid_count(std::max<uint64_t>(
      record.stripped_setid_count(), record.stripped_setid_paths_size()));
}

grpc::Status CasService::FindMissing(grpc::ServerContext* /*context*/,
                                     const v1::FindMissingRequest* request,
                                     v1::FindMissingResponse* response) {
  std::vector<Digest> digests;
  digests.reserve(request->digests_size());
  for (int i = 0; i < request->digests_size(); ++i) {
    absl::StatusOr<Digest> d = Digest::Parse(request->digests(i));
    if (!d.ok()) {
      return Fail(WithContext(d.status(),
                              absl::StrCat("FindMissing: digests[", i, "]")));
    }
    digests.push_back(*d);
  }
  absl::StatusOr<std::vector<Digest>> missing = store_.FindMissing(digests);
  if (!missing.ok()) return Fail(WithContext(missing.status(), "FindMissing"));
  response->mutable_missing_digests()->Reserve(
      static_cast<int>(missing->size()));
  for (const Digest& d : *missing) response->add_missing_digests(d.ToString());
  return grpc::Status::OK;
}

grpc::Status CasService::Write(grpc::ServerContext* context,
                               grpc::ServerReader<v1::WriteRequest>* reader,
                               v1::WriteResponse* response) {
  const absl::Time start = absl::Now();
  // Reused for every message: parsing into it keeps the data string's
  // capacity, so steady-state streaming does not allocate per chunk.
  v1::WriteRequest request;
  if (!reader->Read(&request)) {
    if (context->IsCancelled()) {
      return Fail(absl::CancelledError(
          "Write: client cancelled before sending a message"));
    }
    return Fail(absl::InvalidArgumentError(
        "Write: empty stream: the first message must carry the header"));
  }

  const v1::WriteHeader& header = request.header();
  UploadOptions options;
  // What the client announced, for logs and error messages.
  std::string expected = "unknown digest";
  if (!header.expected_digest().empty()) {
    absl::StatusOr<Digest> d = Digest::Parse(header.expected_digest());
    if (!d.ok()) {
      return Fail(WithContext(d.status(), "Write: header.expected_digest"));
    }
    options.expected_digest = *d;
    expected = d->ToString();
  }
  if (header.expected_size() != 0) {
    options.expected_size = header.expected_size();
  }
  options.acknowledge_before_index = header.acknowledge_before_index();
  // A push of bytes whose index another upload is building waits for it;
  // a client that goes away meanwhile frees this thread (and shutdown).
  options.cancelled = [context] { return context->IsCancelled(); };

  uint64_t received = 0;  // Bytes.
  auto fail = [&](const absl::Status& status) {
    spdlog::warn("push of {} failed after {} bytes in {:.3f} s: {}", expected,
                 received, absl::ToDoubleSeconds(absl::Now() - start),
                 status.ToString());
    return Fail(status);
  };

  absl::StatusOr<std::unique_ptr<ArtefactUpload>> upload =
      store_.BeginUpload(options);
  if (!upload.ok()) {
    return fail(
        WithContext(upload.status(), absl::StrCat("Write of ", expected)));
  }

  int64_t index = 0;  // Of the message in the stream.
  do {
    const std::string& data = request.data();
    if (data.size() > kMaxChunkBytes) {
      // Destroying the upload (on return) abandons it.
      return fail(absl::InvalidArgumentError(
          absl::StrCat("Write of ", expected, ": message ", index, " carries ",
                       data.size(), " bytes of data; at most ", kMaxChunkBytes,
                       " are allowed per message")));
    }
    if (!data.empty()) {
      absl::Status s = (*upload)->Append(data);
      if (!s.ok()) {
        return fail(WithContext(s, absl::StrCat("Write of ", expected)));
      }
      received += data.size();
    }
    ++index;
  } while (reader->Read(&request));

  // Read() also ends when the client cancels or the connection drops: the
  // upload must not be finished from a truncated stream.
  if (context->IsCancelled()) {
    return fail(absl::CancelledError(absl::StrCat(
        "Write of ", expected, ": client cancelled; upload abandoned")));
  }

  absl::StatusOr<UploadResult> result = (*upload)->Finish();
  upload->reset();
  if (!result.ok()) {
    return fail(
        WithContext(result.status(), absl::StrCat("Write of ", expected)));
  }

  response->set_digest(result->digest.ToString());
  response->set_size(result->size);
  response->set_already_present(result->already_present);
  response->set_index_state(IndexStateName(result->artefact.index_state()));
  ToSummary(result->artefact, response->mutable_summary());
  spdlog::info(
      "push {} bytes={} files={} regular={} unpacked={} new_bytes={} "
      "already_present={} index_state={} duration={:.3f}s",
      result->digest.ToString(), result->size, result->artefact.file_count(),
      result->artefact.regular_files(), result->artefact.unpacked_bytes(),
      result->artefact.bytes_newly_stored(), result->already_present,
      response->index_state(), absl::ToDoubleSeconds(absl::Now() - start));
  return grpc::Status::OK;
}

grpc::Status CasService::Read(grpc::ServerContext* context,
                              const v1::ReadRequest* request,
                              grpc::ServerWriter<v1::ReadResponse>* writer) {
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) return Fail(WithContext(digest.status(), "Read"));
  const std::string name = digest->ToString();

  absl::StatusOr<BlobInfo> info = store_.Stat(*digest);
  if (!info.ok()) return Fail(WithContext(info.status(), "Read"));
  const uint64_t size = info->blob.size();
  const uint64_t offset = request->offset();
  if (offset > size) {
    return Fail(absl::OutOfRangeError(
        absl::StrCat("Read of ", name, ": offset ", offset,
                     " is past the end of the blob (size ", size, " bytes)")));
  }
  uint64_t end = size;
  if (request->limit() != 0 && request->limit() < size - offset) {
    end = offset + request->limit();
  }
  if (offset == end) return grpc::Status::OK;

  v1::ReadResponse response;
  // pread() fills the message's own buffer, which keeps its capacity
  // between chunks: no per-chunk allocation and no copy besides gRPC's
  // serialization into its slices.
  std::string* data = response.mutable_data();

  // Sends response with `last` set on the final chunk, which lets gRPC put
  // it in the same write as the trailing status.
  auto send = [&](bool last) {
    grpc::WriteOptions write_options;
    if (last) write_options.set_last_message();
    return writer->Write(response, write_options);
  };
  auto cancelled = [&](uint64_t at) {
    return Fail(absl::CancelledError(
        absl::StrCat("Read of ", name, ": client went away at byte ", at)));
  };

  if (info->blob.is_inline()) {
    const std::string& bytes = info->blob.inline_data();
    if (bytes.size() != size) {
      return Fail(absl::DataLossError(
          absl::StrCat("Read of ", name, ": inline data holds ", bytes.size(),
                       " bytes but the record says ", size)));
    }
    for (uint64_t pos = offset; pos < end;) {
      const size_t n =
          static_cast<size_t>(std::min<uint64_t>(kReadChunkBytes, end - pos));
      data->assign(bytes, static_cast<size_t>(pos), n);
      pos += n;
      if (!send(pos == end)) return cancelled(pos);
    }
    return grpc::Status::OK;
  }

  absl::StatusOr<int> fd = store_.OpenBlobFd(*digest);
  if (!fd.ok()) return Fail(WithContext(fd.status(), "Read"));
  FdCloser closer(*fd);
  if (end - offset > kReadChunkBytes) {
    ::posix_fadvise(*fd, static_cast<off_t>(offset),
                    static_cast<off_t>(end - offset), POSIX_FADV_SEQUENTIAL);
  }
  for (uint64_t pos = offset; pos < end;) {
    if (context->IsCancelled()) return cancelled(pos);
    const size_t n =
        static_cast<size_t>(std::min<uint64_t>(kReadChunkBytes, end - pos));
    data->resize(n);
    absl::Status s = PreadFully(*fd, pos, &(*data)[0], n, *digest);
    if (!s.ok()) return Fail(WithContext(s, "Read"));
    pos += n;
    if (!send(pos == end)) return cancelled(pos);
  }
  return grpc::Status::OK;
}

grpc::Status CasService::Stat(grpc::ServerContext* context,
                              const v1::StatRequest* request,
                              v1::StatResponse* response) {
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) return Fail(WithContext(digest.status(), "Stat"));
  if (request->wait_for_index()) {
    // In slices of at most 1 s, so that a client that gives up (or a
    // server shutting down, which cancels calls) frees this thread before
    // an index of many minutes completes.
    const absl::Time deadline = absl::FromChrono(context->deadline());
    for (;;) {
      const absl::Time slice =
          std::min(deadline, absl::Now() + absl::Seconds(1));
      absl::StatusOr<store::ArtefactRecord> indexed =
          store_.WaitIndexed(*digest, slice);
      if (indexed.ok()) break;
      if (!absl::IsDeadlineExceeded(indexed.status()) || slice >= deadline) {
        return Fail(WithContext(indexed.status(), "Stat"));
      }
      if (context->IsCancelled()) {
        return Fail(absl::CancelledError(
            absl::StrCat("Stat of ", digest->ToString(),
                         ": client went away while waiting for the index")));
      }
    }
  }
  absl::StatusOr<BlobInfo> info = store_.Stat(*digest);
  if (!info.ok()) return Fail(WithContext(info.status(), "Stat"));

  response->set_digest(info->digest.ToString());
  response->set_size(info->blob.size());
  response->set_created_unix_seconds(info->blob.created_unix_seconds());
  const bool is_artefact = info->artefact.has_value() ||
                           info->blob.kind() == store::BlobRecord::ARTEFACT;
  response->set_kind(is_artefact ? "artefact" : "file");
  if (info->artefact.has_value()) {
    response->set_index_durable(info->artefact->index_state() ==
                                store::ArtefactRecord::DURABLE);
    response->set_index_state(IndexStateName(info->artefact->index_state()));
    ToSummary(*info->artefact, response->mutable_summary());
  }
  return grpc::Status::OK;
}

grpc::Status CasService::ListFiles(
    grpc::ServerContext* context, const v1::ListFilesRequest* request,
    grpc::ServerWriter<v1::ListFilesResponse>* writer) {
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) return Fail(WithContext(digest.status(), "ListFiles"));
  const std::string name = digest->ToString();
  const MetadataDb& db = store_.metadata();

  absl::StatusOr<store::ArtefactRecord> artefact = db.GetArtefact(*digest);
  if (!artefact.ok()) {
    if (absl::IsNotFound(artefact.status())) {
      return Fail(absl::NotFoundError(
          absl::StrCat("ListFiles: ", name, " is not a stored artefact")));
    }
    return Fail(WithContext(artefact.status(), "ListFiles"));
  }
  if (artefact->index_state() == store::ArtefactRecord::INDEXING) {
    return Fail(absl::FailedPreconditionError(absl::StrCat(
        "ListFiles: the file index of ", name,
        " is still being built (Stat with wait_for_index waits for it)")));
  }

  v1::ListFilesResponse batch;
  size_t batch_bytes = 0;
  absl::Status stream_status;  // Set when the callback stops the listing.
  uint64_t sent = 0;           // Entries.
  const uint64_t total = artefact->file_count();
  batch.set_total_entries(total);  // First message only: Clear() resets it.
  bool written = false;            // The first message went out.
  auto flush = [&]() {
    if (batch.entries_size() == 0 && written) return true;
    if (!writer->Write(batch)) return false;
    written = true;
    sent += batch.entries_size();
    // Clear() keeps the entry objects for reuse by the next batch.
    batch.Clear();
    batch_bytes = 0;
    return true;
  };

  // A page per ListAllFiles call: its iterator is gone before the page is
  // written, so a client that reads slowly (or not at all) pins no RocksDB
  // version, however long the stream stays open. The pages make one
  // listing: a complete index is never changed.
  std::string last;  // Path of the last entry listed.
  int pages = 0;
  for (;;) {
    ++pages;
    bool full = false;
    absl::Status list_status = db.ListAllFiles(
        *digest, last,
        [&](absl::string_view path, const store::FileRecord& record) -> bool {
          last.assign(path.data(), path.size());
          v1::FileEntry* e = batch.add_entries();
          e->set_path(path.data(), path.size());
          e->set_type(ToApiType(record.type()));
          e->set_mode(record.mode());
          e->set_size(record.size());
          if (!record.content_digest().empty()) {
            absl::StatusOr<Digest> content =
                Digest::FromRaw(record.content_digest());
            if (!content.ok()) {
              stream_status = absl::DataLossError(absl::StrCat(
                  "ListFiles of ", name, ": corrupt file record for \"", path,
                  "\": ", content.status().message()));
              return false;
            }
            e->set_content_digest(content->ToString());
          } else {
            e->clear_content_digest();
          }
          e->set_link_target(record.link_target());
          batch_bytes += path.size() + record.link_target().size() + 96;
          full = batch.entries_size() >= static_cast<int>(kListBatchEntries) ||
                 batch_bytes >= kListBatchBytes;
          return !full;
        });
    if (!stream_status.ok()) return Fail(stream_status);
    if (!list_status.ok()) return Fail(WithContext(list_status, "ListFiles"));
    if (!flush()) {
      return Fail(absl::CancelledError(absl::StrCat("ListFiles of ", name,
                                                    ": client went away after ",
                                                    sent, " entries")));
    }
    if (!full) break;
    if (context->IsCancelled()) {
      return Fail(absl::CancelledError(absl::StrCat(
          "ListFiles of ", name, ": cancelled after ", sent, " entries")));
    }
  }
  // Pages are not one snapshot: had the artefact gone meanwhile (today
  // only an artefact still INDEXING, refused above, can be deleted), the
  // last pages would have come back short.
  if (pages > 1) {
    absl::StatusOr<store::ArtefactRecord> still = db.GetArtefact(*digest);
    if (!still.ok()) {
      return Fail(absl::AbortedError(absl::StrCat(
          "ListFiles of ", name,
          ": the artefact went away during the "
          "listing (",
          still.status().message(), "); ", sent, " entries sent")));
    }
  }
  if (sent != total) {
    return Fail(absl::DataLossError(
        absl::StrCat("ListFiles of ", name, ": the file index holds ", sent,
                     " entries, the artefact record says ", total)));
  }
  return grpc::Status::OK;
}

absl::Status ValidateListenAddress(absl::string_view address) {
  if (absl::StartsWith(address, "unix:") ||
      absl::StartsWith(address, "unix-abstract:")) {
    return absl::OkStatus();
  }
  // gRPC accepts some malformed ports (it wraps 99999 to 34463), so check
  // for "host:port" with a port of 1 to 5 decimal digits in [0, 65535]
  // (SimpleAtoi alone would take "+80" and " 80"), and an IPv6 host in
  // brackets ("::1:80" is ambiguous).
  const size_t colon = address.rfind(':');
  const absl::string_view host =
      colon == absl::string_view::npos ? address : address.substr(0, colon);
  const absl::string_view port_text =
      colon == absl::string_view::npos ? "" : address.substr(colon + 1);
  uint32_t port = 0;
  const bool bracketed =
      absl::StartsWith(host, "[") && absl::EndsWith(host, "]");
  if (host.empty() || port_text.empty() || port_text.size() > 5 ||
      port_text.find_first_not_of("0123456789") != absl::string_view::npos ||
      !absl::SimpleAtoi(port_text, &port) || port > 65535 ||
      (!bracketed && host.find(':') != absl::string_view::npos)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "listen address \"", address,
        "\" is not host:port with a port in 0..65535 (IPv6 hosts in "
        "brackets: [::1]:8470)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<std::unique_ptr<grpc::Server>> StartServer(
    const ServerOptions& options, CasService* service, int* bound_port,
    const std::vector<ExtraService>& extra) {
  if (service == nullptr) {
    return absl::InvalidArgumentError("StartServer: no service");
  }
  for (const ExtraService& e : extra) {
    if (e.service == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("StartServer: no service for \"", e.name, "\""));
    }
  }
  if (options.listen_address.empty()) {
    return absl::InvalidArgumentError("StartServer: empty listen address");
  }
  if (options.max_message_bytes <= 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("StartServer: max_message_bytes must be positive, got ",
                     options.max_message_bytes));
  }

  if (absl::Status s = ValidateListenAddress(options.listen_address); !s.ok()) {
    return s;
  }

  // Both are process-wide switches read when a ServerBuilder is made.
  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(options.listen_address,
                           grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(service);
  for (const ExtraService& e : extra) builder.RegisterService(e.service);
  builder.SetMaxReceiveMessageSize(options.max_message_bytes);
  builder.SetMaxSendMessageSize(options.max_message_bytes);
  // gRPC sets SO_REUSEPORT by default, which would let a second server
  // bind a port already in use and silently share its traffic.
  builder.AddChannelArgument(GRPC_ARG_ALLOW_REUSEPORT, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE,
                             options.bdp_probe ? 1 : 0);
  if (options.stream_lookahead_bytes > 0) {
    builder.AddChannelArgument(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES,
                               options.stream_lookahead_bytes);
  }
  if (options.max_concurrent_streams > 0) {
    builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                               options.max_concurrent_streams);
  }
  if (options.max_threads > 0) {
    grpc::ResourceQuota quota("cairn-server");
    quota.SetMaxThreads(options.max_threads);
    builder.SetResourceQuota(quota);
  }

  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr || port == 0) {
    if (server != nullptr) server->Shutdown();
    return absl::UnavailableError(
        absl::StrCat("cannot listen on \"", options.listen_address,
                     "\" (address in use, unknown host, or not permitted; gRPC "
                     "logged the cause)"));
  }
  grpc::HealthCheckServiceInterface* health = server->GetHealthCheckService();
  if (health != nullptr) {
    health->SetServingStatus(true);
    health->SetServingStatus(v1::Cas::service_full_name(), true);
    for (const ExtraService& e : extra) {
      health->SetServingStatus(e.name, true);
    }
  }
  if (bound_port != nullptr) *bound_port = port;
  return server;
}

}  // namespace cairn
