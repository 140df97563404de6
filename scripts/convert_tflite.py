#!/usr/bin/env python3
"""TF-lite MobileNetV2 ImageNet weights -> torchvision-layout safetensors (dequantized, float32).

    pip install tflite==2.18.0 flatbuffers numpy safetensors
    python3 scripts/convert_tflite.py ../shared/weights/mobilenet_v2_1.0_224_quant.tflite \\
        weights/mobilenet_v2_tflite.safetensors

Input: `mobilenet_v2_1.0_224_quant.tflite` (google-coral/test_data, Apache-2.0; see
shared/weights/README.md): TF-slim MobileNetV2 1.0/224, uint8 per-tensor asymmetric
quantization, batch norm folded into the convolutions (`*_Fold` tensors), ReLU6 fused, TF SAME
padding, 1001 classes with index 0 = background.

Output: a safetensors file with torchvision's `mobilenet_v2` state-dict keys and shapes, so the
project's torchvision loader (`derma_model::load_torchvision`) reads it unchanged:

* The 53 convolutions (36 CONV_2D, 17 DEPTHWISE_CONV_2D) are taken in graph order and mapped to
  `features.0.0` (stem), `features.1.conv.{0.0,1}` (block 1: depthwise, project),
  `features.k.conv.{0.0,1.0,2}` (blocks 2..17: expand, depthwise, project), `features.18.0`
  (1x1 to 1280) and the logits 1x1 conv -> `classifier.1.{weight,bias}` ([1001, 1280], [1001]).
  **All 1001 classes are kept, index 0 = background** (ImageNet-1k class i is logit i + 1).
* Dequantization: weights `(q - zero_point) * scale`, biases `int32 * scale` (zero point 0).
* Layouts: CONV_2D OHWI -> OIHW (transpose 0,3,1,2); DEPTHWISE_CONV_2D [1, H, W, C] -> [C, 1, H, W].
* Batch norm is folded, so every BN gets weight 1, bias = the folded conv bias, running_mean 0,
  running_var 1 - 1e-5 (eval-mode BN with eps 1e-5 is then exactly `x + bias`; 1 - 1e-5 + 1e-5
  rounds to exactly 1.0 in float32) and `num_batches_tracked` 0 (int64, 0-dim) like torchvision.
* Metadata: source, input_norm = minus_one_to_one (feed x / 127.5 - 1; the quantized model's
  input is (q - 128) / 128), padding = tf_same (stride-2 convs pad one extra row/column at the
  bottom/right: use `Padding::TfSame`), num_classes = 1001, background_class = 0.

Every operator is checked against the layout reproduced from torchvision's `mobilenet_v2`
source logic (width 1.0, channels 32, 16, 24, 32, 64, 96, 160, 320, 1280, expansion 6): op
kind, weight shape, stride, fused activation, SAME padding of the 3x3 convs, per-tensor uint8
weights and int32 biases. Any other file (not a TF-lite flatbuffer, a truncated one, other widths or channel counts, a
float or int8 model, per-channel quantization, other strides or activations) is rejected with
exit status 1 and a message naming the first mismatch; nothing is written then.

Verification (optional, needs `pip install ai-edge-litert pillow scikit-image`):

    python3 scripts/convert_tflite.py ../shared/weights/mobilenet_v2_1.0_224_quant.tflite \\
        weights/mobilenet_v2_tflite.safetensors --verify tests/fixtures/tflite \\
        [--labels imagenet_labels.txt]

runs, on four public-domain / CC0 photographs shipped inside scikit-image (`skimage.data`:
astronaut, coffee, chelsea, rocket), (a) the quantized model in the TF-lite interpreter
(ai-edge-litert `Interpreter`, uint8 input = the raw pixels) and (b) a pure-numpy float32
MobileNetV2 forward pass (TF SAME padding, ReLU6, residuals, eval-mode BN) on the *written*
safetensors file, input x / 127.5 - 1, and compares top-1 / top-5 and the logits and
probabilities. Preprocessing: central square crop of the shorter side, then Pillow
`Image.resize((224, 224), Image.BILINEAR)` (Pillow's bilinear filter is antialiased when it
downsamples). It writes, into the given directory, `check.json` (image names, interpreter and
float top-5 indices and probabilities, max differences, per-layer activation agreement) and
each 224x224 input as raw `NAME.rgb` (224 * 224 * 3 uint8, HWC, RGB; read by
`crates/derma-model/examples/classify_tflite.rs`), plus `NAME.png` only when the PNG is under
60 KB. `--labels` is a text file with the 1000 ImageNet-1k class names in index order (e.g.
torchvision's `_IMAGENET_CATEGORIES`) to add names to check.json; it is not needed otherwise.

The interpreter's preserved intermediate tensors also give a per-layer check: each float layer
applied to the interpreter's own (dequantized) input of that layer must reproduce the
interpreter's output to within rounding (`isolated_worst_layer` in check.json).

Results (tflite 2.18.0, ai-edge-litert 2.3.0, numpy 2.4.6, Pillow 13.0.0, safetensors 0.8.0,
scikit-image 0.26.0), in tests/fixtures/tflite/check.json: float top-1 = interpreter top-1 on
all four images (ski, espresso, tiger cat, missile), top-5 sets equal (order differs on two
images), max |logit difference| 0.64, max |probability difference| 0.029; every layer in
isolation within 0.50 quantization steps of the interpreter.
"""
import argparse
import hashlib
import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

