//! Philox4x32-10, the counter-based generator behind every random number in kiln.
//!
//! A counter-based generator maps (key, counter) to random bits with no hidden state, so element
//! `i` of a random tensor can be computed independently, on any device, in any order — which is
//! what lets the CPU and every GPU produce the same bits for the same seed (Salmon et al.,
//! "Parallel Random Numbers: As Easy as 1, 2, 3", SC 2011). `shaders/random.wgsl` is the same
//! function in WGSL.
//!
//! Layout used throughout kiln: the key is the 64-bit seed, and element `i` of a stream takes word
//! `i % 4` of the block whose counter is `[i / 4, 0, stream_lo, stream_hi]`.

use crate::backend::cpu_vector::widest;
use std::cell::Cell;

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox blocks computed side by side by [`RandomKey::fill_uniform`].
const LANES: usize = 16;

/// One Philox4x32-10 block: 4 random words from a 128-bit counter and a 64-bit key.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
        }
        let p0 = u64::from(M0) * u64::from(c[0]);
        let p1 = u64::from(M1) * u64::from(c[2]);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

/// Where a random tensor's bits come from: the seed (Philox key) and a stream number that keeps
/// successive draws from the same seed apart.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct RandomKey {
    /// The 64-bit seed.
    pub seed: u64,
    /// The stream within that seed.
    pub stream: u64,
}

