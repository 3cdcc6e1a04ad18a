# Shared helpers for Cairn's bench scripts (bench/*.sh). Source it:
#
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
#
# It provides: logging, timing (EPOCHREALTIME, microseconds), median and
# arithmetic (python3), free-port picking, background daemons with a
# readiness wait, cleanup of every process and temp dir it started (EXIT
# trap), building the Cairn binaries, the cached realistic input
# (bench::input_usrlib) and the result table (bench::row, bench::print_table).
# See docs/bench.md.
#
# Conventions: functions are named bench::*; results are returned through a
# nameref (first argument) rather than $(...), so that background processes
# stay children of the calling shell (wait and $! need that).

# shellcheck shell=bash

if [[ -n "${BENCH_LIB_LOADED:-}" ]]; then return 0; fi
BENCH_LIB_LOADED=1

# EPOCHREALTIME follows LC_NUMERIC's radix character; keep it a '.'.
export LC_ALL=C

BENCH_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# Cache and scratch space. Must be a real disk (not tmpfs): the figures
# include fsync and write-back costs.
BENCH_ROOT="${CAIRN_BENCH_DIR:-/var/tmp/cairn-bench}"
mkdir -p "$BENCH_ROOT"

# Debian's python3 (the project's machines have it); PYTHON overrides.
if [[ -n "${PYTHON:-}" ]]; then
  BENCH_PY="$PYTHON"
elif [[ -x /usr/bin/python3 ]]; then
  BENCH_PY=/usr/bin/python3
else
  BENCH_PY="$(command -v python3 || true)"
fi
if [[ -z "$BENCH_PY" ]]; then
  echo "bench: python3 is required (apt-get install python3)" >&2
  exit 2
fi

# ---------------------------------------------------------------- logging

