// Copyright 2026 The Cairn Authors.
//
// Builds tarballs in memory for tests, with libarchive's writer.

#ifndef CAIRN_STORE_TESTING_TAR_BUILDER_H_
#define CAIRN_STORE_TESTING_TAR_BUILDER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace cairn::testing {

struct TarEntry {
  enum Type { kFile, kDir, kSymlink, kHardlink, kCharDevice, kFifo };
  std::string path;
  Type type = kFile;
  int mode = 0644;
  std::string content;  // kFile: bytes; kSymlink/kHardlink: target path.
};

enum class TarCompression { kNone, kGzip, kZstd };

// Returns the archive's bytes (pax restricted format). Aborts the test
// binary on a libarchive error: callers pass well-formed entries.
std::string BuildTar(const std::vector<TarEntry>& entries,
                     TarCompression compression = TarCompression::kGzip);

// `n` pseudo-random bytes for file contents (the high byte of the LCG
// x = x * 1103515245 + 12345 from `seed`): the same for the same seed, and
// no two 4 KiB pages equal.
std::string PatternBytes(size_t n, uint32_t seed);

}  // namespace cairn::testing

#endif  // CAIRN_STORE_TESTING_TAR_BUILDER_H_
