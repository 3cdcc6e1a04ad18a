// Copyright 2026 The Cairn Authors.
//
// cairnd: serves a Cairn store (cairn.v1.Cas), its refs (cairn.v1.Refs)
// and its FUSE mounts (cairn.v1.Mounts) over gRPC. See docs/cairnd.md.
//
//   cairnd --data-dir DIR [--listen ADDR] [--config FILE] [--log-level L]
//          [--mount DIR] [--mount-allow-other] [--mount-root DIR]
//          [--fuse-passthrough]
//
// Startup: parse flags and the optional TOML config (flags win), block
// SIGINT/SIGTERM in every thread, open the store (re-deriving indexes a
// crash left non-durable) and the refs on its database, with --mount DIR
// mount the read-only FUSE view there (docs/fuse.md; a stale mount of a
// crashed daemon is detached first) and register it in the Mounts service
// (tools/server/mount_service.h; with --mount-root DIR clients may add
// mounts strictly inside DIR), start gRPC, print
// "cairnd listening on HOST:PORT" on stdout. Then the main thread sigwait()s;
// on SIGINT/SIGTERM it unmounts every FUSE mount, stops gRPC (in-flight
// calls get 5 s, then are cancelled), waits for pending indexes to become
// durable, closes the store and exits 0.
//
// Exit codes: 0 clean shutdown; 1 the store or the server failed to start
// (or the final flush failed, or --mount failed); 2 bad flags, config,
// listen address or mount root.

#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <iostream>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "CLI/CLI.hpp"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpc/grpc.h"
#include "grpcpp/health_check_service_interface.h"
#include "grpcpp/server.h"
#include "proto/mount.grpc.pb.h"
#include "proto/refs.grpc.pb.h"
#include "spdlog/sinks/stdout_sinks.h"
#include "spdlog/spdlog.h"
#include "store/refs.h"
#include "store/store.h"
#include "toml++/toml.h"
#include "tools/server/cas_service.h"
#include "tools/server/mount_service.h"
#include "tools/server/refs_service.h"

