#!/usr/bin/env bash
# Cairn FUSE bench: the read-only mount (`cairnd --mount DIR`) against the
# same trees on the native file system, squashfuse over a squashfs image and
# archivemount over the tar.gz, on this machine, in one run: sequential read
# of a 1 GiB file (cold and warm), walking and reading a 20,000-file tree
# (cold and warm), exec-in-place of a real binary through a ref symlink, and
# the time from `cairn push` to the first exec of a binary inside the pushed
# artefact against a registry push + GET + sha256sum + tar xzf + exec.
# Prints a table with ratios against the FUSE issue's targets and exits 0
# whether or not they are met (a missed target is marked MISS). Needs root
# (mounts, /proc/sys/vm/drop_caches). See docs/bench.md, "FUSE".
#
# Usage: bench/fuse.sh [-n RUNS] [--am-cap S] [--no-archivemount]
#                      [--no-trace] [--rebuild-input] [--keep]
#   -n RUNS           runs of each measurement; the median is reported (3)
#   --am-cap S        cap on each archivemount step, seconds (30)
#   --no-archivemount skip the archivemount context rows
#   --no-trace        skip the FUSE request counts (fuse:* tracepoints)
#   --rebuild-input   re-create the cached inputs of this script
#                     ($CAIRN_BENCH_DIR/fuse-{seq,small}.*)
#   --keep            keep temp dirs (data dirs, logs) for inspection
# Environment: CAIRN_BIN_DIR (use cairnd/cairn from there, do not build),
#   CAIRN_BENCH_DIR (cache and scratch, default /var/tmp/cairn-bench),
#   PYTHON, BENCH_QUIET_MAX (seconds to wait for other CPU use to stop
#   before each run, 120), BENCH_NO_FS_WAIT=1 (see docs/bench.md),
#   FUSE_EXEC_BIN (the binary copied into the artefact for exec-in-place,
#   /usr/bin/python3; changing it needs --rebuild-input).
# The report's m_* (medians) and mb_* (MB/s) are set through namerefs.
# shellcheck disable=SC2154
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
AM_CAP=30
DO_AM=1
DO_TRACE=1
REBUILD_INPUT=""
while (($#)); do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --am-cap) AM_CAP=$2; shift 2 ;;
    --no-archivemount) DO_AM=""; shift ;;
    --no-trace) DO_TRACE=""; shift ;;
    --rebuild-input) REBUILD_INPUT=1; shift ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h|--help) sed -n '2,/^# The report/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench::die "unknown argument '$1' (see --help)" ;;
  esac
done
((RUNS >= 1)) || bench::die "-n must be >= 1"

bench::need dd find cmp sha256sum tar gzip curl openssl hyperfine mksquashfs \
  squashfuse fusermount3 mountpoint docker-registry timeout flock
[[ -n "$DO_AM" ]] && bench::need archivemount
((EUID == 0)) || bench::die "run as root: the bench mounts file systems and drops the page cache"
[[ -c /dev/fuse ]] || bench::die "no /dev/fuse"
[[ -w /proc/sys/vm/drop_caches ]] || bench::die "/proc/sys/vm/drop_caches is not writable (container?)"


TRACE_PY="$BENCH_REPO/bench/fuse_trace.py"
FUSE_EXEC_BIN=${FUSE_EXEC_BIN:-/usr/bin/python3}
GIB=1073741824
SMALL_FILES=20000
# Sources of the small-file tree, walked in this order (sorted within each)
# until SMALL_FILES regular files are taken.
SMALL_SOURCES=(/usr/include /usr/lib/python3 /usr/share/doc /usr/share/perl /usr/share/i18n /usr/share/man)

# ------------------------------------------------------------------ mounts
# Every mount point this script makes lives under $BENCH_ROOT/fuse*. They
# are unmounted (lazily, so a busy one cannot block the exit) before the
# temp dirs are removed; if one cannot be, the dirs are kept rather than
# letting rm -rf walk into a mount.

# fuse::mounts_under PREFIX: mount points whose path starts with PREFIX.
fuse::mounts_under() {
  awk -v p="$1" '{ m = $5; gsub(/\\040/, " ", m); if (index(m, p) == 1) print m }' /proc/self/mountinfo
}

# fuse::unmount DIR: lazy unmount of DIR if it is (or was) a mount.
fuse::unmount() {
  local m
  while read -r m; do
    [[ "$m" == "$1" ]] || continue
    fusermount3 -u -z "$1" 2>/dev/null || umount -l "$1" 2>/dev/null || true
  done < <(fuse::mounts_under "$1")
}

# Daemons this script starts are listed in $BENCH_ROOT/fuse.pids ("PID
# STARTTIME", the start time from /proc/PID/stat so that a reused pid is
# never hit), so that a run killed with SIGKILL leaves nothing behind
# after the next one starts.
FUSE_PIDFILE=$BENCH_ROOT/fuse.pids
# Likewise the temp dirs, in fuse.dirs (removed by the next run if a run
# was killed before its own cleanup).
FUSE_DIRFILE=$BENCH_ROOT/fuse.dirs
# fuse::tmpdir OUTVAR NAME: bench::tmpdir, recorded in fuse.dirs.
fuse::tmpdir() {
  bench::tmpdir "$1" "$2"
  local -n _fd=$1
  echo "$_fd" >>"$FUSE_DIRFILE"
}
fuse::starttime() { awk '{sub(/^.*\) /, ""); print $20}' "/proc/$1/stat" 2>/dev/null || true; }
fuse::track() { echo "$1 $(fuse::starttime "$1")" >>"$FUSE_PIDFILE"; }

fuse::sweep_pids() {
  [[ -s "$FUSE_PIDFILE" ]] || return 0
  local pid st i
  while read -r pid st; do
    [[ -n "$pid" && -n "$st" && "$(fuse::starttime "$pid")" == "$st" ]] || continue
    bench::log "stopping leftover daemon $pid of an earlier run"
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 50; i++)); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  done <"$FUSE_PIDFILE"
  : >"$FUSE_PIDFILE"
}

fuse::sweep_mounts() {
  local m
  while read -r m; do
    [[ -n "$m" ]] || continue
    bench::log "unmounting leftover mount $m"
    fusermount3 -u -z "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
  done < <(fuse::mounts_under "$BENCH_ROOT/fuse" | sort -r)
}

fuse::cleanup() {
  local pid
  # Daemons first (cairnd and squashfuse unmount at SIGTERM), then anything
  # still mounted, then bench::cleanup removes the dirs. Without the lock
  # (another run holds it) only what this process started.
  for pid in "${BENCH_PIDS[@]}"; do bench::stop_daemon "$pid" 10 >/dev/null 2>&1 || true; done
  if [[ -n "${FUSE_LOCKED:-}" ]]; then
    fuse::sweep_mounts
    if [[ -n "$(fuse::mounts_under "$BENCH_ROOT/fuse")" ]]; then
      bench::log "mounts remain under $BENCH_ROOT/fuse*; keeping the temp dirs"
      BENCH_KEEP=1
    fi
  fi
  bench::cleanup
  if [[ -n "${FUSE_LOCKED:-}" ]]; then
    [[ -n "${BENCH_KEEP:-}" ]] || : >"$FUSE_DIRFILE"
    : >"$FUSE_PIDFILE"
    : >"$FUSE_LOCK"
  fi
}
trap fuse::cleanup EXIT

# One fuse.sh at a time: the cached inputs and the sweeps below assume it.
# The lock is "PID STARTTIME" of the running script in fuse.lock (not a
# flock held on an open fd, which the daemons would inherit and keep after
# a SIGKILL); flock only guards the check-and-write.
FUSE_LOCK=$BENCH_ROOT/fuse.lock
fuse::take_lock() {
  (
    flock 9
    local opid ost
    if read -r opid ost <"$FUSE_LOCK" 2>/dev/null && [[ -n "$opid" && -n "$ost" &&
      "$(fuse::starttime "$opid")" == "$ost" ]]; then
      echo "$opid"
      exit 1
    fi
    echo "$$ $(fuse::starttime $$)" >"$FUSE_LOCK"
  ) 9>>"$FUSE_LOCK.guard"
}
FUSE_LOCK_OWNER=$(fuse::take_lock) || bench::die "another bench/fuse.sh is running (pid $FUSE_LOCK_OWNER, $FUSE_LOCK)"
FUSE_LOCKED=1

# Daemons, mounts and temp dirs left by a killed run (we hold the lock, so
# they are not live).
fuse::sweep_pids
fuse::sweep_mounts
if [[ -s "$FUSE_DIRFILE" && -z "$(fuse::mounts_under "$BENCH_ROOT/")" ]]; then
  while read -r d; do
    [[ "$d" == "$BENCH_ROOT"/?*.?????? && -d "$d" ]] || continue
    bench::log "removing $d, left by an earlier run"
    rm -rf -- "$d"
    echo "$EPOCHSECONDS" >"$BENCH_ROOT/.last-delete"
  done <"$FUSE_DIRFILE"
  : >"$FUSE_DIRFILE"
fi

