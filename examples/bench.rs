//! kiln's benchmark program: measures the device's ceilings with microkernels (an FMA-bound
//! kernel for FLOP/s, a copy kernel for GB/s), then prints a markdown table of the headline
//! ops — median time over many runs after warm-up, with the device synchronized — with their
//! rate and its fraction of the measured ceiling.
//!
//!     cargo run --release --example bench -- --device gpu
//!     cargo run --release --example bench -- --device cpu --small
//!
//! Rows have the same columns as the peer harnesses in `../shared/peers/` (plus the fraction
//! of ceiling), so one table can hold kiln, PyTorch and Burn from one machine and one run.

use clap::Parser;
use kiln::nn::{self, LSTM, Module, RnnOptions};
use kiln::ops::conv::ConvOptions;
use kiln::optim::{GradScaler, Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::{DType, Device, Tensor, amp};
use rayon::prelude::*;
use std::cell::RefCell;
use std::process::ExitCode;
use std::time::Instant;

/// Benchmark kiln's headline ops on one device.
#[derive(Parser, Debug)]
struct Cli {
    /// cpu, gpu or gpu:N [default: $KILN_DEVICE, else the best device]
    #[arg(long)]
    device: Option<String>,
    /// Divide the shapes by 4 (for CPUs and software adapters), as the peer harnesses do
    #[arg(long)]
    small: bool,
    /// Timed runs per row (the median is reported)
    #[arg(long, default_value_t = 10)]
    reps: usize,
    /// Only rows whose op name contains this
    #[arg(long)]
    only: Option<String>,
    /// After the fusion rows, list the kernels of one fused and one unfused step of each model
    #[arg(long)]
    dispatches: bool,
}

/// Measured throughput limits.
struct Ceilings {
    flops: f64,
    bytes: f64,
}

struct Bench {
    device: Device,
    reps: usize,
    ceilings: Ceilings,
    only: Option<String>,
    dispatches: bool,
}

enum Rate {
    Flops(f64),
    Bytes(f64),
    PerOp(usize),
}

impl Bench {
    /// Median milliseconds of `reps` runs of `f` (each building a fresh graph and realizing
    /// it, the device synchronized), after two warm-up runs.
    fn time(&self, f: impl Fn() -> Tensor) -> kiln::Result<f64> {
        let run = || -> kiln::Result<f64> {
            let t = Instant::now();
            f().realize()?;
            self.device.synchronize()?;
            Ok(t.elapsed().as_secs_f64() * 1e3)
        };
        run()?;
        run()?;
        let mut ms: Vec<f64> = (0..self.reps).map(|_| run()).collect::<kiln::Result<_>>()?;
        ms.sort_by(f64::total_cmp);
        Ok(ms[ms.len() / 2])
    }

    /// Median milliseconds to build and record `f`'s graph (realize without waiting for the
    /// device): the CPU cost of issuing the work.
    fn time_recording(&self, f: impl Fn() -> Tensor) -> f64 {
        let mut ms: Vec<f64> = (0..self.reps + 2)
            .map(|_| {
                let t = Instant::now();
                f().realize().expect("realize");
                let elapsed = t.elapsed().as_secs_f64() * 1e3;
                self.device.synchronize().expect("synchronize");
                elapsed
            })
            .skip(2)
            .collect();
        ms.sort_by(f64::total_cmp);
        ms[ms.len() / 2]
    }

    fn row(&self, op: &str, shape: String, f: impl Fn() -> Tensor, rate: Rate) {
        if self.only.as_ref().is_some_and(|o| !op.contains(o.as_str())) {
            return;
        }
        let version = env!("CARGO_PKG_VERSION");
        let ms = match self.time(f) {
            Ok(ms) => ms,
            // one shape too large for this device does not cost the rest of the table
            Err(e) => {
                return println!(
                    "| kiln {version} | {} | {op} | {shape} | - | failed: {e} | - |",
                    self.device
                );
            }
        };
        let (rate, fraction) = match rate {
            Rate::Flops(flop) => {
                let r = flop / ms / 1e6;
                (format!("{r:.1} GFLOP/s"), format!("{:.0}% of FMA", 100.0 * r * 1e9 / self.ceilings.flops))
            }
            Rate::Bytes(bytes) => {
                let r = bytes / ms / 1e6;
                (format!("{r:.1} GB/s"), format!("{:.0}% of copy", 100.0 * r * 1e9 / self.ceilings.bytes))
            }
            Rate::PerOp(ops) => (format!("{:.3} us/op", ms * 1e3 / ops as f64), "-".into()),
        };
        println!("| kiln {version} | {} | {op} | {shape} | {ms:.3} | {rate} | {fraction} |", self.device);
    }

    fn randn(&self, shape: &[usize], stream: u64) -> Tensor {
        let t = Tensor::normal(shape, 0.0, 1.0, RandomKey { seed: 42, stream }, &self.device);
        t.realize().expect("realize");
        t
    }
}

/// Eight independent vector FMA chains, `trips` times; returns a checksum. With AVX-512 each
/// chain is 16 lanes wide, with AVX2 8; otherwise a scalar fallback.
fn fma_chains(trips: usize, seed: f32) -> (f32, usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        if is_x86_feature_detected!("avx512f") {
            #[target_feature(enable = "avx512f")]
            unsafe fn run(trips: usize, seed: f32) -> f32 {
                let (m, c) = (_mm512_set1_ps(0.9999), _mm512_set1_ps(1e-4));
                let mut a = [_mm512_set1_ps(seed); 8];
                for _ in 0..trips {
                    for x in a.iter_mut() {
                        *x = _mm512_fmadd_ps(*x, m, c);
                    }
                }
                a.iter().map(|&x| _mm512_reduce_add_ps(x)).sum()
            }
            // SAFETY: AVX-512F was just detected.
            return (unsafe { run(trips, seed) }, 16);
        }
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn run(trips: usize, seed: f32) -> f32 {
                let (m, c) = (_mm256_set1_ps(0.9999), _mm256_set1_ps(1e-4));
                let mut a = [_mm256_set1_ps(seed); 8];
                for _ in 0..trips {
                    for x in a.iter_mut() {
                        *x = _mm256_fmadd_ps(*x, m, c);
                    }
                }
                let mut out = [0f32; 8];
                let sum = a.iter().fold(_mm256_setzero_ps(), |s, &x| _mm256_add_ps(s, x));
                // SAFETY: `out` holds 8 floats.
                unsafe { _mm256_storeu_ps(out.as_mut_ptr(), sum) };
                out.iter().sum()
            }
            // SAFETY: AVX2 and FMA were just detected.
            return (unsafe { run(trips, seed) }, 8);
        }
    }
    let mut a = [seed; 8];
    for _ in 0..trips {
        for x in a.iter_mut() {
            *x = *x * 0.9999 + 1e-4;
        }
    }
    (a.iter().sum(), 1)
}

