//! The op set and the case table agree: every op has at least one case row (so it is
//! gradchecked and parity-tested), and every case only uses registered ops.

use kiln::Device;
use kiln::ops::op_set;
use kiln::testing::{cases, ops_used};
use std::collections::BTreeSet;

#[test]
fn every_op_in_the_op_set_has_a_case_row() {
    let mut used = BTreeSet::new();
    for case in cases() {
        // record on a GPU device (nothing runs) so device transfers appear, and on the CPU
        for device in [Device::Cpu, Device::Gpu(0)] {
            for shapes in &case.shapes[..1] {
                used.extend(ops_used(&case, shapes, &device));
            }
        }
    }
    let missing: Vec<&str> = op_set().into_iter().filter(|op| !used.contains(op)).collect();
    assert!(missing.is_empty(), "ops without a case row: {missing:?}");
    let unknown: Vec<&&str> = used.iter().filter(|op| **op != "leaf" && !op_set().contains(op)).collect();
    assert!(unknown.is_empty(), "case rows use ops missing from op_set(): {unknown:?}");
}
