// Copyright 2026 The Cairn Authors.

#include "tests/daemon.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <utility>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "absl/time/clock.h"

extern char** environ;

namespace cairn::testing {
namespace {

std::string Errno(absl::string_view what) {
  return absl::StrCat(what, ": ", std::strerror(errno));
}

bool Exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

std::string ReadWholeFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Milliseconds left until `deadline` for poll(), at least 0.
int PollTimeoutMs(absl::Time deadline) {
  const absl::Duration left = deadline - absl::Now();
  if (left <= absl::ZeroDuration()) return 0;
  // Round up so that poll does not spin on sub-millisecond remainders.
  return static_cast<int>(absl::ToInt64Milliseconds(left)) + 1;
}

std::string DescribeWaitStatus(int status) {
  if (WIFEXITED(status)) return absl::StrCat("exited ", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    return absl::StrCat("killed by signal ", WTERMSIG(status), " (",
                        strsignal(WTERMSIG(status)), ")");
  }
  return absl::StrCat("wait status ", status);
}

int ExitCodeOf(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

// Owns posix_spawn file actions.
class FileActions {
 public:
  FileActions() { posix_spawn_file_actions_init(&fa_); }
  ~FileActions() { posix_spawn_file_actions_destroy(&fa_); }
  posix_spawn_file_actions_t* get() { return &fa_; }

 private:
  posix_spawn_file_actions_t fa_;
};

absl::StatusOr<pid_t> Spawn(const std::vector<std::string>& argv,
                            FileActions& actions) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0].c_str(), actions.get(), nullptr,
                             args.data(), environ);
  if (rc != 0) {
    return absl::InternalError(
        absl::StrCat("posix_spawn ", argv[0], ": ", std::strerror(rc)));
  }
  return pid;
}

// Waits until `pid` (with pidfd `pidfd`, or -1) exits or `deadline` passes.
// Returns true if it exited (it is then reapable without blocking).
bool WaitExitable(int pidfd, absl::Time deadline) {
  if (pidfd < 0) return true;  // No pidfd: the caller blocks in waitpid.
  while (true) {
    pollfd p{pidfd, POLLIN, 0};
    const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (n > 0) return true;
    if (n < 0 && errno == EINTR) continue;
    if (absl::Now() >= deadline) return false;
  }
}

