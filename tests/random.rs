//! Philox on every device: the published known answers, and the same bits on CPU and GPU, so
//! that random tensors and dropout masks match across backends.

mod common;

use kiln::rng::RandomKey;
use kiln::{Device, Tensor};

#[test]
fn the_first_block_of_seed_zero_is_the_random123_known_answer() {
    // counter 0, key 0 → 6627e8d5 e169c58d bc57ac4c 9b00dbd8 (Random123 kat_vectors)
    let key = RandomKey { seed: 0, stream: 0 };
    let want = vec![0x6627e8d5u32, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8];
    assert_eq!(Tensor::random_bits([4], key, &Device::Cpu).to_vec::<u32>().unwrap(), want);
    if let Some(gpu) = common::gpu("Philox known answer on the GPU") {
        assert_eq!(Tensor::random_bits([4], key, &gpu).to_vec::<u32>().unwrap(), want);
    }
}

#[test]
fn gpu_bits_uniforms_and_dropout_masks_equal_the_cpus() {
    let Some(gpu) = common::gpu("random parity") else {
        return;
    };
    let key = RandomKey { seed: 0xdead_beef_1234, stream: 77 };
    let n = 100_003;
    let bits = |d: &Device| Tensor::random_bits([n], key, d).to_vec::<u32>().unwrap();
    assert_eq!(bits(&Device::Cpu), bits(&gpu));
    let uniform = |d: &Device| Tensor::uniform([n], -2.0, 3.0, key, d).to_vec::<f32>().unwrap();
    assert_eq!(uniform(&Device::Cpu), uniform(&gpu));
    let ones = |d: &Device| Tensor::ones([n], d).dropout_with_key(0.25, key).to_vec::<f32>().unwrap();
    let (cpu_mask, gpu_mask) = (ones(&Device::Cpu), ones(&gpu));
    assert_eq!(cpu_mask, gpu_mask);
    let kept = cpu_mask.iter().filter(|&&v| v != 0.0).count() as f64 / n as f64;
    assert!((kept - 0.75).abs() < 0.01, "kept {kept}");
}

#[test]
fn normal_draws_have_the_right_moments() {
    let x = Tensor::normal([200_000], 1.5, 2.0, RandomKey { seed: 5, stream: 0 }, &Device::Cpu);
    let mean = x.mean_all().item::<f32>().unwrap();
    let std = x.var(0, false, 1).sqrt().item::<f32>().unwrap();
    assert!((mean - 1.5).abs() < 0.02 && (std - 2.0).abs() < 0.02, "mean {mean} std {std}");
}
