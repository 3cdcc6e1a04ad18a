// Copyright 2026 The Cairn Authors.
//
// SHA-256 digests, the names of everything Cairn stores.
//
// Text form: "sha256:" followed by 64 lowercase hex characters (the OCI
// image-spec digest grammar restricted to sha256). Raw form: 32 bytes, used
// in RocksDB keys. Hashing uses OpenSSL's EVP interface, which picks the
// CPU's SHA extensions (SHA-NI) when present.

#ifndef CAIRN_STORE_DIGEST_H_
#define CAIRN_STORE_DIGEST_H_

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {

// A SHA-256 digest. Value type; thread-compatible.
class Digest {
 public:
  static constexpr size_t kSize = 32;  // Raw bytes.
  static constexpr absl::string_view kPrefix = "sha256:";

  // The all-zero digest; never the digest of real content in practice.
  Digest() : bytes_{} {}

  // Parses "sha256:<64 lowercase hex>". Errors: InvalidArgument naming the
  // input and the expected grammar (uppercase hex, other algorithms, wrong
  // length and stray characters are all rejected).
  static absl::StatusOr<Digest> Parse(absl::string_view text);

  // Builds a digest from its 32 raw bytes. Errors: InvalidArgument if
  // raw.size() != 32.
  static absl::StatusOr<Digest> FromRaw(absl::string_view raw);

  // "sha256:<64 lowercase hex>".
  std::string ToString() const;
  // The 64 lowercase hex characters alone.
  std::string Hex() const;
  // The 32 raw bytes.
  absl::string_view raw() const {
    return absl::string_view(reinterpret_cast<const char*>(bytes_.data()),
                             bytes_.size());
  }

  friend bool operator==(const Digest& a, const Digest& b) {
    return a.bytes_ == b.bytes_;
  }
  friend bool operator!=(const Digest& a, const Digest& b) { return !(a == b); }
  friend bool operator<(const Digest& a, const Digest& b) {
    return a.bytes_ < b.bytes_;
  }
  template <typename H>
  friend H AbslHashValue(H h, const Digest& d) {
    return H::combine(std::move(h), d.raw());
  }

 private:
  friend class Sha256;
  std::array<uint8_t, kSize> bytes_;
};

// Streaming SHA-256 (OpenSSL EVP). Not thread-safe; one per stream.
class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;

  // Adds `size` bytes at `data`.
  void Update(const void* data, size_t size);
  void Update(absl::string_view data) { Update(data.data(), data.size()); }
  // Returns the digest of everything added. The hasher must not be used
  // afterwards except through Reset().
  Digest Finish();
  // Starts a new, empty stream.
  void Reset();

 private:
  struct Ctx;
  Ctx* ctx_;
};

// The SHA-256 of `data`.
Digest Sha256Of(absl::string_view data);

// A file's SHA-256 and its size in bytes.
struct FileDigest {
  Digest digest;
  uint64_t size = 0;
};

// The SHA-256 of the bytes of open file `fd` from offset 0 to its end, read
// with pread(2) in 1 MiB chunks (the fd's offset is untouched; the kernel
// is told the reads are sequential), and their number. Errors: a failed
// pread as absl::ErrnoToStatus (EIO is Unknown, for example), which says
// nothing about the bytes; Cancelled once `*cancel` (if not null) is true,
// checked before each chunk. Thread-safe for distinct calls.
absl::StatusOr<FileDigest> Sha256OfFd(
    int fd, const std::atomic<bool>* cancel = nullptr);

}  // namespace cairn

#endif  // CAIRN_STORE_DIGEST_H_
