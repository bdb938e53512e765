//! f16 storage and mixed precision: f16 tensors on both backends (bits kept through upload and
//! download), casts, the native f16 matmul (f16 operands, f32 accumulation), every other op
//! computed in f32 between casts, autocast's choice of dtypes and its gradients, dynamic loss
//! scaling, f16 checkpoints, and the error on a GPU without `shader-f16`.

mod common;

use common::Seed;
use kiln::nn::{self, Linear, Module};
use kiln::optim::{GradScaler, Optimizer, Rule};
use kiln::{DType, Device, Error, Tensor, amp, f16};

/// The devices every test runs on: the CPU, and the GPU when there is one.
fn devices(test: &str) -> Vec<Device> {
    let mut all = vec![Device::Cpu];
    all.extend(common::gpu(test));
    all
}

/// ‖a − b‖ / ‖b‖.
fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f64>().sqrt();
    let norm: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    if norm == 0.0 { diff } else { diff / norm }
}

/// Random f32 values of `shape`, drawn on the CPU (so every device starts from the same ones).
fn randn(shape: &[usize], device: &Device) -> Tensor {
    Tensor::randn(shape.to_vec(), &Device::Cpu).to(device)
}

#[test]
fn f16_values_keep_their_bits_through_upload_and_download() {
    // odd lengths leave half a word of padding on the GPU; the specials must pass untouched
    let specials = [0.0, -0.0, 1.0, -2.5, 65504.0, 6.0e-8, f32::INFINITY, f32::NEG_INFINITY, 0.333];
    for n in [1usize, 2, 7, 1031] {
        let values: Vec<f16> =
            (0..n).map(|i| f16::from_f32(specials[i % specials.len()] * (1 + i / 9) as f32)).collect();
        for device in devices("f16_round_trip") {
            let t = Tensor::from_vec(values.clone(), [n], &Device::Cpu).to(&device);
            assert_eq!(t.dtype(), DType::F16);
            let back = t.to(&Device::Cpu).to_vec::<f16>().unwrap();
            let bits = |v: &[f16]| v.iter().map(|h| h.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&back), bits(&values), "{device}, {n} elements");
        }
    }
}

#[test]
fn casts_to_f16_round_to_nearest_on_every_device() {
    let seed = Seed::from_env("f16", "casts_to_f16_round_to_nearest_on_every_device");
    kiln::manual_seed(seed.value);
    let x = Tensor::randn([3, 1000], &Device::Cpu) * 100.0;
    let exact = x.to_vec::<f32>().unwrap();
    for device in devices("f16_casts") {
        let half = x.to(&device).cast(DType::F16);
        let widened = half.cast(DType::F32).to_vec::<f32>().unwrap();
        let rounded = half.to_vec::<f16>().unwrap();
        for ((&e, &w), &h) in exact.iter().zip(&widened).zip(&rounded) {
            assert_eq!(w, h.to_f32(), "{device}: f16 → f32 is exact");
            // the nearest f16: within half an ulp (an ulp is 2⁻¹⁰ of the value's binade)
            let ulp = f16::from_f32(e.abs()).to_f32().max(6.1e-5) / 1024.0;
            assert!((w - e).abs() <= ulp * 0.5 + 1e-9 || (w - e).abs() <= ulp, "{device}: {e} → {w}");
        }
        // integers and bools too
        let ints = Tensor::from_vec(vec![-3i32, 0, 7, 2048], [4], &device).cast(DType::F16);
        assert_eq!(ints.cast(DType::I32).to_vec::<i32>().unwrap(), [-3, 0, 7, 2048], "{device}");
    }
}

