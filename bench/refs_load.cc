// Copyright 2026 The Cairn Authors.
//
// refs_load: a closed-loop, concurrent gRPC load generator for cairnd's refs
// benchmark (bench/refs.sh, docs/bench.md "Refs").
//
//   refs_load --target 127.0.0.1:PORT --method health|resolve|setslot
//             [--threads C] [--channels K] [--warmup S] [--seconds S]
//             [--max-ops M] [--refs N --refs-per-package P] --digest A
//             [--digest-b B] [--seed X]
//
// C client threads each run one call at a time (closed loop: send, wait for
// the reply, send the next) for --warmup seconds, then --seconds measured
// seconds. Only calls that both start and finish inside the measured window
// count. Throughput is those calls / the window; latency is per call, from
// before the call is prepared to the completion of its status.
//
// Methods, all through the same client path: grpc::GenericStub over raw
// ByteBuffers, with every request serialized once before the run (so the
// client does identical work per call whatever the method: no protobuf
// serialization or parsing inside the measured window, except SetSlot's
// reply, see below):
//   health   /grpc.health.v1.Health/Check with HealthCheckRequest{service:""}
//            (zero bytes).
//   resolve  /cairn.v1.Refs/Resolve of refs drawn uniformly at random from
//            the N refs refs_populate made, slot linux-amd64. The requests
//            are a table of min(N, 2^18) refs drawn uniformly (seeded);
//            each call picks one of them at random.
//   setslot  /cairn.v1.Refs/SetSlot, one writer per thread (use 8). Writer
//            w cycles over its own 16 branches "bench/setslot-wW@bK"
//            (distinct branches, so writers share no ref lock; 16 so that a
//            lock-stripe collision between two writers' refs is transient)
//            and alternates A and B per branch, so every write changes the
//            ref and is a synced RocksDB write. Before the run each branch
//            is set to A (untimed). Every reply is parsed and a write that
//            changed nothing counts as an error.
//
// Connections: --channels K (default: one per thread) channels, each with
// its own subchannel pool, i.e. its own TCP connection; thread t uses
// channel t % K. Keep the settings identical when comparing methods.
//
// Checks: each thread's first call (in the warm-up) has its reply parsed
// and checked (SERVING; the expected digest and slot; changed). Any non-OK
// status counts as an error; the first one is printed.
//
// Output: one JSON object on stdout: method, threads, channels, seconds,
// ops (measured), ops_per_s, p50_us, p90_us, p99_us, max_us, mean_us,
// total_ops (warm-up included), errors, client_cpu_s (whole run). Exit 0
// when the run had no error, 1 otherwise, 2 on bad flags.
//
// Bounded: at most --seconds + --warmup of calls (plus one call's time) and
// at most --max-ops measured calls; loopback targets only (the script
// passes 127.0.0.1).

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "grpcpp/generic/generic_stub.h"
#include "grpcpp/grpcpp.h"
#include "grpcpp/support/byte_buffer.h"
#include "proto/refs.pb.h"

