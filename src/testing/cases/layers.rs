//! Rows for the heavy kernels: matmul, convolution, pooling, softmax, layer norm, attention and
//! cross-entropy.

use super::{Case, shapes};
use crate::ops::attention::AttentionOptions;
use crate::ops::conv::ConvOptions;
use crate::ops::loss::CrossEntropy;
use crate::ops::pool::PoolOptions;
use crate::rng::RandomKey;
use crate::testing::{Domain, Input};
use crate::{DType, Device, Shape, Tensor};

const F: Input = Input::float(Domain::Normal);

/// Pooling runs one invocation per output element (per input element for the gradients) in
/// workgroups of 256. A 2×2 window at stride 1 takes a 4,097² image to 4,096² = 16,777,216 >
/// 65,535 · 256 outputs.
pub(super) const POOL_PAST_GRID_LIMIT: [usize; 4] = [1, 1, 4_097, 4_097];

/// The output of a 2×2 window at stride 1 over [`POOL_PAST_GRID_LIMIT`].
pub(super) const POOLED_PAST_GRID_LIMIT: [usize; 4] = [1, 1, 4_096, 4_096];

/// The row kernels (softmax, layer norm, cross-entropy) run one workgroup per row: 65,536 rows
/// pass the 65,535-workgroup limit.
pub(super) const ROWS_PAST_GRID_LIMIT: usize = 65_536;

pub(super) fn cases() -> Vec<Case> {
    let mut rows = matmul();
    rows.extend(convolution());
    rows.extend(normalization());
    rows.extend(channels());
    rows.extend(attention());
    rows
}

fn matmul() -> Vec<Case> {
    vec![
        Case::new(
            "matmul",
            "matmul",
            vec![F, F],
            shapes(&[
                &[&[3, 4], &[4, 5]],
                &[&[1, 1], &[1, 1]],
                &[&[7, 13], &[13, 5]],
                &[&[65, 67], &[67, 129]],
                &[&[1, 300], &[300, 1]],
            ]),
            |x, _| x[0].matmul(&x[1]),
        )
        // a dot product of length k in f32 errs by up to ~√k·ε·Σ|aᵢbᵢ| / |Σaᵢbᵢ| on each side
        .tol(1e-4),
        Case::new(
            "matmul",
            "matmul, 128×128 tiles",
            vec![F, F],
            shapes(&[&[&[2, 3], &[3, 2]], &[&[8, 257, 129], &[8, 129, 259]]]),
            |x, _| x[0].matmul(&x[1]),
        )
        .tol(1e-4),
        Case::new(
            "matmul",
            "matmul batched, broadcast",
            vec![F, F],
            shapes(&[
                &[&[2, 1, 3, 4], &[3, 4, 2]],
                &[&[1, 1, 1], &[1, 1, 1]],
                &[&[2, 3, 17, 9], &[3, 9, 70]],
            ]),
            |x, _| x[0].matmul(&x[1]),
        )
        // more than 65,535 batches: a folded grid
        .with_shapes(vec![vec![65_600, 2, 3], vec![65_600, 3, 2]])
        .tol(2e-5),
        Case::new(
            "matmul",
            "matmul aᵀ·bᵀ read in place",
            vec![F, F],
            shapes(&[&[&[4, 3], &[5, 4]], &[&[31, 7], &[11, 31]]]),
            |x, _| x[0].t().matmul(&x[1].t()),
        )
        .tol(2e-5),
        // a recurrent step's product: x·wᵀ with wᵀ stored, read as laid out; the gradient
        // products read w itself (x's) and give w's as the transpose of a product, computed
        // the other way round
        Case::new(
            "matmul",
            "matmul by a stored transpose",
            vec![F, F],
            shapes(&[&[&[1, 1], &[1, 1]], &[&[32, 17], &[67, 17]], &[&[5, 64], &[129, 64]]]),
            |x, _| x[0].matmul(&x[1].t_stored()),
        )
        .tol(2e-5),
        // a batch of matrices times one matrix is one GEMM over all their rows, reshaped around
        // it (so the matrix's gradient is one GEMM too): the output node is a reshape
        Case::composite(
            "matmul of a batch by a matrix",
            vec![F, F],
            shapes(&[&[&[1, 1, 1], &[1, 1]], &[&[3, 5, 7], &[7, 2]], &[&[8, 256, 64], &[64, 512]]]),
            |x, _| x[0].matmul(&x[1]),
        )
        .tol(2e-5),
        Case::composite(
            "matmul of a batch by a transposed matrix (a linear layer)",
            vec![F, F],
            shapes(&[&[&[2, 9, 5], &[4, 5]], &[&[2, 3, 1, 13], &[11, 13]]]),
            |x, _| x[0].matmul(&x[1].t()),
        )
        .tol(2e-5),
        // vectors are reshaped to matrices around the matmul: its output node is a reshape
        Case::composite(
            "matmul with vectors",
            vec![F, F, F],
            shapes(&[&[&[3], &[3, 4], &[4]], &[&[37], &[37, 23], &[23]]]),
            |x, _| x[0].matmul(&x[1]).matmul(&x[2]),
        )
        .tol(2e-5),
    ]
}

