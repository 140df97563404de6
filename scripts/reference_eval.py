#!/usr/bin/env python3
"""Reference values for crates/derma-eval, from scikit-learn (1.9.1), scipy (1.17) and numpy (2.4).

The calibration lines (brier, ece10, reliability10, the topcase block) were added later; every
earlier line is unchanged. The recalibration references (Platt, temperature and bias-corrected
temperature scaling) go to a second file, recalibration.txt, from their own seed; its `bcts`
blocks were added later, drawn after every earlier block, which they leave as they were.

    python3 scripts/reference_eval.py            # writes crates/derma-eval/tests/fixtures/reference.txt
                                                 # and recalibration.txt beside it

Writes a small plain-text fixture read by crates/derma-eval/tests/reference.rs: a few
randomised binary cases (fixed seed, ~200 scores rounded so that many are tied), each with
scikit-learn's roc_auc_score and average_precision_score and the thresholds a brute-force
enumeration of every candidate (each distinct score, plus +inf = "predict nothing") picks
for the rules of derma_eval::ThresholdRule. Floats are written with repr(), which Rust
parses back to the same f64.
"""
import sys
from pathlib import Path

import numpy as np
import scipy
import sklearn
from scipy.stats import binomtest, norm
from scipy.optimize import brentq, minimize, minimize_scalar
from scipy.special import expit, logsumexp, softmax
from sklearn.calibration import _sigmoid_calibration, calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

OUT = Path(__file__).resolve().parent.parent / "crates/derma-eval/tests/fixtures/reference.txt"
RECAL_OUT = OUT.with_name("recalibration.txt")


def candidates(y, s):
    """Every candidate threshold, decreasing, with its counts (positive iff score >= t)."""
    P, N = int(y.sum()), int((1 - y).sum())
    rows = []
    for t in [np.inf] + sorted(set(s.tolist()), reverse=True):
        pred = s >= t
        tp = int((pred & (y == 1)).sum())
        fp = int((pred & (y == 0)).sum())
        rows.append(dict(t=t, tp=tp, fp=fp, tn=N - fp, fn=P - tp, P=P, N=N))
    return rows


def first_max(rows, key):
    """max() keeps the first maximal row: ties go to the higher threshold."""
    return max(rows, key=key) if rows else None


def choose(rule, y, s):
    """(threshold, met) chosen by `rule`, by enumeration."""
    rows = candidates(y, s)
    name, _, value = rule.partition(":")
    spec = lambda r: r["tn"] / r["N"]
    sens = lambda r: r["tp"] / r["P"]
    if name == "min-spec":
        best = first_max([r for r in rows if spec(r) >= float(value)], lambda r: (r["tp"], r["tn"]))
        if best is not None and best["tp"] > 0:
            return best["t"], True
        # not met: the most specific threshold that flags a positive (ties: more sensitive)
        return first_max([r for r in rows if r["tp"] > 0], lambda r: (r["tn"], r["tp"]))["t"], False
    if name == "recall":
        return next(r for r in rows if sens(r) >= float(value))["t"], True
    if name == "fbeta":
        b2 = float(value) ** 2
        f = lambda r: 0.0 if r["tp"] == 0 else (1 + b2) * r["tp"] / (b2 * (r["tp"] + r["fn"]) + (r["tp"] + r["fp"]))
        return first_max(rows, f)["t"], True
    if name == "youden":
        # J * P * N = tp * N - fp * P, exact in integers
        return first_max(rows, lambda r: r["tp"] * r["N"] - r["fp"] * r["P"])["t"], True
    raise ValueError(rule)


RULES = ["min-spec:0.8", "min-spec:0.95", "min-spec:1", "recall:0.9", "recall:0.99", "fbeta:1", "fbeta:2", "youden"]


