// Copyright 2026 The Cairn Authors.

#define FUSE_USE_VERSION 34
#include "fuse/cairn_fs.h"

#include <errno.h>
#include <fcntl.h>
#include <fuse3/fuse_lowlevel.h>
#include <poll.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/statvfs.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/clock.h"
#include "fuse/errno.h"
#include "fuse/passthrough.h"
#include "fuse/workers.h"
#include "proto/store_records.pb.h"
#include "spdlog/spdlog.h"
#include "store/digest.h"
#include "store/ref_name.h"
#include "store/unique_fd.h"

namespace cairn {
namespace {

// Immutable content (artefact trees, by-digest): cached "forever".
constexpr double kImmutableTimeout = 86400.0;
// Entries of ref symlinks and namespace directories: cached for a second,
// and invalidated as soon as the ref changes (RefStore change listener ->
// fuse_lowlevel_notify_inval_entry; a deleted ref's namespaces too), so a
// path walk sees a moved ref at once while repeated walks through the same
// ref (an exec, a build reading many files) cost no request. The timeout
// only bounds how long a missed invalidation could last. The listings of
// "/", namespaces and /by-digest are cached by the kernel and invalidated
// when they change (InvalidateRef, InvalidateByDigest).
constexpr double kRefTimeout = 1.0;
constexpr size_t kMaxIo = 1 << 20;  // 1 MiB reads and readahead requests.
// Readahead window of the mount's BDI, in READs of max_read bytes. The
// kernel caps a FUSE mount's readahead at its BDI's read_ahead_kb (default
// 128 KiB), whatever INIT asked: 4 READs (4 MiB with 1 MiB READs) keep
// several in flight on a sequential read, and a whole number of them
// splits each window into full READs.
constexpr int kReadaheadReads = 4;
// CairnFsOptions::passthrough: smaller files are opened without it. A
// passthrough open costs ~50 us more on this project's bench machine
// (opening the blob, registering it, the kernel's own backing open and
// their release), which a warm read through the FUSE page cache
// (7.5 GB/s) instead of the blob's (18 GB/s) only loses from ~600 KiB on
// (docs/fuse.md, "Passthrough").
constexpr uint64_t kPassthroughMinBytes = 1 << 20;
constexpr fuse_ino_t kByDigestIno = 2;
constexpr char kByDigest[] = "by-digest";
// Extended attributes (docs/fuse.md, "Extended attributes"). Regular files
// and directories carry user.cairn.*. Linux refuses user.* attributes on
// anything else (ENODATA, without asking the file system), so symlinks carry
// theirs in Cairn's own namespace cairn.*, as CephFS does with ceph.*.
constexpr absl::string_view kUserXattrPrefix = "user.cairn.";
constexpr absl::string_view kLinkXattrPrefix = "cairn.";

enum class Kind {
  kRoot,       // "/": refs and namespace directories, plus by-digest.
  kNamespace,  // "/team/": refs whose package starts with `prefix`.
  kByDigest,   // "/by-digest".
  kRefLink,    // "/tool@main": symlink to the ref's artefact.
  kArtefact,   // "/by-digest/sha256:<hex>": an artefact's root directory.
  kEntry,      // An entry of an artefact's tree.
};

struct Node {
  Kind kind = Kind::kRoot;
  // kNamespace: the ref prefix ("team/"); kRefLink: the ref text.
  std::string name;
  int depth = 0;  // Directories between "/" and this node (namespaces).
  // kArtefact, kEntry; kRefLink: the artefact it was resolved to (when
  // pinned).
  Digest artefact;
  // kRefLink only. A ref symlink handed out by LOOKUP is pinned: one inode
  // per (ref, generation), holding that resolution, so its target never
  // changes and the kernel may cache it (a moved ref gets a new inode at
  // the next LOOKUP). The listing of "/" names unpinned ones, which
  // resolve at every access.
  bool pinned = false;
  std::string slot_used;
  uint64_t generation = 0;
  std::string path;          // kEntry: the entry's path in its artefact.
  store::FileRecord record;  // kEntry (hardlinks: their target's record).
};

// One entry of a directory listing.
struct DirEntry {
  std::string name;
  fuse_ino_t ino;
  mode_t type;
  // Set for immutable nodes only (by-digest and artefact trees): READDIRPLUS
  // returns their attributes. Null for ".", ".." and the ref levels (refs
  // resolve when looked up, so they are looked up one by one).
  std::shared_ptr<const Node> node;
};
// A directory's listing, in READDIR offset order (entry i has offset i+1).
using Listing = std::vector<DirEntry>;

}  // namespace

struct CairnFs::State {
  Store* store = nullptr;
  RefStore* refs = nullptr;
  std::string mountpoint;
  std::string slot;
  CairnFsOptions options;
  fuse_session* session = nullptr;
  // The session loop: one thread reads every request and answers all but
  // READ and first verifications itself, which `workers` serve. One thread
  // handles consecutive requests on a warm cache and CPU; libfuse's
  // multithreaded loop wakes its idle threads in turn, which doubled the
  // round trip of an OPEN on the bench machine (26 -> 55 us).
  std::thread loop;
  std::unique_ptr<Workers> workers;
  bool mounted = false;  // Touched only by Mount/Unmount (one thread).
  // Set by Unmount once the connection is aborted: READs and passthrough
  // opens still queued then fail with EIO at once instead of hashing a blob
  // for a connection that is gone. (Not after a lazy unmount, under which
  // the mount keeps serving the processes still using it.)
  std::atomic<bool> exiting{false};
  // The connection's number in /sys/fs/fuse/connections (the mount's minor
  // device number); 0 if unknown.
  unsigned conn_id = 0;
  dev_t dev = 0;  // The mount's st_dev; 0 if unknown.
  // Its ID in /proc/self/mountinfo; 0 if unknown. With `dev` and a FUSE
  // type, what tells this mount from one that took the path later.
  int mount_id = 0;
  // The mount point after realpath(3), as /proc/self/mountinfo shows it.
  std::string canonical_mountpoint;
  // Set by the loop thread when fuse_session_loop returned: the connection
  // ended (aborted, or unmounted from outside) or Unmount stopped it.
  std::atomic<bool> loop_ended{false};
  std::atomic<bool> unmounting{false};  // Unmount began.
  // Unmount could not end the connection (another file system covers the
  // mount point and fusectl is not mounted): the loop and workers keep the
  // State, which ~CairnFs then leaks.
  bool abandoned = false;

  mutable absl::Mutex mu;
  // Inodes (docs/fuse.md, "Inodes"). Root is 1, /by-digest 2. Every
  // artefact the mount meets gets a block of 2^32 inode numbers for the
  // daemon's life: (block << 32) is its root directory and
  // (block << 32) + entry_id its entries (entry ids are 1-based; hardlinks
  // carry their target's), so an entry has the same number every time it
  // is looked up. Ref-level nodes (namespaces, ref symlinks) take a block
  // each, found by key ("n:<prefix>", "r:<ref>", "p:<ref>\n<generation>").
  // A node is kept while the kernel may name it: `lookups` counts what the
  // kernel counts (one per LOOKUP reply and per READDIRPLUS entry with
  // attributes), FORGET gives them back, and at zero the node of an
  // artefact, an entry or a pinned ref symlink is dropped (the others are
  // few: one per namespace and ref name listed).
  struct Slot {
    std::shared_ptr<const Node> node;
    uint64_t lookups = 0;
    std::string key;  // In by_key; empty for artefacts and entries.
  };
  uint64_t next_block ABSL_GUARDED_BY(mu) = 1;
  // What stat and listings show (st_ino, d_ino) is not the node id above
  // but a number below 2^32, so 32-bit programs built without large-file
  // support do not fail with EOVERFLOW: each block gets a range of
  // `count + 1` numbers from `next_st_ino` (an artefact: its root and
  // entry ids 1..file_count; other blocks: 1), in the order blocks are
  // made, and st_ino = base + (ino & 0xffffffff). Blocks made once the
  // 32-bit space is used up, or whose entry count is unknown, show their
  // node ids.
  struct StRange {
    uint32_t base;
    uint32_t count;
  };
  uint64_t next_st_ino ABSL_GUARDED_BY(mu) = 3;  // After root and by-digest.
  absl::flat_hash_map<uint64_t, StRange> st_ranges ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<fuse_ino_t, Slot> nodes ABSL_GUARDED_BY(mu);
  absl::flat_hash_map<std::string, fuse_ino_t> by_key ABSL_GUARDED_BY(mu);
  // Artefacts known to be served, and their blocks. An artefact is only
  // given one once its index is committed (ServedArtefact), and index states
  // only move forward, so this also spares ServedArtefact a database read.
  absl::flat_hash_map<Digest, uint64_t> artefact_blocks ABSL_GUARDED_BY(mu);
  // Blob digests whose bytes were checked against their digest, with the
  // file that was hashed (st_dev, st_ino): a blob file replaced since (a
  // crash left wrong bytes, which a later upload renamed right bytes over:
  // BlobWriter::Commit) is hashed again when opened.
  absl::flat_hash_map<Digest, std::pair<dev_t, ino_t>> verified
      ABSL_GUARDED_BY(mu);
  // Blobs being hashed by a worker (EnsureVerified), with the READs and
  // opens of the same blob that came meanwhile: queued here rather than
  // holding workers of their own (or hashing it again), they run again once
  // the hash is done. Blobs are hashed once however many READs come.
  absl::flat_hash_map<Digest, std::vector<std::function<void()>>> verifying
      ABSL_GUARDED_BY(mu);
  // The kernel opens files and directories without asking (OpOpen and
  // OpOpendir reply ENOSYS).
  std::atomic<bool> no_open{false};
  std::atomic<bool> no_opendir{false};
  // CairnFsOptions::passthrough: the session's I/O hooks (IoRead, IoWritev)
  // feed it, OpOpen hands out backing ids. Null without the option.
  std::unique_ptr<FusePassthrough> passthrough;
  // The mount's max_read (MaxReadBytes).
  size_t max_read = kMaxIo;
  // Set when the kernel first refused a backing id (logged once).
  std::atomic<bool> passthrough_refused{false};
  // Listings being read by READDIR(PLUS), which come without a handle,
  // keyed by (directory, snapshot). A read starts at offset 0, which builds
  // the listing; the offsets it hands out name the listing's snapshot in
  // their high bits (ListingOffset), so the later chunks of that read
  // come from the same listing whatever other reads or changes happen
  // meanwhile. A directory that changes (ref levels, /by-digest) gets a new
  // snapshot number per read; an artefact directory, which never changes,
  // always 0 (its reads share one). A listing is dropped after its read's
  // last (empty) chunk; at most kMaxListings are kept (the oldest dropped:
  // an abandoned read), so a read that lost its listing rebuilds it, and
  // resumes after the last name it was handed (the offset carries a hash of
  // it), not at a position of the new listing.
  static constexpr size_t kMaxListings = 256;
  // Of which at most this many snapshots of one directory: reads abandoned
  // before their end (a `ls | head`, a scandir loop that stops early) must
  // not keep 256 copies of a large /by-digest.
  static constexpr size_t kMaxSnapshotsPerDir = 4;
  using ListingKey = std::pair<fuse_ino_t, uint32_t>;
  absl::Mutex listings_mu;
  absl::flat_hash_map<ListingKey, std::shared_ptr<const Listing>> listings
      ABSL_GUARDED_BY(listings_mu);
  std::deque<ListingKey> listing_order ABSL_GUARDED_BY(listings_mu);
  uint32_t next_snapshot ABSL_GUARDED_BY(listings_mu) = 1;
  // When refs (the listings of "/" and namespaces) and the servable
  // artefacts (/by-digest) last changed, in ns since the epoch: those
  // directories' mtime. The kernel drops a cached listing whose directory
  // mtime changed since it was cached, which closes the window in which a
  // listing built just before a change is cached just after the change's
  // invalidation (the invalidation also expires the attributes, so the
  // next access fetches the new mtime).
  std::atomic<int64_t> refs_mtime_ns{0};
  std::atomic<int64_t> artefacts_mtime_ns{0};
  // Blobs whose bytes did not match their digest: every READ of them
  // fails at once (EIO) instead of hashing the whole blob again. Cleared
  // only by a restart.
  absl::flat_hash_set<Digest> corrupt ABSL_GUARDED_BY(mu);
  // Verified blob files kept open for the READs of files bigger than one
  // READ (max_read): the kOpenBlobs most recently used, each shared by
  // the READs of its content (closed when evicted and no READ holds it).
  // One open file per blob keeps the kernel's readahead state of the blob
  // across READs, so a sequential read through the mount is also read
  // ahead on the blob's disk. Smaller files, read in one READ, open their
  // blob per READ and would only push the big ones out.
  static constexpr size_t kOpenBlobs = 64;
  absl::Mutex open_blobs_mu;
  absl::flat_hash_map<Digest, std::shared_ptr<const UniqueFd>> open_blobs
      ABSL_GUARDED_BY(open_blobs_mu);
  // Least recently used first.
  std::deque<Digest> open_blob_order ABSL_GUARDED_BY(open_blobs_mu);
  // RefStore change listener (RefStore::AddChangeListener) and Store
  // artefact listener (Store::AddArtefactListener).
  uint64_t ref_listener_id = 0;
  uint64_t artefact_listener_id = 0;

