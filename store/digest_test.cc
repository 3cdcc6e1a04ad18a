// Copyright 2026 The Cairn Authors.

#include "store/digest.h"

#include "gtest/gtest.h"

namespace cairn {
namespace {

// FIPS 180-2 test vectors.
constexpr char kEmpty[] =
    "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
constexpr char kAbc[] =
    "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

TEST(DigestTest, KnownVectors) {
  EXPECT_EQ(Sha256Of("").ToString(), kEmpty);
  EXPECT_EQ(Sha256Of("abc").ToString(), kAbc);
}

TEST(DigestTest, StreamingEqualsOneShot) {
  std::string data(1 << 20, 'x');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  Sha256 h;
  for (size_t off = 0; off < data.size(); off += 4097) {
    h.Update(absl::string_view(data).substr(off, 4097));
  }
  EXPECT_EQ(h.Finish(), Sha256Of(data));
}

TEST(DigestTest, ParseRoundTrip) {
  auto d = Digest::Parse(kAbc);
  ASSERT_TRUE(d.ok()) << d.status();
  EXPECT_EQ(d->ToString(), kAbc);
  auto raw = Digest::FromRaw(d->raw());
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, *d);
}

TEST(DigestTest, RejectsMalformed) {
  std::string upper = kAbc;
  upper[10] = 'A';
  for (std::string bad :
       {std::string(""), std::string("sha256:"), std::string(kAbc).substr(7),
        std::string("sha512:") + std::string(kAbc).substr(7), upper,
        std::string(kAbc) + "0", std::string(kAbc).substr(0, 70)}) {
    auto d = Digest::Parse(bad);
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_NE(d.status().message().find("sha256:<64 lowercase hex>"),
              std::string::npos);
  }
  EXPECT_FALSE(Digest::FromRaw("short").ok());
}

}  // namespace
}  // namespace cairn
