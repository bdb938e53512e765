//! The wgpu backend's own machinery: the pipeline cache under hash collisions, the buffer pool's
//! byte budget (and that evicted buffers really free their memory), `KILN_DUMP_WGSL`, matmuls
//! whose batch dimensions the kernel cannot walk directly, and a grid folded along its rows
//! (the case table has rows past the workgroup limit along the other two dimensions).
//!
//! Tests that need an environment variable set before any GPU context opens run themselves
//! again in a child process with it (as `tests/check.rs` does for `KILN_CHECK`).

mod common;

use kiln::testing::{Case, Domain, Input, parity};
use kiln::{Device, Tensor};
use std::path::PathBuf;

fn assert_close(got: &[f32], want: &[f32], what: &str) {
    assert_eq!(got.len(), want.len(), "{what}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() <= 1e-5 * w.abs().max(1.0), "{what}: got {got:?}, want {want:?}");
    }
}

#[test]
fn colliding_pipeline_hashes_still_run_the_right_kernels() {
    let Some(gpu) = common::gpu("pipeline hash collisions") else {
        return;
    };
    let values = vec![0.5f32, -1.0, 2.0];
    let x = Tensor::from_vec(values.clone(), [3], &gpu);
    x.realize().unwrap();
    // every kernel now hashes the same: only the full key tells them apart
    kiln::debug::force_pipeline_hash_collisions(true);
    let exp = x.exp().to_vec::<f32>();
    let tanh = x.tanh().to_vec::<f32>();
    let sum = (&x + &x).to_vec::<f32>();
    let product = (&x * &x).to_vec::<f32>();
    kiln::debug::force_pipeline_hash_collisions(false);
    assert_close(&exp.unwrap(), &values.iter().map(|v| v.exp()).collect::<Vec<_>>(), "exp");
    assert_close(&tanh.unwrap(), &values.iter().map(|v| v.tanh()).collect::<Vec<_>>(), "tanh");
    assert_close(&sum.unwrap(), &values.iter().map(|v| v + v).collect::<Vec<_>>(), "x + x");
    assert_close(&product.unwrap(), &values.iter().map(|v| v * v).collect::<Vec<_>>(), "x · x");
}

/// The budget the pool test runs under: smaller than the buffers it makes.
const POOL_BUDGET: u64 = 1 << 20;

#[test]
fn idle_gpu_buffers_stay_within_the_pool_budget_and_evicted_ones_free_their_memory() {
    const TEST: &str = "idle_gpu_buffers_stay_within_the_pool_budget_and_evicted_ones_free_their_memory";
    if common::ran_in_child(TEST, "KILN_GPU_POOL_BYTES", &POOL_BUDGET.to_string()) {
        return;
    }
    let Some(gpu) = common::gpu("pool budget") else {
        return;
    };
    let ctx = kiln::backend::wgpu::context(0).unwrap();
    // buffers of 40 KB to 1.2 MB, each bound by cached bind groups, then all returned to the pool
    for round in 0..2 {
        for n in [10_000usize, 30_000, 100_000, 200_000, 300_000, 20_000] {
            let x = Tensor::from_vec((0..n).map(|i| (i % 7) as f32).collect::<Vec<_>>(), [n], &gpu);
            let y = (x.exp() * 2.0).sum_all();
            let want = (0..n).map(|i| 2.0 * ((i % 7) as f64).exp()).sum::<f64>();
            let got = y.item::<f32>().unwrap() as f64;
            assert!((got - want).abs() <= 1e-5 * want, "round {round}, {n} elements: {got} vs {want}");
            drop((x, y));
            let (_, idle) = kiln::debug::gpu_pool_idle(0).unwrap();
            assert!(idle <= POOL_BUDGET, "round {round}, {n} elements: {idle} idle bytes over {POOL_BUDGET}");
        }
    }
    assert_eq!(kiln::debug::live_gpu_buffers(), 0, "no tensor is alive");
    // the driver still holds exactly the idle buffers for kiln's tensors: evicted ones are gone,
    // so no cached bind group kept one alive
    ctx.wait().unwrap();
    let Some(report) = ctx.device.generate_allocator_report() else {
        eprintln!("SKIPPED the memory half: this backend gives no allocator report");
        return;
    };
    let held: Vec<u64> =
        report.allocations.iter().filter(|a| a.name == "kiln tensor").map(|a| a.size).collect();
    let (idle, idle_bytes) = kiln::debug::gpu_pool_idle(0).unwrap();
    assert_eq!(
        held.len(),
        idle,
        "the driver holds tensor buffers of {held:?} bytes; the pool keeps {idle_bytes}"
    );
}

