//! `ImageFolder` and `ImageTransform`: class folders read from a directory and from tar and
//! tar.gz archives made here, JPEG decoding against Pillow's (fixtures from
//! `tests/fixtures/images/make_images.py`), PNG colour types, every bad input as a `kiln::Error`
//! naming its entry, seeded augmentation that crops and flips what it says, batches that do not
//! depend on the number of DataLoader workers, and CIFAR-10 from the shared data.

mod common;

use kiln::data::{DataLoader, Dataset, ImageFolder, ImageTransform};
use kiln::rng::RandomKey;
use std::path::{Path, PathBuf};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/images");

/// A PNG of `width`×`height` in `color` whose sample `i` is `i * 7 + seed` (mod 256).
fn png(width: u32, height: u32, color: png::ColorType, seed: u8) -> Vec<u8> {
    let samples = width as usize * height as usize * color.samples();
    let data: Vec<u8> = (0..samples).map(|i| (i * 7) as u8 ^ seed).collect();
    let mut bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut bytes, width, height);
    encoder.set_color(color);
    encoder.write_header().unwrap().write_image_data(&data).unwrap();
    bytes
}

/// A fresh, empty scratch directory for `test`.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-image-data-{}-{test}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The files of a small class-per-folder set under `data/train/`: two dog images (one nested a
/// folder deeper), three cats in three colour types, a text file and a stray top-level image,
/// both of which are skipped.
fn files() -> Vec<(String, Vec<u8>)> {
    let jpeg = std::fs::read(Path::new(FIXTURES).join("color.jpg")).unwrap();
    let rgb = |seed| png(12, 10, png::ColorType::Rgb, seed);
    vec![
        ("data/train/dog/b.png".into(), rgb(1)),
        ("data/train/dog/more/a.jpg".into(), jpeg),
        ("data/train/cat/1.png".into(), png(12, 10, png::ColorType::Grayscale, 2)),
        ("data/train/cat/2.PNG".into(), png(12, 10, png::ColorType::Rgba, 3)),
        ("data/train/cat/3.png".into(), png(12, 10, png::ColorType::GrayscaleAlpha, 4)),
        ("data/train/cat/notes.txt".into(), b"not an image".to_vec()),
        ("data/train/stray.png".into(), rgb(5)),
    ]
}

