// Copyright 2026 The Cairn Authors.

#include "store/archive_index.h"

#include <archive.h>
#include <archive_entry.h>
#include <isa-l/igzip_lib.h>
#include <zstd.h>
#include <zstd_errors.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/cord.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/strings/string_view.h"
#include "nlohmann/json.hpp"

namespace cairn {
namespace {

using store::ArtefactRecord;
using store::FileRecord;

// Decompressed bytes handed to libarchive per read callback.
constexpr size_t kOutBufferSize = 1 << 20;
// Largest slice of a ByteSource chunk given to ISA-L at once (avail_in is
// 32-bit).
constexpr size_t kMaxInflateInput = 1 << 30;
// zstd frames needing a larger window are rejected to keep memory bounded.
// 2^23 (8 MiB) is the largest window zstd's non --ultra, non --long levels
// use.
constexpr int kZstdWindowLogMax = 23;
// Metadata files are buffered for parsing up to this size.
constexpr uint64_t kMaxMetadataBytes = 1 << 20;
constexpr mode_t kSetIdBits = 06000;
constexpr uint32_t kImplicitDirMode = 0755;

constexpr absl::string_view kCairnJson = "cairn.json";
constexpr absl::string_view kPackageJson = "package/package.json";

// A name quoted for error messages: C-escaped and shortened.
std::string Quote(absl::string_view name) {
  constexpr size_t kMaxShown = 200;
  if (name.size() > kMaxShown) {
    return absl::StrCat("\"", absl::CHexEscape(name.substr(0, kMaxShown)),
                        "\"... (", name.size(), " bytes)");
  }
  return absl::StrCat("\"", absl::CHexEscape(name), "\"");
}

// Payloads marking IndexArchive's errors (IsArchiveRejection).
constexpr absl::string_view kRejectionPayload =
    "type.cairn.dev/cairn.ArchiveRejection";
constexpr absl::string_view kNotArchivePayload =
    "type.cairn.dev/cairn.NotTheArchive";

// `s`, marked as a failure of something other than the archive's content
// (the ByteSource, the FileContentSink, memory), which IndexArchive then
// never reports as a rejection.
absl::Status NotTheArchive(absl::Status s) {
  if (!s.ok()) s.SetPayload(kNotArchivePayload, absl::Cord());
  return s;
}

absl::Status Unsafe(absl::string_view name, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat("unsafe archive: entry ", Quote(name), " ", why));
}

// ---------------------------------------------------------------------------
// Input: the ByteSource with the first bytes peeked for format detection.

class Input {
 public:
  explicit Input(ByteSource& source) : source_(source) {}

  // Reads until at least `n` bytes are available or the input ends; returns
  // them (possibly fewer than n). Call once, before Next().
  absl::StatusOr<absl::string_view> Peek(size_t n) {
    while (head_.size() < n && !eof_) {
      absl::StatusOr<absl::string_view> chunk = source_.Next();
      if (!chunk.ok()) return NotTheArchive(chunk.status());
      if (chunk->empty()) {
        eof_ = true;
      } else if (head_.empty() && chunk->size() >= n) {
        head_ = *chunk;  // Valid until the source is next called: no copy.
      } else {
        // head_ is empty or already copy_.
        copy_.append(chunk->data(), chunk->size());
        head_ = copy_;
      }
    }
    return head_;
  }

  // The next chunk; empty at end of input. Valid until the next call.
  absl::StatusOr<absl::string_view> Next() {
    if (!head_served_) {
      head_served_ = true;
      if (!head_.empty()) return head_;
    }
    if (!copy_.empty()) {
      copy_.clear();
      copy_.shrink_to_fit();
    }
    if (eof_) return absl::string_view();
    absl::StatusOr<absl::string_view> chunk = source_.Next();
    if (!chunk.ok()) return NotTheArchive(chunk.status());
    if (chunk->empty()) eof_ = true;
    return chunk;
  }

 private:
  ByteSource& source_;
  absl::string_view head_;  // The peeked bytes: a source chunk or copy_.
  std::string copy_;
  bool head_served_ = false;
  bool eof_ = false;
};

// ---------------------------------------------------------------------------
// Decoders: turn the input into the uncompressed tar stream.

class Decoder {
 public:
  virtual ~Decoder() = default;
  // The next piece of the tar stream, empty at its end. Valid until the next
  // call.
  virtual absl::StatusOr<absl::string_view> Read() = 0;
};

class PlainDecoder : public Decoder {
 public:
  explicit PlainDecoder(Input& input) : input_(input) {}
  absl::StatusOr<absl::string_view> Read() override { return input_.Next(); }

