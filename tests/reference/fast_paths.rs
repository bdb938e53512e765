//! The CPU reference's fast paths, each driven on purpose, judged against the plain f64 loops of
//! `loops.rs` for every kernel op:
//! - the inputs are f32, so the polynomial `exp` (`exp_f32`) runs where kernels use it
//!   (softmax, log-softmax, attention);
//! - input 0 is an intermediate that nothing else holds, so the realizer offers the op its
//!   buffer to compute in (`Op::cpu_in_place`); and then the same op with that input held
//!   elsewhere, so the in-place and the allocating paths are both compared;
//! - every output is at least 1 MiB and is computed right after a buffer of its dtype and length
//!   was freed full of garbage (NaN), so the CPU pool hands the op a dirty buffer.
//!
//! Tolerances are relative errors ‖got − want‖ / ‖want‖ (NaN or Inf on one side is always a
//! failure), from f32 rounding: one rounding of an exact result errs by at most 2⁻²⁴ ≈ 6e-8; a
//! fast path that is wrong at all is off by O(1) somewhere, which even in one element of 2¹⁸
//! gives a relative error above 1e-3.

use super::loops::{self, Conv, Host};

mod cells;
mod channels;
mod elementwise;
use kiln::backend::cpu_pool::{MIN_BYTES, pooled_bytes};
use kiln::ops::conv::ConvOptions;
use kiln::ops::loss::CrossEntropy;
use kiln::ops::movement::PadSpec;
use kiln::ops::op_set;
use kiln::ops::pool::PoolOptions;
use kiln::ops::rope::RopePairs;
use kiln::rng::RandomKey;
use kiln::testing::{compare, gradient_op, op_name};
use kiln::{DType, Device, Tensor};
use std::collections::BTreeSet;
use std::f64::consts::PI;

/// Ops that compute nothing on the CPU, and why.
const NOT_KERNELS: &[(&str, &str)] = &[
    ("reshape", "a view: shares its input's storage"),
    ("detach", "a view: shares its input's storage"),
    ("to_device", "a transfer between devices"),
];

/// An f32 result of one rounding: ≤ 2⁻²⁴ per element.
const ONE_ROUNDING: f64 = 1e-7;
/// A few f32 operations in a row, libm's f32 functions within 1–2 ulp each: ≤ ~8·2⁻²⁴ ≈ 5e-7.
const FEW_ROUNDINGS: f64 = 1e-6;

/// How a check builds its op from its inputs.
type Build = Box<dyn Fn(&[Tensor]) -> Tensor>;

/// The f64 loop that gives a check's exact values from its inputs.
type Reference = Box<dyn Fn(&[Host]) -> Vec<f64>>;

/// One op, its inputs, and the loop that gives its exact values.
struct Check {
    /// The op under test: the node the build returns must be it.
    op: &'static str,
    /// What this check of the op exercises.
    what: String,
    inputs: Vec<Host>,
    build: Build,
    reference: Reference,
    /// The relative error allowed (see the module doc and each table entry).
    tol: f64,
}

fn check(
    op: &'static str,
    what: impl Into<String>,
    inputs: Vec<Host>,
    tol: f64,
    build: impl Fn(&[Tensor]) -> Tensor + 'static,
    reference: impl Fn(&[Host]) -> Vec<f64> + 'static,
) -> Check {
    Check { op, what: what.into(), inputs, build: Box::new(build), reference: Box::new(reference), tol }
}

/// Draws inputs from successive streams of one seed, as f32-exact values.
struct Draw {
    stream: u64,
}

impl Draw {
    fn key(&mut self) -> RandomKey {
        self.stream += 1;
        RandomKey { seed: 2_024, stream: self.stream }
    }

    fn host(shape: &[usize], dtype: DType, v: Vec<f64>) -> Host {
        Host { shape: shape.to_vec(), dtype, v }
    }

    fn values(&mut self, shape: &[usize], f: impl Fn(RandomKey, u64) -> f64) -> Vec<f64> {
        let key = self.key();
        (0..shape.iter().product::<usize>() as u64).map(|i| f(key, i) as f32 as f64).collect()
    }

    /// Standard normal.
    fn normal(&mut self, shape: &[usize]) -> Host {
        Draw::host(shape, DType::F32, self.values(shape, |k, i| k.normal(i) as f64))
    }

