//! Modules and losses: names, shapes, initialization, train/eval behaviour, running statistics,
//! and the losses against their formulas.

use kiln::nn::loss::{bce_with_logits, l1, mse, nll, smooth_l1};
use kiln::nn::{
    self, AvgPool2d, BatchNorm, Conv2d, Dropout, Embedding, Flatten, GELU, LayerNorm, LeakyReLU, Linear,
    MaxPool2d, Module, ReLU, Sequential, SiLU, Sigmoid, Tanh,
};
use kiln::ops::conv::ConvOptions;
use kiln::ops::pool::PoolOptions;
use kiln::{DType, Device, Tensor};

const CPU: Device = Device::Cpu;

fn v(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap()
}

#[test]
fn a_lenet_style_stack_has_pytorch_names_and_shapes() {
    kiln::manual_seed(1);
    let model = Sequential::new()
        .add(Conv2d::new(1, 6, 5, ConvOptions::default().padding(2), &CPU))
        .add(ReLU)
        .add(MaxPool2d(PoolOptions::new(2)))
        .add(Flatten)
        .add(Linear::new(6 * 14 * 14, 10, &CPU));
    let names: Vec<String> = nn::state_dict(&model).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["0.weight", "0.bias", "4.weight", "4.bias"]);
    assert_eq!(nn::parameter_count(&model), 6 * 25 + 6 + 6 * 14 * 14 * 10 + 10);
    assert_eq!(model.forward(&Tensor::randn([3, 1, 28, 28], &CPU)).dims(), &[3, 10]);
}

#[test]
fn lenet5_has_pytorchs_names_and_the_papers_shapes() {
    let model = kiln::models::lenet5(&CPU);
    let shapes: Vec<(String, Vec<usize>)> =
        nn::state_dict(&model).into_iter().map(|(n, t)| (n, t.dims().to_vec())).collect();
    let want: [(&str, &[usize]); 10] = [
        ("0.weight", &[6, 1, 5, 5]),
        ("0.bias", &[6]),
        ("3.weight", &[16, 6, 5, 5]),
        ("3.bias", &[16]),
        ("7.weight", &[120, 400]),
        ("7.bias", &[120]),
        ("9.weight", &[84, 120]),
        ("9.bias", &[84]),
        ("11.weight", &[10, 84]),
        ("11.bias", &[10]),
    ];
    let want: Vec<(String, Vec<usize>)> = want.iter().map(|(n, d)| (n.to_string(), d.to_vec())).collect();
    assert_eq!(shapes, want);
    assert_eq!(nn::parameter_count(&model), 61_706);
    assert_eq!(model.forward(&Tensor::randn([3, 1, 28, 28], &CPU)).dims(), &[3, 10]);
}

#[test]
fn linear_and_conv_initialize_within_pytorchs_kaiming_bounds() {
    kiln::manual_seed(2);
    let lin = Linear::new(100, 50, &CPU);
    let bound = 1.0 / 10.0;
    let w = v(&lin.weight);
    assert!(w.iter().all(|x| x.abs() <= bound) && w.iter().any(|x| x.abs() > 0.9 * bound));
    let conv = Conv2d::new(4, 8, 3, ConvOptions::default().groups(2), &CPU);
    assert_eq!(conv.weight.dims(), &[8, 2, 3, 3]);
    let bound = 1.0 / (2.0f64 * 9.0).sqrt();
    assert!(v(&conv.weight).iter().all(|x| x.abs() <= bound));
    // biases: U(−1/√fan_in, 1/√fan_in), as PyTorch
    let b = v(lin.bias.as_ref().unwrap());
    assert!(b.iter().all(|x| x.abs() <= 0.1) && b.iter().any(|x| x.abs() > 0.05));
    let cb = v(conv.bias.as_ref().unwrap());
    assert!(cb.len() == 8 && cb.iter().all(|x| x.abs() <= bound));
    // embeddings: N(0, 1)
    let e = v(&Embedding::new(1000, 16, &CPU).weight);
    let mean = e.iter().sum::<f64>() / e.len() as f64;
    let var = e.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / e.len() as f64;
    assert!(mean.abs() < 0.03 && (var - 1.0).abs() < 0.05, "mean {mean}, var {var}");
}