/// The CPU's ceilings: independent vector FMA chains on every core, and a large parallel copy.
fn cpu_ceilings() -> Ceilings {
    let threads = rayon::current_num_threads();
    let trips = 20_000_000usize;
    let (_, lanes) = fma_chains(1000, 1.0); // warm up, and learn the vector width
    let t = Instant::now();
    let sum: f32 = (0..threads).into_par_iter().map(|i| fma_chains(trips, i as f32).0).sum();
    let flops = threads as f64 * trips as f64 * 8.0 * lanes as f64 * 2.0 / t.elapsed().as_secs_f64();
    std::hint::black_box(sum);
    let n = 64 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        dst.par_chunks_mut(1 << 20).zip(src.par_chunks(1 << 20)).for_each(|(d, s)| d.copy_from_slice(s));
        best = best.min(t.elapsed().as_secs_f64());
    }
    std::hint::black_box(&dst);
    Ceilings { flops, bytes: 2.0 * n as f64 / best }
}

/// Prints the GPU dispatches of the LSTM row's forward and backward (2 layers, 128 steps) and
/// of one whole training step of the `char_lstm` example's model (embedding, LSTM, head,
/// cross-entropy, clipping, Adam), each per time step too: what 128 steps take more than 64,
/// over 64. Counts do not depend on the sizes, so tiny ones keep this quick on any adapter.
fn lstm_dispatches(device: &Device) -> kiln::Result<()> {
    use kiln::models::{CharRnn, CharRnnConfig};
    use kiln::optim::{Optimizer, Rule, clip_grad_norm};
    let count = |seq: usize| -> kiln::Result<(u64, u64, u64)> {
        kiln::manual_seed(0);
        let lstm = LSTM::new(8, 8, RnnOptions::default().num_layers(2), device);
        let x = Tensor::randn([seq, 2, 8], device).requires_grad_();
        x.realize()?;
        let before = kiln::debug::gpu_dispatches();
        let out = lstm.forward(&x);
        out.realize()?;
        let forward = kiln::debug::gpu_dispatches() - before;
        let grads = out.sum_all().backward();
        let all: Vec<Tensor> =
            nn::parameters(&lstm).iter().filter_map(|(_, p)| grads.get(p).cloned()).collect();
        let before = kiln::debug::gpu_dispatches();
        Tensor::realize_all(&all)?;
        let backward = kiln::debug::gpu_dispatches() - before;
        let config = CharRnnConfig { vocab_size: 65, embedding: 8, hidden: 8, layers: 2, dropout: 0.0 };
        let model = CharRnn::new(config, device);
        let mut optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-3);
        let ids: Vec<i32> = (0..2 * seq as i32).map(|i| i % 65).collect();
        let ids = Tensor::from_vec(ids, [2, seq], device);
        nn::parameters(&model).iter().try_for_each(|(_, p)| p.realize())?;
        ids.realize()?;
        let before = kiln::debug::gpu_dispatches();
        let logits = model.forward(&ids);
        let loss = kiln::nn::loss::sequence_cross_entropy(&logits, &ids, None);
        let mut grads = loss.backward();
        clip_grad_norm(&mut grads, optimizer.params(), 1.0);
        optimizer.step_with(&grads, &[loss])?;
        Ok((forward, backward, kiln::debug::gpu_dispatches() - before))
    };
    let ((f64_, b64, t64), (f128, b128, t128)) = (count(64)?, count(128)?);
    let per_step = |short: u64, long: u64| (long - short) as f64 / 64.0;
    println!(
        "\nGPU dispatches, 2-layer LSTM over 128 steps: forward {f128} ({:.1} per time step), backward {b128} \
         ({:.1} per time step); a char_lstm training step: {t128} ({:.1} per time step)",
        per_step(f64_, f128),
        per_step(b64, b128),
        per_step(t64, t128)
    );
    Ok(())
}

