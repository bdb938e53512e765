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
fn a_computed_tensor_keeps_its_history_only_while_a_gradient_can_pass_through_it() {
    let x = t(&[2.0], &[1]).requires_grad_();
    // with history, computed or not: not a variable (it keeps its inputs for the backward pass)
    let (pending, computed) = (&x * 3.0, &x * 3.0);
    computed.realize().unwrap();
    for y in [pending, computed] {
        let refused = std::panic::catch_unwind(|| y.requires_grad_());
        assert!(refused.is_err(), "requires_grad_ on a tensor with history must panic");
    }
    // computed under no_grad, computed yet or not: a leaf variable whose gradient stops at it
    for computed in [true, false] {
        let y = no_grad(|| &x * 3.0 + 1.0);
        if computed {
            y.realize().unwrap();
        }
        let y = y.requires_grad_();
        let grads = y.square().sum_all().backward();
        assert_eq!(values(grads.get(&y).unwrap()), vec![14.0], "computed first: {computed}");
        assert!(
            grads.get(&x).is_none(),
            "no gradient flows past a no_grad result (computed first: {computed})"
        );
        assert_eq!(values(&y), vec![7.0]);
    }
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

/// Σₜ over T steps of a recurrence-shaped graph: step t reads slice t of `xs` and multiplies by
/// the shared weight `w`, as an RNN reads its input sequence and its recurrent weight.
fn steps(xs: &Tensor, w: &Tensor, t: usize) -> Tensor {
    let mut total: Option<Tensor> = None;
    for i in 0..t {
        let y = xs.select(0, i).matmul(w).tanh().sum_all();
        total = Some(match total {
            Some(s) => s + y,
            None => y,
        });
    }
    total.unwrap()
}

#[test]
fn gradients_of_many_slices_and_of_a_weight_used_at_every_step_are_combined_not_summed() {
    let (t, b, k, n) = (40, 3, 4, 5);
    let data: Vec<f64> = (0..t * b * k).map(|i| ((i * 37 % 17) as f64 - 8.0) / 9.0).collect();
    let wdata: Vec<f64> = (0..k * n).map(|i| ((i * 13 % 7) as f64 - 3.0) / 5.0).collect();
    let xs = Tensor::from_slice(&data, [t, b, k], &Device::Cpu).requires_grad_();
    let w = Tensor::from_slice(&wdata, [k, n], &Device::Cpu).requires_grad_();
    let grads = steps(&xs, &w, t).backward();
    let (gx, gw) = (grads.get(&xs).unwrap(), grads.get(&w).unwrap());
    // one assembly of the T slice gradients and one product for the weight, not T−1 additions
    assert_eq!(gx.op_name(), "concat");
    assert_eq!(gw.op_name(), "matmul");
    // the same values as the gradient written out: dL/dy = 1 − tanh², dW = Σₜ xₜᵀ·dyₜ
    let mut want_x = vec![0.0; t * b * k];
    let mut want_w = vec![0.0; k * n];
    for s in 0..t {
        for r in 0..b {
            for c in 0..n {
                let x = |j: usize| data[(s * b + r) * k + j];
                let y: f64 = (0..k).map(|j| x(j) * wdata[j * n + c]).sum();
                let dy = 1.0 - y.tanh().powi(2);
                for j in 0..k {
                    want_x[(s * b + r) * k + j] += dy * wdata[j * n + c];
                    want_w[j * n + c] += dy * x(j);
                }
            }
        }
    }
    for (got, want) in [(values(gx), want_x), (values(gw), want_w)] {
        for (g, w) in got.iter().zip(&want) {
            assert!((g - w).abs() < 1e-12 * (1.0 + w.abs()), "{g} vs {w}");
        }
    }
}