 private:
  Input& input_;
};

const char* IsalError(int code) {
  switch (code) {
    case ISAL_INVALID_BLOCK:
      return "invalid deflate block";
    case ISAL_INVALID_SYMBOL:
      return "invalid deflate symbol";
    case ISAL_INVALID_LOOKBACK:
      return "invalid lookback distance";
    case ISAL_INVALID_WRAPPER:
      return "invalid gzip header or trailer";
    case ISAL_UNSUPPORTED_METHOD:
      return "unsupported compression method";
    case ISAL_INCORRECT_CHECKSUM:
      return "CRC-32 or length mismatch";
    case ISAL_NEED_DICT:
      return "stream needs a preset dictionary";
    default:
      return "inflate error";
  }
}

// gzip via ISA-L, including multi-member streams. Zero bytes after the last
// member (tape padding) are accepted, anything else is not.
class GzipDecoder : public Decoder {
 public:
  explicit GzipDecoder(Input& input)
      : input_(input),
        state_(std::make_unique<inflate_state>()),
        out_(std::make_unique<uint8_t[]>(kOutBufferSize)) {
    isal_inflate_init(state_.get());
    state_->crc_flag = ISAL_GZIP;
  }

  absl::StatusOr<absl::string_view> Read() override {
    while (!done_) {
      if (state_->block_state == ISAL_BLOCK_FINISH) {
        absl::Status s = StartNextMember();
        if (!s.ok()) return s;
        continue;
      }
      if (in_.empty() && !eof_) {
        absl::Status s = Fill();
        if (!s.ok()) return s;
      }
      const size_t in_size = std::min(in_.size(), kMaxInflateInput);
      state_->next_in =
          reinterpret_cast<uint8_t*>(const_cast<char*>(in_.data()));
      state_->avail_in = static_cast<uint32_t>(in_size);
      state_->next_out = out_.get();
      state_->avail_out = static_cast<uint32_t>(kOutBufferSize);
      const int ret = isal_inflate(state_.get());
      const size_t consumed = in_size - state_->avail_in;
      in_.remove_prefix(consumed);
      const size_t produced = kOutBufferSize - state_->avail_out;
      if (ret < 0) {
        return absl::InvalidArgumentError(
            absl::StrCat("corrupt gzip stream: ", IsalError(ret),
                         " (ISA-L error ", ret, ")"));
      }
      if (produced > 0) {
        return absl::string_view(reinterpret_cast<const char*>(out_.get()),
                                 produced);
      }
      if (state_->block_state == ISAL_BLOCK_FINISH) continue;
      if (in_.empty() && eof_) {
        return absl::InvalidArgumentError(
            "truncated gzip stream: input ended inside a gzip member");
      }
      if (consumed == 0 && !in_.empty()) {
        return absl::InvalidArgumentError(
            "corrupt gzip stream: decoder made no progress");
      }
    }
    return absl::string_view();
  }

 private:
  absl::Status Fill() {
    absl::StatusOr<absl::string_view> chunk = input_.Next();
    if (!chunk.ok()) return chunk.status();
    if (chunk->empty()) eof_ = true;
    in_ = *chunk;
    return absl::OkStatus();
  }

  // Called when a member has ended: decides between another member, zero
  // padding up to the end of input, and trailing garbage.
  absl::Status StartNextMember() {
    bool saw_zero = false;
    for (;;) {
      while (!in_.empty() && in_.front() == '\0') {
        saw_zero = true;
        in_.remove_prefix(1);
      }
      if (!in_.empty()) break;
      if (eof_) {
        done_ = true;
        return absl::OkStatus();
      }
      absl::Status s = Fill();
      if (!s.ok()) return s;
    }
    if (saw_zero || static_cast<uint8_t>(in_.front()) != 0x1f) {
      return absl::InvalidArgumentError(
          "corrupt gzip stream: trailing garbage after the last member");
    }
    isal_inflate_reset(state_.get());
    state_->crc_flag = ISAL_GZIP;
    return absl::OkStatus();
  }

  Input& input_;
  std::unique_ptr<inflate_state> state_;
  std::unique_ptr<uint8_t[]> out_;
  absl::string_view in_;
  bool eof_ = false;
  bool done_ = false;
};

struct ZstdDCtxDeleter {
  void operator()(ZSTD_DCtx* ctx) const { ZSTD_freeDCtx(ctx); }
};

class ZstdDecoder : public Decoder {
 public:
  explicit ZstdDecoder(Input& input)
      : input_(input),
        ctx_(ZSTD_createDCtx()),
        out_(std::make_unique<char[]>(kOutBufferSize)) {}

  absl::Status Init() {
    if (ctx_ == nullptr) {
      return NotTheArchive(absl::ResourceExhaustedError("ZSTD_createDCtx"));
    }
    const size_t r = ZSTD_DCtx_setParameter(ctx_.get(), ZSTD_d_windowLogMax,
                                            kZstdWindowLogMax);
    if (ZSTD_isError(r)) {
      return absl::InternalError(
          absl::StrCat("ZSTD_d_windowLogMax: ", ZSTD_getErrorName(r)));
    }
    return absl::OkStatus();
  }