    /// Uniform on [lo, hi).
    fn range(&mut self, shape: &[usize], lo: f64, hi: f64) -> Host {
        Draw::host(shape, DType::F32, self.values(shape, |k, i| lo + (hi - lo) * k.uniform(i) as f64))
    }

    /// Magnitudes in [0.5, 2) with random signs.
    fn away_from_zero(&mut self, shape: &[usize]) -> Host {
        let v = self.values(shape, |k, i| {
            let m = 0.5 + 1.5 * k.uniform(2 * i) as f64;
            if k.uniform(2 * i + 1) < 0.5 { -m } else { m }
        });
        Draw::host(shape, DType::F32, v)
    }

    /// Integers in [-3, 3] as f32: comparisons see ties.
    fn small_ints(&mut self, shape: &[usize]) -> Host {
        Draw::host(shape, DType::F32, self.values(shape, |k, i| (k.uniform(i) as f64 * 7.0).floor() - 3.0))
    }

    /// i32 indices in [0, bound).
    fn index(&mut self, shape: &[usize], bound: usize) -> Host {
        Draw::host(shape, DType::I32, self.values(shape, |k, i| (k.uniform(i) as f64 * bound as f64).floor()))
    }

    /// A bool mask, true with probability ½.
    fn mask(&mut self, shape: &[usize]) -> Host {
        Draw::host(shape, DType::Bool, self.values(shape, |k, i| (k.uniform(i) < 0.5) as u8 as f64))
    }
}

/// A realized CPU tensor of `h`'s values.
fn tensor(h: &Host) -> Tensor {
    let t = match h.dtype {
        DType::F32 => {
            Tensor::from_vec(h.v.iter().map(|&x| x as f32).collect::<Vec<_>>(), h.shape.clone(), &Device::Cpu)
        }
        DType::I32 => {
            Tensor::from_vec(h.v.iter().map(|&x| x as i32).collect::<Vec<_>>(), h.shape.clone(), &Device::Cpu)
        }
        DType::Bool => {
            Tensor::from_vec(h.v.iter().map(|&x| x != 0.0).collect::<Vec<_>>(), h.shape.clone(), &Device::Cpu)
        }
        other => panic!("no inputs of {other} here"),
    };
    t.realize().expect("a CPU leaf");
    t
}

/// A computed copy of `t`: an intermediate, which the realizer may offer an op to overwrite.
fn fresh(t: &Tensor) -> Tensor {
    let copy = match t.dtype() {
        DType::F32 => t * 1.0,
        // small integers and bools survive the round trip through f32 exactly
        dtype => t.cast(DType::F32).cast(dtype),
    };
    copy.realize().expect("a CPU intermediate");
    copy
}

/// Frees a CPU buffer of `n` elements of `dtype` full of garbage, so that the pool holds a dirty
/// buffer of exactly that size for the next output that asks for one.
fn free_dirty_buffer(dtype: DType, n: usize) {
    let garbage = match dtype {
        DType::Bool => 1.0,
        DType::F32 | DType::F64 => f64::NAN,
        _ => 23_130.0,
    };
    let bytes = n * dtype.size_bytes();
    assert!(
        bytes >= MIN_BYTES,
        "an output of {bytes} bytes is too small for the pool: make the check larger"
    );
    let t = Tensor::full([n], garbage, dtype, &Device::Cpu);
    t.realize().expect("a CPU fill");
    let before = pooled_bytes();
    drop(t);
    assert!(pooled_bytes() >= before + bytes, "the pool did not keep a freed buffer of {bytes} bytes");
}

/// Runs `check` on the CPU, input 0 an intermediate that is `shared` (held here too) or not.
fn run(check: &Check, shared: bool) -> Vec<f64> {
    let mut args: Vec<Tensor> = check.inputs.iter().map(tensor).collect();
    if let Some(first) = args.first_mut() {
        *first = fresh(first);
    }
    let y = (check.build)(&args);
    assert_eq!(op_name(&y), check.op, "{} {}: the check builds another op", check.op, check.what);
    // unshared: the node is now input 0's only owner
    let held = if shared {
        args
    } else {
        drop(args);
        Vec::new()
    };
    free_dirty_buffer(y.dtype(), y.numel());
    let values = y.to_f64_vec().expect("the CPU computes");
    drop(held);
    values
}

