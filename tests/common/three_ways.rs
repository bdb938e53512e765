//! Running what a test builds three ways — on the GPU fused, on the GPU unfused, on the CPU —
//! and comparing the results (`tests/fusion.rs`, `tests/fused_stores.rs`).
#![allow(dead_code)]

use super::Seed;
use kiln::{Device, Tensor};

/// The values of `outputs`, realized together.
pub fn values(outputs: &[Tensor]) -> Vec<Vec<f64>> {
    Tensor::realize_all(outputs).unwrap();
    outputs.iter().map(|t| t.to_f64_vec().unwrap()).collect()
}

/// The relative error of `a` against `b`, normwise.
pub fn relative_error(a: &[f64], b: &[f64]) -> f64 {
    let diff: f64 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
    let norm: f64 = b.iter().map(|y| y * y).sum();
    (diff / norm.max(1e-30)).sqrt()
}

/// The values of what a test builds: on the GPU fused, with the kernels that computed them;
/// on the GPU unfused; on the CPU.
pub struct Runs {
    pub fused: Vec<Vec<f64>>,
    pub kernels: Vec<String>,
    pub unfused: Vec<Vec<f64>>,
    pub cpu: Vec<Vec<f64>>,
}

/// Builds on each device and fusion setting from the same seed what `build` makes (it realizes
/// the inputs it wants kept out of the kernel list) and computes it.
pub fn three_ways(gpu: &Device, seed: u64, build: &dyn Fn(&Device) -> Vec<Tensor>) -> Runs {
    let run = |device: &Device, on: bool| {
        kiln::set_fusion(on);
        kiln::manual_seed(seed);
        let outputs = build(device);
        kiln::debug::log_gpu_dispatches(true);
        let v = values(&outputs);
        let kernels = kiln::debug::log_gpu_dispatches(false);
        kiln::set_fusion(true);
        (v, kernels)
    };
    let ((fused, kernels), (unfused, _), (cpu, _)) =
        (run(gpu, true), run(gpu, false), run(&Device::Cpu, true));
    Runs { fused, kernels, unfused, cpu }
}

impl Runs {
    /// Asserts that the fused GPU results agree with the unfused ones (relative error below
    /// 1e-5: the same math in another order) and with the CPU's (below 1e-4).
    pub fn assert_agree(&self, case: &str, seed: &Seed) {
        for ((f, u), c) in self.fused.iter().zip(&self.unfused).zip(&self.cpu) {
            assert!(relative_error(f, u) < 1e-5, "{case}: fused and unfused GPU results differ; {seed}");
            assert!(relative_error(f, c) < 1e-4, "{case}: GPU and CPU results differ; {seed}");
        }
    }
}