  absl::StatusOr<absl::string_view> Read() override {
    for (;;) {
      if (in_.pos == in_.size && !eof_) {
        absl::StatusOr<absl::string_view> chunk = input_.Next();
        if (!chunk.ok()) return chunk.status();
        if (chunk->empty()) eof_ = true;
        in_ = {chunk->data(), chunk->size(), 0};
      }
      const bool input_done = eof_ && in_.pos == in_.size;
      if (input_done && !in_frame_) return absl::string_view();
      // Between frames, a zero byte cannot start a frame (frame magics begin
      // 0x28 or 0x5?): it is block padding, as libarchive and tar add after
      // the compressed stream. It must run to the end of input.
      if (!in_frame_ && in_.pos < in_.size &&
          (padding_ || static_cast<const char*>(in_.src)[in_.pos] == 0)) {
        padding_ = true;
        const char* p = static_cast<const char*>(in_.src);
        for (; in_.pos < in_.size; ++in_.pos) {
          if (p[in_.pos] != 0) {
            return absl::InvalidArgumentError(
                "corrupt zstd stream: trailing garbage after the last frame");
          }
        }
        continue;
      }
      ZSTD_outBuffer out = {out_.get(), kOutBufferSize, 0};
      const size_t r = ZSTD_decompressStream(ctx_.get(), &out, &in_);
      if (ZSTD_isError(r)) {
        std::string why = ZSTD_getErrorName(r);
        if (ZSTD_getErrorCode(r) == ZSTD_error_frameParameter_windowTooLarge) {
          absl::StrAppend(&why, " (windows above ",
                          1 << (kZstdWindowLogMax - 20),
                          " MiB, as made by --ultra or --long, are refused)");
        }
        return absl::InvalidArgumentError(
            absl::StrCat("corrupt zstd stream: ", why));
      }
      in_frame_ = r != 0;
      if (out.pos > 0) return absl::string_view(out_.get(), out.pos);
      if (eof_ && in_.pos == in_.size) {
        if (in_frame_) {
          return absl::InvalidArgumentError(
              "truncated zstd stream: input ended inside a frame");
        }
        return absl::string_view();
      }
    }
  }

 private:
  Input& input_;
  std::unique_ptr<ZSTD_DCtx, ZstdDCtxDeleter> ctx_;
  std::unique_ptr<char[]> out_;
  ZSTD_inBuffer in_ = {nullptr, 0, 0};
  bool eof_ = false;
  bool in_frame_ = false;
  bool padding_ = false;  // In the zero padding after the last frame.
};

// ---------------------------------------------------------------------------
// libarchive glue.

struct ReadContext {
  Decoder* decoder;
  // The first error from the decoder or the source, returned as-is.
  absl::Status error;
  // Bytes handed to libarchive so far. The ones it has not consumed yet
  // (read ahead) are the end of `carried` + `last`: after the
  // end-of-archive marker they are checked (UnconsumedTail).
  uint64_t fed = 0;
  std::string carried;
  absl::string_view last;  // The last chunk handed out; valid until the next.
};

// Bytes libarchive has consumed (tar headers and data, end-of-archive
// blocks included).
uint64_t Consumed(struct archive* a) {
  const la_int64_t n = archive_filter_bytes(a, 0);
  return n > 0 ? static_cast<uint64_t>(n) : 0;
}

// The bytes handed to libarchive that it has not consumed.
std::string UnconsumedTail(const ReadContext& ctx, struct archive* a) {
  const uint64_t tail = ctx.fed - std::min(ctx.fed, Consumed(a));
  if (tail <= ctx.last.size()) {
    return std::string(ctx.last.substr(ctx.last.size() - tail));
  }
  const size_t carried =
      std::min<uint64_t>(tail - ctx.last.size(), ctx.carried.size());
  return absl::StrCat(
      absl::string_view(ctx.carried).substr(ctx.carried.size() - carried),
      ctx.last);
}

la_ssize_t ReadCallback(struct archive* a, void* client, const void** buf) {
  auto* ctx = static_cast<ReadContext*>(client);
  // `last` is about to be invalidated: keep what libarchive has not
  // consumed of it (usually nothing, or part of a header it reads ahead).
  ctx->carried = UnconsumedTail(*ctx, a);
  ctx->last = absl::string_view();
  absl::StatusOr<absl::string_view> chunk = ctx->decoder->Read();
  if (!chunk.ok()) {
    ctx->error = chunk.status();
    archive_set_error(a, EIO, "input error");
    return -1;
  }
  ctx->fed += chunk->size();
  ctx->last = *chunk;
  *buf = chunk->data();
  return static_cast<la_ssize_t>(chunk->size());
}

struct ArchiveDeleter {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

std::string ArchiveError(struct archive* a) {
  const char* s = archive_error_string(a);
  return s != nullptr ? s : "unknown libarchive error";
}

// ---------------------------------------------------------------------------
// Paths.

// Normalises a tar name: strips leading "./" and one trailing "/", then
// rejects absolute paths and empty, "." and ".." components. Sets *is_root
// (and returns "") for "." and "./".
absl::StatusOr<std::string> NormalisePath(absl::string_view raw,
                                          bool* is_root) {
  *is_root = false;
  if (raw.empty()) return Unsafe(raw, "has an empty name");
  if (raw.front() == '/') return Unsafe(raw, "is an absolute path");
  absl::string_view p = raw;
  while (absl::StartsWith(p, "./")) p.remove_prefix(2);
  if (absl::EndsWith(p, "/")) p.remove_suffix(1);
  if (p.empty() || p == ".") {
    *is_root = true;
    return std::string();
  }
  for (absl::string_view c : absl::StrSplit(p, '/')) {
    if (c.empty()) return Unsafe(raw, "has an empty path component");
    if (c == "..") return Unsafe(raw, "has a \"..\" component");
    if (c == ".") return Unsafe(raw, "has a \".\" component");
  }
  return std::string(p);
}

// ---------------------------------------------------------------------------
// Metadata.

struct MetadataFile {
  bool present = false;
  bool too_large = false;
  std::string content;
};

// Returns the string at `key`, or "" if absent or not a string.
std::string StringField(const nlohmann::ordered_json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end() || !it->is_string()) return std::string();
  return it->get<std::string>();
}

absl::StatusOr<nlohmann::ordered_json> ParseJsonObject(
    absl::string_view path, const MetadataFile& file) {
  if (file.too_large) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata file ", Quote(path), " is larger than ",
                     kMaxMetadataBytes, " bytes"));
  }
  nlohmann::ordered_json j = nlohmann::ordered_json::parse(
      file.content, /*cb=*/nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata file ", Quote(path), " is not valid JSON"));
  }
  if (!j.is_object()) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata file ", Quote(path), " is not a JSON object"));
  }
  return j;
}

