#!/usr/bin/env bash
# The project's test command (README quick start, step 2). CI runs it through .ci/run.
#
#   scripts/test.sh           format, lints, all workspace tests, cross builds, firmware parity under QEMU
#
# Longer fuzzing is separate: docs/fuzzing.md.
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

step "firmware parity on emulated boards (QEMU): device output == host runtime output, bit for bit"
for board in qemu-m3 qemu-m4 qemu-m55; do
    firmware/parity-smoke.sh "$board" resnet8 16x16x3 4 5
done