fn write_dir(root: &Path, files: &[(String, Vec<u8>)]) {
    for (name, bytes) in files {
        let path = root.join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

fn tar_bytes(files: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (name, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, name, bytes.as_slice()).unwrap();
    }
    builder.into_inner().unwrap()
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

/// Every image of a folder as (label, bytes).
fn contents(folder: &ImageFolder) -> Vec<(i32, Vec<u8>)> {
    (0..folder.len()).map(|i| (folder.labels()[i], folder.image(i).to_vec())).collect()
}

#[test]
fn a_directory_a_tar_and_a_tar_gz_read_the_same_classes_and_pixels() {
    let dir = scratch("same");
    let files = files();
    write_dir(&dir.join("tree"), &files);
    std::fs::write(dir.join("set.tar"), tar_bytes(&files)).unwrap();
    std::fs::write(dir.join("set.tar.gz"), gzip(&tar_bytes(&files))).unwrap();

    let from_dir = ImageFolder::open(dir.join("tree"), "data/train").unwrap();
    assert_eq!(
        from_dir.classes(),
        ["cat", "dog"],
        "sorted folder names; the stray top-level image is not a class"
    );
    assert_eq!(from_dir.labels(), [0, 0, 0, 1, 1], "three cats, then two dogs; notes.txt is skipped");
    assert_eq!(from_dir.image_size(), (10, 12));
    for archive in ["set.tar", "set.tar.gz"] {
        let from_archive = ImageFolder::open(dir.join(archive), "data/train/").unwrap();
        assert_eq!(from_archive.classes(), from_dir.classes(), "{archive}");
        assert_eq!(contents(&from_archive), contents(&from_dir), "{archive}");
    }
    // the same folder reached by its own path
    assert_eq!(contents(&ImageFolder::open(dir.join("tree/data/train"), "").unwrap()), contents(&from_dir));

    // colour types: grey is repeated into R, G and B, alpha is dropped
    let grey: Vec<u8> = (0..12 * 10).map(|i| (i * 7) as u8 ^ 2).collect();
    let rgb_of_grey: Vec<u8> = grey.iter().flat_map(|&g| [g; 3]).collect();
    assert_eq!(from_dir.image(0), rgb_of_grey.as_slice(), "grey is repeated into R, G and B");
    let rgba: Vec<u8> = (0..12 * 10 * 4).map(|i| (i * 7) as u8 ^ 3).collect();
    let rgb_of_rgba: Vec<u8> = rgba.chunks(4).flat_map(|p| [p[0], p[1], p[2]]).collect();
    assert_eq!(from_dir.image(1), rgb_of_rgba.as_slice(), "RGBA loses its alpha");
    let ga: Vec<u8> = (0..12 * 10 * 2).map(|i| (i * 7) as u8 ^ 4).collect();
    let rgb_of_ga: Vec<u8> = ga.chunks(2).flat_map(|p| [p[0]; 3]).collect();
    assert_eq!(from_dir.image(2), rgb_of_ga.as_slice(), "grey + alpha repeats the grey");
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn jpegs_decode_as_pillow_decodes_them() {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("decoded.json")).unwrap();
    let expected: serde_json::Value = serde_json::from_str(&text).unwrap();
    for name in ["color.jpg", "grey.jpg"] {
        let dir = scratch(&format!("jpeg-{name}"));
        write_dir(&dir, &[(format!("only/{name}"), std::fs::read(Path::new(FIXTURES).join(name)).unwrap())]);
        let folder = ImageFolder::open(&dir, "").unwrap();
        let want = &expected[name];
        let dims = (want["height"].as_u64().unwrap() as usize, want["width"].as_u64().unwrap() as usize);
        assert_eq!(folder.image_size(), dims, "{name}");
        let want: Vec<i32> =
            want["rgb"].as_array().unwrap().iter().map(|v| v.as_i64().unwrap() as i32).collect();
        let got: Vec<i32> = folder.image(0).iter().map(|&v| v as i32).collect();
        // two IDCTs and chroma upsamplers round differently: a few levels at most, ~1 on average
        let worst = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).max().unwrap();
        let mean = got.iter().zip(&want).map(|(a, b)| (a - b).abs()).sum::<i32>() as f64 / got.len() as f64;
        assert!(worst <= 8 && mean <= 1.5, "{name}: worst {worst}, mean {mean:.2} levels from Pillow");
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn bad_input_is_an_error_naming_the_entry() {
    let dir = scratch("bad");
    let open = |files: &[(String, Vec<u8>)]| {
        std::fs::write(dir.join("set.tar.gz"), gzip(&tar_bytes(files))).unwrap();
        ImageFolder::open(dir.join("set.tar.gz"), "data/train").map(|_| ()).unwrap_err().to_string()
    };
    let mut files = files();
    let good = files.clone();

    // a truncated JPEG and bytes that are no image at all, under image names
    let jpeg = std::fs::read(Path::new(FIXTURES).join("color.jpg")).unwrap();
    files[1].1 = jpeg[..jpeg.len() / 2].to_vec();
    let e = open(&files);
    assert!(e.contains("set.tar.gz: data/train/dog/more/a.jpg: not a valid image: JPEG"), "{e}");
    files[1].1 = b"GIF89a, not a JPEG".to_vec();
    let e = open(&files);
    assert!(e.contains("data/train/dog/more/a.jpg: not a valid image: neither a JPEG nor a PNG"), "{e}");

    // an image of another size
    let mut files = good.clone();
    files[0].1 = png(5, 10, png::ColorType::Rgb, 1);
    let e = open(&files);
    assert!(e.contains("data/train/dog/b.png: the image is 10×5") && e.contains("resize"), "{e}");

    // a class folder without images, a folder without classes, a folder that is not there
    let mut files = good.clone();
    files.push(("data/train/empty/readme.txt".into(), b"nothing".to_vec()));
    let e = open(&files);
    assert!(e.contains("class folder \"empty\" holds no JPEG or PNG images"), "{e}");
    std::fs::write(dir.join("set.tar.gz"), gzip(&tar_bytes(&good))).unwrap();
    let e = ImageFolder::open(dir.join("set.tar.gz"), "data/test").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("data/test/: no class folders"), "{e}");
    let e = ImageFolder::open(dir.join("missing.tar.gz"), "").map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("missing.tar.gz") && e.contains("No such file"), "{e}");

    // a truncated archive, cut anywhere past its first entry
    let whole = gzip(&tar_bytes(&good));
    for cut in [whole.len() / 3, whole.len() / 2, whole.len() - 9] {
        std::fs::write(dir.join("cut.tar.gz"), &whole[..cut]).unwrap();
        let e = ImageFolder::open(dir.join("cut.tar.gz"), "data/train").map(|_| ()).unwrap_err().to_string();
        assert!(
            e.contains("cut.tar.gz: not a valid image folder file: the archive is corrupt or truncated"),
            "{e}"
        );
    }
    std::fs::remove_dir_all(dir).unwrap();
}

/// A 4×6 image whose pixel (y, x) is (10y + x, 100 + 10y + x, 200 + x).
fn ramp() -> (Vec<u8>, (usize, usize)) {
    let (h, w) = (4, 6);
    let image = (0..h * w).flat_map(|i| {
        [(10 * (i / w) + i % w) as u8, (100 + 10 * (i / w) + i % w) as u8, (200 + i % w) as u8]
    });
    (image.collect(), (h, w))
}

#[test]
fn transforms_crop_flip_and_normalize_what_they_say() {
    let (image, (h, w)) = ramp();
    let key = RandomKey { seed: 3, stream: 0 };

    // conversion alone: (H, W, 3) bytes → (3, H, W) in [0, 1]
    let mut out = vec![0.0; 3 * h * w];
    ImageTransform::new().apply(&image, (h, w), key, 0, &mut out);
    assert_eq!(out[0], 0.0);
    assert_eq!(out[h * w + w + 2], 112.0 / 255.0, "channel 1, row 1, column 2");
    let mean = [0.5, 0.25, 0.75];
    let std = [0.5, 0.25, 0.125];
    ImageTransform::new().normalize(mean, std).apply(&image, (h, w), key, 0, &mut out);
    let want = (205.0 / 255.0 - 0.75) / 0.125;
    assert!(
        (out[2 * h * w + 5] - want).abs() < 1e-5,
        "channel 2, column 5: {} vs {want}",
        out[2 * h * w + 5]
    );

    // every crop of a 4×6 image padded by 2 to 4×4 is the image shifted by the draw, zeros outside,
    // and a flip mirrors it; over many draws every offset and both flips occur
    let augment = ImageTransform::new().random_crop(4, 2).horizontal_flip();
    let mut seen = std::collections::HashSet::new();
    for index in 0..400u64 {
        let mut out = vec![0.0; 3 * 16];
        augment.apply(&image, (h, w), key, index, &mut out);
        let value = |y: usize, x: usize| (out[y * 4 + x] * 255.0).round() as i32;
        let red = |sy: isize, sx: isize| {
            if (0..h as isize).contains(&sy) && (0..w as isize).contains(&sx) {
                10 * sy as i32 + sx as i32
            } else {
                0
            }
        };
        let found = (-2..=2isize)
            .flat_map(|t| (-2..=4isize).flat_map(move |l| [(t, l, false), (t, l, true)]))
            .find(|&(t, l, flip)| {
                (0..4).all(|y| {
                    (0..4).all(|x| {
                        value(y, x) == red(t + y as isize, l + if flip { 3 - x } else { x } as isize)
                    })
                })
            });
        let offset =
            found.unwrap_or_else(|| panic!("draw {index} is no shifted, padded, maybe mirrored window"));
        seen.insert(offset);
    }
    assert_eq!(seen.len(), 5 * 7 * 2, "every top in −2..=2, left in −2..=4, with and without a flip");

    // the same seed, epoch and index give the same output; another epoch or seed another
    let draw = |key: RandomKey, index| {
        let mut out = vec![0.0; 48];
        augment.apply(&image, (h, w), key, index, &mut out);
        out
    };
    assert_eq!(draw(key, 7), draw(key, 7));
    let differ = |other: RandomKey| (0..20).any(|i| draw(key, i) != draw(other, i));
    assert!(differ(RandomKey { seed: 3, stream: 1 }) && differ(RandomKey { seed: 4, stream: 0 }));
}

#[test]
fn batches_depend_on_seed_epoch_and_index_not_on_workers() {
    let dir = scratch("workers");
    let many: Vec<(String, Vec<u8>)> = (0..23)
        .map(|i| (format!("c{}/{i:02}.png", i % 3), png(12, 10, png::ColorType::Rgb, i as u8)))
        .collect();
    write_dir(&dir, &many);
    let augment = ImageTransform::new().random_crop(8, 3).horizontal_flip().normalize([0.4; 3], [0.2; 3]);
    let folder = ImageFolder::open(&dir, "").unwrap().with_transform(augment, 11);
    let epoch = |workers: usize, e: u64| -> Vec<(Vec<f32>, Vec<i32>)> {
        let loader = DataLoader::new(folder.clone(), 4).shuffle(5).workers(workers);
        loader
            .epoch(e)
            .map(|b| (b.inputs.to_vec::<f32>().unwrap(), b.targets.to_vec::<i32>().unwrap()))
            .collect()
    };
    let one = epoch(1, 2);
    assert_eq!(one.len(), 6, "23 images in batches of 4");
    assert_eq!(one[0].0.len(), 4 * 3 * 8 * 8, "(4, 3, 8, 8) inputs");
    assert_eq!(epoch(3, 2), one, "three workers assemble the same batches in the same order");
    assert_eq!(epoch(7, 2), one, "more workers than batches");
    assert_ne!(epoch(1, 3), one, "another epoch draws other crops and order");
    // a sample's augmentation is its own: the same image alone in a batch gets the same pixels
    let order = kiln::data::permutation(23, 5, 2);
    let alone = folder.batch_in_epoch(&[order[1]], 2).inputs.to_vec::<f32>().unwrap();
    assert_eq!(alone, one[0].0[192..384].to_vec());
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn subsets_and_class_selection_relabel() {
    let dir = scratch("select");
    let many: Vec<(String, Vec<u8>)> = (0..12)
        .map(|i| (format!("k{}/{i:02}.png", i % 4), png(3, 2, png::ColorType::Rgb, i as u8)))
        .collect();
    write_dir(&dir, &many);
    let folder = ImageFolder::open(&dir, "").unwrap();
    assert_eq!(folder.classes(), ["k0", "k1", "k2", "k3"]);
    let picked = folder.select_classes(&["k3", "k1"]).unwrap();
    assert_eq!(picked.classes(), ["k3", "k1"]);
    assert_eq!(picked.labels(), [1, 1, 1, 0, 0, 0], "k1's images then k3's, relabelled by the order given");
    assert_eq!(picked.image(3), folder.image(9), "k3's first image");
    let e = folder.select_classes(&["k9"]).map(|_| ()).unwrap_err().to_string();
    assert!(e.contains("no class \"k9\"; the classes are k0, k1, k2, k3"), "{e}");
    let sub = folder.subset(&[5, 0]);
    assert_eq!((sub.labels(), sub.image(0)), ([1, 0].as_slice(), folder.image(5)));
    std::fs::remove_dir_all(dir).unwrap();
}

#[test]
fn cifar10_loads_from_the_shared_archive() {
    let Some(dir) = common::data_dir("CIFAR-10 image folder") else {
        return;
    };
    let test = ImageFolder::open(dir.join("cifar10/cifar10-jpeg.tar.gz"), "cifar10/test").unwrap();
    let classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];
    assert_eq!(test.classes(), classes);
    assert_eq!((test.len(), test.image_size()), (10_000, (32, 32)));
    for c in 0..10 {
        assert_eq!(test.labels().iter().filter(|&&l| l == c).count(), 1000, "{}", classes[c as usize]);
    }
    // the canonical test set's channel means and deviations, which a JPEG copy keeps to ~0.01
    let (mean, std) = test.channel_stats();
    for (c, (m, s)) in [(0.4942, 0.2466), (0.4851, 0.2430), (0.4504, 0.2616)].into_iter().enumerate() {
        assert!((mean[c] - m).abs() < 0.01 && (std[c] - s).abs() < 0.01, "channel {c}: {mean:?} {std:?}");
    }
}