absl::Status ParseCairnJson(const MetadataFile& file,
                            store::ArtefactMetadata* md) {
  absl::StatusOr<nlohmann::ordered_json> j = ParseJsonObject(kCairnJson, file);
  if (!j.ok()) return j.status();
  md->set_name(StringField(*j, "name"));
  md->set_version(StringField(*j, "version"));
  std::string licence = StringField(*j, "licence");
  if (licence.empty()) licence = StringField(*j, "license");
  md->set_licence(std::move(licence));
  md->set_entrypoint(StringField(*j, "entrypoint"));
  return absl::OkStatus();
}

absl::Status ParsePackageJson(const MetadataFile& file,
                              store::ArtefactMetadata* md) {
  absl::StatusOr<nlohmann::ordered_json> j =
      ParseJsonObject(kPackageJson, file);
  if (!j.ok()) return j.status();
  md->set_name(StringField(*j, "name"));
  md->set_version(StringField(*j, "version"));
  md->set_licence(StringField(*j, "license"));
  std::string bin;
  auto it = j->find("bin");
  if (it != j->end()) {
    if (it->is_string()) {
      bin = it->get<std::string>();
    } else if (it->is_object() && !it->empty() && it->begin()->is_string()) {
      bin = it->begin()->get<std::string>();
    }
  }
  absl::string_view b = bin;
  while (absl::StartsWith(b, "./")) b.remove_prefix(2);
  if (!b.empty()) md->set_entrypoint(absl::StrCat("package/", b));
  return absl::OkStatus();
}

absl::Status ParseMetadata(const MetadataFile& cairn,
                           const MetadataFile& package,
                           store::ArtefactMetadata* md) {
  try {
    if (cairn.present) return ParseCairnJson(cairn, md);
    if (package.present) return ParsePackageJson(package, md);
    return absl::OkStatus();
  } catch (const std::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("metadata: ", cairn.present ? kCairnJson : kPackageJson,
                     ": ", e.what()));
  }
}

// ResourceExhausted naming the first field of `md` (read from `file`)
// longer than `max_bytes`.
absl::Status CheckMetadataFields(const store::ArtefactMetadata& md,
                                 absl::string_view file, uint64_t max_bytes) {
  const std::pair<const char*, const std::string*> fields[] = {
      {"name", &md.name()},
      {"version", &md.version()},
      {"licence", &md.licence()},
      {"entrypoint", &md.entrypoint()}};
  for (const auto& [field, value] : fields) {
    if (value->size() > max_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "metadata: ", file, ": ", field, " is ", value->size(),
          " bytes, over max_metadata_field_bytes (", max_bytes, ")"));
    }
  }
  return absl::OkStatus();
}

// ---------------------------------------------------------------------------
// The indexer.

class Indexer {
 public:
  Indexer(struct archive* a, ReadContext* ctx, const ArchiveLimits& limits,
          FileContentSink* sink, ArchiveIndex* index)
      : a_(a), ctx_(ctx), limits_(limits), sink_(sink), index_(index) {}

