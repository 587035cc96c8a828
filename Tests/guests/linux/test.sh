#!/usr/bin/env bash
# test.sh - boot the Linux test guest with libportal.so, the host-side C
# checks (host/checks.c, an analysis module loaded with load=) and, given the
# demonstration module, its typed Swift operations (module_arg=operations,
# run after the C checks in the same boot), and compare what the host read
# through the portal with what the guest printed about itself, exactly.
#
#   Tests/guests/linux/test.sh PATH/TO/libportal.so [PATH/TO/libPortalDemo.so]
#   LINUX_ARCH=arm64 Tests/guests/linux/test.sh PATH/TO/libportal.so [...]
#
# Needs scripts/fetch-linux.sh and scripts/fetch-qemu.sh to have run (make
# test-linux runs them). The guest prints "view: ..." lines on its console
# (its own ps, /proc/PID/maps, fds, cmdline, environ, /etc/passwd, ...); the
# C checks print "host: ..." lines and the Swift operations "linux: ..."
# lines on standard error (swift-checks.sh compares those). Prints one
# PASS/FAIL line per check and "N passed, M failed"; exits non-zero if any
# failed. The console and the host's lines are kept in
# Tests/guests/linux/build/ARCH/.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../../.." && pwd -P)
LIBRARY=$(realpath "${1:?usage: test.sh PATH/TO/libportal.so [PATH/TO/libPortalDemo.so]}")
# The demonstration module (Tests/demo): its module_arg=operations runs every
# typed Swift operation after the C checks, in the same boot.
DEMO=${2:+$(realpath "$2")}
ARCH=${LINUX_ARCH:-amd64}
BUILD=$HERE/build/$ARCH
CHECKS=$BUILD/liblinux-checks.so
CONSOLE=$BUILD/console.log
HOST=$BUILD/host.log
mkdir -p "$BUILD"

# The checks: an analysis module built as an SDK user builds one, against
# the headers and -lportal (its dependency binds by SONAME to the
# libportal.so QEMU loaded), and loaded by libportal.so with load=.
${CC:-gcc} -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
    -I"$ROOT/include" "$HERE/host/checks.c" -o "$CHECKS" -L"$(dirname "$LIBRARY")" -lportal \
    || { echo "FAIL build of host/checks.c"; exit 1; }

START=$SECONDS
LINUX_ARCH=$ARCH "$HERE/run.sh" -plugin "$LIBRARY,log=info,load=$CHECKS${DEMO:+,module_arg=handoff=operations,load=$DEMO,module_arg=operations}" > "$CONSOLE.raw" 2> "$HOST.raw"
STATUS=$?
tr -d '\r' < "$CONSOLE.raw" > "$CONSOLE"
tr -d '\r' < "$HOST.raw" > "$HOST"
rm -f "$CONSOLE.raw" "$HOST.raw"
echo "booted and checked in $((SECONDS - START)) s (console: ${CONSOLE#"$ROOT"/}, host: ${HOST#"$ROOT"/})"

passed=0
failed=0
pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
# view, view1, same and the Swift operations' checks.
# shellcheck source=swift-checks.sh
source "$HERE/swift-checks.sh"

host() { sed -n "s/^host: $1 //p" "$HOST"; }         # KEY -> the host's values
host1() { host "$1" | head -n 1; }

# NAME LINE: the host printed exactly this line.
has() {
    if grep -qxF "host: $2" "$HOST"; then pass "$1"; else fail "$1" "no line 'host: $2'"; fi
}

if (( STATUS == 0 )); then pass "guest ran and powered off when the host was done"
else fail "guest run" "run.sh exited $STATUS: $(tail -n 3 "$CONSOLE" | tr '\n' '|')"; fi
same "guest: module loaded" "guest: module loaded" "$(grep -x 'guest: module loaded' "$CONSOLE")"
if [[ -n $DEMO ]]; then finished="checks and operations finished"; else finished="checks finished"; fi
same "guest: heard from the host" "guest: the host is done: $finished" \
    "$(grep '^guest: the host is done' "$CONSOLE")"
if grep -q '^portal: \(error\|warn\):' "$HOST"; then
    fail "plugin log" "$(grep '^portal: \(error\|warn\):' "$HOST" | head -5 | tr '\n' '|')"
else
    pass "plugin log: no error or warning"
fi
grep -qx "portal: info: hypercall 0xbebebebe on vCPU [01]: the guest's regions carry 4072 payload bytes" "$HOST" \
    && pass "region size registered (PAGE_SIZE - 24)" || fail "region registration" "no 0xbebebebe line with 4072"
grep -q "^portal: info: hypercall 0x7901 on vCPU [01]: interrupt flag at 0xff" "$HOST" \
    && pass "interrupt flag registered (a kernel address)" || fail "interrupt flag" "no 0x7901 line"

