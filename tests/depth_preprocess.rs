//! Depth-Anything-V2 preprocessing and post-processing against the official code's outputs
//! (`tests/fixtures/depth/`, copied from `shared/spec/data/depth_anything_*`, and `vits_small_*` made by
//! `tests/reference/depth_fixtures.py`): the cubic resize bit for bit against OpenCV 4.5.5, the network input bit
//! for bit, the bilinear post-processing against torch 2.1.0.

use std::path::{Path, PathBuf};

use image::RgbImage;
use safetensors::SafeTensors;
use serde_json::Value;
use trajattn::depth::preprocess::{
    prepare, resize_cubic, target_size, to_rgb8_like_opencv, upsample_to, MEAN, STD,
};
use trajattn::image_input;

mod depth_util;
use depth_util::sha256_hex;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depth")
}

fn json(name: &str) -> Value {
    let text = std::fs::read_to_string(dir().join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    serde_json::from_str(&text).unwrap()
}

fn f64s(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn tensor_f32(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (t.shape().to_vec(), data)
}

fn le_f64(v: &[f64]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn le_f32(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// Units in the last place between two floats of the same sign (`u32::MAX` when signs differ).
fn ulps(a: f32, b: f32) -> u32 {
    if a == b {
        return 0;
    }
    if a.is_sign_negative() != b.is_sign_negative() {
        return u32::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// Distance in units in the last place of two finite f64 of the same sign. The JSON samples are checked this way
/// because serde_json's default float parsing may be one ulp off; the SHA-256 of all values is the exact check.
fn ulps64(a: f64, b: f64) -> u64 {
    if a == b {
        return 0;
    }
    if a.is_sign_negative() != b.is_sign_negative() {
        return u64::MAX;
    }
    a.to_bits().abs_diff(b.to_bits())
}

/// The formula image of the spec's vectors: `R=(4x+3y)%256, G=(x·y+17)%256, B=(200+2x−3y)%256`.
fn formula_rgb(h: u32, w: u32) -> RgbImage {
    RgbImage::from_fn(w, h, |x, y| {
        let (x, y) = (x as i64, y as i64);
        image::Rgb([
            (4 * x + 3 * y).rem_euclid(256) as u8,
            (x * y + 17).rem_euclid(256) as u8,
            (200 + 2 * x - 3 * y).rem_euclid(256) as u8,
        ])
    })
}

#[test]
fn sha256_of_known_strings() {
    assert_eq!(sha256_hex(b""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

#[test]
fn resize_vectors_bit_exact() {
    let v = json("depth_anything_resize_vectors.json");
    let hw = f64s(&v["input_hw"]);
    let (h, w) = (hw[0] as usize, hw[1] as usize);
    // The input from its formula: serde_json's default float parsing may be an ulp off, so the JSON's decimal
    // values only confirm the formula (the outputs are compared through their bit patterns).
    let input: Vec<f64> = (0..h * w * 3)
        .map(|i| {
            let (y, x, c) = (i / (w * 3), i / 3 % w, i % 3);
            ((31 * y + 17 * x + 7 * c) % 23) as f64 / 22.0
        })
        .collect();
    let listed = f64s(&v["input"]);
    assert_eq!(listed.len(), input.len());
    assert!(input.iter().zip(&listed).all(|(a, b)| (a - b).abs() <= 1e-15));
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    for case in cases {
        let o = f64s(&case["out_hw"]);
        let (oh, ow) = (o[0] as usize, o[1] as usize);
        let got = resize_cubic(&input, h, w, 3, oh, ow);
        let bits: Vec<u64> = case["output_bits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| u64::from_str_radix(b.as_str().unwrap(), 16).unwrap())
            .collect();
        assert_eq!(got.len(), bits.len(), "{oh}×{ow}");
        let bad: Vec<_> = got
            .iter()
            .zip(&bits)
            .enumerate()
            .filter(|(_, (g, &b))| g.to_bits() != b)
            .map(|(i, (g, &b))| (i, *g, f64::from_bits(b)))
            .take(5)
            .collect();
        assert!(bad.is_empty(), "{oh}×{ow}: (index, ours, cv2) {bad:?}");
    }
}

#[test]
fn full_size_576x1024_to_518x924_bit_exact() {
    let v = json("depth_anything_resize_vectors.json");
    let fc = &v["full_size_check"];
    assert_eq!(target_size(576, 1024, 518).unwrap(), (518, 924));
    let img = formula_rgb(576, 1024);
    let src: Vec<f64> = img.as_raw().iter().map(|&b| f64::from(b) / 255.0).collect();
    let t = std::time::Instant::now();
    let out = resize_cubic(&src, 576, 1024, 3, 518, 924);
    eprintln!("resize_cubic 576×1024×3 → 518×924: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    for (key, want) in fc["resized_samples"].as_object().unwrap() {
        let idx: Vec<usize> = key.split(',').map(|s| s.parse().unwrap()).collect();
        let got = out[(idx[0] * 924 + idx[1]) * 3 + idx[2]];
        assert!(ulps64(got, want.as_f64().unwrap()) <= 1, "sample {key}: {got} vs {want}");
    }
    let min = out.iter().cloned().fold(f64::INFINITY, f64::min);
    let max = out.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    assert!(ulps64(min, fc["resized_min"].as_f64().unwrap()) <= 1, "min {min}");
    assert!(ulps64(max, fc["resized_max"].as_f64().unwrap()) <= 1, "max {max}");
    assert_eq!(sha256_hex(&le_f64(&out)), fc["resized_f64_le_sha256"].as_str().unwrap());

    let t = std::time::Instant::now();
    let p = prepare(&img, 518).unwrap();
    eprintln!("prepare 1024×576 at 518: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!((p.height, p.width, p.data.len()), (518, 924, 3 * 518 * 924));
    let t = std::time::Instant::now();
    let back = upsample_to(&p.data[..518 * 924], 518, 924, 576, 1024);
    eprintln!("upsample_to 518×924 → 576×1024: {:.1} ms", t.elapsed().as_secs_f64() * 1e3);
    assert_eq!(back.len(), 576 * 1024);
    assert_eq!(sha256_hex(&le_f32(&p.data)), fc["model_input_f32_chw_le_sha256"].as_str().unwrap());
}

#[test]
fn prepare_matches_the_official_input_of_the_spec_model() {
    let meta = json("spec_random_resized.json");
    let img = image_input::open_rgb(&dir().join("spec_random_input.png")).unwrap();
    assert_eq!(img.dimensions(), (98, 70));
    let (oh, ow) = target_size(70, 98, 140).unwrap();
    assert_eq!((oh, ow), (140, 196));
    let src: Vec<f64> = img.as_raw().iter().map(|&b| f64::from(b) / 255.0).collect();
    let resized = resize_cubic(&src, 70, 98, 3, oh, ow);
    for (key, want) in meta["resized_f64_samples"].as_object().unwrap() {
        let idx: Vec<usize> = key.split(',').map(|s| s.parse().unwrap()).collect();
        let got = resized[(idx[0] * ow + idx[1]) * 3 + idx[2]];
        assert!(ulps64(got, want.as_f64().unwrap()) <= 1, "{key}: {got} vs {want}");
    }
    assert_eq!(sha256_hex(&le_f64(&resized)), meta["resized_f64_hwc_le_sha256"].as_str().unwrap());

    let bytes = std::fs::read(dir().join("spec_random_debug.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, want) = tensor_f32(&st, "debug.input");
    assert_eq!(shape, [1, 3, 140, 196]);
    let p = prepare(&img, 140).unwrap();
    assert_eq!((p.height, p.width), (140, 196));
    let bad = p.data.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(bad, 0, "network input differs from the official one in {bad} values");
    // The normalisation is the official one: channel order R, G, B.
    let plane = 140 * 196;
    for ch in 0..3 {
        assert_eq!(p.data[ch * plane], ((resized[ch] - MEAN[ch]) / STD[ch]) as f32);
    }
}

#[test]
fn upsample_matches_the_official_post_processing() {
    let bytes = std::fs::read(dir().join("spec_random_debug.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, net) = tensor_f32(&st, "debug.output_conv2");
    assert_eq!(shape, [1, 1, 140, 196]);
    let (dshape, want) = tensor_f32(&st, "debug.depth");
    assert_eq!(dshape, [70, 98]);
    // debug.output_conv2 is after the head's last ReLU; the model's extra ReLU changes nothing (no negatives).
    assert!(net.iter().all(|&v| v >= 0.0));
    let got = upsample_to(&net, 140, 196, 70, 98);
    assert_eq!(got.len(), want.len());
    let worst = got.iter().zip(&want).map(|(&a, &b)| ulps(a, b)).max().unwrap();
    let exact = got.iter().zip(&want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
    eprintln!("upsample_to: {exact}/{} bit-exact, worst {worst} ulp", want.len());
    assert_eq!(worst, 0, "{} of {} values differ", want.len() - exact, want.len());
}

#[test]
fn odd_tiny_and_degenerate_images() {
    // 1×1, 1×N, N×1 and odd sizes: sizes follow the rule, data is finite, nothing panics.
    for (w, h, s) in [(1, 1, 14), (1, 1, 518), (1, 7, 28), (9, 1, 28), (13, 5, 42), (3, 2, 14)] {
        let img = formula_rgb(h, w);
        let p = prepare(&img, s).unwrap();
        assert_eq!((p.height, p.width), target_size(h as usize, w as usize, s).unwrap());
        assert!(p.height >= s && p.width >= s && p.height.is_multiple_of(14) && p.width.is_multiple_of(14));
        assert_eq!(p.data.len(), 3 * p.height * p.width);
        assert!(p.data.iter().all(|v| v.is_finite()));
    }
    // A 1×1 image is constant after the resize: each channel is (v/255 − mean)/std everywhere.
    let p = prepare(&RgbImage::from_pixel(1, 1, image::Rgb([10, 128, 250])), 14).unwrap();
    for (ch, v) in [10.0, 128.0, 250.0].into_iter().enumerate() {
        let want = ((v / 255.0 - MEAN[ch]) / STD[ch]) as f32;
        assert!(p.data[ch * 196..(ch + 1) * 196].iter().all(|&x| x == want));
    }
    assert!(prepare(&RgbImage::new(0, 5), 518).is_err());
    assert!(prepare(&RgbImage::new(4, 4), 500).is_err());
    assert!(prepare(&RgbImage::new(4, 4), 0).is_err());
    // A 1×2000 strip at 518 needs 518×1036000 pixels: refused with the variable to raise.
    let e = prepare(&RgbImage::new(2000, 1), 518).unwrap_err().to_string();
    assert!(e.contains("TRAJATTN_MAX_DEPTH_PIXELS"), "{e}");
}

fn png_bytes(img: &image::DynamicImage) -> Vec<u8> {
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, image::ImageFormat::Png).unwrap();
    out.into_inner()
}

#[test]
fn grey_rgba_and_16_bit_inputs_become_rgb() {
    let rgb = formula_rgb(23, 31);
    // Grey: cv2.imread gives three equal channels; so does our decoder.
    let grey = image::DynamicImage::ImageRgb8(rgb.clone()).to_luma8();
    let dec = image_input::decode("grey.png", &png_bytes(&image::DynamicImage::ImageLuma8(grey.clone())))
        .unwrap()
        .to_rgb8();
    let expanded = RgbImage::from_fn(31, 23, |x, y| {
        let v = grey.get_pixel(x, y).0[0];
        image::Rgb([v, v, v])
    });
    assert_eq!(dec, expanded);
    assert_eq!(prepare(&dec, 42).unwrap(), prepare(&expanded, 42).unwrap());
    // RGBA: alpha is dropped, not composited (as cv2.imread's IMREAD_COLOR does).
    let rgba = image::RgbaImage::from_fn(31, 23, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgba([p[0], p[1], p[2], ((x * 9) % 256) as u8])
    });
    let dec = image_input::decode("rgba.png", &png_bytes(&image::DynamicImage::ImageRgba8(rgba)))
        .unwrap()
        .to_rgb8();
    assert_eq!(prepare(&dec, 42).unwrap(), prepare(&rgb, 42).unwrap());
    // 16-bit: OpenCV keeps the high byte (checked with opencv-python-headless 4.5.5.64: 511, 383, 0x80ff, 65535 →
    // 1, 1, 128, 255); to_rgb8_like_opencv does the same where the image crate's to_rgb8 rounds.
    let probe = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(4, 1, |x, _| {
        image::Rgb([[511, 383, 0x80ff, 65535][x as usize], 0, 256])
    });
    let dec = image_input::decode("probe.png", &png_bytes(&image::DynamicImage::ImageRgb16(probe))).unwrap();
    let ours = to_rgb8_like_opencv(&dec);
    assert_eq!(ours.pixels().map(|p| p.0[0]).collect::<Vec<_>>(), [1, 1, 128, 255]);
    assert!(ours.pixels().all(|p| p.0[1] == 0 && p.0[2] == 1));
    let grey16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(3, 2, |x, y| {
        image::Luma([(x * 300 + y * 20000) as u16])
    });
    let g = to_rgb8_like_opencv(&image::DynamicImage::ImageLuma16(grey16.clone()));
    assert!(g.enumerate_pixels().all(|(x, y, p)| p.0 == [(grey16.get_pixel(x, y).0[0] >> 8) as u8; 3]));
    assert_eq!(to_rgb8_like_opencv(&image::DynamicImage::ImageRgb8(rgb.clone())), rgb);
    let deep = image::ImageBuffer::<image::Rgb<u16>, Vec<u16>>::from_fn(31, 23, |x, y| {
        let p = rgb.get_pixel(x, y).0;
        image::Rgb(p.map(|v| u16::from(v) * 257))
    });
    let dec = image_input::decode("deep.png", &png_bytes(&image::DynamicImage::ImageRgb16(deep)))
        .unwrap()
        .to_rgb8();
    assert_eq!(dec, rgb, "v·257 maps back to v exactly");
    assert!(prepare(&dec, 42).is_ok());
}

/// A JPEG with an EXIF APP1 segment holding only the orientation tag.
fn jpeg_with_orientation(img: &RgbImage, orientation: u16) -> Vec<u8> {
    let mut jpeg = std::io::Cursor::new(Vec::new());
    image::DynamicImage::ImageRgb8(img.clone()).write_to(&mut jpeg, image::ImageFormat::Jpeg).unwrap();
    let jpeg = jpeg.into_inner();
    // TIFF header (big endian), IFD0 at offset 8 with one entry: 0x0112 SHORT 1 = orientation; no next IFD.
    let mut tiff = b"MM\0\x2a\0\0\0\x08\0\x01\x01\x12\0\x03\0\0\0\x01".to_vec();
    tiff.extend_from_slice(&orientation.to_be_bytes());
    tiff.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend_from_slice(&tiff);
    let mut out = jpeg[..2].to_vec(); // SOI
    out.extend_from_slice(&[0xff, 0xe1]);
    out.extend_from_slice(&((app1.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(&app1);
    out.extend_from_slice(&jpeg[2..]);
    out
}

#[test]
fn exif_rotated_photo_is_prepared_upright() {
    let img = formula_rgb(20, 34);
    let bytes = jpeg_with_orientation(&img, 6); // "rotate 90° clockwise to display"
    let upright = image_input::decode("rotated.jpg", &bytes).unwrap().to_rgb8();
    assert_eq!(upright.dimensions(), (20, 34), "EXIF orientation 6 swaps the sides");
    let dir = std::env::temp_dir().join(format!("trajattn-depth-exif-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rotated.jpg");
    std::fs::write(&path, &bytes).unwrap();
    let stored = image_input::open(&path).unwrap().to_rgb8();
    let from_file = image_input::open_rgb(&path).unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(stored.dimensions(), (34, 20));
    assert_eq!(from_file, image::imageops::rotate90(&stored));
    let p = prepare(&from_file, 56).unwrap();
    // Portrait 34×20 (h×w) at 56: 56 wide, 56·34/20 = 95.2 → 98 high.
    assert_eq!((p.height, p.width), (98, 56));
}

#[test]
fn hostile_sizes_are_refused_without_allocating() {
    // Wider than TRAJATTN_MAX_IMAGE_SIDE (16384).
    let e = prepare(&RgbImage::new(20_000, 1), 14).unwrap_err().to_string();
    assert!(e.contains("TRAJATTN_MAX_IMAGE_SIDE"), "{e}");
    // Inside the image limits, but the network input would be 518×(518·16000) pixels.
    let e = prepare(&RgbImage::new(16_000, 1), 518).unwrap_err().to_string();
    assert!(e.contains("TRAJATTN_MAX_DEPTH_PIXELS") && e.contains("16000"), "{e}");
    // An --input-size whose square overflows or exceeds the limit.
    assert!(target_size(10, 10, usize::MAX - usize::MAX % 14).is_err());
    assert!(target_size(10, 10, 14 * 1_000_000).is_err());
    // A header claiming a 100000×100000 PNG: refused by the decoder limits before any pixel is decoded.
    let mut png = png_bytes(&image::DynamicImage::ImageRgb8(RgbImage::new(1, 1)));
    png[16..20].copy_from_slice(&100_000u32.to_be_bytes());
    png[20..24].copy_from_slice(&100_000u32.to_be_bytes());
    assert!(image_input::decode("huge.png", &png).is_err());
}

#[test]
fn random_sizes_never_panic() {
    // Deterministic sweep over small odd shapes and input sizes (a cheap fuzz of the size logic and the resize).
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    for _ in 0..60 {
        let (w, h) = (1 + next(40) as u32, 1 + next(40) as u32);
        let s = 14 * (1 + next(6) as usize);
        let img =
            RgbImage::from_fn(w, h, |x, y| image::Rgb([(x * 7 + y) as u8, (x * y) as u8, 255 - y as u8]));
        let p = prepare(&img, s).unwrap();
        assert_eq!((p.height, p.width), target_size(h as usize, w as usize, s).unwrap());
        assert!(p.data.iter().all(|v| v.is_finite()));
        // A cubic resize of values in [0, 1] overshoots by at most the kernel's negative lobes (|w0|+|w3| ≤ 0.2
        // per axis): normalised values stay within a bounded band.
        assert!(p.data.iter().all(|v| v.abs() < 4.0), "{w}×{h} at {s}");
        let back = upsample_to(&p.data[..p.height * p.width], p.height, p.width, h as usize, w as usize);
        assert_eq!(back.len(), (w * h) as usize);
        assert!(back.iter().all(|v| v.is_finite()));
    }
}