  absl::Status Run() {
    for (;;) {
      // The previous entry's data and padding are consumed first, so that
      // what the next header read consumes is a header or the end marker.
      if (any_header_ && archive_read_data_skip(a_) != ARCHIVE_OK) {
        return ReadError(last_name_);
      }
      const uint64_t before = Consumed(a_);
      struct archive_entry* entry = nullptr;
      const int r = archive_read_next_header(a_, &entry);
      if (r == ARCHIVE_EOF) {
        // libarchive also ends cleanly where the input ends at a block
        // boundary without the marker (POSIX.1-2017 pax, "ustar Interchange
        // Format": "two consecutive blocks of zero-filled records"): the
        // tail of a cut upload, entries lost. One zero block is accepted,
        // as GNU tar and libarchive do.
        if (Consumed(a_) == before) {
          return absl::InvalidArgumentError(absl::StrCat(
              "truncated tar archive: it ends ",
              any_header_ ? absl::StrCat("after entry ", Quote(last_name_))
                          : std::string("before any entry"),
              " without the end-of-archive marker (512-byte blocks of "
              "zeros)"));
        }
        break;
      }
      // ARCHIVE_RETRY (a header failing its checksum) is above
      // ARCHIVE_WARN, and no success either.
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) {
        if (!ctx_->error.ok()) return ctx_->error;
        if (archive_errno(a_) == ENOMEM) {
          return NotTheArchive(absl::ResourceExhaustedError(absl::StrCat(
              "out of memory reading the archive: ", ArchiveError(a_))));
        }
        if (!any_header_) {
          return absl::InvalidArgumentError(
              absl::StrCat("not a tar archive: ", ArchiveError(a_)));
        }
        return absl::InvalidArgumentError(
            absl::StrCat("corrupt tar archive after entry ", Quote(last_name_),
                         ": ", ArchiveError(a_)));
      }
      any_header_ = true;
      absl::Status s = Entry(entry);
      if (!s.ok()) return s;
    }
    if (absl::Status s =
            ParseMetadata(cairn_json_, package_json_, &index_->metadata);
        !s.ok()) {
      return s;
    }
    return CheckMetadataFields(index_->metadata,
                               cairn_json_.present ? kCairnJson : kPackageJson,
                               limits_.max_metadata_field_bytes);
  }

 private:
  struct Slot {
    size_t index;      // Into index_->entries.
    bool synthesised;  // Implicit parent directory not (yet) seen itself.
  };

  absl::Status Entry(struct archive_entry* entry) {
    const char* raw_c = archive_entry_pathname(entry);
    if (raw_c == nullptr) raw_c = archive_entry_pathname_utf8(entry);
    if (raw_c == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat("unsafe archive: entry after ", Quote(last_name_),
                       " has a name that cannot be decoded"));
    }
    const absl::string_view raw = raw_c;
    last_name_ = std::string(raw);

    const char* hardlink = archive_entry_hardlink(entry);
    FileRecord::Type type;
    if (hardlink != nullptr) {
      // pax allows a hardlink to carry data (POSIX.1-2001, "typeflag 1"),
      // which libarchive's extraction writes into the target: the target's
      // content would then not be the bytes indexed for it.
      if (archive_entry_size_is_set(entry) && archive_entry_size(entry) > 0) {
        return Unsafe(
            raw,
            absl::StrCat("is a hardlink to ", Quote(hardlink), " that carries ",
                         archive_entry_size(entry), " bytes of data"));
      }
      type = FileRecord::HARDLINK;
    } else {
      switch (archive_entry_filetype(entry)) {
        case AE_IFREG:
          type = FileRecord::REGULAR;
          break;
        case AE_IFDIR:
          type = FileRecord::DIRECTORY;
          break;
        case AE_IFLNK:
          type = FileRecord::SYMLINK;
          break;
        case AE_IFCHR:
          return Unsafe(raw, "is a character device");
        case AE_IFBLK:
          return Unsafe(raw, "is a block device");
        case AE_IFIFO:
          return Unsafe(raw, "is a FIFO");
        case AE_IFSOCK:
          return Unsafe(raw, "is a socket");
        default:
          return Unsafe(raw, "has an unsupported file type");
      }
    }

    bool is_root = false;
    absl::StatusOr<std::string> path = NormalisePath(raw, &is_root);
    if (!path.ok()) return path.status();
    if (is_root) {
      // "." or "./": the root directory, which is not an entry.
      if (type == FileRecord::DIRECTORY) return absl::OkStatus();
      return Unsafe(raw, "names the root directory but is not a directory");
    }
    if (path->size() > limits_.max_path_bytes) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "archive exceeds max_path_bytes (", limits_.max_path_bytes,
          "): entry ", Quote(raw), " has a ", path->size(), "-byte path"));
    }

    // Duplicates.
    auto existing = slots_.find(*path);
    if (existing != slots_.end()) {
      Slot& slot = existing->second;
      if (slot.synthesised && type == FileRecord::DIRECTORY) {
        // An explicit entry for a directory already implied by a child.
        slot.synthesised = false;
        index_->entries[slot.index].record.set_mode(Mode(entry, *path));
        return absl::OkStatus();
      }
      return Unsafe(raw, "appears more than once in the archive");
    }

    absl::Status s = AddParents(raw, *path);
    if (!s.ok()) return s;

    IndexedEntry out;
    out.path = *path;
    FileRecord& rec = out.record;
    rec.set_type(type);
    switch (type) {
      case FileRecord::DIRECTORY:
        rec.set_mode(Mode(entry, *path));
        break;
      case FileRecord::SYMLINK: {
        const char* target = archive_entry_symlink(entry);
        if (target == nullptr) target = archive_entry_symlink_utf8(entry);
        if (target == nullptr) {
          return Unsafe(raw, "is a symlink without a readable target");
        }
        const size_t len = std::strlen(target);
        if (len > limits_.max_path_bytes) {
          return absl::ResourceExhaustedError(absl::StrCat(
              "archive exceeds max_path_bytes (", limits_.max_path_bytes,
              "): symlink ", Quote(raw), " has a ", len, "-byte target"));
        }
        rec.set_mode(Mode(entry, *path));
        rec.set_link_target(target, len);
        rec.set_size(len);
        break;
      }
      case FileRecord::HARDLINK: {
        bool target_is_root = false;
        absl::StatusOr<std::string> target =
            NormalisePath(hardlink, &target_is_root);
        if (!target.ok()) {
          return Unsafe(raw, absl::StrCat("is a hardlink to unsafe path ",
                                          Quote(hardlink)));
        }
        auto t = slots_.find(*target);
        if (target_is_root || t == slots_.end()) {
          return Unsafe(raw, absl::StrCat("is a hardlink to ", Quote(hardlink),
                                          ", which is not an earlier entry"));
        }
        FileRecord& tr = index_->entries[t->second.index].record;
        if (tr.type() != FileRecord::REGULAR) {
          return Unsafe(raw, absl::StrCat("is a hardlink to ", Quote(hardlink),
                                          ", which is not a regular file"));
        }
        rec.set_mode(tr.mode());
        rec.set_size(tr.size());
        rec.set_content_digest(tr.content_digest());
        rec.set_link_target(*target);
        rec.set_entry_id(tr.entry_id());
        tr.set_nlink(tr.nlink() + 1);
        break;
      }
      case FileRecord::REGULAR: {
        rec.set_mode(Mode(entry, *path));
        rec.set_nlink(1);
        s = ReadFile(entry, raw, *path, &rec);
        if (!s.ok()) return s;
        break;
      }
      default:
        return absl::InternalError("unreachable file type");
    }
    return Add(raw, std::move(out), /*synthesised=*/false);
  }

  // Adds missing parent directories of `path`; rejects non-directory ones.
  absl::Status AddParents(absl::string_view raw, absl::string_view path) {
    for (size_t pos = path.find('/'); pos != absl::string_view::npos;
         pos = path.find('/', pos + 1)) {
      absl::string_view parent = path.substr(0, pos);
      auto it = slots_.find(parent);
      if (it != slots_.end()) {
        const FileRecord& pr = index_->entries[it->second.index].record;
        if (pr.type() != FileRecord::DIRECTORY) {
          return Unsafe(raw, absl::StrCat("is under non-directory entry ",
                                          Quote(parent)));
        }
        continue;
      }
      IndexedEntry dir;
      dir.path = std::string(parent);
      dir.record.set_type(FileRecord::DIRECTORY);
      dir.record.set_mode(kImplicitDirMode);
      absl::Status s = Add(raw, std::move(dir), /*synthesised=*/true);
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  }

  absl::Status Add(absl::string_view raw, IndexedEntry e, bool synthesised) {
    if (index_->entries.size() >= limits_.max_entries) {
      return absl::ResourceExhaustedError(
          absl::StrCat("archive exceeds max_entries (", limits_.max_entries,
                       ") at entry ", Quote(raw)));
    }
    path_bytes_ += e.path.size() + e.record.link_target().size();
    if (path_bytes_ > limits_.max_total_path_bytes) {
      return absl::ResourceExhaustedError(
          absl::StrCat("archive exceeds max_total_path_bytes (",
                       limits_.max_total_path_bytes,
                       ") of paths and link targets at entry ", Quote(raw)));
    }
    const size_t i = index_->entries.size();
    if (e.record.type() != FileRecord::HARDLINK) e.record.set_entry_id(i + 1);
    slots_.emplace(e.path, Slot{i, synthesised});
    index_->entries.push_back(std::move(e));
    return absl::OkStatus();
  }

  // Permission bits with setuid/setgid stripped (and recorded).
  uint32_t Mode(struct archive_entry* entry, const std::string& path) {
    uint32_t mode = archive_entry_perm(entry) & 07777;
    if (mode & kSetIdBits) {
      mode &= ~static_cast<uint32_t>(kSetIdBits);
      if (index_->stripped_setid_paths.size() < kMaxListedSetidPaths) {
        index_->stripped_setid_paths.push_back(path);
      }
      ++index_->stripped_setid_count;
    }
    return mode;
  }

  absl::Status ReadError(absl::string_view raw) {
    if (!ctx_->error.ok()) return ctx_->error;
    if (archive_errno(a_) == ENOMEM) {
      return NotTheArchive(absl::ResourceExhaustedError(absl::StrCat(
          "out of memory reading entry ", Quote(raw), ": ", ArchiveError(a_))));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "corrupt tar archive: entry ", Quote(raw), ": ", ArchiveError(a_)));
  }

  // Streams a regular file's content into the sink and a SHA-256.
  absl::Status ReadFile(struct archive_entry* entry, absl::string_view raw,
                        const std::string& path, FileRecord* rec) {
    const la_int64_t header_size =
        archive_entry_size_is_set(entry) ? archive_entry_size(entry) : 0;
    if (header_size < 0) return Unsafe(raw, "has a negative size");
    const uint64_t size = static_cast<uint64_t>(header_size);
    if (size > limits_.max_unpacked_bytes ||
        index_->unpacked_bytes > limits_.max_unpacked_bytes - size) {
      return absl::ResourceExhaustedError(absl::StrCat(
          "archive exceeds max_unpacked_bytes (", limits_.max_unpacked_bytes,
          ") at entry ", Quote(raw), " (", size, " bytes)"));
    }

    MetadataFile* md = nullptr;
    if (path == kCairnJson) {
      md = &cairn_json_;
      package_json_ = MetadataFile();  // cairn.json takes precedence.
    } else if (path == kPackageJson && !cairn_json_.present) {
      md = &package_json_;
    }
    if (md != nullptr) {
      md->present = true;
      md->too_large = size > kMaxMetadataBytes;
      if (!md->too_large) md->content.reserve(size);
      if (md->too_large) md = nullptr;
    }

    if (sink_ != nullptr) {
      absl::Status s = sink_->BeginFile(path, size);
      if (!s.ok()) return NotTheArchive(std::move(s));
    }
    if (hash_) sha_.Reset();
    uint64_t streamed = 0;
    for (;;) {
      const void* buf = nullptr;
      size_t len = 0;
      la_int64_t offset = 0;
      const int r = archive_read_data_block(a_, &buf, &len, &offset);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN) return ReadError(raw);
      if (offset < 0 || static_cast<uint64_t>(offset) < streamed) {
        return Unsafe(raw, "has overlapping data blocks");
      }
      // Holes in sparse files read as zeros.
      if (static_cast<uint64_t>(offset) > size) {
        return Unsafe(raw, "has data beyond its size");
      }
      absl::Status s = Zeros(static_cast<uint64_t>(offset) - streamed, md);
      if (!s.ok()) return s;
      streamed = static_cast<uint64_t>(offset);
      if (len > size - streamed) {
        return Unsafe(raw, "has more data than its header size");
      }
      s = Consume(absl::string_view(static_cast<const char*>(buf), len), md);
      if (!s.ok()) return s;
      streamed += len;
    }
    if (streamed < size && archive_entry_sparse_count(entry) > 0) {
      absl::Status s = Zeros(size - streamed, md);
      if (!s.ok()) return s;
      streamed = size;
    }
    if (streamed != size) {
      return absl::InvalidArgumentError(
          absl::StrCat("corrupt tar archive: entry ", Quote(raw), " has ",
                       streamed, " bytes of data but its header says ", size));
    }
    const Digest digest = hash_ ? sha_.Finish() : Digest();
    if (sink_ != nullptr) {
      absl::Status s = sink_->EndFile(digest);
      if (!s.ok()) return NotTheArchive(std::move(s));
    }
    rec->set_size(size);
    if (hash_) rec->set_content_digest(std::string(digest.raw()));
    ++index_->regular_files;
    index_->unpacked_bytes += size;
    return absl::OkStatus();
  }

  absl::Status Consume(absl::string_view data, MetadataFile* md) {
    if (data.empty()) return absl::OkStatus();
    if (hash_) sha_.Update(data);
    if (md != nullptr) md->content.append(data.data(), data.size());
    if (sink_ != nullptr) return NotTheArchive(sink_->Append(data));
    return absl::OkStatus();
  }

  absl::Status Zeros(uint64_t n, MetadataFile* md) {
    static const char kZeros[64 << 10] = {};
    while (n > 0) {
      const size_t len = std::min<uint64_t>(n, sizeof(kZeros));
      absl::Status s = Consume(absl::string_view(kZeros, len), md);
      if (!s.ok()) return s;
      n -= len;
    }
    return absl::OkStatus();
  }

  struct archive* const a_;
  ReadContext* const ctx_;
  const ArchiveLimits& limits_;
  FileContentSink* const sink_;
  ArchiveIndex* const index_;

  absl::flat_hash_map<std::string, Slot> slots_;
  Sha256 sha_;
  // False when the sink hashes file contents itself.
  const bool hash_ = sink_ == nullptr || !sink_->HashesContent();
  bool any_header_ = false;
  uint64_t path_bytes_ = 0;  // Paths and link targets added so far.
  std::string last_name_;
  MetadataFile cairn_json_;
  MetadataFile package_json_;
};

}  // namespace

