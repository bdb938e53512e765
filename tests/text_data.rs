//! Text and sequence data: the tokenizer, word and character vocabularies (and their files),
//! padded sequence batches through the DataLoader with bucketing, the language-model batchers,
//! and the line and names readers, on hand-checked cases and on the shared data.

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use kiln::Error;
use kiln::data::lm::{BpttStreams, RandomWindows};
use kiln::data::names::Names;
use kiln::data::sequence::{SequenceDataset, pad_sequences};
use kiln::data::text::{CharVocab, read_lines, read_parallel};
use kiln::data::tokenize::tokenize;
use kiln::data::vocab::Vocab;
use kiln::data::{Batch, DataLoader, Dataset, InMemory, Targets};
use kiln::rng::RandomKey;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;

/// A fresh folder for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-{test}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn ints(t: &kiln::Tensor) -> Vec<i32> {
    t.to_vec::<i32>().unwrap()
}

#[test]
fn tokenizer_lowercases_and_splits_off_punctuation() {
    assert_eq!(tokenize("Ein Mann fährt Fahrrad."), ["ein", "mann", "fährt", "fahrrad", "."]);
    assert_eq!(tokenize("Two young, White males."), ["two", "young", ",", "white", "males", "."]);
    // apostrophes inside a word stay; at its edges they are punctuation; ’ becomes '
    assert_eq!(tokenize("Don't O’Brien"), ["don't", "o'brien"]);
    assert_eq!(tokenize("'quoted' dogs' x'"), ["'", "quoted", "'", "dogs", "'", "x", "'"]);
    assert_eq!(tokenize("wait...what?!"), ["wait", ".", ".", ".", "what", "?", "!"]);
    assert_eq!(tokenize("t-shirt 3.5 €20"), ["t", "-", "shirt", "3", ".", "5", "€", "20"]);
    // Unicode letters and digits are word characters, whatever the script or case
    assert_eq!(tokenize("ÄRGER Straße ΣΟΦΊΑ 你好 ٣"), ["ärger", "straße", "σοφία", "你好", "٣"]);
    // a decomposed é (e + U+0301) stays inside its word
    assert_eq!(tokenize("Cafe\u{301} au lait"), ["cafe\u{301}", "au", "lait"]);
    assert!(tokenize("").is_empty());
    assert!(tokenize(" \t\r\n ").is_empty());
    assert_eq!(tokenize("\n  a\tb  \r\n"), ["a", "b"]);
}

#[test]
fn vocab_orders_by_count_then_token_after_fixed_specials() {
    let text = "the cat sat on the mat . the dog sat . a b";
    let vocab = Vocab::build(tokenize(text), 1, None);
    assert_eq!(
        vocab.tokens(),
        ["<pad>", "<unk>", "<bos>", "<eos>", "the", ".", "sat", "a", "b", "cat", "dog", "mat", "on"]
    );
    assert_eq!((Vocab::PAD, Vocab::UNK, Vocab::BOS, Vocab::EOS), (0, 1, 2, 3));
    // minimum frequency, then maximum size (specials included)
    let frequent = Vocab::build(tokenize(text), 2, None);
    assert_eq!(frequent.tokens()[4..], ["the", ".", "sat"]);
    let small = Vocab::build(tokenize(text), 1, Some(6));
    assert_eq!(small.tokens()[4..], ["the", "."]);
    assert_eq!(Vocab::build(tokenize(text), 1, Some(4)).len(), 4);
    assert_eq!(Vocab::build(Vec::<String>::new(), 1, None).tokens(), Vocab::SPECIALS);
    // encode and decode, with <unk> both ways
    let ids = vocab.encode(&tokenize("The zebra sat."));
    assert_eq!(ids, [4, Vocab::UNK, 6, 5]);
    assert_eq!(vocab.decode(&ids), ["the", "<unk>", "sat", "."]);
    assert_eq!(vocab.decode(&[-1, 13, 0]), ["<unk>", "<unk>", "<pad>"]);
    assert_eq!(vocab.token(12), Some("on"));
    assert_eq!(vocab.id("<eos>"), Vocab::EOS);
    // a special's own count does not move it, nor duplicate it
    let counts = HashMap::from([("<unk>".to_string(), 100), ("x".to_string(), 1)]);
    assert_eq!(Vocab::from_counts(&counts, 1, None).tokens()[1..], ["<unk>", "<bos>", "<eos>", "x"]);
    // ties by token give the same ids whatever order the counts come in
    let a = Vocab::build(["b", "a", "c", "a", "c"], 1, None);
    let b = Vocab::build(["c", "c", "a", "b", "a"], 1, None);
    assert_eq!(a, b);
    assert_eq!(a.tokens()[4..], ["a", "c", "b"]);
}

