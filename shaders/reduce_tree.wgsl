// @library
// reduce.wgsl's combine across a workgroup of 256 invocations as a tree in workgroup memory
// (every adapter). Every invocation must call it; invocation 0 gets the result.

fn workgroup_combine(v: T, lid: u32) -> T {
    partial[lid] = v;
    workgroupBarrier();
    for (var stride = 128u; stride > 0u; stride = stride / 2u) {
        if lid < stride {
            partial[lid] = combine(partial[lid], partial[lid + stride]);
        }
        workgroupBarrier();
    }
    return partial[0];
}
