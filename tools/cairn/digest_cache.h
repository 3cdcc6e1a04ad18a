// Copyright 2026 The Cairn Authors.
//
// Remembers the SHA-256 of local files so that pushing a file the store
// already holds costs a stat and one FindMissing call, not a full read.
//
// The scheme is git's index: an entry is keyed by the file's identity
// (st_dev, st_ino) and trusted only while its size, mtime and ctime (in
// nanoseconds) are unchanged; any write, truncate, rename-over, chmod or
// touch changes ctime. Like git's "racily clean" rule, an entry recorded
// less than kRacyWindowSeconds after the file's ctime is not trusted, since
// a write within the same timestamp tick would not change the stamps.
//
// Storage: one small file per entry, "<dev>-<ino>", under the cache
// directory, written to a temp name and renamed, so concurrent cairn
// processes never see a torn entry. Entries are a few dozen bytes; nothing
// prunes them (removing the directory is always safe).
//
// Thread-compatible. The cache is an optimisation: every failure to read or
// write it is ignored and the file is hashed instead.

#ifndef CAIRN_TOOLS_CAIRN_DIGEST_CACHE_H_
#define CAIRN_TOOLS_CAIRN_DIGEST_CACHE_H_

#include <sys/stat.h>

#include <optional>
#include <string>

#include "store/digest.h"

namespace cairn {

class DigestCache {
 public:
  static constexpr int64_t kRacyWindowSeconds = 2;

  // A cache in `dir` (created on first store). Empty `dir` disables it.
  explicit DigestCache(std::string dir) : dir_(std::move(dir)) {}

  // $CAIRN_CACHE_DIR/digests, else $XDG_CACHE_HOME/cairn/digests, else
  // $HOME/.cache/cairn/digests; disabled if none is set.
  static DigestCache Default();

  // The digest recorded for the file `st` describes, if still valid.
  std::optional<Digest> Lookup(const struct stat& st) const;

  // Nanoseconds since the epoch (CLOCK_REALTIME), for Store's
  // `stat_time_ns`.
  static int64_t NowNanos();

  // Records that the file `st` describes hashes to `digest`.
  // `stat_time_ns` (NowNanos) must be read before the stat(2) that gave
  // `st`: it is what the racy window is measured from. A time read after
  // hashing would let a write landing in the stat's timestamp tick, after
  // its bytes were hashed, pass for clean.
  void Store(const struct stat& st, int64_t stat_time_ns,
             const Digest& digest) const;

 private:
  std::string EntryPath(const struct stat& st) const;
  const std::string dir_;
};

}  // namespace cairn

#endif  // CAIRN_TOOLS_CAIRN_DIGEST_CACHE_H_
