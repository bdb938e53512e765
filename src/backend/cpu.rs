//! The CPU backend's storage: one contiguous, row-major vector per tensor, typed by dtype.
//!
//! The CPU kernels themselves live with their ops in `src/ops/`; this file holds the storage type
//! and the small helpers that let a kernel be written once for f32 and f64.

use super::cpu_pool;
use super::memory::MemoryCounter;
use crate::dtype::{DType, Element};
use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);

/// Bytes of CPU tensor storage, live and peak ([`Device::memory`](crate::Device::memory)).
pub(crate) static MEMORY: MemoryCounter = MemoryCounter::new();

/// Elements per rayon task in elementwise CPU kernels: big enough to amortize the scheduling,
/// small enough to split work between cores.
pub const PARALLEL_CHUNK: usize = 1 << 15;

/// How many CPU buffers exist right now (for the memory tests).
pub fn live_buffers() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The elements of one tensor on the CPU.
#[derive(Debug)]
pub struct CpuStorage {
    data: CpuData,
    /// The bytes counted in [`MEMORY`] at creation (in-place kernels keep the length).
    bytes: u64,
}

/// The typed vector inside a [`CpuStorage`].
#[derive(Debug, Clone)]
pub enum CpuData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// f16 elements.
    F16(Vec<half::f16>),
    /// i32 elements.
    I32(Vec<i32>),
    /// u32 elements.
    U32(Vec<u32>),
    /// bool elements.
    Bool(Vec<bool>),
}