fn convolution() -> Vec<Case> {
    let conv = |name: &str, sets: Vec<Vec<Vec<usize>>>, opts: ConvOptions| {
        Case::new("conv2d", name, vec![F, F], sets, move |x, _| x[0].conv2d(&x[1], opts))
            .tol(2e-5)
            .grad_tol(1e-4)
    };
    let max = |name: &str, opts: PoolOptions| {
        Case::new(
            "max_pool2d",
            name,
            vec![F],
            shapes(&[&[&[2, 2, 5, 5]], &[&[1, 1, 3, 3]], &[&[3, 5, 17, 13]]]),
            move |x, _| x[0].max_pool2d(opts),
        )
        .tol(0.0)
        // overlapping windows add several gradients into one input, in another order
        .grad_tol(1e-6)
    };
    let avg = |name: &str, opts: PoolOptions| {
        Case::new(
            "avg_pool2d",
            name,
            vec![F],
            shapes(&[&[&[2, 2, 5, 5]], &[&[1, 1, 3, 3]], &[&[3, 5, 17, 13]]]),
            move |x, _| x[0].avg_pool2d(opts),
        )
        .tol(1e-6)
        .grad_tol(1e-6)
    };
    let mut avg_excluding_pad = PoolOptions::new(3).stride(2).padding(1);
    avg_excluding_pad.count_include_pad = false;
    vec![
        conv(
            "conv2d",
            shapes(&[
                &[&[2, 3, 5, 5], &[4, 3, 3, 3]],
                &[&[1, 1, 1, 1], &[1, 1, 1, 1]],
                &[&[3, 5, 13, 11], &[7, 5, 3, 5]],
            ]),
            ConvOptions::default(),
        )
        // more than 65,535 tiles of 64 output (and input) pixels: a folded grid
        .with_shapes(vec![vec![65_600, 1, 8, 8], vec![1, 1, 1, 1]]),
        conv(
            "conv2d stride 2 padding 1",
            shapes(&[&[&[2, 2, 6, 5], &[3, 2, 3, 3]], &[&[2, 3, 17, 19], &[5, 3, 3, 3]]]),
            ConvOptions::default().stride(2).padding(1),
        ),
        conv(
            "conv2d dilation 2, groups 2",
            shapes(&[&[&[1, 4, 7, 7], &[6, 2, 3, 3]], &[&[2, 6, 23, 17], &[4, 3, 2, 3]]]),
            ConvOptions { stride: (1, 2), padding: (2, 1), dilation: (2, 2), groups: 2 },
        ),
        // stride 1 with rows of 8 or more pixels: the CPU's direct kernels, a non-square kernel;
        // the 1×1 kernel has 3 output channels, since a weight gradient of one element is one
        // sum of 100 terms of both signs, whose relative error measures its cancellation (a
        // seed gave 2.3e-4 against 1e-4). The weight gradient's tiles: 13 output channels (a
        // block of 8 and a partial one), a 5-wide kernel (3 + 2 columns), rows of 17 (a vector
        // and a padded one); 9 images (two partial sums, of 8 and 1)
        conv(
            "conv2d stride 1 padding 1 (direct on the CPU)",
            shapes(&[
                &[&[2, 3, 9, 10], &[4, 3, 3, 3]],
                &[&[3, 5, 12, 17], &[6, 5, 5, 3]],
                &[&[1, 1, 8, 8], &[3, 1, 1, 1]],
                &[&[2, 4, 11, 19], &[13, 4, 3, 5]],
                &[&[9, 2, 8, 8], &[9, 2, 3, 3]],
            ]),
            ConvOptions::default().padding(1),
        ),
        // depthwise (MobileNet): one 3×3 filter per channel, at odd sizes; stride 2 for odd
        // widths, stride 1 (the direct kernels) for even
        Case::new(
            "conv2d",
            "conv2d depthwise (groups = channels)",
            vec![F, F],
            shapes(&[
                &[&[2, 6, 10, 12], &[6, 1, 3, 3]],
                &[&[2, 5, 7, 9], &[5, 1, 3, 3]],
                &[&[1, 1, 1, 1], &[1, 1, 3, 3]],
                &[&[3, 13, 11, 5], &[13, 1, 3, 3]],
            ]),
            |x, _| {
                let stride = if x[0].dims()[3] % 2 == 1 { 2 } else { 1 };
                x[0].conv2d(&x[1], ConvOptions::default().padding(1).stride(stride).groups(x[0].dims()[1]))
            },
        )
        .tol(2e-5)
        .grad_tol(1e-4),
        // 128×128 GEMM tiles forward, a K split four ways in the weight gradient
        conv(
            "conv2d, 256 output channels",
            shapes(&[&[&[1, 2, 4, 4], &[3, 2, 3, 3]], &[&[8, 4, 34, 34], &[256, 4, 3, 3]]]),
            ConvOptions::default(),
        ),
        max("max_pool2d 2×2", PoolOptions::new(2)),
        max(
            "max_pool2d 3×3 stride 2 padding 1 dilation 2",
            PoolOptions::new(3).stride(2).padding(1).dilation(2),
        ),
        max("max_pool2d 2×2 stride 1", PoolOptions::new(2).stride(1))
            .past_grid_limit(vec![POOL_PAST_GRID_LIMIT.to_vec()]),
        avg("avg_pool2d 2×2", PoolOptions::new(2)),
        avg("avg_pool2d 2×2 stride 1", PoolOptions::new(2).stride(1))
            .past_grid_limit(vec![POOL_PAST_GRID_LIMIT.to_vec()]),
        avg("avg_pool2d 3×3 stride 1 padding 1", PoolOptions::new(3).stride(1).padding(1)),
        avg("avg_pool2d excluding padding", avg_excluding_pad),
    ]
}

