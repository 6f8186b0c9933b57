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
# pre-seeded from Debian's `rg`, and node-gyp builds against the installed Node's own
# headers (npm_config_nodedir) instead of downloading them, so nothing else is fetched and
# an empty HOME works.
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

# node-gyp builds VS Code's native modules against the headers of the running Node. Unless
# told where they are it downloads them from nodejs.org into ~/.cache/node-gyp, which fails
# offline and on every empty HOME. The Node package installs them under its prefix
# (NodeSource's nodejs: /usr/include/node; Debian's own Node: the libnode-dev package), so
# point node-gyp there, after checking they belong to this Node's major version.
headers_match() {
    grep -qs "define NODE_MAJOR_VERSION $node_major\$" "$1/include/node/node_version.h" &&
        [[ -f "$1/include/node/common.gypi" ]]
}
if [[ -z "${npm_config_nodedir:-}" ]]; then
    node_prefix=$(node -p 'require("path").resolve(process.execPath, "../..")')
    # Debian's libnode-dev only when it is the same major version: another one would put
    # the wrong headers (bookworm's are Node 18) next to a Node 20 from elsewhere.
    if ! headers_match "$node_prefix" && [[ $(id -u) -eq 0 && "$node_prefix" == /usr ]] &&
        apt-cache policy libnode-dev 2>/dev/null | grep -Eq "Candidate: ([0-9]+:)?$node_major\."; then
        log "installing Debian package libnode-dev (Node $node_major headers)"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq libnode-dev
    fi
    if headers_match "$node_prefix"; then
        export npm_config_nodedir="$node_prefix"
        log "node-gyp uses the local Node headers in $node_prefix/include/node"
    else
        log "no Node $node_major headers under $node_prefix/include/node: node-gyp will download them from nodejs.org"
    fi
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