impl CpuData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuData::F32(_) => DType::F32,
            CpuData::F64(_) => DType::F64,
            CpuData::F16(_) => DType::F16,
            CpuData::I32(_) => DType::I32,
            CpuData::U32(_) => DType::U32,
            CpuData::Bool(_) => DType::Bool,
        }
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        match self {
            CpuData::F32(v) => v.len(),
            CpuData::F64(v) => v.len(),
            CpuData::F16(v) => v.len(),
            CpuData::I32(v) => v.len(),
            CpuData::U32(v) => v.len(),
            CpuData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl CpuStorage {
    /// Wraps a typed vector.
    pub fn new(data: CpuData) -> CpuStorage {
        LIVE.fetch_add(1, Ordering::Relaxed);
        let bytes = (data.len() * data.dtype().size_bytes()) as u64;
        MEMORY.allocated(bytes);
        CpuStorage { data, bytes }
    }

    /// Wraps a vector of any element type.
    pub fn from_vec<T: Element>(v: Vec<T>) -> CpuStorage {
        CpuStorage::new(T::wrap(v))
    }

    /// `values` converted to a float dtype (f16 by way of f32, as a cast rounds it).
    pub fn from_f64(values: Vec<f64>, dtype: DType) -> CpuStorage {
        match dtype {
            DType::F64 => CpuStorage::from_vec(values),
            DType::F32 => CpuStorage::from_vec(values.into_iter().map(|v| v as f32).collect::<Vec<f32>>()),
            DType::F16 => CpuStorage::from_vec(
                values.into_iter().map(|v| half::f16::from_f32(v as f32)).collect::<Vec<_>>(),
            ),
            other => panic!("from_f64: {other} is not a float dtype"),
        }
    }

    /// The typed vector.
    pub fn data(&self) -> &CpuData {
        &self.data
    }

    /// The typed vector, to modify in place.
    pub fn data_mut(&mut self) -> &mut CpuData {
        &mut self.data
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The elements as a slice of `T`; panics when `T` is not the storage's dtype.
    #[track_caller]
    pub fn as_slice<T: Element>(&self) -> &[T] {
        match T::unwrap(&self.data) {
            Some(s) => s,
            None => panic!("tensor holds {} elements, not {}", self.dtype(), T::DTYPE),
        }
    }

    /// Every element converted to f64.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            CpuData::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuData::F64(v) => v.clone(),
            CpuData::F16(v) => v.iter().map(|&x| x.to_f64()).collect(),
            CpuData::I32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuData::U32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuData::Bool(v) => v.iter().map(|&x| x.to_f64()).collect(),
        }
    }

    /// Elements `i` as f64 (for printing).
    pub fn get_f64(&self, i: usize) -> f64 {
        match &self.data {
            CpuData::F32(v) => v[i] as f64,
            CpuData::F64(v) => v[i],
            CpuData::F16(v) => v[i].to_f64(),
            CpuData::I32(v) => v[i] as f64,
            CpuData::U32(v) => v[i] as f64,
            CpuData::Bool(v) => v[i].to_f64(),
        }
    }

    /// The raw 32-bit words of the elements as they are laid out on the GPU (bools become 0/1
    /// words; f16 pairs share a word, the last one padded with 0). Panics for f64, which has no
    /// GPU representation.
    pub fn to_gpu_words(&self) -> Vec<u32> {
        match &self.data {
            CpuData::F32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuData::F16(v) => v
                .chunks(2)
                .map(|p| p[0].to_bits() as u32 | (p.get(1).map_or(0, |h| h.to_bits() as u32) << 16))
                .collect(),
            CpuData::I32(v) => bytemuck::cast_slice(v).to_vec(),
            CpuData::U32(v) => v.clone(),
            CpuData::Bool(v) => v.iter().map(|&b| b as u32).collect(),
            CpuData::F64(_) => panic!("f64 tensors have no GPU representation; cast to f32 first"),
        }
    }

    /// The inverse of [`CpuStorage::to_gpu_words`]: the first `numel` elements of `words`.
    pub fn from_gpu_words(dtype: DType, words: &[u32], numel: usize) -> CpuStorage {
        let words = &words[..dtype.gpu_words(numel)];
        let data = match dtype {
            DType::F32 => CpuData::F32(bytemuck::cast_slice(words).to_vec()),
            DType::F16 => CpuData::F16(
                words
                    .iter()
                    .flat_map(|&w| [w as u16, (w >> 16) as u16])
                    .take(numel)
                    .map(half::f16::from_bits)
                    .collect(),
            ),
            DType::I32 => CpuData::I32(bytemuck::cast_slice(words).to_vec()),
            DType::U32 => CpuData::U32(words.to_vec()),
            DType::Bool => CpuData::Bool(words.iter().map(|&w| w != 0).collect()),
            DType::F64 => panic!("f64 tensors have no GPU representation"),
        };
        CpuStorage::new(data)
    }
}

impl Clone for CpuStorage {
    fn clone(&self) -> CpuStorage {
        CpuStorage::new(self.data.clone())
    }
}

impl Drop for CpuStorage {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        MEMORY.freed(self.bytes);
        cpu_pool::give(std::mem::replace(&mut self.data, CpuData::Bool(Vec::new())));
    }
}

/// Runs `$body` with `$T` bound to the float type of `$storage` (f32 or f64), `$x` to its slice.
/// Panics for non-float storage: the op's shape rule has already rejected it.
macro_rules! with_float {
    ($storage:expr, $T:ident, $x:ident => $body:expr) => {
        match $storage.data() {
            $crate::backend::cpu::CpuData::F32($x) => {
                type $T = f32;
                $body
            }
            $crate::backend::cpu::CpuData::F64($x) => {
                type $T = f64;
                $body
            }
            _ => panic!("expected a float tensor, found {}", $storage.dtype()),
        }
    };
}
pub(crate) use with_float;

/// Runs `$body` with `$x` bound to the slice of any storage (every dtype).
macro_rules! with_any {
    ($storage:expr, $x:ident => $body:expr) => {
        match $storage.data() {
            $crate::backend::cpu::CpuData::F32($x) => $body,
            $crate::backend::cpu::CpuData::F64($x) => $body,
            $crate::backend::cpu::CpuData::F16($x) => $body,
            $crate::backend::cpu::CpuData::I32($x) => $body,
            $crate::backend::cpu::CpuData::U32($x) => $body,
            $crate::backend::cpu::CpuData::Bool($x) => $body,
        }
    };
}
pub(crate) use with_any;

