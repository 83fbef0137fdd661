//! Merging video tracks with camera trajectories (docs/reference/trajectory-sources.md §7).

use trajattn::trajectory::camera::{GridTrajectories, BEHIND};
use trajattn::trajectory::folder::Trajectories;
use trajattn::trajectory::merge::{merge, MaskMode};

/// A 16×8 camera file over 2 frames: frame 1 shifts every pixel by (+2.25, −0.5), except pixel (9, 3), which goes
/// behind the camera; frame-1 visibility false at pixel (4, 0) only.
fn camera() -> GridTrajectories {
    let (w, h) = (16, 8);
    let mut coords = Vec::new();
    for f in 0..2 {
        for y in 0..h {
            for x in 0..w {
                let (mut cx, mut cy) = (x as f64, y as f64);
                if f == 1 {
                    cx += 2.25;
                    cy -= 0.5;
                    if (x, y) == (9, 3) {
                        (cx, cy) = (BEHIND, BEHIND);
                    }
                }
                coords.push(cx);
                coords.push(cy);
            }
        }
    }
    let mut valid = vec![true; 2 * w * h];
    valid[w * h + 4] = false;
    GridTrajectories { frames: 2, h, w, coords, valid }
}

fn tracks(points: &[[f64; 2]]) -> Trajectories {
    // Frame 1 positions: each track moved by (0.5, 0.25) in the video itself.
    let n = points.len();
    let mut coords = Vec::new();
    for f in 0..2 {
        for p in points {
            coords.push(p[0] + 0.5 * f as f64);
            coords.push(p[1] + 0.25 * f as f64);
        }
    }
    Trajectories { frames: 2, n, coords, valid: vec![true; 2 * n] }
}

#[test]
fn camera_motion_is_added_at_the_tracks_pixel() {
    // 8 tracks = (16/4)·(8/4), as the faithful mode needs.
    let pts =
        [[3.7, 1.2], [0.2, 0.1], [8.6, 2.9], [12.0, 6.5], [1.0, 7.0], [15.9, 0.0], [6.3, 4.4], [10.5, 5.5]];
    let out = merge(&tracks(&pts), &camera(), MaskMode::Corrected).unwrap();
    for (i, p) in pts.iter().enumerate() {
        // Frame 0 unchanged; frame 1 = video motion + camera flow, added in f64 and rounded once to f32.
        assert_eq!(out.coords[2 * i], p[0] as f32 as f64);
        let (x1, y1) = ((p[0] + 0.5) as f32, (p[1] + 0.25) as f32);
        let o = 2 * (8 + i);
        if !(0.0..16.0).contains(&x1.trunc()) || !(0.0..8.0).contains(&y1.trunc()) {
            // Outside the frame in the video itself: left as it is, and invalid.
            assert_eq!((out.coords[o], out.valid[8 + i]), (x1 as f64, false), "track {i}");
            continue;
        }
        if (x1.trunc(), y1.trunc()) == (9.0, 3.0) {
            assert!(
                out.coords[o] > 99_000.0 && !out.valid[8 + i],
                "behind the camera → far away and invalid"
            );
            continue;
        }
        assert_eq!(out.coords[o], (x1 as f64 + 2.25) as f32 as f64);
        assert_eq!(out.coords[o + 1], (y1 as f64 - 0.5) as f32 as f64);
        // Bounds are checked on coordinates truncated toward zero, as the reference does: y = −0.15 is row 0.
        let (tx, ty) = (out.coords[o].trunc(), out.coords[o + 1].trunc());
        let inside = (0.0..16.0).contains(&tx) && (0.0..8.0).contains(&ty);
        assert_eq!(out.valid[8 + i], inside && (x1.trunc(), y1.trunc()) != (4.0, 0.0), "track {i}");
    }
}

#[test]
fn faithful_mode_reproduces_the_index_quirk() {
    let pts =
        [[3.7, 1.2], [0.2, 0.1], [8.6, 2.9], [12.0, 6.5], [1.0, 7.0], [14.9, 0.0], [6.3, 4.4], [10.5, 5.5]];
    let faithful = merge(&tracks(&pts), &camera(), MaskMode::Faithful).unwrap();
    let corrected = merge(&tracks(&pts), &camera(), MaskMode::Corrected).unwrap();
    // Camera-grid entry 1 is pixel (4, 0), invisible in frame 1: the faithful merge drops track 1 (at (0.7, 0.35)),
    // whose own pixel is visible; the corrected merge keeps it.
    assert!(!faithful.valid[8 + 1] && corrected.valid[8 + 1]);
    // Positions are the same in both modes.
    assert_eq!(faithful.coords, corrected.coords);
    // Too few tracks for the index-wise pairing is an error, not garbage.
    let e = merge(&tracks(&pts[..5]), &camera(), MaskMode::Faithful).unwrap_err().to_string();
    assert!(e.contains("8 tracks") || e.contains("needs exactly 8"), "{e}");
    assert!(merge(&tracks(&pts[..5]), &camera(), MaskMode::Corrected).is_ok());
}
