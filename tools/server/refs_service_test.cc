// Copyright 2026 The Cairn Authors.
//
// Drives RefsService through real gRPC stubs against an in-process server
// (StartServer, as cairnd does) on 127.0.0.1:0, over a real Store and
// RefStore in TEST_TMPDIR.

#include "tools/server/refs_service.h"

#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "grpcpp/grpcpp.h"
#include "gtest/gtest.h"
#include "proto/refs.grpc.pb.h"
#include "store/ref_name.h"
#include "store/refs.h"
#include "store/store.h"
#include "store/testing/opened_store.h"
#include "store/testing/tar_builder.h"
#include "store/testing/test_dirs.h"
#include "tools/server/cas_service.h"
#include "tools/server/testing/health.grpc.pb.h"

namespace cairn {
namespace {

using ::cairn::testing::BuildTar;
using ::cairn::testing::FreshTestDir;
using ::cairn::testing::OpenedStore;
using ::cairn::testing::OpenStoreWithRefs;
using ::cairn::testing::TarEntry;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Every page ListRefs gives for `request`, following next_start_after (at
// most 20 pages).
std::vector<v1::ListRefsResponse> ListPages(v1::Refs::Stub& stub,
                                            v1::ListRefsRequest request) {
  std::vector<v1::ListRefsResponse> pages;
  do {
    grpc::ClientContext context;
    v1::ListRefsResponse page;
    grpc::Status s = stub.ListRefs(&context, request, &page);
    EXPECT_TRUE(s.ok()) << s.error_message();
    if (!s.ok()) break;
    request.set_start_after(page.next_start_after());
    pages.push_back(std::move(page));
  } while (!request.start_after().empty() && pages.size() < 20);
  return pages;
}

class RefsServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = FreshTestDir("refs_service_test");
    absl::StatusOr<OpenedStore> opened = OpenStoreWithRefs(dir_);
    ASSERT_TRUE(opened.ok()) << opened.status();
    store_ = std::move(opened->store);
    refs_ = std::move(opened->refs);
    cas_service_ = std::make_unique<CasService>(*store_);
    refs_service_ = std::make_unique<RefsService>(*refs_);

    ServerOptions options;
    options.listen_address = "127.0.0.1:0";
    absl::StatusOr<std::unique_ptr<grpc::Server>> server =
        StartServer(options, cas_service_.get(), &port_,
                    {{refs_service_.get(), v1::Refs::service_full_name()}});
    ASSERT_TRUE(server.ok()) << server.status();
    server_ = *std::move(server);
    channel_ = grpc::CreateChannel(absl::StrCat("127.0.0.1:", port_),
                                   grpc::InsecureChannelCredentials());
    stub_ = v1::Refs::NewStub(channel_);
  }

  void TearDown() override {
    if (server_) server_->Shutdown();
    server_.reset();
    refs_service_.reset();
    cas_service_.reset();
    refs_.reset();
    store_.reset();
  }

