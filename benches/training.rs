//! Criterion benchmarks of one training step (forward, backward, Adam update) of the MNIST
//! MLP and LeNet-5 of the examples, on synthetic batches, on the CPU and the GPU; and forward +
//! backward of the 2-layer LSTM (batch 32, sequence 128, input and hidden 256) on the
//! CPU, beside `benches/peers/torch_lstm.py`.

mod common;

use common::{devices, randn};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::nn::{
    self, Conv2d, Dropout, Flatten, LSTM, Linear, MaxPool2d, Module, ReLU, RnnOptions, Sequential,
};
use kiln::ops::conv::ConvOptions;
use kiln::ops::pool::PoolOptions;
use kiln::optim::{Optimizer, Rule};
use kiln::{Device, Tensor};
use std::time::Duration;

/// The `mnist_mlp` example's model: 784 → 512 → 256 → 10 with ReLU and dropout.
fn mlp(device: &Device) -> Sequential {
    Sequential::new()
        .add(Flatten)
        .add(Linear::new(784, 512, device))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(512, 256, device))
        .add(ReLU)
        .add(Dropout::new(0.2))
        .add(Linear::new(256, 10, device))
}

/// The `mnist_lenet` example's LeNet-5.
fn lenet(device: &Device) -> Sequential {
    let pool = MaxPool2d(PoolOptions::new(2));
    Sequential::new()
        .add(Conv2d::new(1, 6, 5, ConvOptions::default().padding(2), device)) // (N, 6, 28, 28)
        .add(ReLU)
        .add(pool) // (N, 6, 14, 14)
        .add(Conv2d::new(6, 16, 5, ConvOptions::default(), device)) // (N, 16, 10, 10)
        .add(ReLU)
        .add(pool) // (N, 16, 5, 5)
        .add(Flatten)
        .add(Linear::new(16 * 5 * 5, 120, device))
        .add(ReLU)
        .add(Linear::new(120, 84, device))
        .add(ReLU)
        .add(Linear::new(84, 10, device))
}

fn step(c: &mut Criterion) {
    const BATCH: usize = 128;
    let mut group = c.benchmark_group("training step");
    group.throughput(Throughput::Elements(BATCH as u64));
    type Model = fn(&Device) -> Sequential;
    for device in devices() {
        for (name, model) in [("mnist mlp", mlp as Model), ("lenet-5", lenet as Model)] {
            kiln::manual_seed(0);
            let model = model(&device);
            let mut optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-3);
            let images = randn(&[BATCH, 1, 28, 28], 1, &device);
            let labels: Vec<i32> = (0..BATCH as i32).map(|i| i * 7 % 10).collect();
            let labels = Tensor::from_slice(&labels, [BATCH], &device);
            let id = BenchmarkId::new(device.to_string(), format!("{name}, batch {BATCH}"));
            group.bench_function(id, |b| {
                b.iter(|| {
                    let loss = model.forward(&images).cross_entropy(&labels);
                    optimizer.step(&loss.backward()).expect("step");
                    // reading the loss waits for the step, as a training loop's logging does
                    loss.item::<f32>().expect("loss")
                })
            });
        }
    }
}

/// The LSTM row on the CPU (on a software GPU adapter it would take minutes per sample).
fn lstm(c: &mut Criterion) {
    let (layers, batch, seq, size) = (2, 32, 128, 256);
    let device = Device::Cpu;
    kiln::manual_seed(0);
    let lstm = LSTM::new(size, size, RnnOptions::default().num_layers(layers), &device);
    let x = randn(&[seq, batch, size], 2, &device).requires_grad_();
    let params: Vec<Tensor> = nn::parameters(&lstm).into_iter().map(|(_, p)| p).collect();
    let mut group = c.benchmark_group("lstm fwd+bwd");
    group.throughput(Throughput::Elements((batch * seq) as u64));
    let id = BenchmarkId::new(device.to_string(), format!("L{layers} B{batch} T{seq} H{size}"));
    group.bench_function(id, |b| {
        b.iter(|| {
            let grads = lstm.forward(&x).sum_all().backward();
            let mut wanted: Vec<Tensor> = params.iter().filter_map(|p| grads.get(p).cloned()).collect();
            wanted.extend(grads.get(&x).cloned());
            Tensor::realize_all(&wanted).expect("realize");
        })
    });
}

criterion_group! {
    name = training;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(3));
    targets = step, lstm
}
criterion_main!(training);
