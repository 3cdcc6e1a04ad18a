#!/usr/bin/env bash
# Copyright 2026 The Cairn Authors.
#
# Runs the real cairnd binary: usage errors exit 2; with --listen
# 127.0.0.1:0 it prints "cairnd listening on 127.0.0.1:PORT", accepts TCP
# connections on PORT, and exits 0 on SIGTERM and on SIGINT, logging the
# shutdown; a config file supplies settings that flags override.
set -euo pipefail

cairnd="${TEST_SRCDIR}/${TEST_WORKSPACE}/tools/cairnd/cairnd"
tmp="${TEST_TMPDIR:-$(mktemp -d)}"
failures=0

fail() {
  echo "FAIL: $*" >&2
  failures=$((failures + 1))
}

expect_exit() {  # expect_exit CODE DESCRIPTION -- ARGS...
  local want="$1" what="$2"
  shift 3
  local got=0
  "$cairnd" "$@" >"$tmp/out" 2>"$tmp/err" || got=$?
  if [[ "$got" != "$want" ]]; then
    fail "$what: exit $got, want $want; stderr: $(cat "$tmp/err")"
  fi
}

expect_exit 2 "no data dir" --
expect_exit 2 "unknown flag" -- --data-dir "$tmp/d" --bogus
expect_exit 2 "bad log level" -- --data-dir "$tmp/d" --log-level loud
expect_exit 2 "missing config" -- --config "$tmp/nope.toml"
printf 'data_dir = "%s"\nlisten = 7\n' "$tmp/d" >"$tmp/badtype.toml"
expect_exit 2 "config type error" -- --config "$tmp/badtype.toml"
grep -q "listen must be a non-empty string" "$tmp/err" ||
  fail "type error message: $(cat "$tmp/err")"
printf 'data_dir = "%s"\n[limits]\nmax_entriez = 3\n' "$tmp/d" \
  >"$tmp/badkey.toml"
expect_exit 2 "config unknown key" -- --config "$tmp/badkey.toml"
grep -q "limits.max_entriez is not a known key" "$tmp/err" ||
  fail "unknown key message: $(cat "$tmp/err")"
printf '[limits]\nmax_metadata_field_bytes = 16385\n' >"$tmp/bigfield.toml"
expect_exit 2 "metadata field limit too big" -- --data-dir "$tmp/d" \
  --config "$tmp/bigfield.toml"
grep -q "limits.max_metadata_field_bytes must be at most 16384" "$tmp/err" ||
  fail "metadata field limit message: $(cat "$tmp/err")"
printf '[grpc]\nbdp_probe = 1\n' >"$tmp/badbool.toml"
expect_exit 2 "config bool type error" -- --data-dir "$tmp/d" \
  --config "$tmp/badbool.toml"
grep -q "grpc.bdp_probe must be true or false" "$tmp/err" ||
  fail "bool type message: $(cat "$tmp/err")"
printf 'data_dir = "%s\n' "$tmp/d" >"$tmp/syntax.toml"
expect_exit 2 "config syntax error" -- --config "$tmp/syntax.toml"
grep -q "syntax.toml:1:" "$tmp/err" ||
  fail "syntax error message: $(cat "$tmp/err")"
expect_exit 2 "malformed listen address" -- --data-dir "$tmp/d" \
  --listen 127.0.0.1:99999
grep -q "127.0.0.1:99999" "$tmp/err" || fail "bad address message"
# --mount-root must exist and be writable only by its owner (root or
# cairnd's user); --mount-allow-other needs --mount.
expect_exit 2 "missing mount root" -- --data-dir "$tmp/d" \
  --mount-root "$tmp/no-such-root"
grep -q "mount root $tmp/no-such-root does not exist" "$tmp/err" ||
  fail "missing mount root message: $(cat "$tmp/err")"
