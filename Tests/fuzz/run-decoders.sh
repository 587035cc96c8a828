#!/usr/bin/env bash
# run-decoders.sh FUZZER SECONDS[@SEED] LIB - libFuzzer on the reply
# decoders of operations.h (fuzz_decoders.c) for SECONDS seconds, from the
# corpus kept in build/decoder-corpus (a fresh one for SECONDS@SEED, as CI).
# Fails on any crash, sanitizer report, leak, out-of-memory or timeout.
set -euo pipefail

fuzzer=$1
budget=$2
lib=$3
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
mkdir -p "$build/artifacts"
# shellcheck source=budget.sh
source "$here/budget.sh"
fuzz_budget run-decoders "$budget" "$build/decoder-test-corpus" "$build/decoder-corpus"
log=$build/decoders-last-run.log
export PORTAL_FUZZ_LIB=$lib
export SWIFT_BACKTRACE=enable=no
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=10:allocator_may_return_null=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
bad='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|ERROR: libFuzzer|SUMMARY: |portal-fuzz: FAILURE|Fatal error|out-of-memory|ALARM: working on the last Unit'

echo "== fuzzing the operations.h decoders of $lib for $budget"
set +e
"$fuzzer" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -max_len=4101 -print_final_stats=1 \
    -artifact_prefix="$build/artifacts/decoders-" "${budget_flags[@]}" "$corpus" > "$log" 2>&1
rc=$?
set -e
done_line=$(grep -aE "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
if ((rc != 0)) || grep -aqE "$bad" "$log" || [ -z "$done_line" ]; then
    echo "run-decoders: FAIL (status $rc; output in ${log#"$here/../../"})"
    fuzz_failure_lines "$log"
    exit 1
fi
echo "== PASS: $done_line"
