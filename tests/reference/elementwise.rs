//! Fast-path checks of the elementwise ops — unary, binary with broadcasting, comparisons and
//! `where` — against plain f64 loops, each op written here from its definition.

use super::{Check, Draw, FEW_ROUNDINGS, ONE_ROUNDING, check};
use crate::loops::{self, Host};
use kiln::Tensor;
use std::f64::consts::PI;

/// f64 σ(x).
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// A unary op: its method, its definition, and where it is sampled.
type UnaryRow = (&'static str, fn(&Tensor) -> Tensor, fn(f64) -> f64, fn(&mut Draw, &[usize]) -> Host);

/// A binary op: its method and its definition.
type BinaryRow = (&'static str, fn(&Tensor, &Tensor) -> Tensor, fn(f64, f64) -> f64);

/// The checks of every elementwise op on inputs drawn from `d`, mostly of shape `m`.
pub(super) fn checks(d: &mut Draw, m: &[usize]) -> Vec<Check> {
    let mut checks = Vec::new();
    let normal: fn(&mut Draw, &[usize]) -> Host = |d, s| d.normal(s);
    let positive: fn(&mut Draw, &[usize]) -> Host = |d, s| d.range(s, 0.1, 4.0);
    let away: fn(&mut Draw, &[usize]) -> Host = |d, s| d.away_from_zero(s);
    let steps: fn(&mut Draw, &[usize]) -> Host = |d, s| d.range(s, -3.0, 3.0);
    let unary: Vec<UnaryRow> = vec![
        ("neg", |x| x.neg(), |x| -x, normal),
        ("exp", |x| x.exp(), f64::exp, normal),
        ("log", |x| x.log(), f64::ln, positive),
        ("sqrt", |x| x.sqrt(), f64::sqrt, positive),
        ("rsqrt", |x| x.rsqrt(), |x| 1.0 / x.sqrt(), positive),
        ("abs", |x| x.abs(), f64::abs, normal),
        (
            "sign",
            |x| x.sign(),
            |x| {
                if x > 0.0 {
                    1.0
                } else if x < 0.0 {
                    -1.0
                } else {
                    0.0
                }
            },
            normal,
        ),
        ("sin", |x| x.sin(), f64::sin, normal),
        ("cos", |x| x.cos(), f64::cos, normal),
        ("tanh", |x| x.tanh(), f64::tanh, normal),
        ("sigmoid", |x| x.sigmoid(), sigmoid, normal),
        ("relu", |x| x.relu(), |x| x.max(0.0), normal),
        ("leaky_relu", |x| x.leaky_relu(0.1), |x| if x > 0.0 { x } else { 0.1 * x }, normal),
        ("elu", |x| x.elu(1.0), |x| if x > 0.0 { x } else { x.exp() - 1.0 }, normal),
        ("gelu", |x| x.gelu(), |x| 0.5 * x * (1.0 + libm::erf(x / 2f64.sqrt())), normal),
        (
            "gelu_tanh",
            |x| x.gelu_tanh(),
            |x| 0.5 * x * (1.0 + ((2.0 / PI).sqrt() * (x + 0.044_715 * x * x * x)).tanh()),
            normal,
        ),
        ("silu", |x| x.silu(), |x| x * sigmoid(x), normal),
        ("softplus", |x| x.softplus(), |x| (1.0 + x.exp()).ln(), normal),
        ("square", |x| x.square(), |x| x * x, normal),
        ("reciprocal", |x| x.reciprocal(), |x| 1.0 / x, away),
        ("erf", |x| x.erf(), libm::erf, normal),
        ("floor", |x| x.floor(), f64::floor, steps),
        ("ceil", |x| x.ceil(), f64::ceil, steps),
        ("round", |x| x.round(), f64::round_ties_even, steps),
        ("add_scalar", |x| x + 1.5, |x| x + 1.5, normal),
        ("mul_scalar", |x| x * -2.0, |x| -2.0 * x, normal),
        ("rsub_scalar", |x| 3.0 - x, |x| 3.0 - x, normal),
        ("rdiv_scalar", |x| 2.0 / x, |x| 2.0 / x, away),
        ("pow_scalar", |x| x.powf(2.5), |x| x.powf(2.5), |d, s| d.range(s, 0.1, 3.0)),
        ("clamp", |x| x.clamp(-0.5, 0.5), |x| x.clamp(-0.5, 0.5), normal),
    ];
    for (op, build, f, sample) in unary {
        // f32 arithmetic: a few roundings at most
        let x = sample(d, m);
        checks.push(check(
            op,
            "",
            vec![x],
            FEW_ROUNDINGS,
            move |t| build(&t[0]),
            move |h| loops::unary(&h[0], f),
        ));
    }

    let binary: Vec<BinaryRow> = vec![
        ("add", |a, b| a + b, |a, b| a + b),
        ("sub", |a, b| a - b, |a, b| a - b),
        ("mul", |a, b| a * b, |a, b| a * b),
        ("div", |a, b| a / b, |a, b| a / b),
        ("pow", |a, b| a.pow(b), f64::powf),
        ("maximum", |a, b| a.maximum(b), f64::max),
        ("minimum", |a, b| a.minimum(b), f64::min),
        ("relu_grad", |a, b| a.relu_grad(b), |a, b| if b > 0.0 { a } else { 0.0 }),
        (
            "gelu_grad",
            |a, b| a.gelu_grad(b),
            |a, b| {
                a * (0.5 * (1.0 + libm::erf(b / 2f64.sqrt())) + b * (-0.5 * b * b).exp() / (2.0 * PI).sqrt())
            },
        ),
    ];
    // b: whole, a row repeated over a's rows (blocks), a row per outer index repeated over a
    // middle axis (rows read at offsets), a column and a per-channel bias over images (one value
    // repeated along each row); then a the repeated operand
    let cube = [13, 79, 257];
    let images = [5, 7, 97, 83];
    for (op, build, f) in binary {
        for (what, a_shape, b_shape) in [
            ("same shapes", m, vec![1_031, 257]),
            ("b a row", m, vec![257]),
            ("b broadcast over a middle axis", &cube[..], vec![13, 1, 257]),
            ("b a column", m, vec![1_031, 1]),
            ("b a per-channel bias over images", &images[..], vec![7, 1, 1]),
            ("a a per-channel bias over images", &[7, 1, 1][..], images.to_vec()),
        ] {
            let (a, b) = match op {
                // a positive base keeps aᵇ real
                "pow" => (d.range(a_shape, 0.1, 3.0), d.range(&b_shape, -2.0, 2.0)),
                "div" => (d.normal(a_shape), d.away_from_zero(&b_shape)),
                _ => (d.normal(a_shape), d.normal(&b_shape)),
            };
            // one f32 rounding (pow: libm's powf, within 1–2 ulp; gelu_grad: erf and exp
            // polynomials, a few ulp each)
            let tol = if op == "pow" || op == "gelu_grad" { FEW_ROUNDINGS } else { ONE_ROUNDING };
            checks.push(check(
                op,
                what,
                vec![a, b],
                tol,
                move |t| build(&t[0], &t[1]),
                move |h| loops::binary(&h[0], &h[1], f),
            ));
        }
    }

    // bools are bytes: 1,031² of them pass 1 MiB
    let square = [1_031, 1_031];
    let compare_rows: Vec<BinaryRow> = vec![
        ("eq", |a, b| a.eq(b), |a, b| (a == b) as u8 as f64),
        ("ne", |a, b| a.ne(b), |a, b| (a != b) as u8 as f64),
        ("lt", |a, b| a.lt(b), |a, b| (a < b) as u8 as f64),
        ("le", |a, b| a.le(b), |a, b| (a <= b) as u8 as f64),
        ("gt", |a, b| a.gt(b), |a, b| (a > b) as u8 as f64),
        ("ge", |a, b| a.ge(b), |a, b| (a >= b) as u8 as f64),
    ];
    for (op, build, f) in compare_rows {
        let (a, b) = (d.small_ints(&square), d.small_ints(&square));
        checks.push(check(
            op,
            "",
            vec![a, b],
            0.0,
            move |t| build(&t[0], &t[1]),
            move |h| loops::binary(&h[0], &h[1], f),
        ));
    }
    checks.push(check(
        "where",
        "x whole, y a row",
        vec![d.mask(m), d.normal(m), d.normal(&[257])],
        0.0,
        |t| t[0].where_(&t[1], &t[2]),
        |h| loops::select(&h[0], &h[1], &h[2]),
    ));

    checks
}
