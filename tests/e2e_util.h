// Copyright 2026 The Cairn Authors.
//
// Helpers shared by the end-to-end and crash tests: files, hashing (OpenSSL
// directly, independent of the store's own digest code), a small gRPC
// client for cairn.v1.Cas, and checks of a data directory's blob files.

#ifndef CAIRN_TESTS_E2E_UTIL_H_
#define CAIRN_TESTS_E2E_UTIL_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "grpcpp/channel.h"
#include "proto/cas.grpc.pb.h"
#include "proto/cas.pb.h"

namespace cairn::testing {

absl::StatusOr<std::string> ReadFile(const std::string& path);
absl::Status WriteFile(const std::string& path, absl::string_view bytes);

// 64 lowercase hex characters of SHA-256(data), via OpenSSL.
std::string Sha256Hex(absl::string_view data);
// "sha256:" + Sha256Hex(data).
std::string DigestOf(absl::string_view data);

// `size` pseudo-random bytes determined by `seed` (incompressible).
std::string RandomBytes(size_t size, uint64_t seed);

// A client of one cairnd. Thread-safe (the stub is).
class CasClient {
 public:
  explicit CasClient(const std::string& address);

  cairn::v1::Cas::Stub& stub() { return *stub_; }

  // Streams `bytes` in `chunk`-byte messages, the header (with
  // `expected_digest` if non-empty) in the first.
  absl::StatusOr<cairn::v1::WriteResponse> Push(
      absl::string_view bytes, const std::string& expected_digest = "",
      size_t chunk = 1 << 20);
  // The whole blob.
  absl::StatusOr<std::string> Pull(const std::string& digest);
  // The digests of `digests` the store reports missing.
  absl::StatusOr<std::vector<std::string>> FindMissing(
      const std::vector<std::string>& digests);
  absl::StatusOr<cairn::v1::StatResponse> Stat(const std::string& digest);
  absl::StatusOr<std::vector<cairn::v1::FileEntry>> ListFiles(
      const std::string& digest);

 private:
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<cairn::v1::Cas::Stub> stub_;
};

// Blob files under <data_dir>/blobs, keyed by "sha256:<hex>" taken from
// their file names, with their paths.
absl::StatusOr<std::map<std::string, std::string>> ListBlobFiles(
    const std::string& data_dir);

// Checks that each blob file's content hashes to its file name, for every
// blob file (or only those named in `only`, when non-null). Errors:
// DataLoss listing every mismatch.
absl::Status CheckBlobFiles(const std::string& data_dir,
                            const std::vector<std::string>* only = nullptr);

// Names of the entries directly in `dir` (none if it does not exist).
std::vector<std::string> ListDir(const std::string& dir);

}  // namespace cairn::testing

#endif  // CAIRN_TESTS_E2E_UTIL_H_
