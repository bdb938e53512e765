//! Decoding of the image files an [`ImageFolder`](super::ImageFolder) reads: JPEG (with
//! `zune-jpeg`) and PNG (with `png`), told apart by their signatures, to 8-bit RGB as
//! torchvision's loader gives (grey repeated into R, G and B; alpha dropped). A truncated JPEG is
//! an error, as Pillow makes it, not an image padded with grey.

use std::io::Cursor;
use zune_jpeg::JpegDecoder;
use zune_jpeg::zune_core::bytestream::ZCursor;
use zune_jpeg::zune_core::colorspace::ColorSpace;
use zune_jpeg::zune_core::options::DecoderOptions;

/// A decoded RGB image.
pub(super) struct Decoded {
    pub height: usize,
    pub width: usize,
    /// (height, width, 3) bytes.
    pub rgb: Vec<u8>,
}

/// Decodes JPEG or PNG bytes (told apart by their signatures) to RGB.
pub(super) fn decode(bytes: &[u8]) -> std::result::Result<Decoded, String> {
    if bytes.starts_with(&[0xff, 0xd8]) {
        decode_jpeg(bytes)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        decode_png(bytes)
    } else {
        Err("neither a JPEG nor a PNG signature".into())
    }
}

fn decode_jpeg(bytes: &[u8]) -> std::result::Result<Decoded, String> {
    // the decoder fills a truncated scan with grey; Pillow refuses it, and so do we
    if !has_end_of_image(bytes) {
        return Err("JPEG: truncated: the data ends before the end-of-image marker".into());
    }
    let options = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::RGB).set_strict_mode(true);
    let mut decoder = JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    let rgb = decoder.decode().map_err(|e| format!("JPEG: {e:?}"))?;
    let (width, height) = decoder.dimensions().ok_or("JPEG: no dimensions")?;
    if rgb.len() != width * height * 3 {
        return Err(format!("JPEG: {} bytes decoded for {width}×{height} RGB", rgb.len()));
    }
    Ok(Decoded { height, width, rgb })
}

/// Whether the compressed data of a JPEG reaches its end-of-image marker (FF D9). Segments
/// before the first scan are skipped by their lengths (an embedded thumbnail has an FF D9 of
/// its own); inside scans every FF byte of data is followed by 00, so FF D9 there is the end.
fn has_end_of_image(bytes: &[u8]) -> bool {
    let mut i = 2; // past SOI
    while i + 4 <= bytes.len() {
        if bytes[i] != 0xff {
            return false;
        }
        match bytes[i + 1] {
            0xff => i += 1, // fill byte
            0xda => return bytes[i..].windows(2).any(|w| w == [0xff, 0xd9]),
            _ => i += 2 + u16::from_be_bytes([bytes[i + 2], bytes[i + 3]]) as usize,
        }
    }
    false
}

fn decode_png(bytes: &[u8]) -> std::result::Result<Decoded, String> {
    let mut decoder = png::Decoder::new(Cursor::new(bytes));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info().map_err(|e| format!("PNG: {e}"))?;
    let mut buf = vec![0; reader.output_buffer_size().ok_or("PNG: the image is too large")?];
    let info = reader.next_frame(&mut buf).map_err(|e| format!("PNG: {e}"))?;
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.color_type.samples();
    let pixels = &buf[..width * height * channels];
    // as torchvision's loader: grey is repeated into R, G and B, alpha is dropped
    let rgb = match channels {
        1 | 2 => pixels.chunks_exact(channels).flat_map(|p| [p[0]; 3]).collect(),
        3 | 4 => pixels.chunks_exact(channels).flat_map(|p| [p[0], p[1], p[2]]).collect(),
        n => return Err(format!("PNG: {n} samples per pixel")),
    };
    Ok(Decoded { height, width, rgb })
}
