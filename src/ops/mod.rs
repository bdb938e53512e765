//! The op set. Each file is one op family: its shape rule (in the `Tensor` method that records
//! it), its CPU reference, its GPU launch and its gradient rule, side by side. Its WGSL kernel is
//! `shaders/<family>.wgsl`.
//!
//! An op is a value implementing the crate-internal `Op` trait; a graph node owns one. The realizer calls `cpu` or `gpu`
//! with the realized inputs, and autograd calls `backward`, which builds the input gradients out
//! of ordinary tensor ops — so backward is lazy, runs on the same device, and is cross-checked
//! like everything else.

pub mod attention;
pub mod binary;
pub mod cast;
pub mod channel;
pub mod concat;
pub mod conv;
pub mod creation;
pub(crate) mod epilogue;
pub(crate) mod fused;
pub mod index;
pub mod layernorm;
pub(crate) mod layout;
pub mod loss;
pub mod matmul;
pub mod movement;
pub mod pool;
pub mod random;
pub mod recurrent;
pub mod reduce;
pub mod rope;
pub mod select;
pub mod softmax;
pub mod unary;
pub mod view;
pub(crate) mod wgsl;

use crate::backend::cpu::{CpuData, CpuStorage};
use crate::backend::wgpu::{GpuBuffer, Recorder};
use crate::{DType, Result, Shape, Tensor};

/// The output an op must produce.
pub(crate) struct Meta<'a> {
    pub shape: &'a Shape,
    pub dtype: DType,
}

/// A realized input, as a CPU kernel sees it.
pub(crate) struct CpuArg<'a> {
    pub data: &'a CpuStorage,
    pub shape: &'a Shape,
}

/// A realized input, as a GPU launch sees it.
pub(crate) struct GpuArg<'a> {
    pub buf: &'a GpuBuffer,
    pub shape: &'a Shape,
    pub dtype: DType,
}

/// What a gradient rule gets: the op's inputs and output as tensors, and the gradient of the
/// loss with respect to the output.
pub(crate) struct Grad<'a> {
    pub inputs: &'a [Tensor],
    pub output: &'a Tensor,
    pub grad: &'a Tensor,
}

/// An element of an op's integer input out of range, as [`Op::validate`] finds it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Fault {
    /// What the value is (`"index"`, `"target"`).
    pub what: &'static str,
    /// The value.
    pub value: i64,
    /// Its flat position in its input.
    pub position: usize,
    /// Valid values are `0..bound`.
    pub bound: usize,
}

impl Fault {
    /// The first of `values` that is not in `0..bound` and not `allowed`, if any.
    pub fn first(
        what: &'static str,
        values: &CpuStorage,
        bound: usize,
        allowed: Option<i64>,
    ) -> Option<Fault> {
        let first = |v: &mut dyn Iterator<Item = i64>| {
            v.enumerate()
                .find(|&(_, v)| (v < 0 || v as u64 >= bound as u64) && Some(v) != allowed)
                .map(|(position, value)| Fault { what, value, position, bound })
        };
        match values.data() {
            CpuData::I32(v) => first(&mut v.iter().map(|&x| i64::from(x))),
            CpuData::U32(v) => first(&mut v.iter().map(|&x| i64::from(x))),
            other => unreachable!("indices are i32 or u32, not {:?}", other.dtype()),
        }
    }

    /// The error for this fault at `node`.
    pub fn error(&self, node: &Tensor) -> crate::Error {
        crate::Error::OutOfRange(crate::error::OutOfRange {
            op: node.0.op.describe(),
            what: self.what,
            value: self.value,
            position: self.position,
            bound: self.bound,
            site: node.0.site(),
        })
    }
}

/// How the realizer treats a node.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Exec {
    /// Runs a kernel on the node's device.
    Kernel,
    /// Shares its only input's storage (reshape, detach).
    View,
    /// Moves its only input to the node's device.
    Transfer,
    /// Data given at creation; never computed.
    Leaf,
}

