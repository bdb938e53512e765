//! The op set and the case table agree, op by op: every op is the *target* of a parity row (the
//! row's output node is that op, on both devices, in the same graph), and every differentiable op
//! is the target of a gradient-check row — or, for an op that only gradient rules make, is made
//! by the rule of an op that is. Ops without gradients are listed here with the reason, and the
//! list is checked against their gradient rules. Nothing is computed: rows are only recorded, so
//! this runs without a GPU.

use kiln::ops::op_set;
use kiln::testing::{Case, cases, gradient_rule, inspect};
use kiln::{DType, Device};
use std::collections::BTreeSet;

/// Ops with no gradient, and why. The test checks that their gradient rules give none.
const NOT_DIFFERENTIABLE: &[(&str, &str)] = &[
    ("full", "creation: no inputs"),
    ("arange", "creation: no inputs"),
    ("rand_bits", "random draw: no inputs"),
    ("rand_uniform", "random draw: no inputs"),
    ("rand_normal", "random draw: no inputs"),
    ("eq", "comparison: a bool output"),
    ("ne", "comparison: a bool output"),
    ("lt", "comparison: a bool output"),
    ("le", "comparison: a bool output"),
    ("gt", "comparison: a bool output"),
    ("ge", "comparison: a bool output"),
    ("argmax", "an index output"),
    ("argmin", "an index output"),
    ("detach", "stops gradients by definition (the composite row `x · detach(x)` checks that it does)"),
];

/// Ops that only gradient rules make, with the forward op whose rule makes each: the f64
/// gradient check of that op's row checks them (their own gradients are never taken).
const GRADIENT_OPS: &[(&str, &str)] = &[
    ("conv2d_input_grad", "conv2d"),
    ("conv2d_weight_grad", "conv2d"),
    ("max_pool2d_grad", "max_pool2d"),
    ("avg_pool2d_grad", "avg_pool2d"),
    ("layer_norm_grad", "layer_norm"),
    ("attention_grad", "attention"),
    ("cross_entropy_grad", "cross_entropy"),
    ("lstm_cell_grad", "lstm_cell"),
    ("gru_cell_grad", "gru_cell"),
    ("rnn_cell_grad", "rnn_cell"),
];

/// Differentiable ops that the f64 gradient check cannot reach, and why: the parity check
/// compares their gradients instead (the test checks it does).
const NOT_GRADCHECKED: &[(&str, &str)] = &[(
    "to_device",
    "the gradient check runs in f64 on the CPU, where a move to the CPU is no node and f64 cannot \
     move to a GPU; its gradient is a move back, which parity compares",
)];

/// The recording device standing for "a GPU": nothing runs, so no adapter is needed.
const GPU: Device = Device::Gpu(0);

/// Every shape set of a row, the large ones too.
fn all_sets(case: &Case) -> impl Iterator<Item = &Vec<Vec<usize>>> {
    case.shapes.iter().chain(&case.past_grid_limit)
}

