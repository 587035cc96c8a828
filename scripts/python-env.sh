#!/usr/bin/env bash
# python-env.sh - the Python clients the control socket is tested with, in a
# private virtual environment (git-ignored), installed from PyPI once.
#
#   scripts/python-env.sh        prints the environment's python path
#
# qemu.qmp (PyPI qemu.qmp): QEMU's own QMP client library and its qmp-shell;
# mcp (PyPI mcp): the reference MCP client, for portalctl mcp.
# Pinned so a test run means the same thing tomorrow. Idempotent: with the
# stamp in place it touches nothing.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
VENV=$ROOT/.cache/control-python
PACKAGES=("qemu.qmp==0.0.6" "mcp==1.23.3")
STAMP="${PACKAGES[*]}"

if [[ -x $VENV/bin/python && -f $VENV/stamp && $(cat "$VENV/stamp") == "$STAMP" ]]; then
    echo "$VENV/bin/python"
    exit 0
fi
echo "python-env: installing ${PACKAGES[*]} into $VENV" >&2
rm -rf "$VENV"
python3 -m venv "$VENV" >&2
"$VENV/bin/pip" install --quiet --disable-pip-version-check "${PACKAGES[@]}" >&2
echo "$STAMP" > "$VENV/stamp"
echo "$VENV/bin/python"