namespace cairn {
namespace {

constexpr char kDefaultListen[] = "127.0.0.1:8470";
constexpr char kDefaultLogLevel[] = "info";
// Grace period for in-flight calls at shutdown.
constexpr auto kShutdownGrace = std::chrono::seconds(5);
constexpr int kExitUsage = 2;
constexpr int kExitFailure = 1;

// Everything cairnd is configured with, after flags and config merge.
struct Config {
  std::string data_dir;
  std::string listen = kDefaultListen;
  std::string log_level = kDefaultLogLevel;
  ArchiveLimits limits;
  // listen_address is ignored here; `listen` above is the one used.
  ServerOptions server;
  std::string debug_crash_point;  // Testing only.
  // --mount: where to mount the read-only FUSE view (docs/fuse.md); "" none.
  std::string mount;
  // --mount-allow-other: the --mount mount gets allow_other.
  bool mount_allow_other = false;
  // --fuse-passthrough: every mount serves files with FUSE passthrough
  // (CairnFsOptions::passthrough).
  bool fuse_passthrough = false;
  // --mount-root: Mount RPCs may mount strictly inside it; "" none (refused).
  // A realpath once ParseArgs validated it.
  std::string mount_root;
};

// Why parsing stopped without a Config: the exit code to return.
struct ParseExit {
  int code;
};

void UsageError(const std::string& message) {
  std::cerr << "cairnd: " << message << "\n"
            << "Run 'cairnd --help' for usage.\n";
}

bool ValidLogLevel(const std::string& name) {
  return name == "off" || spdlog::level::from_str(name) != spdlog::level::off;
}

// Reads the TOML config at `path` into `config` (only keys present are
// set). Returns an error message, or "" on success. toml++ reports syntax
// errors by exception (its documented API); it is caught here and nowhere
// else.
std::string ReadConfigFile(const std::string& path, Config* config) {
  toml::table root;
  try {
    root = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const toml::source_position& at = e.source().begin;
    return absl::StrCat("config file ", path, ":", at.line, ":", at.column,
                        ": ", std::string(e.description()));
  } catch (const std::exception& e) {
    return absl::StrCat("config file ", path, ": ", e.what());
  }

  auto where = [&](const std::string& key) {
    return absl::StrCat("config file ", path, ": ", key);
  };
  auto get_string = [&](const toml::node& node, const std::string& key,
                        std::string* out) -> std::string {
    std::optional<std::string> v = node.value<std::string>();
    if (!node.is_string() || !v.has_value() || v->empty()) {
      return where(key) + " must be a non-empty string";
    }
    *out = *v;
    return "";
  };
  auto get_positive = [&](const toml::node& node, const std::string& key,
                          uint64_t* out) -> std::string {
    std::optional<int64_t> v = node.value<int64_t>();
    if (!node.is_integer() || !v.has_value() || *v <= 0) {
      return where(key) + " must be a positive integer";
    }
    *out = static_cast<uint64_t>(*v);
    return "";
  };
  // An int in [min, max].
  auto get_int = [&](const toml::node& node, const std::string& key,
                     int64_t min, int64_t max, int* out) -> std::string {
    std::optional<int64_t> v = node.value<int64_t>();
    if (!node.is_integer() || !v.has_value() || *v < min || *v > max) {
      return absl::StrCat(where(key), " must be an integer in [", min, ", ",
                          max, "]");
    }
    *out = static_cast<int>(*v);
    return "";
  };

  for (const auto& [key, node] : root) {
    const std::string k(key.str());
    std::string error;
    if (k == "data_dir") {
      error = get_string(node, k, &config->data_dir);
    } else if (k == "listen") {
      error = get_string(node, k, &config->listen);
    } else if (k == "log_level") {
      error = get_string(node, k, &config->log_level);
    } else if (k == "mount") {
      error = get_string(node, k, &config->mount);
    } else if (k == "mount_root") {
      error = get_string(node, k, &config->mount_root);
    } else if (k == "mount_allow_other" || k == "fuse_passthrough") {
      std::optional<bool> v = node.value<bool>();
      if (!node.is_boolean() || !v.has_value()) {
        error = where(k) + " must be true or false";
      } else {
        bool& field = k == "fuse_passthrough" ? config->fuse_passthrough
                                              : config->mount_allow_other;
        field = *v;
      }
    } else if (k == "limits") {
      const toml::table* limits = node.as_table();
      if (limits == nullptr) return where(k) + " must be a table";
      for (const auto& [lkey, lnode] : *limits) {
        const std::string lk(lkey.str());
        const std::string full = "limits." + lk;
        if (lk == "max_entries") {
          error = get_positive(lnode, full, &config->limits.max_entries);
        } else if (lk == "max_path_bytes") {
          error = get_positive(lnode, full, &config->limits.max_path_bytes);
        } else if (lk == "max_total_path_bytes") {
          error =
              get_positive(lnode, full, &config->limits.max_total_path_bytes);
        } else if (lk == "max_unpacked_bytes") {
          error = get_positive(lnode, full, &config->limits.max_unpacked_bytes);
        } else if (lk == "max_metadata_field_bytes") {
          // A ref response carries its metadata up to 65 times (64 slots
          // and the ref): 4 fields of 16 KiB stay under 8 MiB messages.
          error = get_positive(lnode, full,
                               &config->limits.max_metadata_field_bytes);
          if (error.empty() &&
              config->limits.max_metadata_field_bytes > 16384) {
            error = where(full) + " must be at most 16384";
          }
        } else {
          error = where(full) +
                  " is not a known key (max_entries, "
                  "max_path_bytes, max_total_path_bytes, max_unpacked_bytes, "
                  "max_metadata_field_bytes)";
        }
        if (!error.empty()) return error;
      }
    } else if (k == "grpc") {
      const toml::table* grpc = node.as_table();
      if (grpc == nullptr) return where(k) + " must be a table";
      ServerOptions& server = config->server;
      for (const auto& [gkey, gnode] : *grpc) {
        const std::string gk(gkey.str());
        const std::string full = "grpc." + gk;
        if (gk == "bdp_probe") {
          std::optional<bool> v = gnode.value<bool>();
          if (!gnode.is_boolean() || !v.has_value()) {
            error = where(full) + " must be true or false";
          } else {
            server.bdp_probe = *v;
          }
        } else if (gk == "stream_window_bytes") {
          // HTTP/2 allows windows of 0..2^31-1; below 64 KiB only slows
          // things down.
          error = get_int(gnode, full, 65535, 2147483647,
                          &server.stream_lookahead_bytes);
        } else if (gk == "max_concurrent_streams") {
          error =
              get_int(gnode, full, 1, 1 << 20, &server.max_concurrent_streams);
        } else if (gk == "max_threads") {
          error = get_int(gnode, full, 1, 1 << 16, &server.max_threads);
        } else {
          error = where(full) +
                  " is not a known key (bdp_probe, stream_window_bytes, "
                  "max_concurrent_streams, max_threads)";
        }
        if (!error.empty()) return error;
      }
    } else {
      error =
          where(k) +
          " is not a known key (data_dir, listen, log_level, mount, "
          "mount_root, mount_allow_other, fuse_passthrough, [limits], [grpc])";
    }
    if (!error.empty()) return error;
  }
  return "";
}

// Parses argv and the config file. CLI11 reports errors and --help by
// exception (its documented API); they are caught here and nowhere else.
std::pair<std::optional<Config>, ParseExit> ParseArgs(int argc, char** argv) {
  CLI::App app{
      "cairnd: serves a Cairn content-addressed artefact store over gRPC "
      "(cairn.v1.Cas). See docs/cairnd.md."};
  app.name("cairnd");
  std::string data_dir, listen, config_path, log_level, debug_crash_point;
  CLI::Option* data_dir_opt = app.add_option(
      "--data-dir", data_dir,
      "Store directory (created if missing). Required unless set in the "
      "config file");
  CLI::Option* listen_opt = app.add_option(
      "--listen", listen,
      absl::StrCat("gRPC listen address host:port; port 0 picks a free one "
                   "(default ",
                   kDefaultListen, ")"));
  app.add_option("--config", config_path,
                 "TOML config file: data_dir, listen, log_level, mount, "
                 "mount_root, mount_allow_other, fuse_passthrough, [limits], "
                 "[grpc]; flags "
                 "override it")
      ->check(CLI::ExistingFile);
  std::string mount, mount_root;
  CLI::Option* mount_opt =
      app.add_option("--mount", mount,
                     "Mount the store read-only with FUSE on this directory "
                     "(docs/fuse.md); unmounted at SIGTERM");
  bool mount_allow_other = false;
  CLI::Option* mount_allow_other_opt =
      app.add_flag("--mount-allow-other", mount_allow_other,
                   "Let every user (not only cairnd's) see the --mount mount "
                   "(FUSE allow_other)");
  bool fuse_passthrough = false;
  CLI::Option* fuse_passthrough_opt = app.add_flag(
      "--fuse-passthrough", fuse_passthrough,
      "Mounts hand each opened file's blob to the kernel (FUSE passthrough, "
      "Linux >= 6.9): native read speed, one request per open "
      "(docs/fuse.md, \"Passthrough\")");
  CLI::Option* mount_root_opt = app.add_option(
      "--mount-root", mount_root,
      "Allow clients to mount (cairn mount) on empty directories strictly "
      "inside this directory; without it Mount over gRPC is refused");
  CLI::Option* log_level_opt = app.add_option(
      "--log-level", log_level,
      "trace, debug, info, warn, error, critical or off (default info)");

  // Testing only (tests/crash_test.cc): see StoreOptions::debug_crash_point.
  app.add_option("--debug-crash-point", debug_crash_point)
      ->group("")  // Hidden from --help.
      ->check(CLI::IsMember({"file_blob_written", "tarball_committed",
                             "indexing_committed", "index_committed",
                             "flush_records_written", "reject_committed"}));

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      return {std::nullopt, ParseExit{app.exit(e)}};  // --help.
    }
    UsageError(e.what());
    return {std::nullopt, ParseExit{kExitUsage}};
  }