  // Counters for CairnFs::stats(); relaxed, never synchronise anything.
  std::atomic<uint64_t> lookups{0};
  std::atomic<uint64_t> readdirplus_entries{0};
  std::atomic<uint64_t> getxattrs{0};
  std::atomic<uint64_t> opendirs{0};
  std::atomic<uint64_t> readdirs{0};
  std::atomic<uint64_t> reads{0};
  std::atomic<uint64_t> passthrough_opens{0};
  std::atomic<uint64_t> verification_waits{0};
  std::atomic<uint64_t> large_reads{0};
  std::atomic<uint64_t> blob_opens{0};
  std::atomic<uint64_t> spliced_replies{0};
  const size_t page_size = static_cast<size_t>(sysconf(_SC_PAGESIZE));

  std::shared_ptr<const Node> Get(fuse_ino_t ino) const {
    absl::MutexLock lock(&mu);
    auto it = nodes.find(ino);
    return it == nodes.end() ? nullptr : it->second.node;
  }

  // The inode of `key`, 0 if it has none yet.
  fuse_ino_t Find(const std::string& key) const {
    absl::MutexLock lock(&mu);
    auto it = by_key.find(key);
    return it == by_key.end() ? 0 : it->second;
  }

  struct Interned {
    fuse_ino_t ino;
    std::shared_ptr<const Node> node;
  };
  // The inode of ref-level `key` and its node, creating it with `node` if
  // new.
  Interned Intern(const std::string& key, Node node) {
    absl::MutexLock lock(&mu);
    auto it = by_key.find(key);
    if (it != by_key.end()) return {it->second, nodes.at(it->second).node};
    const uint64_t block = next_block++;
    AssignStRange(block, 0);
    const fuse_ino_t ino = block << 32;
    by_key.emplace(key, ino);
    auto shared = std::make_shared<const Node>(std::move(node));
    nodes[ino] = Slot{shared, 0, key};
    return {ino, std::move(shared)};
  }

  // Unknown entry count (ArtefactIno): no 32-bit range.
  static constexpr uint64_t kUnknownCount = ~uint64_t{0};

  // The inode of artefact `d`'s root directory (giving it a block if new;
  // `file_count`: ArtefactRecord.file_count, its highest entry id).
  fuse_ino_t ArtefactIno(const Digest& d, uint64_t file_count) {
    absl::MutexLock lock(&mu);
    auto [it, inserted] = artefact_blocks.try_emplace(d, 0);
    if (inserted) {
      it->second = next_block++;
      if (file_count == kUnknownCount) {
        spdlog::warn(
            "fuse: artefact {} got inode block {} before its root "
            "was served: stat shows 64-bit inode numbers for it",
            d.ToString(), it->second);
      }
      AssignStRange(it->second, file_count);
    }
    return it->second << 32;
  }

  // What stat shows as the inode number of node id `ino` (StRange).
  uint64_t StIno(fuse_ino_t ino) const {
    const uint64_t block = ino >> 32;
    if (block == 0) return ino;  // Root, /by-digest.
    const uint64_t offset = ino & 0xffffffffu;
    absl::MutexLock lock(&mu);
    auto it = st_ranges.find(block);
    if (it == st_ranges.end() || offset > it->second.count) return ino;
    return uint64_t{it->second.base} + offset;
  }

  void AssignStRange(uint64_t block, uint64_t count)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    if (count > 0xffffffffu || next_st_ino + count > 0xffffffffu) return;
    st_ranges[block] = {static_cast<uint32_t>(next_st_ino),
                        static_cast<uint32_t>(count)};
    next_st_ino += count + 1;
  }

  // The inode of artefact `d`'s root if it is known to be served, else 0.
  fuse_ino_t KnownArtefactIno(const Digest& d) const {
    absl::MutexLock lock(&mu);
    auto it = artefact_blocks.find(d);
    return it == artefact_blocks.end() ? 0 : it->second << 32;
  }

  // The node of `ino`, made from `node` if the table has none.
  std::shared_ptr<const Node> Place(fuse_ino_t ino, Node node) {
    absl::MutexLock lock(&mu);
    Slot& slot = nodes[ino];
    if (slot.node == nullptr) {
      slot.node = std::make_shared<const Node>(std::move(node));
    }
    return slot.node;
  }

  // Counts one kernel lookup of each of `entries` (inode, node), which were
  // just handed to the kernel; a node dropped meanwhile is put back.
  void Remember(absl::Span<const Interned> entries) {
    absl::MutexLock lock(&mu);
    for (const Interned& e : entries) {
      Slot& slot = nodes[e.ino];
      if (slot.node == nullptr) slot.node = e.node;
      ++slot.lookups;
    }
  }

  // Drops `ino` if the kernel holds no lookup of it and it may go (the
  // node of an artefact, an entry or a pinned ref symlink).
  void DropIfUnused(fuse_ino_t ino) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu) {
    auto it = nodes.find(ino);
    if (it == nodes.end() || it->second.lookups != 0) return;
    const Node& n = *it->second.node;
    const bool droppable = n.kind == Kind::kArtefact ||
                           n.kind == Kind::kEntry ||
                           (n.kind == Kind::kRefLink && n.pinned);
    if (!droppable) return;
    if (!it->second.key.empty()) {
      by_key.erase(it->second.key);
      st_ranges.erase(ino >> 32);  // A ref symlink's block: never reused.
    }
    nodes.erase(it);
  }

  // FORGET: the kernel gives back `count` lookups of `ino`.
  void Forget(fuse_ino_t ino, uint64_t count) {
    absl::MutexLock lock(&mu);
    auto it = nodes.find(ino);
    if (it == nodes.end()) return;
    it->second.lookups -= std::min(count, it->second.lookups);
    DropIfUnused(ino);
  }

  // Undoes the creation of `ino` by a reply the kernel never got.
  void Unhanded(fuse_ino_t ino) {
    absl::MutexLock lock(&mu);
    DropIfUnused(ino);
  }
};

