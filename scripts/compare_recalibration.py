#!/usr/bin/env python3
"""Compare a multi-class run's own probabilities with temperature and bias-corrected temperature
scaling, from the files of one `derma-train --calibrate bcts` run folder (no retraining).

    python3 scripts/compare_recalibration.py RUN_DIR [RUN_DIR ...]

predictions.csv holds softmax(s*z + b) of the model's logits z, and report.json's
`recalibration` holds s and b, so log(p) - b = s*z + const per row: the script recovers each
image's logits up to a per-row constant (which softmax ignores), checks that the model's own test
ECE / Brier computed from them equal report.json's `test_before`, fits both maps on the
validation rows (scipy; bias-corrected scaling is re-fitted as a check against derma-train's) and
prints test accuracy, balanced accuracy, macro one-vs-rest AUC (scikit-learn), the multi-class
Brier score and the top-label ECE over 10 equal-width bins for each, and the balanced accuracy of
the prior-corrected decision argmax_k p_k / prior_k (prior: the validation split's class
frequencies; for calibrated p it is the decision that maximises balanced accuracy).
"""
import csv
import json
import sys
from pathlib import Path

import numpy as np
from scipy.optimize import minimize, minimize_scalar
from scipy.special import logsumexp, softmax
from sklearn.metrics import balanced_accuracy_score, roc_auc_score


def load(run):
    report = json.loads((run / "report.json").read_text())
    r = report["recalibration"]
    assert r["method"] == "bcts" and r["applied"], f"{run}: not an applied --calibrate bcts run"
    s, b = r["scale"], np.array(r["class_bias"])
    rows = {"val": ([], []), "test": ([], [])}
    with open(run / "predictions.csv") as f:
        for row in csv.DictReader(f):
            p = np.array([float(row[k]) for k in row if k.startswith("prob_")])
            rows[row["split"]][0].append(int(row["label"]))
            rows[row["split"]][1].append((np.log(p) - b) / s)
    return report, {k: (np.array(y), np.array(z)) for k, (y, z) in rows.items()}


def top_label(y, p, bins=10):
    conf, hit = p.max(1), (p.argmax(1) == y).astype(float)
    idx = np.minimum((conf * bins).astype(int), bins - 1)
    ece = sum(abs(hit[idx == i].mean() - conf[idx == i].mean()) * (idx == i).mean() for i in range(bins) if (idx == i).any())
    brier = float(((p - np.eye(p.shape[1])[y]) ** 2).sum(1).mean())
    return float(ece), brier


def nll(y, u):
    return float(np.mean(logsumexp(u, axis=1) - u[np.arange(len(y)), y]))


def main():
    for run in map(Path, sys.argv[1:]):
        report, d = load(run)
        (yv, zv), (yt, zt) = d["val"], d["test"]
        ece, brier = top_label(yt, softmax(zt, axis=1))
        before = report["recalibration"]["test_before"]
        assert abs(ece - before["ece"]) < 1e-6 and abs(brier - before["brier"]) < 1e-6, (ece, brier, before)
        t = minimize_scalar(lambda s: nll(yv, s * zv), bounds=(0.01, 100), method="bounded", options={"xatol": 1e-10}).x
        k = zv.shape[1]
        f = lambda x: nll(yv, x[0] * zv + np.concatenate([[0.0], x[1:]]))
        x = minimize(f, np.concatenate([[1.0], np.zeros(k - 1)]), method="BFGS", options={"gtol": 1e-10}).x
        b = np.concatenate([[0.0], x[1:]])
        b -= b.mean()
        r = report["recalibration"]
        assert abs(x[0] - r["scale"]) < 1e-5 and np.abs(b - np.array(r["class_bias"])).max() < 1e-5, (x, r)
        print(f"{run}: T = {1 / t:.4f} (temperature), T = {1 / x[0]:.4f} and b = {np.round(b, 3).tolist()} (bcts)")
        prior = np.bincount(yv, minlength=k) / len(yv)
        print("  map          val NLL  accuracy  bal.acc  macro AUC  Brier   top-label ECE  bal.acc of argmax p/prior")
        for name, val, test in [("own", zv, zt), ("temperature", t * zv, t * zt), ("bcts", x[0] * zv + b, x[0] * zt + b)]:
            p = softmax(test, axis=1)
            ece, brier = top_label(yt, p)
            print(f"  {name:<12} {nll(yv, val):.4f}   {np.mean(p.argmax(1) == yt):.4f}    {balanced_accuracy_score(yt, p.argmax(1)):.4f}   "
                  f"{roc_auc_score(yt, p, multi_class='ovr', average='macro'):.4f}     {brier:.4f}  {ece:.4f}         "
                  f"{balanced_accuracy_score(yt, (p / prior).argmax(1)):.4f}")


if __name__ == "__main__":
    main()
