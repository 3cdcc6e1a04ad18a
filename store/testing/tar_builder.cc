// Copyright 2026 The Cairn Authors.

#include "store/testing/tar_builder.h"

#include <archive.h>
#include <archive_entry.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdio>
#include <cstdlib>

namespace cairn::testing {
namespace {

void Check(int rc, archive* a, const char* what) {
  if (rc < ARCHIVE_OK) {
    std::fprintf(stderr, "BuildTar: %s: %s\n", what, archive_error_string(a));
    std::abort();
  }
}

la_ssize_t AppendToString(archive*, void* out, const void* data, size_t n) {
  static_cast<std::string*>(out)->append(static_cast<const char*>(data), n);
  return static_cast<la_ssize_t>(n);
}

}  // namespace

std::string BuildTar(const std::vector<TarEntry>& entries,
                     TarCompression compression) {
  archive* a = archive_write_new();
  Check(archive_write_set_format_pax_restricted(a), a, "format");
  // Names as bytes, whatever the locale (those that are not UTF-8 too).
  Check(archive_write_set_format_option(a, "pax", "hdrcharset", "BINARY"), a,
        "hdrcharset");
  switch (compression) {
    case TarCompression::kNone:
      Check(archive_write_add_filter_none(a), a, "filter");
      break;
    case TarCompression::kGzip:
      Check(archive_write_add_filter_gzip(a), a, "filter");
      break;
    case TarCompression::kZstd:
      Check(archive_write_add_filter_zstd(a), a, "filter");
      break;
  }
  // Exactly the archive's bytes; the final block is not padded (as
  // `tar czf` writes it).
  Check(archive_write_set_bytes_in_last_block(a, 1), a, "last block");
  std::string out;
  Check(archive_write_open(a, &out, /*opener=*/nullptr, AppendToString,
                           /*closer=*/nullptr),
        a, "open");
  for (const TarEntry& e : entries) {
    archive_entry* entry = archive_entry_new();
    archive_entry_set_pathname(entry, e.path.c_str());
    archive_entry_set_perm(entry, e.mode);
    archive_entry_set_mtime(entry, 0, 0);
    switch (e.type) {
      case TarEntry::kFile:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_size(entry, e.content.size());
        break;
      case TarEntry::kDir:
        archive_entry_set_filetype(entry, AE_IFDIR);
        break;
      case TarEntry::kSymlink:
        archive_entry_set_filetype(entry, AE_IFLNK);
        archive_entry_set_symlink(entry, e.content.c_str());
        break;
      case TarEntry::kHardlink:
        archive_entry_set_filetype(entry, AE_IFREG);
        archive_entry_set_hardlink(entry, e.content.c_str());
        archive_entry_set_size(entry, 0);
        break;
      case TarEntry::kCharDevice:
        archive_entry_set_filetype(entry, AE_IFCHR);
        archive_entry_set_rdev(entry, makedev(1, 3));
        break;
      case TarEntry::kFifo:
        archive_entry_set_filetype(entry, AE_IFIFO);
        break;
    }
    Check(archive_write_header(a, entry), a, "header");
    if (e.type == TarEntry::kFile && !e.content.empty()) {
      if (archive_write_data(a, e.content.data(), e.content.size()) < 0) {
        Check(ARCHIVE_FATAL, a, "data");
      }
    }
    archive_entry_free(entry);
  }
  Check(archive_write_close(a), a, "close");
  archive_write_free(a);
  return out;
}

std::string PatternBytes(size_t n, uint32_t seed) {
  std::string bytes(n, '\0');
  for (char& c : bytes) {
    seed = seed * 1103515245u + 12345u;
    c = static_cast<char>(seed >> 24);
  }
  return bytes;
}

}  // namespace cairn::testing
