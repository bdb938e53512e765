//! The options of fused attention (key lengths, additive masks, the causal mask, dropout): the
//! fused op against the unfused composition for every combination, on the CPU in f64 and on the
//! GPU on both kernels; PyTorch's values for masks; rows that see no key; dropout's draws; and
//! bad input. (The case table holds the same options to CPU/GPU parity and the f64 gradcheck.)

mod common;

use kiln::ops::attention::AttentionOptions;
use kiln::rng::RandomKey;
use kiln::{DType, Device, Error, Shape, Tensor};
use std::panic;

fn randn(dims: &[usize], stream: u64, dtype: DType, device: &Device) -> Tensor {
    let key = RandomKey { seed: 31, stream };
    Tensor::normal(dims.to_vec(), 0.0, 1.0, key, &Device::Cpu).cast(dtype).to(device)
}

fn values(t: &Tensor) -> Vec<f64> {
    t.to_f64_vec().unwrap_or_else(|e| panic!("{e}"))
}

/// ‖got − want‖ / ‖want‖ (‖got − want‖ when want is 0), infinite if either holds a NaN.
fn rel_err(got: &[f64], want: &[f64]) -> f64 {
    assert_eq!(got.len(), want.len());
    if got.iter().chain(want).any(|x| x.is_nan()) {
        return f64::INFINITY;
    }
    let diff = got.iter().zip(want).map(|(g, w)| (g - w) * (g - w)).sum::<f64>().sqrt();
    let norm = want.iter().map(|w| w * w).sum::<f64>().sqrt();
    if norm > 0.0 { diff / norm } else { diff }
}

/// The gradients of Σ r·out with respect to q, k and v, with fixed weights r.
fn grads(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    f: impl Fn(&Tensor, &Tensor, &Tensor) -> Tensor,
) -> Vec<Vec<f64>> {
    let (q, k, v) = (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
    let out = f(&q, &k, &v);
    let r = Tensor::uniform(out.shape().clone(), 0.5, 1.5, RandomKey { seed: 5, stream: 5 }, &Device::Cpu)
        .cast(out.dtype())
        .to(&out.device());
    let g = (&out * &r).sum_all().backward();
    [&q, &k, &v].iter().map(|t| values(g.get(t).expect("a gradient"))).collect()
}

/// One attention problem: q (…batch, Tq, D), k (…batch, Tk, D), v (…batch, Tk, Dv), with key
/// lengths and mask shapes to try.
struct Problem {
    batch: &'static [usize],
    tq: usize,
    tk: usize,
    d: usize,
    dv: usize,
    /// The key lengths' shape and values (some 0, some Tk).
    lengths: (&'static [usize], &'static [i32]),
    /// Shapes of the additive mask to try, broadcast over the batch (and queries or keys).
    masks: &'static [&'static [usize]],
}

const PROBLEMS: [Problem; 3] = [
    // head dimensions multiples of 4: the flash kernels; lengths broadcast over heads
    Problem {
        batch: &[2, 3],
        tq: 7,
        tk: 9,
        d: 8,
        dv: 4,
        lengths: (&[2, 1], &[4, 9]),
        masks: &[&[7, 9], &[2, 1, 7, 9], &[2, 3, 1, 9]],
    },
    // the plain kernels, a sequence without keys, and a key-only mask
    Problem {
        batch: &[3],
        tq: 6,
        tk: 5,
        d: 5,
        dv: 3,
        lengths: (&[3], &[0, 2, 5]),
        masks: &[&[3, 6, 5], &[1, 5]],
    },
    // batch dimensions the lengths and the mask broadcast over with a gap (B, 1, G): expanded
    Problem {
        batch: &[2, 2, 3],
        tq: 5,
        tk: 8,
        d: 4,
        dv: 4,
        lengths: (&[2, 1, 3], &[8, 1, 5, 3, 0, 7]),
        masks: &[&[2, 1, 3, 5, 8]],
    },
];

