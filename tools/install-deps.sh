#!/usr/bin/env bash
# Installs every Debian package Cairn needs to build, test and benchmark.
# Idempotent: re-running it installs nothing new. Requires root (or sudo).
set -euo pipefail

PACKAGES=(
  # Build: Bazel 4.2.3 (WORKSPACE mode) and its Java rules.
  bazel-bootstrap bazel-rules-java
  # gRPC / Protobuf code generation and libraries.
  libgrpc++-dev libgrpc-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  # Storage, FUSE, crypto, abseil.
  librocksdb-dev libfuse3-dev fuse3 libabsl-dev libssl-dev
  # Archives and compression.
  libarchive-dev libzstd-dev zlib1g-dev libisal-dev libdeflate-dev isal
  # CLI, logging, JSON, config.
  libcli11-dev libspdlog-dev libfmt-dev nlohmann-json3-dev libtomlplusplus-dev
  # Tests and benchmarks.
  libgtest-dev libgmock-dev libbenchmark-dev
  docker-registry squashfuse squashfs-tools archivemount hyperfine
  # Tools used by tests and the quickstart.
  tar gzip coreutils findutils procps ca-certificates
)

SUDO=""
if [[ "$(id -u)" != 0 ]]; then SUDO="sudo"; fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "install-deps: installing ${#missing[@]} package(s): ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# docker-registry's package starts a system service on port 5000; the bench
# starts its own instance, so keep the packaged one from holding the port.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  $SUDO systemctl stop docker-registry || true
fi
echo "install-deps: all packages present" >&2