/// Cross-entropy options that exercise both: rows of class 2 ignored, targets smoothed.
const SMOOTHED_IGNORING_2: CrossEntropy = CrossEntropy { ignore_index: Some(2), label_smoothing: 0.1 };

/// The per-channel ops of batch normalization over (N, C, …): one element per block, blocks
/// of primes, a single sample, a single channel.
fn channels() -> Vec<Case> {
    let one = shapes(&[
        &[&[3, 7]],
        &[&[1, 1]],
        &[&[2, 3, 5]],
        &[&[4, 3, 7, 11]],
        &[&[1, 5, 1031]],
        &[&[9, 1, 3, 3]],
    ]);
    let with_params = |dims: &[usize]| vec![dims.to_vec(), vec![dims[1]], vec![dims[1]]];
    let affine_shapes: Vec<Vec<Vec<usize>>> = one.iter().map(|set| with_params(&set[0])).collect();
    let pairs: Vec<Vec<Vec<usize>>> = one.iter().map(|set| vec![set[0].clone(), set[0].clone()]).collect();
    vec![
        Case::new("channel_moments", "channel_moments", vec![F], one, |x, _| x[0].channel_moments())
            // one workgroup per channel: 65,536 channels pass the grid limit
            .past_grid_limit(vec![vec![2, ROWS_PAST_GRID_LIMIT, 1]]),
        Case::new("channel_affine", "channel_affine", vec![F, F, F], affine_shapes, |x, _| {
            x[0].channel_affine(&x[1], &x[2])
        })
        .past_grid_limit(vec![vec![1, 2, 8_388_737], vec![2], vec![2]]),
        Case::new("channel_sums", "channel_sums", vec![F, F], pairs, |x, _| x[0].channel_sums(&x[1]))
            .past_grid_limit(vec![vec![1, ROWS_PAST_GRID_LIMIT, 2], vec![1, ROWS_PAST_GRID_LIMIT, 2]]),
    ]
}

