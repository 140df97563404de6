#!/usr/bin/env bash
# derma-bench (Burn, wgpu) against scripts/bench_torch.py (PyTorch, CUDA) on one GPU machine.
#
#   scripts/bench_gpu.sh prepare            # here, no GPU needed: release binaries packed into
#                                           # .dev/*.xz, the Vulkan loader's .debs into .gl/
#   scripts/bench_gpu.sh check              # here, before the device call: the packs are built
#                                           # from the committed build inputs (exit 1 if stale)
#   scripts/bench_gpu.sh run [PLAN...]      # on the GPU machine, from the repository root
#   scripts/bench_gpu.sh compare DIR        # comparison table of the JSON files in DIR
#
# PLANs (default: main):
#   main     PyTorch, then each packed derma-bench binary (WGSL; SPIR-V if packed), one process
#            per size so each peak-memory reading belongs to one configuration; comparison table.
#   levers   runtime levers on the first packed binary, one variable at a time: autotune level,
#            wgpu task batching, upload with a host copy (the old way), no augmentation, loader prefetch.
#   profile  per-kernel device time of a few training steps: CubeCL's profiling log (Burn) and
#            torch.profiler (PyTorch).
#   diag     what bounds the step: warm-up with and without the autotune disk cache, eager vs
#            replayed step and inference (see plan_diag); PyTorch's step at batch 64/256/1024.
#   batches  Burn's step at batch 64 and 1024 (with diag's 256: flat or proportional).
#   pointwise  the 1x1 convolutions by derma-model's kernels (`--pointwise kernels`) on the first
#            packed binary at each size: step and step-captured, against main's rows (Burn's),
#            then a profile of the kernels' step (docs/performance.md, Eleventh session).
#   all      main, levers, profile.
#
# Settings (environment): SIZES ("28:256 224:128"), WIDTH (1.0), STEPS (50), WARMUP (10),
# WORKERS (PyTorch DataLoader workers, default every core as Burn's loader uses), AUGMENT (natural), DATA (synthetic | npz:PATH),
# DEADLINE (seconds for the whole run, 540: a run still going then is stopped, later ones are
# skipped; set it from the device budget left, see docs/performance.md), CAP (seconds one run
# may take at most, 200, so a slow first run cannot starve the others), OUT (results folder:
# $OUT on the device machine, else bench-out/), BACKEND (wgpu) and TORCH_DEVICE (cuda):
# `BACKEND=cpu TORCH_DEVICE=cpu` dry-runs the whole script on a CPU (no Vulkan set-up then;
# SKIP_SETUP=1 skips it too), END (epoch seconds: a hard end for the whole device call, see
# above).
#
# $OUT receives four files only (the device returns at most 8): machine.txt, compare.txt,
# bench.tar.gz — every log and JSON, re-packed after each run, so a call stopped early still
# returns what finished — and tune-cache.tar.xz, the kernel tuning to carry into the next call
# as .dev/tune-cache.tar.xz (scripts/device_lib.sh, tune_cache_save). `scripts/bench_gpu.sh compare DIR` re-prints the table from the
# unpacked archive.
#
# On the device machine (the 15-minute budget in docs/performance.md), the next call: the
# 224-px row with the batch-norm and depthwise changes, the pointwise lever, then profiles:
#   run(command="END=$(($(date +%s)+520)); export END; SIZES=224:128 DEADLINE=510 CAP=240 scripts/bench_gpu.sh run main pointwise profile",
#       timeout_s=560, carry=[".gl", ".dev/BUILD", ".dev/derma-bench-wgsl.xz", ".dev/tune-cache.tar.xz"])
# (2026-11-28's first call ran `SIZES=224:128 ... run main batches`: docs/gpu-runs/2026-11-28-h200/.)
set -uo pipefail

