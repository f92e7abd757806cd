#!/usr/bin/env bash
# What the admin page's browser tests need, installed on first use (as root, like CI, or with sudo):
#   Debian's `chromium` (apt; never a browser download), Node.js >= 18 with npm (apt, only if
#   missing), and playwright-core from tests/browser/package-lock.json (`npm ci`, again only when
#   the lock file changed).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DIR="$ROOT/tests/browser"

log() { echo "ensure-browser: $*" >&2; }

apt_install() {
  local sudo=()
  [[ $(id -u) -eq 0 ]] || sudo=(sudo)
  # A fresh machine has no package lists yet: update when the package is unknown.
  if ! apt-cache show "$@" >/dev/null 2>&1; then
    log "apt-get update"
    "${sudo[@]}" apt-get update -qq
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if ! command -v chromium >/dev/null; then
  apt_install chromium
fi
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  apt_install nodejs npm
fi
node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 18)); then
  log "Node.js $node_major is too old (the tests use fetch and FormData: 18 or newer)"
  exit 1
fi

stamp="$DIR/node_modules/.lock-stamp"
if [[ ! -f $stamp ]] || ! cmp -s "$stamp" "$DIR/package-lock.json"; then
  log "npm ci (tests/browser)"
  (cd "$DIR" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  cp "$DIR/package-lock.json" "$stamp"
fi
command -v chromium
