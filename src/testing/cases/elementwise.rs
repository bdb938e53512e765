//! Rows for creation, elementwise, reduction, movement, indexing and casting ops.
//!
//! The kernels of these families run one invocation per output element in workgroups of 256
//! (`Grid::Linear(n.div_ceil(256))`), so a dispatch passes the 65,535-workgroup limit of one grid
//! dimension at n > 65,535 · 256 = 16,776,960 elements; [`OVER_GRID_LIMIT`] is just past it.
//! Where an op allows it, those sets broadcast or index small inputs into the large output, so
//! that few values need drawing.

use super::{Case, shapes};
use crate::ops::binary::{BINARY, COMPARE};
use crate::ops::movement::PadSpec;
use crate::ops::unary::UNARY;
use crate::rng::RandomKey;
use crate::testing::{Domain, Input};
use crate::{DType, Device, Shape, Tensor};

const F: Input = Input::float(Domain::Normal);

/// Elements in 65,537 workgroups of 256: the smallest round size past the grid limit.
const OVER_GRID_LIMIT: usize = 65_537 * 256;

/// Where the rows of a unary op draw their input, and the op's parameters a and b.
struct Sample {
    domain: Domain,
    a: f64,
    b: f64,
}

/// The sample of unary op `name`: inside the op's domain (logarithms and roots of positive
/// numbers, reciprocals away from zero), across the kinks of the piecewise functions.
fn unary_sample(name: &str) -> Sample {
    let normal = |a, b| Sample { domain: Domain::Normal, a, b };
    let positive = Sample { domain: Domain::Range(0.1, 4.0), a: 0.0, b: 0.0 };
    match name {
        "neg" | "exp" | "abs" | "sign" | "sin" | "cos" | "tanh" | "sigmoid" | "relu" | "gelu"
        | "gelu_tanh" | "silu" | "softplus" | "square" | "erf" => normal(0.0, 0.0),
        "log" | "sqrt" | "rsqrt" => positive,
        "reciprocal" => Sample { domain: Domain::AwayFromZero, a: 0.0, b: 0.0 },
        // integers ±3 apart, so the rounding functions see both signs and several steps
        "floor" | "ceil" | "round" => Sample { domain: Domain::Range(-3.0, 3.0), a: 0.0, b: 0.0 },
        "leaky_relu" => normal(0.1, 0.0),
        "elu" => normal(1.0, 0.0),
        "add_scalar" => normal(1.5, 0.0),
        "mul_scalar" => normal(-2.0, 0.0),
        "rsub_scalar" => normal(3.0, 0.0),
        "rdiv_scalar" => Sample { domain: Domain::AwayFromZero, a: 2.0, b: 0.0 },
        "pow_scalar" => Sample { domain: Domain::Range(0.1, 3.0), a: 2.5, b: 0.0 },
        // bounds inside the bulk of the normal, so both clamped sides and the middle occur
        "clamp" => normal(-0.5, 0.5),
        other => panic!("unary op {other} has no sample: add one to unary_sample"),
    }
}

/// Where the rows of binary op `name` draw their two operands.
fn binary_domains(name: &str) -> (Domain, Domain) {
    match name {
        "add" | "sub" | "mul" | "maximum" | "minimum" => (Domain::Normal, Domain::Normal),
        "div" => (Domain::Normal, Domain::AwayFromZero),
        // a positive base, so aᵇ and ln a are real
        "pow" => (Domain::Range(0.1, 3.0), Domain::Range(-2.0, 2.0)),
        // the selecting input away from the kink, where finite differences would straddle it
        "relu_grad" => (Domain::Normal, Domain::AwayFromZero),
        "gelu_grad" => (Domain::Normal, Domain::Normal),
        other => panic!("binary op {other} has no domains: add them to binary_domains"),
    }
}

pub(super) fn cases() -> Vec<Case> {
    let mut rows = creation();
    rows.extend(unary());
    rows.extend(binary());
    rows.extend(reduction());
    rows.extend(movement());
    rows.extend(indexing());
    rows.extend(casting());
    rows
}