namespace {

absl::StatusOr<ArchiveIndex> Index(ByteSource& source,
                                   const ArchiveLimits& limits,
                                   FileContentSink* sink) {
  ArchiveIndex index;
  Input input(source);
  absl::StatusOr<absl::string_view> head = input.Peek(4);
  if (!head.ok()) return head.status();

  std::unique_ptr<Decoder> decoder;
  if (head->size() >= 2 && static_cast<uint8_t>((*head)[0]) == 0x1f &&
      static_cast<uint8_t>((*head)[1]) == 0x8b) {
    index.compression = ArtefactRecord::GZIP;
    decoder = std::make_unique<GzipDecoder>(input);
  } else if (head->size() >= 4 && (*head)[0] == '\x28' &&
             (*head)[1] == '\xb5' && (*head)[2] == '\x2f' &&
             (*head)[3] == '\xfd') {
    index.compression = ArtefactRecord::ZSTD;
    auto zstd = std::make_unique<ZstdDecoder>(input);
    absl::Status s = zstd->Init();
    if (!s.ok()) return s;
    decoder = std::move(zstd);
  } else {
    index.compression = ArtefactRecord::NONE;
    decoder = std::make_unique<PlainDecoder>(input);
  }

  ReadContext ctx;
  ctx.decoder = decoder.get();
  std::unique_ptr<struct archive, ArchiveDeleter> a(archive_read_new());
  if (a == nullptr) {
    return NotTheArchive(absl::ResourceExhaustedError("archive_read_new"));
  }
  if (archive_read_support_filter_none(a.get()) != ARCHIVE_OK ||
      archive_read_support_format_tar(a.get()) != ARCHIVE_OK) {
    return absl::InternalError(
        absl::StrCat("libarchive setup: ", ArchiveError(a.get())));
  }
  if (archive_read_open(a.get(), &ctx, /*opener=*/nullptr, ReadCallback,
                        /*closer=*/nullptr) != ARCHIVE_OK) {
    if (!ctx.error.ok()) return ctx.error;
    return absl::InvalidArgumentError(
        absl::StrCat("not a tar archive: ", ArchiveError(a.get())));
  }

  Indexer indexer(a.get(), &ctx, limits, sink, &index);
  absl::Status s = indexer.Run();
  if (!s.ok()) return s;

  // Read the rest of the input so gzip CRCs and zstd frames are checked and
  // the source is consumed. After the end-of-archive marker a tar holds
  // only zeros, padding its last record (10240 bytes by default):
  // anything else would be entries that `tar -i` extracts and the index
  // never saw. Compressed, at most 4 MiB of zeros (a blocking factor of
  // 8192), or the padding would be a decompression bomb outside
  // max_unpacked_bytes; uncompressed, every zero was uploaded and stored
  // (GNU tar's -b goes up to 65535: 32 MiB records).
  constexpr uint64_t kMaxTrailingZeros = 4 << 20;
  const bool compressed = index.compression != ArtefactRecord::NONE;
  uint64_t trailing = 0;
  auto after_the_end = [&trailing, compressed](absl::string_view bytes) {
    if (bytes.find_first_not_of('\0') != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          "corrupt tar archive: data after its end-of-archive marker");
    }
    trailing += bytes.size();
    if (compressed && trailing > kMaxTrailingZeros) {
      return absl::InvalidArgumentError(absl::StrCat(
          "corrupt tar archive: more than ", kMaxTrailingZeros,
          " bytes of zeros after its end-of-archive marker (compressed)"));
    }
    return absl::OkStatus();
  };
  // What libarchive read ahead past the marker, then the rest.
  if (absl::Status s = after_the_end(UnconsumedTail(ctx, a.get())); !s.ok()) {
    return s;
  }
  for (;;) {
    absl::StatusOr<absl::string_view> rest = decoder->Read();
    if (!rest.ok()) return rest.status();
    if (rest->empty()) break;
    if (absl::Status s = after_the_end(*rest); !s.ok()) return s;
  }
  return index;
}

}  // namespace

