//! The recurrent reference models the examples train, on tiny synthetic data: the sequence
//! classifier (`names`, `sentiment`) learns 20 names, padding never changes a row's logits and
//! the state-dict names are the PyTorch peer's; the character LSTM (`char_lstm`) carries its
//! state exactly and generates reproducibly; the confusion-matrix plot is a PNG of the right size.

use kiln::data::sequence::pad_sequences;
use kiln::models::{CellType, CharRnn, CharRnnConfig, Pooling, RnnClassifier, RnnClassifierConfig};
use kiln::nn::{self, Module};
use kiln::optim::{Optimizer, Rule};
use kiln::rng::RandomKey;
use kiln::train::metrics::Confusion;
use kiln::train::plot::confusion_plot;
use kiln::{Device, Tensor, no_grad};

const CPU: Device = Device::Cpu;

fn classifier(cell: CellType, bidirectional: bool, vocab_size: usize, classes: usize) -> RnnClassifier {
    pooled_classifier(cell, bidirectional, Pooling::Last, vocab_size, classes)
}

fn pooled_classifier(
    cell: CellType,
    bidirectional: bool,
    pooling: Pooling,
    vocab_size: usize,
    classes: usize,
) -> RnnClassifier {
    let config = RnnClassifierConfig {
        vocab_size,
        embedding: 12,
        hidden: 16,
        classes,
        cell,
        layers: 1,
        bidirectional,
        dropout: 0.0,
        pooling,
    };
    RnnClassifier::new(config, &CPU)
}

/// 20 "names" of 2 to 9 letters over ids 1..=8, each class 0..4 by a made-up rule no single
/// position gives away.
fn twenty_names() -> (Vec<Vec<i32>>, Vec<i32>) {
    let key = RandomKey { seed: 5, stream: 0 };
    let mut draws = (0u64..).map(|i| key.bits(i));
    let mut names = Vec::new();
    for _ in 0..20 {
        let len = 2 + (draws.next().unwrap() % 8) as usize;
        names.push((0..len).map(|_| 1 + (draws.next().unwrap() % 8) as i32).collect::<Vec<_>>());
    }
    let classes = names.iter().map(|n| (n.iter().sum::<i32>() + n.len() as i32) % 4).collect();
    (names, classes)
}

fn padded(names: &[Vec<i32>]) -> (Tensor, Tensor) {
    let (ids, padding) = pad_sequences(&names.iter().map(Vec::as_slice).collect::<Vec<_>>(), 0);
    (ids, padding.lengths)
}

#[test]
fn the_classifier_learns_twenty_names_of_different_lengths() {
    kiln::manual_seed(1);
    let (names, classes) = twenty_names();
    let model = classifier(CellType::Gru, false, 9, 4);
    let (ids, lengths) = padded(&names);
    let targets = Tensor::from_vec(classes.clone(), [20], &CPU);
    let mut optimizer = Optimizer::new(nn::parameters(&model), Rule::adam(), 2e-2);
    for _ in 0..150 {
        let loss = model.classify(&ids, Some(&lengths)).cross_entropy(&targets);
        optimizer.step(&loss.backward()).unwrap();
    }
    let predicted = no_grad(|| model.classify(&ids, Some(&lengths)).argmax(-1, false));
    assert_eq!(predicted.to_vec::<i32>().unwrap(), classes);
}

#[test]
fn padding_never_changes_a_rows_logits_for_any_cell_direction_or_pooling() {
    let (names, _) = twenty_names();
    let names = &names[..6];
    let variants = [CellType::Rnn, CellType::Gru, CellType::Lstm]
        .into_iter()
        .flat_map(|cell| [false, true].map(|bidirectional| (cell, bidirectional, Pooling::Last)))
        .chain([(CellType::Lstm, true, Pooling::Mean), (CellType::Gru, false, Pooling::Mean)])
        .chain([(CellType::Lstm, true, Pooling::Max), (CellType::Rnn, false, Pooling::Max)])
        .chain([(CellType::Lstm, true, Pooling::MeanMax)]);
    for (cell, bidirectional, pooling) in variants {
        kiln::manual_seed(2);
        let model = pooled_classifier(cell, bidirectional, pooling, 9, 5);
        let (ids, lengths) = padded(names);
        let batch = model.classify(&ids, Some(&lengths)).to_vec::<f32>().unwrap();
        for (row, name) in names.iter().enumerate() {
            let alone = Tensor::from_vec(name.clone(), [1, name.len()], &CPU);
            let expected = model.classify(&alone, None).to_vec::<f32>().unwrap();
            for (got, want) in batch[row * 5..(row + 1) * 5].iter().zip(&expected) {
                assert!(
                    (got - want).abs() < 1e-5,
                    "{cell:?} bidirectional {bidirectional} {pooling:?}, row {row}: {got} padded, {want} alone"
                );
            }
        }
    }
}