fn normalization() -> Vec<Case> {
    // odd sizes take the general kernels; multiples of 4 up to 8192 the one-pass ones
    let rows = shapes(&[
        &[&[3, 7]],
        &[&[1, 1]],
        &[&[5, 257]],
        &[&[2, 3, 1031]],
        &[&[6, 64]],
        &[&[3, 4100]],
        &[&[2, 8192]],
        &[&[2, 8196]],
    ]);
    vec![
        // rows of 3: the general kernel; rows of 4: the register-cached one
        Case::new("softmax", "softmax last axis", vec![F], rows.clone(), |x, _| x[0].softmax(-1))
            .past_grid_limit(vec![vec![ROWS_PAST_GRID_LIMIT, 3]]),
        Case::new("softmax", "softmax axis 0", vec![F], rows.clone(), |x, _| x[0].softmax(0)),
        Case::new("log_softmax", "log_softmax", vec![F], rows.clone(), |x, _| x[0].log_softmax(-1))
            .past_grid_limit(vec![vec![ROWS_PAST_GRID_LIMIT, 4]]),
        Case::new("layer_norm", "layer_norm", vec![F], rows.clone(), |x, _| {
            let n = *x[0].dims().last().expect("rank ≥ 1");
            x[0].layer_norm(&[n], None, None, 1e-5)
        })
        .grad_tol(2e-4)
        .past_grid_limit(vec![vec![ROWS_PAST_GRID_LIMIT, 4]]),
        Case::new(
            "layer_norm",
            "layer_norm with weight and bias",
            vec![F, F, F],
            shapes(&[
                &[&[4, 6], &[6], &[6]],
                &[&[1, 1], &[1], &[1]],
                &[&[9, 513], &[513], &[513]],
                &[&[5, 1028], &[1028], &[1028]],
            ]),
            |x, _| {
                let n = x[1].dims()[0];
                x[0].layer_norm(&[n], Some(&x[1]), Some(&x[2]), 1e-5)
            },
        )
        .grad_tol(2e-4),
        Case::new(
            "layer_norm",
            "layer_norm over two axes, weight only",
            vec![F, F],
            shapes(&[&[&[2, 3, 4], &[3, 4]], &[&[5, 7, 11], &[7, 11]]]),
            |x, _| {
                let norm = x[1].dims().to_vec();
                x[0].layer_norm(&norm, Some(&x[1]), None, 1e-5)
            },
        )
        .grad_tol(2e-4),
        Case::new(
            "cross_entropy",
            "cross_entropy per row",
            vec![F, Input::fixed(Domain::Index { of: 0, axis: 1 })],
            shapes(&[&[&[4, 5], &[4]], &[&[1, 1], &[1]], &[&[37, 10], &[37]], &[&[3, 1031], &[3]]]),
            |x, _| x[0].cross_entropy_per_row(&x[1], CrossEntropy::default()),
        )
        .past_grid_limit(vec![vec![ROWS_PAST_GRID_LIMIT, 2], vec![ROWS_PAST_GRID_LIMIT]]),
        Case::new(
            "cross_entropy",
            "cross_entropy per row with ignore index and label smoothing",
            vec![F, Input::fixed(Domain::Index { of: 0, axis: 1 })],
            shapes(&[&[&[6, 4], &[6]], &[&[29, 7], &[29]]]),
            |x, _| x[0].cross_entropy_per_row(&x[1], SMOOTHED_IGNORING_2),
        ),
        Case::composite(
            "cross_entropy mean over the rows not ignored",
            vec![F, Input::fixed(Domain::Index { of: 0, axis: 1 })],
            shapes(&[&[&[6, 4], &[6]], &[&[29, 7], &[29]]]),
            |x, _| x[0].cross_entropy_with(&x[1], SMOOTHED_IGNORING_2),
        ),
    ]
}

