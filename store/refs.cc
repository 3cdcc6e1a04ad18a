// Copyright 2026 The Cairn Authors.
//
// Every update is a read-modify-write of one ref under that ref's lock (a
// stripe of kLockStripes absl::Mutexes chosen by hashing the ref's text):
// read the `refs` record, check the rules, and commit the new record plus
// its `ref_history` entry as one synced RocksDB WriteBatch before releasing
// the lock. The database belongs to this process alone (RocksDB's LOCK
// file) and every writer of a ref key goes through its lock, so no write
// can land between the read and the commit: this is a serialisable
// transaction per ref without RocksDB's TransactionDB. Artefact lookups
// happen before taking the lock (artefact records are never removed).
//
// Durability and throughput: each commit has sync = true. Writers of
// different refs hold different locks and reach RocksDB's write queue
// together, where the group leader writes all their batches to the WAL
// with one fsync, so N concurrent writers cost about one fsync per group
// rather than N (docs/refs.md).

#include "store/refs.h"

#include <algorithm>
#include <utility>

#include "absl/hash/hash.h"
#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"

namespace cairn {
namespace {

using RecordKind = store::RefRecord::Kind;
using HistoryAction = store::RefHistoryRecord::Action;

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

RecordKind KindToProto(RefKind kind) {
  return kind == RefKind::kBranch ? store::RefRecord::BRANCH
                                  : store::RefRecord::RELEASE;
}

absl::StatusOr<RefKind> KindFromProto(RecordKind kind, absl::string_view key) {
  switch (kind) {
    case store::RefRecord::BRANCH:
      return RefKind::kBranch;
    case store::RefRecord::RELEASE:
      return RefKind::kRelease;
    default:
      return absl::DataLossError(absl::StrCat("ref ", key, " has unknown kind ",
                                              static_cast<int>(kind)));
  }
}

HistoryAction ActionToProto(RefAction action) {
  switch (action) {
    case RefAction::kSetSlot:
      return store::RefHistoryRecord::SET_SLOT;
    case RefAction::kCreateRelease:
      return store::RefHistoryRecord::CREATE_RELEASE;
    case RefAction::kPromote:
      return store::RefHistoryRecord::PROMOTE;
    case RefAction::kYank:
      return store::RefHistoryRecord::YANK;
    case RefAction::kDelete:
      return store::RefHistoryRecord::DELETE;
  }
  return store::RefHistoryRecord::ACTION_UNSPECIFIED;
}

absl::StatusOr<RefAction> ActionFromProto(HistoryAction action,
                                          absl::string_view key,
                                          uint64_t generation) {
  switch (action) {
    case store::RefHistoryRecord::SET_SLOT:
      return RefAction::kSetSlot;
    case store::RefHistoryRecord::CREATE_RELEASE:
      return RefAction::kCreateRelease;
    case store::RefHistoryRecord::PROMOTE:
      return RefAction::kPromote;
    case store::RefHistoryRecord::YANK:
      return RefAction::kYank;
    case store::RefHistoryRecord::DELETE:
      return RefAction::kDelete;
    default:
      return absl::DataLossError(
          absl::StrCat("history of ref ", key, " at generation ", generation,
                       " has unknown action ", static_cast<int>(action)));
  }
}

// A digest stored as raw bytes; `what` names it for DataLoss.
absl::StatusOr<Digest> StoredDigest(absl::string_view raw,
                                    absl::string_view what) {
  absl::StatusOr<Digest> d = Digest::FromRaw(raw);
  if (!d.ok()) {
    return absl::DataLossError(
        absl::StrCat("corrupt digest in ", what, ": ", d.status().message()));
  }
  return *d;
}

absl::StatusOr<std::optional<Digest>> OptionalStoredDigest(
    absl::string_view raw, absl::string_view what) {
  if (raw.empty()) return std::optional<Digest>();
  absl::StatusOr<Digest> d = StoredDigest(raw, what);
  if (!d.ok()) return d.status();
  return std::optional<Digest>(*d);
}

absl::StatusOr<std::optional<RefName>> StoredSource(absl::string_view text,
                                                    absl::string_view what) {
  if (text.empty()) return std::optional<RefName>();
  absl::StatusOr<RefName> r = RefName::Parse(text);
  if (!r.ok()) {
    return absl::DataLossError(absl::StrCat("corrupt source ref in ", what,
                                            ": ", r.status().message()));
  }
  return std::optional<RefName>(*r);
}

absl::StatusOr<RefInfo> ToInfo(const RefName& ref,
                               const store::RefRecord& record) {
  const std::string key = ref.ToString();
  RefInfo info;
  info.ref = ref;
  absl::StatusOr<RefKind> kind = KindFromProto(record.kind(), key);
  if (!kind.ok()) return kind.status();
  info.kind = *kind;
  for (const auto& [slot, rec] : record.slots()) {
    absl::StatusOr<Digest> d =
        StoredDigest(rec.digest(), absl::StrCat("slot ", slot, " of ", key));
    if (!d.ok()) return d.status();
    info.slots[slot] = RefSlot{*d, rec.metadata()};
  }
  info.generation = record.generation();
  info.created_at = absl::FromUnixMicros(record.created_at_unix_micros());
  info.updated_at = absl::FromUnixMicros(record.updated_at_unix_micros());
  info.updated_by = record.updated_by();
  info.metadata = record.metadata();
  info.metadata_slot = record.metadata_slot();
  absl::StatusOr<std::optional<RefName>> source =
      StoredSource(record.source_ref(), absl::StrCat("ref ", key));
  if (!source.ok()) return source.status();
  info.source_ref = *source;
  info.source_generation = record.source_generation();
  info.yanked = record.yanked();
  info.yank_reason = record.yank_reason();
  info.yanked_at = absl::FromUnixMicros(record.yanked_at_unix_micros());
  return info;
}

absl::StatusOr<RefHistoryEntry> ToEntry(absl::string_view key,
                                        const store::RefHistoryRecord& record) {
  const std::string what = absl::StrCat("history of ref ", key,
                                        " at generation ", record.generation());
  RefHistoryEntry entry;
  entry.generation = record.generation();
  entry.at = absl::FromUnixMicros(record.at_unix_micros());
  entry.actor = record.actor();
  absl::StatusOr<RefAction> action =
      ActionFromProto(record.action(), key, record.generation());
  if (!action.ok()) return action.status();
  entry.action = *action;
  absl::StatusOr<RefKind> kind = KindFromProto(record.kind(), key);
  if (!kind.ok()) return kind.status();
  entry.kind = *kind;
  for (const auto& change : record.changes()) {
    SlotChange c;
    c.slot = change.slot();
    absl::StatusOr<std::optional<Digest>> old_digest =
        OptionalStoredDigest(change.old_digest(), what);
    if (!old_digest.ok()) return old_digest.status();
    absl::StatusOr<std::optional<Digest>> new_digest =
        OptionalStoredDigest(change.new_digest(), what);
    if (!new_digest.ok()) return new_digest.status();
    c.old_digest = *old_digest;
    c.new_digest = *new_digest;
    entry.changes.push_back(std::move(c));
  }
  absl::StatusOr<std::optional<RefName>> source =
      StoredSource(record.source_ref(), what);
  if (!source.ok()) return source.status();
  entry.source_ref = *source;
  entry.source_generation = record.source_generation();
  entry.reason = record.reason();
  return entry;
}

void AddChange(absl::string_view slot, const std::optional<Digest>& old_digest,
               const std::optional<Digest>& new_digest,
               store::RefHistoryRecord* history) {
  store::RefHistoryRecord::SlotChange* c = history->add_changes();
  c->set_slot(std::string(slot));
  if (old_digest.has_value()) c->set_old_digest(std::string(old_digest->raw()));
  if (new_digest.has_value()) c->set_new_digest(std::string(new_digest->raw()));
}

// Whether `text` holds an ASCII control character (below 0x20, or DEL):
// actors and reasons are shown on one line of a terminal.
bool HasControlCharacter(absl::string_view text) {
  for (char c : text) {
    const unsigned char u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

absl::Status ValidateActor(absl::string_view actor) {
  if (actor.empty()) {
    return absl::InvalidArgumentError(
        "empty actor: every ref update must say who made it");
  }
  if (actor.size() > kMaxActorBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor ", Quote(actor.substr(0, 64)), "... is ",
                     actor.size(), " bytes, longer than ", kMaxActorBytes));
  }
  if (HasControlCharacter(actor)) {
    return absl::InvalidArgumentError(
        absl::StrCat("actor ", Quote(actor), " contains a control character"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSlots(const RefName& ref, const SlotDigests& slots,
                           absl::string_view what) {
  if (slots.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " for ", ref.ToString(), " names no slot"));
  }
  if (slots.size() > kMaxSlotsPerRef) {
    return absl::InvalidArgumentError(
        absl::StrCat(what, " for ", ref.ToString(), " names ", slots.size(),
                     " slots; a ref has at most ", kMaxSlotsPerRef));
  }
  for (const auto& [slot, digest] : slots) {
    if (absl::Status s = ValidateSlot(slot); !s.ok()) return s;
  }
  return absl::OkStatus();
}

// The current time in Unix microseconds, but never before `floor_micros`
// (so a ref's updated_at and history times never go backwards).
int64_t NowMicros(int64_t floor_micros) {
  return std::max(absl::ToUnixMicros(absl::Now()), floor_micros);
}

absl::Status GenerationMismatch(absl::string_view key,
                                const std::optional<store::RefRecord>& current,
                                uint64_t if_generation) {
  if (!current.has_value()) {
    return absl::AbortedError(
        absl::StrCat("ref ", key, " does not exist, but if_generation is ",
                     if_generation, ": it moved; re-read it and retry"));
  }
  if (if_generation == 0) {
    return absl::AbortedError(absl::StrCat(
        "ref ", key, " exists at generation ", current->generation(),
        ", but if_generation 0 requires that it does not"));
  }
  return absl::AbortedError(absl::StrCat("ref ", key, " is at generation ",
                                         current->generation(),
                                         ", not if_generation ", if_generation,
                                         ": it moved; re-read it and retry"));
}

absl::Status ReleaseExists(absl::string_view key,
                           const store::RefRecord& current) {
  if (current.kind() == store::RefRecord::RELEASE) {
    return absl::AlreadyExistsError(absl::StrCat(
        "release ", key, " already exists (generation ", current.generation(),
        "); releases are immutable and are never overwritten"));
  }
  return absl::FailedPreconditionError(
      absl::StrCat(key,
                   " is a branch; a release cannot take its name (delete "
                   "the branch first)"));
}

// Picks the metadata slot of a release: noarch if present, else the first.
std::string ReleaseMetadataSlot(const std::map<std::string, RefSlot>& slots) {
  if (slots.count(std::string(kNoarchSlot)) > 0)
    return std::string(kNoarchSlot);
  return slots.begin()->first;
}

std::string SlotList(
    const google::protobuf::Map<std::string, store::RefSlotRecord>& slots) {
  std::vector<std::string> names;
  for (const auto& [slot, rec] : slots) names.push_back(slot);
  std::sort(names.begin(), names.end());
  return absl::StrJoin(names, ", ");
}

size_t ClampLimit(size_t limit) {
  if (limit == 0) return kDefaultRefPageSize;
  return std::min(limit, kMaxRefPageSize);
}

// A history entry's common fields.
store::RefHistoryRecord NewHistory(uint64_t generation, int64_t now_micros,
                                   absl::string_view actor,
                                   store::RefHistoryRecord::Action action,
                                   store::RefRecord::Kind kind) {
  store::RefHistoryRecord history;
  history.set_generation(generation);
  history.set_at_unix_micros(now_micros);
  history.set_actor(std::string(actor));
  history.set_action(action);
  history.set_kind(kind);
  return history;
}

}  // namespace

absl::string_view RefKindName(RefKind kind) {
  return kind == RefKind::kBranch ? "branch" : "release";
}

absl::string_view RefActionName(RefAction action) {
  switch (action) {
    case RefAction::kSetSlot:
      return "set-slot";
    case RefAction::kCreateRelease:
      return "create-release";
    case RefAction::kPromote:
      return "promote";
    case RefAction::kYank:
      return "yank";
    case RefAction::kDelete:
      return "delete";
  }
  return "unknown";
}

absl::StatusOr<std::unique_ptr<RefStore>> RefStore::Create(MetadataDb* db) {
  if (db == nullptr) {
    return absl::InvalidArgumentError("RefStore needs a metadata database");
  }
  return std::unique_ptr<RefStore>(new RefStore(db));
}

RefStore::RefStore(MetadataDb* db) : db_(db) {}

RefStore::~RefStore() = default;

absl::Mutex& RefStore::LockFor(absl::string_view key) {
  return locks_[absl::Hash<absl::string_view>()(key) % kLockStripes];
}

absl::StatusOr<std::map<std::string, RefSlot>> RefStore::LookUpArtefacts(
    const RefName& ref, const SlotDigests& slots) const {
  std::map<std::string, RefSlot> out;
  for (const auto& [slot, digest] : slots) {
    absl::StatusOr<store::ArtefactRecord> artefact = db_->GetArtefact(digest);
    if (absl::IsNotFound(artefact.status())) {
      return absl::NotFoundError(
          absl::StrCat("cannot use ", digest.ToString(), " for slot ", slot,
                       " of ", ref.ToString(),
                       ": it is not an artefact in the store (push it "
                       "first)"));
    }
    if (!artefact.ok()) return artefact.status();
    if (artefact->index_state() == store::ArtefactRecord::INDEXING) {
      return absl::FailedPreconditionError(absl::StrCat(
          "cannot use ", digest.ToString(), " for slot ", slot, " of ",
          ref.ToString(),
          ": its file index is still being built (wait for it: cairn stat "
          "--wait)"));
    }
    out[slot] = RefSlot{digest, artefact->metadata()};
  }
  return out;
}

absl::StatusOr<std::optional<store::RefRecord>> RefStore::ReadRecord(
    const std::string& key) const {
  absl::StatusOr<store::RefRecord> record = db_->GetRef(key);
  if (absl::IsNotFound(record.status())) {
    return std::optional<store::RefRecord>();
  }
  if (!record.ok()) return record.status();
  return std::optional<store::RefRecord>(*std::move(record));
}

absl::Status RefStore::CommitLocked(absl::Mutex* mu, const RefName& ref,
                                    const std::string& key,
                                    const store::RefRecord* record,
                                    const store::RefHistoryRecord& history) {
  mu->AssertHeld();
  MetadataBatch batch;
  if (record != nullptr) {
    batch.PutRef(key, *record);
  } else {
    batch.DeleteRef(key);
  }
  batch.PutRefHistory(key, history);
  if (absl::Status s = db_->Commit(std::move(batch), /*sync=*/true); !s.ok()) {
    return s;
  }
  absl::ReaderMutexLock lock(&listeners_mu_);
  for (const auto& [id, listener] : listeners_) listener(ref);
  return absl::OkStatus();
}

uint64_t RefStore::AddChangeListener(ChangeListener listener) {
  absl::MutexLock lock(&listeners_mu_);
  const uint64_t id = next_listener_id_++;
  listeners_.emplace(id, std::move(listener));
  return id;
}

void RefStore::RemoveChangeListener(uint64_t id) {
  absl::MutexLock lock(&listeners_mu_);  // Waits for running listeners.
  listeners_.erase(id);
}

absl::StatusOr<RefUpdate> RefStore::CommitUpdateLocked(
    absl::Mutex* mu, const RefName& ref, const std::string& key,
    const store::RefRecord& record, const store::RefHistoryRecord& history) {
  if (absl::Status s = CommitLocked(mu, ref, key, &record, history); !s.ok()) {
    return s;
  }
  absl::StatusOr<RefInfo> info = ToInfo(ref, record);
  if (!info.ok()) return info.status();
  absl::StatusOr<RefHistoryEntry> entry = ToEntry(key, history);
  if (!entry.ok()) return entry.status();
  return RefUpdate{*std::move(info), true, *std::move(entry)};
}

absl::StatusOr<RefUpdate> RefStore::SetSlot(
    const RefName& branch, absl::string_view slot, const Digest& digest,
    absl::string_view actor, std::optional<uint64_t> if_generation) {
  if (absl::Status s = ValidateRefName(branch); !s.ok()) return s;
  if (absl::Status s = ValidateSlot(slot); !s.ok()) return s;
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  absl::StatusOr<std::map<std::string, RefSlot>> looked_up =
      LookUpArtefacts(branch, {{std::string(slot), digest}});
  if (!looked_up.ok()) return looked_up.status();
  const RefSlot& new_slot = looked_up->begin()->second;

  const std::string key = branch.ToString();
  absl::Mutex& mu = LockFor(key);
  absl::MutexLock lock(&mu);
  absl::StatusOr<std::optional<store::RefRecord>> current = ReadRecord(key);
  if (!current.ok()) return current.status();
  if (current->has_value() && (*current)->kind() != store::RefRecord::BRANCH) {
    return absl::FailedPreconditionError(absl::StrCat(
        key, " is a release; releases are immutable: cannot set its slot ",
        slot));
  }
  const uint64_t current_generation =
      current->has_value() ? (*current)->generation() : 0;
  if (if_generation.has_value() && *if_generation != current_generation) {
    return GenerationMismatch(key, *current, *if_generation);
  }

  std::optional<Digest> old_digest;
  store::RefRecord record;
  if (current->has_value()) {
    record = **current;
    auto it = record.slots().find(std::string(slot));
    if (it != record.slots().end()) {
      absl::StatusOr<Digest> d = StoredDigest(
          it->second.digest(), absl::StrCat("slot ", slot, " of ", key));
      if (!d.ok()) return d.status();
      old_digest = *d;
    }
    if (old_digest == digest) {
      absl::StatusOr<RefInfo> info = ToInfo(branch, record);
      if (!info.ok()) return info.status();
      return RefUpdate{*std::move(info), false, {}};
    }
    if (!old_digest.has_value() &&
        static_cast<size_t>(record.slots_size()) >= kMaxSlotsPerRef) {
      return absl::ResourceExhaustedError(
          absl::StrCat("branch ", key, " already has ", record.slots_size(),
                       " slots, the most a ref can have; cannot add ", slot));
    }
    record.set_generation(current_generation + 1);
  } else {
    absl::StatusOr<uint64_t> last = db_->LastRefHistoryGeneration(key);
    if (!last.ok()) return last.status();
    record.set_kind(store::RefRecord::BRANCH);
    record.set_generation(*last + 1);
  }
  const int64_t now = NowMicros(record.updated_at_unix_micros());
  if (!current->has_value()) record.set_created_at_unix_micros(now);
  record.set_updated_at_unix_micros(now);
  record.set_updated_by(std::string(actor));
  store::RefSlotRecord& slot_record =
      (*record.mutable_slots())[std::string(slot)];
  slot_record.set_digest(std::string(digest.raw()));
  *slot_record.mutable_metadata() = new_slot.metadata;
  // A branch's metadata is that of the slot set last.
  *record.mutable_metadata() = new_slot.metadata;
  record.set_metadata_slot(std::string(slot));

  store::RefHistoryRecord history =
      NewHistory(record.generation(), now, actor,
                 store::RefHistoryRecord::SET_SLOT, store::RefRecord::BRANCH);
  AddChange(slot, old_digest, digest, &history);

  return CommitUpdateLocked(&mu, branch, key, record, history);
}

absl::StatusOr<RefUpdate> RefStore::WriteReleaseLocked(
    absl::Mutex* mu, const RefName& release,
    const std::map<std::string, RefSlot>& slots, absl::string_view actor,
    RefAction action, const RefInfo* source) {
  mu->AssertHeld();
  const std::string key = release.ToString();
  absl::StatusOr<std::optional<store::RefRecord>> current = ReadRecord(key);
  if (!current.ok()) return current.status();
  if (current->has_value()) return ReleaseExists(key, **current);
  absl::StatusOr<uint64_t> last = db_->LastRefHistoryGeneration(key);
  if (!last.ok()) return last.status();

  const int64_t now = NowMicros(0);
  store::RefRecord record;
  record.set_kind(store::RefRecord::RELEASE);
  record.set_generation(*last + 1);
  record.set_created_at_unix_micros(now);
  record.set_updated_at_unix_micros(now);
  record.set_updated_by(std::string(actor));
  store::RefHistoryRecord history =
      NewHistory(record.generation(), now, actor, ActionToProto(action),
                 store::RefRecord::RELEASE);
  for (const auto& [slot, ref_slot] : slots) {
    store::RefSlotRecord& r = (*record.mutable_slots())[slot];
    r.set_digest(std::string(ref_slot.digest.raw()));
    *r.mutable_metadata() = ref_slot.metadata;
    AddChange(slot, std::nullopt, ref_slot.digest, &history);
  }
  const std::string metadata_slot = ReleaseMetadataSlot(slots);
  *record.mutable_metadata() = slots.at(metadata_slot).metadata;
  record.set_metadata_slot(metadata_slot);
  if (source != nullptr) {
    record.set_source_ref(source->ref.ToString());
    record.set_source_generation(source->generation);
    history.set_source_ref(source->ref.ToString());
    history.set_source_generation(source->generation);
  }

  return CommitUpdateLocked(mu, release, key, record, history);
}

absl::StatusOr<RefUpdate> RefStore::CreateRelease(const RefName& release,
                                                  const SlotDigests& slots,
                                                  absl::string_view actor) {
  if (absl::Status s = ValidateRefName(release); !s.ok()) return s;
  if (absl::Status s = ValidateSlots(release, slots, "release"); !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  absl::StatusOr<std::map<std::string, RefSlot>> looked_up =
      LookUpArtefacts(release, slots);
  if (!looked_up.ok()) return looked_up.status();
  const std::string key = release.ToString();
  absl::Mutex& mu = LockFor(key);
  absl::MutexLock lock(&mu);
  return WriteReleaseLocked(&mu, release, *looked_up, actor,
                            RefAction::kCreateRelease, nullptr);
}

absl::StatusOr<RefUpdate> RefStore::Promote(const RefName& branch,
                                            const RefName& release,
                                            const SlotDigests& expected,
                                            absl::string_view actor) {
  if (absl::Status s = ValidateRefName(branch); !s.ok()) return s;
  if (absl::Status s = ValidateRefName(release); !s.ok()) return s;
  if (absl::Status s = ValidateSlots(branch, expected, "expected digests");
      !s.ok()) {
    return s;
  }
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  const std::string branch_key = branch.ToString();
  const std::string release_key = release.ToString();
  if (branch_key == release_key) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot promote ", branch_key, " to itself"));
  }

  // Only the release's lock is held. The branch is read once, a consistent
  // snapshot, and the release is created from exactly what that read
  // returned; the promotion takes effect at that read, whatever the branch
  // does afterwards.
  absl::Mutex& mu = LockFor(release_key);
  absl::MutexLock lock(&mu);
  absl::StatusOr<std::optional<store::RefRecord>> current =
      ReadRecord(branch_key);
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    return absl::NotFoundError(absl::StrCat("cannot promote ", branch_key,
                                            " to ", release_key, ": branch ",
                                            branch_key, " not found"));
  }
  if ((*current)->kind() != store::RefRecord::BRANCH) {
    return absl::FailedPreconditionError(
        absl::StrCat("cannot promote ", branch_key, " to ", release_key, ": ",
                     branch_key, " is a release, not a branch"));
  }
  absl::StatusOr<RefInfo> source = ToInfo(branch, **current);
  if (!source.ok()) return source.status();
  const std::string prefix =
      absl::StrCat("cannot promote ", branch_key, " (generation ",
                   source->generation, ") to ", release_key, ": ");
  for (const auto& [slot, digest] : expected) {
    auto it = source->slots.find(slot);
    if (it == source->slots.end()) {
      return absl::AbortedError(absl::StrCat(
          prefix, "slot ", slot, " is expected to be ", digest.ToString(),
          " but the branch has no slot ", slot, "; nothing was promoted"));
    }
    if (it->second.digest != digest) {
      return absl::AbortedError(absl::StrCat(
          prefix, "slot ", slot, " is ", it->second.digest.ToString(),
          ", expected ", digest.ToString(),
          " (the branch moved); nothing was promoted"));
    }
  }
  for (const auto& [slot, ref_slot] : source->slots) {
    if (expected.count(slot) == 0) {
      return absl::AbortedError(absl::StrCat(
          prefix, "the branch has slot ", slot, " (",
          ref_slot.digest.ToString(),
          ") that the expected digests do not name; nothing was promoted"));
    }
  }
  return WriteReleaseLocked(&mu, release, source->slots, actor,
                            RefAction::kPromote, &*source);
}

absl::StatusOr<RefUpdate> RefStore::Yank(const RefName& release,
                                         absl::string_view reason,
                                         absl::string_view actor) {
  if (absl::Status s = ValidateRefName(release); !s.ok()) return s;
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  const std::string key = release.ToString();
  if (reason.size() > kMaxYankReasonBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("reason for yanking ", key, " is ", reason.size(),
                     " bytes, longer than ", kMaxYankReasonBytes));
  }
  if (HasControlCharacter(reason)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "reason for yanking ", key, " contains a control character"));
  }
  absl::Mutex& mu = LockFor(key);
  absl::MutexLock lock(&mu);
  absl::StatusOr<std::optional<store::RefRecord>> current = ReadRecord(key);
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("cannot yank ", key, ": release not found"));
  }
  store::RefRecord record = **current;
  if (record.kind() != store::RefRecord::RELEASE) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot yank ", key,
        ": it is a branch; only releases are yanked (delete the branch "
        "instead)"));
  }
  if (record.yanked()) {
    absl::StatusOr<RefInfo> info = ToInfo(release, record);
    if (!info.ok()) return info.status();
    return RefUpdate{*std::move(info), false, {}};
  }
  const int64_t now = NowMicros(record.updated_at_unix_micros());
  record.set_generation(record.generation() + 1);
  record.set_updated_at_unix_micros(now);
  record.set_updated_by(std::string(actor));
  record.set_yanked(true);
  record.set_yank_reason(std::string(reason));
  record.set_yanked_at_unix_micros(now);

  store::RefHistoryRecord history =
      NewHistory(record.generation(), now, actor, store::RefHistoryRecord::YANK,
                 store::RefRecord::RELEASE);
  history.set_reason(std::string(reason));

  return CommitUpdateLocked(&mu, release, key, record, history);
}

