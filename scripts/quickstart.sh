#!/usr/bin/env bash
# README quick start, step 1: set the machine up, then run the main job.
#
# Until the trainer lands, the main job uses a synthetic model (random weights, plausible requantization):
#   1. qfd-host synth    an MLPerf-Tiny ResNet-8 at W4A4 -> runs/quickstart/resnet8-w4a4.qfdm
#   2. qfd-host inspect  its layers, MACs, weight bytes and arena plan
#   3. parity on an emulated Cortex-M4 (QEMU): the firmware runs 10 inputs and must print exactly what the
#      host runtime computes for them, bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "set-up"
scripts/setup.sh

step "build qfd-host"
cargo build --release -p qfd-host
host=target/release/qfd-host
mkdir -p runs/quickstart
model=runs/quickstart/resnet8-w4a4.qfdm

step "synthesise ResNet-8 (MLPerf Tiny) at W4A4"
"$host" synth --arch resnet8 --input 32x32x3 --bits 4/4 --out "$model"

step "inspect it"
"$host" inspect "$model"

step "run it on an emulated Cortex-M4 and compare with the host runtime"
firmware/parity-smoke.sh qemu-m4 resnet8 32x32x3 4 10
