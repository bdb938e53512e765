//! Criterion benchmarks of the headline ops on the CPU and the GPU at small, medium and large
//! shapes. `cargo bench --bench ops -- matmul/gpu` runs one group on one device.
//!
//! The benchmark program (`cargo run --release --example bench`) adds the device's ceilings,
//! the fraction of them each op reaches, and the largest shapes (matmul 4096³, attention at
//! B=8 T=1024); this suite is for tracking changes over time.

mod common;

use common::{devices, randn, realize_each};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::ops::conv::ConvOptions;
use std::time::Duration;

/// Short sampling: large shapes take tens of milliseconds a run (seconds on a software GPU).
fn configured() -> Criterion {
    Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

fn matmul(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    for device in devices() {
        for n in [64, 256, 1024] {
            let (x, y) = (randn(&[n, n], 1, &device), randn(&[n, n], 2, &device));
            group.throughput(Throughput::Elements(2 * (n as u64).pow(3)));
            group.bench_function(BenchmarkId::new(device.to_string(), format!("{n}³")), |b| {
                realize_each(b, &device, || x.matmul(&y))
            });
        }
    }
}

/// Row-wise ops over (rows, cols): softmax, log-softmax and layernorm.
fn rowwise(c: &mut Criterion) {
    let mut group = c.benchmark_group("rowwise");
    for device in devices() {
        for (rows, cols) in [(64, 128), (1024, 1024), (2048, 4096)] {
            let x = randn(&[rows, cols], 3, &device);
            let (gain, bias) = (randn(&[cols], 4, &device), randn(&[cols], 5, &device));
            // one read and one write of the tensor
            group.throughput(Throughput::Bytes(8 * (rows * cols) as u64));
            let id = |op: &str| BenchmarkId::new(format!("{op}/{device}"), format!("{rows}x{cols}"));
            group.bench_function(id("softmax"), |b| realize_each(b, &device, || x.softmax(-1)));
            group.bench_function(id("log_softmax"), |b| realize_each(b, &device, || x.log_softmax(-1)));
            group.bench_function(id("layernorm"), |b| {
                realize_each(b, &device, || x.layer_norm(&[cols], Some(&gain), Some(&bias), 1e-5))
            });
        }
    }
}

fn conv2d(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    // (N, C_in → C_out, H = W, kernel)
    for device in devices() {
        for (n, cin, cout, hw, k) in [(1, 3, 8, 16, 3), (8, 32, 32, 28, 3), (8, 64, 64, 56, 3)] {
            let (img, w) = (randn(&[n, cin, hw, hw], 6, &device), randn(&[cout, cin, k, k], 7, &device));
            let options = ConvOptions::default().padding(k / 2);
            group.throughput(Throughput::Elements(2 * (n * cout * hw * hw * cin * k * k) as u64));
            let shape = format!("N{n} C{cin}->{cout} {hw}x{hw} k{k}");
            group.bench_function(BenchmarkId::new(device.to_string(), shape), |b| {
                realize_each(b, &device, || img.conv2d(&w, options))
            });
        }
    }
}

fn attention(c: &mut Criterion) {
    let mut group = c.benchmark_group("attention");
    for device in devices() {
        for (batch, heads, t, d) in [(1, 2, 32, 16), (2, 4, 128, 64), (2, 12, 256, 64)] {
            let qkv: Vec<_> = (0..3).map(|i| randn(&[batch, heads, t, d], 8 + i, &device)).collect();
            // causal: half of the 4·B·H·T²·D FLOPs of full attention
            group.throughput(Throughput::Elements(2 * (batch * heads * t * t * d) as u64));
            let shape = format!("B{batch} H{heads} T{t} D{d} causal");
            group.bench_function(BenchmarkId::new(device.to_string(), shape), |b| {
                realize_each(b, &device, || qkv[0].attention(&qkv[1], &qkv[2], true, None))
            });
        }
    }
}

/// Per-op overhead: 1,000 steps of two small elementwise ops, realized once.
fn elementwise_chain(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise chain");
    for device in devices() {
        let z0 = randn(&[256], 11, &device);
        group.throughput(Throughput::Elements(2000));
        group.bench_function(BenchmarkId::new(device.to_string(), "2000 ops on 256"), |b| {
            realize_each(b, &device, || (0..1000).fold(z0.clone(), |z, _| &z * 0.999 + 0.001))
        });
    }
}

criterion_group! {
    name = ops;
    config = configured();
    targets = matmul, rowwise, conv2d, attention, elementwise_chain
}
criterion_main!(ops);
