// Copyright 2026 The Cairn Authors.
//
// refs_populate: fills a fresh Cairn data directory with N refs for the refs
// benchmark (bench/refs.sh, docs/bench.md "Refs"). Opens the directory
// directly with Store + RefStore (no cairnd may be running on it), pushes
// two small real artefacts through the store's upload path, then creates
// the refs with RefStore::SetSlot from several threads, so that RocksDB
// groups their synced WAL writes. Nothing bypasses RefStore: every ref gets
// its record and its history entry exactly as a client's SetSlot would.
//
//   refs_populate --data-dir DIR --refs N [--threads T]
//                 [--refs-per-package P] [--no-settle]
//
// The ref layout (refs_load.cc's RefText must produce the same names):
//   ref i (0 <= i < N) is "bench/pkgPPPPPP@NAME" with package i / P and
//   NAME "main" for i % P == 0, else "bNNN" (i % P, three digits or more).
//   Slots: every "main" has linux-amd64 = A and noarch = B (two SetSlots);
//   any other ref has linux-amd64 = A, except i % 4 == 3, which has only
//   noarch = A. So Resolve(ref, "linux-amd64") gives A for every ref, a
//   quarter of them through the noarch fallback.
//
// Afterwards (unless --no-settle) it closes the store, reopens it (RocksDB
// replays the WAL into a flush) and waits until the process has used no
// CPU for a few seconds (background flushes and compactions done, at most
// kMaxSettle), so that cairnd does not compact under the benchmark.
// Finally it writes DIR/bench-refs.meta (shell assignments, see WriteMeta),
// the marker bench/refs.sh checks before reusing the directory.
//
// Prints progress on stderr and a summary on stdout. Exit 0 on success, 1 on
// any failure, 2 on bad flags.

#include <sys/resource.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "store/digest.h"
#include "store/ref_name.h"
#include "store/refs.h"
#include "store/store.h"
#include "store/testing/tar_builder.h"