  // Stores a real artefact whose cairn.json says `version`; returns its
  // digest text.
  std::string Artefact(const std::string& content,
                       const std::string& version = "1.0.0") {
    const std::string tar = BuildTar({
        {"bin/tool", TarEntry::kFile, 0755, content},
        {"cairn.json", TarEntry::kFile, 0644,
         absl::StrCat(R"({"name":"tool","version":")", version,
                      R"(","licence":"MIT","entrypoint":"bin/tool"})")},
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

  grpc::Status SetSlot(const std::string& ref, const std::string& slot,
                       const std::string& digest,
                       v1::RefUpdateResponse* response,
                       const std::string& actor = "alice",
                       std::optional<uint64_t> if_generation = std::nullopt) {
    grpc::ClientContext context;
    v1::SetSlotRequest request;
    request.set_ref(ref);
    request.set_slot(slot);
    request.set_digest(digest);
    request.set_actor(actor);
    if (if_generation.has_value()) request.set_if_generation(*if_generation);
    return stub_->SetSlot(&context, request, response);
  }

  v1::RefUpdateResponse MustSet(const std::string& ref, const std::string& slot,
                                const std::string& digest) {
    v1::RefUpdateResponse response;
    grpc::Status s = SetSlot(ref, slot, digest, &response);
    EXPECT_TRUE(s.ok()) << s.error_message();
    return response;
  }

  grpc::Status CreateRelease(
      const std::string& ref,
      const std::vector<std::pair<std::string, std::string>>& slots,
      v1::RefUpdateResponse* response) {
    grpc::ClientContext context;
    v1::CreateReleaseRequest request;
    request.set_ref(ref);
    request.set_actor("rel-bot");
    for (const auto& [slot, digest] : slots) {
      v1::SlotDigest* s = request.add_slots();
      s->set_slot(slot);
      s->set_digest(digest);
    }
    return stub_->CreateRelease(&context, request, response);
  }

  grpc::Status Promote(
      const std::string& branch, const std::string& release,
      const std::vector<std::pair<std::string, std::string>>& expected,
      v1::RefUpdateResponse* response) {
    grpc::ClientContext context;
    v1::PromoteRequest request;
    request.set_branch(branch);
    request.set_release(release);
    request.set_actor("carol");
    for (const auto& [slot, digest] : expected) {
      v1::SlotDigest* s = request.add_expected();
      s->set_slot(slot);
      s->set_digest(digest);
    }
    return stub_->Promote(&context, request, response);
  }

  grpc::Status Resolve(const std::string& ref, const std::string& slot,
                       v1::ResolveResponse* response,
                       bool allow_yanked = false) {
    grpc::ClientContext context;
    v1::ResolveRequest request;
    request.set_ref(ref);
    request.set_slot(slot);
    request.set_allow_yanked(allow_yanked);
    return stub_->Resolve(&context, request, response);
  }

  grpc::Status History(const std::string& ref, v1::HistoryResponse* response,
                       uint64_t after = 0, uint32_t limit = 0) {
    grpc::ClientContext context;
    v1::HistoryRequest request;
    request.set_ref(ref);
    request.set_after_generation(after);
    request.set_limit(limit);
    return stub_->History(&context, request, response);
  }

  std::string dir_;
  std::unique_ptr<Store> store_;
  std::unique_ptr<RefStore> refs_;
  std::unique_ptr<CasService> cas_service_;
  std::unique_ptr<RefsService> refs_service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Refs::Stub> stub_;
};

TEST_F(RefsServiceTest, SetSlotResolveAndGetRoundTrip) {
  const std::string amd = Artefact("amd64 build", "1.1.0");
  const std::string any = Artefact("script", "1.1.0-noarch");

  v1::RefUpdateResponse first = MustSet("team/tool@main", "linux-amd64", amd);
  EXPECT_TRUE(first.changed());
  EXPECT_EQ(first.ref().ref(), "team/tool@main");
  EXPECT_EQ(first.ref().kind(), v1::BRANCH);
  EXPECT_EQ(first.ref().generation(), 1u);
  EXPECT_EQ(first.ref().updated_by(), "alice");
  ASSERT_EQ(first.ref().slots_size(), 1);
  EXPECT_EQ(first.ref().slots(0).slot(), "linux-amd64");
  EXPECT_EQ(first.ref().slots(0).digest(), amd);
  EXPECT_EQ(first.ref().slots(0).metadata().version(), "1.1.0");
  EXPECT_EQ(first.ref().metadata().name(), "tool");
  EXPECT_EQ(first.ref().metadata_slot(), "linux-amd64");
  EXPECT_GT(first.ref().created_at_micros(), 1'600'000'000'000'000);
  EXPECT_EQ(first.entry().ref(), "team/tool@main");
  EXPECT_EQ(first.entry().generation(), 1u);
  EXPECT_EQ(first.entry().action(), v1::RefHistoryEntry::SET_SLOT);
  EXPECT_EQ(first.entry().kind(), v1::BRANCH);
  EXPECT_EQ(first.entry().actor(), "alice");
  ASSERT_EQ(first.entry().changes_size(), 1);
  EXPECT_EQ(first.entry().changes(0).slot(), "linux-amd64");
  EXPECT_EQ(first.entry().changes(0).old_digest(), "");
  EXPECT_EQ(first.entry().changes(0).new_digest(), amd);

  // The same digest again: no change, no entry.
  v1::RefUpdateResponse again = MustSet("team/tool@main", "linux-amd64", amd);
  EXPECT_FALSE(again.changed());
  EXPECT_EQ(again.ref().generation(), 1u);
  EXPECT_FALSE(again.has_entry());

  MustSet("team/tool@main", "noarch", any);

  v1::ResolveResponse exact;
  ASSERT_TRUE(Resolve("team/tool@main", "linux-amd64", &exact).ok());
  EXPECT_EQ(exact.ref(), "team/tool@main");
  EXPECT_EQ(exact.slot_requested(), "linux-amd64");
  EXPECT_EQ(exact.slot_used(), "linux-amd64");
  EXPECT_EQ(exact.digest(), amd);
  EXPECT_EQ(exact.generation(), 2u);
  EXPECT_EQ(exact.kind(), v1::BRANCH);
  EXPECT_FALSE(exact.yanked());
  EXPECT_EQ(exact.metadata().version(), "1.1.0");
  EXPECT_EQ(exact.metadata().entrypoint(), "bin/tool");

  v1::ResolveResponse fallback;
  ASSERT_TRUE(Resolve("team/tool@main", "linux-arm64", &fallback).ok());
  EXPECT_EQ(fallback.slot_requested(), "linux-arm64");
  EXPECT_EQ(fallback.slot_used(), "noarch");
  EXPECT_EQ(fallback.digest(), any);
  EXPECT_EQ(fallback.metadata().version(), "1.1.0-noarch");

  grpc::ClientContext context;
  v1::GetRefRequest get;
  get.set_ref("team/tool@main");
  v1::Ref ref;
  ASSERT_TRUE(stub_->GetRef(&context, get, &ref).ok());
  ASSERT_EQ(ref.slots_size(), 2);
  EXPECT_EQ(ref.slots(0).slot(), "linux-amd64");
  EXPECT_EQ(ref.slots(1).slot(), "noarch");
  EXPECT_EQ(ref.metadata_slot(), "noarch");
  EXPECT_EQ(ref.generation(), 2u);
}

TEST_F(RefsServiceTest, EmptyActorIsThePeer) {
  const std::string d = Artefact("x");
  v1::RefUpdateResponse response;
  ASSERT_TRUE(SetSlot("tool@main", "noarch", d, &response, "").ok());
  EXPECT_THAT(response.ref().updated_by(), StartsWith("ipv4:127.0.0.1:"));
  EXPECT_EQ(response.entry().actor(), response.ref().updated_by());
}

TEST_F(RefsServiceTest, MalformedInputsAreInvalidArgumentNamingThem) {
  const std::string d = Artefact("x");
  v1::RefUpdateResponse response;
  grpc::Status s = SetSlot("Tool@main", "noarch", d, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("SetSlot: ref: "));
  EXPECT_THAT(s.error_message(), HasSubstr("\"Tool@main\""));
  EXPECT_THAT(s.error_message(), HasSubstr("<package>@<name>"));

  s = SetSlot("tool@main", "noarch", "sha256:nothex", &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("SetSlot: digest: "));
  EXPECT_THAT(s.error_message(), HasSubstr("sha256:nothex"));

  s = SetSlot("tool@main", "Linux-AMD64", d, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"Linux-AMD64\""));
  EXPECT_THAT(s.error_message(), HasSubstr("noarch"));

  v1::ResolveResponse resolved;
  s = Resolve("tool@a/b", "linux-amd64", &resolved);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("Resolve: ref: "));
  // The slot is required: the server never substitutes its own.
  s = Resolve("tool@main", "", &resolved);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("slot"));

