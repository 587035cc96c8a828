#!/usr/bin/env bash
# run.sh - boot the Linux test guest (scripts/fetch-linux.sh builds it) in
# QEMU 11.1 x86_64 (LINUX_ARCH=arm64: aarch64, -M virt): 2 vCPUs, TCG, serial
# console on stdout, no reboot. KERNEL_LOGLEVEL=loglevel=7 shows the
# kernel's messages (default: quiet).
#
#   Tests/guests/linux/run.sh [extra QEMU args...]
#
# The extra arguments go to QEMU as they are, e.g. the plugin:
#   Tests/guests/linux/run.sh -plugin .build/debug/libportal.so,log=info
# TIMEOUT (seconds, default 150) bounds the whole run; the guest itself
# powers off PORTAL_WAIT seconds (default 90) after it printed its view if
# the host never writes /tmp/portal-done.
#
# Exit status: 0 when the guest powered off after hearing from the host
# ("guest: the host is done" on the console), 1 when it powered off on its
# own timeout, 124 when QEMU had to be killed, 3 for anything else.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../../.." && pwd -P)
case ${LINUX_ARCH:-amd64} in
    amd64) CACHE=$ROOT/.cache/linux
           MACHINE=(qemu-system-x86_64 -M pc)
           CONSOLE=ttyS0 ;;
    arm64) CACHE=$ROOT/.cache/linux-arm64
           MACHINE=(qemu-system-aarch64 -M virt)
           CONSOLE=ttyAMA0 ;;
    *) echo "run.sh: LINUX_ARCH=$LINUX_ARCH: expected amd64 or arm64" >&2; exit 3 ;;
esac
TIMEOUT=${TIMEOUT:-150}
PORTAL_WAIT=${PORTAL_WAIT:-90}

for f in vmlinuz initramfs.cpio; do
    [[ -f $CACHE/$f ]] || { echo "run.sh: no ${CACHE#"$ROOT"/}/$f (run scripts/fetch-linux.sh)" >&2; exit 3; }
done

LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
timeout "$TIMEOUT" "$ROOT/scripts/qemu" "${MACHINE[@]}" -accel tcg -cpu max -smp 2 -m 512M \
    -display none -monitor none -no-reboot -nographic -serial stdio \
    -kernel "$CACHE/vmlinuz" -initrd "$CACHE/initramfs.cpio" \
    -append "console=$CONSOLE ${KERNEL_LOGLEVEL:-quiet} panic=-1 portal.wait=$PORTAL_WAIT" \
    "$@" </dev/null | tee "$LOG"
STATUS=${PIPESTATUS[0]}
(( STATUS == 124 )) && { echo "run.sh: QEMU killed after ${TIMEOUT}s" >&2; exit 124; }
tr -d '\r' < "$LOG" | grep -q '^guest: the host is done' && exit 0
tr -d '\r' < "$LOG" | grep -q '^guest: timeout' && exit 1
echo "run.sh: QEMU exited with $STATUS before the guest ended its run" >&2
exit 3
