#!/usr/bin/env bash
# Every test of BaatKaro, on a fresh machine: installs what is missing (the web
# client's npm packages, from the lockfile, and Debian's Chromium), then runs the
# Rust tests, the web client's unit tests, checks that the committed web bundle is
# what its sources build and within its size budget, and runs the end-to-end tests
# in headless Chromium, serially, after the parallel Rust suite. Node.js is for testing and building
# the web client only: the server embeds the committed bundle and runs without it.
set -euo pipefail
cd "$(dirname "$0")"

step() { printf '\n==> %s\n' "$*"; }

if ! command -v npm >/dev/null 2>&1; then
    step "installing Node.js and npm"
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq nodejs npm
    else
        echo "no npm and no apt-get: install Node.js 20 or later first" >&2
        exit 1
    fi
fi

# The end-to-end tests drive Debian's Chromium (never a browser downloaded by a
# test tool: these machines reach only the package registries).
if ! command -v chromium >/dev/null 2>&1; then
    step "installing Chromium"
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq chromium
    else
        echo "no chromium and no apt-get: install Chromium first" >&2
        exit 1
    fi
fi

# The event log's page-cache test reads residency with fincore (util-linux-extra).
if ! command -v fincore >/dev/null 2>&1; then
    step "installing fincore"
    if command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq && apt-get install -y -qq util-linux-extra
    else
        echo "no fincore and no apt-get: install util-linux's fincore first" >&2
        exit 1
    fi
fi

step "npm ci (web/, from package-lock.json)"
(cd web && npm ci --no-audit --no-fund --loglevel=error)

step "cargo test --workspace --all-features"
cargo test --workspace --all-features

step "the web client: type check and unit tests"
(cd web && npx tsc --noEmit && npx vitest run)

step "the web bundle: committed = built from the sources, within budget"
(cd web && node scripts/check-bundle.mjs)

step "the web client end to end: the server binary and headless Chromium"
cargo build -p baatkaro-server
(cd web && npx vitest run --config vitest.e2e.config.ts)
echo "screenshots: web/e2e/screenshots/"
