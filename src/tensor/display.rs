//! Printing tensors, PyTorch style: nested brackets, long dimensions elided in the middle.

use crate::Tensor;
use crate::backend::cpu::CpuStorage;
use std::fmt;

/// Dimensions longer than this print their first and last `EDGE` entries only.
const SUMMARIZE_OVER: usize = 8;
const EDGE: usize = 3;

impl fmt::Display for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let tail = format!("shape={}, dtype={}, device={}", self.shape(), self.dtype(), self.device());
        match self.host() {
            Err(e) => write!(f, "tensor(<not computable: {e}>, {tail})"),
            Ok(data) => {
                f.write_str("tensor(")?;
                write_nested(f, &data, self.dims(), 0, 0, self.dtype().is_float())?;
                write!(f, ", {tail})")
            }
        }
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(id={}, shape={}, dtype={}, device={}, op={}, requires_grad={}, realized={})",
            self.id(),
            self.shape(),
            self.dtype(),
            self.device(),
            self.0.op.describe(),
            self.requires_grad(),
            self.is_realized()
        )
    }
}

fn write_nested(
    f: &mut fmt::Formatter<'_>,
    data: &CpuStorage,
    dims: &[usize],
    depth: usize,
    offset: usize,
    float: bool,
) -> fmt::Result {
    if depth == dims.len() {
        let v = data.get_f64(offset);
        return if float { write!(f, "{v:.4}") } else { write!(f, "{v}") };
    }
    let n = dims[depth];
    let stride: usize = dims[depth + 1..].iter().product();
    let shown: Vec<usize> =
        if n > SUMMARIZE_OVER { (0..EDGE).chain(n - EDGE..n).collect() } else { (0..n).collect() };
    let inner = depth + 1 < dims.len();
    f.write_str("[")?;
    for (j, &i) in shown.iter().enumerate() {
        if j > 0 {
            if inner {
                write!(f, ",\n{:width$}", "", width = depth + 8)?;
            } else {
                f.write_str(", ")?;
            }
        }
        if n > SUMMARIZE_OVER && j == EDGE {
            f.write_str("..., ")?;
        }
        write_nested(f, data, dims, depth + 1, offset + i * stride, float)?;
    }
    f.write_str("]")
}
