// Copyright 2026 The Cairn Authors.

#include "tests/e2e_util.h"

#include <dirent.h>
#include <openssl/evp.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "grpcpp/security/credentials.h"
#include "grpcpp/support/channel_arguments.h"
#include "tools/rpc/status.h"

namespace cairn::testing {

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open ", path));
  std::string data(std::istreambuf_iterator<char>(in), {});
  if (in.bad()) return absl::InternalError(absl::StrCat("reading ", path));
  return data;
}

absl::Status WriteFile(const std::string& path, absl::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  out.close();
  if (!out) return absl::InternalError(absl::StrCat("writing ", path));
  return absl::OkStatus();
}

std::string Sha256Hex(absl::string_view data) {
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string hex;
  for (unsigned int i = 0; i < len; ++i) {
    hex.push_back(kHex[md[i] >> 4]);
    hex.push_back(kHex[md[i] & 0xf]);
  }
  return hex;
}

std::string DigestOf(absl::string_view data) {
  return absl::StrCat("sha256:", Sha256Hex(data));
}

std::string RandomBytes(size_t size, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string out(size, '\0');
  size_t i = 0;
  for (; i + 8 <= size; i += 8) {
    const uint64_t v = rng();
    std::memcpy(&out[i], &v, 8);
  }
  const uint64_t v = rng();
  std::memcpy(&out[i], &v, size - i);
  return out;
}

CasClient::CasClient(const std::string& address) {
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(16 << 20);
  args.SetMaxSendMessageSize(16 << 20);
  channel_ = grpc::CreateCustomChannel(
      address, grpc::InsecureChannelCredentials(), args);
  stub_ = cairn::v1::Cas::NewStub(channel_);
}

absl::StatusOr<cairn::v1::WriteResponse> CasClient::Push(
    absl::string_view bytes, const std::string& expected_digest, size_t chunk) {
  grpc::ClientContext context;
  cairn::v1::WriteResponse response;
  std::unique_ptr<grpc::ClientWriter<cairn::v1::WriteRequest>> writer =
      stub_->Write(&context, &response);
  size_t offset = 0;
  bool first = true;
  while (first || offset < bytes.size()) {
    cairn::v1::WriteRequest request;
    if (first && !expected_digest.empty()) {
      request.mutable_header()->set_expected_digest(expected_digest);
    }
    first = false;
    const size_t n = std::min(chunk, bytes.size() - offset);
    request.set_data(std::string(bytes.substr(offset, n)));
    offset += n;
    if (!writer->Write(request)) break;  // Finish() gives the reason.
  }
  writer->WritesDone();
  grpc::Status status = writer->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<std::string> CasClient::Pull(const std::string& digest) {
  grpc::ClientContext context;
  cairn::v1::ReadRequest request;
  request.set_digest(digest);
  std::unique_ptr<grpc::ClientReader<cairn::v1::ReadResponse>> reader =
      stub_->Read(&context, request);
  std::string out;
  cairn::v1::ReadResponse response;
  while (reader->Read(&response)) out += response.data();
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return out;
}

absl::StatusOr<std::vector<std::string>> CasClient::FindMissing(
    const std::vector<std::string>& digests) {
  grpc::ClientContext context;
  cairn::v1::FindMissingRequest request;
  for (const std::string& d : digests) request.add_digests(d);
  cairn::v1::FindMissingResponse response;
  grpc::Status status = stub_->FindMissing(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return std::vector<std::string>(response.missing_digests().begin(),
                                  response.missing_digests().end());
}

absl::StatusOr<cairn::v1::StatResponse> CasClient::Stat(
    const std::string& digest) {
  grpc::ClientContext context;
  cairn::v1::StatRequest request;
  request.set_digest(digest);
  cairn::v1::StatResponse response;
  grpc::Status status = stub_->Stat(&context, request, &response);
  if (!status.ok()) return FromGrpcStatus(status);
  return response;
}

absl::StatusOr<std::vector<cairn::v1::FileEntry>> CasClient::ListFiles(
    const std::string& digest) {
  grpc::ClientContext context;
  cairn::v1::ListFilesRequest request;
  request.set_digest(digest);
  std::unique_ptr<grpc::ClientReader<cairn::v1::ListFilesResponse>> reader =
      stub_->ListFiles(&context, request);
  std::vector<cairn::v1::FileEntry> entries;
  cairn::v1::ListFilesResponse response;
  while (reader->Read(&response)) {
    for (const cairn::v1::FileEntry& e : response.entries()) {
      entries.push_back(e);
    }
  }
  grpc::Status status = reader->Finish();
  if (!status.ok()) return FromGrpcStatus(status);
  return entries;
}

absl::StatusOr<std::map<std::string, std::string>> ListBlobFiles(
    const std::string& data_dir) {
  std::map<std::string, std::string> blobs;
  const std::filesystem::path root = std::filesystem::path(data_dir) / "blobs";
  std::error_code ec;
  if (!std::filesystem::exists(root, ec)) return blobs;
  for (auto it = std::filesystem::recursive_directory_iterator(root, ec);
       !ec && it != std::filesystem::recursive_directory_iterator();
       it.increment(ec)) {
    if (!it->is_regular_file()) continue;
    const std::string name = it->path().filename().string();
    blobs[absl::StrCat("sha256:", name)] = it->path().string();
  }
  if (ec) {
    return absl::InternalError(
        absl::StrCat("listing ", root.string(), ": ", ec.message()));
  }
  return blobs;
}

absl::Status CheckBlobFiles(const std::string& data_dir,
                            const std::vector<std::string>* only) {
  absl::StatusOr<std::map<std::string, std::string>> blobs =
      ListBlobFiles(data_dir);
  if (!blobs.ok()) return blobs.status();
  std::vector<std::string> bad;
  auto check = [&](const std::string& digest, const std::string& path) {
    absl::StatusOr<std::string> bytes = ReadFile(path);
    if (!bytes.ok()) {
      bad.push_back(absl::StrCat(path, ": ", bytes.status().message()));
      return;
    }
    const std::string actual = DigestOf(*bytes);
    if (actual != digest) {
      bad.push_back(absl::StrCat(path, " (", bytes->size(),
                                 " bytes) hashes to ", actual));
    }
  };
  if (only == nullptr) {
    for (const auto& [digest, path] : *blobs) check(digest, path);
  } else {
    for (const std::string& digest : *only) {
      auto it = blobs->find(digest);
      if (it == blobs->end()) {
        bad.push_back(absl::StrCat(digest, ": no blob file"));
      } else {
        check(digest, it->second);
      }
    }
  }
  if (!bad.empty()) {
    return absl::DataLossError(
        absl::StrCat("blob files whose content does not match their name: ",
                     absl::StrJoin(bad, "; ")));
  }
  return absl::OkStatus();
}

std::vector<std::string> ListDir(const std::string& dir) {
  std::vector<std::string> names;
  std::error_code ec;
  for (auto it = std::filesystem::directory_iterator(dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    names.push_back(it->path().filename().string());
  }
  return names;
}

}  // namespace cairn::testing
