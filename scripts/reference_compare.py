#!/usr/bin/env python3
"""Reference values for derma-eval's paired comparisons (crates/derma-eval/src/paired.rs), from
numpy (2.4), scipy (1.17) and scikit-learn (1.9.1).

    python3 scripts/reference_compare.py     # writes crates/derma-eval/tests/fixtures/paired.txt

- `delong` blocks: binary labels and two correlated score vectors (rounded, so many are tied);
  DeLong's paired test from its definition — psi(x, y) = 1 if a positive's score x > a negative's
  y, 1/2 if equal; V10 / V01 the row / column means of psi per model; Var(B - A) from the sample
  (co)variances (ddof 1) of the per-case differences; z = (B - A) / se; p = 2 norm.sf(|z|); the
  interval (B - A) -/+ norm.ppf(0.975) se. This is what pROC's
  roc.test(method = "delong", paired = TRUE) computes.
- `mcnemar ONLY_A ONLY_B P`: scipy.stats.binomtest(min, ONLY_A + ONLY_B, 0.5).pvalue, McNemar's
  exact two-sided test (statsmodels' mcnemar(exact=True)); 1 with no discordant case.
- `bootstrap` blocks: K-class labels and two models' probability rows; the class-stratified paired
  bootstrap of derma_eval::paired_bootstrap re-run here on the same draws (SplitMix64, below),
  with scikit-learn's roc_auc_score (one-vs-rest per class, mean: MedMNIST's getAUC) and
  balanced_accuracy_score of the arg-max; numpy.percentile(values, [2.5, 97.5]).
Floats are written with repr(), which Rust parses back to the same f64.
"""
import sys
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.special import softmax
from scipy.stats import binomtest, norm
from sklearn.metrics import balanced_accuracy_score, roc_auc_score

OUT = Path(__file__).resolve().parent.parent / "crates/derma-eval/tests/fixtures/paired.txt"
MASK = (1 << 64) - 1


class SplitMix64:
    """Vigna's SplitMix64, as derma_eval::SplitMix64."""

    def __init__(self, seed):
        self.state = seed & MASK

    def next_u64(self):
        self.state = (self.state + 0x9E3779B97F4A7C15) & MASK
        z = self.state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def below(self, n):
        u = (self.next_u64() >> 11) * (1.0 / (1 << 53))
        return min(int(u * n), n - 1)