namespace cairn {
namespace {

using Clock = std::chrono::steady_clock;

constexpr char kHealthMethod[] = "/grpc.health.v1.Health/Check";
constexpr char kResolveMethod[] = "/cairn.v1.Refs/Resolve";
constexpr char kSetSlotMethod[] = "/cairn.v1.Refs/SetSlot";
constexpr char kSlotArch[] = "linux-amd64";
constexpr size_t kMaxResolveTable = size_t{1} << 18;
constexpr int kBranchesPerWriter = 16;
constexpr auto kCallTimeout = std::chrono::seconds(10);
constexpr auto kConnectTimeout = std::chrono::seconds(10);

enum class Method { kHealth, kResolve, kSetSlot };

struct Options {
  std::string target;
  std::string method_name;
  Method method = Method::kHealth;
  int threads = 8;
  int channels = 0;  // 0: one per thread.
  double warmup_s = 1.0;
  double seconds = 5.0;
  uint64_t max_ops = 50'000'000;
  uint64_t refs = 0;
  uint64_t refs_per_package = 100;
  std::string digest_a;
  std::string digest_b;
  uint64_t seed = 1;
};

// Keep in sync with RefText in bench/refs_populate.cc.
std::string RefText(uint64_t i, uint64_t per_package) {
  const uint64_t j = i % per_package;
  return absl::StrFormat(
      "bench/pkg%06d@%s", i / per_package,
      j == 0 ? std::string("main") : absl::StrFormat("b%03d", j));
}
bool NoarchOnly(uint64_t i, uint64_t per_package) {
  return i % per_package != 0 && i % 4 == 3;
}

grpc::ByteBuffer ToBuffer(const std::string& bytes) {
  grpc::Slice slice(bytes);
  return grpc::ByteBuffer(&slice, 1);
}

std::string ToString(const grpc::ByteBuffer& buffer) {
  std::vector<grpc::Slice> slices;
  std::string out;
  if (!buffer.Dump(&slices).ok()) return out;
  for (const grpc::Slice& s : slices) {
    out.append(reinterpret_cast<const char*>(s.begin()), s.size());
  }
  return out;
}

// One prepared call: the request bytes and what to check in the reply.
struct Request {
  grpc::ByteBuffer bytes;
  std::string ref;        // resolve, setslot
  std::string slot_used;  // resolve: the slot the reply must name
};

// Per-thread results.
struct ThreadResult {
  std::vector<int64_t> latencies_ns;  // Measured calls.
  uint64_t total_ops = 0;             // Including the warm-up.
  uint64_t errors = 0;
  std::string first_error;
};

double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// Checks a reply that the first call of a thread (or every SetSlot) got.
// Returns "" when it is as expected, else what is wrong.
std::string CheckReply(Method method, const Options& o, const Request& req,
                       const grpc::ByteBuffer& reply) {
  const std::string bytes = ToString(reply);
  switch (method) {
    case Method::kHealth:
      // HealthCheckResponse{status: SERVING}: field 1, varint 1.
      if (bytes != std::string("\x08\x01", 2)) {
        return absl::StrCat("Health/Check reply is not SERVING (", bytes.size(),
                            " bytes)");
      }
      return "";
    case Method::kResolve: {
      cairn::v1::ResolveResponse r;
      if (!r.ParseFromString(bytes)) return "unparsable ResolveResponse";
      if (r.ref() != req.ref || r.digest() != o.digest_a ||
          r.slot_used() != req.slot_used) {
        return absl::StrCat("Resolve(", req.ref, ") gave ", r.ref(), " ",
                            r.digest(), " via ", r.slot_used(), "; expected ",
                            o.digest_a, " via ", req.slot_used);
      }
      return "";
    }
    case Method::kSetSlot: {
      cairn::v1::RefUpdateResponse r;
      if (!r.ParseFromString(bytes)) return "unparsable RefUpdateResponse";
      if (!r.changed()) {
        return absl::StrCat("SetSlot of ", req.ref, " changed nothing");
      }
      return "";
    }
  }
  return "unknown method";
}

// One unary call through the generic stub and the thread's completion
// queue. Returns the status; `reply` receives the response bytes.
grpc::Status Call(grpc::GenericStub& stub, grpc::CompletionQueue& cq,
                  const std::string& method, const grpc::ByteBuffer& request,
                  grpc::ByteBuffer* reply) {
  grpc::ClientContext context;
  context.set_deadline(std::chrono::system_clock::now() + kCallTimeout);
  std::unique_ptr<grpc::GenericClientAsyncResponseReader> rpc =
      stub.PrepareUnaryCall(&context, method, request, &cq);
  grpc::Status status;
  rpc->StartCall();
  rpc->Finish(reply, &status, reinterpret_cast<void*>(1));
  void* tag = nullptr;
  bool ok = false;
  if (!cq.Next(&tag, &ok) || !ok) {
    return grpc::Status(grpc::StatusCode::INTERNAL, "completion queue failed");
  }
  return status;
}

std::string MethodPath(Method m) {
  switch (m) {
    case Method::kHealth:
      return kHealthMethod;
    case Method::kResolve:
      return kResolveMethod;
    case Method::kSetSlot:
      return kSetSlotMethod;
  }
  return "";
}

std::vector<Request> ResolveTable(const Options& o) {
  const size_t n = std::min<uint64_t>(o.refs, kMaxResolveTable);
  std::vector<Request> table;
  table.reserve(n);
  std::mt19937_64 rng(o.seed);
  std::uniform_int_distribution<uint64_t> pick(0, o.refs - 1);
  for (size_t k = 0; k < n; ++k) {
    // With N <= the table size, every ref once (in random order);
    // otherwise uniform draws.
    const uint64_t i = o.refs <= kMaxResolveTable ? k : pick(rng);
    cairn::v1::ResolveRequest req;
    req.set_ref(RefText(i, o.refs_per_package));
    req.set_slot(kSlotArch);
    Request r;
    r.ref = req.ref();
    r.slot_used = NoarchOnly(i, o.refs_per_package) ? "noarch" : kSlotArch;
    r.bytes = ToBuffer(req.SerializeAsString());
    table.push_back(std::move(r));
  }
  std::shuffle(table.begin(), table.end(), rng);
  return table;
}

// Writer w's requests: [branch][0 = A, 1 = B].
std::vector<Request> SetSlotRequests(const Options& o, int w) {
  std::vector<Request> out;
  for (int b = 0; b < kBranchesPerWriter; ++b) {
    for (const std::string* d : {&o.digest_a, &o.digest_b}) {
      cairn::v1::SetSlotRequest req;
      req.set_ref(absl::StrCat("bench/setslot-w", w, "@b", b));
      req.set_slot(kSlotArch);
      req.set_digest(*d);
      req.set_actor(absl::StrCat("bench-writer-", w));
      Request r;
      r.ref = req.ref();
      r.bytes = ToBuffer(req.SerializeAsString());
      out.push_back(std::move(r));
    }
  }
  return out;
}

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const size_t k = std::min(sorted.size() - 1,
                            static_cast<size_t>(p * (sorted.size() - 1) + 0.5));
  return sorted[k] / 1e3;
}

int Run(const Options& o) {
  const int nchan = o.channels > 0 ? o.channels : o.threads;
  std::vector<std::shared_ptr<grpc::Channel>> channels;
  for (int c = 0; c < nchan; ++c) {
    grpc::ChannelArguments args;
    // Own subchannel pool: each channel its own TCP connection (channels
    // with equal arguments would otherwise share one).
    args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
    auto ch = grpc::CreateCustomChannel(
        o.target, grpc::InsecureChannelCredentials(), args);
    if (!ch->WaitForConnected(std::chrono::system_clock::now() +
                              kConnectTimeout)) {
      std::cerr << "refs_load: cannot connect to " << o.target << "\n";
      return 1;
    }
    channels.push_back(std::move(ch));
  }

  std::vector<Request> shared;  // health, resolve
  if (o.method == Method::kHealth) {
    Request r;
    r.bytes = ToBuffer("");  // HealthCheckRequest{service: ""}.
    shared.push_back(std::move(r));
  } else if (o.method == Method::kResolve) {
    shared = ResolveTable(o);
  }
  const std::string path = MethodPath(o.method);

  std::vector<ThreadResult> results(o.threads);
  const uint64_t per_thread_cap =
      std::max<uint64_t>(1, o.max_ops / static_cast<uint64_t>(o.threads));
  std::atomic<int> ready{0};
  std::atomic<bool> go{false};
  std::atomic<bool> setup_failed{false};
  Clock::time_point measure_start, measure_end;

  auto worker = [&](int t) {
    ThreadResult& res = results[t];
    auto fail = [&res](const std::string& what) {
      if (res.errors++ == 0) res.first_error = what;
    };
    grpc::GenericStub stub(channels[t % nchan]);
    grpc::CompletionQueue cq;
    std::vector<Request> own;
    if (o.method == Method::kSetSlot) {
      own = SetSlotRequests(o, t);
      // Untimed: every branch to A, so the run alternates B, A, B, ...
      for (int b = 0; b < kBranchesPerWriter; ++b) {
        grpc::ByteBuffer reply;
        grpc::Status s = Call(stub, cq, path, own[2 * b].bytes, &reply);
        if (!s.ok()) {
          fail(absl::StrCat("setup SetSlot ", own[2 * b].ref, ": ",
                            s.error_message()));
          setup_failed = true;
        }
      }
    }
    res.latencies_ns.reserve(std::min<uint64_t>(per_thread_cap, 1 << 20));
    std::mt19937_64 rng(o.seed * 1000003 + t);
    uint64_t round = 0;  // setslot: calls so far

    ready.fetch_add(1);
    while (!go.load(std::memory_order_acquire)) std::this_thread::yield();

    const Clock::time_point start = measure_start;
    const Clock::time_point end = measure_end;
    bool checked = false;
    while (res.latencies_ns.size() < per_thread_cap) {
      const Request* req;
      if (o.method == Method::kSetSlot) {
        const uint64_t b = round % kBranchesPerWriter;
        const uint64_t visit = round / kBranchesPerWriter;  // 0 -> B
        req = &own[2 * b + (visit % 2 == 0 ? 1 : 0)];
        ++round;
      } else if (shared.size() == 1) {
        req = &shared[0];
      } else {
        req = &shared[rng() % shared.size()];
      }
      const Clock::time_point t0 = Clock::now();
      if (t0 >= end) break;
      grpc::ByteBuffer reply;
      grpc::Status s = Call(stub, cq, path, req->bytes, &reply);
      const Clock::time_point t1 = Clock::now();
      ++res.total_ops;
      if (!s.ok()) {
        fail(absl::StrCat(path, " ", req->ref, ": code ",
                          static_cast<int>(s.error_code()), ": ",
                          s.error_message()));
        if (!checked) break;  // Fails from the start: no point going on.
        continue;
      }
      if (!checked || o.method == Method::kSetSlot) {
        std::string why = CheckReply(o.method, o, *req, reply);
        if (!why.empty()) fail(why);
        checked = true;
      }
      if (t0 >= start && t1 <= end) {
        res.latencies_ns.push_back(
            std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0)
                .count());
      }
    }
    cq.Shutdown();
    void* tag;
    bool ok;
    while (cq.Next(&tag, &ok)) {
    }
  };

