//! Subnormal floats on the CPU: flushed to zero while kiln computes (`backend::cpu_denormals`),
//! on the calling thread and on rayon's threads alike, and kept with `KILN_FLUSH_DENORMALS=0`;
//! the caller's own arithmetic keeps IEEE subnormals either way.

mod common;

use kiln::{Device, Tensor};

/// Two normal f32 whose product, 1e-40, is subnormal.
const TINY: f32 = 1e-30;
const SMALL: f32 = 1e-10;
/// A subnormal input.
const SUBNORMAL: f32 = 1e-40;

/// TINY·SMALL and SUBNORMAL·1e10 for `n` elements each: on one thread for a few elements,
/// split over rayon's threads for many.
fn products(n: usize) -> (Vec<f32>, Vec<f32>) {
    let cpu = Device::Cpu;
    let tiny = Tensor::from_vec(vec![TINY; n], [n], &cpu);
    let small = Tensor::from_vec(vec![SMALL; n], [n], &cpu);
    let subnormal = Tensor::from_vec(vec![SUBNORMAL; n], [n], &cpu);
    let big = Tensor::from_vec(vec![1e10f32; n], [n], &cpu);
    ((tiny * small).to_vec().unwrap(), (subnormal * big).to_vec().unwrap())
}

/// The same products in this thread's own arithmetic.
fn own_products() -> (f32, f32) {
    use std::hint::black_box;
    (black_box(TINY) * black_box(SMALL), black_box(SUBNORMAL) * black_box(1e10f32))
}

#[test]
fn subnormal_results_and_inputs_are_flushed_on_the_cpu_and_the_callers_mode_is_kept() {
    if cfg!(not(target_arch = "x86_64")) || std::env::var_os("KILN_FLUSH_DENORMALS").is_some() {
        return;
    }
    let own = own_products();
    assert!(own.0 > 0.0 && own.1 > 0.0, "this thread keeps IEEE subnormals: {own:?}");
    // 2¹⁷ elements: more than one thread's share of an elementwise op
    for n in [5, 1 << 17] {
        let (results, inputs) = products(n);
        assert!(results.iter().all(|&v| v == 0.0), "{n} elements: a subnormal result is flushed");
        assert!(inputs.iter().all(|&v| v == 0.0), "{n} elements: a subnormal input reads as zero");
    }
    assert_eq!(own_products(), own, "the realize gave this thread its mode back");
}

#[test]
fn kiln_flush_denormals_0_keeps_ieee_subnormals() {
    const TEST: &str = "kiln_flush_denormals_0_keeps_ieee_subnormals";
    if common::ran_in_child(TEST, "KILN_FLUSH_DENORMALS", "0") {
        return;
    }
    let (tiny_small, subnormal_big) = own_products();
    for n in [5, 1 << 17] {
        let (results, inputs) = products(n);
        assert!(results.iter().all(|&v| v == tiny_small), "{n} elements: {:?}", &results[..2]);
        assert!(inputs.iter().all(|&v| v == subnormal_big), "{n} elements: {:?}", &inputs[..2]);
    }
}