def delong_paired(y, a, b):
    """DeLong's paired test of AUC(b) - AUC(a) from the definition (O(m n))."""
    def components(s):
        pos, neg = s[y == 1], s[y == 0]
        psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
        return psi.mean(axis=1), psi.mean(axis=0)
    a10, a01 = components(a)
    b10, b01 = components(b)
    m, n = len(a10), len(a01)
    s10 = np.cov(np.vstack([a10, b10]), ddof=1)
    s01 = np.cov(np.vstack([a01, b01]), ddof=1)
    var = (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / m + (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / n
    auc_a, auc_b = a10.mean(), b10.mean()
    diff = auc_b - auc_a
    se = np.sqrt(var)
    p = 2 * norm.sf(abs(diff) / se) if se > 0 else 1.0
    z95 = norm.ppf(0.975)
    # Cross-check with scikit-learn's AUCs.
    assert abs(auc_a - roc_auc_score(y, a)) < 1e-12 and abs(auc_b - roc_auc_score(y, b)) < 1e-12
    return auc_a, auc_b, diff, se, p, diff - z95 * se, diff + z95 * se


def delong_case(name, rng, n, prevalence, shift_a, shift_b, decimals):
    y = (rng.random(n) < prevalence).astype(int)
    common = rng.normal(size=n)  # what both models see: their scores are correlated
    a = np.round(1 / (1 + np.exp(-(shift_a * (2 * y - 1) + common + 0.6 * rng.normal(size=n)))), decimals)
    b = np.round(1 / (1 + np.exp(-(shift_b * (2 * y - 1) + common + 0.6 * rng.normal(size=n)))), decimals)
    result = [float(v) for v in delong_paired(y, a, b)]
    return [
        f"delong {name}",
        "labels " + " ".join(str(v) for v in y),
        "a " + " ".join(repr(float(v)) for v in a),
        "b " + " ".join(repr(float(v)) for v in b),
        "result " + " ".join(repr(v) for v in result),
        "end",
    ]


def bootstrap(y, k, statistic, resamples, seed):
    rng = SplitMix64(seed)
    by_class = [np.flatnonzero(y == c) for c in range(k)]
    values = []
    for _ in range(resamples):
        drawn = []
        for cases in by_class:
            if len(cases) == 0:
                continue
            drawn.extend(cases[rng.below(len(cases))] for _ in range(len(cases)))
        values.append(statistic(np.array(drawn)))
    lo, hi = np.percentile(values, [2.5, 97.5])
    return float(statistic(np.arange(len(y)))), float(lo), float(hi)


def bootstrap_case(name, rng, counts, resamples, seed):
    k = len(counts)
    y = np.concatenate([np.full(c, i) for i, c in enumerate(counts)])
    rng.shuffle(y)
    onehot = np.eye(k)[y]
    a = softmax(1.2 * onehot + rng.normal(size=(len(y), k)), axis=1)
    b = softmax(1.6 * onehot + rng.normal(size=(len(y), k)), axis=1)

    def macro_auc(p, idx):
        return float(np.mean([roc_auc_score(y[idx] == c, p[idx, c]) for c in range(k)]))

    def bal_acc(p, idx):
        return balanced_accuracy_score(y[idx], p[idx].argmax(axis=1))

    auc = bootstrap(y, k, lambda idx: macro_auc(b, idx) - macro_auc(a, idx), resamples, seed)
    bal = bootstrap(y, k, lambda idx: bal_acc(b, idx) - bal_acc(a, idx), resamples, seed)
    # The first draws of the first resample, to tell a generator mismatch from a statistic's.
    g = SplitMix64(seed)
    first = [int(np.flatnonzero(y == 0)[g.below(counts[0])]) for _ in range(5)]
    return [
        f"bootstrap {name}",
        f"classes {k} resamples {resamples} seed {seed}",
        "labels " + " ".join(str(v) for v in y),
        "a " + " ".join(repr(float(v)) for v in a.ravel()),
        "b " + " ".join(repr(float(v)) for v in b.ravel()),
        "first " + " ".join(str(v) for v in first),
        "macro_auc " + " ".join(repr(v) for v in auc),
        "balanced_accuracy " + " ".join(repr(v) for v in bal),
        "end",
    ]


def main():
    rng = np.random.default_rng(20261130)
    out = [
        f"# Generated by scripts/reference_compare.py (scikit-learn {sklearn.__version__}, scipy {scipy.__version__}, "
        f"numpy {np.__version__}); do not edit.",
        "# delong blocks: labels, scores a and b, then `result AUC_A AUC_B DIFF SE P LO HI` (DIFF = B - A).",
        "# mcnemar ONLY_A ONLY_B P. bootstrap blocks: K-class labels, rows a and b (flattened), the first",
        "# five draws of resample 0 (class 0's cases), then `macro_auc` / `balanced_accuracy` ESTIMATE LO HI of B - A.",
    ]
    out += delong_case("tenths-correlated", rng, 200, 0.30, 0.6, 0.9, 1)
    out += delong_case("hundredths-imbalanced", rng, 240, 0.08, 0.8, 0.8, 2)
    out += delong_case("far-apart", rng, 150, 0.40, 0.3, 1.5, 3)
    for only_a, only_b in [(0, 0), (0, 5), (3, 12), (7, 7), (40, 60), (700, 800)]:
        discordant = only_a + only_b
        p = 1.0 if discordant == 0 else binomtest(min(only_a, only_b), discordant, 0.5).pvalue
        out.append(f"mcnemar {only_a} {only_b} {float(p)!r}")
    out += bootstrap_case("three-classes", rng, [30, 20, 10], 200, 7)
    out += bootstrap_case("rare-class", rng, [50, 12, 5, 3], 150, 20261130)
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    path.write_text("\n".join(out) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
