//! CPU-versus-GPU parity: every case of the op table, forward and backward, on freshly drawn
//! inputs at every shape set, within the row's tolerances.

mod common;

use kiln::testing::{cases, parity};

#[test]
fn every_op_matches_the_cpu_reference_on_the_gpu() {
    let Some(gpu) = common::gpu("parity") else {
        return;
    };
    let seed =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(1);
    println!("parity seed {seed} on {gpu}");
    let mut failures = Vec::new();
    for case in cases() {
        for shapes in &case.shapes {
            let report = match parity(&case, shapes, &gpu, seed) {
                Ok(r) => r,
                Err(e) => {
                    failures.push(format!("{} {shapes:?}: {e}", case.name));
                    continue;
                }
            };
            if report.forward.is_nan() || report.forward > case.tol || report.forward_nonfinite.is_some() {
                failures.push(format!(
                    "{} {shapes:?}: forward relative error {:.3e} > {:.1e} {}",
                    case.name,
                    report.forward,
                    case.tol,
                    report.forward_nonfinite.unwrap_or_default()
                ));
            }
            for (input, err) in report.grads {
                if err.is_nan() || err > case.grad_tol {
                    failures.push(format!(
                        "{} {shapes:?}: gradient of input {input}: relative error {err:.3e} > {:.1e}",
                        case.name, case.grad_tol
                    ));
                }
            }
        }
    }
    assert!(failures.is_empty(), "seed {seed}: parity failures:\n{}", failures.join("\n"));
}