def delong_ci95(y, s):
    """95 % confidence interval of the ROC AUC by DeLong et al. (1988), from the definition:
    psi(x, y) = 1 if a positive's score x > a negative's y, 1/2 if equal; V10 / V01 the row
    and column means of psi; Var(AUC) = var(V10) / m + var(V01) / n (sample variances, ddof 1);
    AUC -/+ z sqrt(Var) with z = norm.ppf(0.975), clipped to [0, 1] (pROC's ci.auc)."""
    pos, neg = s[y == 1], s[y == 0]
    psi = (pos[:, None] > neg[None, :]) + 0.5 * (pos[:, None] == neg[None, :])
    auc = psi.mean()
    var = psi.mean(axis=1).var(ddof=1) / len(pos) + psi.mean(axis=0).var(ddof=1) / len(neg)
    half = norm.ppf(0.975) * np.sqrt(var)
    return max(0.0, auc - half), min(1.0, auc + half)


def wilson_ci95(k, n):
    """scipy's Wilson score interval (no continuity correction) of k successes in n trials."""
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    return float(ci.low), float(ci.high)


def case(name, rng, n, prevalence, shift, decimals, negative_on_top=False):
    y = (rng.random(n) < prevalence).astype(int)
    s = np.round(np.clip(rng.normal(0.35, 0.2, n) + shift * y, 0, 1), decimals)
    if negative_on_top:
        # one negative above every other score: specificity 1 is reachable only by flagging
        # nothing, so `min-spec:1` is not met (the fallback branch of the rule)
        s = np.minimum(s, round(1.0 - 10.0 ** -decimals, decimals))
        s[np.flatnonzero(y == 0)[0]] = 1.0
    lines = [f"case {name}", "labels " + " ".join(map(str, y)), "scores " + " ".join(repr(float(v)) for v in s)]
    lines.append(f"auc {float(roc_auc_score(y, s))!r}")
    lines.append(f"ap {float(average_precision_score(y, s))!r}")
    lines.append(f"brier {float(brier_score_loss(y, s))!r}")
    lo, hi = delong_ci95(y, s)
    lines.append(f"auc_ci95 {float(lo)!r} {float(hi)!r}")
    for rule in RULES:
        t, met = choose(rule, y, s)
        lines.append(f"choose {rule} {float(t)!r} {'met' if met else 'not-met'}")
    # Wilson intervals of the sensitivity (tp of P) and specificity (tn of N) at min-spec:0.8.
    row = next(r for r in candidates(y, s) if r["t"] == choose("min-spec:0.8", y, s)[0])
    for k, total in [(row["tp"], row["P"]), (row["tn"], row["N"])]:
        lo, hi = wilson_ci95(k, total)
        lines.append(f"wilson95 {k} {total} {lo!r} {hi!r}")
    lines += calibration_lines(s, y)
    lines.append("end")
    return lines


def calibration_lines(score, hit, n_bins=10):
    """Brier score and the reliability table / ECE of `score` against `hit` (0/1), in
    calibration_curve's bins (its own binning, scikit-learn 1.9.1 source: searchsorted over
    the inner edges of linspace(0, 1, n_bins + 1))."""
    prob_true, prob_pred = calibration_curve(hit, score, n_bins=n_bins, strategy="uniform")
    counts = np.bincount(np.searchsorted(np.linspace(0.0, 1.0, n_bins + 1)[1:-1], score), minlength=n_bins)
    counts = counts[counts != 0]
    ece = float(np.sum(counts / len(score) * np.abs(prob_true - prob_pred)))
    table = " ".join(f"{int(c)}:{float(m)!r}:{float(t)!r}" for c, m, t in zip(counts, prob_pred, prob_true))
    return [f"ece{n_bins} {ece!r}", f"reliability{n_bins} {table}"]


