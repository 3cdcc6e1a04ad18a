// Copyright 2026 The Cairn Authors.

#include "fuse/errno.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "store/blob_store.h"
#include "store/errno_status.h"

namespace cairn {
namespace {

TEST(StatusToErrnoTest, CodesWithoutAnErrnoMapAsDocumented) {
  EXPECT_EQ(StatusToErrno(absl::OkStatus()), 0);
  EXPECT_EQ(StatusToErrno(absl::NotFoundError("x")), ENOENT);
  EXPECT_EQ(StatusToErrno(absl::DataLossError("x")), EIO);
  EXPECT_EQ(StatusToErrno(absl::ResourceExhaustedError("x")), ENOMEM);
  EXPECT_EQ(StatusToErrno(absl::PermissionDeniedError("x")), EACCES);
  EXPECT_EQ(StatusToErrno(absl::InternalError("x")), EIO);
}

TEST(StatusToErrnoTest, TheErrnoAStatusCameFromIsKept) {
  EXPECT_EQ(StatusToErrno(WithErrno(absl::ResourceExhaustedError("x"), EMFILE)),
            EMFILE);
  EXPECT_EQ(StatusToErrno(WithErrno(absl::ResourceExhaustedError("x"), ENFILE)),
            ENFILE);
  EXPECT_EQ(StatusToErrno(WithErrno(absl::ResourceExhaustedError("x"), ENOMEM)),
            ENOMEM);
  EXPECT_EQ(StatusToErrno(WithErrno(absl::PermissionDeniedError("x"), EPERM)),
            EPERM);
  // Only an errno that fits the code is taken: the code decides.
  EXPECT_EQ(StatusToErrno(WithErrno(absl::ResourceExhaustedError("x"), EPERM)),
            ENOMEM);
  EXPECT_EQ(StatusToErrno(WithErrno(absl::DataLossError("x"), EIO)), EIO);
}

// A blob store that cannot open a blob because the process's file table is
// full: the mount's caller gets EMFILE, not ENOMEM.
TEST(StatusToErrnoTest, BlobOpenWithTheFileTableFullIsEmfile) {
  const char* base = getenv("TEST_TMPDIR");
  std::string root =
      absl::StrCat(base != nullptr ? base : "/tmp", "/errno_test.XXXXXX");
  ASSERT_NE(mkdtemp(&root[0]), nullptr) << strerror(errno);
  absl::StatusOr<std::unique_ptr<BlobStore>> store = BlobStore::Open(root);
  ASSERT_TRUE(store.ok()) << store.status();
  absl::StatusOr<std::unique_ptr<BlobWriter>> writer = (*store)->NewWriter();
  ASSERT_TRUE(writer.ok()) << writer.status();
  ASSERT_TRUE((*writer)->Append("some bytes").ok());
  absl::StatusOr<Digest> digest = (*writer)->Commit(Durability::kDurable);
  ASSERT_TRUE(digest.ok()) << digest.status();

  struct rlimit old_limit;
  ASSERT_EQ(getrlimit(RLIMIT_NOFILE, &old_limit), 0);
  struct rlimit low = old_limit;
  low.rlim_cur = 64;
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &low), 0) << strerror(errno);
  std::vector<int> filler;
  for (;;) {
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    if (fd < 0) break;
    filler.push_back(fd);
  }
  const int open_errno = errno;
  absl::StatusOr<int> fd = (*store)->OpenFd(*digest);
  for (int f : filler) close(f);
  ASSERT_EQ(setrlimit(RLIMIT_NOFILE, &old_limit), 0);

  ASSERT_EQ(open_errno, EMFILE);
  ASSERT_FALSE(fd.ok());
  EXPECT_TRUE(absl::IsResourceExhausted(fd.status())) << fd.status();
  EXPECT_EQ(StatusToErrno(fd.status()), EMFILE) << fd.status();
}

}  // namespace
}  // namespace cairn
