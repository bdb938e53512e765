//! WGSL helpers that several op families share: the scalar type that holds a dtype on the GPU,
//! and the specialization of the one-pass, register-cached row kernels (softmax, layer norm).

use crate::DType;
use crate::backend::wgpu::{Kernel, Shader};

/// The dtypes GPU kernels compute on (f16 is a storage type that casts and matmuls read and
/// write; `Op::computes_f16`).
pub(crate) const GPU_TYPES: [DType; 4] = [DType::F32, DType::I32, DType::U32, DType::Bool];

/// The WGSL scalar type that holds a dtype on the GPU (bools are u32 words).
pub(crate) fn wgsl_type(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "f32",
        DType::F16 => "f16",
        DType::I32 => "i32",
        DType::U32 | DType::Bool => "u32",
        DType::F64 => unreachable!("f64 never reaches a GPU"),
    }
}

/// How many vec4s per invocation the one-pass (register-cached) row kernels need for rows of
/// `size` elements `inner` apart, or `None` when a row does not fit them: not contiguous, not a
/// multiple of 4, or longer than 256 invocations · 8 vec4s.
pub(crate) fn cached_per(size: usize, inner: usize) -> Option<u32> {
    if inner != 1 || !size.is_multiple_of(4) || size == 0 {
        return None;
    }
    let needed = (size / 4).div_ceil(256);
    [1u32, 2, 4, 8].into_iter().find(|&per| per as usize >= needed)
}

/// A register-cached row kernel with `per` vec4s per invocation.
pub(crate) fn cached_kernel<'a>(shader: &'a Shader, entry: &'static str, per: u32) -> Kernel<'a> {
    Kernel::new(shader, entry, if entry == "softmax_cached" { 1 } else { 3 }, 1)
        .with("const PER: u32 = 4u; // @PER", format!("const PER: u32 = {per}u;"))
}
