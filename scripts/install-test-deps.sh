#!/usr/bin/env bash
# Installs what the end-to-end tests (tests/e2e/) need on a Debian 12 machine, as root:
#   - Debian packages: sip-tester (sipp), espeak-ng, sox, lame and vorbis-tools (oggenc: the
#     MP3 and OGG prompts of the media cases), iproute2, util-linux (unshare), python3-venv,
#     graphviz (renders `voxflow flow graph` output to SVG in a flow-crate test), postgresql
#     (throwaway servers for the store conformance tests and the e2e platform walk; no
#     cluster is left running);
#   - a Python venv at <repo>/.venv with pjsua2 (the SIP caller) and pocketsphinx (what the
#     caller heard).
# Idempotent: a machine that already has everything is left alone and nothing is printed.
# Quiet on success, loud on failure (the failing command's output is shown).
set -euo pipefail

PJSUA2_VERSION="2.15.1.post1"
POCKETSPHINX_VERSION="5.1.1"
WEBSOCKETS_VERSION="15.0.1"

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
venv="$repo/.venv"
log="$(mktemp -t voxflow-test-deps.XXXXXX)"
trap 'rm -f "$log"' EXIT

fail() {
    echo "install-test-deps: $*" >&2
    if [ -s "$log" ]; then
        echo "---- output ----" >&2
        tail -n 60 "$log" >&2
    fi
    exit 1
}

# run CMD...: runs quietly, shows the output only when it fails.
run() {
    : >"$log"
    if ! "$@" >>"$log" 2>&1; then
        fail "failed: $*"
    fi
}

# --- Debian packages -------------------------------------------------------------------------
# package name -> a file that proves it is installed (cheaper and stricter than dpkg -s alone).
declare -A probe=(
    [sip-tester]=/usr/bin/sipp
    [espeak-ng]=/usr/bin/espeak-ng
    [sox]=/usr/bin/sox
    [lame]=/usr/bin/lame
    [vorbis-tools]=/usr/bin/oggenc
    [iproute2]=/usr/sbin/ip
    [util-linux]=/usr/bin/unshare
    [python3-venv]=
    [graphviz]=/usr/bin/dot
    [postgresql]=/usr/bin/psql
)
missing=()
for pkg in "${!probe[@]}"; do
    file="${probe[$pkg]}"
    if [ -n "$file" ] && [ ! -e "$file" ]; then
        missing+=("$pkg")
    elif ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed'; then
        missing+=("$pkg")
    fi
done
if [ "${#missing[@]}" -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        fail "missing Debian packages (${missing[*]}) and not root: run as root"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt_opts=(-o DPkg::Lock::Timeout=300 -o Dpkg::Use-Pty=0 -q)
    run apt-get "${apt_opts[@]}" update
    run apt-get "${apt_opts[@]}" install -y --no-install-recommends "${missing[@]}"
fi

# --- Python venv -------------------------------------------------------------------------------
py="$(command -v python3 || true)"
[ -n "$py" ] || fail "python3 not found on PATH"
pyver="$("$py" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$pyver" = "3.11" ] || fail "python3 on PATH is $pyver; the pjsua2 wheel needs 3.11"

venv_ok() {
    [ -x "$venv/bin/python" ] || return 1
    "$venv/bin/python" - "$PJSUA2_VERSION" "$POCKETSPHINX_VERSION" "$WEBSOCKETS_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
assert sys.version_info[:2] == (3, 11)
assert version("pjsua2-python") == sys.argv[1], "pjsua2-python"
assert version("pocketsphinx") == sys.argv[2], "pocketsphinx"
assert version("websockets") == sys.argv[3], "websockets"
import websockets.sync.client  # noqa: F401
import pjsua2  # noqa: F401  (the native module loads)
import pocketsphinx
import os
assert os.path.isdir(os.path.join(pocketsphinx.get_model_path(), "en-us", "en-us"))
EOF
}

if ! venv_ok; then
    if [ -d "$venv" ] && ! [ -x "$venv/bin/pip" ]; then
        rm -rf "$venv"
    fi
    if ! [ -x "$venv/bin/python" ]; then
        run "$py" -m venv "$venv"
    fi
    run "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: \
        "pjsua2-python==$PJSUA2_VERSION" "pocketsphinx==$POCKETSPHINX_VERSION" \
        "websockets==$WEBSOCKETS_VERSION"
    : >"$log"
    venv_ok || {
        "$venv/bin/python" -c 'import pjsua2, pocketsphinx, websockets.sync.client' >"$log" 2>&1 || true
        fail "the venv at $venv does not import pjsua2 $PJSUA2_VERSION, pocketsphinx $POCKETSPHINX_VERSION and websockets $WEBSOCKETS_VERSION"
    }
fi