#[test]
#[should_panic(expected = "max_size 3 leaves no room for the 4 specials")]
fn vocab_max_size_must_hold_the_specials() {
    Vocab::build(["a"], 1, Some(3));
}

#[test]
fn vocabularies_save_and_load_as_json_and_bad_files_are_errors() {
    let dir = scratch("vocab-files");
    let vocab = Vocab::build(tokenize("Ein \"Mann\" fährt\tFahrrad, ein Mann."), 1, None);
    let word = dir.join("vocab.json");
    vocab.save(&word).unwrap();
    assert_eq!(Vocab::load(&word).unwrap(), vocab);
    let chars = CharVocab::from_chars("zA\n\"\\é 日".chars());
    let char_path = dir.join("chars.json");
    chars.save(&char_path).unwrap();
    let loaded = CharVocab::load(&char_path).unwrap();
    assert_eq!(loaded, chars);
    assert_eq!(loaded.encode("A日\n").unwrap(), [1, 7, 2]);

    let bad = |name: &str, content: &str| -> String {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        let word = Vocab::load(&path).unwrap_err();
        assert!(matches!(word, Error::Format { .. }), "{word}");
        let word = word.to_string();
        assert!(word.contains(name), "the error names the file: {word}");
        word
    };
    assert!(bad("truncated.json", "{\"vocab\": \"word\", \"tokens\": [\"<pad>\"").contains("EOF"));
    assert!(bad("list.json", "[1, 2]").contains("expected a \"word\" vocabulary, found no \"vocab\" field"));
    let specials =
        bad("specials.json", r#"{"vocab": "word", "tokens": ["<unk>", "<pad>", "<bos>", "<eos>"]}"#);
    assert!(specials.contains("the first tokens must be the specials"), "{specials}");
    assert!(bad("short.json", r#"{"vocab": "word", "tokens": ["<pad>"]}"#).contains("specials"));
    let twice =
        bad("twice.json", r#"{"vocab": "word", "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", "a", "a"]}"#);
    assert!(twice.contains("\"a\" appears twice (ids 4 and 5)"), "{twice}");
    let number =
        bad("number.json", r#"{"vocab": "word", "tokens": ["<pad>", "<unk>", "<bos>", "<eos>", 7]}"#);
    assert!(number.contains("token 4 is 7, not a string"), "{number}");
    assert!(bad("notokens.json", r#"{"vocab": "word"}"#).contains("no \"tokens\" array"));
    // one kind of vocabulary is not read as the other
    let e = Vocab::load(&char_path).unwrap_err().to_string();
    assert!(e.contains("chars.json") && e.contains("found a \"char\" vocabulary"), "{e}");
    let e = CharVocab::load(&word).unwrap_err().to_string();
    assert!(e.contains("vocab.json") && e.contains("found a \"word\" vocabulary"), "{e}");
    std::fs::write(dir.join("long.json"), r#"{"vocab": "char", "tokens": ["a", "bc"]}"#).unwrap();
    let e = CharVocab::load(dir.join("long.json")).unwrap_err().to_string();
    assert!(e.contains("entry 1 is \"bc\", not one character"), "{e}");
    std::fs::write(dir.join("dup.json"), r#"{"vocab": "char", "tokens": ["a", "a"]}"#).unwrap();
    assert!(CharVocab::load(dir.join("dup.json")).unwrap_err().to_string().contains("appears twice"));
    assert!(matches!(Vocab::load(dir.join("missing.json")), Err(Error::Io { .. })));
    assert!(matches!(CharVocab::load(dir.join("missing.json")), Err(Error::Io { .. })));
    // a save over an existing file replaces it whole, leaving no temporary file behind
    Vocab::build(["solo"], 1, None).save(&word).unwrap();
    assert_eq!(Vocab::load(&word).unwrap().tokens()[4..], ["solo"]);
    let mut left: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.retain(|n| n.ends_with(".tmp"));
    assert!(left.is_empty(), "{left:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn char_vocab_keeps_a_fixed_alphabet_in_its_order() {
    let letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ .,;'";
    let vocab = CharVocab::from_chars(letters.chars());
    assert_eq!(vocab.len(), 57);
    assert_eq!(vocab.encode("Jo'a").unwrap(), [35, 14, 56, 0]);
    assert_eq!(vocab.decode(&[35, 14, 56, 0, 57, -1]), "Jo'a\u{fffd}\u{fffd}");
    assert!(vocab.encode("é").unwrap_err().to_string().contains("'é' is not in the vocabulary"));
    // `of` still sorts the text's characters
    assert_eq!(CharVocab::of("hello").chars(), ['e', 'h', 'l', 'o']);
    let repeated = std::panic::catch_unwind(|| CharVocab::from_chars("abca".chars())).unwrap_err();
    let message = repeated.downcast_ref::<String>().unwrap();
    assert!(message.contains("'a' appears twice (positions 0 and 3)"), "{message}");
}

#[test]
fn padding_collate_pads_to_the_longest_with_lengths_and_mask() {
    let (ids, padding) = pad_sequences(&[&[5, 6, 7], &[8], &[9, 10]], 0);
    assert_eq!(ids.dims(), [3, 3]);
    assert_eq!(ids.dtype(), kiln::DType::I32);
    assert_eq!(ints(&ids), [5, 6, 7, 8, 0, 0, 9, 10, 0]);
    assert_eq!(ints(&padding.lengths), [3, 1, 2]);
    assert_eq!(padding.mask.dims(), [3, 3]);
    assert_eq!(padding.mask.dtype(), kiln::DType::Bool);
    assert_eq!(
        padding.mask.to_vec::<bool>().unwrap(),
        [true, true, true, true, false, false, true, true, false]
    );
    // a batch of one is not padded
    let (ids, padding) = pad_sequences(&[&[4, 4]], -1);
    assert_eq!((ids.dims(), ints(&ids), ints(&padding.lengths)), (&[1, 2][..], vec![4, 4], vec![2]));
    // an empty sequence is a row of padding with length 0; all empty gives T = 0
    let (ids, padding) = pad_sequences(&[&[], &[3]], 0);
    assert_eq!((ints(&ids), ints(&padding.lengths)), (vec![0, 3], vec![0, 1]));
    assert_eq!(padding.mask.to_vec::<bool>().unwrap(), [false, true]);
    let (ids, padding) = pad_sequences(&[&[], &[]], 0);
    assert_eq!((ids.dims(), padding.mask.dims()), (&[2, 0][..], &[2, 0][..]));
    assert_eq!(ints(&padding.lengths), [0, 0]);
    let (ids, _) = pad_sequences(&[], 0);
    assert_eq!(ids.dims(), [0, 0]);
    // one sequence far longer than the others: every row padded to it, the mask exact
    let long: Vec<i32> = (1..=1000).collect();
    let (ids, padding) = pad_sequences(&[&[7], &long, &[]], 0);
    assert_eq!(ids.dims(), [3, 1000]);
    let values = ints(&ids);
    assert_eq!(values[0], 7);
    assert!(values[1..1000].iter().all(|&v| v == 0));
    assert_eq!(values[1000..2000], long[..]);
    let mask = padding.mask.to_vec::<bool>().unwrap();
    assert_eq!(mask.iter().filter(|&&m| m).count(), 1001);
    assert_eq!(ints(&padding.lengths), [1, 1000, 0]);
}

#[test]
fn sequence_dataset_batches_classes_and_translation_pairs() {
    let data =
        SequenceDataset::classification(vec![vec![4, 5], vec![6], vec![], vec![7, 8, 9]], vec![1, 0, 2, 1]);
    assert_eq!(data.len(), 4);
    let batch = data.batch(&[3, 1, 2]);
    assert_eq!(batch.len(), 3);
    assert_eq!(ints(&batch.inputs), [7, 8, 9, 6, 0, 0, 0, 0, 0]);
    assert_eq!(ints(&batch.targets), [1, 0, 2]);
    let padding = batch.input_padding.as_ref().unwrap();
    assert_eq!(ints(&padding.lengths), [3, 1, 0]);
    assert!(batch.target_padding.is_none());
    assert_eq!((data.sample_len(0), data.sample_len(2)), (Some(2), Some(0)));
    // another pad id for vocabularies without one
    let batch = data.clone().with_pad(-1).batch(&[1, 0]);
    assert_eq!(ints(&batch.inputs), [6, -1, 4, 5]);

    let bos_eos = |ids: &[i32]| [&[Vocab::BOS][..], ids, &[Vocab::EOS]].concat();
    let pairs = SequenceDataset::translation(
        vec![vec![10, 11, 12], vec![13]],
        vec![bos_eos(&[20]), bos_eos(&[21, 22, 23])],
    );
    let batch = pairs.batch(&[0, 1]);
    assert_eq!(ints(&batch.inputs), [10, 11, 12, 13, 0, 0]);
    assert_eq!(batch.targets.dims(), [2, 5]);
    assert_eq!(ints(&batch.targets), [2, 20, 3, 0, 0, 2, 21, 22, 23, 3]);
    let target = batch.target_padding.unwrap();
    assert_eq!(ints(&target.lengths), [3, 5]);
    assert_eq!(
        target.mask.to_vec::<bool>().unwrap(),
        [true, true, true, false, false, true, true, true, true, true]
    );
    assert_eq!(ints(&batch.input_padding.unwrap().lengths), [3, 1]);
}

#[test]
#[should_panic(expected = "SequenceDataset: 2 input sequences for 1 targets")]
fn sequence_dataset_needs_a_target_per_sequence() {
    SequenceDataset::classification(vec![vec![1], vec![2]], vec![0]);
}

/// The length of sample `i` of [`ragged`]: random in 1..=`max`.
fn ragged_len(i: usize, max: usize) -> usize {
    1 + RandomKey { seed: 5, stream: 0 }.bits(i as u64) as usize % max
}

/// A dataset of `n` sequences of random lengths in 1..=`max`; sample `i`'s tokens and class are
/// all `i`, so a batch tells which samples it holds.
fn ragged(n: usize, max: usize) -> SequenceDataset {
    let inputs = (0..n).map(|i| vec![i as i32; ragged_len(i, max)]).collect();
    SequenceDataset::classification(inputs, (0..n as i32).collect())
}

/// The samples (classes) of each batch and the padded width of each.
fn epoch_of(loader: &DataLoader, epoch: u64) -> (Vec<Vec<i32>>, Vec<usize>) {
    loader.epoch(epoch).map(|b: Batch| (ints(&b.targets), b.inputs.dims()[1])).unzip()
}

#[test]
fn bucketing_batches_similar_lengths_in_a_seeded_order() {
    let (n, batch) = (203, 8);
    let data = ragged(n, 60);
    let plain = DataLoader::new(data.clone(), batch).shuffle(3);
    let bucketed = DataLoader::new(data.clone(), batch).shuffle(3).bucket_by_length(10);
    assert_eq!(bucketed.batches(), plain.batches());
    let (batches, widths) = epoch_of(&bucketed, 0);
    assert_eq!(batches.len(), 26);
    // every sample exactly once, with only one short batch
    let mut seen: Vec<i32> = batches.concat();
    seen.sort();
    assert_eq!(seen, (0..n as i32).collect::<Vec<_>>());
    assert_eq!(batches.iter().filter(|b| b.len() < batch).count(), 1);
    // far less padding than unbucketed batches
    let padded = |widths: &[usize], batches: &[Vec<i32>]| -> usize {
        widths.iter().zip(batches).map(|(w, b)| w * b.len()).sum()
    };
    let (plain_batches, plain_widths) = epoch_of(&plain, 0);
    let real: usize = (0..n).map(|i| ragged_len(i, 60)).sum();
    let (waste, plain_waste) =
        (padded(&widths, &batches) - real, padded(&plain_widths, &plain_batches) - real);
    assert!(waste * 4 < plain_waste, "bucketed padding {waste} vs {plain_waste}");
    // deterministic per (seed, epoch), different across epochs and seeds, and the batch order
    // is shuffled (not sorted by length)
    assert_eq!(epoch_of(&bucketed, 0), (batches.clone(), widths.clone()));
    assert_ne!(epoch_of(&bucketed, 1).0, batches);
    assert_ne!(epoch_of(&DataLoader::new(data.clone(), batch).shuffle(4).bucket_by_length(10), 0).0, batches);
    assert!(widths.windows(2).any(|w| w[0] > w[1]) && widths.windows(2).any(|w| w[0] < w[1]), "{widths:?}");
    // drop_last drops the one short batch
    let dropped = DataLoader::new(data.clone(), batch).shuffle(3).bucket_by_length(10).drop_last();
    let (kept, _) = epoch_of(&dropped, 0);
    assert_eq!(kept.len(), 25);
    assert!(kept.iter().all(|b| b.len() == batch));
    // without shuffling: the samples in order, each pool of 2 × 2 sorted by length (stably)
    let (sorted, widths) = epoch_of(&DataLoader::new(ragged(6, 5), 2).bucket_by_length(2), 0);
    let mut expected: Vec<i32> = (0..6).collect();
    expected[..4].sort_by_key(|&i| ragged_len(i as usize, 5));
    expected[4..].sort_by_key(|&i| ragged_len(i as usize, 5));
    assert_eq!(sorted.concat(), expected);
    let width = |b: &[i32]| b.iter().map(|&i| ragged_len(i as usize, 5)).max().unwrap();
    assert_eq!(widths, sorted.iter().map(|b| width(b)).collect::<Vec<_>>());
    // a batch of one per step works too
    assert_eq!(DataLoader::new(ragged(5, 9), 1).shuffle(1).bucket_by_length(3).epoch(0).count(), 5);
}

#[test]
fn sequence_loader_shuffles_deterministically_without_bucketing() {
    let loader = DataLoader::new(ragged(50, 30), 7).shuffle(11);
    let (a, widths) = epoch_of(&loader, 2);
    assert_eq!(epoch_of(&loader, 2), (a.clone(), widths));
    assert_eq!(
        a.concat().iter().map(|&i| i as usize).collect::<Vec<_>>(),
        kiln::data::permutation(50, 11, 2),
        "the same order as any other dataset"
    );
}

#[test]
#[should_panic(expected = "the dataset's samples have no length")]
fn bucketing_needs_samples_with_lengths() {
    let images = InMemory::new(vec![0.0; 4], &[2], Targets::Classes(vec![0, 1]));
    let _ = DataLoader::new(images, 1).bucket_by_length(4);
}

#[test]
fn random_windows_are_next_token_pairs_at_seeded_uniform_offsets() {
    let ids: Vec<i32> = (0..50).map(|i| i * 3).collect();
    let key = RandomKey { seed: 1337, stream: 0 };
    let windows = RandomWindows::new(ids.clone(), 5, 8, key).unwrap();
    let batch = windows.batch(0);
    assert_eq!((batch.inputs.dims(), batch.targets.dims()), (&[5, 8][..], &[5, 8][..]));
    let (x, y) = (ints(&batch.inputs), ints(&batch.targets));
    for (b, &offset) in windows.offsets(0).iter().enumerate() {
        assert_eq!(x[b * 8..(b + 1) * 8], ids[offset..offset + 8]);
        assert_eq!(y[b * 8..(b + 1) * 8], ids[offset + 1..offset + 9]);
    }
    // reproducible per (key, step); steps and keys differ
    assert_eq!(ints(&RandomWindows::new(ids.clone(), 5, 8, key).unwrap().batch(0).inputs), x);
    assert_ne!(windows.offsets(1), windows.offsets(0));
    let other = RandomWindows::new(ids.clone(), 5, 8, RandomKey { seed: 1338, stream: 0 }).unwrap();
    assert_ne!(other.offsets(0), windows.offsets(0));
    // the offsets cover 0..len - T uniformly: every start, the last one included, comes up
    let mut hits = vec![0usize; 42];
    for step in 0..2000 {
        for o in windows.offsets(step) {
            hits[o] += 1;
        }
    }
    let expected = 2000.0 * 5.0 / 42.0;
    assert!(hits.iter().all(|&h| (h as f64 - expected).abs() < 0.3 * expected), "{hits:?}");
    // a corpus of exactly T + 1 tokens has one window
    let tight = RandomWindows::new(vec![1, 2, 3], 4, 2, key).unwrap();
    assert_eq!(ints(&tight.batch(9).inputs), [1, 2, 1, 2, 1, 2, 1, 2]);
    assert_eq!(ints(&tight.batch(9).targets), [2, 3, 2, 3, 2, 3, 2, 3]);
    let e = RandomWindows::new(vec![1, 2], 4, 2, key).unwrap_err().to_string();
    assert!(e.contains("a corpus of 2 tokens is too short for a window of 2"), "{e}");
}

#[test]
fn bptt_streams_continue_each_row_from_batch_to_batch() {
    let ids: Vec<i32> = (0..103).collect();
    let streams = BpttStreams::new(ids, 4, 5).unwrap();
    let epoch = streams.epoch(0);
    assert_eq!(epoch.len(), 5); // streams of (103 - 1) / 4 = 25 tokens: five windows of 5
    let batches: Vec<Batch> = epoch.collect();
    for (w, batch) in batches.iter().enumerate() {
        let (x, y) = (ints(&batch.inputs), ints(&batch.targets));
        for b in 0..4 {
            let start = (b * 25 + w * 5) as i32;
            assert_eq!(
                x[b * 5..(b + 1) * 5],
                (start..start + 5).collect::<Vec<_>>()[..],
                "batch {w} row {b}"
            );
            assert_eq!(y[b * 5..(b + 1) * 5], (start + 1..start + 6).collect::<Vec<_>>()[..]);
        }
    }
    // the leftover tail (tokens 101 and 102) is never read; the last target is token 100
    assert_eq!(ints(&batches[4].targets).last(), Some(&100));
    // random offsets: seeded per epoch, below T, and still whole windows
    let shifted = BpttStreams::new((0..103).collect::<Vec<i32>>(), 4, 5)
        .unwrap()
        .with_random_offset(RandomKey { seed: 9, stream: 0 });
    let offsets: Vec<usize> = (0..40).map(|e| shifted.offset(e)).collect();
    assert!(offsets.iter().all(|&o| o < 5));
    assert!((0..5).all(|o| offsets.contains(&o)), "{offsets:?}");
    assert_eq!(shifted.offset(3), shifted.offset(3));
    for e in 0..10 {
        let o = shifted.offset(e) as i32;
        let first = shifted.epoch(e).next().unwrap();
        assert_eq!(ints(&first.inputs)[0], o);
        assert_eq!(ints(&first.targets)[0], o + 1);
    }
    // a corpus with no slack starts at 0 whatever the key; one window, a batch of one
    let exact =
        BpttStreams::new(vec![5, 6, 7], 1, 2).unwrap().with_random_offset(RandomKey { seed: 1, stream: 2 });
    assert!((0..20).all(|e| exact.offset(e) == 0));
    let only: Vec<Batch> = exact.epoch(0).collect();
    assert_eq!((only.len(), ints(&only[0].inputs), ints(&only[0].targets)), (1, vec![5, 6], vec![6, 7]));
    let e = BpttStreams::new(vec![0; 20], 4, 5).unwrap_err().to_string();
    assert!(
        e.contains("a corpus of 20 tokens is too short for 4 streams of a window of 5 (21 tokens)"),
        "{e}"
    );
}

#[test]
fn line_readers_take_plain_or_gzipped_text_and_name_bad_files() {
    let dir = scratch("lines");
    let plain = dir.join("a.txt");
    std::fs::write(&plain, "eins\r\nzwei\n\nvier\n").unwrap();
    assert_eq!(read_lines(&plain).unwrap(), ["eins", "zwei", "", "vier"]);
    let gz = dir.join("b.gz");
    std::fs::write(&gz, gzip("one\ntwo\n\nfour".as_bytes())).unwrap();
    assert_eq!(read_lines(&gz).unwrap(), ["one", "two", "", "four"]);
    assert_eq!(read_parallel(&plain, &gz).unwrap()[1], ("zwei".to_string(), "two".to_string()));
    std::fs::write(dir.join("empty.txt"), "").unwrap();
    assert!(read_lines(dir.join("empty.txt")).unwrap().is_empty());
    let short = dir.join("short.txt");
    std::fs::write(&short, "only\n").unwrap();
    let e = read_parallel(&plain, &short).unwrap_err().to_string();
    assert!(e.contains("short.txt") && e.contains("1 lines, but its source") && e.contains("a.txt"), "{e}");
    // a truncated gzip stream and invalid UTF-8 name the file
    let cut = dir.join("cut.gz");
    let whole = gzip("some text that compresses\n".repeat(20).as_bytes());
    std::fs::write(&cut, &whole[..whole.len() / 2]).unwrap();
    let e = read_lines(&cut).unwrap_err().to_string();
    assert!(e.contains("cut.gz") && e.contains("corrupt or truncated"), "{e}");
    let bad = dir.join("bad.gz");
    std::fs::write(&bad, gzip(b"fine\n\xff\n")).unwrap();
    let e = read_lines(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.gz") && e.contains("line 2"), "{e}");
    assert!(matches!(read_lines(dir.join("missing.gz")), Err(Error::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_reader_gives_sorted_languages_and_rejects_bad_folders() {
    let dir = scratch("names");
    std::fs::write(dir.join("Korean.txt"), "Ahn\nBaik\n").unwrap();
    std::fs::write(dir.join("French.txt"), "Bélanger\n\n  Coté \n").unwrap();
    std::fs::write(dir.join("README.md"), "not a language").unwrap();
    let names = Names::load(&dir).unwrap();
    assert_eq!(names.languages, ["French", "Korean"]);
    let expected = [("Bélanger", 0), ("Coté", 0), ("Ahn", 1), ("Baik", 1)];
    assert_eq!(names.samples, expected.map(|(n, l)| (n.to_string(), l)));
    std::fs::write(dir.join("Broken.txt"), b"Ok\n\xc3\x28\n").unwrap();
    let e = Names::load(&dir).unwrap_err().to_string();
    assert!(e.contains("Broken.txt") && e.contains("line 2"), "{e}");
    let empty = dir.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let e = Names::load(&empty).unwrap_err().to_string();
    assert!(e.contains("empty") && e.contains("no <language>.txt files"), "{e}");
    assert!(matches!(Names::load(dir.join("missing")), Err(Error::Io { .. })));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn names_data_has_18_languages_and_20074_names() {
    let Some(dir) = common::data_dir("names reader") else {
        return;
    };
    let names = Names::load(dir.join("names")).unwrap();
    assert_eq!(names.languages.len(), 18);
    assert_eq!(names.languages.first().map(String::as_str), Some("Arabic"));
    assert_eq!(names.languages.last().map(String::as_str), Some("Vietnamese"));
    assert_eq!(names.samples.len(), 20_074, "the tutorial's count");
    assert_eq!(names.samples[0], ("Khoury".to_string(), 0));
    let french = names.languages.iter().position(|l| l == "French").unwrap() as i32;
    assert!(names.samples.contains(&("Bélanger".to_string(), french)));
    let russian = names.languages.iter().position(|l| l == "Russian").unwrap() as i32;
    assert_eq!(names.samples.iter().filter(|(_, l)| *l == russian).count(), 9408);
    // the character-level classifier's pipeline: a vocabulary of every character, padded batches
    let all: String = names.samples.iter().map(|(n, _)| n.as_str()).collect();
    let vocab = CharVocab::of(&all);
    let inputs = names.samples.iter().map(|(n, _)| vocab.encode(n).unwrap()).collect();
    let classes = names.samples.iter().map(|(_, l)| *l).collect();
    let data = SequenceDataset::classification(inputs, classes);
    let loader = DataLoader::new(data, 64).shuffle(0).bucket_by_length(20);
    let samples: usize = loader.epoch(0).map(|b| b.len()).sum();
    assert_eq!(samples, 20_074);
}

#[test]
fn multi30k_reads_as_aligned_pairs_and_builds_a_vocabulary() {
    let Some(dir) = common::data_dir("Multi30k reader") else {
        return;
    };
    let m = dir.join("multi30k");
    let pairs = read_parallel(m.join("train.de.gz"), m.join("train.en.gz")).unwrap();
    assert_eq!(pairs.len(), 29_000);
    assert_eq!(pairs[0].0, "Zwei junge weiße Männer sind im Freien in der Nähe vieler Büsche.");
    assert_eq!(pairs[0].1, "Two young, White males are outside near many bushes.");
    assert!(pairs[28_999].1.starts_with("A man in shorts and a Hawaiian shirt leans over the rail"));
    assert_eq!(
        tokenize(&pairs[0].0),
        [
            "zwei", "junge", "weiße", "männer", "sind", "im", "freien", "in", "der", "nähe", "vieler",
            "büsche", "."
        ]
    );
    // counts cross-checked with a Python implementation of the same tokenizer rules
    let vocab = Vocab::build(pairs.iter().flat_map(|(de, _)| tokenize(de)), 2, None);
    assert_eq!(vocab.len(), 7877 + 4);
    assert_eq!(vocab.tokens()[4..9], [".", "ein", "einem", "in", "eine"]);
    assert_eq!(read_lines(m.join("val.en.gz")).unwrap().len(), 1014);
    assert_eq!(read_lines(m.join("test_2016_flickr.de.gz")).unwrap().len(), 1000);
    // files of different lengths are refused
    let e = read_parallel(m.join("val.de.gz"), m.join("test_2016_flickr.en.gz")).unwrap_err().to_string();
    assert!(e.contains("1000 lines, but its source"), "{e}");
}