#[test]
fn kiln_dump_wgsl_writes_the_source_of_every_kernel_compiled() {
    const TEST: &str = "kiln_dump_wgsl_writes_the_source_of_every_kernel_compiled";
    let dir = std::env::temp_dir().join(format!("kiln-dump-wgsl-{}", std::process::id()));
    if common::ran_in_child(TEST, "KILN_DUMP_WGSL", dir.to_str().unwrap()) {
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let Some(gpu) = common::gpu("KILN_DUMP_WGSL") else {
        return;
    };
    let dir = PathBuf::from(std::env::var("KILN_DUMP_WGSL").unwrap());
    let values = [1.0f32, 2.0, 3.0, 4.0];
    let x = Tensor::from_vec(values.to_vec(), [2, 2], &gpu);
    // reading the product back also leaves no work in flight when this child process exits
    // (Mesa's teardown at exit must not race its compute threads)
    let product = x.exp().matmul(&x).to_vec::<f32>().unwrap();
    let e = values.map(f32::exp);
    let want =
        [e[0] * 1.0 + e[1] * 3.0, e[0] * 2.0 + e[1] * 4.0, e[2] * 1.0 + e[3] * 3.0, e[2] * 2.0 + e[3] * 4.0];
    assert_close(&product, &want, "exp(x) · x");
    let files: Vec<(String, String)> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{} was not written: {e}", dir.display()))
        .map(|f| {
            let path = f.unwrap().path();
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(&path).unwrap(),
            )
        })
        .collect();
    let find = |prefix: &str, tag: &str| {
        files
            .iter()
            .find(|(name, _)| name.starts_with(prefix) && name.contains(tag) && name.ends_with(".wgsl"))
            .unwrap_or_else(|| {
                panic!("no {prefix}…{tag}… file among {:?}", files.iter().map(|f| &f.0).collect::<Vec<_>>())
            })
    };
    // the final source: prelude, library and the shader with its specialization applied
    let (_, exp) = find("activations+unary.main.", "expr=exp");
    assert!(exp.contains("fn flat_workgroup") && exp.contains("return exp(x);"), "{exp}");
    assert!(!exp.contains("// @expr"), "the template line is replaced:\n{exp}");
    let (_, matmul) = find("gemm+matmul.main.", "BM=64u");
    assert!(matmul.contains("fn flat_workgroup") && matmul.contains("fn gemm_tile"), "{matmul}");
    assert!(matmul.contains("const BM: u32 = 64u;") && !matmul.contains("// @BM"), "{matmul}");
}

#[test]
fn a_matmul_with_six_batch_dimensions_matches_the_cpu() {
    let Some(gpu) = common::gpu("6-D matmul") else {
        return;
    };
    // broadcasts that alternate between the operands leave six batch dimensions that no two
    // adjacent ones can be merged
    let case = Case::new(
        "matmul",
        "matmul, six batch dimensions",
        vec![Input::float(Domain::Normal), Input::float(Domain::Normal)],
        vec![
            vec![vec![2, 1, 2, 1, 2, 1, 3, 4], vec![1, 2, 1, 2, 1, 2, 4, 5]],
            vec![vec![3, 1, 2, 1, 2, 1, 7, 6], vec![3, 2, 1, 2, 1, 2, 6, 5]],
        ],
        |x, _| x[0].matmul(&x[1]),
    );
    for shapes in &case.shapes {
        let report = parity(&case, shapes, &gpu, 7, true).unwrap();
        assert!(report.forward <= 1e-5, "{shapes:?}: forward relative error {}", report.forward);
        assert_eq!(report.grads.len(), 2, "{shapes:?}: both gradients compared");
        for (input, err) in report.grads {
            assert!(err <= 1e-5, "{shapes:?}: gradient of input {input}: relative error {err}");
        }
    }
    // transposed operands are read in place through the same path
    let a = Tensor::randn([2, 1, 2, 1, 2, 4, 3], &gpu);
    let b = Tensor::randn([1, 2, 1, 2, 1, 5, 4], &gpu);
    let got = a.t().matmul(&b.t()).to_vec::<f32>().unwrap();
    let cpu = |t: &Tensor| Tensor::from_vec(t.to_vec::<f32>().unwrap(), t.dims().to_vec(), &Device::Cpu);
    let want = cpu(&a).t().matmul(&cpu(&b).t()).to_vec::<f32>().unwrap();
    assert_close(&got, &want, "aᵀ·bᵀ with five batch dimensions");
}

#[test]
fn a_matmul_with_more_than_65535_row_tiles_matches_the_cpu() {
    let Some(gpu) = common::gpu("matmul on a folded grid") else {
        return;
    };
    // 65,600 tiles of 64 rows. Forward only: the gradient of b would be a dot product of length
    // 4.2M, past what lavapipe runs (it stops any invocation's loops after 65,535 iterations)
    let a = Tensor::randn([4_198_400, 1], &gpu);
    let b = Tensor::randn([1, 2], &gpu);
    let got = a.matmul(&b).to_vec::<f32>().unwrap();
    let (av, bv) = (a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    let want: Vec<f32> = av.iter().flat_map(|x| [x * bv[0], x * bv[1]]).collect();
    assert_close(&got, &want, "(4,198,400 × 1)·(1 × 2)");
}

/// Threads realizing at once on one GPU: a realize frees each intermediate buffer at its last
/// recorded use, before it submits; another thread must not be handed that buffer, or its
/// result there is overwritten when the first thread's work runs. Each thread's chain of
/// elementwise ops must give exactly the CPU's values (the same f32 kernels on exact inputs,
/// within a few ulps).
#[test]
fn threads_realizing_at_once_never_take_a_buffer_still_in_flight() {
    let Some(gpu) = common::gpu("threads realizing at once") else {
        return;
    };
    let n = 40_000;
    let chain = |x: &Tensor| {
        let mut y = x.clone();
        for k in 0..12u8 {
            y = (&y * 0.5 + f64::from(k)).sin();
        }
        y
    };
    let workers: Vec<_> = (0..4)
        .map(|t| {
            std::thread::spawn(move || {
                for round in 0..40 {
                    let values: Vec<f32> =
                        (0..n).map(|i| ((i * 7 + t * 131 + round) % 1000) as f32 / 100.0).collect();
                    let want =
                        chain(&Tensor::from_vec(values.clone(), [n], &Device::Cpu)).to_vec::<f32>().unwrap();
                    let got = chain(&Tensor::from_vec(values, [n], &gpu)).to_vec::<f32>().unwrap();
                    assert_close(&got, &want, &format!("thread {t}, round {round}"));
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("a worker's results matched the CPU");
    }
}
