//! The CPU reference itself, checked against independent computations: naive loops written
//! here, or compositions of simpler ops. (Parity tests then hold the GPU to the reference.)
//! `fast_paths` holds every kernel op's CPU fast paths against the plain f64 loops of `loops`.

#[path = "reference/cell_loops.rs"]
mod cell_loops;
#[path = "reference/fast_paths.rs"]
mod fast_paths;
#[path = "reference/loops.rs"]
mod loops;

use kiln::ops::conv::ConvOptions;
use kiln::ops::loss::CrossEntropy;
use kiln::ops::pool::PoolOptions;
use kiln::rng::RandomKey;
use kiln::{DType, Device, Tensor};

const CPU: Device = Device::Cpu;

fn randn(shape: &[usize], stream: u64) -> Tensor {
    Tensor::normal(shape, 0.0, 1.0, RandomKey { seed: 99, stream }, &CPU).cast(DType::F64)
}

fn v(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: {g} vs {w}");
    }
}

#[test]
fn matmul_matches_a_triple_loop() {
    let (a, b) = (randn(&[2, 5, 7], 1), randn(&[7, 3], 2));
    let (av, bv) = (v(&a), v(&b));
    let mut want = vec![0.0; 2 * 5 * 3];
    for n in 0..2 {
        for i in 0..5 {
            for j in 0..3 {
                want[(n * 5 + i) * 3 + j] = (0..7).map(|k| av[(n * 5 + i) * 7 + k] * bv[k * 3 + j]).sum();
            }
        }
    }
    assert_close(&v(&a.matmul(&b)), &want, 1e-12, "matmul");
    // an operand stored transposed is read in place, with the same result
    let b_stored_transposed = b.t();
    b_stored_transposed.realize().unwrap();
    assert_close(&v(&a.matmul(&b_stored_transposed.t())), &want, 1e-12, "matmul read transposed");
}

#[test]
fn conv2d_matches_direct_loops() {
    for (opts, x_shape, w_shape) in [
        (ConvOptions::default(), [2, 3, 6, 5], [4, 3, 3, 2]),
        (
            ConvOptions { stride: (2, 1), padding: (1, 2), dilation: (1, 2), groups: 1 },
            [1, 2, 7, 8],
            [3, 2, 3, 3],
        ),
        (ConvOptions::default().groups(2).padding(1), [2, 4, 5, 5], [6, 2, 3, 3]),
    ] {
        let (x, w) = (randn(&x_shape, 3), randn(&w_shape, 4));
        let y = x.conv2d(&w, opts);
        let (xv, wv) = (v(&x), v(&w));
        let [n, c, h, wd] = x_shape;
        let [o, cg, kh, kw] = w_shape;
        let [_, _, oh, ow] = [y.dims()[0], y.dims()[1], y.dims()[2], y.dims()[3]];
        let og = o / opts.groups;
        let mut want = vec![0.0; n * o * oh * ow];
        for b in 0..n {
            for oc in 0..o {
                let g = oc / og;
                for oy in 0..oh {
                    for ox in 0..ow {
                        let mut acc = 0.0;
                        for ci in 0..cg {
                            for i in 0..kh {
                                for j in 0..kw {
                                    let iy = (oy * opts.stride.0 + i * opts.dilation.0) as isize
                                        - opts.padding.0 as isize;
                                    let ix = (ox * opts.stride.1 + j * opts.dilation.1) as isize
                                        - opts.padding.1 as isize;
                                    if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < wd {
                                        let xi = ((b * c + g * cg + ci) * h + iy as usize) * wd + ix as usize;
                                        acc += xv[xi] * wv[((oc * cg + ci) * kh + i) * kw + j];
                                    }
                                }
                            }
                        }
                        want[((b * o + oc) * oh + oy) * ow + ox] = acc;
                    }
                }
            }
        }
        assert_close(&v(&y), &want, 1e-12, &format!("conv2d {opts:?}"));
    }
}

#[test]
fn pooling_matches_direct_loops() {
    let x = randn(&[1, 2, 5, 6], 5);
    let xv = v(&x);
    let max = v(&x.max_pool2d(PoolOptions::new(2)));
    let avg = v(&x.avg_pool2d(PoolOptions::new(3).stride(1).padding(1)));
    for c in 0..2 {
        for oy in 0..2 {
            for ox in 0..3 {
                let m = (0..4)
                    .map(|t| xv[(c * 5 + oy * 2 + t / 2) * 6 + ox * 2 + t % 2])
                    .fold(f64::MIN, f64::max);
                assert_eq!(max[(c * 2 + oy) * 3 + ox], m);
            }
        }
        for oy in 0..5 {
            for ox in 0..6 {
                let mut s = 0.0;
                for dy in -1..=1isize {
                    for dx in -1..=1isize {
                        let (y, xx) = (oy as isize + dy, ox as isize + dx);
                        if (0..5).contains(&y) && (0..6).contains(&xx) {
                            s += xv[(c * 5 + y as usize) * 6 + xx as usize];
                        }
                    }
                }
                // PyTorch's default counts the padding in the divisor
                assert!((avg[(c * 5 + oy) * 6 + ox] - s / 9.0).abs() < 1e-12);
            }
        }
    }
}

