#!/usr/bin/env bash
# Real-data runs side by side with PyTorch (on a GPU machine; run from the repository root).
#
#   scripts/gpu_check.sh BIN NPZ OUT "NAME -- FLAGS" ...
#
# BIN: the release derma-train binary; NPZ: a DermaMNIST-layout file (e.g.
# ../shared/data/dermamnist-ham/dermamnist_ham_28.npz), or `-` when each run's flags name their
# own data (`--dataset csv --manifest …`); OUT: folder for logs and run folders.
# Each run is a name, ` -- `, then derma-train flags; a name starting with `torch` runs
# scripts/train_torch.py with those flags instead (its run folder, OUT/NAME, pairs with a
# derma-train run's in `derma-report --compare`). Ends with the summary table of the derma-train
# runs (scripts/summarize_runs.py) and the PyTorch JSON lines.
#
# DEADLINE (seconds, optional): runs go in the order given; one still going when the deadline
# passes is stopped (SIGTERM, SIGKILL 10 s later), and the rest are skipped (for the 10-minute
# device calls). ARCHIVE (optional): a .tar.gz re-packed after every run with OUT's results
# (no weights, checkpoints or report images), so a call stopped early keeps what finished.
set -uo pipefail
bin=$1; npz=$2; out=$3; shift 3
if [ "$npz" != - ] && [ ! -f "$npz" ]; then echo "skip: $npz not found (the real-data check needs ../shared/data/dermamnist-ham)"; exit 0; fi
data=(); [ "$npz" = - ] || data=(--npz "$npz")
mkdir -p "$out"
started=$(date +%s)
runs=()
for spec in "$@"; do
  name=${spec%% -- *}; flags=${spec#* -- }
  limit=()
  if [ -n "${DEADLINE:-}" ]; then
    left=$((DEADLINE - ($(date +%s) - started)))
    if [ "$left" -lt 20 ]; then echo "skip $name: deadline (${DEADLINE}s) reached"; continue; fi
    limit=(timeout -k 10 "$left")
  fi
  t0=$(date +%s)
  # The whole GPU's memory in use every 200 ms while this run lasts (its peak is printed with
  # its time; it includes the driver's and any other process's share, as the baseline before
  # the run shows).
  sampler=
  if command -v nvidia-smi >/dev/null 2>&1; then
    nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 200 >"$out/$name.gpu-memory" 2>/dev/null &
    sampler=$!
  fi
  if [ "${name#torch}" != "$name" ]; then
    # shellcheck disable=SC2086
    "${limit[@]}" python3 scripts/train_torch.py "${data[@]}" --out "$out/$name" $flags > "$out/$name.log" 2>&1 || echo "$name failed (exit $?; 124/137: the deadline): $(tail -3 "$out/$name.log")"
  else
    # shellcheck disable=SC2086
    if "${limit[@]}" "$bin" "${data[@]}" --out "$out/$name" $flags > "$out/$name.log" 2>&1; then
      # (derma-cascade's folder holds its stages' run folders, not a run of its own)
      [ -f "$out/$name/metrics.csv" ] && runs+=("$out/$name")
    else
      echo "$name failed (exit $?; 124/137: the deadline): $(tail -3 "$out/$name.log")"
      # A run stopped part-way still has its per-epoch rows (images/s included).
      [ -f "$out/$name/metrics.csv" ] && runs+=("$out/$name")
    fi
  fi
  memory=
  if [ -n "$sampler" ]; then
    kill "$sampler" 2>/dev/null; wait "$sampler" 2>/dev/null
    memory=$(awk 'NR == 1 {first = $1} $1 > peak {peak = $1} END {if (NR) printf ", whole-GPU memory peak %d MiB (%d MiB at its start)", peak, first}' "$out/$name.gpu-memory")
  fi
  [ -n "${DEADLINE:-}" ] && echo "$name: ended after $(($(date +%s) - t0)) s$memory"
  if [ -n "${ARCHIVE:-}" ]; then
    # `*.bpk*`: also a model.bpk.tmp or .model.bpk.tmp-PID a stopped run left mid-write.
    (cd "$out" && tar czf "$ARCHIVE.tmp" --exclude='*.bpk*' --exclude='.*.tmp-*' --exclude=checkpoint --exclude=predictions.csv --exclude=plots \
      --exclude=gallery --exclude=report.html ./* && mv "$ARCHIVE.tmp" "$ARCHIVE")
  fi
done
if [ ${#runs[@]} -gt 0 ]; then python3 scripts/summarize_runs.py "${runs[@]}"; else echo "no run folder with a metrics.csv to summarise"; fi
for f in "$out"/torch*.log; do [ -f "$f" ] && echo "$(basename "$f" .log): $(tail -1 "$f")"; done
exit 0