/// Prints the peak memory of one training step (batch 128, Adam) of the MNIST MLP and LeNet-5
/// beside what the step cannot do without: the parameters, their gradients, the optimizer's
/// state, the batch and the activations the graph keeps for the backward pass (what is live
/// once the loss is computed, less what was live before). The step runs once first so that the
/// optimizer's state exists.
fn step_memory(device: &Device) -> kiln::Result<()> {
    let mlp = |device: &Device| -> Box<dyn Module> { Box::new(kiln::models::mnist_mlp(device)) };
    let lenet = |device: &Device| -> Box<dyn Module> { Box::new(kiln::models::lenet5(device)) };
    type Build<'a> = &'a dyn Fn(&Device) -> Box<dyn Module>;
    let models: [(&str, Build); 2] = [("mnist mlp", &mlp), ("lenet5", &lenet)];
    println!("\nmemory of one training step on {device} (batch 128, Adam), MiB:");
    println!(
        "| model | parameters + gradients | optimizer state + batch | kept activations | sum | peak | peak / sum |"
    );
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    for (name, build) in models {
        kiln::manual_seed(0);
        let base = device.memory()?.live_bytes;
        let model = build(device);
        let x = Tensor::randn([128, 1, 28, 28], device);
        let y = Tensor::from_vec((0..128).map(|i| i % 10).collect::<Vec<i32>>(), [128], device);
        let mut optimizer = Optimizer::new(nn::parameters(model.as_ref()), Rule::adam(), 1e-3);
        // (bytes live before the step, kept by the forward for the backward, peak of the step)
        let mut step = || -> kiln::Result<(u64, u64, u64)> {
            let before = device.memory()?.live_bytes;
            let loss = model.forward(&x).cross_entropy(&y);
            loss.realize()?;
            let kept = device.memory()?.live_bytes - before;
            device.reset_peak_memory()?;
            optimizer.step_with(&loss.backward(), std::slice::from_ref(&loss))?;
            Ok((before, kept, device.memory()?.peak_bytes))
        };
        step()?;
        let (before, kept, peak) = step()?;
        let params: u64 = nn::parameters(model.as_ref()).iter().map(|(_, p)| (p.numel() * 4) as u64).sum();
        // parameters, optimizer state and batch; then the gradients and the kept activations
        let (held, sum) = (before - base, before - base + params + kept);
        let mib = |b: u64| b as f64 / (1 << 20) as f64;
        println!(
            "| {name} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
            mib(2 * params),
            mib(held - params),
            mib(kept),
            mib(sum),
            mib(peak - base),
            (peak - base) as f64 / sum as f64
        );
    }
    Ok(())
}

