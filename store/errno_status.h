// Copyright 2026 The Cairn Authors.
//
// The errno a status came from, carried as a status payload, so that a
// layer mapping statuses back to errno values (the FUSE layer) can give the
// caller the precise error: EMFILE rather than the ENOMEM every
// ResourceExhausted would otherwise become. Pure functions; thread-safe.

#ifndef CAIRN_STORE_ERRNO_STATUS_H_
#define CAIRN_STORE_ERRNO_STATUS_H_

#include <optional>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/cord.h"
#include "absl/strings/numbers.h"
#include "absl/strings/string_view.h"
#include "absl/types/optional.h"

namespace cairn {

// Type URL of the payload: the errno in decimal ASCII.
inline constexpr absl::string_view kErrnoPayloadUrl = "type.cairn.dev/errno";

// `status` with the payload recording `err` (> 0). An OK status stays OK
// (absl drops payloads of OK statuses).
inline absl::Status WithErrno(absl::Status status, int err) {
  status.SetPayload(kErrnoPayloadUrl, absl::Cord(std::to_string(err)));
  return status;
}

// The errno WithErrno recorded in `status`, or nullopt if there is none (or
// it does not parse as a positive number).
inline std::optional<int> ErrnoOf(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrnoPayloadUrl);
  int err = 0;
  if (!payload.has_value() || !absl::SimpleAtoi(std::string(*payload), &err) ||
      err <= 0) {
    return std::nullopt;
  }
  return err;
}

}  // namespace cairn

#endif  // CAIRN_STORE_ERRNO_STATUS_H_