/// One op of the graph. See the module doc.
pub(crate) trait Op:
    std::any::Any + Send + Sync + std::panic::RefUnwindSafe + std::panic::UnwindSafe
{
    /// The op's name in the op set (`"tanh"`, `"matmul"`): the key of its case-table rows.
    fn name(&self) -> &'static str;

    /// The name with its attributes, for error messages.
    fn describe(&self) -> String {
        self.name().to_string()
    }

    /// How the realizer runs it.
    fn exec(&self) -> Exec {
        Exec::Kernel
    }

    /// Whether the op computes on f16 tensors itself. An op that does not (the default for
    /// kernels) sees f16 only as f32: `Tensor::from_op` records it between casts (f16 inputs up
    /// to f32, an f16 output down from f32), so its CPU reference, kernel and gradient rule serve
    /// f16 unchanged, and the f16 result is the f32 one rounded. Views and transfers move f16
    /// as it is.
    fn computes_f16(&self) -> bool {
        matches!(self.exec(), Exec::View | Exec::Transfer)
    }

    /// The CPU reference. Runs only on inputs that [`Op::validate`] accepted.
    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage;

    /// For ops that read integer data as indices or labels: the first element out of range,
    /// found on the CPU. The op's GPU launch reports the same through
    /// [`Recorder::fault_word`], so both backends give the same [`crate::Error::OutOfRange`].
    fn validate(&self, _args: &[CpuArg]) -> Option<Fault> {
        None
    }

    /// The CPU reference computed in place: `inout` holds input 0 and receives the output;
    /// `others` are the remaining inputs. The realizer offers this when nothing else refers to
    /// input 0 and the output has its dtype and shape. Returns false (the default) to decline,
    /// and `cpu` runs instead. An op that [`Op::validate`]s its inputs must decline: the
    /// realizer validates only on the way to `cpu`.
    fn cpu_in_place(&self, _inout: &mut CpuStorage, _others: &[CpuArg], _out: &Meta) -> bool {
        false
    }

    /// The op as one step of a fused elementwise chain (`fused.rs`), if it can be one: the
    /// realizer then may compute it together with its neighbours in one kernel.
    fn elementwise(&self) -> Option<fused::Step> {
        None
    }

    /// On a GPU, the op as the host of a fused chain that reads its output (`epilogue.rs`), if
    /// its kernel can store through one.
    fn epilogue_host(&self) -> Option<&dyn epilogue::EpilogueHost> {
        None
    }

    /// On a GPU, the op as the host of a fused chain that computes its only input as it reads
    /// it (`epilogue.rs`), if its kernel can.
    fn prologue_host(&self) -> Option<&dyn epilogue::PrologueHost> {
        None
    }

    /// Records the GPU kernel(s) into `rec` and returns the output buffer.
    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer>;

    /// The gradients with respect to each input (`None`: not differentiable there).
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        vec![None; g.inputs.len()]
    }

    /// How the run-time cross-check judges this op's GPU output on these inputs (on the host):
    /// bit for bit, or within f32 rounding (see [`Tolerance`]). Each op states its own, with
    /// the reason.
    fn tolerance(&self, args: &[CpuArg], out: &Meta) -> Tolerance;
}

/// How far the run-time cross-check lets a GPU output be from the CPU reference, as the relative
/// error ‖gpu − cpu‖ / ‖cpu‖ (`graph/check.rs`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Tolerance {
    /// Bit for bit: ops that move, select or compare values, or produce integers.
    Exact,
    /// f32 rounding. The GPU computes in f32, in another order than the CPU reference and with
    /// transcendentals that are not correctly rounded: it differs by `floor`, the op's own few
    /// ulps, plus the rounding of its sums of `terms` terms as the data conditions them. A
    /// stable f32 algorithm computes the exact result of inputs perturbed by about √terms ulps
    /// (errors of random sign add up like a random walk); how much such a perturbation moves
    /// the output is measured at run time, by running the reference in f64 on the inputs and on
    /// the inputs perturbed by one ulp of random sign: that measured condition κ captures a sum
    /// whose terms cancel, a layer norm of a row whose mean dwarfs its spread, an exp of a large
    /// argument. The allowance is `floor` + [`ROUNDING_MARGIN`]·√terms·κ ulps.
    Rounding { floor: f64, terms: usize },
}

/// Headroom over the random-walk estimate of accumulated rounding (see [`Tolerance`]).
pub(crate) const ROUNDING_MARGIN: f64 = 8.0;

/// One f32 ulp as a relative error (at most 2⁻²³ of a value).
pub(crate) const ULP: f64 = 1.1920928955078125e-7;

/// The rounding of a result to f16: one f16 ulp (2⁻¹⁰ of a value), as WGSL lets a GPU round to
/// either neighbour, and the nearest-even result of the CPU reference may be the other one.
pub(crate) const F16_ROUNDING: Tolerance = f16_rounding_summing(1);

/// One f16 ulp as a relative error (at most 2⁻¹⁰ of a value).
pub(crate) const F16_ROUNDING_FLOOR: f64 = 1.0 / 1024.0;

