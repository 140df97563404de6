#!/usr/bin/env python3
"""What each convolution of a MobileNetV2 training step costs, read from CubeCL's autotune cache.

    python3 scripts/tune_cache_report.py CACHE [--size 224] [--batch 128] [--width 1.0]
                                         [--bandwidth 4.8] [--tflops 67] [--top 15]

CACHE: the `tune-cache.tar.xz` a device call brings back (`scripts/device_lib.sh`,
tune_cache_save), a folder holding `environment/default.db`, or that file itself.

Autotuning times every candidate kernel of a convolution on the real tensors before it picks
one, and CubeCL keeps those timings (median of its trial runs, device time) in its cache beside
the choice. So every device call that tunes a new shape also measures, for free, what Burn's
convolutions (forward, input gradient, weight gradient: im2col + matmul, split matmuls, direct
kernels) cost on that shape, without a profiling run. This script rebuilds the layer list of
torchvision's MobileNetV2 at the given input size, batch and width, finds each dense
convolution's three entries (the depthwise ones run the project's own kernels, which are not
tuned), and prints the winner's time beside a roofline bound: max(bytes read and written once /
bandwidth, FLOPs / FP32 peak) with the defaults of an H200 (4.8 TB/s, 67 TFLOP/s FP32 without
tensor cores; an H100 SXM: 3.35 and 67).

Calibration: CubeCL keys a shape by its sizes rounded up to powers of two (channels, batch and
spatial size), and an entry times the whole candidate (its layout copies, matmul and split sum)
alone, from its first launch to its last. On the H100 at 28 px / batch 256, where each entry is
10–400 µs, the entries sum to 13.5 ms per step where the profiling log of the same build showed
4.9 ms of matmul, direct-convolution and reduction kernels plus ≤ 0.9 ms of layout copies
(docs/performance.md, Eleventh session): there, read the totals as upper bounds, 2–3x high. At
224 px the entries are 0.1–2.4 ms each, so a fixed cost per entry weighs less. Where two cached
shapes share a rounded key the entry tuned last is used (a later device call tuned the larger
shapes; each call's cache carries the earlier ones' entries).
"""
import argparse
import collections
import datetime
import json
import math
import os
import sqlite3
import struct
import sys
import tarfile
import tempfile


def cbor_decode(b, i=0):
    """One CBOR item of `b` at `i` -> (value, next index). Enough of RFC 8949 for CubeCL's cache."""
    head = b[i]
    major, info = head >> 5, head & 31
    i += 1
    if major == 7:
        simple = {20: False, 21: True, 22: None, 23: None}
        if info in simple:
            return simple[info], i
        width = {25: 2, 26: 4, 27: 8}[info]
        return struct.unpack({2: ">e", 4: ">f", 8: ">d"}[width], b[i:i + width])[0], i + width
    if info < 24:
        arg = info
    else:
        width = {24: 1, 25: 2, 26: 4, 27: 8}[info]
        arg, i = int.from_bytes(b[i:i + width], "big"), i + width
    if major == 0:
        return arg, i
    if major == 1:
        return -1 - arg, i
    if major == 2:
        return bytes(b[i:i + arg]), i + arg
    if major == 3:
        return b[i:i + arg].decode(), i + arg
    if major == 4:
        out = []
        for _ in range(arg):
            item, i = cbor_decode(b, i)
            out.append(item)
        return out, i
    if major == 5:
        out = {}
        for _ in range(arg):
            key, i = cbor_decode(b, i)
            out[key if isinstance(key, (str, int)) else json.dumps(key)], i = cbor_decode(b, i)
        return out, i
    if major == 6:
        return cbor_decode(b, i)
    raise ValueError(f"CBOR major type {major} at byte {i - 1}")


def cbor(blob):
    return cbor_decode(bytes(blob))[0]


def open_db(path):
    """The cache's SQLite file from a tarball, a folder or the file itself."""
    if os.path.isfile(path) and path.endswith((".tar.xz", ".tar.gz", ".tar", ".txz")):
        tmp = tempfile.mkdtemp(prefix="tune-cache-")
        with tarfile.open(path) as tar:
            tar.extractall(tmp, filter="data") if hasattr(tarfile, "data_filter") else tar.extractall(tmp)
        path = tmp
    if os.path.isdir(path):
        found = [os.path.join(d, f) for d, _, files in os.walk(path) for f in files if f == "default.db"]
        if not found:
            sys.exit(f"{path}: no default.db below it (expected CubeCL's cache: environment/default.db)")
        path = found[0]
    if not os.path.isfile(path):
        sys.exit(f"{path}: not found (expected tune-cache.tar.xz, a folder, or default.db)")
    return sqlite3.connect(path)


def seconds(duration):
    return duration["secs"] + duration["nanos"] * 1e-9


def conv_entries(db):
    """{(direction, exact key as JSON): (winner name, winner µs, {name: µs}, tuned when)}."""
    tuned_at = {}
    sessions = {}
    for _, value in db.execute("select key, value from entries where namespace = 'records/v1/sessions'"):
        s = cbor(value)
        sessions[s["id"]] = s["started_unix_ms"] / 1000
    for _, value in db.execute("select key, value from entries where namespace = 'records/v1/autotune'"):
        r = cbor(value)
        start = sessions.get(r["stamp"]["session"], 0) + seconds(r["stamp"]["offset"])
        key = json.dumps(r["record"]["entry"], sort_keys=True)
        tuned_at[(r["record"]["table"], key)] = max(start, tuned_at.get((r["record"]["table"], key), 0))
    out = {}
    for ns, key, value in db.execute("select namespace, key, value from entries where namespace like 'autotune/%conv-%'"):
        direction = ns.rsplit("/", 1)[-1].replace("burn_cubecl-kernel-conv-", "").replace("-tune", "")
        k = cbor(key)
        if "Conv" not in k.get("key", {}):
            continue
        times = {}
        for result in cbor(value).get("results", []):
            ok = result["outcome"].get("Ok")
            if ok:
                times[ok["name"]] = seconds(ok["computation"]["median"]) * 1e6
        if not times:
            continue
        best = min(times, key=times.get)
        exact = json.dumps(k, sort_keys=True)
        out[(direction, exact)] = (best, times[best], times, tuned_at.get((ns, exact), 0))
    return out


