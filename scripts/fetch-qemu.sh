#!/usr/bin/env bash
# fetch-qemu.sh — put QEMU 11.1.x system emulators into the project's cache.
#
# Debian 12's own QEMU (7.2) has a plugin API too old to host the portal, so
# this fetches the qemu-system-* packages of Debian 13's backports suite
# (trixie-backports) and every library they need, and unpacks them with
# `dpkg -x` into a private tree that scripts/qemu runs from:
#
#   .cache/qemu/root/   the unpacked packages (usr/bin/qemu-system-*, ...)
#   .cache/qemu/apt/    private apt configuration, lists, cache and logs
#   .cache/qemu/debs/   the downloaded .deb files
#   .cache/qemu/stamp   what was unpacked (version, packages); written last
#
# apt's own tools do the work, but with a private configuration: a private
# sources list, no source parts, no preferences, a private (empty) dpkg status
# file and private state/cache/log directories. The machine's apt sources,
# lists, caches and installed packages are never touched, and nothing is
# installed. Index files are verified with the Debian archive keyring that is
# already on the machine: trixie's Release files are signed with both the
# bookworm and the trixie archive keys, and Debian 12's debian-archive-keyring
# has the former (and, from 2023.3+deb12u2 on, the latter too).
#
# The mirror is the one the machine's apt sources already use for Debian
# (read from /etc/apt/sources.list and /etc/apt/sources.list.d/); set
# QEMU_DEBIAN_MIRROR=http://host/debian to choose another one.
#
# A second run finds the stamp and the binaries in place and does nothing.
# Usage: scripts/fetch-qemu.sh [--force]   (--force fetches and unpacks again)
set -euo pipefail

say() { printf 'fetch-qemu: %s\n' "$*"; }
die() { printf 'fetch-qemu: error: %s\n' "$*" >&2; exit 1; }

# --- what we want ------------------------------------------------------------

SUITE=trixie
BACKPORTS=trixie-backports
VERSION_PREFIX='1:11.1.'          # the version of QEMU whose plugin API we need
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
DEFAULT_MIRROR=http://deb.debian.org/debian
STAMP_FORMAT=1

# x86: i386, x86_64; arm: arm, aarch64; riscv: riscv32, riscv64 (its own
# package since QEMU 11, no longer in -misc); ppc: ppc, ppc64; misc:
# loongarch64 and others. mips is fetched only so that the plugin's refusal of
# MIPS guests can be tested.
PACKAGES=(qemu-system-x86 qemu-system-arm qemu-system-riscv qemu-system-misc qemu-system-ppc qemu-system-mips)

REQUIRED_BINARIES=(
    qemu-system-i386 qemu-system-x86_64
    qemu-system-arm qemu-system-aarch64
    qemu-system-riscv64
    qemu-system-ppc qemu-system-ppc64
    qemu-system-mips
)
OPTIONAL_BINARIES=(qemu-system-loongarch64)

# --- where ---------------------------------------------------------------------

SCRIPT_DIR=$(cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")" && pwd -P)
# shellcheck source=lib/private-apt.sh
. "$SCRIPT_DIR/lib/private-apt.sh"
PROJECT_ROOT=$(cd "$SCRIPT_DIR/.." && pwd -P)
CACHE=$PROJECT_ROOT/.cache/qemu
ROOT=$CACHE/root
APTDIR=$CACHE/apt
DEBS=$CACHE/debs
STAMP=$CACHE/stamp
LOG=$APTDIR/log/fetch-qemu.log
LOADER=$ROOT/usr/lib64/ld-linux-x86-64.so.2
LIBPATH=$ROOT/usr/lib/x86_64-linux-gnu:$ROOT/lib/x86_64-linux-gnu

FORCE=0
for arg in "$@"; do
    case $arg in
        --force) FORCE=1 ;;
        -h|--help)
            sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
            exit 0 ;;
        *) die "unknown argument '$arg' (usage: scripts/fetch-qemu.sh [--force])" ;;
    esac
done

# --- is everything already in place? --------------------------------------------

stamp_value() { # KEY -> value of KEY=... in the stamp, empty if absent
    sed -n "s/^$1=//p" "$STAMP" 2>/dev/null | head -n 1
}

