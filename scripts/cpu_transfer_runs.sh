#!/usr/bin/env bash
# Issue #6's remaining 10-epoch rows on a CPU, resumable across sessions: the converted TF-lite
# weights (--freeze-bn) and the same network from scratch, on the 64-px DermaMNIST-ham images
# upsampled to 224 px, then from scratch at 128 px; each beside PyTorch (scripts/train_torch.py,
# the same weights, recipe and seed). The GPU plan `gpu_train_check.sh run 64more` runs the same
# 224-px pair when a device is lent; a 10-epoch 224-px derma-train run takes hours on a 2-core CPU,
# more than one session, so each derma-train run goes on from its checkpoint (`--resume`) when this
# script is started again, and a finished one (report.json) is skipped. PyTorch runs do not resume:
# one that was stopped starts again.
#
#   scripts/cpu_transfer_runs.sh [ROW ...]      # rows: tflite-224 torch-tflite-224 scratch-224
#                                               #       torch-scratch-224 scratch-128 torch-scratch-128
#                                               # (default: all, in that order)
#   scripts/cpu_transfer_runs.sh summary        # the table of the finished rows
#
# Env: NPZ (../shared/data/dermamnist-ham/dermamnist_ham_64.npz), WEIGHTS (the converted TF-lite
# file, weights/mobilenet_v2_tflite.safetensors: scripts/convert_tflite.py), BIN
# (target/release/derma-train), RUNS (/tmp/r224: kept between sessions on the development machine),
# NICE (19: derma-train yields the cores to interactive work).
set -uo pipefail
npz=${NPZ:-../shared/data/dermamnist-ham/dermamnist_ham_64.npz}
weights=${WEIGHTS:-weights/mobilenet_v2_tflite.safetensors}
bin=${BIN:-target/release/derma-train}
runs=${RUNS:-/tmp/r224}
nice_level=${NICE:-19}
mkdir -p "$runs"
[ -f "$npz" ] || { echo "no $npz (set NPZ): the real 64-px DermaMNIST-ham file is needed"; exit 2; }

# derma-train NAME FLAGS...: new, resumed from its checkpoint, or skipped when finished.
burn() {
  local name=$1; shift
  local dir=$runs/$name
  if [ -f "$dir/report.json" ] && [ ! -d "$dir/checkpoint" ]; then echo "$name: finished"; return 0; fi
  [ -x "$bin" ] || { echo "no $bin: cargo build --release -p derma-train"; return 2; }
  if [ -f "$dir/checkpoint/state.json" ]; then
    echo "$name: resuming ($(($(wc -l <"$dir/metrics.csv") - 1)) epochs done)"
    nice -n "$nice_level" "$bin" --resume "$dir" >>"$runs/$name.log" 2>&1
  else
    echo "$name: starting"
    nice -n "$nice_level" "$bin" --npz "$npz" --size 64 --backend cpu --epochs 10 "$@" --out "$dir" --overwrite >"$runs/$name.log" 2>&1
  fi
}

# PyTorch NAME FLAGS...: skipped when its summary line (the last, with "framework") is there.
torch() {
  local name=$1; shift
  if grep -q '"framework"' "$runs/$name.log" 2>/dev/null; then echo "$name: finished"; return 0; fi
  echo "$name: starting"
  # Its run folder (`derma-report --compare` pairs it with derma-train's); one left by a
  # stopped run is replaced.
  rm -rf "${runs:?}/$name"
  python3 scripts/train_torch.py --npz "$npz" --epochs 10 --device cpu --out "$runs/$name" "$@" >"$runs/$name.log" 2>&1
}

row() {
  case "$1" in
    tflite-224) burn tflite --image-size 224 --pretrained "$weights" --freeze-bn ;;
    torch-tflite-224) torch torch-tflite --image-size 224 --pretrained "$weights" --freeze-bn ;;
    scratch-224) burn scratch --image-size 224 ;;
    torch-scratch-224) torch torch-scratch --image-size 224 ;;
    scratch-128) burn scratch-128 --image-size 128 ;;
    torch-scratch-128) torch torch-scratch-128 --image-size 128 ;;
    summary)
      dirs=(); for d in tflite scratch scratch-128; do [ -f "$runs/$d/report.json" ] && dirs+=("$runs/$d"); done
      [ ${#dirs[@]} -gt 0 ] && python3 scripts/summarize_runs.py "${dirs[@]}"
      for t in torch-tflite torch-scratch torch-scratch-128; do
        [ -f "$runs/$t.log" ] && grep '"framework"' "$runs/$t.log" | sed "s/^/$t: /"
      done
      return 0 ;;
    *) echo "unknown row $1 (tflite-224, torch-tflite-224, scratch-224, torch-scratch-224, scratch-128, torch-scratch-128, summary)"; return 2 ;;
  esac
}

rows=("$@")
[ ${#rows[@]} -eq 0 ] && rows=(tflite-224 torch-tflite-224 scratch-224 torch-scratch-224 scratch-128 torch-scratch-128)
for r in "${rows[@]}"; do row "$r" || exit $?; done