namespace cairn {
namespace {

constexpr int kMetaFormat = 1;
constexpr char kMetaFile[] = "bench-refs.meta";
constexpr char kActor[] = "bench-populate";
constexpr char kSlotArch[] = "linux-amd64";
// Refs claimed by a worker at a time (keeps neighbours' keys together).
constexpr uint64_t kChunk = 64;
constexpr absl::Duration kProgressEvery = absl::Seconds(10);
constexpr absl::Duration kMaxSettle = absl::Minutes(5);
// Settled: the process used under this much CPU in each of kQuietWindows
// consecutive one-second windows.
constexpr double kQuietCpuFraction = 0.02;
constexpr int kQuietWindows = 3;

struct Options {
  std::string data_dir;
  uint64_t refs = 0;
  int threads = 32;
  uint64_t refs_per_package = 100;
  bool settle = true;
};

// Keep in sync with RefText in bench/refs_load.cc.
std::string RefText(uint64_t i, uint64_t per_package) {
  const uint64_t j = i % per_package;
  return absl::StrFormat(
      "bench/pkg%06d@%s", i / per_package,
      j == 0 ? std::string("main") : absl::StrFormat("b%03d", j));
}

bool IsMain(uint64_t i, uint64_t per_package) { return i % per_package == 0; }
bool NoarchOnly(uint64_t i, uint64_t per_package) {
  return !IsMain(i, per_package) && i % 4 == 3;
}

// Pushes a small real tarball (a binary and a cairn.json) through the
// store's upload path.
absl::StatusOr<Digest> PushArtefact(Store& store, absl::string_view variant) {
  using testing::TarEntry;
  const std::string tar = testing::BuildTar({
      {"bin", TarEntry::kDir, 0755, ""},
      {"bin/tool", TarEntry::kFile, 0755,
       absl::StrCat("#!/bin/sh\necho bench tool ", variant, "\n")},
      {"cairn.json", TarEntry::kFile, 0644,
       absl::StrCat(R"({"name":"bench-tool","version":"1.0.0-)", variant,
                    R"(","licence":"MIT","entrypoint":"bin/tool"})")},
  });
  absl::StatusOr<std::unique_ptr<ArtefactUpload>> up = store.BeginUpload({});
  if (!up.ok()) return up.status();
  if (absl::Status s = (*up)->Append(tar); !s.ok()) return s;
  absl::StatusOr<UploadResult> r = (*up)->Finish();
  if (!r.ok()) return r.status();
  return r->digest;
}

double CpuSeconds() {
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  return ru.ru_utime.tv_sec + ru.ru_stime.tv_sec +
         (ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

absl::StatusOr<std::unique_ptr<Store>> OpenStore(const std::string& dir) {
  StoreOptions options;
  options.data_dir = dir;
  return Store::Open(options);
}

// Creates refs [0, n) with `threads` workers. Returns the SetSlot count.
absl::StatusOr<uint64_t> CreateRefs(RefStore& refs, const Options& o,
                                    const Digest& a, const Digest& b) {
  std::atomic<uint64_t> next{0};
  std::atomic<uint64_t> done{0};
  std::atomic<uint64_t> writes{0};
  std::atomic<bool> failed{false};
  absl::Mutex error_mu;
  absl::Status first_error;

  auto set = [&](const RefName& ref, absl::string_view slot, const Digest& d) {
    absl::StatusOr<RefUpdate> u = refs.SetSlot(ref, slot, d, kActor);
    if (!u.ok() || !u->changed) {
      absl::MutexLock lock(&error_mu);
      if (first_error.ok()) {
        first_error = u.ok() ? absl::InternalError(absl::StrCat(
                                   "SetSlot of ", ref.ToString(), " ", slot,
                                   " changed nothing: is the directory fresh?"))
                             : u.status();
      }
      failed = true;
      return false;
    }
    writes.fetch_add(1, std::memory_order_relaxed);
    return true;
  };

  auto worker = [&] {
    while (!failed) {
      const uint64_t begin = next.fetch_add(kChunk);
      if (begin >= o.refs) return;
      const uint64_t end = std::min(o.refs, begin + kChunk);
      for (uint64_t i = begin; i < end && !failed; ++i) {
        absl::StatusOr<RefName> ref =
            RefName::Parse(RefText(i, o.refs_per_package));
        if (!ref.ok()) {
          absl::MutexLock lock(&error_mu);
          if (first_error.ok()) first_error = ref.status();
          failed = true;
          return;
        }
        bool ok;
        if (NoarchOnly(i, o.refs_per_package)) {
          ok = set(*ref, kNoarchSlot, a);
        } else {
          ok = set(*ref, kSlotArch, a);
          if (ok && IsMain(i, o.refs_per_package)) {
            ok = set(*ref, kNoarchSlot, b);
          }
        }
        if (!ok) return;
        done.fetch_add(1, std::memory_order_relaxed);
      }
    }
  };

  const absl::Time start = absl::Now();
  std::vector<std::thread> pool;
  for (int t = 0; t < o.threads; ++t) pool.emplace_back(worker);
  absl::Time last = start;
  uint64_t last_writes = 0;
  while (true) {
    bool all_done = done.load() >= o.refs || failed.load();
    if (all_done) break;
    absl::SleepFor(absl::Milliseconds(200));
    const absl::Time now = absl::Now();
    if (now - last >= kProgressEvery) {
      const uint64_t w = writes.load();
      std::fprintf(stderr,
                   "refs_populate: %llu/%llu refs, %.0f SetSlot/s lately\n",
                   static_cast<unsigned long long>(done.load()),
                   static_cast<unsigned long long>(o.refs),
                   (w - last_writes) / absl::ToDoubleSeconds(now - last));
      last = now;
      last_writes = w;
    }
  }
  for (std::thread& t : pool) t.join();
  if (failed) return first_error;
  return writes.load();
}

// Resolves a sample of refs (first, last, every kind) and checks them.
absl::Status Verify(const RefStore& refs, const Options& o, const Digest& a,
                    const Digest& b) {
  if (o.refs == 0) return absl::OkStatus();
  std::vector<uint64_t> sample = {0, o.refs - 1, o.refs / 2};
  for (uint64_t i = 0; i < std::min<uint64_t>(o.refs, 8); ++i) {
    sample.push_back(i);
  }
  for (uint64_t i : sample) {
    absl::StatusOr<RefName> ref =
        RefName::Parse(RefText(i, o.refs_per_package));
    if (!ref.ok()) return ref.status();
    absl::StatusOr<Resolved> r = refs.Resolve(*ref, kSlotArch);
    if (!r.ok()) return r.status();
    const std::string want_slot =
        NoarchOnly(i, o.refs_per_package) ? "noarch" : kSlotArch;
    if (r->digest != a || r->slot_used != want_slot) {
      return absl::InternalError(
          absl::StrCat("verify: ", ref->ToString(), " resolved to ",
                       r->digest.ToString(), " via ", r->slot_used,
                       ", expected ", a.ToString(), " via ", want_slot));
    }
    if (IsMain(i, o.refs_per_package)) {
      absl::StatusOr<Resolved> n = refs.Resolve(*ref, kNoarchSlot);
      if (!n.ok()) return n.status();
      if (n->digest != b) {
        return absl::InternalError(absl::StrCat(
            "verify: ", ref->ToString(), " noarch is ", n->digest.ToString()));
      }
    }
  }
  return absl::OkStatus();
}

// Reopens the store and waits until RocksDB's background work is done.
absl::StatusOr<double> Settle(const std::string& dir) {
  const absl::Time start = absl::Now();
  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(dir);
  if (!store.ok()) return store.status();
  int quiet = 0;
  double cpu = CpuSeconds();
  while (quiet < kQuietWindows && absl::Now() - start < kMaxSettle) {
    const absl::Time t0 = absl::Now();
    absl::SleepFor(absl::Seconds(1));
    const double now_cpu = CpuSeconds();
    const double fraction =
        (now_cpu - cpu) / absl::ToDoubleSeconds(absl::Now() - t0);
    cpu = now_cpu;
    quiet = fraction < kQuietCpuFraction ? quiet + 1 : 0;
  }
  if (quiet < kQuietWindows) {
    std::fprintf(stderr,
                 "refs_populate: still busy after %.0f s of settling; "
                 "closing anyway\n",
                 absl::ToDoubleSeconds(kMaxSettle));
  }
  store->reset();
  return absl::ToDoubleSeconds(absl::Now() - start);
}

absl::Status WriteMeta(const Options& o, const Digest& a, const Digest& b,
                       uint64_t writes, double seconds) {
  const std::string path = absl::StrCat(o.data_dir, "/", kMetaFile);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << "REFS_FORMAT=" << kMetaFormat << "\n"
        << "REFS_N=" << o.refs << "\n"
        << "REFS_PER_PACKAGE=" << o.refs_per_package << "\n"
        << "REFS_DIGEST_A=" << a.ToString() << "\n"
        << "REFS_DIGEST_B=" << b.ToString() << "\n"
        << "REFS_SETSLOTS=" << writes << "\n"
        << "REFS_THREADS=" << o.threads << "\n"
        << "REFS_POPULATE_SECONDS=" << absl::StrFormat("%.3f", seconds) << "\n";
    out.flush();
    if (!out) return absl::InternalError(absl::StrCat("cannot write ", tmp));
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    return absl::InternalError(
        absl::StrCat("cannot rename ", tmp, ": ", ec.message()));
  }
  return absl::OkStatus();
}

int Run(const Options& o) {
  spdlog::set_level(spdlog::level::warn);
  std::error_code ec;
  if (std::filesystem::exists(o.data_dir, ec) &&
      !std::filesystem::is_empty(o.data_dir, ec)) {
    std::cerr << "refs_populate: " << o.data_dir
              << " is not empty; give a fresh directory\n";
    return 2;
  }

  absl::StatusOr<std::unique_ptr<Store>> store = OpenStore(o.data_dir);
  if (!store.ok()) {
    std::cerr << "refs_populate: " << store.status() << "\n";
    return 1;
  }
  absl::StatusOr<Digest> a = PushArtefact(**store, "a");
  absl::StatusOr<Digest> b = a.ok() ? PushArtefact(**store, "b") : a;
  if (!b.ok()) {
    std::cerr << "refs_populate: push: " << b.status() << "\n";
    return 1;
  }
  if (absl::Status s = (*store)->WaitDurable(); !s.ok()) {
    std::cerr << "refs_populate: " << s << "\n";
    return 1;
  }

  absl::StatusOr<std::unique_ptr<RefStore>> refs =
      RefStore::Create(&(*store)->mutable_metadata());
  if (!refs.ok()) {
    std::cerr << "refs_populate: " << refs.status() << "\n";
    return 1;
  }
  const absl::Time start = absl::Now();
  const double cpu_start = CpuSeconds();
  absl::StatusOr<uint64_t> writes = CreateRefs(**refs, o, *a, *b);
  const double seconds = absl::ToDoubleSeconds(absl::Now() - start);
  const double cpu = CpuSeconds() - cpu_start;
  if (!writes.ok()) {
    std::cerr << "refs_populate: " << writes.status() << "\n";
    return 1;
  }
  if (absl::Status s = Verify(**refs, o, *a, *b); !s.ok()) {
    std::cerr << "refs_populate: " << s << "\n";
    return 1;
  }
  refs->reset();
  store->reset();
  std::printf(
      "refs_populate: %llu refs (%llu SetSlot) in %.1f s with %d threads: "
      "%.0f SetSlot/s, %.1f CPU s (%.1f us CPU/SetSlot)\n",
      static_cast<unsigned long long>(o.refs),
      static_cast<unsigned long long>(*writes), seconds, o.threads,
      *writes / std::max(seconds, 1e-9), cpu,
      *writes > 0 ? cpu * 1e6 / *writes : 0.0);
  std::fflush(stdout);

  if (o.settle) {
    absl::StatusOr<double> settled = Settle(o.data_dir);
    if (!settled.ok()) {
      std::cerr << "refs_populate: settle: " << settled.status() << "\n";
      return 1;
    }
    std::printf(
        "refs_populate: settled (reopen, flush, compactions) in %.1f s\n",
        *settled);
  }
  if (absl::Status s = WriteMeta(o, *a, *b, *writes, seconds); !s.ok()) {
    std::cerr << "refs_populate: " << s << "\n";
    return 1;
  }
  std::printf("refs_populate: artefacts A=%s B=%s\n", a->ToString().c_str(),
              b->ToString().c_str());
  return 0;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  cairn::Options o;
  CLI::App app{
      "refs_populate: fills a fresh Cairn data dir with N refs through "
      "RefStore (see bench/refs.sh)"};
  app.add_option("--data-dir", o.data_dir, "Fresh data directory")->required();
  app.add_option("--refs", o.refs, "Number of refs (0: only the artefacts)")
      ->required();
  app.add_option("--threads", o.threads, "Writer threads (default 32)")
      ->check(CLI::Range(1, 1024));
  app.add_option("--refs-per-package", o.refs_per_package,
                 "Refs per package (default 100)")
      ->check(CLI::Range(1, 1000000));
  bool no_settle = false;
  app.add_flag("--no-settle", no_settle,
               "Skip reopening and waiting for compactions");
  // CLI11 reports errors and --help by exception (its documented API).
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return e.get_exit_code() == 0 ? app.exit(e) : (app.exit(e), 2);
  }
  o.settle = !no_settle;
  return cairn::Run(o);
}