  s = Promote("tool@main", "tool@", {{"noarch", d}}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("Promote: release: "));
  s = CreateRelease("tool@v1", {{"noarch", d}, {"linux-amd64", "sha256:"}},
                    &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("CreateRelease: slots[1].digest"));
  s = CreateRelease("tool@v1", {{"noarch", d}, {"noarch", d}}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("\"noarch\" is given more"));

  grpc::ClientContext context;
  v1::ListRefsRequest list;
  list.set_kind(static_cast<v1::RefKind>(7));
  v1::ListRefsResponse listed;
  s = stub_->ListRefs(&context, list, &listed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_THAT(s.error_message(), HasSubstr("kind"));
}

TEST_F(RefsServiceTest, StoreErrorsKeepTheirCodes) {
  const std::string d = Artefact("x");
  v1::RefUpdateResponse response;
  // Not an artefact.
  grpc::Status s = SetSlot("tool@main", "noarch",
                           "sha256:" + std::string(64, 'a'), &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  // Compare-and-swap.
  ASSERT_TRUE(SetSlot("tool@main", "noarch", d, &response, "a", 0).ok());
  s = SetSlot("tool@main", "linux-amd64", d, &response, "a", 0);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED) << s.error_message();
  EXPECT_THAT(s.error_message(), StartsWith("SetSlot: "));
  ASSERT_TRUE(SetSlot("tool@main", "linux-amd64", d, &response, "a", 1).ok());
  EXPECT_EQ(response.ref().generation(), 2u);

  // Releases are immutable.
  ASSERT_TRUE(CreateRelease("tool@v1", {{"noarch", d}}, &response).ok());
  EXPECT_EQ(response.ref().kind(), v1::RELEASE);
  EXPECT_EQ(response.entry().action(), v1::RefHistoryEntry::CREATE_RELEASE);
  s = CreateRelease("tool@v1", {{"noarch", d}}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ALREADY_EXISTS);
  s = SetSlot("tool@v1", "noarch", d, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  grpc::ClientContext context;
  v1::DeleteBranchRequest del;
  del.set_ref("tool@v1");
  v1::RefHistoryEntry entry;
  s = stub_->DeleteBranch(&context, del, &entry);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);

  v1::ResolveResponse resolved;
  s = Resolve("tool@nope", "noarch", &resolved);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_THAT(s.error_message(), HasSubstr("tool@nope"));
}

TEST_F(RefsServiceTest, PromoteChecksExpectedDigests) {
  const std::string a1 = Artefact("amd64 v1");
  const std::string a2 = Artefact("amd64 v2");
  const std::string n1 = Artefact("noarch v1");
  MustSet("tool@main", "linux-amd64", a1);
  MustSet("tool@main", "noarch", n1);
  MustSet("tool@main", "linux-amd64", a2);  // Moved after a1 was tested.

  v1::RefUpdateResponse response;
  grpc::Status s = Promote("tool@main", "tool@v1.0.0",
                           {{"linux-amd64", a1}, {"noarch", n1}}, &response);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::ABORTED);
  EXPECT_THAT(s.error_message(), HasSubstr("linux-amd64"));
  grpc::ClientContext context;
  v1::GetRefRequest get;
  get.set_ref("tool@v1.0.0");
  v1::Ref ref;
  EXPECT_EQ(stub_->GetRef(&context, get, &ref).error_code(),
            grpc::StatusCode::NOT_FOUND);

