#!/usr/bin/env bash
# The README's quickstart, the whole main job on one machine, as root on
# Debian 12: installs, builds, starts cairnd on a local data directory with
# a read-only FUSE mount, packs a directory of real binaries (with a
# cairn.json entrypoint), pushes it to the branch cairn-tools@main, pulls it
# back and checks the digest, lists the mount, runs a binary in place from
# the mount (by path and with `cairn run`), mounts and unmounts a second view
# through the daemon, moves the branch and runs the new version, and stops
# cairnd (which unmounts). Prints each step. Leaves nothing running or
# mounted; the files stay in $CAIRN_QUICKSTART_DIR (default
# /var/tmp/cairn-quickstart) for a look.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
# Outside the Bazel workspace on purpose: a mount inside it would be walked
# by Bazel's source forest.
work="${CAIRN_QUICKSTART_DIR:-/var/tmp/cairn-quickstart}"
mnt="$work/mnt"           # cairnd --mount: the daemon's own mount
mount_root="$work/mounts" # cairnd --mount-root: where `cairn mount` may mount

step() { printf '\n== %s\n' "$*"; }
run() { printf '$ %s\n' "$*"; "$@"; }

if [[ "$(id -u)" != 0 ]]; then
  echo "quickstart: run it as root (cairnd mounts with FUSE)" >&2
  exit 1
fi

step "Installing Debian packages"
bash tools/install-deps.sh
if [[ ! -c /dev/fuse ]]; then modprobe fuse 2>/dev/null || true; fi
if [[ ! -c /dev/fuse ]]; then
  echo "quickstart: /dev/fuse is missing (in a container, pass --device /dev/fuse)" >&2
  exit 1
fi

step "Building cairnd and cairn (Bazel, offline)"
bazel build //tools/cairnd //tools/cairn 2>&1 | tail -n 2
cairnd="$root/bazel-bin/tools/cairnd/cairnd"
cairn="$root/bazel-bin/tools/cairn/cairn"