in_place() {
    [[ -f $STAMP ]] || return 1
    [[ $(stamp_value format) == "$STAMP_FORMAT" ]] || return 1
    [[ $(stamp_value packages) == "${PACKAGES[*]}" ]] || return 1
    [[ $(stamp_value version) == "$VERSION_PREFIX"* ]] || return 1
    [[ -x $LOADER ]] || return 1
    [[ -d $ROOT/usr/share/qemu && -d $ROOT/usr/share/seabios ]] || return 1
    local b
    for b in "${REQUIRED_BINARIES[@]}"; do
        [[ -x $ROOT/usr/bin/$b ]] || return 1
    done
}

mkdir -p "$CACHE"

# One fetch at a time (parallel CI jobs, or a test that fetches on demand).
if command -v flock >/dev/null 2>&1; then
    exec 9>"$CACHE/.lock"
    flock -w 900 9 || die "another fetch-qemu.sh holds $CACHE/.lock"
fi

if [[ $FORCE == 0 ]] && in_place; then
    say "QEMU $(stamp_value version) already in .cache/qemu; nothing to do"
    exit 0
fi

# --- preconditions -----------------------------------------------------------------

private_apt_check_tools
HOST_ARCH=$(dpkg --print-architecture)
[[ $HOST_ARCH == amd64 ]] || die "host architecture is '$HOST_ARCH'; only amd64 hosts are supported"
[[ -r $KEYRING ]] || die "Debian archive keyring $KEYRING not found (install debian-archive-keyring)"

START=$SECONDS

# --- which mirror ---------------------------------------------------------------------

# Print "URI SUITE" for every enabled binary ("deb") source apt knows about, from
# both the one-line format (*.list) and the deb822 format (*.sources).
list_sources() {
    local f
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
        [[ -r $f ]] || continue
        awk '
            { sub(/#.*/, "") }
            $1 == "deb" {
                i = 2
                if ($i ~ /^\[/) { while (i <= NF && $i !~ /\]$/) i++; i++ }
                if (i + 1 <= NF) print $i, $(i + 1)
            }' "$f"
    done
    for f in /etc/apt/sources.list.d/*.sources; do
        [[ -r $f ]] || continue
        awk '
            function flush(   nt, nu, ns, t, u, s, v, isdeb, T, U, S) {
                v = tolower(F["enabled"]); gsub(/[ \t]/, "", v)
                if (v != "no") {
                    nt = split(F["types"], T); isdeb = 0
                    for (t = 1; t <= nt; t++) if (T[t] == "deb") isdeb = 1
                    if (isdeb) {
                        nu = split(F["uris"], U); ns = split(F["suites"], S)
                        for (u = 1; u <= nu; u++) for (s = 1; s <= ns; s++) print U[u], S[s]
                    }
                }
                delete F; key = ""
            }
            /^#/ { next }
            /^[ \t]*$/ { flush(); next }
            /^[ \t]/ { if (key != "") F[key] = F[key] " " $0; next }
            {
                key = tolower(substr($0, 1, index($0, ":") - 1))
                F[key] = substr($0, index($0, ":") + 1)
            }
            END { flush() }' "$f"
    done
}

detect_mirror() {
    local codename="" uri suite
    if [[ -r /etc/os-release ]]; then
        codename=$(. /etc/os-release && printf '%s' "${VERSION_CODENAME:-}")
    fi
    local sources
    sources=$(list_sources 2>/dev/null || true)
    # 1. the URI serving this release's own suite (e.g. bookworm) or its -updates
    if [[ -n $codename ]]; then
        while read -r uri suite; do
            [[ $uri == http://* || $uri == https://* ]] || continue
            if [[ $suite == "$codename" || $suite == "$codename-updates" ]]; then
                printf '%s\n' "${uri%/}"; return
            fi
        done <<<"$sources"
    fi
    # 2. any URI that looks like a Debian archive root
    while read -r uri suite; do
        [[ $uri == http://* || $uri == https://* ]] || continue
        if [[ ${uri%/} == */debian ]]; then
            printf '%s\n' "${uri%/}"; return
        fi
    done <<<"$sources"
    # 3. Debian's own redirector
    printf '%s\n' "$DEFAULT_MIRROR"
}

