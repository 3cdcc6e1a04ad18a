// Copyright 2026 The Cairn Authors.
//
// FusePassthrough's protocol handling on hand-made requests and replies
// (no mount): what INIT and OPEN replies become. The backing-file ioctls
// need a FUSE connection and are tested through a real mount
// (fuse/cairn_fs_test.cc, tests/fuse_test.cc); here ioctl(2) is
// interposed to give the failures a mount cannot be made to give.

#include "fuse/passthrough.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cstdarg>
#include <cstring>
#include <string>

#include "absl/status/status.h"
#include "gtest/gtest.h"
#include "store/digest.h"

namespace {
// Armed (fake_fd >= 0): ioctl(2) on fake_fd fails with fake_errno if it is
// not 0, else returns fake_id; fake_calls counts the calls.
std::atomic<int> fake_fd{-1};
std::atomic<int> fake_errno{0};
std::atomic<int> fake_id{0};
std::atomic<int> fake_calls{0};
}  // namespace

extern "C" int ioctl(int fd, unsigned long request, ...) {
  va_list ap;
  va_start(ap, request);
  void* arg = va_arg(ap, void*);
  va_end(ap);
  if (fd == fake_fd.load()) {
    fake_calls.fetch_add(1);
    if (fake_errno.load() != 0) {
      errno = fake_errno.load();
      return -1;
    }
    return fake_id.load();
  }
  return static_cast<int>(syscall(SYS_ioctl, fd, request, arg));
}