fn creation() -> Vec<Case> {
    let key = RandomKey { seed: 0x5eed, stream: 42 };
    let none = || shapes(&[&[]]);
    // a creation row's size is its build's: the large ones get a row of their own
    let large = |target: &'static str, build: fn(&Device) -> Tensor| {
        Case::new(target, format!("{target} of {OVER_GRID_LIMIT} elements"), vec![], vec![], move |_, d| {
            build(d)
        })
        .past_grid_limit(vec![])
        .no_grad()
    };
    vec![
        Case::new("full", "full f32", vec![], none(), |_, d| Tensor::full([3, 5], 2.5, DType::F32, d))
            .no_grad()
            .tol(0.0),
        Case::new("full", "full i32", vec![], none(), |_, d| Tensor::full([7], -3.0, DType::I32, d))
            .no_grad()
            .tol(0.0),
        large("full", |d| Tensor::full([OVER_GRID_LIMIT], 0.75, DType::F32, d)).tol(0.0),
        Case::new("arange", "arange f32", vec![], none(), |_, d| Tensor::arange(-2.0, 5.0, 0.25, d))
            .no_grad()
            .tol(1e-6),
        Case::new("arange", "arange i32", vec![], none(), |_, d| {
            Tensor::arange_typed(3.0, 100.0, 7.0, DType::I32, d)
        })
        .no_grad()
        .tol(0.0),
        // start + step·i in f32 on the GPU against f64 rounded on the CPU: one rounding each
        large("arange", |d| Tensor::arange(-1.0, -1.0 + OVER_GRID_LIMIT as f64 / 1024.0, 1.0 / 1024.0, d))
            .tol(1e-6),
        Case::new("rand_uniform", "rand_uniform", vec![], none(), move |_, d| {
            Tensor::uniform([1000, 3], -1.0, 2.0, key, d)
        })
        .no_grad()
        // lo + (hi − lo)·u: one rounding apart where the GPU fuses it into an FMA (an H200 does)
        .tol(1.2e-7),
        Case::new("rand_normal", "rand_normal", vec![], none(), move |_, d| {
            Tensor::normal([1001], 0.5, 2.0, key, d)
        })
        .no_grad()
        .tol(1e-5),
        large("rand_normal", |d| {
            Tensor::normal([OVER_GRID_LIMIT], 0.5, 2.0, RandomKey { seed: 1, stream: 2 }, d)
        })
        .tol(1e-5),
        Case::new("rand_bits", "rand_bits", vec![], none(), move |_, d| Tensor::random_bits([4097], key, d))
            .no_grad()
            .tol(0.0),
        Case::new(
            "dropout",
            "dropout",
            vec![F],
            shapes(&[&[&[4, 5]], &[&[1]], &[&[3, 257]]]),
            move |x, _| x[0].dropout_with_key(0.3, key),
        )
        .tol(0.0)
        .grad_tol(0.0)
        .past_grid_limit(vec![vec![OVER_GRID_LIMIT]]),
    ]
}

fn unary() -> Vec<Case> {
    let sets = shapes(&[&[&[6]], &[&[1]], &[&[7, 13]], &[&[2, 3, 37]]]);
    UNARY
        .iter()
        .map(|row| {
            let Sample { domain, a, b } = unary_sample(row.name);
            let name = row.name;
            let case = Case::new(name, name, vec![Input::float(domain)], sets.clone(), move |x, _| {
                x[0].unary(name, a, b)
            })
            .tol(row.tolerance);
            // one row stands for the family: every unary op is the same kernel around another expression
            if name == "exp" { case.past_grid_limit(vec![vec![OVER_GRID_LIMIT]]) } else { case }
        })
        .collect()
}

