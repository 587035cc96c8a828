#!/usr/bin/env bash
# build-floor.sh - build bench/floor-plugin.c into bench/build/libfloor.so
# (idempotent: rebuilds only when the source, the API header, the contract or
# this script changed). CC defaults to gcc.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)
ROOT=$(cd "$HERE/.." && pwd -P)
OUT=$HERE/build/libfloor.so
CC=${CC:-gcc}
DEPS=("$HERE/floor-plugin.c" "$ROOT/include/portal/qemu-plugin-api.h" "$ROOT/Tests/guests/contract.h" "${BASH_SOURCE[0]}")
up_to_date() {
    [[ -f $OUT ]] || return 1
    local d
    for d in "${DEPS[@]}"; do [[ $d -nt $OUT ]] && return 1; done
    return 0
}
up_to_date && exit 0
mkdir -p "$HERE/build"
# No -lglib: the GLib functions resolve to the copy QEMU already has loaded.
# shellcheck disable=SC2046
"$CC" -O2 -g -Wall -Wextra -Werror -std=gnu11 -shared -fPIC -fvisibility=hidden \
    -I"$ROOT/include" $(pkg-config --cflags glib-2.0) \
    "$HERE/floor-plugin.c" -o "$OUT"
echo "built bench/build/libfloor.so"
