// Copyright 2026 The Cairn Authors.

#include "tools/pack/packer.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <unistd.h>

#include <clocale>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "store/digest.h"

namespace cairn {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

// ---------------------------------------------------------------------------
// Helpers.

std::string TestDir(const std::string& name) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  std::string dir = absl::StrCat(tmp != nullptr ? tmp : "/tmp", "/", name);
  std::string cmd = absl::StrCat("rm -rf '", dir, "' && mkdir -p '", dir, "'");
  EXPECT_EQ(system(cmd.c_str()), 0);
  return dir;
}

void MakeDir(const std::string& path, mode_t mode = 0755) {
  ASSERT_EQ(mkdir(path.c_str(), mode), 0) << path;
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

void WriteFile(const std::string& path, const std::string& content,
               mode_t mode = 0644) {
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << content;
    ASSERT_TRUE(out.good()) << path;
  }
  ASSERT_EQ(chmod(path.c_str(), mode), 0) << path;
}

void SetMtime(const std::string& path, time_t seconds) {
  struct timespec times[2] = {{seconds, 123}, {seconds, 456}};
  ASSERT_EQ(utimensat(AT_FDCWD, path.c_str(), times, AT_SYMLINK_NOFOLLOW), 0)
      << path;
}

std::string ReadBytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream buffer;
  buffer << in.rdbuf();
  return buffer.str();
}

bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

struct Entry {
  std::string path;
  char type;  // 'f', 'd', 'l' (symlink), 'h' (hardlink).
  int perm;
  int64_t size;
  std::string link;
  std::string content;
  int64_t mtime;
  int64_t uid, gid;
  std::string uname, gname;

  std::string Short() const {
    std::string s = absl::StrCat(std::string(1, type), " ",
                                 absl::StrFormat("%04o", perm), " ", path);
    if (!link.empty()) absl::StrAppend(&s, " -> ", link);
    return s;
  }
};

// Reads an archive back with libarchive.
std::vector<Entry> ReadEntries(const std::string& path) {
  std::vector<Entry> entries;
  archive* a = archive_read_new();
  archive_read_support_filter_all(a);
  archive_read_support_format_all(a);
  EXPECT_EQ(archive_read_open_filename(a, path.c_str(), 1 << 16), ARCHIVE_OK)
      << archive_error_string(a);
  archive_entry* e;
  int r;
  // ARCHIVE_WARN: a UTF-8 name the test's "C" locale cannot represent.
  while ((r = archive_read_next_header(a, &e)) == ARCHIVE_OK ||
         r == ARCHIVE_WARN) {
    Entry entry;
    const char* path = archive_entry_pathname(e);
    if (path == nullptr) path = archive_entry_pathname_utf8(e);
    entry.path = path != nullptr ? path : "";
    const char* hardlink = archive_entry_hardlink(e);
    const char* symlink = archive_entry_symlink(e);
    if (hardlink != nullptr) {
      entry.type = 'h';
      entry.link = hardlink;
    } else if (archive_entry_filetype(e) == AE_IFDIR) {
      entry.type = 'd';
    } else if (archive_entry_filetype(e) == AE_IFLNK) {
      entry.type = 'l';
      entry.link = symlink != nullptr ? symlink : "";
    } else {
      entry.type = 'f';
    }
    entry.perm = archive_entry_perm(e);
    entry.size = archive_entry_size(e);
    entry.mtime = archive_entry_mtime(e);
    entry.uid = archive_entry_uid(e);
    entry.gid = archive_entry_gid(e);
    entry.uname = archive_entry_uname(e) ? archive_entry_uname(e) : "";
    entry.gname = archive_entry_gname(e) ? archive_entry_gname(e) : "";
    char buf[65536];
    la_ssize_t n;
    while ((n = archive_read_data(a, buf, sizeof(buf))) > 0) {
      entry.content.append(buf, n);
    }
    entries.push_back(entry);
  }
  archive_read_free(a);
  return entries;
}

std::vector<std::string> Shorts(const std::vector<Entry>& entries) {
  std::vector<std::string> out;
  for (const Entry& e : entries) out.push_back(e.Short());
  return out;
}