#[test]
fn f16_matmul_accumulates_in_f32_and_rounds_once() {
    let seed = Seed::from_env("f16", "f16_matmul_accumulates_in_f32_and_rounds_once");
    // 1, primes, a non-tile multiple, 128×128 tiles, broadcast batches, transposed operands
    let shapes: [(&[usize], &[usize], bool); 6] = [
        (&[1, 1], &[1, 1], false),
        (&[7, 13], &[13, 5], false),
        (&[65, 67], &[67, 129], false),
        (&[2, 257, 129], &[129, 259], false),
        (&[2, 1, 3, 17], &[3, 17, 11], false),
        (&[31, 7], &[11, 31], true),
    ];
    for (k, (sa, sb, transposed)) in shapes.into_iter().enumerate() {
        kiln::manual_seed(seed.value + k as u64);
        let (a, b) = (randn(sa, &Device::Cpu), randn(sb, &Device::Cpu));
        let product = |a: &Tensor, b: &Tensor| if transposed { a.t().matmul(&b.t()) } else { a.matmul(b) };
        let (a16, b16) = (a.cast(DType::F16), b.cast(DType::F16));
        // the reference: the f32 product of the f16 operands, rounded to f16 once
        let f32_product = product(&a16.cast(DType::F32), &b16.cast(DType::F32));
        let reference = f32_product.cast(DType::F16).to_f64_vec().unwrap();
        let cpu = product(&a16, &b16);
        assert_eq!(cpu.dtype(), DType::F16);
        assert_eq!(cpu.to_f64_vec().unwrap(), reference, "{sa:?}·{sb:?}: CPU is the rounded f32 product");
        if let Some(gpu) = common::gpu("f16_matmul") {
            let out = product(&a16.to(&gpu), &b16.to(&gpu)).to_f64_vec().unwrap();
            // f32 sums in another order, then rounding to f16: at most one f16 ulp apart
            let err = relative_error(&out, &reference);
            assert!(err < 1e-3, "{sa:?}·{sb:?}: GPU f16 matmul off by {err:.2e} ({seed})");
        }
    }
}

/// An op of two tensors, as a test builds it.
type BinaryBuild = dyn Fn(&Tensor, &Tensor) -> Tensor;

#[test]
fn f16_results_are_the_f32_results_rounded() {
    // ops without an f16 kernel compute in f32 between casts; the convolution's f16 kernel
    // accumulates in f32 and rounds once: either way the f32 result of the widened operands
    let seed = Seed::from_env("f16", "f16_results_are_the_f32_results_rounded");
    kiln::manual_seed(seed.value);
    // each case rounds once: a composition would round between its ops, which the f32
    // reference composed of the same ops does not
    let (x, w) = (randn(&[2, 3, 9, 9], &Device::Cpu), randn(&[4, 3, 3, 3], &Device::Cpu));
    let ops: Vec<(&str, Box<BinaryBuild>)> = vec![
        ("gelu", Box::new(|x, _| x.gelu())),
        // (a max is exact in f16, so only the broadcast sum rounds)
        ("add with broadcast", Box::new(|x, _| x + &x.max(0, true))),
        ("softmax", Box::new(|x, _| x.softmax(-1))),
        ("layer norm", Box::new(|x, _| x.layer_norm(&[9], None, None, 1e-5))),
        ("sum", Box::new(|x, _| x.sum(1, false))),
        ("conv2d", Box::new(|x, w| x.conv2d(w, Default::default()))),
        ("max pool", Box::new(|x, _| x.max_pool2d(kiln::ops::pool::PoolOptions::new(2)))),
        ("permute", Box::new(|x, _| x.permute(&[0, 2, 1, 3]) * 1.0)),
    ];
    for (name, op) in &ops {
        let (x16, w16) = (x.cast(DType::F16), w.cast(DType::F16));
        let reference = op(&x16.cast(DType::F32), &w16.cast(DType::F32)).cast(DType::F16);
        let reference = reference.to_f64_vec().unwrap();
        let cpu = op(&x16, &w16);
        assert_eq!(cpu.dtype(), DType::F16, "{name}");
        assert_eq!(cpu.to_f64_vec().unwrap(), reference, "{name}: CPU f16 is the f32 result rounded");
        if let Some(gpu) = common::gpu("f16_ops") {
            let out = op(&x16.to(&gpu), &w16.to(&gpu)).to_f64_vec().unwrap();
            let err = relative_error(&out, &reference);
            assert!(err < 2e-3, "{name}: GPU off by {err:.2e} ({seed})");
        }
    }
}

