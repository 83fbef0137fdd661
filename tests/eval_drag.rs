//! `eval drag` on videos with known motion: a disc rendered exactly where a drag asks (error near zero), a disc
//! that stays where it started (error = the requested displacement), regions recovered from the drag builder's tracks.

use image::{Rgb, RgbImage};
use trajattn::eval::drag::{evaluate, regions_from_spec, regions_from_tracks};
use trajattn::trajectory::build::{along, drags, DragSpec};

const W: u32 = 64;
const H: u32 = 64;

/// A smooth background with an anti-aliased disc of radius `r` at each centre (sub-pixel positions).
fn frame(discs: &[([f64; 2], f64, [u8; 3])]) -> RgbImage {
    RgbImage::from_fn(W, H, |x, y| {
        let mut c = [
            90.0 + 40.0 * (x as f64 * 0.21).sin(),
            110.0 + 30.0 * (y as f64 * 0.17).cos(),
            100.0 + 25.0 * ((x + y) as f64 * 0.11).sin(),
        ];
        for (p, r, col) in discs {
            let d = ((x as f64 - p[0]).powi(2) + (y as f64 - p[1]).powi(2)).sqrt();
            let a = (r + 0.5 - d).clamp(0.0, 1.0);
            for k in 0..3 {
                c[k] = c[k] * (1.0 - a) + col[k] as f64 * a;
            }
        }
        Rgb([c[0].round() as u8, c[1].round() as u8, c[2].round() as u8])
    })
}

fn spec() -> DragSpec {
    DragSpec::from_json(
        "test",
        r#"{"width": 64, "height": 64, "frames": 8, "grid_step": 2, "static_background": true,
            "drags": [{"path": [[16, 44], [30, 20], [48.5, 16.25]], "radius": 8},
                      {"path": [[46, 46], [46, 46]], "radius": 8}]}"#,
    )
    .unwrap()
}

const RED: [u8; 3] = [240, 60, 40];
const BLUE: [u8; 3] = [40, 90, 240];

#[test]
fn a_disc_moved_exactly_along_its_drag_has_sub_pixel_error() {
    let s = spec();
    let frames: Vec<RgbImage> = (0..8)
        .map(|f| {
            let p = along(&s.drags[0].path, f as f64 / 7.0);
            frame(&[(p, 7.0, RED), ([46.0, 46.0], 6.0, BLUE)])
        })
        .collect();
    let r = evaluate(&frames, &regions_from_spec(&s).unwrap()).unwrap();
    eprintln!("{}", trajattn::eval::drag::summary(&r));
    assert!(r.path_mean().unwrap() < 0.35, "{:?}", r.path_mean());
    assert!(r.path_end().unwrap() < 0.5);
    assert!(r.still_max().unwrap() < 0.35);
}

#[test]
fn a_disc_that_stays_is_found_where_it_stayed() {
    let s = spec();
    let frames: Vec<RgbImage> =
        (0..8).map(|_| frame(&[([16.0, 44.0], 7.0, RED), ([46.0, 46.0], 6.0, BLUE)])).collect();
    let r = evaluate(&frames, &regions_from_spec(&s).unwrap()).unwrap();
    let dragged = &r.regions[0];
    for (f, p) in dragged.tracked.iter().enumerate() {
        assert!((p[0] - 16.0).abs() < 0.35 && (p[1] - 44.0).abs() < 0.35, "frame {f}: {p:?}");
        let want = along(&s.drags[0].path, f as f64 / 7.0);
        let d = (want[0] - 16.0).hypot(want[1] - 44.0);
        assert!((dragged.region.requested[f][0] - want[0]).abs() < 1e-9);
        assert!(((p[0] - want[0]).hypot(p[1] - want[1]) - d).abs() < 0.5, "frame {f}");
    }
    // The end of the path is 40 px from the start.
    assert!(r.path_end().unwrap() > 39.0);
}

#[test]
fn the_regions_of_the_drag_builders_tracks_are_the_dragged_disks() {
    let s = spec();
    let t = drags(&s).unwrap();
    let from_tracks = regions_from_tracks(&t);
    assert_eq!(from_tracks.len(), 1, "one drag moves; the still one and the background do not");
    let from_spec = regions_from_spec(&s).unwrap();
    for f in 0..8 {
        let (a, b) = (from_tracks[0].requested[f], from_spec[0].requested[f]);
        // Grid points inside the disk are symmetric about its centre on this grid: the same centre.
        assert!((a[0] - b[0]).hypot(a[1] - b[1]) < 0.01, "frame {f}: {a:?} vs {b:?}");
    }
    assert!((from_tracks[0].radius - 9.0).abs() < 1.5, "{}", from_tracks[0].radius);
}

#[test]
fn mismatched_inputs_are_refused() {
    let s = spec();
    let frames: Vec<RgbImage> = (0..5).map(|_| frame(&[])).collect();
    let e = evaluate(&frames, &regions_from_spec(&s).unwrap()).unwrap_err().to_string();
    assert!(e.contains("8 frames") && e.contains("5"), "{e}");
    assert!(evaluate(&[], &[]).is_err());
    let mut odd = frames.clone();
    odd[2] = RgbImage::new(32, 32);
    let regions: Vec<_> = regions_from_spec(&s)
        .unwrap()
        .into_iter()
        .map(|mut r| {
            r.requested.truncate(5);
            r
        })
        .collect();
    assert!(evaluate(&odd, &regions).unwrap_err().to_string().contains("frame 2"));
}