BN_EPS = 1e-5
NUM_CLASSES = 1001
INPUT_SIZE = 224
SOURCE_NAME = "mobilenet_v2_1.0_224_quant.tflite"
METADATA = {
    "source": SOURCE_NAME,
    "input_norm": "minus_one_to_one",
    "padding": "tf_same",
    "num_classes": str(NUM_CLASSES),
    "background_class": "0",
}
# torchvision's inverted_residual_setting: (expansion t, output channels c, repeats n, stride s).
SETTING = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
           (6, 160, 3, 2), (6, 320, 1, 1)]


class NotThisModel(Exception):
    """The input is not the MobileNetV2 1.0/224 uint8 TF-lite model this converter handles."""


def make_divisible(v, divisor=8):
    """torchvision's `_make_divisible`."""
    new_v = max(divisor, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:
        new_v += divisor
    return new_v


def torchvision_layout(width=1.0, num_classes=NUM_CLASSES):
    """The convolutions of torchvision's mobilenet_v2, in forward order.

    Each entry: dict(conv=key of the conv weight (without `.weight`), bn=key prefix of its batch
    norm (None for the classifier), kind="conv"/"depthwise"/"linear", shape=torch weight shape,
    stride, relu6=bool, block=features index (None for the classifier), residual=bool on the
    project conv of a block with a skip connection).
    """
    layers = []
    inp = make_divisible(32 * width)
    last = make_divisible(1280 * max(1.0, width))
    layers.append(dict(conv="features.0.0", bn="features.0.1", kind="conv", shape=(inp, 3, 3, 3),
                       stride=2, relu6=True, block=0, residual=False))
    idx = 1
    for t, c, n, s in SETTING:
        out = make_divisible(c * width)
        for i in range(n):
            stride = s if i == 0 else 1
            hidden = inp * t
            p = f"features.{idx}.conv"
            residual = stride == 1 and inp == out
            if t != 1:
                layers.append(dict(conv=f"{p}.0.0", bn=f"{p}.0.1", kind="conv",
                                   shape=(hidden, inp, 1, 1), stride=1, relu6=True, block=idx,
                                   residual=False))
                dw, proj, proj_bn = (f"{p}.1.0", f"{p}.1.1"), f"{p}.2", f"{p}.3"
            else:
                dw, proj, proj_bn = (f"{p}.0.0", f"{p}.0.1"), f"{p}.1", f"{p}.2"
            layers.append(dict(conv=dw[0], bn=dw[1], kind="depthwise", shape=(hidden, 1, 3, 3),
                               stride=stride, relu6=True, block=idx, residual=False))
            layers.append(dict(conv=proj, bn=proj_bn, kind="conv", shape=(out, hidden, 1, 1),
                               stride=1, relu6=False, block=idx, residual=residual))
            inp = out
            idx += 1
    layers.append(dict(conv=f"features.{idx}.0", bn=f"features.{idx}.1", kind="conv",
                       shape=(last, inp, 1, 1), stride=1, relu6=True, block=idx, residual=False))
    layers.append(dict(conv="classifier.1", bn=None, kind="linear", shape=(num_classes, last),
                       stride=1, relu6=False, block=None, residual=False))
    return layers


# ---------------------------------------------------------------------------------------------
# TF-lite flatbuffer reading


def _enum_names(cls):
    return {v: k for k, v in vars(cls).items() if not k.startswith("_")}


def read_tflite(path):
    """Parses the flatbuffer; returns (model, subgraph, raw bytes)."""
    import tflite

    buf = Path(path).read_bytes()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise NotThisModel("not a TF-lite flatbuffer (no `TFL3` file identifier at byte 4)")
    try:
        model = tflite.Model.GetRootAsModel(buf, 0)
        if model.SubgraphsLength() != 1:
            raise NotThisModel(f"{model.SubgraphsLength()} subgraphs, expected 1")
        return model, model.Subgraphs(0), buf
    except NotThisModel:
        raise
    except Exception as e:  # corrupt flatbuffer
        raise NotThisModel(f"unreadable TF-lite flatbuffer ({type(e).__name__}: {e})") from e


def _quant(t):
    """(scales, zero_points) of a tensor as numpy arrays (empty when not quantized)."""
    q = t.Quantization()
    if q is None or q.ScaleLength() == 0:
        return np.zeros(0), np.zeros(0, dtype=np.int64)
    return q.ScaleAsNumpy().astype(np.float64), np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64)


