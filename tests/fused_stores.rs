//! Kernels that compute more than their own output (`graph/siblings.rs`, `graph/permuted.rs`,
//! `ops/epilogue.rs`): a GEMM that sums a bias's gradient beside its weight's, a GEMM that
//! stores its product in a permute's order, a layer norm gradient that writes its weight's
//! gradient terms, an embedding lookup that stores through a chain. Each runs three ways —
//! fused on the GPU, unfused on the GPU, on the CPU — and must agree, and the kernel list shows
//! the fusion happened.

mod common;

use common::Seed;
use common::three_ways::{Runs, relative_error, three_ways};
use kiln::ops::conv::ConvOptions;
use kiln::{Device, Tensor};

#[test]
fn a_bias_gradient_is_summed_by_its_weight_gradient_product() {
    let seed = Seed::from_env("fused_stores", "a_bias_gradient_is_summed_by_its_weight_gradient_product");
    let Some(gpu) = common::gpu("fused stores") else { return };
    // (rows, in, out): one row, primes, more rows than a tile of K and outputs than a tile, and
    // a width that fills its tiles (no spare line: the sum stays a reduction); a 3-D input
    // folded into rows; weights stored (out, in) as nn::Linear's and (in, out)
    for (rows, inputs, outputs) in [(1, 3, 2), (131, 67, 37), (300, 130, 70), (5, 64, 9)] {
        for (folded, transposed) in [(false, true), (true, true), (false, false)] {
            let runs = three_ways(&gpu, seed.value, &|device| {
                let x = Tensor::randn([rows, inputs], &Device::Cpu).to(device);
                let x = if folded { x.reshape([1, rows, inputs]) } else { x };
                let w = if transposed { [outputs, inputs] } else { [inputs, outputs] };
                let w = Tensor::randn(w, &Device::Cpu).to(device).requires_grad_();
                let b = Tensor::randn([outputs], &Device::Cpu).to(device).requires_grad_();
                let y = if transposed { x.matmul(&w.t()) } else { x.matmul(&w) } + &b;
                // D = y: a chain (0.5·y²'s gradient) that stays well conditioned (tanh's
                // gradient, 1 − tanh², cancels where y is large: GPU and CPU then differ by
                // more than the products do)
                let g = (y.square() * 0.5).sum_all().backward();
                vec![g.get(&w).unwrap().clone(), g.get(&b).unwrap().clone()]
            });
            let case =
                format!("rows {rows}, in {inputs}, out {outputs}, folded {folded}, (out, in) {transposed}");
            // the extra line of ones must land in the padding of the GEMM's last tile
            assert_bias_summed_by(&runs, "matmul:main + sums", inputs % 64 != 0, &case, &seed);
        }
    }
}

/// Asserts that the bias gradient was summed by the weight gradient's kernel `sums` exactly
/// when `expected` (else by a reduction of its own), and that the three runs agree.
fn assert_bias_summed_by(runs: &Runs, sums: &str, expected: bool, case: &str, seed: &Seed) {
    let kernels = &runs.kernels;
    let summed = kernels.iter().any(|k| k == sums);
    assert_eq!(summed, expected, "{case}: {kernels:?}; {seed}");
    assert_eq!(kernels.iter().any(|k| k.starts_with("reduce:")), !summed, "{case}: {kernels:?}");
    runs.assert_agree(case, seed);
}

#[test]
fn a_convolution_bias_gradient_is_summed_by_its_weight_gradient() {
    let seed = Seed::from_env("fused_stores", "a_convolution_bias_gradient_is_summed_by_its_weight_gradient");
    let Some(gpu) = common::gpu("fused stores") else { return };
    // (N, C, O, H, kernel, groups): one image; a long K split over several slabs; groups; a
    // patch of 64 = a whole column tile (no spare column: the sum stays a reduction)
    for (n, c, o, h, k, groups) in
        [(1, 1, 3, 5, 3, 1), (4, 3, 5, 42, 3, 1), (2, 4, 6, 9, 3, 2), (2, 16, 4, 6, 2, 1)]
    {
        let runs = three_ways(&gpu, seed.value, &|device| {
            let x = Tensor::randn([n, c, h, h], &Device::Cpu).to(device);
            let w = Tensor::randn([o, c / groups, k, k], &Device::Cpu).to(device).requires_grad_();
            let b = Tensor::randn([o], &Device::Cpu).to(device).requires_grad_();
            let opts = ConvOptions { padding: (1, 1), groups, ..ConvOptions::default() };
            let y = x.conv2d(&w, opts) + b.reshape([o, 1, 1]);
            let g = (y.square() * 0.5).sum_all().backward();
            vec![g.get(&w).unwrap().clone(), g.get(&b).unwrap().clone()]
        });
        let case = format!("N {n}, C {c}, O {o}, {h}x{h}, kernel {k}, groups {groups}");
        assert_bias_summed_by(&runs, "conv:gemm + sums", (c / groups * k * k) % 64 != 0, &case, &seed);
    }
}