mkdir -p "$tmp/open-root"
chmod 0777 "$tmp/open-root"
expect_exit 2 "world-writable mount root" -- --data-dir "$tmp/d" \
  --mount-root "$tmp/open-root"
grep -q "is writable by group or others" "$tmp/err" ||
  fail "writable mount root message: $(cat "$tmp/err")"
printf 'mount_root = "%s"\n' "$tmp/open-root" >"$tmp/openroot.toml"
expect_exit 2 "world-writable mount root in config" -- --data-dir "$tmp/d" \
  --config "$tmp/openroot.toml"
printf 'mount_allow_other = "yes"\n' >"$tmp/badallow.toml"
expect_exit 2 "config mount_allow_other type" -- --data-dir "$tmp/d" \
  --config "$tmp/badallow.toml"
grep -q "mount_allow_other must be true or false" "$tmp/err" ||
  fail "mount_allow_other message: $(cat "$tmp/err")"
printf 'fuse_passthrough = 1\n' >"$tmp/badpassthrough.toml"
expect_exit 2 "config fuse_passthrough type" -- --data-dir "$tmp/d" \
  --config "$tmp/badpassthrough.toml"
grep -q "fuse_passthrough must be true or false" "$tmp/err" ||
  fail "fuse_passthrough message: $(cat "$tmp/err")"
expect_exit 2 "allow-other without mount" -- --data-dir "$tmp/d" \
  --mount-allow-other
grep -q -- "--mount-allow-other needs --mount" "$tmp/err" ||
  fail "allow-other message: $(cat "$tmp/err")"
expect_exit 0 "help" -- --help
grep -q -- "--data-dir" "$tmp/out" || fail "--help does not list --data-dir"
grep -q -- "--mount-root" "$tmp/out" || fail "--help does not list --mount-root"
grep -q -- "--fuse-passthrough" "$tmp/out" || fail "--help does not list --fuse-passthrough"

# Starts cairnd in the background with ARGS (under a soft limit of
# $SOFT_NOFILE open files if set); sets pid and port.
start() {
  : >"$tmp/daemon.out"
  (
    [[ -z "${SOFT_NOFILE:-}" ]] || ulimit -Sn "$SOFT_NOFILE"
    exec "$cairnd" "$@"
  ) >"$tmp/daemon.out" 2>"$tmp/daemon.err" &
  pid=$!
  port=""
  for _ in $(seq 1 200); do
    if line=$(grep -m1 '^cairnd listening on ' "$tmp/daemon.out"); then
      port="${line##*:}"
      break
    fi
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.05
  done
  if [[ -z "$port" ]]; then
    fail "no listening line; stderr: $(cat "$tmp/daemon.err")"
    return 1
  fi
}

stop() {  # stop SIGNAL
  kill -s "$1" "$pid"
  local code=0
  wait "$pid" || code=$?
  [[ "$code" == 0 ]] || fail "exit $code after $1, want 0: $(cat "$tmp/daemon.err")"
  grep -q "received SIG$1, shutting down" "$tmp/daemon.err" ||
    fail "no shutdown log after $1"
  grep -q "stopped in" "$tmp/daemon.err" || fail "no final log after $1"
}

# Flags override the config file: the config's listen port is taken, so
# only the --listen flag lets the daemon start.
printf 'data_dir = "%s"\nlisten = "127.0.0.1:1"\nlog_level = "debug"\n' \
  "$tmp/d" >"$tmp/good.toml"
printf '[limits]\nmax_entries = 10\nmax_path_bytes = 100\nmax_total_path_bytes = 5000\n' >>"$tmp/good.toml"
printf 'max_unpacked_bytes = 1000000\nmax_metadata_field_bytes = 512\n' >>"$tmp/good.toml"
printf '[grpc]\nbdp_probe = false\nstream_window_bytes = 4194304\n' \
  >>"$tmp/good.toml"