def _tensor_data(model, t, dtype):
    data = model.Buffers(t.Buffer()).DataAsNumpy()
    if not isinstance(data, np.ndarray) or data.size == 0:
        raise NotThisModel(f"tensor `{t.Name().decode()}` has no constant data")
    shape = tuple(int(d) for d in t.ShapeAsNumpy())
    arr = np.frombuffer(data.tobytes(), dtype=dtype)
    if arr.size != int(np.prod(shape)):
        raise NotThisModel(f"tensor `{t.Name().decode()}`: {arr.size} values for shape {shape}")
    return arr.reshape(shape)


def conv_ops(model, graph):
    """The CONV_2D / DEPTHWISE_CONV_2D operators in graph order, with their options parsed."""
    import tflite

    op_names = _enum_names(tflite.BuiltinOperator)
    ops, counts = [], {}
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = model.OperatorCodes(op.OpcodeIndex())
        # Schema >= 2.4 has BuiltinCode; older files only the deprecated int8 field.
        kind = op_names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        counts[kind] = counts.get(kind, 0) + 1
        if kind not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
            continue
        table = op.BuiltinOptions()
        if table is None:
            raise NotThisModel(f"operator {i} ({kind}) has no options")
        opt = tflite.Conv2DOptions() if kind == "CONV_2D" else tflite.DepthwiseConv2DOptions()
        opt.Init(table.Bytes, table.Pos)
        inputs = [op.Inputs(j) for j in range(op.InputsLength())]
        if len(inputs) != 3 or min(inputs) < 0:
            raise NotThisModel(f"operator {i} ({kind}) has inputs {inputs}, expected x, w, b")
        ops.append(dict(
            index=i, kind=kind, inputs=inputs, output=op.Outputs(0),
            stride=(opt.StrideH(), opt.StrideW()),
            dilation=(opt.DilationHFactor(), opt.DilationWFactor()),
            padding=_enum_names(tflite.Padding)[opt.Padding()],
            activation=_enum_names(tflite.ActivationFunctionType)[opt.FusedActivationFunction()],
            multiplier=opt.DepthMultiplier() if kind == "DEPTHWISE_CONV_2D" else None,
        ))
    return ops, counts


