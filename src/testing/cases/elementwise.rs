//! Rows for creation, elementwise, reduction, movement, indexing and casting ops.

use super::{Case, shapes};
use crate::ops::binary::{BINARY, COMPARE};
use crate::ops::movement::PadSpec;
use crate::ops::unary::UNARY;
use crate::rng::RandomKey;
use crate::testing::{Domain, Input};
use crate::{DType, Device, Tensor};

const F: Input = Input::float(Domain::Normal);

/// The largest elementwise case: more than 65,535 workgroups of 256.
const OVER_GRID_LIMIT: usize = 65_537 * 256 + 3;

pub(super) fn cases() -> Vec<Case> {
    let mut rows = creation();
    rows.extend(unary());
    rows.extend(binary());
    rows.extend(reduction());
    rows.extend(movement());
    rows.extend(indexing());
    rows
}

fn creation() -> Vec<Case> {
    let key = RandomKey { seed: 0x5eed, stream: 42 };
    let none = || shapes(&[&[]]);
    vec![
        Case::new("full f32", vec![], none(), |_, d| Tensor::full([3, 5], 2.5, DType::F32, d))
            .no_grad()
            .tol(0.0),
        Case::new("full i32", vec![], none(), |_, d| Tensor::full([7], -3.0, DType::I32, d))
            .no_grad()
            .tol(0.0),
        Case::new("arange f32", vec![], none(), |_, d| Tensor::arange(-2.0, 5.0, 0.25, d))
            .no_grad()
            .tol(1e-6),
        Case::new("arange i32", vec![], none(), |_, d| Tensor::arange_typed(3.0, 100.0, 7.0, DType::I32, d))
            .no_grad()
            .tol(0.0),
        Case::new("rand_uniform", vec![], none(), move |_, d| Tensor::uniform([1000, 3], -1.0, 2.0, key, d))
            .no_grad()
            .tol(0.0),
        Case::new("rand_normal", vec![], none(), move |_, d| Tensor::normal([1001], 0.5, 2.0, key, d))
            .no_grad()
            .tol(1e-5),
        Case::new("rand_bits", vec![], none(), move |_, d| Tensor::random_bits([4097], key, d))
            .no_grad()
            .tol(0.0),
        Case::new("dropout", vec![F], shapes(&[&[&[4, 5]], &[&[1]], &[&[3, 257]]]), move |x, _| {
            x[0].dropout_with_key(0.3, key)
        })
        .tol(0.0)
        .grad_tol(0.0),
    ]
}

fn unary() -> Vec<Case> {
    let sets = shapes(&[&[&[6]], &[&[1]], &[&[7, 13]], &[&[2, 3, 37]]]);
    UNARY
        .iter()
        .map(|row| {
            let (name, a, b) = (row.name, row.sample.a, row.sample.b);
            let case = Case::new(name, vec![Input::float(row.sample.domain)], sets.clone(), move |x, _| {
                x[0].unary(name, a, b)
            })
            .tol(row.tolerance);
            if name == "exp" { case.with_shapes(vec![vec![OVER_GRID_LIMIT]]) } else { case }
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
            let (da, db) = row.domains;
            Case::new(name, vec![Input::float(da), Input::float(db)], sets.clone(), move |x, _| match name {
                "add" => &x[0] + &x[1],
                "sub" => &x[0] - &x[1],
                "mul" => &x[0] * &x[1],
                "div" => &x[0] / &x[1],
                "pow" => x[0].pow(&x[1]),
                "maximum" => x[0].maximum(&x[1]),
                "minimum" => x[0].minimum(&x[1]),
                other => panic!("no case builder for binary op {other}"),
            })
            .tol(row.tolerance)
        })
        .collect();
    let ints = Input::fixed(Domain::SmallInts);
    for row in COMPARE {
        let name = row.name;
        rows.push(
            Case::new(name, vec![ints, ints], sets.clone(), move |x, _| match name {
                "eq" => x[0].eq(&x[1]),
                "ne" => x[0].ne(&x[1]),
                "lt" => x[0].lt(&x[1]),
                "le" => x[0].le(&x[1]),
                "gt" => x[0].gt(&x[1]),
                "ge" => x[0].ge(&x[1]),
                other => panic!("no case builder for comparison {other}"),
            })
            .no_grad()
            .tol(0.0),
        );
    }
    rows.push(
        Case::new("add/mul/maximum on i32", vec![ints, ints], sets.clone(), |x, _| {
            let (a, b) = (x[0].cast(DType::I32), x[1].cast(DType::I32));
            (&a * &b + &a).maximum(&b)
        })
        .no_grad()
        .tol(0.0),
    );
    rows.push(
        Case::new(
            "where",
            vec![Input::fixed(Domain::Bool), F, F],
            shapes(&[&[&[3, 4], &[3, 4], &[3, 4]], &[&[2, 1, 5], &[1, 4, 1], &[5]], &[&[1], &[1], &[1]]]),
            |x, _| x[0].where_(&x[1], &x[2]),
        )
        .tol(0.0),
    );
    rows
}