/// A model's training loss on a fixed batch, and its parameters.
type LossOf = (Box<dyn Fn() -> Tensor>, Vec<(String, Tensor)>);

/// The models of the fusion table: the MNIST MLP and LeNet-5 at batch 128, and the char-GPT of
/// `char_gpt --preset cpu` (batch 12 of 64 characters).
fn fusion_models(device: &Device) -> Vec<(&'static str, LossOf)> {
    let images = Tensor::randn([128, 1, 28, 28], device);
    let labels = Tensor::from_vec((0..128).map(|i| i % 10).collect::<Vec<i32>>(), [128], device);
    let classifier = |model: Box<dyn Module>| -> LossOf {
        let params = nn::parameters(model.as_ref());
        let (x, y) = (images.clone(), labels.clone());
        (Box::new(move || model.forward(&x).cross_entropy(&y)), params)
    };
    let gpt = kiln::models::gpt::Gpt::new(kiln::models::gpt::GptConfig::shakespeare_cpu(65), device);
    let ids = |shift: i32| {
        Tensor::from_vec((0..12 * 64).map(|i| (i * 7 + shift) % 65).collect::<Vec<i32>>(), [12, 64], device)
    };
    let (inputs, targets) = (ids(0), ids(1));
    let gpt_params = nn::parameters(&gpt);
    vec![
        ("mnist mlp", classifier(Box::new(kiln::models::mnist_mlp(device)))),
        ("lenet5", classifier(Box::new(kiln::models::lenet5(device)))),
        ("char-gpt cpu preset", (Box::new(move || gpt.loss(&inputs, &targets)), gpt_params)),
    ]
}