def _dequantize(model, graph, index, kind_label, what):
    """Dequantized float32 array of a constant tensor (uint8 weight or int32 bias)."""
    import tflite

    t = graph.Tensors(index)
    name = t.Name().decode()
    scales, zps = _quant(t)
    types = _enum_names(tflite.TensorType)
    want = "UINT8" if what == "weight" else "INT32"
    if types.get(t.Type()) != want:
        raise NotThisModel(f"{kind_label} {what} `{name}` is {types.get(t.Type())}, expected {want}"
                           " (this converter handles the uint8-quantized model only)")
    if scales.size != 1 or zps.size != 1:
        raise NotThisModel(f"{kind_label} {what} `{name}` has {scales.size} scales "
                           "(expected per-tensor quantization)")
    data = _tensor_data(model, t, np.uint8 if what == "weight" else np.int32)
    if what == "bias" and zps[0] != 0:
        raise NotThisModel(f"{kind_label} bias `{name}` has zero point {zps[0]}, expected 0")
    real = (data.astype(np.float64) - float(zps[0])) * float(scales[0])
    return real.astype(np.float32), name, float(scales[0])


def convert(tflite_path):
    """Returns (state dict of numpy arrays, report lines); raises NotThisModel."""
    model, graph, _ = read_tflite(tflite_path)
    ops, counts = conv_ops(model, graph)
    layout = torchvision_layout()
    if len(ops) != len(layout):
        raise NotThisModel(
            f"{len(ops)} convolutions ({counts.get('CONV_2D', 0)} CONV_2D, "
            f"{counts.get('DEPTHWISE_CONV_2D', 0)} DEPTHWISE_CONV_2D), expected {len(layout)} "
            "(36 + 17) for MobileNetV2 1.0")
    n_res = sum(l["residual"] for l in layout)
    if counts.get("ADD", 0) != n_res:
        raise NotThisModel(f"{counts.get('ADD', 0)} ADD operators, expected {n_res} residuals")
    inp = graph.Tensors(graph.Inputs(0))
    in_shape = [int(d) for d in inp.ShapeAsNumpy()]
    if in_shape != [1, INPUT_SIZE, INPUT_SIZE, 3]:
        raise NotThisModel(f"input shape {in_shape}, expected [1, 224, 224, 3]")
    in_scale, in_zp = _quant(inp)
    if not (in_scale.size == 1 and abs(in_scale[0] - 1 / 128) < 1e-9 and in_zp[0] == 128):
        raise NotThisModel(f"input quantization {in_scale.tolist()}/{in_zp.tolist()}, "
                           "expected scale 1/128, zero point 128 (input range [-1, 1))")

    state, report = {}, []
    for op, L in zip(ops, layout):
        label = f"operator {op['index']} ({op['kind']} -> {L['conv']})"
        want_kind = "DEPTHWISE_CONV_2D" if L["kind"] == "depthwise" else "CONV_2D"
        if op["kind"] != want_kind:
            raise NotThisModel(f"{label}: expected {want_kind}")
        w, w_name, w_scale = _dequantize(model, graph, op["inputs"][1], label, "weight")
        b, _, b_scale = _dequantize(model, graph, op["inputs"][2], label, "bias")
        if op["kind"] == "CONV_2D":
            torch_w = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
        else:
            if w.ndim != 4 or w.shape[0] != 1 or op["multiplier"] != 1:
                raise NotThisModel(f"{label}: depthwise weight {w.shape}, multiplier "
                                   f"{op['multiplier']}; expected [1, 3, 3, C], multiplier 1")
            torch_w = w.transpose(3, 0, 1, 2)  # [1, H, W, C] -> [C, 1, H, W]
        shape = L["shape"] if L["kind"] != "linear" else L["shape"] + (1, 1)
        if torch_w.shape != shape:
            raise NotThisModel(f"{label}: weight `{w_name}` has torch shape "
                               f"{list(torch_w.shape)}, expected {list(shape)}")
        if b.shape != (shape[0],):
            raise NotThisModel(f"{label}: bias shape {list(b.shape)}, expected [{shape[0]}]")
        if op["stride"] != (L["stride"],) * 2 or op["dilation"] != (1, 1):
            raise NotThisModel(f"{label}: stride {op['stride']} dilation {op['dilation']}, "
                               f"expected stride {L['stride']}, dilation 1")
        if shape[2] > 1 and op["padding"] != "SAME":
            raise NotThisModel(f"{label}: padding {op['padding']}, expected SAME")
        want_act = "RELU6" if L["relu6"] else "NONE"
        if op["activation"] != want_act:
            raise NotThisModel(f"{label}: fused activation {op['activation']}, expected {want_act}")
        x_scale = _quant(graph.Tensors(op["inputs"][0]))[0]
        if x_scale.size == 1 and not np.isclose(b_scale, x_scale[0] * w_scale, rtol=1e-3):
            report.append(f"warning: {label}: bias scale {b_scale:.6g} != input x weight scale "
                          f"{x_scale[0] * w_scale:.6g}")

        if L["kind"] == "linear":
            state["classifier.1.weight"] = np.ascontiguousarray(torch_w.reshape(L["shape"]))
            state["classifier.1.bias"] = b
        else:
            state[f"{L['conv']}.weight"] = np.ascontiguousarray(torch_w)
            c = shape[0]
            state[f"{L['bn']}.weight"] = np.ones(c, np.float32)
            state[f"{L['bn']}.bias"] = b
            state[f"{L['bn']}.running_mean"] = np.zeros(c, np.float32)
            state[f"{L['bn']}.running_var"] = np.full(c, 1.0 - BN_EPS, np.float32)
            state[f"{L['bn']}.num_batches_tracked"] = np.array(0, np.int64)
        report.append(f"{op['index']:3d} {op['kind']:18s} {w_name.split(';')[0][:58]:58s} -> "
                      f"{L['conv']} {list(shape)}")
    return state, report


