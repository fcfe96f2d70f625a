#!/usr/bin/env bash
# The GPU figures on a rented GPU machine that has PyTorch 2.11 but no Rust, in three steps:
#
#   benches/gpu-run.sh pack [DIR]      here: build qfd-host and the training-step benchmark against the CUDA
#                                      libtorch (scripts/setup.sh --cuda), strip them, and put them in DIR
#                                      (default gpu-run/) with Fashion-MNIST, studies/gpu.toml and the
#                                      PyTorch reference step. Copy DIR to the GPU machine.
#   DIR/remote.sh                      there: the training-speed bench (qfd-host against PyTorch eager and
#                                      torch.compile, batch 128 and 512), then the gpu study (4 runs at a
#                                      time, trained and exported; no QEMU there). Results in DIR/results/
#                                      and DIR/runs/. Copy DIR back.
#   benches/gpu-run.sh finish DIR      here: put DIR/runs in place, run every integer model on qemu-m4 and
#                                      write docs/results/gpu.md; the speed figures are in DIR/results/.
#
#   benches/gpu-run.sh dry-run         the three steps on this machine's CPU with the CPU libtorch and a
#                                      tiny study (a few minutes): checks the scripts, not the GPU.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FASHION_MNIST="${QFD_FASHION_MNIST:-/usr/share/datasets/fashion-mnist}"

die() { echo "error: $*" >&2; exit 1; }

# pack DIR [cpu]: the binaries (CUDA libtorch unless cpu), the data, the study and the remote script.
pack() {
    local dir="$1" variant="${2:-cuda}"
    [ -d "$FASHION_MNIST" ] || die "no Fashion-MNIST at $FASHION_MNIST (scripts/setup.sh installs it)"
    cd "$ROOT"
    local target="$ROOT/target"
    if [ "$variant" = cuda ]; then
        # The CUDA build goes to its own target folder, against the CUDA libtorch; the CPU one stays as it is.
        echo "==> CUDA libtorch (scripts/setup.sh --cuda)" >&2
        scripts/setup.sh --cuda >&2
        export LIBTORCH CARGO_TARGET_DIR="$ROOT/target/cuda"
        LIBTORCH="$(readlink -f .libtorch)"
        target="$CARGO_TARGET_DIR"
        scripts/setup.sh >/dev/null # .libtorch back to the CPU libtorch
    fi
    echo "==> building qfd-host and the training-step benchmark" >&2
    cargo build --release -p qfd-host >&2
    local bench
    bench="$(cargo bench -p qfd-host --bench train_step --no-run 2>&1 | sed -nE 's/.*Executable .*\((.*)\).*/\1/p' | head -1)"
    [ -x "$bench" ] || die "cargo bench -p qfd-host --bench train_step --no-run failed; run it alone to see why"
    mkdir -p "$dir/bin" "$dir/data" "$dir/studies" "$dir/benches"
    strip -o "$dir/bin/qfd-host" "$target/release/qfd-host"
    strip -o "$dir/bin/train_step" "$bench"
    cp -r "$FASHION_MNIST" "$dir/data/"
    cp studies/gpu.toml "$dir/studies/"
    cp benches/train_step.py benches/train-speed.sh "$dir/benches/"
    cp benches/gpu-run-remote.sh "$dir/remote.sh"
    chmod +x "$dir/remote.sh"
    echo "packed $dir ($(du -sh "$dir" | cut -f1)); copy it to the GPU machine and run $dir/remote.sh there" >&2
}

# finish DIR [STUDY] [REPORT]: the runs back in place, the board checks and the report.
finish() {
    local dir="$1" study="${2:-studies/gpu.toml}" report="${3:-docs/results/gpu.md}"
    [ -d "$dir/runs" ] || die "$dir/runs does not exist: run $dir/remote.sh on the GPU machine first"
    cd "$ROOT"
    mkdir -p runs
    cp -r "$dir/runs/." runs/
    echo "==> board checks and report" >&2
    cargo build --release -p qfd-host >&2
    target/release/qfd-host study "$study" --report "$report"
    echo "speed figures: $dir/results/train-speed.txt" >&2
}

case "${1:-}" in
    pack) pack "$(realpath -m "${2:-gpu-run}")" ;;
    finish) [ -n "${2:-}" ] || die "usage: benches/gpu-run.sh finish DIR"; finish "$(realpath "$2")" ;;
    dry-run)
        dir="$(mktemp -d)"
        trap 'rm -rf "$dir"' EXIT
        pack "$dir/pack" cpu
        # A tiny version of the gpu study, on the CPU: the same steps, minutes instead of hours.
        sed -e 's/^profile = "gpu"/profile = "gpu-dry-run"/' -e 's/^seeds = .*/seeds = [0]/' \
            -e 's/^bits = .*/bits = ["2\/2"]/' -e 's/^methods = .*/methods = ["fp", "qat", "qfd-f4"]/' \
            -e 's/^samples = .*/samples = 4/' -e 's/^fp-epochs = .*/fp-epochs = 1/' -e 's/^epochs = .*/epochs = 1/' \
            -e 's/^requires-gpu = true/requires-gpu = false\nout = "runs\/study-gpu-dry-run"/' \
            -e 's/^\[train\]/[train]\nsubset = 600/' studies/gpu.toml >"$dir/pack/studies/gpu.toml"
        venv="${QFD_CACHE:-$HOME/.cache/qfd-sdk}/bench/venv/bin/python"
        if [ -x "$venv" ]; then export QFD_BENCH_PYTHON="$venv"; else export QFD_GPU_RUN_SKIP_SPEED=1; fi
        QFD_GPU_RUN_DEVICE=cpu QFD_BENCH_STEPS=3 QFD_GPU_RUN_JOBS=2 "$dir/pack/remote.sh"
        cp "$dir/pack/studies/gpu.toml" "$dir/gpu-dry-run.toml"
        finish "$dir/pack" "$dir/gpu-dry-run.toml" "$dir/report/gpu-dry-run.md"
        grep -q "0 outputs different from the host runtime" "$dir/report/gpu-dry-run.md" ||
            die "the dry run's report shows no clean board check: $dir/report/gpu-dry-run.md"
        rm -rf "$ROOT/runs/study-gpu-dry-run"
        echo "dry run passed: packed, trained and exported as on the GPU machine, checked on qemu-m4, reported" >&2
        ;;
    *)
        sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'
        [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ] || exit 2
        ;;
esac
