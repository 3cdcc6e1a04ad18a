// Copyright 2026 The Cairn Authors.

#include "tools/server/refs_service.h"

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "spdlog/spdlog.h"
#include "store/digest.h"
#include "store/ref_name.h"
#include "tools/rpc/status.h"

namespace cairn {
namespace {

// Converts `items` (convert(item, message)) into `out` until their
// messages pass `max_bytes`, keeping at least one; returns whether the
// page was cut short. RefStore bounded the stored records by the same
// figure; the API messages (digests as text) are bigger, so the bound is
// checked on them too.
template <typename Item, typename Message, typename Convert>
bool AddUpTo(const std::vector<Item>& items, size_t max_bytes,
             google::protobuf::RepeatedPtrField<Message>* out,
             Convert convert) {
  out->Reserve(static_cast<int>(items.size()));
  size_t bytes = 0;
  for (const Item& item : items) {
    Message* message = out->Add();
    convert(item, message);
    bytes += message->ByteSizeLong();
    if (bytes > max_bytes && out->size() > 1) {
      out->RemoveLast();
      return true;
    }
  }
  return false;
}

// `status` with "<rpc>: " in front of its message, same code, as a gRPC
// status.
grpc::Status Fail(absl::string_view rpc, const absl::Status& status) {
  return ToGrpcStatus(
      absl::Status(status.code(), absl::StrCat(rpc, ": ", status.message())));
}

// A request field that does not parse: INVALID_ARGUMENT naming the RPC and
// the field; `status` (from RefName::Parse or Digest::Parse) quotes the
// input and shows the grammar.
grpc::Status BadField(absl::string_view rpc, absl::string_view field,
                      const absl::Status& status) {
  return ToGrpcStatus(absl::InvalidArgumentError(
      absl::StrCat(rpc, ": ", field, ": ", status.message())));
}

// The actor recorded in history: the request's, else the gRPC peer.
std::string ActorOf(const grpc::ServerContext* context,
                    const std::string& requested) {
  if (!requested.empty()) return requested;
  std::string peer = context->peer();
  if (peer.empty()) peer = "unknown-peer";
  // A long unix socket path must not make the call fail on an actor the
  // caller never chose.
  if (peer.size() > kMaxActorBytes) peer.resize(kMaxActorBytes);
  return peer;
}

v1::RefKind KindToApi(RefKind kind) {
  return kind == RefKind::kBranch ? v1::BRANCH : v1::RELEASE;
}

v1::RefHistoryEntry::Action ActionToApi(RefAction action) {
  switch (action) {
    case RefAction::kSetSlot:
      return v1::RefHistoryEntry::SET_SLOT;
    case RefAction::kCreateRelease:
      return v1::RefHistoryEntry::CREATE_RELEASE;
    case RefAction::kPromote:
      return v1::RefHistoryEntry::PROMOTE;
    case RefAction::kYank:
      return v1::RefHistoryEntry::YANK;
    case RefAction::kDelete:
      return v1::RefHistoryEntry::DELETE;
  }
  return v1::RefHistoryEntry::ACTION_UNSPECIFIED;
}

void MetadataToApi(const store::ArtefactMetadata& in,
                   v1::ArtefactMetadata* out) {
  out->set_name(in.name());
  out->set_version(in.version());
  out->set_licence(in.licence());
  out->set_entrypoint(in.entrypoint());
}

// Parses `slots` (a CreateRelease's slots or a Promote's expected digests)
// into `out`. Slot names are checked by RefStore; here only the digests
// and duplicates. `field` names the repeated field in errors.
grpc::Status ParseSlotDigests(
    absl::string_view rpc, absl::string_view field,
    const google::protobuf::RepeatedPtrField<v1::SlotDigest>& slots,
    SlotDigests* out) {
  for (int i = 0; i < slots.size(); ++i) {
    const v1::SlotDigest& s = slots.Get(i);
    absl::StatusOr<Digest> digest = Digest::Parse(s.digest());
    if (!digest.ok()) {
      return BadField(rpc, absl::StrCat(field, "[", i, "].digest"),
                      digest.status());
    }
    if (!out->emplace(s.slot(), *digest).second) {
      return ToGrpcStatus(absl::InvalidArgumentError(
          absl::StrCat(rpc, ": ", field, "[", i, "]: slot \"", s.slot(),
                       "\" is given more than once")));
    }
  }
  return grpc::Status::OK;
}

// "slot=digest, ..." for logs.
std::string SlotsForLog(const SlotDigests& slots) {
  return absl::StrJoin(slots, ", ", [](std::string* out, const auto& s) {
    absl::StrAppend(out, s.first, "=", s.second.ToString());
  });
}

void LogUpdate(const RefName& ref, const RefUpdate& update,
               const std::string& actor, const std::string& what) {
  if (update.changed) {
    spdlog::info("ref {} {} {}: generation {} by {}", ref.ToString(),
                 std::string(RefActionName(update.entry.action)), what,
                 update.ref.generation, actor);
  } else {
    spdlog::info("ref {} {}: unchanged at generation {} (by {})",
                 ref.ToString(), what, update.ref.generation, actor);
  }
}

}  // namespace

void ToProto(const RefInfo& info, v1::Ref* out) {
  out->set_ref(info.ref.ToString());
  out->set_kind(KindToApi(info.kind));
  out->mutable_slots()->Reserve(static_cast<int>(info.slots.size()));
  for (const auto& [name, slot] : info.slots) {
    v1::Slot* s = out->add_slots();
    s->set_slot(name);
    s->set_digest(slot.digest.ToString());
    MetadataToApi(slot.metadata, s->mutable_metadata());
  }
  out->set_generation(info.generation);
  out->set_created_at_micros(absl::ToUnixMicros(info.created_at));
  out->set_updated_at_micros(absl::ToUnixMicros(info.updated_at));
  out->set_updated_by(info.updated_by);
  MetadataToApi(info.metadata, out->mutable_metadata());
  out->set_metadata_slot(info.metadata_slot);
  if (info.source_ref.has_value()) {
    out->set_source_ref(info.source_ref->ToString());
    out->set_source_generation(info.source_generation);
  }
  out->set_yanked(info.yanked);
  if (info.yanked) {
    out->set_yank_reason(info.yank_reason);
    out->set_yanked_at_micros(absl::ToUnixMicros(info.yanked_at));
  }
}

void ToProto(const RefName& ref, const RefHistoryEntry& entry,
             v1::RefHistoryEntry* out) {
  out->set_ref(ref.ToString());
  out->set_generation(entry.generation);
  out->set_at_micros(absl::ToUnixMicros(entry.at));
  out->set_actor(entry.actor);
  out->set_action(ActionToApi(entry.action));
  out->set_kind(KindToApi(entry.kind));
  out->mutable_changes()->Reserve(static_cast<int>(entry.changes.size()));
  for (const SlotChange& change : entry.changes) {
    v1::SlotChange* c = out->add_changes();
    c->set_slot(change.slot);
    if (change.old_digest.has_value()) {
      c->set_old_digest(change.old_digest->ToString());
    }
    if (change.new_digest.has_value()) {
      c->set_new_digest(change.new_digest->ToString());
    }
  }
  if (entry.source_ref.has_value()) {
    out->set_source_ref(entry.source_ref->ToString());
    out->set_source_generation(entry.source_generation);
  }
  out->set_reason(entry.reason);
}

void ToProto(const RefUpdate& update, v1::RefUpdateResponse* out) {
  ToProto(update.ref, out->mutable_ref());
  out->set_changed(update.changed);
  if (update.changed) {
    ToProto(update.ref.ref, update.entry, out->mutable_entry());
  }
}

grpc::Status RefsService::SetSlot(grpc::ServerContext* context,
                                  const v1::SetSlotRequest* request,
                                  v1::RefUpdateResponse* response) {
  constexpr absl::string_view kRpc = "SetSlot";
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField(kRpc, "ref", ref.status());
  absl::StatusOr<Digest> digest = Digest::Parse(request->digest());
  if (!digest.ok()) return BadField(kRpc, "digest", digest.status());
  std::optional<uint64_t> if_generation;
  if (request->has_if_generation()) if_generation = request->if_generation();
  const std::string actor = ActorOf(context, request->actor());
  absl::StatusOr<RefUpdate> update =
      refs_.SetSlot(*ref, request->slot(), *digest, actor, if_generation);
  if (!update.ok()) return Fail(kRpc, update.status());
  LogUpdate(*ref, *update, actor,
            absl::StrCat(request->slot(), "=", digest->ToString()));
  ToProto(*update, response);
  return grpc::Status::OK;
}

grpc::Status RefsService::CreateRelease(grpc::ServerContext* context,
                                        const v1::CreateReleaseRequest* request,
                                        v1::RefUpdateResponse* response) {
  constexpr absl::string_view kRpc = "CreateRelease";
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField(kRpc, "ref", ref.status());
  SlotDigests slots;
  if (grpc::Status s =
          ParseSlotDigests(kRpc, "slots", request->slots(), &slots);
      !s.ok()) {
    return s;
  }
  const std::string actor = ActorOf(context, request->actor());
  absl::StatusOr<RefUpdate> update = refs_.CreateRelease(*ref, slots, actor);
  if (!update.ok()) return Fail(kRpc, update.status());
  LogUpdate(*ref, *update, actor, SlotsForLog(slots));
  ToProto(*update, response);
  return grpc::Status::OK;
}

grpc::Status RefsService::Promote(grpc::ServerContext* context,
                                  const v1::PromoteRequest* request,
                                  v1::RefUpdateResponse* response) {
  constexpr absl::string_view kRpc = "Promote";
  absl::StatusOr<RefName> branch = RefName::Parse(request->branch());
  if (!branch.ok()) return BadField(kRpc, "branch", branch.status());
  absl::StatusOr<RefName> release = RefName::Parse(request->release());
  if (!release.ok()) return BadField(kRpc, "release", release.status());
  SlotDigests expected;
  if (grpc::Status s =
          ParseSlotDigests(kRpc, "expected", request->expected(), &expected);
      !s.ok()) {
    return s;
  }
  const std::string actor = ActorOf(context, request->actor());
  absl::StatusOr<RefUpdate> update =
      refs_.Promote(*branch, *release, expected, actor);
  if (!update.ok()) return Fail(kRpc, update.status());
  LogUpdate(
      *release, *update, actor,
      absl::StrCat("from ", branch->ToString(), " generation ",
                   update->ref.source_generation, ": ", SlotsForLog(expected)));
  ToProto(*update, response);
  return grpc::Status::OK;
}

grpc::Status RefsService::Yank(grpc::ServerContext* context,
                               const v1::YankRequest* request,
                               v1::RefUpdateResponse* response) {
  constexpr absl::string_view kRpc = "Yank";
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField(kRpc, "ref", ref.status());
  const std::string actor = ActorOf(context, request->actor());
  absl::StatusOr<RefUpdate> update = refs_.Yank(*ref, request->reason(), actor);
  if (!update.ok()) return Fail(kRpc, update.status());
  LogUpdate(*ref, *update, actor,
            absl::StrCat("reason \"", request->reason(), "\""));
  ToProto(*update, response);
  return grpc::Status::OK;
}

grpc::Status RefsService::DeleteBranch(grpc::ServerContext* context,
                                       const v1::DeleteBranchRequest* request,
                                       v1::RefHistoryEntry* response) {
  constexpr absl::string_view kRpc = "DeleteBranch";
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField(kRpc, "ref", ref.status());
  std::optional<uint64_t> if_generation;
  if (request->has_if_generation()) if_generation = request->if_generation();
  const std::string actor = ActorOf(context, request->actor());
  absl::StatusOr<RefHistoryEntry> entry =
      refs_.DeleteBranch(*ref, actor, if_generation);
  if (!entry.ok()) return Fail(kRpc, entry.status());
  spdlog::info("ref {} delete: generation {} by {}", ref->ToString(),
               entry->generation, actor);
  ToProto(*ref, *entry, response);
  return grpc::Status::OK;
}

grpc::ServerUnaryReactor* RefsService::Resolve(
    grpc::CallbackServerContext* context, const v1::ResolveRequest* request,
    v1::ResolveResponse* response) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ResolveInline(request, response));
  return reactor;
}