def write_safetensors(state, out_path):
    from safetensors.numpy import save_file

    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(out_path), metadata=METADATA)
    umask = os.umask(0)  # safetensors may create the file 0600: apply the usual umask instead
    os.umask(umask)
    os.chmod(out_path, 0o666 & ~umask)


# ---------------------------------------------------------------------------------------------
# Verification: TF-lite interpreter vs a numpy float forward pass of the written file

IMAGES = ["astronaut", "coffee", "chelsea", "rocket"]  # skimage.data, public domain / CC0


def load_image(name):
    """skimage.data.<name>() -> central square crop -> 224x224 uint8 RGB (Pillow bilinear)."""
    import skimage.data
    from PIL import Image

    img = getattr(skimage.data, name)()
    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = img[top:top + s, left:left + s, :3]
    out = Image.fromarray(crop).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8), list(img.shape)


def _same_pad(size, k, s):
    out = -(-size // s)
    total = max((out - 1) * s + k - size, 0)
    return total // 2, total - total // 2


def _conv(x, w, stride, depthwise):
    """NHWC float x, torch-layout w (OIHW or [C, 1, kh, kw]), TF SAME padding."""
    n, h, wd, c = x.shape
    kh, kw = w.shape[2:]
    if kh == 1 and kw == 1 and not depthwise:
        return x[:, ::stride, ::stride, :] @ w[:, :, 0, 0].T
    pt, pb = _same_pad(h, kh, stride)
    pl, pr = _same_pad(wd, kw, stride)
    xp = np.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    ho, wo = -(-h // stride), -(-wd // stride)
    y = 0
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i:i + stride * (ho - 1) + 1:stride, j:j + stride * (wo - 1) + 1:stride, :]
            y = y + (patch * w[:, 0, i, j] if depthwise else patch @ w[:, :, i, j].T)
    return y


def apply_layer(state, L, x):
    """One conv of `torchvision_layout()` on NHWC x: conv, eval-mode BN (eps 1e-5), ReLU6 if
    fused; the classifier entry takes the pooled [N, 1280] features."""
    if L["kind"] == "linear":
        return x @ state["classifier.1.weight"].T + state["classifier.1.bias"]
    y = _conv(x, state[L["conv"] + ".weight"], L["stride"], L["kind"] == "depthwise")
    bn = L["bn"]
    inv = state[bn + ".weight"] / np.sqrt(state[bn + ".running_var"] + np.float32(BN_EPS))
    y = y * inv + (state[bn + ".bias"] - state[bn + ".running_mean"] * inv)
    return np.clip(y, 0, 6) if L["relu6"] else y


def numpy_forward(state, x, taps=None):
    """Float MobileNetV2 on NHWC x using the torchvision-layout `state`; returns logits.

    Eval-mode BN from the stored statistics, ReLU6, residuals, global average pool, linear
    classifier. With `taps` (a dict), stores each conv layer's output (after BN and activation,
    before the residual add) under the conv key.
    """
    block_in, block = x, 0
    for L in torchvision_layout():
        if L["kind"] == "linear":
            return apply_layer(state, L, x.mean(axis=(1, 2)))
        if L["block"] != block:
            block_in, block = x, L["block"]
        y = apply_layer(state, L, x)
        if taps is not None:
            taps[L["conv"]] = y
        x = y + block_in if L["residual"] else y
    raise AssertionError("layout has no classifier")


def _version(dist):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "?"


def softmax(z):
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def verify(tflite_path, st_path, fixture_dir, labels_path=None):
    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image
    from safetensors import safe_open
    from safetensors.numpy import load_file

    import ai_edge_litert
    import PIL
    import skimage

    labels = None
    if labels_path:
        labels = Path(labels_path).read_text().splitlines()
        if len(labels) != 1000:
            sys.exit(f"error: {labels_path}: {len(labels)} lines, expected 1000 ImageNet classes")

    def name_of(i):
        return "background" if i == 0 else (labels[i - 1] if labels else None)

    state = load_file(str(st_path))
    with safe_open(str(st_path), framework="numpy") as f:
        meta = f.metadata()
    assert meta == METADATA, meta
    fixture_dir = Path(fixture_dir)
    fixture_dir.mkdir(parents=True, exist_ok=True)

    model, graph, _ = read_tflite(tflite_path)
    ops, _ = conv_ops(model, graph)
    layout = torchvision_layout()
    logits_tensor = ops[-1]["output"]
    interp = Interpreter(model_path=str(tflite_path), experimental_preserve_all_tensors=True)
    interp.allocate_tensors()
    in_det = interp.get_input_details()[0]
    out_det = interp.get_output_details()[0]

    def dequant(index):
        t = interp.get_tensor(index)
        d = next(d for d in interp.get_tensor_details() if d["index"] == index)
        s, z = d["quantization"]
        return (t.astype(np.float64) - z) * s, s

    def dequant_zp(index):
        return next(d for d in interp.get_tensor_details() if d["index"] == index)["quantization"][1]

    results = []
    worst = dict(logit=0.0, prob=0.0)
    for name in IMAGES:
        img, orig_shape = load_image(name)
        interp.set_tensor(in_det["index"], img[None])
        interp.invoke()
        q_out = interp.get_tensor(out_det["index"])[0]
        s, z = out_det["quantization"]
        tfl_prob = (q_out.astype(np.float64) - z) * s
        tfl_logits, _ = dequant(logits_tensor)
        tfl_logits = tfl_logits.reshape(-1)

        taps = {}
        x = img[None].astype(np.float32) / np.float32(127.5) - np.float32(1.0)
        logits = numpy_forward(state, x, taps)[0].astype(np.float64)
        prob = softmax(logits)
        # Per-layer agreement. End to end: RMS(float - interpreter) / RMS(interpreter) of every
        # conv output (quantization error accumulates with depth). Isolated: each float layer
        # applied to the interpreter's own (dequantized) input of that layer, compared with the
        # interpreter's output in units of the output's quantization step: this checks every
        # layer's weights, layout, stride, padding and activation on its own.
        layer_err, isolated = [], []
        for op, L in zip(ops, layout):
            ref, scale = dequant(op["output"])
            x_in, _ = dequant(op["inputs"][0])
            if L["kind"] == "linear":
                y = apply_layer(state, L, x_in.reshape(1, -1)).reshape(ref.shape)
            else:
                y = apply_layer(state, L, x_in.astype(np.float32))
                diff = taps[L["conv"]] - ref
                layer_err.append(dict(layer=L["conv"],
                                      rel_rms=float(np.sqrt((diff ** 2).mean() / (ref ** 2).mean())),
                                      max_abs_in_steps=float(np.abs(diff).max() / scale)))
            # The interpreter clamps to its uint8 range: compare within it.
            lo, hi = (0 - dequant_zp(op["output"])) * scale, (255 - dequant_zp(op["output"])) * scale
            isolated.append(dict(layer=L["conv"],
                                 max_abs_in_steps=float(np.abs(np.clip(y, lo, hi) - ref).max() / scale)))

        # The uint8 softmax has ties: order by probability, then by the dequantized logit.
        tfl_top5 = np.lexsort((-tfl_logits, -tfl_prob))[:5]
        top5 = np.argsort(-logits)[:5]
        entry = dict(
            name=name,
            source=f"skimage.data.{name}() (scikit-image {skimage.__version__}), shape {orig_shape}",
            file=f"{name}.rgb",
            tflite=dict(top5=[int(i) for i in tfl_top5],
                        probs=[round(float(tfl_prob[i]), 6) for i in tfl_top5],
                        logits=[round(float(tfl_logits[i]), 5) for i in tfl_top5]),
            float=dict(top5=[int(i) for i in top5],
                       probs=[round(float(prob[i]), 6) for i in top5],
                       logits=[round(float(logits[i]), 5) for i in top5]),
            top1_agree=bool(top5[0] == tfl_top5[0]),
            top5_overlap=len(set(map(int, top5)) & set(map(int, tfl_top5))),
            max_abs_logit_diff=round(float(np.abs(logits - tfl_logits).max()), 5),
            max_abs_prob_diff=round(float(np.abs(prob - tfl_prob).max()), 6),
            worst_layer_rel_rms=max(layer_err, key=lambda e: e["rel_rms"]),
            stem_rel_rms=layer_err[0]["rel_rms"],
            head_rel_rms=layer_err[-1]["rel_rms"],
            isolated_worst_layer=max(isolated, key=lambda e: e["max_abs_in_steps"]),
        )
        if labels:
            entry["tflite"]["labels"] = [name_of(int(i)) for i in tfl_top5]
            entry["float"]["labels"] = [name_of(int(i)) for i in top5]
        worst["logit"] = max(worst["logit"], entry["max_abs_logit_diff"])
        worst["prob"] = max(worst["prob"], entry["max_abs_prob_diff"])
        results.append(entry)

        img.tofile(fixture_dir / f"{name}.rgb")
        png = fixture_dir / f"{name}.png"
        Image.fromarray(img).save(png, optimize=True)
        entry["png"] = png.stat().st_size < 60_000
        if not entry["png"]:
            png.unlink()
        print(f"{name:10s} tflite top-1 {tfl_top5[0]:4d} ({tfl_prob[tfl_top5[0]]:.3f} "
              f"{name_of(int(tfl_top5[0])) or ''})  float top-1 {top5[0]:4d} "
              f"({prob[top5[0]]:.3f})  top-5 overlap {entry['top5_overlap']}/5  "
              f"max|dlogit| {entry['max_abs_logit_diff']:.3f}  max|dprob| "
              f"{entry['max_abs_prob_diff']:.4f}  worst layer {entry['worst_layer_rel_rms']['layer']}"
              f" rel RMS {entry['worst_layer_rel_rms']['rel_rms']:.3f}; isolated layers within "
              f"{entry['isolated_worst_layer']['max_abs_in_steps']:.2f} steps "
              f"({entry['isolated_worst_layer']['layer']})")

    check = dict(
        model=SOURCE_NAME,
        sha256=hashlib.sha256(Path(tflite_path).read_bytes()).hexdigest(),
        classes="1001 logits, index 0 = background, ImageNet-1k class i = index i + 1",
        preprocess="central square crop of the shorter side, Pillow Image.resize((224, 224), "
                   "BILINEAR); stored as NAME.rgb = 224*224*3 uint8 HWC RGB",
        tflite_input="raw uint8 pixels (quantized input: real = (q - 128) / 128)",
        float_input="x / 127.5 - 1, NHWC float32, numpy forward of the converted safetensors",
        tflite_probs="dequantized uint8 softmax output (scale 1/256); logits = dequantized uint8 "
                     "output of the Logits conv (preserved intermediate tensor)",
        layer_metric="rel_rms = RMS(float - interpreter) / RMS(interpreter) of a conv output "
                     "(after BN/ReLU6); max_abs_in_steps = max |diff| / that tensor's scale",
        versions=dict(ai_edge_litert=getattr(ai_edge_litert, "__version__", "?"),
                      tflite=_version("tflite"), safetensors=_version("safetensors"),
                      numpy=np.__version__, pillow=PIL.__version__,
                      scikit_image=skimage.__version__),
        max_abs_logit_diff=worst["logit"],
        max_abs_prob_diff=worst["prob"],
        top1_agree=sum(r["top1_agree"] for r in results),
        images=results,
    )
    (fixture_dir / "check.json").write_text(json.dumps(check, indent=1) + "\n")
    print(f"wrote {fixture_dir / 'check.json'}: top-1 agrees on {check['top1_agree']}/"
          f"{len(results)}, max |logit diff| {worst['logit']:.4f}, max |prob diff| {worst['prob']:.4f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("tflite", help="mobilenet_v2_1.0_224_quant.tflite")
    ap.add_argument("out", help="output .safetensors (torchvision mobilenet_v2 keys)")
    ap.add_argument("--verify", metavar="DIR",
                    help="also compare with the TF-lite interpreter and write fixtures to DIR")
    ap.add_argument("--labels", help="1000 ImageNet class names, one per line (for --verify)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print the operator mapping")
    args = ap.parse_args()
    if not Path(args.tflite).is_file():
        sys.exit(f"error: {args.tflite}: no such file")
    if not args.out.endswith(".safetensors"):
        sys.exit(f"error: {args.out}: the output must end in .safetensors")
    try:
        state, report = convert(args.tflite)
    except (struct.error, IndexError, KeyError, ValueError) as e:  # a corrupt flatbuffer
        sys.exit(f"error: {args.tflite}: unreadable TF-lite flatbuffer ({type(e).__name__}: {e})")
    except NotThisModel as e:
        sys.exit(f"error: {args.tflite} is not the MobileNetV2 1.0/224 uint8-quantized TF-lite "
                 f"model ({SOURCE_NAME}) this converter handles: {e}")
    for line in report:
        if args.verbose or line.startswith("warning"):
            print(line, file=sys.stderr)
    write_safetensors(state, args.out)
    n_params = sum(v.size for k, v in state.items()
                   if k.endswith(("weight", "bias")) and "running" not in k)
    print(f"wrote {args.out}: {len(state)} tensors, {n_params} parameters (torchvision "
          f"mobilenet_v2 with a 1001-class classifier, index 0 = background); metadata {METADATA}")
    if args.verify:
        verify(args.tflite, args.out, args.verify, args.labels)


if __name__ == "__main__":
    main()
