// Copyright 2026 The Cairn Authors.

#include "store/digest.h"

#include <fcntl.h>
#include <openssl/evp.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"

namespace cairn {
namespace {

constexpr char kHex[] = "0123456789abcdef";

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

absl::Status BadDigest(absl::string_view text, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("invalid digest \"", absl::CHexEscape(text.substr(0, 100)),
                   "\": ", why, " (expected sha256:<64 lowercase hex>)"));
}

}  // namespace

absl::StatusOr<Digest> Digest::Parse(absl::string_view text) {
  if (text.substr(0, kPrefix.size()) != kPrefix) {
    return BadDigest(text, "missing \"sha256:\" prefix");
  }
  absl::string_view hex = text.substr(kPrefix.size());
  if (hex.size() != 2 * kSize) {
    return BadDigest(
        text, absl::StrCat("has ", hex.size(), " hex characters, not 64"));
  }
  Digest d;
  for (size_t i = 0; i < kSize; ++i) {
    int hi = HexValue(hex[2 * i]);
    int lo = HexValue(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      return BadDigest(text, "contains a character that is not lowercase hex");
    }
    d.bytes_[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return d;
}

absl::StatusOr<Digest> Digest::FromRaw(absl::string_view raw) {
  if (raw.size() != kSize) {
    return absl::InvalidArgumentError(
        absl::StrCat("raw digest has ", raw.size(), " bytes, not ", kSize));
  }
  Digest d;
  std::memcpy(d.bytes_.data(), raw.data(), kSize);
  return d;
}

std::string Digest::Hex() const {
  std::string out(2 * kSize, '0');
  for (size_t i = 0; i < kSize; ++i) {
    out[2 * i] = kHex[bytes_[i] >> 4];
    out[2 * i + 1] = kHex[bytes_[i] & 0xf];
  }
  return out;
}

std::string Digest::ToString() const { return absl::StrCat(kPrefix, Hex()); }

struct Sha256::Ctx {
  EVP_MD_CTX* md;
};

Sha256::Sha256() : ctx_(new Ctx{EVP_MD_CTX_new()}) { Reset(); }

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_->md);
  delete ctx_;
}

void Sha256::Reset() { EVP_DigestInit_ex(ctx_->md, EVP_sha256(), nullptr); }

void Sha256::Update(const void* data, size_t size) {
  EVP_DigestUpdate(ctx_->md, data, size);
}

Digest Sha256::Finish() {
  Digest d;
  unsigned int len = 0;
  EVP_DigestFinal_ex(ctx_->md, d.bytes_.data(), &len);
  return d;
}

Digest Sha256Of(absl::string_view data) {
  Sha256 h;
  h.Update(data);
  return h.Finish();
}

absl::StatusOr<FileDigest> Sha256OfFd(int fd, const std::atomic<bool>* cancel) {
  posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
  Sha256 hash;
  std::vector<char> buf(1 << 20);
  FileDigest out;
  for (;;) {
    if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
      return absl::CancelledError(
          absl::StrCat("hash cancelled after ", out.size, " bytes"));
    }
    const ssize_t n = pread(fd, buf.data(), buf.size(), out.size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return absl::ErrnoToStatus(errno, "pread");
    }
    if (n == 0) break;
    hash.Update(buf.data(), static_cast<size_t>(n));
    out.size += static_cast<uint64_t>(n);
  }
  out.digest = hash.Finish();
  return out;
}

}  // namespace cairn
