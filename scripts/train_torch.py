#!/usr/bin/env python3
"""The PyTorch side of the side-by-side check: the same recipe derma-train runs by default.

torchvision mobilenet_v2 (random init), AdamW (weight decay 1e-4), linear warmup for
`--warmup-epochs` then cosine decay to 0 (stepped per batch), cross-entropy, ImageNet
mean/std normalisation, no augmentation, best epoch by validation macro one-vs-rest AUC,
evaluated on test. Prints one JSON line with test accuracy, balanced accuracy, macro AUC and
training images/s.

    python3 scripts/train_torch.py --npz dermamnist_ham_28.npz --epochs 10 --batch-size 128

Transfer learning, as `derma-train --pretrained FILE --image-size N [--freeze-bn]` does it:

    python3 scripts/train_torch.py --npz dermamnist_ham_64.npz --image-size 128 \
        --pretrained weights/mobilenet_v2_tflite.safetensors --freeze-bn

`--out DIR` also writes the run as a derma-train run folder (predictions.csv of the best epoch's
validation and test probabilities, numbered as derma-train numbers them; report.json; metrics.csv;
config.toml; each written atomically), so `derma-report --compare` can compare it with a
derma-train run on the same test images, paired:

    python3 scripts/train_torch.py --npz dermamnist_ham_64.npz --out runs/torch-64
    cargo run --release -p derma-report -- --compare runs/torch-64 runs/derma-64

`--pretrained` takes a torchvision-layout `.safetensors` or `.pth` state dict; everything but
`classifier.1` loads strictly and the classifier is torchvision's fresh one for the 7 classes
(N(0, 0.01) weights, zero bias; derma-model initialises its head the same way). A safetensors file whose
metadata says `input_norm = minus_one_to_one` (the converted TF-lite weights) is fed
x / 127.5 - 1 instead of ImageNet mean/std, and `padding = tf_same` replaces the padding of
every convolution by TensorFlow's SAME rule (stride-2 convolutions pad the extra row/column at
the bottom/right), as derma-model's `Padding::TfSame` does. `--image-size` resizes the uint8
images once, bilinear with half-pixel centres (F.interpolate, align_corners=False, which is
derma-data's evaluation resize when upsampling), rounded back to uint8. `--freeze-bn` keeps
every BatchNorm in eval mode while training (running statistics, not updated; affine
parameters still learn), like derma-train's `--freeze-bn`.
"""
import argparse
import json
import math
import os
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
p.add_argument("--pretrained", help="torchvision-layout .safetensors / .pth state dict")
p.add_argument("--image-size", type=int, help="training resolution (default: the npz's)")
p.add_argument("--freeze-bn", action="store_true", help="BatchNorms on running statistics")
p.add_argument("--out", help="also write a derma-train run folder here (for derma-report --compare)")
a = p.parse_args()
if a.out and os.path.exists(os.path.join(a.out, "report.json")):
    raise SystemExit(f"--out {a.out}: it already holds a run (report.json); give a new folder")


