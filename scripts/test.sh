#!/usr/bin/env bash
# The project's test command (README quick start, step 2). CI runs it through .ci/run.
#
#   scripts/test.sh           format, lints, all workspace tests, cross builds, firmware parity under QEMU
#   QFD_SLOW=1 scripts/test.sh  also the slow suites (longer fuzzing-style runs); see docs/testing.md
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "set-up (installs only what is missing)"
scripts/setup.sh

step "format"
cargo fmt --all -- --check

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo test --workspace

step "runtime builds for microcontrollers"
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    cargo build -p qfd-runtime --release --target "$target"
done

if [ -x firmware/parity-smoke.sh ]; then
    step "firmware parity on emulated boards"
    firmware/parity-smoke.sh
fi
