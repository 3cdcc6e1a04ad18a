// Copyright 2026 The Cairn Authors.
//
// Path helpers shared by the store and the CLI. Pure functions on strings;
// thread-safe.

#ifndef CAIRN_STORE_PATHS_H_
#define CAIRN_STORE_PATHS_H_

#include <string>

namespace cairn {

// The directory holding `path`, textually: "." for a bare name, "/" for
// "/x", else everything before the last '/' ("a/b/c" -> "a/b"). For a
// path ending in "/", "." or "..", that is not its parent on disk.
inline std::string ParentDirectory(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

}  // namespace cairn

#endif  // CAIRN_STORE_PATHS_H_