fn binary() -> Vec<Case> {
    let sets = shapes(&[
        &[&[3, 4], &[3, 4]],
        &[&[1], &[1]],
        &[&[5, 1, 7], &[1, 6, 1]],
        &[&[], &[2, 3]],
        &[&[13], &[1]],
        &[&[2, 3, 4, 5, 6], &[3, 1, 5, 1]],
    ]);
    let mut rows: Vec<Case> = BINARY
        .iter()
        .map(|row| {
            let name = row.name;
            let (da, db) = binary_domains(name);
            let case =
                Case::new(name, name, vec![Input::float(da), Input::float(db)], sets.clone(), move |x, _| {
                    match name {
                        "add" => &x[0] + &x[1],
                        "sub" => &x[0] - &x[1],
                        "mul" => &x[0] * &x[1],
                        "div" => &x[0] / &x[1],
                        "pow" => x[0].pow(&x[1]),
                        "maximum" => x[0].maximum(&x[1]),
                        "minimum" => x[0].minimum(&x[1]),
                        "relu_grad" => x[0].relu_grad(&x[1]),
                        "gelu_grad" => x[0].gelu_grad(&x[1]),
                        other => panic!("no case builder for binary op {other}"),
                    }
                })
                .tol(row.tolerance);
            // the broadcasting kernel, a column against a row: (65,537, 1) + (1, 256)
            if name == "add" { case.past_grid_limit(vec![vec![65_537, 1], vec![1, 256]]) } else { case }
        })
        .collect();
    let ints = Input::fixed(Domain::SmallInts);
    for row in COMPARE {
        let name = row.name;
        let case = Case::new(name, name, vec![ints, ints], sets.clone(), move |x, _| match name {
            "eq" => x[0].eq(&x[1]),
            "ne" => x[0].ne(&x[1]),
            "lt" => x[0].lt(&x[1]),
            "le" => x[0].le(&x[1]),
            "gt" => x[0].gt(&x[1]),
            "ge" => x[0].ge(&x[1]),
            other => panic!("no case builder for comparison {other}"),
        })
        .no_grad()
        .tol(0.0);
        // the kernel for operands of the output's shape
        rows.push(if name == "lt" {
            case.past_grid_limit(vec![vec![OVER_GRID_LIMIT], vec![OVER_GRID_LIMIT]])
        } else {
            case
        });
    }
    rows.push(
        Case::new("maximum", "add, mul and maximum on i32", vec![ints, ints], sets.clone(), |x, _| {
            let (a, b) = (x[0].cast(DType::I32), x[1].cast(DType::I32));
            (&a * &b + &a).maximum(&b)
        })
        .no_grad()
        .tol(0.0),
    );
    rows.push(
        Case::new(
            "where",
            "where",
            vec![Input::fixed(Domain::Bool), F, F],
            shapes(&[&[&[3, 4], &[3, 4], &[3, 4]], &[&[2, 1, 5], &[1, 4, 1], &[5]], &[&[1], &[1], &[1]]]),
            |x, _| x[0].where_(&x[1], &x[2]),
        )
        .tol(0.0)
        .past_grid_limit(vec![vec![65_537, 256], vec![1, 256], vec![65_537, 1]]),
    );
    rows
}

fn reduction() -> Vec<Case> {
    let x = vec![F];
    let sets = shapes(&[&[&[3, 4, 5]], &[&[1, 1, 1]], &[&[7, 13, 3]], &[&[2, 31, 67]]]);
    let ties = vec![Input::fixed(Domain::SmallInts)];
    // `per_workgroup` (one workgroup per output, for ≥ 32 contiguous elements each) passes the
    // limit at 65,536 outputs; `per_thread` and `arg_extreme` (256 outputs per workgroup) at
    // 16,776,961 outputs, here of 2 elements each: 33,553,922 f32, just under lavapipe's 128 MiB
    // binding limit.
    let pairs = vec![vec![16_776_961, 2]];
    vec![
        Case::new("sum", "sum axis 1", x.clone(), sets.clone(), |x, _| x[0].sum(1, false))
            .past_grid_limit(vec![vec![65_536, 32]]),
        Case::new("sum", "sum axes 0, 2 keepdim", x.clone(), sets.clone(), |x, _| {
            x[0].sum_axes(&[0, 2], true)
        }),
        // A single sum of random-sign terms can cancel to near zero, where no relative tolerance
        // holds; positive terms keep the condition number at 1, so f32 pairwise summation stays
        // within log2(n)·ε ≈ 1e-6 of the f64 reference.
        Case::new("sum", "sum all", vec![Input::float(Domain::Range(0.0, 1.0))], sets.clone(), |x, _| {
            x[0].sum_all()
        }),
        // few outputs of long reductions run in runs of 8,192 elements and a second pass (a
        // single workgroup over 6 million elements came back wrong on lavapipe); positive terms,
        // as for "sum all", since 3 sums of 20,000 random-sign terms may cancel. Parity only:
        // finite differences of sums this long measure f64 rounding (1.7e-6 against 1e-6 seen),
        // and the gradient (ones) is the other sum rows' already
        Case::new(
            "sum",
            "sum all in runs",
            vec![Input::float(Domain::Range(0.0, 1.0))],
            shapes(&[&[&[3, 8192]], &[&[7, 9001]]]),
            |x, _| x[0].sum_all(),
        )
        .no_gradcheck()
        .past_grid_limit(vec![vec![2, 3_000_001]]),
        Case::new(
            "sum",
            "sum axis 1 in runs",
            vec![Input::float(Domain::Range(0.0, 1.0))],
            shapes(&[&[&[3, 20_000]]]),
            |x, _| x[0].sum(1, true),
        )
        .no_gradcheck(),
        Case::new(
            "sum",
            "sum strided, many outputs",
            x.clone(),
            shapes(&[&[&[3, 5]], &[&[5, 1100]]]),
            |x, _| x[0].sum(0, false),
        ),
        Case::new("max", "max axis 2", x.clone(), sets.clone(), |x, _| x[0].max(2, false))
            .tol(0.0)
            .past_grid_limit(vec![vec![65_536, 1, 32]]),
        Case::new("min", "min axes 0, 1 keepdim", x.clone(), sets.clone(), |x, _| {
            x[0].min_axes(&[0, 1], true)
        })
        .tol(0.0),
        Case::new("min", "min axis 1", x.clone(), shapes(&[&[&[3, 4]], &[&[1, 1]]]), |x, _| {
            x[0].min(1, false)
        })
        .tol(0.0)
        .past_grid_limit(pairs.clone()),
        Case::new("max", "max with ties", ties.clone(), sets.clone(), |x, _| x[0].max_all())
            .no_grad()
            .tol(0.0),
        Case::composite("mean axis 0", x.clone(), sets.clone(), |x, _| x[0].mean(0, true)),
        Case::composite("var axis -1", x.clone(), sets.clone(), |x, _| {
            let unbiased = if x[0].dim(-1) > 1 { 1 } else { 0 };
            x[0].var(-1, false, unbiased)
        })
        .grad_tol(2e-4),
        Case::new("argmax", "argmax axis 1", x.clone(), sets.clone(), |x, _| x[0].argmax(1, false))
            .no_grad()
            .tol(0.0)
            .past_grid_limit(pairs),
        Case::new("argmin", "argmin axis 0 keepdim", x.clone(), sets.clone(), |x, _| x[0].argmin(0, true))
            .no_grad()
            .tol(0.0),
        Case::new("sum", "sum on i32", ties, sets, |x, _| x[0].cast(DType::I32).sum(1, false))
            .no_grad()
            .tol(0.0),
    ]
}

