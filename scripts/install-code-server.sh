#!/usr/bin/env bash
# Install what the real-editor e2e test of the VS Code extension needs:
# code-server 4.100.3 (VS Code 1.100.3 in the browser, Node 20) and Debian's Chromium.
#
# Idempotent: a second run finds everything in place and returns in about a second.
#
#   scripts/install-code-server.sh            # install (root: apt-get for system packages)
#   scripts/install-code-server.sh --check    # exit 0 if installed, 1 if not; installs nothing
#
# code-server lands in ${ONBOX_CODE_SERVER_DIR:-$HOME/.cache/onbox-code-server}; its
# binary is $ONBOX_CODE_SERVER_DIR/node_modules/.bin/code-server. Only the npm registry and Debian's
# archive are used: the ripgrep release archive that @vscode/ripgrep would download is
# pre-seeded from Debian's `rg`, so nothing else is fetched.
set -euo pipefail

CODE_SERVER_VERSION="4.100.3"
DIR="${ONBOX_CODE_SERVER_DIR:-$HOME/.cache/onbox-code-server}"
BIN="$DIR/node_modules/.bin/code-server"
STAMP="$DIR/.installed-$CODE_SERVER_VERSION"
APT_PACKAGES=(build-essential pkg-config libkrb5-dev libx11-dev libxkbfile-dev libsecret-1-dev ripgrep chromium git)

log() { printf 'install-code-server: %s\n' "$*" >&2; }

installed() {
    [[ -x "$BIN" && -f "$STAMP" && -x /usr/bin/chromium && -x /usr/bin/rg ]]
}

if [[ "${1:-}" == "--check" ]]; then
    if installed; then echo "$BIN"; exit 0; fi
    exit 1
fi

if installed; then
    log "already installed: $BIN"
    echo "$BIN"
    exit 0
fi

node_major=$(node --version 2>/dev/null | sed -n 's/^v\([0-9]*\)\..*/\1/p')
if [[ "$node_major" != "20" ]]; then
    log "code-server $CODE_SERVER_VERSION needs Node.js 20 (found: ${node_major:-none}); install Node 20 and rerun"
    exit 3
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$pkg")
    fi
done
if ((${#missing[@]})); then
    if [[ $(id -u) -ne 0 ]]; then
        log "missing Debian packages: ${missing[*]}; install them as root (apt-get install -y ${missing[*]}) and rerun"
        exit 3
    fi
    log "installing Debian packages: ${missing[*]}"
    # Another apt run may hold the lock; DPkg::Lock::Timeout waits for it instead of failing.
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq "${missing[@]}"
fi

# @vscode/ripgrep 1.15.11 downloads this archive from GitHub unless it is already cached.
tmp="${TMPDIR:-/tmp}"
rg_cache="$tmp/vscode-ripgrep-cache-1.15.11"
rg_archive="$rg_cache/ripgrep-v13.0.0-10-x86_64-unknown-linux-musl.tar.gz"
if [[ ! -s "$rg_archive" ]]; then
    log "seeding ripgrep cache from /usr/bin/rg: $rg_archive"
    mkdir -p "$rg_cache"
    stage=$(mktemp -d)
    cp /usr/bin/rg "$stage/rg"
    tar -C "$stage" -czf "$rg_archive.part" rg
    mv "$rg_archive.part" "$rg_archive"
    rm -rf "$stage"
fi

log "installing code-server@$CODE_SERVER_VERSION into $DIR (builds native modules; several minutes on 2 cores)"
mkdir -p "$DIR"
[[ -f "$DIR/package.json" ]] || echo '{"private": true}' >"$DIR/package.json"
# A local install, scripts off: code-server's postinstall runs `npm install` inside its own
# lib/vscode, and under `npm install -g` that inner npm inherits global mode and would
# reinstall lib/vscode over the package it is unpacking. So we run the postinstall ourselves.
npm install --prefix "$DIR" --ignore-scripts --no-audit --no-fund "code-server@$CODE_SERVER_VERSION" >&2
# npm 11 skips dependencies' install scripts unless allowed; VS Code's native modules
# (node-pty, @parcel/watcher, spdlog, ...) must build, hence the explicit allowance.
(
    cd "$DIR/node_modules/code-server"
    export npm_config_unsafe_perm=true npm_config_yes=true npm_config_dangerously_allow_all_scripts=true
    export npm_config_user_agent="npm/$(npm --version) node/$(node --version) linux x64"
    sh ./postinstall.sh >&2
)
# The one top-level dependency with a native build (skipped above by --ignore-scripts).
(cd "$DIR" && npm rebuild --dangerously-allow-all-scripts argon2 >&2)
# --version alone would write ~/.config/code-server/config.yaml; keep the home dir clean.
XDG_CONFIG_HOME="$DIR/.config" "$BIN" --version >&2
touch "$STAMP"
log "installed: $BIN"
echo "$BIN"