#[test]
fn fused_attention_matches_the_unfused_composition() {
    // (queries, keys): square, and both unequal lengths past the CPU path's 64-row blocks
    for ((tq, tk), causal) in
        [(9, 9), (150, 131), (131, 150)].into_iter().flat_map(|t| [(t, false), (t, true)])
    {
        let (q, k, val) = (randn(&[2, 3, tq, 4], 6), randn(&[2, 3, tk, 4], 7), randn(&[2, 3, tk, 5], 8));
        let fused = q.attention(&k, &val, causal, None);
        let unfused = q.attention_unfused(&k, &val, causal, None);
        assert_close(&v(&fused), &v(&unfused), 1e-12, "attention");
        // and the gradients through both paths agree
        let (qg, kg, vg) =
            (q.detach().requires_grad_(), k.detach().requires_grad_(), val.detach().requires_grad_());
        let g1 = qg.attention(&kg, &vg, causal, None).square().sum_all().backward();
        let g2 = qg.attention_unfused(&kg, &vg, causal, None).square().sum_all().backward();
        for t in [&qg, &kg, &vg] {
            assert_close(&v(g1.get(t).unwrap()), &v(g2.get(t).unwrap()), 1e-10, "attention gradient");
        }
    }
}

#[test]
fn layer_norm_softmax_and_cross_entropy_match_their_definitions() {
    let x = randn(&[4, 6], 9);
    let (w, b) = (randn(&[6], 10), randn(&[6], 11));
    let mean = x.mean(-1, true);
    let var = x.var(-1, true, 0);
    let want = (&x - &mean) / (var + 1e-5).sqrt() * &w + &b;
    assert_close(&v(&x.layer_norm(&[6], Some(&w), Some(&b), 1e-5)), &v(&want), 1e-12, "layer_norm");

    let e = x.exp();
    assert_close(&v(&x.softmax(-1)), &v(&(&e / &e.sum(-1, true))), 1e-12, "softmax");
    assert_close(&v(&x.log_softmax(0)), &v(&x.softmax(0).log()), 1e-12, "log_softmax");

    let labels = Tensor::from_vec(vec![0i32, 5, 2, 2], [4], &CPU);
    let logp = x.log_softmax(-1);
    let nll = -logp.gather(1, &labels.reshape([4, 1])).mean_all();
    assert_close(&v(&x.cross_entropy(&labels)), &v(&nll), 1e-12, "cross_entropy");
    // label smoothing s: (1 − s)·nll + s·mean over classes of −log p; ignored rows drop out
    let opts = CrossEntropy { ignore_index: Some(5), label_smoothing: 0.2 };
    let rows = [0usize, 2, 3];
    let lp = v(&logp);
    let per_row =
        |r: usize, t: usize| -0.8 * lp[r * 6 + t] - 0.2 * (0..6).map(|c| lp[r * 6 + c]).sum::<f64>() / 6.0;
    let want = (per_row(0, 0) + per_row(2, 2) + per_row(3, 2)) / rows.len() as f64;
    assert!((x.cross_entropy_with(&labels, opts).item::<f64>().unwrap() - want).abs() < 1e-12);
}

#[test]
fn reductions_and_movement_have_the_expected_values() {
    let x = Tensor::arange(0.0, 24.0, 1.0, &CPU).reshape([2, 3, 4]);
    assert_eq!(x.sum_axes(&[0, 2], false).to_vec::<f32>().unwrap(), vec![60.0, 92.0, 124.0]);
    assert_eq!(x.max(1, false).to_vec::<f32>().unwrap(), vec![8.0, 9.0, 10.0, 11.0, 20.0, 21.0, 22.0, 23.0]);
    assert_eq!(x.argmin(2, false).to_vec::<i32>().unwrap(), vec![0; 6]);
    assert_eq!(
        x.permute(&[2, 0, 1]).narrow(0, 1, 1).to_vec::<f32>().unwrap(),
        vec![1.0, 5.0, 9.0, 13.0, 17.0, 21.0]
    );
    let var = x.var(2, false, 1).to_vec::<f32>().unwrap();
    assert!(var.iter().all(|v| (v - 5.0 / 3.0).abs() < 1e-6), "{var:?}");
    let idx = Tensor::from_vec(vec![1i32, 1, 0], [3], &CPU);
    let added =
        Tensor::zeros([2], &CPU).index_add(0, &idx, &Tensor::from_vec(vec![1.0f32, 2.0, 4.0], [3], &CPU));
    assert_eq!(added.to_vec::<f32>().unwrap(), vec![4.0, 3.0]);
}

/// An ∞ in the input reaches only the weight-gradient entries whose products read it. The CPU's
/// direct kernel pads dy's pixels to whole vectors; the lanes past them must not multiply the
/// next row's values (here the ∞) by dy's zeros, which would put NaN into the other entries.
#[test]
fn an_infinite_input_reaches_only_the_weight_gradient_entries_that_read_it() {
    // 8×13 outputs: 104 pixels, 6 vectors and 8 lanes of a 7th; the ∞ in the last input row
    let (h, w) = (8, 13);
    let mut x = vec![1.0f32; h * w];
    x[(h - 1) * w + 5] = f32::INFINITY;
    let x = Tensor::from_vec(x, [1, 1, h, w], &CPU);
    let weight = Tensor::from_vec(vec![0.5f32; 9], [1, 1, 3, 3], &CPU);
    let dy = Tensor::from_vec(vec![1.0f32; h * w], [1, 1, h, w], &CPU);
    let y = x.conv2d(&weight, ConvOptions::default().padding(1));
    let dw: Vec<f32> = kiln::testing::gradient_op(&y, &dy, "conv2d_weight_grad", 0).to_vec().unwrap();
    // kernel row i reads input rows r + i − 1 for r < 8: the last one (row 7) only for i ≥ 1
    for (tap, value) in dw.iter().enumerate() {
        match tap / 3 {
            0 => assert!(value.is_finite(), "dW[0][{}] = {value}: it reads no ∞", tap % 3),
            _ => assert_eq!(*value, f32::INFINITY, "dW[{}][{}] reads the ∞", tap / 3, tap % 3),
        }
    }
}
