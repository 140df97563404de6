#!/usr/bin/env python3
"""Reference values from PyTorch, torchvision and scikit-learn for derma-train's tests.

Run where torch + torchvision + scikit-learn are installed (CPU is enough; used: torch 2.11.0,
torchvision 0.26.0, scikit-learn 1.9.1; the per-sample, weighted one-vs-rest, scalar-alpha and
64-px output-stride references added with torch 2.15.0, torchvision 0.29.2, as were the AdamW
steps; every earlier value unchanged):

    python3 scripts/reference_torch.py tests/fixtures

Writes (all small, committed):
  torch_reference.json        losses, gradients, class weights, parameter counts, AdamW steps
  mobilenet_v2_w025.pth       torchvision mobilenet_v2(width_mult=0.25, num_classes=7) state dict,
  mobilenet_v2_w025.safetensors   the same tensors as safetensors,
  mobilenet_v2_w025_io.json   an input batch and the eval-mode logits torchvision computes on it,
                              also with output stride 16 and 8 (DeepLab-style: strides removed,
                              later depthwise convolutions dilated); a 64-px input's logits and
                              feature maps per output stride; pytorch-grad-cam's map on it.
"""
import json
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F
import torchvision
from sklearn.utils.class_weight import compute_class_weight
from torchvision.ops import sigmoid_focal_loss

out = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
os.makedirs(out, exist_ok=True)
torch.manual_seed(0)
ref = {"torch": torch.__version__, "torchvision": torchvision.__version__}

# ---- multi-class losses -------------------------------------------------------------------
logits = torch.tensor([
    [2.0, -1.0, 0.5, 0.0],
    [0.1, 0.2, 0.3, 0.4],
    [50.0, -50.0, 0.0, 10.0],     # extreme, confident and right
    [-50.0, 50.0, 0.0, -10.0],    # extreme, confident and wrong (target 0)
    [1.5, 1.5, -2.0, 3.0],
    [-0.7, 0.0, 2.2, -1.1],
], dtype=torch.float64)
targets = torch.tensor([0, 3, 0, 0, 2, 1])
w = torch.tensor([1.0, 2.5, 0.5, 4.0], dtype=torch.float64)
ref["multiclass"] = {"logits": logits.tolist(), "targets": targets.tolist(), "class_weights": w.tolist()}
ref["multiclass"]["ce"] = F.cross_entropy(logits, targets).item()
ref["multiclass"]["ce_weighted"] = F.cross_entropy(logits, targets, weight=w).item()


def softmax_focal(x, t, gamma, alpha=None, weight=None):
    """Reference softmax focal loss: -alpha_y (1-p_y)^gamma log p_y, weighted mean as F.cross_entropy."""
    logp = F.log_softmax(x, dim=1).gather(1, t[:, None])[:, 0]
    loss = -((1 - logp.exp()) ** gamma) * logp
    if alpha is not None:
        loss = loss * alpha[t]
    if weight is not None:
        return (loss * weight[t]).sum() / weight[t].sum()
    return loss.mean()


alpha_pc = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
ref["multiclass"]["alpha_per_class"] = alpha_pc.tolist()
ref["multiclass"]["focal"] = {}
for g in [0.0, 1.0, 2.0, 5.0]:
    ref["multiclass"]["focal"][str(g)] = {
        "plain": softmax_focal(logits, targets, g).item(),
        "alpha": softmax_focal(logits, targets, g, alpha=alpha_pc).item(),
        "weighted": softmax_focal(logits, targets, g, weight=w).item(),
    }
# gradient of the gamma=2 softmax focal loss w.r.t. the logits (rows 0,1,4,5: not saturated)
x = logits.clone().requires_grad_(True)
softmax_focal(x, targets, 2.0).backward()
ref["multiclass"]["focal_grad_gamma2"] = x.grad.tolist()
# one-vs-rest BCE and combined (bce + sigmoid focal) on one-hot targets
onehot = F.one_hot(targets, 4).double()
ref["multiclass"]["bce_onehot"] = F.binary_cross_entropy_with_logits(logits, onehot).item()
ref["multiclass"]["combined_onehot_a1_g3"] = (
    0.5 * F.binary_cross_entropy_with_logits(logits, onehot)
    + 0.5 * sigmoid_focal_loss(logits, onehot, alpha=1.0, gamma=3.0, reduction="mean")
).item()
# per-class alpha list: each sample's k one-vs-rest focal terms weighed by alpha of its class
ref["multiclass"]["combined_onehot_alpha_list_g2"] = (
    0.5 * F.binary_cross_entropy_with_logits(logits, onehot)
    + 0.5 * (sigmoid_focal_loss(logits, onehot, alpha=-1, gamma=2.0, reduction="none") * alpha_pc[targets][:, None]).mean()
).item()

