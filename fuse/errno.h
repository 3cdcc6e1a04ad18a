// Copyright 2026 The Cairn Authors.
//
// The one place where the FUSE layer maps absl::Status to errno values.

#ifndef CAIRN_FUSE_ERRNO_H_
#define CAIRN_FUSE_ERRNO_H_

#include "absl/status/status.h"

namespace cairn {

// The positive errno a FUSE reply carries for `status` (0 for OK):
// NotFound -> ENOENT, InvalidArgument -> EINVAL, PermissionDenied -> EACCES,
// FailedPrecondition -> ENOENT (e.g. a yanked release: it does not resolve),
// OutOfRange -> EINVAL, DataLoss -> EIO, Unimplemented -> ENOSYS,
// ResourceExhausted -> ENOMEM, Unavailable -> EAGAIN, everything else EIO.
// A ResourceExhausted or PermissionDenied status carrying the errno it came
// from (store/errno_status.h) maps to that errno when it is one of ENOSPC,
// EDQUOT, EMFILE, ENFILE (ResourceExhausted) or EPERM (PermissionDenied).
int StatusToErrno(const absl::Status& status);

}  // namespace cairn

#endif  // CAIRN_FUSE_ERRNO_H_
