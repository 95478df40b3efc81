#!/usr/bin/env bash
# Installs what warren needs on a Debian machine, idempotently:
#   - Debian packages: bubblewrap, git, nodejs/npm (only if missing)
#   - the pinned OpenCode from npm, into the project-local .tools/opencode
#   - playwright-core for the dashboard's browser test (npm ci, from the committed lockfile)
# Prints the path of the opencode binary on its last line.
set -euo pipefail

OPENCODE_VERSION="${OPENCODE_VERSION:-1.18.33}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="$ROOT/.tools"

log() { echo "install-tools: $*" >&2; }

need_apt=()
command -v bwrap >/dev/null 2>&1 || need_apt+=(bubblewrap)
command -v git >/dev/null 2>&1 || need_apt+=(git)
command -v npm >/dev/null 2>&1 || need_apt+=(nodejs npm)
if ((${#need_apt[@]})); then
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || { log "missing ${need_apt[*]} and no sudo: install them with your package manager"; exit 1; }
    SUDO="sudo"
  fi
  log "installing Debian packages: ${need_apt[*]}"
  $SUDO apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}" >&2
fi

OPENCODE_DIR="$TOOLS/opencode"
OPENCODE_BIN="$OPENCODE_DIR/node_modules/.bin/opencode"
installed=""
if [ -x "$OPENCODE_BIN" ]; then
  installed="$("$OPENCODE_BIN" --version 2>/dev/null || true)"
fi
if [ "$installed" != "$OPENCODE_VERSION" ]; then
  log "installing opencode-ai@$OPENCODE_VERSION into $OPENCODE_DIR"
  mkdir -p "$OPENCODE_DIR"
  npm install --silent --no-audit --no-fund --prefix "$OPENCODE_DIR" "opencode-ai@$OPENCODE_VERSION" >&2
  installed="$("$OPENCODE_BIN" --version)"
  if [ "$installed" != "$OPENCODE_VERSION" ]; then
    log "expected opencode $OPENCODE_VERSION, got '$installed'"
    exit 1
  fi
fi
# playwright-core for the dashboard's browser test (it drives the system's Chromium; it downloads
# no browser). Versions are pinned by the committed package-lock.json.
BROWSER_TESTS="$ROOT/crates/warren-cli/tests/browser"
if [ ! -d "$BROWSER_TESTS/node_modules/playwright-core" ]; then
  log "installing the browser test's npm packages into $BROWSER_TESTS/node_modules"
  npm ci --silent --no-audit --no-fund --prefix "$BROWSER_TESTS" >&2
fi
echo "$OPENCODE_BIN"
