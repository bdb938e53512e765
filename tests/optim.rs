//! Optimizers: each rule's trajectory on a fixed problem against the update written out
//! independently here in f64; the fused GPU kernels against the CPU; parameter groups and their
//! state; clipping and schedules (nanoGPT's warm-up and cosine against its formula).

mod common;

use kiln::optim::schedule::{
    CosineLr, ExponentialLr, LinearWarmup, OneCycle, ReduceOnPlateau, StepLr, WarmupCosine,
};
use kiln::optim::{Optimizer, ParamGroup, Rule, Scheduler, clip_grad_norm, decay_groups};
use kiln::{DType, Device, Tensor};

/// The problem: f(p) = Σ aᵢ·(pᵢ − cᵢ)²/2 + Σ sin(pᵢ), so g = a·(p − c) + cos p.
const A: [f64; 5] = [1.0, 3.0, 0.5, 2.0, 10.0];
const C: [f64; 5] = [0.3, -1.0, 2.0, 0.0, 0.5];
const P0: [f64; 5] = [1.0, 1.0, -1.0, 0.5, 0.0];
const STEPS: usize = 25;

fn grad(p: &[f64]) -> Vec<f64> {
    p.iter().zip(A.iter().zip(C)).map(|(p, (a, c))| a * (p - c) + p.cos()).collect()
}

/// The rules as PyTorch documents them, one element at a time, in f64.
fn independent(rule: Rule, lr: f64) -> Vec<Vec<f64>> {
    let mut p = P0.to_vec();
    let n = p.len();
    let (mut s0, mut s1, mut s2) = (vec![0.0; n], vec![0.0; n], vec![0.0; n]);
    let mut out = Vec::new();
    for t in 1..=STEPS {
        let g = grad(&p);
        for i in 0..n {
            match rule {
                Rule::Sgd { momentum, nesterov, weight_decay } => {
                    let mut d = g[i] + weight_decay * p[i];
                    if momentum != 0.0 {
                        s0[i] = if t == 1 { d } else { momentum * s0[i] + d };
                        d = if nesterov { d + momentum * s0[i] } else { s0[i] };
                    }
                    p[i] -= lr * d;
                }
                Rule::AdaGrad { eps, weight_decay } => {
                    let d = g[i] + weight_decay * p[i];
                    s0[i] += d * d;
                    p[i] -= lr * d / (s0[i].sqrt() + eps);
                }
                Rule::RmsProp { alpha, eps, momentum, centered, weight_decay } => {
                    let d = g[i] + weight_decay * p[i];
                    s0[i] = alpha * s0[i] + (1.0 - alpha) * d * d;
                    let mut v = s0[i];
                    if centered {
                        s2[i] = alpha * s2[i] + (1.0 - alpha) * d;
                        v -= s2[i] * s2[i];
                    }
                    let avg = v.sqrt() + eps;
                    if momentum > 0.0 {
                        s1[i] = momentum * s1[i] + d / avg;
                        p[i] -= lr * s1[i];
                    } else {
                        p[i] -= lr * d / avg;
                    }
                }
                Rule::Adadelta { rho, eps, weight_decay } => {
                    let d = g[i] + weight_decay * p[i];
                    s0[i] = rho * s0[i] + (1.0 - rho) * d * d;
                    let delta = ((s1[i] + eps) / (s0[i] + eps)).sqrt() * d;
                    s1[i] = rho * s1[i] + (1.0 - rho) * delta * delta;
                    p[i] -= lr * delta;
                }
                Rule::Adam { beta1, beta2, eps, weight_decay, decoupled } => {
                    let mut d = g[i];
                    if decoupled {
                        p[i] *= 1.0 - lr * weight_decay;
                    } else {
                        d += weight_decay * p[i];
                    }
                    s0[i] = beta1 * s0[i] + (1.0 - beta1) * d;
                    s1[i] = beta2 * s1[i] + (1.0 - beta2) * d * d;
                    let m_hat = s0[i] / (1.0 - beta1.powi(t as i32));
                    let v_hat = s1[i] / (1.0 - beta2.powi(t as i32));
                    p[i] -= lr * m_hat / (v_hat.sqrt() + eps);
                }
            }
        }
        out.push(p.clone());
    }
    out
}

