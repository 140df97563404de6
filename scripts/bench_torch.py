#!/usr/bin/env python3
"""The PyTorch side of derma-bench: the same measurements, same flags, same JSON layout.

torchvision mobilenet_v2(width_mult, num_classes=7), AdamW (lr 1e-3, weight decay 1e-4,
eps 1e-5 as Burn's), cross-entropy, eager mode, cudnn.benchmark. Per SIZE:BATCH:

- step:   training steps on one batch resident on the device;
- e2e:    DataLoader (worker processes, augmentation on uint8 tensors, pinned memory,
          non_blocking copies) + step;
- loader: the DataLoader alone;
- infer:  model.eval() forward under torch.inference_mode() on a resident batch;
- memory: torch.cuda.max_memory_allocated / max_memory_reserved over the configuration
          (peaks reset at its start).

Timers start and stop on a synchronised device; nothing is read back inside a timed loop.

    python3 scripts/bench_torch.py --device cuda --sizes 28:256,224:128 --json torch.json
    python3 scripts/bench_torch.py --device cpu --sizes 28:64 --steps 10
"""
import argparse
import gc
import json
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

MEAN = [0.485, 0.456, 0.406]
STD = [0.229, 0.224, 0.225]
MODES = ("step", "e2e", "loader", "infer")


def parse_sizes(s):
    out = []
    for part in filter(None, (p.strip() for p in s.split(","))):
        size, _, batch = part.partition(":")
        if not size.isdigit() or not batch.isdigit() or int(size) == 0 or int(batch) == 0:
            raise argparse.ArgumentTypeError(f"`{part}`: expected SIZE:BATCH with positive integers, e.g. 28:256")
        out.append((int(size), int(batch)))
    if not out:
        raise argparse.ArgumentTypeError("no SIZE:BATCH given")
    return out


def parse_modes(s):
    modes = []
    for m in filter(None, (p.strip() for p in s.split(","))):
        if m not in MODES:
            raise argparse.ArgumentTypeError(f"unknown mode `{m}` (expected {', '.join(MODES)})")
        if m not in modes:
            modes.append(m)
    if not modes:
        raise argparse.ArgumentTypeError("no mode given")
    return modes


def transform(preset, size):
    """torchvision equivalent of derma-data's presets (bilinear, no antialias, as derma-data samples)."""
    bilinear = v2.InterpolationMode.BILINEAR
    if preset == "none":
        ops = [v2.Resize((size, size), interpolation=bilinear, antialias=False)]
    elif preset == "natural":
        ops = [
            v2.RandomResizedCrop(size, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3), interpolation=bilinear, antialias=False),
            v2.RandomHorizontalFlip(0.5),
            v2.RandomRotation(15, interpolation=bilinear),
            v2.ColorJitter(brightness=0.2, contrast=0.2, saturation=0.2, hue=0.02),
        ]
    elif preset == "mammo":
        ops = [
            v2.RandomResizedCrop(size, scale=(0.95, 1.0), ratio=(0.95, 1.05), interpolation=bilinear, antialias=False),
            v2.RandomAffine(degrees=7, translate=(0.05, 0.05), scale=(0.95, 1.05), interpolation=bilinear),
            v2.ColorJitter(brightness=0.1, contrast=0.1),
        ]
    else:
        raise ValueError(preset)
    return v2.Compose(ops + [v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)])


class ImageSet(torch.utils.data.Dataset):
    """uint8 images [n, h, w, c] (c = 1 or 3) with labels; items are augmented [3, size, size] floats."""

    def __init__(self, images, labels, tf):
        self.x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # [n, c, h, w] view
        self.y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        self.tf = tf

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        img = self.x[i]
        if img.shape[0] == 1:
            img = img.expand(3, -1, -1)
        return self.tf(img), self.y[i]