sizes=${SIZES:-"28:256 224:128"}
width=${WIDTH:-1.0}
steps=${STEPS:-50}
warmup=${WARMUP:-10}
workers=${WORKERS:-$(nproc)} # as many as Burn's loader threads (rayon: every core)
augment=${AUGMENT:-natural}
data=${DATA:-synthetic}
case "$data" in npz:/*) ;; npz:*) data="npz:$PWD/${data#npz:}" ;; esac # profile runs elsewhere
deadline=${DEADLINE:-540}
# END (epoch seconds, optional): a hard end shared by the scripts of one device call; each
# script's deadline is cut to it, so a call granted less time than planned still ends in time.
[ -n "${END:-}" ] && [ $((END - $(date +%s))) -lt "$deadline" ] && deadline=$((END - $(date +%s)))
cap=${CAP:-200}
export TZ=UTC # nvidia-smi's timestamps and `date +%s` in runs.csv read alike here and later
out=${OUT:-bench-out}
work=/tmp/bench-work # every log and JSON; packed into $out/bench.tar.gz
started=$(date +%s)

prepare() {
  set -e
  for d in /.dev/ /.gl/; do grep -qxF "$d" .git/info/exclude 2>/dev/null || echo "$d" >>.git/info/exclude; done
  mkdir -p .dev .gl
  cargo build --release -p derma-bench
  strip -o /tmp/derma-bench-stripped target/release/derma-bench # 19.4 -> 16.4 MB packed
  xz -T0 -9 -c /tmp/derma-bench-stripped >.dev/derma-bench-wgsl.xz && rm /tmp/derma-bench-stripped
  build_stamp derma-bench-wgsl
  if [ "${SPIRV:-1}" = 1 ]; then
    cargo build --release -p derma-bench --features vulkan
    strip -o /tmp/derma-bench-stripped target/release/derma-bench
    xz -T0 -9 -c /tmp/derma-bench-stripped >.dev/derma-bench-spirv.xz && rm /tmp/derma-bench-stripped
    build_stamp derma-bench-spirv
  fi
  # The Vulkan loader (the device machine has the NVIDIA driver's ICD but maybe no loader).
  local o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
  mkdir -p /tmp/amd64/partial
  # shellcheck disable=SC2086
  apt-get $o update >/dev/null
  # shellcheck disable=SC2086
  (cd .gl && apt-get $o download libvulkan1 libegl1 libglvnd0 libopengl0 libgl1 libglx0 libgles2)
  du -ch .dev/* .gl/* | tail -1
  echo 'now check (scripts/bench_gpu.sh check), then on the device: the calls at the top of this script (docs/performance.md, "Next call")'
}

# shellcheck source=scripts/device_lib.sh
. "$(dirname "$0")/device_lib.sh"

# Seconds left before the deadline.
left() { echo $((deadline - ($(date +%s) - started))); }

# pack: every result so far into $out/bench.tar.gz (after each run: a stopped call keeps them).
# GNU tar exits 1 when a file changed while it was read (nvidia-smi keeps appending to its
# samples): the archive is still complete up to that point, so 1 is kept too.
pack() {
  tar czf "$out/bench.tar.gz.tmp" -C "$work" . 2>/dev/null
  [ $? -le 1 ] && mv "$out/bench.tar.gz.tmp" "$out/bench.tar.gz"
}

# timed NAME LOG CMD...: runs CMD (output to LOG) for at most min(CAP, time left) if at least
# 20 s are left, else says it skipped; then packs the results.
timed() {
  local name=$1 log=$2; shift 2
  local t; t=$(left)
  if [ "$t" -lt 20 ]; then echo "skip $name: deadline (${deadline}s) reached"; return 0; fi
  [ "$t" -le "$cap" ] || t=$cap
  local t0; t0=$(date +%s)
  # Each run's wall-clock window, to read its share of the GPU-wide memory samples.
  echo "${name//,/ },$t0,start" >>"$work/runs.csv"
  if timeout -k 10 "$t" "$@" >"$log" 2>&1; then
    echo "ok   $name ($(($(date +%s) - t0)) s)"
  else
    echo "FAIL $name (exit $?, $(($(date +%s) - t0)) s):"; tail -5 "$log" | sed 's/^/     /'
  fi
  echo "${name//,/ },$(date +%s),end" >>"$work/runs.csv"
  pack
}

setup_device() {
  # The CPU dry run (BACKEND=cpu) leaves the development machine's libraries alone.
  if [ -z "${SKIP_SETUP:-}" ] && [ "${BACKEND:-wgpu}" = wgpu ]; then vulkan_setup; fi
  tune_cache_restore
  bindir=/tmp/derma-bench-bin
  mkdir -p "$bindir"
  bins=()
  for x in .dev/derma-bench-wgsl.xz .dev/derma-bench-spirv.xz; do
    [ -f "$x" ] || continue
    local b; b="$bindir/$(basename "$x" .xz)"
    unxz "$x" "$b" && chmod +x "$b" && bins+=("$b")
  done
  # Without a pack (a carry path that does not exist is dropped without a word) every Burn
  # plan would only print "no packed binary" while PyTorch spends the device time.
  if [ "${BACKEND:-wgpu}" != cpu ] && [ ${#bins[@]} -eq 0 ]; then
    echo "no .dev/derma-bench-*.xz carried (or none unpacked): run 'scripts/bench_gpu.sh prepare' here and carry .dev/" >&2
    exit 2
  fi
  mkdir -p "$out"
  out=$(cd "$out" && pwd)
  rm -rf "$work" && mkdir -p "$work"
  {
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    python3 -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.version.cuda, "cudnn", torch.backends.cudnn.version())'
    ldconfig -p | grep -m1 'libvulkan\.so\.1' || echo "no libvulkan.so.1 in ldconfig"
    echo "VK_DRIVER_FILES=${VK_DRIVER_FILES:-}"
    build_info
    nproc
  } 2>&1 | tee "$out/machine.txt"
  cp "$out/machine.txt" "$work/"
  # Per-process GPU memory as the driver sees it (CUDA context and Vulkan device included).
  nvidia-smi --query-compute-apps=pid,used_memory --format=csv,noheader,nounits -lms 200 >"$work/smi.csv" 2>/dev/null &
  smi_pid=$!
  # The whole GPU's memory in use (a Vulkan process may be missing from the per-process list;
  # the runs are sequential, so each run's window in runs.csv gives its peak).
  # (nvidia-smi's own timestamps: a pipe could deliver its lines late, in bursts.)
  nvidia-smi --query-gpu=timestamp,memory.used --format=csv,noheader,nounits -lms 200 >"$work/smi-gpu.csv" 2>/dev/null &
  smi_gpu_pid=$!
  trap 'kill $smi_pid $smi_gpu_pid 2>/dev/null' EXIT
}

backend=${BACKEND:-wgpu}
torch_device=${TORCH_DEVICE:-cuda}

# burn_args [STEPS]: the flags every derma-bench run shares.
burn_args() { echo --backend "$backend" --width "$width" --steps "${1:-$steps}" --warmup-steps "$warmup" --augment "$augment" --data "$data"; }

plan_main() {
  local torch_sizes; torch_sizes=$(echo "$sizes" | tr ' ' ',')
  timed "torch $torch_sizes" "$work/torch.log" python3 scripts/bench_torch.py --device "$torch_device" --sizes "$torch_sizes" \
    --width "$width" --steps "$steps" --warmup-steps "$warmup" --modes step,e2e,loader,infer --workers "$workers" \
    --augment "$augment" --data "$data" --json "$work/torch.json"
  # Size by size, each runtime in turn: under the deadline both WGSL and SPIR-V get the first size.
  for sb in $sizes; do
    for b in "${bins[@]}"; do
      local v; v=$(basename "$b"); v=${v#derma-bench-}
      # shellcheck disable=SC2046
      timed "burn-$v $sb" "$work/burn-$v-${sb%%:*}.log" "$b" $(burn_args) --sizes "$sb" --modes step,step-captured,e2e,e2e-captured,loader,infer,infer-graph \
        --json "$work/burn-$v-${sb%%:*}.json"
    done
  done
}

# pointwise: the lever of the Eleventh session (derma_model::pointwise, default off until measured).
plan_pointwise() {
  [ ${#bins[@]} -gt 0 ] || { echo "pointwise: no packed binary"; return; }
  local b=${bins[0]} v; v=$(basename "$b"); v=${v#derma-bench-}
  for sb in $sizes; do
    local s=${sb%%:*}
    # shellcheck disable=SC2046
    timed "lever pointwise=kernels $sb" "$work/lever-pointwise-$s.log" "$b" $(burn_args) --sizes "$sb" \
      --modes step,step-captured --pointwise kernels --json "$work/lever-$v-pointwise_kernels-$s.json"
  done
  PROFILE_ARGS="--pointwise kernels" PROFILE_TAG=pointwise plan_profile burn-only
}

plan_levers() {
  [ ${#bins[@]} -gt 0 ] || { echo "levers: no packed binary"; return; }
  local b=${bins[0]} v; v=$(basename "$b"); v=${v#derma-bench-}
  for sb in $sizes; do
    local s=${sb%%:*}
    for level in minimal extensive; do
      # shellcheck disable=SC2046
      timed "lever autotune=$level $sb" "$work/lever-autotune-$level-$s.log" env CUBECL_AUTOTUNE_LEVEL=$level \
        "$b" $(burn_args) --sizes "$sb" --modes step --json "$work/lever-$v-autotune_$level-$s.json"
    done
    for tasks in 8 128; do
      # shellcheck disable=SC2046
      timed "lever wgpu_tasks=$tasks $sb" "$work/lever-tasks-$tasks-$s.log" env CUBECL_WGPU_MAX_TASKS=$tasks \
        "$b" $(burn_args) --sizes "$sb" --modes step --json "$work/lever-$v-tasks_$tasks-$s.json"
    done
    # shellcheck disable=SC2046
    timed "lever upload=copy $sb" "$work/lever-copy-$s.log" "$b" $(burn_args) --sizes "$sb" --modes e2e --upload copy \
      --json "$work/lever-$v-upload_copy-$s.json"
    # shellcheck disable=SC2046
    timed "lever prefetch=8 $sb" "$work/lever-prefetch-$s.log" "$b" $(burn_args) --sizes "$sb" --modes e2e --prefetch 8 \
      --json "$work/lever-$v-prefetch_8-$s.json"
    # shellcheck disable=SC2046
    timed "lever augment=none $sb" "$work/lever-noaug-$s.log" "$b" $(burn_args | sed 's/--augment [a-z]*/--augment none/') \
      --sizes "$sb" --modes e2e,loader --json "$work/lever-$v-augment_none-$s.json"
  done
}