/// Reads an index tensor (i32 or u32) as `usize` values, checking each against `bound`.
#[track_caller]
pub fn indices(op: &str, storage: &CpuStorage, bound: usize) -> Vec<usize> {
    let check = |i: i64| -> usize {
        if i < 0 || i as usize >= bound {
            panic!("{op}: index {i} is out of range for a dimension of size {bound}");
        }
        i as usize
    };
    match storage.data() {
        CpuData::I32(v) => v.iter().map(|&i| check(i as i64)).collect(),
        CpuData::U32(v) => v.iter().map(|&i| check(i as i64)).collect(),
        _ => panic!("{op}: indices must be i32 or u32, found {}", storage.dtype()),
    }
}

/// The sum of a slice, accumulated in f64 over eight independent lanes (so the loop
/// vectorizes; the order differs from a sequential sum only by rounding).
#[inline(always)]
pub fn sum_f64<T: crate::dtype::Float>(x: &[T]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = x.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|v| v.to_f64()).sum();
    for c in chunks {
        for (l, v) in lanes.iter_mut().zip(c) {
            *l += v.to_f64();
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// The largest element of a slice (−∞ for an empty one; NaN if any element is NaN), over
/// eight independent lanes so the loop vectorizes.
#[inline(always)]
pub fn max_of<T: crate::dtype::Float>(x: &[T]) -> T {
    let mut lanes = [T::NEG_INFINITY; 8];
    let chunks = x.chunks_exact(8);
    let rest = chunks.remainder().iter().copied().fold(T::NEG_INFINITY, T::max);
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l = if v > *l || v.is_nan() { v } else { *l };
        }
    }
    lanes.iter().copied().fold(rest, T::max)
}

/// Softmax of `row` in place, exp(x − m) / Σ exp(x − m) with the sum in f64, compiled for the
/// widest vectors (the branch-free `exp` vectorizes only with AVX); returns the row's largest
/// element m and the sum. A row with no element above −∞ is left as it is, with (−∞, 0).
pub fn softmax_in_place<T: crate::dtype::Float>(row: &mut [T]) -> (T, f64) {
    #[inline(always)]
    fn each<T: crate::dtype::Float>(row: &mut [T]) -> (T, f64) {
        let m = max_of(row);
        if m == T::NEG_INFINITY {
            return (m, 0.0);
        }
        row.iter_mut().for_each(|x| *x = (*x - m).exp_fast());
        let sum = sum_f64(row);
        let inv = T::of(1.0 / sum);
        row.iter_mut().for_each(|x| *x *= inv);
        (m, sum)
    }
    super::cpu_vector::widest! {
        fn widest<T: crate::dtype::Float>(row: &mut [T]) -> (T, f64) = each
    }
    widest(row)
}

/// A matrix operand for [`gemm`]: its elements and (row, column) strides.
pub struct Mat<'a, T> {
    /// The elements, starting at the matrix's first element.
    pub data: &'a [T],
    /// Distance between consecutive rows.
    pub row: usize,
    /// Distance between consecutive columns.
    pub col: usize,
}

/// A kernel of `backend::cpu_skinny` (which exists on x86-64 only).
#[cfg(target_arch = "x86_64")]
pub use super::cpu_skinny::Kernel as Skinny;
/// A kernel of `backend::cpu_skinny`, which exists on x86-64 only.
#[cfg(not(target_arch = "x86_64"))]
#[derive(Clone, Copy, Debug)]
pub enum Skinny {}

