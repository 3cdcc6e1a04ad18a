#!/usr/bin/env bash
# Cairn foundation bench: push, re-push, pull and ingest memory of cairnd
# against its peers (Debian's docker-registry 2.8 and the igzip inflate
# limit), on one realistic artefact, in one run. Prints a table with ratios
# against the foundation issue's targets and exits 0 whether or not they are
# met (a missed target is marked MISS). See docs/bench.md.
#
# Usage: bench/foundation.sh [-n RUNS] [--input FILE.tar.gz] [--rebuild-input]
#                            [--profile] [--keep]
#   -n RUNS          runs of each measurement; the median is reported (3)
#   --input FILE     bench this tarball instead of the cached /usr/lib input
#   --rebuild-input  re-create the cached input
#   --profile        also record one push with `perf record -g` on cairnd and
#                    write a report next to the input cache
#   --keep           keep temp dirs (data dirs, logs) for inspection
# Environment: CAIRN_BIN_DIR (use cairnd/cairn from there, do not build),
#   CAIRN_BENCH_DIR (cache and scratch, default /var/tmp/cairn-bench),
#   PYTHON (python3 to use), BENCH_QUIET_MAX (seconds to wait for other CPU
#   use to stop before each run, 120), BENCH_NO_FS_WAIT=1 (do not wait out
#   the ext4 recently-deleted window, see docs/bench.md).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

RUNS=3
INPUT_OVERRIDE=""
REBUILD_INPUT=""
PROFILE=""
while (($#)); do
  case "$1" in
    -n) RUNS=$2; shift 2 ;;
    --input) INPUT_OVERRIDE=$(realpath "$2"); shift 2 ;;
    --rebuild-input) REBUILD_INPUT=--rebuild; shift ;;
    --profile) PROFILE=1; shift ;;
    --keep) BENCH_KEEP=1; shift ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) bench::die "unknown argument '$1' (see --help)" ;;
  esac
done
((RUNS >= 1)) || bench::die "-n must be >= 1"

bench::need curl docker-registry igzip gzip sha256sum cmp
[[ -n "$PROFILE" ]] && bench::need perf
HAVE_PIGZ=""; command -v pigz >/dev/null 2>&1 && HAVE_PIGZ=1

bench::build_cairn

# ------------------------------------------------------------------ input
if [[ -n "$INPUT_OVERRIDE" ]]; then
  [[ -s "$INPUT_OVERRIDE" ]] || bench::die "no such input: $INPUT_OVERRIDE"
  BENCH_INPUT=$INPUT_OVERRIDE
  USRLIB_SELECTION="(given with --input)"
  USRLIB_GZ_BYTES=$(stat -c %s "$BENCH_INPUT")
  USRLIB_TAR_BYTES=$(igzip -dc "$BENCH_INPUT" | wc -c)
  USRLIB_FILE_BYTES="$USRLIB_TAR_BYTES"
  read -r USRLIB_REGULAR USRLIB_SYMLINKS USRLIB_DIRS < <(igzip -dc "$BENCH_INPUT" |
    tar -tvf - | awk '{c[substr($1,1,1)]++} END {print c["-"]+0, c["l"]+0, c["d"]+0}')
  USRLIB_PACK_SECONDS=0
else
  bench::input_usrlib $REBUILD_INPUT
fi
INPUT=$BENCH_INPUT
INPUT_BYTES=$USRLIB_GZ_BYTES
INPUT_HEX=$(sha256sum "$INPUT" | cut -d' ' -f1)
DIGEST="sha256:$INPUT_HEX"

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
bench::tmpdir WORK foundation
# cairn push keeps a digest cache (tools/cairn/digest_cache.h); keep it out
# of ~/.cache and give every run a fresh one (set per run below).
export CAIRN_CACHE_DIR="$WORK/digest-cache"
bench::log "work dir $WORK; $RUNS run(s) of each measurement"

# Per-run results, one array per figure.
declare -a T_IGZIP=() T_GZIP=() T_PIGZ=() T_SHA=()
declare -a T_REG_PUSH=() T_REG_HEAD=() T_REG_GET=() T_REG_GET_SYNC=() REG_HWM=() REG_CPU=()
declare -a T_ACK=() T_ACK_INDEXED=() T_PUSH=() T_DURABLE=() T_REPUSH=() T_REPUSH_COLD=() T_PULL=() T_PULL_SYNC=() HWM_PUSH=() HWM_END=() CPU_PUSH=()
NOTES=()
declare -a BUSY_REG=() BUSY_CAIRN=()

