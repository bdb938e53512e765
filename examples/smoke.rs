use kiln::{Device, Tensor};
fn main() -> kiln::Result<()> {
    for dev in [Device::Cpu, Device::gpu(0)?] {
        let a = Tensor::arange(0.0, 6.0, 1.0, &dev).reshape([2, 3]);
        let b = Tensor::ones([3], &dev);
        let c = (&a + &b).tanh().sum(1, false);
        println!("{dev}: {c}");
        let m = a.matmul(&a.t());
        println!("{m}");
        let w = Tensor::randn([3, 2], &dev).requires_grad_();
        let loss = a.matmul(&w).square().mean_all();
        let g = loss.backward();
        println!("loss {} grad {}", loss, g.get(&w).unwrap());
        println!(
            "{}",
            Tensor::concat(&[a.clone(), a.clone()], 0)
                .permute(&[1, 0])
                .slice(1, 0, 4, 2)
        );
        println!("{}", a.argmax(1, false));
    }
    Ok(())
}
