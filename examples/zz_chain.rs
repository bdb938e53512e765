use kiln::{Device, Tensor};
use std::time::Instant;
fn main() {
    let z0 = Tensor::randn([256], &Device::Cpu);
    z0.realize().unwrap();
    let mut best = f64::MAX;
    for _ in 0..2000 {
        let t = Instant::now();
        let mut z = z0.clone();
        for _ in 0..1000 { z = &z * 0.999 + 0.001; }
        z.realize().unwrap();
        best = best.min(t.elapsed().as_secs_f64());
    }
    println!("{:.3} us/op", best * 1e6 / 2000.0);
}