grpc::Status RefsService::ResolveInline(const v1::ResolveRequest* request,
                                        v1::ResolveResponse* response) {
  // The hot path: parse, one RefStore::Resolve, move the strings out.
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField("Resolve", "ref", ref.status());
  absl::StatusOr<Resolved> resolved =
      refs_.Resolve(*ref, request->slot(), request->allow_yanked());
  if (!resolved.ok()) return Fail("Resolve", resolved.status());
  // The ref's text is exactly the request's (nothing is normalised).
  response->set_ref(request->ref());
  response->set_slot_requested(std::move(resolved->slot_requested));
  response->set_slot_used(std::move(resolved->slot_used));
  response->set_digest(resolved->digest.ToString());
  response->set_generation(resolved->generation);
  response->set_kind(KindToApi(resolved->kind));
  response->set_yanked(resolved->yanked);
  if (resolved->yanked) {
    response->set_yank_reason(std::move(resolved->yank_reason));
  }
  store::ArtefactMetadata& md = resolved->metadata;
  v1::ArtefactMetadata* out = response->mutable_metadata();
  out->set_name(std::move(*md.mutable_name()));
  out->set_version(std::move(*md.mutable_version()));
  out->set_licence(std::move(*md.mutable_licence()));
  out->set_entrypoint(std::move(*md.mutable_entrypoint()));
  return grpc::Status::OK;
}

