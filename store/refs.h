// Copyright 2026 The Cairn Authors.
//
// Refs: human names for artefacts, with architecture slots, release tags
// and promotion (docs/refs.md).
//
// A ref "<package>@<name>" (store/ref_name.h) maps architecture slots
// ("linux-amd64", "darwin-arm64", ..., "noarch") to artefact digests. Its
// kind is fixed when it is created:
//   - branch:  mutable; SetSlot replaces one slot atomically.
//   - release: immutable; created with all its slots at once (CreateRelease,
//              or Promote from a branch) and never changed afterwards, except
//              for being yanked. Never deleted.
// Every change bumps the ref's generation (1, 2, ...) and appends one entry
// to the ref's audit history (who, when, old and new digest per slot).
// Resolving (ref, slot) returns that slot's digest, else the noarch slot's.
//
// Storage: column families `refs` and `ref_history` of the MetadataDb
// (store/metadata.h, docs/storage.md). Every update is one synced RocksDB
// WriteBatch (WAL fsync before it is acknowledged) holding the new record
// and its history entry, built while holding the ref's lock; see
// docs/refs.md for why this is a transaction and how fsyncs are grouped.
//
// Example:
//   auto refs = RefStore::Create(&store->mutable_metadata());
//   RefName main = *RefName::Parse("tool@main");
//   (*refs)->SetSlot(main, "linux-amd64", digest, "ci@build-17");
//   (*refs)->Promote(main, *RefName::Parse("tool@v1.0.0"),
//                    {{"linux-amd64", digest}}, "alice");
//   auto r = (*refs)->Resolve(*RefName::Parse("tool@v1.0.0"), HostSlot());

#ifndef CAIRN_STORE_REFS_H_
#define CAIRN_STORE_REFS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/store_records.pb.h"
#include "store/digest.h"
#include "store/metadata.h"
#include "store/ref_name.h"

