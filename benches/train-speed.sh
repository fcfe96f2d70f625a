#!/usr/bin/env bash
# Training speed, side by side: one QFD training step of qfd-host's trainer (Rust, tch) and of the PyTorch
# reference benches/train_step.py (same ResNet-20 W4A4 student, teacher, loss, optimiser, batch and
# threads), eager and (on CUDA, or with QFD_BENCH_COMPILE=1) under torch.compile, with the ratios of their
# images per second.
#
# Usage: benches/train-speed.sh [cpu|cuda|cuda:N]
# Environment: QFD_BENCH_BATCHES (batches to time: 128 on the CPU, "128 512" on CUDA), QFD_BENCH_THREADS,
#   QFD_BENCH_STEPS, QFD_BENCH_COMPILE (1: also time torch.compile on the CPU; it needs a C++ compiler),
#   QFD_BENCH_RUST (a built train_step bench binary to run instead of `cargo bench`, as benches/gpu-run.sh
#   does on a machine without Rust), QFD_BENCH_PYTHON (a Python with PyTorch to use instead of the venv).
# Without QFD_BENCH_PYTHON the first run installs PyTorch 2.11.0 from PyPI into a virtual environment in the
# set-up cache (about 3 GB with its CUDA libraries); later runs reuse it. Run on a quiet machine: it
# measures wall time.
set -euo pipefail

readonly TORCH_VERSION="2.11.0"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEVICE="${1:-cpu}"
case "$DEVICE" in cpu | cuda | cuda:*) ;; *) echo "error: device '$DEVICE': expected cpu, cuda or cuda:N" >&2; exit 2 ;; esac
export QFD_BENCH_DEVICE="$DEVICE"
if [ "$DEVICE" = cpu ]; then
    BATCHES="${QFD_BENCH_BATCHES:-128}"
    COMPILE="${QFD_BENCH_COMPILE:-0}"
else
    BATCHES="${QFD_BENCH_BATCHES:-128 512}"
    COMPILE="${QFD_BENCH_COMPILE:-1}"
fi

PYTHON="${QFD_BENCH_PYTHON:-}"
if [ -z "$PYTHON" ]; then
    VENV="${QFD_CACHE:-$HOME/.cache/qfd-sdk}/bench/venv"
    PYTHON="$VENV/bin/python"
    if ! "$PYTHON" -c "import torch" 2>/dev/null; then
        echo "==> installing PyTorch ${TORCH_VERSION} into $VENV (once)" >&2
        python3 -m venv "$VENV"
        "$VENV/bin/pip" install --quiet "torch==${TORCH_VERSION}" ||
            { echo "error: pip could not install torch==${TORCH_VERSION} (is PyPI reachable?)" >&2; exit 1; }
    fi
fi

cd "$ROOT"
RUST_BENCH="${QFD_BENCH_RUST:-}"
if [ -z "$RUST_BENCH" ]; then
    echo "==> building the Rust benchmark" >&2
    RUST_BENCH="$(cargo bench -p qfd-host --bench train_step --no-run 2>&1 |
        sed -nE 's/.*Executable .*\((.*)\).*/\1/p' | head -1)"
    [ -x "$RUST_BENCH" ] || { echo "error: cargo bench -p qfd-host --bench train_step --no-run failed; run it alone to see why" >&2; exit 1; }
fi

rate() { sed -E 's/.*images\/s ([0-9.]+).*/\1/' <<<"$1"; }
ratio() { awk -v r="$(rate "$1")" -v t="$(rate "$2")" -v what="$3" \
    'BEGIN { printf "ratio qfd-host / %s: %.2f (images/s %.1f vs %.1f)\n", what, r / t, r, t }'; }

for batch in $BATCHES; do
    export QFD_BENCH_BATCH="$batch"
    echo "==> batch $batch: qfd-host" >&2
    rust="$("$RUST_BENCH" | grep 'images/s')" || { echo "error: $RUST_BENCH failed; run it alone to see why" >&2; exit 1; }
    echo "==> batch $batch: PyTorch eager" >&2
    eager="$(QFD_BENCH_COMPILE=0 "$PYTHON" benches/train_step.py 2>/dev/null)" ||
        { echo "error: the PyTorch run failed; run $PYTHON benches/train_step.py to see why" >&2; exit 1; }
    echo "$rust"
    echo "$eager"
    ratio "$rust" "$eager" "pytorch eager"
    if [ "$COMPILE" = 1 ]; then
        echo "==> batch $batch: PyTorch torch.compile (compiling takes a minute)" >&2
        compiled="$(QFD_BENCH_COMPILE=1 "$PYTHON" benches/train_step.py 2>/dev/null)" ||
            { echo "error: the torch.compile run failed; run QFD_BENCH_COMPILE=1 $PYTHON benches/train_step.py to see why" >&2; exit 1; }
        echo "$compiled"
        ratio "$rust" "$compiled" "pytorch compile"
    fi
done
