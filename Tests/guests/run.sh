#!/usr/bin/env bash
# run.sh - boot one bare-metal test guest in QEMU 11.1 (scripts/qemu).
#
#   Tests/guests/run.sh ARCH[/BINARY] [extra QEMU args...]
#
# ARCH is i386, x86_64, riscv64, aarch64 or arm; BINARY is guest (default),
# guest-bench or guest-noplugin-bench (contract.h, BENCH). The
# extra arguments go to QEMU as they are, e.g. the plugin:
#   Tests/guests/run.sh riscv64 -plugin .build/libportal.so,key=value
# Build the guests first (Tests/guests/build.sh). TIMEOUT (seconds, default
# 60) bounds the run. The serial port is this script's stdout.
#
# Exit status (the same for every architecture):
#   0    the guest ran every check and all passed ("RESULT: PASS" printed)
#   1    the guest ran and a check failed
#   2    the guest took an unexpected exception (e.g. an unclaimed aarch64 or
#        arm hypercall instruction when no plugin is loaded)
#   3    anything else: QEMU failed to start or died, the guest never printed
#        its RESULT line, or an exit status that no guest produces
#   124  timeout
# How each architecture's QEMU exit status maps to that:
#   i386, x86_64  isa-debug-exit (iobase 0xf4): the guest writes code c and
#                 QEMU exits with (c << 1) | 1: 1 -> 0, 3 -> 1, 5 -> 2.
#                 (A triple fault ends QEMU with 0 because of -no-reboot: 3.)
#   riscv64       sifive_test at 0x100000: 0x5555 -> QEMU status 0;
#                 c << 16 | 0x3333 -> status c: 0 -> 0, 1 -> 1, 2 -> 2.
#   aarch64       semihosting SYS_EXIT (A64 parameter block {0x20026, c}):
#                 QEMU status c.
#   arm           semihosting SYS_EXIT_EXTENDED (0x20, block {0x20026, c}):
#                 QEMU status c.
# A status that says "passed" counts only if the last line the guest printed
# is "RESULT: PASS" (QEMU itself exits with 1 on its own errors).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
BUILD_DIR=${BUILD_DIR:-$HERE/build}
TIMEOUT=${TIMEOUT:-60}

(( $# >= 1 )) || { sed -n '2,/^set -uo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//' >&2; exit 3; }
SPEC=$1; shift
ARCH=${SPEC%%/*}
BINARY=guest
[[ $SPEC == */* ]] && BINARY=${SPEC#*/}
ELF=$BUILD_DIR/$ARCH/$BINARY.elf
[[ -f $ELF ]] || { echo "run.sh: no $ELF (run Tests/guests/build.sh)" >&2; exit 3; }

COMMON=(-display none -monitor none -no-reboot -serial stdio -kernel "$ELF")
case $ARCH in
    i386)    QEMU=qemu-system-i386;    MACHINE=(-M pc -cpu qemu32 -m 64M -device isa-debug-exit,iobase=0xf4,iosize=4) ;;
    x86_64)  QEMU=qemu-system-x86_64;  MACHINE=(-M pc -cpu qemu64 -m 64M -device isa-debug-exit,iobase=0xf4,iosize=4) ;;
    riscv64) QEMU=qemu-system-riscv64; MACHINE=(-M virt -bios none -m 64M) ;;
    aarch64) QEMU=qemu-system-aarch64; MACHINE=(-M virt -cpu cortex-a57 -m 64M -semihosting-config enable=on,target=native) ;;
    arm)     QEMU=qemu-system-arm;     MACHINE=(-M virt -cpu cortex-a15 -m 64M -semihosting-config enable=on,target=native) ;;
    *) echo "run.sh: unknown architecture '$ARCH' (i386 x86_64 riscv64 aarch64 arm)" >&2; exit 3 ;;
esac

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
timeout "$TIMEOUT" "$ROOT/scripts/qemu" "$QEMU" "${MACHINE[@]}" "${COMMON[@]}" "$@" </dev/null | tee "$LOG"
STATUS=${PIPESTATUS[0]}

(( STATUS == 124 )) && { echo "run.sh: $ARCH/$BINARY timed out after ${TIMEOUT}s" >&2; exit 124; }
case $ARCH in
    i386|x86_64) case $STATUS in 1) CODE=0 ;; 3) CODE=1 ;; 5) CODE=2 ;; *) CODE=3 ;; esac ;;
    *)           case $STATUS in 0|1|2) CODE=$STATUS ;; *) CODE=3 ;; esac ;;
esac
LAST=$(tr -d '\r' < "$LOG" | grep -E '^RESULT: ' | tail -n 1)
if (( CODE == 0 )) && [[ $LAST != "RESULT: PASS" ]]; then CODE=3; fi
if (( CODE != 0 )) && [[ -z $LAST ]]; then CODE=3; fi
if (( CODE != 0 )); then
    echo "run.sh: $ARCH/$BINARY failed: QEMU status $STATUS -> $CODE" >&2
fi
exit "$CODE"