bench::log() { printf '[bench %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
bench::die() { printf '[bench] FATAL: %s\n' "$*" >&2; exit 1; }

# bench::need CMD...: dies naming the first missing command.
bench::need() {
  local c
  for c in "$@"; do
    command -v "$c" >/dev/null 2>&1 || bench::die "missing command '$c' (see docs/bench.md)"
  done
}

# ---------------------------------------------------------------- numbers

# bench::py EXPR...: prints the value of a python expression (math imported).
bench::py() { "$BENCH_PY" -c "import math, statistics; print($*)"; }

# bench::median OUTVAR V1 V2 ...: the median of the values (empty if none).
bench::median() {
  local -n _out=$1; shift
  if (($# == 0)); then _out=""; return; fi
  _out=$("$BENCH_PY" -c 'import sys, statistics; print(statistics.median(float(x) for x in sys.argv[1:]))' "$@")
}

# bench::fmt OUTVAR VALUE DECIMALS: rounds for display ("-" stays "-").
bench::fmt() {
  local -n _out=$1
  if [[ -z "$2" || "$2" == "-" ]]; then _out="-"; return; fi
  _out=$(printf "%.${3}f" "$2")
}

# ---------------------------------------------------------------- timing

# bench::time OUTVAR CMD...: runs CMD, sets OUTVAR to its wall time in
# seconds (microsecond resolution) and returns CMD's status. Also sets
# BENCH_T_START and BENCH_T_END (EPOCHREALTIME strings). No subprocess.
bench::time() {
  local -n _out=$1; shift
  local _rc=0 _us
  BENCH_T_START=$EPOCHREALTIME
  "$@" || _rc=$?
  BENCH_T_END=$EPOCHREALTIME
  _us=$((${BENCH_T_END/./} - ${BENCH_T_START/./}))
  printf -v _out '%d.%06d' $((_us / 1000000)) $((_us % 1000000))
  return $_rc
}

# bench::since OUTVAR EPOCHREALTIME_STRING: seconds from then until now.
bench::since() {
  local -n _out=$1
  local _now=$EPOCHREALTIME _us
  _us=$((${_now/./} - ${2/./}))
  printf -v _out '%d.%06d' $((_us / 1000000)) $((_us % 1000000))
}

# bench::fresh_memory: untimed, at the start of each peer's run: write
# back, then drop the page cache, so every run (of every peer) starts with
# the same pool of recently freed guest pages. On this VM (virtio-balloon
# free page reporting) page-cache growth onto pages the host has taken back
# costs ~2.8 s of system time per GB at first touch, against ~0.13 s/GB on
# recycled pages: without this, whichever run comes after a few GB of
# writes (cairn's, which writes ~1 GB per push: tarball + unpacked files)
# paid it, and the figures depended on run order (docs/bench.md).
bench::fresh_memory() {
  sync
  echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || true
}

# bench::settle FILE...: untimed preparation before a timed step: flush dirty
# pages (so one step's write-back does not land in the next one's time) and
# make sure FILEs are in the page cache.
bench::settle() {
  sync
  local f
  for f in "$@"; do cat -- "$f" >/dev/null; done
}

# ---------------------------------------------------------------- processes

BENCH_PIDS=()
BENCH_DIRS=()

# bench::cleanup: TERM (then KILL after 10 s) every process started with
# bench::start_daemon and still alive, and removes every bench::tmpdir.
bench::cleanup() {
  local pid i
  for pid in "${BENCH_PIDS[@]}"; do
    if kill -0 "$pid" 2>/dev/null; then
      kill -TERM "$pid" 2>/dev/null || true
      for ((i = 0; i < 100; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
      done
      kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
      wait "$pid" 2>/dev/null || true
    fi
  done
  BENCH_PIDS=()
  if [[ -z "${BENCH_KEEP:-}" ]]; then
    local d
    for d in "${BENCH_DIRS[@]}"; do rm -rf -- "$d"; done
    ((${#BENCH_DIRS[@]})) && echo "$EPOCHSECONDS" >"$BENCH_ROOT/.last-delete"
  elif ((${#BENCH_DIRS[@]})); then
    bench::log "kept: ${BENCH_DIRS[*]}"
  fi
  BENCH_DIRS=()
}
trap bench::cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# bench::tmpdir OUTVAR [NAME]: a new directory under $BENCH_ROOT, removed at
# exit (kept when BENCH_KEEP is set).
bench::tmpdir() {
  local -n _out=$1
  _out=$(mktemp -d "$BENCH_ROOT/${2:-run}.XXXXXX")
  BENCH_DIRS+=("$_out")
}

# bench::rmdir DIR: removes a bench::tmpdir now. Avoid it for dirs with many
# files between measurements (see bench::fs_settle); leave them to the exit.
bench::rmdir() {
  rm -rf -- "$1"
  echo "$EPOCHSECONDS" >"$BENCH_ROOT/.last-delete"
  local d keep=()
  for d in "${BENCH_DIRS[@]}"; do [[ "$d" == "$1" ]] || keep+=("$d"); done
  BENCH_DIRS=("${keep[@]}")
}

# bench::pick_port OUTVAR: a TCP port free on 127.0.0.1 right now.
bench::pick_port() {
  local -n _out=$1
  _out=$("$BENCH_PY" -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
}

# bench::start_daemon OUTPID LOG READY_CMD TIMEOUT_S CMD...: starts CMD in the
# background (stdout and stderr to LOG) and waits until `eval READY_CMD`
# succeeds. Dies, showing LOG, if CMD exits first or TIMEOUT_S passes.
bench::start_daemon() {
  local -n _out=$1
  local log=$2 ready=$3 timeout=$4
  shift 4
  "$@" >"$log" 2>&1 &
  _out=$!
  BENCH_PIDS+=("$_out")
  local deadline=$((SECONDS + timeout))
  until eval "$ready" >/dev/null 2>&1; do
    if ! kill -0 "$_out" 2>/dev/null; then
      tail -n 20 "$log" >&2
      bench::die "'$1' exited before it was ready (log: $log)"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 20 "$log" >&2
      bench::die "'$1' not ready after ${timeout}s (log: $log)"
    fi
    sleep 0.05
  done
}

# bench::stop_daemon PID [TIMEOUT_S]: SIGTERM, wait for exit (KILL after the
# timeout, default 30 s). Returns the process's exit status.
bench::stop_daemon() {
  local pid=$1 timeout=${2:-30} i rc=0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < timeout * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  if kill -0 "$pid" 2>/dev/null; then
    bench::log "pid $pid did not exit ${timeout}s after SIGTERM; killing"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  wait "$pid" 2>/dev/null || rc=$?
  local p keep=()
  for p in "${BENCH_PIDS[@]}"; do [[ "$p" == "$pid" ]] || keep+=("$p"); done
  BENCH_PIDS=("${keep[@]}")
  return $rc
}

# bench::vm_hwm OUTVAR PID: peak resident set size in KiB (VmHWM).
bench::vm_hwm() {
  local -n _out=$1
  _out=$(awk '/^VmHWM:/ {print $2}' "/proc/$2/status" 2>/dev/null || true)
}

# bench::cpu_ticks OUTVAR PID: user+system CPU time of PID (all threads) in
# clock ticks (getconf CLK_TCK per second).
bench::cpu_ticks() {
  local -n _out=$1
  local _stat
  _stat=$(<"/proc/$2/stat")
  _stat=${_stat##*) }  # fields after the command name
  local -a _f
  read -r -a _f <<<"$_stat"
  # After "pid (comm) ", utime and stime are the 12th and 13th fields.
  _out=$((_f[11] + _f[12]))
}
BENCH_CLK_TCK=$(getconf CLK_TCK)

# ---------------------------------------------------------------- quiet

# bench::cpu_busy OUTVAR [SECONDS]: percent of all CPUs busy (not idle or
# iowait) over SECONDS (default 1), from /proc/stat.
bench::cpu_busy() {
  local -n _out=$1
  local -a _a _b
  read -r -a _a < /proc/stat
  sleep "${2:-1}"
  read -r -a _b < /proc/stat
  local _i _tot=0 _idle
  for ((_i = 1; _i < ${#_a[@]}; _i++)); do _tot=$((_tot + _b[_i] - _a[_i])); done
  _idle=$((_b[4] - _a[4] + _b[5] - _a[5]))
  if ((_tot > 0)); then _out=$(((_tot - _idle) * 100 / _tot)); else _out=0; fi
}

# bench::wait_quiet [MAX_S] [THRESHOLD_PCT]: waits (up to MAX_S, default
# BENCH_QUIET_MAX or 120 s) until other work uses under THRESHOLD_PCT
# (default 15) of the CPUs, so that a concurrent build does not land in the
# figures. Sets BENCH_BUSY to the last sample (percent). Never fails.
bench::wait_quiet() {
  local max=${1:-${BENCH_QUIET_MAX:-120}} thr=${2:-15} start=$SECONDS said=""
  while :; do
    bench::cpu_busy BENCH_BUSY 1
    ((BENCH_BUSY < thr)) && return 0
    if ((SECONDS - start >= max)); then
      bench::log "machine still ${BENCH_BUSY}% busy after ${max}s of waiting; measuring anyway"
      return 0
    fi
    if [[ -z "$said" ]]; then
      bench::log "machine ${BENCH_BUSY}% busy with other work; waiting up to ${max}s for it to calm down"
      said=1
    fi
    sleep 2
  done
}

# File creation on ext4 without a journal is slowed for 60-360 s after many
# inodes were deleted nearby (the allocator skips recently deleted inodes,
# reading each one's inode table block: fs/ext4/ialloc.c recently_deleted).
# Cairn creates one file per distinct file of an artefact, so a bench that
# starts right after another one removed its data dirs measures that. The
# cleanup records when it deleted; bench::fs_settle waits out the window.
BENCH_FS_WINDOW=${BENCH_FS_WINDOW:-360}

# bench::fs_nojournal: true when BENCH_ROOT is on ext4 without a journal.
bench::fs_nojournal() {
  local dev fstype
  read -r dev fstype < <(df -T "$BENCH_ROOT" | awk 'NR==2 {print $1, $2}')
  [[ "$fstype" == ext4 ]] || return 1
  dev=${dev##*/}
  ! compgen -G "/proc/fs/jbd2/${dev}-*" >/dev/null
}

# bench::fs_settle: on ext4 without a journal, waits until BENCH_FS_WINDOW
# seconds have passed since the last bench cleanup deleted data dirs (skip
# with BENCH_NO_FS_WAIT=1).
bench::fs_settle() {
  local stamp="$BENCH_ROOT/.last-delete" last age
  [[ -f "$stamp" && -z "${BENCH_NO_FS_WAIT:-}" ]] || return 0
  bench::fs_nojournal || return 0
  last=$(<"$stamp")
  age=$((EPOCHSECONDS - last))
  if ((age < BENCH_FS_WINDOW)); then
    bench::log "ext4 without journal: the last bench deleted its data ${age}s ago;" \
      "waiting $((BENCH_FS_WINDOW - age))s so that file creation is not slowed (BENCH_NO_FS_WAIT=1 skips)"
    sleep $((BENCH_FS_WINDOW - age))
  fi
}

# ---------------------------------------------------------------- machine

# bench::machine_info: prints one line about the machine.
bench::machine_info() {
  local model mem
  model=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
  mem=$(awk '/^MemTotal:/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)
  echo "machine: nproc=$(nproc), cpu='${model:-unknown}', mem=$mem, kernel=$(uname -r)"
  echo "disk:    $(df -hT "$BENCH_ROOT" | awk 'NR==2 {print $1, $2, "mounted on", $7}') (scratch: $BENCH_ROOT)"
}

# ---------------------------------------------------------------- Cairn

# bench::build_cairn: builds cairnd and cairn with -c opt and copies them to
# a run directory (so that a concurrent rebuild cannot swap them mid-run).
# Sets CAIRND and CAIRN. With CAIRN_BIN_DIR set, uses the binaries there
# instead and builds nothing.
bench::build_cairn() {
  local bindir
  if [[ -n "${CAIRN_BIN_DIR:-}" ]]; then
    bindir=$CAIRN_BIN_DIR
  else
    bench::log "bazel build -c opt //tools/cairnd:cairnd //tools/cairn:cairn"
    (cd "$BENCH_REPO" && bazel build -c opt //tools/cairnd:cairnd //tools/cairn:cairn) >&2 ||
      bench::die "bazel build failed"
    local out
    out=$(cd "$BENCH_REPO" && bazel info -c opt bazel-bin 2>/dev/null) ||
      bench::die "bazel info -c opt bazel-bin failed"
    local copy
    bench::tmpdir copy bin
    cp "$out/tools/cairnd/cairnd" "$out/tools/cairn/cairn" "$copy/" ||
      bench::die "built binaries not found under $out"
    bindir=$copy
  fi
  CAIRND="$bindir/cairnd"
  CAIRN="$bindir/cairn"
  [[ -x "$CAIRND" && -x "$CAIRN" ]] || bench::die "no cairnd/cairn in $bindir"
}

# bench::start_cairnd OUTPID DATA_DIR PORT LOG [EXTRA_ARGS...]: starts cairnd
# and waits for its "cairnd listening on" line.
bench::start_cairnd() {
  local -n _pid=$1
  local data=$2 port=$3 log=$4
  shift 4
  bench::start_daemon _pid "$log" "grep -q 'cairnd listening on' '$log'" 60 \
    "$CAIRND" --data-dir "$data" --listen "127.0.0.1:$port" "$@"
}

# bench::start_registry OUTPID DIR PORT: writes DIR/config.yml (blobs under
# DIR/data, quiet logs, no upload purging) and starts Debian's
# docker-registry on 127.0.0.1:PORT (log DIR/registry.log), waiting until
# its /v2/ answers.
bench::start_registry() {
  local -n _rpid=$1
  local dir=$2 port=$3
  cat >"$dir/config.yml" <<EOF
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $dir/data
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: 127.0.0.1:$port
EOF
  bench::start_daemon _rpid "$dir/registry.log" \
    "curl -fsS -o /dev/null http://127.0.0.1:$port/v2/" 30 \
    docker-registry serve "$dir/config.yml"
}

# bench::registry_push BASE FILE DIGEST: a monolithic blob upload to the
# registry at BASE (http://HOST:PORT/v2), repository "bench": POST, then one
# streamed PUT of FILE with its digest, until it answers 201. Returns 1 (with
# a message) on failure.
bench::registry_push() {
  local base=$1 file=$2 digest=$3 loc code
  loc=$(curl -fsS -X POST -D - -o /dev/null "$base/bench/blobs/uploads/" |
    tr -d '\r' | awk -F': ' 'tolower($1) == "location" {print $2}')
  [[ -n "$loc" ]] || { echo "registry POST gave no location" >&2; return 1; }
  code=$(curl -sS -X PUT -H 'Expect:' -H 'Content-Type: application/octet-stream' \
    -T "$file" -o /dev/null -w '%{http_code}' "$loc&digest=$digest")
  [[ "$code" == 201 ]] || { echo "registry PUT answered $code" >&2; return 1; }
}

# ---------------------------------------------------------------- input

# The realistic input: a subset of /usr/lib/x86_64-linux-gnu (real shared
# libraries, static archives, symlinks) of at most BENCH_USRLIB_MAX_MB
# apparent size, copied with `cp -a` into $BENCH_ROOT/usrlib.tree and
# packed with `cairn pack`. Cached across runs (and across scripts) in
# $BENCH_ROOT/usrlib.tar.gz; $BENCH_ROOT/usrlib.meta (shell assignments)
# describes it and is written last, so its presence means the cache is
# complete. Delete both (or pass --rebuild-input) to rebuild.
BENCH_USRLIB_SRC=/usr/lib/x86_64-linux-gnu
BENCH_USRLIB_MAX_MB=${BENCH_USRLIB_MAX_MB:-600}
# Excluded first (largest and least representative of shipped artefacts:
# a compiler tree and two LLVM/clang builds); then the largest remaining
# top-level entries are dropped until the subset fits the size cap.
BENCH_USRLIB_EXCLUDE=(fpc 'libLLVM*' 'libclang*')

# bench::input_usrlib [--rebuild]: ensures the cached input exists and sets
# BENCH_INPUT (the .tar.gz) and the USRLIB_* variables from its meta file.
# Needs CAIRN (bench::build_cairn) only when it has to pack.
bench::input_usrlib() {
  local tgz="$BENCH_ROOT/usrlib.tar.gz" meta="$BENCH_ROOT/usrlib.meta"
  local tree="$BENCH_ROOT/usrlib.tree"
  if [[ "${1:-}" == --rebuild ]]; then rm -rf -- "$meta" "$tgz" "$tree"; fi
  if [[ -s "$tgz" && -s "$meta" ]]; then
    # shellcheck disable=SC1090
    source "$meta"
    BENCH_INPUT=$tgz
    bench::log "input: cached $tgz ($USRLIB_SELECTION)"
    return
  fi
  rm -f -- "$meta"
  bench::log "input: selecting from $BENCH_USRLIB_SRC (cap ${BENCH_USRLIB_MAX_MB} MB)"
  local sel
  sel=$("$BENCH_PY" - "$BENCH_USRLIB_SRC" "$BENCH_USRLIB_MAX_MB" "${BENCH_USRLIB_EXCLUDE[@]}" <<'EOF'
import fnmatch, os, sys
src, cap_mb, excl = sys.argv[1], float(sys.argv[2]), sys.argv[3:]
def size(p):
    # Apparent bytes under p, symlinks not followed (what cp -a copies).
    if os.path.islink(p) or not os.path.isdir(p):
        return os.lstat(p).st_size
    total = 0
    for root, dirs, files in os.walk(p):
        for n in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            total += os.lstat(os.path.join(root, n)).st_size
    return total
names = sorted(os.listdir(src))
dropped = [n for n in names if any(fnmatch.fnmatch(n, e) for e in excl)]
keep = {n: size(os.path.join(src, n)) for n in names if n not in dropped}
while sum(keep.values()) > cap_mb * 1e6:
    big = max(keep, key=lambda n: (keep[n], n))
    dropped.append(big)
    del keep[big]
print(" ".join(sorted(dropped)))
print("\n".join(sorted(keep)))
EOF
) || bench::die "input selection failed"
  local dropped
  dropped=$(head -n 1 <<<"$sel")
  local -a entries
  mapfile -t entries < <(tail -n +2 <<<"$sel")
  bench::log "input: copying ${#entries[@]} top-level entries (dropped: $dropped)"
  rm -rf -- "$tree" && mkdir -p "$tree"
  (cd "$BENCH_USRLIB_SRC" && cp -a -t "$tree" -- "${entries[@]}") ||
    bench::die "cp -a from $BENCH_USRLIB_SRC failed"
  # cairn pack refuses devices, FIFOs and sockets; there are none in
  # practice, but drop any so that the pack cannot fail on them.
  find "$tree" ! -type f ! -type d ! -type l -delete
  bench::log "input: cairn pack $tree"
  local packlog="$BENCH_ROOT/usrlib.pack.log" t
  bench::time t "$CAIRN" pack "$tree" -o "$tgz.tmp" >"$packlog" 2>&1 ||
    { cat "$packlog" >&2; bench::die "cairn pack failed"; }
  mv -f -- "$tgz.tmp" "$tgz"
  local reg sym dirs filebytes tarbytes cbytes
  reg=$(find "$tree" -type f | wc -l)
  sym=$(find "$tree" -type l | wc -l)
  dirs=$(find "$tree" -mindepth 1 -type d | wc -l)
  filebytes=$(find "$tree" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}')
  tarbytes=$(igzip -dc "$tgz" | wc -c)
  cbytes=$(stat -c %s "$tgz")
  {
    printf 'USRLIB_SOURCE=%q\n' "$BENCH_USRLIB_SRC"
    printf 'USRLIB_SELECTION=%q\n' "$BENCH_USRLIB_SRC minus: $dropped"
    printf 'USRLIB_TREE=%q\n' "$tree"
    printf 'USRLIB_REGULAR=%q\n' "$reg"
    printf 'USRLIB_SYMLINKS=%q\n' "$sym"
    printf 'USRLIB_DIRS=%q\n' "$dirs"
    printf 'USRLIB_FILE_BYTES=%q\n' "$filebytes"
    printf 'USRLIB_TAR_BYTES=%q\n' "$tarbytes"
    printf 'USRLIB_GZ_BYTES=%q\n' "$cbytes"
    printf 'USRLIB_PACK_SECONDS=%q\n' "$t"
    printf 'USRLIB_CREATED=%q\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  } >"$meta.tmp"
  mv -f -- "$meta.tmp" "$meta"
  # shellcheck disable=SC1090
  source "$meta"
  BENCH_INPUT=$tgz
}

# bench::describe_input: prints the input lines of a report.
bench::describe_input() {
  "$BENCH_PY" - "$BENCH_INPUT" "$USRLIB_SELECTION" "$USRLIB_GZ_BYTES" "$USRLIB_TAR_BYTES" \
    "$USRLIB_FILE_BYTES" "$USRLIB_REGULAR" "$USRLIB_SYMLINKS" "$USRLIB_DIRS" "$USRLIB_PACK_SECONDS" <<'EOF'
import sys
path, sel, gz, tar, fb, reg, sym, dirs, packs = sys.argv[1:]
gz, tar, fb = int(gz), int(tar), int(fb)
print(f"input:   {path}")
print(f"         = cairn pack of {sel}")
print(f"         compressed {gz/1e6:.1f} MB; tar stream {tar/1e6:.1f} MB; regular-file bytes {fb/1e6:.1f} MB"
      f" (ratio {tar/gz:.2f}x)")
print(f"         {reg} regular files, {sym} symlinks, {dirs} directories; packed in {float(packs):.1f} s")
EOF
}

# ---------------------------------------------------------------- table

BENCH_ROWS=()

# bench::row METRIC CAIRN PEER RATIO TARGET STATUS: adds a table row; use
# "-" for an empty cell.
bench::row() {
  local IFS=$'\t'
  BENCH_ROWS+=("$*")
}

# bench::judge OUTVAR VALUE OP LIMIT: OK when VALUE OP LIMIT holds (OP one of
# < <= > >=), MISS when not, "n/a" when VALUE is empty or "-".
bench::judge() {
  local -n _out=$1
  if [[ -z "$2" || "$2" == "-" ]]; then _out="n/a"; return; fi
  _out=$(bench::py "'OK' if $2 $3 $4 else 'MISS'")
}

# bench::print_table [TITLE]: prints the rows as an aligned table.
bench::print_table() {
  local title=${1:-}
  printf '%s\n' "${BENCH_ROWS[@]}" | "$BENCH_PY" -c '
import sys
title = sys.argv[1]
head = ["metric", "cairn", "peer", "ratio", "target", "OK/MISS"]
rows = [l.rstrip("\n").split("\t") for l in sys.stdin if l.strip()]
rows = [r + ["-"] * (len(head) - len(r)) for r in rows]
w = [max(len(r[i]) for r in rows + [head]) for i in range(len(head))]
line = lambda r: "| " + " | ".join(c.ljust(w[i]) if i == 0 else c.rjust(w[i]) for i, c in enumerate(r)) + " |"
sep = "|" + "|".join("-" * (x + 2) for x in w) + "|"
if title: print(title)
print(line(head)); print(sep)
for r in rows:
    print(sep if r[0] == "--" else line(r))
' "$title"
}