# ------------------------------------------------------------------ baselines
bench::fs_settle
bench::wait_quiet
for ((r = 1; r <= RUNS; r++)); do
  bench::settle "$INPUT"
  bench::time t igzip -dc "$INPUT" >/dev/null; T_IGZIP+=("$t")
  bench::time t gzip -dc "$INPUT" >/dev/null; T_GZIP+=("$t")
  if [[ -n "$HAVE_PIGZ" ]]; then bench::time t pigz -dc "$INPUT" >/dev/null; T_PIGZ+=("$t"); fi
  bench::time t sha256sum "$INPUT" >/dev/null; T_SHA+=("$t")
done
bench::log "baselines: igzip ${T_IGZIP[*]}; gzip ${T_GZIP[*]}; sha256sum ${T_SHA[*]}"

# ------------------------------------------------------------------ registry
# One fresh registry (fresh storage dir) per run: POST an upload, PUT the
# whole blob with the digest (monolithic upload; the registry hashes it
# server-side and answers 201 once the blob is committed), HEAD it (what a
# client does to skip a re-push), then GET it to a file (no verification).
registry_run() {
  bench::wait_quiet; BUSY_REG+=("$BENCH_BUSY")
  bench::fresh_memory
  local dir port pid log
  bench::tmpdir dir registry
  bench::pick_port port
  log=$dir/registry.log
  bench::start_registry pid "$dir" "$port"
  local base="http://127.0.0.1:$port/v2"
  local c0 c1 t
  bench::settle "$INPUT"
  bench::cpu_ticks c0 "$pid"
  bench::time t bench::registry_push "$base" "$INPUT" "$DIGEST" ||
    bench::die "registry push failed (log: $log)"
  T_REG_PUSH+=("$t")
  bench::cpu_ticks c1 "$pid"
  REG_CPU+=("$(bench::py "($c1 - $c0) / $BENCH_CLK_TCK")")
  bench::vm_hwm t "$pid"; REG_HWM+=("$t")

  bench::time t curl -fsS -I -o /dev/null "$base/bench/blobs/$DIGEST" ||
    bench::die "registry HEAD failed"
  T_REG_HEAD+=("$t")

  bench::settle
  bench::time t curl -fsS -o "$dir/get.out" "$base/bench/blobs/$DIGEST" ||
    bench::die "registry GET failed"
  T_REG_GET+=("$t")
  # For the context row against `cairn pull --fsync`: the same GET made
  # durable (sync FILE = fsync(2) of that file).
  local ts
  bench::time ts sync "$dir/get.out" || true
  T_REG_GET_SYNC+=("$(bench::py "f'{$t + $ts:.6f}'")")
  cmp -s "$dir/get.out" "$INPUT" || bench::die "registry GET returned different bytes"
  rm -f "$dir/get.out"

  bench::stop_daemon "$pid" || true
  # $dir stays until the exit (see bench::fs_settle).
}

