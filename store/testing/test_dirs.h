// Copyright 2026 The Cairn Authors.
//
// Scratch directories for tests.

#ifndef CAIRN_STORE_TESTING_TEST_DIRS_H_
#define CAIRN_STORE_TESTING_TEST_DIRS_H_

#include <string>
#include <vector>

#include "absl/strings/string_view.h"

namespace cairn::testing {

// A path under $TEST_TMPDIR (else /tmp) named "<prefix>_<pid>_<n>", unique
// per call in this process; anything at that path is removed first. The
// directory itself is not created.
std::string FreshTestDir(absl::string_view prefix);

// Number of regular files below `dir`, recursively; 0 if it does not exist.
int CountRegularFiles(const std::string& dir);

// The names in `dir` (readdir(3) order, without "." and ".."); records a
// gtest failure naming the directory and errno if it cannot be opened.
std::vector<std::string> ReadDirNames(const std::string& dir);

}  // namespace cairn::testing

#endif  // CAIRN_STORE_TESTING_TEST_DIRS_H_
