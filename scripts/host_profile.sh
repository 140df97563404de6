#!/usr/bin/env bash
# Where the host threads of a Burn training step spend their CPU time: a sampling profile of
# `derma-bench --modes step` (linux `perf`, DWARF call stacks), each sample symbolised with its
# inlined frames (llvm-addr2line) and attributed per thread to "spinning on a full CubeCL
# channel" (the producer side of cubecl_common's device channel, see
# crates/derma-bench/src/threads.rs) or to the crate doing the work.
#
#   # a release build with line tables, in its own target folder (~40 min cold on 2 cores):
#   CARGO_PROFILE_RELEASE_DEBUG=line-tables-only CARGO_TARGET_DIR=../target-prof \
#     cargo build --release -p derma-bench
#   BIN=../target-prof/release/derma-bench scripts/host_profile.sh [derma-bench flags...]
#
# Default flags: --backend wgpu-software --sizes 28:8 --modes step --steps 45 --warmup-steps 2.
# DELAY (ms, default 65000) skips the process start and warm-up: set it past the warm-up the
# run prints (with the autotune cache already filled by an earlier run, ~45 s here). Needs
# perf and llvm-addr2line; writes its files to OUT (default target/host-profile/).
set -euo pipefail
bin=${BIN:-target/release/derma-bench}
out=${OUT:-target/host-profile}
delay=${DELAY:-65000}
[ -x "$bin" ] || { echo "no binary at $bin (BIN=...): see the build command at the top of $0"; exit 2; }
for t in perf llvm-addr2line nm python3; do
  command -v "$t" >/dev/null || { echo "$t not found: $0 needs it"; exit 2; }
done
[ $# -gt 0 ] || set -- --backend wgpu-software --sizes 28:8 --modes step --steps 45 --warmup-steps 2
mkdir -p "$out"
perf record -F 99 -m 1024 --call-graph dwarf,16384 -D "$delay" -o "$out/perf.data" "$bin" "$@" 2>&1 | grep -v XDG_RUNTIME_DIR
perf script -i "$out/perf.data" -G -F comm,tid,ip,sym,symoff,dso --no-demangle 2>/dev/null >"$out/samples.txt"
nm --defined-only "$bin" | awk 'NF == 3 {print $3, $1}' >"$out/nm.txt"
python3 - "$bin" "$out" <<'EOF'
import collections, re, subprocess, sys
binary, out = sys.argv[1], sys.argv[2]
name = binary.rsplit("/", 1)[-1]
nm = {}
for line in open(f"{out}/nm.txt"):
    p = line.split()
    if len(p) == 2:
        nm[p[0]] = int(p[1], 16)
rows, addrs = [], {}
for line in open(f"{out}/samples.txt"):
    m = re.match(r"\s*(\S+)\s+(\d+)\s+([0-9a-f]+)\s+(\S+)\s+\((.*)\)", line)
    if not m:
        continue
    comm, _, _, sym, dso = m.groups()
    key = None
    if dso.endswith("/" + name) and "+0x" in sym:
        fn, off = sym.rsplit("+0x", 1)
        if fn in nm:
            key = nm[fn] + int(off, 16)
            addrs[key] = None
    rows.append((comm, dso.rsplit("/", 1)[-1], key))
if not rows:
    sys.exit(f"no samples in {out}/samples.txt: was DELAY past the end of the run?")
# Inlined frames of every sampled address, innermost first: function, file:line pairs.
text = subprocess.run(["llvm-addr2line", "-a", "-f", "-i", "-C", "-e", binary], capture_output=True, text=True,
                      input="\n".join(hex(a) for a in sorted(addrs))).stdout
frames, cur = {}, None
for line in text.split("\n"):
    if re.fullmatch(r"0x[0-9a-f]+", line):
        cur = int(line, 16)
        frames[cur] = []
    elif line and cur is not None:
        frames[cur].append(line)
CRATES = ["burn-autodiff", "burn-cubecl-fusion", "burn-fusion", "burn-cubecl", "burn-optim", "burn-nn", "burn-tensor",
          "burn-ir", "cubecl-server", "cubecl-runtime", "cubecl-wgpu", "cubecl-opt", "cubecl-core", "wgpu-core", "wgpu-hal",
          "naga", "cubecl-common", "derma-"]
def category(dso, key):
    if key is None:
        return f"(outside the binary: {dso})"
    f = frames.get(key, [])
    fns = f[0::2]
    if any(x.startswith("enqueue<cubecl_common::device::handle::channel") for x in fns):
        return "spinning: the next thread's channel is full"
    # The innermost frame that belongs to one of ours or Burn/CubeCL/wgpu's crates (std and
    # collection frames inside it count for it).
    for path in f[1::2]:
        for c in CRATES:
            if re.search(rf"/{c}(-\d|/)" if c != "derma-" else r"/work/[^ ]*/crates/derma-", path):
                return c if c != "derma-" else "this project"
    return "std / other"
by = collections.defaultdict(collections.Counter)
for comm, dso, key in rows:
    by[comm][category(dso, key)] += 1
print(f"\nhost profile of {binary} {' '.join(sys.argv[3:])}: {len(rows)} samples at 99 Hz")
for comm, c in sorted(by.items(), key=lambda kv: -sum(kv[1].values())):
    n = sum(c.values())
    if n < 20:
        continue
    print(f"\n{comm}: {n} samples ({n / 99:.1f} CPU s)")
    for k, v in c.most_common(12):
        print(f"  {100 * v / n:5.1f}%  {k}")
EOF