# Kernel banner (KALLSYMS_LOOKUP + READ_STR of a kernel address).
release=$(sed -n 's/.*guest: kernel //p' "$CONSOLE")   # the first line follows the BIOS's escapes
address_or_zero() { local a; a=$(view1 "$1"); printf '%s' "${a:-0000000000000000}"; }
same "kallsyms_lookup do_exit = /proc/kallsyms" "READ_NUM, $(address_or_zero do_exit)" "$(host1 'kallsyms_lookup do_exit:')"
same "kallsyms_lookup linux_banner = /proc/kallsyms (0: not listed)" "READ_NUM, $(address_or_zero linux_banner)" \
    "$(host1 'kallsyms_lookup linux_banner:')"
if [[ -n $(view1 linux_banner) ]]; then way="READ_STR of linux_banner"; else way="READ_FILE of /proc/version"; fi
same "banner read with $way" "$way" "$(host1 'banner read with:')"
same "banner = /proc/version" "$(view1 version)" "$(host1 banner:)"
same "banner names the guest's uname -r" "Linux version $release " "$(host1 banner: | cut -c1-$((15 + ${#release})))"

# User memory in portal-mapper's context.
probe=$(sed -n 's/^guest: mapper pid=[0-9]* probe=\(0x[0-9a-f]*\) .*/\1/p' "$CONSOLE")
before_end=$(( ((probe | 4095) + 1) - probe ))
same "read_str across a page" \
    "READ_OK, 36 bytes, $before_end of them before the page end: /tmp/portal-probe-path-across-a-page" \
    "$(host1 'read_str across a page:')"
(( before_end < 36 )) && pass "the probe string crosses a page" || fail "probe string" "does not cross a page"
same "read of an unmapped user page" "READ_PARTIAL, 0 bytes" "$(host1 'read unmapped user page:')"
# x86_64's copy_from_user stops at the fault; arm64's copies in blocks and
# reports fewer bytes (the kernel allows a short copy to under-report).
case $ARCH in amd64) before_fault=100 ;; arm64) before_fault=52 ;; esac
same "read running into an unmapped page" "READ_PARTIAL, $before_fault bytes, $before_fault of them 'p'" \
    "$(host1 'read running into the unmapped page:')"