/// The float types [`gemm`] multiplies.
pub trait Gemm: crate::dtype::Float {
    /// The general kernel for this type: f32 on a CPU with AVX-512, `backend::cpu_gemm`;
    /// otherwise `matrixmultiply`'s.
    ///
    /// # Safety
    /// As `matrixmultiply::sgemm`: the pointers and strides must describe matrices in bounds.
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: Self,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        beta: Self,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );

    /// The unpacked kernel of `backend::cpu_skinny` that computes the product of A (m×k) and
    /// B (k×n) with these (row, column) strides, if one does: f32 with few rows, where the CPU
    /// has them.
    fn skinny_kernel(
        _m: usize,
        _k: usize,
        _n: usize,
        _a: (isize, isize),
        _b: (isize, isize),
    ) -> Option<Skinny> {
        None
    }

    /// C (m×n, row stride `c_row`) = A·B + β·C by the skinny `kernel`, which
    /// [`Gemm::skinny_kernel`] chose for this product or the whole one it is part of.
    ///
    /// # Safety
    /// As [`Gemm::kernel`].
    #[allow(clippy::too_many_arguments)]
    unsafe fn skinny(
        _kernel: Skinny,
        m: usize,
        k: usize,
        n: usize,
        a: (*const Self, isize, isize),
        b: (*const Self, isize, isize),
        beta: Self,
        c: *mut Self,
        c_row: isize,
    ) {
        unreachable!(
            "no skinny kernel for this type ({m}×{k}×{n}, {:?}, {:?}, {beta:?}, {c:?}, {c_row})",
            a.0, b.0
        )
    }
}

impl Gemm for f32 {
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: f32,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        beta: f32,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        #[cfg(target_arch = "x86_64")]
        if alpha == 1.0 && csc == 1 && k > 0 && super::cpu_gemm::available() {
            // SAFETY: the CPU has AVX-512F; the rest is the caller's contract
            return unsafe { super::cpu_gemm::product(m, k, n, a, (rsa, csa), b, (rsb, csb), beta, c, rsc) };
        }
        // SAFETY: forwarded from the caller's contract.
        unsafe { matrixmultiply::sgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }

    fn skinny_kernel(m: usize, k: usize, n: usize, a: (isize, isize), b: (isize, isize)) -> Option<Skinny> {
        #[cfg(target_arch = "x86_64")]
        return super::cpu_skinny::choose(m, k, n, a, b);
        #[cfg(not(target_arch = "x86_64"))]
        {
            let _ = (m, k, n, a, b);
            None
        }
    }

    #[cfg(target_arch = "x86_64")]
    unsafe fn skinny(
        kernel: Skinny,
        m: usize,
        k: usize,
        n: usize,
        a: (*const f32, isize, isize),
        b: (*const f32, isize, isize),
        beta: f32,
        c: *mut f32,
        c_row: isize,
    ) {
        use super::cpu_skinny::{Raw, product};
        let (a, b) = (Raw { ptr: a.0, row: a.1, col: a.2 }, Raw { ptr: b.0, row: b.1, col: b.2 });
        // SAFETY: forwarded from the caller's contract
        unsafe { product(kernel, m, k, n, a, b, beta, c, c_row) }
    }
}

impl Gemm for f64 {
    unsafe fn kernel(
        m: usize,
        k: usize,
        n: usize,
        alpha: f64,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        beta: f64,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        // SAFETY: forwarded from the caller's contract.
        unsafe { matrixmultiply::dgemm(m, k, n, alpha, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc) }
    }
}