  ASSERT_TRUE(Promote("tool@main", "tool@v1.0.0",
                      {{"linux-amd64", a2}, {"noarch", n1}}, &response)
                  .ok());
  EXPECT_EQ(response.ref().kind(), v1::RELEASE);
  EXPECT_EQ(response.ref().source_ref(), "tool@main");
  EXPECT_EQ(response.ref().source_generation(), 3u);
  EXPECT_EQ(response.ref().updated_by(), "carol");
  EXPECT_EQ(response.entry().action(), v1::RefHistoryEntry::PROMOTE);
  EXPECT_EQ(response.entry().source_ref(), "tool@main");
  EXPECT_EQ(response.entry().changes_size(), 2);
}

TEST_F(RefsServiceTest, YankHidesFromResolveUnlessAllowed) {
  const std::string d = Artefact("x");
  v1::RefUpdateResponse response;
  ASSERT_TRUE(CreateRelease("tool@v1", {{"noarch", d}}, &response).ok());
  {
    grpc::ClientContext context;
    v1::YankRequest yank;
    yank.set_ref("tool@v1");
    yank.set_reason("CVE-2026-0001");
    yank.set_actor("sec");
    ASSERT_TRUE(stub_->Yank(&context, yank, &response).ok());
    EXPECT_TRUE(response.ref().yanked());
    EXPECT_EQ(response.ref().yank_reason(), "CVE-2026-0001");
    EXPECT_GT(response.ref().yanked_at_micros(), 0);
    EXPECT_EQ(response.entry().action(), v1::RefHistoryEntry::YANK);
    EXPECT_EQ(response.entry().reason(), "CVE-2026-0001");
  }
  v1::ResolveResponse resolved;
  grpc::Status s = Resolve("tool@v1", "linux-amd64", &resolved);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::FAILED_PRECONDITION);
  EXPECT_THAT(s.error_message(), HasSubstr("CVE-2026-0001"));
  ASSERT_TRUE(Resolve("tool@v1", "linux-amd64", &resolved, true).ok());
  EXPECT_TRUE(resolved.yanked());
  EXPECT_EQ(resolved.yank_reason(), "CVE-2026-0001");
  EXPECT_EQ(resolved.digest(), d);
  EXPECT_EQ(resolved.kind(), v1::RELEASE);
}