fn attention() -> Vec<Case> {
    let attn = |name: &str, sets: Vec<Vec<Vec<usize>>>, causal: bool| {
        Case::new("attention", name, vec![F, F, F], sets, move |x, _| {
            x[0].attention(&x[1], &x[2], causal, None)
        })
        .tol(5e-5)
        .grad_tol(2e-4)
    };
    let mut rows = vec![
        attn(
            "attention",
            shapes(&[
                &[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3]],
                &[&[1, 1, 1], &[1, 3, 1], &[1, 3, 1]],
                &[&[2, 3, 67, 16], &[2, 3, 131, 16], &[2, 3, 131, 24]],
            ]),
            false,
        )
        // Past the grid limit. The flash kernels (head dimensions multiples of 4) run a
        // workgroup per 64 query (or key) rows of each batch entry: 65,536 entries of one query
        // and two keys (two, so that the softmax and the gradients of q and k are not trivially
        // 1 and 0), with gradients — their kernels need the forward's output and log-sum-exp,
        // so rows of their own would run the forward again. The general kernels (other head
        // dimensions, rare) run a workgroup per query row: 65,536 entries of one query, forward
        // only, as lavapipe takes ~10 s per such dispatch.
        .with_shapes(vec![vec![65_536, 1, 4], vec![65_536, 2, 4], vec![65_536, 2, 4]])
        .past_grid_limit(vec![vec![65_536, 1, 3], vec![65_536, 2, 3], vec![65_536, 2, 3]]),
        attn(
            "attention causal",
            shapes(&[
                &[&[1, 5, 4], &[1, 5, 4], &[1, 5, 4]],
                &[&[3, 97, 32], &[3, 97, 32], &[3, 97, 32]],
                &[&[2, 7, 5], &[2, 3, 5], &[2, 3, 2]],
                &[&[2, 2, 130, 64], &[2, 2, 130, 64], &[2, 2, 130, 64]],
                &[&[1, 70, 8], &[1, 200, 8], &[1, 200, 12]],
            ]),
            true,
        ),
    ];
    rows.extend(attention_with_options());
    rows.extend(packed_heads());
    rows
}

/// Rows of `Tensor::attention_packed`: (…, T, 3·C) of 2 heads — head dimensions 4 and 16 (the
/// flash kernels), 5 and 1 (the general ones) — causal with dropout, and plain.
fn packed_heads() -> Vec<Case> {
    let row = |name: &str, sets: Vec<Vec<Vec<usize>>>, options: AttentionOptions| {
        Case::new("attention", name, vec![F], sets, move |x, _| x[0].attention_packed(2, &options))
            .tol(5e-5)
            .grad_tol(2e-4)
    };
    let dropout = Some((0.2, RandomKey { seed: 7, stream: 3 }));
    vec![
        row(
            "attention of packed heads, causal, dropout",
            shapes(&[&[&[2, 5, 24]], &[&[3, 67, 96]], &[&[2, 9, 30]]]),
            AttentionOptions { causal: true, dropout, ..AttentionOptions::default() },
        ),
        row(
            "attention of packed heads",
            shapes(&[&[&[2, 3, 2, 6]], &[&[1, 1, 6]]]),
            AttentionOptions::default(),
        ),
    ]
}

