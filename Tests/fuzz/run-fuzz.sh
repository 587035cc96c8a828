#!/usr/bin/env bash
# run-fuzz.sh FUZZER SECONDS LIB - one fuzzing run of fuzz_portal against LIB
# (an ASan + coverage build of libportal.so), for SECONDS seconds.
# run-fuzz.sh FUZZER SECONDS@SEED LIB - a run that starts as CI's does:
# libFuzzer seed SEED, from the seeds alone (make test-fuzz).
#
# First replays every committed finding under crashes/ (each must now run
# clean), then fuzzes from build/corpus (kept between timed runs; a fresh
# build/test-corpus for a CI-like run) and the seeds in build/seeds. Fails
# on any crash, sanitizer report (ASan, UBSan, LSan), leak, out-of-memory,
# timeout, or heap growth the target detects. Prints
# libFuzzer's progress and final stats; writes them to build/last-run.txt,
# the whole output to build/last-run.log and failing inputs to
# build/artifacts/.
#
# PORTAL_FUZZ_SKIP (make FUZZ_SKIP=...) steers around known findings while
# they are being fixed: see README.md.
set -euo pipefail

fuzzer=$1
budget=$2
lib=$3
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
mkdir -p "$build/artifacts"
# shellcheck source=budget.sh
source "$here/budget.sh"
fuzz_budget run-fuzz "$budget" "$build/test-corpus" "$build/corpus"
log=$build/last-run.log
stats=$build/last-run.txt

export PORTAL_FUZZ_LIB=$lib
export PORTAL_FUZZ_SKIP=${PORTAL_FUZZ_SKIP:-}
# A Swift runtime failure must reach libFuzzer's signal handler at once
# (it prints the stack and saves the input), not Swift's own backtracer.
export SWIFT_BACKTRACE=enable=no
# malloc_context_size=10: recording 30-frame allocation stacks took a quarter
# of the run time; a report's own stack is always complete, and replaying
# the input with ASAN_OPTIONS unset gives full allocation stacks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:malloc_context_size=10:allocator_may_return_null=0:check_initialization_order=1:strict_init_order=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

# Anything in the output that means failure, even if the exit status did not say so.
bad='ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|ERROR: libFuzzer|SUMMARY: |portal-fuzz: FAILURE|Fatal error|detected memory leaks|out-of-memory|ALARM: working on the last Unit'

flags=(-timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=256 -detect_leaks=1
       -max_len=4096 -print_final_stats=1 -artifact_prefix="$build/artifacts/")

undefined=$(nm -D --undefined-only "$lib")
grep -qw __asan_init <<< "$undefined" ||
    { echo "run-fuzz: $lib is not built with AddressSanitizer"; exit 1; }
grep -qw __sanitizer_cov_8bit_counters_init <<< "$undefined" ||
    { echo "run-fuzz: $lib is not instrumented for coverage (-sanitize=fuzzer)"; exit 1; }

# ---- the committed findings, replayed ----
shopt -s nullglob
crashes=("$here"/crashes/*)
if ((${#crashes[@]})); then
    echo "== replaying ${#crashes[@]} committed finding(s) from Tests/fuzz/crashes/ (PORTAL_FUZZ_SKIP='$PORTAL_FUZZ_SKIP')"
    failed=0
    for input in "${crashes[@]}"; do
        if "$fuzzer" "${flags[@]}" "$input" > "$build/replay.log" 2>&1 &&
           ! grep -aqE "$bad" "$build/replay.log"; then
            echo "   ok    $(basename "$input")"
        else
            echo "   FAIL  $(basename "$input")"
            { grep -aE "$bad" "$build/replay.log" | head -4
              grep -aE "^ +#[0-9]+ .*Sources/" "$build/replay.log" | head -4; } |
                swift demangle --simplified | cut -c1-200 | sed 's/^ */         /' || true
            failed=1
        fi
    done
    if ((failed)); then
        {
            echo "date: $(date -u +%FT%TZ)"
            echo "result: FAIL (a committed finding under Tests/fuzz/crashes/ still fails)"
        } > "$stats"
        echo "run-fuzz: FAIL: a committed finding still crashes the library (see README.md for each)"
        exit 1
    fi
fi

# ---- fuzzing ----
echo "== fuzzing $lib for $budget_text (corpus: $corpus, seeds: $build/seeds)"
start=$(date +%s)
set +e
"$fuzzer" "${flags[@]}" "${budget_flags[@]}" "$corpus" "$build/seeds" > "$log" 2>&1 &
pid=$!
# Progress for a person watching, without the per-input NEW/REDUCE lines.
tail -n +1 -f "$log" --pid=$pid 2>/dev/null | grep -a --line-buffered -E "INITED|pulse|DONE|$bad" &
wait $pid
rc=$?
sleep 0.2
set -e
elapsed=$(( $(date +%s) - start ))

done_line=$(grep -aE "^#[0-9]+[[:space:]]+DONE" "$log" | tail -1 || true)
runs_line=$(grep -aE "^Done [0-9]+ runs in" "$log" | tail -1 || true)
result=PASS
reason=""
if ((rc != 0)); then
    result=FAIL
    reason="libFuzzer exited with status $rc"
elif grep -aqE "$bad" "$log"; then
    result=FAIL
    reason="a failure report is in the output"
elif [ -z "$done_line" ]; then
    result=FAIL
    reason="libFuzzer did not finish its run"
fi
if grep -aq "libFuzzer disabled leak detection" "$log"; then
    result=FAIL
    reason="${reason:+$reason; }libFuzzer gave up leak detection after every mutation: inputs keep memory"
fi

{
    echo "date: $(date -u +%FT%TZ)"
    echo "library: $lib"
    echo "budget: $budget_text (wall: $elapsed s)"
    echo "skip: ${PORTAL_FUZZ_SKIP:-none}"
    echo "result: $result${reason:+ ($reason)}"
    echo "$done_line"
    echo "$runs_line"
    grep -aE "^stat::|^portal-fuzz: heap kept" "$log" || true
} > "$stats"

echo "== $result: ${done_line:-no final stats}"
echo "   ${runs_line}"
grep -aE "^portal-fuzz: heap kept" "$log" | sed 's/^/   /' || true
echo "   stats in ${stats#"$here/../../"}, full output in ${log#"$here/../../"}"
if [ "$result" != PASS ]; then
    echo "run-fuzz: FAIL: $reason"
    fuzz_failure_lines "$log"
    exit 1
fi
