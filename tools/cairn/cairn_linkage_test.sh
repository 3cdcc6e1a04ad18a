#!/usr/bin/env bash
# Copyright 2026 The Cairn Authors.
#
# Checks how the `cairn` binary is linked (tools/cairn/BUILD.bazel,
# CAIRN_STATIC_LINKOPTS): gRPC, protobuf, abseil, OpenSSL, libarchive and
# their dependencies are linked in statically, so the only shared libraries
# it loads are glibc's. In particular no shared copy of a library that is
# also linked in (gRPC initialised twice, two abseil copies) may creep back
# through the third_party/sys wrappers' -l flags. And the binary runs.
set -euo pipefail

cairn="${TEST_SRCDIR}/${TEST_WORKSPACE}/tools/cairn/cairn"
failures=0
fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

# glibc's libraries and the dynamic loader, nothing else.
allowed='^(libc\.so\.6|libm\.so\.6|ld-linux-x86-64\.so\.2|libpthread\.so\.0|libdl\.so\.2|librt\.so\.1)$'
needed=$(readelf -d "$cairn" | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
[[ -n "$needed" ]] || fail "readelf found no NEEDED entries (not a dynamic binary?)"
while read -r lib; do
  [[ -z "$lib" ]] && continue
  [[ "$lib" =~ $allowed ]] || fail "cairn needs shared library $lib"
done <<<"$needed"

# The static libraries' symbols stay internal: nothing of gRPC, protobuf or
# abseil in the dynamic symbol table (it would mean the link saw their
# shared copies and exported ours to interpose them).
exported=$(nm -D --defined-only "$cairn" | grep -c -E 'grpc|google8protobuf|absl' || true)
[[ "$exported" == 0 ]] || fail "$exported gRPC/protobuf/abseil symbols exported"

version=$("$cairn" --version) || fail "cairn --version failed"
[[ "$version" == "cairn "* ]] || fail "cairn --version printed '$version'"

if ((failures > 0)); then
  echo "needed: $needed" >&2
  exit 1
fi
echo "PASS (needs: $(echo $needed))"
