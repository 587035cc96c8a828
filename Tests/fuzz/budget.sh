# budget.sh - sourced by run-fuzz.sh and run-decoders.sh: what a run's
# SECONDS or SECONDS@SEED budget means, and how a failed run is shown.

# fuzz_budget NAME BUDGET FRESH KEPT: for SECONDS@SEED, the start CI has (a
# fixed seed, SWIFT_DETERMINISTIC_HASHING, no corpus but the seeds: FRESH,
# emptied); for SECONDS, the corpus KEPT between timed runs. Sets corpus,
# budget_flags and budget_text, and creates the corpus folder; exits 2 with
# a line from NAME for any other budget.
fuzz_budget() {
    local name=$1 budget=$2 fresh=$3 kept=$4
    if [[ $budget =~ ^([0-9]+)@([0-9]+)$ ]]; then
        # Runs drift apart after a few hundred inputs (pointer values reach
        # the comparison dictionary), so this is CI's search, not a replay of it.
        corpus=$fresh
        rm -rf "$corpus"
        budget_flags=(-max_total_time="${BASH_REMATCH[1]}" -seed="${BASH_REMATCH[2]}")
        budget_text="${BASH_REMATCH[1]} s from seed ${BASH_REMATCH[2]}"
        export SWIFT_DETERMINISTIC_HASHING=1
    elif [[ $budget =~ ^[0-9]+$ ]]; then
        corpus=$kept
        budget_flags=(-max_total_time="$budget")
        budget_text="$budget s"
    else
        echo "$name: the budget is SECONDS or SECONDS@SEED, not '$budget'"
        exit 2
    fi
    mkdir -p "$corpus"
}

# fuzz_failure_lines LOG: the lines of LOG that say what failed (the reports
# matching $bad, the saved input, the stack frames in the project's code).
fuzz_failure_lines() {
    grep -aE "$bad|Test unit written to|^    #[0-9]+ .*(Sources|Tests)/" "$1" | head -40 || true
}
