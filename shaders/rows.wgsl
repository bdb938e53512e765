// @library
// The row reductions of common.wgsl as trees in workgroup memory: log2(ROW_WG) halving steps,
// a barrier after each. Runs on every adapter; rows_subgroup.wgsl replaces it where the adapter
// has subgroup operations.

// Σ over the workgroup of one value per invocation.
fn row_sum(v: f32, lid: u32) -> f32 {
    row_scratch0[lid] = v;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            row_scratch0[lid] += row_scratch0[lid + stride];
        }
        workgroupBarrier();
    }
    let total = row_scratch0[0];
    workgroupBarrier();
    return total;
}

// Two sums at once.
fn row_sum2(v: vec2<f32>, lid: u32) -> vec2<f32> {
    row_scratch0[lid] = v.x;
    row_scratch1[lid] = v.y;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            row_scratch0[lid] += row_scratch0[lid + stride];
            row_scratch1[lid] += row_scratch1[lid + stride];
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(row_scratch0[0], row_scratch1[0]);
    workgroupBarrier();
    return total;
}

// The row's (max, Σ exp(x − max)) from each invocation's pair.
fn row_max_exp(pair: vec2<f32>, lid: u32) -> vec2<f32> {
    row_scratch0[lid] = pair.x;
    row_scratch1[lid] = pair.y;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            let r = merge_max_exp(vec2<f32>(row_scratch0[lid], row_scratch1[lid]),
                                  vec2<f32>(row_scratch0[lid + stride], row_scratch1[lid + stride]));
            row_scratch0[lid] = r.x;
            row_scratch1[lid] = r.y;
        }
        workgroupBarrier();
    }
    let total = vec2<f32>(row_scratch0[0], row_scratch1[0]);
    workgroupBarrier();
    return total;
}

// The row's Welford accumulator (count, mean, M2) from each invocation's.
fn row_welford(acc: vec3<f32>, lid: u32) -> vec3<f32> {
    row_scratch0[lid] = acc.x;
    row_scratch1[lid] = acc.y;
    row_scratch2[lid] = acc.z;
    workgroupBarrier();
    for (var stride = ROW_WG / 2u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            let r = merge_welford(vec3<f32>(row_scratch0[lid], row_scratch1[lid], row_scratch2[lid]),
                                  vec3<f32>(row_scratch0[lid + stride], row_scratch1[lid + stride],
                                            row_scratch2[lid + stride]));
            row_scratch0[lid] = r.x;
            row_scratch1[lid] = r.y;
            row_scratch2[lid] = r.z;
        }
        workgroupBarrier();
    }
    let total = vec3<f32>(row_scratch0[0], row_scratch1[0], row_scratch2[0]);
    workgroupBarrier();
    return total;
}