same "write to user memory" "WRITE_OK" "$(host1 'write user memory:')"
same "read back what was written" "READ_OK, HOST" "$(host1 'read back:')"
# READ_TIME: the guest's monotonic ns, between the guest's own uptime before
# the host asked and its uptime once the host was done (/proc/uptime has two
# decimals: 10 ms are added to the upper bound).
time_line=$(host1 'read_time:')
centiseconds() { local whole=${1%.*} fraction=${1#*.}; echo $((10#$whole * 100 + 10#$fraction)); }
uptime_before=$(view1 uptime)
uptime_after=$(sed -n 's/^guest: uptime //p' "$CONSOLE" | head -n 1)
guest_ns=${time_line#READ_NUM, }
if [[ $time_line =~ ^READ_NUM,\ [0-9]+$ && $uptime_before =~ ^[0-9]+\.[0-9]{2}$ && $uptime_after =~ ^[0-9]+\.[0-9]{2}$ ]]; then
    low=$(( $(centiseconds "$uptime_before") * 10000000 ))
    high=$(( ($(centiseconds "$uptime_after") + 1) * 10000000 ))
    if (( low <= guest_ns && guest_ns <= high )); then
        pass "read_time = the guest's monotonic clock ($guest_ns ns, between $uptime_before s and $uptime_after s)"
    else
        fail "read_time" "$guest_ns ns is not between the guest's uptimes $uptime_before s and $uptime_after s"
    fi
else
    fail "read_time" "host line '$time_line', guest uptimes '$uptime_before' and '$uptime_after'"
fi

# Processes: OSI_PROC_ALL in two pages against the guest's ps.
same "osi_proc_all = the guest's ps (pid ppid uid name)" "$(view ps | sort -n)" "$(host ps | sort -n)"
total=$(view ps | wc -l)
(( total > 72 )) && pass "more than 72 processes ($total)" || fail "process count" "only $total processes"
same "osi_proc_all pages" "page at 0: 72 of $total|page at 72: $((total - 72)) of $total|" \
    "$(host proc_all | tr '\n' '|')"
mapper=$(view1 mapper)
maps=$(view1 mapper-maps)
same "osi_proc of portal-mapper" "$mapper ppid 1 uid 0 name portal-mapper map_count $maps" "$(host1 proc)"

# Mappings: OSI_MAPPINGS in pages against /proc/PID/maps.
same "osi_mappings = /proc/PID/maps (range perms offset name)" \
    "$(view maps | awk '{ name = ""; for (i = 6; i <= NF; i++) name = name (i > 6 ? " " : "") $i; line = $1 " " $2 " " $3; if (name != "") line = line " " name; print line }')" \
    "$(host maps)"
(( maps > 28 )) && pass "more than 28 mappings ($maps)" || fail "mapping count" "only $maps mappings"
same "osi_mappings pages" "page at 0: 28 of $maps|page at 28: $((maps - 28)) of $maps|" \
    "$(host mappings | tr '\n' '|')"
heap=$(view maps | awk '$NF == "[heap]" { split($1, r, "-"); print "start_brk " r[1] " brk " r[2] }')
same "osi_proc_mem = the [heap] mapping" "$heap" "$(host1 proc_mem)"
same "osi_proc_exe = readlink /proc/PID/exe" "$(view1 mapper-exe) (READ_OK, $(view1 mapper-exe | tr -d '\n' | wc -c) bytes)" "$(host1 exe)"

# Arguments and environment.
cmdline=$(view1 mapper-cmdline)
same "read_procargs (NULs as spaces)" "$(printf '%s' "${cmdline%|}" | tr '|' ' ')" "$(host1 procargs)"
same "read_ptr_array of argv (an argument with spaces)" "$cmdline" "$(host1 argv)"
same "read_procenv = /proc/PID/environ" "$(view environ)" "$(host environ | sed 's/ (name .*//')"
same "environment value with '=' split at the first '='" \
    "PORTAL_TEST=key=value=more (name PORTAL_TEST, value key=value=more)" \
    "$(host environ | grep '^PORTAL_TEST=')"

# Files of the daemon (fd numbers with gaps, a socket) and its cwd.
same "read_fds = /proc/PID/fd (gaps, socket)" "$(view fd)" "$(host fd)"
same "read_fds cwd (-100)" "-100 $(view1 daemon-cwd)" "$(host1 cwd)"

# Files and programs.
same "read_file /etc/passwd (first lines)" "$(view passwd)" "$(host passwd)"
same "write_file" "/tmp/portal-host-file: READ_NUM 20" "$(host1 write_file)"
same "read_file of the written file" "READ_OK 20 bytes, the same" "$(host1 'read_file back:')"
same "vfs_open" "/etc/passwd: error 0, handle slot 1, fs magic 0x1021994" "$(host1 vfs_open)"
same "vfs_read" "error 0, 16 bytes, eof 0, the same as read_file's" "$(host1 vfs_read:)"
same "vfs_close" "READ_OK, error 0" "$(host1 vfs_close:)"
same "exec (wait status of sh -c 'exit 3')" "/bin/busybox sh -c 'exit 3': READ_NUM, status 768" "$(host1 exec)"
same "exit event of the exec'd program" "busybox status 768" "$(host1 exit)"
same "an op the module does not serve" "(not served by this module): WRITE_FAIL" "$(host1 osi_proc_handles)"
same "copy_buf_guest of 10000 bytes (total length unclamped), 2 WRITEs, 3 READs back" \
    "10000 bytes at a kernel address, the rest by WRITE (0 failed), read back: 10000 bytes equal" \
    "$(host1 copy_buf_guest)"

# Events and interrupts.
same "execve event of portal-mapper" "/bin/portal-mapper" "$(host execve | grep -x /bin/portal-mapper | head -n 1)"
same "sethostname events" "portal-guest|skip-me|" "$(host sethostname | tr '\n' '|')"
same "syscall event: the host rewrote an argument" "length rewritten to 6: WRITE_OK" "$(host1 'sethostname:')"
same "syscall event: the host skipped the call" "skipped with retval 0: WRITE_OK" "$(host 'sethostname:' | sed -n 2p)"
same "the guest saw the rewritten and the skipped call" "guest: hostname now portal|guest: hostname now portal|" \
    "$(grep '^guest: hostname now' "$CONSOLE" | tr '\n' '|')"
same "interrupt queued before the module loaded ran at its load" "insmod (the module's load)" \
    "$(host1 'first interrupt ran in')"
same "interrupts ran in user tasks (module load, then a syscall's return)" "yes|yes|" \
    "$(host 'interrupt ran in a user task:' | tr '\n' '|')"
same "conversations on both vCPUs" "vCPU 0: some, on vCPU 1: some" "$(host1 'syscall events on')"

# The typed Swift operations, run after the C checks in portal-mapper's context.
if [[ -n $DEMO ]]; then
    same "C checks handed over to the Swift operations" "handed over to interrupt operations" "$(host1 'done,')"
    grep -q "^linux: operations ran in portal-mapper's context" "$HOST" \
        && pass "Swift operations ran in portal-mapper's context" || fail "Swift operations" "never ran in portal-mapper"
    swift_checks
fi

echo "$passed passed, $failed failed"
(( failed == 0 ))
