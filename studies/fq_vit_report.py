#!/usr/bin/env python3
"""Writes docs/results/fq-vit.md from what studies/fq-vit.sh left in its run directory."""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

run_dir, report, fp_epochs, ft_epochs = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3], sys.argv[4]


def last_metrics(run):
    lines = (run_dir / run / "metrics.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def export_line(run):
    text = (run_dir / run / "export.txt").read_text()
    m = re.search(r"on (\d+) images: fake-quant ([\d.]+)%, integer ([\d.]+)% \(same prediction on ([\d.]+)%\)", text)
    return m.groups()


ROWS = [
    ("MinMax (baseline)", "minmax", "ptq-minmax", "ptq-minmax-omse", "8/8/8"),
    ("PTF only", "ptf", "ptq-ptf", "ptq-ptf-omse", "8/8/8"),
    ("PTF + LIS (FQ-ViT)", "fq-vit", "ptq-fq-vit", "ptq-fq-vit-omse", "8/8/4"),
]


def config(run):
    return json.loads((run_dir / run / "state.json").read_text())["state"]["config"]


fp = last_metrics("fp")
shape = config("fp")
ft_lr = config("qat").get("lr", "the default")
tokens = (28 // shape["patch"]) ** 2
out = []
out.append("# FQ-ViT on Fashion-MNIST: an integer-only vision transformer\n")
out.append(
    "Written by `studies/fq-vit.sh` (this run: full precision "
    f"{fp_epochs} epochs, fine-tuning {ft_epochs} epoch(s) at learning rate {ft_lr}). The vit: patch "
    f"{shape['patch']} ({tokens} tokens), width {shape['embed-dim']}, depth {shape['depth']}, {shape['heads']} "
    f"heads, MLP {shape['mlp-ratio']}x, "
    "a depthwise 3x3 position encoding; 8-bit weights per output channel, 8-bit "
    "activations per tensor with whole zero points. Every accuracy is on the 10,000 test images; "
    "*integer* is the exported `.qfdm` run by the runtime (bit-exact with the boards), *fake-quant* the "
    "training graph. W/A/attention bits in the second column.\n"
)
out.append("| model | bits | observer | fake-quant | integer | same prediction |")
out.append("|---|---|---|---:|---:|---:|")
out.append(f"| full precision | 32 | | {100 * fp['test_acc']:.2f} | | |")
for name, _, minmax_run, omse_run, bits in ROWS:
    for observer, run in (("minmax", minmax_run), ("omse", omse_run)):
        n, fake, integer, same = export_line(run)
        out.append(f"| {name} | {bits} | {observer} | {fake} | {integer} | {same}% |")
for name, run in (("QAT from FQ-ViT", "qat"), ("QFD (4-bit teacher feature) from FQ-ViT", "qfd")):
    n, fake, integer, same = export_line(run)
    out.append(f"| {name} | 8/8/4 | | {fake} | {integer} | {same}% |")
out.append("")
out.append("## Below 8 activation bits\n")
out.append(
    "`qfd-host quantize --abits A` (the attention logits stay 8-bit; LIS probabilities 4-bit, linear "
    "ones A-bit). Integer accuracy, fake-quant in brackets:\n"
)
out.append("| activations | observer | MinMax | PTF only | PTF + LIS |")
out.append("|---|---|---:|---:|---:|")
for abits in (8, 6, 5):
    for observer in ("minmax", "omse"):
        cells = []
        for _, method, *_ in ROWS:
            run = f"ptq-{method}" + ("-omse" if observer == "omse" else "") + ("" if abits == 8 else f"-a{abits}")
            _, fake, integer, _ = export_line(run)
            cells.append(f"{integer} ({fake})")
        out.append(f"| {abits} bits | {observer} | " + " | ".join(cells) + " |")
out.append("")

boards = sorted((run_dir / "boards").glob("qemu-*.json"))
if boards:
    out.append("## The FQ-ViT model (PTF + LIS, MinMax observer) on emulated cores\n")
    out.append(
        "`qfd-host run --board B --model ptq-fq-vit/model.qfdm --engine E --samples N`: every output compared "
        "with the host runtime's, bit for bit. Instructions per inference are QEMU's count (median).\n"
    )
    out.append("| board | engine | images | mismatches | device = host accuracy | instructions / inference | flash B | static RAM B | arena B | stack B |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    shares = {}
    for path in boards:
        r = json.loads(path.read_text())
        times = sorted(r["times"])
        median = times[len(times) // 2] if times else 0
        mem = r["memory"]
        stack = r["stack"][0] if r.get("stack") else ""
        acc = f"{100 * r['device_correct'] / max(r['samples'], 1):.1f}% = {100 * r['host_correct'] / max(r['samples'], 1):.1f}%"
        out.append(
            f"| {r['board']} | {r['engine']} | {r['samples']} | {len(r['mismatches'])} | {acc} | {median:,} | "
            f"{mem['flash_bytes']:,} | {mem['ram_static_bytes']:,} | {mem['arena_bytes']:,} | {stack} |"
        )
        per_kind = defaultdict(float)
        for layer in r["layers"]:
            per_kind[layer["kind"]] += layer["time"]
        total = sum(per_kind.values()) or 1.0
        shares[(r["board"], r["engine"])] = {k: v / total for k, v in per_kind.items()}
    out.append("")
    out.append("Share of the time per op kind (generated code):\n")
    keys = [k for k in shares if k[1] == "generated"]
    kinds = sorted({kind for k in keys for kind in shares[k]}, key=lambda kind: -shares[keys[0]].get(kind, 0))
    out.append("| op | " + " | ".join(b for b, _ in keys) + " |")
    out.append("|---|" + "---:|" * len(keys))
    for kind in kinds:
        out.append(f"| {kind} | " + " | ".join(f"{100 * shares[k].get(kind, 0):.1f}%" for k in keys) + " |")
    out.append("")
nucleo = run_dir / "boards" / "nucleo-l4r5zi.txt"
if nucleo.exists():
    out.append("## Fit on a real board\n")
    out.append("`qfd-host run --board nucleo-l4r5zi --model ptq-fq-vit/model.qfdm --build-only`:\n")
    out.append("```text\n" + nucleo.read_text().strip() + "\n```\n")
report.write_text("\n".join(out) + "\n")
print(f"wrote {report}")
