#!/usr/bin/env bash
# Runs a firmware ELF on the QEMU machine its board file names, with semihosting for output and exit status
# and `-icount shift=0` so SysTick counts guest instructions (see src/timer.rs).
#
#   run-qemu.sh <board> <elf>     e.g. run-qemu.sh qemu-m55 target/thumbv8m.main-none-eabihf/release/qfd-firmware
#   run-qemu.sh <elf>             board from $QFD_BOARD (default qemu-m4): the form cargo's runner uses
#
# Exit status: the firmware's (0 = success), 124 if it ran past $QFD_QEMU_TIMEOUT seconds (default 120).
set -euo pipefail
if [ $# -eq 1 ]; then set -- "${QFD_BOARD:-qemu-m4}" "$1"; fi
[ $# -eq 2 ] || { echo "usage: $0 [<board>] <elf>" >&2; exit 2; }
board_file="$(dirname "$0")/../boards/$1.toml"
[ -f "$board_file" ] || { echo "$0: no board file $board_file" >&2; exit 2; }

# Board files write the QEMU settings on one line: run = { qemu = { machine = "...", cpu = "..." } }
run_line=$(grep -E '^run *= *\{ *qemu *=' "$board_file" || true)
[ -n "$run_line" ] || { echo "$0: board $1 does not run in QEMU" >&2; exit 2; }
machine=$(sed -E 's/.*machine *= *"([^"]+)".*/\1/' <<<"$run_line")
cpu=$(sed -E 's/.*cpu *= *"([^"]+)".*/\1/' <<<"$run_line")

exec timeout "${QFD_QEMU_TIMEOUT:-120}" qemu-system-arm -machine "$machine" -cpu "$cpu" -nographic \
  -monitor none -serial none -semihosting-config enable=on,target=native -icount shift=0 -kernel "$2"