TEST_F(RefsServiceTest, ListPagesAndFiltersByKind) {
  const std::string d = Artefact("x");
  for (const char* branch : {"a@main", "b@main", "b@dev", "c/x@main"}) {
    MustSet(branch, "noarch", d);
  }
  v1::RefUpdateResponse response;
  ASSERT_TRUE(CreateRelease("b@v1", {{"noarch", d}}, &response).ok());

  v1::ListRefsRequest two_per_page;
  two_per_page.set_limit(2);
  const std::vector<v1::ListRefsResponse> pages =
      ListPages(*stub_, two_per_page);
  std::vector<std::string> all;
  for (const v1::ListRefsResponse& page : pages) {
    for (const v1::Ref& r : page.refs()) all.push_back(r.ref());
  }
  EXPECT_THAT(all,
              ElementsAre("a@main", "b@dev", "b@main", "b@v1", "c/x@main"));
  EXPECT_EQ(pages.size(), 3u);

  grpc::ClientContext context;
  v1::ListRefsRequest request;
  request.set_prefix("b@");
  request.set_kind(v1::RELEASE);
  v1::ListRefsResponse page;
  ASSERT_TRUE(stub_->ListRefs(&context, request, &page).ok());
  ASSERT_EQ(page.refs_size(), 1);
  EXPECT_EQ(page.refs(0).ref(), "b@v1");
  EXPECT_EQ(page.next_start_after(), "");
}

// Pages also end by size: whatever the limit asked, a page stops once its
// entries pass max_page_bytes (here 1000 bytes), and the continuation
// token still walks every ref and history entry exactly once.
TEST_F(RefsServiceTest, PagesEndByBytes) {
  constexpr size_t kPageBytes = 1000;
  RefsService small_pages(*refs_, kPageBytes);
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  int port = 0;
  absl::StatusOr<std::unique_ptr<grpc::Server>> server =
      StartServer(options, cas_service_.get(), &port,
                  {{&small_pages, v1::Refs::service_full_name()}});
  ASSERT_TRUE(server.ok()) << server.status();
  std::unique_ptr<v1::Refs::Stub> stub = v1::Refs::NewStub(grpc::CreateChannel(
      absl::StrCat("127.0.0.1:", port), grpc::InsecureChannelCredentials()));
  const std::string d1 = Artefact("1"), d2 = Artefact("2");
  std::vector<std::string> names;
  for (int i = 0; i < 10; ++i) {
    names.push_back(absl::StrCat("tool@b", i));
    MustSet(names.back(), "noarch", d1);
  }
  for (int i = 0; i < 9; ++i) MustSet("tool@b0", "noarch", i % 2 ? d1 : d2);

  const std::vector<v1::ListRefsResponse> pages =
      ListPages(*stub, v1::ListRefsRequest());
  std::vector<std::string> listed;
  for (const v1::ListRefsResponse& page : pages) {
    ASSERT_GT(page.refs_size(), 0);
    size_t bytes = 0;
    for (const v1::Ref& r : page.refs()) {
      listed.push_back(r.ref());
      bytes += r.ByteSizeLong();
    }
    EXPECT_LE(bytes - page.refs(page.refs_size() - 1).ByteSizeLong(),
              kPageBytes);
  }
  EXPECT_GE(pages.size(), 2u);
  EXPECT_EQ(listed, names);

  std::vector<uint64_t> generations;
  uint64_t after = 0;
  int history_pages = 0;
  do {
    grpc::ClientContext context;
    v1::HistoryRequest request;
    request.set_ref("tool@b0");
    request.set_after_generation(after);
    v1::HistoryResponse page;
    grpc::Status s = stub->History(&context, request, &page);
    ASSERT_TRUE(s.ok()) << s.error_message();
    ASSERT_GT(page.entries_size(), 0);
    for (const v1::RefHistoryEntry& e : page.entries()) {
      generations.push_back(e.generation());
    }
    after = page.next_after_generation();
    ++history_pages;
  } while (after != 0 && history_pages < 20);
  EXPECT_GE(history_pages, 2);
  EXPECT_THAT(generations, ElementsAre(1, 2, 3, 4, 5, 6, 7, 8, 9, 10));
  (*server)->Shutdown();
}