namespace cairn {

// Limits, enforced on every update.
inline constexpr size_t kMaxSlotsPerRef = 64;
inline constexpr size_t kMaxActorBytes = 256;
inline constexpr size_t kMaxYankReasonBytes = 1024;
// Page sizes of List and History: 0 asks for the default; larger requests
// are capped at the maximum.
inline constexpr size_t kDefaultRefPageSize = 1000;
inline constexpr size_t kMaxRefPageSize = 10000;

enum class RefKind {
  kBranch,   // Mutable.
  kRelease,  // Immutable.
};
// "branch" or "release".
absl::string_view RefKindName(RefKind kind);

enum class RefAction {
  kSetSlot,        // A branch slot set (creating the branch if absent).
  kCreateRelease,  // A release created from digests.
  kPromote,        // A release created from a branch's digests.
  kYank,           // A release yanked.
  kDelete,         // A branch deleted.
};
// "set-slot", "create-release", "promote", "yank" or "delete".
absl::string_view RefActionName(RefAction action);

// Slot name -> artefact digest, in bytewise slot order.
using SlotDigests = std::map<std::string, Digest>;

// One architecture slot of a ref.
struct RefSlot {
  Digest digest;  // An artefact (tarball) in the store.
  // The artefact's metadata (cairn.json / package.json), read from its
  // ArtefactRecord when the slot was set.
  store::ArtefactMetadata metadata;
};

// A ref's current state.
struct RefInfo {
  RefName ref;
  RefKind kind = RefKind::kBranch;
  // Slot name -> slot, in bytewise slot order. Never empty.
  std::map<std::string, RefSlot> slots;
  // 1 at the name's first change, +1 per change since (SetSlot, Yank, ...).
  // Continues across a branch's deletion and re-creation.
  uint64_t generation = 0;
  absl::Time created_at;   // When this incarnation of the ref was created.
  absl::Time updated_at;   // The latest change; never decreases.
  std::string updated_by;  // The actor of the latest change.
  // The ref's metadata, taken from one slot's artefact (metadata_slot): for
  // a branch, the slot set last; for a release, "noarch" if it has one,
  // else its first slot in bytewise order.
  store::ArtefactMetadata metadata;
  std::string metadata_slot;
  // Releases made by Promote: the branch and the generation of the branch
  // whose digests they hold.
  std::optional<RefName> source_ref;
  uint64_t source_generation = 0;
  // Releases only. A yanked release resolves only with allow_yanked; its
  // artefacts stay readable by digest.
  bool yanked = false;
  std::string yank_reason;
  absl::Time yanked_at;  // Meaningful when yanked.
};

// One slot's change in a history entry.
struct SlotChange {
  std::string slot;
  std::optional<Digest> old_digest;  // nullopt: the slot was absent.
  std::optional<Digest> new_digest;  // nullopt: the slot was removed.
};

// One entry of a ref's audit history.
struct RefHistoryEntry {
  uint64_t generation = 0;  // The ref's generation after this change.
  absl::Time at;
  std::string actor;  // As passed by the caller.
  RefAction action = RefAction::kSetSlot;
  RefKind kind = RefKind::kBranch;  // The ref's kind at this change.
  // In bytewise slot order. SetSlot: the one slot. CreateRelease, Promote:
  // every slot, from none. Delete: every slot, to none. Yank: empty.
  std::vector<SlotChange> changes;
  // Promote: where the digests came from.
  std::optional<RefName> source_ref;
  uint64_t source_generation = 0;
  std::string reason;  // Yank: the reason given.
};

// The outcome of an update.
struct RefUpdate {
  RefInfo ref;  // The ref after the update.
  // False when the update had nothing to do (SetSlot to the digest the slot
  // already holds, Yank of a yanked release): no generation was used and no
  // history was written; `entry` is then empty.
  bool changed = false;
  RefHistoryEntry entry;  // The history entry recorded.
};

// The result of Resolve.
struct Resolved {
  RefName ref;
  std::string slot_requested;
  // slot_requested, or "noarch" when the ref has no slot_requested.
  std::string slot_used;
  Digest digest;
  uint64_t generation = 0;  // The ref's generation that was read.
  RefKind kind = RefKind::kBranch;
  bool yanked = false;  // Only ever true with allow_yanked.
  std::string yank_reason;
  store::ArtefactMetadata metadata;  // Of the artefact resolved to.
};

struct ListRefsOptions {
  // Only refs whose text "<package>@<name>" starts with this: "" (all),
  // "team/" (a namespace), "tool@" (one package's refs), "tool@v1." (...).
  std::string prefix;
  std::optional<RefKind> kind;  // Only refs of this kind; nullopt: both.
  // Paging: only refs after this one in bytewise order of their text ("" =
  // from the first); pass the previous page's next_start_after.
  std::string start_after;
  size_t limit = 0;  // Refs per page; see kDefaultRefPageSize.
  // Also ends the page (with next_start_after set) once the stored records
  // of its refs pass this many bytes; at least one ref per page. 0: no
  // bound. A ref holds its artefacts' metadata once per slot.
  size_t max_bytes = 0;
};

struct ListRefsPage {
  std::vector<RefInfo> refs;  // In bytewise order of their text.
  // The start_after of the next page; "" when this page is the last.
  std::string next_start_after;
};

struct RefHistoryOptions {
  // Paging: only entries with a greater generation (0 = from the first).
  uint64_t after_generation = 0;
  size_t limit = 0;  // Entries per page; see kDefaultRefPageSize.
  // As ListRefsOptions::max_bytes, for the stored history records.
  size_t max_bytes = 0;
};

struct RefHistoryPage {
  std::vector<RefHistoryEntry> entries;  // Oldest first.
  // The after_generation of the next page; 0 when this page is the last.
  uint64_t next_after_generation = 0;
};

// The refs layer over a MetadataDb. Thread-safe: updates of one ref are
// serialised (a lock per ref, striped), updates of different refs run in
// parallel and their WAL fsyncs are grouped by RocksDB; reads take no lock.
//
// Common errors of every method: InvalidArgument for a malformed ref or
// slot (showing the grammar), an empty or over-long actor (at most
// kMaxActorBytes, no control characters) or reason; DataLoss for a corrupt
// record; Internal (or the code MetadataDb maps) for a database failure.
// Messages name the ref, slot and digest concerned.
class RefStore {
 public:
  // `db` is not owned and must outlive the RefStore; it is normally the
  // Store's (Store::mutable_metadata()). At most one RefStore per database:
  // the per-ref locks live in it. Errors: InvalidArgument if db is null.
  static absl::StatusOr<std::unique_ptr<RefStore>> Create(MetadataDb* db);