# ------------------------------------------------------------------ cairn
# One fresh cairnd (fresh data dir) per run: push into the empty store, wait
# (polling stat) until the index is flushed (index_durable), re-push, pull.
cairn_run() {
  bench::wait_quiet; BUSY_CAIRN+=("$BENCH_BUSY")
  bench::fresh_memory
  local run=$1 dir port pid log t c0 c1 h
  bench::tmpdir dir cairnd
  # A fresh digest cache, seeded untimed by `cairn digest`: like the
  # registry's client, which must know the digest before its PUT and whose
  # hashing is not timed, the timed push starts with the digest known. The
  # cost of hashing is the 'no digest cache' context row.
  local -x CAIRN_CACHE_DIR="$dir/digest-cache"
  "$CAIRN" --quiet digest "$INPUT" >/dev/null || bench::die "cairn digest failed"
  bench::pick_port port
  log=$dir/cairnd.log
  bench::start_cairnd pid "$dir/data" "$port" "$log"
  local addr="127.0.0.1:$port"

  bench::settle "$INPUT"
  bench::cpu_ticks c0 "$pid"
  bench::time t "$CAIRN" --server "$addr" --json push "$INPUT" >"$dir/push1.json" 2>"$dir/push1.err" ||
    { cat "$dir/push1.err" >&2; bench::die "cairn push failed (server log: $log)"; }
  local push_start=$BENCH_T_START
  T_PUSH+=("$t")
  bench::cpu_ticks c1 "$pid"
  bench::vm_hwm h "$pid"; HWM_PUSH+=("$h")
  # Time until the background flusher marked the index durable, from the
  # start of the push; stat is polled every 10 ms.
  local durable="" i
  for ((i = 0; i < 3000; i++)); do
    if "$CAIRN" --server "$addr" --json stat "$DIGEST" 2>/dev/null |
      grep -Eq '"index_durable"[[:space:]]*:[[:space:]]*true'; then
      durable=1; break
    fi
    sleep 0.01
  done
  if [[ -n "$durable" ]]; then
    bench::since t "$push_start"; T_DURABLE+=("$t")
  else
    NOTES+=("run $run: stat never reported index_durable=true within 30 s")
  fi
  CPU_PUSH+=("$(bench::py "($c1 - $c0) / $BENCH_CLK_TCK")")
  grep -q "$INPUT_HEX" "$dir/push1.json" ||
    bench::die "cairn push output does not name $DIGEST: $(head -c 500 "$dir/push1.json")"

  bench::settle "$INPUT"
  bench::time t "$CAIRN" --server "$addr" --json push "$INPUT" >"$dir/push2.json" 2>"$dir/push2.err" ||
    { cat "$dir/push2.err" >&2; bench::die "cairn re-push failed"; }
  T_REPUSH+=("$t")
  # The same re-push from a client without the digest cache entry (another
  # machine, a CI job): it hashes the file again.
  bench::settle "$INPUT"
  CAIRN_CACHE_DIR="$dir/digest-cache-cold" bench::time t "$CAIRN" --server "$addr" --json push "$INPUT" \
    >"$dir/push3.json" 2>"$dir/push3.err" || { cat "$dir/push3.err" >&2; bench::die "cairn cold re-push failed"; }
  T_REPUSH_COLD+=("$t")

  bench::settle
  bench::time t "$CAIRN" --server "$addr" --quiet pull "$DIGEST" -o "$dir/pull.out" >/dev/null ||
    bench::die "cairn pull failed (server log: $log)"
  T_PULL+=("$t")
  cmp -s "$dir/pull.out" "$INPUT" || bench::die "cairn pull returned different bytes"
  rm -f "$dir/pull.out"
  # The same, made durable before the rename (context row).
  bench::settle
  bench::time t "$CAIRN" --server "$addr" --quiet pull "$DIGEST" -o "$dir/pull.out" --fsync >/dev/null ||
    bench::die "cairn pull --fsync failed (server log: $log)"
  T_PULL_SYNC+=("$t")
  cmp -s "$dir/pull.out" "$INPUT" || bench::die "cairn pull --fsync returned different bytes"
  rm -f "$dir/pull.out"
  bench::vm_hwm h "$pid"; HWM_END+=("$h")

  if ((run == 1)); then
    cp "$dir/push1.json" "$WORK/push1.json"; cp "$dir/push2.json" "$WORK/push2.json"
    "$CAIRN" --server "$addr" --json stat "$DIGEST" >"$WORK/stat.json" 2>&1 || true
  fi
  bench::stop_daemon "$pid" || NOTES+=("run $run: cairnd exited non-zero after SIGTERM")
  # $dir stays until the exit (see bench::fs_settle).
}

