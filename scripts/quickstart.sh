#!/usr/bin/env bash
# README quick start, step 1: set the machine up, then run the main job on Fashion-MNIST:
#   1. qfd-host train   a short QFD run of ResNet-8 at W4A4 on the whole training set (full-precision
#                       model 2 epochs, 4-bit-feature teacher and student 1 epoch each: about five minutes
#                       on 2 cores)
#   2. qfd-host export  the student as an integer-only model (runs/quickstart/model.qfdm)
#   3. qfd-host eval    its accuracy on the test set, run by the integer runtime on the host
#   4. qfd-host run     the same model in firmware on an emulated Cortex-M4 (QEMU) on 50 test images:
#                       the parity report must say every output matches the host runtime bit for bit.
# It ends with the full-precision model's test accuracy beside the integer model's, so the cost of 4 bits
# shows.
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

step "train ResNet-8 with QFD at W4A4 on Fashion-MNIST"
"$host" train --arch resnet8 --method qfd --bits 4 --fp-epochs 2 --epochs 1 --run-dir "$run_dir"

step "export the student as an integer-only model"
"$host" export "$run_dir" --out "$model"

step "evaluate the integer model on the test set (host runtime)"
eval_out=$("$host" eval "$model")
echo "$eval_out"

step "run it on an emulated Cortex-M4 and compare with the host runtime"
"$host" run --board qemu-m4 --model "$model" --samples 50

step "summary"
# The full-precision model's last test accuracy (its metrics, one JSON line per epoch) and the integer one's.
fp_acc=$(sed -nE 's/.*"test_acc":([0-9.eE+-]+).*/\1/p' "$run_dir/fp/metrics.jsonl" | tail -n 1)
int_acc=$(sed -nE 's/^accuracy +([0-9.]+)%.*/\1/p' <<<"$eval_out" | head -n 1)
awk -v fp="$fp_acc" -v integer="$int_acc" 'BEGIN {
    printf "test accuracy (10,000 images): full-precision model %.2f%%, integer W4A4 model %.2f%%\n", 100 * fp, integer
}'