# per-sample terms (what hard-example mining ranks by: `Loss::forward_per_sample`), before
# class weights; one-vs-rest losses average a sample's k terms
bce_none = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
sfl_a1_g3_none = sigmoid_focal_loss(logits, onehot, alpha=1.0, gamma=3.0, reduction="none")


def softmax_focal_none(x, t, gamma):
    logp = F.log_softmax(x, dim=1).gather(1, t[:, None])[:, 0]
    return -((1 - logp.exp()) ** gamma) * logp


ref["multiclass"]["per_sample"] = {
    "ce": F.cross_entropy(logits, targets, reduction="none").tolist(),
    "focal_g2": softmax_focal_none(logits, targets, 2.0).tolist(),
    "bce_onehot": bce_none.mean(1).tolist(),
    "combined_onehot_a1_g3": (0.5 * bce_none + 0.5 * sfl_a1_g3_none).mean(1).tolist(),
}
# one-vs-rest losses with class weights: each sample's k terms weighed by its class's weight,
# the mean over all terms (F.binary_cross_entropy_with_logits(weight=w[y][:, None]))
ref["multiclass"]["bce_onehot_weighted"] = F.binary_cross_entropy_with_logits(logits, onehot, weight=w[targets][:, None]).item()
ref["multiclass"]["combined_onehot_a1_g3_weighted"] = ((0.5 * bce_none + 0.5 * sfl_a1_g3_none) * w[targets][:, None]).mean().item()
# softmax focal with a scalar alpha: over K > 2 classes a constant factor
ref["multiclass"]["focal_scalar_alpha_0.25_g2"] = (0.25 * softmax_focal_none(logits, targets, 2.0)).mean().item()
# ... and over K = 2 softmax logits alpha for class 1, 1 - alpha for class 0 (torchvision's
# sigmoid_focal_loss convention)
two = logits[:, :2].contiguous()
t2 = torch.tensor([0, 1, 0, 0, 1, 1])
a_t = torch.where(t2 == 1, torch.tensor(0.25, dtype=torch.float64), torch.tensor(0.75, dtype=torch.float64))
ref["two_class"] = {
    "logits": two.tolist(),
    "targets": t2.tolist(),
    "focal_scalar_alpha_0.25_g2": (a_t * softmax_focal_none(two, t2, 2.0)).mean().item(),
}

# ---- binary (single logit) losses ---------------------------------------------------------
z = torch.tensor([3.0, -2.0, 0.0, 50.0, -50.0, 50.0, -50.0, 0.7, -0.3, 1.2], dtype=torch.float64)
y = torch.tensor([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 1.0], dtype=torch.float64)
ref["binary"] = {"logits": z.tolist(), "targets": y.tolist()}
ref["binary"]["bce"] = F.binary_cross_entropy_with_logits(z, y).item()
wb = torch.tensor([0.7, 3.0], dtype=torch.float64)
ref["binary"]["class_weights"] = wb.tolist()
ref["binary"]["bce_weighted"] = F.binary_cross_entropy_with_logits(z, y, weight=wb[y.long()]).item()
ref["binary"]["sigmoid_focal"] = []
for a in [0.25, 0.75, -1.0, 1.0]:
    for g in [0.0, 2.0, 3.0]:
        ref["binary"]["sigmoid_focal"].append(
            {"alpha": a, "gamma": g, "loss": sigmoid_focal_loss(z, y, alpha=a, gamma=g, reduction="mean").item()}
        )
