//! A lost device becomes `Error::DeviceLost` on the next computation, not a panic. (Its own test
//! binary: it destroys the process's GPU context.)

mod common;

use kiln::{Error, Tensor};

#[test]
fn a_destroyed_device_reports_device_lost() {
    let Some(gpu) = common::gpu("device lost") else {
        return;
    };
    let x = Tensor::ones([4], &gpu);
    assert_eq!(x.sum_all().item::<f32>().unwrap(), 4.0);
    kiln::backend::wgpu::context(0).unwrap().device.destroy();
    let result = (&x * 2.0).sum_all().item::<f32>();
    match result {
        Err(Error::DeviceLost(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected DeviceLost, got {other:?}"),
    }
}