def top_label_case(name, rng, n, k):
    """K-class probability rows (softmax of scaled normal logits, rounded to 2 decimals and
    renormalised), labels drawn from them; scikit-learn's multi-class brier_score_loss and the
    top-label reliability table (highest probability against whether the arg-max is right)."""
    logits = rng.normal(0.0, 1.5, (n, k))
    p = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    p = np.round(p, 2)
    p = p / p.sum(1, keepdims=True)
    y = np.array([rng.choice(k, p=row) for row in p])
    lines = [f"topcase {name}", f"classes {k}", "labels " + " ".join(map(str, y)),
             "probs " + " ".join(repr(float(v)) for v in p.flatten())]
    lines.append(f"brier {float(brier_score_loss(y, p, labels=np.arange(k)))!r}")
    top = p.argmax(1)
    lines += calibration_lines(p[np.arange(n), top], (top == y).astype(int))
    lines.append("end")
    return lines


def nll_binary(y, z):
    """Mean hard-label negative log-likelihood of sigmoid(z), from the logits (numpy's logaddexp:
    scikit-learn's log_loss takes probabilities and clips them at 1e-15, which changes the
    value of logits beyond ±34; the script checks that they agree below that)."""
    exact = float(np.mean(np.logaddexp(0.0, z) - y * z))
    if np.abs(z).max() < 30:
        assert abs(exact - log_loss(y, expit(z), labels=[0, 1])) < 1e-12
    return exact


def temperature_scale(y, rows):
    """The scale s = 1/T in [1/100, 1/0.01] minimising the mean NLL of softmax(s * rows): the root
    of the derivative mean(E_p[z] - z_y) by scipy's brentq (xtol 1e-15), checked against scipy's
    bounded scalar minimiser of the NLL itself (numpy / scipy.special, not derma-eval's code)."""
    def nll(s):
        return float(np.mean(logsumexp(s * rows, axis=1) - s * rows[np.arange(len(y)), y]))

    def slope(s):
        p = softmax(s * rows, axis=1)
        return float(np.mean((p * rows).sum(1) - rows[np.arange(len(y)), y]))

    if slope(0.01) >= 0 or slope(100.0) <= 0:
        raise ValueError(f"the optimum scale is outside [0.01, 100] (slopes {slope(0.01)}, {slope(100.0)})")
    s = brentq(slope, 0.01, 100.0, xtol=1e-15, rtol=4 * np.finfo(float).eps)
    check = minimize_scalar(nll, bounds=(0.01, 100.0), method="bounded", options={"xatol": 1e-10}).x
    assert abs(check - s) < 1e-6 * s, (s, check)
    return s, nll(1.0), nll(s)


def platt_case(name, rng, n, prevalence, separation, confidence, shift):
    """Binary logits (normal, `separation` apart, times `confidence`, plus `shift`: an over-
    confident or prior-shifted model) rounded to 6 decimals; scikit-learn's Platt fit
    (_sigmoid_calibration, whose P = 1/(1 + exp(A f + B)): slope -A, intercept -B), the NLL
    before and after it, and the temperature of the same logits as one sigmoid column."""
    y = (rng.random(n) < prevalence).astype(int)
    z = np.round((rng.normal(0.0, 1.0, n) + separation * y) * confidence + shift, 6)
    a, b = _sigmoid_calibration(z, y)
    s, before, after = temperature_scale(y, np.stack([np.zeros(n), z], 1))
    return [f"platt {name}", "labels " + " ".join(map(str, y)), "logits " + " ".join(repr(float(v)) for v in z),
            f"slope {float(-a)!r}", f"intercept {float(-b)!r}", f"nll_before {nll_binary(y, z)!r}",
            f"nll_platt {nll_binary(y, -a * z - b)!r}", f"temperature_scale {float(s)!r}",
            f"nll_temperature {after!r}", "end"]


def temperature_case(name, rng, n, k, confidence):
    """K-class logits: labels drawn from softmax(L), L normal; the model reports confidence * L
    (over-confident for confidence > 1, so the fitted scale is near 1/confidence)."""
    logits = rng.normal(0.0, 1.2, (n, k))
    y = np.array([rng.choice(k, p=row) for row in softmax(logits, axis=1)])
    rows = np.round(confidence * logits, 6)
    s, before, after = temperature_scale(y, rows)
    return [f"tempcase {name}", f"classes {k}", "labels " + " ".join(map(str, y)),
            "logits " + " ".join(repr(float(v)) for v in rows.flatten()), f"temperature_scale {float(s)!r}",
            f"nll_before {before!r}", f"nll_temperature {after!r}", "end"]