/// Key lengths drawn in [0, Tk), for inputs (q, k, …) (see [`Lengths`]).
const LENGTHS: Input = Input::fixed(Domain::Index { of: 1, axis: 1 });
/// The same for q of rank 4 (B, H, T, D).
const LENGTHS_4D: Input = Input::fixed(Domain::Index { of: 1, axis: 2 });
/// An additive mask's finite values.
const MASK: Input = Input::fixed(Domain::Normal);
/// Where the additive mask holds −∞: below 1/4.
const HIDE: Input = Input::fixed(Domain::Range(0.0, 1.0));

/// Rows of `Tensor::attention_with`: key lengths, additive masks with −∞ entries, the causal
/// mask and dropout, alone and combined, on the flash kernels (head dimensions multiples of 4)
/// and the plain ones, with rows that see no key.
fn attention_with_options() -> Vec<Case> {
    let row = |name: &str, inputs: Vec<Input>, sets: Vec<Vec<Vec<usize>>>, opts: Options| {
        Case::new("attention", name, inputs, sets, move |x, dev| {
            x[0].attention_with(&x[1], &x[2], &opts.of(x, dev))
        })
        .tol(5e-5)
        .grad_tol(2e-4)
    };
    let dropout = Some((0.3, RandomKey { seed: 11, stream: 5 }));
    vec![
        row(
            "attention with key lengths",
            vec![F, F, F, LENGTHS],
            shapes(&[
                &[&[2, 5, 4], &[2, 6, 4], &[2, 6, 3], &[2]],
                &[&[3, 67, 16], &[3, 131, 16], &[3, 131, 24], &[3]],
                // more than 65,535 workgroups of the plain kernel, one per query row
                &[&[1100, 64, 3], &[1100, 9, 3], &[1100, 9, 5], &[1100]],
            ]),
            Options { lengths: Lengths::AtLeastOne, ..Options::default() },
        ),
        row(
            "attention causal, key lengths broadcast over heads, some 0",
            vec![F, F, F, LENGTHS_4D],
            shapes(&[
                &[&[2, 2, 4, 3], &[2, 2, 6, 3], &[2, 2, 6, 2], &[2, 1]],
                &[&[2, 2, 130, 64], &[2, 2, 130, 64], &[2, 2, 130, 64], &[2, 1]],
                &[&[3, 2, 40, 5], &[3, 2, 70, 5], &[3, 2, 70, 6], &[3, 2]],
            ]),
            Options { causal: true, lengths: Lengths::Drawn, ..Options::default() },
        ),
        row(
            "attention with an additive mask",
            vec![F, F, F, MASK],
            shapes(&[
                &[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3], &[3, 5]],
                // one mask per sequence, shared by the heads
                &[&[2, 3, 67, 16], &[2, 3, 131, 16], &[2, 3, 131, 24], &[2, 1, 67, 131]],
                // a key mask (B, 1, 1, Tk), broadcast over heads and queries
                &[&[2, 3, 33, 7], &[2, 3, 65, 7], &[2, 3, 65, 9], &[2, 1, 1, 65]],
            ]),
            Options { mask: Mask::Finite, ..Options::default() },
        ),
        row(
            "attention causal with −∞ in the mask and key lengths",
            vec![F, F, F, LENGTHS, MASK, HIDE],
            shapes(&[
                &[&[2, 6, 4], &[2, 7, 4], &[2, 7, 4], &[2], &[6, 7], &[6, 7]],
                &[&[3, 97, 32], &[3, 97, 32], &[3, 97, 32], &[3], &[3, 97, 97], &[3, 97, 97]],
                &[&[2, 9, 6], &[2, 11, 6], &[2, 11, 3], &[2], &[9, 11], &[9, 11]],
            ]),
            Options { causal: true, lengths: Lengths::Drawn, mask: Mask::WithHidden, ..Options::default() },
        ),
        row(
            "attention dropout",
            vec![F, F, F],
            shapes(&[
                &[&[2, 3, 4], &[2, 5, 4], &[2, 5, 3]],
                &[&[2, 3, 67, 16], &[2, 3, 131, 16], &[2, 3, 131, 24]],
                &[&[2, 37, 6], &[2, 70, 6], &[2, 70, 5]],
            ]),
            Options { dropout, ..Options::default() },
        ),
        row(
            "attention causal, dropout, key lengths and a mask with −∞",
            vec![F, F, F, LENGTHS, MASK, HIDE],
            shapes(&[
                &[&[2, 6, 4], &[2, 7, 4], &[2, 7, 4], &[2], &[6, 7], &[6, 7]],
                &[&[3, 130, 64], &[3, 130, 64], &[3, 130, 64], &[3], &[130, 130], &[130, 130]],
                &[&[2, 70, 3], &[2, 70, 3], &[2, 70, 7], &[2], &[2, 70, 70], &[2, 70, 70]],
                // more than 65,535 workgroups (one per batch: up to 64 query or key rows each)
                &[&[65_600, 8, 4], &[65_600, 8, 4], &[65_600, 8, 4], &[65_600], &[8, 8], &[8, 8]],
            ]),
            Options { causal: true, lengths: Lengths::AtLeastOne, mask: Mask::WithHidden, dropout },
        ),
    ]
}

