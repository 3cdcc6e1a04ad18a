// Copyright 2026 The Cairn Authors.

#include "tools/cairn/mounts.h"

#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

#include "absl/strings/str_cat.h"
#include "grpcpp/client_context.h"
#include "grpcpp/create_channel.h"
#include "tools/cairn/format.h"

namespace cairn {

MountsClient::MountsClient(const CasClient& cas)
    : options_(cas.options()), stub_(v1::Mounts::NewStub(cas.channel())) {}

void MountsClient::SetUnaryDeadline(grpc::ClientContext* context) const {
  context->set_deadline(std::chrono::system_clock::now() +
                        options_.unary_timeout);
}

absl::Status MountsClient::Error(const grpc::Status& status) const {
  if (status.error_code() == grpc::StatusCode::UNIMPLEMENTED) {
    return absl::UnimplementedError(absl::StrCat(
        "the server at ", options_.server,
        " does not serve cairn.v1.Mounts (a cairnd older than the mounts "
        "service?): ",
        status.error_message()));
  }
  return RpcStatus(status, options_.server);
}

absl::StatusOr<v1::ListMountsResponse> MountsClient::List() {
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  v1::ListMountsResponse response;
  grpc::Status status =
      stub_->List(&context, v1::ListMountsRequest(), &response);
  if (!status.ok()) return Error(status);
  return response;
}

absl::StatusOr<v1::MountInfo> MountsClient::Mount(const std::string& path,
                                                  bool allow_other) {
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  v1::MountRequest request;
  request.set_path(path);
  request.set_allow_other(allow_other);
  v1::MountResponse response;
  grpc::Status status = stub_->Mount(&context, request, &response);
  if (!status.ok()) return Error(status);
  return response.mount();
}

absl::StatusOr<v1::MountInfo> MountsClient::Unmount(const std::string& path) {
  grpc::ClientContext context;
  SetUnaryDeadline(&context);
  v1::UnmountRequest request;
  request.set_path(path);
  v1::UnmountResponse response;
  grpc::Status status = stub_->Unmount(&context, request, &response);
  if (!status.ok()) return Error(status);
  return response.mount();
}

namespace cli {
namespace {

absl::StatusOr<std::unique_ptr<MountsClient>> ConnectMounts(
    const GlobalFlags& flags) {
  ClientOptions options;
  options.server = flags.server;
  if (absl::Status s = ApplyGrpcEnvironment(&options); !s.ok()) return s;
  absl::StatusOr<std::unique_ptr<CasClient>> cas = CasClient::Create(options);
  if (!cas.ok()) return cas.status();
  return std::make_unique<MountsClient>(**cas);
}

// DIR as an absolute path without a trailing slash: symlinks in its
// existing part resolved (the daemon compares realpaths against its mount
// root, and refuses paths lexically outside it), else lexically normal
// (e.g. a stale mount, which cannot be resolved).
absl::StatusOr<std::string> AbsoluteDir(const std::string& dir) {
  if (dir.empty()) return absl::InvalidArgumentError("DIR must not be empty");
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(dir, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot make ", dir, " absolute: ", ec.message()));
  }
  std::filesystem::path resolved = std::filesystem::weakly_canonical(abs, ec);
  std::string s = (ec ? abs : resolved).lexically_normal().string();
  while (s.size() > 1 && s.back() == '/') s.pop_back();
  return s;
}

void PrintJson(const Io& io, const nlohmann::ordered_json& j) {
  *io.out << j.dump(2, ' ', false,
                    nlohmann::ordered_json::error_handler_t::replace)
          << "\n";
}

// Shared by mount and umount: one call, "<verb> <path>".
template <typename Call>
int RunMountCall(const GlobalFlags& flags, const std::string& dir,
                 const char* verb, const Io& io, Call call) {
  absl::StatusOr<std::string> path = AbsoluteDir(dir);
  if (!path.ok()) return ReportError(io, path.status(), kExitUsage);
  absl::StatusOr<std::unique_ptr<MountsClient>> client = ConnectMounts(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  absl::StatusOr<v1::MountInfo> info = call(**client, *path);
  if (!info.ok()) return ReportError(io, info.status());
  if (flags.json) {
    PrintJson(io, MountInfoToJson(*info));
  } else if (!flags.quiet) {
    *io.out << verb << " " << info->path() << "\n";
  }
  return kExitOk;
}

}  // namespace

std::string MountOriginName(v1::MountOrigin origin) {
  switch (origin) {
    case v1::MOUNT_ORIGIN_FLAG:
      return "flag";
    case v1::MOUNT_ORIGIN_RPC:
      return "rpc";
    default:
      return "unspecified";
  }
}

nlohmann::ordered_json MountInfoToJson(const v1::MountInfo& info) {
  nlohmann::ordered_json j;
  j["path"] = info.path();
  j["origin"] = MountOriginName(info.origin());
  j["allow_other"] = info.allow_other();
  j["passthrough"] = info.passthrough();
  j["ended"] = info.ended();
  j["slot"] = info.slot();
  j["mounted_at_micros"] = info.mounted_at_micros();
  j["mounted_at"] = FormatMicros(info.mounted_at_micros());
  if (!info.requested_by().empty()) j["requested_by"] = info.requested_by();
  return j;
}

std::string FormatMountLine(const v1::MountInfo& info) {
  std::string line =
      absl::StrCat(info.path(), " ", MountOriginName(info.origin()), " ",
                   info.slot(), " ", FormatMicros(info.mounted_at_micros()));
  if (info.allow_other()) absl::StrAppend(&line, " allow_other");
  if (info.passthrough()) absl::StrAppend(&line, " passthrough");
  if (info.ended()) {
    absl::StrAppend(&line, " ENDED (unmounted from outside; `cairn umount ",
                    info.path(), "` clears it)");
  }
  if (!info.requested_by().empty()) {
    absl::StrAppend(&line, " by ", info.requested_by());
  }
  return line;
}

int RunMount(const GlobalFlags& flags, const std::string& dir, bool allow_other,
             const Io& io) {
  return RunMountCall(flags, dir, "mounted", io,
                      [&](MountsClient& c, const std::string& path) {
                        return c.Mount(path, allow_other);
                      });
}

int RunUmount(const GlobalFlags& flags, const std::string& dir, const Io& io) {
  return RunMountCall(
      flags, dir, "unmounted", io,
      [](MountsClient& c, const std::string& path) { return c.Unmount(path); });
}

int RunMounts(const GlobalFlags& flags, const Io& io) {
  absl::StatusOr<std::unique_ptr<MountsClient>> client = ConnectMounts(flags);
  if (!client.ok()) return ReportError(io, client.status(), kExitUsage);
  absl::StatusOr<v1::ListMountsResponse> list = (*client)->List();
  if (!list.ok()) return ReportError(io, list.status());
  if (flags.json) {
    nlohmann::ordered_json mounts = nlohmann::ordered_json::array();
    for (const v1::MountInfo& m : list->mounts()) {
      mounts.push_back(MountInfoToJson(m));
    }
    PrintJson(io, {{"mount_root", list->mount_root()}, {"mounts", mounts}});
    return kExitOk;
  }
  for (const v1::MountInfo& m : list->mounts()) {
    *io.out << (flags.quiet ? m.path() : FormatMountLine(m)) << "\n";
  }
  return kExitOk;
}

}  // namespace cli
}  // namespace cairn
