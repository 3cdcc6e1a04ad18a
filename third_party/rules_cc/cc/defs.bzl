"""Re-exports Bazel 4.2.3's native C++ rules under @rules_cc//cc:defs.bzl."""

cc_binary = native.cc_binary
cc_library = native.cc_library
cc_test = native.cc_test
cc_toolchain = native.cc_toolchain
cc_toolchain_suite = native.cc_toolchain_suite
