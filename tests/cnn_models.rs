//! The CNN models and their layers: the state dicts of ResNet-18, MobileNetV2 and VGG-11's
//! features against torchvision's (the lists in `tests/fixtures/torchvision/`, printed by the
//! script beside them), the CIFAR ResNets' sizes and
//! option-A shortcuts, adaptive average pooling against a hand-written loop (both backends) with
//! its gradient by finite differences, and freezing by name.

mod common;

use kiln::models::resnet::{BasicBlock, ShortcutKind};
use kiln::nn::{self, AdaptiveAvgPool2d, Linear, Module, Sequential};
use kiln::optim::{Optimizer, Rule};
use kiln::{DType, Device, Tensor};

const CPU: Device = Device::Cpu;

/// Asserts that `module`'s state dict, name and shape per line, is the list torchvision printed.
fn assert_state_dict_is(module: &dyn Module, list: &str) {
    let want: Vec<&str> = list.lines().collect();
    let got: Vec<String> =
        nn::state_dict(module).iter().map(|(name, t)| format!("{name} {:?}", t.dims())).collect();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert_eq!(g, w, "entry {i}");
    }
    assert_eq!(got.len(), want.len());
}

#[test]
fn state_dicts_are_torchvisions() {
    let resnet18 = kiln::models::resnet18(1000, &CPU);
    assert_state_dict_is(&resnet18, include_str!("fixtures/torchvision/resnet18.txt"));
    assert_eq!(nn::parameter_count(&resnet18), 11_689_512, "torchvision's count");
    let mobilenet = kiln::models::mobilenet_v2(1000, &CPU);
    assert_state_dict_is(&mobilenet, include_str!("fixtures/torchvision/mobilenet_v2.txt"));
    assert_eq!(nn::parameter_count(&mobilenet), 3_504_872, "torchvision's count");
    // VGG's convolutional features are torchvision's; its classifier is sized for 32×32 images
    let vgg = kiln::models::vgg11_bn(10, &CPU);
    let features: Vec<(String, Tensor)> =
        nn::state_dict(&vgg).into_iter().filter(|(n, _)| n.starts_with("features.")).collect();
    let got: Vec<String> =
        features.iter().map(|(n, t)| format!("{} {:?}", &n["features.".len()..], t.dims())).collect();
    assert_eq!(got, include_str!("fixtures/torchvision/vgg11_bn_features.txt").lines().collect::<Vec<_>>());
}

#[test]
fn cifar_mobilenet_has_depthwise_convolutions_and_classifies_32x32_images() {
    let model = kiln::models::mobilenet_v2_cifar(10, &CPU);
    let depthwise =
        &nn::state_dict(&model).into_iter().find(|(n, _)| n == "features.2.conv.1.0.weight").unwrap().1;
    assert_eq!(depthwise.dims(), &[96, 1, 3, 3], "one 3×3 filter per channel (groups = 96)");
    assert_eq!(model.forward(&Tensor::randn([3, 3, 32, 32], &CPU)).dims(), &[3, 10]);
}

#[test]
fn cifar_resnets_have_the_papers_sizes_and_shapes() {
    let r20 = kiln::models::resnet20(10, &CPU);
    let r56 = kiln::models::resnet56(10, &CPU);
    assert_eq!((nn::parameter_count(&r20), nn::parameter_count(&r56)), (269_722, 853_018));
    let names: Vec<String> = nn::parameters(&r20).into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"layer3.2.bn2.weight".to_string()) && names.last().unwrap() == "fc.bias");
    assert!(!names.iter().any(|n| n.contains("downsample")), "option A shortcuts have no parameters");
    let x = Tensor::randn([2, 3, 32, 32], &CPU);
    assert_eq!(r20.forward(&x).dims(), &[2, 10]);
    assert_eq!(r20.features(&x).dims(), &[2, 64]);
    // torchvision's stem takes 224×224 to 7×7 maps; any size pools to (N, 512)
    let r18 = kiln::models::resnet18(7, &CPU);
    assert_eq!(r18.forward(&Tensor::randn([1, 3, 45, 37], &CPU)).dims(), &[1, 7]);
}

#[test]
fn option_a_shortcut_subsamples_and_pads_channels_with_zeros() {
    // a block whose residual branch is zeroed (bn2's scale 0) shows its shortcut: relu(x[::2, ::2])
    // in the middle channels and zeros in the padded ones
    let block = BasicBlock::new(4, 8, 2, ShortcutKind::PadChannels, &CPU);
    let sd = nn::state_dict(&block);
    let bn2 = &sd.iter().find(|(n, _)| n == "bn2.weight").unwrap().1;
    bn2.assign(&Tensor::zeros([8], &CPU)).unwrap();
    let x = Tensor::randn([3, 4, 7, 5], &CPU);
    let y = block.forward(&x);
    assert_eq!(y.dims(), &[3, 8, 4, 3]);
    let (xv, yv) = (x.to_vec::<f32>().unwrap(), y.to_vec::<f32>().unwrap());
    for n in 0..3 {
        for c in 0..8 {
            for i in 0..4 {
                for j in 0..3 {
                    let got = yv[((n * 8 + c) * 4 + i) * 3 + j];
                    let want = if (2..6).contains(&c) {
                        xv[((n * 4 + c - 2) * 7 + 2 * i) * 5 + 2 * j].max(0.0)
                    } else {
                        0.0
                    };
                    assert_eq!(got, want, "n {n} c {c} ({i}, {j})");
                }
            }
        }
    }
}

