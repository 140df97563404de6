#!/usr/bin/env python3
"""Synthetic 16-bit mammography-like lesion crops, for checking the mammo pipeline end to end.

    python3 scripts/make_mammo_crops.py --n 400 --out /tmp/mammo_crops
    derma-train --config configs/mammo.toml --data-dir /tmp/mammo_crops
    derma-train --config configs/mammo.toml --dataset csv --manifest /tmp/mammo_crops/manifest.csv

What it draws (all values 12-bit, 0..4095, stored in 16-bit files):

- background: parenchyma-like texture, power-law (1/f^3, as measured on mammograms) noise
  plus a smooth density gradient, a few faint fibrous strands and quantum-like pixel noise;
  sizes vary (--min-size..--max-size, height and width drawn separately, so non-square);
- malignant crops: one irregular mass (boundary radius modulated by random harmonics, sharp
  edge) with 5-12 thin bright spicules of 1.5-3x its radius; radius 2-6% of the shorter side;
- benign crops: with probability --benign-blob-fraction, one round/oval smooth-edged mass of
  the same size range and contrast (so shape, not brightness, tells them apart);
- lesion centres lie at least 3 radii + 5% of the side away from every border.

Patients have 1..--max-per-patient crops (views of the same lesion, so one label per patient);
whole patients are made malignant until about --positive-fraction of the crops are.
About --tiff-fraction of the crops are written as 16-bit TIFF, the rest as 16-bit PNG.
Needs numpy and Pillow, and tifffile for the TIFF crops (`--tiff-fraction 0` does without it).

Output (DIR = --out):
    DIR/benign/P0001_0.png|tif, DIR/malignant/...   (one folder per class: --dataset folder)
    DIR/manifest.csv   path,label,patient_id        (paths relative to DIR: --dataset csv)
    DIR/lesions.csv    path,cx,cy,r,kind            (lesion centre and mass radius in source
                                                    pixels; kind = malignant | benign)
Seeded (--seed): the same arguments write the same files.
"""
import argparse
import csv
import os

import numpy as np
from PIL import Image

MAX12 = 4095