#[test]
fn every_kernel_op_matches_a_plain_f64_loop_through_the_cpu_fast_paths() {
    let checks = table();
    let checked: BTreeSet<&str> = checks.iter().map(|c| c.op).collect();
    let skipped: BTreeSet<&str> = NOT_KERNELS.iter().map(|(op, _)| *op).collect();
    let missing: Vec<&str> =
        op_set().into_iter().filter(|op| !checked.contains(op) && !skipped.contains(op)).collect();
    assert!(missing.is_empty(), "kernel ops without a fast-path check: {missing:?}");
    let mut failures = Vec::new();
    for check in &checks {
        let want = (check.reference)(&check.inputs);
        for shared in [false, true] {
            let got = run(check, shared);
            let (err, mismatch) = compare(&want, &got);
            // NaN fails too
            if err.is_nan() || err > check.tol || mismatch.is_some() {
                let input0 = if shared { "shared" } else { "unshared (in place if the op can)" };
                failures.push(format!(
                    "{} {}, input 0 {input0}: relative error {err:.2e} > {:.0e} {}",
                    check.op,
                    check.what,
                    check.tol,
                    mismatch.unwrap_or_default()
                ));
            }
        }
    }
    assert!(failures.is_empty(), "CPU fast paths against f64 loops:\n{}", failures.join("\n"));
}

