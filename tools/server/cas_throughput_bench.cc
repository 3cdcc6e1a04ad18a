// Copyright 2026 The Cairn Authors.
//
// Loopback throughput of CasService's streaming RPCs with a given set of
// HTTP/2 settings: pushes plain (uncompressed) tarballs of one incompressible
// file with Write in 1 MiB messages, then reads them back with Read, and
// prints MiB/s for each. Used to choose ServerOptions' defaults (see
// docs/cairnd.md, "Throughput").
//
//   cas_throughput_bench [MIB [ROUNDS [BDP [LOOKAHEAD_BYTES
//                        [CLIENT_BDP [CLIENT_LOOKAHEAD_BYTES]]]]]]
//
// BDP (0/1) and LOOKAHEAD_BYTES (0 = gRPC default) configure the server;
// the client channel uses CLIENT_BDP and CLIENT_LOOKAHEAD_BYTES, which
// default to the server's values.

#include <archive.h>
#include <archive_entry.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <random>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "proto/cas.grpc.pb.h"
#include "spdlog/spdlog.h"
#include "store/store.h"
#include "tools/server/cas_service.h"

namespace cairn {
namespace {

la_ssize_t AppendToString(struct archive*, void* client, const void* buffer,
                          size_t length) {
  static_cast<std::string*>(client)->append(static_cast<const char*>(buffer),
                                            length);
  return static_cast<la_ssize_t>(length);
}

std::string PlainTar(const std::string& content, int seed) {
  std::string out;
  struct archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_open(a, &out, nullptr, AppendToString, nullptr);
  struct archive_entry* e = archive_entry_new();
  archive_entry_set_pathname(e, absl::StrCat("blob", seed, ".bin").c_str());
  archive_entry_set_filetype(e, AE_IFREG);
  archive_entry_set_perm(e, 0644);
  archive_entry_set_size(e, content.size());
  archive_write_header(a, e);
  archive_write_data(a, content.data(), content.size());
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
  return out;
}

int Main(int argc, char** argv) {
  const size_t mib = argc > 1 ? std::atoi(argv[1]) : 256;
  const int rounds = argc > 2 ? std::atoi(argv[2]) : 3;
  const bool bdp = argc > 3 ? std::atoi(argv[3]) != 0 : true;
  const int lookahead = argc > 4 ? std::atoi(argv[4]) : 8 << 20;
  const bool client_bdp = argc > 5 ? std::atoi(argv[5]) != 0 : bdp;
  const int client_lookahead = argc > 6 ? std::atoi(argv[6]) : lookahead;
  spdlog::set_level(spdlog::level::warn);

  const char* tmp = std::getenv("TMPDIR");
  const std::string dir =
      absl::StrCat(tmp ? tmp : "/tmp", "/cas_bench_", getpid());
  std::filesystem::remove_all(dir);
  StoreOptions store_options;
  store_options.data_dir = dir;
  auto store = Store::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  CasService service(**store);
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  options.bdp_probe = bdp;
  options.stream_lookahead_bytes = lookahead;
  int port = 0;
  auto server = StartServer(options, &service, &port);
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(8 << 20);
  args.SetInt(GRPC_ARG_HTTP2_BDP_PROBE, client_bdp ? 1 : 0);
  if (client_lookahead > 0) {
    args.SetInt(GRPC_ARG_HTTP2_STREAM_LOOKAHEAD_BYTES, client_lookahead);
  }
  auto channel =
      grpc::CreateCustomChannel(absl::StrCat("127.0.0.1:", port),
                                grpc::InsecureChannelCredentials(), args);
  auto stub = v1::Cas::NewStub(channel);

  std::mt19937_64 rng(42);
  std::string content(mib << 20, '\0');
  for (size_t i = 0; i + 8 <= content.size(); i += 8) {
    const uint64_t v = rng();
    std::memcpy(&content[i], &v, 8);
  }
  std::printf(
      "server bdp=%d lookahead=%d, client bdp=%d lookahead=%d, %zu MiB\n", bdp,
      lookahead, client_bdp, client_lookahead, mib);
  for (int r = 0; r < rounds; ++r) {
    content[0] = static_cast<char>(r);  // A new digest each round.
    const std::string tar = PlainTar(content, r);
    absl::Time start = absl::Now();
    grpc::ClientContext wctx;
    v1::WriteResponse wres;
    auto writer = stub->Write(&wctx, &wres);
    v1::WriteRequest req;
    for (size_t off = 0; off < tar.size(); off += CasService::kMaxChunkBytes) {
      req.set_data(tar.substr(off, CasService::kMaxChunkBytes));
      if (!writer->Write(req)) break;
    }
    writer->WritesDone();
    grpc::Status s = writer->Finish();
    const double wsec = absl::ToDoubleSeconds(absl::Now() - start);
    if (!s.ok()) {
      std::fprintf(stderr, "Write: %s\n", s.error_message().c_str());
      return 1;
    }

    // Again with the digest announced: the store only hashes the bytes
    // (already present), which isolates the transport from disk and
    // indexing.
    start = absl::Now();
    grpc::ClientContext dctx;
    v1::WriteResponse dres;
    auto dup = stub->Write(&dctx, &dres);
    req.mutable_header()->set_expected_digest(wres.digest());
    for (size_t off = 0; off < tar.size(); off += CasService::kMaxChunkBytes) {
      req.set_data(tar.substr(off, CasService::kMaxChunkBytes));
      if (!dup->Write(req)) break;
      req.clear_header();
    }
    dup->WritesDone();
    s = dup->Finish();
    const double dsec = absl::ToDoubleSeconds(absl::Now() - start);
    if (!s.ok() || !dres.already_present()) {
      std::fprintf(stderr, "Write again: %s\n", s.error_message().c_str());
      return 1;
    }

    start = absl::Now();
    grpc::ClientContext rctx;
    v1::ReadRequest rreq;
    rreq.set_digest(wres.digest());
    auto reader = stub->Read(&rctx, rreq);
    v1::ReadResponse rres;
    size_t got = 0;
    while (reader->Read(&rres)) got += rres.data().size();
    s = reader->Finish();
    const double rsec = absl::ToDoubleSeconds(absl::Now() - start);
    if (!s.ok() || got != tar.size()) {
      std::fprintf(stderr, "Read: %s (%zu bytes)\n", s.error_message().c_str(),
                   got);
      return 1;
    }
    const double size_mib = tar.size() / 1048576.0;
    std::printf(
        "round %d: Write %.0f MiB/s, Read %.0f MiB/s, Write (present) %.0f "
        "MiB/s\n",
        r, size_mib / wsec, size_mib / rsec, size_mib / dsec);
  }
  (*server)->Shutdown();
  server->reset();
  store->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) { return cairn::Main(argc, argv); }