class TfSamePad(torch.nn.Module):
    """TensorFlow SAME padding in front of a padding-free convolution (burn-nn's rule)."""

    def __init__(self, conv):
        super().__init__()
        self.conv = conv
        self.k, self.s = conv.kernel_size[0], conv.stride[0]
        conv.padding = (0, 0)

    def forward(self, x):
        def pads(n):
            total = max((-(-n // self.s) - 1) * self.s + self.k - n, 0)
            return total // 2, total - total // 2

        (t, b), (l, r) = pads(x.shape[2]), pads(x.shape[3])
        return self.conv(F.pad(x, (l, r, t, b)))


def load_state(path):
    if path.endswith(".safetensors"):
        from safetensors import safe_open
        from safetensors.torch import load_file
        with safe_open(path, "pt") as f:
            meta = f.metadata() or {}
        return load_file(path), meta
    return torch.load(path, map_location="cpu", weights_only=True), {}


def tf_same(module):
    for name, child in module.named_children():
        if isinstance(child, torch.nn.Conv2d) and child.kernel_size[0] > 1:
            setattr(module, name, TfSamePad(child))
        else:
            tf_same(child)

torch.manual_seed(a.seed)
torch.backends.cudnn.benchmark = True
dev = a.device
d = np.load(a.npz)
state, meta = load_state(a.pretrained) if a.pretrained else (None, {})
if meta.get("input_norm") == "minus_one_to_one":
    mean = torch.full((1, 3, 1, 1), 0.5, device=dev)
    std = torch.full((1, 3, 1, 1), 0.5, device=dev)
else:
    mean = torch.tensor([0.485, 0.456, 0.406], device=dev).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225], device=dev).view(1, 3, 1, 1)


def split(name):
    x = torch.tensor(d[f"{name}_images"], device=dev).permute(0, 3, 1, 2).float()
    if a.image_size and a.image_size != x.shape[2]:
        x = F.interpolate(x, size=(a.image_size, a.image_size), mode="bilinear", align_corners=False)
        x = x.round().clamp(0, 255)
    x = x / 255.0
    return (x - mean) / std, torch.tensor(d[f"{name}_labels"].reshape(-1).astype(np.int64), device=dev)


(xtr, ytr), (xva, yva), (xte, yte) = split("train"), split("val"), split("test")
k = 7
model = torchvision.models.mobilenet_v2(width_mult=a.width, num_classes=k)
if state is not None:
    state = {n: t for n, t in state.items() if not n.startswith("classifier.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    assert not unexpected and set(missing) == {"classifier.1.weight", "classifier.1.bias"}, (missing, unexpected)
    if meta.get("padding") == "tf_same":
        tf_same(model.features)
model = model.to(dev)
opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=a.weight_decay, eps=1e-5)
steps = math.ceil(len(xtr) / a.batch_size)
total, warm = steps * a.epochs, round(a.warmup_epochs * steps)


CLASSES = ["akiec", "bcc", "bkl", "df", "mel", "nv", "vasc"]  # DermaMNIST's labels 0-6


def write_atomic(path, text):
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_run_folder(out, pv, yv, pt, yt):
    """The files derma-report reads (crates/derma-report/src/run.rs), in derma-train's formats."""
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support
    os.makedirs(out, exist_ok=True)
    rows = ["split,index,label," + ",".join(f"prob_{c}" for c in range(k))]
    for name, probs, labels in [("val", pv, yv), ("test", pt, yt)]:
        rows += [f"{name},{i},{labels[i]}," + ",".join(repr(float(v)) for v in probs[i]) for i in range(len(labels))]
    write_atomic(os.path.join(out, "predictions.csv"), "\n".join(rows) + "\n")
    head = "epoch,train_loss,val_loss,val_acc,val_bal_acc,val_auc,lr,seconds,images_per_second"
    write_atomic(os.path.join(out, "metrics.csv"), "\n".join([head] + [",".join(repr(v) for v in r) for r in metrics_rows]) + "\n")
    pred = pt.argmax(1)
    precision, recall, f1, support = precision_recall_fscore_support(yt, pred, labels=range(k), zero_division=0)
    report = {
        "framework": "pytorch " + torch.__version__, "best_epoch": best[1], "classes": CLASSES,
        "train_counts": np.bincount(ytr.cpu().numpy(), minlength=k).tolist(),
        "test": {
            "accuracy": float((pred == yt).mean()), "balanced_accuracy": float(balanced_accuracy_score(yt, pred)),
            "auc_macro": float(roc_auc_score(yt, pt, multi_class="ovr", average="macro")),
            "loss": float(-np.log(np.clip(pt[np.arange(len(yt)), yt], 1e-12, 1)).mean()),
            "per_class": [{"name": CLASSES[c], "precision": float(precision[c]), "recall": float(recall[c]), "f1": float(f1[c]),
                           "support": int(support[c])} for c in range(k)],
            "confusion_matrix": confusion_matrix(yt, pred, labels=range(k)).tolist(),
        },
    }
    write_atomic(os.path.join(out, "report.json"), json.dumps(report, indent=1) + "\n")
    config = {"framework": "pytorch " + torch.__version__, **{n: v for n, v in vars(a).items() if v is not None}}
    write_atomic(os.path.join(out, "config.toml"), "".join(f"{n} = {json.dumps(v)}\n" for n, v in config.items()))


def lr_at(s):
    if s < warm:
        return a.lr * (s + 1) / warm
    return 0.5 * a.lr * (1 + math.cos(math.pi * min(1.0, (s - warm) / max(1, total - warm))))


def predict(x):
    model.eval()
    with torch.no_grad():
        return torch.cat([F.softmax(model(x[i:i + 512]), 1) for i in range(0, len(x), 512)]).cpu().numpy()


best, step, epoch_times, metrics_rows = (-1, None, None), 0, [], []
for epoch in range(a.epochs):
    model.train()
    if a.freeze_bn:
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.eval()
    g = torch.Generator(device="cpu").manual_seed(a.seed * 1000 + epoch)
    order = torch.randperm(len(xtr), generator=g).to(dev)
    if dev == "cuda":
        torch.cuda.synchronize()
    t0 = time.time()
    loss_sum = torch.zeros((), device=dev)
    for i in range(steps):
        idx = order[i * a.batch_size:(i + 1) * a.batch_size]
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        loss = F.cross_entropy(model(xtr[idx]), ytr[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(idx)
        step += 1
    if dev == "cuda":
        torch.cuda.synchronize()
    epoch_times.append(time.time() - t0)
    pv = predict(xva)
    yv = yva.cpu().numpy()
    auc = roc_auc_score(yv, pv, multi_class="ovr", average="macro")
    metrics_rows.append([epoch + 1, float(loss_sum) / len(xtr), float(-np.log(np.clip(pv[np.arange(len(yv)), yv], 1e-12, 1)).mean()),
                         float((pv.argmax(1) == yv).mean()), float(balanced_accuracy_score(yv, pv.argmax(1))), float(auc),
                         lr_at(step - 1), epoch_times[-1], len(xtr) / epoch_times[-1]])
    if auc > best[0]:
        best = (auc, epoch + 1, {n: t.detach().clone() for n, t in model.state_dict().items()})
    # One line per epoch, flushed: a run stopped at a deadline (SIGTERM) keeps its progress in
    # the log. The summary stays the last line (what gpu_check.sh prints).
    print(json.dumps({"epoch": epoch + 1, "val_auc_macro": float(auc), "seconds": epoch_times[-1],
                      "loss_last_step": float(loss)}), flush=True)
model.load_state_dict(best[2])
pt = predict(xte)
yt = yte.cpu().numpy()
if a.out:
    write_run_folder(a.out, predict(xva), yva.cpu().numpy(), pt, yt)
print(json.dumps({
    "framework": "pytorch " + torch.__version__, "npz": a.npz, "width": a.width, "epochs": a.epochs,
    "pretrained": a.pretrained, "image_size": int(xtr.shape[2]), "freeze_bn": a.freeze_bn,
    "best_epoch": best[1], "test_accuracy": float((pt.argmax(1) == yt).mean()),
    "test_balanced_accuracy": float(balanced_accuracy_score(yt, pt.argmax(1))),
    "test_auc_macro": float(roc_auc_score(yt, pt, multi_class="ovr", average="macro")),
    # Epochs 2+ as scripts/summarize_runs.py averages derma-train's (epoch 1 holds CUDA start-up
    # and cudnn.benchmark's search); the images stay resident on the device here (no loader),
    # while derma-train's figure includes its host loader.
    "train_images_per_second": len(xtr) / (sum(epoch_times[1:] or epoch_times) / len(epoch_times[1:] or epoch_times)),
    "train_images_per_second_all_epochs": len(xtr) * len(epoch_times) / sum(epoch_times),
    "data": "resident on the device, no loader",
}))