#[test]
fn a_permute_of_a_product_is_stored_by_the_product() {
    let seed = Seed::from_env("fused_stores", "a_permute_of_a_product_is_stored_by_the_product");
    let Some(gpu) = common::gpu("fused stores") else { return };
    // splitting a projection into heads, (B·T, 3C) → (B, T, 3, nh, hs) → (3, B, nh, T, hs), at
    // odd sizes; a batched product with a transposed operand, its last two axes swapped back;
    // a product read by something else too, which stays unfused
    type Build = fn(&[Tensor]) -> Vec<Tensor>;
    let cases: [(&str, Vec<Vec<usize>>, Build, bool); 3] = [
        (
            "heads",
            vec![vec![2 * 5, 7], vec![7, 3 * 3 * 2]],
            |t| vec![t[0].matmul(&t[1]).reshape([2, 5, 3, 3, 2]).permute(&[2, 0, 3, 1, 4])],
            true,
        ),
        (
            "batched",
            vec![vec![3, 13, 6], vec![3, 70, 6]],
            |t| vec![t[0].matmul(&t[1].t()).transpose(1, 2)],
            true,
        ),
        (
            "read twice",
            vec![vec![4, 5], vec![5, 6]],
            |t| {
                let product = t[0].matmul(&t[1]);
                vec![product.t(), product.clone()]
            },
            false,
        ),
    ];
    for (name, shapes, build, stored) in cases {
        let Runs { fused, kernels, unfused, cpu } = three_ways(&gpu, seed.value, &|device| {
            let inputs: Vec<Tensor> =
                shapes.iter().map(|s| Tensor::randn(s.clone(), &Device::Cpu).to(device)).collect();
            Tensor::realize_all(&inputs).unwrap();
            build(&inputs)
        });
        let permuted = kernels == ["matmul:main + permuted store"];
        assert_eq!(permuted, stored, "{name}: {kernels:?}");
        for ((f, u), c) in fused.iter().zip(&unfused).zip(&cpu) {
            assert_eq!(f, u, "{name}: the permuted store differs from the product and its copy; {seed}");
            assert!(relative_error(f, c) < 1e-5, "{name}: GPU and CPU differ; {seed}");
        }
    }
}

#[test]
fn a_layer_norm_gradient_writes_its_weight_gradient_terms() {
    let seed = Seed::from_env("fused_stores", "a_layer_norm_gradient_writes_its_weight_gradient_terms");
    let Some(gpu) = common::gpu("fused stores") else { return };
    // (rows, size): one row of one element, primes, rows longer than a workgroup; the input
    // gradient alone, or with the residual stream's gradient added in its store (a chain)
    for (rows, size) in [(1, 1), (37, 131), (6, 600)] {
        for residual in [false, true] {
            let runs = three_ways(&gpu, seed.value, &|device| {
                let x = Tensor::randn([rows, size], &Device::Cpu).to(device).requires_grad_();
                let w = Tensor::randn([size], &Device::Cpu).to(device).requires_grad_();
                let b = Tensor::randn([size], &Device::Cpu).to(device).requires_grad_();
                let r = Tensor::randn([rows, size], &Device::Cpu).to(device);
                Tensor::realize_all(&[x.clone(), w.clone(), b.clone(), r.clone()]).unwrap();
                let normed = x.layer_norm(&[size], Some(&w), Some(&b), 1e-5);
                let h = if residual { &x + normed } else { normed };
                // dy = r: well conditioned (a tanh's gradient would cancel where it saturates)
                let g = (&h * &r).sum_all().backward();
                // the output too, so that the forward pass's layer norm runs in this realize
                let mut outputs = [&x, &w, &b].map(|p| g.get(p).unwrap().clone()).to_vec();
                outputs.push(h);
                outputs
            });
            let kernels = &runs.kernels;
            let case = format!("rows {rows}, size {size}, residual {residual}");
            let paired =
                if residual { "layernorm:backward + epilogue + terms" } else { "layernorm:backward + terms" };
            assert!(kernels.iter().any(|k| k == paired), "{case}: {kernels:?}");
            let normalizations = kernels.iter().filter(|k| k.starts_with("layernorm:forward")).count();
            assert_eq!(normalizations, 1, "{case}: x̂ is not recomputed: {kernels:?}");
            runs.assert_agree(&case, &seed);
        }
    }
}

#[test]
fn an_embedding_lookup_stores_through_a_chain() {
    let seed = Seed::from_env("fused_stores", "an_embedding_lookup_stores_through_a_chain");
    let Some(gpu) = common::gpu("fused stores") else { return };
    // (batch, steps, vocabulary, features): tokens looked up, positions added, scaled; the
    // gradients go back through the lookup (a tied table's gradient added at its indices)
    for (batch, steps, vocab, features) in [(1, 1, 2, 1), (3, 7, 11, 13), (2, 64, 65, 130)] {
        let runs = three_ways(&gpu, seed.value, &|device| {
            let ids: Vec<i32> = Tensor::rand([batch * steps], &Device::Cpu)
                .to_vec::<f32>()
                .unwrap()
                .iter()
                .map(|u| (u * vocab as f32) as i32 % vocab as i32)
                .collect();
            let ids = Tensor::from_vec(ids, [batch * steps], device);
            let table = Tensor::randn([vocab, features], &Device::Cpu).to(device).requires_grad_();
            let positions = Tensor::randn([steps, features], &Device::Cpu).to(device).requires_grad_();
            Tensor::realize_all(&[ids.clone(), table.clone(), positions.clone()]).unwrap();
            let x = (table.index_select(0, &ids).reshape([batch, steps, features]) + &positions) * 0.5;
            // the table is also the output layer's weight, as a GPT's is
            let logits = x.reshape([batch * steps, features]).matmul(&table.t());
            let g = (logits.square() * 0.5).sum_all().backward();
            vec![x, g.get(&table).unwrap().clone(), g.get(&positions).unwrap().clone()]
        });
        let kernels = &runs.kernels;
        let case = format!("batch {batch}, steps {steps}, vocabulary {vocab}, features {features}");
        assert!(kernels.iter().any(|k| k == "index:index_select + epilogue"), "{case}: {kernels:?}");
        assert!(!kernels.iter().any(|k| k.starts_with("creation:")), "{case}: no zeros filled: {kernels:?}");
        runs.assert_agree(&case, &seed);
    }
}
