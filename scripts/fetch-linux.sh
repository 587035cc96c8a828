#!/usr/bin/env bash
# fetch-linux.sh — fetch a Debian Linux guest and build the portal module and
# an initramfs for it, into the project's cache (.cache/linux/).
#
#   .cache/linux/apt/       private apt configuration, lists, cache and logs
#   .cache/linux/debs/      the downloaded .deb files
#   .cache/linux/root/      the packages unpacked with dpkg-deb -x (kernel
#                           image, headers, -common, linux-kbuild, busybox)
#   .cache/linux/vmlinuz    the kernel image (a copy of root/boot/vmlinuz-*)
#   .cache/linux/stamp      kernel release and packages; written last
#   .cache/linux/module/    portal.ko, built from Tests/guests/linux/
#   .cache/linux/portal-mapper    a static user program of the guest (mapper.c)
#   .cache/linux/initramfs.cpio   /init, busybox, portal.ko, portal-mapper (newc)
#
# Debian bookworm's kernel (linux-image-amd64 or linux-image-arm64 names the
# current ABI), its headers, their -common half, the matching linux-kbuild
# (always the amd64 one: its host tools run here, and they build modules for
# either architecture) and busybox-static, from the mirror the machine's apt
# sources name for bookworm (LINUX_DEBIAN_MIRROR=http://host/debian for
# another one), with apt's own tools and a private configuration: the
# machine's apt state is not touched and these packages are only unpacked,
# never installed. The headers' Makefile names /usr/src/... by
# absolute path; those paths are pointed at the private tree after unpacking.
#
# The module is built with gcc-12 (the compiler bookworm's kernel was built
# with), the mapper and the initramfs rebuilt, whenever their sources are
# newer or differ from the ones they were built from (TARGET.sources.sha256;
# for the initramfs: Tests/guests/linux/initramfs/, the module, the mapper). The
# cpio archive is written by Tests/guests/linux/mkcpio.py (no root needed:
# owners and device nodes are set in the archive, not on disk).
#
# A second run with nothing changed does nothing.
# LINUX_ARCH=arm64 fetches and builds the arm64 guest into .cache/linux-arm64/
# instead (same layout), with the cross compilers of gcc-aarch64-linux-gnu
# and libc6-dev-arm64-cross, which it installs with apt-get if they are
# missing.
#
# Usage: scripts/fetch-linux.sh [--force]   (--force downloads and unpacks again)
set -euo pipefail

say() { printf 'fetch-linux: %s\n' "$*"; }
die() { printf 'fetch-linux: error: %s\n' "$*" >&2; exit 1; }

SUITE=bookworm
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
DEFAULT_MIRROR=http://deb.debian.org/debian
DEFAULT_SECURITY=http://deb.debian.org/debian-security
STAMP_FORMAT=1

ARCH=${LINUX_ARCH:-amd64}
case $ARCH in
    amd64)
        CACHE_NAME=linux
        MODULE_MAKE=(CC=gcc-12)
        MODULE_CC=gcc-12
        MAPPER_CC=gcc ;;
    arm64)
        CACHE_NAME=linux-arm64
        MODULE_MAKE=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu- CC=aarch64-linux-gnu-gcc-12)
        MODULE_CC=aarch64-linux-gnu-gcc-12
        MAPPER_CC=aarch64-linux-gnu-gcc ;;
    *) die "LINUX_ARCH=$ARCH: expected amd64 or arm64" ;;
esac

SCRIPT_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd -P)
# shellcheck source=lib/private-apt.sh
. "$SCRIPT_DIR/lib/private-apt.sh"
PROJECT_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
GUEST_SRC=$PROJECT_ROOT/Tests/guests/linux
# The real path: the headers' Makefile is rewritten to name it, and .cache may
# be a symlink shared by several checkouts.
mkdir -p "$PROJECT_ROOT/.cache"
CACHE=$(cd "$PROJECT_ROOT/.cache" && pwd -P)/$CACHE_NAME
ROOT=$CACHE/root
APTDIR=$CACHE/apt
DEBS=$CACHE/debs
STAMP=$CACHE/stamp
LOG=$APTDIR/log/fetch-linux.log
MODULE_DIR=$CACHE/module
INITRAMFS=$CACHE/initramfs.cpio

FORCE=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        -h|--help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0 ;;
        *) die "unknown argument '$arg' (usage: scripts/fetch-linux.sh [--force])" ;;
    esac
done

stamp_value() { sed -n "s/^$1=//p" "$STAMP" 2>/dev/null | head -n 1; }

fetched() {
    [[ -f $STAMP && $(stamp_value format) == "$STAMP_FORMAT" ]] || return 1
    local release
    release=$(stamp_value release)
    [[ -n $release && -f $CACHE/vmlinuz && -f $ROOT/bin/busybox ]] || return 1
    [[ -f $ROOT/usr/src/linux-headers-$release/Makefile ]]
}

mkdir -p "$CACHE"
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock -w 900 9 || die "another fetch-linux.sh holds $CACHE/.lock"
fi

