#!/usr/bin/env bash
# test.sh - the SDK as a user gets it: make install into a scratch prefix,
# the examples built with nothing else, each run in real QEMU 11.1 on every
# bare-metal guest with exact expected output, and every refusal of load=.
#
#   Tests/sdk/test.sh
#
# Needs the guests (Tests/guests/build.sh) and QEMU (scripts/fetch-qemu.sh).
# The Swift example keeps its build in Examples/swift-count/.build (built
# once, incrementally after). Prints one line per test and
# "N passed, M failed"; exits non-zero if any failed.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/../.." && pwd -P)
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PREFIX=$WORK/prefix
passed=0
failed=0

pass() { echo "PASS $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
oneline() { tr '\n' '|' < "$1"; }

# ---- the SDK, installed as a user would (debug build: make test has it) ----
if ! make --no-print-directory -C "$ROOT" install PREFIX="$PREFIX" INSTALL_CONFIG=debug >"$WORK/install.log" 2>&1; then
    fail "install" "$(oneline "$WORK/install.log")"
    echo "$passed passed, $failed failed"
    exit 1
fi
export PKG_CONFIG_PATH=$PREFIX/lib/pkgconfig
LIB=$PREFIX/lib/libportal.so
if [[ $(readelf -d "$LIB" | sed -n 's/.*Library soname: \[\(.*\)\]/\1/p') == libportal.so &&
      $(echo $(pkg-config --cflags --libs portal)) == "-I$PREFIX/include -L$PREFIX/lib -lportal" &&
      -f $PREFIX/include/portal/portal.h && $(pkg-config --modversion portal) == 1 ]]; then
    pass "install"
else
    fail "install" "soname, portal.pc or headers wrong: $(readelf -d "$LIB" | grep SONAME) $(pkg-config --cflags --libs portal)"
fi

# ---- the README's samples are the examples, verbatim ----
for example in Examples/c-count/count.c Examples/c-count/Makefile Examples/swift-count/Package.swift \
               Examples/swift-count/Sources/SwiftCount/SwiftCount.swift; do
    if python3 -c 'import sys; sys.exit(open(sys.argv[2]).read() not in open(sys.argv[1]).read())' \
        "$ROOT/README.md" "$ROOT/$example"; then
        pass "readme-shows-$(basename "$example")"
    else
        fail "readme-shows-$(basename "$example")" "README.md does not show $example verbatim"
    fi
done

# ---- the examples, built from copies with their own build files only ----
cp -r "$ROOT/Examples/c-count" "$WORK/c-count"
rm -f "$WORK/c-count/libcount.so"
if make --no-print-directory -C "$WORK/c-count" >"$WORK/c-build.log" 2>&1; then
    pass "build-c-count"
else
    fail "build-c-count" "$(oneline "$WORK/c-build.log")"
fi
if swift build --package-path "$ROOT/Examples/swift-count" >"$WORK/swift-build.log" 2>&1; then
    pass "build-swift-count"
else
    fail "build-swift-count" "$(tail -20 "$WORK/swift-build.log" | tr '\n' '|')"
fi
SWIFT_MODULE=$ROOT/Examples/swift-count/.build/debug/libSwiftCount.so

# A Guest is not Sendable: guest operations racing in async let do not
# compile; the same reads awaited in turn do (against the example's modules).
MODULES=$ROOT/Examples/swift-count/.build/debug/Modules
swiftc -emit-sil -o /dev/null -swift-version 6 -I "$MODULES" "$HERE/async-let.swift" >"$WORK/async-let.log" 2>&1
status=$?
if (( status != 0 )) &&
   grep -q "async-let.swift:7:27: error: sending 'guest' risks causing data races" "$WORK/async-let.log" &&
   grep -q "async-let.swift:8:28: error: sending 'guest' risks causing data races" "$WORK/async-let.log" &&
   swiftc -emit-sil -o /dev/null -swift-version 6 -I "$MODULES" "$HERE/one-at-a-time.swift" >"$WORK/in-turn.log" 2>&1; then
    pass "async-let-on-guest-does-not-compile"
else
    fail "async-let-on-guest-does-not-compile" "status $status: $(grep error: "$WORK/async-let.log" "$WORK/in-turn.log" | head -4 | tr '\n' '|')"
fi

# Runs the guest of `arch` with libportal.so and `load_args`; compares the
# plugin's output (standard error without run.sh's own line) with
# expected/NAME.txt, @ARCH@ standing for the guest's name. The examples do
# not serve the guests' own checks, so the guest runs to its end and fails
# them: run.sh's status 1.
run_module() {
    local test=$1 arch=$2 expected=$3 load_args=$4
    local out=$WORK/$test.out err=$WORK/$test.err
    TIMEOUT=60 "$ROOT/Tests/guests/run.sh" "$arch" -plugin "$LIB,$load_args" >"$out" 2>"$err"
    local status=$?
    grep -v '^run.sh: ' "$err" >"$err.plugin"
    sed "s/@ARCH@/$arch/g" "$HERE/expected/$expected.txt" >"$WORK/$test.expected"
    if (( status != 1 )); then
        fail "$test" "run.sh exited $status, expected 1; $(oneline "$err")"
    elif ! cmp -s "$err.plugin" "$WORK/$test.expected"; then
        fail "$test" "output differs: $(diff "$WORK/$test.expected" "$err.plugin" | head -8 | tr '\n' '|')"
    elif [[ $(tail -n 1 "$out" | tr -d '\r') != "RESULT: FAIL" ]]; then
        fail "$test" "the guest did not run to its end: $(tail -n 2 "$out" | tr '\n' '|')"
    else
        pass "$test"
    fi
}

# The Swift example reads its strings with Guest.readCString, direct memory
# first: the test guest's module treats FAULT_PAGE and every address outside
# its image as unmapped while QEMU's own view reads the RAM there, so the
# expected output (the guest module's answers, as the README shows) is with
# direct_memory=off. The C example sends READ_STR itself: always the guest.
for arch in i386 x86_64 riscv64 aarch64 arm; do
    run_module "c-count-$arch" "$arch" c-count "load=$WORK/c-count/libcount.so,module_arg=0x1338"
    run_module "swift-count-$arch" "$arch" swift-count "direct_memory=off,load=$SWIFT_MODULE"
done

# Two modules in one load, each with its own argument: both serve, in order
# (the last attach of 0x1338 wins: the Swift module's), and exit in reverse.
run_module "two-modules" x86_64 two-modules "direct_memory=off,load=$WORK/c-count/libcount.so,module_arg=0x1339,load=$SWIFT_MODULE"

# A copy of libportal.so on the module's RUNPATH: the module still binds to
# the library QEMU loaded (by SONAME), whose engine serves its hypercalls.
mkdir -p "$WORK/copy"
cp "$LIB" "$WORK/copy/libportal.so"
cc -std=c11 -Wall -Werror -fPIC -shared -o "$WORK/copy-bound.so" "$WORK/c-count/count.c" \
    $(pkg-config --cflags portal) -L"$WORK/copy" -Wl,-rpath,"$WORK/copy" -lportal
run_module "runpath-copy-binds-to-loaded" x86_64 c-count "load=$WORK/copy-bound.so"

# ---- refusals: QEMU must not start, with one line naming the module ----
build_module() {
    cc -std=c11 -Wall -Werror -fPIC -shared -o "$WORK/$1.so" "$HERE/modules/$1.c" "${@:2}"
}
build_module no-entry $(pkg-config --cflags --libs portal)
build_module no-version $(pkg-config --cflags --libs portal)
build_module old-version $(pkg-config --cflags --libs portal)
build_module failing $(pkg-config --cflags --libs portal)
mkdir -p "$WORK/other"
cc -std=c11 -Wall -Werror -fPIC -shared -o "$WORK/other/libotherportal.so" "$HERE/modules/other-portal.c" \
    $(pkg-config --cflags portal)
build_module bound-elsewhere $(pkg-config --cflags portal) -L"$WORK/other" -Wl,-rpath,"$WORK/other" -lotherportal

# Runs QEMU (no guest is reached) and expects `line` as the plugin's refusal.
refused() {
    local test=$1 line=$2; shift 2
    timeout 60 "$ROOT/scripts/qemu" qemu-system-x86_64 -M pc -display none -monitor none -no-reboot \
        -serial none "$@" </dev/null >"$WORK/$test.out" 2>&1
    local status=$?
    if (( status == 1 )) && grep -qxF "$line" "$WORK/$test.out" &&
       grep -q "returned error code -1" "$WORK/$test.out" &&
       (( $(grep -c '^portal: ' "$WORK/$test.out") == 1 )); then
        pass "$test"
    else
        fail "$test" "status $status, expected the line '$line'; output: $(oneline "$WORK/$test.out")"
    fi
}

E="portal: error: qemu_plugin_install: load="
refused "refuse-missing-file" \
    "${E}$WORK/missing.so: cannot open the module: $WORK/missing.so: cannot open shared object file: No such file or directory" \
    -plugin "$LIB,load=$WORK/missing.so"
refused "refuse-no-entry-point" \
    "${E}$WORK/no-entry.so: not an analysis module: it defines no portal_analysis_init ($WORK/no-entry.so: undefined symbol: portal_analysis_init)" \
    -plugin "$LIB,load=$WORK/no-entry.so"
refused "refuse-no-api-version" \
    "${E}$WORK/no-version.so: the module declares no API version (write PORTAL_ANALYSIS_MODULE; in one of its files)" \
    -plugin "$LIB,load=$WORK/no-version.so"
refused "refuse-wrong-api-version" \
    "${E}$WORK/old-version.so: the module is built for portal API version 0, this libportal.so implements version 1; rebuild it against this SDK" \
    -plugin "$LIB,load=$WORK/old-version.so"
refused "refuse-failing-init" \
    "${E}$WORK/failing.so: its portal_analysis_init(\"x,y=2\") returned 3" \
    -plugin "$LIB,load=$WORK/failing.so,module_arg=x,module_arg=y=2"
refused "refuse-bound-to-another-copy" \
    "${E}$WORK/bound-elsewhere.so: the module is bound to another copy of libportal ($WORK/other/libotherportal.so), not the loaded $LIB, whose engine it could not reach; link it with -lportal (pkg-config portal) so that it binds to the loaded library by its SONAME" \
    -plugin "$LIB,load=$WORK/bound-elsewhere.so"
# Wrong order: a module given to QEMU itself (here one whose RUNPATH finds
# libportal.so) reaches libportal.so's qemu_plugin_install through its
# dependency, so libportal.so is installed twice, and the second is refused.
cc -std=c11 -Wall -Werror -fPIC -shared -o "$WORK/rpath-count.so" "$WORK/c-count/count.c" \
    $(pkg-config --cflags --libs portal) -Wl,-rpath,"$PREFIX/lib"
twice="portal: error: qemu_plugin_install: the plugin is already loaded: libportal.so (or an analysis module linked with it) was given to the emulator twice; give analysis modules to libportal.so with load=PATH"
refused "refuse-module-as-qemu-plugin-after" "$twice" -plugin "$LIB" -plugin "$WORK/rpath-count.so"
refused "refuse-module-as-qemu-plugin-before" "$twice" -plugin "$WORK/rpath-count.so" -plugin "$LIB"

echo "$passed passed, $failed failed"
(( failed == 0 ))
