//! Autograd semantics: accumulation across uses, broadcast reduction, no_grad, detach, laziness.

use kiln::{Device, Tensor, no_grad};

fn t(v: &[f64], shape: &[usize]) -> Tensor {
    Tensor::from_slice(v, shape, &Device::Cpu)
}

fn values(x: &Tensor) -> Vec<f64> {
    x.to_f64_vec().unwrap()
}

#[test]
fn gradients_of_a_tensor_used_twice_are_summed() {
    let x = t(&[1.0, -2.0, 3.0], &[3]).requires_grad_();
    // y = x·x + x, dy/dx = 2x + 1
    let y = (&x * &x + &x).sum_all();
    let g = y.backward();
    assert_eq!(values(g.get(&x).unwrap()), vec![3.0, -3.0, 7.0]);
}

#[test]
fn broadcast_gradients_are_reduced_to_the_operand_shape() {
    let a = t(&[1.0, 2.0, 3.0], &[3, 1]).requires_grad_();
    let b = t(&[10.0, 20.0, 30.0, 40.0], &[4]).requires_grad_();
    let g = (&a * &b).sum_all().backward();
    // d/da Σᵢⱼ aᵢbⱼ = Σⱼ bⱼ = 100; d/db = Σᵢ aᵢ = 6
    assert_eq!(g.get(&a).unwrap().dims(), &[3, 1]);
    assert_eq!(values(g.get(&a).unwrap()), vec![100.0; 3]);
    assert_eq!(values(g.get(&b).unwrap()), vec![6.0; 4]);
}

#[test]
fn no_grad_records_no_history_and_detach_stops_gradients() {
    let x = t(&[2.0], &[1]).requires_grad_();
    let inside = no_grad(|| &x * 3.0);
    assert!(!inside.requires_grad());
    assert!((&x * 3.0).requires_grad());
    // y = x · stop(x): dy/dx = stop(x) = 2
    let y = (&x * &x.detach()).sum_all();
    assert_eq!(values(y.backward().get(&x).unwrap()), vec![2.0]);
}

#[test]
fn backward_is_lazy_and_variables_without_a_path_get_no_gradient() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_();
    let unused = t(&[5.0], &[1]).requires_grad_();
    let y = x.exp().sum_all();
    let g = y.backward();
    let gx = g.get(&x).unwrap();
    assert!(!gx.is_realized(), "gradients are computed when read");
    assert!(g.get(&unused).is_none());
    let e = std::f64::consts::E;
    let got = values(gx);
    assert!((got[0] - e).abs() < 1e-12 && (got[1] - e * e).abs() < 1e-12);
}

#[test]
fn marked_tensors_computed_without_history_become_variables() {
    let w = (Tensor::ones([2], &Device::Cpu).cast(kiln::DType::F64) * 0.5).requires_grad_();
    let g = (&w * &w).sum_all().backward();
    assert_eq!(values(g.get(&w).unwrap()), vec![1.0, 1.0]);
}

#[test]
fn gradients_accumulate_over_batches() {
    let w = t(&[1.0, 1.0], &[2]).requires_grad_();
    let mut total = (&w * 2.0).sum_all().backward();
    total.accumulate((&w * 3.0).sum_all().backward());
    assert_eq!(values(total.get(&w).unwrap()), vec![5.0, 5.0]);
}

#[test]
#[should_panic(expected = "backward: the loss must have one element, found shape [2]")]
fn backward_needs_a_scalar() {
    let x = t(&[1.0, 2.0], &[2]).requires_grad_();
    let _ = (&x * 2.0).backward();
}

#[test]
fn assign_updates_every_handle_in_place() {
    let w = t(&[1.0, 2.0], &[2]).requires_grad_();
    let alias = w.clone();
    w.assign(&no_grad(|| &w * 10.0)).unwrap();
    assert_eq!(values(&alias), vec![10.0, 20.0]);
    assert!(alias.requires_grad());
}