namespace {

using State = CairnFs::State;

State* StateOf(fuse_req_t req) {
  return static_cast<State*>(fuse_req_userdata(req));
}

// Nodes that never change: their entries, attributes and listings may be
// cached by the kernel for a day.
bool IsImmutable(const Node& n) {
  return n.kind == Kind::kArtefact || n.kind == Kind::kEntry ||
         n.kind == Kind::kByDigest;
}

// Directories whose listing never changes (artefact trees). /by-digest is
// not one: every push adds an entry.
bool HasImmutableListing(const Node& n) {
  return n.kind == Kind::kArtefact || n.kind == Kind::kEntry;
}

// Whether an artefact with this record is served. INDEXING (an upload
// acknowledged before its index is built: no file records yet) and any
// state this code does not know are treated as absent.
bool IsServable(const store::ArtefactRecord& a) {
  return a.index_state() == store::ArtefactRecord::COMMITTED ||
         a.index_state() == store::ArtefactRecord::DURABLE;
}

Node ArtefactNode(const Digest& d) {
  Node n;
  n.kind = Kind::kArtefact;
  n.artefact = d;
  return n;
}

// The inode and node of artefact `d` if it is served (the node put in the
// inode table with `place`: LOOKUP; only made otherwise); ino 0 and *err set
// otherwise (ENOENT for an unknown or INDEXING artefact). An artefact gets
// its inode block only here or from a listing of servable records, and an
// index state only moves forward (INDEXING -> COMMITTED -> DURABLE; only an
// INDEXING artefact is ever removed, when its archive is rejected:
// store.h), so an artefact that has a block is served and costs no
// database read: the state check is paid once per artefact and daemon life.
State::Interned ServedArtefact(State& s, const Digest& d, bool place,
                               int* err) {
  fuse_ino_t ino = s.KnownArtefactIno(d);
  if (ino == 0) {
    absl::StatusOr<store::ArtefactRecord> a =
        s.store->metadata().GetArtefact(d);
    if (!a.ok()) {
      *err = StatusToErrno(a.status());
      return {0, nullptr};
    }
    if (!IsServable(*a)) {
      *err = ENOENT;
      return {0, nullptr};
    }
    ino = s.ArtefactIno(d, a->file_count());
  }
  if (!place) return {ino, nullptr};
  return {ino, s.Place(ino, ArtefactNode(d))};
}

// Resolves ref `text` for the mount's slot (noarch fallback) to a served
// artefact. Returns 0 or an errno: ENOENT for a name that is no ref, a
// missing ref or slot, a yanked release, or an artefact still INDEXING.
int ResolveRef(State& s, const std::string& text, Resolved* out) {
  absl::StatusOr<RefName> ref = RefName::Parse(text);
  if (!ref.ok()) return ENOENT;  // No such entry, whatever the name.
  absl::StatusOr<Resolved> r = s.refs->Resolve(*ref, s.slot);
  if (!r.ok()) return StatusToErrno(r.status());
  int err = 0;
  if (ServedArtefact(s, r->digest, /*place=*/false, &err).ino == 0) {
    return err;
  }
  *out = *std::move(r);
  return 0;
}

// The target of ref symlink `n` resolved to `r`.
std::string RefLinkTargetOf(const Node& n, const Resolved& r) {
  std::string target;
  for (int i = 0; i < n.depth; ++i) target += "../";
  return absl::StrCat(target, kByDigest, "/", r.digest.ToString());
}

// The resolution of ref symlink `n`: its pinned one, or the ref's current
// one. Returns 0 or an errno.
int ResolutionOf(State& s, const Node& n, Resolved* out) {
  if (!n.pinned) return ResolveRef(s, n.name, out);
  out->digest = n.artefact;
  out->slot_used = n.slot_used;
  out->generation = n.generation;
  return 0;
}

std::string RefLinkTarget(State& s, const Node& n, int* err) {
  Resolved r;
  if (*err = ResolutionOf(s, n, &r); *err != 0) return "";
  return RefLinkTargetOf(n, r);
}

// Fills `st` for `n`. Returns 0 or an errno (an unpinned ref symlink that
// does not resolve: ENOENT).
int Attr(State& s, fuse_ino_t ino, const Node& n, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = s.StIno(ino);
  st->st_nlink = 1;
  st->st_blksize = 4096;
  switch (n.kind) {
    case Kind::kRoot:
    case Kind::kNamespace:
    case Kind::kByDigest: {
      const int64_t ns = n.kind == Kind::kByDigest ? s.artefacts_mtime_ns.load()
                                                   : s.refs_mtime_ns.load();
      st->st_mtim.tv_sec = ns / 1000000000;
      st->st_mtim.tv_nsec = ns % 1000000000;
      st->st_ctim = st->st_mtim;
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 2;
      return 0;
    }
    case Kind::kArtefact:
      st->st_mode = S_IFDIR | 0555;
      st->st_nlink = 2;
      return 0;
    case Kind::kRefLink: {
      int err = 0;
      const std::string target = RefLinkTarget(s, n, &err);
      if (err != 0) return err;
      st->st_mode = S_IFLNK | 0777;
      st->st_size = target.size();
      return 0;
    }
    case Kind::kEntry:
      break;
  }
  const uint32_t perm = n.record.mode() & 0777;  // Never setuid/setgid.
  switch (n.record.type()) {
    case store::FileRecord::DIRECTORY:
      st->st_mode = S_IFDIR | perm;
      st->st_nlink = 2;
      break;
    case store::FileRecord::SYMLINK:
      st->st_mode = S_IFLNK | 0777;
      st->st_size = n.record.link_target().size();
      break;
    default:  // REGULAR; HARDLINK nodes carry their target's record.
      st->st_mode = S_IFREG | perm;
      st->st_size = n.record.size();
      // 0 in indexes older than the field.
      st->st_nlink = std::max<uint32_t>(1, n.record.nlink());
      break;
  }
  st->st_blocks = (st->st_size + 511) / 512;
  return 0;
}

mode_t TypeOf(const store::FileRecord& r) {
  switch (r.type()) {
    case store::FileRecord::DIRECTORY:
      return S_IFDIR;
    case store::FileRecord::SYMLINK:
      return S_IFLNK;
    default:
      return S_IFREG;
  }
}

// The inode and node of entry `path` of `artefact` with record `rec`,
// following a hardlink to its target's record; with `place`, the node is
// put in the inode table (LOOKUP), else only made (listings: READDIRPLUS
// puts the entries it hands out). Returns ino 0 and sets *err on failure.
State::Interned EntryOf(State& s, const Digest& artefact,
                        const std::string& path, store::FileRecord rec,
                        bool place, int* err) {
  if (rec.type() == store::FileRecord::HARDLINK) {
    absl::StatusOr<store::FileRecord> target =
        s.store->metadata().GetFile(artefact, rec.link_target());
    if (!target.ok()) {
      *err = StatusToErrno(target.status());
      return {0, nullptr};
    }
    // The target's entry_id is the hardlink's: the same inode.
    rec = *std::move(target);
  }
  const uint64_t id = rec.entry_id();
  if (id == 0 || id > 0xffffffffu) {
    spdlog::error("fuse: {} of artefact {} has entry id {}, outside 1..2^32-1",
                  path, artefact.ToString(), id);
    *err = EIO;
    return {0, nullptr};
  }
  // The artefact has its block: its root was served first (else its
  // entries show their node ids, ArtefactIno logs why).
  const fuse_ino_t ino = s.ArtefactIno(artefact, State::kUnknownCount) + id;
  Node n;
  n.kind = Kind::kEntry;
  n.artefact = artefact;
  n.path = path;
  n.record = std::move(rec);
  if (place) return {ino, s.Place(ino, std::move(n))};
  return {ino, std::make_shared<const Node>(std::move(n))};
}

// The unpinned inode of ref `ref` (listings of "/" and namespaces).
fuse_ino_t InternRef(State& s, const std::string& ref, int depth) {
  Node n;
  n.kind = Kind::kRefLink;
  n.name = ref;
  n.depth = depth;
  return s.Intern("r:" + ref, std::move(n)).ino;
}

// The pinned inode of ref `ref` resolved to `r` (LOOKUP).
State::Interned InternPinnedRef(State& s, const std::string& ref, int depth,
                                const Resolved& r) {
  Node n;
  n.kind = Kind::kRefLink;
  n.name = ref;
  n.depth = depth;
  n.pinned = true;
  n.artefact = r.digest;
  n.slot_used = r.slot_used;
  n.generation = r.generation;
  // The generation changes with every change of the ref.
  return s.Intern(absl::StrCat("p:", ref, "\n", r.generation), std::move(n));
}

State::Interned InternNamespace(State& s, const std::string& prefix,
                                int depth) {
  Node n;
  n.kind = Kind::kNamespace;
  n.name = prefix;
  n.depth = depth;
  return s.Intern("n:" + prefix, std::move(n));
}

// Children of "/" or a namespace: refs under `prefix`, one level. Fills
// `refs` (name -> full ref text) and `dirs` (namespace names).
absl::Status ListRefLevel(const State& s, const std::string& prefix,
                          std::map<std::string, std::string>* refs,
                          std::set<std::string>* dirs) {
  ListRefsOptions options;
  options.prefix = prefix;
  for (;;) {
    absl::StatusOr<ListRefsPage> page = s.refs->List(options);
    if (!page.ok()) return page.status();
    for (const RefInfo& info : page->refs) {
      const std::string text = info.ref.ToString();
      const absl::string_view rest =
          absl::string_view(text).substr(prefix.size());
      const size_t at = rest.find('@');
      const size_t slash = rest.find('/');
      if (slash != absl::string_view::npos && slash < at) {
        dirs->insert(std::string(rest.substr(0, slash)));
      } else {
        refs->emplace(std::string(rest), text);
      }
    }
    if (page->next_start_after.empty()) return absl::OkStatus();
    options.start_after = page->next_start_after;
  }
}

// How long the kernel may keep the attributes of `n`. "/" and namespace
// directories never change theirs (only their entries, the refs, do, and
// those are invalidated): caching them spares a GETATTR of "/" per path
// walk from the mount root.
double AttrTimeout(const Node& n) {
  return n.kind == Kind::kRefLink ? kRefTimeout : kImmutableTimeout;
}

// Fills `e` (ino, attributes, timeouts) for a LOOKUP or READDIRPLUS reply.
// Returns 0 or an errno.
int FillEntry(State& s, fuse_ino_t ino, const Node& n, fuse_entry_param* e) {
  std::memset(e, 0, sizeof(*e));
  if (int err = Attr(s, ino, n, &e->attr); err != 0) return err;
  e->ino = ino;
  // Entries naming refs or namespaces (which exist while a ref lives under
  // them) briefly, and invalidated (kRefTimeout).
  e->entry_timeout = IsImmutable(n) ? kImmutableTimeout : kRefTimeout;
  e->attr_timeout = AttrTimeout(n);
  return 0;
}

// Replies to a LOOKUP with `entry`, counting the kernel's lookup of it.
void ReplyEntry(fuse_req_t req, State& s, const State::Interned& entry) {
  fuse_entry_param e;
  if (int err = FillEntry(s, entry.ino, *entry.node, &e); err != 0) {
    fuse_reply_err(req, err);
    s.Unhanded(entry.ino);
    return;
  }
  if (fuse_reply_entry(req, &e) == 0) {
    s.Remember({&entry, 1});
  } else {
    s.Unhanded(entry.ino);  // Interrupted: the kernel never got it.
  }
}

// ---- Operations ----

void OpInit(void* userdata, fuse_conn_info* conn) {
  State& s = *static_cast<State*>(userdata);
  conn->max_readahead = kMaxIo;
  conn->max_read = s.max_read;  // As the max_read mount option.
  conn->max_write = kMaxIo;     // Raises the kernel's max_pages, hence reads.
  // READDIRPLUS for every listing, not the kernel's adaptive choice: a tree
  // walk that stats what it lists (find -printf, ls -l, du, tar, rsync)
  // then needs no LOOKUP per entry of an artefact tree.
  if ((conn->capable & FUSE_CAP_READDIRPLUS) != 0) {
    conn->want |= FUSE_CAP_READDIRPLUS;
    conn->want &= ~FUSE_CAP_READDIRPLUS_AUTO;
  }
  // READ replies splice the blob's bytes from its fd into /dev/fuse
  // (fuse_reply_data in OpRead) instead of pread into a buffer + writev.
  // Not SPLICE_MOVE: moving would hand the blob file's page-cache pages
  // over to this mount instead of copying them in the kernel.
  if ((conn->capable & FUSE_CAP_SPLICE_WRITE) != 0) {
    conn->want |= FUSE_CAP_SPLICE_WRITE;
  }
  // auto_inval_data (libfuse's default, kept): at the start of every
  // listing read the kernel brings the directory's mtime up to date (no
  // request while its attributes are cached) and drops a cached listing
  // older than it. That closes the window in which a listing of "/" or a
  // namespace built just before a ref change reaches the kernel's cache
  // just after that change invalidated it (State::refs_mtime_ns). File
  // content never changes, so the same check at every read of a cached
  // file (attributes cached for a day: no request) never drops its pages.
  if ((conn->capable & FUSE_CAP_AUTO_INVAL_DATA) != 0) {
    conn->want |= FUSE_CAP_AUTO_INVAL_DATA;
  }
  // Every symlink target is immutable (ref symlinks are pinned: a moved
  // ref is a new inode), so the kernel may keep it in its page cache.
  if ((conn->capable & FUSE_CAP_CACHE_SYMLINKS) != 0) {
    conn->want |= FUSE_CAP_CACHE_SYMLINKS;
  }
  // Zero-message opens: OpOpen answers ENOSYS and the kernel then opens
  // files itself, with FOPEN_KEEP_CACHE and no RELEASE (no fh: OpRead
  // opens the blob). A warm open + read + close then costs no request.
  // Not with passthrough, which hands each open its backing file.
  const bool passthrough = s.passthrough != nullptr && s.passthrough->active();
  if ((conn->capable & FUSE_CAP_NO_OPEN_SUPPORT) != 0 && !passthrough) {
    s.no_open.store(true);
  }
  // The same for directories (OpOpendir): no OPENDIR or RELEASEDIR, and
  // every listing cached by the kernel until invalidated.
  if ((conn->capable & FUSE_CAP_NO_OPENDIR_SUPPORT) != 0) {
    s.no_opendir.store(true);
  }
}

void OpLookup(fuse_req_t req, fuse_ino_t parent, const char* name_c) {
  State& s = *StateOf(req);
  s.lookups.fetch_add(1, std::memory_order_relaxed);
  const std::string name(name_c);
  std::shared_ptr<const Node> p = s.Get(parent);
  if (p == nullptr) return (void)fuse_reply_err(req, ENOENT);
  switch (p->kind) {
    case Kind::kRoot:
    case Kind::kNamespace: {
      if (p->kind == Kind::kRoot && name == kByDigest) {
        return ReplyEntry(req, s, {kByDigestIno, s.Get(kByDigestIno)});
      }
      const std::string prefix = p->kind == Kind::kRoot ? "" : p->name;
      const std::string full = prefix + name;
      if (name.find('@') != std::string::npos) {
        Resolved r;
        if (int err = ResolveRef(s, full, &r); err != 0) {
          return (void)fuse_reply_err(req, err);
        }
        // One resolution per LOOKUP, pinned in the inode.
        const State::Interned ref = InternPinnedRef(s, full, p->depth, r);
        return ReplyEntry(req, s, ref);
      }
      // A namespace exists while some ref lives under it.
      ListRefsOptions options;
      options.prefix = full + "/";
      options.limit = 1;
      absl::StatusOr<ListRefsPage> page = s.refs->List(options);
      if (!page.ok())
        return (void)fuse_reply_err(req, StatusToErrno(page.status()));
      if (page->refs.empty()) return (void)fuse_reply_err(req, ENOENT);
      return ReplyEntry(req, s, InternNamespace(s, full + "/", p->depth + 1));
    }
    case Kind::kByDigest: {
      absl::StatusOr<Digest> d = Digest::Parse(name);
      if (!d.ok()) return (void)fuse_reply_err(req, ENOENT);
      int err = 0;
      const State::Interned a = ServedArtefact(s, *d, /*place=*/true, &err);
      if (a.ino == 0) return (void)fuse_reply_err(req, err);
      return ReplyEntry(req, s, a);
    }
    case Kind::kArtefact:
    case Kind::kEntry: {
      if (p->kind == Kind::kEntry &&
          p->record.type() != store::FileRecord::DIRECTORY) {
        return (void)fuse_reply_err(req, ENOTDIR);
      }
      const std::string path =
          p->kind == Kind::kArtefact ? name : absl::StrCat(p->path, "/", name);
      absl::StatusOr<store::FileRecord> rec =
          s.store->metadata().GetFile(p->artefact, path);
      if (!rec.ok()) {
        // Negative entries of immutable trees could be cached; keep it simple.
        return (void)fuse_reply_err(req, StatusToErrno(rec.status()));
      }
      int err = 0;
      const State::Interned child =
          EntryOf(s, p->artefact, path, *std::move(rec), /*place=*/true, &err);
      if (child.ino == 0) return (void)fuse_reply_err(req, err);
      return ReplyEntry(req, s, child);
    }
    case Kind::kRefLink:
      return (void)fuse_reply_err(req, ENOTDIR);
  }
  fuse_reply_err(req, ENOENT);
}

void OpGetattr(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)fi;
  State& s = *StateOf(req);
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return (void)fuse_reply_err(req, ENOENT);
  struct stat st;
  if (int err = Attr(s, ino, *n, &st); err != 0) {
    return (void)fuse_reply_err(req, err);
  }
  fuse_reply_attr(req, &st, AttrTimeout(*n));
}

