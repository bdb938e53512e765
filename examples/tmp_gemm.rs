use kiln::backend::cpu::{Mat, gemm};
use std::time::Instant;
fn main() {
    let shapes = [
        (32, 256, 1024, true),
        (32, 256, 1024, false),
        (32, 1024, 256, false),
        (32, 1024, 256, true),
        (64, 256, 1024, true),
        (12, 128, 384, true),
        (7, 13, 37, false),
        (7, 17, 37, true),
    ];
    let only: Option<usize> = std::env::args().nth(1).map(|s| s.parse().unwrap());
    for (idx, (m, k, n, bt)) in shapes.into_iter().enumerate() {
        if only.is_some_and(|o| o != idx) {
            continue;
        }
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3 - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3 - 0.5).collect();
        let (br, bc) = if bt { (1, k) } else { (n, 1) };
        let mut c = vec![0f32; m * n];
        let run = |c: &mut Vec<f32>| {
            gemm(m, k, n, Mat { data: &a, row: k, col: 1 }, Mat { data: &b, row: br, col: bc }, 0.0, c, n)
        };
        run(&mut c);
        let mut err = 0f64;
        for i in 0..m {
            for j in 0..n {
                let mut s = 0f64;
                for p in 0..k {
                    s += a[i * k + p] as f64 * b[p * br + j * bc] as f64;
                }
                err = err.max((s - c[i * n + j] as f64).abs());
            }
        }
        let r = (2e8 / (m * k * n) as f64).max(3.0) as usize;
        let t = Instant::now();
        for _ in 0..r {
            run(&mut c);
        }
        let s = t.elapsed().as_secs_f64() / r as f64;
        println!("{m}x{k}x{n} bt={bt}: {:.0} GF/s  max err {err:.2e}", 2.0 * (m * k * n) as f64 / s / 1e9);
    }
}
