// Copyright 2026 The Cairn Authors.

#include "store/ref_name.h"

#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace cairn {
namespace {

using ::testing::HasSubstr;

TEST(RefNameTest, AcceptsValidRefs) {
  const std::string pkg128(128, 'p');
  const std::string name128(128, 'N');
  struct Case {
    std::string text, package, name;
  } cases[] = {
      {"tool@main", "tool", "main"},
      {"team/mytool@v1.2.0", "team/mytool", "v1.2.0"},
      {"a.b_c-d/x@Release-2", "a.b_c-d/x", "Release-2"},
      {"org/team/sub/pkg@rc_1", "org/team/sub/pkg", "rc_1"},
      {"0tool@9", "0tool", "9"},
      {"x.@y-", "x.", "y-"},  // Trailing punctuation is allowed.
      // Only the namespace "by-digest/" is reserved.
      {"by-digest@main", "by-digest", "main"},
      {"team/by-digest@main", "team/by-digest", "main"},
      {"by-digests/x@main", "by-digests/x", "main"},
      {pkg128 + "@" + name128, pkg128, name128},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RefName> r = RefName::Parse(c.text);
    ASSERT_TRUE(r.ok()) << c.text << ": " << r.status();
    EXPECT_EQ(r->package, c.package);
    EXPECT_EQ(r->name, c.name);
    EXPECT_EQ(r->ToString(), c.text);
    EXPECT_TRUE(RefName::Make(c.package, c.name).ok()) << c.text;
  }
}

TEST(RefNameTest, RejectsInvalidRefsShowingTheGrammar) {
  const std::string pkg129(129, 'p');
  const std::string name129(129, 'n');
  struct Case {
    std::string text, problem;
  } cases[] = {
      {"tool", "no '@'"},
      {"tool@main@x", "more than one '@'"},
      {"@main", "empty package"},
      {"tool@", "empty name"},
      {"", "no '@'"},
      {"Tool@main", "uppercase"},
      {"tOOl@main", "uppercase"},
      {"team/Tool@main", "uppercase"},
      {"team//tool@main", "empty package component"},
      {"/tool@main", "empty package component"},
      {"tool/@main", "empty package component"},
      {".tool@main", "must start with a letter or digit"},
      {"-tool@main", "must start with a letter or digit"},
      {"_tool@main", "must start with a letter or digit"},
      {"team/.x@main", "must start with a letter or digit"},
      {"tool@.main", "must start with a letter or digit"},
      {"tool@-main", "must start with a letter or digit"},
      {"a..b@main", "\"..\""},
      {"by-digest/tool@main", "namespace \"by-digest\" is reserved"},
      {"tool@v1..2", "\"..\""},
      {"tool@../x", "character \"/\""},
      {"tool@a/b", "character \"/\""},
      {"to ol@main", "character \" \""},
      {"tool@ma in", "character \" \""},
      {"tool@main\n", "character \"\\n\""},
      {"tool@m\xc3\xa9", "character"},
      {"too:l@main", "character \":\""},
      {pkg129 + "@main", "129 bytes, longer than 128"},
      {"tool@" + name129, "129 bytes, longer than 128"},
  };
  for (const Case& c : cases) {
    absl::StatusOr<RefName> r = RefName::Parse(c.text);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.text;
    EXPECT_THAT(std::string(r.status().message()), HasSubstr(c.problem))
        << c.text;
    EXPECT_THAT(std::string(r.status().message()),
                HasSubstr("a ref is <package>@<name>; package = component"))
        << c.text;
  }
}

TEST(RefNameTest, MakeValidatesParts) {
  EXPECT_TRUE(RefName::Make("team/tool", "main").ok());
  absl::StatusOr<RefName> r = RefName::Make("tool", "a@b");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(std::string(r.status().message()), HasSubstr("character \"@\""));
  EXPECT_FALSE(RefName::Make("Tool", "main").ok());
  EXPECT_FALSE(ValidateRefName(RefName{"tool", ""}).ok());
  EXPECT_TRUE(ValidateRefName(RefName{"tool", "main"}).ok());
  EXPECT_FALSE(ValidateRefPackage("a/b/").ok());
  EXPECT_TRUE(ValidateRefNamePart("V1.0").ok());
}

TEST(SlotTest, AcceptsAndRejects) {
  for (const char* ok : {"noarch", "linux-amd64", "linux-arm64", "darwin-arm64",
                         "linux-386", "windows-amd64", "freebsd-riscv64"}) {
    EXPECT_TRUE(ValidateSlot(ok).ok()) << ok;
  }
  EXPECT_TRUE(ValidateSlot(std::string(32, 'a') + "-" + std::string(31, 'b'))
                  .ok());  // 64 bytes.
  struct Case {
    std::string slot, problem;
  } cases[] = {
      {"", "empty"},
      {"linux", "no '-'"},
      {"amd64", "no '-'"},
      {"Linux-amd64", "uppercase"},
      {"linux-AMD64", "uppercase"},
      {"linux_amd64", "character \"_\""},
      {"linux-arm-v7", "more than one '-'"},
      {"-amd64", "empty os or arch"},
      {"linux-", "empty os or arch"},
      {"noarch-amd64", "not an os"},
      {"NOARCH", "uppercase"},
      {std::string(32, 'a') + "-" + std::string(32, 'b'), "65 bytes"},
  };
  for (const Case& c : cases) {
    absl::Status s = ValidateSlot(c.slot);
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << c.slot;
    EXPECT_THAT(std::string(s.message()), HasSubstr(c.problem)) << c.slot;
    EXPECT_THAT(std::string(s.message()),
                HasSubstr("a slot is \"noarch\" or <os>-<arch>"))
        << c.slot;
  }
}

TEST(SlotTest, SlotForUname) {
  EXPECT_EQ(SlotForUname("Linux", "x86_64"), "linux-amd64");
  EXPECT_EQ(SlotForUname("Linux", "aarch64"), "linux-arm64");
  EXPECT_EQ(SlotForUname("Darwin", "arm64"), "darwin-arm64");
  EXPECT_EQ(SlotForUname("Darwin", "x86_64"), "darwin-amd64");
  EXPECT_EQ(SlotForUname("Linux", "i686"), "linux-386");
  EXPECT_EQ(SlotForUname("Linux", "armv7l"), "linux-arm");
  EXPECT_EQ(SlotForUname("Linux", "armv8l"), "linux-arm");
  EXPECT_EQ(SlotForUname("Linux", "ppc64le"), "linux-ppc64le");
  EXPECT_EQ(SlotForUname("Linux", "s390x"), "linux-s390x");
  EXPECT_EQ(SlotForUname("FreeBSD", "amd64"), "freebsd-amd64");
  EXPECT_EQ(SlotForUname("", ""), "unknown-unknown");
  EXPECT_EQ(SlotForUname("CYGWIN_NT-10.0", "x86_64"), "cygwinnt100-amd64");
  EXPECT_TRUE(ValidateSlot(SlotForUname(std::string(200, 'L'), "x")).ok());
  EXPECT_TRUE(ValidateSlot(SlotForUname("noarch", "x")).ok());
}

TEST(SlotTest, HostSlotIsValidAndStable) {
  const std::string& host = HostSlot();
  EXPECT_TRUE(ValidateSlot(host).ok()) << host;
  EXPECT_NE(host, "noarch");
  EXPECT_EQ(&host, &HostSlot());
#if defined(__linux__) && defined(__x86_64__)
  EXPECT_EQ(host, "linux-amd64");
#elif defined(__linux__) && defined(__aarch64__)
  EXPECT_EQ(host, "linux-arm64");
#endif
}

}  // namespace
}  // namespace cairn