void OpReadlink(fuse_req_t req, fuse_ino_t ino) {
  State& s = *StateOf(req);
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return (void)fuse_reply_err(req, ENOENT);
  if (n->kind == Kind::kRefLink) {
    int err = 0;
    const std::string target = RefLinkTarget(s, *n, &err);
    if (err != 0) return (void)fuse_reply_err(req, err);
    return (void)fuse_reply_readlink(req, target.c_str());
  }
  if (n->kind == Kind::kEntry &&
      n->record.type() == store::FileRecord::SYMLINK) {
    return (void)fuse_reply_readlink(req, n->record.link_target().c_str());
  }
  fuse_reply_err(req, EINVAL);
}

// Appends the children of artefact directory `n` to `out`, in bytewise
// name order. Returns 0 or an errno.
int ListArtefactDir(State& s, const Node& n, std::vector<DirEntry>* out) {
  const std::string dirpath = n.kind == Kind::kArtefact ? "" : n.path;
  std::vector<std::pair<std::string, store::FileRecord>> children;
  absl::Status st = s.store->metadata().ListDir(
      n.artefact, dirpath, "",
      [&](absl::string_view name, const store::FileRecord& r) {
        children.emplace_back(std::string(name), r);
        return true;
      });
  if (!st.ok()) return StatusToErrno(st);
  // ListDir is in bytewise name order already.
  out->reserve(out->size() + children.size());
  for (auto& [name, rec] : children) {
    const std::string path =
        dirpath.empty() ? name : absl::StrCat(dirpath, "/", name);
    int err = 0;
    State::Interned child =
        EntryOf(s, n.artefact, path, std::move(rec), /*place=*/false, &err);
    if (child.ino == 0) return err;
    const mode_t type = TypeOf(child.node->record);
    out->push_back({std::move(name), child.ino, type, std::move(child.node)});
  }
  return 0;
}

// Builds the listing of directory `ino` (node `n`) into `out`. Returns 0 or
// an errno.
int BuildListing(State& s, fuse_ino_t ino, const Node& n, Listing* out) {
  out->push_back({".", ino, S_IFDIR, nullptr});
  out->push_back({"..", ino, S_IFDIR, nullptr});  // The kernel fixes "..".
  switch (n.kind) {
    case Kind::kRoot:
    case Kind::kNamespace: {
      const std::string prefix = n.kind == Kind::kRoot ? "" : n.name;
      std::map<std::string, std::string> refs;
      std::set<std::string> dirs;
      if (absl::Status st = ListRefLevel(s, prefix, &refs, &dirs); !st.ok()) {
        return StatusToErrno(st);
      }
      std::map<std::string, DirEntry> sorted;
      if (n.kind == Kind::kRoot) {
        sorted[kByDigest] = {kByDigest, kByDigestIno, S_IFDIR, nullptr};
      }
      for (const std::string& d : dirs) {
        sorted[d] = {d, InternNamespace(s, prefix + d + "/", n.depth + 1).ino,
                     S_IFDIR, nullptr};
      }
      // Listed without resolving (as yanked releases are): a ref that does
      // not resolve is ENOENT when looked up.
      for (const auto& [name, full] : refs) {
        sorted[name] = {name, InternRef(s, full, n.depth), S_IFLNK, nullptr};
      }
      for (auto& [name, e] : sorted) out->push_back(std::move(e));
      return 0;
    }
    case Kind::kByDigest: {
      std::vector<std::pair<Digest, uint64_t>> digests;  // With file_count.
      absl::Status st = s.store->metadata().ListArtefacts(
          [&](const Digest& d, const store::ArtefactRecord& a) {
            if (IsServable(a)) digests.emplace_back(d, a.file_count());
            return true;
          });
      if (!st.ok()) return StatusToErrno(st);
      // Raw digest order is the order of their hex text.
      std::sort(digests.begin(), digests.end());
      for (const auto& [d, file_count] : digests) {
        out->push_back({d.ToString(), s.ArtefactIno(d, file_count), S_IFDIR,
                        std::make_shared<const Node>(ArtefactNode(d))});
      }
      return 0;
    }
    case Kind::kArtefact:
    case Kind::kEntry:
      if (n.kind == Kind::kEntry &&
          n.record.type() != store::FileRecord::DIRECTORY) {
        return ENOTDIR;
      }
      return ListArtefactDir(s, n, out);
    case Kind::kRefLink:
      return ENOTDIR;
  }
  return ENOENT;
}

// READDIR offsets (offset 0 starts a new read): snapshot (15 bits, so that
// offsets stay positive) << 48 | NameHash of the entry before `next_index` (24
// bits) << 24 | next_index (24 bits: listings hold at most max_entries,
// 1,000,000 by default, well under 2^24).
constexpr uint32_t kMaxSnapshot = 0x7fff;
constexpr uint64_t kIndexMask = (uint64_t{1} << 24) - 1;

// 24 bits of the FNV-1a hash of `name`.
uint32_t NameHash(absl::string_view name) {
  uint32_t h = 2166136261u;
  for (unsigned char c : name) h = (h ^ c) * 16777619u;
  return h & 0xffffff;
}

off_t ListingOffset(uint32_t snapshot, size_t next_index,
                    const Listing& listing) {
  const uint32_t hash =
      next_index == 0 ? 0 : NameHash(listing[next_index - 1].name);
  return static_cast<off_t>((static_cast<uint64_t>(snapshot) << 48) |
                            (static_cast<uint64_t>(hash) << 24) |
                            (next_index & kIndexMask));
}

// Where a read at `off` resumes in `listing` when that is not the listing
// the offset came from (its snapshot was dropped, and the directory may
// have changed since): after the entry nearest the offset's index whose
// name hashes as the offset says (the last entry the read was handed), or
// at the offset's index if there is none within 4096 entries (that entry
// is gone).
size_t ResumeIndex(const Listing& listing, off_t off) {
  const size_t index = static_cast<uint64_t>(off) & kIndexMask;
  const uint32_t hash = (static_cast<uint64_t>(off) >> 24) & 0xffffff;
  if (index == 0) return 0;
  const size_t last = index - 1;  // Its position in the old listing.
  // The listing may have shrunk below it: probe only real entries.
  const auto matches = [&](size_t i) {
    return i < listing.size() && NameHash(listing[i].name) == hash;
  };
  for (size_t d = 0; d <= 4096; ++d) {
    if (matches(last + d)) return last + d + 1;
    if (d > 0 && d <= last && matches(last - d)) return last - d + 1;
  }
  return std::min(index, listing.size());
}

// Whether `start`, an offset's index into `listing`, still follows the
// entry whose name hash the offset `off` carries. Not so when the
// snapshot number (15 bits) wrapped and another read's listing has it.
bool FollowsNamedEntry(const Listing& listing, size_t start, off_t off) {
  if (start == 0) return true;
  const uint32_t hash = (static_cast<uint64_t>(off) >> 24) & 0xffffff;
  return start <= listing.size() && NameHash(listing[start - 1].name) == hash;
}

// The listing a READDIR(PLUS) of `ino` at offset `off` reads from, its
// snapshot number in *snapshot, and the index to continue at in *start:
// built afresh at offset 0 (a new read of the directory), else the one that
// read started with, or, if that was dropped, one built anew (ResumeIndex).
// Null and *err set on failure.
std::shared_ptr<const Listing> ListingFor(State& s, fuse_ino_t ino, off_t off,
                                          uint32_t* snapshot, size_t* start,
                                          int* err) {
  *snapshot = static_cast<uint32_t>(static_cast<uint64_t>(off) >> 48);
  *start = static_cast<uint64_t>(off) & kIndexMask;
  if (off > 0) {
    absl::MutexLock lock(&s.listings_mu);
    auto it = s.listings.find(State::ListingKey{ino, *snapshot});
    if (it != s.listings.end()) {
      if (!FollowsNamedEntry(*it->second, *start, off)) {
        *start = ResumeIndex(*it->second, off);
      }
      return it->second;
    }
  }
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) {
    *err = ENOENT;
    return nullptr;
  }
  auto listing = std::make_shared<Listing>();
  if (*err = BuildListing(s, ino, *n, listing.get()); *err != 0) {
    return nullptr;
  }
  if (listing->size() > kIndexMask) {
    spdlog::error(
        "fuse: directory {} has {} entries, more than READDIR "
        "offsets can number ({})",
        n->path, listing->size(), kIndexMask);
    *err = EOVERFLOW;
    return nullptr;
  }
  if (off > 0) *start = ResumeIndex(*listing, off);
  absl::MutexLock lock(&s.listings_mu);
  if (off == 0) {
    if (HasImmutableListing(*n)) {
      *snapshot = 0;
    } else {
      *snapshot = s.next_snapshot;
      s.next_snapshot =
          s.next_snapshot == kMaxSnapshot ? 1 : s.next_snapshot + 1;
    }
  }
  const State::ListingKey key{ino, *snapshot};
  if (s.listings.insert_or_assign(key, listing).second) {
    // The oldest snapshot of this directory goes if it has too many.
    size_t of_dir = 0;
    for (const State::ListingKey& k : s.listing_order) of_dir += k.first == ino;
    if (of_dir >= State::kMaxSnapshotsPerDir) {
      auto oldest = std::find_if(
          s.listing_order.begin(), s.listing_order.end(),
          [ino](const State::ListingKey& k) { return k.first == ino; });
      s.listings.erase(*oldest);
      s.listing_order.erase(oldest);
    }
    s.listing_order.push_back(key);
  }
  while (s.listings.size() > State::kMaxListings && !s.listing_order.empty()) {
    s.listings.erase(s.listing_order.front());
    s.listing_order.pop_front();
  }
  return listing;
}

// Drops a listing once a read of it reached its end.
void DoneListing(State& s, fuse_ino_t ino, uint32_t snapshot) {
  absl::MutexLock lock(&s.listings_mu);
  const State::ListingKey key{ino, snapshot};
  if (s.listings.erase(key) == 0) return;
  auto it = std::find(s.listing_order.begin(), s.listing_order.end(), key);
  if (it != s.listing_order.end()) s.listing_order.erase(it);
}

// Directories need no handle: READDIR finds the listing from the inode. So
// OPENDIR is refused with ENOSYS where the kernel supports zero-message
// opendir: it then opens every directory without asking (and sends no
// RELEASEDIR), caching every listing (FOPEN_CACHE_DIR, FOPEN_KEEP_CACHE).
// The listings that change (/, namespaces, /by-digest) are invalidated when
// they do (InvalidateRef, InvalidateByDigest). Elsewhere OPENDIR succeeds
// with those flags for artefact trees only, and no handle.
void OpOpendir(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  State& s = *StateOf(req);
  s.opendirs.fetch_add(1, std::memory_order_relaxed);
  if (s.no_opendir.load(std::memory_order_relaxed)) {
    return (void)fuse_reply_err(req, ENOSYS);
  }
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return (void)fuse_reply_err(req, ENOENT);
  const bool cache = HasImmutableListing(*n);
  fi->fh = 0;
  fi->cache_readdir = cache ? 1 : 0;
  fi->keep_cache = cache ? 1 : 0;
  fuse_reply_open(req, fi);
}

