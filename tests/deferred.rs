//! Deferred assignments: BatchNorm's running statistics are updated by the next realize, within
//! the training step's one realize, never by a realize forced in the middle of the forward.

mod common;

use kiln::nn::{self, BatchNorm, Module};
use kiln::{Device, Tensor};

/// PyTorch's update of the running statistics from a batch (N, C): momentum 0.1, the unbiased
/// variance.
fn expected(mean: &[f64], var: &[f64], x: &[f32], n: usize, c: usize) -> (Vec<f64>, Vec<f64>) {
    let mut new_mean = Vec::new();
    let mut new_var = Vec::new();
    for ch in 0..c {
        let col: Vec<f64> = (0..n).map(|i| x[i * c + ch] as f64).collect();
        let mu = col.iter().sum::<f64>() / n as f64;
        let unbiased = col.iter().map(|v| (v - mu) * (v - mu)).sum::<f64>() / (n - 1) as f64;
        new_mean.push(0.9 * mean[ch] + 0.1 * mu);
        new_var.push(0.9 * var[ch] + 0.1 * unbiased);
    }
    (new_mean, new_var)
}

fn close(got: &[f32], want: &[f64]) {
    for (g, w) in got.iter().zip(want) {
        assert!((*g as f64 - w).abs() < 1e-5 * (1.0 + w.abs()), "{got:?} vs {want:?}");
    }
}

#[test]
fn batchnorm_forward_realizes_nothing_and_the_next_realize_updates_the_statistics() {
    let mut devices = vec![Device::Cpu];
    devices.extend(common::gpu("deferred BatchNorm statistics"));
    for device in devices {
        kiln::manual_seed(5);
        let bn = BatchNorm::new_1d(3, &device);
        let data: Vec<f32> = (0..12).map(|i| ((i * 7) % 5) as f32 - 1.5 + i as f32 * 0.1).collect();
        // a lazy input: a forward that realized anything would compute it
        let x = Tensor::from_vec(data.clone(), [4, 3], &device) * 1.0;
        let y = bn.forward(&x);
        assert!(!x.is_realized(), "{device}: the forward realized its input");
        assert!(!y.is_realized());
        // the statistics change with the step's realize (here, of the output)
        y.realize().unwrap();
        let (m1, v1) = expected(&[0.0; 3], &[1.0; 3], &data, 4, 3);
        close(&bn.running_mean.to_vec::<f32>().unwrap(), &m1);
        close(&bn.running_var.to_vec::<f32>().unwrap(), &v1);

        // two forwards before any realize compose: both updates land
        let _ = bn.forward(&x);
        let _ = bn.forward(&x);
        let (m2, v2) = expected(&m1, &v1, &data, 4, 3);
        let (m3, v3) = expected(&m2, &v2, &data, 4, 3);
        close(&bn.running_mean.to_vec::<f32>().unwrap(), &m3);
        close(&bn.running_var.to_vec::<f32>().unwrap(), &v3);

        // evaluation reads the statistics, pending updates included
        let _ = bn.forward(&x);
        let (m4, v4) = expected(&m3, &v3, &data, 4, 3);
        nn::eval(&bn);
        let out = bn.forward(&x).to_vec::<f32>().unwrap();
        for (i, o) in out.iter().enumerate() {
            let ch = i % 3;
            let want = (data[i] as f64 - m4[ch]) / (v4[ch] + 1e-5).sqrt();
            assert!((*o as f64 - want).abs() < 1e-4, "{device}: eval output {o} vs {want}");
        }
    }
}

#[test]
fn an_explicit_assignment_supersedes_a_pending_one() {
    let t = Tensor::zeros([2], &Device::Cpu);
    t.assign_deferred(&(t.latest() + 5.0));
    t.assign(&Tensor::ones([2], &Device::Cpu)).unwrap();
    Tensor::ones([1], &Device::Cpu).realize().unwrap();
    assert_eq!(t.to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
}