if [[ -n ${QEMU_DEBIAN_MIRROR:-} ]]; then
    MIRROR=${QEMU_DEBIAN_MIRROR%/}
    say "mirror $MIRROR (from QEMU_DEBIAN_MIRROR)"
else
    MIRROR=$(detect_mirror)
    say "mirror $MIRROR (from the machine's apt sources)"
fi

# --- private apt configuration --------------------------------------------------------

private_apt_setup scripts/fetch-qemu.sh "$HOST_ARCH" "$HOST_ARCH" "$MIRROR $SUITE" "$MIRROR $BACKPORTS"

# Run a command with its output in the log; on failure show the log's tail.
logged() {
    local what=$1; shift
    printf '\n$ %s\n' "$*" >> "$LOG"
    if ! "$@" >> "$LOG" 2>&1 </dev/null; then
        printf 'fetch-qemu: error: %s failed; last lines of %s:\n' "$what" "$LOG" >&2
        tail -n 25 "$LOG" | sed 's/^/    /' >&2
        return 1
    fi
}

# --- update the private lists -------------------------------------------------------

say "updating private package lists ($SUITE, $BACKPORTS)"
if ! logged "apt-get update" apt-get "${APT_OPTS[@]}" --error-on=any update; then
    if grep -qE 'NO_PUBKEY|EXPKEYSIG|KEYEXPIRED|BADSIG|GPG error' "$LOG"; then
        die "the $SUITE index files could not be verified with $KEYRING; they are signed with Debian's bookworm and trixie archive keys, which Debian 12's debian-archive-keyring has (the trixie ones from 2023.3+deb12u2 on): is that package installed and current?"
    fi
    die "could not read the package lists from $MIRROR (network? set QEMU_DEBIAN_MIRROR to another Debian mirror)"
fi

# --- which version --------------------------------------------------------------------

# The candidate when trixie-backports is the preferred release, which must
# really come from trixie-backports and be a QEMU 11.1.
VERSION=$(apt-cache "${APT_OPTS[@]}" -t "$BACKPORTS" policy qemu-system-x86 </dev/null \
            | sed -n 's/^  Candidate: //p')
[[ -n $VERSION && $VERSION != '(none)' ]] || die "qemu-system-x86 not found in $SUITE/$BACKPORTS at $MIRROR"
if ! apt-cache "${APT_OPTS[@]}" madison qemu-system-x86 </dev/null \
        | awk -F' *[|] *' -v v="$VERSION" -v s=" $BACKPORTS/" '$2 == v && index($3, s)' | grep -q .; then
    die "candidate qemu-system-x86 $VERSION does not come from $BACKPORTS"
fi
[[ $VERSION == "$VERSION_PREFIX"* ]] \
    || die "$BACKPORTS offers qemu-system-x86 $VERSION, not ${VERSION_PREFIX}x (is $MIRROR an old snapshot? set QEMU_DEBIAN_MIRROR)"
say "QEMU version $VERSION from $BACKPORTS"

for p in "${PACKAGES[@]}"; do
    apt-cache "${APT_OPTS[@]}" madison "$p" </dev/null \
        | awk -F' *[|] *' -v v="$VERSION" '$2 == v' | grep -q . \
        || die "$p $VERSION is not in $BACKPORTS"
done

# --- resolve dependencies ----------------------------------------------------------------

# apt's resolver, simulating an install onto an empty system: every library is
# needed, since QEMU runs with its own loader and libc. The qemu-system-*
# packages are pinned to $VERSION; the rest come from trixie-backports where it
# has them (e.g. the seabios QEMU 11.1 needs), otherwise from trixie.
say "resolving dependencies of ${PACKAGES[*]}"
PINNED=()
for p in "${PACKAGES[@]}"; do PINNED+=("$p=$VERSION"); done
logged "dependency resolution" \
    apt-get "${APT_OPTS[@]}" -t "$BACKPORTS" --simulate --no-install-recommends \
        -o APT::Install-Suggests=false install "${PINNED[@]}" \
    || die "apt could not resolve the dependencies of ${PACKAGES[*]} $VERSION"
