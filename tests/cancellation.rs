//! GPU kernels must not lose digits to cancellation where the CPU reference does not: elementwise
//! functions near the points where a naive formula subtracts nearly equal numbers (tanh and ELU
//! near 0 through eˣ − 1, softplus far below 0 through log(1 + tiny)). Judged element by element
//! against f64, so small outputs count as much as large ones.

mod common;

use kiln::{DType, Device, Tensor};

/// The largest elementwise relative error of `f` on the GPU against `exact` in f64.
fn worst(gpu: &Device, xs: &[f32], f: impl Fn(&Tensor) -> Tensor, exact: impl Fn(f64) -> f64) -> f64 {
    let got = f(&Tensor::from_slice(xs, [xs.len()], gpu)).cast(DType::F32).to_vec::<f32>().unwrap();
    xs.iter()
        .zip(&got)
        .map(|(&x, &y)| {
            let want = exact(x as f64);
            ((y as f64 - want) / want).abs()
        })
        .fold(0.0, f64::max)
}

#[test]
fn tanh_elu_and_softplus_keep_their_digits_where_naive_formulas_cancel() {
    let Some(gpu) = common::gpu("cancellation") else {
        return;
    };
    // around 0, over six decades, both signs
    let small: Vec<f32> = (0..120)
        .map(|i| (if i % 2 == 0 { 1.0 } else { -1.0 }) * 10f32.powf(-7.0 + i as f32 * 0.05))
        .collect();
    // a dozen ulps on the GPU: exp and log are not correctly rounded (a few ulps each)
    const BOUND: f64 = 2e-6;
    let tanh = worst(&gpu, &small, |x| x.tanh(), f64::tanh);
    assert!(tanh < BOUND, "tanh near 0: relative error {tanh:.2e}");
    let negative: Vec<f32> = small.iter().map(|x| -x.abs()).collect();
    let elu = worst(&gpu, &negative, |x| x.elu(1.0), f64::exp_m1);
    assert!(elu < BOUND, "elu just below 0: relative error {elu:.2e}");
    let far_below: Vec<f32> = (0..40).map(|i| -17.0 - i as f32 * 0.5).collect();
    let softplus = worst(&gpu, &far_below, |x| x.softplus(), |x| x.exp().ln_1p());
    assert!(softplus < BOUND, "softplus far below 0: relative error {softplus:.2e}");
}
