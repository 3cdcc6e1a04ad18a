// Copyright 2026 The Cairn Authors.

#include "store/digest.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <string>

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

// Sha256OfFd hashes the whole file whatever the fd's offset, which it
// leaves alone; a read that fails is an error, not a digest.
TEST(DigestTest, Sha256OfFd) {
  std::string data(3 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<char>(i * 7);
  data += "tail";
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  const int fd = fileno(f);
  ASSERT_EQ(write(fd, data.data(), data.size()),
            static_cast<ssize_t>(data.size()));
  ASSERT_EQ(lseek(fd, 5, SEEK_SET), 5);
  absl::StatusOr<FileDigest> hashed = Sha256OfFd(fd);
  ASSERT_TRUE(hashed.ok()) << hashed.status();
  EXPECT_EQ(hashed->digest, Sha256Of(data));
  EXPECT_EQ(hashed->size, data.size());
  EXPECT_EQ(lseek(fd, 0, SEEK_CUR), 5);
  fclose(f);

  const int dir = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(dir, 0);
  EXPECT_FALSE(Sha256OfFd(dir).ok());  // EISDIR
  close(dir);
}

}  // namespace
}  // namespace cairn