absl::StatusOr<ArchiveIndex> IndexArchive(ByteSource& source,
                                          const ArchiveLimits& limits,
                                          FileContentSink* sink) {
  absl::StatusOr<ArchiveIndex> index = Index(source, limits, sink);
  if (index.ok()) return index;
  absl::Status s = index.status();
  if (s.GetPayload(kNotArchivePayload).has_value()) {
    s.ErasePayload(kNotArchivePayload);
  } else if (absl::IsInvalidArgument(s) || absl::IsResourceExhausted(s) ||
             absl::IsOutOfRange(s)) {
    s.SetPayload(kRejectionPayload, absl::Cord());
  }
  return s;
}

bool IsArchiveRejection(const absl::Status& status) {
  return status.GetPayload(kRejectionPayload).has_value();
}

absl::Status FillContentDigests(const std::vector<Digest>& digests,
                                ArchiveIndex* index) {
  if (digests.size() != index->regular_files) {
    return absl::InvalidArgumentError(
        absl::StrCat("FillContentDigests: ", digests.size(), " digests for ",
                     index->regular_files, " regular files"));
  }
  size_t next = 0;
  for (IndexedEntry& e : index->entries) {
    store::FileRecord& rec = e.record;
    if (rec.type() == store::FileRecord::REGULAR) {
      rec.set_content_digest(std::string(digests[next++].raw()));
    } else if (rec.type() == store::FileRecord::HARDLINK) {
      // entry_id is the 1-based position of the (earlier) target.
      rec.set_content_digest(
          index->entries[rec.entry_id() - 1].record.content_digest());
    }
  }
  return absl::OkStatus();
}

}  // namespace cairn
