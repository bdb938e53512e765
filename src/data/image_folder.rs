//! `ImageFolder`: a class-per-folder image dataset, `<folder>/<class>/…/<image>`, read from a
//! directory or straight from a `.tar` or `.tar.gz` archive without extracting it.
//!
//! As torchvision's `ImageFolder`: the classes are the sub-folders of `folder` in sorted order
//! (labels 0, 1, …), every JPEG or PNG below a class folder is one sample of that class, other
//! files are skipped, and every image is read as RGB. The images are decoded once, in parallel,
//! with a progress bar on a terminal, and kept decoded as bytes (N, H, W, 3) in memory: CIFAR-10's
//! 50,000 training images take 150 MiB. All images must share one size.
//!
//! Every failure is a [`kiln::Error`](crate::Error) naming the file and, in an archive, the entry:
//! a missing path, a corrupt archive, a corrupt image, an image of another size, a class folder
//! without images.
//!
//! ```no_run
//! use kiln::data::{DataLoader, Dataset, ImageFolder, ImageTransform};
//!
//! # fn main() -> kiln::Result<()> {
//! let train = ImageFolder::open("data/cifar10/cifar10-jpeg.tar.gz", "cifar10/train")?;
//! println!("{} images of {} classes", train.len(), train.classes().len());
//! let mean_std = ([0.491, 0.482, 0.447], [0.247, 0.243, 0.262]);
//! let augment = ImageTransform::new().random_crop(32, 4).horizontal_flip().normalize(mean_std.0, mean_std.1);
//! let loader = DataLoader::new(train.with_transform(augment, 0), 128).shuffle(0).workers(2);
//! # Ok(()) }
//! ```

use super::image_decode::{Decoded, decode};
use super::image_transform::ImageTransform;
use super::{Batch, Dataset};
use crate::rng::RandomKey;
use crate::{Device, Error, Result, Tensor};
use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const FORMAT: &str = "image folder";

/// Decoded images of a class-per-folder dataset, kept in memory as u8 RGB; a [`Dataset`] whose
/// batches are (N, 3, H, W) f32 inputs (through its [`ImageTransform`]) and class targets.
#[derive(Clone)]
pub struct ImageFolder {
    /// (N, H, W, 3) bytes, row-major.
    pixels: Arc<Vec<u8>>,
    labels: Arc<Vec<i32>>,
    classes: Arc<Vec<String>>,
    height: usize,
    width: usize,
    transform: ImageTransform,
    seed: u64,
}

/// One image file found under a class folder, not yet decoded.
struct Entry {
    /// Where it is, for errors: the file's path, or `archive: entry`.
    name: String,
    class: usize,
    bytes: Vec<u8>,
}