  std::vector<std::thread> pool;
  for (int t = 0; t < o.threads; ++t) pool.emplace_back(worker, t);
  while (ready.load() < o.threads)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const double cpu0 = CpuSeconds();
  const Clock::time_point t_go = Clock::now();
  measure_start = t_go + std::chrono::duration_cast<Clock::duration>(
                             std::chrono::duration<double>(o.warmup_s));
  measure_end = measure_start + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(o.seconds));
  go.store(true, std::memory_order_release);
  for (std::thread& t : pool) t.join();
  const double cpu = CpuSeconds() - cpu0;
  // A thread that hit --max-ops stopped early: the window ends there.
  const double window = std::min(
      o.seconds,
      std::chrono::duration<double>(Clock::now() - measure_start).count());

  std::vector<int64_t> all;
  uint64_t total_ops = 0, errors = 0;
  std::string first_error;
  for (ThreadResult& r : results) {
    all.insert(all.end(), r.latencies_ns.begin(), r.latencies_ns.end());
    total_ops += r.total_ops;
    errors += r.errors;
    if (first_error.empty()) first_error = r.first_error;
  }
  std::sort(all.begin(), all.end());
  double mean = 0;
  for (int64_t v : all) mean += v;
  mean = all.empty() ? 0 : mean / all.size() / 1e3;

  std::printf(
      "{\"method\": \"%s\", \"threads\": %d, \"channels\": %d, "
      "\"seconds\": %.3f, \"ops\": %zu, \"ops_per_s\": %.1f, "
      "\"p50_us\": %.1f, \"p90_us\": %.1f, \"p99_us\": %.1f, "
      "\"max_us\": %.1f, \"mean_us\": %.1f, \"total_ops\": %" PRIu64
      ", \"errors\": %" PRIu64 ", \"client_cpu_s\": %.3f}\n",
      o.method_name.c_str(), o.threads, nchan, window, all.size(),
      window > 0 ? all.size() / window : 0.0, Percentile(all, 0.50),
      Percentile(all, 0.90), Percentile(all, 0.99),
      all.empty() ? 0.0 : all.back() / 1e3, mean, total_ops, errors, cpu);
  std::fflush(stdout);
  if (errors > 0 || setup_failed) {
    std::cerr << "refs_load: " << errors << " errors; first: " << first_error
              << "\n";
    return 1;
  }
  if (all.empty()) {
    std::cerr << "refs_load: no call completed in the measured window\n";
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  cairn::Options o;
  CLI::App app{
      "refs_load: closed-loop concurrent gRPC load on cairnd "
      "(Health/Check, Refs/Resolve, Refs/SetSlot); see bench/refs.sh"};
  app.add_option("--target", o.target, "host:port of cairnd")->required();
  app.add_option("--method", o.method_name, "health, resolve or setslot")
      ->required()
      ->check(CLI::IsMember({"health", "resolve", "setslot"}));
  app.add_option("--threads", o.threads, "Client threads (default 8)")
      ->check(CLI::Range(1, 256));
  app.add_option("--channels", o.channels,
                 "Channels/connections (default: one per thread)")
      ->check(CLI::Range(0, 256));
  app.add_option("--warmup", o.warmup_s, "Warm-up seconds (default 1)")
      ->check(CLI::Range(0.0, 60.0));
  app.add_option("--seconds", o.seconds, "Measured seconds (default 5)")
      ->check(CLI::Range(0.1, 300.0));
  app.add_option("--max-ops", o.max_ops, "Cap on measured calls")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 40));
  app.add_option("--refs", o.refs, "resolve: refs in the store");
  app.add_option("--refs-per-package", o.refs_per_package,
                 "resolve: refs_populate's --refs-per-package (default 100)")
      ->check(CLI::Range(1, 1000000));
  app.add_option("--digest", o.digest_a,
                 "Artefact A (resolve: expected; setslot: first digest)");
  app.add_option("--digest-b", o.digest_b, "setslot: second digest");
  app.add_option("--seed", o.seed, "Random seed (default 1)");
  // CLI11 reports errors and --help by exception (its documented API).
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return e.get_exit_code() == 0 ? app.exit(e) : (app.exit(e), 2);
  }
  if (o.method_name == "resolve") {
    o.method = cairn::Method::kResolve;
    if (o.refs == 0 || o.digest_a.empty()) {
      std::cerr << "refs_load: resolve needs --refs N and --digest A\n";
      return 2;
    }
  } else if (o.method_name == "setslot") {
    o.method = cairn::Method::kSetSlot;
    if (o.digest_a.empty() || o.digest_b.empty() || o.digest_a == o.digest_b) {
      std::cerr << "refs_load: setslot needs --digest A and --digest-b B "
                   "(different)\n";
      return 2;
    }
  }
  return cairn::Run(o);
}
