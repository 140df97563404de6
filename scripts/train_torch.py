#!/usr/bin/env python3
"""The PyTorch side of the side-by-side check: the same recipe derma-train runs by default.

torchvision mobilenet_v2 (random init), AdamW (weight decay 1e-4), linear warmup for
`--warmup-epochs` then cosine decay to 0 (stepped per batch), cross-entropy, ImageNet
mean/std normalisation, no augmentation, best epoch by validation macro one-vs-rest AUC,
evaluated on test. Prints one JSON line with test accuracy, balanced accuracy, macro AUC and
training images/s.

    python3 scripts/train_torch.py --npz dermamnist_ham_28.npz --epochs 10 --batch-size 128
"""
import argparse
import json
import math
import time

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

p = argparse.ArgumentParser()
p.add_argument("--npz", required=True)
p.add_argument("--epochs", type=int, default=10)
p.add_argument("--batch-size", type=int, default=128)
p.add_argument("--lr", type=float, default=1e-3)
p.add_argument("--weight-decay", type=float, default=1e-4)
p.add_argument("--warmup-epochs", type=float, default=1.0)
p.add_argument("--width", type=float, default=1.0)
p.add_argument("--seed", type=int, default=0)
p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
a = p.parse_args()

torch.manual_seed(a.seed)
torch.backends.cudnn.benchmark = True
dev = a.device
d = np.load(a.npz)
mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)


def split(name):
    x = torch.tensor(d[f"{name}_images"], device=dev).permute(0, 3, 1, 2).float() / 255.0
    return (x - mean) / std, torch.tensor(d[f"{name}_labels"].reshape(-1).astype(np.int64), device=dev)


(xtr, ytr), (xva, yva), (xte, yte) = split("train"), split("val"), split("test")
k = 7
model = torchvision.models.mobilenet_v2(width_mult=a.width, num_classes=k).to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, eps=1e-5)
steps = math.ceil(len(xtr) / a.batch_size)
total, warm = steps * a.epochs, round(a.warmup_epochs * steps)


def lr_at(s):
    if s < warm:
        return a.lr * (s + 1) / warm
    return 0.5 * a.lr * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))


def predict(x):
    model.eval()
    with torch.no_grad():
        return torch.cat([F.softmax(model(x[i:i + 512]), 1) for i in range(0, len(x), 512)]).cpu().numpy()


best, step, train_time, seen = (-1, None, None), 0, 0.0, 0
for epoch in range(a.epochs):
    model.train()
    g = torch.Generator(device="cpu").manual_seed(a.seed * 1000 + epoch)
    order = torch.randperm(len(xtr), generator=g).to(dev)
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    for i in range(steps):
        idx = order[i * a.batch_size:(i + 1) * a.batch_size]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
    if dev == "cuda":
        torch.cuda.synchronize()
    train_time += time.time() - t0
    seen += len(xtr)
    pv = predict(xva)
    auc = roc_auc_score(yva.cpu().numpy(), pv, multi_class="ovr", average="macro")
    if auc > best[0]:
        best = (auc, epoch + 1, {n: t.detach().clone() for n, t in model.state_dict().items()})
model.load_state_dict(best[2])
pt = predict(xte)
yt = yte.cpu().numpy()
print(json.dumps({
    "framework": "pytorch " + torch.__version__, "npz": a.npz, "width": a.width, "epochs": a.epochs,
    "best_epoch": best[1], "test_accuracy": float((pt.argmax(1) == yt).mean()),
    "test_balanced_accuracy": float(balanced_accuracy_score(yt, pt.argmax(1))),
    "test_auc_macro": float(roc_auc_score(yt, pt, multi_class="ovr", average="macro")),
    "train_images_per_second": seen / train_time,
}))