impl ImageFolder {
    /// Reads the classes under `folder` of `path`, a directory or a `.tar`/`.tar.gz` archive
    /// (gzip is recognised by its magic bytes); `folder` is a path inside it, `""` for its top.
    pub fn open(path: impl AsRef<Path>, folder: &str) -> Result<ImageFolder> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
        let (classes, entries) =
            if meta.is_dir() { read_dir(&path.join(folder))? } else { read_archive(path, folder)? };
        let images = decode_all(&entries)?;
        let (height, width) = images.first().map(|i| (i.height, i.width)).unwrap_or((0, 0));
        let mut pixels = Vec::with_capacity(images.len() * height * width * 3);
        for (image, entry) in images.iter().zip(&entries) {
            if (image.height, image.width) != (height, width) {
                return Err(Error::Invalid(format!(
                    "{}: the image is {}×{}, the first image ({}) is {height}×{width}; resize the images to one size",
                    entry.name, image.height, image.width, entries[0].name
                )));
            }
            pixels.extend_from_slice(&image.rgb);
        }
        Ok(ImageFolder {
            pixels: Arc::new(pixels),
            labels: Arc::new(entries.iter().map(|e| e.class as i32).collect()),
            classes: Arc::new(classes),
            height,
            width,
            transform: ImageTransform::new(),
            seed: 0,
        })
    }

    /// The class names, in label order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The class label of each image.
    pub fn labels(&self) -> &[i32] {
        &self.labels
    }

    /// (height, width) of every image.
    pub fn image_size(&self) -> (usize, usize) {
        (self.height, self.width)
    }

    /// Image `index` as (H, W, 3) bytes.
    pub fn image(&self, index: usize) -> &[u8] {
        let per = self.height * self.width * 3;
        &self.pixels[index * per..(index + 1) * per]
    }

    /// The same images with `transform` applied to every batch, its random draws taken from
    /// `seed`, the epoch and the image's index (so the same on every run, worker and machine).
    pub fn with_transform(mut self, transform: ImageTransform, seed: u64) -> ImageFolder {
        self.transform = transform;
        self.seed = seed;
        self
    }

    /// The images at `indices`, in that order, as a new dataset with the same classes and transform.
    pub fn subset(&self, indices: &[usize]) -> ImageFolder {
        let mut pixels = Vec::with_capacity(indices.len() * self.height * self.width * 3);
        for &i in indices {
            pixels.extend_from_slice(self.image(i));
        }
        ImageFolder {
            pixels: Arc::new(pixels),
            labels: Arc::new(indices.iter().map(|&i| self.labels[i]).collect()),
            ..self.clone()
        }
    }

    /// The images of the classes `names` only, relabelled 0, 1, … in the order of `names`
    /// (for transfer learning: pretrain on some classes, fine-tune on the others). An unknown
    /// name is an error listing the classes.
    pub fn select_classes(&self, names: &[&str]) -> Result<ImageFolder> {
        let mut relabel = vec![None; self.classes.len()];
        for (new, name) in names.iter().enumerate() {
            let old = self.classes.iter().position(|c| c == name).ok_or_else(|| {
                Error::Invalid(format!("no class {name:?}; the classes are {}", self.classes.join(", ")))
            })?;
            relabel[old] = Some(new as i32);
        }
        let indices: Vec<usize> =
            (0..self.len()).filter(|&i| relabel[self.labels[i] as usize].is_some()).collect();
        let mut picked = self.subset(&indices);
        picked.labels =
            Arc::new(indices.iter().map(|&i| relabel[self.labels[i] as usize].expect("kept")).collect());
        picked.classes = Arc::new(names.iter().map(|n| n.to_string()).collect());
        Ok(picked)
    }

    /// The per-channel mean and standard deviation of the pixels scaled to [0, 1], for
    /// [`ImageTransform::normalize`] (compute them on the training split).
    pub fn channel_stats(&self) -> ([f32; 3], [f32; 3]) {
        let mut sum = [0f64; 3];
        let mut sq = [0f64; 3];
        for px in self.pixels.chunks_exact(3) {
            for c in 0..3 {
                let v = px[c] as f64 / 255.0;
                sum[c] += v;
                sq[c] += v * v;
            }
        }
        let n = (self.pixels.len() / 3).max(1) as f64;
        let mean = sum.map(|s| s / n);
        let std: Vec<f64> = (0..3).map(|c| (sq[c] / n - mean[c] * mean[c]).max(0.0).sqrt()).collect();
        (mean.map(|m| m as f32), [std[0] as f32, std[1] as f32, std[2] as f32])
    }
}

impl Dataset for ImageFolder {
    fn len(&self) -> usize {
        self.labels.len()
    }

    fn batch(&self, indices: &[usize]) -> Batch {
        self.batch_in_epoch(indices, 0)
    }

    fn batch_in_epoch(&self, indices: &[usize], epoch: u64) -> Batch {
        let (h, w) = self.transform.output_size(self.height, self.width);
        let key = RandomKey { seed: self.seed, stream: epoch };
        let mut x = vec![0f32; indices.len() * 3 * h * w];
        for (&i, out) in indices.iter().zip(x.chunks_exact_mut(3 * h * w)) {
            self.transform.apply(self.image(i), (self.height, self.width), key, i as u64, out);
        }
        let inputs = Tensor::from_vec(x, [indices.len(), 3, h, w], &Device::Cpu);
        let targets: Vec<i32> = indices.iter().map(|&i| self.labels[i]).collect();
        Batch::new(inputs, Tensor::from_vec(targets, [indices.len()], &Device::Cpu))
    }
}

/// Whether a file name is an image this reader decodes.
fn is_image(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    [".jpg", ".jpeg", ".png"].iter().any(|ext| lower.ends_with(ext))
}

/// The class folders under `root` (sorted) and every image file below each.
fn read_dir(root: &Path) -> Result<(Vec<String>, Vec<Entry>)> {
    let mut classes: Vec<String> = std::fs::read_dir(root)
        .map_err(|e| Error::io(root, e))?
        .filter_map(|d| d.ok())
        .filter(|d| d.path().is_dir())
        .map(|d| d.file_name().to_string_lossy().into_owned())
        .collect();
    classes.sort();
    let mut entries = Vec::new();
    for (class, name) in classes.iter().enumerate() {
        let mut files = Vec::new();
        collect_files(&root.join(name), &mut files)?;
        files.sort();
        for file in files {
            let bytes = std::fs::read(&file).map_err(|e| Error::io(&file, e))?;
            entries.push(Entry { name: file.display().to_string(), class, bytes });
        }
    }
    check_classes(&root.display().to_string(), &classes, &entries)?;
    Ok((classes, entries))
}

