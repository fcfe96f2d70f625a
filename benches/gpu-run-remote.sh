#!/usr/bin/env bash
# The GPU machine's part of benches/gpu-run.sh, run from the folder `benches/gpu-run.sh pack` made (as
# DIR/remote.sh). Needs PyTorch 2.11 (its libraries are the libtorch the binaries load), no Rust, no network.
#   1. the training-speed bench: qfd-host against PyTorch eager and torch.compile, batch 128 and 512;
#   2. the gpu study, trained and exported, several runs at a time (no board checks: no QEMU here).
# Everything lands in results/ and runs/ beside this script; copy the folder back and run
# `benches/gpu-run.sh finish DIR` on the build machine.
# Environment: QFD_GPU_RUN_DEVICE (cuda), QFD_GPU_RUN_JOBS (4), QFD_BENCH_PYTHON (python3),
#   QFD_GPU_RUN_SKIP_SPEED (1: the study only).
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
DEVICE="${QFD_GPU_RUN_DEVICE:-cuda}"
JOBS="${QFD_GPU_RUN_JOBS:-4}"
PYTHON="${QFD_BENCH_PYTHON:-python3}"
die() { echo "error: $*" >&2; exit 1; }

TORCH_LIB="$("$PYTHON" -c 'import os, torch; print(os.path.join(os.path.dirname(torch.__file__), "lib"))' 2>/dev/null)" ||
    die "$PYTHON has no PyTorch: install torch==2.11.0, or name a Python that has it in QFD_BENCH_PYTHON"
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
cd "$HERE"
mkdir -p results
"bin/qfd-host" --version >/dev/null || die "bin/qfd-host does not start with the libraries of $TORCH_LIB"
{ nvidia-smi 2>/dev/null || echo "no nvidia-smi"; "$PYTHON" -c 'import torch; print("torch", torch.__version__)'; } >results/machine.txt

if [ "${QFD_GPU_RUN_SKIP_SPEED:-0}" != 1 ]; then
    echo "==> training speed ($DEVICE)" >&2
    QFD_BENCH_RUST="$HERE/bin/train_step" QFD_BENCH_PYTHON="$PYTHON" bash benches/train-speed.sh "$DEVICE" |
        tee results/train-speed.txt
fi

echo "==> the study, $JOBS runs at a time" >&2
# The data packed beside the binaries.
sed -i "/^data = /d; s|^\[train\]|[train]\ndata = \"$HERE/data/fashion-mnist\"|" studies/gpu.toml
start=$(date +%s)
bin/qfd-host study studies/gpu.toml --jobs "$JOBS" --skip-device --report results/study-unchecked.md 2>&1 |
    tee results/study.log
echo "study wall time: $(($(date +%s) - start)) s" | tee -a results/study.log