/// kiln's trajectory: the loss built from tensor ops, gradients from autograd.
fn kiln_trajectory(rule: Rule, lr: f64, device: &Device, dtype: DType) -> Vec<Vec<f64>> {
    let p = Tensor::from_slice(&P0, [5], &Device::Cpu).cast(dtype).to(device).detach();
    p.realize().unwrap();
    let p = p.requires_grad_();
    let a = Tensor::from_slice(&A, [5], &Device::Cpu).cast(dtype).to(device);
    let c = Tensor::from_slice(&C, [5], &Device::Cpu).cast(dtype).to(device);
    let mut opt = Optimizer::new(vec![("p".into(), p.clone())], rule, lr);
    (0..STEPS)
        .map(|_| {
            let loss = ((&p - &c).square() * &a * 0.5 + p.sin()).sum_all();
            opt.step(&loss.backward()).unwrap();
            p.to_f64_vec().unwrap()
        })
        .collect()
}

fn rules() -> Vec<(&'static str, Rule, f64)> {
    vec![
        ("sgd", Rule::sgd(), 0.05),
        ("sgd momentum + weight decay", Rule::sgd_momentum(0.9).weight_decay(0.01), 0.02),
        ("sgd nesterov", Rule::Sgd { momentum: 0.8, nesterov: true, weight_decay: 0.0 }, 0.02),
        ("adagrad", Rule::adagrad().weight_decay(0.1), 0.3),
        ("rmsprop", Rule::rmsprop(), 0.01),
        (
            "rmsprop centered with momentum",
            Rule::RmsProp { alpha: 0.9, eps: 1e-8, momentum: 0.5, centered: true, weight_decay: 0.0 },
            0.01,
        ),
        ("adadelta", Rule::adadelta(), 1.0),
        ("adam", Rule::adam().weight_decay(0.05), 0.05),
        ("adamw", Rule::adamw(), 0.05),
    ]
}

#[test]
fn every_rule_follows_its_independent_f64_trajectory() {
    for (name, rule, lr) in rules() {
        let want = independent(rule, lr);
        let got = kiln_trajectory(rule, lr, &Device::Cpu, DType::F64);
        for (step, (w, g)) in want.iter().zip(&got).enumerate() {
            for (x, y) in w.iter().zip(g) {
                assert!((x - y).abs() < 1e-10 * (1.0 + x.abs()), "{name} step {step}: {w:?} vs {g:?}");
            }
        }
        // and it actually optimizes: the last point is far from the start
        assert!(
            want.last().unwrap().iter().zip(P0).any(|(p, p0)| (p - p0).abs() > 0.05),
            "{name} did not move"
        );
    }
}

#[test]
fn fused_gpu_updates_match_the_cpu() {
    let Some(gpu) = common::gpu("fused optimizer updates") else {
        return;
    };
    for (name, rule, lr) in rules() {
        let cpu = kiln_trajectory(rule, lr, &Device::Cpu, DType::F32);
        let on_gpu = kiln_trajectory(rule, lr, &gpu, DType::F32);
        for (step, (c, g)) in cpu.iter().zip(&on_gpu).enumerate() {
            for (x, y) in c.iter().zip(g) {
                assert!((x - y).abs() < 1e-4 * (1.0 + x.abs()), "{name} step {step}: cpu {c:?} gpu {g:?}");
            }
        }
    }
}

