#!/usr/bin/env bash
# The GPU code path without a GPU: derma-train, derma-predict (with Grad-CAM) and derma-bench on
# wgpu through a software Vulkan driver (Mesa lavapipe: `apt install mesa-vulkan-drivers`),
# checked against the Flex CPU backend. Every WGSL kernel, fusion and autotune path the H100
# would run executes here, slowly, so a broken shader or op shows before device time is spent.
#
#   cargo build --release -p derma-train -p derma-bench && cargo build --release -p derma-train --example backend_agreement
# (the default, WGSL, build: `SPIRV=1 scripts/bench_gpu.sh prepare` leaves the SPIR-V derma-bench
# in target/release, and lavapipe crashes on CubeCL's SPIR-V — SIGSEGV inside libvulkan_lvp.so
# at the first kernel with shared memory, Burn's own matmul too: this lavapipe lacks
# VK_KHR_workgroup_memory_explicit_layout, docs/performance.md, Twelfth session — so rebuild
# derma-bench after it)
#   scripts/wgpu_software_check.sh [OUT]           # OUT: folder for the runs (default wgpu-check/)
#
# Checks (exit status 1 if any fails; about 15 minutes on 2 cores, most of it compiling kernels):
#   1. forward and backward agree: the `backend_agreement` example computes one training batch
#      (batch-norm batch statistics; cross-entropy at 28 px, then focal at 64 px) from the same
#      weights (seeds 1 and 5) on the CPU and on wgpu-software; logits within 1e-3 relative,
#      gradients within bounds set by the CPU's own noise floor (the example explains them);
#      and the cross-entropy batch again with `--pointwise kernels` (derma-model's 1x1 kernels,
#      not yet the default);
#   2. training learns on wgpu: generated 7-class colour data (28 px, width 0.25, output stride
#      8, batch 12, lr 0.003, 6 epochs: about the CLI test's setting) reaches test macro AUC
#      >= 0.9 on wgpu-software, as the same run on the CPU does (the two runs start from
#      different random weights: each backend has its own generator, so their losses are
#      shown, not compared);
#      (on wgpu-software the default `--step auto` runs the captured step);
#   2b. the captured training step (--step captured: the step recorded as a graph and
#      replayed) trains as the eager step (--step eager) does on wgpu-software: same seed, no
#      dropout, batch 10 (16 full batches and a last one of 8 an epoch: both shapes get a
#      graph), every epoch's train loss, validation loss and AUC within 1e-3;
#   2c. the same with a metric head and hard-negative mining on a binary task (class 4 vs the
#      rest, --metric-weight 0.5 --hard-negative-mining, 3 epochs): the triplet loss, the
#      head's update and the per-image losses recorded in the graphs; every epoch's train loss,
#      validation loss and AUC within 1e-3, and the mining lines equal;
#   3. derma-predict of the wgpu run folder on wgpu-software, with --gradcam, reproduces that
#      run's own test probabilities (predictions.csv) within 1e-4, and the same folder predicted
#      on the CPU agrees within 1e-3;
#   4. derma-bench --backend wgpu-software (step, e2e, loader, infer; 28 px batch 16) finishes
#      and writes its JSON report.
set -uo pipefail
bin=${BIN:-target/release}
out=${1:-wgpu-check}
for b in derma-train derma-predict derma-bench examples/backend_agreement; do
  [ -x "$bin/$b" ] || { echo "missing $bin/$b: see the build commands at the top of $0"; exit 2; }
done
rm -rf "$out" && mkdir -p "$out"
python3 - "$out/colours.npz" <<'EOF'
# 7 classes, each a colour plus per-pixel noise (the tests' colour_split, in numpy).
import sys
import numpy as np
palette = np.array([[230, 40, 40], [40, 230, 40], [40, 40, 230], [230, 230, 40], [230, 40, 230],
                    [40, 230, 230], [128, 128, 128]], np.float32)
rng = np.random.default_rng(0)
def split(per_class):
    y = np.repeat(np.arange(7), per_class)
    x = palette[y][:, None, None, :] + rng.normal(0, 40, (len(y), 28, 28, 3))
    return x.clip(0, 255).astype(np.uint8), y.reshape(-1, 1).astype(np.uint8)
arrays = {}
for name, n in [("train", 24), ("val", 8), ("test", 8)]:
    arrays[f"{name}_images"], arrays[f"{name}_labels"] = split(n)