WANT=()
mapfile -t WANT < <(sed -n -E 's/^Inst ([^ ]+) \(([^ ]+) .*/\1=\2/p' "$LOG" | sort -u)
(( ${#WANT[@]} > 0 )) || die "apt resolved no packages (see $LOG)"
for w in "${WANT[@]}"; do
    if [[ $w == qemu-system-* && ${w#*=} != "$VERSION" ]]; then
        die "resolver chose $w, not version $VERSION"
    fi
done
for p in "${PACKAGES[@]}"; do
    printf '%s\n' "${WANT[@]}" | grep -qxF "$p=$VERSION" || die "resolver left out $p=$VERSION"
done
say "${#WANT[@]} packages to fetch"

# --- download ---------------------------------------------------------------------------------

say "downloading into .cache/qemu/debs"
rm -f "$DEBS"/*.deb
rm -rf "$DEBS/partial"
(cd "$DEBS" && logged "download" apt-get "${APT_OPTS[@]}" download "${WANT[@]}") \
    || die "download failed"
rm -rf "$DEBS/partial"

# Check that the .debs are exactly the resolved set.
GOT=$(for d in "$DEBS"/*.deb; do
          [[ -e $d ]] || continue
          dpkg-deb -f "$d" Package Version | awk '/^Package:/ {p = $2} /^Version:/ {v = $2} END {print p "=" v}'
      done | sort -u)
if [[ $GOT != "$(printf '%s\n' "${WANT[@]}")" ]]; then
    diff <(printf '%s\n' "${WANT[@]}") <(printf '%s\n' "$GOT") | sed 's/^/    /' >&2 || true
    die "downloaded packages differ from the resolved set (< wanted, > got)"
fi

# --- unpack -----------------------------------------------------------------------------------

say "unpacking ${#WANT[@]} packages into .cache/qemu/root"
rm -f "$STAMP"
private_apt_unpack "$ROOT" dpkg -x

# --- check ------------------------------------------------------------------------------------

[[ -x $LOADER ]] || die "the unpacked tree has no loader at ${LOADER#"$PROJECT_ROOT"/}"
for dir in usr/share/qemu usr/share/seabios; do
    [[ -d $ROOT/$dir ]] || die "the unpacked tree has no $dir"
done
AVAILABLE=()
for b in "${REQUIRED_BINARIES[@]}" "${OPTIONAL_BINARIES[@]}"; do
    if [[ ! -x $ROOT/usr/bin/$b ]]; then
        for r in "${REQUIRED_BINARIES[@]}"; do
            [[ $r != "$b" ]] || die "the unpacked tree has no usr/bin/$b"
        done
        say "note: $b is not in this QEMU"
        continue
    fi
    out=$("$LOADER" --library-path "$LIBPATH" "$ROOT/usr/bin/$b" --version </dev/null 2>&1) \
        || die "$b does not run from the cache: $out"
    [[ $out == *"QEMU emulator version ${VERSION_PREFIX#*:}"* ]] \
        || die "$b reports an unexpected version: ${out%%$'\n'*}"
    AVAILABLE+=("$b")
done

# --- stamp ------------------------------------------------------------------------------------

{
    printf '# written by scripts/fetch-qemu.sh; delete it (or use --force) to fetch again\n'
    printf 'format=%s\n' "$STAMP_FORMAT"
    printf 'version=%s\n' "$VERSION"
    printf 'packages=%s\n' "${PACKAGES[*]}"
    printf 'mirror=%s\n' "$MIRROR"
    printf 'binaries=%s\n' "${AVAILABLE[*]}"
    printf 'fetched=%s\n' "$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    printf 'deb=%s\n' "${WANT[@]}"
} > "$STAMP.new"
mv "$STAMP.new" "$STAMP"

private_apt_drop_caches

SIZE=$(du -sh "$CACHE" 2>/dev/null | cut -f1)
say "done in $((SECONDS - START)) s: QEMU $VERSION (${#WANT[@]} packages, cache $SIZE)"
say "binaries: ${AVAILABLE[*]}"