/// The CPU reference of an op whose f16 kernel reads f16, computes in f32 and rounds once when
/// it stores: `f32_reference` run on the operands with every f16 one widened, its f32 result
/// rounded to f16.
pub(crate) fn f16_via_f32(
    args: &[CpuArg],
    f32_reference: impl FnOnce(&[CpuArg]) -> CpuStorage,
) -> CpuStorage {
    let widened: Vec<Option<CpuStorage>> = args
        .iter()
        .map(|a| match a.data.data() {
            CpuData::F16(v) => Some(CpuStorage::new(CpuData::F32(v.iter().map(|h| h.to_f32()).collect()))),
            _ => None,
        })
        .collect();
    let wide: Vec<CpuArg> = args
        .iter()
        .zip(&widened)
        .map(|(a, w)| CpuArg { data: w.as_ref().unwrap_or(a.data), shape: a.shape })
        .collect();
    match f32_reference(&wide).data() {
        CpuData::F32(v) => CpuStorage::new(CpuData::F16(v.iter().map(|&x| half::f16::from_f32(x)).collect())),
        _ => unreachable!("an f16 op's reference computes in f32"),
    }
}

/// The tolerance of an f16 result computed in f32 and rounded once, where the f32 computation
/// sums `terms` terms: one f16 ulp for the rounding (see [`F16_ROUNDING`]), plus the sums.
pub(crate) const fn f16_rounding_summing(terms: usize) -> Tolerance {
    Tolerance::Rounding { floor: F16_ROUNDING_FLOOR, terms }
}

/// `n` f32 ulps for an op whose outputs each come from a few roundings.
pub(crate) const fn ulps(n: f64) -> Tolerance {
    Tolerance::Rounding { floor: n * ULP, terms: 1 }
}

/// ‖magnitude‖ / ‖value‖ (at least 1): how much larger the rounded quantities an op subtracts
/// are than its result, for ops whose f32 intermediates cancel (a loss near 0). Where the value
/// is 0 the check compares absolute errors, and this is ‖magnitude‖.
pub(crate) fn cancellation(magnitude: impl Iterator<Item = f64>, value: impl Iterator<Item = f64>) -> f64 {
    let norm = |v: &mut dyn Iterator<Item = f64>| v.map(|x| x * x).sum::<f64>().sqrt();
    let (m, v) = (norm(&mut { magnitude }), norm(&mut { value }));
    if v > 0.0 { (m / v).max(1.0) } else { m }
}

/// `n` f32 ulps plus the rounding of sums of `terms` terms (see [`Tolerance`]).
pub(crate) const fn ulps_summing(n: f64, terms: usize) -> Tolerance {
    Tolerance::Rounding { floor: n * ULP, terms }
}

/// Every specialized kernel the ops can compile, for the shader validation test (which also
/// validates every file of `shaders/` as written).
pub(crate) fn kernel_variants() -> Vec<crate::backend::wgpu::Kernel<'static>> {
    let mut all = unary::variants();
    all.extend(binary::variants());
    all.extend(cast::variants());
    all.extend(select::variants());
    all.extend(reduce::variants());
    all.extend(index::variants());
    all.extend(loss::variants());
    all.extend(matmul::variants());
    all.extend(softmax::variants());
    all.extend(layernorm::variants());
    all.extend(attention::variants());
    all.extend(conv::variants());
    all.extend(recurrent::variants());
    all.extend(fused::variants());
    all.extend(crate::optim::fused::variants());
    all
}

/// Whether `name` is in the op set (checked when debug builds record a node, so an op that was
/// never registered here, and so never needed a case row, cannot slip in).
pub(crate) fn is_registered(name: &str) -> bool {
    static SET: std::sync::OnceLock<std::collections::HashSet<&'static str>> = std::sync::OnceLock::new();
    SET.get_or_init(|| op_set().into_iter().chain(["leaf"]).collect()).contains(name)
}

/// Every op name in the op set. The case table must have a row for each (a test checks it).
pub fn op_set() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = Vec::new();
    names.extend(unary::UNARY.iter().map(|u| u.name));
    names.extend(binary::BINARY.iter().map(|b| b.name));
    names.extend(binary::COMPARE.iter().map(|c| c.name));
    names.extend([
        "full",
        "arange",
        "rand_bits",
        "rand_uniform",
        "rand_normal",
        "where",
        "sum",
        "max",
        "min",
        "argmax",
        "argmin",
        "reshape",
        "detach",
        "to_device",
        "permute",
        "expand",
        "slice",
        "pad",
        "concat",
        "gather",
        "index_select",
        "scatter_add",
        "index_add",
        "cast",
        "matmul",
        "conv2d",
        "conv2d_input_grad",
        "conv2d_weight_grad",
        "max_pool2d",
        "max_pool2d_grad",
        "avg_pool2d",
        "avg_pool2d_grad",
        "softmax",
        "log_softmax",
        "layer_norm",
        "channel_moments",
        "channel_affine",
        "channel_sums",
        "layer_norm_grad",
        "attention",
        "attention_grad",
        "cross_entropy",
        "cross_entropy_grad",
        "dropout",
        "lstm_cell",
        "lstm_cell_grad",
        "gru_cell",
        "gru_cell_grad",
        "rnn_cell",
        "rnn_cell_grad",
        "rope",
    ]);
    names
}