  Config config;
  if (!config_path.empty()) {
    std::string error = ReadConfigFile(config_path, &config);
    if (!error.empty()) {
      UsageError(error);
      return {std::nullopt, ParseExit{kExitUsage}};
    }
  }
  if (data_dir_opt->count() > 0) config.data_dir = data_dir;
  if (listen_opt->count() > 0) config.listen = listen;
  if (log_level_opt->count() > 0) config.log_level = log_level;
  config.debug_crash_point = debug_crash_point;
  if (mount_opt->count() > 0) config.mount = mount;
  if (mount_allow_other_opt->count() > 0) {
    config.mount_allow_other = mount_allow_other;
  }
  if (mount_root_opt->count() > 0) config.mount_root = mount_root;
  if (fuse_passthrough_opt->count() > 0) {
    config.fuse_passthrough = fuse_passthrough;
  }

  if (config.data_dir.empty()) {
    UsageError("--data-dir is required (or data_dir in --config)");
    return {std::nullopt, ParseExit{kExitUsage}};
  }
  if (absl::Status s = ValidateListenAddress(config.listen); !s.ok()) {
    UsageError(std::string(s.message()));
    return {std::nullopt, ParseExit{kExitUsage}};
  }
  if (!ValidLogLevel(config.log_level)) {
    UsageError(absl::StrCat("unknown log level \"", config.log_level,
                            "\" (trace, debug, info, warn, error, critical, "
                            "off)"));
    return {std::nullopt, ParseExit{kExitUsage}};
  }
  if (config.mount_allow_other && config.mount.empty()) {
    UsageError("--mount-allow-other needs --mount DIR (or mount in --config)");
    return {std::nullopt, ParseExit{kExitUsage}};
  }
  if (!config.mount_root.empty()) {
    absl::StatusOr<std::string> root = ValidateMountRoot(config.mount_root);
    if (!root.ok()) {
      UsageError(absl::StrCat("--mount-root: ", root.status().message()));
      return {std::nullopt, ParseExit{kExitUsage}};
    }
    config.mount_root = *root;
  }
  return {std::move(config), ParseExit{0}};
}

