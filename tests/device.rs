//! Device limits and failures become `kiln::Error`s, never wgpu panics; and the quickstart's
//! model trains on the GPU to the same figure as on the CPU.

mod common;

use kiln::nn::{self, Linear, Module, ReLU, Sequential};
use kiln::optim::{Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::{DType, Device, Error, Tensor, no_grad};

#[test]
fn a_tensor_over_the_binding_limit_is_a_clear_error() {
    let Some(gpu) = common::gpu("binding limit") else {
        return;
    };
    let limit = kiln::backend::wgpu::context(0).unwrap().limits.max_storage_buffer_binding_size;
    let too_many = (limit / 4 + 1) as usize;
    match Tensor::zeros([too_many], &gpu).realize() {
        Err(Error::TooLarge { detail, .. }) => assert!(detail.contains("exceed"), "{detail}"),
        other => panic!("expected TooLarge, got {other:?}"),
    }
    // the device is still usable afterwards
    assert_eq!(Tensor::ones([3], &gpu).sum_all().item::<f32>().unwrap(), 3.0);
}

/// The quickstart's spiral, smaller.
fn spiral(per_class: usize, seed: u64) -> (Vec<f32>, Vec<i32>) {
    let noise = RandomKey { seed, stream: 0 };
    let (mut xs, mut ys) = (Vec::new(), Vec::new());
    for class in 0..3 {
        for i in 0..per_class {
            let r = i as f32 / per_class as f32;
            let angle = class as f32 * 4.0 + r * 4.0 + 0.2 * noise.normal((class * per_class + i) as u64);
            xs.extend([r * angle.sin(), r * angle.cos()]);
            ys.push(class as i32);
        }
    }
    (xs, ys)
}

fn train_spiral(device: &Device) -> (f32, f64) {
    kiln::manual_seed(0);
    let (x, y) = spiral(200, 1);
    let (tx, ty) = spiral(100, 2);
    let x = Tensor::from_vec(x, [600, 2], device);
    let y = Tensor::from_vec(y, [600], device);
    let model = Sequential::new()
        .add(Linear::new(2, 64, device))
        .add(ReLU)
        .add(Linear::new(64, 64, device))
        .add(ReLU)
        .add(Linear::new(64, 3, device));
    let mut opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
    let mut last = 0.0;
    for _ in 0..300 {
        let loss = model.forward(&x).cross_entropy(&y);
        opt.step_with(&loss.backward(), std::slice::from_ref(&loss)).unwrap();
        last = loss.item::<f32>().unwrap();
    }
    let tx = Tensor::from_vec(tx, [300, 2], device);
    let ty = Tensor::from_vec(ty, [300], device);
    let acc = no_grad(|| model.forward(&tx).argmax(-1, false).eq(&ty).cast(DType::F32).mean_all());
    (last, acc.item::<f32>().unwrap() as f64)
}

#[test]
fn the_quickstart_model_trains_on_the_gpu_to_the_cpus_figure() {
    let Some(gpu) = common::gpu("quickstart end to end") else {
        return;
    };
    let (cpu_loss, cpu_acc) = train_spiral(&Device::Cpu);
    let (gpu_loss, gpu_acc) = train_spiral(&gpu);
    assert!(cpu_acc >= 0.95 && gpu_acc >= 0.95, "held-out accuracy cpu {cpu_acc} gpu {gpu_acc}");
    // same initialization and data, so the runs differ only by f32 rounding
    assert!((cpu_acc - gpu_acc).abs() <= 0.01, "cpu {cpu_acc} gpu {gpu_acc}");
    assert!((cpu_loss - gpu_loss).abs() <= 0.02, "final loss cpu {cpu_loss} gpu {gpu_loss}");
}