/// Prints, for one training step (Adam) of the models of [`fusion_models`], the GPU dispatches
/// (on a GPU) and the median time of a step with fusion of elementwise chains on and off
/// (`kiln::set_fusion`, as `KILN_FUSE=0`), fused and unfused steps alternating. Each runs
/// twice first: the optimizer's state exists and every kernel is compiled. With `list`, then
/// prints how often each kernel ran in one fused and one unfused step.
fn step_fusion(device: &Device, reps: usize, list: bool) -> kiln::Result<()> {
    println!("\nfusion of elementwise chains, one training step on {device} (Adam):");
    println!("| model | dispatches fused | dispatches unfused | fewer | ms fused | ms unfused | speed-up |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    kiln::manual_seed(0);
    for (name, (loss_of, params)) in fusion_models(device) {
        let mut optimizer = Optimizer::new(params, Rule::adam(), 1e-3);
        let mut step = |on: bool| -> kiln::Result<()> {
            kiln::set_fusion(on);
            let loss = loss_of();
            optimizer.step_with(&loss.backward(), std::slice::from_ref(&loss))
        };
        let [(d_on, ms_on), (d_off, ms_off)] = alternate(device, reps, &mut step)?;
        if list && device.is_gpu() {
            for on in [true, false] {
                kiln::debug::log_gpu_dispatches(true);
                step(on)?;
                device.synchronize()?;
                print_kernel_counts(
                    &format!("{name}, fusion {}", if on { "on" } else { "off" }),
                    kiln::debug::log_gpu_dispatches(false),
                );
            }
        }
        kiln::set_fusion(true);
        let dispatches = |d: u64| if device.is_gpu() { d.to_string() } else { "-".into() };
        let fewer = if device.is_gpu() { format!("{:.2}×", d_off as f64 / d_on as f64) } else { "-".into() };
        println!(
            "| {name} | {} | {} | {fewer} | {ms_on:.2} | {ms_off:.2} | {:.2}× |",
            dispatches(d_on),
            dispatches(d_off),
            ms_off / ms_on
        );
    }
    Ok(())
}

/// Prints each kernel of `names` with how often it ran, most frequent first.
fn print_kernel_counts(title: &str, names: Vec<String>) {
    if std::env::var("ORDER").is_ok() {
        for (i, n) in names.iter().enumerate() {
            eprintln!("{i:4} {n}");
        }
    }
    let mut counts: Vec<(String, usize)> = Vec::new();
    for name in names {
        match counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, c)) => *c += 1,
            None => counts.push((name, 1)),
        }
    }
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    println!("\n{title}: {} dispatches", counts.iter().map(|c| c.1).sum::<usize>());
    for (name, count) in counts {
        println!("  {count:4}  {name}");
    }
}

/// Runs `step(true)` and `step(false)` alternately (so that both see the same machine), twice
/// each first (state created, kernels compiled), then `reps` times each; returns for each the
/// GPU dispatches of one step and its median time in ms.
fn alternate(
    device: &Device,
    reps: usize,
    mut step: impl FnMut(bool) -> kiln::Result<()>,
) -> kiln::Result<[(u64, f64); 2]> {
    let mut runs: [Vec<(u64, f64)>; 2] = [Vec::new(), Vec::new()];
    for rep in 0..reps + 2 {
        for (k, first) in [true, false].into_iter().enumerate() {
            let start = Instant::now();
            let before = kiln::debug::gpu_dispatches();
            step(first)?;
            device.synchronize()?;
            let run = (kiln::debug::gpu_dispatches() - before, start.elapsed().as_secs_f64() * 1e3);
            if rep >= 2 {
                runs[k].push(run);
            }
        }
    }
    Ok(runs.map(|r| {
        let mut ms: Vec<f64> = r.iter().map(|x| x.1).collect();
        ms.sort_by(f64::total_cmp);
        (r[0].0, ms[ms.len() / 2])
    }))
}

