//! The row reductions' two GPU paths: subgroup operations (on by default where the adapter has
//! them: lavapipe does) and workgroup-memory trees (every other adapter, and `KILN_SUBGROUPS=0`).
//! Each runs the parity rows of every op built on them. Its own test binary: the switch is per
//! GPU, so flipping it must not change what another test in the same process runs.

mod common;

use common::Seed;
use kiln::testing::{cases, parity};

/// The ops whose kernels reduce across a workgroup: the row reductions (softmax, log-softmax,
/// layer norm, cross-entropy, batch-norm statistics) and sum/max/min.
const REDUCING: &[&str] = &[
    "softmax",
    "log_softmax",
    "layer_norm",
    "layer_norm_grad",
    "cross_entropy",
    "cross_entropy_grad",
    "channel_moments",
    "channel_sums",
    "sum",
    "max",
    "min",
];

/// Runs every parity row of the reducing ops on `gpu`; the failures, one line each.
fn reducing_rows_parity(gpu: &kiln::Device, seed: u64) -> Vec<String> {
    let rows: Vec<_> =
        cases().into_iter().filter(|c| c.parity && c.target.is_some_and(|t| REDUCING.contains(&t))).collect();
    let covered: Vec<&str> = rows.iter().filter_map(|c| c.target).collect();
    for op in REDUCING {
        assert!(covered.contains(op), "no parity row targets {op}");
    }
    let mut failures = Vec::new();
    for case in &rows {
        let sets = case.shapes.iter().map(|s| (s, true));
        for (shapes, gradients) in sets.chain(case.past_grid_limit.iter().map(|s| (s, false))) {
            let what = format!("{} {shapes:?}", case.name);
            match parity(case, shapes, gpu, seed, gradients) {
                Err(e) => failures.push(format!("{what}: {e}")),
                Ok(report) => failures.extend(report.failures(case, &what)),
            }
        }
    }
    failures
}

/// The subgroup path is what the parity test (`tests/parity.rs`) runs, being the default; this
/// checks that it is the default and runs the fallback.
#[test]
fn the_workgroup_tree_fallback_matches_the_cpu_reference() {
    let Some(gpu) = common::gpu("subgroups") else {
        return;
    };
    let seed = Seed::from_env("subgroups", "the_workgroup_tree_fallback_matches_the_cpu_reference");
    let described = gpu.describe().unwrap();
    println!("subgroups on {described}: {seed}");
    let by_default = gpu.subgroups().unwrap();
    let adapter_has_them = gpu.set_subgroups(true).unwrap();
    let turned_off = std::env::var("KILN_SUBGROUPS").is_ok_and(|v| v.trim() == "0");
    assert_eq!(
        by_default,
        adapter_has_them && !turned_off,
        "subgroups are on by default where the adapter has them"
    );
    // lavapipe (CI's GPU) has subgroups: the subgroup path must not go untested there
    if described.contains("llvmpipe") {
        assert!(adapter_has_them, "lavapipe offers SUBGROUP, but kiln did not enable it");
    }
    assert!(!gpu.set_subgroups(false).unwrap());
    assert!(!gpu.subgroups().unwrap());
    let failures = reducing_rows_parity(&gpu, seed.value);
    assert!(failures.is_empty(), "parity failures of the fallback with {seed}:\n{}", failures.join("\n"));
}

#[test]
fn the_subgroup_switch_is_off_on_the_cpu() {
    assert!(!kiln::Device::Cpu.subgroups().unwrap());
    assert!(!kiln::Device::Cpu.set_subgroups(true).unwrap());
}