#[test]
fn clipping_scales_the_joint_norm_down_to_the_limit() {
    let w = Tensor::from_vec(vec![0.0f64; 2], [2], &Device::Cpu).requires_grad_();
    let b = Tensor::from_vec(vec![0.0f64], [1], &Device::Cpu).requires_grad_();
    // gradients (3, 0) and (4): norm 5
    let loss =
        (&w * &Tensor::from_vec(vec![3.0f64, 0.0], [2], &Device::Cpu)).sum_all() + (&b * 4.0).sum_all();
    let mut grads = loss.backward();
    let params = vec![("w".to_string(), w.clone()), ("b".to_string(), b.clone())];
    let norm = clip_grad_norm(&mut grads, &params, 1.0).unwrap();
    assert!((norm.item::<f64>().unwrap() - 5.0).abs() < 1e-12);
    let gw = grads.get(&w).unwrap().to_vec::<f64>().unwrap();
    assert!((gw[0] - 0.6).abs() < 1e-6 && (grads.get(&b).unwrap().item::<f64>().unwrap() - 0.8).abs() < 1e-6);
    // below the limit nothing changes
    let mut small = (&w * 0.1).sum_all().backward();
    clip_grad_norm(&mut small, &params[..1], 1.0);
    assert!((small.get(&w).unwrap().to_vec::<f64>().unwrap()[0] - 0.1).abs() < 1e-12);
}

fn run(mut s: impl Scheduler, periods: usize, metrics: &[f64]) -> Vec<f64> {
    let mut out = vec![s.lr()];
    for i in 0..periods {
        out.push(s.step(metrics.get(i).copied()));
    }
    out
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!((x - y).abs() < 1e-12, "{a:?} vs {b:?}");
    }
}

#[test]
fn schedules_follow_pytorchs_formulas() {
    close(&run(StepLr::new(1.0, 2, 0.5), 5, &[]), &[1.0, 1.0, 0.5, 0.5, 0.25, 0.25]);
    close(&run(ExponentialLr::new(2.0, 0.5), 3, &[]), &[2.0, 1.0, 0.5, 0.25]);
    let cos = run(CosineLr::new(1.0, 0.0, 4), 5, &[]);
    close(
        &cos,
        &[
            1.0,
            (1.0 + (std::f64::consts::PI / 4.0).cos()) / 2.0,
            0.5,
            (1.0 - (std::f64::consts::PI / 4.0).cos()) / 2.0,
            0.0,
            0.0,
        ],
    );
    close(
        &run(LinearWarmup::new(StepLr::new(1.0, 1, 0.5), 0.25, 3), 5, &[]),
        &[0.25, 0.5, 0.75, 1.0, 0.5, 0.25],
    );
    // one-cycle: starts at max/25, peaks at max after 30% of the steps, ends near max/25e4
    let oc = run(OneCycle::new(1.0, 100), 99, &[]);
    assert!((oc[0] - 0.04).abs() < 1e-12);
    let peak = oc.iter().cloned().fold(0.0, f64::max);
    assert!(
        (peak - 1.0).abs() < 1e-12 && (oc.iter().position(|&v| v == peak).unwrap() as f64 - 29.0).abs() < 1.0
    );
    assert!((oc[99] - 0.04 / 1e4).abs() < 1e-12);
    // and its momentum the other way, as PyTorch's OneCycleLR (`tests/fixtures/one_cycle.py`
    // printed these (step, lr, momentum))
    let pytorch = [
        (0, 0.040000000000000036, 0.95),
        (10, 0.29516394846410077, 0.9234204220349895),
        (29, 1.0, 0.85),
        (30, 0.9994965352845243, 0.8500503466729342),
        (50, 0.793893450575732, 0.8706107373853763),
        (99, 4e-06, 0.95),
    ];
    let mut s = OneCycle::new(1.0, 100);
    let mut opt =
        Optimizer::new(Vec::new(), Rule::Sgd { momentum: 0.9, nesterov: true, weight_decay: 0.0 }, 0.1);
    for t in 0..100 {
        if let Some(&(_, lr, momentum)) = pytorch.iter().find(|(step, _, _)| *step == t) {
            opt.follow(&s);
            assert!(
                (opt.lr() - lr).abs() < 1e-12 && (s.momentum().unwrap() - momentum).abs() < 1e-12,
                "step {t}"
            );
            assert_eq!(
                opt.rule(),
                Rule::Sgd { momentum: s.momentum().unwrap(), nesterov: true, weight_decay: 0.0 }
            );
        }
        s.step(None);
    }
    assert_eq!(OneCycle::new(1.0, 100).without_momentum_cycle().momentum(), None);
    // plateau: patience 1 → the rate drops after two periods without improvement
    let plateau = run(ReduceOnPlateau::new(1.0).with(0.5, 1), 5, &[3.0, 2.0, 2.5, 2.2, 1.0]);
    close(&plateau, &[1.0, 1.0, 1.0, 1.0, 0.5, 0.5]);
}

