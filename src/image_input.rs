//! Reading input images (PNG, JPEG, GIF) with bounded memory: the size in the file's header is checked
//! against [`MAX_SIDE`] and [`MAX_PIXELS`] before any pixel is decoded, and the decoder runs under
//! `image::Limits` (at most [`MAX_ALLOC`] bytes), so a hostile header cannot make us allocate gigabytes.
//! Every error names the file.

use std::io::{BufRead, Cursor, Seek};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};
use thiserror::Error;

/// Longest accepted side in pixels.
pub const MAX_SIDE: u32 = 16_384;
/// Most pixels accepted (64 Mpixel: any camera photo; SVD itself runs at 1024×576).
pub const MAX_PIXELS: u64 = 1 << 26;
/// Most bytes the decoder may allocate at once.
pub const MAX_ALLOC: u64 = 1 << 30;

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
    l.max_image_width = Some(MAX_SIDE);
    l.max_image_height = Some(MAX_SIDE);
    l.max_alloc = Some(MAX_ALLOC);
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
    if width > MAX_SIDE || height > MAX_SIDE {
        return Err(too_large(format!("{MAX_SIDE} per side")));
    }
    if u64::from(width) * u64::from(height) > MAX_PIXELS {
        return Err(too_large(format!("{MAX_PIXELS} pixels")));
    }
    dec.set_limits(limits()).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(format!("{MAX_ALLOC} bytes of decoder memory")),
        e => derr(e),
    })?;
    let orientation = if orient { dec.orientation().ok() } else { None };
    let mut img = DynamicImage::from_decoder(dec).map_err(|e| match e {
        image::ImageError::Limits(_) => too_large(format!("{MAX_ALLOC} bytes of decoder memory")),
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
        limit: format!("{MAX_SIDE} per side and {MAX_ALLOC} bytes of decoder memory (size not reported)"),
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
