//! Resource limits: every size a user or a file can set is checked here, in checked arithmetic, before anything
//! is allocated or any GPU work starts. Each refusal names the value, the limit and how to raise it.
//!
//! The defaults cover every published SVD configuration with a wide margin (SVD-xt: 25 frames at 1024×576,
//! 1280-wide blocks); a larger job raises a limit explicitly with its environment variable.

use std::fmt;

/// A refused size or value.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    /// A size above its limit.
    #[error("{what} is {value}, above the limit of {limit}{hint}")]
    TooLarge { what: String, value: String, limit: String, hint: String },
    /// A value outside the range the model can represent or the option allows.
    #[error("{what} is {value}; it must be {range}{why}")]
    OutOfRange { what: String, value: String, range: String, why: String },
    /// Arithmetic on sizes overflowed.
    #[error("{what}: the size overflows ({detail})")]
    Overflow { what: String, detail: String },
}

/// One limit with its environment override.
#[derive(Clone, Copy, Debug)]
pub struct Limit {
    /// What it bounds, as messages name it.
    pub what: &'static str,
    /// Environment variable that raises it.
    pub env: &'static str,
    /// Default value.
    pub default: u64,
}

impl Limit {
    /// The limit in force: the environment's value if it parses, else the default.
    pub fn value(&self) -> u64 {
        std::env::var(self.env).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(self.default)
    }

    /// `Err` when `value` exceeds the limit.
    pub fn check(&self, value: u64) -> Result<u64, LimitError> {
        let lim = self.value();
        if value > lim {
            return Err(LimitError::TooLarge {
                what: self.what.to_string(),
                value: value.to_string(),
                limit: lim.to_string(),
                hint: format!(" (set {}=N to allow more)", self.env),
            });
        }
        Ok(value)
    }
}

/// Output frames of one generation.
pub const FRAMES: Limit = Limit { what: "the number of frames", env: "TRAJATTN_MAX_FRAMES", default: 128 };
/// Denoising steps.
pub const STEPS: Limit =
    Limit { what: "the number of denoising steps", env: "TRAJATTN_MAX_STEPS", default: 1000 };
/// Longest side of an output video or a generated trajectory grid, pixels.
pub const SIDE: Limit =
    Limit { what: "the output width or height (pixels)", env: "TRAJATTN_MAX_SIDE", default: 8192 };
/// Pixels of one output frame.
pub const PIXELS: Limit =
    Limit { what: "the pixels of one output frame", env: "TRAJATTN_MAX_PIXELS", default: 4096 * 4096 };
/// Width or height of a decoded input image, pixels.
pub const IMAGE_SIDE: Limit = Limit {
    what: "an input image's width or height (pixels)",
    env: "TRAJATTN_MAX_IMAGE_SIDE",
    default: 16384,
};
/// Pixels of a decoded input image (64 Mpixel: any camera photo; SVD itself runs at 1024×576).
pub const IMAGE_PIXELS: Limit =
    Limit { what: "an input image's pixels", env: "TRAJATTN_MAX_IMAGE_PIXELS", default: 1 << 26 };
/// Bytes the image decoder may allocate.
pub const IMAGE_BYTES: Limit = Limit {
    what: "the decoded size of an input image (bytes)",
    env: "TRAJATTN_MAX_IMAGE_BYTES",
    default: 1 << 30,
};
/// Elements of one model tensor that a configuration describes.
pub const TENSOR_ELEMS: Limit =
    Limit { what: "the elements of one model tensor", env: "TRAJATTN_MAX_TENSOR_ELEMS", default: 1 << 31 };
/// Parameters of one model a configuration describes.
pub const MODEL_PARAMS: Limit =
    Limit { what: "the parameters of one model", env: "TRAJATTN_MAX_MODEL_PARAMS", default: 20_000_000_000 };
/// Channels (width) of any layer in a model configuration.
pub const CHANNELS: Limit =
    Limit { what: "a layer width in the config", env: "TRAJATTN_MAX_CHANNELS", default: 16384 };
/// Repeated layers per block / transformer layers / hidden layers in a configuration.
pub const LAYERS: Limit =
    Limit { what: "a layer count in the config", env: "TRAJATTN_MAX_LAYERS", default: 256 };
/// Resolution levels (blocks) of a UNet or VAE configuration.
pub const LEVELS: Limit =
    Limit { what: "the number of resolution levels", env: "TRAJATTN_MAX_LEVELS", default: 8 };
/// Attention heads of one layer.
pub const HEADS: Limit =
    Limit { what: "the attention heads of a layer", env: "TRAJATTN_MAX_HEADS", default: 1024 };
/// Side of the CLIP input image.
pub const CLIP_SIDE: Limit =
    Limit { what: "the CLIP image_size", env: "TRAJATTN_MAX_CLIP_SIDE", default: 2048 };
/// Pixels of the depth model's input after the resize to multiples of 14 (16 Mpixel; 1024×576 at
/// `--input-size 518` gives 924×518, a 1:10 panorama 5180×518).
pub const DEPTH_INPUT_PIXELS: Limit = Limit {
    what: "the depth model's input pixels (the image resized so its short side is --input-size)",
    env: "TRAJATTN_MAX_DEPTH_PIXELS",
    default: 1 << 24,
};

/// `a · b · …` in checked arithmetic.
pub fn product(what: &str, dims: &[usize]) -> Result<usize, LimitError> {
    dims.iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(|| LimitError::Overflow { what: what.to_string(), detail: format!("{dims:?}") })
}

/// Checks the size of one output video (frames, width, height) against [`FRAMES`], [`SIDE`] and [`PIXELS`].
pub fn check_video(frames: usize, width: usize, height: usize) -> Result<(), LimitError> {
    FRAMES.check(frames as u64)?;
    SIDE.check(width as u64)?;
    SIDE.check(height as u64)?;
    PIXELS.check(product("frame size", &[width, height])? as u64)?;
    Ok(())
}

/// A finite number inside `[lo, hi]`, else an error naming the option and the reason.
pub fn check_range<T: PartialOrd + fmt::Display + Copy>(
    what: &str,
    value: T,
    lo: T,
    hi: T,
    why: &str,
) -> Result<T, LimitError> {
    // NaN compares false both ways, so it lands here too.
    if value >= lo && value <= hi {
        return Ok(value);
    }
    Err(LimitError::OutOfRange {
        what: what.to_string(),
        value: value.to_string(),
        range: format!("between {lo} and {hi}"),
        why: if why.is_empty() { String::new() } else { format!(" ({why})") },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_refuse_with_the_limit_and_the_variable() {
        let e = FRAMES.check(10_000_000).unwrap_err().to_string();
        assert!(e.contains("10000000") && e.contains("128") && e.contains("TRAJATTN_MAX_FRAMES"), "{e}");
        assert!(check_video(25, 1024, 576).is_ok());
        assert!(check_video(25, 100_000, 576).is_err());
        assert!(check_video(25, 8192, 8192).is_err(), "pixels above 4096²");
        assert!(product("x", &[usize::MAX, 2]).is_err());
    }

    #[test]
    fn ranges_refuse_nan_and_out_of_range() {
        assert!(check_range("x", f32::NAN, 0.0, 1.0, "").is_err());
        assert!(check_range("x", f32::INFINITY, 0.0, 1.0, "").is_err());
        assert!(check_range("x", 0.5f32, 0.0, 1.0, "").is_ok());
        let e = check_range("--motion-bucket", 4_294_967_296u64, 0, 2048, "why").unwrap_err().to_string();
        assert!(e.contains("--motion-bucket") && e.contains("4294967296") && e.contains("2048"), "{e}");
    }
}