TEST_F(RefsServiceTest, HistoryRecordsDeletionAndPages) {
  const std::string d1 = Artefact("1");
  const std::string d2 = Artefact("2");
  MustSet("tool@main", "noarch", d1);
  MustSet("tool@main", "noarch", d2);
  {
    grpc::ClientContext context;
    v1::DeleteBranchRequest del;
    del.set_ref("tool@main");
    del.set_actor("bob");
    del.set_if_generation(1);
    v1::RefHistoryEntry entry;
    EXPECT_EQ(stub_->DeleteBranch(&context, del, &entry).error_code(),
              grpc::StatusCode::ABORTED);
  }
  grpc::ClientContext context;
  v1::DeleteBranchRequest del;
  del.set_ref("tool@main");
  del.set_actor("bob");
  del.set_if_generation(2);
  v1::RefHistoryEntry deleted;
  ASSERT_TRUE(stub_->DeleteBranch(&context, del, &deleted).ok());
  EXPECT_EQ(deleted.ref(), "tool@main");
  EXPECT_EQ(deleted.generation(), 3u);
  EXPECT_EQ(deleted.action(), v1::RefHistoryEntry::DELETE);
  ASSERT_EQ(deleted.changes_size(), 1);
  EXPECT_EQ(deleted.changes(0).old_digest(), d2);
  EXPECT_EQ(deleted.changes(0).new_digest(), "");

  v1::HistoryResponse page;
  ASSERT_TRUE(History("tool@main", &page, 0, 2).ok());
  ASSERT_EQ(page.entries_size(), 2);
  EXPECT_EQ(page.entries(0).generation(), 1u);
  EXPECT_EQ(page.entries(0).ref(), "tool@main");
  EXPECT_EQ(page.entries(1).changes(0).old_digest(), d1);
  EXPECT_EQ(page.entries(1).changes(0).new_digest(), d2);
  EXPECT_EQ(page.next_after_generation(), 2u);
  ASSERT_TRUE(History("tool@main", &page, 2, 2).ok());
  ASSERT_EQ(page.entries_size(), 1);
  EXPECT_EQ(page.entries(0).actor(), "bob");
  EXPECT_EQ(page.next_after_generation(), 0u);

  EXPECT_EQ(History("never@seen", &page).error_code(),
            grpc::StatusCode::NOT_FOUND);
}

TEST_F(RefsServiceTest, HealthReportsRefsServing) {
  std::unique_ptr<grpc::health::v1::Health::Stub> health =
      grpc::health::v1::Health::NewStub(channel_);
  for (const std::string service : {"", "cairn.v1.Cas", "cairn.v1.Refs"}) {
    grpc::ClientContext context;
    grpc::health::v1::HealthCheckRequest request;
    request.set_service(service);
    grpc::health::v1::HealthCheckResponse response;
    grpc::Status s = health->Check(&context, request, &response);
    ASSERT_TRUE(s.ok()) << service << ": " << s.error_message();
    EXPECT_EQ(response.status(), grpc::health::v1::HealthCheckResponse::SERVING)
        << service;
  }
}

TEST_F(RefsServiceTest, NullExtraServiceIsRefused) {
  ServerOptions options;
  options.listen_address = "127.0.0.1:0";
  absl::StatusOr<std::unique_ptr<grpc::Server>> server = StartServer(
      options, cas_service_.get(), nullptr, {{nullptr, "cairn.v1.Refs"}});
  ASSERT_FALSE(server.ok());
  EXPECT_EQ(server.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(server.status().message(), HasSubstr("cairn.v1.Refs"));
}

}  // namespace
}  // namespace cairn
