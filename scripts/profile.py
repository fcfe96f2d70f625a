"""Attributes QEMU's executed instructions to functions and source lines (see scripts/profile.sh).

blocks.log (-d in_asm) gives each translated block's instruction addresses; exec.log (-d exec) gives how
often each block ran. Every instruction of a block counts once per run of the block.
"""
import collections
import re
import subprocess
import sys

work, symbolizer, lines = sys.argv[1], sys.argv[2], int(sys.argv[3])

blocks = collections.defaultdict(list)
start = None
for line in open(f"{work}/blocks.log"):
    m = re.match(r"0x([0-9a-f]+):", line)
    if m:
        addr = int(m.group(1), 16)
        if start is None:
            start = addr
        blocks[start].append(addr)
    else:
        start = None

runs = collections.Counter()
for line in open(f"{work}/exec.log"):
    m = re.search(r"\[[0-9a-f]+/([0-9a-f]+)/", line)
    if m:
        runs[int(m.group(1), 16)] += 1

per_addr = collections.Counter()
for block, n in runs.items():
    for addr in blocks.get(block, []):
        per_addr[addr] += n
total = sum(per_addr.values())
addrs = sorted(per_addr)
query = "\n".join(hex(a) for a in addrs)
if symbolizer.endswith("llvm-symbolizer"):
    cmd = [symbolizer, f"--obj={work}/fw.elf", "--inlining=false", "--functions=short"]
    answers = subprocess.run(cmd, input=query, capture_output=True, text=True).stdout.strip().split("\n\n")
    pairs = [a.strip().split("\n")[:2] for a in answers]
else:
    cmd = [symbolizer, "-e", f"{work}/fw.elf", "-f", "-C", "-s"]
    out = subprocess.run(cmd, input=query, capture_output=True, text=True).stdout.strip().split("\n")
    pairs = [out[i:i + 2] for i in range(0, len(out), 2)]

by_function, by_line = collections.Counter(), collections.Counter()
for addr, pair in zip(addrs, pairs):
    function = pair[0] if pair else "?"
    place = re.sub(r"^.*/(runtime|firmware|link|codegen)/", r"\1/", pair[1] if len(pair) > 1 else "?")
    by_function[function] += per_addr[addr]
    by_line[(place.rsplit(":", 1)[0], function)] += per_addr[addr]

print(f"{total} instructions executed (start-up and the stack scan included)\n")
print("by function")
for function, n in by_function.most_common(lines // 2):
    print(f"{n:>12} {100 * n / total:5.1f}%  {function}")
print("\nby line")
for (place, function), n in by_line.most_common(lines):
    print(f"{n:>12} {100 * n / total:5.1f}%  {place}  ({function[:40]})")