// Logs to stderr, one line per event, flushed per line.
void SetUpLogging(const std::string& level) {
  auto logger = std::make_shared<spdlog::logger>(
      "cairnd", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z cairnd %l: %v");
  logger->set_level(spdlog::level::from_str(level));
  logger->flush_on(spdlog::level::trace);
  spdlog::set_default_logger(std::move(logger));
}

// "host:port" with the port actually bound; addresses without a TCP port
// (unix:...) are returned as given.
std::string ListeningAddress(const std::string& listen, int port) {
  if (absl::StartsWith(listen, "unix:") ||
      absl::StartsWith(listen, "unix-abstract:")) {
    return listen;
  }
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos) return absl::StrCat(listen, ":", port);
  return absl::StrCat(listen.substr(0, colon), ":", port);
}

// Raises the soft limit on open files to the hard one. gRPC 1.51 stops
// accepting connections for good after an accept4() error other than
// EAGAIN or ECONNABORTED (grpc/grpc#20418), such as EMFILE: with the usual
// soft limit of 1024, a thousand idle connections would leave cairnd up
// but unreachable. Returns the limit now in force.
rlim_t RaiseOpenFileLimit() {
  struct rlimit lim;
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    const rlim_t was = lim.rlim_cur;
    lim.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &lim) != 0) return was;
  }
  return lim.rlim_cur;
}

