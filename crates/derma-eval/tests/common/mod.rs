//! Helpers shared by the integration tests.
#![allow(dead_code)]

/// Tolerance for comparisons with scikit-learn's floating-point results.
pub const TOL: f64 = 1e-12;

/// `got` equals scikit-learn's `want` to within [`TOL`] (infinities must be equal).
pub fn assert_close(got: f64, want: f64, what: &str) {
    assert!(got == want || (got - want).abs() <= TOL, "{what}: got {got}, scikit-learn gives {want}");
}

/// Element-wise [`assert_close`], lengths equal.
pub fn assert_all_close(got: &[f64], want: &[f64], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length (got {got:?}, scikit-learn gives {want:?})");
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        assert_close(g, w, &format!("{what}[{i}]"));
    }
}

/// 0/1 labels as booleans (1 = positive).
pub fn positives(labels: &[u8]) -> Vec<bool> {
    labels.iter().map(|&l| l == 1).collect()
}