np.savez(sys.argv[1], **arrays)
EOF
fail=0
# Well-conditioned seeds (see the example's docs): the CPU noise floor is about 1e-4 for both.
for spec in "ce 28 16 1 burn" "focal 64 8 5 burn" "ce 28 16 1 kernels"; do
  read -r loss size batch seed pointwise <<<"$spec"
  t0=$(date +%s) log="$out/agreement-$loss-$pointwise.log"
  if "$bin/examples/backend_agreement" --backend wgpu-software --loss "$loss" --size "$size" --batch "$batch" --seed "$seed" \
    --pointwise "$pointwise" >"$log" 2>&1; then
    echo "ok   forward/backward agreement, $loss, $size px, pointwise $pointwise ($(($(date +%s) - t0)) s): $(grep -h '^gradients' "$log")"
  else
    echo "FAIL forward/backward agreement, $loss, $size px, pointwise $pointwise:"; grep -v XDG_RUNTIME "$log" | tail -5 | sed 's/^/     /'; fail=1
  fi
done
flags=(--npz "$out/colours.npz" --width 0.25 --output-stride 8 --epochs 6 --batch-size 12 --lr 0.003 --seed 0)
for be in wgpu-software cpu; do
  t0=$(date +%s)
  if "$bin/derma-train" "${flags[@]}" --backend "$be" --out "$out/train-$be" >"$out/train-$be.log" 2>&1; then
    echo "ok   derma-train --backend $be ($(($(date +%s) - t0)) s)"
  else
    echo "FAIL derma-train --backend $be:"; tail -5 "$out/train-$be.log" | sed 's/^/     /'; fail=1
  fi
done
# The captured step (graph replayed) against the eager step on wgpu-software: the same seed,
# hence the same initial weights, no dropout (the two draw their masks differently); batches of
# 10 leave a last batch of 8 each epoch, which the captured run records as a second graph.
step_flags=(--npz "$out/colours.npz" --width 0.25 --output-stride 8 --epochs 6 --batch-size 10 --lr 0.003 --seed 0)
for mode in eager captured; do
  extra=(--step "$mode")
  t0=$(date +%s)
  if "$bin/derma-train" "${step_flags[@]}" --dropout 0 "${extra[@]}" --backend wgpu-software --out "$out/train-$mode" \
    >"$out/train-$mode.log" 2>&1; then
    echo "ok   derma-train --backend wgpu-software --dropout 0 ${extra[*]} ($(($(date +%s) - t0)) s)"
  else
    echo "FAIL derma-train $mode:"; tail -5 "$out/train-$mode.log" | sed 's/^/     /'; fail=1
  fi
done
# The metric head and hard-negative mining through the captured step (2c): a binary task.
head_flags=(--npz "$out/colours.npz" --width 0.25 --output-stride 8 --epochs 3 --batch-size 10 --lr 0.003 --seed 0
  --positive-classes 4 --metric-weight 0.5 --hard-negative-mining)
for mode in eager captured; do
  t0=$(date +%s)
  if "$bin/derma-train" "${head_flags[@]}" --dropout 0 --step "$mode" --backend wgpu-software --out "$out/train-head-$mode" \
    >"$out/train-head-$mode.log" 2>&1; then
    echo "ok   derma-train --backend wgpu-software --dropout 0 --metric-weight 0.5 --hard-negative-mining --step $mode ($(($(date +%s) - t0)) s)"
  else
    echo "FAIL derma-train head $mode:"; tail -5 "$out/train-head-$mode.log" | sed 's/^/     /'; fail=1
  fi
done
# Every epoch's train loss and validation loss/AUC within 1e-3 (relative above 1), and the
# captured run said that it replayed its graph and gave the last batch a graph of its own; with
# the head (second pair), the mining lines equal and the triplet loss printed every epoch.
compare() {
  python3 - "$@" <<'EOF2'
import csv, re, sys
eager, captured, head = sys.argv[1], sys.argv[2], sys.argv[3] == "head"
rows = [list(csv.DictReader(open(f"{d}/metrics.csv"))) for d in (eager, captured)]
assert len(rows[0]) == len(rows[1]) > 0, "different epoch counts"
worst = 0.0
for a, b in zip(*rows):
    for k in ("train_loss", "val_loss", "val_auc"):
        x, y = float(a[k]), float(b[k])
        worst = max(worst, abs(x - y) / max(1.0, abs(x)))
logs = [open(f"{d}.log").read() for d in (eager, captured)]
assert "the captured graph is replayed" in logs[1], "the captured run did not replay a graph"
assert "8-image last batch has a graph of its own" in logs[1], "the last batch was not captured"
if head:
    mining = [[l for l in log.splitlines() if l.startswith("mining:")] for log in logs]
    assert mining[0] and mining[0] == mining[1], f"mining lines differ: {mining}"
    triplets = [re.findall(r"triplet ([0-9.]+)", log) for log in logs]
    assert len(triplets[1]) == len(rows[1]), "the captured run did not report the triplet loss every epoch"
    worst = max([worst] + [abs(float(x) - float(y)) for x, y in zip(*triplets)])
print(f"epochs {len(rows[0])}, largest difference {worst:.2e}")
sys.exit(0 if worst <= 1e-3 else 1)
EOF2
}
if compare "$out/train-eager" "$out/train-captured" plain
then echo "ok   captured vs eager step on wgpu-software: metrics agree"
else echo "FAIL captured vs eager step on wgpu-software"; fail=1
fi
if compare "$out/train-head-eager" "$out/train-head-captured" head
then echo "ok   captured vs eager step with a metric head and mining on wgpu-software: metrics, mining and triplet loss agree"
else echo "FAIL captured vs eager step with a metric head and mining on wgpu-software"; fail=1
fi
if [ -f "$out/train-wgpu-software/model.bpk" ]; then
  t0=$(date +%s)
  if "$bin/derma-predict" --run "$out/train-wgpu-software" --input "$out/colours.npz" --split test --backend wgpu-software \
    --out "$out/predict-wgpu.csv" --gradcam "$out/cams" >"$out/predict-wgpu.log" 2>&1 \
    && "$bin/derma-predict" --run "$out/train-wgpu-software" --input "$out/colours.npz" --split test --backend cpu \
      --out "$out/predict-cpu.csv" >"$out/predict-cpu.log" 2>&1; then
    echo "ok   derma-predict wgpu-software (+ Grad-CAM) and cpu ($(($(date +%s) - t0)) s)"
  else
    echo "FAIL derma-predict:"; tail -5 "$out"/predict-*.log | sed 's/^/     /'; fail=1
  fi
