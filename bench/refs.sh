#!/usr/bin/env bash
# Cairn refs bench: Resolve against the gRPC floor (grpc.health.v1.Health/
# Check on the same cairnd, same client, same run) with 1,000 and 1,000,000
# refs in the store, and durable SetSlot updates with 8 concurrent writers,
# all over gRPC on loopback. Prints a table with ratios against the refs
# issue's targets and exits 0 whether or not they are met (a missed target
# is marked MISS). See docs/bench.md, "Refs".
#
# Usage: bench/refs.sh [-n RUNS] [--threads C] [--seconds S] [--warmup S]
#                      [--small N] [--large N] [--writers W] [--repopulate]
#                      [--profile] [--keep]
#   -n RUNS        health/resolve pairs per store size, and setslot runs;
#                  the median is reported (3)
#   --threads C    client threads for health and resolve (8); each has its
#                  own connection (--channels = C)
#   --seconds S    measured seconds per run (5), after --warmup S (1)
#   --small N      refs in the small store (1000)
#   --large N      refs in the large store (1000000)
#   --writers W    concurrent SetSlot writers (8)
#   --repopulate   rebuild the cached stores
#   --profile      also `perf record -g` cairnd during one extra health and
#                  one extra resolve run on the large store; summary in
#                  $CAIRN_BENCH_DIR/refs.perf.txt
#   --keep         keep temp dirs (data dir, logs) for inspection
# Environment: CAIRN_BIN_DIR (take cairnd, refs_load and
#   refs_populate from there, build nothing), CAIRN_BENCH_DIR (cache and
#   scratch, default /var/tmp/cairn-bench), BENCH_OTHER_MAX (seconds to wait
#   for another bench script to finish, 900), PYTHON.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
THREADS=8
SECONDS_RUN=5
WARMUP=1
SMALL=1000
LARGE=1000000
WRITERS=8
REPOPULATE=""
PROFILE=""
while (($#)); do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --threads) THREADS=$2; shift 2 ;;
    --seconds) SECONDS_RUN=$2; shift 2 ;;
    --warmup) WARMUP=$2; shift 2 ;;
    --small) SMALL=$2; shift 2 ;;
    --large) LARGE=$2; shift 2 ;;
    --writers) WRITERS=$2; shift 2 ;;
    --repopulate) REPOPULATE=1; shift ;;
    --profile) PROFILE=1; shift ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench::die "unknown argument '$1' (see --help)" ;;
  esac
done
((RUNS >= 1)) || bench::die "-n must be >= 1"
((SMALL >= 1 && LARGE >= 1)) || bench::die "--small and --large must be >= 1"
[[ -n "$PROFILE" ]] && bench::need perf
bench::need flock pgrep

# One refs.sh at a time: the cached stores are shared.
exec 9>"$BENCH_ROOT/refs.lock"
flock -n 9 || bench::die "another bench/refs.sh is running ($BENCH_ROOT/refs.lock)"

# ------------------------------------------------------------------ helpers

# refs::wait_other_benches: other bench scripts on this machine distort the
# figures (2 cores); wait (polling every 30 s, at most BENCH_OTHER_MAX s)
# until none runs.
refs::wait_other_benches() {
  local max=${BENCH_OTHER_MAX:-900} start=$SECONDS others
  while others=$(pgrep -f '(foundation|fuse)\.sh' | tr '\n' ' ') && [[ -n "$others" ]]; do
    if ((SECONDS - start >= max)); then
      bench::log "another bench (pids $others) still running after ${max}s; measuring anyway"
      return 0
    fi
    bench::log "another bench is running (pids $others); waiting (at most ${max}s)"
    sleep 30
  done
}