ref["binary"]["per_sample"] = {
    "bce": F.binary_cross_entropy_with_logits(z, y, reduction="none").tolist(),
    "combined_a1_g3": (
        0.5 * F.binary_cross_entropy_with_logits(z, y, reduction="none") + 0.5 * sigmoid_focal_loss(z, y, alpha=1.0, gamma=3.0, reduction="none")
    ).tolist(),
}
ref["binary"]["combined_a1_g3"] = (
    0.5 * F.binary_cross_entropy_with_logits(z, y) + 0.5 * sigmoid_focal_loss(z, y, alpha=1.0, gamma=3.0, reduction="mean")
).item()
# a per-class alpha list [a_neg, a_pos] weighs each sample's focal term by its class's alpha
alpha_b = torch.tensor([0.3, 0.9], dtype=torch.float64)
ref["binary"]["alpha_list"] = alpha_b.tolist()
focal_none = lambda g: sigmoid_focal_loss(z, y, alpha=-1, gamma=g, reduction="none")
ref["binary"]["focal_alpha_list_g2"] = (focal_none(2.0) * alpha_b[y.long()]).mean().item()
ref["binary"]["combined_alpha_list_g3"] = (
    0.5 * F.binary_cross_entropy_with_logits(z, y) + 0.5 * (focal_none(3.0) * alpha_b[y.long()]).mean()
).item()

# ---- class weights (scikit-learn) ---------------------------------------------------------
# DermaMNIST-ham training counts (../shared/data/dermamnist-ham/README.md)
counts = [114, 162, 358, 33, 307, 2675, 49]
yy = np.concatenate([np.full(n, c) for c, n in enumerate(counts)])
ref["balanced_weights"] = {"counts": counts, "weights": compute_class_weight("balanced", classes=np.arange(7), y=yy).tolist()}

# ---- torchvision parameter counts ---------------------------------------------------------
ref["param_counts"] = []
for width in [0.25, 0.35, 0.5, 0.75, 1.0, 1.4]:
    for classes in [1, 7, 1000]:
        m = torchvision.models.mobilenet_v2(width_mult=width, num_classes=classes)
        ref["param_counts"].append({"width": width, "classes": classes, "params": sum(p.numel() for p in m.parameters())})

# ---- AdamW: three steps of a small linear layer, eps 1e-8 (PyTorch's default) and 1e-5 --------
# derma-train's fused AdamW against torch.optim.AdamW (decoupled weight decay 0.1, lr 0.01):
# a 5 -> 4 linear layer from fixed weights, loss = scale * sum(y^2) of the inputs times
# (1 + step). With scale 1e-6 the gradients are ~1e-5, where eps decides the step size.
# Weights in Burn's layout ([d_input, d_output], torch's transposed).
def fixed(n):
    return torch.tensor([((i * 37 % 17) - 8.0) / 10.0 for i in range(n)], dtype=torch.float32)

ref["adamw"] = {"lr": 0.01, "weight_decay": 0.1, "added_with": torch.__version__, "runs": []}
for scale in [1.0, 1e-6]:
    for eps in [1e-8, 1e-5]:
        layer = torch.nn.Linear(5, 4)
        with torch.no_grad():
            layer.weight.copy_(fixed(20).reshape(5, 4).T)
            layer.bias.copy_(fixed(4) * 0.5)
        opt = torch.optim.AdamW(layer.parameters(), lr=0.01, weight_decay=0.1, eps=eps)
        x = fixed(30).reshape(6, 5)
        for step in range(3):
            opt.zero_grad()
            y = layer(x * (1.0 + step))
            (scale * (y * y).sum()).backward()
            opt.step()
        ref["adamw"]["runs"].append({"scale": scale, "eps": eps, "weight": layer.weight.detach().T.flatten().tolist(),
                                     "bias": layer.bias.detach().tolist()})

with open(os.path.join(out, "torch_reference.json"), "w") as f:
    json.dump(ref, f, indent=1)

# ---- equivalence fixture: small torchvision mobilenet_v2 ----------------------------------
torch.manual_seed(1)
m = torchvision.models.mobilenet_v2(width_mult=0.25, num_classes=7)
with torch.no_grad():  # non-trivial BN statistics and affine so eval-mode BN is not the identity
    for mod in m.modules():
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.5, 0.5)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.uniform_(0.5, 1.5)
            mod.bias.uniform_(-0.2, 0.2)
    m.classifier[1].weight.normal_(0, 0.1)
m.eval()
sd = m.state_dict()
torch.save(sd, os.path.join(out, "mobilenet_v2_w025.pth"))
from safetensors.torch import save_file
save_file({k: v.contiguous() for k, v in sd.items()}, os.path.join(out, "mobilenet_v2_w025.safetensors"))
inp = torch.rand(2, 3, 32, 32) * 2 - 1
with torch.no_grad():
    logits = m(inp)


