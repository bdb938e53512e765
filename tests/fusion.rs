//! Fusion of elementwise chains (`KILN_FUSE`, `kiln::set_fusion`): invisible to results — bit
//! for bit on the CPU, within rounding on the GPU — and visible in the work: one dispatch per
//! chain, intermediates no one else reads never stored, and `KILN_CHECK` naming every op of a
//! chain that disagrees with the CPU reference.

mod common;

use common::Seed;
use common::three_ways::{relative_error, values};
use kiln::ops::conv::ConvOptions;
use kiln::ops::pool::PoolOptions;
use kiln::{DType, Device, Error, Tensor};

/// The chains every test runs, on inputs made from `seed`: (name, outputs). Each mixes the
/// step kinds: unary rows with parameters, binary rows with broadcast and one-element operands,
/// constants, an expand inside the chain, views, values a later op reads too.
fn chains(
    device: &Device,
    dtype: DType,
    (n, c): (usize, usize),
    seed: u64,
) -> Vec<(&'static str, Vec<Tensor>)> {
    kiln::manual_seed(seed);
    // drawn on the CPU, so that every device computes from the same values (the GPU's normals
    // differ from the CPU's in the last bits, which a division by a value near 0 magnifies)
    let randn = |shape: &[usize]| Tensor::randn(shape.to_vec(), &Device::Cpu).cast(dtype).to(device);
    let (x, y, bias, s) = (randn(&[n, c]), randn(&[n, c]), randn(&[c]), randn(&[1, 1]));
    let columns = randn(&[n, 1]);
    Tensor::realize_all(&[x.clone(), y.clone(), bias.clone(), s.clone(), columns.clone()]).unwrap();
    let (square, batched) = (randn(&[c, c]), randn(&[3, n, c]));
    Tensor::realize_all(&[square.clone(), batched.clone()]).unwrap();
    let many: Vec<Tensor> = (0..10).map(|_| randn(&[n, c])).collect();
    Tensor::realize_all(&many).unwrap();
    let activation = (&x * 2.0 + 1.0).tanh();
    // x as a batch of one-row images of one channel, and a 4-channel 1×3 filter over them
    let (images, filter, channel_bias) = (x.reshape([n, 1, 1, c]), randn(&[4, 1, 1, 3]), randn(&[4, 1, 1]));
    Tensor::realize_all(&[filter.clone(), channel_bias.clone()]).unwrap();
    let same_width = ConvOptions { padding: (0, 1), ..ConvOptions::default() };
    vec![
        ("unary and broadcast binary", vec![((&activation * &bias).relu() - &x).sigmoid()]),
        ("one-element operand", vec![((&x + &s).abs() + 0.5).sqrt().log() * &y]),
        ("expanded step", vec![(&bias * 3.0).expand([n, c]) + &x / &columns]),
        ("constant", vec![(Tensor::ones([n, c], device).cast(dtype) * 0.25 + &x).clamp(-0.5, 0.75)]),
        ("value read later", vec![activation.gelu() * &y, activation.clone()]),
        ("scalar chain", vec![(x.sum_all() * 0.5).reshape([1]).expand([n]) + &columns.reshape([n])]),
        ("dropout", vec![(&x + &bias).relu().dropout(0.3) * 2.0]),
        ("matmul epilogue", vec![(x.matmul(&square) + &bias).relu().dropout(0.2) * 2.0]),
        (
            "batched matmul epilogue, product kept",
            vec![(batched.matmul(&square.t()) * 0.5).tanh(), batched.matmul(&square)],
        ),
        ("convolution epilogue", vec![(images.conv2d(&filter, same_width) + &channel_bias).relu() * 0.5]),
        ("reduction epilogue", vec![(x.sum(0, false) * 0.5 + &bias).tanh(), x.mean_all().exp()]),
        (
            "reduction prologue",
            vec![
                (&x - &y).square().sum_all(),
                (&x * &bias).tanh().max(1, false),
                (&x + &columns).abs().sum(0, false),
            ],
        ),
        (
            "matmul epilogue through a reshape",
            vec![(batched.reshape([3 * n, c]).matmul(&square).reshape([3, n, c]) + &bias).gelu()],
        ),
        ("ten inputs", vec![many.iter().skip(1).fold(many[0].clone(), |acc, m| (acc + m).leaky_relu(0.1))]),
    ]
}

