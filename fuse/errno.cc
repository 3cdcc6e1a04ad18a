// Copyright 2026 The Cairn Authors.

#include "fuse/errno.h"

#include <errno.h>

#include <optional>

#include "store/errno_status.h"

namespace cairn {

int StatusToErrno(const absl::Status& status) {
  switch (status.code()) {
    case absl::StatusCode::kOk:
      return 0;
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kFailedPrecondition:
      return ENOENT;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return EINVAL;
    case absl::StatusCode::kPermissionDenied: {
      const std::optional<int> err = ErrnoOf(status);
      return err == EPERM ? EPERM : EACCES;
    }
    case absl::StatusCode::kUnimplemented:
      return ENOSYS;
    case absl::StatusCode::kResourceExhausted: {
      // The store's errors carry the errno they came from: a full file
      // table is ENFILE or EMFILE for the caller, not ENOMEM.
      const std::optional<int> err = ErrnoOf(status);
      if (err == ENOSPC || err == EDQUOT || err == EMFILE || err == ENFILE) {
        return *err;
      }
      return ENOMEM;
    }
    case absl::StatusCode::kUnavailable:
      return EAGAIN;
    default:
      return EIO;
  }
}

}  // namespace cairn