/// One SGD step (lr 0.1) on loss Σw² with w = [1, 2] listed twice, as a tied weight is.
fn step_on_a_tied_weight(device: &Device) -> (Vec<f32>, Vec<String>) {
    let w = Tensor::from_vec(vec![1.0f32, 2.0], [2], device).requires_grad_();
    let params = vec![("embedding.weight".to_string(), w.clone()), ("head.weight".to_string(), w.clone())];
    let mut opt = Optimizer::new(params, Rule::sgd_momentum(0.5), 0.1);
    opt.step(&w.square().sum_all().backward()).unwrap();
    let names = opt.state_dict().into_iter().map(|(n, _)| n).collect();
    (w.to_vec::<f32>().unwrap(), names)
}

#[test]
fn a_shared_parameter_is_updated_once_per_step_with_one_state() {
    // w − 0.1·2w = 0.8·w: once, not twice (0.6·w)
    let (values, names) = step_on_a_tied_weight(&Device::Cpu);
    assert_eq!(values, [0.8, 1.6]);
    assert_eq!(names, ["embedding.weight.momentum_buffer", "step"], "one state, under the first name");
    let Some(gpu) = common::gpu("a shared parameter on the GPU") else {
        return;
    };
    let (values, names) = step_on_a_tied_weight(&gpu);
    assert_eq!(values, [0.8, 1.6]);
    assert_eq!(names, ["embedding.weight.momentum_buffer", "step"]);
}

#[test]
fn clipping_counts_a_shared_parameter_once() {
    let w = Tensor::from_vec(vec![0.0f64; 2], [2], &Device::Cpu).requires_grad_();
    let mut grads = (&w * &Tensor::from_vec(vec![3.0f64, 4.0], [2], &Device::Cpu)).sum_all().backward();
    let tied = vec![("encoder.weight".to_string(), w.clone()), ("decoder.weight".to_string(), w.clone())];
    let norm = clip_grad_norm(&mut grads, &tied, 1.0).unwrap();
    assert!((norm.item::<f64>().unwrap() - 5.0).abs() < 1e-12, "the norm of (3, 4), not of (3, 4, 3, 4)");
    let g = grads.get(&w).unwrap().to_vec::<f64>().unwrap();
    assert!((g[0] - 0.6).abs() < 1e-6 && (g[1] - 0.8).abs() < 1e-6, "scaled once: {g:?}");
}

/// Two copies of the problem, `p` and `q`, in two groups: `p` with weight decay 0.1 at the base
/// rate, `q` without decay at half the rate. Returns the optimizer and both variables.
fn grouped(rule: Rule, lr: f64) -> (Optimizer, Tensor, Tensor) {
    let start = || Tensor::from_slice(&P0, [5], &Device::Cpu).requires_grad_();
    let (p, q) = (start(), start());
    let groups = vec![
        ParamGroup::new(vec![("p".into(), p.clone())]).weight_decay(0.1),
        ParamGroup::new(vec![("q".into(), q.clone())]).weight_decay(0.0).lr_scale(0.5),
    ];
    (Optimizer::with_groups(groups, rule, lr), p, q)
}