fn movement() -> Vec<Case> {
    let x = vec![F];
    let cube = shapes(&[&[&[2, 3, 4]], &[&[1, 1, 1]], &[&[5, 7, 11]]]);
    vec![
        Case::new("reshape", "reshape, flatten, squeeze", x.clone(), cube.clone(), |x, _| {
            let t = &x[0];
            t.reshape([t.dims()[0], t.dims()[1] * t.dims()[2]]).unsqueeze(0).squeeze(0).flatten_from(0)
        }),
        Case::new("detach", "detach", x.clone(), cube.clone(), |x, _| x[0].detach()).no_grad().tol(0.0),
        // finite differences see through detach, which is the point of it: parity only
        Case::composite("x · detach(x): no gradient through detach", x.clone(), cube.clone(), |x, _| {
            &x[0] * &x[0].detach()
        })
        .no_gradcheck(),
        // the same graph on both runs: there and back across devices, squared on the other one
        // (the parity test's GPU is gpu:0), so the CPU run squares on the GPU and the GPU run on
        // the CPU, and the gradients cross back both ways
        Case::new("to_device", "to_device and back", x.clone(), cube.clone(), |x, d| {
            let other = if d.is_gpu() { Device::Cpu } else { Device::Gpu(0) };
            x[0].to(&other).square().to(d)
        })
        .tol(1e-6)
        .no_gradcheck(),
        Case::new("permute", "permute", x.clone(), cube.clone(), |x, _| x[0].permute(&[2, 0, 1]))
            .tol(0.0)
            .grad_tol(0.0)
            .past_grid_limit(vec![vec![2, 3, OVER_GRID_LIMIT / 6]]),
        Case::new("permute", "transpose", x.clone(), cube.clone(), |x, _| x[0].t()).tol(0.0).grad_tol(0.0),
        // stored: a copy of its own that products read as laid out (its gradient is a transpose)
        Case::new("permute", "stored transpose", x.clone(), cube.clone(), |x, _| x[0].t_stored())
            .tol(0.0)
            .grad_tol(0.0),
        // the large set: (1,677,748, 1) → (2, 1,677,748, 5), 16,777,480 outputs from few values
        Case::new("expand", "expand", x.clone(), shapes(&[&[&[3, 1]], &[&[1, 1]], &[&[17, 1]]]), |x, _| {
            x[0].expand([2, x[0].dims()[0], 5])
        })
        .tol(0.0)
        .past_grid_limit(vec![vec![OVER_GRID_LIMIT / 10 + 1, 1]]),
        Case::new(
            "slice",
            "slice with step",
            x.clone(),
            shapes(&[&[&[4, 9]], &[&[4, 1]], &[&[7, 29]]]),
            |x, _| {
                let cols = x[0].dims()[1];
                x[0].slice(1, cols / 3, cols, 2).narrow(0, 1, 2)
            },
        )
        .tol(0.0)
        .grad_tol(0.0),
        Case::new("slice", "slice of one axis", x.clone(), shapes(&[&[&[7]], &[&[2]]]), |x, _| {
            x[0].narrow(0, 1, x[0].dims()[0] - 1)
        })
        .tol(0.0)
        .grad_tol(0.0)
        .past_grid_limit(vec![vec![OVER_GRID_LIMIT + 1]]),
        Case::new("pad", "pad", x.clone(), cube.clone(), |x, _| x[0].pad(&[(1, 0), (0, 2), (3, 1)], -1.5))
            .tol(0.0)
            .grad_tol(0.0),
        Case::new("pad", "pad interior", x.clone(), cube, |x, _| {
            let spec = [
                PadSpec { before: 0, after: 1, interior: 2 },
                PadSpec { before: 1, after: 0, interior: 0 },
                PadSpec { before: 2, after: 2, interior: 1 },
            ];
            x[0].pad_with(&spec, 0.0)
        })
        .tol(0.0)
        .grad_tol(0.0),
        // a column padded to 256 wide: 65,537 · 256 outputs from 65,537 values
        Case::new("pad", "pad a column wide", x.clone(), shapes(&[&[&[3, 1]], &[&[1, 1]]]), |x, _| {
            x[0].pad(&[(0, 0), (2, 253)], 0.5)
        })
        .tol(0.0)
        .grad_tol(0.0)
        .past_grid_limit(vec![vec![65_537, 1]]),
        // one copy per input (a buffer copy where input and slab are contiguous, as in the large
        // set; the strided-copy kernel otherwise, whose grid folding the permute and slice rows
        // test past the limit), so the first input alone passes the limit in the large set
        Case::new(
            "concat",
            "concat",
            vec![F, F, F],
            shapes(&[
                &[&[2, 1, 3], &[2, 4, 3], &[2, 2, 3]],
                &[&[1, 1, 1], &[1, 1, 1], &[1, 1, 1]],
                &[&[3, 5, 7], &[3, 2, 7], &[3, 11, 7]],
            ]),
            |x, _| Tensor::concat(x, 1),
        )
        .tol(0.0)
        .grad_tol(0.0)
        .past_grid_limit(vec![vec![1, OVER_GRID_LIMIT, 1], vec![1, 1, 1], vec![1, 2, 1]]),
        Case::new(
            "concat",
            "stack",
            vec![F, F],
            shapes(&[&[&[2, 3], &[2, 3]], &[&[5, 7], &[5, 7]]]),
            |x, _| Tensor::stack(x, -1),
        )
        .tol(0.0)
        .grad_tol(0.0),
        // autograd's assembly of slice gradients: parts placed along an axis, zeros between
        Case::new(
            "concat",
            "concat with gaps (assemble)",
            vec![F, F],
            shapes(&[&[&[2, 1, 3], &[2, 2, 3]], &[&[1, 1, 1], &[1, 1, 1]], &[&[3, 5, 7], &[3, 2, 7]]]),
            |x, _| {
                let (a, b) = (x[0].dims()[1], x[1].dims()[1]);
                let shape = Shape::new(vec![x[0].dims()[0], a + b + 4, x[0].dims()[2]]);
                Tensor::assemble(&shape, 1, &[(1, x[0].clone()), (a + 3, x[1].clone())])
            },
        )
        .tol(0.0)
        .grad_tol(0.0),
    ]
}