fn table() -> Vec<Check> {
    let mut d = Draw { stream: 0 };
    let mut checks = Vec::new();
    // 1,031 × 257 f32: 1.06 MB, past the pool's 1 MiB
    let m = [1_031, 257];

    checks.extend(elementwise::checks(&mut d, &m));

    // reductions: 262,147 outputs (1 MiB of f32 or i32)
    let rows = [262_147, 3];
    // the CPU sums in f64, then rounds once
    checks.push(check(
        "sum",
        "along the last axis",
        vec![d.normal(&rows)],
        ONE_ROUNDING,
        |t| t[0].sum(1, false),
        |h| loops::fold_axis(&h[0], 1, 0.0, |a, b| a + b),
    ));
    checks.push(check(
        "sum",
        "along a strided axis",
        vec![d.normal(&[3, 262_147])],
        ONE_ROUNDING,
        |t| t[0].sum(0, false),
        |h| loops::fold_axis(&h[0], 0, 0.0, |a, b| a + b),
    ));
    checks.push(check(
        "sum",
        "along a middle axis",
        vec![d.normal(&[5, 3, 52_433])],
        ONE_ROUNDING,
        |t| t[0].sum(1, false),
        |h| loops::fold_axis(&h[0], 1, 0.0, |a, b| a + b),
    ));
    // axes that are not consecutive take the general strided walk
    checks.push(check(
        "sum",
        "along two axes apart",
        vec![d.normal(&[3, 262_147, 3])],
        ONE_ROUNDING,
        |t| t[0].sum_axes(&[0, 2], false),
        |h| {
            let inner = loops::fold_axis(&h[0], 2, 0.0, |a, b| a + b);
            let folded = Host { shape: vec![3, 262_147], dtype: DType::F64, v: inner };
            loops::fold_axis(&folded, 0, 0.0, |a, b| a + b)
        },
    ));
    // a conv bias gradient's axes: runs of the last two axes, folded over the first
    checks.push(check(
        "sum",
        "over the first and the last two axes",
        vec![d.normal(&[2, 262_147, 4, 5])],
        ONE_ROUNDING,
        |t| t[0].sum_axes(&[0, 2, 3], false),
        |h| {
            let mut folded = h[0].clone();
            for axis in [3, 2, 0] {
                let v = loops::fold_axis(&folded, axis, 0.0, |a, b| a + b);
                let mut shape = folded.shape.clone();
                shape.remove(axis);
                folded = Host { shape, dtype: DType::F64, v };
            }
            folded.v
        },
    ));
    checks.push(check(
        "max",
        "along a strided axis",
        vec![d.normal(&[3, 262_147])],
        0.0,
        |t| t[0].max(0, false),
        |h| loops::fold_axis(&h[0], 0, f64::NEG_INFINITY, f64::max),
    ));
    checks.push(check(
        "max",
        "",
        vec![d.normal(&rows)],
        0.0,
        |t| t[0].max(1, false),
        |h| loops::fold_axis(&h[0], 1, f64::NEG_INFINITY, f64::max),
    ));
    checks.push(check(
        "min",
        "",
        vec![d.normal(&rows)],
        0.0,
        |t| t[0].min(1, false),
        |h| loops::fold_axis(&h[0], 1, f64::INFINITY, f64::min),
    ));
    checks.push(check(
        "argmax",
        "with ties",
        vec![d.small_ints(&rows)],
        0.0,
        |t| t[0].argmax(1, false),
        |h| loops::arg_extreme(&h[0], 1, true),
    ));
    checks.push(check(
        "argmin",
        "with ties",
        vec![d.small_ints(&rows)],
        0.0,
        |t| t[0].argmin(1, false),
        |h| loops::arg_extreme(&h[0], 1, false),
    ));

    // movement and indexing: values are copied, exactly
    checks.push(check(
        "permute",
        "",
        vec![d.normal(&[64, 65, 67])],
        0.0,
        |t| t[0].permute(&[2, 0, 1]),
        |h| loops::permute(&h[0], &[2, 0, 1]),
    ));
    // a 2-D strided read (here a matrix transpose) copies in tiles
    checks.push(check(
        "permute",
        "stored transpose",
        vec![d.normal(&[97, 131])],
        0.0,
        |t| t[0].t_stored(),
        |h| loops::permute(&h[0], &[1, 0]),
    ));
    checks.push(check(
        "expand",
        "",
        vec![d.normal(&[1_031, 1])],
        0.0,
        |t| t[0].expand([1_031, 257]),
        |h| loops::tabulate(&[1_031, 257], |i| h[0].broadcast(i)),
    ));
    checks.push(check(
        "slice",
        "with step",
        vec![d.normal(&[1_031, 600])],
        0.0,
        |t| t[0].slice(1, 5, 600, 2),
        |h| loops::slice(&h[0], 1, 5, 600, 2),
    ));
    checks.push(check(
        "pad",
        "with interior padding",
        vec![d.normal(&[1_000, 130])],
        0.0,
        |t| {
            t[0].pad_with(
                &[PadSpec { before: 1, after: 2, interior: 1 }, PadSpec { before: 3, after: 0, interior: 0 }],
                -0.5,
            )
        },
        |h| loops::pad(&h[0], &[(1, 2, 1), (3, 0, 0)], -0.5),
    ));
    checks.push(check(
        "concat",
        "",
        vec![d.normal(&[1_031, 100]), d.normal(&[1_031, 157])],
        0.0,
        |t| Tensor::concat(t, 1),
        |h| loops::concat(&[&h[0], &h[1]], 1),
    ));
    // along the first axis each input is one block of the output, the blocks copied in parallel
    checks.push(check(
        "concat",
        "along the first axis",
        vec![d.normal(&[300, 257]), d.normal(&[1, 257]), d.normal(&[411, 257])],
        0.0,
        |t| Tensor::concat(t, 0),
        |h| loops::concat(&[&h[0], &h[1], &h[2]], 0),
    ));
    checks.push(check(
        "gather",
        "",
        vec![d.normal(&[7, 257]), d.index(&m, 7)],
        0.0,
        |t| t[0].gather(0, &t[1]),
        |h| loops::gather(&h[0], 0, &h[1]),
    ));
    checks.push(check(
        "index_select",
        "",
        vec![d.normal(&[7, 257]), d.index(&[1_031], 7)],
        0.0,
        |t| t[0].index_select(0, &t[1]),
        |h| loops::index_select(&h[0], 0, &h[1]),
    ));
    // about two f32 additions into each element
    checks.push(check(
        "scatter_add",
        "",
        vec![d.normal(&m), d.index(&[2_000, 257], 1_031), d.normal(&[2_000, 257])],
        3.0 * ONE_ROUNDING,
        |t| t[0].scatter_add(0, &t[1], &t[2]),
        |h| loops::scatter_add(&h[0], 0, &h[1], &h[2]),
    ));
    checks.push(check(
        "index_add",
        "",
        vec![d.normal(&[257, 1_031]), d.index(&[2_000], 1_031), d.normal(&[257, 2_000])],
        3.0 * ONE_ROUNDING,
        |t| t[0].index_add(1, &t[1], &t[2]),
        |h| loops::index_add(&h[0], 1, &h[1], &h[2]),
    ));
    checks.push(check(
        "cast",
        "f32 to i32, toward zero",
        vec![d.range(&m, -9.0, 9.0)],
        0.0,
        |t| t[0].cast(DType::I32),
        |h| loops::unary(&h[0], f64::trunc),
    ));
    checks.push(check(
        "cast",
        "i32 to f32",
        vec![d.index(&m, 1_000)],
        0.0,
        |t| t[0].cast(DType::F32),
        |h| h[0].v.clone(),
    ));

    // f32 dot products of k terms err by ≤ k·2⁻²⁴·Σ|aᵢbᵢ| each; over random data the relative
    // norm is ~k·2⁻²⁴ ≈ 1e-6 for k = 16: 1e-5 leaves room
    checks.push(check(
        "matmul",
        "batched",
        vec![d.normal(&[2, 256, 16]), d.normal(&[2, 16, 520])],
        1e-5,
        |t| t[0].matmul(&t[1]),
        |h| loops::matmul(&h[0], &h[1]),
    ));
    // convolutions are dot products of C/groups·3·3 = 18 (forward), O·3·3 = 36 (input
    // gradient) and N·H·W = 100 (weight gradient) terms: as matmul, ≤ 1e-5, 2e-5 and 5e-5
    let conv = |groups| Conv { stride: 1, padding: 1, groups };
    let opts = |groups| ConvOptions::default().padding(1).groups(groups);
    checks.push(check(
        "conv2d",
        "groups 2, padding 1",
        vec![d.normal(&[2, 4, 130, 130]), d.normal(&[8, 2, 3, 3])],
        1e-5,
        move |t| t[0].conv2d(&t[1], opts(2)),
        move |h| loops::conv2d(&h[0], &h[1], conv(2)),
    ));
    checks.push(check(
        "conv2d_input_grad",
        "padding 1",
        vec![d.normal(&[2, 8, 130, 130]), d.normal(&[4, 8, 3, 3]), d.normal(&[2, 4, 130, 130])],
        2e-5,
        move |t| gradient_op(&t[0].conv2d(&t[1], opts(1)), &t[2], "conv2d_input_grad", 0),
        move |h| loops::conv2d_input_grad(&h[0].shape, &h[1], &h[2], conv(1)),
    ));
    checks.push(check(
        "conv2d_weight_grad",
        "padding 1",
        vec![d.normal(&[1, 256, 10, 10]), d.normal(&[128, 256, 3, 3]), d.normal(&[1, 128, 10, 10])],
        5e-5,
        move |t| gradient_op(&t[0].conv2d(&t[1], opts(1)), &t[2], "conv2d_weight_grad", 0),
        move |h| loops::conv2d_weight_grad(&h[0], &h[1].shape, &h[2], conv(1)),
    ));

    // 2×2 windows at stride 1 over 4 planes of 258²: 264,196 outputs
    let image = [1, 4, 258, 258];
    let pooled = [1, 4, 257, 257];
    let window = PoolOptions::new(2).stride(1);
    checks.push(check(
        "max_pool2d",
        "2×2 stride 1",
        vec![d.normal(&image)],
        0.0,
        move |t| t[0].max_pool2d(window),
        |h| loops::max_pool(&h[0], 2, 1).0,
    ));
    // up to four gradients added into one input
    checks.push(check(
        "max_pool2d_grad",
        "2×2 stride 1",
        vec![d.normal(&image), d.normal(&pooled)],
        3.0 * ONE_ROUNDING,
        move |t| gradient_op(&t[0].max_pool2d(window), &t[1], "max_pool2d_grad", 0),
        |h| loops::max_pool_grad(&h[0], &h[1], 2, 1),
    ));
    // a sum of four and a division
    checks.push(check(
        "avg_pool2d",
        "2×2 stride 1",
        vec![d.normal(&image)],
        5.0 * ONE_ROUNDING,
        move |t| t[0].avg_pool2d(window),
        |h| loops::avg_pool(&h[0], 2, 1),
    ));
    checks.push(check(
        "avg_pool2d_grad",
        "2×2 stride 1",
        vec![d.normal(&image), d.normal(&pooled)],
        5.0 * ONE_ROUNDING,
        move |t| gradient_op(&t[0].avg_pool2d(window), &t[1], "avg_pool2d_grad", 0),
        |h| loops::avg_pool_grad(&h[0].shape, &h[1], 2, 1),
    ));

    // exp_f32 errs by ≤ 2 ulp, then a sum and a division: a handful of roundings
    checks.push(check(
        "softmax",
        "last axis (exp_f32)",
        vec![d.normal(&m)],
        FEW_ROUNDINGS,
        |t| t[0].softmax(-1),
        |h| loops::softmax(&h[0], 1, false),
    ));
    checks.push(check(
        "softmax",
        "axis 0, strided (exp_f32)",
        vec![d.normal(&m)],
        FEW_ROUNDINGS,
        |t| t[0].softmax(0),
        |h| loops::softmax(&h[0], 0, false),
    ));
    checks.push(check(
        "log_softmax",
        "last axis (exp_f32)",
        vec![d.normal(&m)],
        FEW_ROUNDINGS,
        |t| t[0].log_softmax(-1),
        |h| loops::softmax(&h[0], 1, true),
    ));
    // means and variances of 257 values in f32, then a few operations per element
    checks.push(check(
        "layer_norm",
        "weight and bias",
        vec![d.normal(&m), d.normal(&[257]), d.normal(&[257])],
        1e-5,
        |t| t[0].layer_norm(&[257], Some(&t[1]), Some(&t[2]), 1e-5),
        |h| loops::layer_norm(&h[0], Some(&h[1]), Some(&h[2]), 1e-5),
    ));
    checks.push(check(
        "layer_norm_grad",
        "weight",
        vec![d.normal(&m), d.normal(&[257]), d.normal(&m)],
        1e-5,
        |t| gradient_op(&t[0].layer_norm(&[257], Some(&t[1]), None, 1e-5), &t[2], "layer_norm_grad", 0),
        |h| loops::layer_norm_grad(&h[0], &h[1], &h[2], 1e-5),
    ));

    // attention: f32 dot products of up to 32 terms and exp_f32: as matmul, 1e-5 (2e-5 for the
    // gradients, which chain two of them)
    checks.push(check(
        "attention",
        "(exp_f32)",
        vec![d.normal(&[256, 32, 16]), d.normal(&[256, 32, 16]), d.normal(&[256, 32, 32])],
        1e-5,
        |t| t[0].attention(&t[1], &t[2], false, None),
        |h| loops::Attention::of(&h[0], &h[2], 32, false).forward(&h[0], &h[1], &h[2]),
    ));
    // causal, batch entries of (queries, keys) sized so that the output passes 1 MiB: dk and dv
    // of 16,384 rows of 4 each, dq of 65,536 rows of 4
    let attention = |t: &[Tensor]| t[0].attention(&t[1], &t[2], true, None);
    let inputs = |d: &mut Draw, b: usize, tq: usize, tk: usize| {
        vec![d.normal(&[b, tq, 4]), d.normal(&[b, tk, 4]), d.normal(&[b, tk, 4]), d.normal(&[b, tq, 4])]
    };
    let geometry = |h: &[Host]| loops::Attention::of(&h[0], &h[2], h[1].shape[1], true);
    checks.push(check(
        "attention_grad",
        "dk, dv and dq, causal (exp_f32)",
        inputs(&mut d, 1_024, 64, 16),
        2e-5,
        move |t| gradient_op(&attention(t), &t[3], "attention_grad", 0),
        move |h| {
            let (dq, dkv) = geometry(h).grads(&h[0], &h[1], &h[2], &h[3]);
            dkv.into_iter().chain(dq).collect()
        },
    ));

    // cross-entropy computes each row in f64, then rounds once
    let logits = [262_147, 3];
    let smoothed = CrossEntropy { ignore_index: Some(1), label_smoothing: 0.1 };
    checks.push(check(
        "cross_entropy",
        "ignore index 1, smoothing 0.1",
        vec![d.normal(&logits), d.index(&[262_147], 3)],
        ONE_ROUNDING,
        move |t| t[0].cross_entropy_per_row(&t[1], smoothed),
        |h| loops::cross_entropy(&h[0], &h[1], 0.1, Some(1)),
    ));
    checks.push(check(
        "cross_entropy_grad",
        "",
        vec![d.normal(&logits), d.index(&[262_147], 3), d.normal(&[262_147])],
        ONE_ROUNDING,
        |t| {
            gradient_op(
                &t[0].cross_entropy_per_row(&t[1], CrossEntropy::default()),
                &t[2],
                "cross_entropy_grad",
                0,
            )
        },
        |h| loops::cross_entropy_grad(&h[0], &h[1], &h[2]),
    ));

    // rotary embeddings: two products and a sum per element, from f32 tables
    for pairs in [RopePairs::Halves, RopePairs::Interleaved] {
        checks.push(check(
            "rope",
            format!("{pairs:?}, offset 3"),
            vec![d.normal(&[16, 257, 64]), d.range(&[260, 32], -1.0, 1.0), d.range(&[260, 32], -1.0, 1.0)],
            FEW_ROUNDINGS,
            move |t| t[0].rope(&t[1], &t[2], 3, pairs),
            move |h| loops::rope(&h[0], &h[1], &h[2], 3, pairs == RopePairs::Interleaved),
        ));
    }

    // random draws: the same Philox words, turned into numbers here in f64
    let key = RandomKey { seed: 77, stream: 5 };
    let n = 262_147;
    // x/(1 − p) in f32: one rounding
    checks.push(check(
        "dropout",
        "p 0.3",
        vec![d.normal(&m)],
        ONE_ROUNDING,
        move |t| t[0].dropout_with_key(0.3, key),
        move |h| {
            h[0].v
                .iter()
                .enumerate()
                .map(|(i, &x)| if key.uniform(i as u64) >= 0.3 { x / 0.7 } else { 0.0 })
                .collect()
        },
    ));
    checks.push(check(
        "full",
        "",
        vec![],
        0.0,
        move |_| Tensor::full([n], 2.5, DType::F32, &Device::Cpu),
        move |_| vec![2.5; n],
    ));
    // start + step·i is exact in f32 for these
    checks.push(check(
        "arange",
        "",
        vec![],
        0.0,
        move |_| Tensor::arange(-1.0, -1.0 + n as f64 / 1_024.0, 1.0 / 1_024.0, &Device::Cpu),
        move |_| (0..n).map(|i| -1.0 + i as f64 / 1_024.0).collect(),
    ));
    checks.push(check(
        "rand_bits",
        "",
        vec![],
        0.0,
        move |_| Tensor::random_bits([n], key, &Device::Cpu),
        move |_| (0..n as u64).map(|i| key.bits(i) as f64).collect(),
    ));
    // lo + (hi − lo)·u in f32: two roundings
    checks.push(check(
        "rand_uniform",
        "",
        vec![],
        2.0 * ONE_ROUNDING,
        move |_| Tensor::uniform([n], -1.0, 2.0, key, &Device::Cpu),
        move |_| (0..n as u64).map(|i| -1.0 + 3.0 * key.uniform(i) as f64).collect(),
    ));
    // Box–Muller in f32 (a logarithm, a root, a sine or cosine): a few roundings
    checks.push(check(
        "rand_normal",
        "",
        vec![],
        FEW_ROUNDINGS,
        move |_| Tensor::normal([n], 0.5, 2.0, key, &Device::Cpu),
        move |_| (0..n as u64).map(|i| 0.5 + 2.0 * box_muller(key, i)).collect(),
    ));
    checks.extend(cells::checks(&mut d));
    checks.extend(channels::checks(&mut d));
    checks
}

/// Element `i` of kiln's normal stream, from the Philox words, in f64: words 0 and 1 of block
/// i / 2 (elements 4b and 4b + 1 of the bits stream) as u₁ ∈ (0, 1] and u₂ ∈ [0, 1); the cosine
/// branch for even i, the sine branch for odd.
fn box_muller(key: RandomKey, i: u64) -> f64 {
    let block = i / 2;
    let unit = |w: u32| (w >> 8) as f64 / 16_777_216.0;
    let u1 = unit(key.bits(4 * block)) + 1.0 / 16_777_216.0;
    let u2 = unit(key.bits(4 * block + 1));
    let (r, theta) = ((-2.0 * u1.ln()).sqrt(), 2.0 * PI * u2);
    if i.is_multiple_of(2) { r * theta.cos() } else { r * theta.sin() }
}