fn listed(list: &[(&'static str, &str)]) -> BTreeSet<&'static str> {
    list.iter().map(|(op, _)| *op).collect()
}

/// Records `case` at `shapes` and its nodes; notes in `wrong` when its output is not its target.
fn record(
    case: &Case,
    shapes: &[Vec<usize>],
    float: DType,
    device: &Device,
    wrong: &mut Vec<String>,
) -> Vec<String> {
    let a = inspect(case, shapes, float, device);
    if let Some(target) = case.target
        && a.root != target
    {
        wrong.push(format!(
            "{} {shapes:?} in {float} on {device}: targets {target}, builds {}",
            case.name, a.root
        ));
    }
    a.nodes
}

#[test]
fn every_row_builds_its_target_and_the_same_graph_on_both_devices() {
    let mut wrong = Vec::new();
    for case in cases() {
        if case.parity {
            for shapes in all_sets(&case) {
                let cpu = record(&case, shapes, DType::F32, &Device::Cpu, &mut wrong);
                let gpu = record(&case, shapes, DType::F32, &GPU, &mut wrong);
                if cpu != gpu {
                    let what = format!("{} {shapes:?}", case.name);
                    wrong.push(format!(
                        "{what}: different graphs on the CPU and a GPU:\n  {cpu:?}\n  {gpu:?}"
                    ));
                }
            }
        }
        if case.gradcheck {
            record(&case, &case.shapes[0], DType::F64, &Device::Cpu, &mut wrong);
        }
    }
    assert!(wrong.is_empty(), "rows that do not build what they claim:\n{}", wrong.join("\n"));
}

#[test]
fn every_op_is_the_target_of_a_parity_row() {
    let ops: BTreeSet<&str> = op_set().into_iter().collect();
    let targets: BTreeSet<&str> = cases().iter().filter(|c| c.parity).filter_map(|c| c.target).collect();
    let missing: Vec<_> = ops.difference(&targets).collect();
    assert!(missing.is_empty(), "ops that no parity row targets: {missing:?}");
    let unknown: Vec<_> = cases().iter().filter_map(|c| c.target).filter(|t| !ops.contains(t)).collect();
    assert!(unknown.is_empty(), "rows target ops missing from op_set(): {unknown:?}");
}

#[test]
fn every_differentiable_op_is_the_target_of_a_gradcheck_row() {
    let all = cases();
    let (none, by_rule, by_parity) =
        (listed(NOT_DIFFERENTIABLE), listed(GRADIENT_OPS), listed(NOT_GRADCHECKED));
    let mut problems = Vec::new();
    for op in op_set() {
        let in_lists = [&none, &by_rule, &by_parity].iter().filter(|l| l.contains(op)).count();
        if in_lists > 1 {
            problems.push(format!("{op} is listed more than once"));
        }
        let rows: Vec<&Case> = all.iter().filter(|c| c.target == Some(op)).collect();
        let gradchecked: Vec<&&Case> = rows.iter().filter(|c| c.gradcheck).collect();
        if none.contains(op) {
            // the claim is checked against the rule itself
            for case in &rows {
                for shapes in &case.shapes {
                    if gradient_rule(case, shapes).gradients > 0 {
                        problems.push(format!(
                            "{op} is listed as not differentiable, but row `{}` gets a gradient",
                            case.name
                        ));
                    }
                }
            }
        } else if by_parity.contains(op) {
            if !rows.iter().any(|c| c.parity && c.differentiable) {
                problems.push(format!("{op}: no parity row compares its gradient"));
            }
        } else if !by_rule.contains(op) {
            if gradchecked.is_empty() {
                problems.push(format!("{op}: no gradcheck row targets it"));
            }
            for case in gradchecked {
                if gradient_rule(case, &case.shapes[0]).gradients == 0 || !case.inputs.iter().any(|i| i.grad)
                {
                    problems.push(format!("row `{}` checks no gradient of {op}", case.name));
                }
            }
        }
    }
    assert!(problems.is_empty(), "gradient coverage:\n{}", problems.join("\n"));
}

#[test]
fn every_gradient_op_is_made_by_the_rule_of_a_gradchecked_op() {
    let all = cases();
    let mut missing = Vec::new();
    for &(op, forward) in GRADIENT_OPS {
        // only the nodes the forward op's own rule creates count, not those of the ops below it
        let made = all
            .iter()
            .filter(|c| c.gradcheck && c.target == Some(forward))
            .any(|c| gradient_rule(c, &c.shapes[0]).ops.contains(&op));
        if !made {
            missing.push(format!("{op}: no gradcheck row of {forward} whose rule makes it"));
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[test]
fn ops_do_not_depend_on_the_test_harness() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ops");
    let mut offenders = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("src/ops is readable") {
            let path = entry.expect("readable").path();
            if path.is_dir() {
                dirs.push(path);
            } else if std::fs::read_to_string(&path).expect("readable source").contains("testing::") {
                let name = path.strip_prefix(&root).expect("under src/ops");
                offenders.push(name.to_string_lossy().into_owned());
            }
        }
    }
    assert!(
        offenders.is_empty(),
        "src/ops files that use crate::testing (case metadata belongs in src/testing/cases): {offenders:?}"
    );
}
