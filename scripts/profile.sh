#!/usr/bin/env bash
# Where the instructions of one inference go, per function and per source line, on an emulated board.
#
#   scripts/profile.sh <board> <model.qfdm> [lines]     e.g. scripts/profile.sh qemu-m4 resnet8.qfdm 40
#
# Builds the firmware as `qfd-host bench` does, writes one pseudo-random request with the `link_requests`
# example, runs QEMU twice (once logging every executed block, once logging each block's instructions),
# and attributes every executed instruction to its function and line (llvm-symbolizer or addr2line from
# binutils). Start-up work (stack painting, the stack scan after the run) is counted too and shows as
# firmware/src/stack.rs. Needs python3. Work files go to target/profile/.
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 2 ] || { echo "usage: $0 <board> <model.qfdm> [lines]" >&2; exit 2; }
board="$1"; model="$(realpath "$2")"; lines="${3:-40}"
board_file="boards/$board.toml"
[ -f "$board_file" ] || { echo "$0: no board file $board_file (qfd-host boards lists them)" >&2; exit 2; }
run_line=$(grep -E '^run *= *\{ *qemu *=' "$board_file" || true)
[ -n "$run_line" ] || { echo "$0: $board does not run in QEMU" >&2; exit 2; }
machine=$(sed -E 's/.*machine *= *"([^"]+)".*/\1/' <<<"$run_line")
cpu=$(sed -E 's/.*cpu *= *"([^"]+)".*/\1/' <<<"$run_line")
target=$(sed -nE 's/^target *= *"([^"]+)".*/\1/p' "$board_file")
symbolizer=$(command -v llvm-symbolizer || command -v addr2line || true)
[ -n "$symbolizer" ] || { echo "$0: needs llvm-symbolizer or addr2line (apt-get install llvm or binutils)" >&2; exit 2; }

cargo build --release -p qfd-host --example link_requests
work=target/profile; mkdir -p "$work"
target/release/qfd-host bench --board "$board" --model "$model" --samples 1 >/dev/null
cp "firmware/target/$target/release/qfd-firmware" "$work/fw.elf"
target/release/examples/link_requests "$model" 1 "$work/qfd-link.in"
qemu=(qemu-system-arm -machine "$machine" -cpu "$cpu" -nographic -monitor none -serial none
      -semihosting-config enable=on,target=native -icount shift=0 -kernel fw.elf)
(cd "$work" && : > qfd-link.out && "${qemu[@]}" -d exec,nochain -D exec.log >/dev/null 2>&1 || true)
(cd "$work" && : > qfd-link.out && "${qemu[@]}" -d in_asm,nochain -D blocks.log >/dev/null 2>&1 || true)
python3 scripts/profile.py "$work" "$symbolizer" "$lines"
