#!/usr/bin/env bash
# Runs every cargo-fuzz target of fuzz/ for a bounded time (FUZZ_SECONDS each, default 60),
# seeded with the committed corpus in fuzz/corpus/<target>. Installs what it needs on first use:
# a minimal nightly toolchain (libFuzzer's sanitizer flags need it) and cargo-fuzz into
# target/tools, so a clean machine needs nothing by hand. Not part of `make test`.
#
# New interesting inputs go to <target dir>/fuzz-corpus/<target>, never into the committed seeds;
# a crash is written to <target dir>/fuzz-artifacts/<target>/ and fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
SECONDS_EACH="${FUZZ_SECONDS:-60}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
TOOLS="$ROOT/target/tools"
FUZZ="$TOOLS/bin/cargo-fuzz"
export PATH="$TOOLS/bin:$PATH"  # `cargo fuzz` finds the subcommand on PATH
CARGO_FUZZ_VERSION=0.13.2

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "installing a minimal nightly toolchain (first run only)"
    rustup toolchain install nightly --profile minimal
fi
if ! [ -x "$FUZZ" ]; then
    echo "installing cargo-fuzz into target/tools (first run only)"
    cargo install --quiet --locked cargo-fuzz --version "$CARGO_FUZZ_VERSION" --root "$TOOLS"
fi

cd fuzz
status=0
for target in $("$FUZZ" list); do
    work="$TARGET_DIR/fuzz-corpus/$target"
    artifacts="$TARGET_DIR/fuzz-artifacts/$target/"
    mkdir -p "$work" "$artifacts"
    echo "== $target: ${SECONDS_EACH}s"
    log="$TARGET_DIR/fuzz-$target.log"
    # The first corpus directory receives new inputs; the committed seeds are only read.
    if cargo +nightly fuzz run --target-dir "$TARGET_DIR/fuzz" "$target" "$work" "corpus/$target" -- \
        -max_total_time="$SECONDS_EACH" -artifact_prefix="$artifacts" -print_final_stats=1 \
        >"$log" 2>&1; then
        runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || echo "?")
        echo "   ok: $runs executions, corpus $(ls "$work" | wc -l) inputs"
    else
        status=1
        echo "   FAILED: see $log and $artifacts"
        tail -n 40 "$log"
    fi
done
exit $status