fn grouped_step(opt: &mut Optimizer, p: &Tensor, q: &Tensor) {
    let a = Tensor::from_slice(&A, [5], &Device::Cpu);
    let c = Tensor::from_slice(&C, [5], &Device::Cpu);
    let f = |x: &Tensor| ((x - &c).square() * &a * 0.5 + x.sin()).sum_all();
    opt.step(&(f(p) + f(q)).backward()).unwrap();
}

#[test]
fn each_parameter_group_follows_its_own_weight_decay_and_rate() {
    let lr = 0.05;
    let (mut opt, p, q) = grouped(Rule::adamw(), lr);
    let (want_p, want_q) = (
        independent(Rule::adamw().weight_decay(0.1), lr),
        independent(Rule::adamw().weight_decay(0.0), lr / 2.0),
    );
    assert_ne!(want_p, want_q, "the groups' settings make a difference");
    for step in 0..STEPS {
        grouped_step(&mut opt, &p, &q);
        for (want, got) in [(&want_p[step], &p), (&want_q[step], &q)] {
            let got = got.to_f64_vec().unwrap();
            for (x, y) in want.iter().zip(&got) {
                assert!((x - y).abs() < 1e-10 * (1.0 + x.abs()), "step {step}: {want:?} vs {got:?}");
            }
        }
    }
    assert_eq!(opt.rule_of("q"), Some(Rule::adamw().weight_decay(0.0)));
    assert_eq!(opt.lr_of("q"), Some(lr / 2.0));
    opt.set_lr(1.0);
    assert_eq!((opt.lr_of("p"), opt.lr_of("q")), (Some(1.0), Some(0.5)), "the scale follows a schedule");
}

#[test]
fn a_grouped_optimizers_state_dict_resumes_it_exactly() {
    let (mut opt, p, q) = grouped(Rule::adamw(), 0.05);
    for _ in 0..3 {
        grouped_step(&mut opt, &p, &q);
    }
    let state = opt.state_dict();
    let names: Vec<&str> = state.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["p.exp_avg", "p.exp_avg_sq", "q.exp_avg", "q.exp_avg_sq", "step"]);
    // a fresh optimizer over copies of the variables, restored, continues bit for bit
    let (mut restored, p2, q2) = grouped(Rule::adamw(), 0.05);
    p2.assign(&p).unwrap();
    q2.assign(&q).unwrap();
    restored.load_state_dict(&state).unwrap();
    assert_eq!(restored.steps(), 3);
    for _ in 0..3 {
        grouped_step(&mut opt, &p, &q);
        grouped_step(&mut restored, &p2, &q2);
    }
    assert_eq!(p.to_vec::<f64>().unwrap(), p2.to_vec::<f64>().unwrap());
    assert_eq!(q.to_vec::<f64>().unwrap(), q2.to_vec::<f64>().unwrap());
}

#[test]
fn a_tied_parameter_is_one_parameter_across_groups() {
    let w = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::Cpu).requires_grad_();
    let groups = vec![
        ParamGroup::new(vec![("embedding.weight".into(), w.clone())]).weight_decay(0.1),
        ParamGroup::new(vec![("head.weight".into(), w.clone())]).weight_decay(0.1),
    ];
    let mut opt = Optimizer::with_groups(groups, Rule::sgd(), 0.1);
    let names: Vec<&str> = opt.params().iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["embedding.weight"]);
    // one update: w − 0.1·(2w + 0.1·w)
    opt.step(&w.square().sum_all().backward()).unwrap();
    let want: Vec<f32> = [1.0f32, 2.0].iter().map(|w| w - 0.1 * (2.0 * w + 0.1 * w)).collect();
    assert_eq!(w.to_vec::<f32>().unwrap(), want);
}