def bcts_fit(y, rows):
    """Bias-corrected temperature scaling (Alexandari et al. 2020): the scale s and class biases b
    (b_0 = 0 while fitting, centred to mean 0 after: softmax ignores a common shift) minimising
    the mean NLL of softmax(s * rows + b), by scipy's BFGS on that NLL (scipy.special's logsumexp,
    numpy's gradient; not derma-eval's code), from s = 1, b = 0, to a gradient of 1e-12."""
    n, k = rows.shape
    onehot = np.eye(k)[y]

    def nll_grad(x):
        b = np.concatenate([[0.0], x[1:]])
        u = x[0] * rows + b
        p = softmax(u, axis=1)
        value = float(np.mean(logsumexp(u, axis=1) - u[np.arange(n), y]))
        gs = float(np.mean(((p - onehot) * rows).sum(1)))
        gb = (p - onehot).mean(0)[1:]
        return value, np.concatenate([[gs], gb])

    res = minimize(nll_grad, np.concatenate([[1.0], np.zeros(k - 1)]), jac=True, method="BFGS",
                   options={"gtol": 1e-12, "maxiter": 10000})
    grad = np.abs(nll_grad(res.x)[1]).max()
    assert grad < 1e-9, (res.message, grad)
    b = np.concatenate([[0.0], res.x[1:]])
    return float(res.x[0]), b - b.mean(), nll_grad(np.concatenate([[1.0], np.zeros(k - 1)]))[0], float(res.fun)


def bcts_case(name, rng, n, prior, confidence):
    """K-class logits of a model trained on a re-balanced prior: labels drawn from
    softmax(L + log(prior)), L normal; the model reports confidence * L (no prior, scaled), so
    the fitted biases recover log(prior) up to a shift and the scale 1/confidence. One class
    (`prior` of length 2) is written as a single logit z1 - z0, whose fit is also scikit-learn's
    unpenalised logistic regression of the labels on z (hard-target Platt scaling)."""
    k = len(prior)
    logits = rng.normal(0.0, 1.2, (n, k))
    y = np.array([rng.choice(k, p=row) for row in softmax(logits + np.log(prior), axis=1)])
    rows = np.round(confidence * logits, 6)
    if k == 2:
        z = rows[:, 1] - rows[:, 0]
        s, b, before, after = bcts_fit(y, np.stack([np.zeros(n), z], 1))
        lr = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10000).fit(z[:, None], y)
        assert abs(lr.coef_[0, 0] - s) < 1e-6 and abs(lr.intercept_[0] - (b[1] - b[0])) < 1e-6, (lr.coef_, lr.intercept_, s, b)
        assert abs(nll_binary(y, z) - before) < 1e-12 and abs(nll_binary(y, s * z + b[1] - b[0]) - after) < 1e-12
        return [f"bcts {name}", "classes 1", "labels " + " ".join(map(str, y)),
                "logits " + " ".join(repr(float(v)) for v in z), f"scale {s!r}", f"bias {float(b[1] - b[0])!r}",
                f"nll_before {before!r}", f"nll_after {after!r}", "end"]
    s, b, before, after = bcts_fit(y, rows)
    return [f"bcts {name}", f"classes {k}", "labels " + " ".join(map(str, y)),
            "logits " + " ".join(repr(float(v)) for v in rows.flatten()), f"scale {s!r}",
            "bias " + " ".join(repr(float(v)) for v in b), f"nll_before {before!r}", f"nll_after {after!r}", "end"]


def generated_by():
    """The first line of both fixtures."""
    return (f"# Generated by scripts/reference_eval.py (scikit-learn {sklearn.__version__}, scipy {scipy.__version__}, "
            f"numpy {np.__version__}); do not edit.")