int Run(const Config& config) {
  // Before any thread exists (gRPC's executors started by grpc_init, the
  // store's flusher, gRPC's pollers), so all of them inherit the mask and
  // only sigwait() below sees these signals: one that reached a thread
  // without it would kill the process (default action) mid-shutdown.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGINT);
  sigaddset(&stop_signals, SIGTERM);
  if (int err = pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr); err != 0) {
    std::fprintf(stderr, "cairnd: cannot block SIGINT/SIGTERM: %s\n",
                 strerror(err));
    return kExitFailure;
  }
  SetUpLogging(config.log_level);
  const rlim_t open_files = RaiseOpenFileLimit();
  // Hold a reference on the gRPC library for the whole process. Otherwise
  // destroying the server drops the last one and grpc_shutdown() joins the
  // executor threads, which after large transfers sit in epoll_wait for up
  // to ~10 s. The process exits right after, so nothing leaks in practice.
  grpc_init();

  spdlog::info(
      "starting: data dir {}, listen {}, limits max_entries={} "
      "max_path_bytes={} max_total_path_bytes={} max_unpacked_bytes={} "
      "max_metadata_field_bytes={}; "
      "grpc bdp_probe={} "
      "stream_window_bytes={} max_concurrent_streams={} max_threads={}; "
      "mount {}{}, mount root {}, fuse passthrough {}; open files {}",
      config.data_dir, config.listen, config.limits.max_entries,
      config.limits.max_path_bytes, config.limits.max_total_path_bytes,
      config.limits.max_unpacked_bytes, config.limits.max_metadata_field_bytes,
      config.server.bdp_probe, config.server.stream_lookahead_bytes,
      config.server.max_concurrent_streams, config.server.max_threads,
      config.mount.empty() ? "none" : config.mount,
      config.mount_allow_other ? " (allow_other)" : "",
      config.mount_root.empty() ? "none (Mount RPCs refused)"
                                : config.mount_root,
      config.fuse_passthrough ? "on" : "off", open_files);

  const absl::Time open_start = absl::Now();
  StoreOptions store_options;
  store_options.data_dir = config.data_dir;
  store_options.limits = config.limits;
  store_options.debug_crash_point = config.debug_crash_point;
  absl::StatusOr<std::unique_ptr<Store>> opened = Store::Open(store_options);
  if (!opened.ok()) {
    spdlog::critical("cannot open store in {}: {}", config.data_dir,
                     opened.status().ToString());
    return kExitFailure;
  }
  std::unique_ptr<Store> store = *std::move(opened);
  spdlog::info("store open: data dir {}, recovered {} artefacts in {:.3f} s",
               config.data_dir, store->recovered_artefacts(),
               absl::ToDoubleSeconds(absl::Now() - open_start));

  absl::StatusOr<std::unique_ptr<RefStore>> created =
      RefStore::Create(&store->mutable_metadata());
  if (!created.ok()) {
    spdlog::critical("cannot open refs in {}: {}", config.data_dir,
                     created.status().ToString());
    return kExitFailure;
  }
  std::unique_ptr<RefStore> refs = *std::move(created);

  MountServiceOptions mount_options;
  mount_options.mount_root = config.mount_root;
  mount_options.fs.passthrough = config.fuse_passthrough;
  absl::StatusOr<std::unique_ptr<MountService>> mounts_created =
      MountService::Create(store.get(), refs.get(), mount_options);
  if (!mounts_created.ok()) {
    spdlog::critical("{}", mounts_created.status().ToString());
    return kExitFailure;
  }
  std::unique_ptr<MountService> mount_service = *std::move(mounts_created);
  if (!config.mount.empty()) {
    absl::StatusOr<v1::MountInfo> mounted =
        mount_service->MountLocal(config.mount, config.mount_allow_other);
    if (!mounted.ok()) {
      spdlog::critical("cannot mount {}: {}", config.mount,
                       mounted.status().ToString());
      return kExitFailure;
    }
  }

  auto service = std::make_unique<CasService>(*store);
  auto refs_service = std::make_unique<RefsService>(*refs);
  ServerOptions server_options = config.server;
  server_options.listen_address = config.listen;
  int port = 0;
  absl::StatusOr<std::unique_ptr<grpc::Server>> started =
      StartServer(server_options, service.get(), &port,
                  {{refs_service.get(), v1::Refs::service_full_name()},
                   {mount_service.get(), v1::Mounts::service_full_name()}});
  if (!started.ok()) {
    spdlog::critical("{}", started.status().ToString());
    return kExitFailure;
  }
  std::unique_ptr<grpc::Server> server = *std::move(started);
  const std::string address = ListeningAddress(config.listen, port);
  spdlog::info("listening on {}", address);
  std::printf("cairnd listening on %s\n", address.c_str());
  std::fflush(stdout);

  int signal_number = 0;
  if (int err = sigwait(&stop_signals, &signal_number); err != 0) {
    spdlog::critical("sigwait failed: {}", strerror(err));
    signal_number = SIGTERM;
  }
  spdlog::info("received {}, shutting down (in-flight calls get {} s)",
               signal_number == SIGINT ? "SIGINT" : "SIGTERM",
               std::chrono::seconds(kShutdownGrace).count());

  const absl::Time stop_start = absl::Now();
  // Every FUSE mount (--mount and Mount RPCs), before the refs and store
  // close; Mount RPCs arriving from now on are refused (UNAVAILABLE).
  mount_service->UnmountAll();
  if (grpc::HealthCheckServiceInterface* health =
          server->GetHealthCheckService()) {
    health->Shutdown();  // NOT_SERVING from now on.
  }
  server->Shutdown(std::chrono::system_clock::now() + kShutdownGrace);
  server->Wait();
  server.reset();
  mount_service.reset();
  refs_service.reset();
  service.reset();
  refs.reset();
  spdlog::info("gRPC stopped; flushing pending indexes");

  int code = 0;
  if (absl::Status s = store->WaitDurable(); !s.ok()) {
    spdlog::error(
        "flushing indexes failed (they are re-derived at the next "
        "start): {}",
        s.ToString());
    code = kExitFailure;
  }
  store.reset();
  spdlog::info("stopped in {:.3f} s",
               absl::ToDoubleSeconds(absl::Now() - stop_start));
  return code;
}

}  // namespace
}  // namespace cairn

int main(int argc, char** argv) {
  // Keep freed memory for reuse instead of handing it back to the kernel
  // after every free. gRPC allocates its receive buffers per socket read
  // and frees them; with glibc's defaults each thread arena trimmed them
  // (madvise(MADV_DONTNEED)) and the next read faulted in fresh pages, which
  // on a VM whose host reclaims freed guest memory costs a host fault per
  // page: receiving a 198 MB push spent ~0.4 s of system time copying into
  // fresh pages (perf: _copy_to_iter). Blocks up to 8 MiB (gRPC's largest
  // messages) come from the arenas, and an arena keeps up to 16 MiB free at
  // its top. Measured (198 MB push, 2-core VM): server CPU 1.4 -> 0.7 s
  // until the durable ack, 2.9 -> 2.2 s for a whole push; peak RSS 94-99
  // MiB (it was 78-104); 32 MiB of trim threshold gave 104-183 MiB.
  mallopt(M_MMAP_THRESHOLD, 8 << 20);
  mallopt(M_TRIM_THRESHOLD, 16 << 20);
  auto [config, exit] = cairn::ParseArgs(argc, argv);
  if (!config.has_value()) return exit.code;
  return cairn::Run(*config);
}
