// Copyright 2026 The Cairn Authors.
//
// The grammar of refs and architecture slots (docs/refs.md).
//
// A ref is "<package>@<name>":
//
//   ref       = package "@" name
//   package   = component *("/" component)          ; at most 128 bytes
//   component = [a-z0-9] *[a-z0-9._-]               ; no ".."
//   name      = [A-Za-z0-9] *[A-Za-z0-9._-]         ; at most 128 bytes,
//                                                    ; no ".."
//
// so "tool@main", "team/mytool@v1.2.0" and "a.b_c-d/x@Release-2" are refs,
// and these are not: "Tool@main" (uppercase package), "team//tool@main"
// (empty component), "/tool@main", "tool/@main", ".tool@main", "-x@main",
// "_x@main" (a component or name must start with a letter or digit),
// "tool@../x", "a..b@main" (".." anywhere), "tool@a/b" ('/' in a name),
// "tool@" and "@main" (empty parts), "a@b@c" (two '@'), and
// "by-digest/x@main" (the top-level namespace "by-digest" is reserved: the
// FUSE mount's /by-digest directory has that name; the package "by-digest"
// itself, as in "by-digest@main", is allowed). Nothing is normalised: the
// text is exactly the ref's key.
//
// A slot names an architecture: "noarch" or "<os>-<arch>", where <os> and
// <arch> are one or more lowercase letters or digits and <os> is not
// "noarch" ("linux-amd64", "linux-arm64", "darwin-arm64", "linux-386"), at
// most 64 bytes in all. Architecture names follow Go's GOOS/GOARCH.

#ifndef CAIRN_STORE_REF_NAME_H_
#define CAIRN_STORE_REF_NAME_H_

#include <cstddef>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace cairn {

// Limits of the grammar above, in bytes.
inline constexpr size_t kMaxRefPackageBytes = 128;
inline constexpr size_t kMaxRefNameBytes = 128;
inline constexpr size_t kMaxSlotBytes = 64;

// The slot every platform falls back to.
inline constexpr absl::string_view kNoarchSlot = "noarch";

// The grammar, as shown in error messages (one line per rule).
extern const char kRefGrammar[];
extern const char kSlotGrammar[];

// A ref's name: package and name. Value type; thread-compatible. A RefName
// built by Parse or Make is valid; one assembled by hand is checked by every
// RefStore call.
struct RefName {
  std::string package;  // "team/mytool"
  std::string name;     // "main", "v1.2.0"

  // Parses "<package>@<name>". Errors: InvalidArgument quoting the input,
  // saying what is wrong and showing kRefGrammar.
  static absl::StatusOr<RefName> Parse(absl::string_view text);

  // Validates the two parts. Errors: as Parse.
  static absl::StatusOr<RefName> Make(absl::string_view package,
                                      absl::string_view name);

  // "<package>@<name>"; also the ref's key in the metadata database.
  std::string ToString() const;

  friend bool operator==(const RefName& a, const RefName& b) {
    return a.package == b.package && a.name == b.name;
  }
  friend bool operator!=(const RefName& a, const RefName& b) {
    return !(a == b);
  }
  friend bool operator<(const RefName& a, const RefName& b) {
    return a.ToString() < b.ToString();
  }
  template <typename H>
  friend H AbslHashValue(H h, const RefName& r) {
    return H::combine(std::move(h), r.package, r.name);
  }
};

// Checks the parts of a ref. Errors: InvalidArgument naming the part, what
// is wrong and showing kRefGrammar.
absl::Status ValidateRefPackage(absl::string_view package);
absl::Status ValidateRefNamePart(absl::string_view name);
absl::Status ValidateRefName(const RefName& ref);

// Checks a slot name. Errors: InvalidArgument quoting it and showing
// kSlotGrammar.
absl::Status ValidateSlot(absl::string_view slot);

// The slot of a platform given uname(2)'s sysname and machine: the sysname
// lowercased ("Linux" -> "linux", "Darwin" -> "darwin") and the machine
// mapped to Go's GOARCH names: x86_64/amd64 -> amd64, aarch64/arm64 ->
// arm64, i386..i686/x86 -> 386, armv6l/armv7l/armhf/arm -> arm, others
// lowercased with characters outside [a-z0-9] dropped (ppc64le, s390x,
// riscv64). An empty part becomes "unknown". Always a valid slot.
std::string SlotForUname(absl::string_view sysname, absl::string_view machine);

// This host's slot, from uname(2) (computed once). The default slot
// wherever a client resolves a ref for itself; a server must use its
// client's slot, not its own.
const std::string& HostSlot();

}  // namespace cairn

#endif  // CAIRN_STORE_REF_NAME_H_
