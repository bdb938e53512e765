//! Every differentiable case of the op table passes a central finite-difference check in f64
//! on the CPU reference.
//!
//! Tolerance: with step 1e-6 in f64 the central difference has truncation error ~1e-12·f‴ and
//! rounding error ~1e-16/1e-6 = 1e-10 relative to the values, so a correct gradient agrees to
//! ~1e-8; 1e-6 leaves room for badly scaled rows and still catches any wrong rule (those are
//! off by O(1)).

use kiln::testing::{cases, gradcheck};

const TOLERANCE: f64 = 1e-6;
const STEP: f64 = 1e-6;

#[test]
fn every_differentiable_op_passes_gradcheck() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.gradcheck) {
        let report =
            gradcheck(case, &case.shapes[0], 7, STEP).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for (input, err) in report.errors {
            checked += 1;
            if err.is_nan() || err > TOLERANCE {
                failures.push(format!("{} (input {input}): relative error {err:.3e}", case.name));
            }
        }
    }
    assert!(checked > 80, "only {checked} gradients checked");
    assert!(failures.is_empty(), "gradcheck failures:\n{}", failures.join("\n"));
}
