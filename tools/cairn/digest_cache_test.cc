// Copyright 2026 The Cairn Authors.

#include "tools/cairn/digest_cache.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

int64_t Nanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

class DigestCacheTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = absl::StrCat(std::getenv("TEST_TMPDIR"), "/cache_", getpid());
    std::filesystem::remove_all(root_);
    std::filesystem::create_directories(root_);
    file_ = root_ + "/artefact.tar.gz";
    Write("first content");
  }
  void Write(const std::string& content) {
    std::ofstream(file_, std::ios::trunc) << content;
  }
  struct stat Stat() {
    struct stat st;
    EXPECT_EQ(stat(file_.c_str(), &st), 0);
    return st;
  }
  // Writes an entry as Store would have, recorded `age_s` after ctime.
  void WriteEntry(const struct stat& st, int age_s, const Digest& d) {
    std::filesystem::create_directories(root_ + "/digests");
    std::ofstream(absl::StrCat(root_, "/digests/", st.st_dev, "-", st.st_ino))
        << st.st_size << " " << Nanos(st.st_mtim) << " " << Nanos(st.st_ctim)
        << " " << Nanos(st.st_ctim) + int64_t{age_s} * 1000000000 << " "
        << d.ToString() << "\n";
  }
  std::string root_, file_;
};

TEST_F(DigestCacheTest, FreshEntryIsRacyAndNotTrusted) {
  DigestCache cache(root_ + "/digests");
  const struct stat st = Stat();
  cache.Store(st, DigestCache::NowNanos(), Sha256Of("first content"));
  // Recorded within the racy window of the file's ctime.
  EXPECT_FALSE(cache.Lookup(st).has_value());
}

// The racy window counts from when the file was stat'ed, not from when
// its (maybe long) hash was stored: a write in the stat's tick after its
// bytes were hashed would otherwise pass for clean.
TEST_F(DigestCacheTest, RacyWindowCountsFromTheStat) {
  DigestCache cache(root_ + "/digests");
  const struct stat st = Stat();
  const int64_t ctime = Nanos(st.st_ctim);
  cache.Store(st, ctime + 1000000, Sha256Of("x"));
  EXPECT_FALSE(cache.Lookup(st).has_value());
  cache.Store(st, ctime + (DigestCache::kRacyWindowSeconds + 1) * 1000000000,
              Sha256Of("x"));
  EXPECT_EQ(cache.Lookup(st), Sha256Of("x"));
}

TEST_F(DigestCacheTest, SettledEntryIsTrustedUntilTheFileChanges) {
  DigestCache cache(root_ + "/digests");
  const struct stat st = Stat();
  WriteEntry(st, DigestCache::kRacyWindowSeconds + 1, Sha256Of("x"));
  std::optional<Digest> hit = cache.Lookup(st);
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(*hit, Sha256Of("x"));

  Write("other content, other size");
  EXPECT_FALSE(cache.Lookup(Stat()).has_value());
  // chmod changes only ctime: still a miss.
  const struct stat st2 = Stat();
  WriteEntry(st2, DigestCache::kRacyWindowSeconds + 1, Sha256Of("y"));
  ASSERT_TRUE(cache.Lookup(st2).has_value());
  ASSERT_EQ(chmod(file_.c_str(), 0600), 0);
  EXPECT_FALSE(cache.Lookup(Stat()).has_value());
}

TEST_F(DigestCacheTest, DisabledAndCorruptCachesMiss) {
  DigestCache disabled("");
  disabled.Store(Stat(), DigestCache::NowNanos(), Sha256Of("x"));
  EXPECT_FALSE(disabled.Lookup(Stat()).has_value());
  const struct stat st = Stat();
  std::filesystem::create_directories(root_ + "/digests");
  std::ofstream(absl::StrCat(root_, "/digests/", st.st_dev, "-", st.st_ino))
      << "garbage";
  EXPECT_FALSE(DigestCache(root_ + "/digests").Lookup(st).has_value());
}

}  // namespace
}  // namespace cairn
