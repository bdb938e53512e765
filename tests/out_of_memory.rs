//! Running out of GPU memory is `Error::OutOfMemory` naming the allocation, and it corrupts
//! nothing: the same computation succeeds once memory is there. (Its own test binary: the fault
//! injection is process-wide.)

mod common;

use kiln::{Error, Tensor};

#[test]
fn out_of_memory_is_an_error_and_the_same_work_succeeds_after() {
    let Some(gpu) = common::gpu("out of memory") else {
        return;
    };
    let n = 12_345;
    let values: Vec<f32> = (0..n).map(|i| (i % 97) as f32 - 48.0).collect();
    let x = Tensor::from_vec(values.clone(), [n], &gpu);
    x.realize().unwrap();
    let y = (&x.square() + 1.0).sqrt();
    // x's buffer is in use, so y needs a new one: that allocation fails
    kiln::debug::inject_out_of_memory_once();
    match y.realize() {
        Err(Error::OutOfMemory(msg)) => assert!(msg.contains("bytes"), "names the allocation: {msg}"),
        other => panic!("expected OutOfMemory, got {other:?}"),
    }
    // nothing was left half-done: the same graph realizes, and x is intact
    let want: Vec<f32> = values.iter().map(|v| (v * v + 1.0).sqrt()).collect();
    let got = y.to_vec::<f32>().unwrap();
    assert!(got.iter().zip(&want).all(|(g, w)| (g - w).abs() <= 1e-6 * w), "y after recovery");
    assert_eq!(x.to_vec::<f32>().unwrap(), values);
}
