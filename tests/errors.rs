//! Programmer errors panic with the op, the shapes and the caller's line; outside-world errors
//! are `kiln::Error`s with a message a user can act on.

mod common;

use kiln::{DType, Device, Error, Tensor};
use std::panic;
use std::process::ExitCode;

#[test]
fn shape_errors_name_the_op_the_shapes_and_the_callers_line() {
    let a = Tensor::zeros([2, 3], &Device::Cpu);
    let b = Tensor::zeros([4, 5], &Device::Cpu);
    let (msg, at) = common::panic_of(|| {
        let _ = a.matmul(&b);
    });
    let line = line!() - 2;
    assert!(msg.contains("matmul") && msg.contains("[2, 3]") && msg.contains("[4, 5]"), "{msg}");
    assert_eq!(at, format!("tests/errors.rs:{line}"));

    let (msg, at) = common::panic_of(|| {
        let _ = Tensor::zeros([3], &Device::Cpu) + Tensor::zeros([4], &Device::Cpu);
    });
    assert_eq!(msg, "add: shapes [3] and [4] cannot be broadcast together");
    assert!(at.starts_with("tests/errors.rs:"), "{at}");

    let (msg, _) = common::panic_of(|| {
        let _ = Tensor::zeros([2, 3], &Device::Cpu).sum(2, false);
    });
    assert!(msg.contains("sum: axis 2 is out of range for a tensor of shape [2, 3]"), "{msg}");
}

#[test]
fn mixing_devices_and_dtypes_is_refused_clearly() {
    let cpu = Tensor::zeros([2], &Device::Cpu);
    let on_gpu = Tensor::zeros([2], &Device::Gpu(0));
    let (msg, _) = common::panic_of(|| {
        let _ = &cpu + &on_gpu;
    });
    assert!(msg.contains("inputs are on different devices (cpu and gpu:0)"), "{msg}");
    let (msg, _) = common::panic_of(|| {
        let _ = &cpu + &cpu.cast(DType::I32);
    });
    assert!(msg.contains("different dtypes (f32 and i32)"), "{msg}");
    let (msg, _) = common::panic_of(|| {
        let _ = cpu.cast(DType::F64).to(&Device::Gpu(0));
    });
    assert!(msg.contains("f64 tensors live on the CPU only"), "{msg}");
}

#[test]
fn bad_device_names_and_missing_adapters_are_errors() {
    match Device::parse("tpu") {
        Err(Error::Invalid(msg)) => assert!(msg.contains("expected cpu, gpu, gpu:N")),
        other => panic!("{other:?}"),
    }
    match Device::gpu(99) {
        Err(Error::NoDevice(msg)) => assert!(msg.contains("gpu:99"), "{msg}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_failed_program_prints_error_and_the_message_and_exits_with_1() {
    let mut out = Vec::new();
    let failed =
        Err(Error::format("data/mnist/t10k-labels-idx1-ubyte", "MNIST IDX", "label 12 is not a digit"));
    assert_eq!(kiln::error::report(failed, &mut out), ExitCode::FAILURE);
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "error: data/mnist/t10k-labels-idx1-ubyte: not a valid MNIST IDX file: label 12 is not a digit\n"
    );
    let mut out = Vec::new();
    assert_eq!(kiln::error::report(Ok(()), &mut out), ExitCode::SUCCESS);
    assert!(out.is_empty());
}

#[test]
fn every_error_reads_as_a_sentence_a_user_can_act_on() {
    let missing = std::io::Error::new(std::io::ErrorKind::NotFound, "no such file");
    let cases = [
        (Error::io("data/x.csv", missing), "data/x.csv: no such file"),
        (
            Error::format("ck.safetensors", "safetensors", "the checkpoint has no tensor 0.weight"),
            "ck.safetensors: not a valid safetensors file: the checkpoint has no tensor 0.weight",
        ),
        (
            Error::NoDevice("gpu:3 was asked for; the adapters are: gpu:0 llvmpipe".into()),
            "no such device: gpu:3 was asked for; the adapters are: gpu:0 llvmpipe",
        ),
        (
            Error::OutOfMemory("allocating 4096 bytes on llvmpipe".into()),
            "GPU out of memory (allocating 4096 bytes on llvmpipe); a smaller batch or model may fit",
        ),
        (
            Error::DeviceLost("driver reset (llvmpipe)".into()),
            "GPU device lost (driver reset (llvmpipe)); restart the program once the driver has recovered",
        ),
        (
            Error::TooLarge { device: "gpu:0 (llvmpipe)".into(), detail: "5 GB exceed 2 GB".into() },
            "tensor too large for gpu:0 (llvmpipe): 5 GB exceed 2 GB",
        ),
        (
            Error::Unsupported("cast.wgsl computes on f16 tensors, and the GPU x has no `shader-f16`".into()),
            "unsupported: cast.wgsl computes on f16 tensors, and the GPU x has no `shader-f16`",
        ),
        (Error::Gpu("compiling matmul: bad shader".into()), "GPU error: compiling matmul: bad shader"),
        (Error::CheckFailed("cross-check failed: matmul".into()), "cross-check failed: matmul"),
        (Error::Invalid("unknown device \"tpu\"".into()), "unknown device \"tpu\""),
        (
            Error::OutOfRange(kiln::error::OutOfRange {
                op: "index_select(axis 0)".into(),
                what: "index",
                value: 7,
                position: 2,
                bound: 4,
                site: "created at src/main.rs:9:5".into(),
            }),
            "index_select(axis 0): index 7 (element 2) is out of range: valid values are 0 to 3; the node was created at src/main.rs:9:5",
        ),
    ];
    for (error, sentence) in cases {
        // a new variant must be added here
        match &error {
            Error::Io { .. }
            | Error::Format { .. }
            | Error::NoDevice(_)
            | Error::OutOfMemory(_)
            | Error::DeviceLost(_)
            | Error::TooLarge { .. }
            | Error::Unsupported(_)
            | Error::Gpu(_)
            | Error::CheckFailed(_)
            | Error::Invalid(_)
            | Error::OutOfRange(_) => {}
        }
        assert_eq!(error.to_string(), sentence, "{error:?}");
    }
}
