#!/usr/bin/env bash
# demo.sh - `make demo`: boot the Linux test guest (x86_64) with libportal.so
# and the demonstration module's Linux tour (module_arg=linux, written with
# the typed Swift operations), show what the host read, and say PASS only if
# every value matches what the guest itself printed on its console.
#
#   Tests/guests/linux/demo.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so
#
# The guest's console and the tour's "linux: ..." lines are kept in
# Tests/guests/linux/build/demo/. A guest that never hears from the host
# (the module not loaded, say) powers itself off after PORTAL_WAIT seconds
# (default 60) and the demo fails with a line saying so.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../../.." && pwd -P)
LIBRARY=$(realpath "${1:?usage: demo.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so}")
DEMO=$(realpath "${2:?usage: demo.sh PATH/TO/libportal.so PATH/TO/libPortalDemo.so}")
BUILD=$HERE/build/demo
CONSOLE=$BUILD/console.log
HOST=$BUILD/host.log
export PORTAL_WAIT=${PORTAL_WAIT:-60}
mkdir -p "$BUILD"

echo "== booting Debian's Linux 6.1 (x86_64, 2 vCPUs) with the portal guest module, in QEMU with"
echo "   -plugin $1,load=$2,module_arg=linux"
echo "== the guest's own lines (guest: ...; its view of itself, the view: lines, goes to ${CONSOLE#"$ROOT"/})"
echo "   and what the host read through the portal (linux: ...):"
START=$SECONDS
# The host's lines and the guest's status lines go to the terminal as they come.
LINUX_ARCH=amd64 "$HERE/run.sh" -plugin "$LIBRARY,load=$DEMO,module_arg=linux" \
    > >(tr -d '\r' | tee "$CONSOLE" | grep --line-buffered -a '^guest:') 2> >(tr -d '\r' | tee "$HOST" >&2)
STATUS=$?
sleep 0.5   # let the tee processes drain
echo "== the guest ran for $((SECONDS - START)) s; checking every value the host read against the guest's view"

passed=0
failed=0
pass() { passed=$((passed + 1)); }
fail() { echo "MISMATCH $1: $2"; failed=$((failed + 1)); }
SAME_SHOWN=300
# view, view1, same and the Swift operations' checks.
# shellcheck source=swift-checks.sh
source "$HERE/swift-checks.sh"

last_host_line() { grep -v '^linux: \|^run.sh: ' "$HOST" | tail -n 1; }
if (( STATUS == 124 )); then
    echo "== demo: FAIL: QEMU did not finish in time and was stopped"
    exit 1
elif grep -qx 'guest: module NOT loaded' "$CONSOLE"; then
    echo "== demo: FAIL: the guest could not load its portal module; it powered off after ${PORTAL_WAIT}s without the host"
    exit 1
elif (( STATUS == 1 )); then
    echo "== demo: FAIL: the guest heard nothing from the host for ${PORTAL_WAIT}s and powered itself off (was the analysis module loaded? last plugin line: $(last_host_line))"
    exit 1
elif (( STATUS != 0 )); then
    echo "== demo: FAIL: QEMU stopped before the guest ended its run (run.sh exited $STATUS; last plugin line: $(last_host_line))"
    exit 1
elif ! grep -qx 'guest: the host is done: the Swift tour finished' "$CONSOLE"; then
    echo "== demo: FAIL: the guest heard from a host that was not the Linux tour: $(grep '^guest: the host is done' "$CONSOLE")"
    exit 1
fi
swift_checks
grep -q '^linux: execve events: .*/bin/portal-mapper x1' "$HOST" \
    && pass "execve of portal-mapper seen" || fail "execve events" "no execve of /bin/portal-mapper among them"
echo "== $passed values match the guest's own view, $failed do not"
if (( failed == 0 )); then echo "== demo: PASS"; else echo "== demo: FAIL"; exit 1; fi