# diag: what bounds the step (docs/performance.md, "What the first run shows"). One size
# (DIAG_SIZE, 28), DIAG_STEPS (30) timed steps per run, on the first packed binary:
#   cold / cached  the same run twice: with the autotune-cache build the second process reads the
#                  first's tuning from disk, so the difference in warm-up is autotuning's share;
#                  the cached run then trains with the step captured as a graph and replayed
#                  (step-captured: derma_train::captured_step, parameters advancing) beside it;
#                  then the three A/B runs of derma-model's and derma-train's own operations
#                  (burn-bn, burn-dw, adamw-burn, below) first, as the runs a short call keeps;
#   graph          a training step and an inference, eager and replayed from a captured graph
#                  (burn::tensor::capture; the replayed step does not advance the parameters):
#                  the share of Burn's per-operation host work; and `phases` (forward, backward,
#                  AdamW update each synchronised); adamw-flat: the step with the flat AdamW
#                  lever (derma_train::flat_adamw); frozen-bn: the step with frozen batch norms;
#                  burn-bn: the step with Burn's own batch norm instead of derma-model's
#                  kernels; burn-dw: with Burn's depthwise convolution instead of derma-model's
#                  kernels; adamw-burn: with Burn's AdamW instead of derma-train's fused one.
#                  Every Burn run also logs CPU ms per step of
#                  each thread (main = tensor API + autodiff, DSU = fusion, DSD = CubeCL/wgpu);
# (The batch sweep: plan_batches; autotune level minimal/extensive: the levers plan.)
plan_diag() {
  [ ${#bins[@]} -gt 0 ] || { echo "diag: no packed binary"; return; }
  local b=${bins[0]} v s=${DIAG_SIZE:-28} n=${DIAG_STEPS:-30}; v=$(basename "$b"); v=${v#derma-bench-}
  # "cold" means no tuning on disk: CubeCL keeps it in this checkout's target/environment (the
  # outermost Cargo.toml's target/), which an earlier call on a still-warm machine may have filled.
  rm -rf target/environment
  timed "torch diag $s:64,$s:256,$s:1024" "$work/torch-diag.log" python3 scripts/bench_torch.py --device "$torch_device" \
    --sizes "$s:64,$s:256,$s:1024" --width "$width" --steps "$n" --warmup-steps "$warmup" --modes step \
    --augment "$augment" --data "$data" --json "$work/torch-diag.json"
  # shellcheck disable=SC2046
  timed "burn-$v diag cold $s:256" "$work/diag-cold-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" --modes step \
    --json "$work/diag-$v-cold-$s.json"
  # shellcheck disable=SC2046
  timed "burn-$v diag cached $s:256" "$work/diag-cached-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" --modes step,step-captured \
    --json "$work/diag-$v-cached-$s.json"
  # The batch-norm kernels' gain: the same step with Burn's own batch_norm_train (the
  # decomposition derma-model's one-kernel-per-direction batch norm replaces; lavapipe: see
  # docs/performance.md "Third session") against the "cached" run above.
  # shellcheck disable=SC2046
  timed "burn-$v diag burn-bn $s:256" "$work/diag-burnbn-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,phases --batch-norm burn --json "$work/diag-$v-burn_bn-$s.json"
  # The depthwise kernels' gain: the same step with Burn's depthwise convolution forward and
  # backward (derma_model::depthwise; lavapipe: docs/performance.md "Fifth session").
  # shellcheck disable=SC2046
  timed "burn-$v diag burn-dw $s:256" "$work/diag-burndw-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,phases --depthwise burn --json "$work/diag-$v-burn_dw-$s.json"
  # The fused AdamW's gain: the same step with Burn's own AdamW (~15 operations per parameter
  # tensor instead of one: docs/performance.md "Fifth session").
  # shellcheck disable=SC2046
  timed "burn-$v diag adamw-burn $s:256" "$work/diag-adamwburn-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,phases --optimizer adamw-burn --json "$work/diag-$v-adamw_burn-$s.json"
  # Burn's host overhead: the same training step and inference eager and replayed from a
  # captured graph (step-graph replays one step: parameters do not advance, a bound).
  # shellcheck disable=SC2046
  timed "burn-$v diag graph $s:256" "$work/diag-graph-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,step-graph,infer,infer-graph,phases \
    --json "$work/diag-$v-graph-$s.json"
  # Fewer host operations: AdamW over all parameters as one vector (~15 operations a step
  # instead of ~2,400, but ~350 more launches: docs/performance.md), against the step above.
  # shellcheck disable=SC2046
  timed "burn-$v diag adamw-flat $s:256" "$work/diag-flat-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,phases --optimizer adamw-flat --json "$work/diag-$v-adamw_flat-$s.json"
  # What training-mode batch norm costs at this size (43 % of the 64-px training step on the
  # H100, ~940 of 1,657 launches a step on lavapipe: docs/performance.md): the step with frozen
  # batch norms against the step above.
  # shellcheck disable=SC2046
  timed "burn-$v diag frozen-bn $s:256" "$work/diag-frozenbn-$s.log" "$b" $(burn_args "$n") --sizes "$s:256" \
    --modes step,phases --freeze-bn --json "$work/diag-$v-frozen_bn-$s.json"
}

# batches: ms/step at batch 64 and 1024 in one process (PyTorch's are in diag's torch run): flat
# in the batch means per-operation host/launch overhead bounds the step, proportional the GPU.
plan_batches() {
  [ ${#bins[@]} -gt 0 ] || { echo "batches: no packed binary"; return; }
  local b=${bins[0]} v s=${DIAG_SIZE:-28} n=${DIAG_STEPS:-30}; v=$(basename "$b"); v=${v#derma-bench-}
  # shellcheck disable=SC2046
  timed "burn-$v diag batches $s:64,$s:1024" "$work/diag-batches-$s.log" "$b" $(burn_args "$n") --sizes "$s:64,$s:1024" \
    --modes step --json "$work/diag-$v-batches-$s.json"
}

# profile [burn-only]: PROFILE_ARGS are added to derma-bench's arguments and PROFILE_TAG to the
# log names (plan_pointwise); burn-only skips PyTorch and every binary but the first.
plan_profile() {
  local only=${1:-} extra=${PROFILE_ARGS:-} tag=${PROFILE_TAG:+-$PROFILE_TAG} torch_sizes profiled=("${bins[@]}")
  if [ "$only" = burn-only ]; then
    profiled=("${bins[@]:0:1}")
  else
    torch_sizes=$(echo "$sizes" | tr ' ' ',')
    timed "torch profile" "$work/profile-torch.log" python3 scripts/bench_torch.py --device "$torch_device" --sizes "$torch_sizes" \
      --width "$width" --steps 5 --warmup-steps "$warmup" --modes step --profile-steps 5
  fi
  for b in "${profiled[@]}"; do
    local v; v=$(basename "$b"); v=${v#derma-bench-}
    for sb in $sizes; do
      # Under target/ of this checkout: CubeCL's disk cache (autotune-cache build) resolves to the
      # outermost Cargo.toml's target/environment, the one the other runs filled.
      local s=${sb%%:*} dir log; mkdir -p target && dir=$(mktemp -d -p "$PWD/target")
      log="$work/profile-$v$tag-$s.log"
      # CubeCL reads cubecl.toml from the working directory: per-kernel device times, one
      # summary table per synchronisation (the last one covers the 5 timed steps). Level "full"
      # would add each launch's grid, but prints every launch's comptime description over dozens
      # of lines (23 MB for 40 steps of a width-0.25 network on lavapipe): too much to bring back.
      printf '[profiling.logger]\nlevel = "basic"\nappend = false\nfile = "%s"\n' "$log" >"$dir/cubecl.toml"
      # shellcheck disable=SC2046
      timed "burn-$v$tag profile $sb" "$work/profile-$v$tag-$s.out" bash -c "cd '$dir' && '$b' $(burn_args 5) --sizes '$sb' --modes step $extra"
      [ -f "$log" ] || continue
      python3 scripts/profile_summary.py "$log" --steps 5 --top 25 | tee "$work/profile-$v$tag-$s-summary.txt"
    done
  done
  [ -f "$work/profile-torch.log" ] && [ "$only" != burn-only ] && grep -A 28 "== torch profile" "$work/profile-torch.log" | head -80
}

compare() {
  python3 - "$1" <<'EOF'
import csv, datetime, glob, json, os, sys
d = sys.argv[1]
def load(p):
    try:
        return json.load(open(p))
    except (OSError, ValueError):
        return None
torch_rep = load(os.path.join(d, "torch.json"))
torch_by = {(r["size"], r["batch"]): r for r in (torch_rep or {}).get("results", [])}
# The diag plan's PyTorch runs (other batches) fill in what the main plan's torch.json lacks.
torch_diag = load(os.path.join(d, "torch-diag.json"))
for r in (torch_diag or {}).get("results", []):
    torch_by.setdefault((r["size"], r["batch"]), r)
torch_rep = torch_rep or torch_diag
# nvidia-smi samples: max used MiB per pid.
smi = {}
try:
    for row in csv.reader(open(os.path.join(d, "smi.csv"))):
        if len(row) >= 2 and row[0].strip().isdigit():
            pid, mib = int(row[0]), row[1].strip()
            if mib.isdigit():
                smi[pid] = max(smi.get(pid, 0), int(mib))
except OSError:
    pass
# GPU-wide memory samples (epoch seconds, MiB) and each run's window: peak per run.
gpu_samples = []
try:
    for row in csv.reader(open(os.path.join(d, "smi-gpu.csv"))):
        if len(row) == 2 and row[1].strip().isdigit():
            try:  # "2026/11/26 22:13:17.123", UTC (the run exports TZ=UTC), as runs.csv's epoch seconds
                t = datetime.datetime.strptime(row[0].strip(), "%Y/%m/%d %H:%M:%S.%f").replace(
                    tzinfo=datetime.timezone.utc).timestamp()
            except ValueError:
                continue
            gpu_samples.append((t, int(row[1].strip())))
except OSError:
    pass
windows = {}
try:
    for row in csv.reader(open(os.path.join(d, "runs.csv"))):
        if len(row) == 3 and row[1].isdigit():
            windows.setdefault(row[0], {})[row[2]] = int(row[1])
except OSError:
    pass
runs = []  # (label, report)
for p in sorted(glob.glob(os.path.join(d, "burn-*.json"))) + sorted(glob.glob(os.path.join(d, "lever-*.json"))) + sorted(
        glob.glob(os.path.join(d, "diag-*.json"))):
    rep = load(p)
    if rep:
        label = os.path.basename(p)[:-5].rsplit("-", 1)[0]
        runs.append((label, rep))
def ips(r, mode):
    m = r.get(mode) if r else None
    return m["images_per_second"] if m else None
def warm(r, mode):  # seconds of the untimed warm-up (compilation, autotuning); absent in older JSON
    m = r.get(mode) if r else None
    return m.get("warmup_seconds") if m else None
def f(x, nd=1):
    return "-" if x is None else f"{x:.{nd}f}"
print(f"\nPyTorch: {torch_rep['framework_version']} | {torch_rep['backend']}" if torch_rep else "\nPyTorch: no torch.json")
print(f"{'run':<34} {'size':>4} {'batch':>5} {'mode':<11} {'burn img/s':>11} {'torch img/s':>11} {'burn/torch':>10} {'warm-up s burn/torch':>21}")
if not runs:
    # No Burn result (no adapter, a crash): PyTorch's figures still stand on their own.
    for (size, batch), t in sorted(torch_by.items()):
        for mode in ("step", "e2e", "loader", "infer"):
            if ips(t, mode) is not None:
                print(f"{'(no burn run finished)':<34} {size:>4} {batch:>5} {mode:<11} {'-':>11} {f(ips(t, mode)):>11} {'-':>10}")
for label, rep in runs:
    for r in rep["results"]:
        t = torch_by.get((r["size"], r["batch"]))
        for mode in ("step", "step_captured", "e2e", "e2e_captured", "loader", "infer", "infer_graph", "step_graph"):
            b = ips(r, mode)
            if b is None:
                continue
            tmode = {"infer_graph": "infer", "step_graph": "step", "step_captured": "step", "e2e_captured": "e2e"}.get(mode, mode)  # against PyTorch's eager runs
            tv = ips(t, tmode)
            ratio = b / tv if tv else None
            w = f"{f(warm(r, mode))}/{f(warm(t, tmode))}"
            print(f"{label:<34} {r['size']:>4} {r['batch']:>5} {mode.replace('_', '-'):<13} {f(b):>11} {f(tv):>11} {f(ratio, 2):>10} {w:>21}")
host = [(label, r) for label, rep in runs for r in rep["results"]
        if any((r.get(m) or {}).get("threads") for m in ("step", "step_captured", "e2e", "e2e_captured")) or r.get("phases")]
if host:
    print("\nCPU ms per step by thread (DSU-*: Burn's fusion server, DSD-*: the CubeCL/wgpu server, loader and rayon: the data loader "
          "and its augmentation workers, other: the calling thread; results before 2026-11-28's last commits counted those two as the calling thread)")
    for label, r in host:
        for mode in ("step", "step_captured", "e2e", "e2e_captured"):
            m = r.get(mode)
            if m and m.get("threads"):
                top = ", ".join(f"{t['name']} {t['ms_per_step']:.1f}" for t in m["threads"][:5])
                print(f"{label:<34} {r['size']:>4} {r['batch']:>5} {mode:<6} wall {m['ms_per_step']:.2f}: {top}")
        p = r.get("phases")
        if p:
            print(f"{label:<34} {r['size']:>4} {r['batch']:>5} phases forward {p['forward']['done_ms']:.2f} (issued "
                  f"{p['forward']['issued_ms']:.2f}), backward {p['backward']['done_ms']:.2f} (issued {p['backward']['issued_ms']:.2f}), "
                  f"update {p['update']['done_ms']:.2f} (issued {p['update']['issued_ms']:.2f}) ms")
print(f"\n{'memory (MiB)':<34} {'size':>4} {'batch':>5} {'burn peak':>10} {'burn smi':>9} {'torch peak':>11} {'torch alloc':>12} {'torch smi':>10}")
torch_smi = smi.get(torch_rep["pid"]) if torch_rep else None
for label, rep in runs:
    for r in rep["results"]:
        t = torch_by.get((r["size"], r["batch"]))
        bm, tm = r.get("memory"), (t or {}).get("memory")
        mib = lambda m, k: None if not m else m[k] / 2**20
        print(f"{label:<34} {r['size']:>4} {r['batch']:>5} {f(mib(bm, 'peak_reserved_bytes'), 0):>10} {f(smi.get(rep['pid']), 0):>9} "
              f"{f(mib(tm, 'peak_reserved_bytes'), 0):>11} {f(mib(tm, 'peak_allocated_bytes'), 0):>12} {f(torch_smi, 0):>10}")
if windows and gpu_samples:
    print(f"\n{'GPU memory in use (MiB), whole GPU':<40} {'peak':>6}  (nvidia-smi --query-gpu, within each run's window)")
    base = min(m for _, m in gpu_samples)
    for name, w in windows.items():
        inside = [m for t, m in gpu_samples if w.get("start", 0) <= t <= w.get("end", 1 << 62)]
        print(f"{name[:40]:<40} {f(max(inside) if inside else None, 0):>6}")
    print(f"(idle GPU: {base} MiB)")
print("burn peak: an estimate, the sum of CubeCL pools' reserved peaks (derma-bench memory.rs; pools peak at different")
print("times); the whole-GPU peak per run above is the memory check. torch peak/alloc: max_memory_reserved/allocated per size;")
print("smi: nvidia-smi's largest per-process reading (context included; torch's covers all its sizes in one process).")
EOF
}

cmd=${1:-run}
shift || true
case "$cmd" in
  prepare) prepare ;;
  check) check_packs derma-bench-wgsl derma-train $([ -f .dev/derma-bench-spirv.xz ] && echo derma-bench-spirv) ;;
  compare) compare "${1:-$out}" ;;
  run)
    setup_device
    plans=("$@"); [ ${#plans[@]} -gt 0 ] || plans=(main)
    for p in "${plans[@]}"; do
      case "$p" in
        main) plan_main ;;
        levers) plan_levers ;;
        profile) plan_profile ;;
        diag) plan_diag ;;
        batches) plan_batches ;;
        pointwise) plan_pointwise ;;
        all) plan_main; plan_levers; plan_profile ;;
        *) echo "unknown plan $p (main, levers, profile, diag, batches, pointwise, all)"; exit 2 ;;
      esac
    done
    kill "$smi_pid" 2>/dev/null
    compare "$work" | tee "$out/compare.txt"
    cp "$out/compare.txt" "$work/" && pack
    tune_cache_save "$out/tune-cache.tar.xz"
    ;;
  *) echo "usage: $0 prepare | check | run [main|levers|profile|diag|batches|pointwise|all ...] | compare DIR"; exit 2 ;;
esac
