// Copyright 2026 The Cairn Authors.
//
// The one place where absl::Status and grpc::Status are converted. Codes
// map one to one (both follow google.rpc.Code); messages are kept.

#ifndef CAIRN_TOOLS_RPC_STATUS_H_
#define CAIRN_TOOLS_RPC_STATUS_H_

#include "absl/status/status.h"
#include "grpcpp/support/status.h"

namespace cairn {

grpc::Status ToGrpcStatus(const absl::Status& status);
absl::Status FromGrpcStatus(const grpc::Status& status);

}  // namespace cairn

#endif  // CAIRN_TOOLS_RPC_STATUS_H_
