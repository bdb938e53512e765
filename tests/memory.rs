//! A training loop's memory stays flat: after each step the graph of that step is gone, so the
//! number of live nodes and buffers does not grow with the number of steps.

mod common;

use kiln::debug::{gpu_buffers_created, live_cpu_buffers, live_gpu_buffers, live_nodes};
use kiln::{Device, Tensor, no_grad};

/// One step of least squares by gradient descent: forward, backward, in-place update.
fn step(x: &Tensor, y: &Tensor, w: &Tensor, b: &Tensor) {
    let pred = x.matmul(w) + b;
    let loss = (pred - y).square().mean_all();
    let grads = loss.backward();
    let (gw, gb) = (grads.get(w).unwrap(), grads.get(b).unwrap());
    let (nw, nb) = no_grad(|| (w - &(gw * 0.05), b - &(gb * 0.05)));
    Tensor::realize_all(&[nw.clone(), nb.clone()]).unwrap();
    w.assign(&nw).unwrap();
    b.assign(&nb).unwrap();
}

fn problem(device: &Device) -> (Tensor, Tensor, Tensor, Tensor) {
    kiln::manual_seed(3);
    let x = Tensor::randn([32, 8], device);
    let true_w = Tensor::randn([8, 1], device);
    let y = x.matmul(&true_w);
    y.realize().unwrap();
    let w = Tensor::zeros([8, 1], device).requires_grad_();
    let b = Tensor::zeros([1], device).requires_grad_();
    w.realize().unwrap();
    b.realize().unwrap();
    (x, y, w, b)
}

#[test]
fn ten_thousand_cpu_steps_keep_nodes_and_buffers_flat() {
    let (x, y, w, b) = problem(&Device::Cpu);
    for _ in 0..100 {
        step(&x, &y, &w, &b);
    }
    let (nodes, buffers) = (live_nodes(), live_cpu_buffers());
    for _ in 100..10_000 {
        step(&x, &y, &w, &b);
    }
    // other tests in this binary run in parallel; allow their small, bounded noise
    assert!(live_nodes() <= nodes + 50, "live nodes grew from {nodes} to {}", live_nodes());
    assert!(live_cpu_buffers() <= buffers + 50, "CPU buffers grew from {buffers} to {}", live_cpu_buffers());
    let loss = (x.matmul(&w) + &b - &y).square().mean_all().item::<f32>().unwrap();
    assert!(loss < 1e-6, "the loop did not train: loss {loss}");
}

#[test]
fn gpu_steps_reuse_pooled_buffers() {
    let Some(gpu) = common::gpu("memory on the GPU") else {
        return;
    };
    let (x, y, w, b) = problem(&gpu);
    for _ in 0..50 {
        step(&x, &y, &w, &b);
    }
    let (created, live) = (gpu_buffers_created(0).unwrap(), live_gpu_buffers());
    for _ in 50..2_000 {
        step(&x, &y, &w, &b);
    }
    assert_eq!(gpu_buffers_created(0).unwrap(), created, "the pool kept creating buffers");
    assert!(live_gpu_buffers() <= live, "live GPU buffers grew from {live} to {}", live_gpu_buffers());
    let loss = (x.matmul(&w) + &b - &y).square().mean_all().item::<f32>().unwrap();
    assert!(loss < 1e-4, "the loop did not train: loss {loss}");
}
