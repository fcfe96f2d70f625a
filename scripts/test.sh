#!/usr/bin/env bash
# The project's test command (README quick start, step 2). CI runs it through .ci/run.
#
#   scripts/test.sh     format, lints, all workspace tests (QEMU and Fashion-MNIST included), cross builds,
#                       device parity on three emulated boards, real boards linked, the probe-rs build
#
# Longer fuzzing is separate: docs/fuzzing.md. Training accuracy runs are separate: docs/training.md.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "set-up (installs only what is missing)"
scripts/setup.sh

step "format"
cargo fmt --all -- --check
(cd firmware && cargo fmt -- --check)

step "lints"
cargo clippy --workspace --all-targets -- -D warnings

step "tests"
cargo test --workspace

step "runtime builds for microcontrollers"
for target in thumbv7em-none-eabihf thumbv6m-none-eabi; do
    cargo build -p qfd-runtime --release --target "$target"
done

step "qfd-host"
cargo build --release -p qfd-host
host=target/release/qfd-host
work=target/ci
mkdir -p "$work"
model="$work/resnet8-16x16x3-w4a4.qfdm"
"$host" synth --arch resnet8 --input 16x16x3 --bits 4 --out "$model"

step "firmware lints (with the generated model compiled in)"
(cd firmware && QFD_MODEL="$PWD/../$model" cargo clippy --release -- -D warnings)

step "device parity on emulated boards: 200 inputs each, every output equal to the host runtime's"
for board in qemu-m3 qemu-m4 qemu-m55; do
    "$host" run --board "$board" --model "$model" --samples 200
done
"$host" run --board qemu-m4 --model "$model" --samples 200 --engine interpreter

step "real boards: the firmware links within each board's true flash and RAM"
for board in nucleo-l4r5zi nucleo-h7a3zi nrf52840-dk rp-pico; do
    "$host" run --board "$board" --model "$model" --build-only
done

step "qfd-host with the probe feature (probe-rs) builds"
cargo build -p qfd-host --features probe
