// Copyright 2026 The Cairn Authors.

#include "store/ref_name.h"

#include <sys/utsname.h>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace cairn {

const char kRefGrammar[] =
    "a ref is <package>@<name>; package = component *(\"/\" component), at "
    "most 128 bytes, component = [a-z0-9] *[a-z0-9._-]; name = [A-Za-z0-9] "
    "*[A-Za-z0-9._-], at most 128 bytes; \"..\" is not allowed anywhere; "
    "a namespace may not be called \"by-digest\" (e.g. "
    "\"team/mytool@v1.2.0\")";

const char kSlotGrammar[] =
    "a slot is \"noarch\" or <os>-<arch> with <os> and <arch> = [a-z0-9]+, "
    "at most 64 bytes (e.g. \"linux-amd64\", \"darwin-arm64\")";

namespace {

bool IsLowerAlnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

bool IsAlnum(char c) {
  return absl::ascii_isalnum(static_cast<unsigned char>(c));
}

bool IsUpper(char c) {
  return absl::ascii_isupper(static_cast<unsigned char>(c));
}

bool IsPunct(char c) { return c == '.' || c == '_' || c == '-'; }

std::string Quote(absl::string_view text) {
  return absl::StrCat("\"", absl::CHexEscape(text), "\"");
}

// What is wrong with one package component or a name ("" if nothing): it
// must start with a letter or digit, continue with those or punctuation and
// hold no "..". `lower` allows only lowercase letters.
std::string WordProblem(absl::string_view word, bool lower) {
  if (word.empty()) return "empty component";
  auto letter_ok = [&](char c) { return lower ? IsLowerAlnum(c) : IsAlnum(c); };
  for (char c : word) {
    if (letter_ok(c) || IsPunct(c)) continue;
    if (lower && IsUpper(c)) return "uppercase letters are not allowed";
    return absl::StrCat("character ", Quote(absl::string_view(&c, 1)),
                        " is not allowed");
  }
  if (!letter_ok(word[0])) {
    return absl::StrCat(Quote(word), " must start with a letter or digit");
  }
  if (word.find("..") != absl::string_view::npos) {
    return "\"..\" is not allowed";
  }
  return "";
}

// The top-level namespace the FUSE mount's /by-digest directory takes.
constexpr absl::string_view kReservedNamespace = "by-digest/";

std::string PackageProblem(absl::string_view package) {
  if (package.empty()) return "empty package";
  if (absl::StartsWith(package, kReservedNamespace)) {
    return "namespace \"by-digest\" is reserved (the mount's /by-digest)";
  }
  if (package.size() > kMaxRefPackageBytes) {
    return absl::StrCat("package is ", package.size(), " bytes, longer than ",
                        kMaxRefPackageBytes);
  }
  size_t begin = 0;
  while (true) {
    size_t slash = package.find('/', begin);
    absl::string_view component = package.substr(
        begin, slash == absl::string_view::npos ? absl::string_view::npos
                                                : slash - begin);
    std::string problem = WordProblem(component, true);
    if (!problem.empty()) {
      if (component.empty()) return "empty package component";
      return absl::StrCat("package component ", Quote(component), ": ",
                          problem);
    }
    if (slash == absl::string_view::npos) return "";
    begin = slash + 1;
  }
}

std::string NameProblem(absl::string_view name) {
  if (name.empty()) return "empty name";
  if (name.size() > kMaxRefNameBytes) {
    return absl::StrCat("name is ", name.size(), " bytes, longer than ",
                        kMaxRefNameBytes);
  }
  std::string problem = WordProblem(name, false);
  if (!problem.empty())
    return absl::StrCat("name ", Quote(name), ": ", problem);
  return "";
}

absl::Status RefError(absl::string_view what, absl::string_view text,
                      absl::string_view problem) {
  return absl::InvalidArgumentError(absl::StrCat(
      "invalid ", what, " ", Quote(text), ": ", problem, "; ", kRefGrammar));
}

}  // namespace

absl::Status ValidateRefPackage(absl::string_view package) {
  std::string problem = PackageProblem(package);
  if (!problem.empty()) return RefError("package", package, problem);
  return absl::OkStatus();
}

absl::Status ValidateRefNamePart(absl::string_view name) {
  std::string problem = NameProblem(name);
  if (!problem.empty()) return RefError("ref name", name, problem);
  return absl::OkStatus();
}

