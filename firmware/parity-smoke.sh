#!/usr/bin/env bash
# Parity smoke test: the firmware in QEMU must print exactly the host runtime's results, bit for bit.
#
#   parity-smoke.sh [<board> [<arch> [<HxWxC> [<bits> [<count>]]]]]   (default: qemu-m4 resnet8 16x16x3 4 5)
#
# 1. tools/ writes a synthetic model, <count> inputs and the host runtime's `result ...` line for each;
# 2. the firmware is built for <board> with that model and those inputs baked in (cpu from the board file);
# 3. it runs in QEMU and its `result` lines, less the instruction counts, are diffed with the host's.
# Exit status 0 only if the firmware exited cleanly and every line matches.
set -euo pipefail
cd "$(dirname "$0")"
board=${1:-qemu-m4} arch=${2:-resnet8} shape=${3:-16x16x3} bits=${4:-4} count=${5:-5}
export CARGO_BUILD_JOBS=${CARGO_BUILD_JOBS:-1}
board_file=../boards/$board.toml
[ -f "$board_file" ] || { echo "no board file $board_file" >&2; exit 2; }
case_dir=$PWD/target/parity/$arch-$shape-w$bits-n$count

# tools/ has its own .cargo/config.toml (host target), which cargo only finds from inside that folder.
(cd tools && cargo run --quiet --release -- "$arch" "$shape" "$bits" "$count" "$case_dir")

field() { sed -nE "s/^$1 *= *\"([^\"]+)\".*/\1/p" "$board_file"; }
triple=$(field target)
cpu=$(field cpu)
# One target dir per board: boards that share a triple (M33 and M55) would otherwise rebuild each other.
QFD_BOARD=$board QFD_MODEL=$case_dir/model.qfdm QFD_INPUTS=$case_dir/inputs.bin \
  RUSTFLAGS="-C target-cpu=$cpu" \
  cargo build --quiet --release --target "$triple" --target-dir "target/$board"

log=$case_dir/$board.log
start=$(date +%s.%N)
./run-qemu.sh "$board" "target/$board/$triple/release/qfd-firmware" | tee "$log" && status=0 || status=$?
awk -v a="$start" -v b="$(date +%s.%N)" -v n="$count" \
  'BEGIN { printf "qemu wall time: %.2f s for %d inferences, start-up included\n", b - a, n }'
[ "$status" -eq 0 ] || { echo "FAIL: $board firmware exited with status $status" >&2; exit 1; }

grep '^result ' "$log" | sed 's/ instructions=.*//' >"$case_dir/$board.txt"
if diff -u "$case_dir/expected.txt" "$case_dir/$board.txt"; then
  echo "PARITY OK: $board $arch $shape W${bits}A${bits}, $count inputs match the host runtime"
else
  echo "FAIL: $board output differs from the host runtime (above)" >&2
  exit 1
fi