def make_divisible(v, divisor=8):
    """torchvision's `_make_divisible` (the channel rounding of the width multiplier)."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenet_layers(size, width):
    """(name, kernel, stride, in channels, out channels, input size) of each convolution."""
    layers, stem = [], make_divisible(32 * width)
    layers.append(("stem", 3, 2, 3, stem, size))
    spatial, cin = (size + 1) // 2, stem
    blocks = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    number = 0
    for t, c, n, s in blocks:
        cout = make_divisible(c * width)
        for i in range(n):
            number += 1
            stride, hidden = (s if i == 0 else 1), cin * t
            if t != 1:
                layers.append((f"b{number}.expand", 1, 1, cin, hidden, spatial))
            layers.append((f"b{number}.dw", 3, stride, hidden, hidden, spatial))
            spatial = (spatial - 1) // stride + 1
            layers.append((f"b{number}.project", 1, 1, hidden, cout, spatial))
            cin = cout
    layers.append(("last", 1, 1, cin, make_divisible(1280 * max(1.0, width)), spatial))
    return layers


def anchor(x):
    """CubeCL's `anchor` at the default autotune level: the next power of two."""
    return 1 << math.ceil(math.log2(x)) if x > 1 else 1


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cache")
    p.add_argument("--size", type=int, default=224, help="input size in pixels (default 224)")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--bandwidth", type=float, default=4.8, help="memory bandwidth, TB/s (H200: 4.8)")
    p.add_argument("--tflops", type=float, default=67.0, help="FP32 peak without tensor cores, TFLOP/s")
    p.add_argument("--top", type=int, default=15, help="rows of the table, costliest first")
    a = p.parse_args()

    entries = conv_entries(open_db(a.cache))
    by_shape = collections.defaultdict(list)
    for (direction, exact), value in entries.items():
        c = json.loads(exact)["key"]["Conv"]
        shape_key = (direction, c["kernel_size"][0], c["stride"][0], c["padding"][0][0], c["in_channels"],
                     c["out_channels"], c["shape"][0], c["batch_size"])
        by_shape[shape_key].append(value)

    rows, missing = [], []
    for name, k, stride, cin, cout, spatial in mobilenet_layers(a.size, a.width):
        if name.endswith(".dw"):
            continue
        out_spatial = (spatial - 1) // stride + 1
        m_in, m_out = a.batch * spatial * spatial, a.batch * out_spatial * out_spatial
        for direction in ("forward", "backward_data", "backward_weight"):
            if direction == "backward_data" and name == "stem":
                continue  # the image needs no gradient
            key = (direction, k, stride, k // 2, anchor(cin), anchor(cout), anchor(spatial), anchor(a.batch))
            found = by_shape.get(key)
            if not found:
                missing.append(f"{name} {direction}")
                continue
            best, us, times, when = max(found, key=lambda v: v[3])
            moved = 4 * (m_in * cin + m_out * cout)
            if direction == "backward_weight":
                moved += 4 * cout * cin * k * k
            bound = max(moved / (a.bandwidth * 1e12), 2 * m_out * cin * cout * k * k / (a.tflops * 1e12)) * 1e6
            rows.append((name, cin, cout, spatial, direction, best, us, bound, when))

    print(f"MobileNetV2 width {a.width}, {a.size} px, batch {a.batch}: dense convolutions in the autotune cache "
          f"(bound: {a.bandwidth} TB/s, {a.tflops} TFLOP/s)")
    totals = collections.defaultdict(lambda: [0.0, 0.0])
    for r in rows:
        totals[r[4]][0] += r[6]
        totals[r[4]][1] += r[7]
    print(f"{'direction':16} {'tuned ms':>9} {'bound ms':>9} {'x bound':>8}")
    for direction, (us, bound) in totals.items():
        print(f"{direction:16} {us / 1e3:9.2f} {bound / 1e3:9.2f} {us / bound:8.1f}")
    all_us, all_bound = sum(t[0] for t in totals.values()), sum(t[1] for t in totals.values())
    if rows:
        print(f"{'all':16} {all_us / 1e3:9.2f} {all_bound / 1e3:9.2f} {all_us / all_bound:8.1f}")
    dates = sorted({datetime.datetime.fromtimestamp(r[8], datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")
                    for r in rows if r[8]})
    if dates:
        print(f"tuned in the device sessions of: {', '.join(dates)} (UTC)")
    print()
    print(f"{'layer':12} {'channels':>10} {'size':>4} {'direction':16} {'winner':24} {'tuned µs':>9} {'bound µs':>9} {'x':>5}")
    for name, cin, cout, spatial, direction, best, us, bound, _ in sorted(rows, key=lambda r: r[7] - r[6])[:a.top]:
        print(f"{name:12} {cin:>4}->{cout:<5} {spatial:>4} {direction:16} {best:24} {us:9.1f} {bound:9.1f} {us / bound:5.1f}")
    if missing:
        print(f"\nnot in the cache ({len(missing)}): {', '.join(missing)}")
    return 0 if rows else 1


if __name__ == "__main__":
    sys.exit(main())
