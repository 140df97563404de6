#!/usr/bin/env python3
"""Per-step kernel times from a CubeCL profiling log (the `[profiling.logger]` of cubecl.toml).

    python3 scripts/profile_summary.py LOG [--steps N] [--top K]

CubeCL writes a summary table at every synchronisation; the last one covers the timed steps of
`derma-bench --modes step` (N of them, 5 in `bench_gpu.sh run profile`). Its rows are kernels
(level "basic": one line each; level "full" spreads a row over many lines and is not read here).
Printed: the kernels grouped by family (the name up to its hash or first
`|`: `WeightGradKernel`, `MatmulEntry`, `CopyKernelPack`, ...) with ms and launches per step and
their share, then the K costliest rows with names cut to fit a terminal. Kernel time is summed
over serialised launches (profiling waits for each), so the total exceeds a step's wall time
when kernels would otherwise overlap.
"""
import argparse
import re
import sys

UNITS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def duration_ms(text):
    m = re.fullmatch(r"([0-9.]+)\s*(ns|µs|us|ms|s)", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def family(name):
    """`MatmulEntry | TensorArgs | ...` -> MatmulEntry; `TapSumKernel_1573bbce` -> TapSumKernel."""
    head = name.split("|")[0].strip()
    return re.sub(r"_[0-9a-f]{8}$", "", head) or name[:40]


def last_table(lines):
    heads = [i for i, l in enumerate(lines) if "Num Computed" in l]
    if not heads:
        return None
    rows = []
    for line in lines[heads[-1] + 1:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        # A name may itself hold `|` (matmul kernels): the last three cells are the numbers.
        if len(cells) < 4 or not cells[-2].isdigit():
            continue
        name = " | ".join(cells[:-3])
        if name == "Total":
            continue
        rows.append((name, duration_ms(cells[-3]), int(cells[-2])))
    return rows


def short(name, width):
    name = re.sub(r"\s+", " ", name)
    if "MatmulEntry" in name:
        # Keep the family's distinguishing words (e.g. SimpleMatmulFamily, DoubleBuffering...).
        words = [w for w in re.split(r"[ |]+", name) if w.endswith("Family") or w.startswith("MatmulEntry")]
        kernel = re.search(r"_([0-9a-f]{8})$", name)  # the variant's hash tells rows apart
        name = " ".join(dict.fromkeys(words)) + (f" _{kernel.group(1)}" if kernel else "")
    return name if len(name) <= width else name[: width - 1] + "…"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("log")
    ap.add_argument("--steps", type=int, default=5, help="timed steps the last table covers (default 5)")
    ap.add_argument("--top", type=int, default=25, help="costliest rows to list (default 25)")
    a = ap.parse_args()
    try:
        lines = open(a.log, encoding="utf-8", errors="replace").read().splitlines()
    except OSError as e:
        sys.exit(f"{a.log}: {e}")
    rows = last_table(lines)
    if not rows:
        sys.exit(f"{a.log}: no summary table with kernel rows")
    total = sum(r[1] for r in rows)
    n = max(a.steps, 1)
    print(f"{a.log}: {total / n:.2f} ms of kernel time and {sum(r[2] for r in rows) / n:.0f} launches per step ({n} steps)")
    fams = {}
    for name, ms, count in rows:
        f = fams.setdefault(family(name), [0.0, 0])
        f[0] += ms
        f[1] += count
    print(f"{'family':<40} {'ms/step':>9} {'launches/step':>14} {'share':>6}")
    for f, (ms, count) in sorted(fams.items(), key=lambda kv: -kv[1][0]):
        print(f"{f[:40]:<40} {ms / n:9.3f} {count / n:14.1f} {100 * ms / total:5.1f}%")
    print(f"\n{'kernel (costliest rows)':<90} {'ms/step':>9} {'launches':>8} {'µs each':>8}")
    for name, ms, count in sorted(rows, key=lambda r: -r[1])[: a.top]:
        print(f"{short(name, 90):<90} {ms / n:9.3f} {count / n:8.1f} {1000 * ms / max(count, 1):8.1f}")


if __name__ == "__main__":
    main()