#[test]
fn f16_and_f32_operands_promote_to_f32() {
    let a = Tensor::ones([3], &Device::Cpu).cast(DType::F16);
    let b = Tensor::full([3], 0.5, DType::F32, &Device::Cpu);
    let sum = &a + &b;
    assert_eq!(sum.dtype(), DType::F32);
    assert_eq!(sum.to_vec::<f32>().unwrap(), [1.5; 3]);
    assert_eq!((&a * 2.0).dtype(), DType::F16);
}

#[test]
fn autocast_runs_products_in_f16_and_statistics_in_f32() {
    for device in devices("autocast_dtypes") {
        kiln::manual_seed(7);
        let layer = Linear::new(8, 5, &device);
        let x = randn(&[4, 8], &device);
        let target = Tensor::from_vec(vec![0i32, 4, 2, 1], [4], &device);
        let (logits, normed, probs, loss) = {
            let _autocast = amp::autocast(DType::F16);
            let logits = layer.forward(&x);
            let normed = logits.layer_norm(&[5], None, None, 1e-5);
            (logits.clone(), normed, logits.softmax(-1), logits.cross_entropy(&target))
        };
        assert_eq!(logits.dtype(), DType::F16, "{device}: a linear layer's output");
        assert_eq!(normed.dtype(), DType::F32, "{device}: layer norm");
        assert_eq!(probs.dtype(), DType::F32, "{device}: softmax");
        assert_eq!(loss.dtype(), DType::F32, "{device}: cross-entropy");
        assert_eq!(layer.forward(&x).dtype(), DType::F32, "{device}: f32 outside the scope");
        {
            let _autocast = amp::autocast(DType::F16);
            let _off = amp::autocast_off();
            assert_eq!(layer.forward(&x).dtype(), DType::F32, "{device}: autocast_off");
        }
        assert_eq!(amp::autocast_dtype(), None);
        // master weights: the gradients are f32, and close to the f32 model's
        let params = nn::parameters(&layer);
        let grads = loss.backward();
        let full = layer.forward(&x).cross_entropy(&target).backward();
        for (name, p) in &params {
            let (g, g32) = (grads.get(p).unwrap(), full.get(p).unwrap());
            assert_eq!(g.dtype(), DType::F32, "{device}: {name}'s gradient");
            let err = relative_error(&g.to_f64_vec().unwrap(), &g32.to_f64_vec().unwrap());
            // f16 operands carry 11 significant bits: ~5e-4 per value, a few of them per term
            assert!(err < 5e-3, "{device}: {name}'s gradient off the f32 one by {err:.2e}");
        }
    }
}

#[test]
fn grad_scaler_skips_steps_that_overflow_and_adapts_its_scale() {
    for device in devices("grad_scaler") {
        kiln::manual_seed(3);
        let layer = Linear::new(6, 3, &device);
        let params = nn::parameters(&layer);
        let mut opt = Optimizer::new(params.clone(), Rule::sgd(), 0.1);
        let x = randn(&[5, 6], &device);
        let loss = || {
            let _autocast = amp::autocast(DType::F16);
            layer.forward(&x).cast(DType::F32).square().mean_all()
        };
        let before: Vec<Vec<f64>> = params.iter().map(|(_, p)| p.to_f64_vec().unwrap()).collect();

        // a scale so large that the f16 gradients overflow: the step is skipped, the scale halved
        let mut scaler = GradScaler::new().init_scale(1e30).growth(2.0, 2);
        let mut grads = scaler.scale(&loss()).backward();
        assert!(!scaler.step(&mut opt, &mut grads).unwrap(), "{device}");
        scaler.update();
        assert_eq!(scaler.scale_factor(), 5e29);
        assert_eq!(scaler.skipped_steps(), 1);
        assert_eq!(opt.steps(), 0);
        let after: Vec<Vec<f64>> = params.iter().map(|(_, p)| p.to_f64_vec().unwrap()).collect();
        assert_eq!(after, before, "{device}: a skipped step changes nothing");

        // a workable scale: unscaled gradients equal the unscaled loss's, and the scale doubles
        // after two good steps
        let mut scaler = GradScaler::new().init_scale(1024.0).growth(2.0, 2);
        for step in 0..2 {
            let reference = loss().backward();
            let mut grads = scaler.scale(&loss()).backward();
            assert!(scaler.unscale(&mut grads, &params).unwrap(), "{device}");
            for (name, p) in &params {
                let (g, r) = (grads.get(p).unwrap(), reference.get(p).unwrap());
                let err = relative_error(&g.to_f64_vec().unwrap(), &r.to_f64_vec().unwrap());
                // the scaled f16 pass keeps more of the small gradients' bits: close, not equal
                assert!(err < 5e-3, "{device}: {name} unscaled off by {err:.2e}");
            }
            assert!(scaler.step(&mut opt, &mut grads).unwrap());
            scaler.update();
            assert_eq!(scaler.scale_factor(), if step == 0 { 1024.0 } else { 2048.0 }, "{device}");
        }
        assert_eq!(opt.steps(), 2);
    }
}

