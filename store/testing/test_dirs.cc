// Copyright 2026 The Cairn Authors.

#include "store/testing/test_dirs.h"

#include <dirent.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace cairn::testing {

std::string FreshTestDir(absl::string_view prefix) {
  static std::atomic<int> n{0};
  const char* base = std::getenv("TEST_TMPDIR");
  std::string dir =
      absl::StrCat(base ? base : "/tmp", "/", prefix, "_", getpid(), "_", n++);
  std::filesystem::remove_all(dir);
  return dir;
}

int CountRegularFiles(const std::string& dir) {
  if (!std::filesystem::exists(dir)) return 0;
  int n = 0;
  for (const auto& e : std::filesystem::recursive_directory_iterator(dir)) {
    if (e.is_regular_file()) ++n;
  }
  return n;
}

std::vector<std::string> ReadDirNames(const std::string& dir) {
  std::vector<std::string> names;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) {
    ADD_FAILURE() << "opendir " << dir << ": " << strerror(errno);
    return names;
  }
  while (dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  closedir(d);
  return names;
}

}  // namespace cairn::testing
