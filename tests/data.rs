//! Data: the readers on the real files, the readers under truncated and random bytes (errors,
//! never panics), and the DataLoader's batching and shuffling.

mod common;

use flate2::Compression;
use flate2::write::GzEncoder;
use kiln::data::csv::{Table, prepare};
use kiln::data::mnist::{Mnist, parse_idx, read_idx};
use kiln::data::text::{CharVocab, read_text};
use kiln::data::{DataLoader, Dataset, InMemory, Targets, k_fold, permutation};
use kiln::rng::RandomKey;
use kiln::{Error, Tensor};
use std::io::Write;
use std::path::Path;

fn random_bytes(n: usize, stream: u64) -> Vec<u8> {
    let t = Tensor::random_bits([n], RandomKey { seed: 1234, stream }, &kiln::Device::Cpu);
    t.to_vec::<u32>().unwrap().into_iter().map(|w| w as u8).collect()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut enc = GzEncoder::new(Vec::new(), Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A valid 2×3×4 IDX file.
fn small_idx() -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4];
    b.extend(0..24u8);
    b
}

#[test]
fn idx_round_trips_and_every_truncation_or_corruption_is_an_error() {
    let path = Path::new("mem.idx");
    let good = small_idx();
    let idx = parse_idx(&good, path).unwrap();
    assert_eq!(idx.dims, vec![2, 3, 4]);
    assert_eq!(parse_idx(&gzip(&good), path).unwrap(), idx);
    for cut in 0..good.len() {
        assert!(matches!(parse_idx(&good[..cut], path), Err(Error::Format { .. })), "raw cut at {cut}");
    }
    let gz = gzip(&good);
    for cut in 2..gz.len() {
        // a truncated gzip stream either fails to decode or decodes to a truncated file
        assert!(parse_idx(&gz[..cut], path).is_err(), "gzip cut at {cut}");
    }
    let mut longer = good.clone();
    longer.push(7);
    assert!(parse_idx(&longer, path).unwrap_err().to_string().contains("longer than its header says"));
    for stream in 0..300 {
        let n = 1 + (stream as usize * 7) % 200;
        let mut junk = random_bytes(n, stream);
        if stream % 3 == 0 && junk.len() >= 2 {
            junk[..2].copy_from_slice(&[0x1f, 0x8b]); // pretend to be gzip
        }
        let _ = parse_idx(&junk, path); // must not panic
    }
}

#[test]
fn csv_parses_quotes_and_rejects_ragged_or_unterminated_input() {
    let path = Path::new("mem.csv");
    let t = Table::parse(b"a,b,c\r\n1,\"x, \"\"y\"\"\",NA\n2,,3\n", path).unwrap();
    assert_eq!(t.headers, ["a", "b", "c"]);
    assert_eq!(t.rows[0], vec![Some("1".into()), Some("x, \"y\"".into()), None]);
    assert_eq!(t.rows[1], vec![Some("2".into()), None, Some("3".into())]);
    let ragged = Table::parse(b"a,b\n1,2\n3\n", path).unwrap_err().to_string();
    assert!(
        ragged.contains("mem.csv") && ragged.contains("line 3") && ragged.contains("1 fields"),
        "{ragged}"
    );
    assert!(Table::parse(b"a,b\n\"1,2\n", path).unwrap_err().to_string().contains("never closed"));
    assert!(Table::parse(b"", path).is_err());
    assert!(Table::parse(b"a\n\xff\n", path).unwrap_err().to_string().contains("invalid UTF-8"));
    for stream in 0..300 {
        let _ = Table::parse(&random_bytes(1 + stream as usize % 300, stream + 1000), path);
    }
    // random text over CSV's own alphabet reaches the parser and the d2l preparation proper:
    // each gives a table or an error, never a panic
    let alphabet = b"ab1.5-,,\"\"\n\nNA \re";
    for stream in 0..500 {
        let bytes: Vec<u8> = random_bytes(1 + stream as usize % 200, stream + 5000)
            .iter()
            .map(|&b| alphabet[b as usize % alphabet.len()])
            .collect();
        if let Ok(t) = Table::parse(&bytes, path) {
            let _ = prepare(&[&t], &[]);
        }
    }
    // and every truncation of a valid file
    let valid = b"id,x,kind\n1,2.5,a\n2,NA,\"b,c\"\n3,-1,a\n";
    for cut in 0..valid.len() {
        if let Ok(t) = Table::parse(&valid[..cut], path) {
            let _ = prepare(&[&t], &["id"]);
        }
    }
}

