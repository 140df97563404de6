#!/usr/bin/env python3
"""torchvision references for derma-data's geometric augmentation (tests/augment.rs).

Run where torch + torchvision are installed (CPU is enough; used: torch 2.15.0, torchvision
0.29.2):

    python3 scripts/reference_augment.py > tests/fixtures/augment_reference.txt

Each line is `name: v0 v1 ...`, an [h, w, 3] uint8 image flattened (rows, then columns, then
channels), rounded half away from zero as derma-data rounds. The inputs are made from a formula
both sides compute: pixel value (i * 37 + 11) mod 256 at flat HWC index i, and 0 in a border band
where one is given (so that torchvision's zero padding and derma-data's edge clamping, which
differ only on the outermost half pixel, see the same zeros).
  up_6_to_14          F.interpolate(bilinear, align_corners=False): 6x6 → 14x14
  down_16_to_6        the same 16x16 → 6x6 (antialias=False: derma-data's per-batch resize
                      samples two taps; larger images are shrunk once beforehand, see shrink_to)
  rotate_10           F.rotate(+10°: counter-clockwise, bilinear, fill 0) of a 16x16 image with
                      a 3-pixel zero band
  affine_7_t1m1_s105  F.affine(angle 7° — clockwise in F.affine, unlike F.rotate —, translate
                      (1, -1) px, scale 1.05, no shear) of it
"""
import torch
import torch.nn.functional as Fn
import torchvision
import torchvision.transforms.functional as F
from torchvision.transforms import InterpolationMode as IM


def pattern(h, w, band):
    img = torch.zeros(3, h, w)
    for y in range(h):
        for x in range(w):
            for c in range(3):
                if band <= y < h - band and band <= x < w - band:
                    img[c, y, x] = (((y * w + x) * 3 + c) * 37 + 11) % 256
    return img


def hwc(t):
    return torch.floor(t.clamp(0, 255) + 0.5).permute(1, 2, 0).flatten().int().tolist()


print(f"# torch {torch.__version__}, torchvision {torchvision.__version__}")
small = pattern(6, 6, 0)
rows = {
    "up_6_to_14": Fn.interpolate(small[None], size=(14, 14), mode="bilinear", align_corners=False)[0],
    "down_16_to_6": Fn.interpolate(pattern(16, 16, 0)[None], size=(6, 6), mode="bilinear", align_corners=False, antialias=False)[0],
    "rotate_10": F.rotate(pattern(16, 16, 3), 10.0, interpolation=IM.BILINEAR),
    "affine_7_t1m1_s105": F.affine(pattern(16, 16, 3), angle=7.0, translate=[1, -1], scale=1.05, shear=[0.0, 0.0], interpolation=IM.BILINEAR),
}
for name, t in rows.items():
    print(f"{name}: " + " ".join(map(str, hwc(t))))
