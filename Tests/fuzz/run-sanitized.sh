#!/usr/bin/env bash
# run-sanitized.sh asan|tsan HARNESS LIB - every harness scenario under a
#     sanitizer: HARNESS built with it (build/harness-asan, build/harness-tsan),
#     LIB a libportal.so built with the same one.
# run-sanitized.sh swift-asan SCRATCH - the engine's unit tests (swift test,
#     with the multi-threaded stress test) under AddressSanitizer.
#
# Fails on a failing scenario or test and on any sanitizer report, even
# one that did not change the exit status. Output goes to build/MODE.log.
set -euo pipefail

mode=$1
here=$(cd "$(dirname "$0")" && pwd)
build=$here/build
mkdir -p "$build"
log=$build/$mode.log
export SWIFT_BACKTRACE=enable=no

reports='WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:|SUMMARY: (Address|Thread|Leak|UndefinedBehavior)Sanitizer'

case $mode in
asan|tsan)
    harness=$2
    lib=$3
    sym=__${mode}_init
    # (not `nm | grep -q`: with pipefail, grep's early exit fails the pipe)
    grep -qw "$sym" <<< "$(nm -D --undefined-only "$lib")" ||
        { echo "run-sanitized: $lib is not built with the $mode sanitizer"; exit 1; }
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:detect_stack_use_after_return=1:check_initialization_order=1:strict_init_order=1}
    export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
    # Keep going after a report so that one run shows them all; the
    # exit status is 66 if there was any.
    export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=0:second_deadlock_stack=1:suppressions=$here/tsan.supp}
    set +e
    : > "$log"
    # first_answers_at_once as the first scenario of a fresh process, a few
    # times: the library's lazily initialised globals then initialise on
    # several vCPU threads at once (the swift_once entry of tsan.supp; about
    # one run in three reaches it).
    first_rc=0
    for _ in 1 2 3 4 5 6 7 8; do
        "$harness" --lib "$lib" first_answers_at_once >> "$log" 2>&1 || first_rc=$?
    done
    "$harness" --lib "$lib" >> "$log" 2>&1
    rc=$?
    ((rc != 0)) || rc=$first_rc
    set -e
    summary=$(grep -aE "^[0-9]+ passed, [0-9]+ failed" "$log" | tail -1 || true)
    ;;
swift-asan)
    scratch=$2
    # Leaks inside XCTest itself (toolchain code): see lsan.supp.
    export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$here/lsan.supp:print_suppressions=0}
    export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1}
    set +e
    swift test --sanitize=address --scratch-path "$scratch" > "$log" 2>&1
    rc=$?
    set -e
    summary=$(grep -aE "Test run with [0-9]+ tests? .*(passed|failed)" "$log" | tail -1 || true)
    ;;
*)
    echo "usage: run-sanitized.sh asan|tsan HARNESS LIB | swift-asan SCRATCH"
    exit 2
    ;;
esac

n=$(grep -acE "WARNING: ThreadSanitizer|ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:" "$log" || true)
echo "== $mode: ${summary:-no summary line}; $n sanitizer report(s); exit status $rc (log: ${log#"$here/../../"})"
if ((rc != 0 || n > 0)) || [ -z "$summary" ]; then
    # Each report's headline and the first frame in our own code under it;
    # leaks grouped by that frame (the log has every stack).
    awk -v reports="$reports" '
        /^FAIL / || $0 ~ reports { print; want = 1; leak = 0; next }
        /^(Direct|Indirect) leak/ { want = 1; leak = 1; next }
        want && /^ +#[0-9]+ .*(Sources|Tests)\// {
            want = 0
            if (leak) { sub(/^ +#[0-9]+ 0x[0-9a-f]+ in /, ""); n[$0]++ } else print
        }
        END { for (f in n) printf "    %d leaked block(s) first allocated in our code at: %s\n", n[f], f }
    ' "$log" | swift demangle --simplified | head -60 || true
    echo "run-sanitized: $mode: FAIL"
    exit 1
fi