absl::Status ValidateRefName(const RefName& ref) {
  std::string problem = PackageProblem(ref.package);
  if (problem.empty()) problem = NameProblem(ref.name);
  if (!problem.empty()) {
    return RefError("ref", absl::StrCat(ref.package, "@", ref.name), problem);
  }
  return absl::OkStatus();
}

absl::StatusOr<RefName> RefName::Parse(absl::string_view text) {
  size_t at = text.find('@');
  if (at == absl::string_view::npos) {
    return RefError("ref", text, "no '@' between package and name");
  }
  if (text.find('@', at + 1) != absl::string_view::npos) {
    return RefError("ref", text, "more than one '@'");
  }
  RefName ref{std::string(text.substr(0, at)),
              std::string(text.substr(at + 1))};
  if (absl::Status s = ValidateRefName(ref); !s.ok()) return s;
  return ref;
}

absl::StatusOr<RefName> RefName::Make(absl::string_view package,
                                      absl::string_view name) {
  RefName ref{std::string(package), std::string(name)};
  if (absl::Status s = ValidateRefName(ref); !s.ok()) return s;
  return ref;
}

std::string RefName::ToString() const {
  return absl::StrCat(package, "@", name);
}

absl::Status ValidateSlot(absl::string_view slot) {
  auto error = [&](absl::string_view problem) {
    return absl::InvalidArgumentError(absl::StrCat(
        "invalid slot ", Quote(slot), ": ", problem, "; ", kSlotGrammar));
  };
  if (slot == kNoarchSlot) return absl::OkStatus();
  if (slot.empty()) return error("empty slot");
  if (slot.size() > kMaxSlotBytes) {
    return error(absl::StrCat("slot is ", slot.size(), " bytes, longer than ",
                              kMaxSlotBytes));
  }
  for (char c : slot) {
    if (IsLowerAlnum(c) || c == '-') continue;
    if (IsUpper(c)) return error("uppercase letters are not allowed");
    return error(absl::StrCat("character ", Quote(absl::string_view(&c, 1)),
                              " is not allowed"));
  }
  size_t dash = slot.find('-');
  if (dash == absl::string_view::npos) {
    return error("no '-' between os and arch");
  }
  if (slot.find('-', dash + 1) != absl::string_view::npos) {
    return error("more than one '-'");
  }
  if (dash == 0 || dash + 1 == slot.size()) return error("empty os or arch");
  if (slot.substr(0, dash) == kNoarchSlot) {
    return error("\"noarch\" is not an os");
  }
  return absl::OkStatus();
}

std::string SlotForUname(absl::string_view sysname, absl::string_view machine) {
  // Lowercase letters and digits only, at most `max` of them.
  auto clean = [](absl::string_view in, size_t max) {
    std::string out;
    for (char c : in) {
      char l = absl::ascii_tolower(static_cast<unsigned char>(c));
      if (IsLowerAlnum(l) && out.size() < max) out.push_back(l);
    }
    if (out.empty()) out = "unknown";
    return out;
  };
  std::string os = clean(sysname, kMaxSlotBytes / 2 - 1);
  std::string arch = clean(machine, kMaxSlotBytes / 2);
  if (os == "noarch") os = "unknown";
  if (arch == "x8664" || arch == "amd64" || arch == "x64") {
    arch = "amd64";
  } else if (arch == "aarch64" || arch == "arm64") {
    arch = "arm64";
  } else if (arch == "i386" || arch == "i486" || arch == "i586" ||
             arch == "i686" || arch == "x86" || arch == "i86pc") {
    arch = "386";
  } else if (arch == "arm" || arch == "armhf" || arch == "armel" ||
             arch.rfind("armv6", 0) == 0 || arch.rfind("armv7", 0) == 0 ||
             arch == "armv8l") {
    // armv8l is a 32-bit userland on a 64-bit ARM kernel.
    arch = "arm";
  }
  return absl::StrCat(os, "-", arch);
}

const std::string& HostSlot() {
  static const std::string* const slot = [] {
    struct utsname u;
    if (uname(&u) != 0) return new std::string(SlotForUname("", ""));
    return new std::string(SlotForUname(u.sysname, u.machine));
  }();
  return *slot;
}

}  // namespace cairn
