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
if [[ $budget =~ ^([0-9]+)@([0-9]+)$ ]]; then
    corpus=$build/decoder-test-corpus
    rm -rf "$corpus"
    budget_flags=(-max_total_time="${BASH_REMATCH[1]}" -seed="${BASH_REMATCH[2]}")
    export SWIFT_DETERMINISTIC_HASHING=1
elif [[ $budget =~ ^[0-9]+$ ]]; then
    corpus=$build/decoder-corpus
    budget_flags=(-max_total_time="$budget")
else
    echo "run-decoders: the budget is SECONDS or SECONDS@SEED, not '$budget'"
    exit 2
fi
mkdir -p "$corpus"
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
    grep -aE "$bad|Test unit written to|^    #[0-9]+ .*(Sources|Tests)/" "$log" | head -40 || true
    exit 1
fi
echo "== PASS: $done_line"