impl RandomKey {
    /// Word `i` of this stream.
    pub fn bits(&self, i: u64) -> u32 {
        let block = i / 4;
        let counter = [block as u32, (block >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32];
        philox4x32_10(counter, [self.seed as u32, (self.seed >> 32) as u32])[(i % 4) as usize]
    }

    /// Element `i` of a uniform stream on [0, 1): the top 24 bits of word `i`, exactly
    /// representable in f32, so CPU and GPU agree bit for bit.
    pub fn uniform(&self, i: u64) -> f32 {
        to_uniform(self.bits(i))
    }

    /// Elements `start..start + out.len()` of a uniform stream (as [`RandomKey::uniform`]),
    /// computing each Philox block once for its four words, 16 blocks side by side, compiled
    /// for the widest vectors (the rounds' 32 × 32 → 64-bit products take two lanes at a time
    /// in the baseline's SSE2). A run shorter than 16 blocks, or its ends, take the words they
    /// need from one computation of 16 blocks too: an attention row of 30 keys is 8 blocks.
    pub fn fill_uniform(&self, start: u64, out: &mut [f32]) {
        widest! {
            fn fill(key: &RandomKey, start: u64, out: &mut [f32]) = fill_uniform_any
        }
        fill(self, start, out)
    }

    /// Philox blocks `first..first + LANES` of this stream, word-major: `[w][lane]` is word `w`
    /// of block `first + lane`. The lanes run in lockstep, so the rounds vectorize.
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // indexed lanes vectorize
    fn blocks(&self, first: u64) -> [[u32; LANES]; 4] {
        // loops, not `array::from_fn`'s closures: those could be compiled apart, without vectors
        let mut c =
            [[0u32; LANES], [0u32; LANES], [self.stream as u32; LANES], [(self.stream >> 32) as u32; LANES]];
        for lane in 0..LANES {
            let block = first + lane as u64;
            c[0][lane] = block as u32;
            c[1][lane] = (block >> 32) as u32;
        }
        let mut k = [self.seed as u32, (self.seed >> 32) as u32];
        for round in 0..10 {
            if round > 0 {
                k = [k[0].wrapping_add(W0), k[1].wrapping_add(W1)];
            }
            let mut next: [[u32; LANES]; 4] = [[0; LANES]; 4];
            for lane in 0..LANES {
                let p0 = u64::from(M0) * u64::from(c[0][lane]);
                let p1 = u64::from(M1) * u64::from(c[2][lane]);
                next[0][lane] = (p1 >> 32) as u32 ^ c[1][lane] ^ k[0];
                next[1][lane] = p1 as u32;
                next[2][lane] = (p0 >> 32) as u32 ^ c[3][lane] ^ k[1];
                next[3][lane] = p0 as u32;
            }
            c = next;
        }
        c
    }

    /// Element `i` of a standard normal stream, by Box–Muller on words 0 and 1 of block `i / 2`:
    /// even elements take the cosine branch, odd ones the sine branch.
    pub fn normal(&self, i: u64) -> f32 {
        let block = i / 2;
        let counter = [block as u32, (block >> 32) as u32, self.stream as u32, (self.stream >> 32) as u32];
        let w = philox4x32_10(counter, [self.seed as u32, (self.seed >> 32) as u32]);
        let u1 = ((w[0] >> 8) + 1) as f32 * (1.0 / 16_777_216.0); // (0, 1]: log is finite
        let u2 = (w[1] >> 8) as f32 * (1.0 / 16_777_216.0);
        let r = (-2.0 * u1.ln()).sqrt();
        let theta = std::f32::consts::TAU * u2;
        if i.is_multiple_of(2) { r * theta.cos() } else { r * theta.sin() }
    }
}

thread_local! {
    /// The generator that hands out fresh streams for `Tensor::rand`, dropout and initializers
    /// when no explicit key is given: (seed, next stream). Each thread has its own, seeded
    /// alike, so what one thread draws never depends on what others draw at the same time
    /// (tests run side by side on threads); [`manual_seed`] makes a thread's draws repeatable.
    static GENERATOR: Cell<(u64, u64)> = const { Cell::new((0x6b69_6c6e, 0)) }; // "kiln"
}

/// Seeds this thread's generator and restarts its streams: the same seed gives the same
/// results (the initial weights, dropout masks and `Tensor::rand` draws that follow it on this
/// thread).
pub fn manual_seed(seed: u64) {
    GENERATOR.set((seed, 0));
}

/// The next unused stream of this thread's generator.
pub fn next_key() -> RandomKey {
    let (seed, stream) = GENERATOR.get();
    GENERATOR.set((seed, stream + 1));
    RandomKey { seed, stream }
}

/// A word's top 24 bits as a float in [0, 1), as [`RandomKey::uniform`] makes it.
#[inline(always)]
fn to_uniform(w: u32) -> f32 {
    (w >> 8) as f32 * (1.0 / 16_777_216.0)
}

/// [`RandomKey::fill_uniform`]'s body, inlined into its vector-compiled copies.
#[inline(always)]
fn fill_uniform_any(key: &RandomKey, start: u64, out: &mut [f32]) {
    let mut i = 0;
    while i < out.len() {
        let at = start + i as u64;
        let words = key.blocks(at / 4);
        let skip = (at % 4) as usize;
        if skip == 0 && out.len() - i >= 4 * LANES {
            // whole blocks: word w of block `lane` is element 4·lane + w
            for (lane, o) in out[i..i + 4 * LANES].chunks_exact_mut(4).enumerate() {
                for (w, o) in o.iter_mut().enumerate() {
                    *o = to_uniform(words[w][lane]);
                }
            }
            i += 4 * LANES;
            continue;
        }
        // a partial run: the words from `skip` on
        let n = (4 * LANES - skip).min(out.len() - i);
        for (j, o) in out[i..i + n].iter_mut().enumerate() {
            let word = skip + j;
            *o = to_uniform(words[word % 4][word / 4]);
        }
        i += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filled_uniforms_equal_element_by_element_draws_at_any_offset() {
        let key = RandomKey { seed: 0x1234_5678_9abc, stream: (1 << 33) + 5 };
        for (start, len) in [(0u64, 200usize), (3, 150), ((1 << 34) - 7, 70), (5, 2)] {
            let mut filled = vec![0f32; len];
            key.fill_uniform(start, &mut filled);
            let one_by_one: Vec<f32> = (0..len as u64).map(|i| key.uniform(start + i)).collect();
            assert_eq!(filled, one_by_one, "start {start}, {len} elements");
        }
    }

    /// The known-answer vectors for Philox4x32-10 published with Random123 (`kat_vectors`).
    #[test]
    fn philox_matches_random123_known_answers() {
        let cases = [
            ([0, 0, 0, 0], [0, 0], [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]),
            ([u32::MAX; 4], [u32::MAX; 2], [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (counter, key, expected) in cases {
            assert_eq!(philox4x32_10(counter, key), expected);
        }
    }

    #[test]
    fn filled_uniforms_equal_single_draws() {
        let key = RandomKey { seed: 3, stream: 9 };
        let mut out = vec![0.0; 11];
        key.fill_uniform(5, &mut out);
        for (j, v) in out.iter().enumerate() {
            assert_eq!(*v, key.uniform(5 + j as u64));
        }
    }

    #[test]
    fn uniform_is_in_unit_interval_and_roughly_flat() {
        let key = RandomKey { seed: 7, stream: 3 };
        let n = 100_000;
        let mut buckets = [0usize; 10];
        for i in 0..n {
            let u = key.uniform(i);
            assert!((0.0..1.0).contains(&u));
            buckets[(u * 10.0) as usize] += 1;
        }
        for b in buckets {
            assert!((b as f64 - 10_000.0).abs() < 500.0, "{buckets:?}");
        }
    }
}
