//! Depth-Anything-V2 preprocessing, post-processing and preview against the second reference model of
//! `tests/fixtures/depth/vits_small*` (made by `tests/reference/depth_fixtures.py` with the official code:
//! 61×83 input, `--input-size 70` → 70×98), and the colour table against matplotlib's `Spectral_r`.

use std::path::{Path, PathBuf};

use safetensors::SafeTensors;
use trajattn::depth::preprocess::{prepare, resize_cubic, target_size, upsample_to};
use trajattn::depth::preview::{colorize, normalise_u8, spectral_r_lut, SPECTRAL_11};
use trajattn::image_input;
use trajattn::trajectory::npy;

mod depth_util;
use depth_util::sha256_hex;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/depth")
}

fn meta() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("vits_small.json")).unwrap()).unwrap()
}

fn tensor_f32(st: &SafeTensors, name: &str) -> (Vec<usize>, Vec<f32>) {
    let t = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(t.dtype(), safetensors::Dtype::F32, "{name}");
    let data = t.data().chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect();
    (t.shape().to_vec(), data)
}

fn depth_npy() -> Vec<f32> {
    let a = npy::read(&dir().join("vits_small_depth.npy")).unwrap();
    assert_eq!(a.shape, [61, 83]);
    match a.data {
        npy::NpyData::F32(v) => v,
        _ => panic!("vits_small_depth.npy is not <f4"),
    }
}