#[test]
#[should_panic(expected = "head.weight is embedding.weight (one tied tensor), listed in groups 0 and 1")]
fn a_tied_parameter_in_groups_with_different_settings_is_refused() {
    let w = Tensor::from_vec(vec![1.0f32, 2.0], [2], &Device::Cpu).requires_grad_();
    let groups = vec![
        ParamGroup::new(vec![("embedding.weight".into(), w.clone())]).weight_decay(0.1),
        ParamGroup::new(vec![("head.weight".into(), w)]).weight_decay(0.0),
    ];
    Optimizer::with_groups(groups, Rule::adamw(), 0.1);
}

#[test]
fn decay_groups_split_parameters_as_nanogpt_does() {
    let dev = Device::Cpu;
    let trainable = |dims: &[usize]| Tensor::zeros(dims.to_vec(), &dev).requires_grad_();
    let wte = trainable(&[10, 4]);
    let params = vec![
        ("transformer.wte.weight".to_string(), wte.clone()),
        ("transformer.h.0.ln_1.weight".to_string(), trainable(&[4])),
        ("transformer.h.0.attn.c_attn.weight".to_string(), trainable(&[12, 4])),
        ("transformer.h.0.attn.c_attn.bias".to_string(), trainable(&[12])),
        ("transformer.frozen.weight".to_string(), Tensor::zeros([4, 4], &dev)),
        ("lm_head.weight".to_string(), wte),
    ];
    let groups = decay_groups(params, 0.1);
    let names = |g: &ParamGroup| g.params.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&groups[0]), ["transformer.wte.weight", "transformer.h.0.attn.c_attn.weight"]);
    assert_eq!(names(&groups[1]), ["transformer.h.0.ln_1.weight", "transformer.h.0.attn.c_attn.bias"]);
    assert_eq!((groups[0].weight_decay, groups[1].weight_decay), (Some(0.1), Some(0.0)));
    let opt = Optimizer::with_groups(groups, Rule::adamw(), 1e-3);
    assert_eq!(opt.params().len(), 4, "the tied head is the embedding, the frozen weight is left out");
    assert_eq!(opt.rule_of("transformer.h.0.attn.c_attn.bias"), Some(Rule::adamw().weight_decay(0.0)));
    assert_eq!(opt.rule_of("transformer.wte.weight"), Some(Rule::adamw().weight_decay(0.1)));
}

/// nanoGPT's `get_lr` (train.py), transliterated.
fn nanogpt_get_lr(
    it: usize,
    learning_rate: f64,
    warmup_iters: usize,
    lr_decay_iters: usize,
    min_lr: f64,
) -> f64 {
    if it < warmup_iters {
        return learning_rate * (it + 1) as f64 / (warmup_iters + 1) as f64;
    }
    if it > lr_decay_iters {
        return min_lr;
    }
    let decay_ratio = (it - warmup_iters) as f64 / (lr_decay_iters - warmup_iters) as f64;
    assert!((0.0..=1.0).contains(&decay_ratio));
    let coeff = 0.5 * (1.0 + (std::f64::consts::PI * decay_ratio).cos());
    min_lr + coeff * (learning_rate - min_lr)
}

#[test]
fn warmup_cosine_is_nanogpts_get_lr() {
    // the CPU recipe of char_gpt, the baby GPT's, and no warm-up
    for (max, min, warmup, decay) in [(1e-3, 1e-4, 100, 2000), (1e-3, 1e-4, 100, 5000), (2e-3, 2e-4, 0, 1000)]
    {
        let rates = run(WarmupCosine::new(max, min, warmup, decay), decay + 10, &[]);
        for (it, &lr) in rates.iter().enumerate() {
            let want = nanogpt_get_lr(it, max, warmup, decay, min);
            assert!((lr - want).abs() <= 1e-15 * max, "step {it}: {lr} vs nanoGPT's {want}");
        }
        assert_eq!(rates[decay + 10], min);
    }
}

