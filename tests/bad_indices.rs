//! Out-of-range indices and labels: the same `Error::OutOfRange` on the CPU and the GPU, naming
//! the op, the first offending value and the line that created the node; the graph stays usable
//! (the failing node fails again, everything else computes); nothing downstream keeps garbage.

mod common;

use kiln::ops::loss::CrossEntropy;
use kiln::{Device, Error, Tensor};

/// The devices to compare: the CPU and, when there is one, the GPU.
fn devices() -> Vec<Device> {
    let mut all = vec![Device::Cpu];
    all.extend(common::gpu("bad indices"));
    all
}

/// The error realizing `t` gives, as its message (panics if it succeeds or fails otherwise).
fn out_of_range(t: &Tensor) -> String {
    match t.realize() {
        Err(e @ Error::OutOfRange(_)) => e.to_string(),
        other => panic!("expected an out-of-range error, got {other:?}"),
    }
}

/// Asserts that every device gave the same message, and returns it.
fn same_everywhere(messages: Vec<String>) -> String {
    for m in &messages[1..] {
        assert_eq!(m, &messages[0], "the backends disagree");
    }
    messages.into_iter().next().expect("at least the CPU")
}

#[test]
fn index_select_out_of_range_is_the_same_error_on_every_backend() {
    let mut messages = Vec::new();
    for device in devices() {
        let table = Tensor::arange(0.0, 8.0, 1.0, &device).reshape([4, 2]);
        let ids = Tensor::from_vec(vec![1i32, 3, 7, 9], [4], &device);
        #[rustfmt::skip]
        let (rows, line) = (table.index_select(0, &ids), line!());
        let message = out_of_range(&rows);
        assert!(message.contains("index_select"), "names the op: {message}");
        assert!(message.contains("index 7 (element 2)"), "names the first bad value: {message}");
        assert!(message.contains("0 to 3"), "gives the range: {message}");
        assert!(message.contains(&format!("tests/bad_indices.rs:{line}")), "names the line: {message}");
        // the node fails again, and the rest of the graph is intact
        assert_eq!(out_of_range(&rows), message);
        assert_eq!(table.sum_all().item::<f32>().unwrap(), 28.0);
        let good = Tensor::from_vec(vec![3i32, 0], [2], &device);
        assert_eq!(table.index_select(0, &good).to_vec::<f32>().unwrap(), vec![6.0, 7.0, 0.0, 1.0]);
        messages.push(message);
    }
    same_everywhere(messages);
}

#[test]
fn a_lookup_that_stores_through_a_chain_reports_its_bad_index_and_poisons_the_chain() {
    // an embedding's lookup with its positions added: on a GPU one kernel (the lookup hosts
    // the chain), whose fault still names the lookup and poisons what the chain computed
    let mut messages = Vec::new();
    for device in devices() {
        let table = Tensor::arange(0.0, 8.0, 1.0, &device).reshape([4, 2]);
        let positions = Tensor::ones([3, 2], &device);
        let ids = Tensor::from_vec(vec![1i32, 6, 2], [3], &device);
        Tensor::realize_all(&[table.clone(), positions.clone(), ids.clone()]).unwrap();
        #[rustfmt::skip]
        let (rows, line) = (table.index_select(0, &ids), line!());
        let embedded = (rows + &positions) * 2.0;
        let message = out_of_range(&embedded);
        assert!(message.contains("index_select"), "names the op: {message}");
        assert!(message.contains("index 6 (element 1)"), "names the first bad value: {message}");
        assert!(message.contains(&format!("tests/bad_indices.rs:{line}")), "names the line: {message}");
        assert_eq!(out_of_range(&embedded.sum_all()), message, "what the chain computed is poisoned");
        let good = Tensor::from_vec(vec![3i32, 0, 1], [3], &device);
        let fine = ((table.index_select(0, &good) + &positions) * 2.0).to_vec::<f32>().unwrap();
        assert_eq!(fine, vec![14.0, 16.0, 2.0, 4.0, 6.0, 8.0]);
        messages.push(message);
    }
    same_everywhere(messages);
}