  RefStore(const RefStore&) = delete;
  RefStore& operator=(const RefStore&) = delete;
  ~RefStore();

  // --- Updates. Each is atomic and durable (synced) when it returns OK. ---

  // Sets `slot` of `branch` to the artefact `digest`, creating the branch if
  // absent (generation continues after a deleted branch's last). With
  // if_generation, only if the ref's generation equals it (0 = the branch
  // must not exist). Setting the digest the slot already holds changes
  // nothing (RefUpdate::changed false; if_generation is still checked).
  // Errors: NotFound if digest is not an artefact in the store;
  // FailedPrecondition if a release has this name (releases are immutable)
  // or the artefact's index is still being built (index_state INDEXING);
  // Aborted if if_generation does not match (the ref moved: re-read, retry);
  // ResourceExhausted if the branch already has kMaxSlotsPerRef slots.
  absl::StatusOr<RefUpdate> SetSlot(
      const RefName& branch, absl::string_view slot, const Digest& digest,
      absl::string_view actor,
      std::optional<uint64_t> if_generation = std::nullopt);

  // Creates the release with exactly these slots (1..kMaxSlotsPerRef), all
  // at once. Errors: InvalidArgument if slots is empty or too large;
  // NotFound naming the first digest (and its slot) that is not an artefact
  // in the store; AlreadyExists if a release with this name exists
  // (releases are immutable: never overwritten, even with identical slots);
  // FailedPrecondition if an artefact's index is still being built or a
  // branch has the name.
  absl::StatusOr<RefUpdate> CreateRelease(const RefName& release,
                                          const SlotDigests& slots,
                                          absl::string_view actor);

  // Creates `release` from exactly the digests `branch` holds, provided
  // they are `expected`: every expected slot must hold the expected digest
  // and the branch must have no slot that `expected` does not name. The
  // release records the branch and its generation; no bytes are copied.
  // The branch may be of another package. Errors: InvalidArgument if
  // expected is empty or branch == release; NotFound if the branch does not
  // exist; Aborted (a lost compare-and-swap: re-read the branch), changing
  // nothing, if a slot differs from `expected` (naming the slot, both
  // digests and the branch's generation) or the branch has an unexpected
  // slot (naming it); FailedPrecondition if `branch` is a release;
  // AlreadyExists or FailedPrecondition for `release` as CreateRelease.
  absl::StatusOr<RefUpdate> Promote(const RefName& branch,
                                    const RefName& release,
                                    const SlotDigests& expected,
                                    absl::string_view actor);

  // Marks the release yanked with `reason` (may be empty; at most
  // kMaxYankReasonBytes, no control characters): it no longer resolves by
  // name unless allow_yanked; Get, List and History still show it and its
  // artefacts stay readable by digest. Yanking a yanked release changes
  // nothing (the first reason stays; the arguments are still checked).
  // Errors: InvalidArgument (name, actor, reason); NotFound;
  // FailedPrecondition if `release` is a branch (delete it instead).
  absl::StatusOr<RefUpdate> Yank(const RefName& release,
                                 absl::string_view reason,
                                 absl::string_view actor);

  // Deletes the branch; its history stays and records the deletion (every
  // slot to none), so re-creating it continues the generations. With
  // if_generation, only if the branch is at that generation. Returns the
  // history entry. Errors: NotFound; FailedPrecondition if `branch` is a
  // release (releases are never deleted; yank it instead); Aborted if
  // if_generation does not match.
  absl::StatusOr<RefHistoryEntry> DeleteBranch(
      const RefName& branch, absl::string_view actor,
      std::optional<uint64_t> if_generation = std::nullopt);

  // --- Reads: one consistent snapshot of one ref each, no lock. ---

  // The ref's state, yanked or not. One point lookup. Errors: NotFound.
  absl::StatusOr<RefInfo> Get(const RefName& ref) const;

  // The digest `ref` gives for `slot`: that slot if the ref has it, else its
  // noarch slot. One point lookup (bloom-filtered), whatever the number of
  // refs. `slot` is required: pass HostSlot() for this machine; a server
  // passes its client's slot. Errors: NotFound if the ref does not exist or
  // has neither `slot` nor noarch (naming both and listing its slots);
  // FailedPrecondition if the ref is a yanked release and !allow_yanked
  // (with the reason).
  absl::StatusOr<Resolved> Resolve(const RefName& ref, absl::string_view slot,
                                   bool allow_yanked = false) const;