/// C (m×n, row-major with row stride `c_row`) = A (m×k) · B (k×n) + beta·C, bounds-checked.
#[allow(clippy::too_many_arguments)]
pub fn gemm<T: Gemm>(m: usize, k: usize, n: usize, a: Mat<T>, b: Mat<T>, beta: T, c: &mut [T], c_row: usize) {
    if m == 0 || n == 0 {
        return;
    }
    let last = |rows: usize, cols: usize, r: usize, s: usize| (rows - 1) * r + (cols - 1) * s;
    assert!(c.len() > last(m, n, c_row, 1), "gemm: C out of bounds");
    if k == 0 {
        // β = 0 ignores what C held (an output from `cpu_pool::for_overwrite`), NaN included
        for i in 0..m {
            let row = &mut c[i * c_row..i * c_row + n];
            if beta == T::ZERO { row.fill(T::ZERO) } else { row.iter_mut().for_each(|v| *v = beta * *v) }
        }
        return;
    }
    assert!(a.data.len() > last(m, k, a.row, a.col), "gemm: A out of bounds");
    assert!(b.data.len() > last(k, n, b.row, b.col), "gemm: B out of bounds");
    let block = Block::new(m, k, n, &a, &b, c, c_row);
    // SAFETY: the asserts above keep every element the kernel touches inside the slices, and
    // `c` is borrowed mutably for the call.
    unsafe { block.run(beta, rayon::current_num_threads()) }
}

/// Multiply-adds below which a product runs on one thread: splitting smaller ones costs more
/// (each part packs its operands, and a thread must wake) than it saves.
const SPLIT_MACS: usize = 1 << 21;

/// C's rows or columns are split at multiples of this (the kernels' register tiles divide it).
const SPLIT_ALIGN: usize = 16;

/// Columns of the packed kernels' panels of B (`cpu_gemm`'s; `matrixmultiply`'s are narrower).
const PANEL: usize = 64;

/// A product C (m×n) = A (m×k) · B (k×n) + β·C through raw pointers, so that disjoint blocks of
/// C can be computed on different threads.
#[derive(Clone, Copy)]
struct Block<T> {
    m: usize,
    k: usize,
    n: usize,
    a: *const T,
    a_stride: (isize, isize),
    b: *const T,
    b_stride: (isize, isize),
    c: *mut T,
    c_row: isize,
    /// The skinny kernel the parts run rather than `Gemm::kernel`, if any: decided once for
    /// the whole product, so that the result does not depend on how it was split.
    skinny: Option<Skinny>,
}

// SAFETY: blocks run on other threads only as the halves of one block, whose C elements are
// disjoint; A and B are only read.
unsafe impl<T> Send for Block<T> {}

impl<T: Gemm> Block<T> {
    /// The product of `a` (m×k) and `b` (k×n) into `c` (m×n, row stride `c_row`), unchecked.
    fn new(m: usize, k: usize, n: usize, a: &Mat<T>, b: &Mat<T>, c: &mut [T], c_row: usize) -> Block<T> {
        Block {
            m,
            k,
            n,
            a: a.data.as_ptr(),
            a_stride: (a.row as isize, a.col as isize),
            b: b.data.as_ptr(),
            b_stride: (b.row as isize, b.col as isize),
            c: c.as_mut_ptr(),
            c_row: c_row as isize,
            skinny: T::skinny_kernel(
                m,
                k,
                n,
                (a.row as isize, a.col as isize),
                (b.row as isize, b.col as isize),
            ),
        }
    }

