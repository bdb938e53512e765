//! Criterion benchmarks of one training step (forward, backward, Adam update) of the MNIST
//! MLP and LeNet-5 of the examples, on synthetic batches, on the CPU and the GPU; one step of
//! ResNet-20 on the CPU (SGD, beside `benches/peers/torch_cifar.py --step-bench`); and the
//! forward and backward passes of the 2-layer LSTM (batch 32, sequence 128, input and
//! hidden 256) on the CPU, beside `benches/peers/torch_lstm.py`.

mod common;

use common::{devices, randn};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use kiln::nn::{self, LSTM, Module, RnnOptions, Sequential};
use kiln::optim::{Optimizer, Rule};
use kiln::{Device, Tensor};
use std::time::Duration;

fn step(c: &mut Criterion) {
    const BATCH: usize = 128;
    let mut group = c.benchmark_group("training step");
    group.throughput(Throughput::Elements(BATCH as u64));
    type Model = fn(&Device) -> Sequential;
    for device in devices() {
        for (name, model) in
            [("mnist mlp", kiln::models::mnist_mlp as Model), ("lenet-5", kiln::models::lenet5 as Model)]
        {
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

/// One step of ResNet-20 (batch 128, 32×32, SGD with Nesterov momentum as the `cifar10`
/// example) on the CPU, beside `benches/peers/torch_cifar.py --step-bench` (on a software GPU
/// adapter it would take minutes per sample).
fn resnet(c: &mut Criterion) {
    const BATCH: usize = 128;
    let device = Device::Cpu;
    kiln::manual_seed(0);
    let model = kiln::models::resnet20(10, &device);
    let rule = Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 5e-4 };
    let mut optimizer = Optimizer::new(nn::parameters(&model), rule, 0.1);
    let images = randn(&[BATCH, 3, 32, 32], 3, &device);
    let labels: Vec<i32> = (0..BATCH as i32).map(|i| i * 7 % 10).collect();
    let labels = Tensor::from_slice(&labels, [BATCH], &device);
    let mut group = c.benchmark_group("training step");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function(BenchmarkId::new(device.to_string(), format!("resnet-20, batch {BATCH}")), |b| {
        b.iter(|| {
            let loss = model.forward(&images).cross_entropy(&labels);
            optimizer.step(&loss.backward()).expect("step");
            loss.item::<f32>().expect("loss")
        })
    });
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
    targets = step, resnet, lstm
}
criterion_main!(training);
