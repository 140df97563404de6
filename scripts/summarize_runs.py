#!/usr/bin/env python3
"""Markdown table of derma-train run folders (report.json + metrics.csv).

    python3 scripts/summarize_runs.py runs/a runs/b ...

Columns: run, best epoch, test accuracy, balanced accuracy, macro AUC, per-class recall, mean
training images/s over epochs 2+ (epoch 1 includes kernel compilation on the GPU); binary runs add
the validation-chosen threshold and the test sensitivity / specificity / precision / F2 / FP at it,
and the test sensitivity / specificity / FP at the fixed threshold 0.5 (`test_at_0.5`, written by
derma-train since 2026-11-27; `-` for older run folders).
"""
import csv
import json
import os
import sys

rows = []
for d in sys.argv[1:]:
    name = os.path.basename(d.rstrip("/"))
    try:
        m = list(csv.DictReader(open(os.path.join(d, "metrics.csv"))))
    except OSError:
        m = []
    later = m[1:] or m
    ips = sum(float(x["images_per_second"]) for x in later) / len(later) if later else float("nan")
    try:
        r = json.load(open(os.path.join(d, "report.json")))
    except (OSError, ValueError):
        # Stopped before its final evaluation (a deadline): the epochs it finished, and speed.
        rows.append(f"| {name} (stopped after {len(m)} epochs) | - | - | - | - | - | {ips:.0f} |")
        continue
    t = r["test"]
    rec = " ".join(f'{c["name"]} {c["recall"]:.2f}' for c in t["per_class"])
    row = f'| {name} | {r["best_epoch"]} | {t["accuracy"]:.4f} | {t["balanced_accuracy"]:.4f} | {t["auc_macro"]:.4f} | {rec} | {ips:.0f} |'
    if "threshold" in r:
        th, tt = r["threshold"], r["threshold"]["test"]
        value = th["value"] if th["value"] is not None else float("inf")
        row += f' {th["rule"]} → {value:.4f} | {tt["sensitivity"]:.4f} | {tt["specificity"]:.4f} | {tt["precision"]:.4f} | {tt["f2"]:.4f} | {tt["fp"]} |'
        h = th.get("test_at_0.5")
        row += f' {h["sensitivity"]:.4f} / {h["specificity"]:.4f} / {h["fp"]} |' if h else " - |"
    rows.append(row)
binary = any("→" in r for r in rows)
head = "| run | best epoch | test acc | test bal. acc | test macro AUC | test recall per class | train img/s |"
sep = "|---|---|---|---|---|---|---|"
if binary:
    head += " threshold (val) | test sens | test spec | test prec | test F2 | test FP | at 0.5: sens / spec / FP |"
    sep += "---|---|---|---|---|---|---|"
print(head)
print(sep)
print("\n".join(rows))