#[test]
fn csv_quoted_fields_hold_commas_quotes_and_line_ends() {
    let path = Path::new("mem.csv");
    let t = Table::parse(b"id,text,n\n1,\"two\nlines, \"\"quoted\"\"\",5\n2,\"crlf\r\nkept\",6\r\n", path)
        .unwrap();
    assert_eq!(t.rows.len(), 2);
    assert_eq!(t.rows[0][1].as_deref(), Some("two\nlines, \"quoted\""));
    assert_eq!(t.rows[0][2].as_deref(), Some("5"));
    assert_eq!(t.rows[1][1].as_deref(), Some("crlf\r\nkept"));
    // a ragged row after a field spanning lines is reported at the line the row starts on
    let e = Table::parse(b"a,b\n\"x\ny\nz\",1\n2\n", path).unwrap_err().to_string();
    assert!(e.contains("line 5") && e.contains("1 fields"), "{e}");
    let e = Table::parse(b"a,b\n1,2\n3,\"open\nstill open\n", path).unwrap_err().to_string();
    assert!(e.contains("line 3") && e.contains("never closed"), "{e}");
    // a line holding only "" is a record of one empty field, not a blank line
    let t = Table::parse(b"name\n\"\"\n\nbob\n", path).unwrap();
    assert_eq!(t.rows, vec![vec![None], vec![Some("bob".into())]]);
    // a byte-order mark (as spreadsheet exports write) is not part of the first header
    let t = Table::parse(b"\xef\xbb\xbfa,b\n1,2\n", path).unwrap();
    assert_eq!(t.headers, ["a", "b"]);
}

/// A CSV field as a writer that follows RFC 4180 puts it: quoted (quotes doubled) when it holds
/// a comma, a quote or a line end, or when `force`.
fn csv_field(text: &str, force: bool) -> String {
    if force || text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_string()
    }
}

#[test]
fn csv_random_tables_with_quoted_fields_round_trip() {
    let path = Path::new("mem.csv");
    let alphabet = ['a', 'b', ',', '"', '\n', '\r', ' ', 'é', '1'];
    for stream in 0..300u64 {
        let words = random_bytes(400, stream + 20_000);
        let mut word = words.iter().map(|&w| w as usize);
        let mut next = |n: usize| word.next().unwrap() % n;
        let columns = 1 + next(4);
        let rows = next(6);
        let mut cell = || -> String { (0..next(6)).map(|_| alphabet[next(alphabet.len())]).collect() };
        let headers: Vec<String> = (0..columns).map(|c| format!("c{c}")).collect();
        let table: Vec<Vec<String>> = (0..rows).map(|_| (0..columns).map(|_| cell()).collect()).collect();
        let crlf = stream % 2 == 0;
        let mut text = headers.join(",");
        for row in &table {
            text.push_str(if crlf { "\r\n" } else { "\n" });
            // an empty one-column row must be quoted, or it would be a blank line
            let fields: Vec<String> =
                row.iter().map(|f| csv_field(f, stream % 3 == 0 || (columns == 1 && f.is_empty()))).collect();
            text.push_str(&fields.join(","));
        }
        let parsed = Table::parse(text.as_bytes(), path).unwrap_or_else(|e| panic!("{e} in {text:?}"));
        assert_eq!(parsed.headers, headers);
        let expected: Vec<Vec<Option<String>>> = table
            .iter()
            .map(|row| row.iter().map(|f| (!f.trim().is_empty()).then(|| f.clone())).collect())
            .collect();
        assert_eq!(parsed.rows, expected, "{text:?}");
        // every truncation of it gives a table or an error, never a panic
        for cut in 0..text.len() {
            if text.is_char_boundary(cut) {
                let _ = Table::parse(&text.as_bytes()[..cut], path);
            }
        }
    }
}