/// Prints, for one training step (Adam) of the models of [`fusion_models`], the GPU dispatches
/// and the median time of a mixed-precision step (f16 autocast, loss scaling: one value read
/// back per step) beside an f32 one, alternating.
fn step_mixed_precision(device: &Device, reps: usize) -> kiln::Result<()> {
    println!(
        "
mixed precision, one training step on {device} (Adam):"
    );
    if !device.supports_f16()? {
        println!("(no shader-f16 on this adapter)");
        return Ok(());
    }
    println!("| model | dispatches f32 | dispatches mixed | ms f32 | ms mixed | speed-up |");
    println!("| --- | --- | --- | --- | --- | --- |");
    kiln::manual_seed(0);
    for (name, (loss_of, params)) in fusion_models(device) {
        let mut optimizer = Optimizer::new(params, Rule::adam(), 1e-3);
        let mut scaler = GradScaler::new();
        let step = |full: bool| -> kiln::Result<()> {
            if full {
                let loss = loss_of();
                return optimizer.step_with(&loss.backward(), std::slice::from_ref(&loss));
            }
            let loss = {
                let _autocast = amp::autocast(DType::F16);
                loss_of()
            };
            let mut grads = scaler.scale(&loss).backward();
            scaler.step(&mut optimizer, &mut grads)?;
            scaler.update();
            Ok(())
        };
        let [(d32, ms32), (d16, ms16)] = alternate(device, reps, step)?;
        let dispatches = |d: u64| if device.is_gpu() { d.to_string() } else { "-".into() };
        println!(
            "| {name} | {} | {} | {ms32:.2} | {ms16:.2} | {:.2}× |",
            dispatches(d32),
            dispatches(d16),
            ms32 / ms16
        );
    }
    Ok(())
}

/// The row reductions on both GPU paths — subgroup operations (the default where the adapter has
/// them) and workgroup-memory trees — over short rows, where the reduction across the workgroup
/// is most of the work (a Transformer's layer norm and attention softmax at width 256).
fn reduction_paths(b: &Bench, s: usize) -> kiln::Result<()> {
    if !b.device.set_subgroups(true)? {
        println!("| - | {} | row reductions | - | - | no subgroups on this adapter | - |", b.device);
        return Ok(());
    }
    let (rows, cols) = (32768 / s, 256);
    let shape = format!("{rows}x{cols}");
    let x = b.randn(&[rows, cols], 14);
    let (g, beta) = (b.randn(&[cols], 15), b.randn(&[cols], 16));
    let labels: Vec<i32> = (0..rows as i32).map(|i| i % cols as i32).collect();
    let labels = Tensor::from_vec(labels, [rows], &b.device);
    let (read, read_write) = (4.0 * (rows * cols) as f64, 8.0 * (rows * cols) as f64);
    for on in [true, false] {
        b.device.set_subgroups(on)?;
        let path = if on { "subgroups" } else { "workgroup tree" };
        b.row(&format!("softmax rows, {path}"), shape.clone(), || x.softmax(-1), Rate::Bytes(read_write));
        let layer_norm = || x.layer_norm(&[cols], Some(&g), Some(&beta), 1e-5);
        b.row(&format!("layernorm rows, {path}"), shape.clone(), layer_norm, Rate::Bytes(read_write));
        let cross_entropy = || x.cross_entropy_per_row(&labels, Default::default());
        b.row(&format!("cross_entropy rows, {path}"), shape.clone(), cross_entropy, Rate::Bytes(read));
        b.row(&format!("sum rows, {path}"), shape.clone(), || x.sum_axes(&[1], false), Rate::Bytes(read));
    }
    b.device.set_subgroups(true)?;
    Ok(())
}

fn main() -> ExitCode {
    kiln::error::exit_code(run())
}