// The type flags of every header in a .tar.gz, in order ("x" for pax
// extended headers, "0" regular, "5" directory, ...).
std::string TypeFlags(const std::string& tar_gz) {
  const std::string tar = tar_gz + ".tar";
  EXPECT_EQ(system(("gzip -dc " + tar_gz + " > " + tar).c_str()), 0);
  const std::string bytes = ReadBytes(tar);
  std::string flags;
  size_t pos = 0;
  while (pos + 512 <= bytes.size() && bytes[pos] != '\0') {
    flags += bytes[pos + 156];
    const uint64_t size =
        std::strtoull(bytes.substr(pos + 124, 12).c_str(), nullptr, 8);
    pos += 512;
    if (bytes[pos - 512 + 156] == '0' || bytes[pos - 512 + 156] == 'x') {
      pos += (size + 511) / 512 * 512;
    }
  }
  return flags;
}

// Builds the same logical tree; `variant` changes creation order, umask,
// permissions (that normalise equally) and times.
void BuildTree(const std::string& root, int variant) {
  const mode_t old_umask = umask(variant == 0 ? 022 : 077);
  MakeDir(root, variant == 0 ? 0755 : 0700);
  auto files = [&]() {
    WriteFile(root + "/README", "hello\n", variant == 0 ? 0644 : 0600);
    WriteFile(root + "/bin/tool", "#!/bin/sh\necho hi\n",
              variant == 0 ? 0755 : 0700);
    WriteFile(root + "/bin/data.bin", std::string(100000, 'x'),
              variant == 0 ? 0664 : 0400);
    WriteFile(root + "/a-b", "dash", 0644);
    WriteFile(root + "/a0", "zero", variant == 0 ? 0644 : 0666);
    WriteFile(root + "/a/x", "in a", 0644);
    ASSERT_EQ(symlink("bin/tool", (root + "/run").c_str()), 0);
  };
  auto dirs = [&]() {
    MakeDir(root + "/bin", variant == 0 ? 0755 : 0711);
    MakeDir(root + "/a", 0755);
    MakeDir(root + "/empty", variant == 0 ? 0755 : 0700);
  };
  if (variant == 0) {
    dirs();
    files();
  } else {
    // Reverse order, directories created in a different order too.
    MakeDir(root + "/empty", 0700);
    MakeDir(root + "/a", 0700);
    MakeDir(root + "/bin", 0711);
    ASSERT_EQ(symlink("bin/tool", (root + "/run").c_str()), 0);
    WriteFile(root + "/a/x", "in a", 0600);
    WriteFile(root + "/a0", "zero", 0666);
    WriteFile(root + "/a-b", "dash", 0600);
    WriteFile(root + "/bin/data.bin", std::string(100000, 'x'), 0400);
    WriteFile(root + "/bin/tool", "#!/bin/sh\necho hi\n", 0700);
    WriteFile(root + "/README", "hello\n", 0600);
    for (const char* p : {"/README", "/bin/tool", "/bin/data.bin", "/a-b",
                          "/a0", "/a/x", "/run", "/a", "/bin", "/empty", ""}) {
      SetMtime(root + p, 1700000000 + variant);
    }
  }
  umask(old_umask);
}

// ---------------------------------------------------------------------------
// PackDirectory.