#[test]
fn womens_reviews_csv_reads_multi_line_quoted_reviews() {
    let Some(dir) = common::data_dir("women's reviews CSV") else {
        return;
    };
    let t = Table::read(dir.join("womens_reviews/reviews.csv")).unwrap();
    assert_eq!(t.headers.len(), 10);
    assert_eq!(t.headers[3], "Review Text");
    assert_eq!(t.rows.len(), 23_486, "records, not lines: some reviews span lines");
    let text = t.column("Review Text").unwrap();
    assert_eq!(t.rows[0][text].as_deref(), Some("Absolutely wonderful - silky and sexy and comfortable"));
    // the first review with line breaks (checked with Python's csv module)
    let review = t.rows[13][text].as_deref().unwrap();
    assert!(review.starts_with("Bought the black xs to go under the larkspur midi dress"), "{review}");
    assert_eq!(review.matches("\r\n").count(), 3);
    assert!(review.ends_with("i'm 5'6\" and it came to just below my knees."), "{review}");
    assert_eq!(t.rows.iter().filter(|r| r[text].is_none()).count(), 845, "empty reviews");
    let ratings = t.numbers("Rating").unwrap();
    assert!(ratings.iter().all(|r| (1.0..=5.0).contains(r)));
}

#[test]
fn text_reader_and_vocab() {
    let dir = std::env::temp_dir().join(format!("kiln-text-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("good.txt");
    std::fs::write(&good, "hello\nworld").unwrap();
    let text = read_text(&good).unwrap();
    let vocab = CharVocab::of(&text);
    assert_eq!(vocab.decode(&vocab.encode("hold").unwrap()), "hold");
    assert!(vocab.encode("z").is_err());
    let bad = dir.join("bad.txt");
    std::fs::write(&bad, b"ok\n\xc3\x28").unwrap();
    let e = read_text(&bad).unwrap_err().to_string();
    assert!(e.contains("bad.txt") && e.contains("line 2"), "{e}");
    assert!(matches!(read_text(dir.join("missing.txt")), Err(Error::Io { .. })));
    // random bytes: text (then a vocabulary that round-trips it) or an error naming the file
    let fuzz = dir.join("fuzz.txt");
    for stream in 0..200 {
        std::fs::write(&fuzz, random_bytes(stream as usize % 64, stream + 9000)).unwrap();
        match read_text(&fuzz) {
            Ok(text) => {
                let vocab = CharVocab::of(&text);
                assert_eq!(vocab.decode(&vocab.encode(&text).unwrap()), text);
            }
            Err(e) => assert!(e.to_string().contains("fuzz.txt"), "{e}"),
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn loader_covers_every_sample_once_per_epoch_in_a_seeded_order() {
    let n = 103;
    let ds =
        InMemory::new((0..n).map(|i| i as f32).collect(), &[1], Targets::Classes((0..n as i32).collect()));
    let loader = DataLoader::new(ds.clone(), 10).shuffle(5);
    assert_eq!(loader.batches(), 11);
    let epoch =
        |e| -> Vec<i32> { loader.epoch(e).flat_map(|b| b.targets.to_vec::<i32>().unwrap()).collect() };
    let (e0, e1) = (epoch(0), epoch(1));
    let mut sorted = e0.clone();
    sorted.sort();
    assert_eq!(sorted, (0..n as i32).collect::<Vec<_>>());
    assert_ne!(e0, e1, "epochs are shuffled differently");
    assert_eq!(e0, epoch(0), "the same epoch gives the same order");
    assert_eq!(permutation(n, 5, 0).iter().map(|&i| i as i32).collect::<Vec<_>>(), e0);
    let dropped = DataLoader::new(ds, 10).drop_last();
    assert_eq!(dropped.epoch(0).count(), 10);
    let (train, valid) = k_fold(103, 5, 2);
    assert_eq!(valid, (40..60).collect::<Vec<_>>());
    assert_eq!(train.len(), 83);
}

#[test]
fn mnist_loads_from_the_shared_data_and_survives_truncation() {
    let Some(dir) = common::data_dir("MNIST reader") else {
        return;
    };
    let mnist = Mnist::load(dir.join("mnist")).unwrap();
    assert_eq!((mnist.train.len(), mnist.test.len()), (60_000, 10_000));
    let first = mnist.train.batch(&[0]);
    assert_eq!(first.inputs.dims(), &[1, 1, 28, 28]);
    assert_eq!(first.targets.to_vec::<i32>().unwrap(), vec![5], "the first training digit is a 5");
    // truncating the real gzipped labels anywhere gives an error naming the problem
    let labels = std::fs::read(dir.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap();
    for cut in (0..labels.len()).step_by(97) {
        let e = parse_idx(&labels[..cut], Path::new("t10k-labels")).unwrap_err().to_string();
        assert!(e.starts_with("t10k-labels: not a valid MNIST IDX file"), "{e}");
    }
    assert_eq!(read_idx(dir.join("mnist/t10k-labels-idx1-ubyte.gz")).unwrap().dims, vec![10_000]);
}

#[test]
fn house_prices_prepare_like_d2l() {
    let Some(dir) = common::data_dir("house prices") else {
        return;
    };
    let train = Table::read(dir.join("house_prices/kaggle_house_pred_train.csv")).unwrap();
    let test = Table::read(dir.join("house_prices/kaggle_house_pred_test.csv")).unwrap();
    assert_eq!((train.rows.len(), train.headers.len(), test.rows.len()), (1460, 81, 1459));
    let f = prepare(&[&train, &test], &["Id", "SalePrice"]).unwrap();
    assert_eq!(f.rows, 2919);
    // d2l: 36 numeric columns plus one-hot categoricals with a missing-value column each
    assert_eq!(f.names.len(), 331);
    let lot = f.names.iter().position(|n| n == "LotArea").unwrap();
    let mean: f32 = (0..f.rows).map(|r| f.values[r * f.names.len() + lot]).sum::<f32>() / f.rows as f32;
    assert!(mean.abs() < 1e-4, "standardized: mean {mean}");
    // a truncated CSV is an error, not a panic
    let bytes = std::fs::read(dir.join("house_prices/kaggle_house_pred_train.csv")).unwrap();
    for cut in (1..bytes.len()).step_by(4099) {
        let _ = Table::parse(&bytes[..cut], Path::new("cut.csv"));
    }
}

/// A dataset that records which thread prepares each batch, and can fail on one.
struct Probe {
    threads: std::sync::Mutex<Vec<std::thread::ThreadId>>,
    fail_at: Option<usize>,
}

impl Dataset for Probe {
    fn len(&self) -> usize {
        40
    }
    fn batch(&self, indices: &[usize]) -> kiln::data::Batch {
        assert!(self.fail_at.is_none_or(|i| !indices.contains(&i)), "sample {} is unreadable", indices[0]);
        self.threads.lock().unwrap().push(std::thread::current().id());
        let x: Vec<f32> = indices.iter().map(|&i| i as f32).collect();
        let n = x.len();
        kiln::data::Batch::new(
            Tensor::from_vec(x, [n, 1], &kiln::Device::Cpu),
            Tensor::from_vec(indices.iter().map(|&i| i as i32).collect::<Vec<_>>(), [n], &kiln::Device::Cpu),
        )
    }
}

#[test]
fn the_loader_prepares_batches_on_a_background_thread_and_passes_on_its_panics() {
    let probe = std::sync::Arc::new(Probe { threads: Default::default(), fail_at: None });
    let loader = DataLoader::new(SharedProbe(probe.clone()), 8);
    assert_eq!(loader.epoch(0).count(), 5);
    let threads = probe.threads.lock().unwrap();
    assert_eq!(threads.len(), 5);
    assert!(threads.iter().all(|&t| t != std::thread::current().id()), "prepared off the training thread");
    // a dataset that panics on a sample: the panic reaches the training loop
    let failing = DataLoader::new(
        SharedProbe(std::sync::Arc::new(Probe { threads: Default::default(), fail_at: Some(20) })),
        8,
    );
    let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| failing.epoch(0).count()));
    let message = caught.expect_err("the worker's panic is re-raised");
    assert!(message.downcast_ref::<String>().is_some_and(|m| m.contains("sample 16 is unreadable")));
}

/// Lets the test keep a handle on the probe the loader owns.
struct SharedProbe(std::sync::Arc<Probe>);

impl Dataset for SharedProbe {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn batch(&self, indices: &[usize]) -> kiln::data::Batch {
        self.0.batch(indices)
    }
}