/// Image files anywhere below `dir`.
fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
    for item in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let path = item.map_err(|e| Error::io(dir, e))?.path();
        if path.is_dir() {
            collect_files(&path, out)?;
        } else if is_image(&path.to_string_lossy()) {
            out.push(path);
        }
    }
    Ok(())
}

/// The class folders under `folder` in the archive and every image file below each, read in
/// one pass over the (possibly gzipped) tar stream.
fn read_archive(path: &Path, folder: &str) -> Result<(Vec<String>, Vec<Entry>)> {
    let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut reader = BufReader::new(file);
    let gzipped = reader.fill_buf().map_err(|e| Error::io(path, e))?.starts_with(&[0x1f, 0x8b]);
    let stream: Box<dyn Read> =
        if gzipped { Box::new(flate2::read::MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let corrupt =
        |e: std::io::Error| Error::format(path, FORMAT, format!("the archive is corrupt or truncated: {e}"));
    let prefix = folder.trim_matches('/');
    let mut archive = tar::Archive::new(stream);
    let mut classes = std::collections::BTreeSet::new();
    let mut found: Vec<(String, String, Vec<u8>)> = Vec::new();
    for entry in archive.entries().map_err(corrupt)? {
        let mut entry = entry.map_err(corrupt)?;
        let name = entry.path().map_err(corrupt)?.to_string_lossy().into_owned();
        let Some(rest) = strip_folder(&name, prefix) else { continue };
        let kind = entry.header().entry_type();
        // a class is any folder directly below `folder`, seen as a folder entry or in a file's path
        let class = match rest.split_once('/') {
            Some((class, _)) => class,
            None if kind.is_dir() => rest,
            None => continue, // a file beside the class folders
        };
        if !class.is_empty() {
            classes.insert(class.to_string());
        }
        if kind.is_file() && rest.contains('/') && is_image(rest) {
            let mut bytes = Vec::with_capacity(entry.size() as usize);
            entry.read_to_end(&mut bytes).map_err(corrupt)?;
            found.push((class.to_string(), name, bytes));
        }
    }
    // read to the end of the stream, so that a gzip trailer cut off or corrupt is an error too
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(corrupt)?;
    let classes: Vec<String> = classes.into_iter().collect();
    // class folders in sorted order, and the files of each sorted by name, as from a directory
    found.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let entries: Vec<Entry> = found
        .into_iter()
        .map(|(class, name, bytes)| Entry {
            name: format!("{}: {name}", path.display()),
            class: classes.binary_search(&class).expect("listed"),
            bytes,
        })
        .collect();
    check_classes(&format!("{}: {prefix}/", path.display()), &classes, &entries)?;
    Ok((classes, entries))
}

/// `name` below `prefix/` (or `name` itself for an empty prefix), without a leading `./`.
fn strip_folder<'a>(name: &'a str, prefix: &str) -> Option<&'a str> {
    let name = name.strip_prefix("./").unwrap_or(name);
    if prefix.is_empty() {
        return Some(name);
    }
    name.strip_prefix(prefix)?.strip_prefix('/')
}

/// Errors for a folder without classes and for a class without images.
fn check_classes(place: &str, classes: &[String], entries: &[Entry]) -> Result<()> {
    if classes.is_empty() {
        return Err(Error::Invalid(format!("{place}: no class folders (expected <class>/<image> below it)")));
    }
    for (i, class) in classes.iter().enumerate() {
        if !entries.iter().any(|e| e.class == i) {
            return Err(Error::Invalid(format!(
                "{place}: class folder {class:?} holds no JPEG or PNG images"
            )));
        }
    }
    Ok(())
}

/// Every entry decoded, in parallel, with a progress bar on a terminal.
fn decode_all(entries: &[Entry]) -> Result<Vec<Decoded>> {
    let bar = ProgressBar::new(entries.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("decoding images [{bar:30}] {pos}/{len} ({elapsed})")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let decoded = entries
        .par_iter()
        .map(|e| {
            let image = decode(&e.bytes)
                .map_err(|reason| Error::Invalid(format!("{}: not a valid image: {reason}", e.name)));
            bar.inc(1);
            image
        })
        .collect::<Result<Vec<_>>>();
    bar.finish_and_clear();
    decoded
}