fn indexing() -> Vec<Case> {
    let row_index = Input::fixed(Domain::Index { of: 0, axis: 0 });
    let col_index = Input::fixed(Domain::Index { of: 0, axis: 1 });
    vec![
        Case::new(
            "gather",
            "gather axis 0",
            vec![F, row_index],
            shapes(&[&[&[4, 5], &[3, 5]], &[&[1, 1], &[1, 1]], &[&[13, 7], &[29, 5]]]),
            |x, _| x[0].gather(0, &x[1]),
        )
        .tol(0.0)
        // one invocation per index: 65,537 · 256 indices into 7 rows
        .past_grid_limit(vec![vec![7, 256], vec![65_537, 256]]),
        Case::new(
            "gather",
            "gather axis 1",
            vec![F, col_index],
            shapes(&[&[&[4, 5], &[4, 2]], &[&[7, 13], &[5, 31]]]),
            |x, _| x[0].gather(1, &x[1]),
        )
        .tol(0.0),
        Case::new(
            "index_select",
            "index_select",
            vec![F, row_index],
            shapes(&[&[&[5, 3], &[4]], &[&[1, 1], &[1]], &[&[31, 17], &[101]]]),
            |x, _| x[0].index_select(0, &x[1]),
        )
        .tol(0.0)
        // one invocation per output: 65,537 rows of 256 picked from 7
        .past_grid_limit(vec![vec![7, 256], vec![65_537]]),
        Case::composite(
            "embedding (index_select of rows)",
            vec![F, Input::fixed(Domain::Index { of: 0, axis: 0 })],
            shapes(&[&[&[6, 4], &[2, 3]], &[&[65, 32], &[4, 33]]]),
            |x, _| {
                let ids = &x[1];
                x[0].index_select(0, &ids.flatten_from(0)).reshape([
                    ids.dims()[0],
                    ids.dims()[1],
                    x[0].dims()[1],
                ])
            },
        )
        .tol(0.0),
        // the large set: one invocation per source element, 65,537 · 256 of them added into 4,099
        // rows, about 16 into each (f32 atomic adds in any order: a few roundings per sum)
        Case::new(
            "scatter_add",
            "scatter_add axis 0",
            vec![F, row_index, F],
            shapes(&[
                &[&[4, 5], &[6, 5], &[6, 5]],
                &[&[1, 1], &[1, 1], &[1, 1]],
                &[&[7, 11], &[50, 11], &[50, 11]],
            ]),
            |x, _| x[0].scatter_add(0, &x[1], &x[2]),
        )
        .past_grid_limit(vec![vec![4_099, 256], vec![65_537, 256], vec![65_537, 256]]),
        // the large set likewise: 256 rows of 65,537 source columns into 4,099
        Case::new(
            "index_add",
            "index_add axis 1",
            vec![F, col_index, F],
            shapes(&[&[&[3, 5], &[7], &[3, 7]], &[&[2, 1], &[1], &[2, 1]], &[&[11, 13], &[40], &[11, 40]]]),
            |x, _| x[0].index_add(1, &x[1], &x[2]),
        )
        .past_grid_limit(vec![vec![256, 4_099], vec![65_537], vec![256, 65_537]]),
    ]
}