TEST(PackDirectoryTest, SameTreeTwiceGivesIdenticalBytes) {
  const std::string dir = TestDir("twice");
  BuildTree(dir + "/tree", 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/1.tar.gz").ok());
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/2.tar.gz").ok());
  const std::string first = ReadBytes(dir + "/1.tar.gz");
  EXPECT_FALSE(first.empty());
  EXPECT_EQ(first, ReadBytes(dir + "/2.tar.gz"));
}

TEST(PackDirectoryTest, OrderUmaskModesAndTimesDoNotMatter) {
  const std::string dir = TestDir("variants");
  BuildTree(dir + "/t0", 0);
  BuildTree(dir + "/t1", 1);
  ASSERT_TRUE(PackDirectory(dir + "/t0", dir + "/0.tar.gz").ok());
  ASSERT_TRUE(PackDirectory(dir + "/t1", dir + "/1.tar.gz").ok());
  EXPECT_EQ(ReadBytes(dir + "/0.tar.gz"), ReadBytes(dir + "/1.tar.gz"));
}

TEST(PackDirectoryTest, EntriesFollowTheConvention) {
  const std::string dir = TestDir("layout");
  BuildTree(dir + "/tree", 1);
  absl::StatusOr<PackResult> result =
      PackDirectoryWithResult(dir + "/tree", dir + "/out.tar.gz");
  ASSERT_TRUE(result.ok()) << result.status();
  const std::vector<Entry> entries = ReadEntries(dir + "/out.tar.gz");
  // Bytewise order with "/" after directory names: "a-b" < "a/" < "a0".
  EXPECT_THAT(Shorts(entries),
              ElementsAre("f 0644 README", "f 0644 a-b", "d 0755 a/",
                          "f 0644 a/x", "f 0644 a0", "d 0755 bin/",
                          "f 0644 bin/data.bin", "f 0755 bin/tool",
                          "d 0755 empty/", "l 0777 run -> bin/tool"));
  for (const Entry& e : entries) {
    EXPECT_EQ(e.mtime, 0) << e.path;
    EXPECT_EQ(e.uid, 0) << e.path;
    EXPECT_EQ(e.gid, 0) << e.path;
    EXPECT_EQ(e.uname, "") << e.path;
    EXPECT_EQ(e.gname, "") << e.path;
  }
  EXPECT_EQ(entries[7].content, "#!/bin/sh\necho hi\n");
  EXPECT_EQ(entries[6].content, std::string(100000, 'x'));

  EXPECT_EQ(result->entries, 10u);
  EXPECT_EQ(result->regular_files, 6u);
  EXPECT_EQ(result->file_bytes, 6u + 4 + 4 + 4 + 100000 + 18);
  const std::string bytes = ReadBytes(dir + "/out.tar.gz");
  EXPECT_EQ(result->archive_bytes, bytes.size());
  EXPECT_EQ(result->digest, Sha256Of(bytes));
}

TEST(PackDirectoryTest, AsciiTreeHasNoPaxHeadersAndGnuTarReadsIt) {
  const std::string dir = TestDir("plain_ustar");
  BuildTree(dir + "/tree", 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  EXPECT_EQ(TypeFlags(dir + "/out.tar.gz"), "0050050052");
  // GNU tar lists it silently, in our order.
  ASSERT_EQ(system(("tar tzf " + dir + "/out.tar.gz > " + dir + "/list 2> " +
                    dir + "/stderr")
                       .c_str()),
            0);
  EXPECT_EQ(ReadBytes(dir + "/stderr"), "");
  EXPECT_EQ(ReadBytes(dir + "/list"),
            "README\na-b\na/\na/x\na0\nbin/\nbin/data.bin\nbin/tool\n"
            "empty/\nrun\n");
}

TEST(PackDirectoryTest, GzipHeaderHasNoNameAndNoTimestamp) {
  const std::string dir = TestDir("gzip");
  BuildTree(dir + "/tree", 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  const std::string bytes = ReadBytes(dir + "/out.tar.gz");
  ASSERT_GE(bytes.size(), 10u);
  EXPECT_EQ(static_cast<unsigned char>(bytes[0]), 0x1f);
  EXPECT_EQ(static_cast<unsigned char>(bytes[1]), 0x8b);
  EXPECT_EQ(bytes[2], 8);  // Deflate.
  EXPECT_EQ(bytes[3], 0);  // No FNAME, FCOMMENT, FEXTRA, FHCRC.
  EXPECT_EQ(bytes.substr(4, 4), std::string(4, '\0'));  // MTIME 0.
  EXPECT_EQ(bytes[9], 3);                               // OS: Unix.
  // The system gzip agrees the archive is intact.
  EXPECT_EQ(system(("gzip -t " + dir + "/out.tar.gz").c_str()), 0);
}

TEST(PackDirectoryTest, ModesAreNormalised) {
  const std::string dir = TestDir("modes");
  MakeDir(dir + "/tree", 0700);
  MakeDir(dir + "/tree/private", 0700);
  WriteFile(dir + "/tree/secret", "s", 0600);
  WriteFile(dir + "/tree/mine", "m", 0700);
  WriteFile(dir + "/tree/group-exec", "g", 0610);
  WriteFile(dir + "/tree/setuid", "u", 04755);
  WriteFile(dir + "/tree/readonly", "r", 0444);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  EXPECT_THAT(Shorts(ReadEntries(dir + "/out.tar.gz")),
              ElementsAre("f 0755 group-exec", "f 0755 mine", "d 0755 private/",
                          "f 0644 readonly", "f 0644 secret", "f 0755 setuid"));
}

TEST(PackDirectoryTest, SymlinksAreKeptNotFollowed) {
  const std::string dir = TestDir("symlinks");
  MakeDir(dir + "/tree");
  MakeDir(dir + "/outside");
  WriteFile(dir + "/outside/big", "not packed");
  ASSERT_EQ(symlink("../outside", (dir + "/tree/dirlink").c_str()), 0);
  ASSERT_EQ(symlink("/nonexistent/target", (dir + "/tree/dangling").c_str()),
            0);
  const std::string long_target =
      std::string(150, 'l') + "/" + std::string(150, 'm');
  ASSERT_EQ(symlink(long_target.c_str(), (dir + "/tree/long").c_str()), 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  EXPECT_THAT(Shorts(ReadEntries(dir + "/out.tar.gz")),
              ElementsAre("l 0777 dangling -> /nonexistent/target",
                          "l 0777 dirlink -> ../outside",
                          "l 0777 long -> " + long_target));
}

// A file rewritten in place at the same size while it is read, and a
// directory swapped for a symlink to outside the tree before it is opened,
// fail the pack (Aborted) instead of packing mixed or foreign bytes; the
// output is not written.
TEST(PackDirectoryTest, ChangesDuringThePackAbortIt) {
  const std::string dir = TestDir("changes");
  MakeDir(dir + "/tree");
  MakeDir(dir + "/tree/d");
  WriteFile(dir + "/tree/d/f", "before");
  MakeDir(dir + "/outside");
  WriteFile(dir + "/outside/secret", "not packed");

  PackOptions rewrite;
  rewrite.testing_before_read = [&](const std::string& rel) {
    if (rel != "d/f") return;
    // Same size, new bytes and a new mtime (the write sets it).
    const int fd = open((dir + "/tree/d/f").c_str(), O_WRONLY | O_CLOEXEC);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(pwrite(fd, "AFTER!", 6, 0), 6);
    close(fd);
  };
  absl::StatusOr<PackResult> r =
      PackDirectoryWithResult(dir + "/tree", dir + "/out.tar.gz", rewrite);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("changed while being packed"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.tar.gz"));

  PackOptions swap;
  swap.testing_before_read = [&](const std::string& rel) {
    if (rel != "d") return;
    std::filesystem::rename(dir + "/tree/d", dir + "/d.moved");
    std::filesystem::create_directory_symlink(dir + "/outside",
                                              dir + "/tree/d");
  };
  r = PackDirectoryWithResult(dir + "/tree", dir + "/out.tar.gz", swap);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kAborted) << r.status();
  EXPECT_THAT(r.status().message(), HasSubstr("replaced while being packed"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/out.tar.gz"));
}

TEST(PackDirectoryTest, RootMayBeASymlinkToADirectory) {
  const std::string dir = TestDir("rootlink");
  MakeDir(dir + "/tree");
  WriteFile(dir + "/tree/f", "x");
  ASSERT_EQ(symlink("tree", (dir + "/link").c_str()), 0);
  ASSERT_TRUE(PackDirectory(dir + "/link/", dir + "/out.tar.gz").ok());
  EXPECT_THAT(Shorts(ReadEntries(dir + "/out.tar.gz")),
              ElementsAre("f 0644 f"));
}

TEST(PackDirectoryTest, HardlinksAreStoredOnce) {
  const std::string dir = TestDir("hardlinks");
  MakeDir(dir + "/tree");
  MakeDir(dir + "/tree/z");
  WriteFile(dir + "/tree/z/first", "shared content", 0755);
  ASSERT_EQ(link((dir + "/tree/z/first").c_str(), (dir + "/tree/b").c_str()),
            0);
  ASSERT_EQ(link((dir + "/tree/z/first").c_str(), (dir + "/tree/c").c_str()),
            0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  const std::vector<Entry> entries = ReadEntries(dir + "/out.tar.gz");
  // "b" comes first in entry order, so it holds the content.
  EXPECT_THAT(Shorts(entries), ElementsAre("f 0755 b", "h 0755 c -> b",
                                           "d 0755 z/", "h 0755 z/first -> b"));
  EXPECT_EQ(entries[0].content, "shared content");
  EXPECT_EQ(entries[1].size, 0);
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/out.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok()) << absl::StrJoin(check->reasons, "\n");
}

TEST(PackDirectoryTest, FifoIsRejectedAndNothingIsWritten) {
  const std::string dir = TestDir("fifo");
  MakeDir(dir + "/tree");
  MakeDir(dir + "/tree/sub");
  WriteFile(dir + "/tree/a", "x");
  ASSERT_EQ(mkfifo((dir + "/tree/sub/pipe").c_str(), 0644), 0);
  absl::Status status = PackDirectory(dir + "/tree", dir + "/out.tar.gz");
  EXPECT_EQ(status.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(status.message(),
              AllOf(HasSubstr(dir + "/tree/sub/pipe"), HasSubstr("FIFO")));
  EXPECT_FALSE(Exists(dir + "/out.tar.gz"));
  // No temporary file is left either.
  EXPECT_EQ(system(("test -z \"$(ls " + dir + " | grep tmp)\"").c_str()), 0);
}

TEST(PackDirectoryTest, Errors) {
  const std::string dir = TestDir("errors");
  WriteFile(dir + "/file", "x");
  EXPECT_EQ(PackDirectory(dir + "/missing", dir + "/o.tar.gz").code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(PackDirectory(dir + "/file", dir + "/o.tar.gz").code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(PackDirectory(dir, dir + "/no/such/dir/o.tar.gz").code(),
            absl::StatusCode::kNotFound);
  PackOptions bad;
  bad.gzip_level = 0;
  EXPECT_EQ(PackDirectory(dir, dir + "/o.tar.gz", bad).code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PackDirectoryTest, OutputInsideTheTreeIsNotPacked) {
  const std::string dir = TestDir("inside");
  MakeDir(dir + "/tree");
  WriteFile(dir + "/tree/f", "x");
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/tree/out.tar.gz").ok());
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/tree/out.tar.gz").ok());
  EXPECT_THAT(Shorts(ReadEntries(dir + "/tree/out.tar.gz")),
              ElementsAre("f 0644 f"));
}

TEST(PackDirectoryTest, EmptyDirectory) {
  const std::string dir = TestDir("empty");
  MakeDir(dir + "/tree");
  absl::StatusOr<PackResult> result =
      PackDirectoryWithResult(dir + "/tree", dir + "/out.tar.gz");
  ASSERT_TRUE(result.ok()) << result.status();
  EXPECT_EQ(result->entries, 0u);
  EXPECT_THAT(ReadEntries(dir + "/out.tar.gz"), IsEmpty());
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/out.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok()) << absl::StrJoin(check->reasons, "\n");
}

TEST(PackDirectoryTest, LargeFileIsStreamedIntact) {
  const std::string dir = TestDir("large");
  MakeDir(dir + "/tree");
  std::string content(5 * 1024 * 1024 + 17, '\0');
  uint32_t x = 12345;
  for (char& c : content) {
    x = x * 1103515245 + 12345;
    c = static_cast<char>(x >> 24);
  }
  WriteFile(dir + "/tree/big", content);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  const std::vector<Entry> entries = ReadEntries(dir + "/out.tar.gz");
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(entries[0].size, static_cast<int64_t>(content.size()));
  EXPECT_TRUE(entries[0].content == content);
}

// Paths longer than PATH_MAX (GNU tar packs them): every file is opened
// relative to its directory.
TEST(PackDirectoryTest, TreeDeeperThanPathMaxPacks) {
  const std::string dir = TestDir("deep");
  MakeDir(dir + "/tree");
  const std::string level(200, 'd');
  int fd = open((dir + "/tree").c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  ASSERT_GE(fd, 0);
  std::string rel;
  for (int i = 0; i < 25; ++i) {  // 25 * 201 bytes: over PATH_MAX (4096).
    ASSERT_EQ(mkdirat(fd, level.c_str(), 0755), 0) << strerror(errno);
    const int next =
        openat(fd, level.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    ASSERT_GE(next, 0) << strerror(errno);
    close(fd);
    fd = next;
    rel += level + "/";
  }
  const int f = openat(fd, "leaf", O_WRONLY | O_CREAT | O_CLOEXEC, 0644);
  ASSERT_GE(f, 0) << strerror(errno);
  ASSERT_EQ(write(f, "deep\n", 5), 5);
  close(f);
  ASSERT_EQ(symlinkat("leaf", fd, "link"), 0);
  close(fd);
  ASSERT_GT(rel.size(), static_cast<size_t>(PATH_MAX));

  absl::Status s = PackDirectory(dir + "/tree", dir + "/out.tar.gz");
  ASSERT_TRUE(s.ok()) << s;
  const std::vector<Entry> entries = ReadEntries(dir + "/out.tar.gz");
  ASSERT_EQ(entries.size(), 27u);  // 25 directories, the file, the link.
  EXPECT_EQ(entries[25].path, rel + "leaf");
  EXPECT_EQ(entries[25].content, "deep\n");
  EXPECT_EQ(entries[26].path, rel + "link");
}

TEST(PackDirectoryTest, LongAndNonAsciiNamesAreLocaleIndependent) {
  const std::string dir = TestDir("names");
  MakeDir(dir + "/tree");
  const std::string deep = std::string(120, 'd');
  MakeDir(dir + "/tree/" + deep);
  WriteFile(dir + "/tree/" + deep + "/" + std::string(110, 'f'), "long");
  WriteFile(dir + "/tree/caf\xc3\xa9.txt", "utf-8");
  WriteFile(dir + "/tree/raw\xff\xfe", "not utf-8");
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/c.tar.gz").ok());
  const char* old = setlocale(LC_ALL, nullptr);
  const std::string saved = old != nullptr ? old : "C";
  if (setlocale(LC_ALL, "C.UTF-8") != nullptr) {
    ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/u.tar.gz").ok());
    setlocale(LC_ALL, saved.c_str());
    EXPECT_EQ(ReadBytes(dir + "/c.tar.gz"), ReadBytes(dir + "/u.tar.gz"));
  }
  // setlocale() does not matter either.
  ASSERT_NE(setlocale(LC_ALL, "C"), nullptr);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/c2.tar.gz").ok());
  setlocale(LC_ALL, saved.c_str());
  EXPECT_EQ(ReadBytes(dir + "/c.tar.gz"), ReadBytes(dir + "/c2.tar.gz"));
  // pax headers only where ustar falls short: the UTF-8 name ("path"), the
  // 121-byte directory name and the 231-byte path (ustar holds 100 bytes,
  // or a 155-byte prefix split at a "/"), and the invalid UTF-8 name
  // ("hdrcharset=BINARY" and "path").
  EXPECT_EQ(TypeFlags(dir + "/c.tar.gz"), "x0x5x0x0");
  EXPECT_THAT(Shorts(ReadEntries(dir + "/c.tar.gz")),
              ElementsAre("f 0644 caf\xc3\xa9.txt", "d 0755 " + deep + "/",
                          "f 0644 " + deep + "/" + std::string(110, 'f'),
                          "f 0644 raw\xff\xfe"));
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/c.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok()) << absl::StrJoin(check->reasons, "\n");
  EXPECT_EQ(check->entries, 4u);
}

// ---------------------------------------------------------------------------
// CheckArchive.

TEST(CheckArchiveTest, OwnOutputIsOk) {
  const std::string dir = TestDir("check_ok");
  BuildTree(dir + "/tree", 1);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/out.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_TRUE(check->ok()) << absl::StrJoin(check->reasons, "\n");
  EXPECT_THAT(check->reasons, IsEmpty());
  EXPECT_EQ(check->compression, "gzip");
  EXPECT_EQ(check->entries, 10u);
}

// Writes a gzip'd pax_restricted tarball whose entries have real metadata.
void WriteUnnormalisedArchive(const std::string& path) {
  archive* a = archive_write_new();
  archive_write_set_format_pax_restricted(a);
  archive_write_add_filter_gzip(a);
  ASSERT_EQ(archive_write_open_filename(a, path.c_str()), ARCHIVE_OK);
  archive_entry* e = archive_entry_new();
  auto add = [&](const char* name, int type, int perm, const char* data) {
    archive_entry_clear(e);
    archive_entry_set_pathname(e, name);
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, perm);
    archive_entry_set_mtime(e, 1700000000, 0);
    archive_entry_set_uid(e, 1000);
    archive_entry_set_gid(e, 1000);
    archive_entry_set_uname(e, "alice");
    archive_entry_set_gname(e, "staff");
    archive_entry_set_size(e, strlen(data));
    ASSERT_EQ(archive_write_header(a, e), ARCHIVE_OK);
    archive_write_data(a, data, strlen(data));
  };
  add("zeta", AE_IFREG, 0600, "z");
  add("alpha", AE_IFREG, 0644, "a");
  add("sub/file", AE_IFREG, 0644, "f");
  archive_entry_free(e);
  archive_write_close(a);
  archive_write_free(a);
}

TEST(CheckArchiveTest, ReportsLibarchiveTarballWithMetadata) {
  const std::string dir = TestDir("check_meta");
  WriteUnnormalisedArchive(dir + "/bad.tar.gz");
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/bad.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->ok());
  const std::string all = absl::StrJoin(check->reasons, "\n");
  EXPECT_THAT(all, HasSubstr("gzip header has mtime"));
  EXPECT_THAT(all, HasSubstr("entry 'zeta': mtime 1700000000, want 0"));
  EXPECT_THAT(all, HasSubstr("uid 1000, want 0"));
  EXPECT_THAT(all, HasSubstr("uname 'alice', want empty"));
  EXPECT_THAT(all, HasSubstr("gname 'staff', want empty"));
  EXPECT_THAT(all, HasSubstr("mode 0600, want 0644 or 0755"));
  EXPECT_THAT(all, HasSubstr("entry 'alpha'"));
  EXPECT_THAT(all, HasSubstr("out of order: comes after 'zeta'"));
  EXPECT_THAT(all, HasSubstr("parent directory 'sub/' has no earlier entry"));
  EXPECT_EQ(check->problems, check->reasons.size());
}

TEST(CheckArchiveTest, ReportsSystemTar) {
  const std::string dir = TestDir("check_tar");
  BuildTree(dir + "/tree", 0);
  ASSERT_EQ(system(("cd " + dir + " && tar czf sys.tar.gz -C tree .").c_str()),
            0);
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/sys.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->ok());
  const std::string all = absl::StrJoin(check->reasons, "\n");
  EXPECT_THAT(all, HasSubstr("GNU tar headers"));
  EXPECT_THAT(all, HasSubstr("path has a './' prefix"));
  EXPECT_THAT(all, HasSubstr("mtime"));

  // Even the closest GNU tar invocation differs ("./" prefix, modes, order).
  ASSERT_EQ(system(("cd " + dir +
                    " && tar --sort=name --mtime=@0 --owner=0 --group=0 "
                    "--numeric-owner --format=ustar -cf - -C tree . | "
                    "gzip -n > ustar.tar.gz")
                       .c_str()),
            0);
  check = CheckArchive(dir + "/ustar.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_FALSE(check->ok());
  const std::string ustar = absl::StrJoin(check->reasons, "\n");
  EXPECT_THAT(ustar, HasSubstr("'./' prefix"));
  EXPECT_THAT(ustar, Not(HasSubstr("GNU tar headers")));
  EXPECT_THAT(ustar, Not(HasSubstr("gzip header")));
  EXPECT_THAT(ustar, Not(HasSubstr("uid")));
}

TEST(CheckArchiveTest, ReasonsAreCapped) {
  const std::string dir = TestDir("check_cap");
  MakeDir(dir + "/tree");
  for (int i = 0; i < 30; ++i) {
    WriteFile(absl::StrCat(dir, "/tree/f", 100 + i), "x", 0600);
  }
  ASSERT_EQ(system(("cd " + dir + " && tar czf sys.tar.gz -C tree .").c_str()),
            0);
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/sys.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->reasons.size(), CheckResult::kMaxReasons);
  EXPECT_GT(check->problems, 30u);
}

TEST(CheckArchiveTest, PlainTarIsReadButReported) {
  const std::string dir = TestDir("check_plain");
  BuildTree(dir + "/tree", 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  ASSERT_EQ(
      system(("gzip -dc " + dir + "/out.tar.gz > " + dir + "/out.tar").c_str()),
      0);
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/out.tar");
  ASSERT_TRUE(check.ok()) << check.status();
  EXPECT_EQ(check->compression, "none");
  EXPECT_THAT(check->reasons,
              ElementsAre("archive is not compressed, want gzip"));
  EXPECT_EQ(check->entries, 10u);
}

// What follows the end-of-archive marker, and the gzip member: cairn pack
// writes neither padding nor a second member, so either is reported.
TEST(CheckArchiveTest, BytesAfterTheEndAreReported) {
  const std::string dir = TestDir("check_after_end");
  BuildTree(dir + "/tree", 0);
  const std::string out = dir + "/out.tar.gz";
  ASSERT_TRUE(PackDirectory(dir + "/tree", out).ok());
  auto sh = [](const std::string& command) {
    ASSERT_EQ(system(command.c_str()), 0) << command;
  };
  auto reasons = [](const std::string& path) {
    absl::StatusOr<CheckResult> check = CheckArchive(path);
    EXPECT_TRUE(check.ok()) << check.status();
    return check.ok() ? check->reasons : std::vector<std::string>{"error"};
  };
  sh("gzip -dc " + out + " > " + dir + "/plain.tar");
  // Record padding, as `tar` writes it.
  sh("cd " + dir + " && (cat plain.tar; head -c 9216 /dev/zero) | gzip -n > " +
     "pad.tar.gz");
  EXPECT_THAT(reasons(dir + "/pad.tar.gz"),
              ElementsAre("9216 bytes of zero padding after the "
                          "end-of-archive marker, want none"));
  sh("cd " + dir + " && (cat plain.tar; echo hidden) | gzip -n > data.tar.gz");
  EXPECT_THAT(reasons(dir + "/data.tar.gz"),
              ElementsAre(HasSubstr("data after the end-of-archive marker")));
  // A second gzip member; then bytes that are no gzip at all.
  const uint64_t size = std::filesystem::file_size(out);
  sh("cd " + dir + " && (cat out.tar.gz; echo x | gzip -n) > two.tar.gz");
  EXPECT_THAT(reasons(dir + "/two.tar.gz"),
              Contains(HasSubstr(
                  absl::StrCat(" bytes after the gzip member ending at "
                               "file offset ",
                               size,
                               " (another member or trailing data), want "
                               "one member ending the file"))));
  sh("cd " + dir + " && (cat out.tar.gz; echo junk) > junk.tar.gz");
  EXPECT_THAT(reasons(dir + "/junk.tar.gz"),
              Contains(HasSubstr("5 bytes after the gzip member")));
  EXPECT_THAT(reasons(out), IsEmpty());
}

TEST(CheckArchiveTest, PaxExtendedKeysAreReported) {
  const std::string dir = TestDir("check_pax");
  MakeDir(dir + "/tree");
  WriteFile(dir + "/tree/f", "x");
  ASSERT_EQ(system(("cd " + dir +
                    " && tar --format=pax --sort=name --mtime=@0 --owner=0 "
                    "--group=0 --numeric-owner -cf - -C tree f | gzip -n > "
                    "pax.tar.gz")
                       .c_str()),
            0);
  absl::StatusOr<CheckResult> check = CheckArchive(dir + "/pax.tar.gz");
  ASSERT_TRUE(check.ok()) << check.status();
  const std::string all = absl::StrJoin(check->reasons, "\n");
  EXPECT_THAT(all, HasSubstr("pax header sets"));
}

TEST(CheckArchiveTest, Errors) {
  const std::string dir = TestDir("check_errors");
  EXPECT_EQ(CheckArchive(dir + "/missing").status().code(),
            absl::StatusCode::kNotFound);
  WriteFile(dir + "/empty", "");
  EXPECT_EQ(CheckArchive(dir + "/empty").status().code(),
            absl::StatusCode::kInvalidArgument);
  WriteFile(dir + "/text", std::string(2000, 'n'));
  EXPECT_EQ(CheckArchive(dir + "/text").status().code(),
            absl::StatusCode::kInvalidArgument);

  BuildTree(dir + "/tree", 0);
  ASSERT_TRUE(PackDirectory(dir + "/tree", dir + "/out.tar.gz").ok());
  const std::string bytes = ReadBytes(dir + "/out.tar.gz");
  WriteFile(dir + "/cut.tar.gz", bytes.substr(0, bytes.size() / 2));
  const absl::StatusCode cut =
      CheckArchive(dir + "/cut.tar.gz").status().code();
  EXPECT_TRUE(cut == absl::StatusCode::kDataLoss) << cut;
}

}  // namespace
}  // namespace cairn