#[test]
fn prepare_matches_the_official_input() {
    let m = meta();
    let img = image_input::open_rgb(&dir().join("vits_small_input.png")).unwrap();
    assert_eq!(img.dimensions(), (83, 61));
    assert_eq!(target_size(61, 83, 70).unwrap(), (70, 98));
    assert_eq!(m["resized_hw"], serde_json::json!([70, 98]));
    let bytes = std::fs::read(dir().join("vits_small_debug.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, want) = tensor_f32(&st, "debug.input");
    assert_eq!(shape, [1, 3, 70, 98]);
    let p = prepare(&img, 70).unwrap();
    assert_eq!((p.height, p.width), (70, 98));
    let bad = p.data.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(bad, 0, "{bad} of {} network input values differ from the official ones", want.len());
    // The float64 resize itself: a wrong value there could round to the same float32.
    let src: Vec<f64> = img.as_raw().iter().map(|&b| f64::from(b) / 255.0).collect();
    let resized = resize_cubic(&src, 61, 83, 3, 70, 98);
    let bytes: Vec<u8> = resized.iter().flat_map(|v| v.to_le_bytes()).collect();
    assert_eq!(sha256_hex(&bytes), m["resized_f64_hwc_le_sha256"].as_str().unwrap());
}

#[test]
fn upsample_matches_the_official_depth() {
    let bytes = std::fs::read(dir().join("vits_small_debug.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let (shape, net) = tensor_f32(&st, "debug.output_conv2");
    assert_eq!(shape, [1, 1, 70, 98]);
    let want = depth_npy();
    let got = upsample_to(&net, 70, 98, 61, 83);
    let bad = got.iter().zip(&want).filter(|(a, b)| a.to_bits() != b.to_bits()).count();
    assert_eq!(bad, 0, "{bad} of {} depth values differ from the official ones", want.len());
    let (_, dbg_depth) = tensor_f32(&st, "debug.depth");
    assert_eq!(dbg_depth, want);
}

/// matplotlib's table as run.py applies it, sampled by the fixture script: `(lut · 255).astype(uint8)`.
fn matplotlib_lut() -> Vec<[u8; 3]> {
    let bytes = std::fs::read(dir().join("spectral_r_lut.npy")).unwrap();
    let header = String::from_utf8_lossy(&bytes[..bytes.len() - 768]);
    assert!(header.contains("'|u1'") && header.contains("(256, 3)"), "{header}");
    bytes[bytes.len() - 768..].chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect()
}

#[test]
fn table_equals_matplotlib_spectral_r() {
    let ours = spectral_r_lut();
    let theirs = matplotlib_lut();
    let bad: Vec<_> = (0..256).filter(|&i| ours[i] != theirs[i]).map(|i| (i, ours[i], theirs[i])).collect();
    assert!(bad.is_empty(), "(index, ours, matplotlib): {bad:?}");
}

#[test]
fn table_follows_the_colorbrewer_definition() {
    // Spectral_r at index i is the reversed 11-colour ramp at position i/255: control point k (k = 0..10) sits at
    // 25.5·k and is ColorBrewer colour 10 − k; in between, linear. Computed here from the definition, within the
    // one step that truncating (v/255)·255 can lose.
    let lut = spectral_r_lut();
    for i in [0usize, 1, 25, 26, 51, 85, 127, 128, 200, 254, 255] {
        let pos = i as f64 / 25.5;
        let k = (pos.floor() as usize).min(9);
        let t = pos - k as f64;
        let (a, b) = (SPECTRAL_11[10 - k], SPECTRAL_11[9 - k]);
        for ch in 0..3 {
            let want = f64::from(a[ch]) + (f64::from(b[ch]) - f64::from(a[ch])) * t;
            let got = f64::from(lut[i][ch]);
            assert!(
                got <= want + 1e-9 && got >= want.floor() - 1.0,
                "index {i} channel {ch}: {got} vs {want}"
            );
        }
    }
    // Hand-checked entries: index 0 = #5e4fa2 less the truncation, 255 = #9e0142 likewise; the middle entry of
    // the ramp (index 128, position 5.02) is just past #ffffbf towards #fee08b.
    assert!(lut[128][0] >= 254 && lut[128][1] >= 250 && (185..=191).contains(&lut[128][2]), "{:?}", lut[128]);
}

#[test]
fn preview_equals_the_official_png() {
    let depth = depth_npy();
    let ours = colorize(&depth, 61, 83).unwrap();
    let theirs = image_input::open_rgb(&dir().join("vits_small_preview.png")).unwrap();
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let bad = ours.pixels().zip(theirs.pixels()).filter(|(a, b)| a != b).count();
    assert_eq!(bad, 0, "{bad} preview pixels differ from run.py's");
}

#[test]
fn small_map_preview_by_hand() {
    // 1×4 map: indices 0, 85, 170, 255 (min–max over 0..3, ·255, truncated).
    assert_eq!(normalise_u8(&[0.0, 1.0, 2.0, 3.0]), [0, 85, 170, 255]);
    assert_eq!(normalise_u8(&[-1.0, -1.0, -1.0]), [0, 0, 0]);
    let img = colorize(&[0.0, 1.0, 2.0, 3.0], 1, 4).unwrap();
    let lut = spectral_r_lut();
    for (x, i) in [0usize, 85, 170, 255].into_iter().enumerate() {
        assert_eq!(img.get_pixel(x as u32, 0).0, lut[i]);
    }
    // Index 85 sits a third of the way from #abdda4 to #e6f598: (190.67, 229, 160) before truncation.
    let p = img.get_pixel(1, 0).0;
    assert!(p[0] == 190 && (228..=229).contains(&p[1]) && (159..=160).contains(&p[2]), "{p:?}");
    // A constant map is all index 0, NaN-free.
    let flat = colorize(&[7.5; 6], 2, 3).unwrap();
    assert!(flat.pixels().all(|px| px.0 == lut[0]));
}

#[test]
fn upsample_matches_torch_up_and_down() {
    let bytes = std::fs::read(dir().join("upsample_cases.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    for j in 0..5 {
        let (s, src) = tensor_f32(&st, &format!("case{j}.src"));
        let (o, want) = tensor_f32(&st, &format!("case{j}.out"));
        let got = upsample_to(&src, s[0], s[1], o[0], o[1]);
        assert_eq!(got.len(), want.len());
        let worst = got.iter().zip(&want).map(|(a, b)| a.to_bits().abs_diff(b.to_bits())).max().unwrap();
        let exact = got.iter().zip(&want).filter(|(a, b)| a.to_bits() == b.to_bits()).count();
        eprintln!("{s:?} → {o:?}: {exact}/{} bit-exact, worst {worst} ulp", want.len());
        if o[0] + o[1] > 128 {
            // Torch's generic kernel, the one the official post-processing takes for any real image.
            assert_eq!(worst, 0, "{s:?} → {o:?}");
        } else {
            // Torch's channels-last kernel (tiny outputs only): another summation order.
            assert!(worst <= 2, "{s:?} → {o:?}: {worst} ulp");
        }
    }
}