def power_law_noise(rng, h, w, beta=3.0):
    """Zero-mean, unit-std noise with power spectrum ~ 1/f^beta."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    f = np.sqrt(fx * fx + fy * fy)
    f[0, 0] = 1.0
    spectrum = (rng.standard_normal((h, w // 2 + 1)) + 1j * rng.standard_normal((h, w // 2 + 1))) / f ** (beta / 2)
    spectrum[0, 0] = 0.0
    field = np.fft.irfft2(spectrum, s=(h, w))
    return (field - field.mean()) / (field.std() + 1e-12)


def segment_distance(yy, xx, y0, x0, y1, x1):
    """Distance of each pixel to the segment (y0,x0)-(y1,x1), and the position t in [0,1] along it."""
    dy, dx = y1 - y0, x1 - x0
    length2 = dy * dy + dx * dx + 1e-12
    t = np.clip(((yy - y0) * dy + (xx - x0) * dx) / length2, 0.0, 1.0)
    return np.hypot(yy - (y0 + t * dy), xx - (x0 + t * dx)), t


def background(rng, h, w):
    tissue = power_law_noise(rng, h, w)
    # Smooth density gradient in a random direction (denser towards the chest wall).
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / w + np.sin(angle) * yy / h)
    ramp = (ramp - ramp.min()) / (np.ptp(ramp) + 1e-12)
    base = rng.uniform(1100, 1700)
    img = base + 300 * tissue + rng.uniform(200, 600) * ramp
    # A few faint fibrous strands (Cooper's ligaments, ducts).
    for _ in range(rng.integers(2, 6)):
        y0, x0 = rng.uniform(0, h), rng.uniform(0, w)
        a = rng.uniform(0, np.pi)
        length = rng.uniform(0.3, 0.8) * max(h, w)
        d, _ = segment_distance(yy, xx, y0, x0, y0 + length * np.sin(a), x0 + length * np.cos(a))
        img += rng.uniform(40, 120) * np.exp(-((d / rng.uniform(1.0, 2.5)) ** 2))
    return img, yy, xx


def malignant_mass(rng, yy, xx, cy, cx, r, contrast):
    """Irregular mass with spicules, added intensity."""
    rho = np.hypot(yy - cy, xx - cx)
    phi = np.arctan2(yy - cy, xx - cx)
    boundary = np.ones_like(rho)
    for k in range(2, 8):
        boundary += rng.uniform(0.0, 0.35) / k * np.cos(k * phi + rng.uniform(0, 2 * np.pi))
    boundary *= r
    edge = 0.06 * r + 0.5
    mass = 1.0 / (1.0 + np.exp(-(boundary - rho) / edge))
    out = contrast * mass * (0.85 + 0.15 * np.exp(-((rho / r) ** 2)))
    for _ in range(rng.integers(5, 13)):
        a = rng.uniform(0, 2 * np.pi)
        length = rng.uniform(1.5, 3.0) * r
        d, t = segment_distance(yy, xx, cy, cx, cy + length * np.sin(a), cx + length * np.cos(a))
        width = rng.uniform(0.8, 1.6)
        out += 0.8 * contrast * np.exp(-((d / width) ** 2)) * (1.0 - t) * (rho > 0.8 * r)
    return out


def benign_mass(rng, yy, xx, cy, cx, r, contrast):
    """Round/oval mass with a smooth edge, added intensity."""
    aspect = rng.uniform(0.75, 1.0)
    a = rng.uniform(0, np.pi)
    u = (xx - cx) * np.cos(a) + (yy - cy) * np.sin(a)
    v = -(xx - cx) * np.sin(a) + (yy - cy) * np.cos(a)
    rho = np.hypot(u, v / aspect)
    edge = 0.12 * r + 0.5
    return contrast * 1.0 / (1.0 + np.exp(-(r - rho) / edge))


def make_crop(rng, args, kind):
    h = int(rng.integers(args.min_size, args.max_size + 1))
    w = int(rng.integers(args.min_size, args.max_size + 1))
    img, yy, xx = background(rng, h, w)
    lesion = None
    if kind is not None:
        side = min(h, w)
        r = rng.uniform(0.02, 0.06) * side
        margin = 3 * r + 0.05 * side
        cy = rng.uniform(margin, h - margin)
        cx = rng.uniform(margin, w - margin)
        contrast = rng.uniform(350, 700)
        draw = malignant_mass if kind == "malignant" else benign_mass
        img += draw(rng, yy, xx, cy, cx, r, contrast)
        lesion = (cx, cy, r)
    img += rng.normal(0.0, 12.0, size=img.shape)  # quantum-like noise
    return np.clip(np.rint(img), 0, MAX12).astype(np.uint16), lesion


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output folder (created)")
    p.add_argument("--n", type=int, default=200, help="number of crops (default 200)")
    p.add_argument("--positive-fraction", type=float, default=0.2, help="fraction of malignant crops (default 0.2)")
    p.add_argument("--benign-blob-fraction", type=float, default=0.5,
                   help="fraction of benign crops with a round benign mass (default 0.5)")
    p.add_argument("--max-per-patient", type=int, default=4, help="crops per patient: 1..this (default 4)")
    p.add_argument("--tiff-fraction", type=float, default=0.25, help="fraction written as 16-bit TIFF (default 0.25)")
    p.add_argument("--min-size", type=int, default=300, help="smallest side in pixels (default 300)")
    p.add_argument("--max-size", type=int, default=700, help="largest side in pixels (default 700)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    args = p.parse_args()
    if args.n < 1 or not 0.0 <= args.positive_fraction <= 1.0 or args.max_per_patient < 1:
        p.error("need --n >= 1, 0 <= --positive-fraction <= 1, --max-per-patient >= 1")
    if not 20 <= args.min_size <= args.max_size:
        p.error("need 20 <= --min-size <= --max-size")
    if not 0.0 <= args.tiff_fraction <= 1.0:
        p.error("need 0 <= --tiff-fraction <= 1")
    tifffile = None
    if args.tiff_fraction > 0:
        try:
            import tifffile
        except ImportError:
            p.error("--tiff-fraction > 0 writes TIFF crops with the tifffile package, which is not installed "
                    "(pip install tifffile), or pass --tiff-fraction 0 for PNG only")

    rng = np.random.default_rng(args.seed)
    # Patients and their crop counts, then whole patients made malignant (in random order)
    # while that keeps the malignant count closest to the target.
    sizes = []
    while sum(sizes) < args.n:
        sizes.append(int(min(rng.integers(1, args.max_per_patient + 1), args.n - sum(sizes))))
    target = round(args.n * args.positive_fraction)
    malignant = set()
    count = 0
    for pid in rng.permutation(len(sizes)):
        if abs(count + sizes[pid] - target) < abs(count - target):
            malignant.add(int(pid))
            count += sizes[pid]

    for cls in ("benign", "malignant"):
        os.makedirs(os.path.join(args.out, cls), exist_ok=True)
    manifest, lesions = [], []
    for pid, k_images in enumerate(sizes):
        label = "malignant" if pid in malignant else "benign"
        patient = f"P{pid + 1:04d}"
        for k in range(k_images):
            if label == "malignant":
                kind = "malignant"
            else:
                kind = "benign" if rng.uniform() < args.benign_blob_fraction else None
            img, lesion = make_crop(rng, args, kind)
            ext = "tif" if rng.uniform() < args.tiff_fraction else "png"
            rel = f"{label}/{patient}_{k}.{ext}"
            path = os.path.join(args.out, rel)
            if ext == "tif":
                tifffile.imwrite(path, img)
            else:
                Image.fromarray(img).save(path)  # uint16 -> mode I;16 -> 16-bit grayscale PNG
            manifest.append((rel, label, patient))
            if lesion is not None:
                cx, cy, r = lesion
                lesions.append((rel, f"{cx:.2f}", f"{cy:.2f}", f"{r:.2f}", kind))

    with open(os.path.join(args.out, "manifest.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "label", "patient_id"])
        w.writerows(manifest)
    with open(os.path.join(args.out, "lesions.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "cx", "cy", "r", "kind"])
        w.writerows(lesions)
    n_mal = sum(1 for m in manifest if m[1] == "malignant")
    print(f"wrote {len(manifest)} crops ({n_mal} malignant, {len(manifest) - n_mal} benign) "
          f"of {len(sizes)} patients to {args.out}")


if __name__ == "__main__":
    main()