/// One chain's results: its name, its values fused and unfused, and how many chains the fused
/// run computed.
struct Run {
    name: &'static str,
    fused: Vec<Vec<f64>>,
    unfused: Vec<Vec<f64>>,
    chains: u64,
}

/// Runs every chain with fusion on and off.
fn both_ways(device: &Device, dtype: DType, shape: (usize, usize), seed: u64) -> Vec<Run> {
    let mut out: Vec<Run> = Vec::new();
    for on in [true, false] {
        kiln::set_fusion(on);
        for (k, (name, outputs)) in chains(device, dtype, shape, seed).into_iter().enumerate() {
            let before = kiln::debug::fused_chains_run();
            let v = values(&outputs);
            let chains = kiln::debug::fused_chains_run() - before;
            if on {
                out.push(Run { name, fused: v, unfused: Vec::new(), chains });
            } else {
                assert_eq!(chains, 0, "{name}: fusion is off, yet a chain ran");
                out[k].unfused = v;
            }
        }
    }
    kiln::set_fusion(true);
    out
}

const SHAPES: [(usize, usize); 5] = [(1, 1), (7, 13), (33, 64), (1500, 64), (2, 1031)];

#[test]
fn cpu_chains_give_the_unfused_result_bit_for_bit() {
    let seed = Seed::from_env("fusion", "cpu_chains_give_the_unfused_result_bit_for_bit");
    for dtype in [DType::F32, DType::F64] {
        for shape in SHAPES {
            for Run { name, fused, unfused, chains } in both_ways(&Device::Cpu, dtype, shape, seed.value) {
                assert!(chains >= 1, "{name} {shape:?} {dtype}: no chain was fused");
                for (f, u) in fused.iter().zip(&unfused) {
                    let same =
                        f.iter().zip(u).all(|(a, b)| a.to_bits() == b.to_bits() || a.is_nan() && b.is_nan());
                    assert!(same, "{name} {shape:?} {dtype}: fused and unfused CPU results differ; {seed}");
                }
            }
        }
    }
}

#[test]
fn gpu_chains_agree_with_the_unfused_gpu_and_the_cpu() {
    let Some(gpu) = common::gpu("fusion") else { return };
    let seed = Seed::from_env("fusion", "gpu_chains_agree_with_the_unfused_gpu_and_the_cpu");
    for shape in SHAPES {
        let cpu = both_ways(&Device::Cpu, DType::F32, shape, seed.value);
        for (run, reference) in both_ways(&gpu, DType::F32, shape, seed.value).into_iter().zip(cpu) {
            let Run { name, fused, unfused, chains } = run;
            assert!(chains >= 1, "{name} {shape:?}: no chain was fused on the GPU");
            for (against, what) in [(&unfused, "the unfused GPU"), (&reference.fused, "the CPU")] {
                for (f, r) in fused.iter().zip(against) {
                    let err = relative_error(f, r);
                    // f32 steps of a few ulps each (tanh, exp, log, erf), a handful deep
                    assert!(
                        err < 2e-5,
                        "{name} {shape:?}: fused GPU against {what}: relative error {err:e}; {seed}"
                    );
                }
            }
        }
    }
}

