#!/usr/bin/env bash
# setup.sh - install the Debian packages the build needs, if any is missing.
#
# libglib2.0-dev: GLib, whose buffers QEMU's plugin API takes.
# libcapstone-dev: Capstone 4, which confirms hypercall instructions.
# pkg-config: how SwiftPM finds GLib.
# Idempotent: with everything installed it prints one line and touches nothing.
set -euo pipefail

PACKAGES=(libglib2.0-dev libcapstone-dev pkg-config)
missing=()
for package in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if (( ${#missing[@]} == 0 )); then
    echo "setup: ${PACKAGES[*]} already installed"
    exit 0
fi
SUDO=()
(( EUID == 0 )) || SUDO=(sudo)
echo "setup: installing ${missing[*]}"
"${SUDO[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
echo "setup: done"
