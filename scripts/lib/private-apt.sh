# private-apt.sh — apt's own tools with a private configuration, for
# scripts/fetch-qemu.sh and scripts/fetch-linux.sh (sourced, not run).
#
# A private sources list, no source parts, no preferences, a private (empty)
# dpkg status file and private state/cache/log directories: the machine's apt
# sources, lists, caches and installed packages are never touched, and nothing
# is installed. The caller defines die() and sets KEYRING, APTDIR (the private
# directory), DEBS (where .debs are downloaded) and LOG (apt's log) first.

# The tools the fetch scripts need.
private_apt_check_tools() {
    local tool
    for tool in apt-get apt-cache dpkg dpkg-deb; do
        command -v "$tool" >/dev/null 2>&1 || die "'$tool' not found (this script needs Debian's apt and dpkg)"
    done
}

# private_apt_setup WRITER ARCH ARCHITECTURES 'URI SUITE'...
# Writes $APTDIR's sources.list (one "deb URI SUITE main" line, verified with
# $KEYRING, per argument) and apt.conf (ARCH and the space-separated
# ARCHITECTURES only), empties the status file and $LOG, and sets APT_OPTS to
# the options that make apt-get and apt-cache use them. WRITER names the
# script in the files' first line.
private_apt_setup() {
    local writer=$1 arch=$2 archs=$3; shift 3
    mkdir -p "$APTDIR"/{lists/partial,state,cache/archives/partial,log} "$DEBS"
    : > "$APTDIR/status"        # empty dpkg status: nothing counts as installed
    : > "$LOG"

    local sources=$APTDIR/sources.list apt_conf=$APTDIR/apt.conf source a
    {
        printf "# written by %s; used only with this directory's apt settings\n" "$writer"
        for source in "$@"; do
            printf 'deb [signed-by=%s targets=Packages] %s main\n' "$KEYRING" "$source"
        done
    } > "$sources"

    # Lists can only be emptied in a configuration file (#clear), not with -o.
    {
        printf '// written by %s\n' "$writer"
        printf '%s\n' \
            "// The machine's update hooks (PackageKit, AppStream) have nothing to do with these lists." \
            '#clear APT::Update::Pre-Invoke;' \
            '#clear APT::Update::Post-Invoke;' \
            '#clear APT::Update::Post-Invoke-Success;' \
            "// Only these architectures, whatever foreign architectures dpkg knows."
        printf 'APT::Architecture "%s";\n' "$arch"
        printf '#clear APT::Architectures;\n'
        printf 'APT::Architectures {'
        for a in $archs; do printf ' "%s";' "$a"; done
        printf ' };\n'
    } > "$apt_conf"

    APT_OPTS=(
        -c "$apt_conf"
        -o "Dir::Etc::sourcelist=$sources"
        -o "Dir::Etc::sourceparts=/dev/null"
        -o "Dir::Etc::preferences=/dev/null"
        -o "Dir::Etc::preferencesparts=/dev/null"
        -o "Dir::State=$APTDIR/state"
        -o "Dir::State::Lists=$APTDIR/lists"
        -o "Dir::State::status=$APTDIR/status"
        -o "Dir::Cache=$APTDIR/cache"
        -o "Dir::Cache::pkgcache=$APTDIR/cache/pkgcache.bin"
        -o "Dir::Cache::srcpkgcache="
        -o "Dir::Cache::archives=$APTDIR/cache/archives"
        -o "Dir::Log=$APTDIR/log"
        -o "Acquire::Languages=none"
        -o "Acquire::Retries=3"
    )
    # As root, apt drops to the _apt user to download, and _apt may not be able
    # to reach a project folder (e.g. under /root). The downloads are still
    # checked against the signed index files.
    if [[ $(id -u) == 0 ]]; then
        APT_OPTS+=(-o "APT::Sandbox::User=root")
    fi
}

# private_apt_unpack ROOT UNPACKER...
# Unpacks every .deb in $DEBS with UNPACKER (e.g. dpkg -x) into ROOT.new, then
# puts that in ROOT's place.
private_apt_unpack() {
    local root=$1; shift
    local new=$root.new d
    rm -rf "$new"
    mkdir -p "$new"
    for d in "$DEBS"/*.deb; do
        "$@" "$d" "$new" || die "$* $d failed"
    done
    rm -rf "$root"
    mv "$new" "$root"
}

# Apt's binary caches (~45 MB) are rebuilt from the lists whenever needed.
private_apt_drop_caches() {
    rm -f "$APTDIR"/cache/*.bin
}
