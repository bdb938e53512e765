//! Every gradcheck row of the op table passes a central finite-difference check in f64 on the
//! CPU reference, with the row's step and tolerance (by default step 1e-6, tolerance 1e-6: see
//! `kiln::testing::cases::FD_STEP`).

use kiln::testing::{cases, gradcheck};

#[test]
fn every_differentiable_op_passes_gradcheck() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for case in cases().iter().filter(|c| c.gradcheck) {
        let report = gradcheck(case, &case.shapes[0], 7).unwrap_or_else(|e| panic!("{}: {e}", case.name));
        for (input, err) in report.errors {
            checked += 1;
            if err.is_nan() || err > case.fd_tol {
                failures.push(format!(
                    "{} (input {input}): relative error {err:.3e} > {:.1e}",
                    case.name, case.fd_tol
                ));
            }
        }
    }
    assert!(checked > 80, "only {checked} gradients checked");
    assert!(failures.is_empty(), "gradcheck failures:\n{}", failures.join("\n"));
}