namespace cairn {
namespace {

constexpr uint32_t kPassthroughFlags2 = 1u << 5;  // FUSE_PASSTHROUGH >> 32.
constexpr uint32_t kFopenPassthrough = 1u << 7;

// The raw bytes of a request with header `opcode`/`unique` and `body`.
template <typename Body>
std::string Request(uint32_t opcode, uint64_t unique, const Body& body) {
  fuse_in_header in;
  std::memset(&in, 0, sizeof(in));
  in.len = sizeof(in) + sizeof(body);
  in.opcode = opcode;
  in.unique = unique;
  std::string buf(reinterpret_cast<const char*>(&in), sizeof(in));
  buf.append(reinterpret_cast<const char*>(&body), sizeof(body));
  return buf;
}

fuse_init_in InitIn(uint32_t flags, uint32_t flags2) {
  fuse_init_in init;
  std::memset(&init, 0, sizeof(init));
  init.major = 7;
  init.minor = 41;
  init.flags = flags;
  init.flags2 = flags2;
  return init;
}

// A reply as libfuse sends it: header, then one argument.
template <typename Arg>
uint32_t Reply(FusePassthrough& p, uint64_t unique, int error, Arg* arg) {
  fuse_out_header out;
  std::memset(&out, 0, sizeof(out));
  out.unique = unique;
  out.error = error;
  struct iovec iov[2] = {{&out, sizeof(out)}, {arg, sizeof(*arg)}};
  return p.OnReply(iov, error == 0 ? 2 : 1);
}

// fuse_init_out with the 7.40 field this class sets (unused[0]).
uint32_t MaxStackDepth(const fuse_init_out& out) { return out.unused[0]; }

TEST(FusePassthroughTest, InitReplyAsksForPassthroughWhenOffered) {
  FusePassthrough p(-1);
  EXPECT_FALSE(p.active());
  const std::string init =
      Request(FUSE_INIT, 1, InitIn(FUSE_INIT_EXT, kPassthroughFlags2));
  p.OnRequest(init.data(), init.size());
  EXPECT_TRUE(p.active());

  fuse_init_out out;
  std::memset(&out, 0, sizeof(out));
  out.flags = FUSE_ASYNC_READ;
  EXPECT_EQ(Reply(p, 1, 0, &out), 0u);
  EXPECT_EQ(out.flags, FUSE_ASYNC_READ | FUSE_INIT_EXT);
  EXPECT_EQ(out.flags2, kPassthroughFlags2);
  EXPECT_EQ(MaxStackDepth(out), 1u);
  EXPECT_TRUE(p.active());
}

TEST(FusePassthroughTest, InitWithoutTheOfferIsLeftAlone) {
  // Flag bit set, but flags2 not valid without FUSE_INIT_EXT.
  for (const fuse_init_in& in :
       {InitIn(FUSE_INIT_EXT, 0), InitIn(0, kPassthroughFlags2)}) {
    FusePassthrough p(-1);
    const std::string init = Request(FUSE_INIT, 1, in);
    p.OnRequest(init.data(), init.size());
    EXPECT_FALSE(p.active());
    fuse_init_out out;
    std::memset(&out, 0, sizeof(out));
    Reply(p, 1, 0, &out);
    EXPECT_EQ(out.flags, 0u);
    EXPECT_EQ(out.flags2, 0u);
    EXPECT_EQ(MaxStackDepth(out), 0u);
  }
}

TEST(FusePassthroughTest, FailedInitDeactivates) {
  FusePassthrough p(-1);
  const std::string init =
      Request(FUSE_INIT, 1, InitIn(FUSE_INIT_EXT, kPassthroughFlags2));
  p.OnRequest(init.data(), init.size());
  fuse_init_out out;
  std::memset(&out, 0, sizeof(out));
  Reply(p, 1, -EPROTO, &out);
  EXPECT_FALSE(p.active());
}

TEST(FusePassthroughTest, OpenRepliesWithABackingIdGetPassthrough) {
  FusePassthrough p(-1);
  fuse_open_in open_in;
  std::memset(&open_in, 0, sizeof(open_in));
  for (uint64_t unique : {10, 11, 12, 13}) {
    const std::string req = Request(FUSE_OPEN, unique, open_in);
    p.OnRequest(req.data(), req.size());
  }

  fuse_open_out out{};
  out.fh = 7;
  out.open_flags = FOPEN_KEEP_CACHE;
  EXPECT_EQ(Reply(p, 10, 0, &out), 7u);
  EXPECT_EQ(out.open_flags, FOPEN_KEEP_CACHE | kFopenPassthrough);
  EXPECT_EQ(out.padding, 7u);  // backing_id in 7.40.
  EXPECT_EQ(out.fh, 7u);

  // fh 0: an open without a backing file.
  fuse_open_out plain{};
  plain.open_flags = FOPEN_KEEP_CACHE;
  EXPECT_EQ(Reply(p, 11, 0, &plain), 0u);
  EXPECT_EQ(plain.open_flags, FOPEN_KEEP_CACHE);
  EXPECT_EQ(plain.padding, 0u);

  // An error reply ends the OPEN: a later reply with its unique (which the
  // kernel never sends) would not be touched.
  fuse_open_out err{};
  EXPECT_EQ(Reply(p, 12, -EIO, &err), 0u);
  fuse_open_out late{};
  late.fh = 3;
  EXPECT_EQ(Reply(p, 12, 0, &late), 0u);
  EXPECT_EQ(late.open_flags, 0u);

  // A 16-byte reply to anything else (a READ, say) is never touched.
  fuse_open_out other{};
  other.fh = 9;
  EXPECT_EQ(Reply(p, 99, 0, &other), 0u);
  EXPECT_EQ(other.open_flags, 0u);
  EXPECT_EQ(other.padding, 0u);

  // Unique 13 is still pending and gets its passthrough.
  fuse_open_out last{};
  last.fh = 8;
  EXPECT_EQ(Reply(p, 13, 0, &last), 8u);
  EXPECT_EQ(last.padding, 8u);
}

TEST(FusePassthroughTest, ShortAndForeignRequestsAreIgnored) {
  FusePassthrough p(-1);
  const std::string init =
      Request(FUSE_INIT, 1, InitIn(FUSE_INIT_EXT, kPassthroughFlags2));
  p.OnRequest(init.data(), sizeof(fuse_in_header) + 4);  // Truncated body.
  EXPECT_FALSE(p.active());
  p.OnRequest(init.data(), 3);
  fuse_getattr_in getattr;
  std::memset(&getattr, 0, sizeof(getattr));
  const std::string req = Request(FUSE_GETATTR, 5, getattr);
  p.OnRequest(req.data(), req.size());
  fuse_open_out out{};
  out.fh = 4;
  EXPECT_EQ(Reply(p, 5, 0, &out), 0u);
  EXPECT_EQ(out.open_flags, 0u);
}

TEST(FusePassthroughTest, AcquireOutsideAFuseConnectionNamesTheBlob) {
  // /dev/null is no FUSE device: the ioctl fails, and the refusal sticks.
  const int dev = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(dev, 0);
  FusePassthrough p(dev);
  const Digest d = Sha256Of("blob");
  const int blob = open("/dev/null", O_RDONLY | O_CLOEXEC);
  absl::StatusOr<uint32_t> id = p.Acquire(d, blob);
  ASSERT_FALSE(id.ok());
  EXPECT_NE(id.status().message().find(d.ToString()), std::string::npos)
      << id.status();
  EXPECT_NE(id.status().message().find("FUSE_DEV_IOC_BACKING_OPEN"),
            std::string::npos)
      << id.status();
  absl::StatusOr<uint32_t> again = p.Acquire(Sha256Of("other"), blob);
  EXPECT_EQ(again.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(p.live(), 0u);
  p.Release(1);  // Unknown: ignored.
  close(blob);
  close(dev);
}

// A transient failure (memory, ids, file table) sends only that blob
// through cairnd, for good (its inode may have cached opens now, which a
// passthrough open would conflict with); other blobs still get backing
// files. Any other failure is a refusal: no new blob gets one.
TEST(FusePassthroughTest, TransientFailuresFallBackPerBlob) {
  const int dev = open("/dev/null", O_RDWR | O_CLOEXEC);
  ASSERT_GE(dev, 0);
  FusePassthrough p(dev);
  fake_fd.store(dev);
  const int blob = dev;  // Not looked at by the fake.
  const Digest a = Sha256Of("a"), b = Sha256Of("b"), c = Sha256Of("c");

  for (int err : {ENOMEM, ENOSPC, EMFILE, ENFILE, EAGAIN}) {
    SCOPED_TRACE(err);
    const Digest d = Sha256Of(std::to_string(err));
    fake_errno.store(err);
    fake_calls.store(0);
    absl::StatusOr<uint32_t> id = p.Acquire(d, blob);
    EXPECT_TRUE(absl::IsResourceExhausted(id.status()) ||
                absl::IsUnavailable(id.status()))
        << id.status();
    EXPECT_FALSE(p.refused());
    // That blob is not tried again, even once the shortage is over.
    fake_errno.store(0);
    fake_id.store(7);
    EXPECT_EQ(p.Acquire(d, blob).status().code(),
              absl::StatusCode::kFailedPrecondition);
    EXPECT_EQ(fake_calls.load(), 1);
  }
  // Another blob still gets one.
  fake_errno.store(0);
  fake_id.store(7);
  absl::StatusOr<uint32_t> id = p.Acquire(a, blob);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, 7u);

  // A refusal stops new blobs; live ids are still handed out.
  fake_errno.store(EPERM);
  EXPECT_EQ(p.Acquire(b, blob).status().code(),
            absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(p.refused());
  fake_errno.store(0);
  fake_id.store(8);
  fake_calls.store(0);
  EXPECT_EQ(p.Acquire(c, blob).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(fake_calls.load(), 0);
  id = p.Acquire(a, blob);
  ASSERT_TRUE(id.ok()) << id.status();
  EXPECT_EQ(*id, 7u);
  p.Release(7);
  p.Release(7);
  EXPECT_EQ(p.live(), 0u);
  fake_fd.store(-1);
  close(dev);
}

}  // namespace
}  // namespace cairn