fn reduction() -> Vec<Case> {
    let x = vec![F];
    let sets = shapes(&[&[&[3, 4, 5]], &[&[1, 1, 1]], &[&[7, 13, 3]], &[&[2, 31, 67]]]);
    let ties = vec![Input::fixed(Domain::SmallInts)];
    vec![
        Case::new("sum axis 1", x.clone(), sets.clone(), |x, _| x[0].sum(1, false)),
        Case::new("sum axes 0, 2 keepdim", x.clone(), sets.clone(), |x, _| x[0].sum_axes(&[0, 2], true)),
        // A single sum of random-sign terms can cancel to near zero, where no relative tolerance
        // holds; positive terms keep the condition number at 1, so f32 pairwise summation stays
        // within log2(n)·ε ≈ 1e-6 of the f64 reference.
        Case::new("sum all", vec![Input::float(Domain::Range(0.0, 1.0))], sets.clone(), |x, _| {
            x[0].sum_all()
        }),
        Case::new("sum strided, many outputs", x.clone(), shapes(&[&[&[3, 5]], &[&[5, 1100]]]), |x, _| {
            x[0].sum(0, false)
        }),
        Case::new(
            "sum rows > 65,535 workgroups",
            x.clone(),
            shapes(&[&[&[4, 40]], &[&[70_000, 33]]]),
            |x, _| x[0].sum(1, false),
        ),
        Case::new("max axis 2", x.clone(), sets.clone(), |x, _| x[0].max(2, false)).tol(0.0),
        Case::new("min axes 0, 1 keepdim", x.clone(), sets.clone(), |x, _| x[0].min_axes(&[0, 1], true))
            .tol(0.0),
        Case::new("max with ties", ties.clone(), sets.clone(), |x, _| x[0].max_all()).no_grad().tol(0.0),
        Case::new("mean axis 0", x.clone(), sets.clone(), |x, _| x[0].mean(0, true)),
        Case::new("var axis -1", x.clone(), sets.clone(), |x, _| {
            let unbiased = if x[0].dim(-1) > 1 { 1 } else { 0 };
            x[0].var(-1, false, unbiased)
        })
        .grad_tol(2e-4),
        Case::new("argmax axis 1", x.clone(), sets.clone(), |x, _| x[0].argmax(1, false)).no_grad().tol(0.0),
        Case::new("argmin axis 0 keepdim", x.clone(), sets.clone(), |x, _| x[0].argmin(0, true))
            .no_grad()
            .tol(0.0),
        Case::new("sum on i32", ties, sets, |x, _| x[0].cast(DType::I32).sum(1, false)).no_grad().tol(0.0),
    ]
}

