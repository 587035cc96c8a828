# swift-checks.sh - sourced by test.sh and demo.sh: the checks of the Swift
# typed operations (the demonstration module's module_arg=linux or
# module_arg=operations, Tests/demo/Sources/PortalDemo/Linux.swift), whose
# "linux: ..." lines are in $HOST, against the guest's own "view: ..." lines
# in $CONSOLE. Needs the caller's pass and fail; gives both scripts view,
# view1 and same.

view() { sed -n "s/^view: $1 //p" "$CONSOLE"; }      # KEY -> the guest's values
view1() { view "$1" | head -n 1; }

# NAME EXPECTED ACTUAL: one check, the two texts must be equal. A mismatch
# shows the first SAME_SHOWN bytes of each (400 unless the caller sets it).
same() {
    local shown=${SAME_SHOWN:-400}
    if [[ -z $2 ]]; then
        fail "$1" "nothing to compare with (expected value is empty)"
    elif [[ $2 == "$3" ]]; then
        pass "$1"
    else
        fail "$1" "expected [$(printf '%s' "$2" | head -c "$shown" | tr '\n' '|')] got [$(printf '%s' "$3" | head -c "$shown" | tr '\n' '|')]"
    fi
}

ops() { sed -n "s/^linux: $1 //p" "$HOST"; }     # KEY -> the Swift operations' values
ops1() { ops "$1" | head -n 1; }

# FIRST LAST: bytes FIRST to LAST of the pattern the Swift operations copy
# into the kernel (byte i = i * 13 + i / 256), in hex as they print them.
copy_pattern() {
    local i out=()
    for (( i = $1; i <= $2; i++ )); do out+=("$(printf '%x' $(( (i * 13 + i / 256) & 255 )))"); done
    printf '%s' "${out[*]}"
}

swift_checks() {
    local mapper maps cmdline passwd words
    mapper=$(view1 mapper)
    maps=$(view1 mapper-maps)
    cmdline=$(view1 mapper-cmdline)
    passwd=$(view passwd)

    if grep -q '^linux: FAIL' "$HOST"; then
        fail "Swift operations: no failure" "$(grep '^linux: FAIL' "$HOST" | head -5 | tr '\n' '|')"
    else
        pass "Swift operations: no failure"
    fi
    same "Swift: banner = /proc/version" "$(view1 version)" "$(sed -n 's/^linux: banner ([^)]*): //p' "$HOST" | head -n 1)"
    if [[ -n $(view1 do_exit) ]]; then
        same "Swift: symbolAddress(do_exit) = /proc/kallsyms" "$(view1 do_exit)" "$(ops1 'symbol do_exit')"
    fi
    same "Swift: symbolAddress of an unknown symbol throws" \
        "KALLSYMS_LOOKUP for symbol portal_no_such_symbol: the guest knows no such symbol (it answered address 0)" \
        "$(ops1 'symbol portal_no_such_symbol:')"
    same "Swift: processes() = the guest's ps (pid ppid uid name)" "$(view ps | sort -n)" "$(ops ps | sort -n)"
    same "Swift: processes() count (more than 72: two pages)" "$(view ps | wc -l)" "$(ops1 processes)"
    same "Swift: process(pid:) of portal-mapper" "$mapper ppid 1 uid 0 name portal-mapper map_count $maps" \
        "$(ops1 process)"
    same "Swift: process() of the current task" "$mapper portal-mapper" "$(ops1 'current task')"
    same "Swift: mappings(pid:) = /proc/PID/maps" \
        "$(view maps | awk '{ name = ""; for (i = 6; i <= NF; i++) name = name (i > 6 ? " " : "") $i; line = $1 " " $2 " " $3; if (name != "") line = line " " name; print line }')" \
        "$(ops maps)"
    same "Swift: mappings(pid:) count (more than 28: two pages)" "$maps" "$(ops1 mappings)"
    same "Swift: heap(pid:) = the [heap] mapping" \
        "$(view maps | awk '$NF == "[heap]" { split($1, r, "-"); print "start_brk " r[1] " brk " r[2] }')" \
        "$(ops1 heap)"
    same "Swift: mapping(containing: start_brk) = the [heap] mapping" \
        "$(view maps | awk '$NF == "[heap]" { print $1 " " $2 " " $3 " [heap]" }')" \
        "$(ops1 'mapping containing start_brk:')"
    same "Swift: executable(pid:) = readlink /proc/PID/exe" "$(view1 mapper-exe)" "$(ops1 exe)"
    same "Swift: arguments() of the current task (exact, an argument with spaces)" "$cmdline" "$(ops1 argv)"
    same "Swift: readPointerArray(at:) of argv" "$cmdline" "$(ops1 ptr_array)"
    words=$(printf '%s' "${cmdline%|}" | tr '|' ' ' | tr -s ' ' '\n' | sed 's/.*/[&]/' | paste -sd ' ')
    same "Swift: arguments(pid:) of another task (READ_PROCARGS: split at spaces)" "$words" "$(ops1 procargs)"
    same "Swift: environment(pid:) = /proc/PID/environ" "$(view environ)" "$(ops environ | sed 's/ (name .*//')"
    same "Swift: environment value with '=' split at the first '='" \
        "PORTAL_TEST=key=value=more (name PORTAL_TEST, value key=value=more)" \
        "$(ops environ | grep '^PORTAL_TEST=')"
    same "Swift: fileDescriptors(pid:) = /proc/PID/fd (gaps, socket)" "$(view fd)" "$(ops fd)"
    same "Swift: workingDirectory(pid:)" "$(view1 daemon-cwd)" "$(ops1 cwd)"
    same "Swift: readFile(path:) of /etc/passwd (first lines)" "$passwd" "$(ops passwd)"
    same "Swift: readFile(path:offset:count:) (bytes 5 to 13)" "$(printf '%s' "$passwd" | head -c 14 | tail -c 9)" \
        "$(ops1 'part of passwd, bytes 5 to 13:')"
    same "Swift: readFile of an empty file" "/tmp/portal-ready: 0 bytes" "$(ops1 'empty file')"
    same "Swift: readFile of a missing file throws (not an empty file)" \
        "VFS_OPEN for path /tmp/portal-no-such-file: the guest cannot open the file (errno 2 ENOENT)" \
        "$(ops1 'missing file:')"
    same "Swift: writeFile, then readFile" '/tmp/portal-swift-file and read back "written by the Swift tour\n"' \
        "$(ops1 wrote)"
    same "Swift: execute(path:arguments:) (wait status of sh -c 'exit 3')" \
        "/bin/busybox sh -c 'exit 3': wait status 768, exit code 3" "$(ops1 exec)"
    same "Swift: run(shellCommand:) (exit code and output)" \
        "'head -n 2 /etc/passwd; exit 7': exit code 7, output \"$(printf '%s' "$passwd" | head -n 2 | sed 's/$/\\n/' | tr -d '\n')\"" \
        "$(ops1 run)"
    same "Swift: copyIntoKernel of 10000 bytes (COPY_BUF_GUEST + WRITE), read back" \
        "10000 bytes, read back 10000 equal, bytes 4068 to 4075: $(copy_pattern 4068 4075)" \
        "$(ops1 'copyIntoKernel:')"
    same "Swift: wrote /tmp/portal-done" "wrote /tmp/portal-done" "$(ops1 'done:')"
}