def recalibration_fixture():
    rng = np.random.default_rng(20261129)
    out = [
        generated_by(),
        "# platt blocks: binary labels and logits; scikit-learn's Platt fit as sigmoid(slope*z + intercept),",
        "# the NLL (log_loss) before and after it; the temperature scale (1/T) of the same logits and the NLL after it.",
        "# tempcase blocks: K-class logits (flattened rows), the temperature scale and the NLL before / after.",
        "# bcts blocks: K-class logits (or one binary logit, classes 1), bias-corrected temperature scaling",
        "# softmax(scale*z + bias) by scipy's BFGS (biases centred to mean 0; a binary logit's single bias is",
        "# b1 - b0, checked against scikit-learn's unpenalised LogisticRegression), the NLL before / after.",
    ]
    out += platt_case("overconfident-10pc", rng, 300, 0.10, 2.0, 3.0, -1.0)
    out += platt_case("shifted-30pc", rng, 250, 0.30, 1.5, 1.0, 1.2)     # undersampling-like prior shift
    out += platt_case("large-logits", rng, 200, 0.40, 2.0, 15.0, 0.0)   # |z| > 30: sklearn rescales
    out += temperature_case("seven-classes", rng, 240, 7, 2.5)
    out += temperature_case("under-confident", rng, 200, 4, 0.5)
    # DermaMNIST's training prior (akiec bcc bkl df mel nv vasc), a model trained re-balanced.
    out += bcts_case("seven-classes-shifted", rng, 400, [0.033, 0.051, 0.110, 0.011, 0.111, 0.670, 0.014], 1.8)
    out += bcts_case("three-classes-underconfident", rng, 150, [0.2, 0.3, 0.5], 0.6)
    out += bcts_case("binary-shifted", rng, 250, [0.8, 0.2], 1.5)
    return out


def main():
    rng = np.random.default_rng(20240601)
    out = [
        generated_by(),
        "# Per case: labels (1 = positive), scores, sklearn roc_auc_score and average_precision_score,",
        "# the AUC's DeLong 95 % interval from its definition (auc_ci95 LO HI), `choose RULE THRESHOLD",
        "# met|not-met` from a brute-force enumeration of the candidates, and scipy's Wilson 95 %",
        "# intervals (wilson95 K N LO HI) of the sensitivity and specificity at min-spec:0.8; then",
        "# brier_score_loss, the ECE over calibration_curve's 10 uniform bins and those bins",
        "# (reliability10 COUNT:MEAN_SCORE:OBSERVED, non-empty bins). `topcase` blocks: K-class rows,",
        "# multi-class brier_score_loss and the top-label ECE / bins.",
    ]
    out += case("tenths-30pc", rng, 200, 0.30, 0.30, 1)     # 11 distinct values: heavy ties
    out += case("hundredths-8pc", rng, 200, 0.08, 0.25, 2)  # imbalanced, screening-like
    out += case("tenths-overlap", rng, 180, 0.50, 0.05, 1)  # barely separable, heavy ties
    out += case("negative-on-top", rng, 200, 0.30, 0.30, 1, negative_on_top=True)  # a floor not met
    # Edge counts of the Wilson interval: none and all successes, one trial.
    for k, total in [(0, 20), (20, 20), (0, 1), (1, 1), (7, 99)]:
        lo, hi = wilson_ci95(k, total)
        out.append(f"wilson95 {k} {total} {lo!r} {hi!r}")
    # Top-label calibration of multi-class rows (drawn after every line above, which the new
    # draws leave as they were).
    out += top_label_case("seven-classes", rng, 150, 7)
    path = Path(sys.argv[1]) if len(sys.argv) > 1 else OUT
    path.write_text("\n".join(out) + "\n")
    print(f"wrote {path}")
    recal = path.with_name(RECAL_OUT.name)
    recal.write_text("\n".join(recalibration_fixture()) + "\n")
    print(f"wrote {recal}")


if __name__ == "__main__":
    main()