fn casting() -> Vec<Case> {
    let ints = Input::fixed(Domain::SmallInts);
    vec![
        Case::new(
            "cast",
            "cast f32 → i32 → f32",
            vec![Input::fixed(Domain::Range(-9.0, 9.0))],
            shapes(&[&[&[5, 7]], &[&[1]]]),
            |x, _| x[0].cast(DType::I32).cast(DType::F32),
        )
        .no_grad()
        .tol(0.0)
        .past_grid_limit(vec![vec![OVER_GRID_LIMIT]]),
        Case::new("cast", "cast to bool and u32", vec![ints], shapes(&[&[&[5, 7]], &[&[1]]]), |x, _| {
            x[0].cast(DType::Bool).cast(DType::U32).cast(DType::I32).cast(DType::F32)
        })
        .no_grad()
        .tol(0.0),
        // The gradient of a float-to-float cast, in f64 (so no GPU run): f64 → f32 → f64 is the
        // identity up to one f32 rounding, ≤ ulp(x)/2 on each side of the central difference, so
        // the quotient errs by ≤ ulp(x)/(2h) ≤ 2⁻²²/(2·10⁻²) ≈ 1.2e-5 for |x| < 2 at step h = 10⁻²
        // (the default 10⁻⁶ would measure nothing but rounding). Tolerance 1e-4 above that.
        Case::new(
            "cast",
            "cast f64 → f32 → f64",
            vec![Input::float(Domain::Range(-2.0, 2.0))],
            shapes(&[&[&[5, 7]], &[&[1]]]),
            |x, _| x[0].cast(DType::F32).cast(x[0].dtype()),
        )
        .gradcheck_only()
        .finite_differences(1e-2, 1e-4),
    ]
}
