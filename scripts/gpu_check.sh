#!/usr/bin/env bash
# Real-data checks on a GPU machine (run from the repository root there).
#
#   scripts/gpu_check.sh BIN NPZ OUT [RUNS...]
#
# BIN: the release derma-train binary; NPZ: a DermaMNIST-layout file (e.g.
# ../shared/data/dermamnist-ham/dermamnist_ham_28.npz); OUT: folder for logs and run folders.
# Each RUN is a name, then `--` and derma-train flags, separated by `;;`, e.g.
#   scripts/gpu_check.sh target/release/derma-train data.npz out "ce -- --epochs 10" "focal -- --loss focal --gamma 2"
# A run named `torch` runs scripts/train_torch.py with the given flags instead.
# Prints one summary line per run (test accuracy, balanced accuracy, macro AUC, images/s).
set -uo pipefail
bin=$1; npz=$2; out=$3; shift 3
if [ ! -f "$npz" ]; then echo "skip: $npz not found (the real-data check needs ../shared/data/dermamnist-ham)"; exit 0; fi
mkdir -p "$out"
for spec in "$@"; do
  name=${spec%% -- *}; flags=${spec#* -- }
  start=$(date +%s)
  if [ "${name%%-*}" = torch ]; then
    # shellcheck disable=SC2086
    python3 scripts/train_torch.py --npz "$npz" $flags > "$out/$name.log" 2>&1
    line=$(tail -1 "$out/$name.log")
  else
    # shellcheck disable=SC2086
    "$bin" --npz "$npz" --backend wgpu --out "$out/$name" $flags > "$out/$name.log" 2>&1
    line=$(python3 - "$out/$name" <<'PY'
import json, sys, csv
d = sys.argv[1]
r = json.load(open(d + "/report.json"))
rows = list(csv.DictReader(open(d + "/metrics.csv")))
ips = sum(float(x["images_per_second"]) for x in rows[1:]) / max(1, len(rows) - 1)
t = r["test"]
extra = ""
if "threshold" in r:
    th = r["threshold"]; tt = th["test"]
    extra = f' threshold={th["rule"]}@{th["value"]:.4f} test_sens={tt["sensitivity"]:.4f} test_spec={tt["specificity"]:.4f} test_prec={tt["precision"]:.4f} test_f2={tt["f2"]:.4f} val_sens={th["val"]["sensitivity"]:.4f} val_spec={th["val"]["specificity"]:.4f} ap={t["ap"]:.4f}'
rec = " ".join(f'{c["name"]}={c["recall"]:.3f}' for c in t["per_class"])
print(f'acc={t["accuracy"]:.4f} bal_acc={t["balanced_accuracy"]:.4f} auc={t["auc_macro"]:.4f} best_epoch={r["best_epoch"]} img/s(epochs 2+)={ips:.0f} recall[{rec}]{extra}')
PY
) || line="FAILED: $(tail -3 "$out/$name.log")"
  fi
  echo "$name ($(( $(date +%s) - start ))s): $line" | tee -a "$out/summary.txt"
done
