//! `ImageTransform`: the augmentation and conversion an [`ImageFolder`](super::ImageFolder)
//! applies to each image as its batch is assembled (on the [`DataLoader`](super::DataLoader)'s
//! background workers), in torchvision's order: random crop with zero padding, random horizontal
//! flip, scaling to [0, 1], normalization per channel, and (H, W, 3) bytes to (3, H, W) f32.
//!
//! The random draws of image `i` in epoch `e` are words `4i…4i+2` of the Philox stream
//! (seed, `e`): the same crops and flips on every run, however many workers assemble the
//! batches and in whatever batches the image falls.

use crate::rng::RandomKey;

/// What to do to each image; [`ImageTransform::new`] only converts and scales to [0, 1].
#[derive(Clone, Debug, PartialEq)]
pub struct ImageTransform {
    /// A random `size`×`size` window of the image padded with `padding` zeros on every side.
    crop: Option<(usize, usize)>,
    /// Mirror left–right with probability ½.
    flip: bool,
    mean: [f32; 3],
    std: [f32; 3],
}

impl Default for ImageTransform {
    fn default() -> Self {
        ImageTransform::new()
    }
}

impl ImageTransform {
    /// Conversion to (3, H, W) f32 in [0, 1] and nothing else (torchvision's `ToTensor`).
    pub fn new() -> ImageTransform {
        ImageTransform { crop: None, flip: false, mean: [0.0; 3], std: [1.0; 3] }
    }

    /// Pads the image with `padding` zero pixels on each side, then takes a `size`×`size`
    /// window at a random position (torchvision's `RandomCrop(size, padding)`).
    pub fn random_crop(mut self, size: usize, padding: usize) -> ImageTransform {
        self.crop = Some((size, padding));
        self
    }

    /// Mirrors the image left–right with probability ½ (`RandomHorizontalFlip`).
    pub fn horizontal_flip(mut self) -> ImageTransform {
        self.flip = true;
        self
    }

    /// Subtracts `mean` and divides by `std`, per channel, after scaling to [0, 1] (`Normalize`).
    #[track_caller]
    pub fn normalize(mut self, mean: [f32; 3], std: [f32; 3]) -> ImageTransform {
        if std.iter().any(|&s| s.is_nan() || s <= 0.0) {
            panic!("ImageTransform::normalize: standard deviations must be positive, got {std:?}");
        }
        self.mean = mean;
        self.std = std;
        self
    }

    /// (height, width) of the output for an input of `height`×`width`. Panics when a crop is
    /// larger than the padded image.
    #[track_caller]
    pub fn output_size(&self, height: usize, width: usize) -> (usize, usize) {
        match self.crop {
            None => (height, width),
            Some((size, padding)) => {
                if size > height + 2 * padding || size > width + 2 * padding {
                    panic!(
                        "ImageTransform::random_crop: a {size}×{size} crop does not fit a {height}×{width} image padded by {padding}"
                    );
                }
                (size, size)
            }
        }
    }

    /// Transforms `image`, (H, W, 3) bytes, into `out`, (3, oh, ow) f32 with (oh, ow) from
    /// [`ImageTransform::output_size`], drawing from `key` (the seed and the epoch) at the
    /// image's `index`.
    pub fn apply(
        &self,
        image: &[u8],
        (height, width): (usize, usize),
        key: RandomKey,
        index: u64,
        out: &mut [f32],
    ) {
        let (oh, ow) = self.output_size(height, width);
        // a uniform integer in 0..n from word w of the image's draws (multiply-shift, unbiased to 2⁻³²)
        let draw = |w: u64, n: usize| ((key.bits(4 * index + w) as u64 * n as u64) >> 32) as usize;
        // the output's (0, 0) sits at (top, left) of the image; negative offsets are padding
        let (top, left) = match self.crop {
            None => (0, 0),
            Some((size, padding)) => {
                let top = draw(0, height + 2 * padding - size + 1) as isize - padding as isize;
                let left = draw(1, width + 2 * padding - size + 1) as isize - padding as isize;
                (top, left)
            }
        };
        let flip = self.flip && key.uniform(4 * index + 2) < 0.5;
        for c in 0..3 {
            // torchvision's arithmetic, (v / 255 − mean) / std, once per byte value; padding is 0
            let lut: Vec<f32> = (0..256).map(|v| (v as f32 / 255.0 - self.mean[c]) / self.std[c]).collect();
            let plane = &mut out[c * oh * ow..(c + 1) * oh * ow];
            for y in 0..oh {
                let sy = top + y as isize;
                for x in 0..ow {
                    let ox = if flip { ow - 1 - x } else { x };
                    let sx = left + ox as isize;
                    let inside = (0..height as isize).contains(&sy) && (0..width as isize).contains(&sx);
                    let byte = if inside { image[(sy as usize * width + sx as usize) * 3 + c] } else { 0 };
                    plane[y * ow + x] = lut[byte as usize];
                }
            }
        }
    }
}
