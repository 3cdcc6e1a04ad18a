#!/usr/bin/env bash
# The README's quickstart: installs, builds, starts cairnd on a local data
# directory, packs a real directory of binaries, pushes it, pulls it back and
# checks the digest, printing each step. Leaves nothing running.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
work="$root/.cairn-quickstart"

step() { printf '\n== %s\n' "$*"; }

step "Installing Debian packages"
bash tools/install-deps.sh

step "Building cairnd and cairn (Bazel, offline)"
bazel build //tools/cairnd //tools/cairn 2>&1 | tail -n 2
cairnd="$root/bazel-bin/tools/cairnd/cairnd"
cairn="$root/bazel-bin/tools/cairn/cairn"

rm -rf "$work"
mkdir -p "$work/data" "$work/tree/bin"
daemon_pid=""
cleanup() {
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
}
trap cleanup EXIT

step "Starting cairnd on $work/data"
coproc DAEMON { exec "$cairnd" --data-dir "$work/data" --listen 127.0.0.1:0 2>"$work/cairnd.log"; }
daemon_pid=$DAEMON_PID
read -r -t 60 line <&"${DAEMON[0]}" || { cat "$work/cairnd.log"; exit 1; }
echo "$line"
addr=${line##* }
export CAIRN_SERVER="$addr"

step "Packing a real directory of binaries (cairn and cairnd themselves)"
cp "$cairn" "$cairnd" "$work/tree/bin/"
ln -s cairn "$work/tree/bin/cairn-client"
printf '{"name":"cairn-tools","version":"0.1.0","entrypoint":"bin/cairn"}\n' \
  > "$work/tree/cairn.json"
"$cairn" pack "$work/tree" -o "$work/tools.tar.gz"
"$cairn" pack --check "$work/tools.tar.gz"
local_digest="sha256:$(sha256sum "$work/tools.tar.gz" | cut -d' ' -f1)"
echo "local sha256sum: $local_digest"

step "Pushing to cairnd at $addr"
digest=$("$cairn" --quiet push "$work/tools.tar.gz")
echo "pushed: $digest"
[[ "$digest" == "$local_digest" ]] || { echo "digest mismatch" >&2; exit 1; }

step "Pushing again (deduplicated: nothing is uploaded)"
"$cairn" push "$work/tools.tar.gz"

step "Inspecting the stored file index"
"$cairn" inspect "$digest"

step "Pulling it back and verifying"
"$cairn" pull "$digest" -o "$work/pulled.tar.gz"
cmp "$work/tools.tar.gz" "$work/pulled.tar.gz"
echo "pulled file is byte-for-byte identical"

step "Done: cairnd log"
cleanup
daemon_pid=""
cat "$work/cairnd.log"
