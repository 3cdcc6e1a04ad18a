// Copyright 2026 The Cairn Authors.

#include "tools/rpc/status.h"

#include "gtest/gtest.h"

namespace cairn {
namespace {

TEST(StatusTest, CodesAndMessagesRoundTrip) {
  for (int c = 0; c <= 16; ++c) {
    absl::Status s(static_cast<absl::StatusCode>(c), c ? "boom" : "");
    grpc::Status g = ToGrpcStatus(s);
    EXPECT_EQ(static_cast<int>(g.error_code()), c);
    EXPECT_EQ(FromGrpcStatus(g), s);
  }
  EXPECT_EQ(ToGrpcStatus(absl::DataLossError("x")).error_code(),
            grpc::StatusCode::DATA_LOSS);
  EXPECT_EQ(ToGrpcStatus(absl::AbortedError("x")).error_code(),
            grpc::StatusCode::ABORTED);
}

}  // namespace
}  // namespace cairn
