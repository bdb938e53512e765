//! Run-time cross-checking (`KILN_CHECK=1` / `Device::gpu_checked`): silent on a correct model,
//! and a deliberately wrong GPU result is caught with the op, shapes, error and user line.
//! The fault injection is process-wide: one test injects here, the other in a child process.

mod common;

use kiln::{Device, Error, Tensor};

#[test]
fn checked_gpu_is_silent_on_a_correct_model_and_catches_an_injected_fault() {
    let Some(_) = common::gpu("cross-check") else {
        return;
    };
    let gpu = Device::gpu_checked(0).unwrap();

    // a small MLP step, forward and backward: every GPU node is recomputed on the CPU
    kiln::manual_seed(11);
    let x = Tensor::randn([16, 5], &gpu);
    let w1 = Tensor::randn([5, 7], &gpu).requires_grad_();
    let w2 = Tensor::randn([7, 3], &gpu).requires_grad_();
    let labels = Tensor::from_vec((0..16).map(|i| i % 3).collect::<Vec<i32>>(), [16], &gpu);
    let loss = x.matmul(&w1).gelu().matmul(&w2).log_softmax(-1).exp().cross_entropy(&labels);
    let grads = loss.backward();
    let gw1 = grads.get(&w1).unwrap();
    Tensor::realize_all(&[loss.clone(), gw1.clone()]).expect("a correct model passes the cross-check");

    // the next checked node gets a wrong GPU result
    let a = Tensor::randn([4, 6], &gpu);
    a.realize().unwrap();
    kiln::debug::inject_fault_once();
    #[rustfmt::skip]
    let (y, line) = (a.tanh(), line!());
    match y.realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(msg.contains("tanh"), "names the op: {msg}");
            assert!(msg.contains("[4, 6]"), "names the shapes: {msg}");
            assert!(msg.contains("relative error"), "gives the error: {msg}");
            assert!(msg.contains(&format!("tests/check.rs:{line}")), "points at the user's line: {msg}");
        }
        other => panic!("the injected fault was not caught: {other:?}"),
    }
}

#[test]
fn kiln_check_1_checks_every_gpu_device_and_reports_one_sided_nan() {
    const TEST: &str = "kiln_check_1_checks_every_gpu_device_and_reports_one_sided_nan";
    // run this test again in a child process, with the variable set before any device exists
    if common::ran_in_child(TEST, "KILN_CHECK", "1") {
        return;
    }
    let Some(gpu) = common::gpu("KILN_CHECK=1") else {
        return;
    };
    // a plain GPU device, checked because of the variable
    let a = Tensor::randn([3, 5], &gpu);
    a.realize().unwrap();
    kiln::debug::inject_nan_once();
    match a.exp().realize() {
        Err(Error::CheckFailed(msg)) => {
            assert!(msg.contains("exp"), "names the op: {msg}");
            assert!(msg.contains("NaN/Inf on one side only"), "reports the NaN: {msg}");
        }
        other => panic!("the injected NaN was not caught: {other:?}"),
    }
}

#[test]
fn kiln_check_1_passes_adam_and_catches_one_minus_beta_computed_in_f32() {
    const TEST: &str = "kiln_check_1_passes_adam_and_catches_one_minus_beta_computed_in_f32";
    // run this test again in a child process, with the variable set before any device exists
    if common::ran_in_child(TEST, "KILN_CHECK", "1") {
        return;
    }
    use kiln::nn::{self, Linear, Module, ReLU, Sequential};
    use kiln::optim::{Optimizer, Rule};
    let Some(gpu) = common::gpu("KILN_CHECK=1 with Adam") else {
        return;
    };
    kiln::manual_seed(3);
    let model = Sequential::new().add(Linear::new(2, 16, &gpu)).add(ReLU).add(Linear::new(16, 3, &gpu));
    let x = Tensor::randn([32, 2], &gpu);
    let y = Tensor::from_vec((0..32).map(|i| i % 3).collect::<Vec<i32>>(), [32], &gpu);
    for rule in [Rule::adam(), Rule::adamw(), Rule::rmsprop(), Rule::adadelta(), Rule::sgd_momentum(0.9)] {
        let mut opt = Optimizer::new(nn::parameters(&model), rule, 1e-2);
        for step in 0..20 {
            let loss = model.forward(&x).cross_entropy(&y);
            opt.step(&loss.backward()).unwrap_or_else(|e| panic!("{rule:?} step {step}: {e}"));
        }
    }
    // the bug kiln had: 1 − β2 from β2 rounded to f32, 1.3e-5 off — caught, not tolerated
    let mut opt = Optimizer::new(nn::parameters(&model), Rule::adam(), 1e-2);
    opt.step(&model.forward(&x).cross_entropy(&y).backward()).unwrap();
    kiln::debug::inject_f32_optimizer_constants_once();
    match opt.step(&model.forward(&x).cross_entropy(&y).backward()) {
        Err(Error::CheckFailed(msg)) => assert!(msg.contains("exp_avg"), "names the state: {msg}"),
        other => panic!("1 − β in f32 was not caught: {other:?}"),
    }
}
