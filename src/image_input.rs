//! Reading input images (PNG, JPEG, GIF) with bounded memory: the size in the file's header is checked
//! against the limits of [`crate::limits`] (`IMAGE_SIDE`, `IMAGE_PIXELS`) before any pixel is decoded, and the
//! decoder runs under `image::Limits` (at most `IMAGE_BYTES`), so a hostile header cannot make us allocate
//! gigabytes.
//! Every error names the file.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use thiserror::Error;

use crate::limits::{IMAGE_BYTES, IMAGE_PIXELS, IMAGE_SIDE};

/// Longest accepted side in pixels ([`IMAGE_SIDE`]: 16384 unless `TRAJATTN_MAX_IMAGE_SIDE` says otherwise).
fn max_side() -> u32 {
    IMAGE_SIDE.value().min(u32::MAX as u64) as u32
}

/// Why an image could not be loaded.
#[derive(Debug, Error)]
pub enum ImageInputError {
    /// The file could not be opened or read.
    #[error("cannot read image {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The header announces more pixels than we accept.
    #[error("{path}: image is {width}×{height} pixels, over the limit of {limit}")]
    TooLarge { path: String, width: u32, height: u32, limit: String },
    /// The bytes are not a supported, well-formed image (or the decoder hit its memory limit).
    #[error("{path}: not a readable PNG, JPEG or GIF image: {source}")]
    Decode {
        path: String,
        #[source]
        source: image::ImageError,
    },
}

fn limits() -> Limits {
    let mut l = Limits::default();
    l.max_image_width = Some(max_side());
    l.max_image_height = Some(max_side());
    l.max_alloc = Some(IMAGE_BYTES.value());
    l
}

fn decode_reader<R: BufRead + Seek>(
    name: &str,
    mut reader: ImageReader<R>,
    orient: bool,
) -> Result<DynamicImage, ImageInputError> {
    let derr = |source| ImageInputError::Decode { path: name.to_string(), source };
    // The side limits are checked here rather than by the decoder, so that the error can give the size.
    let mut header_limits = limits();
    header_limits.max_image_width = None;
    header_limits.max_image_height = None;
    reader.limits(header_limits);
    let mut dec = reader.into_decoder().map_err(|e| match e {
        image::ImageError::Limits(_) => too_large_unknown(name),
        e => derr(e),
    })?;
    let (width, height) = dec.dimensions();
    let too_large =
        |limit: String| ImageInputError::TooLarge { path: name.to_string(), width, height, limit };
    if width > max_side() || height > max_side() {
        return Err(too_large(format!("{} per side (TRAJATTN_MAX_IMAGE_SIDE)", max_side())));
    }
    if u64::from(width) * u64::from(height) > IMAGE_PIXELS.value() {
        return Err(too_large(format!("{} pixels (TRAJATTN_MAX_IMAGE_PIXELS)", IMAGE_PIXELS.value())));
    }
    dec.set_limits(limits()).map_err(|e| match e {
        image::ImageError::Limits(_) => {
            too_large(format!("{} bytes of decoder memory (TRAJATTN_MAX_IMAGE_BYTES)", IMAGE_BYTES.value()))
        }
        e => derr(e),
    })?;
    let orientation = if orient { dec.orientation().ok() } else { None };
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(_) => {
            too_large(format!("{} bytes of decoder memory (TRAJATTN_MAX_IMAGE_BYTES)", IMAGE_BYTES.value()))
        }
        e => derr(e),
    })?;
    if let Some(o) = orientation {
        img.apply_orientation(o);
    }
    Ok(img)
}

/// A decoder refused the header's size before reporting it.
fn too_large_unknown(name: &str) -> ImageInputError {
    ImageInputError::TooLarge {
        path: name.to_string(),
        width: 0,
        height: 0,
        limit: format!(
            "{} per side and {} bytes of decoder memory (size not reported)",
            max_side(),
            IMAGE_BYTES.value()
        ),
    }
}

fn open_with(path: &Path, orient: bool) -> Result<DynamicImage, ImageInputError> {
    let name = path.display().to_string();
    let io = |source| ImageInputError::Io { path: name.clone(), source };
    let reader = ImageReader::open(path).map_err(io)?.with_guessed_format().map_err(io)?;
    decode_reader(&name, reader, orient)
}

/// Decodes an image file as stored (no EXIF rotation), within the limits.
pub fn open(path: &Path) -> Result<DynamicImage, ImageInputError> {
    open_with(path, false)
}

/// Decodes an image file and applies its EXIF orientation, within the limits.
pub fn open_oriented(path: &Path) -> Result<DynamicImage, ImageInputError> {
    open_with(path, true)
}

/// [`open_oriented`] as 8-bit RGB (alpha dropped).
pub fn open_rgb(path: &Path) -> Result<image::RgbImage, ImageInputError> {
    Ok(open_oriented(path)?.to_rgb8())
}

/// [`open_oriented`] as 8-bit grey.
pub fn open_luma(path: &Path) -> Result<image::GrayImage, ImageInputError> {
    Ok(open_oriented(path)?.to_luma8())
}

/// Decodes image bytes (`name` only labels errors) exactly as [`open_oriented`] decodes a file.
pub fn decode(name: &str, bytes: &[u8]) -> Result<DynamicImage, ImageInputError> {
    let reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|source| ImageInputError::Io { path: name.to_string(), source })?;
    decode_reader(name, reader, true)
}

/// An image file as RGB bytes with its EXIF orientation applied: `(pixels, width, height)`.
pub fn load_rgb(path: &Path) -> Result<(Vec<u8>, usize, usize), ImageInputError> {
    let rgb = open_oriented(path)?.to_rgb8();
    let (w, h) = (rgb.width() as usize, rgb.height() as usize);
    Ok((rgb.into_raw(), w, h))
}