fn movement() -> Vec<Case> {
    let x = vec![F];
    let cube = shapes(&[&[&[2, 3, 4]], &[&[1, 1, 1]], &[&[5, 7, 11]]]);
    vec![
        Case::new("reshape, flatten, squeeze", x.clone(), cube.clone(), |x, _| {
            let t = &x[0];
            t.reshape([t.dims()[0], t.dims()[1] * t.dims()[2]]).unsqueeze(0).squeeze(0).flatten_from(0).exp()
        }),
        Case::new("detach", x.clone(), cube.clone(), |x, _| &x[0] * &x[0].detach()).no_gradcheck(),
        Case::new("to_device", x.clone(), cube.clone(), |x, d| match d {
            Device::Cpu => x[0].exp(),
            Device::Gpu(_) => x[0].to(&Device::Cpu).exp().to(d),
        }),
        Case::new("permute", x.clone(), cube.clone(), |x, _| x[0].permute(&[2, 0, 1])).tol(0.0).grad_tol(0.0),
        Case::new("transpose", x.clone(), cube.clone(), |x, _| x[0].t()).tol(0.0).grad_tol(0.0),
        Case::new("expand", x.clone(), shapes(&[&[&[3, 1]], &[&[1, 1]], &[&[17, 1]]]), |x, _| {
            x[0].expand([2, x[0].dims()[0], 5])
        })
        .tol(0.0),
        Case::new("slice with step", x.clone(), shapes(&[&[&[4, 9]], &[&[4, 1]], &[&[7, 29]]]), |x, _| {
            let cols = x[0].dims()[1];
            x[0].slice(1, cols / 3, cols, 2).narrow(0, 1, 2)
        })
        .tol(0.0)
        .grad_tol(0.0),
        Case::new("pad", x.clone(), cube.clone(), |x, _| x[0].pad(&[(1, 0), (0, 2), (3, 1)], -1.5))
            .tol(0.0)
            .grad_tol(0.0),
        Case::new("pad interior", x.clone(), cube, |x, _| {
            let spec = [
                PadSpec { before: 0, after: 1, interior: 2 },
                PadSpec { before: 1, after: 0, interior: 0 },
                PadSpec { before: 2, after: 2, interior: 1 },
            ];
            x[0].pad_with(&spec, 0.0)
        })
        .tol(0.0)
        .grad_tol(0.0),
        Case::new(
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
        .grad_tol(0.0),
        Case::new("stack", vec![F, F], shapes(&[&[&[2, 3], &[2, 3]], &[&[5, 7], &[5, 7]]]), |x, _| {
            Tensor::stack(x, -1)
        })
        .tol(0.0)
        .grad_tol(0.0),
    ]
}

fn indexing() -> Vec<Case> {
    let row_index = Input::fixed(Domain::Index { of: 0, axis: 0 });
    let col_index = Input::fixed(Domain::Index { of: 0, axis: 1 });
    let ints = Input::fixed(Domain::SmallInts);
    vec![
        Case::new(
            "gather axis 0",
            vec![F, row_index],
            shapes(&[&[&[4, 5], &[3, 5]], &[&[1, 1], &[1, 1]], &[&[13, 7], &[29, 5]]]),
            |x, _| x[0].gather(0, &x[1]),
        )
        .tol(0.0),
        Case::new(
            "gather axis 1",
            vec![F, col_index],
            shapes(&[&[&[4, 5], &[4, 2]], &[&[7, 13], &[5, 31]]]),
            |x, _| x[0].gather(1, &x[1]),
        )
        .tol(0.0),
        Case::new(
            "index_select",
            vec![F, row_index],
            shapes(&[&[&[5, 3], &[4]], &[&[1, 1], &[1]], &[&[31, 17], &[101]]]),
            |x, _| x[0].index_select(0, &x[1]),
        )
        .tol(0.0),
        Case::new(
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
        Case::new(
            "scatter_add axis 0",
            vec![F, row_index, F],
            shapes(&[
                &[&[4, 5], &[6, 5], &[6, 5]],
                &[&[1, 1], &[1, 1], &[1, 1]],
                &[&[7, 11], &[50, 11], &[50, 11]],
            ]),
            |x, _| x[0].scatter_add(0, &x[1], &x[2]),
        ),
        Case::new(
            "index_add axis 1",
            vec![F, col_index, F],
            shapes(&[&[&[3, 5], &[7], &[3, 7]], &[&[2, 1], &[1], &[2, 1]], &[&[11, 13], &[40], &[11, 40]]]),
            |x, _| x[0].index_add(1, &x[1], &x[2]),
        ),
        Case::new(
            "cast f32 → i32 → f32",
            vec![Input::fixed(Domain::Range(-9.0, 9.0))],
            shapes(&[&[&[5, 7]], &[&[1]]]),
            |x, _| x[0].cast(DType::I32).cast(DType::F32),
        )
        .no_grad()
        .tol(0.0),
        Case::new("cast to bool and u32", vec![ints], shapes(&[&[&[5, 7]], &[&[1]]]), |x, _| {
            x[0].cast(DType::Bool).cast(DType::U32).cast(DType::I32).cast(DType::F32)
        })
        .no_grad()
        .tol(0.0),
        Case::new("cast f32 → f64 → f32 (CPU) / identity", vec![F], shapes(&[&[&[5, 7]]]), |x, d| match d
        {
            Device::Cpu => x[0].cast(DType::F64).exp().cast(x[0].dtype()),
            Device::Gpu(_) => x[0].exp(),
        }),
    ]
}
