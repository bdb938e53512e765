//! Liveness within a realize: the backward pass frees each gradient at its last use, so its
//! peak memory is what the forward pass kept plus a few buffers, not one buffer per layer.
//! (One test in a binary of its own: [`Device::memory`] counts every thread's tensors, and tests running in
//! parallel would move the peak.)

mod common;

use kiln::{Device, Tensor};

/// Bytes the backward pass of a `layers`-deep chain of tanh ending in a cross-entropy needs
/// beyond what was live when it started, and the bytes of one activation.
fn backward_overhead(device: &Device, layers: usize) -> (u64, u64) {
    kiln::manual_seed(5);
    let x = Tensor::randn([64, 10], device).requires_grad_();
    let targets = Tensor::from_vec((0..64).map(|i| i % 10).collect::<Vec<i32>>(), [64], device);
    Tensor::realize_all(&[x.clone(), targets.clone()]).unwrap();
    let mut h = x.clone();
    for _ in 0..layers {
        h = h.tanh();
    }
    // the cross-entropy checks its targets on the GPU: its nodes are watched for a fault
    let loss = h.cross_entropy(&targets);
    loss.realize().unwrap();
    let before = device.memory().unwrap().live_bytes;
    device.reset_peak_memory().unwrap();
    let grad = loss.backward().get(&x).unwrap().clone();
    grad.realize().unwrap();
    (device.memory().unwrap().peak_bytes - before, 64 * 10 * 4)
}

fn check(device: &Device) {
    let (overhead, activation) = backward_overhead(device, 32);
    // the gradient flowing back, its successor and d tanh = 1 − y²'s temporaries: a handful of
    // activations whatever the depth (keeping each layer's gradient to the end would be 32)
    assert!(
        overhead <= 6 * activation,
        "on {device}, the backward pass of 32 layers held {overhead} bytes at its peak: {:.1} activations",
        overhead as f64 / activation as f64
    );
}

#[test]
fn the_backward_pass_frees_each_gradient_at_its_last_use() {
    let cpu = Device::Cpu;
    let x = Tensor::zeros([1000], &cpu);
    x.realize().unwrap();
    let live = cpu.memory().unwrap().live_bytes;
    drop(x);
    assert_eq!(cpu.memory().unwrap().live_bytes + 4000, live, "dropping a tensor frees its 4,000 bytes");

    check(&cpu);
    if let Some(gpu) = common::gpu("liveness on the GPU") {
        check(&gpu);
    }

    // a variable computed from tensors that need no gradient is a leaf: once computed it keeps
    // none of them alive (before, `(noise * 0.5).requires_grad_()` kept the noise's 4,000 bytes)
    let noise = Tensor::randn([1000], &cpu);
    let w = (&noise * 0.5).requires_grad_();
    w.realize().unwrap();
    let live = cpu.memory().unwrap().live_bytes;
    drop(noise);
    assert_eq!(
        cpu.memory().unwrap().live_bytes + 4000,
        live,
        "the noise is freed once only the variable holds it"
    );
}
