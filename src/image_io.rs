//! Reading input images: every decode goes through here, with the resource limits of [`crate::limits`] (so a
//! header claiming 100000×100000 pixels is refused before anything is allocated) and the EXIF orientation
//! applied, so every command sees a photo the same way up.

use std::path::Path;

/// An image that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageInputError {
    #[error("cannot open image {path}: {source}")]
    Open { path: String, source: std::io::Error },
    #[error("{path} is not a readable image: {msg}")]
    Decode { path: String, msg: String },
    #[error("image {path}: {source}")]
    Limit { path: String, source: crate::limits::LimitError },
}

/// Decodes `path` (PNG, JPEG, GIF: by content) with size limits and EXIF orientation applied.
pub fn open(path: &Path) -> Result<image::DynamicImage, ImageInputError> {
    use image::ImageDecoder;
    let p = || path.display().to_string();
    let decode = |e: image::ImageError| ImageInputError::Decode { path: p(), msg: e.to_string() };
    let mut reader = image::ImageReader::open(path)
        .map_err(|source| ImageInputError::Open { path: p(), source })?
        .with_guessed_format()
        .map_err(|source| ImageInputError::Open { path: p(), source })?;
    reader.limits(crate::limits::image_decoder_limits());
    let mut dec = reader.into_decoder().map_err(decode)?;
    let (w, h) = dec.dimensions();
    let channels = dec.color_type().bytes_per_pixel() as u64;
    crate::limits::check_image(w as u64, h as u64, channels.max(1))
        .map_err(|source| ImageInputError::Limit { path: p(), source })?;
    if w == 0 || h == 0 {
        return Err(ImageInputError::Decode { path: p(), msg: "the image has no pixels".into() });
    }
    let orientation = dec.orientation().unwrap_or(image::metadata::Orientation::NoTransforms);
    let mut img = image::DynamicImage::from_decoder(dec).map_err(decode)?;
    img.apply_orientation(orientation);
    Ok(img)
}

/// [`open`] as 8-bit RGB (alpha dropped).
pub fn open_rgb(path: &Path) -> Result<image::RgbImage, ImageInputError> {
    Ok(open(path)?.to_rgb8())
}

/// [`open`] as 8-bit grey.
pub fn open_luma(path: &Path) -> Result<image::GrayImage, ImageInputError> {
    Ok(open(path)?.to_luma8())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_header_claiming_a_huge_image_is_refused_before_decoding() {
        // A valid PNG signature and IHDR chunk claiming 100000×100000 RGB, no image data.
        let mut png = vec![0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a];
        let mut ihdr = b"IHDR".to_vec();
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend(100_000u32.to_be_bytes());
        ihdr.extend([8, 2, 0, 0, 0]);
        png.extend((13u32).to_be_bytes());
        png.extend(&ihdr);
        png.extend(crc32(&ihdr).to_be_bytes());
        let p = std::env::temp_dir().join(format!("trajattn-huge-{}.png", std::process::id()));
        std::fs::write(&p, &png).unwrap();
        let e = open(&p).unwrap_err().to_string();
        std::fs::remove_file(&p).unwrap();
        assert!(e.contains(&p.display().to_string()), "{e}");
        assert!(e.contains("limit") || e.contains("Limit"), "{e}");
    }

    fn crc32(data: &[u8]) -> u32 {
        let mut c = 0xffff_ffffu32;
        for &b in data {
            c ^= b as u32;
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xedb8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
}