# One fresh cairnd per run: `cairn push --no-wait` (Write with
# acknowledge_before_index: returns once the tarball is durable, the index is
# built in the background), then `cairn stat --wait` until the index is
# complete, timed from the start of the push.
cairn_ack_run() {
  bench::wait_quiet
  bench::fresh_memory
  local run=$1 dir port pid log t
  bench::tmpdir dir cairnd-ack
  local -x CAIRN_CACHE_DIR="$dir/digest-cache"
  "$CAIRN" --quiet digest "$INPUT" >/dev/null || bench::die "cairn digest failed"
  bench::pick_port port
  log=$dir/cairnd.log
  bench::start_cairnd pid "$dir/data" "$port" "$log"
  local addr="127.0.0.1:$port"
  bench::settle "$INPUT"
  bench::time t "$CAIRN" --server "$addr" --json push --no-wait "$INPUT" >"$dir/push.json" 2>"$dir/push.err" ||
    { cat "$dir/push.err" >&2; bench::die "cairn push --no-wait failed (server log: $log)"; }
  local push_start=$BENCH_T_START
  T_ACK+=("$t")
  grep -q '"index_state": "indexing"' "$dir/push.json" ||
    NOTES+=("run $run: push --no-wait did not report index_state indexing: $(tr -s ' \n' ' ' <"$dir/push.json" | head -c 200)")
  "$CAIRN" --server "$addr" --json stat --wait "$DIGEST" >"$dir/stat.json" 2>"$dir/stat.err" ||
    { cat "$dir/stat.err" >&2; bench::die "cairn stat --wait failed (server log: $log)"; }
  bench::since t "$push_start"; T_ACK_INDEXED+=("$t")
  bench::stop_daemon "$pid" || NOTES+=("run $run: cairnd exited non-zero after SIGTERM")
}

# Alternate the order so that neither side always runs first.
for ((r = 1; r <= RUNS; r++)); do
  if ((r % 2)); then registry_run; cairn_run "$r"; cairn_ack_run "$r"; else cairn_ack_run "$r"; cairn_run "$r"; registry_run; fi
  bench::log "run $r: registry push ${T_REG_PUSH[-1]}s get ${T_REG_GET[-1]}s;" \
    "cairn push --no-wait ${T_ACK[-1]}s (indexed ${T_ACK_INDEXED[-1]}s) push ${T_PUSH[-1]}s re-push ${T_REPUSH[-1]}s pull ${T_PULL[-1]}s hwm ${HWM_PUSH[-1]}KiB"
done