#[test]
fn f16_checkpoints_store_f16() {
    let dir = std::env::temp_dir().join(format!("kiln-f16-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("half.safetensors");
    let values: Vec<f16> = [0.5f32, -1.25, 3.0e-5, 1000.0, 7.0].map(f16::from_f32).to_vec();
    let t = Tensor::from_vec(values.clone(), [5], &Device::Cpu);
    kiln::train::checkpoint::save(&path, &[("w".to_string(), t)], &Default::default()).unwrap();
    // F16 in the file: 10 bytes of data
    let bytes = std::fs::read(&path).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header = std::str::from_utf8(&bytes[8..8 + header_len]).unwrap();
    assert!(header.contains("\"dtype\":\"F16\""), "{header}");
    assert_eq!(bytes.len() - 8 - header_len, 10);
    let loaded = kiln::train::checkpoint::load(&path).unwrap();
    let w = loaded.get("w").unwrap();
    assert_eq!(w.dtype(), DType::F16);
    assert_eq!(w.to_vec::<f16>().unwrap(), values);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_gpu_without_shader_f16_gives_an_error_naming_the_cure() {
    // in a child process: refusing f16 kernels is per GPU, and the other tests use them
    const TEST: &str = "a_gpu_without_shader_f16_gives_an_error_naming_the_cure";
    let Some(gpu) = common::gpu("no_shader_f16") else { return };
    if common::ran_in_child(TEST, "KILN_TEST_NO_F16_CHILD", "1") {
        return;
    }
    if !gpu.supports_f16().unwrap() {
        common::skipped("the adapter has no shader-f16: the error is what it always gives");
        return;
    }
    assert!(!gpu.set_f16_kernels(false).unwrap());
    let x = Tensor::ones([4, 4], &gpu);
    let result = x.cast(DType::F16).matmul(&x.cast(DType::F16)).to_vec::<f16>();
    gpu.set_f16_kernels(true).unwrap();
    match result {
        Err(Error::Unsupported(msg)) => assert!(msg.contains("shader-f16") && msg.contains("f32"), "{msg}"),
        other => panic!("expected Error::Unsupported, got {other:?}"),
    }
    // f32 work goes on, and f16 does again once allowed
    assert_eq!(x.matmul(&x).to_vec::<f32>().unwrap(), [4.0; 16]);
    assert_eq!(
        x.cast(DType::F16).matmul(&x.cast(DType::F16)).to_vec::<f16>().unwrap(),
        [f16::from_f32(4.0); 16]
    );
}

#[test]
fn the_f16_rows_of_the_case_table_match_the_cpu_on_the_gpu() {
    // (tests/parity.rs runs them too, among every other row; this is the f16 subset on its own)
    let Some(gpu) = common::gpu("f16_parity") else { return };
    let seed = Seed::from_env("f16", "the_f16_rows_of_the_case_table_match_the_cpu_on_the_gpu");
    let rows: Vec<_> = kiln::testing::cases()
        .into_iter()
        .filter(|c| c.name.contains("f16") || c.name.starts_with("autocast"))
        .collect();
    assert!(rows.len() >= 6, "only {} f16 rows", rows.len());
    let mut failures = Vec::new();
    for case in &rows {
        for shapes in &case.shapes {
            let what = format!("{} {shapes:?}", case.name);
            match kiln::testing::parity(case, shapes, &gpu, seed.value, true) {
                Err(e) => failures.push(format!("{what}: {e}")),
                Ok(report) => failures.extend(report.failures(case, &what)),
            }
        }
    }
    assert!(failures.is_empty(), "{seed}:\n{}", failures.join("\n"));
}

#[test]
fn kiln_check_passes_mixed_precision_training_steps() {
    // in a child process with KILN_CHECK=1: every GPU node, f16 casts and matmuls included, is
    // recomputed by the CPU reference and compared within its op's tolerance
    const TEST: &str = "kiln_check_passes_mixed_precision_training_steps";
    let Some(gpu) = common::gpu("f16_check") else { return };
    if common::ran_in_child(TEST, "KILN_CHECK", "1") {
        return;
    }
    kiln::manual_seed(11);
    let model = kiln::models::mnist_mlp(&gpu);
    let params = nn::parameters(&model);
    let mut opt = Optimizer::new(params.clone(), Rule::adam(), 1e-3);
    let mut scaler = GradScaler::new();
    let x = randn(&[16, 784], &gpu);
    let y = Tensor::from_vec((0..16).map(|i| i % 10).collect::<Vec<i32>>(), [16], &gpu);
    for _ in 0..3 {
        let loss = {
            let _autocast = amp::autocast(DType::F16);
            model.forward(&x).cross_entropy(&y)
        };
        let mut grads = scaler.scale(&loss).backward();
        assert!(scaler.step(&mut opt, &mut grads).unwrap());
        scaler.update();
    }
    assert_eq!(opt.steps(), 3);
}

#[test]
fn casts_fuse_into_the_chains_around_them_on_the_gpu() {
    let Some(gpu) = common::gpu("f16_fusion") else { return };
    kiln::manual_seed(5);
    let (x, bias, w) = (randn(&[33, 17], &gpu), randn(&[17], &gpu), randn(&[17, 17], &gpu));
    let (x16, bias16) = (x.cast(DType::F16), bias.cast(DType::F16));
    Tensor::realize_all(&[x16.clone(), bias16.clone(), w.clone()]).unwrap();
    let run = |on: bool, build: &dyn Fn() -> Tensor| {
        kiln::set_fusion(on);
        let y = build();
        let before = kiln::debug::gpu_dispatches();
        let values = y.to_f64_vec().unwrap();
        kiln::set_fusion(true);
        (kiln::debug::gpu_dispatches() - before, values)
    };
    // f16 in and out, each op computed in f32 between casts: four ops, the scalar's fill and
    // eight casts unfused
    let chain = || ((&x16 + &bias16).relu() * 0.5).sigmoid();
    let (unfused, expected) = run(false, &chain);
    let (fused, values) = run(true, &chain);
    assert_eq!((unfused, fused), (13, 1));
    // the same f32 operations and the same roundings to f16 in both
    assert!(relative_error(&values, &expected) < 1e-3);
    // an autocast layer: the f16 product, then bias and ReLU with their casts in its store
    let layer = || {
        let _autocast = amp::autocast(DType::F16);
        (x.matmul(&w) + &bias16).relu()
    };
    let (unfused, expected) = run(false, &layer);
    let (fused, values) = run(true, &layer);
    // unfused: two casts of the operands, the product, the bias add and ReLU with their casts;
    // fused: the casts of the operands, then the product with everything else in its store
    assert_eq!((unfused, fused), (10, 3));
    assert!(relative_error(&values, &expected) < 1e-3);
}

#[test]
fn an_optimizer_refuses_f16_parameters_and_names_autocast() {
    let w = Tensor::zeros([3], &Device::Cpu).cast(DType::F16).requires_grad_();
    let (message, _) = common::panic_of(move || {
        Optimizer::new(vec![("w".to_string(), w)], Rule::sgd(), 0.1);
    });
    assert!(message.contains("w is f16") && message.contains("amp::autocast"), "{message}");
}