fn run() -> kiln::Result<()> {
    let cli = Cli::parse();
    let device = match &cli.device {
        Some(name) => Device::parse(name)?,
        None => Device::from_env()?,
    };
    let ceilings = match device {
        Device::Cpu => cpu_ceilings(),
        Device::Gpu(n) => {
            let c = kiln::backend::wgpu::ceiling::measure(n)?;
            Ceilings { flops: c.flops, bytes: c.bytes }
        }
    };
    println!("device: {} — {}", device, device.describe()?);
    println!(
        "ceilings: {:.1} GFLOP/s (FMA-bound microkernel), {:.1} GB/s (copy microkernel)\n",
        ceilings.flops / 1e9,
        ceilings.bytes / 1e9
    );
    println!("| framework | device | op | shape | ms | rate | of ceiling |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let b = Bench { device, reps: cli.reps, ceilings, only: cli.only, dispatches: cli.dispatches };
    let s = if cli.small { 4 } else { 1 };

    for n in [1024 / s, 4096 / s] {
        let (x, y) = (b.randn(&[n, n], 1), b.randn(&[n, n], 2));
        b.row("matmul", format!("{n}x{n}x{n}"), || x.matmul(&y), Rate::Flops(2.0 * (n as f64).powi(3)));
        if b.device.supports_f16()? {
            let (x, y) = (x.cast(DType::F16), y.cast(DType::F16));
            Tensor::realize_all(&[x.clone(), y.clone()])?;
            let flop = Rate::Flops(2.0 * (n as f64).powi(3));
            b.row("matmul f16 (f32 accumulation)", format!("{n}x{n}x{n}"), || x.matmul(&y), flop);
        }
    }

    // a linear layer's three products, transposes read in place: the char-GPT's MLP (12 × 64
    // tokens, 128 → 512) and an LSTM layer's input projection (32 × 128 steps, 256 → 4 · 256)
    for (m, k, n) in [(768, 128, 512), (4096, 256, 1024)] {
        let (x, w, dy) = (b.randn(&[m, k], 8), b.randn(&[n, k], 9), b.randn(&[m, n], 10));
        let flop = || Rate::Flops(2.0 * (m * k * n) as f64);
        b.row("linear x·Wᵀ", format!("{m}x{k} · ({n}x{k})ᵀ"), || x.matmul(&w.t()), flop());
        b.row("linear dY·W", format!("{m}x{n} · {n}x{k}"), || dy.matmul(&w), flop());
        b.row("linear dYᵀ·X", format!("({m}x{n})ᵀ · {m}x{k}"), || dy.t().matmul(&x), flop());
    }

    let (rows, cols) = (8192 / s, 4096 / s);
    let x = b.randn(&[rows, cols], 3);
    let bytes = 2.0 * 4.0 * (rows * cols) as f64;
    b.row("softmax", format!("{rows}x{cols}"), || x.softmax(-1), Rate::Bytes(bytes));
    let (g, beta) = (b.randn(&[cols], 4), b.randn(&[cols], 5));
    b.row(
        "layernorm",
        format!("{rows}x{cols}"),
        || x.layer_norm(&[cols], Some(&g), Some(&beta), 1e-5),
        Rate::Bytes(bytes),
    );
    b.row("copy", format!("{rows}x{cols}"), || &x * 1.0, Rate::Bytes(bytes));
    if b.device.is_gpu() {
        reduction_paths(&b, s)?;
    }

    let (n, c, hw) = (32 / s, 64, 56);
    let (img, w) = (b.randn(&[n, c, hw, hw], 6), b.randn(&[c, c, 3, 3], 7));
    let flop = 2.0 * (n * c * hw * hw * c * 9) as f64;
    b.row(
        "conv2d",
        format!("N{n} C{c}->{c} {hw}x{hw} k3"),
        || img.conv2d(&w, ConvOptions::default().padding(1)),
        Rate::Flops(flop),
    );

    let (bt, h, t, d) = ((8 / s).max(1), 12, 1024 / s, 64);
    let (q, k, v) = (b.randn(&[bt, h, t, d], 8), b.randn(&[bt, h, t, d], 9), b.randn(&[bt, h, t, d], 10));
    // causal: half of the 4·B·H·T²·D FLOPs of full attention
    let flop = 2.0 * (bt * h * t * t * d) as f64;
    let shape = format!("B{bt} H{h} T{t} D{d}");
    b.row("attention causal", shape.clone(), || q.attention(&k, &v, true, None), Rate::Flops(flop));
    b.row("attention causal (unfused)", shape, || q.attention_unfused(&k, &v, true, None), Rate::Flops(flop));

    // the recurrent row, as `benches/peers/torch_lstm.py` runs `nn.LSTM`: forward and
    // backward of the sum of the output, at the shape whatever --small says (the peer
    // has one shape)
    let (layers, batch, seq, size) = (2, 32, 128, 256);
    kiln::manual_seed(0);
    let lstm = LSTM::new(size, size, RnnOptions::default().num_layers(layers), &b.device);
    let x = b.randn(&[seq, batch, size], 12).requires_grad_();
    let forward_backward = || {
        let grads = lstm.forward(&x).sum_all().backward();
        let mut wanted: Vec<Tensor> =
            nn::parameters(&lstm).iter().filter_map(|(_, p)| grads.get(p).cloned()).collect();
        wanted.extend(grads.get(&x).cloned());
        Tensor::realize_all(&wanted).expect("realize");
        wanted.pop().expect("the input's gradient")
    };
    // per time step and layer: 4 gate GEMMs of (B×size)(size×4H) forward, twice that backward
    let flop = (3 * 2 * layers * seq * batch * (size + size) * 4 * size) as f64;
    b.row("lstm fwd+bwd", format!("L{layers} B{batch} T{seq} H{size}"), forward_backward, Rate::Flops(flop));
    if b.device.is_gpu() && b.only.as_ref().is_none_or(|o| "lstm dispatches".contains(o.as_str())) {
        lstm_dispatches(&b.device)?;
    }

    // one training step (forward, cross-entropy, backward, SGD with Nesterov momentum) of the
    // CNN issue's two models at batch 128, as `benches/peers/torch_cifar.py --step-bench`;
    // FLOPs: 3 × 2 × the multiply-adds of a forward (LeNet-5 416,520 per 28×28 image,
    // ResNet-20 40.55M per 32×32 image)
    kiln::manual_seed(0);
    let lenet = kiln::models::lenet5(&b.device);
    let resnet = kiln::models::resnet20(10, &b.device);
    let steps: [(&str, &dyn Module, [usize; 4], f64); 2] = [
        ("lenet5 step", &lenet, [128, 1, 28, 28], 416_520.0),
        ("resnet20 step", &resnet, [128, 3, 32, 32], 40.55e6),
    ];
    for (name, model, shape, macs) in steps {
        let x = b.randn(&shape, 13);
        let labels: Vec<i32> = (0..shape[0] as i32).map(|i| i % 10).collect();
        let y = Tensor::from_vec(labels, [shape[0]], &b.device);
        let rule = Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 };
        let optimizer = RefCell::new(Optimizer::new(nn::parameters(model), rule, 0.01));
        let step = || {
            let loss = model.forward(&x).cross_entropy(&y);
            optimizer.borrow_mut().step_with(&loss.backward(), std::slice::from_ref(&loss)).expect("step");
            loss
        };
        b.row(name, format!("batch {}", shape[0]), step, Rate::Flops(6.0 * macs * shape[0] as f64));
    }

    if b.only.as_ref().is_none_or(|o| "step memory".contains(o.as_str())) {
        step_memory(&b.device)?;
    }
    if b.only.as_ref().is_none_or(|o| "step fusion".contains(o.as_str())) {
        step_fusion(&b.device, b.reps, b.dispatches)?;
    }
    if b.only.as_ref().is_none_or(|o| "step mixed precision".contains(o.as_str())) {
        step_mixed_precision(&b.device, b.reps)?;
    }

    let z0 = b.randn(&[256], 11).cast(DType::F32);
    let chain = || {
        let mut z = z0.clone();
        for _ in 0..1000 {
            z = &z * 0.999 + 0.001;
        }
        z
    };
    b.row("1000 small elementwise ops", "256".into(), chain, Rate::PerOp(2000));
    if b.only.as_ref().is_none_or(|o| "recording".contains(o.as_str())) {
        let ms = b.time_recording(chain);
        println!(
            "| kiln {} | {} | recording overhead (build + record, no wait) | 256 | {ms:.3} | {:.3} us/op | - |",
            env!("CARGO_PKG_VERSION"),
            b.device,
            ms * 1e3 / 2000.0
        );
    }
    Ok(())
}
