// Copyright 2026 The Cairn Authors.
//
// Unary throughput of cairn.v1.Refs/Resolve against
// grpc.health.v1.Health/Check on the same in-process server (StartServer,
// as cairnd), closed loop: THREADS callers on one channel, each sending
// its next call when the previous one returns, for SECONDS per RPC. The
// store holds REFS branches with a linux-amd64 slot each; Resolve asks for
// linux-arm64 on half of them (noarch fallback). Prints calls/s of both
// and their ratio. Not run by tests.
//
//   bazel run -c opt //tools/server:refs_resolve_bench -- [THREADS] [SECONDS]
//       [REFS]

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "grpcpp/grpcpp.h"
#include "proto/refs.grpc.pb.h"
#include "store/ref_name.h"
#include "store/refs.h"
#include "store/store.h"
#include "store/testing/tar_builder.h"
#include "tools/server/cas_service.h"
#include "tools/server/refs_service.h"
#include "tools/server/testing/health.grpc.pb.h"

namespace cairn {
namespace {

// Runs `call` from `threads` threads for `seconds`; returns calls/s.
template <typename Call>
double Measure(int threads, double seconds, const Call& call) {
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> calls{0};
  std::atomic<uint64_t> failures{0};
  std::vector<std::thread> workers;
  const auto start = std::chrono::steady_clock::now();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      uint64_t n = 0;
      while (!stop.load(std::memory_order_relaxed)) {
        if (!call(t, n)) failures.fetch_add(1);
        ++n;
      }
      calls.fetch_add(n);
    });
  }
  std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  stop = true;
  for (std::thread& w : workers) w.join();
  const double elapsed =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start)
          .count();
  if (failures.load() > 0) {
    std::fprintf(stderr, "%llu calls failed\n",
                 static_cast<unsigned long long>(failures.load()));
  }
  return static_cast<double>(calls.load()) / elapsed;
}

int Main(int argc, char** argv) {
  const int threads = argc > 1 ? std::atoi(argv[1]) : 8;
  const double seconds = argc > 2 ? std::atof(argv[2]) : 3;
  const int refs_count = argc > 3 ? std::atoi(argv[3]) : 1000;

  const std::string dir =
      absl::StrCat(std::filesystem::temp_directory_path().string(),
                   "/refs_resolve_bench_", getpid());
  std::filesystem::remove_all(dir);
  StoreOptions store_options;
  store_options.data_dir = dir;
  absl::StatusOr<std::unique_ptr<Store>> store = Store::Open(store_options);
  if (!store.ok()) {
    std::fprintf(stderr, "%s\n", store.status().ToString().c_str());
    return 1;
  }
  absl::StatusOr<std::unique_ptr<RefStore>> refs =
      RefStore::Create(&(*store)->mutable_metadata());
  if (!refs.ok()) return 1;

  // One artefact in every ref.
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
      (*store)->BeginUpload({});
  if (!up.ok()) return 1;
  if (!(*up)
           ->Append(testing::BuildTar(
               {{"bin/tool", testing::TarEntry::kFile, 0755, "tool"}}))
           .ok()) {
    return 1;
  }
  absl::StatusOr<UploadResult> artefact = (*up)->Finish();
  if (!artefact.ok()) return 1;
  std::vector<std::string> names;
  for (int i = 0; i < refs_count; ++i) {
    names.push_back(absl::StrCat("team/tool", i, "@main"));
    RefName ref = *RefName::Parse(names.back());
    if (!(*refs)->SetSlot(ref, "linux-amd64", artefact->digest, "bench").ok() ||
        !(*refs)->SetSlot(ref, "noarch", artefact->digest, "bench").ok()) {
      return 1;
    }
  }

  CasService cas(**store);
  RefsService refs_service(**refs);
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  int port = 0;
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartServer(
      options, &cas, &port, {{&refs_service, v1::Refs::service_full_name()}});
  if (!server.ok()) {
    std::fprintf(stderr, "%s\n", server.status().ToString().c_str());
    return 1;
  }
  auto channel = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  auto stub = v1::Refs::NewStub(channel);

  auto check = [&](int, uint64_t) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    grpc::health::v1::HealthCheckResponse response;
    return health->Check(&context, request, &response).ok();
  };
  auto resolve = [&](int t, uint64_t n) {
    grpc::ClientContext context;
    v1::ResolveRequest request;
    request.set_ref(names[(n * threads + t) % names.size()]);
    request.set_slot(n % 2 == 0 ? "linux-amd64" : "linux-arm64");
    v1::ResolveResponse response;
    return stub->Resolve(&context, request, &response).ok();
  };
  Measure(threads, 0.5, check);  // Warm up connection and threads.
  const double health_rate = Measure(threads, seconds, check);
  const double resolve_rate = Measure(threads, seconds, resolve);
  const double health_rate2 = Measure(threads, seconds, check);
  const double resolve_rate2 = Measure(threads, seconds, resolve);
  const double h = (health_rate + health_rate2) / 2;
  const double r = (resolve_rate + resolve_rate2) / 2;
  std::printf(
      "threads=%d refs=%d\nHealth/Check  %.0f calls/s (%.0f, %.0f)\n"
      "Refs/Resolve  %.0f calls/s (%.0f, %.0f)\nratio %.2f\n",
      threads, refs_count, h, health_rate, health_rate2, r, resolve_rate,
      resolve_rate2, r / h);
  (*server)->Shutdown();
  server->reset();
  refs->reset();
  store->reset();
  std::filesystem::remove_all(dir);
  return 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) { return cairn::Main(argc, argv); }