# ------------------------------------------------------------------ diagnosis
# One more (untimed) push into a fresh cairnd, watched: CPU per thread name
# (a python sampler reads /proc/PID/task/*/stat every 20 ms, so threads that
# exit during the push are counted), bytes cairnd wrote (/proc/PID/io), and
# with --profile a `perf record -g` of cairnd.
DIAG_THREADS="" DIAG_IO="" DIAG_WALL="" PROFILE_REPORT=""
diag_run() {
  local dir port pid sampler perfpid=""
  bench::tmpdir dir diag
  local -x CAIRN_CACHE_DIR="$dir/digest-cache"
  bench::pick_port port
  bench::start_cairnd pid "$dir/data" "$port" "$dir/cairnd.log"
  bench::settle "$INPUT"
  "$BENCH_PY" - "$pid" "$dir/threads.json" <<'EOF' &
import json, os, signal, sys, time
pid, out = sys.argv[1], sys.argv[2]
base, last, name, stop = {}, {}, {}, False
def on_term(*_):
    global stop
    stop = True
signal.signal(signal.SIGTERM, on_term)
first = True
while not stop:
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        break
    for tid in tids:
        try:
            s = open(f"/proc/{pid}/task/{tid}/stat").read()
        except OSError:
            continue
        comm = s[s.index("(") + 1:s.rindex(")")]
        f = s[s.rindex(")") + 2:].split()
        ticks = int(f[11]) + int(f[12])
        if first:
            base[tid] = ticks
        last[tid], name[tid] = ticks, comm
    first = False
    time.sleep(0.02)
by, tids = {}, {}
for tid, t in last.items():
    by[name[tid]] = by.get(name[tid], 0) + t - base.get(tid, 0)
    tids[f"{name[tid]}[{tid}{'' if tid in base else ', new'}]"] = t - base.get(tid, 0)
json.dump({"by_name": by, "by_tid": tids}, open(out, "w"))
EOF
  sampler=$!
  if [[ -n "$PROFILE" ]]; then
    perf record -F 499 -g -p "$pid" -o "$dir/perf.data" >"$dir/perf.log" 2>&1 &
    perfpid=$!
  fi
  sleep 0.3
  local io0 io1 t
  io0=$(awk '/^(wchar|write_bytes):/ {printf "%s ", $2}' "/proc/$pid/io")
  bench::time t "$CAIRN" --server "127.0.0.1:$port" --quiet push "$INPUT" >/dev/null ||
    bench::die "diagnostic push failed"
  DIAG_WALL=$t
  io1=$(awk '/^(wchar|write_bytes):/ {printf "%s ", $2}' "/proc/$pid/io")
  [[ -n "$perfpid" ]] && { kill -INT "$perfpid"; wait "$perfpid" || true; }
  kill -TERM "$sampler"; wait "$sampler" || true
  DIAG_THREADS=$("$BENCH_PY" - "$dir/threads.json" "$BENCH_CLK_TCK" <<'EOF'
import json, sys
d, hz = json.load(open(sys.argv[1])), int(sys.argv[2])
rows = sorted(((v / hz, k) for k, v in d["by_name"].items() if v > 0), reverse=True)
print(f"total {sum(v for v, _ in rows):.2f}s: " + "  ".join(f"{k}={v:.2f}s" for v, k in rows))
top = sorted(((v / hz, k) for k, v in d["by_tid"].items() if v > 0), reverse=True)[:4]
print("  busiest threads: " + "  ".join(f"{k}={v:.2f}s" for v, k in top))
EOF
)
  read -r w0 b0 <<<"$io0"; read -r w1 b1 <<<"$io1"
  DIAG_IO=$(bench::py "f'write() {($w1 - $w0) / 1e6:.0f} MB, block-layer writes {($b1 - $b0) / 1e6:.0f} MB'")
  if [[ -n "$perfpid" ]]; then
    PROFILE_REPORT="$BENCH_ROOT/foundation.perf.txt"
    set +o pipefail  # head closes the pipes early
    {
      echo "# perf record -F 499 -g of cairnd during one push of $INPUT (wall $t s)"
      echo "# ---- by thread"
      perf report -i "$dir/perf.data" --no-children --sort comm --stdio -g none 2>/dev/null | grep -v '^$' | grep -v '^#' | head -20
      echo "# ---- by shared object"
      perf report -i "$dir/perf.data" --no-children --sort dso --stdio -g none 2>/dev/null | grep -v '^$' | grep -v '^#' | head -25
      echo "# ---- by thread and symbol (self)"
      perf report -i "$dir/perf.data" --no-children --sort comm,dso,sym --stdio -g none 2>/dev/null |
        grep -v '^$' | grep -v '^#' | head -60
    } >"$PROFILE_REPORT"
    set -o pipefail
  fi
  bench::stop_daemon "$pid" || true
  # $dir stays until the exit (see bench::fs_settle).
}
diag_run