def load_data(spec, size, n_synthetic, classes, seed):
    """(images [n, h, w, c] uint8, labels, classes) for one size."""
    if spec == "synthetic":
        rng = np.random.default_rng(seed)
        images = rng.integers(0, 256, size=(n_synthetic, size, size, 3), dtype=np.uint8)
        return images, np.arange(n_synthetic) % classes, classes
    if spec.startswith("npz:") and len(spec) > 4:
        d = np.load(spec[4:])
        images = d["train_images"]
        if images.ndim == 3:
            images = images[..., None]
        labels = d["train_labels"].reshape(-1).astype(np.int64)
        return images, labels, max(classes, int(labels.max()) + 1)
    raise SystemExit(f"--data `{spec}`: expected synthetic or npz:PATH")


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def measurement(steps, images, seconds, loss, warmup_seconds):
    seconds = max(seconds, 1e-12)
    return {
        "steps": steps,
        "images": images,
        "seconds": seconds,
        "images_per_second": images / seconds,
        "ms_per_step": 1e3 * seconds / max(steps, 1),
        "mean_loss": loss,
        # the untimed warm-up and its closing sync (cudnn.benchmark's search, allocator growth),
        # as derma-bench's warmup_seconds
        "warmup_seconds": warmup_seconds,
    }