if start --config "$tmp/good.toml" --listen 127.0.0.1:0 --log-level info; then
  [[ "$port" =~ ^[0-9]+$ && "$port" != 0 ]] || fail "bad port '$port'"
  # The port accepts connections.
  if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
    fail "cannot connect to 127.0.0.1:$port"
  fi
  grep -q "starting: data dir $tmp/d, listen 127.0.0.1:0" "$tmp/daemon.err" ||
    fail "startup log: $(cat "$tmp/daemon.err")"
  grep -q "max_entries=10 max_path_bytes=100 max_total_path_bytes=5000 max_unpacked_bytes=1000000 max_metadata_field_bytes=512" "$tmp/daemon.err" ||
    fail "limits from config not applied: $(cat "$tmp/daemon.err")"
  grep -q "bdp_probe=false stream_window_bytes=4194304" "$tmp/daemon.err" ||
    fail "[grpc] from config not applied: $(cat "$tmp/daemon.err")"
  grep -q "recovered 0 artefacts" "$tmp/daemon.err" || fail "no recovery log"
  # A second daemon cannot share the port.
  expect_exit 1 "port in use" -- --data-dir "$tmp/d2" --listen \
    "127.0.0.1:$port"
  grep -q "127.0.0.1:$port" "$tmp/err" || fail "port-in-use message"
  stop TERM
fi

# Restart on the same data dir (the store lock was released); SIGINT.
if start --data-dir "$tmp/d" --listen 127.0.0.1:0; then
  stop INT
fi

# A second SIGTERM during the shutdown the first began is not fatal: no
# thread (gRPC's executors included) takes it with its default action.
if start --data-dir "$tmp/d" --listen 127.0.0.1:0; then
  kill -s TERM "$pid"
  for _ in $(seq 1 200); do
    grep -q "received SIGTERM" "$tmp/daemon.err" && break
    sleep 0.01
  done
  kill -s TERM "$pid" 2>/dev/null || true
  code=0
  wait "$pid" || code=$?
  [[ "$code" == 0 ]] || fail "exit $code after two SIGTERMs, want 0"
  grep -q "stopped in" "$tmp/daemon.err" || fail "no final log after two SIGTERMs"
fi

# Whether the server on $port answers HTTP/2's client preface (and an
# empty SETTINGS frame) with a SETTINGS frame: gRPC's listener works.
h2_answers() {
  local fd got
  exec {fd}<>"/dev/tcp/127.0.0.1/$port" || return 1
  printf 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0' >&"$fd"
  got=$(timeout 10 head -c 9 <&"$fd" | od -An -tx1 | tr -d ' \n')
  exec {fd}>&-
  [[ "${got:6:2}" == 04 ]]
}

# With a soft limit of 64 open files, 100 connections at once would make
# accept4() fail with EMFILE, after which gRPC 1.51 never accepts again:
# cairnd raises the soft limit to the hard one.
if (( $(ulimit -Hn) < 400 )); then
  echo "skipped the open-file test: hard limit $(ulimit -Hn)" >&2
elif SOFT_NOFILE=64 start --data-dir "$tmp/d" --listen 127.0.0.1:0; then
  grep -q "open files $(ulimit -Hn)" "$tmp/daemon.err" ||
    fail "soft open-file limit not raised: $(cat "$tmp/daemon.err")"
  h2_answers || fail "no HTTP/2 SETTINGS from a fresh daemon"
  conns=()
  for _ in $(seq 1 100); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || break
    conns+=("$fd")
  done
  (( ${#conns[@]} == 100 )) || fail "only ${#conns[@]} of 100 connections"
  h2_answers || fail "no HTTP/2 SETTINGS with 100 connections open"
  for fd in "${conns[@]}"; do exec {fd}>&-; done
  h2_answers || fail "no HTTP/2 SETTINGS after 100 connections closed"
  stop TERM
fi

if [[ "$failures" != 0 ]]; then
  echo "$failures failure(s)" >&2
  exit 1
fi
echo PASS