# refs::build: sets CAIRND, REFS_LOAD and REFS_POPULATE. Builds only what
# this bench runs (not the cairn CLI) with -c opt, in one bazel call, and
# copies the binaries to a run dir (a concurrent rebuild cannot swap them).
# With CAIRN_BIN_DIR set, takes all three from there and builds nothing.
refs::build() {
  local bindir
  if [[ -n "${CAIRN_BIN_DIR:-}" ]]; then
    bindir=$CAIRN_BIN_DIR
  else
    local targets=(//tools/cairnd:cairnd //bench:refs_load //bench:refs_populate) out
    bench::log "bazel build -c opt ${targets[*]}"
    (cd "$BENCH_REPO" && bazel build -c opt "${targets[@]}") >&2 ||
      bench::die "bazel build failed"
    out=$(cd "$BENCH_REPO" && bazel info -c opt bazel-bin 2>/dev/null) ||
      bench::die "bazel info -c opt bazel-bin failed"
    bench::tmpdir bindir bin
    cp "$out/tools/cairnd/cairnd" "$out/bench/refs_load" "$out/bench/refs_populate" "$bindir/" ||
      bench::die "built binaries not found under $out"
  fi
  CAIRND="$bindir/cairnd"
  REFS_LOAD="$bindir/refs_load"
  REFS_POPULATE="$bindir/refs_populate"
  [[ -x "$CAIRND" && -x "$REFS_LOAD" && -x "$REFS_POPULATE" ]] ||
    bench::die "no cairnd, refs_load or refs_populate in $bindir"
}

# refs::json OUTVAR JSON KEY: one field of refs_load's JSON line.
refs::json() {
  local -n _out=$1
  _out=$("$BENCH_PY" -c 'import json, sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$2" "$3")
}

# refs::fields JSON: prints "ops_per_s p50_us p99_us S C" of a refs::load
# result, S and C being cairnd's and the client's CPU microseconds per call
# (whole run, warm-up included).
refs::fields() {
  "$BENCH_PY" -c 'import json, sys
j = json.loads(sys.argv[1]); n = max(1, j["total_ops"])
print(j["ops_per_s"], j["p50_us"], j["p99_us"], j["server_cpu_s"] * 1e6 / n, j["client_cpu_s"] * 1e6 / n)' "$1"
}

# refs::store OUTDIR N: the cached store with N refs in $BENCH_ROOT/refs-N,
# made with refs_populate unless its marker (bench-refs.meta, written last)
# says it is complete and of the current layout. Sources the marker
# (REFS_N, REFS_DIGEST_A, ...). Kept across runs, never deleted at exit.
refs::store() {
  local -n _dir=$1
  local n=$2 _path="$BENCH_ROOT/refs-$2" meta
  meta="$_path/bench-refs.meta"
  if [[ -n "$REPOPULATE" ]]; then rm -rf -- "$_path"; fi
  if [[ -s "$meta" && -d "$_path/meta" ]] && grep -qx 'REFS_FORMAT=1' "$meta" &&
    grep -qx "REFS_N=$n" "$meta"; then
    bench::log "store: cached $_path ($n refs)"
  else
    rm -rf -- "$_path" "$_path.partial"
    bench::log "store: populating $_path with $n refs through RefStore (cached for later runs)"
    local log="$BENCH_ROOT/refs-$n.populate.log"
    "$REFS_POPULATE" --data-dir "$_path.partial" --refs "$n" >"$log" 2>&1 ||
      { tail -n 20 "$log" >&2; bench::die "refs_populate failed (log: $log)"; }
    cat "$log" >&2
    mv -- "$_path.partial" "$_path"
  fi
  # shellcheck disable=SC1090
  source "$meta"
  _dir=$_path
}

# refs::load OUTJSON PID ARGS...: one refs_load run against cairnd PID;
# adds server_cpu_s (cairnd's CPU over the whole run, warm-up included) to
# the JSON. Dies when the run had errors.
refs::load() {
  local -n _json=$1
  local pid=$2 c0 c1 out rc=0
  shift 2
  bench::cpu_ticks c0 "$pid"
  out=$("$REFS_LOAD" "$@" 2>"$WORK/load.err") || rc=$?
  bench::cpu_ticks c1 "$pid"
  if ((rc != 0)) || [[ -z "$out" ]]; then
    cat "$WORK/load.err" >&2
    bench::die "refs_load $* failed (rc $rc): ${out:-no output}"
  fi
  _json=$("$BENCH_PY" -c 'import json, sys
j = json.loads(sys.argv[1]); j["server_cpu_s"] = int(sys.argv[2]) / int(sys.argv[3])
print(json.dumps(j))' "$out" $((c1 - c0)) "$BENCH_CLK_TCK")
  echo "$_json" >>"$WORK/runs.jsonl"
}

# refs::profile PID METHOD ARGS...: one extra run of METHOD under
# `perf record -g` on cairnd; appends a summary to $PERF_OUT.
refs::profile() {
  local pid=$1 method=$2 data json
  shift 2
  data="$WORK/perf.$method.data"
  perf record -g -o "$data" -p "$pid" -- sleep "$(bench::py "$WARMUP + $SECONDS_RUN")" \
    >"$WORK/perf.$method.log" 2>&1 &
  local perf_pid=$!
  sleep 0.2
  refs::load json "$pid" "$@"
  wait "$perf_pid" || true
  # (head closes the pipe early: perf's SIGPIPE must not stop the script.)
  {
    echo "===== $method, $LARGE refs: $json"
    echo "--- by thread (comm)"
    perf report -i "$data" --no-children --sort comm --stdio -g none 2>/dev/null |
      grep -v -e '^#' -e '^$' | head -n 15 || true
    echo "--- by library"
    perf report -i "$data" --no-children --sort dso --stdio -g none 2>/dev/null |
      grep -v -e '^#' -e '^$' | head -n 15 || true
    echo "--- top symbols (self)"
    perf report -i "$data" --no-children --sort dso,sym --stdio -g none 2>/dev/null |
      grep -v -e '^#' -e '^$' | head -n 40 || true
    echo "--- top symbols (inclusive: children, self)"
    perf report -i "$data" --children --sort sym --stdio -g none 2>/dev/null |
      grep -v -e '^#' -e '^$' | head -n 40 || true
    echo
  } >>"$PERF_OUT"
}

# ------------------------------------------------------------------ setup
refs::build
bench::tmpdir WORK refs
: >"$WORK/runs.jsonl"
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
PERF_OUT="$BENCH_ROOT/refs.perf.txt"
[[ -n "$PROFILE" ]] && : >"$PERF_OUT"

COMMON=(--threads "$THREADS" --channels "$THREADS" --warmup "$WARMUP" --seconds "$SECONDS_RUN")

declare -A H_OPS H_P50 H_P99 R_OPS R_P50 R_P99 H_SCPU R_SCPU H_CCPU R_CCPU H1_P50 R1_P50 STORE_DIR
BUSY=()
PER_RUN=()

# Before populating too: that loads both cores for a minute or more.
refs::wait_other_benches
for n in "$SMALL" "$LARGE"; do
  refs::store dir "$n"
  STORE_DIR[$n]=$dir
done
refs::wait_other_benches

# ------------------------------------------------------------------ resolve
# For each store: one cairnd, then RUNS pairs of health and resolve with the
# same client settings, interleaved (health, resolve, health, resolve, ...).
for n in "$SMALL" "$LARGE"; do
  dir=${STORE_DIR[$n]}
  # shellcheck disable=SC1090
  source "$dir/bench-refs.meta"
  # Warm page cache: every SST of the store (as a long-running cairnd has).
  mapfile -t ssts < <(compgen -G "$dir/meta/*.sst" || true)
  bench::settle "${ssts[@]}"
  bench::pick_port port
  bench::start_cairnd pid "$dir" "$port" "$WORK/cairnd-$n.log"
  h_ops=() h_p50=() h_p99=() r_ops=() r_p50=() r_p99=() h_scpu=() r_scpu=() h_ccpu=() r_ccpu=()
  for ((r = 1; r <= RUNS; r++)); do
    bench::wait_quiet; BUSY+=("$BENCH_BUSY")
    refs::load hj "$pid" --target "127.0.0.1:$port" --method health "${COMMON[@]}"
    refs::load rj "$pid" --target "127.0.0.1:$port" --method resolve "${COMMON[@]}" \
      --refs "$REFS_N" --refs-per-package "$REFS_PER_PACKAGE" --digest "$REFS_DIGEST_A" --seed "$r"
    read -r v1 v2 v3 v4 v5 < <(refs::fields "$hj")
    h_ops+=("$v1") h_p50+=("$v2") h_p99+=("$v3") h_scpu+=("$v4") h_ccpu+=("$v5")
    read -r v1 v2 v3 v4 v5 < <(refs::fields "$rj")
    r_ops+=("$v1") r_p50+=("$v2") r_p99+=("$v3") r_scpu+=("$v4") r_ccpu+=("$v5")
    bench::log "$n refs, run $r: health ${h_ops[-1]}/s p50 ${h_p50[-1]} us; resolve ${r_ops[-1]}/s p50 ${r_p50[-1]} us"
  done
  # Context: one client thread (no queueing), one run each.
  refs::load hj "$pid" --target "127.0.0.1:$port" --method health --threads 1 --channels 1 \
    --warmup "$WARMUP" --seconds "$SECONDS_RUN"
  refs::load rj "$pid" --target "127.0.0.1:$port" --method resolve --threads 1 --channels 1 \
    --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
    --refs "$REFS_N" --refs-per-package "$REFS_PER_PACKAGE" --digest "$REFS_DIGEST_A"
  refs::json "H1_P50[$n]" "$hj" p50_us
  refs::json "R1_P50[$n]" "$rj" p50_us
  if [[ -n "$PROFILE" && "$n" == "$LARGE" ]]; then
    bench::log "profiling cairnd (perf record -g) during one health and one resolve run"
    refs::profile "$pid" health --target "127.0.0.1:$port" --method health "${COMMON[@]}"
    refs::profile "$pid" resolve --target "127.0.0.1:$port" --method resolve "${COMMON[@]}" \
      --refs "$REFS_N" --refs-per-package "$REFS_PER_PACKAGE" --digest "$REFS_DIGEST_A"
  fi
  bench::vm_hwm hwm "$pid"
  bench::stop_daemon "$pid" || bench::die "cairnd ($n refs) did not stop cleanly (log: $WORK/cairnd-$n.log)"
  bench::median "H_OPS[$n]" "${h_ops[@]}"
  bench::median "H_P50[$n]" "${h_p50[@]}"
  bench::median "H_P99[$n]" "${h_p99[@]}"
  bench::median "R_OPS[$n]" "${r_ops[@]}"
  bench::median "R_P50[$n]" "${r_p50[@]}"
  bench::median "R_P99[$n]" "${r_p99[@]}"
  bench::median "H_SCPU[$n]" "${h_scpu[@]}"
  bench::median "R_SCPU[$n]" "${r_scpu[@]}"
  bench::median "H_CCPU[$n]" "${h_ccpu[@]}"
  bench::median "R_CCPU[$n]" "${r_ccpu[@]}"
  PER_RUN+=("$n refs: health ops/s ${h_ops[*]}; resolve ops/s ${r_ops[*]}")
  PER_RUN+=("$n refs: health p50 us ${h_p50[*]}; resolve p50 us ${r_p50[*]}")
  PER_RUN+=("$n refs: health p99 us ${h_p99[*]}; resolve p99 us ${r_p99[*]}")
  PER_RUN+=("$n refs: 1 client thread: health p50 ${H1_P50[$n]} us; resolve p50 ${R1_P50[$n]} us")
  PER_RUN+=("$n refs: cairnd VmHWM $((hwm / 1024)) MiB; store $(du -sh "$dir/meta" | cut -f1)")
done

# ------------------------------------------------------------------ setslot
# A fresh store holding only the two artefacts; WRITERS writers, each on its
# own 16 branches, alternating digests (every write a synced change).
bench::tmpdir sdir setslot
"$REFS_POPULATE" --data-dir "$sdir/data" --refs 0 --no-settle >"$WORK/populate-0.log" 2>&1 ||
  { cat "$WORK/populate-0.log" >&2; bench::die "refs_populate --refs 0 failed"; }
# shellcheck disable=SC1090
source "$sdir/data/bench-refs.meta"
bench::pick_port port
bench::start_cairnd pid "$sdir/data" "$port" "$WORK/cairnd-setslot.log"
s_ops=() s_p50=() s_p99=() s_scpu=()
for ((r = 1; r <= RUNS; r++)); do
  bench::wait_quiet; BUSY+=("$BENCH_BUSY")
  refs::load sj "$pid" --target "127.0.0.1:$port" --method setslot --threads "$WRITERS" \
    --channels "$WRITERS" --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
    --digest "$REFS_DIGEST_A" --digest-b "$REFS_DIGEST_B"
  read -r v1 v2 v3 v4 v5 < <(refs::fields "$sj")
  s_ops+=("$v1") s_p50+=("$v2") s_p99+=("$v3") s_scpu+=("$v4")
  bench::log "setslot run $r: ${s_ops[-1]}/s p50 ${s_p50[-1]} us"
done
# Context: one writer (no group commit possible).
refs::load s1j "$pid" --target "127.0.0.1:$port" --method setslot --threads 1 \
  --channels 1 --warmup "$WARMUP" --seconds "$SECONDS_RUN" \
  --digest "$REFS_DIGEST_A" --digest-b "$REFS_DIGEST_B"
read -r S1_OPS S1_P50 _ S1_SCPU _ < <(refs::fields "$s1j")
bench::stop_daemon "$pid" || bench::die "cairnd (setslot) did not stop cleanly"
bench::median S_OPS "${s_ops[@]}"
bench::median S_P50 "${s_p50[@]}"
bench::median S_P99 "${s_p99[@]}"
bench::median S_SCPU "${s_scpu[@]}"
PER_RUN+=("setslot $WRITERS writers: ops/s ${s_ops[*]}; p50 us ${s_p50[*]}; p99 us ${s_p99[*]}")

# The disk's fsync floor: 200 appends of 4 KiB, each followed by fdatasync,
# in the scratch dir (one writer, so one sync per write).
FSYNC_US=$("$BENCH_PY" - "$sdir/fsync.probe" <<'EOF'
import os, statistics, sys, time
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
buf, ts = b"x" * 4096, []
for _ in range(200):
    t = time.perf_counter(); os.write(fd, buf); os.fdatasync(fd)
    ts.append(time.perf_counter() - t)
os.close(fd)
print(round(statistics.median(ts) * 1e6, 1))
EOF
)

# ------------------------------------------------------------------ report
fmt0() { local -n _o=$1; bench::fmt _o "$2" 0; }
fmt1() { local -n _o=$1; bench::fmt _o "$2" 1; }
ratio() { local -n _o=$1; _o=$(bench::py "round($2 / $3, 2)"); }

S=$SMALL L=$LARGE
ratio q_l "${R_OPS[$L]}" "${H_OPS[$L]}"; bench::judge j_l "$q_l" ">=" 0.7
fmt0 a "${R_OPS[$L]}"; fmt0 b "${H_OPS[$L]}"
bench::row "Resolve vs Health/Check throughput, $L refs (ops/s)" "$a" "$b" "${q_l}x" ">= 0.7x" "$j_l"
ratio q_s "${R_OPS[$S]}" "${H_OPS[$S]}"
fmt0 a "${R_OPS[$S]}"; fmt0 b "${H_OPS[$S]}"
bench::row "  same, $S refs (context)" "$a" "$b" "${q_s}x" "-" "-"
ratio q_p "${R_P50[$L]}" "${R_P50[$S]}"; bench::judge j_p "$q_p" "<=" 1.5
fmt1 a "${R_P50[$L]}"; fmt1 b "${R_P50[$S]}"
bench::row "Resolve p50 latency, $L vs $S refs (us)" "$a" "$b" "${q_p}x" "<= 1.5x" "$j_p"
ratio q_9 "${R_P99[$L]}" "${R_P99[$S]}"
fmt1 a "${R_P99[$L]}"; fmt1 b "${R_P99[$S]}"
bench::row "  Resolve p99 latency, $L vs $S refs (context)" "$a" "$b" "${q_9}x" "-" "-"
ratio q_1 "${R1_P50[$L]}" "${R1_P50[$S]}"
fmt1 a "${R1_P50[$L]}"; fmt1 b "${R1_P50[$S]}"
bench::row "  Resolve p50, 1 client thread, $L vs $S refs (context)" "$a" "$b" "${q_1}x" "-" "-"
ratio q_11 "${R1_P50[$L]}" "${H1_P50[$L]}"
fmt1 a "${R1_P50[$L]}"; fmt1 b "${H1_P50[$L]}"
bench::row "  p50, 1 client thread, Resolve vs Health, $L refs (context)" "$a" "$b" "${q_11}x" "-" "-"
ratio q_h "${H_P50[$L]}" "${H_P50[$S]}"
fmt1 a "${H_P50[$L]}"; fmt1 b "${H_P50[$S]}"
bench::row "  Health/Check p50 latency, $L- vs $S-ref run (context)" "$a" "$b" "${q_h}x" "-" "-"
ratio q_c "${R_SCPU[$L]}" "${H_SCPU[$L]}"
fmt1 a "${R_SCPU[$L]}"; fmt1 b "${H_SCPU[$L]}"
bench::row "  cairnd CPU per call, Resolve vs Health, $L refs (us)" "$a" "$b" "${q_c}x" "-" "-"
ratio q_cc "${R_CCPU[$L]}" "${H_CCPU[$L]}"
fmt1 a "${R_CCPU[$L]}"; fmt1 b "${H_CCPU[$L]}"
bench::row "  client CPU per call, Resolve vs Health, $L refs (us)" "$a" "$b" "${q_cc}x" "-" "-"
bench::row --
bench::judge j_s "$S_OPS" ">=" 2000
fmt0 a "$S_OPS"
bench::row "durable SetSlot/s, $WRITERS writers over gRPC" "$a" "-" "-" ">= 2000" "$j_s"
fmt1 a "$S_P50"; fmt1 b "$S_P99"
bench::row "  SetSlot latency p50 / p99, $WRITERS writers (us)" "$a" "$b" "-" "-" "-"
fmt0 a "$S1_OPS"; fmt1 b "$S1_P50"
bench::row "  SetSlot/s with 1 writer; its p50 (us) (context)" "$a" "$b" "-" "-" "-"
fmt1 a "$S_SCPU"; fmt1 b "$S1_SCPU"
bench::row "  cairnd CPU per SetSlot, $WRITERS writers; 1 writer (us)" "$a" "$b" "-" "-" "-"
fmt0 a "$(bench::py "1e6 / $FSYNC_US")"
bench::row "  fdatasync of a 4 KiB append, 1 thread (/s; us)" "$a" "$FSYNC_US" "-" "-" "-"
# shellcheck disable=SC1090
source "${STORE_DIR[$L]}/bench-refs.meta"
fmt1 a "$REFS_POPULATE_SECONDS"; fmt0 b "$(bench::py "$REFS_SETSLOTS / $REFS_POPULATE_SECONDS")"
bench::row "  populate $L refs via RefStore, $REFS_THREADS threads (s; SetSlot/s)" "$a" "$b" "-" "-" "-"

echo
echo "Cairn refs bench ($(date -u +%Y-%m-%dT%H:%M:%SZ))"
bench::machine_info
echo "load:    loadavg at start $LOAD_START; other CPU use before each run: ${BUSY[*]}%"
echo "client:  refs_load, $THREADS threads x 1 connection each (health, resolve), closed loop," \
  "${WARMUP}s warm-up + ${SECONDS_RUN}s measured; $WRITERS writers for setslot; medians of $RUNS"
echo "stores:  $SMALL refs: ${STORE_DIR[$S]}; $LARGE refs: ${STORE_DIR[$L]} ($(grep REFS_POPULATE_SECONDS "${STORE_DIR[$L]}/bench-refs.meta" | cut -d= -f2) s to populate)"
echo
bench::print_table "Refs (cairn vs peer; ratio = cairn / peer)"
echo
echo "per-run values:"
for line in "${PER_RUN[@]}"; do echo "  $line"; done
echo "  setslot 1 writer: $s1j"
[[ -n "$PROFILE" ]] && echo "perf summary: $PERF_OUT"
exit 0
