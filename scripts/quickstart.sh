#!/usr/bin/env bash
# README quick start, step 1: set the machine up, then run the main job on Fashion-MNIST:
#   1. qfd-host train   a short QFD run of ResNet-8 at W4A4 (full-precision model, 4-bit-feature teacher,
#                       student; a 6000-image subset, a few epochs: about two minutes on 2 cores)
#   2. qfd-host export  the student as an integer-only model (runs/quickstart/model.qfdm)
#   3. qfd-host eval    its accuracy on the test set, run by the integer runtime on the host
#   4. qfd-host run     the same model in firmware on an emulated Cortex-M4 (QEMU) on 50 test images:
#                       the parity report must say every output matches the host runtime bit for bit.
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "set-up"
scripts/setup.sh

step "build qfd-host"
cargo build --release -p qfd-host
host=target/release/qfd-host
run_dir=runs/quickstart/resnet8-qfd-w4a4
model=runs/quickstart/model.qfdm

step "train ResNet-8 with QFD at W4A4 on a Fashion-MNIST subset"
"$host" train --arch resnet8 --method qfd --bits 4 --subset 6000 --fp-epochs 3 --epochs 2 --run-dir "$run_dir"

step "export the student as an integer-only model"
"$host" export "$run_dir" --out "$model"

step "evaluate the integer model on the test set (host runtime)"
"$host" eval "$model" --limit 2000

step "run it on an emulated Cortex-M4 and compare with the host runtime"
"$host" run --board qemu-m4 --model "$model" --samples 50
