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
# The advisories check is left out: it needs the RustSec database, fetched from GitHub, which
# the build machines cannot reach. Licences, bans (incl. duplicate versions) and sources run.
exec "$DENY" check --hide-inclusion-graph licenses bans sources