#[test]
fn activation_and_pooling_modules_apply_their_ops() {
    let x = Tensor::randn([2, 3, 4, 4], &CPU);
    let same = |a: &Tensor, b: &Tensor| assert_eq!(v(a), v(b));
    same(&ReLU.forward(&x), &x.relu());
    same(&GELU.forward(&x), &x.gelu());
    same(&Tanh.forward(&x), &x.tanh());
    same(&Sigmoid.forward(&x), &x.sigmoid());
    same(&SiLU.forward(&x), &x.silu());
    same(&LeakyReLU(0.1).forward(&x), &x.leaky_relu(0.1));
    let pool = PoolOptions::new(2);
    same(&MaxPool2d(pool).forward(&x), &x.max_pool2d(pool));
    let avg = AvgPool2d(pool).forward(&x);
    assert_eq!(avg.dims(), &[2, 3, 2, 2]);
    let xv = v(&x);
    let corner = (xv[0] + xv[1] + xv[4] + xv[5]) / 4.0;
    assert!((v(&avg)[0] - corner).abs() < 1e-6);
}

#[test]
fn dropout_is_active_only_in_training() {
    let drop = Dropout::new(0.5);
    let x = Tensor::ones([1000], &CPU);
    let zeros = v(&drop.forward(&x)).iter().filter(|&&e| e == 0.0).count();
    assert!((400..600).contains(&zeros), "{zeros}");
    nn::eval(&drop);
    assert_eq!(v(&drop.forward(&x)), vec![1.0; 1000]);
    nn::train(&drop);
    assert!(v(&drop.forward(&x)).contains(&0.0));
}

#[test]
fn each_modules_mode_is_snapshot_by_path_and_restored_exactly() {
    let inner = Sequential::new().add(BatchNorm::new_1d(4, &CPU)).add(Dropout::new(0.5));
    let model = Sequential::new().add(Linear::new(4, 4, &CPU)).add(inner).add(Dropout::new(0.5));
    let modes = |pairs: &[(&str, bool)]| -> Vec<(String, bool)> {
        pairs.iter().map(|&(p, m)| (p.to_string(), m)).collect()
    };
    assert_eq!(nn::modes(&model), modes(&[("1.0", true), ("1.1", true), ("2", true)]));
    // a frozen batch norm inside a training model
    nn::restore_modes(&model, &modes(&[("1.0", false)]));
    let mixed = nn::modes(&model);
    assert_eq!(mixed, modes(&[("1.0", false), ("1.1", true), ("2", true)]));
    nn::eval(&model);
    assert_eq!(nn::modes(&model), modes(&[("1.0", false), ("1.1", false), ("2", false)]));
    nn::restore_modes(&model, &mixed);
    assert_eq!(nn::modes(&model), mixed);
    // and the modules behave by their restored modes: the dropout at 2 drops again
    let x = Tensor::ones([2, 4], &CPU);
    let dropped = (0..20).any(|_| v(&model.forward(&x)).contains(&0.0));
    assert!(dropped);
}

#[test]
fn batch_norm_tracks_running_statistics_and_uses_them_in_eval() {
    let bn = BatchNorm::new_1d(2, &CPU);
    // channel 0: 1, 3 (mean 2, biased var 1, unbiased 2); channel 1: 0, 0
    let x = Tensor::from_vec(vec![1.0f32, 0.0, 3.0, 0.0], [2, 2], &CPU);
    let y = bn.forward(&x);
    let yv = v(&y);
    assert!((yv[0] + 1.0).abs() < 1e-4 && (yv[2] - 1.0).abs() < 1e-4);
    // running = 0.9·old + 0.1·batch (unbiased variance)
    assert!((v(&bn.running_mean)[0] - 0.2).abs() < 1e-6);
    assert!((v(&bn.running_var)[0] - (0.9 + 0.1 * 2.0)).abs() < 1e-6);
    nn::eval(&bn);
    let e = v(&bn.forward(&x));
    assert!((e[0] - (1.0 - 0.2) / (1.1f64 + 1e-5).sqrt()).abs() < 1e-5);
    let names: Vec<String> = nn::state_dict(&bn).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["weight", "bias", "running_mean", "running_var", "num_batches_tracked"]);
    assert_eq!(bn.num_batches_tracked.to_vec::<i32>().unwrap(), [1], "one training batch, none in eval");
    assert_eq!(bn.num_batches_tracked.dims(), &[] as &[usize]);
    // 2-D: statistics per channel over (N, H, W)
    let bn2 = BatchNorm::new_2d(3, &CPU);
    let x = &(&Tensor::randn([4, 3, 5, 6], &CPU) * 3.0) + 2.0;
    let y = bn2.forward(&x);
    assert_eq!(y.dims(), &[4, 3, 5, 6]);
    let per_channel = |t: &Tensor| t.permute(&[1, 0, 2, 3]).reshape([3, 120]);
    let (ym, yvar) = (v(&per_channel(&y).mean(-1, false)), v(&per_channel(&y).var(-1, false, 0)));
    assert!(
        ym.iter().all(|m| m.abs() < 1e-5) && yvar.iter().all(|s| (s - 1.0).abs() < 1e-3),
        "{ym:?} {yvar:?}"
    );
    let xm = v(&per_channel(&x).mean(-1, false));
    for (r, m) in v(&bn2.running_mean).iter().zip(&xm) {
        assert!((r - 0.1 * m).abs() < 1e-5);
    }
}

