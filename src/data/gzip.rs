//! Gzip detection shared by the readers: a file that starts with the gzip magic bytes is
//! decompressed (all members, as `gunzip` does), any other is taken as it is.

use std::borrow::Cow;
use std::io::Read;

/// `raw` decompressed if it is gzipped, else `raw` itself. The error is the decoder's (a corrupt
/// or truncated stream); callers name the file.
pub(crate) fn gunzip_if_gzipped(raw: &[u8]) -> std::io::Result<Cow<'_, [u8]>> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(Cow::Borrowed(raw));
    }
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(raw).read_to_end(&mut out)?;
    Ok(Cow::Owned(out))
}