# ------------------------------------------------------------------ report
med() { bench::median "$@"; }
med m_igzip "${T_IGZIP[@]}"; med m_gzip "${T_GZIP[@]}"; med m_sha "${T_SHA[@]}"
m_pigz=""; [[ -n "$HAVE_PIGZ" ]] && med m_pigz "${T_PIGZ[@]}"
med m_rpush "${T_REG_PUSH[@]}"; med m_rhead "${T_REG_HEAD[@]}"; med m_rget "${T_REG_GET[@]}"
med m_rget_sync "${T_REG_GET_SYNC[@]}"
med m_rhwm "${REG_HWM[@]}"; med m_rcpu "${REG_CPU[@]}"
med m_ack "${T_ACK[@]}"; med m_ack_indexed "${T_ACK_INDEXED[@]}"
med m_push "${T_PUSH[@]}"; med m_repush "${T_REPUSH[@]}"; med m_pull "${T_PULL[@]}"
med m_pull_sync "${T_PULL_SYNC[@]}"
med m_repush_cold "${T_REPUSH_COLD[@]}"
med m_hwm "${HWM_PUSH[@]}"; med m_hwm_end "${HWM_END[@]}"; med m_cpu "${CPU_PUSH[@]}"
m_durable=""; ((${#T_DURABLE[@]})) && med m_durable "${T_DURABLE[@]}"

mb=$(bench::py "$INPUT_BYTES / 1e6")
r1=$(bench::py "$m_ack / $m_rpush"); bench::judge ok1 "$r1" "<=" 1.0
r2=$(bench::py "$m_push / $m_igzip"); bench::judge ok2 "$r2" "<=" 2.0
r3=$(bench::py "$m_repush / $m_push"); bench::judge ok3 "$r3" "<" 0.02
c_tp=$(bench::py "$mb / $m_pull"); r_tp=$(bench::py "$mb / $m_rget")
r4=$(bench::py "$c_tp / $r_tp"); bench::judge ok4 "$r4" ">=" 0.6
hwm_mib=$(bench::py "$m_hwm / 1024"); rhwm_mib=$(bench::py "$m_rhwm / 1024")
r5=$(bench::py "$hwm_mib / 256"); bench::judge ok5 "$hwm_mib" "<" 256

f() { local v; bench::fmt v "$1" "$2"; printf '%s' "$v"; }
x() { [[ -z "$1" ]] && { printf -- '-'; return; }; printf '%sx' "$(f "$1" 2)"; }
pct() { printf '%s%%' "$(f "$(bench::py "100 * $1")" 1)"; }

bench::row "1 push until durable ack (s)" "$(f "$m_ack" 3)" "$(f "$m_rpush" 3)" "$(x "$r1")" "<= 1.0x registry" "$ok1"
bench::row "2 push until index complete (s)" "$(f "$m_push" 3)" "$(f "$m_igzip" 3)" "$(x "$r2")" "<= 2.0x igzip -dc" "$ok2"
bench::row "3 re-push same artefact (s)" "$(f "$m_repush" 3)" "$(f "$m_push" 3)" "$(pct "$r3")" "< 2% of 1st push" "$ok3"
bench::row "4 pull, verified (MB/s)" "$(f "$c_tp" 1)" "$(f "$r_tp" 1)" "$(x "$r4")" ">= 0.6x registry GET" "$ok4"
bench::row "5 cairnd peak RSS ingesting (MiB)" "$(f "$hwm_mib" 1)" "$(f "$rhwm_mib" 1)" "$(x "$r5")" "< 256 MiB" "$ok5"
bench::row "--"
bench::row "context: push throughput (MB/s gz)" "$(f "$(bench::py "$mb / $m_push")" 1)" "$(f "$(bench::py "$mb / $m_rpush")" 1)" "-" "-" "-"
bench::row "context: push until index_durable (s)" "$(f "$m_durable" 3)" "-" "-" "-" "-"
bench::row "context: --no-wait push, until indexed (s)" "$(f "$m_ack_indexed" 3)" "$(f "$m_igzip" 3)" "$(x "$(bench::py "$m_ack_indexed / $m_igzip")")" "-" "-"
bench::row "context: server CPU during push (s)" "$(f "$m_cpu" 2)" "$(f "$m_rcpu" 2)" "$(x "$(bench::py "$m_cpu / $m_rcpu if $m_rcpu else ''")")" "-" "-"
bench::row "context: gzip -dc (s)" "-" "$(f "$m_gzip" 3)" "$(x "$(bench::py "$m_push / $m_gzip")")" "-" "-"
if [[ -n "$m_pigz" ]]; then
  bench::row "context: pigz -dc (s)" "-" "$(f "$m_pigz" 3)" "$(x "$(bench::py "$m_push / $m_pigz")")" "-" "-"
else
  bench::row "context: pigz -dc (s)" "-" "not installed" "-" "-" "-"
fi
bench::row "context: re-push, no digest cache (s)" "$(f "$m_repush_cold" 3)" "$(f "$m_push" 3)" "$(pct "$(bench::py "$m_repush_cold / $m_push")")" "-" "-"
bench::row "context: sha256sum of input (s)" "-" "$(f "$m_sha" 3)" "-" "-" "-"
bench::row "context: registry HEAD (re-push skip, s)" "-" "$(f "$m_rhead" 4)" "-" "-" "-"
bench::row "context: pull --fsync vs GET + fsync (MB/s)" "$(f "$(bench::py "$mb / $m_pull_sync")" 1)" "$(f "$(bench::py "$mb / $m_rget_sync")" 1)" "$(x "$(bench::py "$m_rget_sync / $m_pull_sync")")" "-" "-"
bench::row "context: pull time (s)" "$(f "$m_pull" 3)" "$(f "$m_rget" 3)" "$(x "$(bench::py "$m_pull / $m_rget")")" "-" "-"
bench::row "context: cairnd VmHWM after pull (MiB)" "$(f "$(bench::py "$m_hwm_end / 1024")" 1)" "-" "-" "-" "-"

echo
echo "== Cairn foundation bench ($(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git -C "$BENCH_REPO" rev-parse --short HEAD 2>/dev/null || echo '?'), median of $RUNS) =="
bench::describe_input
echo "         digest $DIGEST"
bench::machine_info
echo "load:    loadavg at start $LOAD_START, at end $(cut -d' ' -f1-3 /proc/loadavg) (other work on the machine skews figures)"
echo "peers:   $(docker-registry --version 2>&1 | head -1); igzip $(igzip --version 2>&1 | head -1 | awk '{print $NF}'); $(gzip --version | head -1)"
echo
bench::print_table
echo
echo "per-run seconds (in run order):"
echo "  push --no-wait ${T_ACK[*]}"
echo "  ...indexed     ${T_ACK_INDEXED[*]}"
echo "  cairn push     ${T_PUSH[*]}"
echo "  cairn durable  ${T_DURABLE[*]:-}"
echo "  cairn re-push  ${T_REPUSH[*]}"
echo "  re-push cold   ${T_REPUSH_COLD[*]}"
echo "  cairn pull     ${T_PULL[*]}"
echo "  pull --fsync   ${T_PULL_SYNC[*]}"
echo "  registry push  ${T_REG_PUSH[*]}"
echo "  registry GET   ${T_REG_GET[*]}"
echo "  registry GET+fsync ${T_REG_GET_SYNC[*]}"
echo "  igzip -dc      ${T_IGZIP[*]}"
echo "  other CPU use before each run (%): cairn ${BUSY_CAIRN[*]}; registry ${BUSY_REG[*]}"
echo "  cairnd VmHWM after push (KiB): ${HWM_PUSH[*]}; registry: ${REG_HWM[*]}"
echo "diagnostic push (extra, untimed run; fresh cairnd), wall ${DIAG_WALL}s:"
echo "  cairnd CPU by thread: $DIAG_THREADS"
echo "  cairnd I/O: $DIAG_IO"
[[ -n "$PROFILE_REPORT" ]] && echo "  perf profile: $PROFILE_REPORT"
echo
echo "notes:"
echo "  - Inputs are in the page cache for every timed step; 'sync' runs (untimed) before each. Each"
echo "    peer's run starts with sync + drop_caches (bench::fresh_memory: the same pool of recycled"
echo "    guest pages for every run; see docs/bench.md 'VM memory')."
echo "  - (1): cairn push --no-wait = FindMissing + streamed Write with acknowledge_before_index:"
echo "    Write returns once the tarball is fsynced+renamed and recorded (synced); the index is built"
echo "    in the background (fresh cairnd; '--no-wait push, until indexed' = until stat --wait returns)."
echo "  - (2): cairn push (default) = Write returns once the tarball is fsynced and the index"
echo "    committed. Registry = POST + monolithic PUT until HTTP 201 (server-side"
echo "    digest check and fsync of the blob data). Both clients know the digest beforehand, computed"
echo "    untimed (cairn digest / sha256sum); 'no digest cache' shows what client hashing adds."
echo "  - (3): the re-push finds the digest in the digest cache (CAIRN_CACHE_DIR, fresh each run)."
echo "  - (4): cairn pull -o FILE verifies the digest on the client (renaming FILE.partial into place"
echo "    only if it matches); the registry GET (curl -o FILE) does not verify. Neither fsyncs: the"
echo "    'pull --fsync vs GET + fsync' row makes both outputs durable."
echo "  - (5): VmHWM read from /proc after the first push, fresh cairnd each run."
for n in "${NOTES[@]}"; do echo "  - $n"; done
if [[ -s "$WORK/push1.json" ]]; then
  echo "first push reply: $(tr -s ' \n' ' ' <"$WORK/push1.json" | head -c 600)"
  echo "re-push reply:    $(tr -s ' \n' ' ' <"$WORK/push2.json" | head -c 300)"
  echo "stat after runs:  $(tr -s ' \n' ' ' <"$WORK/stat.json" | head -c 300)"
fi
exit 0