absl::StatusOr<RefHistoryEntry> RefStore::DeleteBranch(
    const RefName& branch, absl::string_view actor,
    std::optional<uint64_t> if_generation) {
  if (absl::Status s = ValidateRefName(branch); !s.ok()) return s;
  if (absl::Status s = ValidateActor(actor); !s.ok()) return s;
  const std::string key = branch.ToString();
  absl::Mutex& mu = LockFor(key);
  absl::MutexLock lock(&mu);
  absl::StatusOr<std::optional<store::RefRecord>> current = ReadRecord(key);
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    return absl::NotFoundError(
        absl::StrCat("cannot delete ", key, ": branch not found"));
  }
  const store::RefRecord& record = **current;
  if (record.kind() != store::RefRecord::BRANCH) {
    return absl::FailedPreconditionError(absl::StrCat(
        "cannot delete ", key,
        ": it is a release; releases are immutable and never deleted (yank "
        "it instead)"));
  }
  if (if_generation.has_value() && *if_generation != record.generation()) {
    return GenerationMismatch(key, *current, *if_generation);
  }
  absl::StatusOr<RefInfo> info = ToInfo(branch, record);
  if (!info.ok()) return info.status();

  store::RefHistoryRecord history = NewHistory(
      record.generation() + 1, NowMicros(record.updated_at_unix_micros()),
      actor, store::RefHistoryRecord::DELETE, store::RefRecord::BRANCH);
  for (const auto& [slot, ref_slot] : info->slots) {
    AddChange(slot, ref_slot.digest, std::nullopt, &history);
  }
  if (absl::Status s = CommitLocked(&mu, branch, key, nullptr, history);
      !s.ok()) {
    return s;
  }
  return ToEntry(key, history);
}