#[test]
fn the_classifier_names_its_parameters_as_the_pytorch_peer() {
    let names: Vec<String> =
        nn::parameters(&classifier(CellType::Lstm, true, 9, 3)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(names[0], "emb.weight");
    assert!(names.contains(&"lstm.weight_hh_l0_reverse".to_string()), "{names:?}");
    assert_eq!(names[names.len() - 2..], ["out.weight", "out.bias"]);
    let gru: Vec<String> =
        nn::parameters(&classifier(CellType::Gru, false, 9, 3)).into_iter().map(|(n, _)| n).collect();
    assert_eq!(gru[1], "gru.weight_ih_l0");
}

#[test]
fn mean_max_pooling_reads_the_mean_and_the_maximum_side_by_side() {
    // the output layer of MeanMax reads [mean, max]: with its weights split in two halves, its
    // logits are the Mean model's plus the Max model's (all three share the other weights)
    let (names, _) = twenty_names();
    let (ids, lengths) = padded(&names[..5]);
    let models = [Pooling::Mean, Pooling::Max, Pooling::MeanMax].map(|pooling| {
        kiln::manual_seed(4);
        pooled_classifier(CellType::Lstm, true, pooling, 9, 3)
    });
    let [mean, max, both] = &models;
    let shared = nn::parameters(both);
    let value = |name: &str| shared.iter().find(|(n, _)| n == name).expect("a parameter").1.clone();
    let w = value("out.weight"); // (3, 2 poolings · 2 directions · 16)
    for (model, half) in [(mean, w.narrow(1, 0, 32)), (max, w.narrow(1, 32, 32))] {
        for (name, p) in nn::parameters(model) {
            let v = match name.as_str() {
                "out.weight" => half.clone(),
                "out.bias" => value("out.bias") * 0.5,
                _ => value(&name),
            };
            p.assign(&v).unwrap();
        }
    }
    let logits = |m: &RnnClassifier| m.classify(&ids, Some(&lengths)).to_vec::<f32>().unwrap();
    let (a, b, c) = (logits(mean), logits(max), logits(both));
    for i in 0..c.len() {
        assert!((a[i] + b[i] - c[i]).abs() < 1e-5, "logit {i}: {} + {} against {}", a[i], b[i], c[i]);
    }
}

#[test]
#[should_panic(expected = "RnnClassifier: ids")]
fn the_classifier_rejects_ids_that_are_not_a_batch_of_sequences() {
    classifier(CellType::Gru, false, 9, 3).classify(&Tensor::from_vec(vec![1i32, 2], [2], &CPU), None);
}

fn char_rnn() -> CharRnn {
    kiln::manual_seed(3);
    CharRnn::new(CharRnnConfig { vocab_size: 7, embedding: 8, hidden: 12, layers: 2, dropout: 0.0 }, &CPU)
}

#[test]
fn the_char_lstm_carries_its_state_from_one_window_to_the_next_exactly() {
    let model = char_rnn();
    let text: Vec<i32> = vec![1, 4, 2, 6, 0, 3, 5, 5, 2, 1];
    let whole = model.forward(&Tensor::from_vec(text.clone(), [1, 10], &CPU)).to_vec::<f32>().unwrap();
    let (first, state) = model.forward_with(&Tensor::from_vec(text[..4].to_vec(), [1, 4], &CPU), None);
    let (second, _) = model.forward_with(&Tensor::from_vec(text[4..].to_vec(), [1, 6], &CPU), Some(&state));
    let mut halves = first.to_vec::<f32>().unwrap();
    halves.extend(second.to_vec::<f32>().unwrap());
    for (i, (a, b)) in whole.iter().zip(&halves).enumerate() {
        assert!((a - b).abs() < 1e-5, "logit {i}: {a} in one pass, {b} in two");
    }
}

#[test]
fn generation_is_reproducible_from_its_key_and_continues_the_prompt() {
    let model = char_rnn();
    let key = RandomKey { seed: 9, stream: 2 };
    let sample = model.generate(&[1, 2], 30, 1.0, key).unwrap();
    assert_eq!(sample.len(), 32);
    assert_eq!(&sample[..2], &[1, 2]);
    assert!(sample.iter().all(|&id| (0..7).contains(&id)), "{sample:?}");
    assert_eq!(model.generate(&[1, 2], 30, 1.0, key).unwrap(), sample);
    assert_ne!(model.generate(&[1, 2], 30, 1.0, RandomKey { seed: 10, stream: 2 }).unwrap(), sample);
    // a very low temperature is greedy decoding: the likeliest character every time
    let greedy = model.generate(&[1, 2], 5, 1e-4, key).unwrap();
    let logits = model.forward(&Tensor::from_vec(greedy[..6].to_vec(), [1, 6], &CPU));
    let argmax = logits.argmax(-1, false).to_vec::<i32>().unwrap();
    assert_eq!(&greedy[2..], &argmax[1..6]);
}

#[test]
#[should_panic(expected = "positive temperature")]
fn generation_needs_a_positive_temperature() {
    let _ = char_rnn().generate(&[1], 3, 0.0, RandomKey { seed: 0, stream: 0 });
}

#[test]
fn the_confusion_plot_is_a_png_sized_by_the_classes() {
    let mut confusion = Confusion::new(3);
    confusion.add(&[0, 1, 2, 2], &[0, 2, 2, 1]);
    let dir = std::env::temp_dir().join(format!("kiln-confusion-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("confusion.png");
    let labels = ["a".to_string(), "b".to_string(), "c".to_string()];
    confusion_plot(&path, "test", &labels, &confusion).unwrap();
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&path).unwrap()));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (36 * 3 + 170, 36 * 3 + 200));
    std::fs::remove_dir_all(&dir).unwrap();
}