#[test]
fn a_chain_is_one_dispatch_and_splits_where_it_outgrows_the_bindings() {
    let Some(gpu) = common::gpu("fusion") else { return };
    kiln::manual_seed(3);
    let (x, bias) = (Tensor::randn([9, 5], &gpu), Tensor::randn([5], &gpu));
    let many: Vec<Tensor> = (0..10).map(|_| Tensor::randn([9, 5], &gpu)).collect();
    Tensor::realize_all(&[x.clone(), bias.clone()]).unwrap();
    Tensor::realize_all(&many).unwrap();
    let count = |on: bool, build: &dyn Fn() -> Tensor| {
        kiln::set_fusion(on);
        let y = build();
        let before = kiln::debug::gpu_dispatches();
        y.realize().unwrap();
        kiln::set_fusion(true);
        kiln::debug::gpu_dispatches() - before
    };
    let chain = || (((&x * 2.0 + 1.0).tanh() * &bias).relu() - &x).sigmoid();
    assert_eq!(count(false, &chain), 7);
    assert_eq!(count(true, &chain), 1);
    // a matmul's bias and activation run in its store (an epilogue)
    let w = Tensor::randn([5, 5], &gpu);
    w.realize().unwrap();
    let layer = || (x.matmul(&w) + &bias).relu();
    assert_eq!(count(false, &layer), 3);
    assert_eq!(count(true, &layer), 1);
    // so do a convolution's, through the reshape a 3-D input to a linear layer takes, and a
    // mean's division runs in the reduction's store
    let (images, filter, channel_bias) = (
        Tensor::randn([2, 3, 7, 7], &gpu),
        Tensor::randn([4, 3, 3, 3], &gpu),
        Tensor::randn([4, 1, 1], &gpu),
    );
    let batch = Tensor::randn([2, 9, 5], &gpu);
    Tensor::realize_all(&[images.clone(), filter.clone(), channel_bias.clone(), batch.clone()]).unwrap();
    let conv = || (images.conv2d(&filter, ConvOptions::default()) + &channel_bias).relu();
    assert_eq!(count(false, &conv), 3);
    assert_eq!(count(true, &conv), 1);
    let linear = || (batch.reshape([18, 5]).matmul(&w).reshape([2, 9, 5]) + &bias).relu();
    assert_eq!(count(false, &linear), 3);
    assert_eq!(count(true, &linear), 1);
    let mean = || x.mean(0, false);
    assert_eq!(count(false, &mean), 2);
    assert_eq!(count(true, &mean), 1);
    // and a chain whose last value only a reduction reads runs in the reduction's loads
    let y = Tensor::randn([9, 5], &gpu);
    y.realize().unwrap();
    let squared_error = || (&x - &y).square().sum_all();
    assert_eq!(count(false, &squared_error), 3);
    assert_eq!(count(true, &squared_error), 1);
    // a layer norm's input gradient stores through the chain that adds the residual stream's
    // gradient to it
    let residual = x.detach().requires_grad_();
    let block = || {
        let y = &residual + residual.layer_norm(&[5], None, None, 1e-5).tanh();
        y.square().sum_all().backward().get(&residual).unwrap().clone()
    };
    for on in [true, false] {
        kiln::set_fusion(on);
        let dx = block();
        kiln::debug::log_gpu_dispatches(true);
        dx.realize().unwrap();
        let kernels = kiln::debug::log_gpu_dispatches(false);
        kiln::set_fusion(true);
        let hosted = kernels.iter().any(|k| k == "layernorm:backward + epilogue");
        assert_eq!(hosted, on, "fusion {on}: {kernels:?}");
    }
    // nine adds of ten inputs: a kernel binds at most 8 buffers, so two kernels
    let sum = || many.iter().skip(1).fold(many[0].clone(), |acc, m| acc + m);
    assert_eq!(count(false, &sum), 9);
    assert_eq!(count(true, &sum), 2);
}

#[test]
fn gradients_are_the_same_with_fusion_on_and_off() {
    let seed = Seed::from_env("fusion", "gradients_are_the_same_with_fusion_on_and_off");
    let mut devices = vec![Device::Cpu];
    devices.extend(common::gpu("fusion"));
    for device in devices {
        let dense = |device: &Device| {
            let x = Tensor::randn([17, 6], device);
            let w = Tensor::randn([6, 5], device).requires_grad_();
            let b = Tensor::randn([5], device).requires_grad_();
            let h = (x.matmul(&w) + &b).tanh().dropout(0.25);
            let loss = ((&h * 2.0).sigmoid() * &h + (&b * &b).sum_all()).square().mean_all();
            let g = loss.backward();
            vec![loss.clone(), g.get(&w).unwrap().clone(), g.get(&b).unwrap().clone()]
        };
        // a convolution with its bias and ReLU, max pooling (whose gradient takes the ReLU's
        // gradient in), a linear layer on the flattened maps, a mean loss
        let cnn = |device: &Device| {
            let images = Tensor::randn([3, 2, 9, 9], device);
            let filter = (Tensor::randn([5, 2, 3, 3], device) * 0.3).detach().requires_grad_();
            let channel_bias = Tensor::randn([5, 1, 1], device).requires_grad_();
            let w = (Tensor::randn([5 * 3 * 3, 4], device) * 0.2).detach().requires_grad_();
            let maps = (images.conv2d(&filter, ConvOptions::default()) + &channel_bias).relu();
            let pooled = maps.max_pool2d(PoolOptions::new(2)).reshape([3, 5 * 3 * 3]);
            let loss = pooled.matmul(&w).tanh().square().mean_all();
            let g = loss.backward();
            vec![loss.clone(), g.get(&filter).unwrap().clone(), g.get(&channel_bias).unwrap().clone()]
        };
        // a pre-norm residual block: the layer norm's input gradient takes the residual
        // stream's gradient in its store
        let block = |device: &Device| {
            let x = Tensor::randn([6, 11], device).requires_grad_();
            let (gain, shift) = (Tensor::randn([11], device).requires_grad_(), Tensor::randn([11], device));
            let w = (Tensor::randn([11, 11], device) * 0.3).detach().requires_grad_();
            let h = &x + x.layer_norm(&[11], Some(&gain), Some(&shift), 1e-5).matmul(&w).gelu();
            let loss = (&h + h.layer_norm(&[11], None, None, 1e-5)).tanh().square().mean_all();
            let g = loss.backward();
            vec![
                loss.clone(),
                g.get(&x).unwrap().clone(),
                g.get(&gain).unwrap().clone(),
                g.get(&w).unwrap().clone(),
            ]
        };
        let models =
            [("dense", &dense as &dyn Fn(&Device) -> Vec<Tensor>), ("cnn", &cnn), ("pre-norm block", &block)];
        for (name, model) in models {
            let grads = |on: bool| -> Vec<Vec<f64>> {
                kiln::set_fusion(on);
                kiln::manual_seed(seed.value);
                let v = values(&model(&device));
                kiln::set_fusion(true);
                v
            };
            let before = kiln::debug::fused_chains_run();
            let (fused, unfused) = (grads(true), grads(false));
            assert!(kiln::debug::fused_chains_run() > before, "{device} {name}: nothing was fused");
            for (f, u) in fused.iter().zip(&unfused) {
                match device {
                    Device::Cpu => assert_eq!(f, u, "CPU {name} gradients differ with fusion; {seed}"),
                    _ => assert!(
                        relative_error(f, u) < 1e-5,
                        "{device} {name} gradients differ with fusion; {seed}"
                    ),
                }
            }
        }
    }
}

