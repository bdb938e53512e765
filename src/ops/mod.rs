//! The op set. Each file is one op family: its shape rule (in the `Tensor` method that records
//! it), its CPU reference, its GPU launch and its gradient rule, side by side. Its WGSL kernel is
//! `shaders/<family>.wgsl`.
//!
//! An op is a value implementing [`Op`]; a graph node owns one. The realizer calls `cpu` or `gpu`
//! with the realized inputs, and autograd calls `backward`, which builds the input gradients out
//! of ordinary tensor ops — so backward is lazy, runs on the same device, and is cross-checked
//! like everything else.

pub mod attention;
pub mod binary;
pub mod cast;
pub mod concat;
pub mod conv;
pub mod creation;
pub mod index;
pub mod layernorm;
pub(crate) mod layout;
pub mod loss;
pub mod matmul;
pub mod movement;
pub mod pool;
pub mod random;
pub mod reduce;
pub mod select;
pub mod softmax;
pub mod unary;
pub mod view;

use crate::backend::cpu::CpuStorage;
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

    /// The CPU reference.
    fn cpu(&self, args: &[CpuArg], out: &Meta) -> CpuStorage;

    /// The CPU reference computed in place: `inout` holds input 0 and receives the output;
    /// `others` are the remaining inputs. The realizer offers this when nothing else refers to
    /// input 0 and the output has its dtype and shape. Returns false (the default) to decline,
    /// and `cpu` runs instead.
    fn cpu_in_place(&self, _inout: &mut CpuStorage, _others: &[CpuArg], _out: &Meta) -> bool {
        false
    }

    /// Records the GPU kernel(s) into `rec` and returns the output buffer.
    fn gpu(&self, args: &[GpuArg], out: &Meta, rec: &mut Recorder) -> Result<GpuBuffer>;

    /// The gradients with respect to each input (`None`: not differentiable there).
    fn backward(&self, g: &Grad) -> Vec<Option<Tensor>> {
        vec![None; g.inputs.len()]
    }

    /// The relative error ‖gpu − cpu‖ / ‖cpu‖ that the run-time cross-check tolerates.
    fn tolerance(&self) -> f64 {
        1e-4
    }
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
        "layer_norm_grad",
        "attention",
        "attention_lse",
        "attention_grad",
        "cross_entropy",
        "cross_entropy_grad",
        "dropout",
    ]);
    names
}
