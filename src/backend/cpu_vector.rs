//! Loops compiled for the widest vectors the processor has.
//!
//! kiln is built for the x86-64 baseline (SSE2), where LLVM's cost model declines to vectorize
//! loops of branch-free approximations (the recurrent gates' `exp` and `tanh`: selects and
//! integer shifts cost too much without AVX), and they run one float at a time. [`widest!`]
//! defines a function that calls an `#[inline(always)]` one from copies compiled with AVX-512,
//! or AVX2 and FMA, chosen at run time: the same source compiled three ways, with the same
//! results (no contraction into FMAs happens unasked, and elementwise loops are not
//! reassociated).
//!
//! ```ignore
//! cpu_vector::widest! {
//!     /// `gate_row`, vectorized.
//!     fn gate_row_widest<T: Gate>(row: &[T], out: &mut [T]) = gate_row
//! }
//! ```
//!
//! A closure cannot do this: it stays a function of its own, compiled for the baseline.

/// Defines `fn $name<T: Bound>(args) -> R` (or `fn $name(args) -> R`) that runs `$body(args)`
/// (an `#[inline(always)]` function) compiled for AVX-512 or AVX2 + FMA where the CPU has
/// them, else as built.
macro_rules! widest {
    (
        $(#[$doc:meta])*
        fn $name:ident $(<$t:ident: $bound:path>)? ($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path
    ) => {
        $(#[$doc])*
        fn $name $(<$t: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx2,fma")]
                fn avx512 $(<$t: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                fn avx2 $(<$t: $bound>)? ($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F (and so AVX2 and FMA)
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has AVX2 and FMA
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use widest;
