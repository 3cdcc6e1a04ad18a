// Copyright 2026 The Cairn Authors.
//
// Drives MountService through real gRPC stubs against an in-process server
// (StartServer, as cairnd does) over a real Store and RefStore in
// TEST_TMPDIR. The refusals need nothing special; the tests that really
// mount need /dev/fuse and root and skip without /dev/fuse.

#include "tools/server/mount_service.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <string>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/mount.grpc.pb.h"
#include "store/refs.h"
#include "store/store.h"
#include "store/testing/opened_store.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"
#include "tools/server/cas_service.h"

namespace cairn {
namespace {

namespace fs = std::filesystem;
using ::cairn::testing::BuildTar;
using ::cairn::testing::FreshTestDir;
using ::cairn::testing::OpenedStore;
using ::cairn::testing::OpenStoreWithRefs;
using ::cairn::testing::TarEntry;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

bool FuseUsable() { return access("/dev/fuse", R_OK | W_OK) == 0; }

class MountServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string fresh = FreshTestDir("mount_service_test");
    fs::create_directories(fresh);
    // Mount roots and mount points are compared after realpath.
    dir_ = fs::canonical(fresh).string();
    absl::StatusOr<OpenedStore> opened = OpenStoreWithRefs(dir_ + "/data");
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(opened->store);
    refs_ = std::move(opened->refs);

    // <dir>/root is the mount root; <dir>/outside is not inside it.
    root_ = dir_ + "/root";
    MakeDir(root_);
    MakeDir(dir_ + "/outside");
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    service_.reset();  // Unmounts whatever a failed test left mounted.
    cas_service_.reset();
    refs_.reset();
    store_.reset();
  }

  static void MakeDir(const std::string& path) {
    fs::create_directories(path);
    fs::permissions(path, fs::perms(0755));
  }

