#!/usr/bin/env bash
# Licence, advisory-source, ban and duplicate-dependency policy (deny.toml), with cargo-deny
# installed on first use into target/tools so a clean machine needs nothing by hand.
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="$PWD/target/tools"
DENY="$TOOLS/bin/cargo-deny"
if ! [ -x "$DENY" ]; then
    echo "installing cargo-deny into target/tools (first run only)"
    cargo install --quiet --locked cargo-deny --version 0.20.2 --root "$TOOLS"
fi
# Advisories need the RustSec database from GitHub, which this environment cannot reach; the
# licence, ban and source checks run fully offline.
exec "$DENY" --offline check licenses bans sources