/// PyTorch's adaptive average pooling, written out: cell (i, j) averages rows ⌊iH/oh⌋..⌈(i+1)H/oh⌉.
fn adaptive_reference(
    x: &[f64],
    (n, c, h, w): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
) -> Vec<f64> {
    let mut out = Vec::new();
    for plane in 0..n * c {
        for i in 0..oh {
            let (r0, r1) = (i * h / oh, ((i + 1) * h).div_ceil(oh));
            for j in 0..ow {
                let (c0, c1) = (j * w / ow, ((j + 1) * w).div_ceil(ow));
                let cells = (r0..r1).flat_map(|r| (c0..c1).map(move |q| (r, q)));
                let sum: f64 = cells.map(|(r, q)| x[plane * h * w + r * w + q]).sum();
                out.push(sum / ((r1 - r0) * (c1 - c0)) as f64);
            }
        }
    }
    out
}

#[test]
fn adaptive_average_pooling_matches_pytorchs_windows_on_both_backends() {
    let mut devices = vec![CPU];
    devices.extend(common::gpu("adaptive average pooling"));
    // shrinking evenly and unevenly, global, growing (windows overlap or repeat), a prime size
    let cases = [
        ((2, 3, 8, 6), (4, 3)),
        ((1, 2, 7, 5), (3, 2)),
        ((3, 1, 5, 9), (1, 1)),
        ((1, 2, 2, 3), (5, 7)),
        ((2, 1, 13, 1), (13, 1)),
    ];
    for device in &devices {
        for (dims, out) in cases {
            let x = Tensor::randn([dims.0, dims.1, dims.2, dims.3], &CPU);
            let want = adaptive_reference(&x.to_f64_vec().unwrap(), dims, out);
            let got = AdaptiveAvgPool2d(out).forward(&x.to(device)).to_f64_vec().unwrap();
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                // sums of at most 117 f32 terms: rounding of a few ulps
                assert!(
                    (g - w).abs() <= 1e-5 * w.abs().max(1.0),
                    "{device:?} {dims:?} → {out:?}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn adaptive_average_pooling_gradient_matches_finite_differences() {
    for out in [(3, 2), (1, 1), (4, 6)] {
        let x = Tensor::randn([2, 2, 5, 4], &CPU).cast(DType::F64).requires_grad_();
        let r = Tensor::randn([2, 2, out.0, out.1], &CPU).cast(DType::F64);
        let loss = |x: &Tensor| (AdaptiveAvgPool2d(out).forward(x) * &r).sum_all();
        let grad = loss(&x).backward().get(&x).unwrap().to_f64_vec().unwrap();
        let xv = x.to_f64_vec().unwrap();
        for (k, g) in grad.iter().enumerate() {
            let at = |d: f64| {
                let mut v = xv.clone();
                v[k] += d;
                loss(&Tensor::from_vec(v, [2, 2, 5, 4], &CPU)).to_f64_vec().unwrap()[0]
            };
            let numeric = (at(1e-6) - at(-1e-6)) / 2e-6;
            assert!((g - numeric).abs() < 1e-7, "{out:?} element {k}: {g} vs {numeric}");
        }
    }
}

#[test]
fn frozen_parameters_get_no_gradient_and_do_not_move() {
    let model = Sequential::new().add(Linear::new(3, 4, &CPU)).add(Linear::new(4, 2, &CPU));
    assert_eq!(nn::freeze(&model, "0.*"), 2);
    let before = nn::state_dict(&model).iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect::<Vec<_>>();
    let mut opt = Optimizer::new(nn::trainable_parameters(&model), Rule::sgd(), 0.1);
    assert_eq!(opt.params().len(), 2, "the optimizer holds the head only");
    let loss = model.forward(&Tensor::randn([5, 3], &CPU)).sum_all();
    let grads = loss.backward();
    let params = nn::parameters(&model);
    assert!(
        grads.get(&params[0].1).is_none() && grads.get(&params[1].1).is_none(),
        "no gradient for the frozen layer"
    );
    opt.step(&grads).unwrap();
    let after = nn::state_dict(&model).iter().map(|(_, t)| t.to_vec::<f32>().unwrap()).collect::<Vec<_>>();
    assert_eq!(after[..2], before[..2], "frozen weights unchanged");
    assert_ne!(after[2..], before[2..], "the head trained");
    assert_eq!(nn::unfreeze(&model, "*"), 4);
    assert_eq!(nn::trainable_parameters(&model).len(), 4);
}