#[test]
fn cross_entropy_target_out_of_range_is_an_error_not_a_finite_loss() {
    let mut messages = Vec::new();
    for device in devices() {
        let logits =
            Tensor::from_vec(vec![0.1f32, 0.2, 0.3, 1.0, -1.0, 0.5], [2, 3], &device).requires_grad_();
        let target = Tensor::from_vec(vec![0i32, 5], [2], &device);
        #[rustfmt::skip]
        let (loss, line) = (logits.cross_entropy(&target), line!());
        let message = out_of_range(&loss);
        assert!(message.contains("cross_entropy") && message.contains("target 5 (element 1)"), "{message}");
        // the gradient's kernel checks the targets as well
        let grads = loss.backward();
        let in_backward = out_of_range(grads.get(&logits).unwrap());
        assert!(
            in_backward.contains("cross_entropy_grad") && in_backward.contains("target 5"),
            "{in_backward}"
        );
        let site = format!("backward pass of the op recorded at tests/bad_indices.rs:{line}");
        assert!(in_backward.contains(&site), "names the user's line: {in_backward}");
        // a negative target is out of range too, unless it is the ignored index
        let negative = Tensor::from_vec(vec![-1i32, 2], [2], &device);
        assert!(out_of_range(&logits.cross_entropy(&negative)).contains("target -1 (element 0)"));
        let opts = CrossEntropy { ignore_index: Some(-1), label_smoothing: 0.0 };
        let kept = logits.cross_entropy_with(&negative, opts).item::<f32>().unwrap();
        assert!(kept.is_finite());
        messages.push(message);
    }
    same_everywhere(messages);
}

#[test]
fn gather_scatter_and_index_add_check_their_indices() {
    let mut messages: Vec<Vec<String>> = Vec::new();
    for device in devices() {
        let x = Tensor::arange(0.0, 6.0, 1.0, &device).reshape([2, 3]);
        let bad = Tensor::from_vec(vec![0u32, 2, 3, 1], [2, 2], &device);
        let src = Tensor::ones([2, 2], &device);
        let one_d = Tensor::from_vec(vec![1i32, -2], [2], &device);
        let ones = Tensor::ones([2, 2], &device);
        let found = vec![
            out_of_range(&x.gather(1, &bad)),
            out_of_range(&x.scatter_add(1, &bad, &src)),
            out_of_range(&x.index_add(1, &one_d, &ones)),
        ];
        assert!(found[0].contains("gather") && found[0].contains("index 3 (element 2)"), "{}", found[0]);
        assert!(found[1].contains("scatter_add") && found[1].contains("index 3 (element 2)"), "{}", found[1]);
        assert!(found[2].contains("index_add") && found[2].contains("index -2 (element 1)"), "{}", found[2]);
        messages.push(found);
    }
    for m in &messages[1..] {
        assert_eq!(m, &messages[0], "the backends disagree");
    }
}

#[test]
fn a_bad_index_poisons_what_was_computed_from_it_in_the_same_realize() {
    let Some(gpu) = common::gpu("bad indices downstream") else {
        return;
    };
    let table = Tensor::randn([5, 3], &gpu);
    let ids = Tensor::from_vec(vec![4i32, 5], [2], &gpu);
    let rows = table.index_select(0, &ids);
    let downstream = (&rows * 2.0).sum_all();
    // an independent branch of the same realize computes normally
    let independent = table.sum_all();
    let both = Tensor::realize_all(&[downstream.clone(), independent.clone()]);
    assert!(matches!(both, Err(Error::OutOfRange(_))), "{both:?}");
    // neither the bad node nor what was computed from it reads as a value afterwards
    assert!(matches!(downstream.to_vec::<f32>(), Err(Error::OutOfRange(_))));
    assert!(matches!(rows.to_vec::<f32>(), Err(Error::OutOfRange(_))));
    assert!(independent.item::<f32>().unwrap().is_finite());
    // a later step with good ids runs on the same device
    let good = Tensor::from_vec(vec![4i32, 0], [2], &gpu);
    assert_eq!(table.index_select(0, &good).dims(), &[2, 3]);
    assert!(table.index_select(0, &good).sum_all().item::<f32>().unwrap().is_finite());
}

#[test]
fn an_embedding_lookup_with_a_bad_token_fails_the_training_step_before_any_update() {
    use kiln::nn::{self, Embedding, Module};
    use kiln::optim::{Optimizer, Rule};
    for device in devices() {
        let embedding = Embedding::new(10, 4, &device);
        let before = embedding.weight.to_vec::<f32>().unwrap();
        let mut opt = Optimizer::new(nn::parameters(&embedding), Rule::sgd(), 0.1);
        let tokens = Tensor::from_vec(vec![1i32, 10, 3], [3], &device);
        let loss = embedding.forward(&tokens).square().mean_all();
        let step = opt.step(&loss.backward());
        assert!(matches!(step, Err(Error::OutOfRange(_))), "{device}: {step:?}");
        assert_eq!(embedding.weight.to_vec::<f32>().unwrap(), before, "{device}: the weights moved");
    }
}