/// How a row of [`attention_with_options`] builds its options from its inputs (q, k, v, then
/// the key lengths, the mask and where it is −∞, in that order, where present).
#[derive(Clone, Copy, Default)]
struct Options {
    causal: bool,
    lengths: Lengths,
    mask: Mask,
    dropout: Option<(f32, RandomKey)>,
}

/// Key lengths from the drawn ones. The first sequence always sees every key: were every
/// query to see one key or none, the gradients of q and k would be 0 up to rounding, which
/// parity cannot compare.
#[derive(Clone, Copy, Default, PartialEq)]
enum Lengths {
    #[default]
    None,
    /// As drawn, in [0, Tk): some sequences see no key.
    Drawn,
    /// Drawn + 1, in [1, Tk].
    AtLeastOne,
}

#[derive(Clone, Copy, Default, PartialEq)]
enum Mask {
    #[default]
    None,
    /// Finite values.
    Finite,
    /// Finite values, −∞ where the next input is below 1/4.
    WithHidden,
}

impl Options {
    fn of(&self, x: &[Tensor], dev: &Device) -> AttentionOptions {
        let mut next = 3;
        let key_lengths = (self.lengths != Lengths::None).then(|| {
            next += 1;
            let drawn = match self.lengths {
                Lengths::AtLeastOne => &x[3] + &Tensor::full(Shape::scalar(), 1.0, DType::I32, dev),
                _ => x[3].clone(),
            };
            let mut first = drawn.dims().to_vec();
            first[0] = 1;
            let all_keys = Tensor::full(first, x[1].dim(-2) as f64, DType::I32, dev);
            Tensor::concat(&[all_keys, drawn.narrow(0, 1, drawn.dim(0) - 1)], 0)
        });
        let mask = match self.mask {
            Mask::None => None,
            Mask::Finite => Some(x[next].clone()),
            Mask::WithHidden => {
                let neg_inf = Tensor::full(Shape::scalar(), f64::NEG_INFINITY, x[next].dtype(), dev);
                Some(x[next + 1].lt_scalar(0.25).where_(&neg_inf, &x[next]))
            }
        };
        AttentionOptions { causal: self.causal, scale: None, key_lengths, mask, dropout: self.dropout }
    }
}
