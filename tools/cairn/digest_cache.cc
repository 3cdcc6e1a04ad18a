// Copyright 2026 The Cairn Authors.

#include "tools/cairn/digest_cache.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

int64_t Nanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

// "size mtime_ns ctime_ns recorded_at_ns digest"
std::string Stamp(const struct stat& st) {
  return absl::StrCat(st.st_size, " ", Nanos(st.st_mtim), " ",
                      Nanos(st.st_ctim));
}

void MakeDirs(const std::string& path) {
  for (size_t i = 1; i <= path.size(); ++i) {
    if (i == path.size() || path[i] == '/') {
      mkdir(path.substr(0, i).c_str(), 0755);
    }
  }
}

}  // namespace

DigestCache DigestCache::Default() {
  if (const char* d = std::getenv("CAIRN_CACHE_DIR"); d && *d) {
    return DigestCache(absl::StrCat(d, "/digests"));
  }
  if (const char* d = std::getenv("XDG_CACHE_HOME"); d && *d) {
    return DigestCache(absl::StrCat(d, "/cairn/digests"));
  }
  if (const char* d = std::getenv("HOME"); d && *d) {
    return DigestCache(absl::StrCat(d, "/.cache/cairn/digests"));
  }
  return DigestCache("");
}

std::string DigestCache::EntryPath(const struct stat& st) const {
  return absl::StrCat(dir_, "/", static_cast<uint64_t>(st.st_dev), "-",
                      static_cast<uint64_t>(st.st_ino));
}

std::optional<Digest> DigestCache::Lookup(const struct stat& st) const {
  if (dir_.empty()) return std::nullopt;
  std::ifstream in(EntryPath(st));
  std::string size, mtime, ctime, digest_text;
  int64_t recorded_at = 0;
  if (!(in >> size >> mtime >> ctime >> recorded_at >> digest_text)) {
    return std::nullopt;
  }
  if (absl::StrCat(size, " ", mtime, " ", ctime) != Stamp(st)) {
    return std::nullopt;
  }
  if (recorded_at - Nanos(st.st_ctim) <
      kRacyWindowSeconds * int64_t{1000000000}) {
    return std::nullopt;  // Racily clean: a same-tick write could hide.
  }
  absl::StatusOr<Digest> digest = Digest::Parse(digest_text);
  if (!digest.ok()) return std::nullopt;
  return *digest;
}

int64_t DigestCache::NowNanos() {
  struct timespec now;
  clock_gettime(CLOCK_REALTIME, &now);
  return Nanos(now);
}

void DigestCache::Store(const struct stat& st, int64_t stat_time_ns,
                        const Digest& digest) const {
  if (dir_.empty()) return;
  MakeDirs(dir_);
  const std::string path = EntryPath(st);
  const std::string temp = absl::StrCat(path, ".", getpid(), ".tmp");
  {
    std::ofstream out(temp, std::ios::trunc);
    out << Stamp(st) << " " << stat_time_ns << " " << digest.ToString() << "\n";
    if (!out.good()) {
      std::remove(temp.c_str());
      return;
    }
  }
  if (std::rename(temp.c_str(), path.c_str()) != 0) std::remove(temp.c_str());
}

}  // namespace cairn