    /// Computes the block on up to `threads` threads: C is halved and the halves run in
    /// parallel (rayon), down to [`SPLIT_MACS`] each — the skinny kernels' longer side, the
    /// packed kernels' columns where they hold two panels. `matrixmultiply`'s
    /// own threading splits poorly for the skinny products of recurrent steps (32×1024·1024×256
    /// at 69 GFLOP/s on two threads, against 107 on one, on the development machine); and since
    /// each element of C is the same kernel's sum over the same K blocks however C is split,
    /// the result does not depend on the number of threads.
    ///
    /// # Safety
    /// The pointers and strides must describe matrices in bounds, C's not aliasing A's or B's.
    unsafe fn run(self, beta: T, threads: usize) {
        let (splits_rows, align) = match self.skinny {
            Some(_) => (self.m >= self.n, SPLIT_ALIGN),
            // the packed kernels pack the part of B they read: parts that split C's columns
            // at whole panels pack B once between them, parts that split its rows twice
            None if self.n >= 2 * PANEL => (false, PANEL),
            None => (true, SPLIT_ALIGN),
        };
        let halve = |len: usize| (len / 2).next_multiple_of(align);
        let (len, half) = if splits_rows { (self.m, halve(self.m)) } else { (self.n, halve(self.n)) };
        if threads < 2 || self.m * self.n * self.k < 2 * SPLIT_MACS || half == 0 || half >= len {
            if let Some(kernel) = self.skinny {
                let a = (self.a, self.a_stride.0, self.a_stride.1);
                let b = (self.b, self.b_stride.0, self.b_stride.1);
                // SAFETY: the caller's contract.
                return unsafe { T::skinny(kernel, self.m, self.k, self.n, a, b, beta, self.c, self.c_row) };
            }
            // SAFETY: the caller's contract.
            return unsafe {
                T::kernel(
                    self.m,
                    self.k,
                    self.n,
                    T::ONE,
                    self.a,
                    self.a_stride.0,
                    self.a_stride.1,
                    self.b,
                    self.b_stride.0,
                    self.b_stride.1,
                    beta,
                    self.c,
                    self.c_row,
                    1,
                )
            };
        }
        let (mut first, mut second) = (self, self);
        // SAFETY (the offsets): `half` < the split side, so both halves stay inside the block
        if splits_rows {
            first.m = half;
            second.m = self.m - half;
            second.a = unsafe { self.a.offset(half as isize * self.a_stride.0) };
            second.c = unsafe { self.c.offset(half as isize * self.c_row) };
        } else {
            first.n = half;
            second.n = self.n - half;
            second.b = unsafe { self.b.offset(half as isize * self.b_stride.1) };
            second.c = unsafe { self.c.add(half) };
        }
        let share = threads / 2;
        // SAFETY: the halves' C elements are disjoint, and each is in bounds as shown above
        rayon::join(
            move || unsafe { first.run(beta, share) },
            move || unsafe { second.run(beta, threads - share) },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [−1, 1).
    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 2000) as f32 / 1000.0 - 1.0).collect()
    }

    /// The split product equals the one-thread product bit for bit, and a plain f64 sum within
    /// f32 rounding: C's rows split (m ≥ n), its columns split (the skinny recurrent shape), a
    /// transposed A, and β = 1 accumulating into C.
    #[test]
    fn split_gemm_matches_one_thread_and_the_plain_sum() {
        for (m, k, n, trans_a, beta) in
            [(300, 150, 97, false, 0.0), (32, 256, 1024, true, 1.0), (33, 170, 1001, false, 1.0)]
        {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let a_mat = || match trans_a {
                true => Mat { data: &a[..], row: 1, col: m },
                false => Mat { data: &a[..], row: k, col: 1 },
            };
            let b_mat = || Mat { data: &b[..], row: n, col: 1 };
            let c0 = values(m * n, 3);
            // two threads asked for, whatever this machine's pool: the block is split
            let (mut split, mut single) = (c0.clone(), c0.clone());
            // SAFETY: the operands are the slices above, in bounds
            unsafe { Block::new(m, k, n, &a_mat(), &b_mat(), &mut split, n).run(beta, 2) };
            unsafe { Block::new(m, k, n, &a_mat(), &b_mat(), &mut single, n).run(beta, 1) };
            assert_eq!(split, single, "{m}×{k}×{n}: the split product differs from one thread's");
            for i in 0..m {
                for j in 0..n {
                    let at = |p: usize| if trans_a { a[p * m + i] } else { a[i * k + p] };
                    let want: f64 = (0..k).map(|p| at(p) as f64 * b[p * n + j] as f64).sum::<f64>()
                        + beta as f64 * c0[i * n + j] as f64;
                    let got = split[i * n + j] as f64;
                    assert!(
                        (got - want).abs() <= 1e-5 * (k as f64),
                        "{m}×{k}×{n} ({i}, {j}): {got} vs {want}"
                    );
                }
            }
        }
    }
}