// Both READDIR flavours: the entries of the listing from offset `off` that
// fit in `size` bytes; an empty reply at the end.
template <bool kPlus>
void ReplyListing(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off) {
  State& s = *StateOf(req);
  s.readdirs.fetch_add(1, std::memory_order_relaxed);
  int err = 0;
  uint32_t snapshot = 0;
  size_t start = 0;
  std::shared_ptr<const Listing> listing =
      ListingFor(s, ino, off, &snapshot, &start, &err);
  if (listing == nullptr) return (void)fuse_reply_err(req, err);
  std::vector<char> buf(size);
  size_t used = 0;
  std::vector<State::Interned> full_entries;  // READDIRPLUS: with attributes.
  for (size_t i = start; i < listing->size(); ++i) {
    const DirEntry& e = (*listing)[i];
    size_t n;
    if constexpr (kPlus) {
      // Immutable entries go with their attributes and timeouts: the kernel
      // instantiates them as a LOOKUP would, and counts one lookup of each
      // (Remember below), later returned by FORGET. Entries without a node
      // (".", "..", refs and namespaces) go without (ino 0): the kernel only
      // lists them, and counts no lookup.
      fuse_entry_param p;
      if (e.node == nullptr || FillEntry(s, e.ino, *e.node, &p) != 0) {
        std::memset(&p, 0, sizeof(p));
        p.attr.st_ino = s.StIno(e.ino);  // d_ino and d_type of the listing.
        p.attr.st_mode = e.type;
      }
      n = fuse_add_direntry_plus(req, buf.data() + used, size - used,
                                 e.name.c_str(), &p,
                                 ListingOffset(snapshot, i + 1, *listing));
      if (n <= size - used && p.ino != 0)
        full_entries.push_back({e.ino, e.node});
    } else {
      struct stat st;
      std::memset(&st, 0, sizeof(st));
      st.st_ino = s.StIno(e.ino);
      st.st_mode = e.type;
      n = fuse_add_direntry(req, buf.data() + used, size - used, e.name.c_str(),
                            &st, ListingOffset(snapshot, i + 1, *listing));
    }
    if (n > size - used) break;
    used += n;
  }
  if (used == 0) DoneListing(s, ino, snapshot);  // The end of this read.
  if (fuse_reply_buf(req, buf.data(), used) == 0 && !full_entries.empty()) {
    s.Remember(full_entries);
    s.readdirplus_entries.fetch_add(full_entries.size(),
                                    std::memory_order_relaxed);
  }
}

void OpReaddir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
               fuse_file_info* fi) {
  (void)fi;
  ReplyListing<false>(req, ino, size, off);
}

void OpReaddirplus(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
                   fuse_file_info* fi) {
  (void)fi;
  ReplyListing<true>(req, ino, size, off);
}

// Whether blob file `file` (st_dev, st_ino) of `digest` was verified.
bool IsVerified(State& s, const Digest& digest, std::pair<dev_t, ino_t> file)
    ABSL_EXCLUSIVE_LOCKS_REQUIRED(s.mu) {
  auto it = s.verified.find(digest);
  return it != s.verified.end() && it->second == file;
}

// The hash of EnsureVerified: 0 if `file` (the blob's identity) is
// verified meanwhile or hashes right, else EIO.
int Verify(State& s, const Node& n, const Digest& digest, int fd,
           std::pair<dev_t, ino_t> file) {
  {
    absl::MutexLock lock(&s.mu);
    if (IsVerified(s, digest, file)) return 0;
    if (s.corrupt.contains(digest)) return EIO;
  }
  if (s.exiting.load(std::memory_order_relaxed)) return EIO;
  if (s.options.testing_before_hash) s.options.testing_before_hash(digest);
  absl::StatusOr<FileDigest> hashed = Sha256OfFd(fd, &s.exiting);
  if (!hashed.ok()) {
    // Not the bytes' fault: the next read tries again.
    if (!absl::IsCancelled(hashed.status())) {
      spdlog::error(
          "fuse: {} of artefact {}: cannot read blob {}: {}; "
          "returning EIO",
          n.path, n.artefact.ToString(), digest.ToString(),
          hashed.status().ToString());
    }
    return EIO;
  }
  if (hashed->digest != digest) {
    spdlog::error(
        "fuse: {} of artefact {}: stored bytes do not match their digest "
        "{}; returning EIO (for every read of that content until restart)",
        n.path, n.artefact.ToString(), digest.ToString());
    absl::MutexLock lock(&s.mu);
    s.corrupt.insert(digest);
    return EIO;
  }
  absl::MutexLock lock(&s.mu);
  s.verified[digest] = file;
  return 0;
}

// EnsureVerified's answer when the caller's `retry` was queued behind
// another worker's hash of the same blob (the caller returns; `retry` runs
// on a worker once that hash is done).
constexpr int kDeferred = -1;

// Checks the blob `fd` of `n` against its digest unless some earlier read
// did in this daemon's life. Returns 0 or EIO (logged): for wrong bytes,
// remembered until restart; for a failed read of the blob, not; and
// without hashing (or with the hash cut short) once the mount is being
// unmounted. While another worker hashes the same blob, `retry` (if not
// null; moved from) is queued behind it and kDeferred returned, so that
// READs at other offsets of one large blob do not take every worker and
// stall the reads of every other file; with a null `retry` the caller
// hashes the blob too.
int EnsureVerified(State& s, const Node& n, const Digest& digest, int fd,
                   std::function<void()>* retry) {
  struct stat st;
  if (fstat(fd, &st) != 0) {
    spdlog::error("fuse: {} of artefact {}: fstat of blob {}: {}", n.path,
                  n.artefact.ToString(), digest.ToString(), strerror(errno));
    return EIO;
  }
  const std::pair<dev_t, ino_t> file{st.st_dev, st.st_ino};
  bool hashing = false;  // This call hashes, and then runs the waiters.
  {
    absl::MutexLock lock(&s.mu);
    if (IsVerified(s, digest, file)) return 0;
    if (s.corrupt.contains(digest)) return EIO;  // Logged when found.
    auto [it, inserted] = s.verifying.try_emplace(digest);
    if (!inserted && retry != nullptr) {
      it->second.push_back(std::move(*retry));
      s.verification_waits.fetch_add(1, std::memory_order_relaxed);
      return kDeferred;
    }
    hashing = inserted;
  }
  const int result = Verify(s, n, digest, fd, file);
  if (hashing) {
    std::vector<std::function<void()>> waiters;
    {
      absl::MutexLock lock(&s.mu);
      auto it = s.verifying.find(digest);
      waiters = std::move(it->second);
      s.verifying.erase(it);
    }
    // From a worker, so allowed even while Workers::Stop runs.
    for (std::function<void()>& w : waiters) s.workers->Run(std::move(w));
  }
  return result;
}

// The node and content digest of regular file `ino`. Returns 0 or an
// errno: ENOENT, EISDIR for a directory, EINVAL for a symlink, EIO for a
// malformed digest.
int FileOf(State& s, fuse_ino_t ino, std::shared_ptr<const Node>* node,
           Digest* digest) {
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return ENOENT;
  if (n->kind != Kind::kEntry ||
      n->record.type() == store::FileRecord::DIRECTORY) {
    return EISDIR;
  }
  if (n->record.type() == store::FileRecord::SYMLINK) return EINVAL;
  absl::StatusOr<Digest> d = Digest::FromRaw(n->record.content_digest());
  if (!d.ok()) return EIO;
  *node = std::move(n);
  *digest = *d;
  return 0;
}

// Opens blob `d` of file `n` and checks it against its digest unless that
// was done before in this daemon's life (EnsureVerified). Returns 0 and
// the open blob in *fd, or an errno: EIO for wrong or missing bytes; or
// kDeferred (`retry` queued, as EnsureVerified).
int OpenVerifiedBlob(State& s, const Node& n, const Digest& d, int* fd,
                     std::function<void()>* retry) {
  // The index is committed, so the file blob is in place even before the
  // flusher has written its record (Store::OpenIndexedFileFd).
  absl::StatusOr<int> blob = s.store->OpenIndexedFileFd(d);
  if (!blob.ok()) {
    spdlog::error("fuse: open {} of {}: {}", n.path, n.artefact.ToString(),
                  blob.status().ToString());
    // A blob missing under an indexed file is lost data, not a missing
    // file (stat shows it): EIO.
    return absl::IsNotFound(blob.status()) ? EIO : StatusToErrno(blob.status());
  }
  if (int err = EnsureVerified(s, n, d, *blob, retry); err != 0) {
    close(*blob);
    return err;
  }
  *fd = *blob;
  return 0;
}

// Whether OPEN of `ino` hands out a passthrough backing file: with
// CairnFsOptions::passthrough, negotiated at INIT, for regular files of at
// least kPassthroughMinBytes.
bool WantsPassthrough(State& s, fuse_ino_t ino) {
  if (s.passthrough == nullptr || !s.passthrough->active()) return false;
  std::shared_ptr<const Node> n = s.Get(ino);
  return n != nullptr && n->kind == Kind::kEntry &&
         n->record.size() >= kPassthroughMinBytes;
}

// Passthrough open of `ino` (WantsPassthrough): verifies its blob and puts
// the blob's backing id in fi->fh, which the writev hook turns into
// FOPEN_PASSTHROUGH. Returns 0 or an errno. When the kernel gives no
// backing id, the open keeps fh 0 and is read through OpRead: for that
// blob from then on after a transient shortage, for every new blob after a
// refusal (FusePassthrough::Acquire). Or kDeferred: `retry` queued behind
// another worker's hash of the blob (EnsureVerified).
int OpenPassthrough(State& s, fuse_ino_t ino, fuse_file_info* fi,
                    std::function<void()>* retry) {
  std::shared_ptr<const Node> n;
  Digest digest;
  if (int err = FileOf(s, ino, &n, &digest); err != 0) return err;
  int fd = -1;
  if (int err = OpenVerifiedBlob(s, *n, digest, &fd, retry); err != 0) {
    return err;
  }
  absl::StatusOr<uint32_t> id = s.passthrough->Acquire(digest, fd);
  close(fd);
  if (id.ok()) {
    fi->fh = *id;
    s.passthrough_opens.fetch_add(1, std::memory_order_relaxed);
  } else if (absl::IsFailedPrecondition(id.status())) {
    // Refused before, for this blob or for good: logged then.
  } else if (!s.passthrough->refused()) {
    spdlog::warn(
        "fuse: {}: no passthrough backing file for now ({}); that blob is "
        "served through cairnd in this mount",
        s.mountpoint, id.status().ToString());
  } else if (!s.passthrough_refused.exchange(true)) {
    spdlog::error(
        "fuse: {}: the kernel refused a passthrough backing file ({}); files "
        "not yet open are served through cairnd from now on",
        s.mountpoint, id.status().ToString());
  }
  return 0;
}

// OpOpen's passthrough open, on a worker.
void ServeOpen(State& s, fuse_req_t req, fuse_ino_t ino, fuse_file_info fi) {
  fuse_file_info copy = fi;
  std::function<void()> retry = [&s, req, ino, fi] {
    ServeOpen(s, req, ino, fi);
  };
  const int err = OpenPassthrough(s, ino, &copy, &retry);
  if (err == kDeferred) return;
  if (err != 0) return (void)fuse_reply_err(req, err);
  // Passthrough opens (fh: a backing id) have no FUSE page cache to
  // keep, and the kernel refuses them with any flag but NOFLUSH,
  // DIRECT_IO and PARALLEL_DIRECT_WRITES (FOPEN_PASSTHROUGH_MASK,
  // fs/fuse/iomode.c).
  copy.keep_cache = copy.fh == 0;
  fuse_reply_open(req, &copy);
}

