#!/usr/bin/env bash
# FQ-ViT on Fashion-MNIST, end to end, written up as docs/results/fq-vit.md:
#   1. the full-precision vit (the default shape: patch 4, width 64, depth 4, 4 heads, MLP 4x), AdamW
#      with warm-up;
#   2. post-training quantization at 8/8 bits: MinMax (the baseline), PTF only, PTF + LIS (FQ-ViT's 8/8/4),
#      each with the MinMax and the OMSE observer, on 1,000 calibration images; the same at 6 and 5
#      activation bits;
#   3. quantization-aware fine-tuning (qat) and QFD, both starting from the FQ-ViT model;
#   4. every quantized model exported and run in integers on the 10,000 test images, beside its fake-quant;
#   5. the FQ-ViT model on qemu-m4, qemu-m7 and qemu-m55 with generated code and the interpreter (parity,
#      instructions, memory, time per op), and built for nucleo-l4r5zi.
# Each step reuses what an earlier run of this script finished, so an interrupted run continues.
#
# Usage: studies/fq-vit.sh [RUN_DIR]   (default runs/fq-vit)
# Environment: FP_EPOCHS (36), FT_EPOCHS (1), FT_LR (1e-4, the fine-tuning's peak learning rate: the
# full-precision recipe's 1e-3 loses accuracy in one epoch), SAMPLES (200 parity images per board and
# engine), VIT_ARGS (the vit's shape options, e.g. "--depth 6"; none by default),
# QFD_HOST (default target/release/qfd-host, built if missing), REPORT (docs/results/fq-vit.md).
set -euo pipefail
cd "$(dirname "$0")/.."
D=${1:-runs/fq-vit}
Q=${QFD_HOST:-target/release/qfd-host}
FP_EPOCHS=${FP_EPOCHS:-36}
read -r -a VIT <<< "${VIT_ARGS:-}"
FT_EPOCHS=${FT_EPOCHS:-1}
FT_LR=${FT_LR:-1e-4}
SAMPLES=${SAMPLES:-200}
REPORT=${REPORT:-docs/results/fq-vit.md}
[ -x "$Q" ] || cargo build --release -p qfd-host
mkdir -p "$D/logs" "$D/boards"

step() { echo "== $*" >&2; }
done_run() { [ -f "$1/state.json" ]; }

step "full-precision vit ($FP_EPOCHS epochs)"
"$Q" train --arch vit "${VIT[@]}" --method fp --optimizer adamw --weight-decay 0.05 --epochs "$FP_EPOCHS" \
    --warmup-epochs 3 --run-dir "$D/fp" 2>&1 | tee "$D/logs/fp.log" >&2

# Post-training quantization: ptq-<method>[-omse][-a<bits>] (no suffix: the MinMax observer, 8 bits). Below
# 8 activation bits is where PTF and OMSE should show what they buy.
PTQ_RUNS=()
for abits in 8 6 5; do
    for method in minmax ptf fq-vit; do
        for observer in minmax omse; do
            run="ptq-$method"
            [ "$observer" = omse ] && run="$run-omse"
            [ "$abits" = 8 ] || run="$run-a$abits"
            PTQ_RUNS+=("$run")
            if ! done_run "$D/$run"; then
                step "quantize $method, $observer ranges, $abits-bit activations"
                "$Q" quantize "$D/fp" --method "$method" --observer "$observer" --abits "$abits" \
                    --out "$D/$run" > /dev/null
            fi
        done
    done
done

# Fine-tuning from the FQ-ViT model: its quantizers stay, the weights train.
for method in qat qfd; do
    step "$method from the FQ-ViT model ($FT_EPOCHS epochs)"
    "$Q" train --arch vit "${VIT[@]}" --method "$method" --bits 8 --optimizer adamw --lr "$FT_LR" --weight-decay 0.05 \
        --epochs "$FT_EPOCHS" --warmup-epochs 0.2 --fp-run "$D/fp" --init "$D/ptq-fq-vit" \
        --run-dir "$D/$method" 2>&1 | tee "$D/logs/$method.log" >&2
done

for run in "${PTQ_RUNS[@]}" qat qfd; do
    if [ ! -f "$D/$run/model.qfdm" ]; then
        step "export $run"
        "$Q" export "$D/$run" > "$D/$run/export.txt.tmp" && mv "$D/$run/export.txt.tmp" "$D/$run/export.txt"
    fi
done

MODEL="$D/ptq-fq-vit/model.qfdm"
for board in qemu-m4 qemu-m7 qemu-m55; do
    for engine in generated interpreter; do
        out="$D/boards/$board-$engine.json"
        if [ ! -f "$out" ]; then
            step "$board, $engine, $SAMPLES images"
            "$Q" run --board "$board" --model "$MODEL" --engine "$engine" --samples "$SAMPLES" --json > "$out.tmp"
            mv "$out.tmp" "$out"
        fi
    done
done
step "nucleo-l4r5zi, build only"
"$Q" run --board nucleo-l4r5zi --model "$MODEL" --build-only > "$D/boards/nucleo-l4r5zi.txt"

step "report: $REPORT"
python3 studies/fq_vit_report.py "$D" "$REPORT" "$FP_EPOCHS" "$FT_EPOCHS"