# fuse::drop: the "cold" step: write back, then drop the page cache,
# dentries and inodes.
fuse::drop() { sync; echo 3 >/proc/sys/vm/drop_caches; }
# fuse::dd FILE: sequential read in 1 MiB calls, output discarded.
fuse::dd() { dd if="$1" of=/dev/null bs=1M status=none; }
# The tree walk and the read of every file; DIR is replaced by the tree.
WALK=(find -H DIR -printf '%y %m %s %p\n')
READALL=(find -H DIR -type f -exec cat -- {} +)
fuse::walk() { "${WALK[@]/#DIR/$1}" >/dev/null; }
fuse::readall() { "${READALL[@]/#DIR/$1}" >/dev/null; }

# fuse::exec_medians OUTVAR NAME CMD...: hyperfine -N --warmup 3 of the
# CMDs (results in $W/NAME.json); OUTVAR = their medians in ms, space-
# separated, in CMD order.
fuse::exec_medians() {
  local -n _m=$1
  local name=$2
  shift 2
  hyperfine -N --warmup 3 --style none --export-json "$W/$name.json" "$@" \
    >/dev/null 2>"$W/$name.err" || { cat "$W/$name.err" >&2; bench::die "hyperfine failed ($name)"; }
  _m=$("$BENCH_PY" -c '
import json, sys
r = json.load(open(sys.argv[1]))["results"]
print(" ".join("%.4f" % (x["median"] * 1e3) for x in r))' "$W/$name.json")
}

# fuse::mbps OUTVAR BYTES SECONDS
fuse::mbps() { local -n _o=$1; _o=$(bench::py "$2 / 1e6 / $3"); }

# fuse::timed OUTARRAY CPUARRAY CMD...: runs CMD (bench::time), appends the
# wall seconds to OUTARRAY and cairnd's CPU seconds during it to CPUARRAY
# ("" for none).
fuse::timed() {
  local -n _arr=$1
  local _cpu=$2 _t _c0 _c1
  shift 2
  [[ -n "$_cpu" ]] && bench::cpu_ticks _c0 "$CAIRND_PID"
  bench::time _t "$@" || bench::die "failed: $*"
  _arr+=("$_t")
  if [[ -n "$_cpu" ]]; then
    local -n _carr=$_cpu
    bench::cpu_ticks _c1 "$CAIRND_PID"
    _carr+=("$(bench::py "f'{($_c1 - $_c0) / $BENCH_CLK_TCK:.2f}'")")
  fi
}

# fuse::wait_mount DIR TIMEOUT_S PID: waits until DIR is a mount point.
fuse::wait_mount() {
  local deadline=$((SECONDS + $2))
  until mountpoint -q "$1"; do
    kill -0 "$3" 2>/dev/null || return 1
    ((SECONDS < deadline)) || return 1
    sleep 0.02
  done
}

# ------------------------------------------------------------------ inputs
# Two cached inputs besides the foundation's usrlib.tar.gz, each as an
# unpacked tree (the native peer), its `cairn pack` tarball and its
# squashfs image (mksquashfs, default options), plus a .meta written last.

# fuse::pack_inputs PACK_SECS_VAR MKSQ_SECS_VAR TREE TGZ IMG BASE: packs TREE
# with `cairn pack` into TGZ and with mksquashfs (default options) into IMG,
# each through a .tmp file renamed into place; logs go to BASE.*.log. The
# two durations (seconds) are returned through the named variables.
fuse::pack_inputs() {
  local -n _tp=$1 _ts=$2
  local tree=$3 tgz=$4 img=$5 base=$6
  bench::log "input: cairn pack $tree"
  bench::time _tp "$CAIRN" pack "$tree" -o "$tgz.tmp" >"$base.pack.log" 2>&1 ||
    { cat "$base.pack.log" >&2; bench::die "cairn pack failed"; }
  mv -f -- "$tgz.tmp" "$tgz"
  bench::log "input: mksquashfs $tree (default options)"
  rm -f -- "$img.tmp"
  bench::time _ts mksquashfs "$tree" "$img.tmp" -no-progress >"$base.mksquashfs.log" 2>&1 ||
    { cat "$base.mksquashfs.log" >&2; bench::die "mksquashfs failed"; }
  mv -f -- "$img.tmp" "$img"
}

# The sequential-read artefact: data/big.bin (1 GiB, AES-128-CTR keystream
# from a fixed password: deterministic, incompressible) and bin/<exec>.
fuse::input_seq() {
  local base="$BENCH_ROOT/fuse-seq"
  local tree=$base.tree tgz=$base.tar.gz img=$base.sqfs meta=$base.meta
  [[ -n "$REBUILD_INPUT" ]] && rm -rf -- "$meta" "$tgz" "$img" "$tree"
  if [[ -s "$meta" && -s "$tgz" && -s "$img" && -s "$tree/data/big.bin" ]]; then
    # shellcheck disable=SC1090
    source "$meta"
    bench::log "input: cached $tgz"
    return
  fi
  rm -rf -- "$meta" "$tgz" "$img" "$tree"
  mkdir -p "$tree/bin" "$tree/data"
  bench::log "input: generating $tree/data/big.bin (1 GiB, openssl aes-128-ctr keystream)"
  { openssl enc -aes-128-ctr -nosalt -pass pass:cairn </dev/zero 2>/dev/null || true; } |
    head -c "$GIB" >"$tree/data/big.bin"
  [[ $(stat -c %s "$tree/data/big.bin") == "$GIB" ]] || bench::die "openssl did not give 1 GiB"
  local exe
  exe=$(readlink -f "$FUSE_EXEC_BIN")
  cp -- "$exe" "$tree/bin/$(basename "$FUSE_EXEC_BIN")"
  local ver
  ver=$("$tree/bin/$(basename "$FUSE_EXEC_BIN")" --version 2>&1 | head -n 1) ||
    bench::die "$FUSE_EXEC_BIN --version failed"
  local tp ts
  fuse::pack_inputs tp ts "$tree" "$tgz" "$img" "$base"
  {
    printf 'SEQ_TREE=%q\n' "$tree"
    printf 'SEQ_TGZ=%q\n' "$tgz"
    printf 'SEQ_IMG=%q\n' "$img"
    printf 'SEQ_SHA=%q\n' "$(sha256sum "$tree/data/big.bin" | cut -d' ' -f1)"
    printf 'SEQ_EXE=%q\n' "bin/$(basename "$FUSE_EXEC_BIN")"
    printf 'SEQ_EXE_SRC=%q\n' "$exe"
    printf 'SEQ_EXE_VERSION=%q\n' "$ver"
    printf 'SEQ_EXE_BYTES=%q\n' "$(stat -c %s "$exe")"
    printf 'SEQ_TGZ_BYTES=%q\n' "$(stat -c %s "$tgz")"
    printf 'SEQ_IMG_BYTES=%q\n' "$(stat -c %s "$img")"
    printf 'SEQ_PACK_SECONDS=%q\n' "$tp"
    printf 'SEQ_MKSQ_SECONDS=%q\n' "$ts"
    printf 'SEQ_CREATED=%q\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$meta.tmp"
  mv -f -- "$meta.tmp" "$meta"
  # shellcheck disable=SC1090
  source "$meta"
}

# The small-file tree: the first SMALL_FILES regular files (with their
# directories and the symlinks met on the way) of SMALL_SOURCES, walked in
# order, copied with tar (owners, modes, symlinks, hardlinks kept).
fuse::input_small() {
  local base="$BENCH_ROOT/fuse-small"
  local tree=$base.tree tgz=$base.tar.gz img=$base.sqfs meta=$base.meta
  [[ -n "$REBUILD_INPUT" ]] && rm -rf -- "$meta" "$tgz" "$img" "$tree"
  if [[ -s "$meta" && -s "$tgz" && -s "$img" && -d "$tree" ]]; then
    # shellcheck disable=SC1090
    source "$meta"
    bench::log "input: cached $tgz"
    return
  fi
  rm -rf -- "$meta" "$tgz" "$img" "$tree" "$base.list"
  bench::log "input: selecting $SMALL_FILES files from ${SMALL_SOURCES[*]}"
  "$BENCH_PY" - "$SMALL_FILES" "${SMALL_SOURCES[@]}" >"$base.list" <<'EOF' || bench::die "small-tree selection failed"
import os, stat, sys
want, sources = int(sys.argv[1]), sys.argv[2:]
files = 0
out = sys.stdout
def emit(p):
    out.write(p.lstrip("/") + "\n")
for src in sources:
    if files >= want or not os.path.isdir(src):
        continue
    emit(src)
    for root, dirs, names in os.walk(src):
        dirs.sort()
        names.sort()
        keep = []
        for d in dirs:
            p = os.path.join(root, d)
            if os.path.islink(p):
                names.append(d)  # A symlink to a directory: an entry.
            else:
                keep.append(d)
        names.sort()
        for n in names:
            if files >= want:
                break
            p = os.path.join(root, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                files += 1
                emit(p)
            elif stat.S_ISLNK(st.st_mode):
                emit(p)
        if files >= want:
            break
        dirs[:] = keep
        for d in keep:
            emit(os.path.join(root, d))
    if files >= want:
        break
if files < want:
    sys.exit(f"only {files} regular files under {' '.join(sources)}")
EOF
  mkdir -p "$tree"
  tar -C / --no-recursion -cf - -T "$base.list" | tar -C "$tree" -xpf - ||
    bench::die "copying the small-file tree failed"
  local tp ts
  fuse::pack_inputs tp ts "$tree" "$tgz" "$img" "$base"
  local reg sym dirs bytes med top="" src
  for src in "${SMALL_SOURCES[@]}"; do grep -qx -- "${src#/}" "$base.list" && top+="$src "; done
  reg=$(find "$tree" -type f | wc -l)
  sym=$(find "$tree" -type l | wc -l)
  dirs=$(find "$tree" -mindepth 1 -type d | wc -l)
  bytes=$(find "$tree" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  med=$(find "$tree" -type f -printf '%s\n' | sort -n | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
  {
    printf 'SMALL_TREE=%q\n' "$tree"
    printf 'SMALL_TGZ=%q\n' "$tgz"
    printf 'SMALL_IMG=%q\n' "$img"
    printf 'SMALL_TOP=%q\n' "$top"
    printf 'SMALL_REGULAR=%q\n' "$reg"
    printf 'SMALL_SYMLINKS=%q\n' "$sym"
    printf 'SMALL_DIRS=%q\n' "$dirs"
    printf 'SMALL_FILE_BYTES=%q\n' "$bytes"
    printf 'SMALL_MEDIAN_BYTES=%q\n' "$med"
    printf 'SMALL_TGZ_BYTES=%q\n' "$(stat -c %s "$tgz")"
    printf 'SMALL_IMG_BYTES=%q\n' "$(stat -c %s "$img")"
    printf 'SMALL_PACK_SECONDS=%q\n' "$tp"
    printf 'SMALL_MKSQ_SECONDS=%q\n' "$ts"
    printf 'SMALL_CREATED=%q\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$meta.tmp"
  mv -f -- "$meta.tmp" "$meta"
  # shellcheck disable=SC1090
  source "$meta"
}

bench::build_cairn
[[ -z "${CAIRN_BIN_DIR:-}" ]] && dirname "$CAIRND" >>"$FUSE_DIRFILE"
TREE_DIRTY=$(git -C "$BENCH_REPO" status --porcelain -- fuse store tools 2>/dev/null | awk '{print $2}' | tr '\n' ' ' || true)
fuse::input_seq
fuse::input_small
bench::input_usrlib
USRLIB_HEX=$(sha256sum "$BENCH_INPUT" | cut -d' ' -f1)
# The binary exec'd from the usrlib artefact (libc.so.6 prints its banner).
P2E_EXE=libc.so.6
[[ -f "$USRLIB_TREE/$P2E_EXE" && ! -L "$USRLIB_TREE/$P2E_EXE" ]] ||
  bench::die "$USRLIB_TREE/$P2E_EXE is not a regular file"
"$USRLIB_TREE/$P2E_EXE" >/dev/null || bench::die "$USRLIB_TREE/$P2E_EXE does not run"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
NOTES=()

# ------------------------------------------------------------------ setup
fuse::tmpdir W fuse
MNT=$W/mnt-cairn SQ_SEQ=$W/mnt-sq-seq SQ_SMALL=$W/mnt-sq-small
mkdir -p "$MNT" "$SQ_SEQ" "$SQ_SMALL"
export CAIRN_CACHE_DIR="$W/digest-cache"
PORT=""
bench::pick_port PORT
ADDR=127.0.0.1:$PORT
CAIRND_PID=""
CAIRND_STARTS=0
# fuse::start_main [FLAG...]: cairnd on $W/data mounted on $MNT, with FLAGs
# (--fuse-passthrough for the passthrough rows).
fuse::start_main() {
  CAIRND_STARTS=$((CAIRND_STARTS + 1))
  bench::start_cairnd CAIRND_PID "$W/data" "$PORT" "$W/cairnd.$CAIRND_STARTS.log" --mount "$MNT" "$@"
  fuse::track "$CAIRND_PID"
  fuse::wait_mount "$MNT" 30 "$CAIRND_PID" || bench::die "cairnd did not mount $MNT (log: $W/cairnd.$CAIRND_STARTS.log)"
}
# fuse::restart_main [FLAG...]: a fresh cairnd on the same data dir: its
# verified-blob set is empty and the kernel's caches of the old mount
# (pages, dentries) went with it.
fuse::restart_main() {
  bench::stop_daemon "$CAIRND_PID" || NOTES+=("cairnd exited non-zero after SIGTERM")
  local i
  for ((i = 0; i < 100; i++)); do mountpoint -q "$MNT" || break; sleep 0.05; done
  mountpoint -q "$MNT" && bench::die "$MNT still mounted after cairnd exited"
  fuse::start_main "$@"
}
fuse::start_main

bench::log "pushing the two bench artefacts into cairnd (untimed setup)"
bench::settle "$SEQ_TGZ"
bench::time T_SETUP_SEQ "$CAIRN" --server "$ADDR" --json push "$SEQ_TGZ" --ref bench@main --arch noarch \
  >"$W/push-seq.json" 2>"$W/push-seq.err" || { cat "$W/push-seq.err" >&2; bench::die "push of $SEQ_TGZ failed"; }
bench::settle "$SMALL_TGZ"
bench::time T_SETUP_SMALL "$CAIRN" --server "$ADDR" --json push "$SMALL_TGZ" --ref bench-small@main --arch noarch \
  >"$W/push-small.json" 2>"$W/push-small.err" || { cat "$W/push-small.err" >&2; bench::die "push of $SMALL_TGZ failed"; }
SEQ_DIGEST="sha256:$(sha256sum "$SEQ_TGZ" | cut -d' ' -f1)"
grep -q "${SEQ_DIGEST#sha256:}" "$W/push-seq.json" || bench::die "push reply does not name $SEQ_DIGEST"

bench::start_daemon SQ_SEQ_PID "$W/squashfuse-seq.log" "mountpoint -q '$SQ_SEQ'" 60 squashfuse -f "$SEQ_IMG" "$SQ_SEQ"
fuse::track "$SQ_SEQ_PID"
bench::start_daemon SQ_SMALL_PID "$W/squashfuse-small.log" "mountpoint -q '$SQ_SMALL'" 60 squashfuse -f "$SMALL_IMG" "$SQ_SMALL"
fuse::track "$SQ_SMALL_PID"

N_BIG=$SEQ_TREE/data/big.bin C_BIG=$MNT/bench@main/data/big.bin S_BIG=$SQ_SEQ/data/big.bin
N_SMALL=$SMALL_TREE C_SMALL=$MNT/bench-small@main S_SMALL=$SQ_SMALL
N_EXE=$SEQ_TREE/$SEQ_EXE C_EXE=$MNT/bench@main/$SEQ_EXE S_EXE=$SQ_SEQ/$SEQ_EXE
C_EXE_D=$MNT/by-digest/$SEQ_DIGEST/$SEQ_EXE

# A page-cache reference for the warm sequential read: the same file on a
# tmpfs with huge=never, so cached in 4 KiB pages, as this kernel caches
# every FUSE file. Native ext4 caches it in folios of up to 2 MiB. The
# context row shows what the kernel's own 4 KiB-page read path gives.
M_DIR=$W/tmpfs M_BIG=""
mkdir -p "$M_DIR"
if mount -t tmpfs -o "size=$((GIB / 1048576 + 64))m,huge=never" cairn-bench-tmpfs "$M_DIR" 2>/dev/null; then
  cp "$N_BIG" "$M_DIR/big.bin" && M_BIG=$M_DIR/big.bin
else
  bench::log "cannot mount a tmpfs: no tmpfs context row"
fi

# Per-run results.
declare -a T_SEQ_AFTER_PUSH=() T_SEQ_FIRST=() T_SEQ_C_COLD=() T_SEQ_S_COLD=() T_SEQ_N_COLD=()
declare -a T_SEQ_C_WARM=() T_SEQ_S_WARM=() T_SEQ_N_WARM=() T_SEQ_M_WARM=() CPU_SEQ_FIRST=() CPU_SEQ_COLD=()
declare -a T_WALK_FRESH=() T_WALK_C_COLD=() T_WALK_S_COLD=() T_WALK_N_COLD=()
declare -a T_WALK_C_WARM=() T_WALK_S_WARM=() T_WALK_N_WARM=()
declare -a T_READ_FIRST=() T_READ_C_COLD=() T_READ_S_COLD=() T_READ_N_COLD=()
declare -a T_READ_C_WARM=() T_READ_S_WARM=() T_READ_N_WARM=()
declare -a CPU_READ_FIRST=() CPU_READ_COLD=() CPU_READ_WARM=() T_WALK_CD_WARM=() T_READ_CD_WARM=()
declare -a X_N=() X_C=() X_CD=() X_S=()
# The same on a mount with --fuse-passthrough (P_*: context rows).
declare -a P_SEQ_FIRST=() P_SEQ_COLD=() P_SEQ_WARM=() P_WALK_WARM=() P_READ_WARM=() P_READ_COLD=() P_WALK_COLD=()
declare -a P_X_C=() P_X_N=() CPU_P_READ_WARM=()
declare -a BUSY=() BUSY_P2E=()

# The first open of the 1 GiB file right after its push, in the daemon
# that ingested it (context; cold: after a page-cache drop).
fuse::drop
CPU_AFTER_PUSH=()
fuse::timed T_SEQ_AFTER_PUSH CPU_AFTER_PUSH fuse::dd "$C_BIG"

# Sanity (untimed): same bytes, same entries everywhere.
bench::log "checking that the three views hold the same bytes and entries"
cmp -s "$N_BIG" "$C_BIG" || bench::die "$C_BIG differs from $N_BIG"
fuse::listing() { (cd "$1/" && find . \( -type f -printf '%P f %s\n' \) -o -printf '%P %y\n' | sort); }
fuse::content() { (cd "$1/" && find . -type f -print0 | sort -z | xargs -0 cat | sha256sum | cut -d' ' -f1); }
L_N=$(fuse::listing "$N_SMALL" | sha256sum) C_N=$(fuse::content "$N_SMALL")
[[ "$(fuse::listing "$C_SMALL" | sha256sum)" == "$L_N" ]] || bench::die "cairn mount lists $C_SMALL differently from $N_SMALL"
[[ "$(fuse::listing "$S_SMALL" | sha256sum)" == "$L_N" ]] || bench::die "squashfuse lists $S_SMALL differently from $N_SMALL"
[[ "$(fuse::content "$C_SMALL")" == "$C_N" ]] || bench::die "cairn mount: file contents differ from $N_SMALL"
for e in "$C_EXE" "$C_EXE_D" "$S_EXE"; do "$e" --version >/dev/null 2>&1 || bench::die "$e --version failed"; done

# ------------------------------------------------------------------ runs
for ((r = 1; r <= RUNS; r++)); do
  bench::wait_quiet; BUSY+=("$BENCH_BUSY")
  bench::log "run $r/$RUNS: sequential read of 1 GiB"
  # (1) cold: first open in a fresh cairnd (verifies the blob), then the
  # same daemon again (verified already), then the peers; each after a
  # page-cache drop.
  fuse::restart_main
  fuse::drop; fuse::timed T_SEQ_FIRST CPU_SEQ_FIRST fuse::dd "$C_BIG"
  fuse::drop; fuse::timed T_SEQ_C_COLD CPU_SEQ_COLD fuse::dd "$C_BIG"
  fuse::drop; fuse::timed T_SEQ_S_COLD "" fuse::dd "$S_BIG"
  fuse::drop; fuse::timed T_SEQ_N_COLD "" fuse::dd "$N_BIG"
  # warm: one untimed read, then the timed one.
  fuse::dd "$N_BIG"; fuse::timed T_SEQ_N_WARM "" fuse::dd "$N_BIG"
  fuse::dd "$C_BIG"; fuse::timed T_SEQ_C_WARM "" fuse::dd "$C_BIG"
  fuse::dd "$S_BIG"; fuse::timed T_SEQ_S_WARM "" fuse::dd "$S_BIG"
  if [[ -n "$M_BIG" ]]; then fuse::dd "$M_BIG"; fuse::timed T_SEQ_M_WARM "" fuse::dd "$M_BIG"; fi

  bench::log "run $r/$RUNS: small-file tree"
  # (2) warm first: an untimed read of every file (which also has the fresh
  # cairnd verify every blob, so that the cold steps below are later
  # opens), then the timed walk and read.
  fuse::readall "$N_SMALL"
  fuse::timed T_WALK_N_WARM "" fuse::walk "$N_SMALL"
  fuse::timed T_READ_N_WARM "" fuse::readall "$N_SMALL"
  fuse::readall "$C_SMALL"
  fuse::timed T_WALK_C_WARM "" fuse::walk "$C_SMALL"
  fuse::timed T_READ_C_WARM CPU_READ_WARM fuse::readall "$C_SMALL"
  # cold: each step after a page-cache drop.
  fuse::drop; fuse::timed T_WALK_C_COLD "" fuse::walk "$C_SMALL"
  fuse::drop; fuse::timed T_WALK_S_COLD "" fuse::walk "$S_SMALL"
  fuse::drop; fuse::timed T_WALK_N_COLD "" fuse::walk "$N_SMALL"
  fuse::drop; fuse::timed T_READ_C_COLD CPU_READ_COLD fuse::readall "$C_SMALL"
  fuse::drop; fuse::timed T_READ_S_COLD "" fuse::readall "$S_SMALL"
  fuse::drop; fuse::timed T_READ_N_COLD "" fuse::readall "$N_SMALL"

  bench::log "run $r/$RUNS: exec-in-place (hyperfine)"
  # (3) warm: hyperfine's warm-up runs, then its timed runs (median).
  fuse::exec_medians xm "hyperfine.$r" \
    "$N_EXE --version" "$C_EXE --version" "$C_EXE_D --version" "$S_EXE --version"
  read -r xn xc xcd xs <<<"$xm"
  X_N+=("$xn"); X_C+=("$xc"); X_CD+=("$xcd"); X_S+=("$xs")

  bench::log "run $r/$RUNS: the same on a --fuse-passthrough mount"
  # (P) Files of 1 MiB and more served by the kernel from their blobs, one
  # OPEN (and RELEASE) request per open (docs/fuse.md, "Passthrough").
  fuse::restart_main --fuse-passthrough
  grep -q 'passthrough: files read by the kernel' "$W/cairnd.$CAIRND_STARTS.log" ||
    bench::die "cairnd did not mount with passthrough (log: $W/cairnd.$CAIRND_STARTS.log)"
  fuse::drop; fuse::timed P_SEQ_FIRST "" fuse::dd "$C_BIG"
  fuse::drop; fuse::timed P_SEQ_COLD "" fuse::dd "$C_BIG"
  fuse::dd "$C_BIG"; fuse::timed P_SEQ_WARM "" fuse::dd "$C_BIG"
  fuse::readall "$C_SMALL"
  fuse::timed P_WALK_WARM "" fuse::walk "$C_SMALL"
  fuse::timed P_READ_WARM CPU_P_READ_WARM fuse::readall "$C_SMALL"
  fuse::drop; fuse::timed P_WALK_COLD "" fuse::walk "$C_SMALL"
  fuse::drop; fuse::timed P_READ_COLD "" fuse::readall "$C_SMALL"
  fuse::exec_medians xm "hyperfine-p.$r" "$N_EXE --version" "$C_EXE --version"
  read -r xn xc <<<"$xm"
  P_X_N+=("$xn"); P_X_C+=("$xc")
  bench::log "run $r: seq cold first-open ${T_SEQ_FIRST[-1]}s later ${T_SEQ_C_COLD[-1]}s sq ${T_SEQ_S_COLD[-1]}s native ${T_SEQ_N_COLD[-1]}s;" \
    "walk cold ${T_WALK_C_COLD[-1]}/${T_WALK_S_COLD[-1]}/${T_WALK_N_COLD[-1]}s; read-all cold ${T_READ_C_COLD[-1]}/${T_READ_S_COLD[-1]}/${T_READ_N_COLD[-1]}s;" \
    "exec ${xc}/${xn} ms"
done

# ------------------------------------------------------------------ once
# Context for (2), one run each (they are slow and have no target): a
# fresh cairnd (walk with its RocksDB block cache empty too, then the read
# of every file, where every open verifies its blob); squashfuse warm; and
# cairn warm through the by-digest path, which resolves no ref per path.
bench::wait_quiet; BUSY+=("once:$BENCH_BUSY")
bench::log "small-file tree, once: fresh cairnd, squashfuse warm, cairn by-digest warm"
C_SMALL_D=$MNT/by-digest/sha256:$(sha256sum "$SMALL_TGZ" | cut -d' ' -f1)
fuse::restart_main
fuse::drop; fuse::timed T_WALK_FRESH "" fuse::walk "$C_SMALL"
fuse::drop; fuse::timed T_READ_FIRST CPU_READ_FIRST fuse::readall "$C_SMALL"
fuse::readall "$S_SMALL"
fuse::timed T_WALK_S_WARM "" fuse::walk "$S_SMALL"
fuse::timed T_READ_S_WARM "" fuse::readall "$S_SMALL"
fuse::readall "$C_SMALL_D"
fuse::timed T_WALK_CD_WARM "" fuse::walk "$C_SMALL_D"
fuse::timed T_READ_CD_WARM "" fuse::readall "$C_SMALL_D"

# ------------------------------------------------------------------ push to exec
# (4) From the start of the push of the realistic artefact to the first
# successful exec of a binary inside it, Cairn (push --ref, exec through the
# mount) against the registry path hosts use today (blob push, GET,
# sha256sum, tar xzf into a fresh dir, exec). Fresh server per run, the two
# alternating which goes first. Both clients know the digest beforehand
# (computed untimed), as in foundation.sh.
declare -a P_C_TOTAL=() P_C_PUSH=() P_C_EXEC=() P_C_TRIES=()
declare -a P_R_TOTAL=() P_R_PUSH=() P_R_GET=() P_R_SHA=() P_R_TAR=() P_R_EXEC=()

cairn_p2e() {
  bench::wait_quiet; BUSY_P2E+=("c$BENCH_BUSY")
  bench::fresh_memory
  local dir port pid mnt t0 t tries=0
  fuse::tmpdir dir fuse-p2e
  mnt=$dir/mnt; mkdir -p "$mnt"
  local -x CAIRN_CACHE_DIR="$dir/digest-cache"
  "$CAIRN" --quiet digest "$BENCH_INPUT" >/dev/null || bench::die "cairn digest failed"
  bench::pick_port port
  bench::start_cairnd pid "$dir/data" "$port" "$dir/cairnd.log" --mount "$mnt"
  fuse::track "$pid"
  fuse::wait_mount "$mnt" 30 "$pid" || bench::die "cairnd did not mount $mnt"
  bench::settle "$BENCH_INPUT"
  t0=$EPOCHREALTIME
  "$CAIRN" --server "127.0.0.1:$port" --quiet push "$BENCH_INPUT" --ref usrlib@main --arch noarch \
    >/dev/null 2>"$dir/push.err" || { cat "$dir/push.err" >&2; bench::die "cairn push --ref failed"; }
  bench::since t "$t0"; P_C_PUSH+=("$t")
  local deadline=$((SECONDS + 30))
  until "$mnt/usrlib@main/$P2E_EXE" >/dev/null 2>&1; do
    tries=$((tries + 1))
    ((SECONDS < deadline)) || bench::die "$mnt/usrlib@main/$P2E_EXE did not run within 30 s of the push"
    sleep 0.005
  done
  bench::since t "$t0"; P_C_TOTAL+=("$t")
  P_C_EXEC+=("$(bench::py "f'{${P_C_TOTAL[-1]} - ${P_C_PUSH[-1]}:.6f}'")")
  P_C_TRIES+=("$tries")
  bench::stop_daemon "$pid" || NOTES+=("push-to-exec: cairnd exited non-zero after SIGTERM")
}

registry_p2e() {
  bench::wait_quiet; BUSY_P2E+=("r$BENCH_BUSY")
  bench::fresh_memory
  local dir port pid t0 t1 t
  fuse::tmpdir dir fuse-reg
  bench::pick_port port
  bench::start_registry pid "$dir" "$port"
  local base="http://127.0.0.1:$port/v2" digest="sha256:$USRLIB_HEX"
  fuse::track "$pid"
  bench::settle "$BENCH_INPUT"
  t0=$EPOCHREALTIME
  bench::registry_push "$base" "$BENCH_INPUT" "$digest" ||
    bench::die "registry push failed (log: $dir/registry.log)"
  t1=$EPOCHREALTIME; bench::since t "$t0"; P_R_PUSH+=("$t")
  curl -fsS -o "$dir/get.tar.gz" "$base/bench/blobs/$digest" || bench::die "registry GET failed"
  bench::since t "$t1"; P_R_GET+=("$t"); t1=$EPOCHREALTIME
  echo "$USRLIB_HEX  $dir/get.tar.gz" | sha256sum -c --quiet - || bench::die "registry GET: digest mismatch"
  bench::since t "$t1"; P_R_SHA+=("$t"); t1=$EPOCHREALTIME
  mkdir "$dir/stage"
  # GNU tar warns about the pax 'hdrcharset' keyword cairn pack may write.
  tar xzf "$dir/get.tar.gz" -C "$dir/stage" 2>"$dir/tar.err" || { cat "$dir/tar.err" >&2; bench::die "tar xzf failed"; }
  bench::since t "$t1"; P_R_TAR+=("$t"); t1=$EPOCHREALTIME
  "$dir/stage/$P2E_EXE" >/dev/null || bench::die "$dir/stage/$P2E_EXE failed"
  bench::since t "$t1"; P_R_EXEC+=("$t")
  bench::since t "$t0"; P_R_TOTAL+=("$t")
  bench::stop_daemon "$pid" || true
}

# Pushing creates files: wait out the ext4 recently-deleted window (see
# docs/bench.md) if another bench just deleted its data dirs.
bench::fs_settle
for ((r = 1; r <= RUNS; r++)); do
  bench::log "run $r/$RUNS: push to first exec"
  if ((r % 2)); then registry_p2e; cairn_p2e; else cairn_p2e; registry_p2e; fi
  bench::log "run $r: cairn ${P_C_TOTAL[-1]}s (push ${P_C_PUSH[-1]}s); registry path ${P_R_TOTAL[-1]}s"
done

# ------------------------------------------------------------------ archivemount
# Context only, once (not -n times): mount time (archivemount reads the
# whole archive to build its index), walk, and reads capped at AM_CAP s.
AM_ERRORS="" AM_SMALL_MOUNT="" AM_WALK_COLD="" AM_WALK_WARM="" AM_READ_COLD="" AM_BIG_MOUNT="" AM_BIG_MBPS="" AM_BIG_NOTE=""
# fuse::capped OUTVAR CMD...: "SECONDS" of CMD, ">CAP" if it hit the cap,
# with " (N errors)" appended when CMD reported errors on stderr.
fuse::capped() {
  local -n _o=$1; shift
  local _t rc=0 errs
  bench::time _t timeout -k 10 "$AM_CAP" "$@" >/dev/null 2>"$W/capped.err" || rc=$?
  if ((rc == 124 || rc == 137)); then _o=">$AM_CAP"; else _o=$(printf '%.3f' "$_t"); fi
  errs=$(grep -c . "$W/capped.err" || true)
  if ((rc != 0 && rc != 124 && rc != 137)); then
    _o+=" ($errs errors)"
    AM_ERRORS=$(head -n 1 "$W/capped.err")
  fi
}
if [[ -n "$DO_AM" ]]; then
  bench::log "archivemount (context, once; each step capped at ${AM_CAP}s)"
  AM_SMALL=$W/mnt-am-small AM_SEQ=$W/mnt-am-seq
  mkdir -p "$AM_SMALL" "$AM_SEQ"
  fuse::drop
  t0=$EPOCHREALTIME
  bench::start_daemon AM_PID "$W/archivemount-small.log" "mountpoint -q '$AM_SMALL'" 600 \
    archivemount -f -o readonly "$SMALL_TGZ" "$AM_SMALL"
  fuse::track "$AM_PID"
  bench::since AM_SMALL_MOUNT "$t0"
  fuse::drop; fuse::capped AM_WALK_COLD "${WALK[@]/#DIR/$AM_SMALL}"
  fuse::capped AM_WALK_WARM "${WALK[@]/#DIR/$AM_SMALL}"
  fuse::drop; fuse::capped AM_READ_COLD "${READALL[@]/#DIR/$AM_SMALL}"
  bench::stop_daemon "$AM_PID" 10 || true; fuse::unmount "$AM_SMALL"

  fuse::drop
  t0=$EPOCHREALTIME
  bench::start_daemon AM_PID "$W/archivemount-seq.log" "mountpoint -q '$AM_SEQ'" 600 \
    archivemount -f -o readonly "$SEQ_TGZ" "$AM_SEQ"
  fuse::track "$AM_PID"
  bench::since AM_BIG_MOUNT "$t0"
  fuse::drop
  # dd prints what it copied when interrupted: the rate over the cap.
  t0=$EPOCHREALTIME
  timeout -s INT -k 30 "$AM_CAP" dd if="$AM_SEQ/data/big.bin" of=/dev/null bs=1M 2>"$W/am-dd.err" || true
  bench::since t "$t0"
  am_bytes=$(awk '/bytes/ {print $1; exit}' "$W/am-dd.err")
  if [[ -n "$am_bytes" && "$am_bytes" -gt 0 ]]; then
    fuse::mbps AM_BIG_MBPS "$am_bytes" "$t"
    ((am_bytes < GIB)) && AM_BIG_NOTE="capped: $((am_bytes >> 20)) MiB in $(printf '%.0f' "$t") s"
  else
    AM_BIG_NOTE="no bytes read in ${AM_CAP}s"
  fi
  bench::stop_daemon "$AM_PID" 10 || true; fuse::unmount "$AM_SEQ"
fi

# ------------------------------------------------------------------ trace
# FUSE requests per operation (untimed extra runs): fuse:fuse_request_send/
# end tracepoints filtered to one mount (bench/fuse_trace.py).
TRACE_LINES=()
if [[ -n "$DO_TRACE" ]]; then
  bench::log "counting FUSE requests (fuse tracepoints; extra untimed runs)"
  trace() {  # trace MOUNT LABEL --cold|--warm CMD...
    local mnt=$1 label=$2 mode=$3; shift 3
    # --cold: after a page-cache drop; --warm: after an untimed run of CMD.
    if [[ "$mode" == --cold ]]; then fuse::drop; else "$@" >/dev/null 2>&1 || true; fi
    local out rc=0
    out=$("$BENCH_PY" "$TRACE_PY" "$mnt" "$label" -- "$@") || rc=$?
    if ((rc == 3)); then return 1; fi
    ((rc == 0)) || { NOTES+=("fuse_trace failed for '$label'"); return 0; }
    TRACE_LINES+=("$out")
  }
  fuse::restart_main
  if trace "$MNT" "cairn seq 1GiB, 1st open, fresh, cold" --cold dd if="$C_BIG" of=/dev/null bs=1M status=none; then
    trace "$MNT" "cairn seq 1GiB, cold" --cold dd if="$C_BIG" of=/dev/null bs=1M status=none
    trace "$SQ_SEQ" "squashfuse seq 1GiB, cold" --cold dd if="$S_BIG" of=/dev/null bs=1M status=none
    trace "$MNT" "cairn seq 1GiB, warm" --warm dd if="$C_BIG" of=/dev/null bs=1M status=none
    # Warm first: its untimed run verifies every blob (fresh cairnd).
    trace "$MNT" "cairn walk, warm" --warm "${WALK[@]/#DIR/$C_SMALL}"
    trace "$MNT" "cairn read-all, warm" --warm "${READALL[@]/#DIR/$C_SMALL}"
    trace "$MNT" "cairn read-all, warm, by-digest" --warm "${READALL[@]/#DIR/$C_SMALL_D}"
    trace "$MNT" "cairn walk, cold" --cold "${WALK[@]/#DIR/$C_SMALL}"
    trace "$SQ_SMALL" "squashfuse walk, cold" --cold "${WALK[@]/#DIR/$S_SMALL}"
    trace "$MNT" "cairn read-all, cold" --cold "${READALL[@]/#DIR/$C_SMALL}"
    trace "$SQ_SMALL" "squashfuse walk, warm" --warm "${WALK[@]/#DIR/$S_SMALL}"
    trace "$MNT" "cairn exec via ref, warm (1 exec)" --warm "$C_EXE" --version
    trace "$MNT" "cairn exec via by-digest, warm" --warm "$C_EXE_D" --version
    trace "$SQ_SEQ" "squashfuse exec, warm (1 exec)" --warm "$S_EXE" --version
  else
    NOTES+=("no fuse:fuse_request_* tracepoints in this kernel (recent kernels only); request counts skipped")
  fi
fi

# ------------------------------------------------------------------ report
med() { bench::median "$@"; }
f() { local v; bench::fmt v "$1" "$2"; printf '%s' "$v"; }
x() { [[ -z "$1" ]] && { printf -- '-'; return; }; printf '%sx' "$(f "$1" 2)"; }
ratio() { bench::py "$1 / $2"; }
# ctx OUTVAR VALUE OP LIMIT: "(OK)"/"(MISS)": the target's test applied to
# a context row, for information.
ctx() { local -n _c=$1; local v; bench::judge v "$2" "$3" "$4"; _c="($v)"; }
ctx_() { local _ctxv; ctx _ctxv "$@"; printf '%s' "$_ctxv"; }

for a in T_SEQ_FIRST T_SEQ_C_COLD T_SEQ_S_COLD T_SEQ_N_COLD T_SEQ_C_WARM T_SEQ_S_WARM T_SEQ_N_WARM T_SEQ_M_WARM \
  T_WALK_FRESH T_WALK_C_COLD T_WALK_S_COLD T_WALK_N_COLD T_WALK_C_WARM T_WALK_S_WARM T_WALK_N_WARM \
  T_READ_FIRST T_READ_C_COLD T_READ_S_COLD T_READ_N_COLD T_READ_C_WARM T_READ_S_WARM T_READ_N_WARM \
  T_WALK_CD_WARM T_READ_CD_WARM T_SEQ_AFTER_PUSH \
  X_N X_C X_CD X_S P_C_TOTAL P_C_PUSH P_C_EXEC P_R_TOTAL P_R_PUSH P_R_GET P_R_SHA P_R_TAR P_R_EXEC \
  P_SEQ_FIRST P_SEQ_COLD P_SEQ_WARM P_WALK_WARM P_READ_WARM P_READ_COLD P_WALK_COLD P_X_C P_X_N; do
  declare -n arr=$a
  med "m_$a" "${arr[@]}"
  unset -n arr
done
# Throughputs (MB/s) from the median times.
for a in SEQ_AFTER_PUSH SEQ_FIRST SEQ_C_COLD SEQ_S_COLD SEQ_N_COLD SEQ_C_WARM SEQ_S_WARM SEQ_N_WARM; do
  declare -n tm=m_T_$a
  fuse::mbps "mb_$a" "$GIB" "$tm"
  unset -n tm
done
mb_SEQ_M_WARM=""
[[ -n "$m_T_SEQ_M_WARM" ]] && fuse::mbps mb_SEQ_M_WARM "$GIB" "$m_T_SEQ_M_WARM"
for a in P_SEQ_FIRST P_SEQ_COLD P_SEQ_WARM; do
  declare -n tm=m_$a
  fuse::mbps "mb_$a" "$GIB" "$tm"
  unset -n tm
done

r1a=$(ratio "$mb_SEQ_C_COLD" "$mb_SEQ_S_COLD"); bench::judge ok1a "$r1a" ">=" 1.0
r1b=$(ratio "$mb_SEQ_C_COLD" "$mb_SEQ_N_COLD"); bench::judge ok1b "$r1b" ">=" 0.6
r1c=$(ratio "$mb_SEQ_C_WARM" "$mb_SEQ_N_WARM"); bench::judge ok1c "$r1c" ">=" 0.9
r1d=$(ratio "$mb_SEQ_FIRST" "$mb_SEQ_S_COLD"); ctx ok1d "$r1d" ">=" 1.0
r1e=$(ratio "$mb_SEQ_FIRST" "$mb_SEQ_N_COLD"); ctx ok1e "$r1e" ">=" 0.6
r2a=$(ratio "$m_T_WALK_C_WARM" "$m_T_WALK_N_WARM"); bench::judge ok2a "$r2a" "<=" 1.3
r2b=$(ratio "$m_T_READ_C_WARM" "$m_T_READ_N_WARM"); bench::judge ok2b "$r2b" "<=" 1.3
r2c=$(ratio "$m_T_WALK_C_COLD" "$m_T_WALK_S_COLD"); bench::judge ok2c "$r2c" "<=" 1.0
r2d=$(ratio "$m_T_READ_C_COLD" "$m_T_READ_S_COLD"); bench::judge ok2d "$r2d" "<=" 1.0
r2e=$(ratio "$m_T_WALK_FRESH" "$m_T_WALK_S_COLD"); ctx ok2e "$r2e" "<=" 1.0
r2f=$(ratio "$m_T_READ_FIRST" "$m_T_READ_S_COLD"); ctx ok2f "$r2f" "<=" 1.0
r3=$(ratio "$m_X_C" "$m_X_N"); bench::judge ok3 "$r3" "<=" 1.2
r3b=$(ratio "$m_X_CD" "$m_X_N"); ctx ok3b "$r3b" "<=" 1.2
r4=$(ratio "$m_P_C_TOTAL" "$m_P_R_TOTAL"); bench::judge ok4 "$r4" "<=" 0.5

bench::row "1 seq read 1 GiB, cold (MB/s)" "$(f "$mb_SEQ_C_COLD" 0)" "$(f "$mb_SEQ_S_COLD" 0)" "$(x "$r1a")" ">= 1.0x squashfuse" "$ok1a"
bench::row "1 seq read 1 GiB, cold (MB/s)" "$(f "$mb_SEQ_C_COLD" 0)" "$(f "$mb_SEQ_N_COLD" 0)" "$(x "$r1b")" ">= 0.6x native" "$ok1b"
bench::row "1 seq read 1 GiB, warm (MB/s)" "$(f "$mb_SEQ_C_WARM" 0)" "$(f "$mb_SEQ_N_WARM" 0)" "$(x "$r1c")" ">= 0.9x native" "$ok1c"
bench::row "2 tree walk, warm (s)" "$(f "$m_T_WALK_C_WARM" 3)" "$(f "$m_T_WALK_N_WARM" 3)" "$(x "$r2a")" "<= 1.3x native" "$ok2a"
bench::row "2 read every file, warm (s)" "$(f "$m_T_READ_C_WARM" 3)" "$(f "$m_T_READ_N_WARM" 3)" "$(x "$r2b")" "<= 1.3x native" "$ok2b"
bench::row "2 tree walk, cold (s)" "$(f "$m_T_WALK_C_COLD" 3)" "$(f "$m_T_WALK_S_COLD" 3)" "$(x "$r2c")" "<= 1.0x squashfuse" "$ok2c"
bench::row "2 read every file, cold (s)" "$(f "$m_T_READ_C_COLD" 3)" "$(f "$m_T_READ_S_COLD" 3)" "$(x "$r2d")" "<= 1.0x squashfuse" "$ok2d"
bench::row "3 exec $(basename "$SEQ_EXE") --version via ref (ms)" "$(f "$m_X_C" 2)" "$(f "$m_X_N" 2)" "$(x "$r3")" "<= 1.2x native" "$ok3"
bench::row "4 push to first exec (s)" "$(f "$m_P_C_TOTAL" 3)" "$(f "$m_P_R_TOTAL" 3)" "$(x "$r4")" "<= 0.5x registry+tar" "$ok4"
bench::row "--"
bench::row "ctx 1 seq cold, 1st open in fresh cairnd" "$(f "$mb_SEQ_FIRST" 0)" "$(f "$mb_SEQ_S_COLD" 0)" "$(x "$r1d")" "(>= 1.0x squashfuse)" "$ok1d"
bench::row "ctx 1 seq cold, 1st open in fresh cairnd" "$(f "$mb_SEQ_FIRST" 0)" "$(f "$mb_SEQ_N_COLD" 0)" "$(x "$r1e")" "(>= 0.6x native)" "$ok1e"
bench::row "ctx 1 seq cold, 1st open right after push" "$(f "$mb_SEQ_AFTER_PUSH" 0)" "$(f "$mb_SEQ_S_COLD" 0)" "$(x "$(ratio "$mb_SEQ_AFTER_PUSH" "$mb_SEQ_S_COLD")")" "(>= 1.0x squashfuse)" "$(ctx_ "$(ratio "$mb_SEQ_AFTER_PUSH" "$mb_SEQ_S_COLD")" ">=" 1.0)"
bench::row "ctx 1 squashfuse seq cold / native (MB/s)" "-" "$(f "$mb_SEQ_S_COLD" 0) / $(f "$mb_SEQ_N_COLD" 0)" "$(x "$(ratio "$mb_SEQ_S_COLD" "$mb_SEQ_N_COLD")")" "-" "-"
bench::row "ctx 1 squashfuse seq warm (MB/s)" "$(f "$mb_SEQ_C_WARM" 0)" "$(f "$mb_SEQ_S_WARM" 0)" "$(x "$(ratio "$mb_SEQ_C_WARM" "$mb_SEQ_S_WARM")")" "-" "-"
if [[ -n "$mb_SEQ_M_WARM" ]]; then
  bench::row "ctx 1 seq warm vs tmpfs, 4 KiB pages (MB/s)" "$(f "$mb_SEQ_C_WARM" 0)" "$(f "$mb_SEQ_M_WARM" 0)" "$(x "$(ratio "$mb_SEQ_C_WARM" "$mb_SEQ_M_WARM")")" "-" "-"
  bench::row "ctx 1 tmpfs seq warm / native (MB/s)" "-" "$(f "$mb_SEQ_M_WARM" 0) / $(f "$mb_SEQ_N_WARM" 0)" "$(x "$(ratio "$mb_SEQ_M_WARM" "$mb_SEQ_N_WARM")")" "-" "-"
fi
if [[ -n "$DO_AM" ]]; then
  bench::row "ctx 1 archivemount seq cold (MB/s)" "$(f "$mb_SEQ_C_COLD" 0)" "$(f "$AM_BIG_MBPS" 1)${AM_BIG_NOTE:+ ($AM_BIG_NOTE)}" "-" "-" "-"
  bench::row "ctx 1 archivemount mount of 1 GiB tar.gz (s)" "-" "$(f "$AM_BIG_MOUNT" 2)" "-" "-" "-"
fi
bench::row "ctx 2 walk warm, by-digest path (1 run, s)" "$(f "$m_T_WALK_CD_WARM" 3)" "$(f "$m_T_WALK_N_WARM" 3)" "$(x "$(ratio "$m_T_WALK_CD_WARM" "$m_T_WALK_N_WARM")")" "(<= 1.3x native)" "$(ctx_ "$(ratio "$m_T_WALK_CD_WARM" "$m_T_WALK_N_WARM")" "<=" 1.3)"
bench::row "ctx 2 read-all warm, by-digest (1 run, s)" "$(f "$m_T_READ_CD_WARM" 3)" "$(f "$m_T_READ_N_WARM" 3)" "$(x "$(ratio "$m_T_READ_CD_WARM" "$m_T_READ_N_WARM")")" "(<= 1.3x native)" "$(ctx_ "$(ratio "$m_T_READ_CD_WARM" "$m_T_READ_N_WARM")" "<=" 1.3)"
bench::row "ctx 2 walk cold, fresh cairnd (1 run, s)" "$(f "$m_T_WALK_FRESH" 3)" "$(f "$m_T_WALK_S_COLD" 3)" "$(x "$r2e")" "(<= 1.0x squashfuse)" "$ok2e"
bench::row "ctx 2 read-all cold, fresh cairnd (1 run, s)" "$(f "$m_T_READ_FIRST" 3)" "$(f "$m_T_READ_S_COLD" 3)" "$(x "$r2f")" "(<= 1.0x squashfuse)" "$ok2f"
bench::row "ctx 2 walk cold vs native (s)" "$(f "$m_T_WALK_C_COLD" 3)" "$(f "$m_T_WALK_N_COLD" 3)" "$(x "$(ratio "$m_T_WALK_C_COLD" "$m_T_WALK_N_COLD")")" "-" "-"
bench::row "ctx 2 read-all cold vs native (s)" "$(f "$m_T_READ_C_COLD" 3)" "$(f "$m_T_READ_N_COLD" 3)" "$(x "$(ratio "$m_T_READ_C_COLD" "$m_T_READ_N_COLD")")" "-" "-"
bench::row "ctx 2 squashfuse walk / read-all warm (1 run, s)" "-" "$(f "$m_T_WALK_S_WARM" 3) / $(f "$m_T_READ_S_WARM" 3)" "-" "-" "-"
if [[ -n "$DO_AM" ]]; then
  bench::row "ctx 2 archivemount mount small tar.gz (s)" "-" "$(f "$AM_SMALL_MOUNT" 2)" "-" "-" "-"
  bench::row "ctx 2 archivemount walk cold / warm (s)" "-" "$AM_WALK_COLD / $AM_WALK_WARM" "-" "-" "-"
  bench::row "ctx 2 archivemount read-all cold (s)" "$(f "$m_T_READ_C_COLD" 3)" "$AM_READ_COLD" "-" "-" "-"
fi
bench::row "ctx 3 exec via by-digest path (ms)" "$(f "$m_X_CD" 2)" "$(f "$m_X_N" 2)" "$(x "$r3b")" "(<= 1.2x native)" "$ok3b"
bench::row "ctx 3 exec from squashfuse (ms)" "$(f "$m_X_C" 2)" "$(f "$m_X_S" 2)" "$(x "$(ratio "$m_X_C" "$m_X_S")")" "-" "-"
bench::row "ctx 4 cairn: push / exec after push (s)" "$(f "$m_P_C_PUSH" 3) / $(f "$m_P_C_EXEC" 3)" "-" "-" "-" "-"
bench::row "ctx 4 registry: push/GET/sha256/untar/exec" "-" "$(f "$m_P_R_PUSH" 3)/$(f "$m_P_R_GET" 3)/$(f "$m_P_R_SHA" 3)/$(f "$m_P_R_TAR" 3)/$(f "$m_P_R_EXEC" 3)" "-" "-" "-"
bench::row "--"
# ctxp LABEL CAIRN PEER RATIO OP TARGET LIMIT: a passthrough context row.
ctxp() { bench::row "$1" "$2" "$3" "$(x "$4")" "($6)" "$(ctx_ "$4" "$5" "$7")"; }
ctxp "P 1 seq cold (MB/s)" "$(f "$mb_P_SEQ_COLD" 0)" "$(f "$mb_SEQ_S_COLD" 0)" "$(ratio "$mb_P_SEQ_COLD" "$mb_SEQ_S_COLD")" ">=" ">= 1.0x squashfuse" 1.0
ctxp "P 1 seq cold (MB/s)" "$(f "$mb_P_SEQ_COLD" 0)" "$(f "$mb_SEQ_N_COLD" 0)" "$(ratio "$mb_P_SEQ_COLD" "$mb_SEQ_N_COLD")" ">=" ">= 0.6x native" 0.6
ctxp "P 1 seq warm (MB/s)" "$(f "$mb_P_SEQ_WARM" 0)" "$(f "$mb_SEQ_N_WARM" 0)" "$(ratio "$mb_P_SEQ_WARM" "$mb_SEQ_N_WARM")" ">=" ">= 0.9x native" 0.9
ctxp "P 2 tree walk, warm (s)" "$(f "$m_P_WALK_WARM" 3)" "$(f "$m_T_WALK_N_WARM" 3)" "$(ratio "$m_P_WALK_WARM" "$m_T_WALK_N_WARM")" "<=" "<= 1.3x native" 1.3
ctxp "P 2 read every file, warm (s)" "$(f "$m_P_READ_WARM" 3)" "$(f "$m_T_READ_N_WARM" 3)" "$(ratio "$m_P_READ_WARM" "$m_T_READ_N_WARM")" "<=" "<= 1.3x native" 1.3
ctxp "P 2 tree walk, cold (s)" "$(f "$m_P_WALK_COLD" 3)" "$(f "$m_T_WALK_S_COLD" 3)" "$(ratio "$m_P_WALK_COLD" "$m_T_WALK_S_COLD")" "<=" "<= 1.0x squashfuse" 1.0
ctxp "P 2 read every file, cold (s)" "$(f "$m_P_READ_COLD" 3)" "$(f "$m_T_READ_S_COLD" 3)" "$(ratio "$m_P_READ_COLD" "$m_T_READ_S_COLD")" "<=" "<= 1.0x squashfuse" 1.0
ctxp "P 3 exec via ref (ms)" "$(f "$m_P_X_C" 2)" "$(f "$m_P_X_N" 2)" "$(ratio "$m_P_X_C" "$m_P_X_N")" "<=" "<= 1.2x native" 1.2
ctxp "P 1 seq cold, 1st open in fresh cairnd" "$(f "$mb_P_SEQ_FIRST" 0)" "$(f "$mb_SEQ_S_COLD" 0)" "$(ratio "$mb_P_SEQ_FIRST" "$mb_SEQ_S_COLD")" ">=" ">= 1.0x squashfuse" 1.0
bench::row "--"
bench::row "ctx setup: push 1 GiB artefact / small tree (s)" "$(f "$T_SETUP_SEQ" 2) / $(f "$T_SETUP_SMALL" 2)" "-" "-" "-" "-"

echo
echo "== Cairn FUSE bench ($(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), median of $RUNS) =="
echo "tree:    binaries built from the working tree; modified vs HEAD then under fuse/ store/ tools/: ${TREE_DIRTY:-none}"
echo "inputs:  (1) $SEQ_TGZ: data/big.bin, 1 GiB openssl aes-128-ctr keystream (sha256 ${SEQ_SHA:0:16}...),"
echo "         and $SEQ_EXE (copy of $SEQ_EXE_SRC, $SEQ_EXE_BYTES bytes, '$SEQ_EXE_VERSION'); gz $(bench::py "f'{$SEQ_TGZ_BYTES/1e6:.0f}'") MB, squashfs $(bench::py "f'{$SEQ_IMG_BYTES/1e6:.0f}'") MB"
echo "         (2) $SMALL_TREE: first $SMALL_FILES regular files of ${SMALL_SOURCES[*]} (walked in that order):"
echo "             top dirs taken: $SMALL_TOP"
echo "             $SMALL_REGULAR files, $SMALL_SYMLINKS symlinks, $SMALL_DIRS dirs, $(bench::py "f'{$SMALL_FILE_BYTES/1e6:.1f}'") MB, median file $SMALL_MEDIAN_BYTES B;" \
  "gz $(bench::py "f'{$SMALL_TGZ_BYTES/1e6:.1f}'") MB, squashfs $(bench::py "f'{$SMALL_IMG_BYTES/1e6:.1f}'") MB"
echo "         (4) $BENCH_INPUT ($USRLIB_SELECTION): $USRLIB_REGULAR files, gz $(bench::py "f'{$USRLIB_GZ_BYTES/1e6:.0f}'") MB; exec of $P2E_EXE"
bench::machine_info
echo "load:    loadavg at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews figures)"
echo "         other CPU use before each run (%): ${BUSY[*]}; push-to-exec runs: ${BUSY_P2E[*]}"
echo "peers:   native = the unpacked trees above on $(df -T "$BENCH_ROOT" | awk 'NR==2 {print $2}') ($BENCH_ROOT);" \
  "$(squashfuse --version 2>&1 | head -n 1 | sed 's/ (c).*//') (high-level libfuse3, multi-threaded) over mksquashfs $(mksquashfs -version 2>&1 | head -n 1 | awk '{print $3}') images (default options: gzip, 128 KiB blocks);"
echo "         $(archivemount --version 2>&1 | head -n 1) -o readonly; $(docker-registry --version 2>&1 | head -n 1); $(hyperfine --version)"
echo
bench::print_table
echo
echo "per-run figures (in run order):"
echo "  seq 1 GiB s: cairn 1st open after push (once) ${T_SEQ_AFTER_PUSH[*]} (cairnd CPU ${CPU_AFTER_PUSH[*]} s); cairn 1st open ${T_SEQ_FIRST[*]}; cairn cold ${T_SEQ_C_COLD[*]}; squashfuse cold ${T_SEQ_S_COLD[*]}; native cold ${T_SEQ_N_COLD[*]}"
echo "               cairn warm ${T_SEQ_C_WARM[*]}; squashfuse warm ${T_SEQ_S_WARM[*]}; native warm ${T_SEQ_N_WARM[*]}; tmpfs warm ${T_SEQ_M_WARM[*]:--}"
echo "               cairnd CPU s: 1st open ${CPU_SEQ_FIRST[*]}; cold ${CPU_SEQ_COLD[*]}"
echo "  walk s:      cold: cairn ${T_WALK_C_COLD[*]}; squashfuse ${T_WALK_S_COLD[*]}; native ${T_WALK_N_COLD[*]}"
echo "               warm: cairn ${T_WALK_C_WARM[*]}; native ${T_WALK_N_WARM[*]}"
echo "  read-all s:  cold: cairn ${T_READ_C_COLD[*]}; squashfuse ${T_READ_S_COLD[*]}; native ${T_READ_N_COLD[*]}"
echo "               warm: cairn ${T_READ_C_WARM[*]}; native ${T_READ_N_WARM[*]}"
echo "               cairnd CPU s: cold ${CPU_READ_COLD[*]}; warm ${CPU_READ_WARM[*]}"
echo "  once:        fresh cairnd: walk cold ${T_WALK_FRESH[*]}, read-all cold ${T_READ_FIRST[*]} (cairnd CPU ${CPU_READ_FIRST[*]} s);"
echo "               squashfuse warm: walk ${T_WALK_S_WARM[*]}, read-all ${T_READ_S_WARM[*]};" \
  "cairn by-digest warm: walk ${T_WALK_CD_WARM[*]}, read-all ${T_READ_CD_WARM[*]}"
echo "  exec ms (hyperfine medians): native ${X_N[*]}; cairn ref ${X_C[*]}; cairn by-digest ${X_CD[*]}; squashfuse ${X_S[*]}"
echo "  passthrough: seq s 1st open ${P_SEQ_FIRST[*]}; cold ${P_SEQ_COLD[*]}; warm ${P_SEQ_WARM[*]}"
echo "               walk s warm ${P_WALK_WARM[*]}; cold ${P_WALK_COLD[*]}; read-all s warm ${P_READ_WARM[*]} (cairnd CPU ${CPU_P_READ_WARM[*]} s); cold ${P_READ_COLD[*]}"
echo "               exec ms native ${P_X_N[*]}; cairn ref ${P_X_C[*]}"
echo "  push-to-exec s: cairn ${P_C_TOTAL[*]} (push ${P_C_PUSH[*]}; exec attempts before success ${P_C_TRIES[*]})"
echo "                  registry ${P_R_TOTAL[*]} (push ${P_R_PUSH[*]}; GET ${P_R_GET[*]}; sha256sum ${P_R_SHA[*]}; tar xzf ${P_R_TAR[*]}; exec ${P_R_EXEC[*]})"
if ((${#TRACE_LINES[@]})); then
  echo "FUSE requests (extra untimed runs; count, mean send-to-reply time, mean READ reply size):"
  for l in "${TRACE_LINES[@]}"; do echo "  $l"; done
fi
echo
echo "notes:"
echo "  - 'cold' = sync; echo 3 > /proc/sys/vm/drop_caches before the step (page cache, dentries and"
echo "    inodes, for every file system); the daemons keep running (their own memory caches stay:"
echo "    cairnd's RocksDB block cache, squashfuse's block cache). 'warm' = the same step right after an"
echo "    untimed identical one."
echo "  - (1) dd bs=1M of data/big.bin (MB = 10^6 bytes). The target rows use the cold read in a cairnd"
echo "    that already verified the blob (a later cold read). Cairn verifies a blob's SHA-256 at its first"
echo "    read in a daemon's life: the '1st open in fresh cairnd' rows (cairnd restarted on the same data"
echo "    dir, then the cold read) include that hash pass over the cold blob before the first byte;"
echo "    '1st open right after push' is the same in the daemon that ingested the artefact (once)."
echo "  - (2) walk = find -H DIR -printf '%y %m %s %p' (an lstat of every entry); read every file ="
echo "    find -H DIR -type f -exec cat {} + > /dev/null. Cairn's DIR is the ref symlink MNT/bench-small@main."
echo "    'fresh cairnd' = restarted just before (every first read verifies its blob; RocksDB block cache empty)."
echo "    The by-digest rows walk MNT/by-digest/sha256:... instead (no ref symlink in every path)."
echo "  - (3) hyperfine -N --warmup 3 (median of its runs; median of those over the $RUNS runs); the ref path"
echo "    goes through bench@main, whose entry the kernel caches until the ref changes (docs/fuse.md)."
echo "  - (4) cairn: from the start of 'cairn push FILE --ref usrlib@main --arch noarch' (digest cached"
echo "    beforehand, untimed: no client hashing timed) to the first successful exec of"
echo "    MNT/usrlib@main/$P2E_EXE (retried every 5 ms). Registry: POST + PUT with the digest (computed"
echo "    untimed), GET to a file, sha256sum -c of it, tar xzf into a new dir, exec of $P2E_EXE."
echo "    Fresh server, data dir and mount per run; input in the page cache; nothing fsynced on the host."
echo "  - P rows: the same steps on a cairnd restarted with --fuse-passthrough (files of 1 MiB and more"
echo "    read by the kernel from their blobs; one OPEN + RELEASE request per open), against the default"
echo "    mount's peers of the same run; judged against the targets for information only."
if [[ -n "$DO_AM" ]]; then
  echo "  - archivemount: once, each step capped at ${AM_CAP}s ('>' = hit the cap); the 1 GiB read rate is"
  echo "    over what dd copied before the cap."
fi
[[ -n "$AM_ERRORS" ]] && echo "  - archivemount could not find some entries of the small tree; first error: $AM_ERRORS"
for n in "${NOTES[@]}"; do echo "  - $n"; done
exit 0