  // Starts the server with the service; `mount_root` empty: none.
  void Start(const std::string& mount_root) {
    MountServiceOptions options;
    if (!mount_root.empty()) {
      absl::StatusOr<std::string> root = ValidateMountRoot(mount_root);
      ASSERT_TRUE(root.ok()) << root.status();
      options.mount_root = *root;
    }
    absl::StatusOr<std::unique_ptr<MountService>> service =
        MountService::Create(store_.get(), refs_.get(), options);
    ASSERT_TRUE(service.ok()) << service.status();
    service_ = *std::move(service);
    cas_service_ = std::make_unique<CasService>(*store_);
    ServerOptions server_options;
    server_options.listen_address = "127.0.0.1:0";
    int port = 0;
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartServer(server_options, cas_service_.get(), &port,
                    {{service_.get(), v1::Mounts::service_full_name()}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    stub_ = v1::Mounts::NewStub(grpc::CreateChannel(
        absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  }

  grpc::Status Mount(const std::string& path, v1::MountResponse* response,
                     bool allow_other = false) {
    grpc::ClientContext context;
    v1::MountRequest request;
    request.set_path(path);
    request.set_allow_other(allow_other);
    return stub_->Mount(&context, request, response);
  }
  grpc::Status Mount(const std::string& path) {
    v1::MountResponse response;
    return Mount(path, &response);
  }

  grpc::Status Unmount(const std::string& path, v1::UnmountResponse* response) {
    grpc::ClientContext context;
    v1::UnmountRequest request;
    request.set_path(path);
    return stub_->Unmount(&context, request, response);
  }

  v1::ListMountsResponse List() {
    grpc::ClientContext context;
    v1::ListMountsResponse response;
    grpc::Status s = stub_->List(&context, v1::ListMountsRequest(), &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  // Stores a small artefact; returns its digest text.
  std::string Artefact() {
    const std::string tar = BuildTar({
        {"bin/tool", TarEntry::kFile, 0755, "#!/bin/sh\necho hi\n"},
    });
    absl::StatusOr<std::unique_ptr<ArtefactUpload>> up =
        store_->BeginUpload({});
    EXPECT_TRUE(up.ok()) << up.status();
    if (!up.ok()) return "";
    EXPECT_TRUE((*up)->Append(tar).ok());
    absl::StatusOr<UploadResult> r = (*up)->Finish();
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? r->digest.ToString() : "";
  }

  std::string dir_, root_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RefStore> refs_;
  std::unique_ptr<MountService> service_;
  std::unique_ptr<CasService> cas_service_;
  std::unique_ptr<grpc::Server> server_;
  std::unique_ptr<v1::Mounts::Stub> stub_;
};

TEST_F(MountServiceTest, MountIsRefusedWithoutMountRoot) {
  Start("");
  MakeDir(root_ + "/m");
  grpc::Status s = Mount(root_ + "/m");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("Mount: mounting over RPC is "
                                           "disabled"));
  EXPECT_THAT(s.error_message(), HasSubstr("--mount-root DIR"));
  // List is always allowed, and says RPC mounts are off.
  v1::ListMountsResponse list = List();
  EXPECT_THAT(list.mounts(), IsEmpty());
  EXPECT_EQ(list.mount_root(), "");
}

TEST_F(MountServiceTest, MountIsRefusedOutsideTheRoot) {
  Start(root_);
  grpc::Status s = Mount(dir_ + "/outside");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(), HasSubstr("not strictly inside the mount "
                                           "root"));
  // The root itself is not strictly inside.
  s = Mount(root_);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
  // Neither is "/", nor a path that climbs out with "..".
  EXPECT_EQ(Mount("/").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Mount(root_ + "/../outside").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  // Paths outside are refused before the file system is looked at, so a
  // caller cannot tell which exist.
  s = Mount(dir_ + "/no/such/dir");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED)
      << s.error_message();
}

TEST_F(MountServiceTest, SymlinkOutOfTheRootIsRefusedAfterRealpath) {
  Start(root_);
  fs::create_directory_symlink(dir_ + "/outside", root_ + "/link");
  grpc::Status s = Mount(root_ + "/link");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(),
              HasSubstr(absl::StrCat("resolves to ", dir_,
                                     "/outside, which is not strictly inside "
                                     "the mount root")));
}

TEST_F(MountServiceTest, MountIsRefusedOnANonEmptyDirectory) {
  Start(root_);
  MakeDir(root_ + "/full");
  std::ofstream(root_ + "/full/file") << "x";
  grpc::Status s = Mount(root_ + "/full");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("is not empty"));
  EXPECT_THAT(s.error_message(), HasSubstr("\"file\""));
}

TEST_F(MountServiceTest, MountIsRefusedOnMissingRelativeOrNonDirectory) {
  Start(root_);
  EXPECT_EQ(Mount(root_ + "/missing").error_code(),
            grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(Mount("relative/dir").error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
  std::ofstream(root_ + "/file") << "x";
  EXPECT_EQ(Mount(root_ + "/file").error_code(),
            grpc::StatusCode::FAILED_PRECONDITION);
}

TEST_F(MountServiceTest, MountIsRefusedBelowADirectoryOthersCanWrite) {
  Start(root_);
  MakeDir(root_ + "/shared/m");
  fs::permissions(root_ + "/shared", fs::perms(01777));
  grpc::Status s = Mount(root_ + "/shared/m");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(),
              HasSubstr(root_ + "/shared is writable by group or others"));
}

TEST_F(MountServiceTest, MountRootMustNotBeWritableByOthers) {
  fs::permissions(root_, fs::perms(0777));
  absl::StatusOr<std::string> root = ValidateMountRoot(root_);
  EXPECT_EQ(root.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ValidateMountRoot(dir_ + "/nope").status().code(),
            absl::StatusCode::kNotFound);
  // "/" would allow mounts on any empty directory root owns.
  root = ValidateMountRoot("/");
  EXPECT_EQ(root.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(root.status().message(), HasSubstr("mount root / is /"));
}

// A directory of another file system inside the root (a user's FUSE mount
// could show any owner and mode, and answer lookups with symlinks) is no
// trusted path to a mount point, whatever its owner and mode say.
TEST_F(MountServiceTest, MountIsRefusedBelowAnotherFileSystem) {
  MakeDir(root_ + "/other");
  if (mount("tmpfs", (root_ + "/other").c_str(), "tmpfs", 0, "mode=0755") !=
      0) {
    GTEST_SKIP() << "cannot mount a tmpfs here: " << strerror(errno);
  }
  MakeDir(root_ + "/other/m");
  Start(root_);
  grpc::Status s = Mount(root_ + "/other/m");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_THAT(s.error_message(),
              HasSubstr(root_ + "/other is on another file system"));
  EXPECT_EQ(umount2((root_ + "/other").c_str(), MNT_DETACH), 0);
}

TEST_F(MountServiceTest, UnmountOfAnUnknownPathIsNotFound) {
  Start(root_);
  v1::UnmountResponse response;
  grpc::Status s = Unmount(dir_ + "/outside", &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("Unmount: no mount of this cairnd"));
  EXPECT_EQ(Unmount("relative", &response).error_code(),
            grpc::StatusCode::INVALID_ARGUMENT);
}

TEST_F(MountServiceTest, MountsInsideTheRootListsAndUnmounts) {
  if (!FuseUsable()) GTEST_SKIP() << "/dev/fuse is not usable here";
  const std::string digest = Artefact();
  Start(root_);
  MakeDir(root_ + "/sub/m");
  v1::MountResponse mounted;
  // Given with a trailing slash and a "." component: stored as realpath.
  grpc::Status s = Mount(root_ + "/sub/./m/", &mounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  const std::string m = root_ + "/sub/m";
  EXPECT_EQ(mounted.mount().path(), m);
  EXPECT_EQ(mounted.mount().origin(), v1::MOUNT_ORIGIN_RPC);
  EXPECT_THAT(mounted.mount().requested_by(), HasSubstr("127.0.0.1"));

  // The store is served there.
  struct stat st;
  ASSERT_EQ(stat((m + "/by-digest/" + digest + "/bin/tool").c_str(), &st), 0)
      << strerror(errno);
  EXPECT_EQ(st.st_mode & 0777, 0755);

  v1::ListMountsResponse list = List();
  ASSERT_EQ(list.mounts_size(), 1);
  EXPECT_EQ(list.mounts(0).path(), m);
  EXPECT_EQ(list.mount_root(), root_);

  // Not twice, and not inside the mount.
  EXPECT_EQ(Mount(m).error_code(), grpc::StatusCode::ALREADY_EXISTS);
  s = Mount(m + "/by-digest");
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("inside this cairnd's mount"));

  v1::UnmountResponse unmounted;
  s = Unmount(m, &unmounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(unmounted.mount().path(), m);
  EXPECT_THAT(List().mounts(), IsEmpty());
  // The directory is plain and empty again.
  EXPECT_TRUE(fs::is_empty(m));
  EXPECT_EQ(Unmount(m, &unmounted).error_code(), grpc::StatusCode::NOT_FOUND);
}

// A mount point whose name is not UTF-8 is mounted, listed and unmounted
// (paths are proto bytes).
TEST_F(MountServiceTest, MountPointNamesNeedNotBeUtf8) {
  if (!FuseUsable()) GTEST_SKIP() << "/dev/fuse is not usable here";
  Artefact();
  Start(root_);
  const std::string m = root_ + "/m\xff";
  MakeDir(m);
  v1::MountResponse mounted;
  grpc::Status s = Mount(m, &mounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(mounted.mount().path(), m);
  v1::ListMountsResponse list = List();
  ASSERT_EQ(list.mounts_size(), 1);
  EXPECT_EQ(list.mounts(0).path(), m);
  v1::UnmountResponse unmounted;
  s = Unmount(m, &unmounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(List().mounts(), IsEmpty());
}

// A mount unmounted from outside is listed as ended (not as serving), and
// Unmount of its path clears the entry without touching the directory.
TEST_F(MountServiceTest, MountUnmountedFromOutsideIsListedAsEnded) {
  if (!FuseUsable()) GTEST_SKIP() << "/dev/fuse is not usable here";
  Artefact();
  Start(root_);
  const std::string m = root_ + "/m";
  MakeDir(m);
  v1::MountResponse mounted;
  grpc::Status s = Mount(m, &mounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  ASSERT_EQ(List().mounts_size(), 1);
  EXPECT_FALSE(List().mounts(0).ended());

  ASSERT_EQ(umount2(m.c_str(), MNT_DETACH), 0) << strerror(errno);
  v1::ListMountsResponse list = List();
  ASSERT_EQ(list.mounts_size(), 1);
  EXPECT_TRUE(list.mounts(0).ended());

  v1::UnmountResponse unmounted;
  s = Unmount(m, &unmounted);
  ASSERT_TRUE(s.ok()) << s.error_message();
  EXPECT_THAT(List().mounts(), IsEmpty());
  EXPECT_TRUE(fs::is_empty(m));
}

TEST_F(MountServiceTest, LocalMountIsListedUnmountableAndClosedAtShutdown) {
  if (!FuseUsable()) GTEST_SKIP() << "/dev/fuse is not usable here";
  const std::string digest = Artefact();
  Start(root_);
  // --mount may be anywhere: the mount-root rules are for RPC mounts.
  absl::StatusOr<v1::MountInfo> local =
      service_->MountLocal(dir_ + "/outside", /*allow_other=*/false);
  ASSERT_TRUE(local.ok()) << local.status();
  EXPECT_EQ(local->origin(), v1::MOUNT_ORIGIN_FLAG);
  EXPECT_TRUE(fs::exists(dir_ + "/outside/by-digest/" + digest));
  MakeDir(root_ + "/m");
  ASSERT_TRUE(Mount(root_ + "/m").ok());

  v1::ListMountsResponse list = List();
  ASSERT_EQ(list.mounts_size(), 2);
  EXPECT_EQ(list.mounts(0).path(), dir_ + "/outside");
  EXPECT_EQ(list.mounts(0).origin(), v1::MOUNT_ORIGIN_FLAG);
  EXPECT_EQ(list.mounts(1).path(), root_ + "/m");

  service_->UnmountAll();
  EXPECT_TRUE(fs::is_empty(dir_ + "/outside"));
  EXPECT_TRUE(fs::is_empty(root_ + "/m"));
  EXPECT_THAT(List().mounts(), IsEmpty());
  EXPECT_EQ(Mount(root_ + "/m").error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace cairn