def with_output_stride(model, output_stride, dilate=True):
    """DeepLab's MobileNetV2 backbone (TF-slim / VainF DeepLabV3Plus-Pytorch): once the running
    stride reaches `output_stride`, a stage's stride becomes 1 and the dilation grows by it; a
    stage's first block keeps the previous dilation, the later blocks use the new one; padding =
    dilation. With `dilate=False` the strides are only removed (the small-image variant)."""
    import copy
    model = copy.deepcopy(model)
    setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]
    current, dilation, idx = 2, 1, 1
    for _, _, n, s in setting:
        previous = dilation
        if current == output_stride:
            stride, dilation = 1, dilation * (s if dilate else 1)
        else:
            stride, current = s, current * s
        for i in range(n):
            dw = [c for c in model.features[idx].conv.modules() if isinstance(c, torch.nn.Conv2d) and c.groups > 1][0]
            d = previous if i == 0 else dilation
            dw.stride = (stride, stride) if i == 0 else (1, 1)
            dw.dilation, dw.padding = (d, d), (d, d)
            idx += 1
    return model


# Output strides on a 64-px input (at 32 px output strides 16 and 8 differ by ~3e-6, inside a
# test's tolerance): x_i = sin(0.37 i) for i = 0..3*64*64 (float64, then float32), shape
# [1, 3, 64, 64]: a formula, so the fixture keeps only the logits.
stride_inp = torch.sin(0.37 * torch.arange(3 * 64 * 64, dtype=torch.float64)).float().reshape(1, 3, 64, 64)
with torch.no_grad():
    stride_logits = {
        "32": m(stride_inp).tolist(),
        "16": with_output_stride(m, 16)(stride_inp).tolist(),
        "8": with_output_stride(m, 8)(stride_inp).tolist(),
        "8_undilated": with_output_stride(m, 8, dilate=False)(stride_inp).tolist(),
    }
    # The feature map itself (`features`, after the 1280-channel head): its size is 64 / stride,
    # and its per-position channel mean and first 4 channels tell the variants apart where the
    # pooled logits barely differ (16 and 8 by ~4e-6 here).
    stride_features = {}
    for key, net in [("32", m), ("16", with_output_stride(m, 16)), ("8", with_output_stride(m, 8)),
                     ("8_undilated", with_output_stride(m, 8, dilate=False))]:
        f = net.features(stride_inp)[0]  # [1280, h, w]
        stride_features[key] = {"channel_mean": f.mean(0).tolist(), "first_channels": f[:4].tolist()}
# Grad-CAM (pytorch-grad-cam 1.5.7, `pip install grad-cam`) on the stride-8 network's last block
# (`features[-1]`, torchvision's usual target) for the 64-px input: the map scaled to [0, 1]
# (scale_cam_image) and resized to 64x64 with OpenCV, as derma-predict's overlays are. Class 0
# (the top logit); class 3's evidence is negative everywhere, so its map is all 0.
from pytorch_grad_cam import GradCAM
from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
net8 = with_output_stride(m, 8)
gradcam_os8 = {c: GradCAM(model=net8, target_layers=[net8.features[-1]])(input_tensor=stride_inp, targets=[ClassifierOutputTarget(c)])[0]
               for c in [0, 3]}
with torch.no_grad():
    logits16 = with_output_stride(m, 16)(inp)
    logits8 = with_output_stride(m, 8)(inp)
    logits8_plain = with_output_stride(m, 8, dilate=False)(inp)
with open(os.path.join(out, "mobilenet_v2_w025_io.json"), "w") as f:
    json.dump({"input_shape": list(inp.shape), "input": inp.flatten().tolist(), "logits": logits.tolist(),
               "logits_os16": logits16.tolist(), "logits_os8": logits8.tolist(),
               "logits_os8_undilated": logits8_plain.tolist(),
               "stride_input": "sin(0.37 i), i = 0..3*64*64, float64 then float32, shape [1, 3, 64, 64]",
               "stride_logits": stride_logits, "stride_features": stride_features,
               "gradcam_os8": {"0": [[round(float(v), 6) for v in row] for row in gradcam_os8[0]],
                               "3_max": float(gradcam_os8[3].max())}}, f)
print("wrote", out)