#[test]
fn embedding_and_layer_norm_modules() {
    let emb = Embedding::new(10, 4, &CPU);
    let ids = Tensor::from_vec(vec![3i32, 3, 9, 0, 1, 2], [2, 3], &CPU);
    let out = emb.forward(&ids);
    assert_eq!(out.dims(), &[2, 3, 4]);
    let rows = v(&out);
    assert_eq!(rows[0..4], rows[4..8]);
    assert_eq!(rows[0..4], v(&emb.weight)[12..16]);
    let ln = LayerNorm::new(&[4], &CPU);
    let y = ln.forward(&out);
    assert!(v(&y.mean(-1, false)).iter().all(|m| m.abs() < 1e-5));
    // biased variance 1 (up to eps), then the affine map with its parameters
    assert!(v(&y.var(-1, false, 0)).iter().all(|s| (s - 1.0).abs() < 1e-3));
    assert_eq!((v(&ln.weight), v(&ln.bias)), (vec![1.0; 4], vec![0.0; 4]));
    let mut affine = LayerNorm::new(&[4], &CPU);
    let (w, b) = (
        Tensor::from_vec(vec![2.0f32, -1.0, 0.5, 3.0], [4], &CPU),
        Tensor::full([4], 0.25, DType::F32, &CPU),
    );
    (affine.weight, affine.bias) = (w.clone(), b.clone());
    let want = &(&y * &w) + &b;
    for (g, e) in v(&affine.forward(&out)).iter().zip(v(&want)) {
        assert!((g - e).abs() < 1e-5);
    }
}

#[test]
fn losses_match_their_formulas() {
    let p = Tensor::from_vec(vec![0.5f64, -1.0, 2.0, 3.0], [4], &CPU);
    let t = Tensor::from_vec(vec![0.0f64, 0.0, 2.5, 0.0], [4], &CPU);
    assert!((mse(&p, &t).item::<f64>().unwrap() - (0.25 + 1.0 + 0.25 + 9.0) / 4.0).abs() < 1e-12);
    assert!((l1(&p, &t).item::<f64>().unwrap() - (0.5 + 1.0 + 0.5 + 3.0) / 4.0).abs() < 1e-12);
    // beta 1: 0.5·d² below 1, d − 0.5 above
    let want = (0.125 + 0.5 + 0.125 + 2.5) / 4.0;
    assert!((smooth_l1(&p, &t, 1.0).item::<f64>().unwrap() - want).abs() < 1e-12);
    let targets = Tensor::from_vec(vec![1.0f64, 0.0, 1.0, 1.0], [4], &CPU);
    let want: f64 = [0.5f64, -1.0, 2.0, 3.0]
        .iter()
        .zip([1.0, 0.0, 1.0, 1.0])
        .map(|(x, y)| {
            let s = 1.0 / (1.0 + (-x).exp());
            -(y * s.ln() + (1.0 - y) * (1.0 - s).ln())
        })
        .sum::<f64>()
        / 4.0;
    assert!((bce_with_logits(&p, &targets).item::<f64>().unwrap() - want).abs() < 1e-12);
    let logp = Tensor::from_vec(vec![-0.1f64, -2.0, -3.0, -0.5], [2, 2], &CPU);
    let labels = Tensor::from_vec(vec![1i32, 0], [2], &CPU);
    // picks −2.0 (row 0, class 1) and −3.0 (row 1, class 0)
    assert!((nll(&logp, &labels).item::<f64>().unwrap() - 2.5).abs() < 1e-12);
}
