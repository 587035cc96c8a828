#!/usr/bin/env bash
# test.sh - boot every test guest under its QEMU with libportal.so and check
# what happened, exactly.
#
#   Tests/guests/test.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so
#
# For each of i386 x86_64 riscv64 aarch64 arm, with direct memory and with
# direct_memory=off: the guest's serial output must
# equal expected/ARCH.serial byte for byte, the trace must show the round
# trips of that mode, run.sh must report a pass (the
# guest's own exit status), and the tour's report (the demonstration module
# Tests/demo, loaded with load=) must end in PASS
# with no error logged. Then loading the plugin into qemu-system-mips must
# print the refusal and leave QEMU standing. Prints one line per test and
# "N passed, M failed"; exits non-zero if any failed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
LIBRARY=$(realpath "${1:?usage: test.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so}")
DEMO=$(realpath "${2:?usage: test.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
passed=0
failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }

# Each guest twice: direct memory first (the default: the tour's Guest
# reads and writes go through QEMU's own view of guest memory) and
# direct_memory=off (every one is a portal round trip). The serial output
# must be the same; the trace tells the two apart: the BIG_WRITE event's
# three WRITEs and three READs become direct accesses, so the round trips
# are exactly READ 1 / WRITE 3 with direct memory and READ 4 / WRITE 6
# without (the tour's raw commands always go to the guest).
for arch in i386 x86_64 riscv64 aarch64 arm; do
  for direct in on off; do
    name=guest-$arch
    [[ $direct == off ]] && name="guest-$arch direct_memory=off"
    serial=$WORK/$arch-$direct.serial
    log=$WORK/$arch-$direct.log
    trace=$WORK/$arch-$direct.jsonl
    # A normal run takes well under a second; 60 s means "hung", not "slow".
    TIMEOUT=60 "$HERE/run.sh" "$arch" -plugin "$LIBRARY,load=$DEMO,module_arg=tour,log=warn,direct_memory=$direct,trace=$trace" >"$serial" 2>"$log"
    status=$?
    if [[ $direct == on ]]; then want="READ 1 WRITE 3"; else want="READ 4 WRITE 6"; fi
    got="READ $(grep -c '"op":"READ",' "$trace") WRITE $(grep -c '"op":"WRITE",' "$trace")"
    if (( status != 0 )); then
        fail "$name" "run.sh exited $status; plugin log: $(tr '\n' '|' < "$log")"
    elif ! cmp -s "$serial" "$HERE/expected/$arch.serial"; then
        fail "$name" "serial output differs: $(diff "$HERE/expected/$arch.serial" "$serial" | head -5 | tr '\n' '|')"
    elif [[ $(grep '^portal: tour: ' "$log" | tail -n 1) != "portal: tour: PASS" ]]; then
        fail "$name" "the tour report does not end in PASS: $(tr '\n' '|' < "$log")"
    elif grep -q '^portal: \(error\|warn\):' "$log"; then
        fail "$name" "the plugin logged problems: $(grep '^portal: \(error\|warn\):' "$log" | tr '\n' '|')"
    elif [[ $got != "$want" ]]; then
        fail "$name" "round trips in the trace: $got, expected $want"
    else
        pass "$name"
    fi
  done
done

# MIPS: QEMU has no MIPS registers for plugins, so the plugin must refuse to
# load with its reason, and QEMU must report the failed load, not crash.
refusal="portal: error: qemu_plugin_install: target 'mips' cannot be served: QEMU exposes no MIPS registers to plugins (its MIPS CPUs have no gdb register description), so the hypercall number and arguments cannot be read"
timeout 60 "$ROOT/scripts/qemu" qemu-system-mips -M malta -display none -monitor none -no-reboot \
    -serial none -plugin "$LIBRARY" </dev/null >"$WORK/mips.out" 2>&1
status=$?
if (( status == 1 )) && grep -qxF "$refusal" "$WORK/mips.out" &&
   grep -q "qemu_plugin_install returned error code -1" "$WORK/mips.out"; then
    pass "mips-refused"
else
    fail "mips-refused" "status $status, output: $(tr '\n' '|' < "$WORK/mips.out")"
fi

echo "$passed passed, $failed failed"
(( failed == 0 ))