absl::StatusOr<RefInfo> RefStore::Get(const RefName& ref) const {
  if (absl::Status s = ValidateRefName(ref); !s.ok()) return s;
  const std::string key = ref.ToString();
  absl::StatusOr<std::optional<store::RefRecord>> record = ReadRecord(key);
  if (!record.ok()) return record.status();
  if (!record->has_value()) {
    return absl::NotFoundError(absl::StrCat("ref ", key, " not found"));
  }
  return ToInfo(ref, **record);
}

absl::StatusOr<Resolved> RefStore::Resolve(const RefName& ref,
                                           absl::string_view slot,
                                           bool allow_yanked) const {
  if (absl::Status s = ValidateRefName(ref); !s.ok()) return s;
  if (absl::Status s = ValidateSlot(slot); !s.ok()) return s;
  const std::string key = ref.ToString();
  absl::StatusOr<std::optional<store::RefRecord>> read = ReadRecord(key);
  if (!read.ok()) return read.status();
  if (!read->has_value()) {
    return absl::NotFoundError(absl::StrCat("ref ", key, " not found"));
  }
  const store::RefRecord& record = **read;
  absl::StatusOr<RefKind> kind = KindFromProto(record.kind(), key);
  if (!kind.ok()) return kind.status();
  if (record.yanked() && !allow_yanked) {
    return absl::FailedPreconditionError(absl::StrCat(
        "release ", key, " was yanked",
        record.yank_reason().empty()
            ? std::string()
            : absl::StrCat(" (", Quote(record.yank_reason()), ")"),
        " and no longer resolves by name; allow yanked releases to resolve "
        "it anyway, or use its digests directly"));
  }
  std::string used(slot);
  auto it = record.slots().find(used);
  if (it == record.slots().end() && slot != kNoarchSlot) {
    used = std::string(kNoarchSlot);
    it = record.slots().find(used);
  }
  if (it == record.slots().end()) {
    return absl::NotFoundError(absl::StrCat(
        "ref ", key, " has no slot ", slot,
        slot != kNoarchSlot ? absl::StrCat(" and no ", kNoarchSlot, " slot")
                            : std::string(),
        " (its slots: ", SlotList(record.slots()), ")"));
  }
  absl::StatusOr<Digest> digest = StoredDigest(
      it->second.digest(), absl::StrCat("slot ", used, " of ", key));
  if (!digest.ok()) return digest.status();
  Resolved out;
  out.ref = ref;
  out.slot_requested = std::string(slot);
  out.slot_used = std::move(used);
  out.digest = *digest;
  out.generation = record.generation();
  out.kind = *kind;
  out.yanked = record.yanked();
  out.yank_reason = record.yank_reason();
  out.metadata = it->second.metadata();
  return out;
}