# Mounts left under $work by an interrupted run (stale or live) are
# detached before the directory is removed; --one-file-system keeps rm out
# of anything still mounted.
unmount_leftovers() {
  local dev mp rest
  while read -r dev mp rest; do
    case "$mp" in
      "$work"/*) umount -l "$mp" 2>/dev/null || fusermount3 -u -z "$mp" || true ;;
    esac
  done </proc/mounts
}
unmount_leftovers
rm -rf --one-file-system "$work"
mkdir -p "$work/data" "$work/tree/bin" "$mnt" "$mount_root/extra"
chmod 0755 "$work" "$mount_root" "$mount_root/extra"

daemon_pid=""
cleanup() {
  if [[ -n "$daemon_pid" ]] && kill -0 "$daemon_pid" 2>/dev/null; then
    kill -TERM "$daemon_pid"
    wait "$daemon_pid" || true
  fi
  daemon_pid=""
}
trap 'cleanup; unmount_leftovers' EXIT

step "Starting cairnd on $work/data, mounted read-only on $mnt"
echo "(--mount-root $mount_root lets clients add mounts inside it)"
coproc DAEMON {
  exec "$cairnd" --data-dir "$work/data" --listen 127.0.0.1:0 \
    --mount "$mnt" --mount-root "$mount_root" 2>"$work/cairnd.log"
}
daemon_pid=$DAEMON_PID
read -r -t 60 line <&"${DAEMON[0]}" || { cat "$work/cairnd.log"; exit 1; }
echo "$line"
addr=${line##* }
export CAIRN_SERVER="$addr"
run "$cairn" mounts

step "Packing a real directory of binaries (cairn and cairnd themselves, and ls, sha256sum from /usr/bin)"
cp "$cairn" "$cairnd" /usr/bin/ls /usr/bin/sha256sum "$work/tree/bin/"
ln -s cairn "$work/tree/bin/cairn-client"
printf '{"name":"cairn-tools","version":"0.1.0","entrypoint":"bin/cairn"}\n' \
  >"$work/tree/cairn.json"
run cat "$work/tree/cairn.json"
run "$cairn" pack "$work/tree" -o "$work/tools.tar.gz"
run "$cairn" pack --check "$work/tools.tar.gz"
local_digest="sha256:$(sha256sum "$work/tools.tar.gz" | cut -d' ' -f1)"
echo "local sha256sum: $local_digest"

step "Pushing to cairnd at $addr, into the branch cairn-tools@main (this host's slot)"
run "$cairn" push "$work/tools.tar.gz" --ref cairn-tools@main --actor quickstart
digest=$("$cairn" -q resolve cairn-tools@main)
echo "cairn-tools@main resolves to $digest"
[[ "$digest" == "$local_digest" ]] || { echo "digest mismatch" >&2; exit 1; }

step "Pushing again (deduplicated: nothing is uploaded)"
run "$cairn" push "$work/tools.tar.gz"

step "Inspecting the stored file index"
run "$cairn" inspect "$digest"

step "Pulling it back by ref and verifying"
run "$cairn" pull cairn-tools@main -o "$work/pulled.tar.gz"
cmp "$work/tools.tar.gz" "$work/pulled.tar.gz"
echo "pulled file is byte-for-byte identical"

step "The mount: refs are symlinks to immutable by-digest trees"
run ls -l "$mnt"
run ls -l "$mnt/cairn-tools@main/bin"
run readlink "$mnt/cairn-tools@main"

step "Running binaries in place from the mount, by path"
run "$mnt/cairn-tools@main/bin/cairn" --version
printf '$ %s\n' "$mnt/by-digest/$digest/bin/sha256sum $mnt/by-digest/$digest/bin/ls"
sum_in_mount=$("$mnt/by-digest/$digest/bin/sha256sum" "$mnt/by-digest/$digest/bin/ls")
echo "$sum_in_mount"
[[ "${sum_in_mount%% *}" == "$(sha256sum /usr/bin/ls | cut -d' ' -f1)" ]] ||
  { echo "bin/ls in the mount differs from /usr/bin/ls" >&2; exit 1; }
echo "(the mount's sha256sum, run from the mount, agrees with /usr/bin/ls)"

step "Running with cairn run (resolves the ref, execs its entrypoint by digest)"
run "$cairn" run cairn-tools@main -- --version
run "$cairn" run cairn-tools@main --entry bin/ls -- "$mnt/by-digest/$digest"
status=0
"$cairn" run cairn-tools@main --entry bin/ls -- /nonexistent 2>/dev/null ||
  status=$?
echo "cairn run passes the program's exit code through: ls /nonexistent exited $status"
[[ "$status" == 2 ]] || { echo "expected exit 2 from ls" >&2; exit 1; }

step "A second view, mounted by the daemon on request inside --mount-root"
run "$cairn" mount "$mount_root/extra"
run "$cairn" mounts
run "$mount_root/extra/cairn-tools@main/bin/cairn" --version
run "$cairn" umount "$mount_root/extra"
if "$cairn" mount /etc/sudoers.d 2>&1; then
  echo "a mount outside --mount-root was accepted" >&2
  exit 1
fi
echo "(refused: outside the mount root)"

step "Moving the branch: cairn run follows it, the old digest stays runnable"
printf '#!/bin/sh\necho "hello from version 2, args: $*"\n' >"$work/tree/bin/hello"
chmod 0755 "$work/tree/bin/hello"
printf '{"name":"cairn-tools","version":"0.2.0","entrypoint":"bin/hello"}\n' \
  >"$work/tree/cairn.json"
run "$cairn" pack "$work/tree" -o "$work/tools2.tar.gz"
run "$cairn" push "$work/tools2.tar.gz" --ref cairn-tools@main --actor quickstart
run "$cairn" run cairn-tools@main -- a b
run "$mnt/by-digest/$digest/bin/cairn" --version

step "Stopping cairnd (SIGTERM: unmounts, flushes, exits 0)"
kill -TERM "$daemon_pid"
code=0
wait "$daemon_pid" || code=$?
daemon_pid=""
echo "cairnd exited $code"
[[ "$code" == 0 ]] || { cat "$work/cairnd.log"; exit 1; }
if grep -q " $mnt " /proc/mounts; then
  echo "$mnt is still mounted" >&2
  exit 1
fi
echo "$mnt is unmounted"

step "Done: cairnd log"
cat "$work/cairnd.log"