  // One page of refs matching `options`, yanked ones included. Cost:
  // proportional to the refs scanned, which with a kind filter includes
  // those of the other kind.
  absl::StatusOr<ListRefsPage> List(const ListRefsOptions& options) const;

  // One page of the ref's history, oldest first. Works for a deleted branch.
  // Errors: NotFound if the name has no history at all.
  absl::StatusOr<RefHistoryPage> History(
      const RefName& ref, const RefHistoryOptions& options = {}) const;

  // --- Change notification (the FUSE mount invalidates cached ref entries
  // with it). ---

  // Called with a ref's name after each committed change of that ref: a
  // SetSlot that changed a slot, CreateRelease, Promote (the release), a
  // first Yank, DeleteBranch. It runs on the updating thread once the
  // change is durable and before the update method returns, with the ref's
  // update lock held, so changes of one ref are notified in commit order.
  // A listener must be quick and must not update refs (that would deadlock
  // on the ref's lock); reading refs is fine. While it runs, updates of
  // refs sharing its lock stripe and Add/RemoveChangeListener wait (the FUSE
  // mount's listener may wait in the kernel for a directory lock held by a
  // lookup the mount is answering: usually microseconds).
  using ChangeListener = std::function<void(const RefName& ref)>;

  // Registers `listener`; returns the id RemoveChangeListener takes.
  // Thread-safe.
  uint64_t AddChangeListener(ChangeListener listener);

  // Unregisters listener `id` (unknown ids are ignored). Once this returns,
  // that listener is not running and is never called again. Must not be
  // called from a listener. Thread-safe.
  void RemoveChangeListener(uint64_t id);

 private:
  static constexpr size_t kLockStripes = 256;

  explicit RefStore(MetadataDb* db);

  // The lock serialising updates of the ref with this key. Two refs may
  // share a stripe; that only serialises them.
  absl::Mutex& LockFor(absl::string_view key);

  // Looks up each digest's ArtefactRecord (artefacts are never removed, so
  // this needs no lock). Errors: NotFound naming the digest and slot.
  absl::StatusOr<std::map<std::string, RefSlot>> LookUpArtefacts(
      const RefName& ref, const SlotDigests& slots) const;

  // The ref's record, or nullopt if it does not exist.
  absl::StatusOr<std::optional<store::RefRecord>> ReadRecord(
      const std::string& key) const;

  // Writes a new release (CreateRelease, Promote). `mu` is
  // LockFor(release).
  absl::StatusOr<RefUpdate> WriteReleaseLocked(
      absl::Mutex* mu, const RefName& release,
      const std::map<std::string, RefSlot>& slots, absl::string_view actor,
      RefAction action, const RefInfo* source)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // Commits the record (or deletes it when null) and its history entry in
  // one synced batch, then notifies the change listeners of `ref`. `mu` is
  // LockFor(key); key is ref.ToString().
  absl::Status CommitLocked(absl::Mutex* mu, const RefName& ref,
                            const std::string& key,
                            const store::RefRecord* record,
                            const store::RefHistoryRecord& history)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  // CommitLocked of a changed record, then the RefUpdate describing it.
  absl::StatusOr<RefUpdate> CommitUpdateLocked(
      absl::Mutex* mu, const RefName& ref, const std::string& key,
      const store::RefRecord& record, const store::RefHistoryRecord& history)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu);

  MetadataDb* const db_;
  // Serialise read-modify-write of refs (LockFor). They guard database
  // keys, not members, so no member is ABSL_GUARDED_BY them; the *Locked
  // helpers take the held stripe and are annotated instead.
  absl::Mutex locks_[kLockStripes];

  // Held shared while listeners run, exclusively to change the set.
  absl::Mutex listeners_mu_;
  uint64_t next_listener_id_ ABSL_GUARDED_BY(listeners_mu_) = 1;
  std::map<uint64_t, ChangeListener> listeners_ ABSL_GUARDED_BY(listeners_mu_);
};

}  // namespace cairn

#endif  // CAIRN_STORE_REFS_H_