/// One SGD step on `p` while a detached handle shares its storage: (p after, the handle after).
fn step_beside_a_snapshot(device: &Device) -> (Vec<f32>, Vec<f32>) {
    let p = Tensor::from_vec(vec![1.0f32, 2.0, 3.0], [3], device).requires_grad_();
    p.realize().unwrap();
    // computed before the step: then it holds p's storage, not a lazy view of p
    let snapshot = p.detach();
    snapshot.realize().unwrap();
    let mut opt = Optimizer::new(vec![("p".into(), p.clone())], Rule::sgd(), 0.5);
    let loss = p.square().sum_all();
    opt.step_with(&loss.backward(), &[loss]).unwrap();
    (p.to_vec::<f32>().unwrap(), snapshot.to_vec::<f32>().unwrap())
}

#[test]
fn updates_in_place_leave_a_tensor_sharing_the_old_storage_unchanged() {
    // p − 0.5 · 2p = 0; the snapshot keeps 1, 2, 3
    let want = (vec![0.0; 3], vec![1.0, 2.0, 3.0]);
    assert_eq!(step_beside_a_snapshot(&Device::Cpu), want);
    if let Some(gpu) = common::gpu("in-place optimizer updates") {
        assert_eq!(step_beside_a_snapshot(&gpu), want);
    }
}

/// Three steps of `rule` on twenty parameters of mixed sizes in two groups (the second at half
/// the rate): the parameters after each step, and the GPU dispatches of each update (the first
/// also creates the optimizer's state).
fn many_parameters(rule: Rule, device: &Device) -> (Vec<Vec<Vec<f64>>>, Vec<u64>) {
    kiln::manual_seed(4);
    let sizes = [1, 7, 256, 1031, 3, 64, 1, 513, 2, 97];
    let make = |k: usize| {
        let p = Tensor::randn([sizes[k % sizes.len()]], &Device::Cpu).to(device).detach();
        p.realize().unwrap();
        (format!("p{k}"), p.requires_grad_())
    };
    let params: Vec<(String, Tensor)> = (0..20).map(make).collect();
    let groups =
        vec![ParamGroup::new(params[..12].to_vec()), ParamGroup::new(params[12..].to_vec()).lr_scale(0.5)];
    let mut opt = Optimizer::with_groups(groups, rule, 0.01);
    let (mut trajectory, mut dispatches) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        let loss = params.iter().map(|(_, p)| (p.sin() * p).sum_all()).reduce(|a, b| a + b).unwrap();
        let grads = loss.backward();
        let all: Vec<Tensor> = params.iter().map(|(_, p)| grads.get(p).unwrap().clone()).collect();
        Tensor::realize_all(&all).unwrap();
        let before = kiln::debug::gpu_dispatches();
        opt.step(&grads).unwrap();
        dispatches.push(kiln::debug::gpu_dispatches() - before);
        trajectory.push(params.iter().map(|(_, p)| p.to_f64_vec().unwrap()).collect());
    }
    (trajectory, dispatches)
}

#[test]
fn gpu_updates_of_many_parameters_share_dispatches_and_match_the_cpu() {
    let Some(gpu) = common::gpu("multi-tensor optimizer updates") else {
        return;
    };
    for (name, rule, _) in rules() {
        let (cpu, _) = many_parameters(rule, &Device::Cpu);
        let (on_gpu, dispatches) = many_parameters(rule, &gpu);
        for (step, (c, g)) in cpu.iter().zip(&on_gpu).enumerate() {
            for (k, (x, y)) in c.iter().zip(g).enumerate() {
                let diff = x.iter().zip(y).map(|(a, b)| (a - b).abs() / (1.0 + a.abs())).fold(0.0, f64::max);
                assert!(diff < 1e-5, "{name} step {step}, parameter {k}: the GPU is {diff:e} off the CPU");
            }
        }
        // once the state exists (the first step creates it): twelve tensors and eight of
        // another group, at most 16 to a dispatch, fewer where the adapter binds fewer
        // buffers; never one dispatch per tensor
        for d in &dispatches[1..] {
            assert!((2..20).contains(d), "{name}: {d} dispatches for 20 parameters in 2 groups");
        }
    }
}
