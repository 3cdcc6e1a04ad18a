#!/usr/bin/env bash
# The README's test command: installs every package the project needs,
# builds everything and runs every test (unit, end-to-end, FUSE), offline.
# Prints "N passed, N failed" as its last line; exits non-zero on failure.
set -euo pipefail
cd "$(dirname "$0")/.."

bash tools/install-deps.sh

log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# Tests run one at a time per core; end-to-end tests start real daemons.
bazel test //... --test_output=errors --jobs="$(nproc)" 2>&1 | tee "$log" ||
  status=$?

passed=$(grep -cE '^//[^ ]+ +(\(cached\) )?PASSED' "$log" || true)
failed=$(grep -cE '^//[^ ]+ +(\(cached\) )?(FAILED|TIMEOUT|NO STATUS|FLAKY|INCOMPLETE)|FAILED TO BUILD' "$log" || true)
if [[ "$status" != 0 && "$failed" == 0 ]]; then failed=1; fi
echo "${passed} passed, ${failed} failed"
exit "$status"