#[test]
fn a_chain_past_the_grid_limit_covers_every_element() {
    let Some(gpu) = common::gpu("fusion") else { return };
    // 65,535 workgroups of 256 and one more element: the grid folds onto two dimensions
    let n = 65_535 * 256 + 1;
    let x = Tensor::arange(0.0, n as f64, 1.0, &gpu);
    let ones = Tensor::ones([n], &gpu);
    Tensor::realize_all(&[x.clone(), ones.clone()]).unwrap();
    let before = kiln::debug::fused_chains_run();
    let y = ((&x * 0.5 + &ones) * 2.0).to_vec::<f32>().unwrap();
    assert_eq!(kiln::debug::fused_chains_run() - before, 1);
    for i in [0, 1, 256 * 65_535 - 1, n - 1] {
        assert_eq!(y[i], i as f32 + 2.0, "element {i}");
    }
}

#[test]
fn the_cross_check_names_every_op_of_a_wrong_chain() {
    // fault injection and checking are process-wide: run alone, in a child process
    const TEST: &str = "the_cross_check_names_every_op_of_a_wrong_chain";
    if common::ran_in_child(TEST, "KILN_FUSION_CHECK_CHILD", "1") {
        return;
    }
    let Some(_) = common::gpu("fusion") else { return };
    let gpu = Device::gpu_checked(0).unwrap();
    let (a, b) = (Tensor::randn([4, 6], &gpu), Tensor::randn([6], &gpu));
    Tensor::realize_all(&[a.clone(), b.clone()]).unwrap();
    // a correct chain passes
    ((&a * 2.0).tanh() + &b).realize().expect("a correct chain passes the cross-check");
    kiln::debug::inject_fault_once();
    #[rustfmt::skip]
    let (scaled, first) = (&a * 2.0, line!());
    #[rustfmt::skip]
    let (y, last) = (scaled.tanh() + &b, line!());
    match y.realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(
                msg.contains("fused chain mul_scalar(a 2, b 0) → tanh(a 0, b 0) → add"),
                "names the chain: {msg}"
            );
            assert!(msg.contains("[4, 6]"), "names the shapes: {msg}");
            assert!(msg.contains("relative error"), "gives the error: {msg}");
            for line in [first, last] {
                assert!(msg.contains(&format!("tests/fusion.rs:{line}")), "points at line {line}: {msg}");
            }
        }
        other => panic!("the injected fault was not caught: {other:?}"),
    }
    // a matmul with its epilogue: the product and the chain are checked, and named
    let w = Tensor::randn([6, 3], &gpu);
    w.realize().unwrap();
    ((a.matmul(&w) * 2.0).relu()).realize().expect("a correct epilogue passes the cross-check");
    kiln::debug::inject_fault_once();
    match (a.matmul(&w) * 2.0).relu().realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(
                msg.contains("fused chain matmul(trans_a false, trans_b false) → mul_scalar"),
                "names the chain: {msg}"
            );
            assert!(msg.contains("[4, 3]"), "names the shapes: {msg}");
        }
        other => panic!("the injected fault in an epilogue was not caught: {other:?}"),
    }
    // and a reduction with its prologue
    let total = (&a * 2.0).tanh().sum(1, false);
    kiln::debug::inject_fault_once();
    match total.realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(
                msg.contains(
                    "fused chain mul_scalar(a 2, b 0) → tanh(a 0, b 0) → sum(axes [1], keepdim false)"
                ),
                "names the chain: {msg}"
            );
        }
        other => panic!("the injected fault in a reduction's prologue was not caught: {other:?}"),
    }
    // so is a reduction with its epilogue
    kiln::debug::inject_fault_once();
    match (a.sum(0, false) * 2.0).tanh().realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(
                msg.contains("fused chain sum(axes [0], keepdim false) → mul_scalar(a 2, b 0) → tanh"),
                "names the chain: {msg}"
            );
        }
        other => panic!("the injected fault in a reduction's epilogue was not caught: {other:?}"),
    }
    // and a product that computes a sibling's sums (a weight's gradient and its bias's)
    let x = Tensor::randn([4, 7], &gpu);
    x.realize().unwrap();
    let (product, sums) = (a.t().matmul(&x), a.sum(0, false));
    Tensor::realize_all(&[product.clone(), sums.clone()]).expect("a correct pair passes the cross-check");
    let (product, sums) = (a.t().matmul(&x), a.sum(0, false));
    kiln::debug::log_gpu_dispatches(true);
    kiln::debug::inject_fault_once();
    let result = Tensor::realize_all(&[product, sums]);
    assert_eq!(kiln::debug::log_gpu_dispatches(false), ["matmul:main + sums"]);
    match result {
        Err(Error::CheckFailed(msg)) => assert!(msg.contains("matmul"), "names the product: {msg}"),
        other => panic!("the injected fault in a product with sums was not caught: {other:?}"),
    }
    // and a product stored in a permute's order: the product's values, read back, are checked
    let heads = || a.t().matmul(&x).reshape([2, 3, 7]).permute(&[2, 0, 1]);
    heads().realize().expect("a correct permuted store passes the cross-check");
    let heads = heads();
    kiln::debug::log_gpu_dispatches(true);
    kiln::debug::inject_fault_once();
    let result = heads.realize();
    assert_eq!(kiln::debug::log_gpu_dispatches(false), ["matmul:main + permuted store"]);
    match result {
        Err(Error::CheckFailed(msg)) => assert!(msg.contains("matmul"), "names the product: {msg}"),
        other => panic!("the injected fault in a permuted store was not caught: {other:?}"),
    }
    // and a layer norm's weight gradient terms, written by its input gradient's kernel: alone
    // and under a chain (the residual stream's gradient)
    let (x, w) = (a.requires_grad_(), Tensor::randn([6], &gpu).requires_grad_());
    let dy = Tensor::randn([4, 6], &gpu);
    Tensor::realize_all(&[w.clone(), dy.clone()]).unwrap();
    for residual in [false, true] {
        let normed = x.layer_norm(&[6], Some(&w), None, 1e-5);
        let h = if residual { &x + normed } else { normed };
        h.realize().unwrap();
        let gradients = || {
            let g = h.backward_with(dy.clone());
            [g.get(&x).unwrap().clone(), g.get(&w).unwrap().clone()]
        };
        Tensor::realize_all(&gradients()).expect("a correct layer norm gradient passes the cross-check");
        let grads = gradients();
        kiln::debug::log_gpu_dispatches(true);
        kiln::debug::inject_fault_once();
        let result = Tensor::realize_all(&grads);
        let kernels = kiln::debug::log_gpu_dispatches(false);
        assert!(kernels.iter().any(|k| k.ends_with(" + terms")), "{kernels:?}");
        match result {
            Err(Error::CheckFailed(msg)) => assert!(
                msg.contains("mul of layer_norm(shape [6], eps 0.00001, weight false, bias false)"),
                "names the terms and what they multiply: {msg}"
            ),
            other => {
                panic!("the injected fault in a layer norm's weight gradient terms was not caught: {other:?}")
            }
        }
    }
}
