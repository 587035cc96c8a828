#!/usr/bin/env bash
# build.sh - build the bare-metal portal test guests with the Swift
# toolchain's clang and ld.lld.
#
#   Tests/guests/build.sh            build everything (idempotent)
#   BENCH_N=1000 Tests/guests/build.sh   another round-trip count for the bench binaries
#   BUILD_DIR=/tmp/x Tests/guests/build.sh   somewhere else (default Tests/guests/build)
#
# Output, per architecture ARCH in i386 x86_64 riscv64 aarch64 arm:
#   build/ARCH/guest.elf                    the event script of contract.h
#   build/ARCH/guest-bench.elf              only the BENCH event (N = BENCH_N)
#   build/ARCH/guest-read-bench.elf         only the READ_BENCH event (N = BENCH_N)
#   build/ARCH/guest-control.elf            polls its interrupt flag until told to stop
#   build/ARCH/guest-control-deaf.elf       never looks at its flag (contract.h, control guests)
#   build/ARCH/guest-noplugin-bench.elf     the same guest-side work, no host
#                                           (i386, x86_64, riscv64 only: without
#                                           a host the arm/aarch64 instruction
#                                           is UNDEF)
# The bench pair is meant for i386 and riscv64; the others build too.
# aarch64 and arm run with the MMU off, where memory is Device memory and an
# unaligned access faults: hence -mstrict-align / -mno-unaligned-access.
# Everything is rebuilt when a source, this script or BENCH_N changed.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
BUILD_DIR=${BUILD_DIR:-$HERE/build}
BENCH_N=${BENCH_N:-1000000}
TOOLBIN=${SWIFT_TOOLCHAIN_BIN:-/opt/swift/usr/bin}
CLANG=$TOOLBIN/clang
LLD=$TOOLBIN/ld.lld
OBJCOPY=$TOOLBIN/llvm-objcopy
for t in "$CLANG" "$LLD" "$OBJCOPY"; do
    [[ -x $t ]] || { echo "build.sh: $t not found (set SWIFT_TOOLCHAIN_BIN)" >&2; exit 1; }
done

COMMON=(-ffreestanding -nostdlib -fno-builtin -fno-pic -fno-stack-protector
        -fno-unwind-tables -fno-asynchronous-unwind-tables -fomit-frame-pointer
        -O2 -g0 -Wall -Wextra -Werror -std=c11 -I"$HERE")

arch_flags() {   # ARCH -> clang flags
    case $1 in
        i386)    echo "--target=i386-none-elf -march=i686 -mgeneral-regs-only" ;;
        x86_64)  echo "--target=x86_64-none-elf -mgeneral-regs-only -mno-red-zone -mcmodel=small" ;;
        riscv64) echo "--target=riscv64-none-elf -march=rv64imac_zicsr -mabi=lp64 -mcmodel=medany -mno-relax" ;;
        aarch64) echo "--target=aarch64-none-elf -mcpu=cortex-a57 -mgeneral-regs-only -mstrict-align" ;;
        arm)     echo "--target=armv7a-none-eabi -mcpu=cortex-a15 -marm -mfloat-abi=soft -mfpu=none -mno-unaligned-access" ;;
    esac
}

variants() {     # ARCH -> the binaries built for it
    case $1 in
        # Without a host the aarch64/arm instruction is UNDEF: no no-plugin loop.
        aarch64|arm) echo "guest guest-bench guest-read-bench guest-control guest-control-deaf" ;;
        *) echo "guest guest-bench guest-read-bench guest-noplugin-bench guest-control guest-control-deaf" ;;
    esac
}

variant_define() {
    case $1 in
        guest) echo "" ;;
        guest-bench) echo "-DGUEST_BENCH" ;;
        guest-read-bench) echo "-DGUEST_READ_BENCH" ;;
        guest-noplugin-bench) echo "-DGUEST_NOPLUGIN_BENCH" ;;
        guest-control) echo "-DGUEST_CONTROL" ;;
        guest-control-deaf) echo "-DGUEST_CONTROL_DEAF" ;;
    esac
}

# A stamp of everything an output depends on.
stamp_of() {     # ARCH VARIANT
    { cat "$HERE/guest.c" "$HERE/contract.h" "$HERE/start-$1.S" "$HERE/$1.ld" "${BASH_SOURCE[0]}"
      echo "$1 $2 BENCH_N=$BENCH_N"; } | sha256sum | cut -d' ' -f1
}

build_one() {    # ARCH VARIANT
    local arch=$1 variant=$2 out=$BUILD_DIR/$1 flags def stamp
    flags=$(arch_flags "$arch")
    def=$(variant_define "$variant")
    stamp=$(stamp_of "$arch" "$variant")
    mkdir -p "$out"
    if [[ -f $out/$variant.elf && -f $out/$variant.stamp && $(cat "$out/$variant.stamp") == "$stamp" ]]; then
        return 0
    fi
    # shellcheck disable=SC2086
    "$CLANG" $flags "${COMMON[@]}" $def -DBENCH_N="${BENCH_N}u" -c "$HERE/guest.c" -o "$out/$variant.o"
    # shellcheck disable=SC2086
    "$CLANG" $flags -c "$HERE/start-$arch.S" -o "$out/start-$variant.o"
    if [[ $arch == x86_64 ]]; then
        # QEMU's multiboot loader takes only ELF32: link as ELF64, then
        # rewrite the container (the code is unchanged; the entry is 32-bit).
        "$LLD" -T "$HERE/$arch.ld" -nostdlib -static --no-dynamic-linker -z norelro \
            -o "$out/$variant.elf64" "$out/start-$variant.o" "$out/$variant.o"
        "$OBJCOPY" -I elf64-x86-64 -O elf32-i386 "$out/$variant.elf64" "$out/$variant.elf"
    else
        "$LLD" -T "$HERE/$arch.ld" -nostdlib -static --no-dynamic-linker -z norelro \
            -o "$out/$variant.elf" "$out/start-$variant.o" "$out/$variant.o"
    fi
    echo "$stamp" > "$out/$variant.stamp"
    echo "built ${out#"$HERE"/}/$variant.elf"
}

for arch in i386 x86_64 riscv64 aarch64 arm; do
    for v in $(variants "$arch"); do
        build_one "$arch" "$v"
    done
done