grpc::Status RefsService::GetRef(grpc::ServerContext* /*context*/,
                                 const v1::GetRefRequest* request,
                                 v1::Ref* response) {
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField("GetRef", "ref", ref.status());
  absl::StatusOr<RefInfo> info = refs_.Get(*ref);
  if (!info.ok()) return Fail("GetRef", info.status());
  ToProto(*info, response);
  return grpc::Status::OK;
}

grpc::Status RefsService::ListRefs(grpc::ServerContext* /*context*/,
                                   const v1::ListRefsRequest* request,
                                   v1::ListRefsResponse* response) {
  ListRefsOptions options;
  options.prefix = request->prefix();
  switch (request->kind()) {
    case v1::REF_KIND_UNSPECIFIED:
      break;
    case v1::BRANCH:
      options.kind = RefKind::kBranch;
      break;
    case v1::RELEASE:
      options.kind = RefKind::kRelease;
      break;
    default:
      return ToGrpcStatus(absl::InvalidArgumentError(absl::StrCat(
          "ListRefs: kind: unknown value ", static_cast<int>(request->kind()),
          " (want REF_KIND_UNSPECIFIED, BRANCH or RELEASE)")));
  }
  options.start_after = request->start_after();
  options.limit = request->limit();
  options.max_bytes = max_page_bytes_;
  absl::StatusOr<ListRefsPage> page = refs_.List(options);
  if (!page.ok()) return Fail("ListRefs", page.status());
  if (AddUpTo(page->refs, max_page_bytes_, response->mutable_refs(),
              [](const RefInfo& info, v1::Ref* out) { ToProto(info, out); })) {
    // The page ends before the ref cut: the next one starts with it.
    response->set_next_start_after(
        response->refs(response->refs_size() - 1).ref());
  } else {
    response->set_next_start_after(std::move(page->next_start_after));
  }
  return grpc::Status::OK;
}

grpc::Status RefsService::History(grpc::ServerContext* /*context*/,
                                  const v1::HistoryRequest* request,
                                  v1::HistoryResponse* response) {
  absl::StatusOr<RefName> ref = RefName::Parse(request->ref());
  if (!ref.ok()) return BadField("History", "ref", ref.status());
  RefHistoryOptions options;
  options.after_generation = request->after_generation();
  options.limit = request->limit();
  options.max_bytes = max_page_bytes_;
  absl::StatusOr<RefHistoryPage> page = refs_.History(*ref, options);
  if (!page.ok()) return Fail("History", page.status());
  if (AddUpTo(page->entries, max_page_bytes_, response->mutable_entries(),
              [&ref](const RefHistoryEntry& entry, v1::RefHistoryEntry* out) {
                ToProto(*ref, entry, out);
              })) {
    response->set_next_after_generation(
        response->entries(response->entries_size() - 1).generation());
  } else {
    response->set_next_after_generation(page->next_after_generation);
  }
  return grpc::Status::OK;
}

}  // namespace cairn