// Files need no handle: READ finds the blob from the inode. So OPEN is
// refused with ENOSYS where the kernel supports zero-message opens (it then
// opens every file without asking, keeping its page cache, and sends no
// RELEASE), unless the mount uses passthrough; elsewhere it succeeds with
// keep_cache. Opening for writing never gets here: the mount is read-only,
// so the VFS returns EROFS.
void OpOpen(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  State& s = *StateOf(req);
  if (s.no_open.load(std::memory_order_relaxed)) {
    return (void)fuse_reply_err(req, ENOSYS);
  }
  if ((fi->flags & O_ACCMODE) != O_RDONLY || (fi->flags & O_TRUNC) != 0) {
    return (void)fuse_reply_err(req, EROFS);
  }
  fi->fh = 0;
  fi->noflush = 1;
  if (!WantsPassthrough(s, ino)) {
    fi->keep_cache = 1;
    return (void)fuse_reply_open(req, fi);
  }
  // Opens, maybe hashes, and registers the blob: on a worker.
  s.workers->Run([&s, req, ino, copy = *fi] { ServeOpen(s, req, ino, copy); });
}

// Only opens handed out by OpOpen are released: a passthrough one drops
// its reference to the blob's backing id.
void OpRelease(fuse_req_t req, fuse_ino_t ino, fuse_file_info* fi) {
  (void)ino;
  State& s = *StateOf(req);
  if (s.passthrough != nullptr && fi->fh != 0) {
    s.passthrough->Release(static_cast<uint32_t>(fi->fh));
  }
  fuse_reply_err(req, 0);
}

// The verified, open blob of file `ino` for a READ: for a file bigger than
// max_read from State::open_blobs (else opened, OpenVerifiedBlob, and added
// there), for a smaller one opened. Null and *err set (an errno) on
// failure, or kDeferred (`retry` queued, EnsureVerified).
std::shared_ptr<const UniqueFd> BlobForRead(State& s, fuse_ino_t ino, int* err,
                                            std::function<void()>* retry) {
  std::shared_ptr<const Node> n;
  Digest digest;
  if (*err = FileOf(s, ino, &n, &digest); *err != 0) return nullptr;
  const bool shared = n->record.size() > s.max_read;
  if (shared) {
    absl::MutexLock lock(&s.open_blobs_mu);
    auto it = s.open_blobs.find(digest);
    if (it != s.open_blobs.end()) {
      auto pos =
          std::find(s.open_blob_order.begin(), s.open_blob_order.end(), digest);
      s.open_blob_order.erase(pos);
      s.open_blob_order.push_back(digest);
      return it->second;
    }
  }
  int fd = -1;
  if (*err = OpenVerifiedBlob(s, *n, digest, &fd, retry); *err != 0) {
    return nullptr;
  }
  s.blob_opens.fetch_add(1, std::memory_order_relaxed);
  auto blob = std::make_shared<const UniqueFd>(fd);
  if (!shared) return blob;
  std::shared_ptr<const UniqueFd> evicted;  // Closed after the unlock.
  absl::MutexLock lock(&s.open_blobs_mu);
  auto [it, inserted] = s.open_blobs.try_emplace(digest, blob);
  if (!inserted) return it->second;  // Another READ opened it meanwhile.
  s.open_blob_order.push_back(digest);
  if (s.open_blob_order.size() > State::kOpenBlobs) {
    auto oldest = s.open_blobs.find(s.open_blob_order.front());
    evicted = std::move(oldest->second);
    s.open_blobs.erase(oldest);
    s.open_blob_order.pop_front();
  }
  return blob;
}

// Serves bytes of the file's blob (BlobForRead). The first READ of a blob
// in the daemon's life hashes all of it first (EnsureVerified): wrong
// bytes are never served.
void ServeRead(State& s, fuse_req_t req, fuse_ino_t ino, size_t size,
               off_t off) {
  // The connection is gone (Unmount): fail at once.
  if (s.exiting.load(std::memory_order_relaxed)) {
    return (void)fuse_reply_err(req, EIO);
  }
  int err = 0;
  std::function<void()> retry = [&s, req, ino, size, off] {
    ServeRead(s, req, ino, size, off);
  };
  std::shared_ptr<const UniqueFd> blob = BlobForRead(s, ino, &err, &retry);
  if (err == kDeferred) return;
  if (blob == nullptr) return (void)fuse_reply_err(req, err);
  const int fd = blob->get();
  if (size >= 2 * s.page_size) {
    s.large_reads.fetch_add(1, std::memory_order_relaxed);
  }
  fuse_bufvec buf = FUSE_BUFVEC_INIT(size);
  buf.buf[0].flags =
      static_cast<fuse_buf_flags>(FUSE_BUF_IS_FD | FUSE_BUF_FD_SEEK);
  buf.buf[0].fd = fd;
  buf.buf[0].pos = off;
  // Spliced when FUSE_CAP_SPLICE_WRITE was granted (OpInit), else copied;
  // either way done when this returns.
  fuse_reply_data(req, &buf, static_cast<fuse_buf_copy_flags>(0));
}

// READ does I/O (and a blob's first one hashes all of it): on a worker.
void OpRead(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off,
            fuse_file_info* fi) {
  (void)fi;
  State& s = *StateOf(req);
  s.reads.fetch_add(1, std::memory_order_relaxed);
  s.workers->Run(
      [&s, req, ino, size, off] { ServeRead(s, req, ino, size, off); });
}

void OpStatfs(fuse_req_t req, fuse_ino_t ino) {
  (void)ino;
  struct statvfs st;
  std::memset(&st, 0, sizeof(st));
  st.f_bsize = 4096;
  st.f_frsize = 4096;
  st.f_namemax = 255;
  st.f_flag = ST_RDONLY | ST_NOSUID | ST_NODEV;
  fuse_reply_statfs(req, &st);
}

// ---- Extended attributes (docs/fuse.md) ----

using XattrList = std::vector<std::pair<std::string, std::string>>;

// The extended attributes of `n`, in listing order. Returns 0 or an errno
// (ENOENT for an unpinned ref symlink that does not resolve). Costs one ref
// resolution for an unpinned ref symlink, nothing else: the rest is in the
// node.
int Xattrs(State& s, const Node& n, XattrList* out) {
  switch (n.kind) {
    case Kind::kRoot:
    case Kind::kNamespace:
    case Kind::kByDigest:
      return 0;
    case Kind::kRefLink: {
      Resolved r;
      if (int err = ResolutionOf(s, n, &r); err != 0) return err;
      const std::string p(kLinkXattrPrefix);
      out->emplace_back(p + "ref", n.name);
      out->emplace_back(p + "slot", r.slot_used);
      out->emplace_back(p + "digest", r.digest.ToString());
      out->emplace_back(p + "generation", absl::StrCat(r.generation));
      return 0;
    }
    case Kind::kArtefact: {
      const std::string p(kUserXattrPrefix);
      out->emplace_back(p + "artefact", n.artefact.ToString());
      out->emplace_back(p + "digest", n.artefact.ToString());
      return 0;
    }
    case Kind::kEntry:
      break;
  }
  const bool symlink = n.record.type() == store::FileRecord::SYMLINK;
  const std::string p(symlink ? kLinkXattrPrefix : kUserXattrPrefix);
  out->emplace_back(p + "artefact", n.artefact.ToString());
  if (n.record.type() == store::FileRecord::REGULAR) {
    absl::StatusOr<Digest> d = Digest::FromRaw(n.record.content_digest());
    if (!d.ok()) return EIO;
    out->emplace_back(p + "digest", d->ToString());
  }
  return 0;
}

// Replies with `value` under the getxattr/listxattr size protocol: size 0
// asks for the length; a buffer too small is ERANGE.
void ReplyXattr(fuse_req_t req, absl::string_view value, size_t size) {
  if (size == 0) return (void)fuse_reply_xattr(req, value.size());
  if (size < value.size()) return (void)fuse_reply_err(req, ERANGE);
  fuse_reply_buf(req, value.data(), value.size());
}

void OpGetxattr(fuse_req_t req, fuse_ino_t ino, const char* name_c,
                size_t size) {
  State& s = *StateOf(req);
  s.getxattrs.fetch_add(1, std::memory_order_relaxed);
  const absl::string_view name(name_c);
  // Any other name (security.capability at every exec, security.selinux
  // from ls, ...) is absent: answered before touching any state.
  if (!absl::StartsWith(name, kUserXattrPrefix) &&
      !absl::StartsWith(name, kLinkXattrPrefix)) {
    return (void)fuse_reply_err(req, ENODATA);
  }
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return (void)fuse_reply_err(req, ENOENT);
  XattrList attrs;
  if (int err = Xattrs(s, *n, &attrs); err != 0) {
    return (void)fuse_reply_err(req, err);
  }
  for (const auto& [key, value] : attrs) {
    if (key == name) return ReplyXattr(req, value, size);
  }
  fuse_reply_err(req, ENODATA);
}

void OpListxattr(fuse_req_t req, fuse_ino_t ino, size_t size) {
  State& s = *StateOf(req);
  std::shared_ptr<const Node> n = s.Get(ino);
  if (n == nullptr) return (void)fuse_reply_err(req, ENOENT);
  XattrList attrs;
  if (int err = Xattrs(s, *n, &attrs); err != 0) {
    return (void)fuse_reply_err(req, err);
  }
  std::string names;
  for (const auto& [key, value] : attrs) {
    names.append(key);
    names.push_back('\0');
  }
  ReplyXattr(req, names, size);
}