// A pidfd for `pid`, or -1 (then exits are awaited by blocking waitpid).
// Through syscall(): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++.
int PidfdOpen(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

int WaitPid(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

}  // namespace

std::string TestTmpDir() {
  const char* dir = std::getenv("TEST_TMPDIR");
  return dir != nullptr && *dir != '\0' ? dir : "/tmp";
}

std::string NewTempDir(absl::string_view prefix) {
  static std::atomic<int> counter{0};
  while (true) {
    std::string dir = absl::StrCat(TestTmpDir(), "/", prefix, "-", getpid(),
                                   "-", counter.fetch_add(1));
    if (::mkdir(dir.c_str(), 0755) == 0) return dir;
    if (errno != EEXIST) {
      std::fprintf(stderr, "NewTempDir: %s\n", Errno(dir).c_str());
      std::abort();
    }
  }
}

absl::StatusOr<std::string> RunfilePath(absl::string_view workspace_relative) {
  std::vector<std::string> candidates;
  const char* srcdir = std::getenv("TEST_SRCDIR");
  const char* workspace = std::getenv("TEST_WORKSPACE");
  const char* runfiles = std::getenv("RUNFILES_DIR");
  for (const char* root : {srcdir, runfiles}) {
    if (root == nullptr || *root == '\0') continue;
    if (workspace != nullptr && *workspace != '\0') {
      candidates.push_back(
          absl::StrCat(root, "/", workspace, "/", workspace_relative));
    }
    candidates.push_back(absl::StrCat(root, "/cairn/", workspace_relative));
  }
  char self[4096];
  const ssize_t n = ::readlink("/proc/self/exe", self, sizeof(self) - 1);
  if (n > 0) {
    self[n] = '\0';
    candidates.push_back(
        absl::StrCat(self, ".runfiles/cairn/", workspace_relative));
  }
  for (const std::string& c : candidates) {
    if (Exists(c)) return c;
  }
  return absl::NotFoundError(
      absl::StrCat("runfile ", workspace_relative,
                   " not found; looked at: ", absl::StrJoin(candidates, ", ")));
}

std::string CommandResult::Describe() const {
  return absl::StrCat("exit ", exit_code, "; stdout: [", stdout_text,
                      "]; stderr: [", stderr_text, "]");
}

absl::StatusOr<CommandResult> RunCommand(const std::vector<std::string>& argv,
                                         absl::Duration timeout) {
  if (argv.empty()) return absl::InvalidArgumentError("RunCommand: no argv");
  const absl::Time deadline = absl::Now() + timeout;
  int out[2], err[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(Errno("pipe2"));
  if (::pipe2(err, O_CLOEXEC) != 0) {
    ::close(out[0]);
    ::close(out[1]);
    return absl::InternalError(Errno("pipe2"));
  }
  absl::StatusOr<pid_t> pid;
  {
    FileActions actions;
    posix_spawn_file_actions_addopen(actions.get(), 0, "/dev/null", O_RDONLY,
                                     0);
    posix_spawn_file_actions_adddup2(actions.get(), out[1], 1);
    posix_spawn_file_actions_adddup2(actions.get(), err[1], 2);
    pid = Spawn(argv, actions);
  }
  ::close(out[1]);
  ::close(err[1]);
  if (!pid.ok()) {
    ::close(out[0]);
    ::close(err[0]);
    return pid.status();
  }
  const int pidfd = PidfdOpen(*pid);

  CommandResult result;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* sinks[2] = {&result.stdout_text, &result.stderr_text};
  int open_fds = 2;
  bool timed_out = false;
  char buf[65536];
  while (open_fds > 0) {
    const int n = ::poll(fds, 2, PollTimeoutMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && absl::Now() >= deadline) {
      timed_out = true;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      const ssize_t r = ::read(fds[i].fd, buf, sizeof(buf));
      if (r > 0) {
        sinks[i]->append(buf, static_cast<size_t>(r));
      } else if (r == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  for (pollfd& p : fds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  if (!timed_out && !WaitExitable(pidfd, deadline)) timed_out = true;
  if (timed_out) ::kill(*pid, SIGKILL);
  const int status = WaitPid(*pid);
  if (pidfd >= 0) ::close(pidfd);
  result.exit_code = ExitCodeOf(status);
  if (timed_out) {
    return absl::DeadlineExceededError(
        absl::StrCat(absl::StrJoin(argv, " "), " did not finish in ",
                     absl::FormatDuration(timeout), "; ", result.Describe()));
  }
  return result;
}

absl::StatusOr<CommandResult> RunCli(const std::vector<std::string>& args,
                                     absl::Duration timeout) {
  static const absl::StatusOr<std::string>* const cli =
      new absl::StatusOr<std::string>(RunfilePath("tools/cairn/cairn"));
  if (!cli->ok()) return cli->status();
  std::vector<std::string> argv = {**cli};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, timeout);
}

absl::StatusOr<std::unique_ptr<Daemon>> Daemon::Start(DaemonOptions options) {
  absl::StatusOr<std::string> binary = RunfilePath("tools/cairnd/cairnd");
  if (!binary.ok()) return binary.status();
  std::unique_ptr<Daemon> daemon(new Daemon(*binary, std::move(options)));
  if (absl::Status s = daemon->Launch(); !s.ok()) return s;
  return daemon;
}

Daemon::Daemon(std::string binary, DaemonOptions options)
    : binary_(std::move(binary)), options_(std::move(options)) {
  data_dir_ =
      options_.data_dir.empty() ? NewTempDir("cairnd-data") : options_.data_dir;
}

Daemon::~Daemon() {
  if (running()) {
    ::kill(pid_, SIGKILL);
    (void)Reap(absl::Seconds(30));
  }
}

std::string Daemon::address() const {
  return absl::StrCat("127.0.0.1:", port_);
}

std::string Daemon::Logs() const {
  return stderr_path_.empty() ? "" : ReadWholeFile(stderr_path_);
}

std::string Daemon::AllLogs() const {
  std::string all;
  for (size_t i = 0; i < stderr_paths_.size(); ++i) {
    absl::StrAppend(&all, "--- cairnd run ", i + 1, " ---\n",
                    ReadWholeFile(stderr_paths_[i]));
  }
  return all;
}

absl::Status Daemon::Launch() {
  const absl::Time deadline = absl::Now() + options_.start_timeout;
  ++runs_;
  // Beside the data directory, not in it: the tests scan it.
  stderr_path_ = absl::StrCat(data_dir_, ".run", runs_, ".stderr");
  stderr_paths_.push_back(stderr_path_);
  std::vector<std::string> argv = {binary_, "--data-dir", data_dir_, "--listen",
                                   "127.0.0.1:0"};
  argv.insert(argv.end(), options_.extra_args.begin(),
              options_.extra_args.end());

  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0) return absl::InternalError(Errno("pipe2"));
  absl::StatusOr<pid_t> pid;
  {
    FileActions actions;
    posix_spawn_file_actions_addopen(actions.get(), 0, "/dev/null", O_RDONLY,
                                     0);
    posix_spawn_file_actions_adddup2(actions.get(), out[1], 1);
    posix_spawn_file_actions_addopen(actions.get(), 2, stderr_path_.c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0644);
    pid = Spawn(argv, actions);
  }
  ::close(out[1]);
  if (!pid.ok()) {
    ::close(out[0]);
    return pid.status();
  }
  pid_ = *pid;
  pidfd_ = PidfdOpen(pid_);
  stdout_fd_ = out[0];

  // Read stdout up to the "listening on" line.
  static constexpr char kListening[] = "cairnd listening on ";
  std::string text;
  char buf[4096];
  while (true) {
    const size_t at = text.find(kListening);
    if (at != std::string::npos && text.find('\n', at) != std::string::npos) {
      const std::string line =
          text.substr(at, text.find('\n', at) - at);  // Without '\n'.
      const size_t colon = line.rfind(':');
      int port = 0;
      if (colon == std::string::npos ||
          !absl::SimpleAtoi(absl::StripAsciiWhitespace(line.substr(colon + 1)),
                            &port) ||
          port <= 0 || port > 65535) {
        (void)Kill();
        return absl::InternalError(absl::StrCat(
            "cannot parse the port of cairnd's line '", line, "'"));
      }
      port_ = port;
      break;
    }
    pollfd p{stdout_fd_, POLLIN, 0};
    const int n = ::poll(&p, 1, PollTimeoutMs(deadline));
    if (n < 0 && errno == EINTR) continue;
    if (n == 0 && absl::Now() >= deadline) {
      (void)Kill();
      return absl::DeadlineExceededError(
          absl::StrCat("cairnd did not print 'cairnd listening on' within ",
                       absl::FormatDuration(options_.start_timeout),
                       "; stdout: [", text, "]; stderr: [", Logs(), "]"));
    }
    if (n <= 0) continue;
    const ssize_t r = ::read(stdout_fd_, buf, sizeof(buf));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      // The daemon closed stdout, normally by exiting.
      absl::StatusOr<int> status = Reap(absl::Seconds(10));
      return absl::InternalError(
          absl::StrCat("cairnd ended before listening (",
                       status.ok() ? DescribeWaitStatus(*status)
                                   : std::string(status.status().message()),
                       "); argv: ", absl::StrJoin(argv, " "), "; stdout: [",
                       text, "]; stderr: [", Logs(), "]"));
    }
    text.append(buf, static_cast<size_t>(r));
  }
  const int fd = stdout_fd_;
  stdout_drainer_ = std::thread([fd] {
    char sink[4096];
    while (true) {
      const ssize_t r = ::read(fd, sink, sizeof(sink));
      if (r > 0) continue;
      if (r < 0 && errno == EINTR) continue;
      return;
    }
  });
  return absl::OkStatus();
}

absl::StatusOr<int> Daemon::Reap(absl::Duration timeout) {
  const bool exited = WaitExitable(pidfd_, absl::Now() + timeout);
  if (!exited) ::kill(pid_, SIGKILL);
  const int status = WaitPid(pid_);
  pid_ = -1;
  port_ = 0;
  if (pidfd_ >= 0) ::close(pidfd_);
  pidfd_ = -1;
  if (stdout_drainer_.joinable()) stdout_drainer_.join();
  if (stdout_fd_ >= 0) ::close(stdout_fd_);
  stdout_fd_ = -1;
  if (!exited) {
    return absl::DeadlineExceededError(
        absl::StrCat("cairnd did not exit within ",
                     absl::FormatDuration(timeout), "; SIGKILLed it"));
  }
  return status;
}

absl::Status Daemon::Stop(absl::Duration timeout) {
  if (!running()) return absl::FailedPreconditionError("cairnd not running");
  if (::kill(pid_, SIGTERM) != 0) return absl::InternalError(Errno("kill"));
  absl::StatusOr<int> status = Reap(timeout);
  if (!status.ok()) {
    return absl::Status(status.status().code(),
                        absl::StrCat(status.status().message(),
                                     " after SIGTERM; stderr: [", Logs(), "]"));
  }
  if (!WIFEXITED(*status) || WEXITSTATUS(*status) != 0) {
    return absl::InternalError(
        absl::StrCat("cairnd ", DescribeWaitStatus(*status),
                     " after SIGTERM, want exit 0; stderr: [", Logs(), "]"));
  }
  return absl::OkStatus();
}

absl::Status Daemon::Kill() {
  if (!running()) return absl::FailedPreconditionError("cairnd not running");
  ::kill(pid_, SIGKILL);
  absl::StatusOr<int> status = Reap(absl::Seconds(30));
  return status.status();
}

absl::StatusOr<int> Daemon::WaitForExit(absl::Duration timeout) {
  if (!running()) return absl::FailedPreconditionError("cairnd not running");
  return Reap(timeout);
}

absl::Status Daemon::Restart(std::vector<std::string> extra_args) {
  if (running()) {
    return absl::FailedPreconditionError(
        "Restart: cairnd is still running; Stop() or Kill() it first");
  }
  options_.extra_args = std::move(extra_args);
  return Launch();
}

}  // namespace cairn::testing