def train_step(model, opt, x, y):
    loss = F.cross_entropy(model(x), y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.detach()


def check_loss(mode, v):
    if not np.isfinite(v):
        raise SystemExit(f"{mode}: the training loss is {v} (diverged)")
    return v


def measure_step(model, opt, x, y, warmup, steps, dev):
    b = len(y)
    w0 = time.perf_counter()
    for _ in range(warmup):
        train_step(model, opt, x, y)
    sync(dev)
    warm = time.perf_counter() - w0
    running = torch.zeros((), device=dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        running += train_step(model, opt, x, y) * b
    sync(dev)
    seconds = time.perf_counter() - t0
    return measurement(steps, steps * b, seconds, check_loss("step", running.item() / (steps * b)), warm)


def make_loader(ds, batch, batches, workers, prefetch, dev):
    order = [i % len(ds) for i in range(batches * batch)]
    kw = dict(batch_size=batch, sampler=order, num_workers=workers, pin_memory=dev.type == "cuda", drop_last=True)
    if workers > 0:
        kw["prefetch_factor"] = prefetch
    return torch.utils.data.DataLoader(ds, **kw)


def measure_e2e(model, opt, ds, a, batch, dev):
    # The workers fill their queues (workers x prefetch_factor batches) during the warm-up's
    # sync: those are drained untimed too, so the clock sees the steady state, not a backlog
    # served at step speed (derma-bench drains its prefetch queue the same way).
    drain = a.workers * a.prefetch if a.workers > 0 else 0
    it = iter(make_loader(ds, batch, a.warmup_steps + drain + a.steps, a.workers, a.prefetch, dev))

    def run(n, running):
        seen = 0
        for _ in range(n):
            x, y = next(it)
            x, y = x.to(dev, non_blocking=True), y.to(dev, non_blocking=True)
            running += train_step(model, opt, x, y) * len(y)
            seen += len(y)
        return seen

    w0 = time.perf_counter()
    run(a.warmup_steps, torch.zeros((), device=dev))
    sync(dev)
    # The warm-up time ends here (as derma-bench's): the drain is untimed work of this side's
    # own queue depth, not start-up cost.
    warm = time.perf_counter() - w0
    run(drain, torch.zeros((), device=dev))
    sync(dev)
    running = torch.zeros((), device=dev)
    t0 = time.perf_counter()
    seen = run(a.steps, running)
    sync(dev)
    seconds = time.perf_counter() - t0
    return measurement(a.steps, seen, seconds, check_loss("e2e", running.item() / max(seen, 1)), warm)


def measure_loader(ds, a, batch, dev):
    # As measure_e2e: the workers' queues (workers x prefetch_factor batches, filled while the
    # warm-up batches are taken) are drained untimed, so the clock sees the workers' steady
    # rate, not a backlog; before, 10 warm-up batches of 16 fresh workers left up to 64 ready
    # batches inside a 50-batch window, and PyTorch's loader read slower than its own e2e.
    drain = a.workers * a.prefetch if a.workers > 0 else 0
    w0 = time.perf_counter()
    it = iter(make_loader(ds, batch, a.warmup_steps + drain + a.steps, a.workers, a.prefetch, dev))
    for _ in range(a.warmup_steps):
        next(it)
    warm = time.perf_counter() - w0
    for _ in range(drain):
        next(it)
    t0 = time.perf_counter()
    seen = 0
    for _ in range(a.steps):
        x, y = next(it)
        seen += len(y)
    return measurement(a.steps, seen, time.perf_counter() - t0, None, warm)


def measure_infer(model, x, warmup, steps, dev):
    model.eval()
    acc = torch.zeros((), device=dev)
    with torch.inference_mode():
        w0 = time.perf_counter()
        for _ in range(warmup):
            acc += model(x).sum()
        sync(dev)
        warm = time.perf_counter() - w0
        t0 = time.perf_counter()
        for _ in range(steps):
            acc += model(x).sum()
        sync(dev)
        seconds = time.perf_counter() - t0
    model.train()
    if not np.isfinite(acc.item()):
        raise SystemExit("infer: the logits are not finite")
    return measurement(steps, steps * len(x), seconds, None, warm)


def profile(model, opt, x, y, steps, dev, label):
    """Top kernels of `steps` training steps (torch.profiler), printed to stderr."""
    acts = [torch.profiler.ProfilerActivity.CPU]
    if dev.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    with torch.profiler.profile(activities=acts) as prof:
        for _ in range(steps):
            train_step(model, opt, x, y)
        sync(dev)
    key = "self_device_time_total" if dev.type == "cuda" else "self_cpu_time_total"
    print(f"\n== torch profile, {label}, {steps} steps ==", file=sys.stderr)
    print(prof.key_averages().table(sort_by=key, row_limit=20), file=sys.stderr)


def run_config(a, r, dev, save):
    """Fills the result dict `r` (size, batch given) mode by mode, calling `save()` after each
    one: a run stopped at its deadline keeps the modes that finished. A mode that fails (e.g. a
    DataLoader worker killed at 224 px) is recorded in r["errors"] and the next one runs."""
    size, batch = r["size"], r["batch"]
    images, labels, k = load_data(a.data, size, max(a.synthetic_images, batch), a.classes, a.seed)
    ds = ImageSet(images, labels, transform(a.augment, size))
    first = [ds[i % len(ds)] for i in range(batch)]
    x = torch.stack([f[0] for f in first]).to(dev)
    y = torch.stack([f[1] for f in first]).to(dev)

    torch.manual_seed(a.seed)
    model = torchvision.models.mobilenet_v2(width_mult=a.width, num_classes=k).to(dev)
    model.train()
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, eps=1e-5)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    for mode in MODES:
        if mode not in a.modes:
            continue
        try:
            if mode == "step":
                m = measure_step(model, opt, x, y, a.warmup_steps, a.steps, dev)
            elif mode == "e2e":
                m = measure_e2e(model, opt, ds, a, batch, dev)
            elif mode == "loader":
                m = measure_loader(ds, a, batch, dev)
            else:
                m = measure_infer(model, x, a.warmup_steps, a.steps, dev)
        except Exception as e:  # noqa: BLE001 - recorded, and the other modes still run
            r.setdefault("errors", {})[mode] = f"{type(e).__name__}: {e}"
            print(f"{size}px batch {batch}: {mode} FAILED: {type(e).__name__}: {e}", file=sys.stderr)
            save()
            continue
        r[mode] = m
        loss = f"  loss {m['mean_loss']:.4f}" if m["mean_loss"] is not None else ""
        print(f"{size}px batch {batch}: {mode:<6} {m['images_per_second']:>10.1f} img/s  {m['ms_per_step']:>9.2f} ms/step  warm-up {m['warmup_seconds']:>7.1f} s{loss}", file=sys.stderr)
        save()
    if dev.type == "cuda":
        r["memory"] = {
            "in_use_bytes": torch.cuda.memory_allocated(dev),
            "reserved_bytes": torch.cuda.memory_reserved(dev),
            "peak_reserved_bytes": torch.cuda.max_memory_reserved(dev),
            "peak_allocated_bytes": torch.cuda.max_memory_allocated(dev),
        }
    if a.profile_steps > 0:
        profile(model, opt, x, y, a.profile_steps, dev, f"{size}px batch {batch}")
    save()
    del model, opt, x, y
    gc.collect()
    if dev.type == "cuda":
        torch.cuda.empty_cache()


def table(rep):
    def cell(m):
        return "-" if m is None else f"{m['images_per_second']:.1f}"

    lines = [
        f"torch {rep['framework_version']} | {rep['backend']} | width {rep['width']} | data {rep['data']} | "
        f"augment {rep['augment']} | {rep['workers']} workers | {rep['warmup_steps']} warmup + {rep['steps']} timed steps",
        f"{'size':>5} {'batch':>6} {'step img/s':>12} {'e2e img/s':>12} {'loader img/s':>13} {'infer img/s':>12} {'peak MiB':>11} {'alloc MiB':>11}",
    ]
    for r in rep["results"]:
        mem = r["memory"]
        peak = "n/a" if mem is None else f"{mem['peak_reserved_bytes'] / 2**20:.0f}"
        alloc = "n/a" if mem is None else f"{mem['peak_allocated_bytes'] / 2**20:.0f}"
        lines.append(
            f"{r['size']:>5} {r['batch']:>6} {cell(r['step']):>12} {cell(r['e2e']):>12} {cell(r['loader']):>13} "
            f"{cell(r['infer']):>12} {peak:>11} {alloc:>11}"
        )
    if any(r["memory"] is None for r in rep["results"]):
        lines.append("peak MiB: n/a on the CPU (no allocator statistics)")
    else:
        lines.append("peak MiB: torch.cuda.max_memory_reserved; alloc MiB: max_memory_allocated (per configuration)")
    return "\n".join(lines)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--sizes", type=parse_sizes, default=parse_sizes("28:256,224:128"))
    p.add_argument("--width", type=float, default=1.0)
    p.add_argument("--classes", type=int, default=7)
    p.add_argument("--warmup-steps", type=int, default=10)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--modes", type=parse_modes, default=parse_modes("step,e2e,infer"))
    p.add_argument("--data", default="synthetic", help="synthetic | npz:PATH")
    p.add_argument("--synthetic-images", type=int, default=2048)
    p.add_argument("--augment", default="natural", choices=["none", "natural", "mammo"])
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader worker processes (default: every core, as Burn's loader uses)")
    p.add_argument("--prefetch", type=int, default=4, help="DataLoader prefetch_factor (batches per worker)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: PyTorch's default)")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--profile-steps", type=int, default=0, help="after measuring, profile this many training steps")
    p.add_argument("--no-tf32", action="store_true", help="FP32 convolutions and matmuls (cuDNN's default is TF32 convolutions; Burn on wgpu is FP32)")
    p.add_argument("--json")
    a = p.parse_args()
    if a.steps < 1 or a.classes < 1 or a.width <= 0:
        p.error("--steps and --classes must be >= 1 and --width > 0")
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    dev = torch.device(a.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit("--device cuda: no CUDA device")
        torch.backends.cudnn.benchmark = True
        if a.no_tf32:
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        tf32 = f"TF32 convolutions {'on' if torch.backends.cudnn.allow_tf32 else 'off'}, TF32 matmuls {'on' if torch.backends.cuda.matmul.allow_tf32 else 'off'}"
        backend = f"cuda {torch.version.cuda}, cudnn {torch.backends.cudnn.version()}, cudnn.benchmark, eager, {tf32}, {torch.cuda.get_device_name(dev)}"
    else:
        backend = f"cpu, {torch.get_num_threads()} threads, eager"
    rep = {
        "framework": "torch",
        "framework_version": f"{torch.__version__} / torchvision {torchvision.__version__}",
        "backend": backend,
        "width": a.width,
        "classes": a.classes,
        "data": a.data,
        "augment": a.augment,
        "upload": "pin_memory + non_blocking",
        "workers": a.workers,
        "warmup_steps": a.warmup_steps,
        "steps": a.steps,
        "lr": a.lr,
        "pid": os.getpid(),
        "results": [],
    }
    print(f"bench_torch: {backend} (pid {rep['pid']})", file=sys.stderr)

    def save():
        # Atomic: a run killed mid-write leaves the previous complete file.
        if a.json:
            with open(a.json + ".tmp", "w") as f:
                json.dump(rep, f, indent=2)
                f.write("\n")
            os.replace(a.json + ".tmp", a.json)

    for size, batch in a.sizes:
        r = {"size": size, "batch": batch, "step": None, "e2e": None, "loader": None, "infer": None, "memory": None}
        rep["results"].append(r)
        run_config(a, r, dev, save)
    print(table(rep))


if __name__ == "__main__":
    main()