absl::StatusOr<ListRefsPage> RefStore::List(
    const ListRefsOptions& options) const {
  const size_t limit = ClampLimit(options.limit);
  ListRefsPage page;
  absl::Status error;
  size_t bytes = 0;
  absl::Status s =
      db_->ListRefs(options.prefix, options.start_after,
                    [&](absl::string_view key, const store::RefRecord& record) {
                      if (options.kind.has_value() &&
                          record.kind() != KindToProto(*options.kind)) {
                        return true;
                      }
                      bytes += record.ByteSizeLong();
                      if (page.refs.size() == limit ||
                          (options.max_bytes > 0 && !page.refs.empty() &&
                           bytes > options.max_bytes)) {
                        // One more match exists: this page is not the last.
                        page.next_start_after = page.refs.back().ref.ToString();
                        return false;
                      }
                      absl::StatusOr<RefName> name = RefName::Parse(key);
                      if (!name.ok()) {
                        error = absl::DataLossError(
                            absl::StrCat("malformed refs key ", Quote(key),
                                         ": ", name.status().message()));
                        return false;
                      }
                      absl::StatusOr<RefInfo> info = ToInfo(*name, record);
                      if (!info.ok()) {
                        error = info.status();
                        return false;
                      }
                      page.refs.push_back(*std::move(info));
                      return true;
                    });
  if (!error.ok()) return error;
  if (!s.ok()) return s;
  return page;
}

absl::StatusOr<RefHistoryPage> RefStore::History(
    const RefName& ref, const RefHistoryOptions& options) const {
  if (absl::Status s = ValidateRefName(ref); !s.ok()) return s;
  const std::string key = ref.ToString();
  const size_t limit = ClampLimit(options.limit);
  RefHistoryPage page;
  absl::Status error;
  size_t bytes = 0;
  absl::Status s = db_->ListRefHistory(
      key, options.after_generation,
      [&](const store::RefHistoryRecord& record) {
        bytes += record.ByteSizeLong();
        if (page.entries.size() == limit ||
            (options.max_bytes > 0 && !page.entries.empty() &&
             bytes > options.max_bytes)) {
          page.next_after_generation = page.entries.back().generation;
          return false;
        }
        absl::StatusOr<RefHistoryEntry> entry = ToEntry(key, record);
        if (!entry.ok()) {
          error = entry.status();
          return false;
        }
        page.entries.push_back(*std::move(entry));
        return true;
      });
  if (!error.ok()) return error;
  if (!s.ok()) return s;
  if (page.entries.empty() && options.after_generation == 0) {
    return absl::NotFoundError(absl::StrCat("ref ", key, " has no history"));
  }
  return page;
}

}  // namespace cairn
