//! CPU-versus-GPU parity: every case of the op table, forward and backward, on freshly drawn
//! inputs at every shape set, within the row's tolerances; the shape sets past the grid limit
//! forward only. The inputs come from a seed printed with every failure, with the command that
//! reruns the test on it (`KILN_TEST_SEED`).

mod common;

use common::Seed;
use kiln::testing::{cases, parity};
use std::panic::{AssertUnwindSafe, catch_unwind};

#[test]
fn every_op_matches_the_cpu_reference_on_the_gpu() {
    let Some(gpu) = common::gpu("parity") else {
        return;
    };
    let seed = Seed::from_env("parity", "every_op_matches_the_cpu_reference_on_the_gpu");
    // printed first, so that even a crash of the whole run shows it (cargo shows a failed test's
    // output)
    println!("parity on {gpu}: {seed}");
    let mut failures = Vec::new();
    for case in cases().into_iter().filter(|c| c.parity) {
        let sets = case.shapes.iter().map(|s| (s, true));
        for (shapes, gradients) in sets.chain(case.past_grid_limit.iter().map(|s| (s, false))) {
            let what = format!("{} {shapes:?}", case.name);
            // a panic in one row (a wrong target, a shape rule) is one failure among the others
            let report =
                match catch_unwind(AssertUnwindSafe(|| parity(&case, shapes, &gpu, seed.value, gradients))) {
                    Ok(Ok(r)) => r,
                    Ok(Err(e)) => {
                        failures.push(format!("{what}: {e}"));
                        continue;
                    }
                    Err(panic) => {
                        let message = panic
                            .downcast_ref::<String>()
                            .cloned()
                            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default();
                        failures.push(format!("{what}: panicked: {message}"));
                        continue;
                    }
                };
            failures.extend(report.failures(&case, &what));
        }
    }
    assert!(failures.is_empty(), "parity failures with {seed}:\n{}", failures.join("\n"));
}

#[test]
fn the_seed_comes_from_kiln_test_seed_and_failures_name_the_rerun_command() {
    let given = Seed::from_var(Some("1234567"), "parity", "some_test");
    assert_eq!(given.value, 1_234_567);
    assert_eq!(given.rerun, "KILN_TEST_SEED=1234567 cargo test --test parity -- some_test --exact");
    assert!(given.to_string().contains("seed 1234567") && given.to_string().contains(&given.rerun));
    // unset: a fresh seed, which the rerun command then pins
    let drawn = Seed::from_var(None, "parity", "some_test");
    assert!(drawn.rerun.starts_with(&format!("KILN_TEST_SEED={} ", drawn.value)));
    let typo = catch_unwind(|| Seed::from_var(Some("12a"), "parity", "some_test"));
    assert!(typo.is_err(), "a seed that is not a number must not silently run another one");
}
