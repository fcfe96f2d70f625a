#!/usr/bin/env bash
# Training speed, side by side: one QFD training step of qfd-host's trainer (Rust, tch) and of the PyTorch
# eager reference benches/train_step.py (same ResNet-20 W4A4 student, teacher, loss, optimiser, batch and
# threads), and the ratio of their images per second.
#
# Usage: benches/train-speed.sh [cpu|cuda]      (environment: QFD_BENCH_THREADS, QFD_BENCH_STEPS, QFD_BENCH_BATCH)
# The first run installs PyTorch 2.11.0 from PyPI into a virtual environment in the set-up cache
# (about 3 GB with its CUDA libraries); later runs reuse it. Run on a quiet machine: it measures wall time.
set -euo pipefail

readonly TORCH_VERSION="2.11.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${QFD_CACHE:-$HOME/.cache/qfd-sdk}/bench/venv"
DEVICE="${1:-cpu}"
case "$DEVICE" in cpu | cuda | cuda:*) ;; *) echo "error: device '$DEVICE': expected cpu or cuda" >&2; exit 2 ;; esac
export QFD_BENCH_DEVICE="$DEVICE"

if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    echo "==> installing PyTorch ${TORCH_VERSION} into $VENV (once)" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION}" ||
        { echo "error: pip could not install torch==${TORCH_VERSION} (is PyPI reachable?)" >&2; exit 1; }
fi

cd "$ROOT"
echo "==> building and running the Rust benchmark" >&2
rust="$(cargo bench --quiet -p qfd-host --bench train_step 2>/dev/null | grep 'images/s')" ||
    { echo "error: cargo bench -p qfd-host --bench train_step failed; run it alone to see why" >&2; exit 1; }
echo "==> running the PyTorch eager reference" >&2
torch_line="$("$VENV/bin/python" benches/train_step.py)"
echo "$rust"
echo "$torch_line"
rate() { sed -E 's/.*images\/s ([0-9.]+).*/\1/' <<<"$1"; }
awk -v r="$(rate "$rust")" -v t="$(rate "$torch_line")" \
    'BEGIN { printf "ratio qfd-host / pytorch eager: %.2f (images/s %.1f vs %.1f)\n", r / t, r, t }'
