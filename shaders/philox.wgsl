// @library: Philox4x32-10 (Salmon et al. 2011), bit-identical to src/rng.rs, prepended to
// random.wgsl and the attention shaders (see src/backend/wgpu/pipeline.rs).
//
// kiln's layout: element e of stream (seed, stream) is word e % 4 of the block whose counter is
// [e / 4 as a 64-bit (lo, hi), stream_lo, stream_hi], under the key [seed_lo, seed_hi].

// The high and low words of the 64-bit product a·b, from 16-bit halves (WGSL has no u64).
fn mulhilo(a: u32, b: u32) -> vec2<u32> {
    let a_lo = a & 0xffffu;
    let a_hi = a >> 16u;
    let b_lo = b & 0xffffu;
    let b_hi = b >> 16u;
    let lh = a_lo * b_hi;
    let hl = a_hi * b_lo;
    let mid = ((a_lo * b_lo) >> 16u) + (lh & 0xffffu) + (hl & 0xffffu);
    let hi = a_hi * b_hi + (lh >> 16u) + (hl >> 16u) + (mid >> 16u);
    return vec2<u32>(hi, a * b);
}

fn philox(counter: vec4<u32>, key: vec2<u32>) -> vec4<u32> {
    var c = counter;
    var k = key;
    for (var round = 0u; round < 10u; round++) {
        if round > 0u {
            k = k + vec2<u32>(0x9E3779B9u, 0xBB67AE85u);
        }
        let p0 = mulhilo(0xD2511F53u, c.x);
        let p1 = mulhilo(0xCD9E8D57u, c.z);
        c = vec4<u32>(p1.x ^ c.y ^ k.x, p1.y, p0.x ^ c.w ^ k.y, p0.y);
    }
    return c;
}

// a·b + c as a 64-bit (lo, hi): the index of a block in a stream too long for 32 bits.
fn mul_add_wide(a: u32, b: u32, c: u32) -> vec2<u32> {
    let product = mulhilo(a, b);
    let lo = product.y + c;
    return vec2<u32>(lo, product.x + select(0u, 1u, lo < c));
}

// The top 24 bits as a float on [0, 1): exact in f32, so it matches the CPU bit for bit.
fn unit(w: u32) -> f32 {
    return f32(w >> 8u) * (1.0 / 16777216.0);
}