// Every write-type operation: EROFS, whatever the mount options.
void OpSetattr(fuse_req_t req, fuse_ino_t, struct stat*, int, fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void OpMknod(fuse_req_t req, fuse_ino_t, const char*, mode_t, dev_t) {
  fuse_reply_err(req, EROFS);
}
void OpMkdir(fuse_req_t req, fuse_ino_t, const char*, mode_t) {
  fuse_reply_err(req, EROFS);
}
void OpUnlink(fuse_req_t req, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void OpSymlink(fuse_req_t req, const char*, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void OpRename(fuse_req_t req, fuse_ino_t, const char*, fuse_ino_t, const char*,
              unsigned int) {
  fuse_reply_err(req, EROFS);
}
void OpLink(fuse_req_t req, fuse_ino_t, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void OpWrite(fuse_req_t req, fuse_ino_t, const char*, size_t, off_t,
             fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void OpCreate(fuse_req_t req, fuse_ino_t, const char*, mode_t,
              fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}
void OpSetxattr(fuse_req_t req, fuse_ino_t, const char*, const char*, size_t,
                int) {
  fuse_reply_err(req, EROFS);
}
void OpRemovexattr(fuse_req_t req, fuse_ino_t, const char*) {
  fuse_reply_err(req, EROFS);
}
void OpFallocate(fuse_req_t req, fuse_ino_t, int, off_t, off_t,
                 fuse_file_info*) {
  fuse_reply_err(req, EROFS);
}

// FORGET and BATCH_FORGET: the kernel dropped inodes (State::Forget).
void OpForget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
  StateOf(req)->Forget(ino, nlookup);
  fuse_reply_none(req);
}

void OpForgetMulti(fuse_req_t req, size_t count,
                   struct fuse_forget_data* forgets) {
  State& s = *StateOf(req);
  for (size_t i = 0; i < count; ++i) {
    s.Forget(forgets[i].ino, forgets[i].nlookup);
  }
  fuse_reply_none(req);
}

fuse_lowlevel_ops MakeOps() {
  fuse_lowlevel_ops ops;
  std::memset(&ops, 0, sizeof(ops));
  ops.init = OpInit;
  ops.lookup = OpLookup;
  ops.forget = OpForget;
  ops.forget_multi = OpForgetMulti;
  ops.getattr = OpGetattr;
  ops.readlink = OpReadlink;
  ops.opendir = OpOpendir;
  ops.readdir = OpReaddir;
  ops.readdirplus = OpReaddirplus;
  ops.open = OpOpen;
  ops.release = OpRelease;
  ops.read = OpRead;
  ops.statfs = OpStatfs;
  ops.setattr = OpSetattr;
  ops.mknod = OpMknod;
  ops.mkdir = OpMkdir;
  ops.unlink = OpUnlink;
  ops.rmdir = OpUnlink;
  ops.symlink = OpSymlink;
  ops.rename = OpRename;
  ops.link = OpLink;
  ops.write = OpWrite;
  ops.create = OpCreate;
  ops.getxattr = OpGetxattr;
  ops.listxattr = OpListxattr;
  ops.setxattr = OpSetxattr;
  ops.removexattr = OpRemovexattr;
  ops.fallocate = OpFallocate;
  return ops;
}

// The session's I/O (fuse_session_custom_io): plain read/writev/splice of
// /dev/fuse; with passthrough every request and reply also goes through the
// FusePassthrough; spliced replies are counted (userdata: the State).
ssize_t IoRead(int fd, void* buf, size_t len, void* userdata) {
  const ssize_t n = read(fd, buf, len);
  FusePassthrough* p = static_cast<State*>(userdata)->passthrough.get();
  if (n > 0 && p != nullptr) p->OnRequest(buf, n);
  return n;
}

ssize_t IoWritev(int fd, struct iovec* iov, int count, void* userdata) {
  if (static_cast<State*>(userdata)->passthrough == nullptr) {
    return writev(fd, iov, count);
  }
  FusePassthrough& p = *static_cast<State*>(userdata)->passthrough;
  const uint32_t backing_id = p.OnReply(iov, count);
  const ssize_t n = writev(fd, iov, count);
  // ENOENT: the opener was interrupted and dropped the reply; no RELEASE
  // will come for this open.
  if (n < 0 && errno == ENOENT && backing_id != 0) {
    const int err = errno;
    p.Release(backing_id);
    errno = err;
  }
  return n;
}

ssize_t IoSpliceSend(int fdin, off_t* offin, int fdout, off_t* offout,
                     size_t len, unsigned int flags, void* userdata) {
  // Counted before: the reply wakes its reader inside splice.
  static_cast<State*>(userdata)->spliced_replies.fetch_add(
      1, std::memory_order_relaxed);
  return splice(fdin, offin, fdout, offout, len, flags);
}

// The largest READ (bytes) whose reply libfuse can splice from the blob's
// fd: fuse_reply_data splices only through a pipe that holds the reply,
// its 16-byte header and three more pages (fuse_send_data_iov in libfuse
// 3.14's fuse_lowlevel.c), and a pipe grows past
// /proc/sys/fs/pipe-max-size (1 MiB by default) only with CAP_SYS_RESOURCE
// (pipe(7)). Beyond that libfuse copies: pread into a buffer, then writev,
// one more copy of every byte read (cairnd's CPU per cold 1 GiB read went
// from 0.33-0.41 s to 0.23-0.28 s). So READs are kMaxIo if this process
// can grow a pipe to fit one, else pipe-max-size minus four pages: 1 MiB
// - 16 KiB by default.
size_t MaxReadBytes() {
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  int p[2];
  if (pipe2(p, O_CLOEXEC) == 0) {
    const int want = static_cast<int>(kMaxIo + 3 * page + 16);
    const int got = fcntl(p[0], F_SETPIPE_SZ, want);
    close(p[0]);
    close(p[1]);
    if (got >= want) return kMaxIo;
  }
  size_t pipe_max = kMaxIo;
  std::ifstream in("/proc/sys/fs/pipe-max-size");
  size_t limit = 0;
  if (in >> limit && limit < pipe_max) pipe_max = limit;
  const size_t pages = pipe_max / page;
  return pages > 8 ? (pages - 4) * page : 4 * page;
}

// Raises the readahead window of the mount's BDI ("<major>:<minor>" of its
// st_dev) to kReadaheadReads READs of `max_read` bytes. Best effort:
// without it (no sysfs, not root) sequential reads arrive as 128 KiB
// requests.
void SetReadahead(dev_t dev, size_t max_read) {
  const std::string path = absl::StrCat("/sys/class/bdi/", major(dev), ":",
                                        minor(dev), "/read_ahead_kb");
  const int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  const std::string value = absl::StrCat(kReadaheadReads * max_read / 1024);
  if (fd < 0 || write(fd, value.data(), value.size()) !=
                    static_cast<ssize_t>(value.size())) {
    spdlog::warn("fuse: cannot set {} to {}: {}", path, value, strerror(errno));
  }
  if (fd >= 0) close(fd);
}

// Drops the kernel's cached entry `name` of directory `parent`, if any.
void InvalidateEntry(State& s, fuse_ino_t parent, const std::string& name) {
  const int rc = fuse_lowlevel_notify_inval_entry(s.session, parent,
                                                  name.data(), name.size());
  // ENOENT: the kernel has no such entry cached.
  if (rc != 0 && rc != -ENOENT) {
    spdlog::warn("fuse: cannot invalidate entry {} of inode {} in {}: {}", name,
                 parent, s.mountpoint, strerror(-rc));
  }
}

// Drops the kernel's cached listing (and attributes) of directory `ino`.
// A read of it under way keeps its snapshot; the next read builds anew.
void InvalidateListing(State& s, fuse_ino_t ino) {
  const int rc = fuse_lowlevel_notify_inval_inode(s.session, ino, 0, 0);
  if (rc != 0 && rc != -ENOENT) {
    spdlog::warn("fuse: cannot invalidate the listing of inode {} in {}: {}",
                 ino, s.mountpoint, strerror(-rc));
  }
}

// Whether no ref's text starts with namespace `prefix` ("team/sub/"). A
// failed listing counts as empty (the entry is then invalidated, as
// before: a stale namespace entry would be worse).
bool NamespaceIsEmpty(const State& s, const std::string& prefix) {
  ListRefsOptions options;
  options.prefix = prefix;
  options.limit = 1;
  absl::StatusOr<ListRefsPage> page = s.refs->List(options);
  return !page.ok() || page->refs.empty();
}

// Drops the kernel's cached entry of `ref`, so the next path walk through
// it LOOKUPs the ref's new resolution, and the cached listings of "/" and
// of the ref's namespaces (a ref or namespace may have appeared or gone);
// if the ref is gone, also the entries of its namespace directories that
// it left empty. Runs on the thread that changed the ref (RefStore
// change listener), never on a FUSE worker: the kernel takes the parent
// directory's lock, which a path walk waiting for a LOOKUP reply may hold,
// and LOOKUP never waits for ref updates.
void InvalidateRef(State& s, const RefName& ref) {
  s.refs_mtime_ns.store(absl::GetCurrentTimeNanos());
  const std::string text = ref.ToString();
  const bool gone = absl::IsNotFound(s.refs->Get(ref).status());
  // "team/sub/tool@main": entry "tool@main" of namespace "team/sub/",
  // entry "sub" of "team/", entry "team" of "/".
  size_t end = text.size();
  size_t slash = text.rfind('/', text.find('@'));
  for (bool first = true;; first = false) {
    const size_t begin = slash == std::string::npos ? 0 : slash + 1;
    const std::string prefix = text.substr(0, begin);
    const fuse_ino_t parent =
        prefix.empty() ? FUSE_ROOT_ID : s.Find("n:" + prefix);
    // parent 0: nothing under that namespace was ever looked up.
    if (parent != 0) {
      // A namespace's own entry only if the ref was its last: invalidating
      // the entry of a namespace that still has refs would unlink the
      // directory under processes using it (their cwd shows "(deleted)").
      if (first || (gone && NamespaceIsEmpty(s, text.substr(0, end) + "/"))) {
        InvalidateEntry(s, parent, text.substr(begin, end - begin));
      }
      InvalidateListing(s, parent);
    }
    if (prefix.empty()) return;
    end = slash;
    slash = end == 0 ? std::string::npos : text.rfind('/', end - 1);
  }
}

// Drops the kernel's cached listing of /by-digest, which just gained
// `artefact` (Store artefact listener; same threading as InvalidateRef).
void InvalidateByDigest(State& s, const Digest& artefact) {
  (void)artefact;
  s.artefacts_mtime_ns.store(absl::GetCurrentTimeNanos());
  InvalidateListing(s, kByDigestIno);
}

// Whether the FUSE connection of /dev/fuse descriptor `fd` has ended
// (aborted, or its file system unmounted): poll(2) reports POLLERR, as
// libfuse's fuse_kern_unmount checks.
bool ConnectionEnded(int fd) {
  pollfd p{fd, 0, 0};
  return poll(&p, 1, 0) == 1 && (p.revents & POLLERR) != 0;
}

// Where fusectl (the FUSE control file system) is normally mounted, and its
// magic number (FUSECTL_SUPER_MAGIC, linux/magic.h).
constexpr char kFusectlDir[] = "/sys/fs/fuse/connections";
constexpr int64_t kFusectlMagic = 0x65735543;

// Writes "1" to <conn_id>/abort below directory fd `root_fd` (a fusectl
// root). Returns whether it did. `still_live` is checked right before the
// write: the connection number is only this mount's while it lives.
bool WriteAbort(int root_fd, uint64_t conn_id,
                const std::function<bool()>& still_live) {
  const std::string path = absl::StrCat(conn_id, "/abort");
  const int fd = openat(root_fd, path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return false;
  const bool written = still_live() && write(fd, "1", 1) == 1;
  close(fd);
  return written;
}

// Aborts FUSE connection `conn_id` (Documentation/filesystems/fuse.rst,
// "Control filesystem"): through the fusectl mounted at kFusectlDir, else
// (not mounted, as in most containers, or not writable) through a fusectl
// instance created for this call as a detached mount (fsopen/fsmount,
// Linux >= 5.2): it is never attached anywhere, so no mount namespace sees
// it, and it goes with its fd. Needs CAP_SYS_ADMIN. Returns whether the
// abort was written.
bool AbortThroughFusectl(uint64_t conn_id,
                         const std::function<bool()>& still_live) {
  struct statfs sfs;
  if (statfs(kFusectlDir, &sfs) == 0 &&
      static_cast<int64_t>(sfs.f_type) == kFusectlMagic) {
    UniqueFd root(open(kFusectlDir, O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (root.get() >= 0 && WriteAbort(root.get(), conn_id, still_live)) {
      return true;
    }
  }
  UniqueFd fs(fsopen("fusectl", FSOPEN_CLOEXEC));
  if (fs.get() < 0 ||
      fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return false;
  }
  UniqueFd mnt(
      fsmount(fs.get(), FSMOUNT_CLOEXEC,
              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC));
  return mnt.get() >= 0 && WriteAbort(mnt.get(), conn_id, still_live);
}

// Whether the mount's connection has ended: its loop returned, or its
// /dev/fuse fd polls POLLERR (before the loop has seen it).
bool SessionEnded(const CairnFs::State& s) {
  return s.loop_ended.load() || ConnectionEnded(fuse_session_fd(s.session));
}

// A line of /proc/self/mountinfo (proc(5)).
struct MountEntry {
  int id = 0;     // Field 1: the mount ID (reused once the mount is gone).
  dev_t dev = 0;  // Field 3: "major:minor" (anonymous ones are reused too).
  std::string fstype;  // After the "-" separator: "fuse", "tmpfs", ...
};

// The mount on top at canonical `path` in *top: the last line of
// /proc/self/mountinfo mounted there (field 5, with spaces, tabs, newlines
// and backslashes as \ooo octal escapes); nullopt when nothing is mounted
// there. Returns false when the table cannot be read.
bool TopMount(const std::string& path, std::optional<MountEntry>* top) {
  top->reset();
  std::ifstream in("/proc/self/mountinfo");
  if (!in) return false;
  std::string line;
  while (std::getline(in, line)) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    if (f.size() < 5) continue;
    std::string point;
    for (size_t i = 0; i < f[4].size(); ++i) {
      if (f[4][i] == '\\' && i + 3 < f[4].size()) {
        const absl::string_view oct = f[4].substr(i + 1, 3);
        if (oct.find_first_not_of("01234567") == absl::string_view::npos) {
          point.push_back(static_cast<char>(
              (oct[0] - '0') * 64 + (oct[1] - '0') * 8 + (oct[2] - '0')));
          i += 3;
          continue;
        }
      }
      point.push_back(f[4][i]);
    }
    if (point != path) continue;
    MountEntry e;
    unsigned major_id = 0, minor_id = 0;
    const std::vector<absl::string_view> mm = absl::StrSplit(f[2], ':');
    if (!absl::SimpleAtoi(f[0], &e.id) || mm.size() != 2 ||
        !absl::SimpleAtoi(mm[0], &major_id) ||
        !absl::SimpleAtoi(mm[1], &minor_id)) {
      continue;
    }
    e.dev = makedev(major_id, minor_id);
    for (size_t k = 5; k + 1 < f.size(); ++k) {
      if (f[k] == "-") {
        e.fstype = std::string(f[k + 1]);
        break;
      }
    }
    *top = std::move(e);
  }
  return true;
}

}  // namespace

absl::StatusOr<std::unique_ptr<CairnFs>> CairnFs::Mount(
    Store* store, RefStore* refs, const std::string& mountpoint,
    const CairnFsOptions& options) {
  if (store == nullptr || refs == nullptr) {
    return absl::InvalidArgumentError("CairnFs::Mount: null store or refs");
  }
  auto state = std::make_unique<State>();
  state->store = store;
  state->refs = refs;
  state->mountpoint = mountpoint;
  if (char* real = realpath(mountpoint.c_str(), nullptr); real != nullptr) {
    state->canonical_mountpoint = real;
    free(real);
  } else {
    state->canonical_mountpoint = mountpoint;
  }
  state->options = options;
  state->slot = options.slot.empty() ? HostSlot() : options.slot;
  state->refs_mtime_ns = absl::GetCurrentTimeNanos();
  state->artefacts_mtime_ns = state->refs_mtime_ns.load();
  {
    absl::MutexLock lock(&state->mu);
    Node root;
    root.kind = Kind::kRoot;
    state->nodes[FUSE_ROOT_ID].node = std::make_shared<const Node>(root);
    Node by_digest;
    by_digest.kind = Kind::kByDigest;
    state->nodes[kByDigestIno].node = std::make_shared<const Node>(by_digest);
  }

  state->max_read = MaxReadBytes();
  std::string opts = absl::StrCat(
      "ro,nosuid,nodev,default_permissions,fsname=cairn,subtype=cairn,"
      "max_read=",
      state->max_read);
  if (options.allow_other) opts += ",allow_other";
  std::vector<std::string> args = {"cairnd", "-o", opts};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  fuse_args fargs = FUSE_ARGS_INIT(static_cast<int>(argv.size()), argv.data());
  const fuse_lowlevel_ops ops = MakeOps();
  fuse_session* se = fuse_session_new(&fargs, &ops, sizeof(ops), state.get());
  fuse_opt_free_args(&fargs);
  if (se == nullptr) {
    return absl::InternalError(
        absl::StrCat("cannot create FUSE session for ", mountpoint));
  }
  if (fuse_session_mount(se, mountpoint.c_str()) != 0) {
    fuse_session_destroy(se);
    return absl::InternalError(absl::StrCat(
        "cannot mount FUSE file system on ", mountpoint,
        " (is /dev/fuse available and the directory empty and unmounted?)"));
  }
  {
    // Same fd: the session keeps its mount, only its I/O goes through the
    // hooks. Set before the loop starts, so INIT is seen.
    const int dev_fd = fuse_session_fd(se);
    if (options.passthrough) {
      state->passthrough = std::make_unique<FusePassthrough>(dev_fd);
    }
    fuse_custom_io io;
    std::memset(&io, 0, sizeof(io));
    io.read = IoRead;
    io.writev = IoWritev;
    io.splice_send = IoSpliceSend;
    if (int err = fuse_session_custom_io(se, &io, dev_fd); err != 0) {
      fuse_session_unmount(se);
      fuse_session_destroy(se);
      return absl::InternalError(
          absl::StrCat("cannot set the FUSE session's I/O on ", mountpoint,
                       ": ", strerror(-err)));
    }
  }
  state->session = se;
  state->mounted = true;
  state->workers = std::make_unique<Workers>(options.workers);
  State* const looped = state.get();
  state->loop = std::thread([se, looped] {
    if (int err = fuse_session_loop(se); err != 0) {
      spdlog::error("fuse: session loop ended with error {}", err);
    }
    looped->loop_ended.store(true);
    if (!looped->unmounting.load()) {
      spdlog::warn(
          "fuse: {}: the FUSE connection ended (unmounted from outside?); "
          "this mount is gone",
          looped->mountpoint);
    }
  });
  // Answered by the loop (INIT, then GETATTR of the root).
  struct stat root_st;
  if (stat(mountpoint.c_str(), &root_st) == 0) {
    state->conn_id = minor(root_st.st_dev);
    state->dev = root_st.st_dev;
    std::optional<MountEntry> top;
    if (TopMount(state->canonical_mountpoint, &top) && top.has_value() &&
        top->dev == state->dev) {
      state->mount_id = top->id;
    }
    SetReadahead(root_st.st_dev, state->max_read);
  }
  State* raw = state.get();
  state->ref_listener_id = refs->AddChangeListener(
      [raw](const RefName& ref) { InvalidateRef(*raw, ref); });
  state->artefact_listener_id = store->AddArtefactListener(
      [raw](const Digest& d) { InvalidateByDigest(*raw, d); });
  const char* io = "files read through cairnd";
  if (state->passthrough != nullptr) {
    io = state->passthrough->active()
             ? "passthrough: files read by the kernel from their blobs"
             : "passthrough not offered by this kernel: files read through "
               "cairnd";
  }
  spdlog::info(
      "fuse: mounted {} (ro, nosuid, nodev; refs resolve to slot {}; {})",
      mountpoint, state->slot, io);
  return std::unique_ptr<CairnFs>(new CairnFs(std::move(state)));
}

CairnFs::CairnFs(std::unique_ptr<State> state) : state_(std::move(state)) {}

CairnFs::~CairnFs() {
  (void)Unmount();  // Logged there.
  // Still used by the loop and the workers (Unmount could not end the
  // connection): leaked on purpose.
  if (state_->abandoned) (void)state_.release();
}

const std::string& CairnFs::mountpoint() const { return state_->mountpoint; }

bool CairnFs::connection_ended() const {
  if (!state_->mounted) return false;
  return SessionEnded(*state_);
}

CairnFsStats CairnFs::stats() const {
  CairnFsStats st;
  st.lookups = state_->lookups.load(std::memory_order_relaxed);
  st.readdirplus_entries =
      state_->readdirplus_entries.load(std::memory_order_relaxed);
  st.getxattrs = state_->getxattrs.load(std::memory_order_relaxed);
  st.opendirs = state_->opendirs.load(std::memory_order_relaxed);
  st.readdirs = state_->readdirs.load(std::memory_order_relaxed);
  st.reads = state_->reads.load(std::memory_order_relaxed);
  st.passthrough = state_->passthrough != nullptr &&
                   state_->passthrough->active() &&
                   !state_->passthrough_refused.load();
  st.passthrough_opens =
      state_->passthrough_opens.load(std::memory_order_relaxed);
  st.backing_files =
      state_->passthrough == nullptr ? 0 : state_->passthrough->live();
  st.large_reads = state_->large_reads.load(std::memory_order_relaxed);
  {
    absl::MutexLock lock(&state_->open_blobs_mu);
    st.open_blob_files = state_->open_blobs.size();
  }
  st.blob_opens = state_->blob_opens.load(std::memory_order_relaxed);
  st.spliced_replies = state_->spliced_replies.load(std::memory_order_relaxed);
  st.verification_waits =
      state_->verification_waits.load(std::memory_order_relaxed);
  absl::MutexLock lock(&state_->mu);
  st.inodes = state_->nodes.size();
  return st;
}

absl::Status CairnFs::Unmount() {
  if (!state_->mounted) return absl::OkStatus();
  state_->mounted = false;
  state_->unmounting.store(true);
  // First, so no invalidation runs on a session being torn down.
  state_->refs->RemoveChangeListener(state_->ref_listener_id);
  state_->store->RemoveArtefactListener(state_->artefact_listener_id);
  fuse_session_exit(state_->session);
  // What is there now: the connection may have ended already (unmounted
  // from outside: its fusectl number and its path may then belong to
  // other mounts), and another file system may cover the mount point.
  // Only this mount's own connection is aborted, and only this mount is
  // unmounted at the path (it must be the one on top there).
  const bool ended = SessionEnded(*state_);
  const auto on_top = [this] {
    std::optional<MountEntry> top;
    if (state_->mount_id == 0 ||
        !TopMount(state_->canonical_mountpoint, &top)) {
      // Identity unknown (the root could not be stat'ed at mount, or the
      // mount table cannot be read): the path shows this mount if it gives
      // ENOTCONN (aborted) or this mount's known device.
      struct stat st;
      if (stat(state_->mountpoint.c_str(), &st) != 0) return errno == ENOTCONN;
      return state_->dev != 0 && st.st_dev == state_->dev;
    }
    return top.has_value() && top->id == state_->mount_id &&
           top->dev == state_->dev && absl::StartsWith(top->fstype, "fuse");
  };
  // Abort the connection so every worker's read(2) of /dev/fuse fails with
  // ENODEV and the loop ends, even while processes still hold files in the
  // mount: through fusectl (while the connection lives, its number is this
  // mount's), a detached instance of its own if none is mounted
  // (AbortThroughFusectl); failing that with a
  // forced unmount, whose umount_begin aborts a FUSE connection before the
  // busy check (so EBUSY still means aborted). Both need root; without
  // them the lazy unmount below ends the connection only once the mount is
  // no longer in use.
  bool aborted = ended;
  if (!aborted && state_->conn_id != 0) {
    aborted = AbortThroughFusectl(state_->conn_id,
                                  [this] { return !SessionEnded(*state_); });
  }
  if (!aborted && on_top()) {
    aborted =
        umount2(state_->mountpoint.c_str(), MNT_FORCE) == 0 || errno == EBUSY;
  }
  // The session's /dev/fuse fd stays open until the loop and the workers
  // are done with it: fuse_session_unmount closes it, and a reply or
  // passthrough ioctl still on its way would otherwise reach whatever file
  // reused the number.
  if (aborted) {
    state_->exiting.store(true, std::memory_order_relaxed);
    state_->loop.join();
    // Runs what the loop queued (replies to an aborted connection fail).
    state_->workers->Stop();
    // libfuse skips the unmount of an aborted connection: detach it here,
    // if it is still on top at the path (after a successful forced unmount,
    // or an unmount from outside, the path shows something else).
    if (on_top() && umount2(state_->mountpoint.c_str(), MNT_DETACH) != 0 &&
        errno != EINVAL) {
      spdlog::warn("fuse: umount2({}) failed: {}", state_->mountpoint,
                   strerror(errno));
    }
    fuse_session_unmount(state_->session);  // Closes the fd.
  } else if (!on_top()) {
    if (!ConnectionEnded(fuse_session_fd(state_->session))) {
      // Covered by another file system, and fusectl could not be used to
      // abort the connection (not root): nothing here can end it. The loop
      // was told to exit (it may answer one more request); processes using
      // the mount then wait until its connection is aborted by hand.
      const std::string why = absl::StrCat(
          "cannot unmount ", state_->mountpoint,
          ": another file system is mounted over it and its FUSE connection "
          "could not be aborted through fusectl; abort it by hand (mount "
          "fusectl, write 1 to connections/",
          state_->conn_id, "/abort)");
      spdlog::error("fuse: {}", why);
      state_->loop.detach();
      state_->abandoned = true;
      return absl::FailedPreconditionError(why);
    }
    // It ended meanwhile (unmounted from outside): nothing to detach.
    state_->exiting.store(true, std::memory_order_relaxed);
    state_->loop.join();
    state_->workers->Stop();
    fuse_session_unmount(state_->session);  // Closes the fd.
  } else if (umount2(state_->mountpoint.c_str(), MNT_DETACH) == 0) {
    // The connection ends, and the loop with it, once the mount is no
    // longer in use.
    state_->loop.join();
    state_->workers->Stop();
    fuse_session_unmount(state_->session);  // Closes the fd.
  } else {
    // Not root: only fusermount3 (run by libfuse) may detach the mount,
    // and libfuse closes the fd first.
    fuse_session_unmount(state_->session);
    state_->loop.join();
    state_->workers->Stop();
  }
  fuse_session_destroy(state_->session);
  state_->session = nullptr;
  spdlog::info("fuse: unmounted {}", state_->mountpoint);
  return absl::OkStatus();
}

}  // namespace cairn