# --- download and unpack ------------------------------------------------------

fetch() {
    private_apt_check_tools
    [[ $(dpkg --print-architecture) == amd64 ]] || die "only amd64 hosts are supported"
    [[ -r $KEYRING ]] || die "Debian archive keyring $KEYRING not found (install debian-archive-keyring)"

    local mirror=${LINUX_DEBIAN_MIRROR:-} security=${LINUX_DEBIAN_SECURITY_MIRROR:-}
    if [[ -z $mirror ]]; then
        mirror=$(grep -rhoE 'https?://[^ ]+/debian/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
                 | head -n 1 | tr -d ' ' || true)
        mirror=${mirror:-$DEFAULT_MIRROR}
    fi
    if [[ -z $security ]]; then
        security=$(grep -rhoE 'https?://[^ ]+/debian-security/?( |$)' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null \
                   | head -n 1 | tr -d ' ' || true)
        security=${security:-$DEFAULT_SECURITY}
    fi
    mirror=${mirror%/}; security=${security%/}
    say "mirrors $mirror, $security"

    private_apt_setup scripts/fetch-linux.sh amd64 "amd64 $ARCH" \
        "$mirror $SUITE" "$mirror $SUITE-updates" "$security $SUITE-security"

    say "updating private package lists ($SUITE, $SUITE-updates, $SUITE-security)"
    if ! apt-get "${APT_OPTS[@]}" --error-on=any update >>"$LOG" 2>&1 </dev/null; then
        tail -n 20 "$LOG" >&2
        die "could not read the package lists (network? set LINUX_DEBIAN_MIRROR)"
    fi

    # linux-image-ARCH depends on the current ABI's image package.
    local image
    image=$(apt-cache "${APT_OPTS[@]}" depends "linux-image-$ARCH:$ARCH" </dev/null \
            | sed -n "s/^ *Depends: \(linux-image-[0-9][^ :]*-$ARCH\)\(:$ARCH\)\{0,1\}\$/\1/p" | head -n 1)
    [[ -n $image ]] || die "linux-image-$ARCH names no kernel image package in $SUITE"
    local release=${image#linux-image-}
    local abi=${release%-"$ARCH"}
    local version
    version=$(apt-cache "${APT_OPTS[@]}" policy "$image:$ARCH" </dev/null | sed -n 's/^  Candidate: //p')
    local kbuild_series=${abi%%-*}                 # 6.1.0-NN -> 6.1.0 -> 6.1
    kbuild_series=${kbuild_series%.*}
    local packages=("$image:$ARCH" "linux-headers-$release:$ARCH" "linux-headers-$abi-common"
                    "linux-kbuild-$kbuild_series:amd64" "busybox-static:$ARCH")
    say "kernel $release ($version); downloading ${packages[*]}"
    rm -rf "$DEBS"; mkdir -p "$DEBS"
    (cd "$DEBS" && apt-get "${APT_OPTS[@]}" download "${packages[@]}" >>"$LOG" 2>&1 </dev/null) \
        || { tail -n 20 "$LOG" >&2; die "download failed"; }

    say "unpacking into .cache/$CACHE_NAME/root"
    rm -f "$STAMP"
    private_apt_unpack "$ROOT" dpkg-deb -x

    # The headers name /usr/src/linux-headers-*-common and /usr/lib/linux-kbuild-*
    # by absolute path (their Makefile, and symlinks to the kbuild scripts).
    local headers=$ROOT/usr/src/linux-headers-$release
    [[ -f $headers/Makefile ]] || die "no $headers/Makefile after unpacking"
    grep -rlE '/usr/(src|lib)/linux-' "$headers" --include=Makefile 2>/dev/null | while read -r f; do
        sed -i -e "s#\([ =]\)/usr/src/linux-#\1$ROOT/usr/src/linux-#g" \
               -e "s#\([ =]\)/usr/lib/linux-kbuild#\1$ROOT/usr/lib/linux-kbuild#g" "$f"
    done
    local link target
    while read -r link; do
        target=$(readlink "$link")
        [[ $target == /usr/* ]] && ln -sfn "$ROOT$target" "$link"
    done < <(find "$ROOT/usr/src" "$ROOT/usr/lib" -maxdepth 3 -type l)
    [[ -f $ROOT/boot/vmlinuz-$release ]] || die "no boot/vmlinuz-$release in the image package"
    cp "$ROOT/boot/vmlinuz-$release" "$CACHE/vmlinuz"
    # Only the image is needed from the kernel package, not its 300 MB of modules.
    rm -rf "$ROOT/lib/modules/$release/kernel"
    [[ -x $ROOT/bin/busybox ]] || die "busybox-static did not unpack bin/busybox"
    private_apt_drop_caches

    {
        printf '# written by scripts/fetch-linux.sh; delete it (or use --force) to fetch again\n'
        printf 'format=%s\n' "$STAMP_FORMAT"
        printf 'release=%s\n' "$release"
        printf 'version=%s\n' "$version"
        printf 'packages=%s\n' "${packages[*]}"
        printf 'mirror=%s\n' "$mirror"
        printf 'fetched=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } > "$STAMP.new"
    mv "$STAMP.new" "$STAMP"
}

START=$SECONDS
if [[ $FORCE == 1 ]] || ! fetched; then
    fetch
    say "fetched in $((SECONDS - START)) s"
fi
RELEASE=$(stamp_value release)
HEADERS=$ROOT/usr/src/linux-headers-$RELEASE

# --- the module ------------------------------------------------------------------

# TARGET FILES... -> true if TARGET is missing, older than any FILE, or was
# built from other contents of FILES (the digest built_from recorded):
# .cache may be shared by checkouts whose sources differ, and one with older
# files must not take what another's newer ones built.
stale() {
    local target=$1; shift
    [[ -e $target && $(cat "$target.sources.sha256" 2>/dev/null) == "$(sources_digest "$@")" ]] || return 0
    local f
    for f in "$@"; do [[ $f -nt $target ]] && return 0; done
    return 1
}
sources_digest() { cat "$@" | sha256sum | cut -d' ' -f1; }
built_from() { # TARGET FILES... -> records the digest stale compares
    local target=$1; shift
    sources_digest "$@" >"$target.sources.sha256"
}

# The arm64 cross compilers, as scripts/setup.sh installs packages.
if [[ $ARCH == arm64 ]] && ! { command -v "$MODULE_CC" && command -v "$MAPPER_CC" \
        && [[ -f /usr/aarch64-linux-gnu/lib/libc.a ]]; } >/dev/null 2>&1; then
    say "installing gcc-aarch64-linux-gnu libc6-dev-arm64-cross"
    SUDO=()
    (( EUID == 0 )) || SUDO=(sudo)
    "${SUDO[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
        gcc-aarch64-linux-gnu libc6-dev-arm64-cross >/dev/null || die "could not install the arm64 cross compilers"
fi

MODULE_SOURCES=("$GUEST_SRC/portal.c" "$GUEST_SRC/Kbuild" "$STAMP")
if stale "$MODULE_DIR/portal.ko" "${MODULE_SOURCES[@]}"; then
    command -v "$MODULE_CC" >/dev/null 2>&1 || die "$MODULE_CC not found: bookworm's kernel was built with gcc-12"
    say "building portal.ko against $RELEASE"
    rm -rf "$MODULE_DIR"; mkdir -p "$MODULE_DIR"
    cp "$GUEST_SRC/portal.c" "$GUEST_SRC/Kbuild" "$MODULE_DIR/"
    if ! make -C "$HEADERS" M="$MODULE_DIR" "${MODULE_MAKE[@]}" modules >"$MODULE_DIR/build.log" 2>&1; then
        grep -E 'error|warning' "$MODULE_DIR/build.log" | head -n 30 >&2 || tail -n 30 "$MODULE_DIR/build.log" >&2
        rm -f "$MODULE_DIR/portal.ko"
        die "the module did not build (full log: .cache/$CACHE_NAME/module/build.log)"
    fi
    if grep -q 'warning:' "$MODULE_DIR/build.log"; then
        grep 'warning:' "$MODULE_DIR/build.log" >&2
        rm -f "$MODULE_DIR/portal.ko"
        die "the module built with warnings"
    fi
    built_from "$MODULE_DIR/portal.ko" "${MODULE_SOURCES[@]}"
fi

# --- the mapper (a static user program of the guest) -------------------------------

MAPPER=$CACHE/portal-mapper
if stale "$MAPPER" "$GUEST_SRC/mapper.c"; then
    say "building portal-mapper"
    "$MAPPER_CC" -static -O2 -Wall -Wextra -Werror -o "$MAPPER.new" "$GUEST_SRC/mapper.c" \
        || die "portal-mapper did not build (is libc6-dev installed?)"
    mv "$MAPPER.new" "$MAPPER"
    built_from "$MAPPER" "$GUEST_SRC/mapper.c"
fi

# --- the initramfs ----------------------------------------------------------------

INITRAMFS_INPUTS=("$MODULE_DIR/portal.ko" "$ROOT/bin/busybox" "$GUEST_SRC/mkcpio.py" "$MAPPER")
while IFS= read -r -d '' f; do INITRAMFS_INPUTS+=("$f"); done \
    < <(find "$GUEST_SRC/initramfs" -type f -print0)
if stale "$INITRAMFS" "${INITRAMFS_INPUTS[@]}"; then
    say "writing the initramfs"
    python3 "$GUEST_SRC/mkcpio.py" --busybox "$ROOT/bin/busybox" --module "$MODULE_DIR/portal.ko" \
        --mapper "$MAPPER" --tree "$GUEST_SRC/initramfs" --output "$INITRAMFS.new" || die "mkcpio.py failed"
    mv "$INITRAMFS.new" "$INITRAMFS"
    built_from "$INITRAMFS" "${INITRAMFS_INPUTS[@]}"
fi

say "kernel $RELEASE, .cache/$CACHE_NAME/vmlinuz, .cache/$CACHE_NAME/initramfs.cpio ready ($((SECONDS - START)) s)"