fi
t0=$(date +%s)
if "$bin/derma-bench" --backend wgpu-software --sizes 28:16 --width 0.25 --steps 3 --warmup-steps 1 \
  --modes step,e2e,loader,infer --synthetic-images 64 --json "$out/bench.json" >"$out/bench.log" 2>&1; then
  echo "ok   derma-bench wgpu-software ($(($(date +%s) - t0)) s)"
else
  echo "FAIL derma-bench:"; tail -5 "$out/bench.log" | sed 's/^/     /'; fail=1
fi
python3 - "$out" <<'EOF' || fail=1
import csv, json, os, sys
d = sys.argv[1]
bad = []
def rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
def report(be):
    return json.load(open(os.path.join(d, f"train-{be}", "report.json")))
try:
    lw, lc = ([float(r["train_loss"]) for r in rows(os.path.join(d, f"train-{be}", "metrics.csv"))]
              for be in ("wgpu-software", "cpu"))
    print("epoch  train loss wgpu-software  cpu")
    for e, (a, b) in enumerate(zip(lw, lc), 1):
        print(f"{e:5}  {a:22.5f}  {b:7.5f}")
    for be in ("wgpu-software", "cpu"):
        auc = report(be)["test"]["auc_macro"]
        print(f"test macro AUC {be}: {auc:.4f}")
        if auc < 0.9:
            bad.append(f"{be}: test macro AUC {auc:.4f} < 0.9 (the run did not learn the colour signal)")
except (OSError, KeyError, ValueError) as e:
    bad.append(f"training outputs unreadable: {e!r}")
try:
    own = [r for r in rows(os.path.join(d, "train-wgpu-software", "predictions.csv")) if r["split"] == "test"]
    pw, pc = (rows(os.path.join(d, f"predict-{be}.csv")) for be in ("wgpu", "cpu"))
    probs = lambda r: [float(v) for k, v in r.items() if k.startswith("prob")]
    dw = max(abs(a - b) for r, s in zip(own, pw) for a, b in zip(probs(r), probs(s)))
    dc = max(abs(a - b) for r, s in zip(pw, pc) for a, b in zip(probs(r), probs(s)))
    cams = len([f for f in os.listdir(os.path.join(d, "cams")) if f.endswith(".png")])
    print(f"predict: max |p| diff vs the run's predictions.csv {dw:.2e}, wgpu vs cpu {dc:.2e}, {cams} Grad-CAM overlays")
    if len(own) != len(pw) or dw > 1e-4:
        bad.append(f"derma-predict on wgpu differs from the run's predictions by {dw:.2e}")
    if dc > 1e-3:
        bad.append(f"forward pass: wgpu vs cpu probabilities differ by {dc:.2e}")
    if cams != len(pw):
        bad.append(f"{cams} Grad-CAM overlays for {len(pw)} images")
except (OSError, KeyError, ValueError) as e:
    bad.append(f"prediction outputs unreadable: {e!r}")
try:
    for r in json.load(open(os.path.join(d, "bench.json")))["results"]:
        print("bench", {k: v for k, v in r.items() if isinstance(v, (int, float, str))})
except (OSError, KeyError, ValueError) as e:
    bad.append(f"bench.json unreadable: {e!r}")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
EOF
[ $fail = 0 ] && echo "wgpu-software check passed" || echo "wgpu-software check FAILED"
exit $fail