/// The additive mask of `shape`: normal values, −∞ at about a fifth of the entries if `hidden`.
fn mask_of(shape: &[usize], hidden: bool, dtype: DType, device: &Device) -> Tensor {
    let values = randn(shape, 40, dtype, device);
    if !hidden {
        return values;
    }
    let hide = Tensor::uniform(shape.to_vec(), 0.0, 1.0, RandomKey { seed: 41, stream: 0 }, &Device::Cpu)
        .lt_scalar(0.2)
        .to(device);
    let neg_inf = Tensor::full(Shape::scalar(), f64::NEG_INFINITY, dtype, device);
    hide.where_(&neg_inf, &values)
}

/// Every combination of the options, fused against unfused, forward and backward, with the
/// weights of `attention_unfused_with` checked to be a distribution over the visible keys.
fn fused_matches_unfused_on(device: &Device, dtype: DType, tol: f64, grad_tol: f64) {
    let mut failures = Vec::new();
    let mut runs = 0;
    for (n, pb) in PROBLEMS.iter().enumerate() {
        let dims = |t: usize, d: usize| [pb.batch, &[t, d]].concat();
        let q = randn(&dims(pb.tq, pb.d), 1, dtype, device);
        let k = randn(&dims(pb.tk, pb.d), 2, dtype, device);
        let v = randn(&dims(pb.tk, pb.dv), 3, dtype, device);
        let lengths = Tensor::from_slice(pb.lengths.1, pb.lengths.0.to_vec(), device);
        let mut masks = vec![None];
        for shape in pb.masks {
            masks.push(Some(mask_of(shape, false, dtype, device)));
            masks.push(Some(mask_of(shape, true, dtype, device)));
        }
        for causal in [false, true] {
            for key_lengths in [None, Some(lengths.clone())] {
                for mask in &masks {
                    for dropout in [None, Some((0.25, RandomKey { seed: 3, stream: n as u64 }))] {
                        runs += 1;
                        let opts = AttentionOptions {
                            causal,
                            scale: None,
                            key_lengths: key_lengths.clone(),
                            mask: mask.clone(),
                            dropout,
                        };
                        let what = format!(
                            "problem {n} causal {causal} lengths {} mask {:?} dropout {}",
                            key_lengths.is_some(),
                            mask.as_ref().map(|m| m.dims().to_vec()),
                            dropout.is_some()
                        );
                        let fused = q.attention_with(&k, &v, &opts);
                        let (unfused, weights) = q.attention_unfused_with(&k, &v, &opts);
                        let err = rel_err(&values(&fused), &values(&unfused));
                        if err > tol {
                            failures.push(format!("{what}: output relative error {err:.2e}"));
                        }
                        // each weight row sums to 1 over the keys it sees, or is 0
                        let w = values(&weights);
                        for row in w.chunks(pb.tk) {
                            let sum: f64 = row.iter().sum();
                            if !((sum - 1.0).abs() < 1e-5 || sum == 0.0) || row.iter().any(|x| *x < 0.0) {
                                failures.push(format!("{what}: a weight row sums to {sum}"));
                                break;
                            }
                        }
                        let g1 = grads(&q, &k, &v, |q, k, v| q.attention_with(k, v, &opts));
                        let g2 = grads(&q, &k, &v, |q, k, v| q.attention_unfused_with(k, v, &opts).0);
                        for (name, (a, b)) in ["dq", "dk", "dv"].iter().zip(g1.iter().zip(&g2)) {
                            let err = rel_err(a, b);
                            if err > grad_tol {
                                failures.push(format!("{what}: {name} relative error {err:.2e}"));
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(runs > 100, "{runs} combinations");
    assert!(failures.is_empty(), "{} failures on {device}:\n{}", failures.len(), failures.join("\n"));
}

#[test]
fn fused_matches_unfused_for_every_option_combination_on_the_cpu() {
    fused_matches_unfused_on(&Device::Cpu, DType::F64, 1e-12, 1e-10);
}

#[test]
fn fused_matches_unfused_for_every_option_combination_on_the_gpu() {
    let Some(gpu) = common::gpu("attention options") else {
        return;
    };
    fused_matches_unfused_on(&gpu, DType::F32, 2e-5, 1e-4);
}

/// A row that sees no key: output 0 and no gradient, with nothing NaN, on every backend.
#[test]
fn rows_that_see_no_key_give_zero_output_and_no_gradient() {
    let mut devices = vec![(Device::Cpu, DType::F64), (Device::Cpu, DType::F32)];
    devices.extend(common::gpu("empty attention rows").map(|g| (g, DType::F32)));
    // d = 8: the flash kernels; d = 5: the plain ones
    for (device, dtype) in devices {
        for d in [8, 5] {
            let (b, tq, tk) = (2, 4, 6);
            let q = randn(&[b, tq, d], 1, dtype, &device);
            let k = randn(&[b, tk, d], 2, dtype, &device);
            let v = randn(&[b, tk, d], 3, dtype, &device);
            // sequence 0 has no keys; in sequence 1, query 2 has every key masked
            let lengths = Tensor::from_vec(vec![0i32, 6], [b], &device);
            let mut hide = vec![false; b * tq * tk];
            hide[(tq + 2) * tk..(tq + 3) * tk].fill(true);
            let hide = Tensor::from_vec(hide, [b, tq, tk], &device);
            let neg_inf = Tensor::full(Shape::scalar(), f64::NEG_INFINITY, dtype, &device);
            let zero = Tensor::full(Shape::scalar(), 0.0, dtype, &device);
            let opts = AttentionOptions {
                key_lengths: Some(lengths),
                mask: Some(hide.where_(&neg_inf, &zero)),
                // (p small enough that no row here loses all of its 6 weights)
                dropout: Some((0.1, RandomKey { seed: 1, stream: 2 })),
                ..Default::default()
            };
            let empty_row = |row: usize| row < tq || row == tq + 2;
            let out = values(&q.attention_with(&k, &v, &opts));
            for (row, o) in out.chunks(d).enumerate() {
                assert!(o.iter().all(|x| x.is_finite()), "{device} d {d}: row {row} {o:?}");
                assert_eq!(empty_row(row), o.iter().all(|&x| x == 0.0), "{device} d {d}: row {row} {o:?}");
            }
            let (_, weights) = q.attention_unfused_with(&k, &v, &opts);
            let weights = values(&weights);
            for (row, w) in weights.chunks(tk).enumerate() {
                assert_eq!(empty_row(row), w.iter().all(|&x| x == 0.0), "{device} d {d}: weights {row}");
            }
            let g = grads(&q, &k, &v, |q, k, v| q.attention_with(k, v, &opts));
            assert!(g.iter().flatten().all(|x| x.is_finite()), "{device} d {d}: {g:?}");
            for (row, dq) in g[0].chunks(d).enumerate() {
                assert_eq!(empty_row(row), dq.iter().all(|&x| x == 0.0), "{device} d {d}: dq row {row}");
            }
            // the keys of sequence 0 are seen by no query
            assert!(g[1][..tk * d].iter().chain(&g[2][..tk * d]).all(|&x| x == 0.0), "{device} d {d}");
        }
    }
}

/// Dropout keeps each weight with probability 1 − p and scales it by 1/(1 − p); the same key
/// gives the same draws on every backend, and another key other draws.
#[test]
fn dropout_keeps_the_expected_share_with_the_same_draws_everywhere() {
    let (b, tq, tk, p) = (2, 3, 4096, 0.25f32);
    // equal scores: every weight is 1/Tk, and with values 1 each output is the kept share / (1 − p)
    let run = |device: &Device, d: usize, key: RandomKey| -> Vec<f64> {
        let q = Tensor::zeros([b, tq, d], device);
        let ones = Tensor::full([b, tk, d], 1.0, DType::F32, device);
        values(&q.attention_with(
            &ones,
            &ones,
            &AttentionOptions { dropout: Some((p, key)), ..Default::default() },
        ))
    };
    let key = RandomKey { seed: 8, stream: 1 };
    let mut outputs = vec![];
    let gpu = common::gpu("attention dropout");
    for d in [4, 5] {
        let cpu = run(&Device::Cpu, d, key);
        // 1 ± 5σ, σ² = p / ((1 − p)·Tk)
        let sigma = (f64::from(p) / ((1.0 - f64::from(p)) * tk as f64)).sqrt();
        assert!(cpu.iter().all(|o| (o - 1.0).abs() < 5.0 * sigma), "d {d}: {cpu:?}");
        // each query row draws its own weights
        let rows: Vec<f64> = cpu.chunks(d).map(|r| r[0]).collect();
        assert!(rows.windows(2).all(|w| w[0] != w[1]), "{rows:?}");
        // other draws would move the outputs by about σ; sums of 4096 f32 terms by ~1e-5
        if let Some(gpu) = &gpu {
            assert!(rel_err(&run(gpu, d, key), &cpu) < 1e-4, "d {d}: the GPU drops other weights");
        }
        assert_ne!(run(&Device::Cpu, d, RandomKey { seed: 8, stream: 2 }), cpu);
        outputs.push(rows);
    }
    // both kernels (and the CPU) draw the same weights: only the head dimension differed
    assert_eq!(outputs[0], outputs[1]);
}

/// kiln's masking against PyTorch's `scaled_dot_product_attention` on the same inputs
/// (`tests/fixtures/make_attention.py`): outputs and gradients.
#[test]
fn masks_match_pytorch() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/attention/masks.json");
    let text = std::fs::read_to_string(path).expect("the fixture");
    let json: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    let floats = |v: &serde_json::Value| -> Vec<f64> {
        v.as_array().expect("an array").iter().map(|x| x.as_f64().expect("a number")).collect()
    };
    let dims = |v: &serde_json::Value| -> Vec<usize> {
        v["shape"].as_array().expect("a shape").iter().map(|x| x.as_u64().expect("a size") as usize).collect()
    };
    let mut devices = vec![(Device::Cpu, DType::F64, 1e-12)];
    devices.extend(common::gpu("attention fixtures").map(|g| (g, DType::F32, 1e-5)));
    for case in json["cases"].as_array().expect("cases") {
        let name = case["name"].as_str().expect("a name");
        for (device, dtype, tol) in &devices {
            let tensor = |v: &serde_json::Value| {
                Tensor::from_vec(floats(&v["data"]), dims(v), &Device::Cpu).cast(*dtype).to(device)
            };
            let (q, k, v) = (tensor(&case["q"]), tensor(&case["k"]), tensor(&case["v"]));
            let key_lengths = (!case["key_lengths"].is_null()).then(|| {
                let n: Vec<i32> = floats(&case["key_lengths"]["data"]).iter().map(|&x| x as i32).collect();
                Tensor::from_vec(n, dims(&case["key_lengths"]), device)
            });
            let mask = (!case["mask"].is_null()).then(|| {
                let m = &case["mask"];
                let hidden: Vec<bool> = floats(&m["hidden"]).iter().map(|&h| h != 0.0).collect();
                let data: Vec<f64> = floats(&m["data"])
                    .iter()
                    .zip(&hidden)
                    .map(|(&x, &h)| if h { f64::NEG_INFINITY } else { x })
                    .collect();
                Tensor::from_vec(data, dims(m), &Device::Cpu).cast(*dtype).to(device)
            });
            let opts = AttentionOptions {
                causal: case["causal"].as_bool().expect("causal"),
                scale: case["scale"].as_f64(),
                key_lengths,
                mask,
                dropout: None,
            };
            let out = q.attention_with(&k, &v, &opts);
            let err = rel_err(&values(&out), &floats(&case["out"]));
            assert!(err < *tol, "{name} on {device}: output relative error {err:.2e}");
            let r = Tensor::from_vec(floats(&case["r"]), out.shape().clone(), &Device::Cpu)
                .cast(*dtype)
                .to(device);
            let (qg, kg, vg) =
                (q.detach().requires_grad_(), k.detach().requires_grad_(), v.detach().requires_grad_());
            let grads = (&qg.attention_with(&kg, &vg, &opts) * &r).sum_all().backward();
            for (t, want) in [(&qg, "dq"), (&kg, "dk"), (&vg, "dv")] {
                let err = rel_err(&values(grads.get(t).expect("a gradient")), &floats(&case[want]));
                assert!(err < 10.0 * tol, "{name} on {device}: {want} relative error {err:.2e}");
            }
        }
    }
}

#[test]
fn wrong_options_panic_with_the_op_the_shapes_and_the_callers_line() {
    let cpu = Device::Cpu;
    let q = Tensor::zeros([2, 3, 5, 4], &cpu);
    let k = Tensor::zeros([2, 3, 7, 4], &cpu);
    let attend = |opts: AttentionOptions| {
        let (q, k) = (q.clone(), k.clone());
        common::panic_of(move || {
            let _ = q.attention_with(&k, &k, &opts);
        })
    };
    let lengths = |v: Vec<i32>, dims: Vec<usize>| Some(Tensor::from_vec(v, dims, &cpu));
    let cases = [
        (
            AttentionOptions { key_lengths: lengths(vec![1, 2, 3, 4], vec![4]), ..Default::default() },
            "key_lengths [4] (i32)",
        ),
        (
            AttentionOptions { key_lengths: Some(Tensor::zeros([2, 3], &cpu)), ..Default::default() },
            "key_lengths [2, 3] (f32) must be i32 with q's batch shape [2, 3]",
        ),
        (
            AttentionOptions { mask: Some(Tensor::zeros([5, 6], &cpu)), ..Default::default() },
            "mask [5, 6] (f32) must be f32 of shape (…, Tq, Tk) = (…, 5, 7)",
        ),
        (
            AttentionOptions {
                mask: Some(Tensor::zeros([5, 7], &cpu).cast(DType::F64)),
                ..Default::default()
            },
            "mask [5, 7] (f64)",
        ),
        (
            AttentionOptions { mask: Some(Tensor::zeros([3, 3, 5, 7], &cpu)), ..Default::default() },
            "mask [3, 3, 5, 7]",
        ),
        (
            AttentionOptions { dropout: Some((1.0, RandomKey { seed: 0, stream: 0 })), ..Default::default() },
            "dropout p must be in [0, 1), got 1",
        ),
    ];
    for (opts, expected) in cases {
        let (msg, at) = attend(opts);
        assert!(msg.starts_with("attention: ") && msg.contains(expected), "{msg}");
        if !expected.starts_with("dropout") {
            assert!(msg.contains("q [2, 3, 5, 4], k [2, 3, 7, 4]"), "{msg}");
        }
        assert!(at.starts_with("tests/attention.rs:"), "{at}");
    }
    let (q, k) = (Tensor::zeros([2, 5, 4], &cpu), Tensor::zeros([2, 7, 4], &cpu));
    let opts = AttentionOptions { mask: Some(Tensor::zeros([7, 5], &cpu)), ..Default::default() };
    let (msg, at) = common::panic_of(|| {
        let _ = q.attention_unfused_with(&k, &k, &opts);
    });
    let line = line!() - 2;
    assert!(msg.starts_with("attention_unfused: mask [7, 5]"), "{msg}");
    assert_eq!(at, format!("tests/attention.rs:{line}"));
}

/// A key length outside 0..=Tk is `Error::OutOfRange`, the same on the CPU and on both GPU
/// kernels, naming the first bad element.
#[test]
fn key_lengths_out_of_range_are_errors_on_every_backend() {
    let mut devices = vec![Device::Cpu];
    devices.extend(common::gpu("attention key lengths"));
    for d in [8, 5] {
        let mut messages = Vec::new();
        for device in &devices {
            let q = randn(&[4, 3, d], 1, DType::F32, device);
            let k = randn(&[4, 6, d], 2, DType::F32, device);
            let lengths = Tensor::from_vec(vec![6i32, 7, 2, -1], [4], device);
            let opts = AttentionOptions { key_lengths: Some(lengths), ..Default::default() };
            let out = q.attention_with(&k, &k, &opts);
            match out.to_f64_vec() {
                Err(e @ Error::OutOfRange(_)) => messages.push(e.to_string()),
                other => panic!("d {d} on {device}: {other:?}"),
            }
        }
        assert!(
            messages[0].contains("key length 7 (element 1) is out of range: valid values are 0 to 6"),
            "{}",
            messages[0]
        );
        assert!(messages.iter().all(|m| *m == messages[0]), "{messages:?}");
    }
}

/// Under `KILN_CHECK=1` every GPU node of masked attention — the fused passes with their
/// tolerances, and the unfused path, whose scores hold −∞ — is recomputed on the CPU and
/// accepted. Runs in a child process, with the variable set before any device exists.
#[test]
fn masked_attention_passes_the_run_time_cross_check() {
    const TEST: &str = "masked_attention_passes_the_run_time_cross_check";
    if std::env::var("KILN_CHECK").is_err() {
        let out = std::process::Command::new(std::env::current_exe().expect("the test binary"))
            .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
            .env("KILN_CHECK", "1")
            .output()
            .expect("a child run");
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && text.contains("1 passed"), "the child run failed:\n{text}");
        return;
    }
    let Some(gpu) = common::gpu("attention under KILN_CHECK=1") else {
        return;
    };
    for d in [8, 5] {
        let q = randn(&[2, 3, 7, d], 1, DType::F32, &gpu);
        let k = randn(&[2, 3, 9, d], 2, DType::F32, &gpu);
        let opts = AttentionOptions {
            causal: true,
            key_lengths: Some(Tensor::from_vec(vec![0i32, 6], [2, 1], &gpu)),
            mask: Some(mask_of(&[2, 1, 7, 9], true, DType::F32, &gpu)),
            dropout: Some((0.2, RandomKey { seed: 4, stream: 4 })),
            ..Default::default()
        };
        for unfused in [false, true] {
            let g = grads(&q, &k, &k, |q, k, v| match unfused {
                false => q.attention_with(k, v, &opts),
                true => q.attention_unfused_with(k, v, &opts).0,
            });
            assert!(g.iter().flatten().all(|x| x.is_finite()));
        }
    }
}

/// The unfused path's softmax over scores with several −∞ (hidden) entries: finite on the GPU
/// and equal to the CPU's, on the general kernel (odd rows), the one-pass kernel (rows of
/// multiples of 4, one of whose vec4s is all −∞) and rows longer than a workgroup.
#[test]
fn softmax_with_hidden_entries_matches_the_cpu_on_the_gpu() {
    let Some(gpu) = common::gpu("softmax with −∞") else {
        return;
    };
    for size in [5, 8, 600] {
        let rows = 3;
        let x: Vec<f32> = (0..rows * size)
            .map(|e| if e % size < 2 || e % size % 7 == 3 { e as f32 / 100.0 } else { f32::NEG_INFINITY })
            .collect();
        let softmax =
            |device: &Device| values(&Tensor::from_vec(x.clone(), [rows, size], device).softmax(-1));
        let (cpu, on_gpu) = (softmax(&Device::Cpu), softmax(&gpu));
        assert!(on_gpu.iter().all(|p| p.is_finite()), "size {size}: {on_gpu:?}");
        assert!(rel_err(&on_gpu, &cpu) < 1e-6, "size {size}");
    }
}

/// The heads of (…, T, 3·C) split out as `attention_packed` splits them, attended by
/// `attention_with` and joined again: (…, T, C).
fn split_attend_join(qkv: &Tensor, heads: usize, opts: &AttentionOptions) -> Tensor {
    let r = qkv.rank();
    let (t, width) = (qkv.dim(-2), qkv.dim(-1) / 3);
    let mut dims = qkv.dims()[..r - 1].to_vec();
    dims.extend([3, heads, width / heads]);
    // (…, T, 3, H, D) → (3, …, H, T, D)
    let mut perm = vec![r - 1];
    perm.extend(0..r - 2);
    perm.extend([r, r - 2, r + 1]);
    let split = qkv.reshape(dims).permute(&perm);
    let (q, k, v) = (split.select(0, 0), split.select(0, 1), split.select(0, 2));
    let y = q.attention_with(&k, &v, opts);
    // (…, H, T, D) → (…, T, H, D) → (…, T, C)
    let mut out = qkv.dims()[..r - 2].to_vec();
    out.extend([t, width]);
    y.transpose(-3, -2).reshape(out)
}

/// Packed heads give the values and the gradient of splitting them, attending and joining —
/// bit for bit on the CPU (the same per-head arithmetic), within f32 rounding on the GPU — with
/// the causal mask, dropout (the same draws) and head dimensions of the flash kernels (16) and
/// the general ones (5), over one and two batch dimensions.
#[test]
fn packed_heads_match_split_heads_with_their_gradient() {
    let mut devices = vec![(Device::Cpu, 0.0)];
    devices.extend(common::gpu("packed attention heads").map(|g| (g, 2e-5)));
    let dropout = Some((0.25, RandomKey { seed: 3, stream: 9 }));
    let problems: [(&[usize], usize, AttentionOptions); 4] = [
        (&[2, 7, 3 * 2 * 16], 2, AttentionOptions { causal: true, ..Default::default() }),
        (&[3, 9, 3 * 3 * 5], 3, AttentionOptions { causal: true, dropout, ..Default::default() }),
        (&[2, 2, 5, 3 * 2 * 4], 2, AttentionOptions { dropout, scale: Some(0.3), ..Default::default() }),
        (&[1, 1, 3 * 4 * 8], 4, AttentionOptions::default()),
    ];
    for (device, tol) in devices {
        for (n, (dims, heads, opts)) in problems.iter().enumerate() {
            let qkv = randn(dims, 40 + n as u64, DType::F32, &device);
            let packed = qkv.attention_packed(*heads, opts);
            let split = split_attend_join(&qkv, *heads, opts);
            assert_eq!(packed.dims(), split.dims());
            let (got, want) = (values(&packed), values(&split));
            let err = rel_err(&got, &want);
            assert!(err <= tol, "{device:?} {dims:?}, {heads} heads: {err:e}");
            let gradient = |f: &dyn Fn(&Tensor) -> Tensor| {
                let x = qkv.detach().requires_grad_();
                let out = f(&x);
                let r = randn(out.dims(), 7, DType::F32, &device);
                values((&out * &r).sum_all().backward().get(&x).expect("a gradient"))
            };
            let got = gradient(&|x| x.attention_packed(*heads, opts));
            let want = gradient(&|x| split_attend_join(x, *heads, opts));
            let err = rel_err(&got, &want);
            assert!(err <= tol * 5.0, "{device:?} {dims:?}, {heads} heads, gradient: {err:e}");
        }
    }
}

#[test]
fn packed_heads_refuse_what_they_do_not_take_at_the_callers_line() {
    let cpu = Device::Cpu;
    let qkv = Tensor::zeros([2, 5, 24], &cpu);
    let cases: [(usize, AttentionOptions, &str); 3] = [
        (
            5,
            AttentionOptions::default(),
            "qkv [2, 5, 24] (f32) must be float (…, T, 3·C) with C a multiple of 5 heads",
        ),
        (
            2,
            AttentionOptions {
                key_lengths: Some(Tensor::from_vec(vec![1i32, 2], [2], &cpu)),
                ..Default::default()
            },
            "key lengths and masks are not taken here",
        ),
        (
            2,
            AttentionOptions { dropout: Some((1.5, RandomKey { seed: 0, stream: 0 })), ..Default::default() },
            "dropout p must be in [0, 1), got 1.5",
        ),
    ];
    for (heads, opts, expected) in cases {
        let x = qkv.clone();
        let (msg, at) = common::panic_of(move || {
            let _ = x.attention_packed(heads, &opts);
        });
        let line = line!() - 2;
        assert!(msg.starts_with("attention_packed: ") && msg.contains(expected), "{msg}");
        assert_eq!(at, format!("tests/attention.rs:{line}"));
    }
}
