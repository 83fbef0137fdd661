//! The forward warp behind NVS-solver guidance under a moving camera: the flow it writes against an independent
//! float64 pinhole projection (orbits and a zoom), and the warped image of a plane under a sideways camera shift,
//! whose exact answer is the image moved by a whole number of pixels.

use trajattn::trajectory::camera::{self, CameraMode, CameraPath, Intrinsics, Mat4};
use trajattn::trajectory::warp;

fn test_image(w: usize, h: usize) -> image::RgbImage {
    let mut img = image::RgbImage::new(w as u32, h as u32);
    for (x, y, p) in img.enumerate_pixels_mut() {
        *p = image::Rgb([(x * 11 % 256) as u8, (y * 19 % 256) as u8, ((x * 3 + y * 5) * 7 % 256) as u8]);
    }
    img
}

/// Where pixel `(x, y)` at camera-0 depth `z` lands under `t` (camera-0 → camera-t coordinates), in float64:
/// back-projected through the pinhole `k`, moved, projected again.
fn pinhole(k: &Intrinsics, t: &Mat4, x: f64, y: f64, z: f64) -> [f64; 2] {
    let p = [(x - k.cx) / k.focal * z, (y - k.cy) / k.focal * z, z, 1.0];
    let q: Vec<f64> = (0..3).map(|r| (0..4).map(|c| t[r][c] * p[c]).sum()).collect();
    assert!(q[2] > 0.0, "the test scene must stay in front of every camera");
    [k.focal * q[0] / q[2] + k.cx, k.focal * q[1] / q[2] + k.cy]
}

#[test]
fn warp_flow_matches_a_float64_pinhole_projection_along_moving_cameras() {
    let (w, h) = (37, 23);
    let img = test_image(w, h);
    // Relative inverse depth 3..9: depths 1111..3333 (every point well in front of the orbiting cameras).
    let inv: Vec<f32> = (0..w * h).map(|i| 3.0 + (i % 7) as f32).collect();
    let z = camera::depth_from_inverse(&inv);
    let k = Intrinsics::official(w, h);
    for (mode, deg) in
        [(CameraMode::Horizontal, 2.0), (CameraMode::Vertical, -1.5), (CameraMode::ZoomIn, 10.0)]
    {
        let mut path = CameraPath::new(mode, deg);
        path.frames = 4;
        let ts = path.relative_transforms();
        let out = warp::warp_frames(&img, &inv, &ts, &k);
        assert_eq!(out.len(), 3, "one warped frame per frame after the first");
        let mut largest = 0.0f64;
        for (f, wf) in out.iter().enumerate() {
            let t = &ts[f + 1];
            for y in 0..h {
                for x in 0..w {
                    let i = y * w + x;
                    let want = pinhole(&k, t, x as f64, y as f64, z[i] as f64);
                    let got = [x as f64 + wf.flow[2 * i], y as f64 + wf.flow[2 * i + 1]];
                    for d in 0..2 {
                        assert!(
                            (got[d] - want[d]).abs() < 1e-9,
                            "{mode:?} frame {}: pixel ({x}, {y}) lands at {got:?}, the pinhole says {want:?}",
                            f + 1
                        );
                    }
                    largest = largest.max(wf.flow[2 * i].abs()).max(wf.flow[2 * i + 1].abs());
                }
            }
        }
        // The camera really moved: a flow of zero everywhere would make the comparison vacuous.
        assert!(largest > 0.2, "{mode:?}: largest flow {largest} px");
    }
}

#[test]
fn a_plane_under_a_sideways_camera_shift_moves_by_whole_pixels() {
    let (w, h) = (29, 17);
    let img = test_image(w, h);
    // Inverse depth 10 → depth 1000 everywhere: a fronto-parallel plane. A camera-frame shift of
    // tx = 3 · 1000 / 260 moves every point 3 pixels right (u = x + f·tx / z), so the warped frame is the image
    // moved by 3 columns and the 3 uncovered columns on the left are holes.
    let inv = vec![10.0f32; w * h];
    let k = Intrinsics::official(w, h);
    let shift = 3.0;
    let first: Mat4 =
        [[1.0, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 1.0]];
    let mut t = first;
    t[0][3] = shift * 1000.0 / k.focal;
    let out = warp::warp_frames(&img, &inv, &[first, t], &k);
    let wf = &out[0];
    for y in 0..h {
        for x in 0..w {
            let i = y * w + x;
            assert!(
                (wf.flow[2 * i] - shift).abs() < 1e-9 && wf.flow[2 * i + 1].abs() < 1e-9,
                "flow at ({x}, {y})"
            );
            let hole = wf.mask.get_pixel(x as u32, y as u32).0 == [255; 3];
            if x < 2 {
                assert!(hole, "({x}, {y}) has no source pixel: it must be a hole");
            }
            // Beyond the dilated holes (≤ 2 + 3 columns) every pixel is its source 3 columns to the left.
            if x >= 6 {
                assert!(!hole, "({x}, {y}) is covered");
                assert_eq!(
                    wf.image.get_pixel(x as u32, y as u32),
                    img.get_pixel((x - 3) as u32, y as u32),
                    "({x}, {y})"
                );
            }
        }
    }
}
