//! A case's random inputs, and the fixed projection that turns an output into a scalar loss.
//!
//! Values are drawn element by element from a counter-based stream, so the same seed gives the
//! same values whatever the device, the float type or the order of drawing — which lets large
//! inputs be drawn in parallel, once, and then placed on each device.

use super::Domain;
use super::cases::Case;
use crate::rng::RandomKey;
use crate::{DType, Device, Result, Tensor};
use rayon::prelude::*;

/// The values of one input, drawn on the host.
pub(crate) enum Drawn {
    /// Float values, exactly representable in f32 (so f32 and f64 inputs hold the same values).
    Float(Vec<f32>),
    /// Indices.
    Index(Vec<i32>),
    /// A mask.
    Bool(Vec<bool>),
}

impl Drawn {
    /// A realized tensor of these values of shape `shape`: floats in `float`, on `device`.
    pub(crate) fn tensor(&self, shape: &[usize], float: DType, device: &Device) -> Result<Tensor> {
        let shape = shape.to_vec();
        let t = match self {
            Drawn::Float(v) if float == DType::F64 => {
                Tensor::from_vec(v.iter().map(|&x| x as f64).collect::<Vec<f64>>(), shape, device)
            }
            Drawn::Float(v) => Tensor::from_vec(v.clone(), shape, device).cast(float),
            Drawn::Index(v) => Tensor::from_vec(v.clone(), shape, device),
            Drawn::Bool(v) => Tensor::from_vec(v.clone(), shape, device),
        };
        t.realize()?;
        Ok(t)
    }
}

/// Draws the values of a case's inputs for one shape set.
pub(crate) fn draw(case: &Case, shapes: &[Vec<usize>], seed: u64) -> Vec<Drawn> {
    case.inputs
        .iter()
        .zip(shapes)
        .enumerate()
        .map(|(k, (input, shape))| {
            let key = RandomKey { seed, stream: k as u64 };
            let n: usize = shape.iter().product();
            let u = move |i: usize| key.uniform(i as u64) as f64;
            match input.domain {
                Domain::Index { of, axis } => {
                    let bound = shapes[of][axis].max(1);
                    Drawn::Index((0..n).into_par_iter().map(|i| (u(i) * bound as f64) as i32).collect())
                }
                Domain::Bool => Drawn::Bool((0..n).into_par_iter().map(|i| u(i) < 0.5).collect()),
                domain => Drawn::Float(
                    (0..n)
                        .into_par_iter()
                        .map(|i| {
                            let x = match domain {
                                Domain::Normal => key.normal(i as u64) as f64,
                                Domain::Range(lo, hi) => lo + (hi - lo) * u(i),
                                Domain::AwayFromZero => {
                                    let m = 0.5 + 1.5 * u(2 * i);
                                    if u(2 * i + 1) < 0.5 { -m } else { m }
                                }
                                Domain::SmallInts => (u(i) * 7.0).floor() - 3.0,
                                Domain::Index { .. } | Domain::Bool => unreachable!("handled above"),
                            };
                            x as f32
                        })
                        .collect(),
                ),
            }
        })
        .collect()
}

/// Draws a case's inputs for one shape set: floats in `float`, realized on `device`. The same
/// seed gives the same values whatever the device or float type.
pub fn make_inputs(
    case: &Case,
    shapes: &[Vec<usize>],
    float: DType,
    device: &Device,
    seed: u64,
) -> Vec<Tensor> {
    draw(case, shapes, seed)
        .iter()
        .zip(shapes)
        .map(|(d, shape)| d.tensor(shape, float, device).expect("inputs realize"))
        .collect()
}

/// Fixed random weights for reducing an output to a scalar loss Σ r·y, so that every output
/// element's gradient matters.
pub(crate) fn projection(out: &Tensor, seed: u64) -> Tensor {
    let key = RandomKey { seed, stream: 1_000 };
    let r: Vec<f64> = (0..out.numel()).into_par_iter().map(|i| 0.5 + key.uniform(i as u64) as f64).collect();
    Tensor::from_vec(r, out.shape().clone(), &Device::Cpu).cast(out.dtype()).to(&out.device())
}
