//! Helpers shared by the criterion benches.

use criterion::Bencher;
use kiln::rng::RandomKey;
use kiln::{Device, Tensor};

/// The devices to measure: the CPU, and the first GPU adapter when there is one (set
/// `KILN_BENCH_CPU_ONLY=1` to skip it, e.g. on a software adapter).
pub fn devices() -> Vec<Device> {
    let mut devices = vec![Device::Cpu];
    if std::env::var("KILN_BENCH_CPU_ONLY").is_ok_and(|v| v == "1") {
        return devices;
    }
    match Device::gpu(0) {
        Ok(gpu) => devices.push(gpu),
        Err(e) => eprintln!("no GPU adapter, benchmarking the CPU only: {e}"),
    }
    devices
}

/// A realized standard-normal tensor (so that timing excludes drawing the inputs).
pub fn randn(shape: &[usize], stream: u64, device: &Device) -> Tensor {
    let t = Tensor::normal(shape, 0.0, 1.0, RandomKey { seed: 42, stream }, device);
    t.realize().expect("realize");
    t
}

/// Times building `f`'s graph, realizing it and waiting for the device.
#[allow(dead_code)] // the training bench times its own step
pub fn realize_each(b: &mut Bencher, device: &Device, f: impl Fn() -> Tensor) {
    b.iter(|| {
        let y = f();
        y.realize().expect("realize");
        device.synchronize().expect("synchronize");
        y
    });
}
