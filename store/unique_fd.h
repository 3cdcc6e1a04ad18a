// Copyright 2026 The Cairn Authors.
//
// An owned POSIX file descriptor. Move-only; not thread-safe.

#ifndef CAIRN_STORE_UNIQUE_FD_H_
#define CAIRN_STORE_UNIQUE_FD_H_

#include <unistd.h>

#include <cerrno>
#include <utility>

namespace cairn {

class UniqueFd {
 public:
  explicit UniqueFd(int fd = -1) : fd_(fd) {}
  ~UniqueFd() { Reset(); }
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) {
      Reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  // The descriptor, or -1.
  int get() const { return fd_; }

  // Gives the descriptor up without closing it; returns it (or -1).
  int Release() { return std::exchange(fd_, -1); }

  // Closes the descriptor (if any); returns close()'s errno, or 0.
  int Reset() {
    int err = 0;
    if (fd_ >= 0 && close(fd_) != 0) err = errno;
    fd_ = -1;
    return err;
  }

 private:
  int fd_;
};

}  // namespace cairn

#endif  // CAIRN_STORE_UNIQUE_FD_H_
